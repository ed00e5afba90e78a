"""Imports: messages from a file into one conversation of the journal, all or nothing.

Formats (:func:`detect_format` tells them apart by file name and content):

* ``json``: the reference implementation's export ``{userId, timestamp,
  messageCount, messages}``, and dialogctl's json exports (that object, or an
  array of them) and ``show --format json``;
* ``jsonl``: dialogctl's export lines, or ``append --jsonl`` lines;
* ``csv``: RFC 4180 with a header row naming at least ``role`` and
  ``content`` (dialogctl's export, or the reference's ``timestamp,role,content``);
  quoted cells may hold commas, quotes and line breaks. In a file with
  dialogctl's own header the formula neutralising of the export is undone
  (:func:`dialogctl.exporters.restore_cell`) unless ``raw_csv`` says the file
  was exported with ``--raw-csv``; ``model`` and ``totalTokens`` are derived from
  ``metadata`` and ignored;
* ``openai``: a ``{"messages": [{"role", "content", ...}]}`` line; keys other
  than role and content (``name``, ``weight``, ``tool_calls``...) are kept in
  the message's metadata;
* ``sqlite``: a database written by ``export --format sqlite``.

Every record is validated before anything is written, and an error names the
record (line, JSON path or table row) and the field, never the message text.
Messages without a timestamp (openai lines never have one) get the time of
the import. A file holding messages of more than one conversation is refused:
an import fills one conversation.

Reading streams (:func:`read_import`): the input is read once, a piece at a
time (a json file's ``messages`` array element by element, see
:class:`_JsonStream`; a sqlite database in place), and each validated message
goes to a :class:`~dialogctl.spool.MessageSpool` on disk, so memory does not
grow with the import.

Writing is all or nothing, so a failure or a crash leaves the journal as it
was or with the whole import in it:

* into the current conversation or a named one: one batch appended under the
  user's lock (:meth:`Journal.append` with ``one_write``), marked as a batch
  in its frames, so a write cut short by a kill reads as nothing at all
  (:mod:`dialogctl.codec`), in as many ``write`` calls as its size takes.
  ``archiveThreshold`` still applies, without splitting the batch: a non-empty
  conversation the import would take past the threshold is archived first,
  and an import that alone reaches it is archived right after it is written;
* as a new archive: the file is written whole (temp file, fsync, rename) under
  the user's lock and never replaces an existing archive.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from . import layout as L
from .codec import check_message
from .errors import InvalidInput, StorageError, storage_error
from .exporters import CSV_COLUMNS, restore_cell
from .journal import Journal
from .models import ROLES, AppendResult, ConversationRef, Message
from .spool import MessageSpool
from .storage import Folder
from .times import TIMESTAMP_RULE, parse_timestamp, utc_now_iso

FORMATS = ("json", "jsonl", "csv", "openai", "sqlite")
SQLITE_MAGIC = b"SQLite format 3\x00"
HEAD_BYTES = 1 << 20  # what format detection looks at
_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20  # text read at a time
_MAX_NAMED = 1000  # distinct conversations counted exactly in the "several conversations" error

_MESSAGE_FIELDS = frozenset({"role", "content", "timestamp", "metadata"})
_IDENTITY_FIELDS = frozenset({"user", "conversation", "archived", "index"})  # dialogctl's export lines; index is recomputed
_OBJECT_FIELDS = frozenset({"userId", "user", "timestamp", "messageCount", "messages", "conversation", "archived"})
_SHOWN_ROLE = re.compile(r"[A-Za-z_-]{1,32}")

Record = tuple[str, Message]  # (which conversation of the file it belongs to, message)


class ImportInput:
    """The bytes of an import, read once from a file or stdin: first the head (to tell the format), then the rest.

    A UTF-8 byte order mark at the start is skipped; error offsets count from
    the start of the input.
    """

    def __init__(self, stream: BinaryIO, path: str | None = None) -> None:
        self.stream = stream
        self.path = path  # a named file (sqlite reads it in place); None for stdin
        head = _read_full(stream, HEAD_BYTES)
        self.start = len(_BOM) if head.startswith(_BOM) else 0
        self.head = head[self.start :]
        self._served = False

    def _raw(self) -> BinaryIO:
        if self._served:
            raise RuntimeError("an import input is read once")
        self._served = True
        return io.BufferedReader(_Chain(self.head, self.stream), _CHUNK)

    def lines(self) -> Iterator[tuple[int, int, bytes]]:
        """(line number, byte offset, line without its LF): only LF ends a line."""
        offset = self.start
        for number, line in enumerate(self._raw(), 1):
            yield number, offset, line[:-1] if line.endswith(b"\n") else line
            offset += len(line)

    def text(self, where: str) -> Iterator[str]:
        """The input decoded as UTF-8, a piece at a time; an error names the byte offset."""
        raw = self._raw()
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = self.start
        while True:
            chunk = raw.read(_CHUNK)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                held = len(exc.object) - len(chunk)  # bytes of a character begun in the previous piece
                raise InvalidInput(f"{where} is not valid UTF-8 (byte offset {offset - held + exc.start})") from None
            offset += len(chunk)
            if text:
                yield text
            if not chunk:
                return

    def copy_to(self, fd: int) -> None:
        raw = self._raw()
        while chunk := raw.read(_CHUNK):
            _write_all(fd, chunk)


class _Chain(io.RawIOBase):
    """``head``, then what ``stream`` holds."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = memoryview(head)
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_full(stream: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- telling formats apart -------------------------------------------------------------


def detect_format(name: str | None, head: bytes) -> str:
    """The format of an import from its file name (``None`` for stdin) and its first bytes (:data:`HEAD_BYTES` of them)."""
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    ext = os.path.splitext(name or "")[1].lower()
    if ext in (".csv", ".json"):
        return ext[1:]
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        line, newline, _ = head.partition(b"\n")
        try:
            first = json.loads(line)
        except ValueError:
            if not newline and len(head) >= HEAD_BYTES // 2:
                # A first line longer than the head: a one-line export, or a long openai line.
                return _long_first_line(line)
            return "jsonl" if ext in (".jsonl", ".ndjson") else "json"  # an object over several lines
        except RecursionError:
            return "jsonl"  # a first line nested too deep to parse: the jsonl reader names it
        if isinstance(first, dict) and "messages" in first:
            return "json" if "userId" in first or "user" in first else "openai"
        return "jsonl"
    if not head or ext in (".jsonl", ".ndjson"):
        return "jsonl"
    if b"," in head.split(b"\n", 1)[0]:
        return "csv"
    raise InvalidInput(f"cannot tell the format of {name or 'stdin'}; pass --format json, jsonl, csv, openai or sqlite")


def _long_first_line(line: bytes) -> str:
    """json or openai, for an object whose first line is longer than the head: by its keys before ``messages``."""
    try:
        text = line.decode("utf-8", "ignore")
        stream = _JsonStream(iter([text]), "stdin", complete=False)
        keys = stream.keys_before("messages")
    except (InvalidInput, _Incomplete):
        return "json"
    if keys is None:
        return "jsonl"
    return "json" if keys & {"userId", "user"} or "messages" not in keys else "openai"


# --- reading ---------------------------------------------------------------------------------


def read_import(data: ImportInput, fmt: str, source: str, raw_csv: bool = False) -> MessageSpool:
    """Every message of an import, validated, kept in a :class:`~dialogctl.spool.MessageSpool` (the caller closes it).

    Raises :class:`InvalidInput` naming the first bad record (line, JSON path or
    table row, and field); nothing is kept then. Memory stays flat however
    large the input: records are read and checked one at a time.
    """
    now = utc_now_iso()
    if fmt == "sqlite":
        records = _sqlite_records(data, source, now)
    elif fmt == "json":
        records = _json_records(data, source, now)
    elif fmt == "jsonl":
        records = _jsonl_records(data, source, now)
    elif fmt == "csv":
        records = _csv_records(data, source, now, raw_csv)
    elif fmt == "openai":
        records = _openai_records(data, source, now)
    else:
        raise InvalidInput(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    spool = MessageSpool()
    conversations: dict[str, None] = {}
    more = False
    try:
        for identity, msg in records:
            if msg is not None:
                spool.add(msg)
            if identity is not None and identity not in conversations:
                if len(conversations) < _MAX_NAMED:
                    conversations[identity] = None
                else:
                    more = True
        if len(conversations) > 1:
            named = list(conversations)
            shown = ", ".join(named[:3]) + (", ..." if len(named) > 3 else "")
            count = f"more than {_MAX_NAMED}" if more else str(len(named))
            raise InvalidInput(
                f"{source} holds messages of {count} conversations ({shown}); an import fills one conversation",
                hint="export one conversation at a time (--conversation CID or --archive ID), or pick one out with jq",
            )
    except BaseException:
        spool.close()
        raise
    return spool


def parse_import(content: str | bytes, fmt: str, source: str, raw_csv: bool = False) -> list[Message]:
    """:func:`read_import` of text (or the bytes of a database) held in memory, as a list."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with read_import(ImportInput(io.BytesIO(data)), fmt, source, raw_csv) as spool:
        return list(spool.messages())


def _message(raw: dict[str, Any], where: str, now: str, field: str = "field") -> Message:
    role = raw.get("role")
    if not isinstance(role, str):
        raise InvalidInput(f"{where}: {field} 'role' must be text")
    if role not in ROLES:
        # A role is shown only when it looks like one: a misplaced column could hold message text.
        shown = repr(role) if _SHOWN_ROLE.fullmatch(role) else f"of {len(role)} characters"
        raise InvalidInput(f"{where}: {field} 'role': unknown role {shown}; use one of {', '.join(ROLES)}")
    content = raw.get("content")
    if not isinstance(content, str):
        raise InvalidInput(f"{where}: {field} 'content' must be text")
    timestamp = raw.get("timestamp")
    if timestamp is None:
        timestamp = now
    elif not isinstance(timestamp, str) or parse_timestamp(timestamp) is None:
        raise InvalidInput(f"{where}: {field} 'timestamp' must be {TIMESTAMP_RULE}")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: {field} 'metadata' must be an object")
    msg = Message(role, content, timestamp, metadata)
    try:
        check_message(msg)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    return msg


def _identity(user: Any, conversation: Any, archived: Any, where: str) -> str:
    for name, value, kind in (("user", user, str), ("conversation", conversation, str), ("archived", archived, bool)):
        if value is not None and not isinstance(value, kind):
            raise InvalidInput(f"{where}: field '{name}' must be {'text' if kind is str else 'true or false'}")
    return f"{user or '?'}/{conversation or 'current'}{' (archived)' if archived else ''}"


def _unknown(keys: Any, known: frozenset[str], where: str, field: str = "field") -> None:
    unknown = sorted(set(keys) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown {field}(s) {', '.join(repr(k[:40]) for k in unknown[:5])}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Strict JSON: no NaN or Infinity, no repeated keys.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _load_json(text: str, where: str) -> Any:
    """Parse one JSON value strictly; a syntax error names its character."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: not valid JSON at character {exc.pos + 1} ({exc.msg})") from None
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    except RecursionError:  # too deep for the parser: found again by a loop, to name its path
        raise InvalidInput(f"{where}: {_too_deep(text)}") from None


def _too_deep(text: str) -> str:
    """Where ``text`` (JSON too deep for the parser) first nests too deep, found by a loop."""
    from .codec import MAX_METADATA_DEPTH
    from .nesting import deepest

    found = deepest(text, MAX_METADATA_DEPTH)
    if found is None or not found.path:
        return f"nested deeper than {MAX_METADATA_DEPTH} levels"
    return found.describe(MAX_METADATA_DEPTH)


class _Incomplete(Exception):
    """The text ran out inside a value (only when reading a head, which may stop anywhere)."""


class _JsonStream:
    """A JSON document read a piece at a time, for the json format's large ``messages`` arrays.

    The outer structure (the top-level object or array, and the ``messages``
    arrays) is walked here; every other value, and each message, is decoded
    by the strict decoder on its own, so memory holds one message at a time.
    The same input gives the same errors as decoding it whole would, at the
    same line and column (counted in ``\\n`` as :mod:`json` counts them).
    """

    _WS = re.compile(r"[ \t\n\r]*")
    _NEAR_END = 32  # an error this close to the end of the buffer may be a value cut by it

    def __init__(self, pieces: Iterator[str], source: str, complete: bool = True) -> None:
        self.pieces = pieces
        self.source = source
        self.complete = complete  # False: the text may stop anywhere (a head); running out is _Incomplete
        self.buf = ""
        self.pos = 0  # in buf
        self.base = 0  # offset of buf[0] in the document
        self.lines = 0  # line breaks before buf[0]
        self.last_break = -1  # offset of the last line break before buf[0]
        self.eof = False

    def _more(self, at_least: int = 0) -> bool:
        """Read on (at least ``at_least`` more characters, unless the text ends); False at the end."""
        if self.pos:
            done = self.buf[: self.pos]
            self.lines += done.count("\n")
            last = done.rfind("\n")
            if last >= 0:
                self.last_break = self.base + last
            self.buf, self.base, self.pos = self.buf[self.pos :], self.base + self.pos, 0
        grown = 0
        parts = [self.buf]
        while not self.eof and grown <= at_least:
            piece = next(self.pieces, None)
            if piece is None:
                self.eof = True
                break
            parts.append(piece)
            grown += len(piece)
        self.buf = "".join(parts)
        return grown > 0

    def error(self, message: str, pos: int) -> InvalidInput:
        """A syntax error at document offset ``pos``, named by line and column."""
        at = pos - self.base
        line = self.lines + self.buf.count("\n", 0, at) + 1
        last = self.buf.rfind("\n", 0, at)
        column = at - last if last >= 0 else pos - self.last_break
        return InvalidInput(f"{self.source}: not valid JSON at line {line} column {column} ({message})")

    def peek(self) -> str:
        """The next character after white space ('' at the end)."""
        while True:
            self.pos = self._WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                if not self.complete:
                    raise _Incomplete
                return ""

    def take(self, char: str, expecting: str) -> None:
        if self.peek() != char:
            raise self.error(f"Expecting {expecting}", self.base + self.pos)
        self.pos += 1

    def value(self, where: str) -> Any:
        """The next whole value, strictly decoded."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - self._NEAR_END
                if cut and not self.eof:
                    self._more(len(self.buf) - self.pos)  # the value may go on: read at least as much again, and retry
                    continue
                if cut and not self.complete:
                    raise _Incomplete from None
                raise self.error(exc.msg, self.base + exc.pos) from None
            except ValueError as exc:  # a repeated key, NaN
                raise InvalidInput(f"{where}: {exc}") from None
            except RecursionError:
                raise InvalidInput(f"{where}: {_too_deep(self.buf[self.pos :])}") from None
            if end == len(self.buf) and not self.eof:
                self._more()  # a number may go on
                continue
            self.pos = end
            return value

    def members(self, where: str) -> Iterator[tuple[str, bool]]:
        """The keys of the object starting here, each before its value is read: (key, whether the value is an array).

        The caller reads each value (:meth:`value`, or :meth:`elements` for an array)
        before asking for the next key.
        """
        self.take("{", "value")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self.error("Expecting property name enclosed in double quotes", self.base + self.pos)
            key = self.value(where)
            self.take(":", "':' delimiter")
            yield key, self.peek() == "["
            if self.closed("}"):
                return

    def elements(self, where: str, whole: bool = True) -> Iterator[Any]:
        """The elements of the array starting here, one at a time (``whole``: each decoded; else the caller reads it)."""
        self.take("[", "value")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value(where) if whole else None
            if self.closed("]"):
                return

    def closed(self, closing: str) -> bool:
        """After a member: True past the ``closing`` bracket, False past the ',' before the next one."""
        char = self.peek()
        if char != closing and char != ",":
            raise self.error("Expecting ',' delimiter", self.base + self.pos)
        self.pos += 1
        return char == closing

    def end(self) -> None:
        """Nothing but white space may follow the document."""
        if self.peek():
            raise self.error("Extra data", self.base + self.pos)

    def keys_before(self, stop: str) -> set[str] | None:
        """The top-level object's keys up to ``stop`` (included; its value is not read); None if the text is not an object."""
        if self.peek() != "{":
            return None
        keys: set[str] = set()
        for key, _ in self.members(""):
            keys.add(key)
            if key == stop:
                return keys
            self.value("")
        return keys


# What the record readers yield: (conversation, message) for each message, or, for
# the json format, whose conversation is known only at the end of its object,
# (None, message) for each and then (conversation, None) once.
Found = tuple[str | None, Message | None]


def _json_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    stream = _JsonStream(data.text(source), source)
    start = stream.peek()
    if start == "{":
        yield from _json_object(stream, source, "", now)
    elif start == "[":
        for number, _ in enumerate(stream.elements(source, whole=False)):
            if stream.peek() != "{":
                stream.value(source)
                raise InvalidInput(f"{source}: [{number}]: expected an object with userId and messages")
            yield from _json_object(stream, source, f"[{number}].", now)
    else:
        if start:
            stream.value(source)
            stream.end()
            raise InvalidInput(f"{source}: expected an object with userId and messages, or an array of them")
        raise stream.error("Expecting value", stream.base + stream.pos)
    stream.end()


def _json_object(stream: _JsonStream, source: str, path: str, now: str) -> Iterator[Found]:
    """One conversation object, its messages checked and handed on one at a time as they are read."""
    where = f"{source}: {path.rstrip('.') or 'the top-level object'}"
    pairs: list[tuple[str, Any]] = []
    count: int | None = None
    for key, is_array in stream.members(where):
        if key == "messages" and is_array:
            count = 0
            for raw in stream.elements(where):
                at = f"{source}: {path}messages[{count}]"
                if not isinstance(raw, dict):
                    raise InvalidInput(f"{at}: expected an object with role, content and timestamp")
                _unknown(raw, _MESSAGE_FIELDS | {"index"}, at)
                yield None, _message(raw, at, now)
                count += 1
            pairs.append((key, None))
        else:
            pairs.append((key, stream.value(where)))
    try:
        obj = _no_duplicates(pairs)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    _unknown(obj, _OBJECT_FIELDS, where)
    if count is None:
        raise InvalidInput(f"{where}: field 'messages' must be an array")
    expected = obj.get("messageCount")
    if expected is not None and expected != count:
        raise InvalidInput(f"{where}: messageCount says {expected} but messages holds {count}")
    yield _identity(obj.get("userId", obj.get("user")), obj.get("conversation"), obj.get("archived"), where), None


def _lines(data: ImportInput, source: str) -> Iterator[tuple[int, str]]:
    """Numbered lines that hold more than white space; only LF ends a line (JSON text may hold raw U+2028 and the like)."""
    for number, offset, raw in data.lines():
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{source} is not valid UTF-8 (byte offset {offset + exc.start})") from None
        if line.strip():
            yield number, line


def _jsonl_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    for number, line in _lines(data, source):
        where = f"{source} line {number}"
        raw = _load_json(line, where)
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where}: expected a JSON object")
        _unknown(raw, _MESSAGE_FIELDS | _IDENTITY_FIELDS, where)
        identity = _identity(raw.get("user"), raw.get("conversation"), raw.get("archived"), where)
        yield identity, _message(raw, where, now)


