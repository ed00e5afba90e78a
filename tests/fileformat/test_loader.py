"""The YAML loader behind the salvage path: which one is active, and a refused document never changes the next parse."""

from __future__ import annotations

import os

import pytest

from dialogctl import yamlsafe as salvage
from dialogctl.fileformat.reader import parse_conversation
from dialogctl.yamlsafe import ItemError as _ItemError
from dialogctl.yamlsafe import load_yaml

DEEP = "role: user\ncontent: x\ntimestamp: t\nmetadata: " + "[" * 50_000 + "]" * 50_000 + "\n"
GOOD_ITEM = b"- role: user\n  content: |\n    hello\n  timestamp: 2024-01-15T10:30:00.000Z\n  metadata: {model: m}\n"


@pytest.fixture
def pure_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader a plain ``pip install .`` has: ruamel.yaml without its C extension."""
    monkeypatch.setattr(salvage, "_LOADERS", {"c": None})


def _hostile() -> list[str]:
    return [
        DEEP,
        "a: [" * 300 + "]" * 300,  # deeper than MAX_DEPTH, shallow enough for the C loader's bound
        "a: b: c",
        "a: 1\na: 2\n",
        "a: !!python/object/apply:os.system ['true']\n",
        "a: &x [1]\nb: *y\n",
        "a: 'unterminated\n",
        "- x\n--- \n- y\n",
    ]


def test_a_refused_document_never_changes_the_next_parse_pure(pure_yaml: None) -> None:
    for text in _hostile():
        with pytest.raises(_ItemError):
            load_yaml(text)
        assert load_yaml("a: 1\nb: [x, {c: 2}]\n") == {"a": 1, "b": ["x", {"c": 2}]}, text[:20]


def test_a_refused_document_never_changes_the_next_parse_of_a_long_document() -> None:
    """Past the C loader's depth bound the pure loader is used even when libyaml is installed."""
    long_valid = "".join(f"k{i}: {i}\n" for i in range(salvage._C_DEPTH_BOUND + 10))
    with pytest.raises(_ItemError):
        load_yaml(DEEP)
    assert load_yaml(long_valid)["k4000"] == 4000


def test_files_after_a_hostile_file_read_as_before(pure_yaml: None) -> None:
    deep_item = b"- role: user\n  content: x\n  timestamp: t\n  metadata: " + b"[" * 50_000 + b"]" * 50_000 + b"\n"
    before = parse_conversation(GOOD_ITEM, "good.yaml")
    assert [m.content for m in before.messages] == ["hello\n"] and not before.damage
    hostile = parse_conversation(deep_item, "hostile.yaml")
    assert not hostile.messages and hostile.damage
    after = parse_conversation(GOOD_ITEM, "good.yaml")
    assert (after.messages, after.damage) == (before.messages, before.damage)


def test_the_expected_loader_is_active() -> None:
    """.ci/run runs the suite twice: plain install (DIALOGCTL_EXPECT_PURE_YAML=1), then with the fast extra (=0)."""
    expect = os.environ.get("DIALOGCTL_EXPECT_PURE_YAML")
    if expect is None:
        pytest.skip("DIALOGCTL_EXPECT_PURE_YAML is not set (.ci/run sets it)")
    if expect == "1":
        with pytest.raises(ImportError):
            from ruamel.yaml.cyaml import CParser

            CParser("a: 1")  # pragma: no cover - only reached when a C loader is installed
        assert salvage.yaml_loader() == "pure Python"
    else:
        assert salvage.yaml_loader() == "C (libyaml)"
