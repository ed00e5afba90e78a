"""A fast reader for the items the servers write (the reference writer's exact shape).

Every server running today appends items like this one (DOMAIN.md, "The
reference writer's bytes, exactly")::

    - role: assistant
      content: |
        every line of content.split("\\n"), indented four spaces
        <four spaces: a blank line, or the empty piece after a final newline>
      timestamp: 2024-01-15T10:30:00.000Z
      metadata:
        model: "gpt-4"
        tokens:
          total: 12
        note: |
          a metadata string longer than 100 characters or multi-line: escaped lines
        tags: ["a", 1, null, [object Object]]

items joined by ``\\n`` with no final newline. Parsing each item with
ruamel.yaml costs a loader per item; this module reads items of exactly that
shape with one compiled pattern per item and a small metadata reader, giving
exactly what ruamel.yaml gives (property tests compare both, and Bun.YAML,
the servers' own parser, on files written by a byte-exact stand-in for the
servers' writer).

It stops at the first item it is not certain about (other keys or order, a
first content line that starts with a space or tab, characters YAML does not
carry as written, escapes other than the writer's, unusual scalars,
duplicate keys...): the caller hands that one item to
:mod:`dialogctl.salvage` and carries on after it. YAML 1.2 literal blocks,
as read here: the first line with text sets the indentation (four spaces
here); before it, a line of at most that many spaces is an empty line and a
deeper line of spaces is an error; after it, a line of only spaces deeper
than the indentation carries the extra spaces as text; trailing empty lines
are cut to one line break (clip chomping).
"""

from __future__ import annotations

import re
from typing import Any

from .models import Message
from .salvage import MAX_ITEM_BYTES

_LARGE_CHARS = MAX_ITEM_BYTES // 4  # an item this many characters long may exceed the byte limit

# One item: role, the content block (lines that are empty or indented at least
# four spaces; the timestamp line, indented two, ends it), the bare timestamp,
# the metadata lines (indented at least four), then the blank lines up to the
# next item or the end of the text. Possessive repeats: nothing after a block
# line can start inside one, so the engine never needs to give any back.
_ITEM = re.compile(
    r"- role: ([a-z][a-z0-9_-]{0,31})\n"
    r"  content: \|\n"
    r"((?:(?:    [^\n]*+)?+\n)*+)"
    r"  timestamp: ([0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?)"
    r"(?:\n  metadata:((?:\n    [^\n]*+)*+))?"
    r"(?:\n++(?=- )|\n*+\Z)"
)
# The next line where YAML can start an item, as dialogctl.salvage.split_items cuts items:
# one that starts with "- " or is a lone "-" (trailing carriage returns aside).
_NEXT_ITEM = re.compile(r"\n(?=-(?: |\r*+(?:\n|\Z)))")
# Roles YAML could read as something other than text, in some version or other.
_ROLE_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})
# Keys and plain words that YAML 1.2 reads as something other than text.
_CONSTANT_WORDS = frozenset({"true", "false", "null"})
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_KEY_LINE = re.compile(r"( *)([A-Za-z_][A-Za-z0-9_.-]*):(?: (.+))?")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,20})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,20})(?:\.[0-9]{1,20}(?:[eE][-+]?[0-9]{1,3})?|[eE][-+]?[0-9]{1,3})")
# Plain text the writer leaves unquoted (NaN, Infinity, -Infinity, "object Object" in [object Object]):
# words of letters and digits, one space between them; nothing YAML gives a meaning to.
_WORDS = re.compile(r"-?[A-Za-z][A-Za-z0-9]*(?: [A-Za-z0-9]+)*")
# A double-quoted string with only the writer's escapes: \\ \" \n \r \t.
_QUOTED = re.compile(r'"((?:[^"\\]|\\[\\"nrt])*+)"')
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_FLOW_PLAIN = re.compile(r'[^,\[\]{}"]+')
_MAX_FLOW_DEPTH = 32
# What YAML carries as written, in a literal block or a quoted string, that every parser reads the same:
# no C0/C1 controls but tab and line feed, no DEL, no line breaks other than LF (NEL, U+2028, U+2029),
# no BOM, no non-characters U+FFFE/U+FFFF, no surrogates (invalid UTF-8 decoded with surrogateescape).
_NOT_CARRIED_PATTERN = "[^\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
_not_carried: re.Pattern[str] | None = None


class _Unsure(Exception):
    """The text is not certainly what this reader reads it as: leave the item to YAML."""


def read_items(text: str, start: int = 0) -> tuple[list[Message], int]:
    """Messages of the items in the servers' exact shape from ``start`` on, and where the first other item starts.

    Blank lines before an item are skipped; the position returned is past the
    last item read and the blank lines after it (``len(text)`` when every item
    was read).
    """
    messages: list[Message] = []
    append = messages.append
    match = _ITEM.match
    pos = start
    size = len(text)
    while pos < size and text[pos] == "\n":
        pos += 1
    while pos < size:
        m = match(text, pos)
        if m is None:
            break
        after = m.end()
        if after - pos > _LARGE_CHARS and len(text[pos:after].encode("utf-8", "surrogateescape")) > MAX_ITEM_BYTES:
            break  # the salvage reader refuses it by name, whichever reader meets it
        role, block, timestamp, meta = m.groups()
        if role in _ROLE_WORDS:
            break
        try:
            content = _literal(("\n" + block).replace("\n    ", "\n"))
            # The item's last line has no line break when it ends the text: a | block there ends without one too.
            metadata = None if not meta else _metadata(meta, after == size and text[-1] != "\n")
        except _Unsure:
            break
        append(Message(role, content, timestamp, metadata))
        pos = after
    return messages, pos


