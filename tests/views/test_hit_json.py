"""Search hits in json and jsonl are assembled from pieces (``records.message_json``), not built as dictionaries:
the text must be byte for byte ``json.dumps`` of the record each hit stood for before.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl.exchange.records import message_json, message_record
from dialogctl.models import ConversationRef
from dialogctl.views.search import Hit

from ..conftest import Cli
from ..samples import hostile_messages, journal_with
from ..strategies import messages, text_chars

refs = st.builds(
    ConversationRef,
    st.text(text_chars, min_size=1, max_size=20),
    st.sampled_from(["current", "session", "archive"]),
    st.one_of(st.none(), st.text(text_chars, min_size=1, max_size=20)),
)
spans = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=4).map(tuple)


def dumped(hit: Hit) -> str:
    """The record search printed before: a dictionary through json.dumps."""
    record = {**message_record(hit, hit.position, hit.message), "match": hit.matched, "spans": [list(span) for span in hit.spans]}
    return json.dumps(record, ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(refs, st.integers(0, 10**9), messages(), spans, st.booleans())
def test_hit_text_is_json_dumps_of_its_record(ref: ConversationRef, position: int, msg, found, matched: bool) -> None:
    hit = Hit(ref, position, msg, found, matched)
    joined = ", ".join(f"[{a}, {b}]" for a, b in found)
    extra = f', "match": {"true" if matched else "false"}, "spans": [{joined}]'
    assert message_json(hit, position, msg, extra) == dumped(hit)


def test_search_output_is_json_dumps_of_each_record(tmp_path: Path, cli: Cli) -> None:
    """Through the CLI, every line re-encodes to itself (same key order, separators and escapes as json.dumps), with context lines."""
    journal = journal_with(tmp_path, {("alice", None): hostile_messages(), ("alice", "old"): hostile_messages(), ("bob", None): hostile_messages()})
    for fmt in ("jsonl", "json"):
        result = cli("--root", str(journal.root), "search", "-E", r"\d|\n", "-a", "-C", "1", "--format", fmt)
        assert result.exit_code == 0, result.stderr
        if fmt == "jsonl":
            lines = result.stdout.split("\n")[:-1]  # LF only: content may hold U+2028
            assert (
                len(lines) > 10
                and any('"match": false' in line for line in lines)
                and all(json.dumps(json.loads(line), ensure_ascii=False) == line for line in lines)
            )
        else:
            records = json.loads(result.stdout)
            assert records and result.stdout == "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"
