"""``append --jsonl`` for many users reports what became of every user's batch (issue 13).

One user whose lock stays busy, or whose file cannot be written, must not hide
what happened to the others: every batch is reported on stderr and in the
``--format`` records (outcome, input lines, the lines to send again), and the
exit code says "some committed, some not" (7). ``--all-or-none`` takes every
lock first and writes nothing when one stays busy.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.models import Message

from ..conftest import Cli, run_exe
from ..reliability import faults
from ..reliability.test_verify_repair import snapshot

TS = "2024-01-15T10:30:00.000Z"

_HOLD = """
import sys, time
from dialogctl.config import load_settings
from dialogctl import Journal
journal = Journal.open(sys.argv[1], serverId="srv-stuck")
def hold(dialogs):
    print("held", flush=True)
    time.sleep(120)
journal.locked(sys.argv[2], "stuck-server", hold, create=True)
"""


@contextmanager
def lock_held(root: Path, user: str) -> Iterator[subprocess.Popen[str]]:
    """Another process (a stuck server) holds ``user``'s lock while the block runs."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(root), user], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def line(user: str, content: str, **extra: Any) -> str:
    return json.dumps({"user": user, "role": "user", "content": content, "timestamp": TS, **extra}) + "\n"


def contents(root: Path, user: str) -> list[str]:
    journal = Journal.open(str(root))
    if not journal.user_exists(user):
        return []
    return [m.content for c in journal.conversations([user]) for m in c.messages]


def records(stdout: str) -> dict[str, dict[str, Any]]:
    return {r["user"]: r for r in (json.loads(x) for x in stdout.splitlines() if x)}


def select(text: str, ranges: str) -> str:
    """The input lines ``ranges`` (``1-3,7``) names: what a retry sends."""
    wanted: set[int] = set()
    for part in filter(None, ranges.split(",")):
        first, _, last = part.partition("-")
        wanted.update(range(int(first), int(last or first) + 1))
    return "".join(x for n, x in enumerate(text.splitlines(keepends=True), 1) if n in wanted)


def _journal(root: Path, *users: str) -> None:
    journal = Journal.open(str(root))
    for user in users:
        journal.append(user, [Message("user", f"earlier {user}", TS)])


def test_a_busy_user_does_not_hide_the_others_and_a_retry_sends_only_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _journal(root, "bob", "carol")
    text = line("alice", "a1") + line("bob", "b1") + "\n" + line("carol", "c1") + line("alice", "a2") + line("bob", "b2")
    with lock_held(root, "bob") as holder:
        run = run_exe("--root", str(root), "--set", "lockTimeoutMs=300", "append", "--jsonl", "--format", "jsonl", input=text)
    assert run.returncode == 7, run.stderr
    got = records(run.stdout)
    assert got["alice"] | {"reason": None} == {
        "user": "alice",
        "conversation": "current",
        "outcome": "committed",
        "appended": 2,
        "messages": 2,
        "archived": [],
        "lines": "1,5",
        "retryLines": "",
        "reason": None,
    }
    assert got["carol"]["outcome"] == "committed" and got["carol"]["lines"] == "4"
    assert got["bob"]["outcome"] == "failed" and got["bob"]["appended"] == 0 and got["bob"]["retryLines"] == "2,6"
    assert f"pid {holder.pid}" in got["bob"]["reason"]
    assert contents(root, "alice") == ["a1", "a2"] and contents(root, "carol") == ["earlier carol", "c1"] and contents(root, "bob") == ["earlier bob"]
    err = run.stderr.splitlines()
    assert "dialogctl: committed: alice/current (input lines 1,5): 2 message(s)" in err
    assert any(x.startswith("dialogctl: not committed (failed): bob (input lines 2,6): user 'bob' is locked by pid") for x in err)
    assert err[-2] == "dialogctl: 2 of 3 user batches committed; not committed: 1 (users bob)" and "Traceback" not in run.stderr
    retry = "".join(select(text, r["retryLines"]) for r in got.values())
    again = run_exe("--root", str(root), "append", "--jsonl", "--format", "jsonl", input=retry)
    assert again.returncode == 0, again.stderr
    assert [r["outcome"] for r in records(again.stdout).values()] == ["committed"]
    assert contents(root, "bob") == ["earlier bob", "b1", "b2"] and contents(root, "alice") == ["a1", "a2"]


