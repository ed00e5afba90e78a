"""The cleanup guard: a run that removes most of the journal stops for a person (core and CLI)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from dialogctl import Journal, Message
from dialogctl.maintenance.guard import held, removal_share
from dialogctl.maintenance.retention import CleanupRules, plan_rules
from dialogctl.times import format_timestamp, utc_now

from ..conftest import GUARD_OFF, Cli, copy_tree
from ..terminal import run_tty


@pytest.fixture(autouse=True)
def guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GUARD_OFF)  # the default guard (the rest of the suite runs without it)


OLD = "2020-01-01T00:00:00.000Z"
NOW = format_timestamp(utc_now())


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def _journal(root: Path, archives: int, fresh_users: int = 1) -> Journal:
    """``archives`` old archives for 'old', and ``fresh_users`` users with a recent message."""
    journal = Journal.open(root)
    for n in range(archives):
        journal.append("old", [Message("user", f"m{n}", OLD)])
        journal.archive("old", archive_id=f"a{n}")
    journal.append("old", [Message("user", "still here", NOW)])
    for n in range(fresh_users):
        journal.append(f"fresh{n}", [Message("user", "hi", NOW)])
    return journal


def test_the_share_and_what_each_rule_removes(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archives=4, fresh_users=2)
    journal.append("gone", [Message("user", "x", OLD)])
    journal.archive("gone", archive_id="g1")
    journal.append("gone", [Message("user", "y", OLD)])
    plan = plan_rules(journal, CleanupRules(retention=None, max_inactive=timedelta(days=30), max_conversations=2))
    share = removal_share(plan, 50)
    # 5 archives in all: 'gone' takes its one with it (maxInactive), the count keeps 1 of old's 4 beside its active one
    assert (share.archives_removed, share.archives_total, share.users_removed, share.users_total) == (4, 5, 1, 4)
    assert {rule: (c.users, c.archives, c.messages) for rule, c in share.by_rule.items()} == {"maxInactive": (1, 1, 2), "maxConversations": (0, 3, 3)}
    assert share.over  # 80% of the archives
    assert "removes 4 of 5 archives (80%) and 1 of 4 users (25%)" in share.describe()
    assert held(share) and not held(share, force=True)
    assert held(share, max_remove=3) and not held(share, max_remove=4)
    assert not removal_share(plan, 80).over  # exactly the limit is not more than it


def test_a_plan_within_the_share_is_not_held(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archives=4)
    plan = plan_rules(journal, CleanupRules(max_conversations=4))  # old: 1 active + 3 newest archives kept, 1 goes
    share = removal_share(plan)
    assert (share.archives_removed, share.archives_total) == (1, 4) and not share.over and not held(share)


def test_cron_cleanup_of_a_server_journal_with_default_settings_refuses(tmp_path: Path, cli: Cli) -> None:
    """The issue's case: retention 365 days on a journal whose newest message is from 2024 would remove every archive."""
    root = copy_tree("v1-sharded", tmp_path)
    before = _snapshot(root)
    result = cli("--root", str(root), "-q", "cleanup", "--yes")
    assert result.exit_code == 8
    assert result.stdout == ""
    assert "this run removes 3 of 3 archives (100%) and 0 of 12 users (0%)" in result.stderr
    assert "retention: 3 archives, 75 messages" in result.stderr and "nothing was removed" in result.stderr
    assert _snapshot(root) == before
    assert not (root / "system" / "cleanup.log").exists()  # refused before the intent was logged
    # the plan says the same, rule by rule, and warns of the refusal
    dry = cli("--root", str(root), "cleanup", "--dry-run", "--format", "json")
    assert dry.exit_code == 0
    guard = json.loads(dry.stdout)["guard"]
    assert guard["over"] and guard["byRule"] == {"retention": {"usersRemoved": 0, "archivesRemoved": 3, "filesTrimmed": 0, "messagesRemoved": 75}}
    assert "a run with --yes would refuse (exit 8)" in dry.stderr
    table = cli("--root", str(root), "cleanup", "--dry-run")
    assert "by rule: retention: 3 archives, 75 messages" in table.stderr
    # too few allowed: still refused; enough, or --force: it runs
    assert cli("--root", str(root), "-q", "cleanup", "--yes", "--max-remove", "2").exit_code == 8
    assert _snapshot(root) == before
    assert cli("--root", str(root), "-q", "cleanup", "--yes", "--max-remove", "3").exit_code == 0
    assert not list(root.glob("users/**/archived/*.yaml"))


def test_force_and_the_setting(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    assert cli("--root", str(root), "cleanup", "--yes", "--force").exit_code == 0
    assert not list(root.glob("users/**/archived/*.yaml"))
    again = copy_tree("v1-sharded", tmp_path / "again")
    assert cli("--root", str(again), "--set", "maxRemoveShare=100", "cleanup", "--yes").exit_code == 0  # 100: no guard
    assert cli("--root", str(again), "cleanup", "--dry-run", "--force").exit_code == 2  # a dry run has nothing to allow
    assert cli("--root", str(again), "--set", "maxRemoveShare=101", "cleanup", "--yes").exit_code == 2


def test_the_terminal_asks_with_the_figure(tmp_path: Path) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    before = _snapshot(root)
    declined = run_tty("--root", str(root), "cleanup", keys=b"n\n", cols=200)
    assert "This run removes 3 of 3 archives (100%) and 0 of 12 users (0%)" in declined.output
    assert "Apply this cleanup (3 actions)?" in declined.output and "by rule: retention: 3 archives" in declined.output
    assert declined.returncode != 0 and _snapshot(root) == before
    accepted = run_tty("--root", str(root), "cleanup", keys=b"y\n", cols=200)
    assert accepted.returncode == 0, accepted.output
    assert not list(root.glob("users/**/archived/*.yaml"))
