"""Deep nesting: JSON nested past the metadata limit is refused naming its line and field, at any depth, on every input path.

Python's JSON parser gives up about a thousand levels down with a
RecursionError; dialogctl's metadata limit is 64 levels. Input nested anywhere
from 65 to 100,000 levels, through ``append --jsonl``, ``--meta`` and every
import format, must be refused with exit 2 and a line naming where (never an
internal error), and nothing is written. A record in a journal file nested as
deep is damage (file and line), and the rest of the file is read.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from dialogctl.fileformat.codec import encode_record
from dialogctl.models import Message
from dialogctl.nesting import deepest

from ..conftest import Cli

DEPTHS = [65, 66, 500, 999, 1000, 5000, 100_000]
GOOD = {"role": "user", "content": "fine", "timestamp": "2024-01-15T10:30:00Z"}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _bad(depth: int) -> str:
    """A message whose metadata holds a value nested ``depth`` levels below the metadata object."""
    return '{"role": "user", "content": "x", "timestamp": "2024-01-15T10:30:00Z", "metadata": {"a": @}}'.replace("@", _deep(depth))


def _run(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dialogctl", "--root", str(root), *args], input=stdin, capture_output=True, text=True, timeout=120)


_SEEN = {"inputs": 0}


@pytest.mark.parametrize("depth", DEPTHS)
def test_every_input_path_refuses_deep_nesting_naming_where(depth: int, tmp_path: Path) -> None:
    root = tmp_path / "journal"
    good = json.dumps(GOOD)
    cases: dict[str, tuple[list[str], str | None, str]] = {
        "append --jsonl": (["append", "alice", "--jsonl"], f"{good}\n{_bad(depth)}\n", "stdin line 2: field 'metadata'"),
        "append --jsonl, first line": (["append", "alice", "--jsonl"], f"{_bad(depth)}\n", "stdin line 1: field 'metadata'"),
    }
    if depth <= 50_000:  # an argument longer than 128 KiB is refused by the kernel itself
        cases["--meta"] = (["append", "alice", "hi", "--meta", f"a={_deep(depth)}"], None, "--meta")
    files = {
        "one.jsonl": (f"{good}\n{_bad(depth)}\n", "one.jsonl line 2"),
        "first.jsonl": (f"{_bad(depth)}\n{good}\n", "first.jsonl line 1"),
        "one.json": ('{"userId": "bob", "messages": [\n' + good + ",\n" + _bad(depth) + "]}", "one.json"),
        "one.csv": (
            'role,content,metadata\r\nuser,fine,\r\nuser,x,"{""a"": @}"\r\n'.replace("@", _deep(depth)),
            "one.csv line 3 (record 1)",
        ),
        "one.openai": ('{"messages": [{"role": "user", "content": "x", "extra": @}]}\n'.replace("@", _deep(depth)), "one.openai line 1"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_text(data)
    for name, (args, stdin, named) in cases.items():
        result = _run(root, *args, stdin=stdin)
        _SEEN["inputs"] += 1
        assert result.returncode == 2, (name, result.stderr)
        assert named in result.stderr and "nested deeper than 64 levels" in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 2
    for name, (_, named) in files.items():
        fmt = ["--format", "openai"] if name.endswith(".openai") else ["--format", "jsonl"] if name.endswith(".jsonl") else []
        result = _run(root, "import", "bob", str(tmp_path / name), *fmt)
        _SEEN["inputs"] += 1
        assert result.returncode == 2, (name, result.stderr)
        assert named in result.stderr and ("metadata" in result.stderr or "extra" in result.stderr), (name, result.stderr)
        assert "nested deeper than 64 levels" in result.stderr, (name, result.stderr)
    if depth < 900:  # sqlite: a database export can carry what the JSON parser can read
        db = tmp_path / "one.sqlite"
        ok = _run(root, "--set", "archiveThreshold=0", "append", "carol", "--jsonl", stdin=f"{good}\n")
        assert ok.returncode == 0
        assert _run(root, "export", "carol", "--format", "sqlite", "-o", str(db)).returncode == 0
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE messages SET metadata = ?", (json.dumps({"a": json.loads(_deep(depth))}),))
        result = _run(root, "import", "dave", str(db))
        assert result.returncode == 2 and "messages row 1" in result.stderr and "nested deeper than 64 levels" in result.stderr, result.stderr
    assert not (root / "users" / "al").exists() and not (root / "users" / "bo").exists()  # nothing written


def test_a_deep_record_in_a_file_is_damage_and_the_rest_is_read(tmp_path: Path, cli: Cli, figures: Any) -> None:
    """A framed record of ours whose metadata line is nested 100,000 deep (a hand edit, its frame made to match)."""
    root = tmp_path / "journal"
    folder = root / "users" / "al" / "ic" / "e" / "dialogs"
    folder.mkdir(parents=True)
    before = encode_record(Message("user", "before", "2024-01-15T10:30:00Z"), 1, "sequence")
    body = encode_record(Message("user", "deep", "2024-01-15T10:30:01Z", {"a": 1}), 2, "sequence").split(b"# dialogctl")[0]
    body = body.replace(b'{"a": 1}', b'{"a": ' + _deep(100_000).encode() + b"}")
    deep = body + b"# dialogctl n=2 len=%d crc32=%08x\n" % (len(body), zlib.crc32(body))
    after = encode_record(Message("user", "after", "2024-01-15T10:30:02Z"), 3, "sequence")
    (folder / "current.yaml").write_bytes(before + deep + after)
    for args in (["show", "alice", "--format", "jsonl"], ["stats"], ["export", "--all", "--format", "jsonl"], ["search", "e"]):
        result = cli("--root", str(root), *args)
        assert result.exit_code == 5 and "users/al/ic/e/dialogs/current.yaml:" in result.stderr, (args, result.stderr)
    shown = cli("--root", str(root), "show", "alice", "--format", "jsonl")
    assert [json.loads(line)["content"] for line in shown.stdout.splitlines()] == ["before", "after"]
    assert cli("--root", str(root), "verify").exit_code == 1
    figures.add(
        f"deep nesting: {_SEEN['inputs']} inputs nested {min(DEPTHS)} to {max(DEPTHS):,} levels (append --jsonl, --meta, import jsonl, json, csv, "
        "openai, sqlite): every one exit 2 naming its line and field, nothing written; a record nested 100,000 deep in a file: damage, exit 5, "
        "the records around it read"
    )


def test_the_scan_finds_the_place_without_recursion() -> None:
    found = deepest('{"messages": [\n{"role": "x"},\n{"metadata": {"a b": @}}]}'.replace("@", _deep(1_000_000)), 64)
    assert found is not None and found.line == 3 and found.field == "messages" and found.path.startswith('messages[1].metadata["a b"]')
    assert deepest('["[[[[[[", {"k": "]]]]"}]', 2) is None  # brackets inside strings do not count


def test_deep_json_in_the_journals_own_files_is_not_ours(tmp_path: Path, cli: Cli) -> None:
    """A lock record, metadata.yaml or cleanup log line nested 2,000 deep is not a record of ours: never an internal error."""
    root = tmp_path / "journal"
    assert cli("--root", str(root), "append", "alice", "hi").exit_code == 0
    deep = _deep(2000).encode()
    (root / "users/al/ic/e/dialogs/.lock").write_bytes(deep)
    (root / "users/al/ic/e/metadata.yaml").write_bytes(deep)
    (root / "system").mkdir(exist_ok=True)
    (root / "system/cleanup.log").write_bytes(deep + b"\n")
    for args in (["locks"], ["append", "alice", "again"], ["stats"], ["list"]):
        result = cli("--root", str(root), *args)
        assert result.exit_code == 0, (args, result.stderr)
    assert json.loads((root / "users/al/ic/e/metadata.yaml").read_text())["totalMessages"] == 2  # recomputed
