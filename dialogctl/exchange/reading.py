"""Reading an import: the input read once (head, then the rest), the checks every record goes through, a streaming JSON reader.

The readers of each format are in :mod:`dialogctl.exchange.formats`; :mod:`dialogctl.exchange.importers` picks one.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..errors import InvalidInput
from ..models import Message

HEAD_BYTES = 1 << 20  # what format detection looks at


_BOM = b"\xef\xbb\xbf"


_CHUNK = 1 << 20  # text read at a time


MESSAGE_FIELDS = frozenset({"role", "content", "timestamp", "metadata"})


IDENTITY_FIELDS = frozenset({"user", "conversation", "archived", "index", "message_id"})  # dialogctl's export lines; index and message_id are recomputed


OBJECT_FIELDS = frozenset({"userId", "user", "timestamp", "messageCount", "messages", "conversation", "archived"})


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


def conversation_identity(user: Any, conversation: Any, archived: Any, where: str) -> str:
    for name, value, kind in (("user", user, str), ("conversation", conversation, str), ("archived", archived, bool)):
        if value is not None and not isinstance(value, kind):
            raise InvalidInput(f"{where}: field '{name}' must be {'text' if kind is str else 'true or false'}")
    return f"{user or '?'}/{conversation or 'current'}{' (archived)' if archived else ''}"


def refuse_unknown(keys: Any, known: frozenset[str], where: str, field: str = "field") -> None:
    unknown = sorted(set(keys) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown {field}(s) {', '.join(repr(k[:40]) for k in unknown[:5])}")


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Strict JSON: no NaN or Infinity, no repeated keys.
_DECODER = json.JSONDecoder(object_pairs_hook=no_duplicates, parse_constant=_no_constant)


def load_json(text: str, where: str) -> Any:
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
    from ..fileformat.codec import MAX_METADATA_DEPTH
    from ..nesting import deepest

    found = deepest(text, MAX_METADATA_DEPTH)
    if found is None or not found.path:
        return f"nested deeper than {MAX_METADATA_DEPTH} levels"
    return found.describe(MAX_METADATA_DEPTH)


class Incomplete(Exception):
    """The text ran out inside a value (only when reading a head, which may stop anywhere)."""


class JsonStream:
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
        self.complete = complete  # False: the text may stop anywhere (a head); running out is Incomplete
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
                    raise Incomplete
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
                    raise Incomplete from None
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


def numbered_lines(data: ImportInput, source: str) -> Iterator[tuple[int, str]]:
    """Numbered lines that hold more than white space; only LF ends a line (JSON text may hold raw U+2028 and the like)."""
    for number, offset, raw in data.lines():
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{source} is not valid UTF-8 (byte offset {offset + exc.start})") from None
        if line.strip():
            yield number, line


_EOL = re.compile(r"\r\n|\r|\n")


def universal_lines(pieces: Iterator[str]) -> Iterator[str]:
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