def _openai_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    for number, line in _lines(data, source):
        where = f"{source} line {number}"
        raw = _load_json(line, where)
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
            raise InvalidInput(f"{where}: expected an object with a 'messages' array")
        _unknown(raw, frozenset({"messages"}), where)
        for i, item in enumerate(raw["messages"]):
            at = f"{where}, messages[{i}]"
            if not isinstance(item, dict):
                raise InvalidInput(f"{at}: expected an object with role and content")
            extra = {k: v for k, v in item.items() if k not in ("role", "content")}
            yield f"line {number}", _message({"role": item.get("role"), "content": item.get("content"), "metadata": extra or None}, at, now)


_EOL = re.compile(r"\r\n|\r|\n")


def _universal_lines(pieces: Iterator[str]) -> Iterator[str]:
    """Lines as ``io.StringIO(text, newline="")`` cuts them (at LF, CR or CRLF, kept), from text read a piece at a time."""
    held: list[str] = []  # the start of a line not ended yet
    for piece in pieces:
        at = 0
        if held and held[-1].endswith("\r"):
            if piece.startswith("\n"):
                held.append("\n")
                at = 1
            yield "".join(held)
            held = []
        for m in _EOL.finditer(piece, at):
            if m.end() == len(piece) and m.group() == "\r":
                break  # maybe the first half of a CRLF: the next piece tells
            held.append(piece[at : m.end()])
            yield "".join(held)
            held = []
            at = m.end()
        if at < len(piece):
            held.append(piece[at:])
    if held:
        yield "".join(held)


