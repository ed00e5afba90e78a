"""The conversation file format: how dialogctl writes records and reads them back.

A conversation file is YAML, in one of two shapes the reference implementation
reads: a stream of documents (one mapping per message, ``---`` before each) or
a block sequence (``- role: ...`` items). dialogctl writes new files as
documents and appends to a sequence-shaped file in sequence shape.

Every record dialogctl writes is *framed*: it is followed by a comment line

    # dialogctl n=<message number> len=<bytes of the record> crc32=<hex>

which any YAML parser ignores. The frame lets a reader tell a complete record
from a torn one (plain YAML accepts most truncations as valid), lets it read
our own records with a small exact parser instead of a general YAML parser,
and gives the writer the conversation's message count by reading only the
last line of the file (``n``), so an append never re-reads the conversation.

A write of several records (an import, a user's batch of ``append --jsonl``)
is a *batch*, and each of its records says so in its frame:

    # dialogctl n=<message number> batch=<first n>-<last n> len=... crc32=...

A process killed during a large write leaves whole records before the cut,
each with a valid frame; the batch mark makes them visible only whole. A
batch is committed when its last record (``n`` = last) is there: a run of
records of one batch that ends without it is a *torn batch*, and no reader
reads any of it (:func:`check_batches`). The mark comes before ``len`` and
``crc32``, so a frame line cut anywhere fails to match as a whole. The range
is also the batch's identity: a record joins the run before it only if it
names the same range with a higher ``n``, and a later write can never do
that, because its first record carries its own first ``n`` (a later batch
that reuses the range starts at ``n`` = first again, which ends the run).
Single-record writes carry no mark, so files written before batches existed
read as they always did, and the servers' unframed items never carry one.

Content is written as a literal block with an explicit indentation indicator
(``|2-``, ``|2``, ``|2+``) whenever YAML can carry it that way, and otherwise as
a double-quoted scalar that is also a valid JSON string. Metadata is written as
one line of JSON, which is valid YAML 1.2 flow syntax. Timestamps are written
double-quoted so no YAML loader turns them into dates.

Anything not framed by us (files written by the reference implementation, or
hand edits) is read by :mod:`dialogctl.fileformat.salvage`, item by item, so one bad item
never hides the rest.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, NamedTuple

from ..errors import InvalidInput
from ..models import ROLES, Message
from ..times import TIMESTAMP_RULE, parse_timestamp, utc_now_iso

Form = Literal["documents", "sequence"]

TRAILER_PREFIX = b"# dialogctl n="
# Groups: n, first and last n of the batch (absent outside a batch), len, crc32.
TRAILER_RE = re.compile(rb"^# dialogctl n=(\d{1,15})(?: batch=(\d{1,15})-(\d{1,15}))? len=(\d{1,15}) crc32=([0-9a-f]{8})$", re.M)
Batch = tuple[int, int]  # first and last n of a batch
# How much encoded text a batch is written in per ``write`` (see :func:`encode_chunks`).
CHUNK_BYTES = 1 << 20

# Characters YAML cannot carry in a literal block (and that some parsers treat
# as line breaks): C0/C1 controls except tab and LF, DEL, NEL, the Unicode
# line/paragraph separators, BOM, non-characters and surrogates. Compiled on
# first use: most text passes the cheaper str.isprintable() test first, and
# compiling this class costs several milliseconds of start-up.
_NOT_LITERAL_PATTERN = "[^\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
_not_literal: re.Pattern[str] | None = None


def _literal_ok(text: str) -> bool:
    """Whether YAML can carry ``text`` in a literal block."""
    # str.replace, not str.translate: translate is ten times slower on non-ASCII text.
    printable = text.replace("\n", "").replace("\t", "").isprintable()
    if text.isascii():
        return printable
    if printable:
        # isprintable() refuses every control, separator, format and unassigned
        # character, so printable text is always literal-safe.
        return True
    global _not_literal
    if _not_literal is None:
        _not_literal = re.compile(_NOT_LITERAL_PATTERN)
    return _not_literal.search(text) is None


# What json.dumps(ensure_ascii=False) leaves raw but YAML double-quoted scalars must not contain raw.
_DQ_EXTRA = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_PLAIN_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_COMMON_ROLES = frozenset({"user", "assistant", "system"})
_YAML_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})

MAX_METADATA_DEPTH = 64


def _escape_extra(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"


# The encoders json.dumps(ensure_ascii=False) and json.dumps(ensure_ascii=False, allow_nan=False) would make on every call.
_encode_string = json.encoder.encode_basestring
_encode_json_line = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def quote(text: str) -> str:
    """A double-quoted scalar that is valid YAML 1.2 and valid JSON."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # nothing to escape (printable ASCII has no controls and no DEL)
    return _DQ_EXTRA.sub(_escape_extra, _encode_string(text))


