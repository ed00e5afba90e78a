"""Idle archiving: the core, the command, and a sweep while servers append."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import Cli, run_exe


def test_idle_archiving_core(root: Path, cli: Cli) -> None:
    from datetime import timedelta

    from dialogctl import Journal
    from dialogctl.maintenance.idle import archive_idle, plan_idle

    cli("append", "sleepy", "zzz", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "busy", "now")
    journal = Journal.open()
    plan = plan_idle(journal, timedelta(minutes=5))
    assert [item.ref.user for item in plan] == ["sleepy"]
    cli("append", "sleepy", "awake again")  # lands between plan and archive
    outcomes = archive_idle(journal, plan, timedelta(minutes=5))
    assert [(o.ref.user, o.archive_id, o.note) for o in outcomes] == [("sleepy", None, "active again; kept")]
    cli("append", "quiet", "old", "--timestamp", "2024-01-15T10:00:00Z")
    outcomes = archive_idle(journal, plan_idle(journal, timedelta(minutes=5)), timedelta(minutes=5))
    assert [(o.ref.user, bool(o.archive_id)) for o in outcomes] == [("quiet", True)]


def test_archive_idle_cli(root: Path, cli: Cli) -> None:
    cli("append", "sleepy", "zzz", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "busy", "now")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    plan = cli.json("archive", "--idle", "5m", "--all", "--dry-run", "--format", "json")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert [(r["user"], r["archive"], r["note"]) for r in plan] == [("sleepy", None, "would archive")]
    done = cli("archive", "--idle", "5m", "--all")
    assert done.exit_code == 0
    heading, row = done.stdout.splitlines()  # the rows of the dry run, with the new archive and the outcome
    assert heading.split() == ["User", "Conversation", "Last", "message", "Messages", "Archive", "Outcome"]
    assert row.split()[:2] == ["sleepy", "current"] and row.split()[-1] == "archived"
    assert cli.json("show", "sleepy", "--format", "json")["messageCount"] == 0
    assert cli.json("show", "busy", "--format", "json")["messageCount"] == 1
    assert cli.json("archive", "--idle", "5m", "--all", "--format", "json") == []
    for args in (
        ["archive", "--idle", "5"],
        ["archive", "--idle", "5m"],
        ["archive", "--all"],
        ["archive", "busy", "--idle", "5m", "--all"],
        ["archive", "--idle", "5m", "--all", "--id", "x"],
        ["archive", "busy", "--dry-run"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)


def test_idle_sweeps_while_servers_append(tmp_path: Path) -> None:
    """cron runs the idle sweep again and again while another process appends: nothing lost or doubled."""
    from collections import Counter

    root = tmp_path / "j"
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root))
    code = (
        "import time; from dialogctl.config import load_settings; from dialogctl import Journal;"
        "from dialogctl.models import Message; from dialogctl.times import utc_now_iso;"
        "j = Journal.open();"
        "[(j.append(f'u{i % 4}', [Message('user', f'm{i}', utc_now_iso())]), time.sleep(0.01)) for i in range(200)]"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], env=env)
    sweeps = 0
    while writer.poll() is None:
        result = subprocess.run([sys.executable, "-m", "dialogctl", "-q", "archive", "--idle", "1s", "--all"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        sweeps += 1
    assert writer.returncode == 0 and sweeps >= 2
    time.sleep(1.2)
    assert subprocess.run([sys.executable, "-m", "dialogctl", "-q", "archive", "--idle", "1s", "--all"], env=env).returncode == 0
    result = run_exe("export", "--all", env={"DIALOGUE_JOURNAL_ROOT": str(root)})
    seen = Counter(json.loads(line)["content"] for line in result.stdout.splitlines())
    assert seen == Counter(f"m{i}" for i in range(200))
    listing = json.loads(run_exe("list", "--format", "json", env={"DIALOGUE_JOURNAL_ROOT": str(root)}).stdout)
    assert all(row["conversations"] == 0 for row in listing)  # everyone idle now, all archived
