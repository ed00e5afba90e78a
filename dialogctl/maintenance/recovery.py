"""Recovering what can be read from a damaged conversation file, and the record of one repair step."""

from __future__ import annotations

import re
from typing import NamedTuple

from ..disk import layout as L
from ..errors import DialogError
from ..fileformat.codec import Form, check_batches, decode_record, detect_form, find_frames, quote
from ..fileformat.reader import TORN_BATCH
from ..fileformat.salvage import parse_record, salvage_region, split_items
from ..models import Damage, Message

# Reader damage that loses nothing: the message was read, only the file's form is off.
_KEPT_KINDS = frozenset({"glued separator", "checksum mismatch"})


class Recovery(NamedTuple):
    """What can be saved from one conversation file."""

    messages: list[Message]  # every salvageable message, in file order
    form: Form
    recovered: int  # of which the reference-defect decoders read
    dropped: list[Damage]  # what the rewritten file leaves out (its bytes go to quarantine)
    torn_records: int = 0  # whole records left out because their batch is torn (one entry each in ``dropped``)


class RepairAction(NamedTuple):
    user: str | None
    path: str  # relative to the root
    action: str  # rewrite, quarantine, remove, create, finish move, finish removal, set owner
    detail: str
    messages: int | None = None  # messages in a rewritten file
    recovered: int | None = None  # of which the reference-defect decoders read
    dropped: int | None = None  # unreadable items left out (kept in quarantine)

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "path": self.path,
            "action": self.action,
            "messages": self.messages,
            "recovered": self.recovered,
            "dropped": self.dropped,
            "detail": self.detail,
        }


def usable_user_folder(parts: tuple[str, ...], layout: L.Layout) -> bool:
    """Whether ``parts`` is where the layout keeps the user it reads back as (so that user's lock guards it)."""
    try:
        L.check_user_folder(L.user_id_from_parts(parts), parts, layout)
    except DialogError:
        return False
    return True


def recover(data: bytes, label: str) -> Recovery:
    """Every message that can be saved from a conversation file, in order.

    The same walk as :func:`dialogctl.fileformat.reader.parse_conversation` (frames, then
    unframed text item by item), except that an item the reader must skip is
    offered to :func:`mend_reference_item` before it is given up.
    """
    form: Form = detect_form(data[:65536]) or "documents"
    frames, _ = find_frames(data)
    batches = check_batches(frames)
    torn = {batch.at: batch for batch in batches.torn}
    messages: list[Message] = []
    dropped: list[Damage] = []
    recovered = 0
    torn_records = 0

    def line_at(offset: int) -> int:
        return data.count(b"\n", 0, offset) + 1

    def region(start: int, end: int, at_end: bool) -> None:
        nonlocal recovered
        items, stray = split_items(data, start, end, line_at(start), form)
        dropped.extend(Damage(label, s.line, "unexpected text", "text outside any message") for s in stray)
        if not items and not stray:
            dropped.append(Damage(label, line_at(start), "torn record", "incomplete text after the last record"))
        for number, item in enumerate(items):
            last = at_end and number == len(items) - 1
            found, damage, _ = salvage_region(data, item.start, item.start + len(item.data), item.line, form, label, last)
            lost = [d for d in damage if d.kind not in _KEPT_KINDS]
            if lost and not found and any(d.kind == "invalid YAML" for d in lost):
                mended = mend_reference_item(item.data, form)
                if mended is not None:
                    messages.append(mended)
                    recovered += 1
                    continue
            messages.extend(found)
            dropped.extend(lost)

    cursor = 0
    for i, frame in enumerate(frames):
        if data[cursor : frame.start].strip():
            region(cursor, frame.start, at_end=False)
        if i in batches.dropped:
            if i in torn:
                dropped.append(Damage(label, line_at(frame.start), TORN_BATCH, torn[i].describe()))
                torn_records += torn[i].records
            cursor = frame.after
            continue
        body = data[frame.start : frame.end]
        msg = decode_record(body)
        if msg is None:
            parsed = parse_record(body, "sequence" if body.startswith(b"- ") else "documents")
            if not isinstance(parsed, Message):
                dropped.append(Damage(label, line_at(frame.start), parsed[0], parsed[1]))
                cursor = frame.after
                continue
            msg = parsed
        messages.append(msg)
        cursor = frame.after
    if data[cursor:].strip():
        region(cursor, len(data), at_end=True)
    return Recovery(messages, form, recovered, dropped, torn_records)


_BLOCK_HEADER = re.compile(r"^((?:- |  )?content: )\|[ \t]*$", re.M)


_QUOTED_VALUE = re.compile(r'^(\s*(?:- )?[A-Za-z_][\w.-]*: )"(.*)"[ \t]*$', re.M)


_BARE_QUOTE = re.compile(r'(?<!\\)"')


def mend_reference_item(raw: bytes, form: Form) -> Message | None:
    """Read an item the reference writer wrote as invalid YAML, as it meant it; None if it cannot.

    The reference writer indents literal-block content by exactly two spaces
    more than the item's keys and writes ``content: |`` without an indentation
    indicator, so a reply whose first line starts with spaces makes YAML guess
    the indentation from that line and fail on the next one; the block is read
    again with the indicator made explicit (``|2``). It also wraps metadata
    strings in double quotes without escaping the quotes inside; such a value
    is quoted again properly. Only an item that then parses as a message is
    accepted.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fixed = _BLOCK_HEADER.sub(r"\1|2", text)
    fixed = _QUOTED_VALUE.sub(_requote, fixed)
    if fixed == text:
        return None
    parsed = parse_record(fixed.encode("utf-8"), form)
    return parsed if isinstance(parsed, Message) else None


def _requote(match: re.Match[str]) -> str:
    inner = match.group(2)
    if not _BARE_QUOTE.search(inner):
        return match.group(0)
    return match.group(1) + quote(inner)
