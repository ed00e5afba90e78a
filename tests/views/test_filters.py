"""``--model`` and ``--meta`` as filters: the core's rule (one MessageFilter for every command), and ``show`` with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dialogctl.models import Message
from dialogctl.views.filters import MessageFilter, MetaCondition, json_equal

from ..conftest import Cli


def _msg(metadata: dict[str, Any] | None, role: str = "user") -> Message:
    return Message(role, "text", "2024-01-15T10:00:00.000Z", metadata)


MESSAGES = [
    _msg({"model": "gpt-4o", "usage": {"tier": 2}, "flag": True}),
    _msg({"model": "claude", "usage": {"tier": "2"}, "flag": 1}, "assistant"),
    _msg(None),
    _msg({"model": "", "usage": 2, "tags": ["a", "b"]}),
    _msg({"model": ["gpt-4o"], "usage": {"tier": 2.0, "region": "eu"}}, "assistant"),
]


def _kept(f: MessageFilter) -> list[int]:
    return [index for index, _ in f.indexed(MESSAGES)]


def test_model_keeps_messages_whose_metadata_names_one_of_the_models() -> None:
    assert _kept(MessageFilter(models=frozenset({"gpt-4o"}))) == [0]  # a list is not a model name (as usage accounting reads it)
    assert _kept(MessageFilter(models=frozenset({"gpt-4o", "claude"}))) == [0, 1]
    assert _kept(MessageFilter(models=frozenset({"mistral"}))) == []
    assert _kept(MessageFilter(models=frozenset({"claude"}), roles=frozenset({"user"}))) == []


def test_meta_follows_dotted_keys_and_compares_as_json() -> None:
    def meta(*conditions: tuple[str, Any]) -> list[int]:
        return _kept(MessageFilter(meta=tuple(MetaCondition(tuple(key.split(".")), value) for key, value in conditions)))

    assert meta(("usage.tier", 2)) == [0, 4]  # 2.0 is the number 2; "2" is text
    assert meta(("usage.tier", "2")) == [1]
    assert meta(("flag", True)) == [0]  # true is not 1
    assert meta(("flag", 1)) == [1]
    assert meta(("usage", 2)) == [3]
    assert meta(("usage.tier.deeper", 2)) == []  # a value, not an object, on the way: no match, no error
    assert meta(("tags", ["a", "b"])) == [3] and meta(("tags", ["b", "a"])) == []
    assert meta(("usage", {"tier": 2.0, "region": "eu"})) == [4]
    assert meta(("usage.tier", 2), ("usage.region", "eu")) == [4]  # every condition must hold
    assert meta(("missing", None)) == []  # an absent key is not null


def test_json_equal_is_json_equality() -> None:
    assert json_equal(1, 1.0) and json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal([True], [1]) and not json_equal("1", 1)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2}) and not json_equal(None, "null")


def test_a_filter_crosses_into_worker_processes_unchanged() -> None:
    import pickle

    f = MessageFilter(models=frozenset({"m"}), meta=(MetaCondition(("a", "b"), {"x": [1]}),))
    assert pickle.loads(pickle.dumps(f)) == f and pickle.loads(pickle.dumps(f)).active


@pytest.fixture
def tagged(root: Path, cli: Cli) -> Path:
    cli("append", "alice", "q1", "--meta", "channel=email", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "alice", "a1", "--role", "assistant", "--meta", "model=gpt-4o", "--meta", "usage.tier=2", "--timestamp", "2024-01-15T10:00:01Z")
    cli("append", "alice", "q2", "--meta", "channel=chat", "--timestamp", "2024-01-15T10:00:02Z")
    cli("append", "alice", "a2", "--role", "assistant", "--meta", "model=claude", "--meta", 'usage.tier="2"', "--timestamp", "2024-01-15T10:00:03Z")
    return root


def test_show_with_model_and_meta_keeps_the_conversations_indexes(tagged: Path, cli: Cli) -> None:
    def shown(*args: str) -> list[tuple[int, str]]:
        return [(r["index"], r["content"]) for r in cli.jsonl("show", "alice", "--format", "jsonl", *args)]

    assert shown("--model", "gpt-4o") == [(1, "a1")]
    assert shown("--model", "gpt-4o", "--model", "claude") == [(1, "a1"), (3, "a2")]
    assert shown("--meta", "channel=chat") == [(2, "q2")]
    assert shown("--meta", "usage.tier=2") == [(1, "a1")]
    assert shown("--meta", 'usage.tier="2"') == [(3, "a2")]
    assert shown("--meta", "usage.tier=2", "--model", "claude") == []
    assert shown("--model", "claude", "--model", "gpt-4o", "--tail", "1") == [(3, "a2")]
    empty = cli("show", "alice", "--model", "mistral")
    assert empty.exit_code == 0 and empty.stdout == "" and "holds no messages that match" in empty.stderr


@pytest.mark.parametrize("value", ["channel", "=chat", "x=NaN"])
def test_a_meta_filter_that_is_not_key_value_is_a_usage_error(tagged: Path, cli: Cli, value: str) -> None:
    for command in (["show", "alice"], ["search", "q", "alice"], ["export", "alice"]):
        result = cli(*command, "--meta", value)
        assert result.exit_code == 2 and "--meta" in result.stderr and result.stdout == "", (command, result.stderr)
