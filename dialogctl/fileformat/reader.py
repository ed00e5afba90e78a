"""Reading one conversation file: framed records fast, everything else salvaged.

The reader first finds dialogctl's frames (see :mod:`dialogctl.fileformat.codec`); each
framed record is decoded by the exact small parser, except the records of a
torn batch (a multi-record write cut off before its last record), which are
reported once and never read. Text between or after frames is read by
:mod:`dialogctl.fileformat.sequence` when it holds items in the servers' exact shape, and
whatever that reader is not certain of (hand edits, torn writes, the servers'
own invalid items) goes to :mod:`dialogctl.fileformat.salvage` one item at a time:
ruamel.yaml is imported only then.
"""

from __future__ import annotations

import re
import zlib
from itertools import islice, repeat
from typing import TYPE_CHECKING, NamedTuple

from ..models import Damage, Message
from .codec import TRAILER_PREFIX, Form, check_batches, decode_record, detect_form, find_frames, message_from_fields, scan_json

if TYPE_CHECKING:
    from collections.abc import Iterator

TORN_BATCH = "torn batch"

# How a record of ours cut short at a line break reads to the salvage parser.
_CUT_KINDS = frozenset({"torn record", "not a message", "invalid YAML", "unexpected text"})


class ParsedFile:
    """What a conversation file held: intact messages, damage, shape.

    ``settled`` is where the last valid frame ends (0 without frames), with how
    many messages and damage entries came before it: a file only grows, so a
    later read can start there (see :mod:`dialogctl.journal.catalog`). A batch still
    open at the end of the data (cut off, or being written) is not settled:
    ``settled`` is then where the frame before it ends.
    """

    __slots__ = ("messages", "damage", "form", "framed", "settled", "settled_messages", "settled_damage", "last_n")

    def __init__(self, form: Form | None = None) -> None:
        self.messages: list[Message] = []
        self.damage: list[Damage] = []
        self.form = form
        self.framed = 0  # records read through their frame
        self.settled = 0
        self.settled_messages = 0
        self.settled_damage = 0
        self.last_n = 0  # the n of the last valid frame


class _LineCounter:
    """Line numbers for increasing byte offsets, counted incrementally."""

    def __init__(self, data: bytes, first_line: int = 1) -> None:
        self.data = data
        self.offset = 0
        self.line = first_line
        self.first_line = first_line

    def at(self, offset: int) -> int:
        if offset < self.offset:
            self.offset, self.line = 0, self.first_line
        self.line += self.data.count(b"\n", self.offset, offset)
        self.offset = offset
        return self.line


def parse_conversation(data: bytes, label: str, form: Form | None = None, first_line: int = 1, after_frame: bool = False, content: bool = True) -> ParsedFile:
    """Every intact message of a conversation file, and the damage found.

    To read only what was added to a file since a valid frame ended, pass the
    bytes from there on as ``data`` with the file's ``form``, the line number
    ``data`` starts on and ``after_frame=True``: the result is then exactly the
    part of a whole-file read that comes after that frame.

    ``content=False`` is for callers that count and never show (the catalog):
    the same messages and damage, but a message's content may be left empty
    (it is, in a file of nothing but our records: decoding it is most of the
    cost of reading one).
    """
    whole = _read_framed_file(data, content)
    if whole is not None:
        whole.form = form or whole.form
        return whole
    result = ParsedFile(form=form or detect_form(data[:65536]))
    if not data.strip():
        return result
    # Files the servers wrote have no frames: one substring search spares them the frame pattern's scan.
    frames = find_frames(data)[0] if TRAILER_PREFIX in data else []
    batches = check_batches(frames)
    torn = {batch.at: batch for batch in batches.torn}
    cut_after = {batch.at + batch.records - 1 for batch in batches.torn}  # the last whole record of each torn batch
    lines = _LineCounter(data, first_line)
    cursor = 0
    for i, frame in enumerate(frames):
        if frame.start > cursor and data[cursor : frame.start].strip():
            damage = len(result.damage)
            _salvage(data, cursor, frame.start, lines, result, label, at_end=False)
            if i - 1 in cut_after:
                _name_the_cut_record(data, cursor, frame.start, lines, result, damage)
        if i in batches.dropped:
            if i in torn:
                result.damage.append(Damage(label, lines.at(frame.start), TORN_BATCH, torn[i].describe()))
        else:
            msg = decode_record(data[frame.start : frame.end])
            if msg is None:
                msg = _decode_framed_slowly(data, frame.start, frame.end, lines, result, label)
            if msg is not None:
                result.messages.append(msg)
                result.framed += 1
        cursor = frame.after
        if i + 1 == batches.settled:
            result.settled, result.last_n = cursor, frame.n
            result.settled_messages, result.settled_damage = len(result.messages), len(result.damage)
    if cursor < len(data) and data[cursor:].strip():
        messages, damage = len(result.messages), len(result.damage)
        _salvage(data, cursor, len(data), lines, result, label, at_end=True)
        if len(frames) - 1 in cut_after:
            _name_the_cut_record(data, cursor, len(data), lines, result, damage)
        tail = result.damage[damage:]
        if (frames or after_frame) and len(result.messages) == messages and (not data.endswith(b"\n") or all(d.kind in _CUT_KINDS for d in tail)):
            # Text after our last record that holds no message (a lone "---", half a
            # record): one record whose write was cut short, however it fails to parse.
            # (A whole item with a duplicate key or bad bytes, ending its line, keeps its name.)
            del result.damage[damage:]
            result.damage.append(Damage(label, lines.at(cursor), "torn record", "incomplete text after the last record (an interrupted write)"))
    return result


