"""The demo journal: realistic, readable by every command, exactly one damaged file, never overwriting."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialogctl.errors import InvalidInput
from dialogctl.maintenance.demo import write_demo

from .. import reference_writer
from ..conftest import Cli
from ..terminal import run_tty


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_reading_command_reads_it(tmp_path: Path, cli: Cli) -> None:
    made = write_demo(tmp_path / "demo")
    r = ["--root", str(made.root)]
    users = cli.json(*r, "list", "--format", "json")
    assert sorted(u["user"] for u in users) == ["alice", "bob", "carol", "dave", "user-1006"]
    stats = cli.json(*r, "stats", "--format", "json")
    assert stats["totalUsers"] == 5 and stats["totalArchivedConversations"] == 3
    assert stats["totalTokens"] > 0 and len(stats["tokensByModel"]) == 4, stats["tokensByModel"]
    for user in made.users:
        shown = cli(*r, "show", user, "--format", "jsonl")
        assert shown.exit_code == 0, (user, shown.stderr)
    session = cli.jsonl(*r, "export", "user-1006", "--format", "jsonl")
    assert {m["conversation"] for m in session} == {"conv-2f9c"}


def test_verify_names_exactly_the_one_damaged_file(tmp_path: Path, cli: Cli) -> None:
    made = write_demo(tmp_path / "demo")
    result = cli("--root", str(made.root), "verify", "--format", "json")
    assert result.exit_code == 1, result.stderr
    findings = json.loads(result.stdout)
    assert {f["path"] for f in findings if f["level"] == "problem"} == {made.damaged}
    assert [f for f in findings if f["level"] != "problem"] == []  # no notes either: modes are private
    # every message of it is still read (the damage is the reference cleanup's glued separators)
    assert cli("--root", str(made.root), "list", "bob").exit_code == 0


def test_server_files_hold_the_servers_exact_bytes(tmp_path: Path, cli: Cli) -> None:
    made = write_demo(tmp_path / "demo")
    dialogs = made.root / "users"
    for user, path in (
        ("bob", dialogs / "bo" / "b" / "bob" / "dialogs" / "current.yaml"),
        ("carol", dialogs / "ca" / "ro" / "l" / "dialogs" / "current.yaml"),
        ("user-1006", dialogs / "us" / "er" / "-1006" / "dialogs" / "session-conv-2f9c.yaml"),
    ):
        messages = cli.jsonl("--root", str(made.root), "export", user, "--format", "jsonl")
        # A server's literal block reads back with one final line break (YAML's clip); the demo's texts have none.
        items = [{"role": m["role"], "content": m["content"].removesuffix("\n"), "timestamp": m["timestamp"], "metadata": m["metadata"]} for m in messages]
        wanted = reference_writer.format_batch(items)
        assert path.read_bytes() == wanted.encode(), user
        assert b"# dialogctl" not in path.read_bytes()  # no frame: a server wrote it
    alice = made.root / "users" / "al" / "ic" / "e" / "dialogs" / "current.yaml"
    assert b"# dialogctl n=" in alice.read_bytes()  # dialogctl's own records carry frames


def test_timestamps_are_relative_to_now(tmp_path: Path, cli: Cli) -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    made = write_demo(tmp_path / "demo", now=now)
    messages = cli.jsonl("--root", str(made.root), "export", "--all", "--format", "jsonl")
    stamps = sorted(m["timestamp"] for m in messages)
    assert stamps[-1] <= "2030-06-01T12:00:00.000Z" and stamps[-1] >= "2030-06-01T11:50:00.000Z"
    assert stamps[0] < "2029-06-01"  # an archive past the default retention of 365 days


def test_the_examples_find_something(tmp_path: Path, cli: Cli) -> None:
    r = ["--root", str(write_demo(tmp_path / "demo").root)]
    idle = {row["user"] for row in cli.jsonl(*r, "archive", "--idle", "5m", "--all", "--dry-run", "--format", "jsonl")}
    assert "bob" in idle and "alice" not in idle  # alice spoke 2 minutes ago
    plan = cli.jsonl(*r, "cleanup", "--max-inactive", "180d", "--dry-run", "--format", "jsonl")
    assert {(p["action"], p["user"]) for p in plan} == {("remove-user", "dave"), ("remove-archive", "alice")}


def test_it_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    write_demo(target)
    before = _snapshot(target)
    with pytest.raises(InvalidInput, match="not empty"):
        write_demo(target)
    assert _snapshot(target) == before
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InvalidInput, match="not a folder"):
        write_demo(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert write_demo(tmp_path / "empty").root == tmp_path / "empty"


def test_the_settings_around_it_do_not_change_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    monkeypatch.setenv("DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD", "1")
    monkeypatch.setenv("DIALOGUE_JOURNAL_LAYOUT", "flat")
    made = write_demo(tmp_path / "demo")
    monkeypatch.delenv("DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD")
    monkeypatch.delenv("DIALOGUE_JOURNAL_LAYOUT")
    assert (made.root / "users" / "al" / "ic" / "e" / "dialogs" / "current.yaml").is_file()
    assert cli.json("--root", str(made.root), "stats", "--format", "json")["totalArchivedConversations"] == 3


# --- the command ---------------------------------------------------------------------------------


def test_the_command_prints_the_root_and_what_to_try(tmp_path: Path, cli: Cli) -> None:
    result = cli("demo", "d")
    assert result.exit_code == 0, result.stderr
    root = Path.cwd() / "d"
    assert result.stdout == f"{root}\n"
    tips = [line.split("#")[0].strip() for line in result.stderr.splitlines() if line.lstrip().startswith("dialogctl --root")]
    assert len(tips) >= 8 and all(t.startswith(f"dialogctl --root {shlex.quote(str(root))} ") for t in tips)
    assert f"export DIALOGUE_JOURNAL_ROOT={root}" in result.stderr
    for tip in tips:  # every suggestion works on it: exit 0, or 1 for verify's answer
        args = shlex.split(tip)[1:]
        ran = cli(*args, input="")
        assert ran.exit_code == (1 if "verify" in args else 0), (tip, ran.stderr)


def test_running_it_twice_refuses(tmp_path: Path, cli: Cli) -> None:
    assert cli("demo", str(tmp_path / "d")).exit_code == 0
    before = _snapshot(tmp_path / "d")
    again = cli("demo", str(tmp_path / "d"))
    assert again.exit_code == 2 and again.stdout == ""
    assert "not empty" in again.stderr and "never overwrites" in again.stderr
    assert _snapshot(tmp_path / "d") == before


def test_default_folders(tmp_path: Path, cli: Cli) -> None:
    quiet = cli("-q", "demo")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout == f"{Path.cwd() / 'dialogctl-demo'}\n"
    flagged = cli("--root", str(tmp_path / "r"), "-q", "demo")
    assert flagged.stdout == f"{tmp_path / 'r'}\n" and (tmp_path / "r" / "users").is_dir()
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "dialogctl").exists()  # the default journal stays as it is


def test_the_tips_fit_80_columns() -> None:
    short = tempfile.mkdtemp(prefix="d", dir="/tmp")
    try:
        result = run_tty("demo", short, cols=80)
        assert result.returncode == 0, result.output
        lines = result.output.replace("\r\n", "\n").splitlines()
        assert any("dialogctl --root" in line for line in lines)
        assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    finally:
        shutil.rmtree(short)
