"""Every exit path tells the truth: damage is said whatever the answer, and damage that lost nothing is said as such.

Exit codes of a command that ran to its end, first that applies: 6 (a file or
folder could not be read at all), 5 (records could not be read), then the
command's own answer (1: nothing matched, problems found), else 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import FIXTURES, Cli, copy_tree

BROKEN_DAMAGE = 3  # v1-broken: two invalid items and a torn tail


@pytest.mark.parametrize(
    "args",
    [
        ["search", "zzz"],  # a fixed string found in no raw file: nothing is parsed for the answer
        ["search", "zzz", "-a"],
        ["search", "-E", "z{3}"],  # a regular expression: every file is parsed
        ["search", "zzz", "--role", "user"],
        ["search", "zzz", "--since", "2000-01-01"],
        ["search", "hi"],  # matches: the same warnings and the same exit code
    ],
)
def test_search_says_damage_whatever_the_answer(args: list[str], tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-broken", tmp_path)
    for catalog in (False, True):  # without a saved catalog, then with one (the filters use it to skip files)
        if catalog:
            assert cli("--root", str(root), "stats").exit_code == 5
        result = cli("--root", str(root), *args)
        assert result.exit_code == 5, (args, catalog, result.exit_code, result.stderr)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("dialogctl: warning: users/")]
        assert len(warnings) == BROKEN_DAMAGE, (args, catalog, result.stderr)
        assert f"{BROKEN_DAMAGE} damaged record(s) skipped" in result.stderr


def test_no_match_without_damage_is_still_exit_1(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    result = cli("--root", str(root), "search", "zzz", "-a")
    assert result.exit_code == 1 and result.stderr == "" and result.stdout == ""


def test_recovered_damage_is_one_line_per_file_exit_0_and_counted_apart(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-after-cleanup", tmp_path)
    truth = json.loads((FIXTURES / "v1-after-cleanup.truth.json").read_text())
    kept = {user: [m["content"].rstrip("\n") for m in messages if m["keptByCleanup"]] for user, messages in truth.items()}
    assert sum(map(len, kept.values())) == 45
    for args in (["list"], ["stats"], ["export", "--all", "-f", "jsonl"], ["search", "the"], ["search", "zzz-not-there"], ["show", "bob-0"]):
        result = cli("--root", str(root), *args)
        assert result.exit_code == (1 if "zzz-not-there" in args else 0), (args, result.stderr)
        lines = result.stderr.splitlines()
        files = 1 if args[0] == "show" else len(kept)
        assert len(lines) == files and "warning" not in result.stderr, (args, result.stderr)
        assert all("glued separators split; every message was read ('dialogctl repair' rewrites the file cleanly)" in line for line in lines)
    records = cli.jsonl("--root", str(root), "export", "--all", "-f", "jsonl")
    got: dict[str, list[str]] = {}
    for record in records:
        got.setdefault(record["user"], []).append(record["content"].rstrip("\n"))
    assert got == kept
    stats = cli.json("--root", str(root), "stats", "-f", "json")
    assert stats["damagedRecords"] == 0 and stats["recoveredRecords"] == 45 and stats["totalMessages"] == 45
    assert "Recovered damage" in cli("--root", str(root), "stats").stdout
    # cleanup acts on such files (a trim rewrites them cleanly) instead of refusing them
    plan = cli.json("--root", str(root), "cleanup", "--max-age", "1h", "--dry-run", "-f", "json")
    assert plan["filesTrimmed"] == len(kept) and {item["action"] for item in plan["actions"]} == {"trim"}
    done = cli("--root", str(root), "cleanup", "--max-age", "1h", "--yes")
    assert done.exit_code == 0, done.stderr
    assert cli("--root", str(root), "verify").exit_code == 0  # rewritten cleanly: nothing for the servers to misread


def test_damage_and_recovered_damage_together(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-broken", tmp_path)
    glued = copy_tree("v1-after-cleanup", tmp_path) / "users/bob/-0/dialogs/current.yaml"
    target = root / "users/ca/ro/l-9/dialogs"
    target.mkdir(parents=True)
    (target / "current.yaml").write_bytes(glued.read_bytes())
    result = cli("--root", str(root), "stats", "-f", "json")
    assert result.exit_code == 5
    stats = json.loads(result.stdout)
    assert stats["damagedRecords"] == BROKEN_DAMAGE and stats["recoveredRecords"] == 9
    assert "users/ca/ro/l-9/dialogs/current.yaml: 9 glued separators split" in result.stderr