def next_item(text: str, pos: int) -> int:
    """Where the item after the one on the line at ``pos`` starts (``len(text)`` if none): what YAML is handed at once."""
    m = _NEXT_ITEM.search(text, pos)
    return len(text) if m is None else m.start() + 1


def _literal(body: str, unterminated: bool = False) -> str:
    """A ``|`` block's value from its lines without their indentation, each after a line feed: ``"\\nline\\n..."``.

    ``unterminated``: the block's last line ends the text, with no line break.
    """
    text = body.rstrip("\n")  # clip chomping: trailing empty lines go, one line break is added back
    if not text:
        return ""  # only empty lines (all at most the indentation): an empty string
    first = text[1]
    if first == "\n":
        first = text.lstrip("\n")[0]
    if first == " " or first == "\t":
        # A first text line deeper than the others (YAML takes its indentation, or fails), leading
        # lines of spaces deeper than the text, or a tab where libyaml and the pure parser disagree.
        raise _Unsure
    # ... unless the last line holds text and has no line break to keep (YAML 1.2, ruamel.yaml;
    # Bun adds one, as every parser does once the next item follows).
    value = text[1:] if unterminated and len(text) == len(body) else text[1:] + "\n"
    if not _carried(value):
        raise _Unsure
    return value


def _carried(text: str) -> bool:
    """Whether YAML carries ``text`` as written (line feeds and tabs allowed)."""
    if text.replace("\n", "").isprintable():
        return True
    global _not_carried
    if _not_carried is None:
        _not_carried = re.compile(_NOT_CARRIED_PATTERN)
    return _not_carried.search(text) is None


def _metadata(meta: str, unterminated: bool) -> dict[str, Any] | None:
    """The metadata mapping from its lines, each after a line feed and indented four spaces or more.

    ``unterminated``: the last line ends the text, with no line break.
    """
    lines = meta.split("\n")
    value, end = _mapping(lines, 1, 4, unterminated)
    if end != len(lines):
        raise _Unsure
    return value


def _mapping(lines: list[str], i: int, indent: int, unterminated: bool) -> tuple[dict[str, Any], int]:
    """A block mapping whose keys are at ``indent`` from ``lines[i]`` on: (mapping, next line)."""
    out: dict[str, Any] = {}
    count = len(lines)
    key_line = _KEY_LINE.fullmatch
    while i < count:
        m = key_line(lines[i])
        if m is None:
            raise _Unsure
        spaces = m.end(1)
        if spaces != indent:
            if spaces < indent:
                break
            raise _Unsure
        key, raw = m.group(2, 3)
        if key in out or key.lower() in _CONSTANT_WORDS:
            raise _Unsure
        i += 1
        if raw is None:
            deeper = " " * (indent + 2)
            if i < count and lines[i].startswith(deeper):
                nested, i = _mapping(lines, i, indent + 2, unterminated)
                if not nested:
                    raise _Unsure
                out[key] = nested
            else:
                out[key] = None  # an empty mapping, written as nothing: YAML reads null
        elif raw == "|":
            out[key], i = _block_string(lines, i, indent + 2, unterminated)
        else:
            out[key] = _scalar(raw)
    return out, i


def _block_string(lines: list[str], i: int, indent: int, unterminated: bool) -> tuple[str, int]:
    """A metadata string written as a ``|`` block: its escaped lines, read as YAML reads them (escapes stay as written)."""
    pad = " " * indent
    end = i
    count = len(lines)
    while end < count and lines[end].startswith(pad):
        end += 1
    if end == i:
        raise _Unsure
    return _literal("\n" + "\n".join(line[indent:] for line in lines[i:end]), unterminated and end == count), end


def _scalar(raw: str) -> Any:
    first = raw[0]
    if first == '"':
        m = _QUOTED.fullmatch(raw)
        if m is None:
            raise _Unsure
        return _unquote(m.group(1))
    if first == "[":
        value, end = _flow(raw, 0, 0)
        if end != len(raw):
            raise _Unsure
        return value
    return _plain(raw)


def _plain(raw: str) -> Any:
    """An unquoted scalar: a number, true, false, null, or plain words."""
    if raw in _CONSTANTS:
        return _CONSTANTS[raw]
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        value = float(raw)
        if value - value != 0:  # out of range: YAML gives inf, which is not a JSON number
            raise _Unsure
        return value
    if _WORDS.fullmatch(raw) and raw.lower() not in _CONSTANT_WORDS:
        return raw
    raise _Unsure


def _unquote(inner: str) -> str:
    """The text of a double-quoted string's inside (only the writer's escapes, already checked)."""
    if not inner.isprintable() and ("\t" in inner or not _carried(inner)):
        raise _Unsure
    if "\\" not in inner:
        return inner
    return _ESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], inner)


def _flow(raw: str, pos: int, depth: int) -> tuple[list[Any], int]:
    """An inline array ``[a, b, ...]`` at ``raw[pos]`` as the writer writes it: (list, position after it)."""
    if depth > _MAX_FLOW_DEPTH:
        raise _Unsure
    pos += 1
    out: list[Any] = []
    if raw.startswith("]", pos):
        return out, pos + 1
    while True:
        first = raw[pos : pos + 1]
        if first == '"':
            m = _QUOTED.match(raw, pos)
            if m is None:
                raise _Unsure
            out.append(_unquote(m.group(1)))
            pos = m.end()
        elif first == "[":
            value, pos = _flow(raw, pos, depth + 1)
            out.append(value)
        else:
            m = _FLOW_PLAIN.match(raw, pos)
            if m is None:
                raise _Unsure
            out.append(_plain(m.group()))
            pos = m.end()
        if raw.startswith(", ", pos):
            pos += 2
        elif raw.startswith("]", pos):
            return out, pos + 1
        else:
            raise _Unsure
