"""The fast encoder writes byte for byte what the encoder before it wrote, and checks exactly what it checked.

:mod:`dialogctl.fileformat.codec` encodes records with fast paths (no list of
lines for a literal block, plain ASCII quoted without ``json.dumps``, metadata
checked without a call per plain value). The encoder and checks it replaced are
kept here as they were, and hostile generated messages (tests/strategies.py)
must come out identical, in both file shapes, inside and outside a batch, and
refused metadata must be refused with the same message.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl.errors import InvalidInput
from dialogctl.fileformat import codec
from dialogctl.models import Message

from ..strategies import NASTY_LINES, json_values, messages, text_chars

# --- the encoder as it was (dialogctl 61227de), verbatim but for names -----------------


def old_quote(text: str) -> str:
    return codec._DQ_EXTRA.sub(codec._escape_extra, json.dumps(text, ensure_ascii=False))


def old_dump_json_line(value: Any) -> str:
    return codec._DQ_EXTRA.sub(codec._escape_extra, json.dumps(value, ensure_ascii=False, allow_nan=False))


def old_content_lines(content: str, key_indent: str) -> list[str]:
    if not codec._literal_ok(content):
        return [f"{key_indent}content: {old_quote(content)}"]
    body = content.rstrip("\n")
    trailing = len(content) - len(body)
    if body and not body[body.rfind("\n") + 1 :].strip(" \t"):
        return [f"{key_indent}content: {old_quote(content)}"]
    block_indent = key_indent + "  "
    if body == "":
        if trailing == 0:
            return [f"{key_indent}content: |2-"]
        return [f"{key_indent}content: |2+"] + [""] * trailing
    indicator = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    lines = [f"{key_indent}content: |2{indicator}"]
    lines.extend(block_indent + line if line else "" for line in body.split("\n"))
    if trailing > 1:
        lines.extend([""] * (trailing - 1))
    return lines


def old_role_text(role: str) -> str:
    if codec._PLAIN_ROLE.fullmatch(role) and role not in codec._YAML_WORDS:
        return role
    return old_quote(role)


def old_encode_record(msg: Message, n: int, form: codec.Form, batch: codec.Batch | None = None) -> bytes:
    if form == "documents":
        lines = ["---", f"role: {old_role_text(msg.role)}"]
        indent = ""
    else:
        lines = [f"- role: {old_role_text(msg.role)}"]
        indent = "  "
    lines.extend(old_content_lines(msg.content, indent))
    lines.append(f"{indent}timestamp: {old_quote(msg.timestamp)}")
    if msg.metadata is not None:
        lines.append(f"{indent}metadata: {old_dump_json_line(msg.metadata)}")
    lines.append("")
    body = "\n".join(lines).encode("utf-8")
    if batch is None:
        return body + b"# dialogctl n=%d len=%d crc32=%08x\n" % (n, len(body), zlib.crc32(body))
    return body + b"# dialogctl n=%d batch=%d-%d len=%d crc32=%08x\n" % (n, batch[0], batch[1], len(body), zlib.crc32(body))


def old_check_json_like(value: Any, what: str = "metadata", depth: int = 0) -> None:
    if depth > codec.MAX_METADATA_DEPTH:
        raise InvalidInput(f"{what} is nested deeper than {codec.MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{what} holds a non-finite number")
        return
    if isinstance(value, str):
        old_check_text(value, what)
        return
    if isinstance(value, list):
        for item in value:
            old_check_json_like(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{what} has a key that is not a string")
            old_check_text(key, what)
            old_check_json_like(item, what, depth + 1)
        return
    raise InvalidInput(f"{what} holds a {type(value).__name__}, which JSON cannot carry")


def old_check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} holds a lone surrogate, which UTF-8 cannot carry") from None


# --- the comparisons --------------------------------------------------------------------

# Content shapes the fast paths choose between: one line, several, empty lines (first, inner,
# consecutive), trailing breaks, a blank last line, indentation, characters a block cannot carry.
SHAPES = [
    "x", "x\n", "x\n\n", "x\n\n\n", "\nx", "\n\nx", "a\n\nb", "a\n\n\nb\n", "a\nb\nc", " a\n  b", "a\n ", "a\n\t", "\n", "\n\n", "",
    "a\n\n", "a\r\nb", "a\u2028b", "\x00", "tab\tin", "\ta", "a\n\n \n\nb", "日本\n\n語\n", "quote \" and \\ back",
]  # fmt: skip
ROLES = ["user", "assistant", "system", "tool", "null", "Yes", "weird role", "a" * 40, "🎉"]
TIMESTAMPS = ["2024-01-15T10:30:00.000Z", 'say "hi"', "back\\slash", "ctl\x01", "del\x7f", "日本", "\u2028", ""]


def _both(msg: Message) -> None:
    for form in ("documents", "sequence"):
        for n, batch in ((1, None), (7, (5, 9))):
            assert codec.encode_record(msg, n, form, batch) == old_encode_record(msg, n, form, batch), (msg, form, batch)


@pytest.mark.parametrize("content", SHAPES + NASTY_LINES)
def test_every_content_shape_encodes_as_before(content: str) -> None:
    for role in ROLES:
        _both(Message(role, content, "2024-01-15T10:30:00.000Z", None))


@pytest.mark.parametrize("timestamp", TIMESTAMPS)
def test_quoted_text_encodes_as_before(timestamp: str) -> None:
    _both(Message("user", "x", timestamp, {"k": timestamp, timestamp: [timestamp, 1.5, None, True]}))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.lists(st.sampled_from(SHAPES + NASTY_LINES), max_size=6), st.sampled_from(ROLES))
def test_hostile_messages_encode_byte_for_byte_as_before(msg: Message, pieces: list[str], role: str) -> None:
    _both(msg)
    _both(Message(role, "\n".join(pieces) + msg.content, msg.timestamp, msg.metadata))


def _refusal(check: Any, value: Any) -> str | None:
    try:
        check(value, "field 'metadata'")
    except InvalidInput as exc:
        return exc.message
    return None


class Key(str):
    pass


HOSTILE_METADATA: list[Any] = [
    {"a": "\ud800"}, {"\udfff": 1}, {"a": [1, {"b": float("inf")}]}, {"a": float("nan")}, {1: "x"}, {"a": {2: 1}}, {"a": b"bytes"},
    {"a": (1, 2)}, {"a": {1, 2}}, {Key("k"): "v"}, {"a": Key("\ud800")}, {"a": True, "b": None, "c": -1, "d": 2**70, "e": "é"},
    {"a": [{"b": ["\ud800"]}]}, {"ok": "x", "bad": object()},
]  # fmt: skip


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return {"top": value}


@pytest.mark.parametrize("value", HOSTILE_METADATA + [_nested(d, leaf) for d in (62, 63, 64, 65) for leaf in ("x", 1, None, [], {}, "\ud800")])
def test_metadata_checks_refuse_exactly_as_before(value: Any) -> None:
    assert _refusal(codec.check_json_like, value) == _refusal(old_check_json_like, value)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(text_chars, max_size=8), json_values, max_size=5), st.text(max_size=6))
def test_generated_metadata_is_checked_as_before(value: dict[str, Any], hostile: str) -> None:
    # st.text() without a codec draws lone surrogates too.
    for candidate in (value, {**value, hostile: value}, {"x": [hostile, value]}):
        assert _refusal(codec.check_json_like, candidate) == _refusal(old_check_json_like, candidate)
