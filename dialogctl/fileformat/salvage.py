"""Reading conversation text that dialogctl did not frame, one item at a time.

Files written by the reference implementation, by hand, or damaged by a crash
or by the reference's own cleanup are read here. The text is cut into items
at the places a YAML stream can only start a new item (a ``- `` at column 0
in a sequence file, a ``---`` line between documents), and each item is
parsed on its own with ruamel.yaml, so one bad item is reported with its file
and line and skipped while every intact item around it is still read.

Damage this recognises besides plain YAML errors:

* the reference cleanup's glued separators (``processingTime: 1011---``): a
  document with duplicate keys is re-split at such lines;
* a torn record: an item in dialogctl's own style (explicit block indentation,
  quoted timestamp) that lacks its frame line was cut short by a crash, even
  when the cut left valid YAML;
* a torn reference item: the last item of a file missing its timestamp.

Error details never quote the file's text: messages may be private.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..models import Damage, Message
from ..yamlsafe import ItemError, load_yaml
from .codec import TRAILER_RE, Form

# dialogctl's own style: explicit indentation indicator or a quoted timestamp.
# The reference writer produces neither, so an unframed item with them is a
# record of ours whose write was cut short.
_OUR_STYLE = re.compile(rb'^(?:  )?(?:content: \|[1-9]|timestamp: ")', re.M)
_GLUED = re.compile(rb"^([^\n]*\S)---(\r?)$", re.M)

MAX_ITEM_BYTES = 16 * 1024 * 1024
# libyaml's composer recurses on the C stack; past this bound on possible
# nesting the pure-Python parser is used, which fails cleanly.


@dataclass(slots=True)
class Item:
    start: int  # byte offset in the file
    line: int  # 1-based line number in the file
    data: bytes


def split_items(data: bytes, start: int, end: int, first_line: int, form: Form) -> tuple[list[Item], list[Item]]:
    """Cut ``data[start:end]`` into items; also return stray text outside any item."""
    items: list[Item] = []
    stray: list[Item] = []
    pos = start
    line_no = first_line
    cur_start: int | None = None
    cur_line = 0
    stray_start: int | None = None
    stray_line = 0

    def close(at: int) -> None:
        nonlocal cur_start, stray_start
        if cur_start is not None:
            items.append(Item(cur_start, cur_line, data[cur_start:at]))
            cur_start = None
        if stray_start is not None:
            stray.append(Item(stray_start, stray_line, data[stray_start:at]))
            stray_start = None

    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        line = data[pos:line_end].rstrip(b"\r\n")
        if pos == 0:
            line = line.removeprefix(b"\xef\xbb\xbf")
        if form == "sequence":
            if line.startswith(b"- ") or line == b"-":
                close(pos)
                cur_start, cur_line = pos, line_no
            elif cur_start is None and _is_significant(line):
                if stray_start is None:
                    stray_start, stray_line = pos, line_no
        else:
            if line == b"---" or line.startswith(b"--- ") or line == b"..." or line.startswith(b"... "):
                close(pos)
                rest = line[4:] if line.startswith(b"--- ") else b""
                if rest.strip() and not rest.lstrip().startswith(b"#"):
                    # "--- value": the document's content starts on this line.
                    cur_start, cur_line = pos, line_no
            elif cur_start is None and _is_significant(line):
                cur_start, cur_line = pos, line_no
        pos = line_end
        line_no += 1
    close(end)
    return items, stray


def _is_significant(line: bytes) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(b"#") and stripped not in (b"---", b"...")


def salvage_region(data: bytes, start: int, end: int, first_line: int, form: Form, label: str, at_end: bool) -> tuple[list[Message], list[Damage], list[int]]:
    """Read every intact message of an unframed region.

    Returns the messages, the damage found, and for each message the line
    where its item starts.
    """
    items, stray = split_items(data, start, end, first_line, form)
    messages: list[Message] = []
    lines: list[int] = []
    damage = [Damage(label, s.line, "unexpected text", "text outside any message was skipped") for s in stray]
    for index, item in enumerate(items):
        is_last = at_end and index == len(items) - 1
        for msg, line, problem in _read_item(item, form, is_last):
            if problem is not None:
                damage.append(Damage(label, line, problem[0], problem[1]))
            if msg is not None:
                messages.append(msg)
                lines.append(line)
    return messages, damage, lines


def _read_item(item: Item, form: Form, is_last: bool) -> list[tuple[Message | None, int, tuple[str, str] | None]]:
    raw = item.data
    framed_but_changed = TRAILER_RE.search(raw) is not None
    if _OUR_STYLE.search(raw) and not framed_but_changed:
        return [(None, item.line, ("torn record", "a record written by dialogctl lost its end (interrupted write); it was skipped"))]
    try:
        value = _parse(raw)
    except ItemError as exc:
        if form == "documents" and exc.kind in ("duplicate key", "invalid YAML") and _GLUED.search(raw):
            return _read_glued(item, is_last)
        kind = "torn record" if is_last and exc.kind == "invalid YAML" and not raw.endswith(b"\n") else exc.kind
        return [(None, item.line + exc.line_offset, (kind, exc.detail))]
    if form == "documents" and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        # Sequence items in a file of documents: a server appended its '- role:' items
        # to a file an older dialogctl wrote as documents. They are its messages.
        return [_item_result(_to_message([v], "sequence", is_last and i == len(value) - 1), item.line) for i, v in enumerate(value)]
    result = _to_message(value, form, is_last)
    if not isinstance(result, Message):
        return [(None, item.line, result)]
    if framed_but_changed:
        return [(result, item.line, ("checksum mismatch", "record was changed after dialogctl wrote it; read as it is now"))]
    return [(result, item.line, None)]


def _item_result(result: Message | tuple[str, str], line: int) -> tuple[Message | None, int, tuple[str, str] | None]:
    return (result, line, None) if isinstance(result, Message) else (None, line, result)


def parse_record(raw: bytes, form: Form) -> Message | tuple[str, str]:
    """Parse one framed record with YAML (for records our exact parser does not know)."""
    try:
        value = _parse(raw)
    except ItemError as exc:
        return (exc.kind, exc.detail)
    return _to_message(value, form, False)


def _read_glued(item: Item, is_last: bool) -> list[tuple[Message | None, int, tuple[str, str] | None]]:
    """Re-split a document at lines the reference cleanup glued ``---`` onto."""
    out: list[tuple[Message | None, int, tuple[str, str] | None]] = []
    pieces: list[tuple[int, bytes]] = []
    cursor = 0
    line = item.line
    raw = item.data
    for m in _GLUED.finditer(raw):
        glued_line = item.line + raw.count(b"\n", 0, m.start())
        pieces.append((line, raw[cursor : m.start(1) + len(m.group(1))] + m.group(2) + b"\n"))
        out.append((None, glued_line, ("glued separator", "a '---' separator was glued to the end of this line; split there")))
        cursor = m.end() + 1
        line = glued_line + 1
    pieces.append((line, raw[cursor:]))
    for number, (piece_line, piece) in enumerate(pieces):
        if not piece.strip():
            continue
        try:
            result = _to_message(_parse(piece), "documents", is_last and number == len(pieces) - 1)
        except ItemError as exc:
            out.append((None, piece_line + exc.line_offset, (exc.kind, exc.detail)))
            continue
        if not isinstance(result, Message):
            out.append((None, piece_line, result))
        else:
            out.append((result, piece_line, None))
    return out


def _parse(raw: bytes) -> Any:
    if len(raw) > MAX_ITEM_BYTES:
        raise ItemError("too large", f"a {len(raw)}-byte item is larger than {MAX_ITEM_BYTES} bytes and was not parsed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_offset = raw.count(b"\n", 0, exc.start)
        raise ItemError("invalid UTF-8", f"invalid UTF-8 at byte {exc.start} of the item", line_offset) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return load_yaml(text)
    except ItemError as exc:
        # An error at the end of the text is marked on the line after it; name the last line.
        exc.line_offset = min(exc.line_offset, text.count("\n") - text.endswith("\n"))
        raise


def _to_message(value: Any, form: Form, is_last: bool) -> Message | tuple[str, str]:
    if form == "sequence":
        if not isinstance(value, list) or len(value) != 1:
            return ("not a message", "a sequence item that is not one message")
        value = value[0]
    if not isinstance(value, dict):
        return ("not a message", "a document that is not a mapping")
    role = value.get("role")
    content = value.get("content")
    timestamp = value.get("timestamp")
    if not isinstance(role, str) or not role:
        return ("not a message", "missing or non-text role")
    if not isinstance(content, str):
        return ("not a message", "missing or non-text content")
    if timestamp is None or timestamp == "":
        if is_last:
            return ("torn record", "the last message has no timestamp (cut short while it was written)")
        return ("not a message", "missing timestamp")
    if not isinstance(timestamp, str):
        return ("not a message", "timestamp is not a date-time text")
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return ("not a message", "metadata is not a mapping")
    if metadata is not None:
        metadata = _json_safe(metadata)
    return Message(role, content, timestamp, metadata)


def _key_text(key: Any) -> str:
    """A mapping key YAML read as another type, as the servers' parser (JavaScript) names it: null, true, 12."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _json_safe(value: Any) -> Any:
    """Map YAML-only values (non-finite floats, binary, sets) to JSON-carried ones."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _key_text(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted((_json_safe(v) for v in value), key=repr)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