def dump_json_line(value: Any) -> str:
    """Metadata as one line of JSON that is also a YAML 1.2 flow node."""
    line = _encode_json_line(value)
    if line.isascii() and "\x7f" not in line:
        return line  # none of the characters _DQ_EXTRA escapes
    return _DQ_EXTRA.sub(_escape_extra, line)


def check_json_like(value: Any, what: str = "metadata", depth: int = 0) -> None:
    """Refuse values that would not survive a JSON round trip exactly."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidInput(f"{what} is nested deeper than {MAX_METADATA_DEPTH} levels")
    kind = type(value)
    if kind is dict:
        # The common case (metadata parsed from JSON) without a call per key and plain item.
        plain = depth < MAX_METADATA_DEPTH
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise InvalidInput(f"{what} has a key that is not a string")
            if not key.isascii():
                _check_text(key, what)
            kind = type(item)
            if plain and kind is str:
                if not item.isascii():
                    _check_text(item, what)
            elif not (plain and (item is None or kind is int or kind is bool)):
                check_json_like(item, what, depth + 1)
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{what} holds a non-finite number")
        return
    if isinstance(value, str):
        _check_text(value, what)
        return
    if isinstance(value, list):
        for item in value:
            check_json_like(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{what} has a key that is not a string")
            _check_text(key, what)
            check_json_like(item, what, depth + 1)
        return
    raise InvalidInput(f"{what} holds a {type(value).__name__}, which JSON cannot carry")


def _check_text(text: str, what: str) -> None:
    if text.isascii():
        return  # O(1): ASCII text has no surrogates
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} holds a lone surrogate, which UTF-8 cannot carry") from None


_SHOWN_ROLE = re.compile(r"[A-Za-z_-]{1,32}")  # a role shown in an error only when it looks like one


def input_message(raw: dict[str, Any], where: str, now: str | None = None, field: str = "field") -> Message:
    """A message from the fields of an input record (``--jsonl``, every import format), or an error naming ``where``.

    The one check of an input message: ``role`` one of :data:`~dialogctl.models.ROLES` (shown in the
    error only when it looks like a role: a misplaced column could hold message text), ``content`` text,
    ``timestamp`` by the timestamp rule or absent (``now``, or the time of the call), ``metadata`` an
    object, and what :func:`check_message` refuses. ``field`` names the input's unit ("column").
    """
    role = raw.get("role")
    if not isinstance(role, str):
        raise InvalidInput(f"{where}: {field} 'role' must be text")
    if role not in ROLES:
        shown = repr(role) if _SHOWN_ROLE.fullmatch(role) else f"of {len(role)} characters"
        raise InvalidInput(f"{where}: {field} 'role': unknown role {shown}; use one of {', '.join(ROLES)}")
    content = raw.get("content")
    if not isinstance(content, str):
        raise InvalidInput(f"{where}: {field} 'content' must be text")
    timestamp = raw.get("timestamp")
    if timestamp is None:
        timestamp = now if now is not None else utc_now_iso()
    elif not isinstance(timestamp, str) or parse_timestamp(timestamp) is None:
        raise InvalidInput(f"{where}: {field} 'timestamp' must be {TIMESTAMP_RULE}")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: {field} 'metadata' must be an object")
    try:  # the rest of check_message (a role of ROLES is ASCII): the message's one check, not repeated on the write
        _check_values(content, timestamp, metadata)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    return Message(role, content, timestamp, metadata)


def check_message(msg: Message) -> None:
    """Validate a message before it is written."""
    role, content, timestamp, metadata = msg.role, msg.content, msg.timestamp, msg.metadata
    if not isinstance(role, str) or not role:
        raise InvalidInput("message role must be a non-empty string")
    if not isinstance(content, str):
        raise InvalidInput("message content must be a string")
    if not isinstance(timestamp, str) or not timestamp:
        raise InvalidInput("message timestamp must be a non-empty string")
    if not role.isascii():
        _check_text(role, "role")
    _check_values(content, timestamp, metadata)


def _check_values(content: str, timestamp: str, metadata: dict[str, Any] | None) -> None:
    if not content.isascii():
        _check_text(content, "content")
    if not timestamp.isascii():
        _check_text(timestamp, "timestamp")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidInput("message metadata must be a mapping")
        check_json_like(metadata, "field 'metadata'")


# --- writing -----------------------------------------------------------------


def _content_lines(content: str, key_indent: str) -> list[str]:
    """The ``content:`` line(s) for a value, literal block where YAML allows it."""
    if not _literal_ok(content):
        return [f"{key_indent}content: {quote(content)}"]
    body = content.rstrip("\n")
    trailing = len(content) - len(body)
    if body and not body[body.rfind("\n") + 1 :].strip(" \t"):
        # A last line of only blanks is read back differently by some YAML 1.2
        # parsers (eemeli/yaml drops it); quoting is unambiguous.
        return [f"{key_indent}content: {quote(content)}"]
    block_indent = key_indent + "  "
    if body == "":
        if trailing == 0:
            return [f"{key_indent}content: |2-"]
        # Only line breaks: a keep-chomped block of empty lines.
        return [f"{key_indent}content: |2+"] + [""] * trailing
    indicator = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    lines = [f"{key_indent}content: |2{indicator}"]
    lines.extend(block_indent + line if line else "" for line in body.split("\n"))
    if trailing > 1:
        lines.extend([""] * (trailing - 1))
    return lines


def _role_text(role: str) -> str:
    if _PLAIN_ROLE.fullmatch(role) and role not in _YAML_WORDS:
        return role
    return quote(role)


def _content_text(content: str, key_indent: str) -> str:
    """:func:`_content_lines` as text, each line ending in a line break; the common literal block without a list of lines."""
    body = content.rstrip("\n")
    if not body or not _literal_ok(content):
        return "\n".join(_content_lines(content, key_indent)) + "\n"
    last = body.rfind("\n")
    if not body[last + 1 :].strip(" \t"):
        return "\n".join(_content_lines(content, key_indent)) + "\n"
    trailing = len(content) - len(body)
    block_indent = key_indent + "  "
    if last < 0:
        block = block_indent + body
    elif "\n\n" in body or body[0] == "\n":
        block = _INDENT_LINES.sub(block_indent, body)  # empty lines stay empty
    else:
        block = block_indent + body.replace("\n", "\n" + block_indent)
    indicator = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    return f"{key_indent}content: |2{indicator}\n{block}\n" + "\n" * (trailing - 1 if trailing > 1 else 0)


_INDENT_LINES = re.compile(r"^(?=.)", re.M)  # the start of every line that is not empty


def encode_record(msg: Message, n: int, form: Form, batch: Batch | None = None) -> bytes:
    """One framed record: the message as YAML, then its frame comment line (naming its batch, if it is in one)."""
    role = msg.role if msg.role in _COMMON_ROLES else _role_text(msg.role)
    if form == "documents":
        head = f"---\nrole: {role}\n"
        indent = ""
    else:
        head = f"- role: {role}\n"
        indent = "  "
    text = f"{head}{_content_text(msg.content, indent)}{indent}timestamp: {quote(msg.timestamp)}\n"
    if msg.metadata is not None:
        text += f"{indent}metadata: {dump_json_line(msg.metadata)}\n"
    body = text.encode("utf-8")
    if batch is None:
        return body + b"# dialogctl n=%d len=%d crc32=%08x\n" % (n, len(body), zlib.crc32(body))
    return body + b"# dialogctl n=%d batch=%d-%d len=%d crc32=%08x\n" % (n, batch[0], batch[1], len(body), zlib.crc32(body))


def encode_batch(messages: Sequence[Message], first_n: int, form: Form, marked: bool = True) -> bytes:
    """Records ``first_n``, ``first_n + 1``...; several are marked as one batch unless ``marked`` is False.

    Unmarked records are for a whole file written at once through a temp file
    and a rename (a rewrite), which is atomic without marks.
    """
    batch = (first_n, first_n + len(messages) - 1) if marked and len(messages) > 1 else None
    return b"".join(encode_record(m, first_n + i, form, batch) for i, m in enumerate(messages))


def encode_chunks(messages: Iterable[Message], count: int, first_n: int, form: Form, marked: bool = True, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The records of :func:`encode_batch` (``count`` messages), in pieces of about ``size`` bytes.

    For writing a large batch without holding all of it in memory: the batch
    mark, not the number of writes, is what makes it all or nothing.
    """
    batch = (first_n, first_n + count - 1) if marked and count > 1 else None
    pieces: list[bytes] = []
    held = 0
    n = first_n
    for msg in messages:
        record = encode_record(msg, n, form, batch)
        n += 1
        pieces.append(record)
        held += len(record)
        if held >= size:
            yield b"".join(pieces)
            pieces, held = [], 0
    if n - first_n != count:
        raise ValueError(f"encode_chunks was promised {count} messages and given {n - first_n}")
    if pieces:
        yield b"".join(pieces)