def _name_the_cut_record(data: bytes, start: int, end: int, lines: _LineCounter, result: ParsedFile, damage: int) -> None:
    """Right after the last whole record of a torn batch, an item that does not parse is the record the kill cut.

    (Text a server appended after it, unlocked, is read as usual; without this
    the cut record would be reported as whatever its bytes fail as.)
    """
    first = start
    while first < end and data[first] == 10:
        first += 1
    stop = end  # the cut record ends where the next item (a server's) begins
    for mark in (b"\n- ", b"\n---"):
        found = data.find(mark, first, end)
        if found >= 0:
            stop = min(stop, found + 1)
    top, bottom = lines.at(first), lines.at(stop)
    for k in range(damage, len(result.damage)):
        found_line = result.damage[k].line
        if found_line is not None and top <= found_line < max(bottom, top + 1) and result.damage[k].kind in _CUT_KINDS:
            result.damage[k] = Damage(result.damage[k].path, top, "torn record", "the rest of a record cut off with its batch (an interrupted write)")


def _read_framed_file(data: bytes, content: bool = True) -> ParsedFile | None:
    """Data that is nothing but dialogctl's own framed records, read in one pass; None if it is anything else.

    Each record and its frame line are matched by one pattern, checked (length,
    CRC-32, fields) and decoded field by field: the same messages the general
    path below finds, without its separate passes and copies. Batches must be
    whole and in order here (each record of a batch follows the one before
    it); anything else, such as a torn batch, is left to the general path.
    Without ``content`` a literal block is not decoded (the messages' content
    is ""): one check that all the data is UTF-8 stands for the decoding of
    every block, which could fail only where that check does (the pattern's
    other text around the blocks is ASCII). A quoted content is still parsed
    (it can fail to be a JSON string).
    """
    import zlib

    from .codec import framed_record_pattern

    form: Form
    first = len(data) - len(data.lstrip(b"\n"))  # each write of ours begins with a line break
    if data.startswith(b"---\n", first):
        form = "documents"
    elif data.startswith(b"- ", first):
        form = "sequence"
    else:
        return None
    match = framed_record_pattern(form).match
    view = memoryview(data)
    crc32 = zlib.crc32
    messages: list[Message] = []
    pos, size, n = first, len(data), 0
    batch: tuple[bytes, bytes] | None = None  # first and last n of the batch being read, as written
    try:
        while pos < size:
            if data[pos] == 10:  # the empty line before a record
                pos += 1
                continue
            m = match(data, pos)
            if m is None:
                return None
            role, quoted, chomp, block, stamp, meta, number, batch_first, batch_last, length, crc = m.groups()
            trailer = m.start(7) - 14  # len(b"# dialogctl n=")
            if int(length) != trailer - pos or crc32(view[pos:trailer]) != int(crc, 16):
                return None
            record_n = int(number)
            if batch is not None or batch_last is not None:
                # In a batch: its first record opens it, each next one follows, its last closes it.
                if batch is not None:
                    if (batch_first, batch_last) != batch or record_n != n + 1:
                        return None
                elif batch_first != number or record_n >= int(batch_last):
                    return None
                else:
                    batch = (batch_first, batch_last)
                if number == batch_last:
                    batch = None
            if content:
                msg = message_from_fields(
                    form,
                    role.decode(),
                    None if quoted is None else quoted.decode(),
                    None if chomp is None else chomp.decode(),
                    None if block is None else block.decode(),
                    stamp.decode(),
                    None if meta is None else meta.decode(),
                )
            else:
                msg = _message_without_content(form, role, quoted, stamp, meta)
            if msg is None:
                return None
            messages.append(msg)
            n = record_n
            pos = m.end()
    except UnicodeDecodeError:
        return None
    finally:
        view.release()
    if batch is not None:
        return None  # a batch still open at the end: torn (or being written)
    if not content and not data.isascii():  # last: a file that is not all records of ours never pays for it
        try:
            data.decode()
        except UnicodeDecodeError:
            return None
    result = ParsedFile(form)
    result.messages = messages
    result.framed = result.settled_messages = len(messages)
    result.settled, result.last_n = pos, n
    return result