def test_the_report_is_on_stderr_without_format_and_with_quiet(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _journal(root, "bob")
    with lock_held(root, "bob"):
        run = run_exe("--root", str(root), "-q", "--set", "lockTimeoutMs=200", "append", "--jsonl", input=line("alice", "a") + line("bob", "b"))
    assert run.returncode == 7 and run.stdout == ""
    assert "committed: alice/current (input lines 1)" in run.stderr and "not committed (failed): bob (input lines 2)" in run.stderr


def test_a_full_disk_for_one_user_is_reported_with_the_others_committed(tmp_path: Path) -> None:
    """zed's file is over the file-size limit (a real EFBIG from the kernel): alice's 20 messages are committed and say so."""
    root = tmp_path / "j"
    journal = Journal.open(str(root), archiveThreshold="0")
    journal.append("zed", [Message("user", "x" * 60_000, TS)])
    text = "".join(line("alice", f"a{i}") for i in range(20)) + line("zed", "z1") + line("amy", "m1")
    run = faults.run(["--root", str(root), "append", "--jsonl", "--format", "jsonl"], fsize=50_000, input=text.encode())
    assert run.returncode == 7, run.stderr
    got = records(run.stdout)
    assert [(u, r["outcome"], r["appended"], r["retryLines"]) for u, r in got.items()] == [
        ("alice", "committed", 20, ""),
        ("zed", "failed", 0, "21"),
        ("amy", "committed", 1, ""),
    ]
    assert "File too large" in got["zed"]["reason"] and "zed" in got["zed"]["reason"]
    assert len(contents(root, "alice")) == 20 and contents(root, "zed") == ["x" * 60_000] and contents(root, "amy") == ["m1"]
    assert "committed: alice/current (input lines 1-20): 20 message(s)" in run.stderr


def test_nothing_committed_keeps_the_failures_own_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _journal(root, "bob", "carol")
    with lock_held(root, "bob"), lock_held(root, "carol"):
        run = run_exe("--root", str(root), "--set", "lockTimeoutMs=200", "append", "--jsonl", "--format", "csv", input=line("bob", "b") + line("carol", "c"))
    assert run.returncode == 4, run.stderr
    assert run.stdout.splitlines()[0] == "user,conversation,outcome,appended,messages,archived,lines,retryLines,reason"
    assert [x.split(",")[2] for x in run.stdout.splitlines()[1:]] == ["failed", "failed"]
    assert "none of 2 user batches committed" in run.stderr.splitlines()[-2]


def test_all_or_none_writes_nothing_when_a_lock_is_busy(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _journal(root, "bob", "carol")
    before = _without_locks(snapshot(root))
    text = line("alice", "a1") + line("carol", "c1") + line("bob", "b1") + line("zoe", "z1")
    with lock_held(root, "bob") as holder:
        run = run_exe("--root", str(root), "--set", "lockTimeoutMs=300", "append", "--jsonl", "--all-or-none", "--format", "jsonl", input=text)
    assert run.returncode == 4, run.stderr
    got = records(run.stdout)
    assert {u: r["outcome"] for u, r in got.items()} == {"alice": "skipped", "carol": "skipped", "bob": "failed", "zoe": "skipped"}
    assert f"pid {holder.pid}" in got["bob"]["reason"] and "could not lock user 'bob'" in got["alice"]["reason"]
    assert [r["retryLines"] for r in got.values()] == ["1", "2", "3", "4"]
    assert _without_locks(snapshot(root)) == before  # not even the folders of the new users alice and zoe
    again = run_exe("--root", str(root), "append", "--jsonl", "--all-or-none", input=text)
    assert again.returncode == 0, again.stderr
    assert [contents(root, u) for u in ("alice", "bob", "carol", "zoe")] == [["a1"], ["earlier bob", "b1"], ["earlier carol", "c1"], ["z1"]]


def test_all_or_none_takes_the_locks_in_user_order_so_two_runs_never_deadlock(tmp_path: Path) -> None:
    root = tmp_path / "j"
    users = [f"u{n:03d}" for n in range(40)]
    one = "".join(line(u, "from one") for u in users)
    two = "".join(line(u, "from two") for u in reversed(users))
    procs = [
        subprocess.Popen(
            ["dialogctl", "--root", str(root), "--set", "lockTimeoutMs=20000", "append", "--jsonl", "--all-or-none"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(text, timeout=120) for p, text in zip(procs, (one, two), strict=True)]
    assert [p.returncode for p in procs] == [0, 0], outs
    for user in users:
        assert sorted(contents(root, user)) == ["from one", "from two"]


def test_all_or_none_stops_at_a_full_disk_and_says_which_were_committed(tmp_path: Path) -> None:
    root = tmp_path / "j"
    journal = Journal.open(str(root), archiveThreshold="0")
    journal.append("bob", [Message("user", "x" * 60_000, TS)])
    text = line("alice", "a1") + line("bob", "b1") + line("carol", "c1")
    run = faults.run(["--root", str(root), "append", "--jsonl", "--all-or-none", "--format", "jsonl"], fsize=50_000, input=text.encode())
    assert run.returncode == 7, run.stderr
    got = records(run.stdout)
    assert {u: r["outcome"] for u, r in got.items()} == {"alice": "committed", "bob": "failed", "carol": "skipped"}
    assert "stops at the first failure (user 'bob')" in got["carol"]["reason"]
    assert contents(root, "alice") == ["a1"] and contents(root, "carol") == []
    assert not (root / "users/ca").exists()  # carol's folder, made to lock her, went again


def test_all_or_none_refuses_more_users_than_open_files_allow_before_writing(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _journal(root, "bob")
    text = "".join(line(f"user{n}", "hi") for n in range(200))

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    proc = subprocess.run(
        ["dialogctl", "--root", str(root), "append", "--jsonl", "--all-or-none"], input=text, capture_output=True, text=True, preexec_fn=low_limit
    )
    assert proc.returncode == 2, proc.stderr
    assert "open files" in proc.stderr and "split the input" in proc.stderr
    assert Journal.open(str(root)).users().__next__() == "bob" and not (root / "users/us").exists()

    def soft_only() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    raised = subprocess.run(
        ["dialogctl", "--root", str(root), "append", "--jsonl", "--all-or-none"], input=text, capture_output=True, text=True, preexec_fn=soft_only
    )
    assert raised.returncode == 0, raised.stderr
    assert contents(root, "user199") == ["hi"]


def test_a_batch_split_at_the_archive_threshold_reports_the_part_committed(tmp_path: Path) -> None:
    """archiveThreshold 2 splits carol's 5 messages 2 + 2 + 1; the second part's write fails: lines 3-5 are the ones to send again."""
    root = tmp_path / "j"
    text = line("alice", "a") + "".join(line("carol", f"c{i}") for i in range(1, 6))
    args = ["--root", str(root), "--set", "archiveThreshold=2", "append", "--jsonl", "--format", "jsonl"]
    clean_root = tmp_path / "clean"
    clean = faults.run(["--root", str(clean_root), *args[2:]], tmp=tmp_path, input=text.encode())
    assert clean.returncode == 0, clean.stderr
    # The write of carol's second part: the 2nd write of a current.yaml after her first archive.
    writes = [n for n, step in enumerate(clean.steps) if step.split()[1] == "write"]
    renames = [n for n, step in enumerate(clean.steps) if step.split()[1] == "rename" and "current.yaml" in step]
    target = next(w for w in writes if w > renames[0])
    nth = int(clean.steps[target].split()[2])
    run = faults.run(args, [faults.Rule("write", nth, "ENOSPC")], tmp=tmp_path, input=text.encode())
    assert run.returncode == 7, run.stderr
    got = records(run.stdout)
    assert got["carol"]["outcome"] == "partly committed" and got["carol"]["appended"] == 2
    assert got["carol"]["lines"] == "2-6" and got["carol"]["retryLines"] == "4-6"
    assert "No space left on device" in got["carol"]["reason"]
    assert contents(root, "carol") == ["c1", "c2"]
    assert "partly committed: carol (input lines 2-6): the first 2 message(s); not lines 4-6" in run.stderr
    again = run_exe("--root", str(root), "--set", "archiveThreshold=2", "append", "--jsonl", input=select(text, got["carol"]["retryLines"]))
    assert again.returncode == 0, again.stderr
    assert sorted(contents(root, "carol")) == ["c1", "c2", "c3", "c4", "c5"]  # current first, then the archives


@pytest.mark.parametrize(("nth", "appended"), [(1, 0), (2, 1)])
def test_a_failed_barrier_in_a_group_commit_cuts_the_part_back_and_keeps_the_others(tmp_path: Path, nth: int, appended: int) -> None:
    """A batch split by archives waits at each barrier (the write before an archive) for the group to sync it.

    carol holds 1 message and archiveThreshold is 2: her 5 go 1, archive, 2, archive, 2. The run's
    first fsync is her first barrier (the rest is left to the flush), the second her second one:
    a failure there cuts that part back and reports only the parts before it.
    """
    root = tmp_path / "j"
    _journal(root, "alice", "carol")
    text = line("alice", "a") + "".join(line("carol", f"c{i}") for i in range(1, 6))
    args = ["--root", str(root), "--set", "archiveThreshold=2", "append", "--jsonl", "--format", "jsonl"]
    run = faults.run(args, [faults.Rule("fsync", nth, "EIO")], tmp=tmp_path, input=text.encode())
    assert run.returncode == 7, run.stderr
    got = records(run.stdout)
    assert got["alice"]["outcome"] == "committed"
    assert got["carol"]["outcome"] == ("partly committed" if appended else "failed") and got["carol"]["appended"] == appended
    assert "Input/output error" in got["carol"]["reason"]
    assert sorted(contents(root, "carol")) == sorted(["earlier carol", *(f"c{i}" for i in range(1, appended + 1))])
    assert contents(root, "alice") == ["earlier alice", "a"]


def test_an_id_the_layout_refuses_stops_the_input_before_anything_is_written(root: Path, cli: Cli) -> None:
    cli("append", "abcd", "hi")
    result = cli("append", "--jsonl", input=line("alice", "a") + line("abcdabcd", "b"))
    assert result.exit_code == 2 and "abcdabcd" in result.stderr
    assert contents(root, "alice") == []


def test_ctrl_c_finishes_the_batch_in_hand_reports_and_exits_130(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _journal(root, "bob")
    text = line("alice", "a") + line("bob", "b") + line("carol", "c")
    # bob's append sleeps just before its write: Ctrl-C lands while his batch is being written.
    clean = faults.run(["--root", str(tmp_path / "clean"), "append", "--jsonl"], tmp=tmp_path, input=text.encode())
    writes = [step for step in clean.steps if step.split()[1] == "write"]
    nth = len(writes) // 3 + 1  # alice: her message and her metadata.yaml; bob's message is next
    trace = tmp_path / "trace"
    argv, extra = faults.command(["--root", str(root), "append", "--jsonl", "--format", "jsonl"], [faults.Rule("write", nth, "sleep:1.5")], trace)
    source = tmp_path / "input.jsonl"
    source.write_text(text)
    with source.open() as stdin:
        proc = subprocess.Popen(argv, env=dict(os.environ, **extra), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (trace.exists() and "fault sleep" in trace.read_text()):  # bob's write has begun
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    got = records(out)
    assert {u: r["outcome"] for u, r in got.items()} == {"alice": "committed", "bob": "committed", "carol": "skipped"}, err
    assert got["carol"]["reason"] == "interrupted before it was written" and got["carol"]["retryLines"] == "3"
    assert contents(root, "bob") == ["earlier bob", "b"] and contents(root, "carol") == []
    assert "finishing the batches being written" in err and err.splitlines()[-1] == "dialogctl: interrupted"


def _without_locks(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tree.items() if not k.endswith("/.lock")}


@pytest.mark.parametrize("args", [["append", "alice", "hi", "--all-or-none"]])
def test_all_or_none_goes_with_jsonl(args: list[str], root: Path, cli: Cli) -> None:
    result = cli(*args)
    assert result.exit_code == 2 and "--jsonl" in result.stderr


def test_a_closed_stdout_stops_the_writing_and_stderr_says_what_was_written(tmp_path: Path) -> None:
    """Batches are committed a group at a time: a reader gone before the first record stops the writing after the first group, and stderr says so."""
    from dialogctl.journal.groupcommit import GROUP_USERS

    root = tmp_path / "j"
    users = GROUP_USERS + 2
    text = "".join(line(f"u{n}", f"m{n}") for n in range(1, users + 1))
    source = tmp_path / "in.jsonl"
    source.write_text(text)
    with source.open() as stdin:
        proc = subprocess.Popen(
            ["dialogctl", "--root", str(root), "append", "--jsonl", "--format", "jsonl"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first record
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    told = err.splitlines()
    assert len(told) == users
    # The first group (at most GROUP_USERS users; fewer if it took longer than GROUP_SECONDS to write) is committed, the rest never written.
    first = sum(t.startswith("dialogctl: committed: ") for t in told)
    assert 1 <= first <= GROUP_USERS
    assert told[:first] == [f"dialogctl: committed: u{n}/current (input lines {n}): 1 message(s)" for n in range(1, first + 1)]
    assert told[first:] == [f"dialogctl: not committed (skipped): u{n} (input lines {n}): not written: stdout was closed" for n in range(first + 1, users + 1)]
    assert all(contents(root, f"u{n}") == ([f"m{n}"] if n <= first else []) for n in range(1, users + 1))