# --- reading our own records --------------------------------------------------


# One record exactly as :func:`encode_record` writes it, per shape: role line,
# content (a JSON string, or a literal block whose lines are empty or carry the
# block indentation), timestamp, optional metadata. Matching a whole record with
# one compiled pattern keeps the per-record work in C; the groups are then
# checked as strictly as a line-by-line parser would. Compiled on first use
# (start-up matters to appends, which never decode).
_RECORD_PATTERN = (
    r"{start}role: ([^\n]*)\n"
    r"{indent}content: (?:(\"[^\n]*)\n|\|2([-+]?)\n((?:(?:{indent}  [^\n]*)?\n)*))"
    r"{indent}timestamp: ([^\n]*)\n"
    r"(?:{indent}metadata: ([^\n]*)\n)?"
)
_SHAPES: dict[Form, tuple[str, str]] = {"documents": ("---\n", ""), "sequence": ("- ", "  ")}
_RECORDS: dict[Form, re.Pattern[str]] = {}
_FRAMED_RECORDS: dict[Form, re.Pattern[bytes]] = {}


def record_pattern(form: Form) -> re.Pattern[str]:
    """A record body of one shape (as text)."""
    pattern = _RECORDS.get(form)
    if pattern is None:
        start, indent = _SHAPES[form]
        pattern = _RECORDS[form] = re.compile(_RECORD_PATTERN.format(start=start, indent=indent))
    return pattern


