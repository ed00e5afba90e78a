"""The reference implementation's real journals read back exactly.

For intact trees, ``export --all --format jsonl`` yields exactly the messages
the reference's own parser read (``<tree>.expected.json``). For damaged trees,
it yields every intact message of ``<tree>.truth.json``, reports the damage
with file and line, and exits 5.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from .conftest import DAMAGED_TREES, FIXTURES, TREES, Cli, copy_tree

INTACT_TREES = [t for t in TREES if t not in DAMAGED_TREES]


def _by_file(records: list[dict[str, Any]], root: Path, tree: str) -> dict[str, list[dict[str, Any]]]:
    """Group exported messages by the file they came from, keyed like expected.json."""
    from dialogctl import Journal

    journal = Journal.open(str(root))
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        from dialogctl.models import ConversationRef

        if rec["archived"]:
            ref = ConversationRef(rec["user"], "archive", rec["conversation"])
        elif rec["conversation"] == "current":
            ref = ConversationRef(rec["user"], "current")
        else:
            ref = ConversationRef(rec["user"], "session", rec["conversation"])
        msg = {k: rec[k] for k in ("role", "content", "timestamp")}
        if rec["metadata"] is not None:
            msg["metadata"] = rec["metadata"]
        out[journal.rel_path(ref)].append(msg)
    return out


@pytest.mark.parametrize("tree", INTACT_TREES)
def test_intact_tree_reads_as_reference_parser_did(tree: str, tmp_path: Path, cli: Cli) -> None:
    root = copy_tree(tree, tmp_path)
    result = cli("--root", str(root), "export", "--all", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    expected = json.loads((FIXTURES / f"{tree}.expected.json").read_text())
    got = _by_file(records, root, tree)
    want = {path: v["messages"] for path, v in expected.items() if v["messages"]}
    assert got == want
    # identity fields: index runs 0..n-1 within each conversation
    seen: dict[tuple[str, str, bool], list[int]] = defaultdict(list)
    for rec in records:
        seen[(rec["user"], rec["conversation"], rec["archived"])].append(rec["index"])
    assert all(indexes == list(range(len(indexes))) for indexes in seen.values())


def _norm(msg: dict[str, Any]) -> dict[str, Any]:
    """The reference round trip adds one final newline to content (clip chomping)."""
    out = {k: v for k, v in msg.items() if k in ("role", "content", "timestamp", "metadata") and v is not None}
    out["content"] = out["content"].rstrip("\n")
    return out


@pytest.mark.parametrize("tree", DAMAGED_TREES)
def test_damaged_tree_yields_every_intact_message_and_reports_damage(tree: str, tmp_path: Path, cli: Cli) -> None:
    root = copy_tree(tree, tmp_path)
    result = cli("--root", str(root), "export", "--all", "--format", "jsonl")
    # v1-after-cleanup's glued separators are split and every kept message is read: recovered, nothing lost.
    assert result.exit_code == (0 if tree == "v1-after-cleanup" else 5)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    truth = json.loads((FIXTURES / f"{tree}.truth.json").read_text())
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_user[rec["user"]].append(_norm(rec))
    for user, messages in truth.items():
        if tree == "v1-after-cleanup":
            intact = [_norm(m) for m in messages if m["keptByCleanup"]]
            assert by_user[user] == intact, user
        else:
            truth_norm = [_norm(m) for m in messages if not m.get("torn")]
            # every message read is a true one, in order, and nothing torn sneaks in
            got = by_user[user]
            assert all(m in truth_norm for m in got), user
            assert [truth_norm.index(m) for m in got] == sorted(truth_norm.index(m) for m in got)
            assert all(m.get("timestamp") for m in got)
    if tree == "v1-after-cleanup":
        # One line per file, offering repair; no record was lost, so no warning.
        assert "warning" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == len(truth) and all("glued separators split; every message was read" in line and "dialogctl repair" in line for line in lines)
        return
    # each damage is reported on stderr with file and line
    lines = [line for line in result.stderr.splitlines() if "warning: users/" in line]
    assert lines, result.stderr
    for line in lines:
        path_and_line = line.split("warning: ", 1)[1].split(": ", 1)[0]
        path, _, number = path_and_line.rpartition(":")
        assert (root / path).is_file(), line
        assert number.isdigit(), line


def test_broken_tree_details(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-broken", tmp_path)
    result = cli("--root", str(root), "export", "--all", "--format", "jsonl")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    counts = defaultdict(int)
    for rec in records:
        counts[rec["user"]] += 1
    # carol-1 and carol-2 keep the messages around the bad item; carol-3 loses only the torn tail
    assert counts == {"carol-1": 2, "carol-2": 2, "carol-3": 4}
    assert "users/ca/ro/l-3/dialogs/current.yaml:17: torn record" in result.stderr
    assert "users/ca/ro/l-1/dialogs/current.yaml:" in result.stderr
    assert "users/ca/ro/l-2/dialogs/current.yaml:" in result.stderr


def test_after_cleanup_reports_glued_separators_as_recovered_and_verify_names_each(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-after-cleanup", tmp_path)
    result = cli("--root", str(root), "show", "bob-0", "--format", "jsonl")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 9
    assert result.stderr.splitlines() == [
        "dialogctl: users/bob/-0/dialogs/current.yaml: 9 glued separators split; every message was read ('dialogctl repair' rewrites the file cleanly)"
    ]
    # The servers' own parser reads 1 message there: verify still calls each one a problem, with its line.
    checked = cli("--root", str(root), "verify", "bob-0", "--format", "json")
    assert checked.exit_code == 1
    glued = [f for f in json.loads(checked.stdout) if f["problem"] == "glued separator"]
    assert glued and glued[0]["line"] == 7 and glued[0]["path"] == "users/bob/-0/dialogs/current.yaml"


@pytest.mark.parametrize(
    "tree,layout", [("v1-sharded", "sharded 2x2"), ("v1-flatish", "sharded 1x2"), ("v1-after-cleanup", "sharded 1x3"), ("v3-sessions", "sharded 2x2, sessions")]
)
def test_layout_is_detected(tree: str, layout: str, tmp_path: Path, cli: Cli) -> None:
    root = copy_tree(tree, tmp_path)
    records = cli.json("--root", str(root), "config", "--format", "json")
    effective = next(r for r in records if r["setting"] == "effectiveLayout")
    assert effective["value"].startswith(layout.split(",")[0])
    if "sessions" in layout:
        assert "sessions" in effective["value"]
    assert effective["source"] == "detected from folders"


def test_reading_changes_nothing(tmp_path: Path, cli: Cli) -> None:
    """Reads leave the journal byte-identical; only list and stats may save the catalog (and stats system/stats.yaml) beside it."""
    for tree in TREES:
        root = copy_tree(tree, tmp_path)
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        for args in (["export", "--all"], ["locks"], ["cleanup", "--dry-run", "--max-age", "1d"]):
            cli("--root", str(root), *args)
        assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before, tree
        for args in (["list"], ["stats"], ["cleanup", "--dry-run", "--max-age", "1d"]):
            cli("--root", str(root), *args)
        after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        catalog = {root / "system" / name for name in ("catalog.bin", "catalog.lock", "catalog.log", "stats.yaml")}
        assert set(after) - set(before) == catalog, tree
        assert {p: after[p] for p in before} == before, tree
