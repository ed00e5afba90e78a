"""Reading one conversation file: framed records fast, everything else salvaged.

The reader first finds dialogctl's frames (see :mod:`dialogctl.codec`); each
framed record is decoded by the exact small parser. Text between or after
frames (reference-written items, hand edits, torn writes) goes to
:mod:`dialogctl.salvage`, which needs ruamel.yaml and is imported only then.
"""

from __future__ import annotations

from .codec import Form, decode_record, detect_form, find_frames
from .models import Damage, Message

# How a record of ours cut short at a line break reads to the salvage parser.
_CUT_KINDS = frozenset({"torn record", "not a message", "invalid YAML", "unexpected text"})


class ParsedFile:
    """What a conversation file held: intact messages, damage, shape."""

    __slots__ = ("messages", "damage", "form", "framed")

    def __init__(self, form: Form | None = None) -> None:
        self.messages: list[Message] = []
        self.damage: list[Damage] = []
        self.form = form
        self.framed = 0  # records read through their frame


class _LineCounter:
    """Line numbers for increasing byte offsets, counted incrementally."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0
        self.line = 1

    def at(self, offset: int) -> int:
        if offset < self.offset:
            self.offset, self.line = 0, 1
        self.line += self.data.count(b"\n", self.offset, offset)
        self.offset = offset
        return self.line


def parse_conversation(data: bytes, label: str) -> ParsedFile:
    """Every intact message of a conversation file, and the damage found."""
    result = ParsedFile(form=detect_form(data[:65536]))
    if not data.strip():
        return result
    frames, _broken = find_frames(data)
    lines = _LineCounter(data)
    cursor = 0
    for frame in frames:
        if frame.start > cursor and data[cursor : frame.start].strip():
            _salvage(data, cursor, frame.start, lines, result, label, at_end=False)
        msg = decode_record(data[frame.start : frame.end])
        if msg is None:
            msg = _decode_framed_slowly(data, frame.start, frame.end, lines, result, label)
        if msg is not None:
            result.messages.append(msg)
            result.framed += 1
        cursor = frame.after
    if cursor < len(data) and data[cursor:].strip():
        messages, damage = len(result.messages), len(result.damage)
        _salvage(data, cursor, len(data), lines, result, label, at_end=True)
        tail = result.damage[damage:]
        if frames and len(result.messages) == messages and (not data.endswith(b"\n") or all(d.kind in _CUT_KINDS for d in tail)):
            # Text after our last record that holds no message (a lone "---", half a
            # record): one record whose write was cut short, however it fails to parse.
            # (A whole item with a duplicate key or bad bytes, ending its line, keeps its name.)
            del result.damage[damage:]
            result.damage.append(Damage(label, lines.at(cursor), "torn record", "incomplete text after the last record (an interrupted write)"))
    return result


def _salvage(data: bytes, start: int, end: int, lines: _LineCounter, result: ParsedFile, label: str, at_end: bool) -> None:
    from .salvage import salvage_region

    messages, damage, _ = salvage_region(data, start, end, lines.at(start), result.form or "documents", label, at_end)
    result.messages.extend(messages)
    result.damage.extend(damage)


def _decode_framed_slowly(data: bytes, start: int, end: int, lines: _LineCounter, result: ParsedFile, label: str) -> Message | None:
    """A framed record our exact parser does not know (an older writer): use YAML."""
    from .salvage import parse_record

    form: Form = "sequence" if data.startswith(b"- ", start) else "documents"
    parsed = parse_record(data[start:end], form)
    if isinstance(parsed, Message):
        return parsed
    result.damage.append(Damage(label, lines.at(start), parsed[0], parsed[1]))
    return None