_PLAIN_ROLES = {b"user": "user", b"assistant": "assistant", b"system": "system"}


def _message_without_content(form: Form, role: bytes, quoted: bytes | None, stamp: bytes, meta: bytes | None) -> Message | None:
    """:func:`~dialogctl.fileformat.codec.message_from_fields` of a record's fields, content left out ("").

    The common record (a plain role, a timestamp with nothing to unescape,
    metadata that is one JSON object) is read here with the same rules;
    anything else goes through ``message_from_fields`` itself, which decides.
    """
    text = stamp.decode()
    plain_role = _PLAIN_ROLES.get(role)
    if plain_role is not None and quoted is None and len(text) >= 2 and text[0] == '"' == text[-1]:
        inner = text[1:-1]
        if "\\" not in inner and '"' not in inner and inner.isprintable():
            if meta is None:
                return Message(plain_role, "", inner)
            meta_text = meta.decode()
            try:
                metadata, end = scan_json(meta_text, 0)
            except (ValueError, StopIteration, RecursionError):
                metadata = end = None
            if end == len(meta_text) and type(metadata) is dict:
                return Message(plain_role, "", inner, metadata)
    quoted_text = None if quoted is None else quoted.decode()
    return message_from_fields(form, role.decode(), quoted_text, None, None, text, None if meta is None else meta.decode())


# A frame line after its "# dialogctl n=" (see codec.TRAILER_RE), and its line break unless it ends the data.
_FRAME_LINE_REST = re.compile(rb"(\d{1,15})(?: batch=(\d{1,15})-(\d{1,15}))? len=(\d{1,15}) crc32=([0-9a-f]{8})(?:\n|\Z)")
_RECORD_STARTS = (b"- ", b"---\n")  # how every record of ours begins (codec.encode_record)


class RecordSpans(NamedTuple):
    """Where each record of a file of nothing but records of ours lies (see :func:`whole_records`)."""

    starts: list[int]  # where record i begins
    ends: list[int]  # where its body ends (its frame line begins)
    afters: list[int]  # where the text after its frame line begins (line breaks, the next record, or the end of the data)


