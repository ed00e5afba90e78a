"""Retention by count: ``maxConversationsPerUser`` and ``cleanup --keep-last``.

The oldest archives beyond the limit go; active conversations count but are
never removed; damaged archives count but are kept; the other rules act first
and what they remove is not counted; apply re-plans the count under the lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import Cli, run_exe

NOW = "2026-01-01T00:00:00Z"


def _days_ago(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _archive(cli: Cli, user: str, archive_id: str, *timestamps: str) -> None:
    for ts in timestamps:
        assert cli("append", user, f"said at {ts}", "--timestamp", ts).exit_code == 0
    assert cli("archive", user, "--id", archive_id).exit_code == 0


def _archives(root: Path, user: str = "alice") -> list[str]:
    return sorted(p.stem for p in root.rglob("archived/*.yaml") if _owner(root, p) == user)


def _owner(root: Path, path: Path) -> str:
    """The user id of a conversation file: the parts below users/ down to dialogs/."""
    parts = path.relative_to(root / "users").parts
    return "".join(parts[: parts.index("dialogs")])


def _rows(cli: Cli, *args: str, expect: int = 0) -> list[dict[str, Any]]:
    return cli.jsonl("cleanup", "--retention-days", "0", "--dry-run", "--format", "jsonl", *args, expect=expect)


def _alice_with_five(cli: Cli) -> None:
    """Five archives whose names sort against their age, and a current conversation with one message."""
    for name, day in (("e", "01"), ("d", "02"), ("c", "03"), ("b", "04"), ("a", "05")):
        _archive(cli, "alice", name, f"2024-01-{day}T00:00:00Z")
    cli("append", "alice", "still talking", "--timestamp", NOW)


def test_oldest_archives_go_first_and_the_active_conversation_counts(root: Path, cli: Cli) -> None:
    _alice_with_five(cli)
    done = cli.json("cleanup", "--keep-last", "3", "--retention-days", "0", "--yes", "--format", "json")
    # current.yaml takes one of the 3 places; the 2 newest archives (by message time, not name) stay.
    assert _archives(root) == ["a", "b"]
    assert done["archivesRemoved"] == 3 and done["messagesRemoved"] == 3
    assert done["actionsByRule"] == {"maxAge": 0, "maxInactive": 0, "retention": 0, "maxConversations": 3}
    assert [(a["action"], a["rule"], a["conversation"]) for a in done["actions"]] == [("remove-archive", "maxConversations", c) for c in ("c", "d", "e")]
    assert [m["content"] for m in cli.jsonl("show", "alice", "--format", "jsonl")] == ["still talking"]
    # Within the limit now: a second run removes nothing.
    again = cli.json("cleanup", "--keep-last", "3", "--retention-days", "0", "--yes", "--format", "json")
    assert again["archivesRemoved"] == 0 and _archives(root) == ["a", "b"]


def test_an_empty_current_conversation_does_not_count(root: Path, cli: Cli) -> None:
    for name, day in (("x1", "01"), ("x2", "02"), ("x3", "03")):
        _archive(cli, "alice", name, f"2024-01-{day}T00:00:00Z")
    assert (root / "users/al/ic/e/dialogs/current.yaml").stat().st_size == 0
    assert [r["action"] for r in _rows(cli, "--keep-last", "3")] == []
    removed = [r["conversation"] for r in _rows(cli, "--keep-last", "2") if r["action"] != "keep"]
    assert removed == ["x1"]


def test_ties_go_by_name_and_undated_archives_by_file_time(root: Path, cli: Cli) -> None:
    for name in ("t2", "t1", "t3"):
        _archive(cli, "alice", name, "2024-03-01T00:00:00Z")
    _archive(cli, "alice", "newest", "2024-04-01T00:00:00Z")
    archived = next(root.rglob("archived"))
    (archived / "blank.yaml").write_bytes(b"")  # an empty archive: dated by its mtime
    os.utime(archived / "blank.yaml", (1_000_000, 1_000_000))  # 1970: the oldest of all
    rows = _rows(cli, "--keep-last", "3")
    assert [(r["action"], r["conversation"]) for r in rows] == [
        ("keep", "newest"),
        ("keep", "t3"),
        ("keep", "t2"),
        ("remove-archive", "t1"),
        ("remove-archive", "blank"),
    ]
    assert rows[3]["reason"] == "count: 4th newest archive; the newest 3 are kept (limit 3)"
    assert rows[0]["reason"] == "count: one of the newest 3 archives (limit 3)"


def test_the_setting_and_the_override(root: Path, cli: Cli, monkeypatch: Any) -> None:
    _alice_with_five(cli)
    monkeypatch.setenv("DIALOGUE_JOURNAL_MAX_CONVERSATIONS_PER_USER", "4")
    plan = cli.json("cleanup", "--retention-days", "0", "--dry-run", "--format", "json")
    assert plan["cutoffs"]["maxConversations"] == 4 and plan["archivesRemoved"] == 2
    unlimited = cli.json("cleanup", "--keep-last", "0", "--retention-days", "0", "--dry-run", "--format", "json")
    assert unlimited["archivesRemoved"] == 0 and unlimited["cutoffs"]["maxConversations"] is None
    assert cli.json("cleanup", "--keep-last", "1", "--retention-days", "0", "--dry-run", "--format", "json")["archivesRemoved"] == 5
    assert cli("cleanup", "--keep-last", "-1", "--dry-run").exit_code == 2
    # The default (50) leaves a user with six conversations alone.
    monkeypatch.delenv("DIALOGUE_JOURNAL_MAX_CONVERSATIONS_PER_USER")
    assert cli.json("cleanup", "--retention-days", "0", "--dry-run", "--format", "json")["cutoffs"]["maxConversations"] == 50
    assert _rows(cli) == []


def test_other_rules_act_first_and_are_not_counted_twice(root: Path, cli: Cli) -> None:
    _archive(cli, "alice", "old1", _days_ago(1100))  # retention removes it
    _archive(cli, "alice", "old2", _days_ago(1050))  # retention removes it
    _archive(cli, "alice", "mixed", _days_ago(900), _days_ago(400))  # max age would trim it; the count removes it
    _archive(cli, "alice", "aged", _days_ago(800))  # max age empties it: removed, not counted
    recent = _days_ago(300)
    _archive(cli, "alice", "k1", _days_ago(800), recent)  # max age trims it, the count keeps it
    _archive(cli, "alice", "k2", _days_ago(200))
    for day in (2002, 2001, 2000):
        _archive(cli, "idle", f"i{day}", _days_ago(day))
    args = ("--keep-last", "2", "--retention-days", "1000", "--max-age", "730d", "--max-inactive", "1500d")
    plan = cli.json("cleanup", *args, "--dry-run", "--format", "json")
    rows = [(a["action"], a["rule"], a["user"], a["conversation"]) for a in plan["actions"]]
    assert rows == [
        ("remove-archive", "maxAge", "alice", "aged"),
        ("remove-archive", "retention", "alice", "old1"),
        ("remove-archive", "retention", "alice", "old2"),
        ("keep", "maxConversations", "alice", "k2"),
        ("trim", "maxAge", "alice", "k1"),
        ("remove-archive", "maxConversations", "alice", "mixed"),
        ("remove-user", "maxInactive", "idle", "*"),
    ]
    mixed = next(a for a in plan["actions"] if a["conversation"] == "mixed")
    assert mixed["messages"] == 2  # the whole archive, not the trim's one message
    assert plan["archivesRemoved"] == 4 and plan["usersRemoved"] == 1 and plan["filesTrimmed"] == 1
    assert plan["actionsByRule"] == {"maxAge": 2, "maxInactive": 1, "retention": 2, "maxConversations": 1}
    done = cli.json("cleanup", *args, "--yes", "--format", "json")
    assert {k: done[k] for k in ("archivesRemoved", "usersRemoved", "messagesRemoved", "actionsByRule")} == {
        k: plan[k] for k in ("archivesRemoved", "usersRemoved", "messagesRemoved", "actionsByRule")
    }
    assert _archives(root) == ["k1", "k2"]
    assert [m["content"] for m in cli.jsonl("show", "alice", "--archive", "k1", "--format", "jsonl")] == [f"said at {recent}"]
    assert [u["user"] for u in cli.json("list", "--format", "json")] == ["alice"]
    log = json.loads((root / "system" / "cleanup.log").read_text().splitlines()[-1])
    assert log["cutoffs"]["maxConversations"] == 2 and log["actionsByRule"]["maxConversations"] == 1


def test_a_damaged_archive_counts_but_is_never_deleted(root: Path, cli: Cli) -> None:
    for name, day in (("a1", "01"), ("a2", "02"), ("a3", "03")):
        _archive(cli, "alice", name, f"2024-01-{day}T00:00:00Z")
    damaged = next(root.rglob("archived/a1.yaml"))
    damaged.write_bytes(damaged.read_bytes() + b"---\nrole: [unclosed\n")
    before = damaged.read_bytes()
    plan = cli("cleanup", "--keep-last", "2", "--retention-days", "0", "--dry-run", "--format", "jsonl")
    assert plan.exit_code == 5  # damaged data, reported; every intact message was read
    rows = [json.loads(line) for line in plan.stdout.splitlines()]
    assert [(r["action"], r["conversation"]) for r in rows] == [("keep", "a3"), ("keep", "a2"), ("keep", "a1")]
    assert rows[2]["reason"].endswith("kept: damaged records")
    assert "archived/a1.yaml: skipped: count: 3rd newest archive" in plan.stderr and "repair it" in plan.stderr
    # Over the limit by the damaged one, and a2 (which the limit keeps) is not removed in its place.
    done = cli("cleanup", "--keep-last", "2", "--retention-days", "0", "--yes", "--format", "json")
    assert done.exit_code == 5
    assert json.loads(done.stdout)["archivesRemoved"] == 0
    assert _archives(root) == ["a1", "a2", "a3"] and damaged.read_bytes() == before
    # A damaged archive the limit keeps takes its place: the oldest healthy one beyond goes.
    _archive(cli, "alice", "a0", "2023-12-01T00:00:00Z")
    damaged.write_bytes(damaged.read_bytes().replace(b"2024-01-01", b"2024-02-01"))
    assert [r["conversation"] for r in _rows(cli, "--keep-last", "3", expect=5) if r["action"] != "keep"] == ["a0"]


def test_the_table_lists_keeps_only_where_the_count_cuts(root: Path, cli: Cli) -> None:
    _alice_with_five(cli)
    _archive(cli, "bob", "only", "2024-01-01T00:00:00Z")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    table = cli("cleanup", "--keep-last", "3", "--retention-days", "0", "--dry-run")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["Action", "Rule", "User", "Conversation"]
    body = [line.split()[:4] for line in lines[1:]]
    assert body == [
        ["keep", "maxConversations", "alice", "current"],
        ["keep", "maxConversations", "alice", "a"],
        ["keep", "maxConversations", "alice", "b"],
        ["remove-archive", "maxConversations", "alice", "c"],
        ["remove-archive", "maxConversations", "alice", "d"],
        ["remove-archive", "maxConversations", "alice", "e"],
    ]
    assert "max conversations per user 3" in table.stderr and "would remove 0 users, 3 archives" in table.stderr
    explained = _rows(cli, "--keep-last", "3", "--explain")
    assert [(r["action"], r["user"], r["conversation"]) for r in explained if r["user"] == "bob"] == [("keep", "bob", "only")]
    csv = cli("cleanup", "--keep-last", "3", "--retention-days", "0", "--dry-run", "--format", "csv").stdout.splitlines()
    assert csv[0] == "action,rule,user,conversation,messages,bytes,outcome,reason" and len(csv) == 7
    assert csv[4].startswith("remove-archive,maxConversations,alice,c,1,")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_sessions_are_never_removed(fixture_tree: Any, cli: Cli) -> None:
    root = fixture_tree("v3-sessions")
    sessions = {p: p.read_bytes() for p in root.rglob("session-*.yaml")}
    rows = cli.jsonl("--root", str(root), "cleanup", "--keep-last", "2", "--retention-days", "0", "--dry-run", "--format", "jsonl")
    # alice2: two sessions with messages and one archive; the empty session-conv-2-0 does not count.
    # alice5 holds three sessions: over the limit, listed, but sessions are never removed.
    assert [(r["action"], r["conversation"]) for r in rows] == [
        ("keep", "conv-2-1"),
        ("keep", "conv-2-2"),
        ("remove-archive", "conv-2-0"),
        ("keep", "conv-5-0"),
        ("keep", "conv-5-1"),
        ("keep", "conv-5-2"),
    ]
    assert rows[2]["reason"] == "count: 1st newest archive; the newest 0 are kept beside 2 active (limit 2)"
    done = cli.json("--root", str(root), "cleanup", "--keep-last", "1", "--retention-days", "0", "--yes", "--format", "json")
    assert sorted(a["user"] for a in done["actions"]) == ["alice2", "alice4"]
    assert {p.relative_to(root).as_posix() for p in root.rglob("archived/*.yaml")} == {
        "users/al/ic/e0/dialogs/archived/conv-0-0.yaml",
        "users/al/ic/e6/dialogs/archived/conv-6-0.yaml",
    }
    assert {p: p.read_bytes() for p in root.rglob("session-*.yaml")} == sessions


def test_sequence_form_journal(fixture_tree: Any, cli: Cli) -> None:
    root = fixture_tree("v1-sharded")
    current = {p: p.read_bytes() for p in root.rglob("current.yaml")}
    done = cli.json("--root", str(root), "cleanup", "--keep-last", "1", "--retention-days", "0", "--yes", "--format", "json")
    assert sorted(a["user"] for a in done["actions"]) == ["user-1000", "user-1004", "user-1008"]
    assert done["messagesRemoved"] == 75 and list(root.rglob("archived/*.yaml")) == []
    assert {p: p.read_bytes() for p in root.rglob("current.yaml")} == current


def test_apply_replans_after_an_archive_between_plan_and_apply(root: Path, cli: Cli) -> None:
    """Another process archives twice after the plan: the cut moves, the limit holds."""
    from dialogctl import Journal
    from dialogctl.maintenance.retention import apply_cleanup, plan_cleanup

    _alice_with_five(cli)
    journal = Journal.open(str(root))
    plan = plan_cleanup(journal, max_conversations=3)
    assert [a.conversation for a in plan.actions] == ["c", "d", "e"]
    script = "; ".join(f"dialogctl append alice new{i} --timestamp 2026-02-0{i}T00:00:00Z && dialogctl archive alice --id new{i}" for i in (1, 2))
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    result = apply_cleanup(journal, plan)
    # Seven archives and an empty current.yaml now: the newest three stay. Applying the plan as
    # made would have removed c, d and e and left four.
    assert _archives(root) == ["a", "new1", "new2"]
    assert [a.conversation for a in result.applied] == ["b", "c", "d", "e"]


def test_apply_never_over_deletes_when_archives_went_meanwhile(root: Path, cli: Cli) -> None:
    from dialogctl import Journal
    from dialogctl.maintenance.retention import apply_cleanup, plan_cleanup

    _alice_with_five(cli)
    journal = Journal.open(str(root))
    plan = plan_cleanup(journal, max_conversations=3)
    assert [a.conversation for a in plan.actions] == ["c", "d", "e"]
    gone = run_exe("rm", "alice", "--archive", "a", "--yes", env={"DIALOGUE_JOURNAL_ROOT": str(root)})
    assert gone.returncode == 0, gone.stderr
    result = apply_cleanup(journal, plan)
    # Without re-planning, c, d and e would go and leave 2 of the 3 allowed conversations.
    assert _archives(root) == ["b", "c"]
    assert [a.conversation for a in result.applied] == ["d", "e"]
    assert any(path.endswith("archived/c.yaml") and "no longer qualifies" in why for path, why in result.skipped)


def test_cron_cleanup_while_a_server_archives(root: Path, cli: Cli) -> None:
    """Real processes: one appends and archives in a loop while cleanup runs from 'cron' again and again."""
    limit, rounds = 4, 12
    cli("append", "alice", "first", "--timestamp", "2025-01-01T00:00:00Z")
    env = {**os.environ, "DIALOGUE_JOURNAL_ROOT": str(root), "DIALOGUE_JOURNAL_MAX_CONVERSATIONS_PER_USER": str(limit)}
    code = (
        "import sys\n"
        "from dialogctl.config import load_settings\n"
        "from dialogctl import Journal\n"
        "from dialogctl.models import Message\n"
        "j = Journal(load_settings({'root': sys.argv[1]}))\n"
        f"for i in range({rounds}):\n"
        "    j.append('alice', [Message('user', f'round {i}', f'2025-02-{i + 1:02d}T00:00:00.000Z')])\n"
        "    j.archive('alice', archive_id=f'r{i:02d}')\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code, str(root)], env=env)
    runs = []
    while server.poll() is None or len(runs) < 2:
        runs.append(run_exe("-q", "cleanup", "--yes", "--retention-days", "0", env=env))
        time.sleep(0.01)
    assert server.wait() == 0
    final = run_exe("-q", "cleanup", "--yes", "--retention-days", "0", env=env)
    for run in [*runs, final]:
        assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    # Whatever a run removed had `limit` newer archives at the time, so the newest `limit` survive.
    assert _archives(root) == [f"r{i:02d}" for i in range(rounds - limit, rounds)]
    log = [json.loads(line) for line in (root / "system" / "cleanup.log").read_text().splitlines()]
    outcomes = [entry for entry in log if entry["phase"] == "done"]  # a run that had steps to take logged its intent first
    assert len(outcomes) == len(runs) + 1 and all(entry["cutoffs"]["maxConversations"] == limit for entry in log)
    assert {e["run"] for e in log if e["phase"] == "intent"} == {e["run"] for e in outcomes if e["archivesRemoved"] or e["skipped"]}
    assert sum(entry["archivesRemoved"] for entry in outcomes) == rounds - limit
