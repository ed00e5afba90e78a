"""Real processes at once: nothing lost, nothing doubled, locks that time out and free themselves.

Supersedes tests/test_concurrency.py's 8 x 500 run. Sizes: DIALOGCTL_STRESS_WRITERS x
DIALOGCTL_STRESS_APPENDS appends to one user (16 x 500 by default) while another
process archives every 20 ms and the installed executable exports and totals the
journal; DIALOGCTL_SPREAD_WRITERS x DIALOGCTL_SPREAD_APPENDS appends across 64 users.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dialogctl import Journal
from dialogctl.disk.locking import probe
from dialogctl.maintenance.verify import verify
from dialogctl.models import Message

from ..conftest import run_exe
from . import faults
from .conftest import count
from .faults import Rule

TS = "2024-01-15T10:30:00.000Z"


def _journal(root: str, command: str = "python") -> Journal:
    # archiveThreshold 0: only the archiver archives, so every move races appends.
    return Journal.open(root, command=command, archiveThreshold="0", maxConversationLength="1000000", lockTimeoutMs="120000")


def _writer(root: str, number: int, appends: int, users: list[str], acked: Any) -> None:
    journal = _journal(root, command="writer")
    rng = random.Random(number)
    done = []
    for i in range(appends):
        user = rng.choice(users)
        content = f"p{number}-{i}"
        journal.append(user, [Message("user", content, TS)])
        done.append((user, content))
    acked.put(done)


def _archiver(root: str, user: str, stop: Any, archived: Any) -> None:
    journal = _journal(root, command="archiver")
    made = 0
    while not stop.is_set():
        try:
            if journal.archive(user):
                made += 1
        except Exception:  # noqa: BLE001 - the user does not exist until the first append
            pass
        time.sleep(0.02)
    archived.put(made)


def _whole_records(result: subprocess.CompletedProcess[str]) -> list[Any]:
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" or result.stdout.endswith("\n")
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_many_writers_one_user_while_archiving_and_reading(tmp_path: Path, figures: Any) -> None:
    writers = count("STRESS_WRITERS", 16)
    appends = count("STRESS_APPENDS", 500)
    root = str(tmp_path / "journal")
    ctx = multiprocessing.get_context("spawn")
    acked, archived, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    archiver = ctx.Process(target=_archiver, args=(root, "shared", stop, archived))
    archiver.start()
    procs = [ctx.Process(target=_writer, args=(root, n, appends, ["shared"], acked)) for n in range(writers)]
    for proc in procs:
        proc.start()
    reads = 0
    env = {"DIALOGUE_JOURNAL_ROOT": root}
    while any(p.is_alive() for p in procs) and acked.qsize() < writers:
        records = _whole_records(run_exe("export", "--all", "--format", "jsonl", env=env, timeout=300))
        assert all(r["content"].startswith("p") for r in records)
        assert len({(r["content"]) for r in records}) == len(records)  # a snapshot never shows a message twice
        stats = run_exe("stats", "--format", "json", env=env, timeout=300)
        assert stats.returncode in (0, 3), stats.stderr
        if stats.returncode == 0:
            assert json.loads(stats.stdout)["damagedRecords"] == 0
        reads += 2
    acknowledged = [content for _ in procs for _, content in acked.get(timeout=900)]
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    stop.set()
    archives_made = archived.get(timeout=120)
    archiver.join(timeout=120)
    journal = _journal(root)
    seen = Counter(m.content for conv in journal.conversations(["shared"]) for m in conv.messages)
    assert journal.damage == []
    assert len(acknowledged) == writers * appends
    assert seen == Counter(acknowledged)  # every acknowledged message exactly once, nothing else
    assert archives_made > 5
    assert verify(journal).findings == []
    figures.add(
        f"concurrency: {writers} processes x {appends} appends to one user while another archived every 20 ms ({archives_made} archives)"
        f" and {reads} exports/stats ran: {len(acknowledged)} acknowledged, 0 lost, 0 doubled; every export ended on a whole record"
    )


def test_writers_across_many_users(tmp_path: Path, figures: Any) -> None:
    writers = count("SPREAD_WRITERS", 8)
    appends = count("SPREAD_APPENDS", 250)
    users = [f"user-{n:03d}" for n in range(64)]
    root = str(tmp_path / "journal")
    ctx = multiprocessing.get_context("spawn")
    acked = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(root, n, appends, users, acked)) for n in range(writers)]
    for proc in procs:
        proc.start()
    acknowledged = [pair for _ in procs for pair in acked.get(timeout=900)]
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    journal = _journal(root)
    seen = Counter((conv.ref.user, m.content) for conv in journal.conversations() for m in conv.messages)
    assert seen == Counter(tuple(p) for p in acknowledged)
    assert len(set(journal.users())) == len({u for u, _ in acknowledged})
    figures.add(f"concurrency: {writers} processes x {appends} appends across {len(users)} users: {len(acknowledged)} acknowledged, 0 lost, 0 doubled")


def _wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _held(root: Path, user: str) -> bool:
    journal = _journal(str(root))
    try:
        with journal.dialogs_folder(user) as dialogs:
            state = probe(dialogs)
    except Exception:  # noqa: BLE001 - not created yet
        return False
    return state is not None and state.held


def test_a_waiting_append_lands_in_the_new_conversation(tmp_path: Path) -> None:
    """An append that waits for the lock while an archive runs goes into the fresh conversation, not the archive."""
    root = tmp_path / "journal"
    _journal(str(root)).append("alice", [Message("user", "before", TS)])
    argv, extra = faults.command(["--root", str(root), "archive", "alice", "--id", "a1"], [Rule("rename", 1, "sleep:1.0")])
    archiving = subprocess.Popen(argv, env=dict(os.environ, **extra))
    _wait_for(lambda: _held(root, "alice"), "the archive to hold the lock")
    waiting = run_exe("--root", str(root), "append", "alice", "during", "--timestamp", TS)
    assert archiving.wait(timeout=60) == 0 and waiting.returncode == 0, waiting.stderr
    journal = _journal(str(root))
    assert [m.content for m in journal.read(journal.resolve("alice", archive="a1")).messages] == ["before"]
    assert [m.content for m in journal.read(journal.resolve("alice")).messages] == ["during"]


def test_a_stopped_holder_times_others_out_and_a_killed_one_frees_the_lock(tmp_path: Path, figures: Any) -> None:
    root = tmp_path / "journal"
    _journal(str(root)).append("alice", [Message("user", "before", TS)])
    argv, extra = faults.command(["--root", str(root), "append", "alice", "stuck"], [Rule("write", 1, "stop")])
    holder = subprocess.Popen(argv, env=dict(os.environ, **extra))
    try:
        _wait_for(lambda: _held(root, "alice"), "the holder to take the lock")
        _wait_for(lambda: Path(f"/proc/{holder.pid}/stat").read_text().split(")")[1].split()[0] == "T", "SIGSTOP")
        others = [
            subprocess.Popen(
                ["dialogctl", "--root", str(root), "--set", "lockTimeoutMs=300", "append", "alice", f"other {n}"], stderr=subprocess.PIPE, text=True
            )
            for n in range(3)
        ]
        for other in others:
            _, err = other.communicate(timeout=60)
            assert other.returncode == 4, err
            assert f"pid {holder.pid}" in err and "dialogctl append" in err and "gave up after 0.3 s" in err
            assert len(err.strip().splitlines()) == 2 and "hint" in err  # the error and a hint, no traceback
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    freed = run_exe("--root", str(root), "--set", "lockTimeoutMs=0", "append", "alice", "after")  # no waiting at all
    assert freed.returncode == 0, freed.stderr
    journal = _journal(str(root))
    assert [m.content for m in journal.read(journal.resolve("alice")).messages] == ["before", "after"]
    assert verify(journal).findings == []
    figures.add("concurrency: a SIGSTOPped lock holder made 3 appends exit 4 naming its pid; after SIGKILL the lock was free at once (lockTimeoutMs=0)")


def test_executable_appends_from_parallel_shells(tmp_path: Path) -> None:
    """The installed command, several at once from shell loops, with automatic archives in between."""
    import sys

    root = tmp_path / "journal"
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root), DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD="7")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    script = 'for i in $(seq 1 15); do dialogctl append shared "w$W-$i" || exit 1; done'
    procs = [subprocess.Popen(["bash", "-c", script], env=dict(env, W=str(w))) for w in range(4)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    result = run_exe("export", "shared", "--include-archives", env={"DIALOGUE_JOURNAL_ROOT": str(root)})
    assert Counter(r["content"] for r in _whole_records(result)) == Counter(f"w{w}-{i}" for w in range(4) for i in range(1, 16))
