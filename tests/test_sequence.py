"""The fast reader of reference-shaped items agrees with ruamel.yaml, item for item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl import reader
from dialogctl.reader import parse_conversation
from dialogctl.sequence import read_items

from .conftest import TREES, copy_tree
from .strategies import NASTY_LINES, text_chars

words = st.text(st.sampled_from("abcxyz é日🎉-_#:'\"{}[]|>\\\t"), min_size=0, max_size=12)
lines = st.one_of(words, st.sampled_from(NASTY_LINES), st.text(text_chars, max_size=10))
scalars = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9).map(lambda f: round(f, 3)),
    st.booleans(),
    st.none(),
    words,
)
keys = st.one_of(
    st.sampled_from(["model", "tokens", "total", "prompt", "true", "null", "Yes", "x1"]), st.text(st.sampled_from("abkZ_9 -"), min_size=1, max_size=6)
)
mappings = st.recursive(st.dictionaries(keys, scalars, max_size=3), lambda inner: st.dictionaries(keys, st.one_of(scalars, inner), max_size=3), max_leaves=8)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'  # the reference writer does not escape (one of its defects)
    if value is None:
        return "null"
    return json.dumps(value)


def _mapping(value: dict[str, Any], indent: str) -> list[str]:
    out = []
    for key, item in value.items():
        if isinstance(item, dict):
            out.append(f"{indent}{key}:")
            out.extend(_mapping(item, indent + "  "))
        else:
            out.append(f"{indent}{key}: {_scalar(item)}")
    return out


@st.composite
def reference_items(draw: st.DrawFn) -> str:
    role = draw(st.sampled_from(["user", "assistant", "system", "tool", "yes", "Robot"]))
    body = draw(st.lists(lines, min_size=1, max_size=5))
    out = [f"- role: {role}", "  content: |"] + [("    " + line) if line else "" for line in body]
    stamp = draw(st.sampled_from(["2024-01-15T10:30:00.000Z", "2024-01-15", "2024-01-15T10:30:00+02:00", "12345", "not a time"]))
    out.append(f"  timestamp: {stamp}")
    meta = draw(st.one_of(st.none(), mappings))
    if meta is not None:
        out.append("  metadata:")
        out.extend(_mapping(meta, "    "))
    return "\n".join(out) + "\n"


def _slowly(data: bytes) -> Any:
    """The same file read with every item going through ruamel.yaml."""
    original = reader._read_reference_items
    reader._read_reference_items = lambda data, start, end, result: start  # type: ignore[assignment]
    try:
        return parse_conversation(data, "f.yaml")
    finally:
        reader._read_reference_items = original


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(reference_items(), min_size=1, max_size=6), st.booleans())
def test_fast_items_read_as_ruamel_reads_them(items: list[str], torn: bool) -> None:
    data = "".join(items).encode("utf-8")
    if torn:
        data = data[: len(data) * 2 // 3]
    fast, slow = parse_conversation(data, "f.yaml"), _slowly(data)
    assert fast.messages == slow.messages
    assert fast.damage == slow.damage


def test_plain_items_are_read_without_yaml() -> None:
    text = (
        "- role: user\n  content: |\n    hello\n\n    world\n\n  timestamp: 2024-01-15T10:30:00.000Z\n"
        "- role: assistant\n  content: |\n      indented later is fine\n    no: first line sets it\n  timestamp: 2024-01-15T10:30:01.000Z\n"
    )
    messages, stop = read_items(text)
    assert stop == text.index("- role: assistant")  # its first line is deeper than 4: left to YAML
    assert [m.content for m in messages] == ["hello\n\nworld\n"]
    text = '- role: user\n  content: |\n    hello\n\n    world\n\n  timestamp: 2024-01-15T10:30:00.000Z\n  metadata:\n    tokens:\n      total: 3\n    model: "m"\n'
    messages, stop = read_items(text)
    assert stop == len(text)
    assert [(m.content, m.metadata) for m in messages] == [("hello\n\nworld\n", {"tokens": {"total": 3}, "model": "m"})]


@pytest.mark.parametrize("tree", TREES)
def test_reference_trees_read_the_same_fast_or_slow(tree: str, tmp_path: Path) -> None:
    root = copy_tree(tree, tmp_path)
    for path in sorted(root.rglob("*.yaml")):
        data = path.read_bytes()
        fast, slow = parse_conversation(data, "f.yaml"), _slowly(data)
        assert (fast.messages, fast.damage) == (slow.messages, slow.damage), path