def _csv_records(data: ImportInput, source: str, now: str, raw_csv: bool) -> Iterator[Found]:
    import csv

    csv.field_size_limit(2**31 - 1)  # content has no length limit
    reader = csv.reader(_universal_lines(data.text(source)), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = [name.strip() for name in header]
        _unknown(columns, frozenset(CSV_COLUMNS), f"{source} line 1 (header)", "column")
        if len(set(columns)) != len(columns) or not {"role", "content"} <= set(columns):
            raise InvalidInput(f"{source} line 1 (header): the header must name 'role' and 'content', each column once")
        restore = tuple(columns) == CSV_COLUMNS and not raw_csv
        line, number = reader.line_num + 1, 0
        for row in reader:
            where, line = f"{source} line {line} (record {number + 1})", reader.line_num + 1
            if not row:
                continue  # a blank line
            number += 1
            if len(row) != len(columns):
                raise InvalidInput(f"{where}: {len(row)} cells where the header has {len(columns)}")
            cells = dict(zip(columns, (restore_cell(c) for c in row) if restore else row, strict=True))
            yield _csv_record(cells, where, now)
    except csv.Error as exc:
        raise InvalidInput(f"{source} line {reader.line_num}: not valid CSV ({exc})") from None


def _csv_record(cells: dict[str, str], where: str, now: str) -> Record:
    archived: bool | None = None
    if cells.get("archived"):
        if cells["archived"] not in ("true", "false"):
            raise InvalidInput(f"{where}: column 'archived' must be true or false")
        archived = cells["archived"] == "true"
    if cells.get("index") and not cells["index"].isdigit():
        raise InvalidInput(f"{where}: column 'index' must be a whole number")
    metadata: Any = None
    if cells.get("metadata"):
        metadata = _load_json(cells["metadata"], f"{where}: column 'metadata'")
        if not isinstance(metadata, dict):
            raise InvalidInput(f"{where}: column 'metadata' must be a JSON object")
    raw = {"role": cells["role"], "content": cells["content"], "timestamp": cells.get("timestamp") or None, "metadata": metadata}
    return _identity(cells.get("user") or None, cells.get("conversation") or None, archived, where), _message(raw, where, now, "column")


def _sqlite_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    """The rows of a database file, read in place (stdin is copied to a temporary file first: SQLite reads files)."""
    import sqlite3
    import tempfile
    from collections import Counter
    from urllib.parse import quote

    copy = None
    try:
        if data.path is None:
            copy = tempfile.NamedTemporaryFile(prefix="dialogctl-import-", suffix=".db")
            try:
                data.copy_to(copy.fileno())
            except OSError as exc:
                raise storage_error(exc, "copy", f"{source} to a temporary file") from None
            path = copy.name
        else:
            path = data.path
        # Read-only and immutable: nothing is ever written beside the file (no journal, no -shm).
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro&immutable=1", uri=True)
        found: Counter[int] = Counter()
        try:
            db.execute("PRAGMA query_only = ON")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"conversations", "messages"} <= tables:
                raise InvalidInput(f"{source}: not a database written by 'dialogctl export --format sqlite' (no conversations and messages tables)")
            expected = dict(db.execute("SELECT id, message_count FROM conversations"))
            rows = db.execute(
                "SELECT c.id, c.user, c.conversation, c.archived, m.id, m.role, m.content, m.timestamp, m.metadata "
                'FROM messages m JOIN conversations c ON c.id = m.conversation_id ORDER BY c.id, m."index"'
            )
            for cid, user, conversation, archived, mid, role, content, timestamp, meta in rows:
                where = f"{source}: messages row {mid}"
                if archived not in (0, 1):
                    raise InvalidInput(f"{source}: conversations row {cid}: column 'archived' must be 0 or 1")
                metadata = _load_json(meta, f"{where}: column 'metadata'") if isinstance(meta, str) else meta
                if metadata is not None and not isinstance(metadata, dict):
                    raise InvalidInput(f"{where}: column 'metadata' must hold a JSON object")
                raw = {"role": role, "content": content, "timestamp": timestamp, "metadata": metadata}
                yield _identity(user, conversation, bool(archived), where), _message(raw, where, now, "column")
                found[cid] += 1
        except sqlite3.Error as exc:
            raise InvalidInput(f"{source}: not a readable SQLite database of dialogctl's shape ({exc})") from None
        finally:
            db.close()
        for cid, count in expected.items():
            if found[cid] != count:
                raise InvalidInput(f"{source}: conversations row {cid}: message_count says {count} but the messages table holds {found[cid]}")
    finally:
        if copy is not None:
            copy.close()