def whole_records(data: bytes) -> RecordSpans | None:
    """The records of data that is nothing but whole records of ours, found without decoding any; None for anything else.

    When this answers, :func:`parse_conversation` reads exactly one message
    per record, in order, with no damage, each one what
    :func:`~dialogctl.fileformat.codec.decode_record` gives for its body. What
    is checked is what the general path needs for that: records back to back
    (only line breaks before, between and after them), each beginning as
    ours do, its length and CRC-32 as its frame line says, batches whole and
    in order (stricter than the general path, which is then simply used). A
    record whose CRC-32 matches is one
    :func:`~dialogctl.fileformat.codec.encode_record` wrote, and every version
    of it writes what ``decode_record`` reads; a caller that decodes a record
    anyway and gets None reads the file whole. No YAML and no text: one split
    of the bytes on frame lines and a CRC-32 of every byte.
    """
    parts = data.split(TRAILER_PREFIX)
    if len(parts) < 2 or not all(map(bytes.endswith, parts[:-1], repeat(b"\n"))):
        return None  # no frame line, or "# dialogctl n=" other than at a line start
    starts: list[int] = []
    ends: list[int] = []
    afters: list[int] = []
    crc32 = zlib.crc32
    match = _FRAME_LINE_REST.match
    prefix, size = len(TRAILER_PREFIX), len(data)
    view = memoryview(data)
    head = parts[0]
    start = len(head) - len(head.lstrip(b"\n"))
    end = len(head)  # where the frame line of the record being read begins
    batch: tuple[bytes, bytes] | None = None  # first and last n of the batch being read, as written
    n = 0
    try:
        for part in islice(parts, 1, None):
            m = match(part)
            if m is None:
                return None
            number, first, last, length, crc = m.groups()
            if int(length) != end - start or not data.startswith(_RECORD_STARTS, start) or crc32(view[start:end]) != int(crc, 16):
                return None
            if last is not None or batch is not None:
                # In a batch: its first record opens it, each next one follows, its last closes it.
                if batch is not None:
                    if first != batch[0] or last != batch[1] or int(number) != n + 1:
                        return None
                elif first != number or int(number) >= int(last):  # type: ignore[arg-type]
                    return None
                else:
                    batch = (first, last)  # type: ignore[assignment]
                if number == last:
                    batch = None
                n = int(number)
            starts.append(start)
            ends.append(end)
            start = end + prefix + m.end()
            afters.append(start)
            end += prefix + len(part)
            while start < end and data[start] == 10:
                start += 1
    finally:
        view.release()
    if start != size or batch is not None:
        return None  # text after the last frame line, or a batch not closed
    return RecordSpans(starts, ends, afters)


def _salvage(data: bytes, start: int, end: int, lines: _LineCounter, result: ParsedFile, label: str, at_end: bool) -> None:
    """Read unframed text: in a sequence file, the servers' items fast and only the rest with YAML, one item at a time."""
    from .salvage import salvage_region

    form = result.form or "documents"
    regions = read_reference_items(data, start, end, result) if form == "sequence" else iter([(start, end)])
    for first, last in regions:
        # The same items, lines and damage as one call over [start, end): the salvage reader
        # cuts a region into items at the same lines and reads each item on its own.
        messages, damage, _ = salvage_region(data, first, last, lines.at(first), form, label, at_end and last == end)
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


def read_reference_items(data: bytes, start: int, end: int, result: ParsedFile) -> Iterator[tuple[int, int]]:
    """Read the items of ``data[start:end]`` that are in the servers' exact shape into ``result``.

    Yields, in order, the byte ranges left for YAML: each item the fast reader
    is not certain about (or text before the first item), one at a time, so
    the items after it are read fast again. The caller reads each range before
    asking for the next, which keeps the messages in file order. The text is
    decoded once, and checked once for characters YAML does not carry as
    written (see :func:`dialogctl.fileformat.sequence.decode`).
    """
    from .sequence import decode, next_item, read_items

    text, carried = decode(data, start, end)
    size = len(text)
    one_byte_chars = size == end - start
    char_at, byte_at = 0, start

    def offset(char: int) -> int:
        nonlocal char_at, byte_at
        if one_byte_chars:
            return start + char
        byte_at += len(text[char_at:char].encode("utf-8", "surrogateescape"))
        char_at = char
        return byte_at

    pos = 0
    while pos < size:
        messages, stop = read_items(text, pos, carried)
        result.messages.extend(messages)
        if stop >= size:
            return
        pos = next_item(text, stop)
        yield offset(stop), offset(pos)
