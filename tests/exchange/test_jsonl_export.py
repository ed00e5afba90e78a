"""The JSONL export writer: byte for byte what json.dumps of each record gives."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl.exchange.cursor import message_ids
from dialogctl.exchange.formats.json import write_jsonl
from dialogctl.exchange.records import message_record
from dialogctl.exchange.selection import Selected
from dialogctl.models import ConversationRef, Message

from ..strategies import messages as any_message


@settings(max_examples=100, deadline=None)
@given(
    st.lists(any_message(), max_size=4),
    st.sampled_from([ConversationRef("u-1", "current"), ConversationRef("é", "archive", "a b")]),
    st.integers(0, 10**6),
)
def test_jsonl_export_lines_are_json_dumps_of_the_records(msgs: list[Message], ref: ConversationRef, first: int) -> None:
    conv = Selected(ref, [(first + i, m) for i, m in enumerate(msgs)])
    out = io.StringIO()
    result = write_jsonl(out, [conv])
    assert (result.conversations, result.messages) == (1, len(msgs))
    ids = message_ids(ref.user, msgs)
    assert out.getvalue() == "".join(
        json.dumps(message_record(conv, i, m, mid), ensure_ascii=False) + "\n" for (i, m), mid in zip(conv.messages, ids, strict=True)
    )
