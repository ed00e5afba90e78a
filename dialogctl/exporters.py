"""Streaming writers that turn conversations into export formats.

Each writer takes an iterable of :class:`dialogctl.journal.Conversation` and a
text stream, and writes as it reads: memory stays flat however large the
journal. Every record names where it came from (user, conversation, archived,
index, timestamp).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

from .journal import Conversation, Journal
from .models import Message
from .times import utc_now_iso


def message_record(conv: Conversation, index: int, msg: Message) -> dict[str, Any]:
    """One message with its identity: the JSONL export line."""
    return {
        "user": conv.ref.user,
        "conversation": conv.ref.name,
        "archived": conv.ref.archived,
        "index": index,
        "role": msg.role,
        "content": msg.content,
        "timestamp": msg.timestamp,
        "metadata": msg.metadata,
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def jsonl_text(conv: Conversation) -> str:
    """A conversation's JSONL lines: per message, byte for byte ``json.dumps`` of its :func:`message_record`.

    The line is assembled from pieces (the identity once per conversation,
    each string through the JSON encoder's own string escaper): the export
    spends its time reading, not building dictionaries.
    """
    from json.encoder import encode_basestring as text  # what json.dumps(ensure_ascii=False) uses

    if not conv.messages:
        return ""
    head = f'{{"user": {text(conv.ref.user)}, "conversation": {text(conv.ref.name)}, "archived": {"true" if conv.ref.archived else "false"}, "index": '
    return "".join(
        [
            f'{head}{index}, "role": {text(msg.role)}, "content": {text(msg.content)}, "timestamp": {text(msg.timestamp)}, '
            f'"metadata": {"null" if msg.metadata is None else _dumps(msg.metadata)}}}\n'
            for index, msg in enumerate(conv.messages, conv.first_index)
        ]
    )


def write_jsonl(out: IO[str], conversations: Iterable[Conversation]) -> int:
    count = 0
    for conv in conversations:
        lines = jsonl_text(conv)
        out.write(lines)
        count += len(conv.messages)
    return count


def write_jsonl_journal(out: IO[str], journal: Journal) -> int:
    """The whole journal as JSONL, conversations formatted on every core and written in walk order."""
    from .parallel import map_conversations

    count = 0
    for lines in map_conversations(journal, jsonl_text):
        out.write(lines)
        count += lines.count("\n")  # JSON escapes line breaks inside strings: one per record
    return count


def conversation_object(conv: Conversation, with_identity: bool) -> dict[str, Any]:
    """The reference implementation's export shape, plus identity when several are exported."""
    obj: dict[str, Any] = {"userId": conv.ref.user}
    if with_identity:
        obj["conversation"] = conv.ref.name
        obj["archived"] = conv.ref.archived
    obj["timestamp"] = utc_now_iso()
    obj["messageCount"] = len(conv.messages)
    obj["messages"] = [m.to_raw() for m in conv.messages]
    return obj


def write_json(out: IO[str], conversations: Iterable[Conversation], single: bool) -> int:
    """One object for a single conversation; otherwise an array streamed element by element."""
    count = 0
    if single:
        for conv in conversations:
            out.write(json.dumps(conversation_object(conv, False), ensure_ascii=False, indent=2) + "\n")
            return len(conv.messages)
        out.write("null\n")
        return 0
    out.write("[")
    first = True
    for conv in conversations:
        out.write(("\n" if first else ",\n") + _dumps(conversation_object(conv, True)))
        first = False
        count += len(conv.messages)
    out.write("]\n" if first else "\n]\n")
    return count