# --- writing ---------------------------------------------------------------------------------


def import_messages(
    journal: Journal, user: str, messages: Sequence[Message], conversation: str | None = None, as_archive: str | None = None, dry_run: bool = False
) -> AppendResult:
    """Put validated messages into one conversation of ``user``, all or nothing (see the module docstring).

    With ``dry_run`` nothing is written (not even a lock file): the result's
    ``messages`` is what the target holds now.
    """
    L.validate_user_id(user)
    if conversation is not None and as_archive is not None:
        raise InvalidInput("--conversation and --as-archive name different targets; pass one")
    if conversation is not None and conversation != "current":
        L.validate_name(conversation)
    if as_archive is not None:
        L.validate_name(as_archive, "archive id")
    if not messages:
        raise InvalidInput("nothing to import")
    count = len(messages)
    if dry_run:
        return _dry_run(journal, user, count, conversation, as_archive)
    if as_archive is None:
        return journal.append(user, messages, conversation, one_write=True, command="import")
    ref = ConversationRef(user, "archive", as_archive)
    journal.locked(user, "import", lambda dialogs: _import_archive(journal, dialogs, ref, messages), create=True)
    return AppendResult(user, as_archive, count, count)


def _import_archive(journal: Journal, dialogs: Folder, ref: ConversationRef, messages: Sequence[Message]) -> None:
    """A new archive, and (for a user who has none) the empty current conversation the servers leave beside every archive.

    A user with archives always has ``current.yaml`` (the servers' archive
    leaves it empty; ``verify`` calls its absence an unfinished archive), so
    importing the first conversation of a new user as an archive leaves the
    user as an archive would. If that empty file cannot be made, the archive
    goes again: an import is all or nothing.
    """
    journal.write_conversation(dialogs, ref, messages, exclusive=True)
    if journal.layout().conversations != "current" or dialogs.stat(L.CURRENT_FILE) is not None:
        return
    try:
        dialogs.create_empty(L.CURRENT_FILE, journal.modes)
    except StorageError:
        with dialogs.open_folder((L.ARCHIVE_DIR,)) as archived:
            archived.remove_quietly(L.archive_file(ref.id or ""))
        raise


def _dry_run(journal: Journal, user: str, count: int, conversation: str | None, as_archive: str | None) -> AppendResult:
    exists = journal.user_exists(user)
    if as_archive is not None:
        ref = ConversationRef(user, "archive", as_archive)
        if exists and ref in {f.ref for f in journal.conversation_files(user)}:
            raise InvalidInput(f"{ref.describe()} already exists")
        return AppendResult(user, as_archive, count, 0)
    if not exists:
        return AppendResult(user, conversation or "current", count, 0)
    ref = journal.resolve(user, conversation)
    return AppendResult(user, ref.name, count, len(journal.read(ref, missing_ok=True).messages))
