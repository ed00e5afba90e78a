"""A fast reader for the exact item shape the reference implementation writes.

The reference writer emits a YAML block sequence of items like::

    - role: assistant
      content: |
        text, indented 4
      timestamp: 2024-01-15T10:30:00.000Z
      metadata:
        model: "gpt-4"
        tokens:
          total: 12

Parsing each item with ruamel.yaml costs a loader per item; this module reads
items of exactly that shape with one compiled pattern and a small metadata
reader, and stops at the first item that is anything else (other keys or
order, another block style, escapes, tabs as indentation, unusual scalars,
controls, duplicate keys...). What it stops at is left to
:mod:`dialogctl.salvage`, so every item is read either here, when the result
is certainly what ruamel.yaml gives (property tests compare the two), or there.
"""

from __future__ import annotations

import re
from typing import Any

from .models import Message
from .salvage import MAX_ITEM_BYTES

_LARGE_CHARS = MAX_ITEM_BYTES // 4  # an item this many characters long may exceed the byte limit

_ITEM = re.compile(
    r"- role: ([a-z][a-z0-9_-]{0,31})\n"
    r"  content: \|\n"
    r"((?:\n)*    [^ \t\n][^\n]*\n(?:(?:    [^\n]*)?\n)*)"
    r"  timestamp: (\d{4}-\d\d-\d\d(?:T\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?)?)\n"
    r"(?:  metadata:\n((?:    [^\n]*\n)+))?"
)
_YAML_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})
_KEY = re.compile(r"( +)([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\.[0-9]{1,17}")
_SPACES_ONLY = re.compile(r"^[ \t]+$", re.M)


def read_items(text: str, start: int = 0) -> tuple[list[Message], int]:
    """Messages of the reference-shaped items from ``start`` on, and where the first other item starts."""
    messages: list[Message] = []
    pos = start
    match = _ITEM.match
    while True:
        m = match(text, pos)
        if m is None:
            return messages, pos
        after = m.end()
        if after - pos > _LARGE_CHARS and len(text[pos:after].encode("utf-8", "surrogatepass")) > MAX_ITEM_BYTES:
            return messages, pos  # the salvage reader refuses it by name, whichever reader meets it
        if after != len(text) and not text.startswith("- ", after) and text[after:].strip():
            return messages, pos  # the item goes on in a shape this reader does not know
        role, block, timestamp, meta = m.groups()
        if role in _YAML_WORDS or _SPACES_ONLY.search(block):
            return messages, pos  # lines of only spaces: YAML's rules for them are subtle, leave them to YAML
        # Clip chomping: the text without its indentation, trailing empty lines cut to one line break.
        content = ("\n" + block.rstrip("\n")).replace("\n    ", "\n")[1:] + "\n"
        if not content.replace("\n", "").replace("\t", "").isprintable():
            return messages, pos
        metadata = None
        if meta is not None:
            lines = meta.split("\n")[:-1]
            parsed = _mapping(lines, 0, 4)
            if parsed is None or parsed[1] != len(lines):
                return messages, pos
            metadata = parsed[0]
        messages.append(Message(role, content, timestamp, metadata))
        pos = after


def _mapping(lines: list[str], i: int, indent: int) -> tuple[dict[str, Any], int] | None:
    """A block mapping at ``indent`` from ``lines[i]``: (mapping, next line) or None if not plainly shaped."""
    out: dict[str, Any] = {}
    while i < len(lines):
        m = _KEY.fullmatch(lines[i])
        if m is None:
            return None
        spaces, key, raw = len(m.group(1)), m.group(2), m.group(3)
        if spaces < indent:
            break
        if spaces > indent or key in out or key.lower() in _YAML_WORDS:
            return None
        i += 1
        if raw is None:
            if i < len(lines) and len(lines[i]) - len(lines[i].lstrip(" ")) > indent:
                nested = _mapping(lines, i, indent + 2)
                if nested is None:
                    return None
                out[key], i = nested
            else:
                out[key] = None
            continue
        value = _scalar(raw)
        if value is _NOT_PLAIN:
            return None
        out[key] = value
    return out, i


_NOT_PLAIN = object()


def _scalar(raw: str) -> Any:
    if raw.startswith('"'):
        inner = raw[1:-1]
        if len(raw) >= 2 and raw.endswith('"') and '"' not in inner and "\\" not in inner and inner.isprintable():
            return inner
        return _NOT_PLAIN
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        return float(raw)
    if raw == "true":
        return True
    if raw == "false":
        return False
    if raw == "null":
        return None
    return _NOT_PLAIN