def framed_record_pattern(form: Form) -> re.Pattern[bytes]:
    """A record body of one shape and its frame line (as bytes; groups 7-11 are n, the batch's first and last n, len and crc32)."""
    pattern = _FRAMED_RECORDS.get(form)
    if pattern is None:
        start, indent = _SHAPES[form]
        text = _RECORD_PATTERN.format(start=start, indent=indent) + (
            r"# dialogctl n=(\d{1,15})(?: batch=(\d{1,15})-(\d{1,15}))? len=(\d{1,15}) crc32=([0-9a-f]{8})(?:\n|\Z)"
        )
        pattern = _FRAMED_RECORDS[form] = re.compile(text.encode())
    return pattern


def decode_record(body: bytes) -> Message | None:
    """Parse a record exactly as :func:`encode_record` writes it.

    Returns None for anything else (the caller then uses a YAML parser), so
    this never guesses.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    form: Form = "documents" if text.startswith("---\n") else "sequence"
    m = record_pattern(form).fullmatch(text)
    if m is None:
        return None
    return message_from_fields(form, *m.groups())


def message_from_fields(form: Form, role_text: str, quoted: str | None, chomp: str | None, block: str | None, stamp: str, meta: str | None) -> Message | None:
    """The message a matched record holds, checked strictly; None if a field is not what we write."""
    role = _scalar(role_text)
    if role is None:
        return None
    if quoted is not None:
        content = _json_string(quoted)
        if content is None:
            return None
    elif block:
        # Every block line is empty or starts with the indentation: drop it once per line.
        content = ("\n" + block).replace("\n    " if form == "sequence" else "\n  ", "\n")[1:]
        if chomp == "-":
            content = content[:-1]
    else:
        content = ""
    timestamp = _json_string(stamp)
    if timestamp is None:
        return None
    metadata = None
    if meta is not None:
        try:
            metadata, end = scan_json(meta, 0)  # json.loads without its per-call layers
            if end != len(meta):
                metadata = json.loads(meta)  # trailing blanks (not what we write, still JSON)
        except (ValueError, StopIteration, RecursionError):  # nested too deep for the parser: the slow path reports it
            return None
        if type(metadata) is not dict:
            return None
    return Message(role, content, timestamp, metadata)


scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner json.loads ends in: (value, end) of a JSON text from a position


def _json_string(text: str) -> str | None:
    if not (text.startswith('"') and text.endswith('"')) or len(text) < 2:
        return None
    inner = text[1:-1]
    if "\\" not in inner and '"' not in inner and inner.isprintable():
        return inner  # no escapes and no raw controls: the JSON value is the text itself
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _scalar(text: str) -> str | None:
    if text in _COMMON_ROLES:
        return text
    if text.startswith('"'):
        return _json_string(text)
    return text if _PLAIN_ROLE.fullmatch(text) else None


class Frame(NamedTuple):
    """A framed record found in a file: bytes [start, end) and its trailer line."""

    start: int
    end: int  # end of the record body = start of the trailer line
    after: int  # offset just past the trailer line's newline
    n: int
    first: int = 0  # the batch it belongs to: first and last n (0, 0: written on its own)
    last: int = 0


def find_frames(data: bytes, start: int = 0) -> tuple[list[Frame], list[int]]:
    """Every valid frame in ``data``, plus offsets of trailer lines whose record fails its check.

    A frame is valid when its record begins at a line start no earlier than
    the end of the previous frame and its CRC-32 matches.
    """
    frames: list[Frame] = []
    broken: list[int] = []
    cursor = start
    crc32 = zlib.crc32
    for m in TRAILER_RE.finditer(data, start):
        end = m.start()
        rec_start = end - int(m.group(4))
        if rec_start >= cursor and (rec_start == 0 or data[rec_start - 1] == 10) and crc32(data[rec_start:end]) == int(m.group(5), 16):
            after = m.end() + 1 if m.end() < len(data) else m.end()
            first, last = m.group(2, 3)
            frames.append(Frame(rec_start, end, after, int(m.group(1)), int(first or 0), int(last or 0)))
            cursor = after
        else:
            broken.append(end)
    return frames, broken


class TornBatch(NamedTuple):
    """A batch whose last record is missing: none of its records is read."""

    at: int  # position in the frame list of its first record found
    records: int  # whole records of it that were found
    first: int  # the batch's first and last n, as its frames say
    last: int
    at_end: bool  # still open where the data ends (cut off there, or still being written)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        """One sentence for a damage report (never message text)."""
        how = "the writer was killed or failed, or is still writing" if self.at_end else "the writer was killed or failed"
        return f"only {self.records} of the {self.size} records of a batch (messages {self.first - 1}-{self.last - 1} by index from 0; frames n={self.first}-{self.last}) were written: {how}; none of them is read"


class Batches(NamedTuple):
    """How the frames of a file group into batches (see :func:`check_batches`)."""

    torn: list[TornBatch]
    dropped: frozenset[int]  # positions of the frames whose records are not read
    settled: int  # frames before this position are decided (no batch among them can still be completed), the last one read


_NO_BATCHES = Batches([], frozenset(), 0)


def check_batches(frames: list[Frame]) -> Batches:
    """Group the frames into batches and find the torn ones.

    A run is the records of one batch (same first-last range, rising ``n``)
    that follow each other among the frames (text between them, such as a
    server's item landing between two writes of a large batch, is not part of
    the run and is read as usual). A run that reaches the batch's last record
    is committed, also when a record in between was lost later (bit rot: that
    record alone is damage); a run that stops before it is torn, and every
    record of it is dropped. A run still open at the end of the frames is torn
    too, but not yet settled: an incremental reader waits for it.
    """
    if not any(f.last for f in frames):
        return _NO_BATCHES._replace(settled=len(frames))
    torn: list[TornBatch] = []
    dropped: set[int] = set()
    run: list[int] = []  # positions of the frames of the open run

    def close(at_end: bool) -> None:
        head = frames[run[0]]
        torn.append(TornBatch(run[0], len(run), head.first, head.last, at_end))
        dropped.update(run)

    for i, frame in enumerate(frames):
        if run:
            head, tail = frames[run[0]], frames[run[-1]]
            if frame.last and (frame.first, frame.last) == (head.first, head.last) and frame.n > tail.n:
                if frame.n == frame.last:
                    run = []  # committed
                else:
                    run.append(i)
                continue
            close(at_end=False)
            run = []
        if frame.last and frame.n != frame.last:
            run = [i]
    settled = len(frames)
    if run:
        close(at_end=True)
        settled = run[0]
    # Never settle just after a dropped record: what follows it (the record the kill cut) is
    # named by knowing the torn batch before it, so a later read starts before that batch.
    while settled and settled - 1 in dropped:
        settled -= 1
    return Batches(torn, frozenset(dropped), settled)


def last_frame_n(tail: bytes) -> int | None:
    """The ``n`` of the trailer that ends ``tail`` (the last bytes of a file), if it does.

    None also when that record is not the last of its batch: the file ends in
    a torn batch (or one being written), whose records are not messages, so
    the count must be read from the file.
    """
    if not tail.endswith(b"\n"):
        return None
    start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    m = TRAILER_RE.fullmatch(tail, start, len(tail) - 1)
    if m is None:
        return None
    n = int(m.group(1))
    return None if m.group(3) is not None and int(m.group(3)) != n else n


def detect_form(head: bytes) -> Form | None:
    """The shape of a file from its first bytes; None when it holds no items yet."""
    for raw in head.split(b"\n"):
        line = raw.lstrip(b"\xef\xbb\xbf").rstrip(b"\r")
        if not line.strip() or line.startswith(b"#") or line.startswith(b"%"):
            continue
        if line == b"---" or line.startswith(b"--- #"):
            continue  # a document start says nothing about what the document holds
        if line.startswith(b"- ") or line == b"-":
            return "sequence"
        return "documents"
    return None
