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
:mod:`dialogctl.fileformat.salvage` and carries on after it. YAML 1.2 literal blocks,
as read here: the first line with text sets the indentation (four spaces
here); before it, a line of at most that many spaces is an empty line and a
deeper line of spaces is an error; after it, a line of only spaces deeper
than the indentation carries the extra spaces as text; trailing empty lines
are cut to one line break (clip chomping).
"""

from __future__ import annotations

import re
from typing import Any

from ..models import Message
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
# The next line where YAML can start an item, as dialogctl.fileformat.salvage.split_items cuts items:
# one that starts with "- " or is a lone "-" (trailing carriage returns aside).
_NEXT_ITEM = re.compile(r"\n(?=-(?: |\r*+(?:\n|\Z)))")
# Roles YAML could read as something other than text, in some version or other.
_ROLE_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})
# Keys and plain words that YAML 1.2 reads as something other than text.
_CONSTANT_WORDS = frozenset({"true", "false", "null"})
_CONSTANT_KEYS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL"})  # YAML 1.2's core schema
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
# A metadata line: indentation, key, and the value on its line if any (the line then ends); and
# metadata that is nothing but such lines, none of them the start of a | block.
_META_LINE = re.compile(r"\n( *)([A-Za-z_][A-Za-z0-9_.-]*):(?: ([^\n]+))?(?=\n|\Z)")
_META_LINES = re.compile(r"(?:\n *[A-Za-z_][A-Za-z0-9_.-]*:(?: (?!\|\n|\|\Z)[^\n]+)?)*+")
_META_FIELDS = re.compile(r'\n( *)([A-Za-z_][A-Za-z0-9_.-]*):(?: (?:("[^"\\\n]*")|(0|[1-9][0-9]{0,20})|([^\n]+)))?(?=\n|\Z)')
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
# decode's quick test of a region's bytes: what translate leaves of them is a C0 control or DEL;
# then C1 controls (NEL among them), U+2028/U+2029, and U+FEFF/U+FFFE/U+FFFF, by their UTF-8 bytes.
_TEXT_BYTES = b"\t\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_C1 = re.compile(rb"\xc2[\x80-\x9f]")
_LINE_SEPARATORS = re.compile(rb"\xe2\x80[\xa8\xa9]")
_NON_CHARACTERS = re.compile(rb"\xef(?:\xbb\xbf|\xbf[\xbe\xbf])")


class _Unsure(Exception):
    """The text is not certainly what this reader reads it as: leave the item to YAML."""


def decode(data: bytes, start: int, end: int) -> tuple[str, bool]:
    """``data[start:end]`` as text, and whether every character in it is one YAML carries as written.

    Bytes that are not UTF-8 become lone surrogates (so offsets map back to
    bytes exactly), which no item this reader accepts holds. When the whole
    region is clean, :func:`read_items` need not check each content again.
    """
    chunk = data[start:end]
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk.decode("utf-8", "surrogateescape"), False
    if chunk.translate(None, _TEXT_BYTES):
        return text, False  # a C0 control other than tab and line feed, or DEL
    if len(text) != len(chunk) and (_C1.search(chunk) or _LINE_SEPARATORS.search(chunk) or _NON_CHARACTERS.search(chunk)):
        return text, False
    return text, True


def read_items(text: str, start: int = 0, carried: bool = False) -> tuple[list[Message], int]:
    """Messages of the items in the servers' exact shape from ``start`` on, and where the first other item starts.

    Blank lines before an item are skipped; the position returned is past the
    last item read and the blank lines after it (``len(text)`` when every item
    was read). ``carried``: every character of ``text`` is known to be one YAML
    carries as written (see :func:`decode`).
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
            if block[4:5] > " " and block.startswith("    "):
                # The common case: text on the first line, at the block's indentation (no space or tab first).
                content = block[4:].replace("\n    ", "\n").rstrip("\n") + "\n"
                if not carried and not _carried(content):
                    raise _Unsure
            else:
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

    Keys are at four spaces, a nested mapping's two more than its key's (as the
    writer writes them). ``unterminated``: the last line ends the text, with no
    line break.
    """
    if _META_LINES.fullmatch(meta):
        # Every line a key and its value (no | block): one C pass finds them all.
        return _metadata_lines(_META_FIELDS.findall(meta))
    return _metadata_any(meta, unterminated)


def _metadata_lines(lines: list[tuple[str, str, str, str, str]]) -> dict[str, Any]:
    """The mapping of metadata lines with no | block among them.

    Each line is (indentation, key, a string without escapes with its quotes,
    a count, any other value), the three last ``""`` where absent: the common
    values are told apart by the pattern, not in Python.
    """
    root: dict[str, Any] = {}
    stack = [root]  # the mappings open at each depth: stack[d] holds the keys indented 4 + 2d
    open_key = ""  # the last key read, if it had no value on its line
    mapping = root
    for spaces, key, quoted, count, raw in lines:
        indent = len(spaces)
        if indent & 1:
            raise _Unsure
        depth = (indent - 4) >> 1
        if open_key:
            if depth == len(stack):  # one level deeper: the key holds a mapping
                mapping[open_key] = mapping = {}
                stack.append(mapping)
            open_key = ""  # else it stays None: an empty mapping, written as nothing, reads as null
        if depth != len(stack) - 1:
            if depth >= len(stack):
                raise _Unsure
            del stack[depth + 1 :]
            mapping = stack[depth]
        if key in mapping or key in _CONSTANT_KEYS:
            raise _Unsure  # a duplicate key, or one YAML reads as true, false or null
        if quoted:
            value = quoted[1:-1]
            mapping[key] = value if value.isprintable() else _unquote(value)
        elif count:
            mapping[key] = int(count)
        elif raw:
            mapping[key] = _scalar(raw)
        else:
            mapping[key] = None
            open_key = key
    return root


def _metadata_any(meta: str, unterminated: bool) -> dict[str, Any] | None:
    """:func:`_metadata` line by line, | blocks among the lines."""
    root: dict[str, Any] = {}
    stack = [root]  # the mappings open at each depth: stack[d] holds the keys indented 4 + 2d
    open_key: str | None = None  # the last key read, if it had no value on its line
    pos, size = 0, len(meta)
    match = _META_LINE.match
    while pos < size:
        m = match(meta, pos)
        if m is None:
            raise _Unsure
        spaces = m.end(1) - pos - 1
        depth, odd = divmod(spaces - 4, 2)
        if open_key is not None:
            if depth == len(stack) and not odd:  # one level deeper: the key holds a mapping
                nested: dict[str, Any] = {}
                stack[-1][open_key] = nested
                stack.append(nested)
            open_key = None  # else it stays None: an empty mapping, written as nothing, reads as null
        if odd or depth >= len(stack):
            raise _Unsure
        del stack[depth + 1 :]
        mapping = stack[depth]
        key, raw = m.group(2, 3)
        if key in mapping or key in _CONSTANT_KEYS:
            raise _Unsure  # a duplicate key, or one YAML reads as true, false or null
        pos = m.end()
        if raw is None:
            mapping[key] = None
            open_key = key
        elif raw == "|":
            mapping[key], pos = _block_string(meta, pos, spaces + 2, unterminated)
        else:
            mapping[key] = _scalar(raw)
    return root


def _block_string(meta: str, pos: int, indent: int, unterminated: bool) -> tuple[str, int]:
    """A metadata string written as a ``|`` block from ``meta[pos]`` on: its escaped lines, read as YAML reads them (escapes stay as written)."""
    pad = "\n" + " " * indent
    end, size = pos, len(meta)
    while meta.startswith(pad, end):
        line_end = meta.find("\n", end + 1)
        end = size if line_end < 0 else line_end
    if end == pos:
        raise _Unsure
    return _literal(meta[pos:end].replace(pad, "\n"), unterminated and end == size), end


def _scalar(raw: str) -> Any:
    first = raw[0]
    if first == '"':
        inner = raw[1:-1]
        if raw[-1] == '"' and len(raw) > 1 and '"' not in inner and "\\" not in inner and inner.isprintable():
            return inner  # the common case: no escapes
        m = _QUOTED.fullmatch(raw)
        if m is None:
            raise _Unsure
        return _unquote(m.group(1))
    if first == "[":
        value, end = _flow(raw, 0, 0)
        if end != len(raw):
            raise _Unsure
        return value
    if raw.isdigit() and raw.isascii() and (first != "0" or len(raw) == 1) and len(raw) <= 21:
        return int(raw)  # the common case: a count
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
