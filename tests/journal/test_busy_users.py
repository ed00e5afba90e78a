"""A busy user is skipped, not a stop (issue 13).

With one user's lock held by a stuck server, ``cleanup`` and ``archive --idle
--all`` handle and log every other user, report the busy one (stderr, the
``--format`` records, the cleanup.log line) and exit 4 at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from dialogctl import Journal
from dialogctl.models import Message

from ..conftest import run_exe
from .test_append_outcomes import lock_held

OLD = "2020-01-01T00:00:00.000Z"


def _journal(root: Path) -> Journal:
    """amy, bob, carol and dave silent since 2020 (carol and dave also hold a message too old to keep); eve active."""
    journal = Journal.open(str(root), archiveThreshold="0")
    for user in ("amy", "bob", "carol", "dave"):
        journal.append(user, [Message("user", f"old words of {user}", OLD)])
    journal.append("eve", [Message("user", "old", OLD), Message("user", "fresh", "2099-01-01T00:00:00.000Z")])
    return journal


def test_cleanup_skips_a_busy_user_handles_and_logs_every_other_and_exits_4(tmp_path: Path) -> None:
    root = tmp_path / "j"
    journal = _journal(root)
    with lock_held(root, "bob") as holder:
        run = run_exe(
            "--root", str(root), "--set", "lockTimeoutMs=300", "cleanup", "--max-inactive", "100d", "--max-age", "100d", "--yes", "--format", "jsonl"
        )  # fmt: skip
    assert run.returncode == 4, run.stderr
    assert sorted(journal.users()) == ["bob", "eve"]
    assert [m.content for m in journal.read(journal.resolve("eve")).messages] == ["fresh"]  # eve, after bob, was trimmed
    rows = [json.loads(x) for x in run.stdout.splitlines()]
    assert sorted((r["action"], r["user"], r["outcome"]) for r in rows) == [
        ("remove-user", "amy", "done"),
        ("remove-user", "bob", "skipped"),
        ("remove-user", "carol", "done"),
        ("remove-user", "dave", "done"),
        ("trim", "eve", "done"),
    ]
    skipped = next(r for r in rows if r["outcome"] == "skipped")
    assert skipped["reason"].startswith("lock busy: user 'bob' is locked by pid") and f"pid {holder.pid}" in skipped["reason"]
    err = run.stderr.splitlines()
    assert any(x.startswith("dialogctl: warning: users/bo/b/bob: skipped: lock busy: user 'bob'") for x in err)
    assert "removed 3 users, 0 archives and 4 messages (1 files trimmed)" in run.stderr
    assert err[-2].startswith("dialogctl: 1 user(s) skipped, their locks busy: 'bob'; every other user was cleaned up and the run was logged")
    intent, outcome = [json.loads(x) for x in (root / "system/cleanup.log").read_text().splitlines()]
    assert intent["phase"] == "intent" and intent["planned"]["usersRemoved"] == 4 and len(intent["steps"]) == 5
    assert outcome["phase"] == "done" and outcome["run"] == intent["run"] and outcome["usersRemoved"] == 3 and outcome["filesTrimmed"] == 1
    assert outcome["busyUsers"] == ["bob"] and outcome["skipped"] == 1
    assert outcome["skippedSteps"][0]["path"] == "users/bo/b/bob" and "lock busy" in outcome["skippedSteps"][0]["reason"]
    again = run_exe("--root", str(root), "cleanup", "--max-inactive", "100d", "--max-age", "100d", "--yes")
    assert again.returncode == 0, again.stderr
    assert sorted(journal.users()) == ["eve"]


def test_cleanup_with_every_planned_user_busy_still_logs_and_exits_4(tmp_path: Path) -> None:
    root = tmp_path / "j"
    journal = Journal.open(str(root))
    journal.append("amy", [Message("user", "old", OLD)])
    with lock_held(root, "amy"):
        run = run_exe("--root", str(root), "--set", "lockTimeoutMs=200", "cleanup", "--max-inactive", "100d", "--yes", "--format", "json")
    assert run.returncode == 4, run.stderr
    done = json.loads(run.stdout)
    assert done["usersRemoved"] == 0 and done["busyUsers"] == ["amy"] and [a["outcome"] for a in done["actions"]] == ["skipped"]
    log = [json.loads(x) for x in (root / "system/cleanup.log").read_text().splitlines()]
    assert [e["phase"] for e in log] == ["intent", "done"] and log[1]["busyUsers"] == ["amy"]


def test_archive_idle_all_skips_a_busy_user_archives_the_rest_and_exits_4(tmp_path: Path) -> None:
    root = tmp_path / "j"
    journal = Journal.open(str(root))
    for user in ("amy", "bob", "carol"):
        journal.append(user, [Message("user", f"hi from {user}", OLD)])
    with lock_held(root, "amy"):
        run = run_exe("--root", str(root), "--set", "lockTimeoutMs=300", "archive", "--idle", "1h", "--all", "--format", "jsonl")
    assert run.returncode == 4, run.stderr
    rows = {r["user"]: r for r in (json.loads(x) for x in run.stdout.splitlines())}
    assert rows["amy"]["archive"] is None and rows["amy"]["note"] == "lock busy; skipped"
    assert rows["bob"]["archive"] and rows["carol"]["archive"] and rows["bob"]["note"] == "archived"
    assert [f.ref.kind for f in journal.conversation_files("bob")] == ["current", "archive"]
    assert [f.ref.kind for f in journal.conversation_files("amy")] == ["current"]
    assert "warning: current conversation of user 'amy': skipped: lock busy: user 'amy' is locked by pid" in run.stderr
    assert "1 idle conversation(s) skipped, their users' locks busy: 'amy'" in run.stderr
    plain = run_exe("--root", str(root), "archive", "--idle", "1h", "--all")  # the next sweep takes it
    assert plain.returncode == 0 and plain.stdout.strip() != ""
