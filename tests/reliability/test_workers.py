"""Worker processes that die: a command that fans out to workers never waits for a dead one.

A first ``stats`` or ``list`` (the catalog's cold scan), ``export --format
jsonl`` and ``search`` read files in worker processes once there is enough to read. Here a
real SIGKILL hits a worker at a random moment, workers run out of memory under
``RLIMIT_AS``, and workers cannot be started at all: every run ends within a
few seconds, with exit 0 and the complete output, or with one line naming the
cause (exit 6) and only output that a complete run also begins with.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dialogctl.fileformat.codec import encode_batch
from dialogctl.models import Message

from .conftest import count

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="workers start only with 2 CPUs or more")

COMMANDS = {
    "export": ["export", "--all", "--format", "jsonl"],
    "stats": ["stats", "--format", "json"],
    "list": ["list", "--format", "jsonl"],
    # " of u" is a needle of every record of the journals here: every file is searched record by record; about 100 hits
    "search": ["search", "-E", "line 1[0-9] of user 1[0-9] |end 7$", "-a", "--format", "jsonl"],
}


def _journal(root: Path, users: int = 300, messages: int = 60, width: int = 20) -> Path:
    """A flat journal of about ``users * messages * width * 20`` bytes, written directly (fast)."""
    for u in range(users):
        folder = root / "users" / f"u{u:04d}" / "dialogs"
        folder.mkdir(parents=True)
        batch = [
            Message(
                "user" if i % 2 == 0 else "assistant",
                f"line {i} of user {u} " * width,
                f"2024-01-15T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                {"model": "m", "tokens": i},
            )
            for i in range(messages)
        ]
        (folder / "current.yaml").write_bytes(encode_batch(batch, 1, "sequence"))
    (root / "config").mkdir()
    (root / "config" / "journal-config.yaml").write_text("layout: flat\nconversations: current\n")
    return root


def _dialogctl(root: Path, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dialogctl", "--root", str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs
    )


def _children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(name))
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cold(root: Path) -> None:
    for name in ("catalog.bin", "stats.yaml"):
        try:
            (root / "system" / name).unlink()
        except FileNotFoundError:
            pass


def _complete(root: Path, args: list[str]) -> bytes:
    _cold(root)
    proc = _dialogctl(root, args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def test_a_worker_killed_at_a_random_moment_ends_the_command_at_once(tmp_path: Path, figures: Any) -> None:
    root = _journal(tmp_path / "journal")
    rounds = count("WORKER_KILLS", 16)
    rng = random.Random(1414)
    complete = {name: _complete(root, args) for name, args in COMMANDS.items()}
    outcomes = {"killed, exit 6": 0, "finished first, exit 0": 0}
    slowest = 0.0
    for number in range(rounds):
        name = list(COMMANDS)[number % len(COMMANDS)]
        _cold(root)
        proc = _dialogctl(root, COMMANDS[name])
        workers: list[int] = []
        deadline = time.monotonic() + 30
        while not workers and proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid)
        assert workers or proc.poll() is not None, "no worker started"
        time.sleep(rng.uniform(0, 0.6))
        victim = rng.choice(workers) if workers else None
        killed_at = time.monotonic()
        if victim is not None:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                victim = None
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{name}: still running 30 s after a worker was killed (it waits for the dead worker)")
        took = time.monotonic() - killed_at
        lines = err.decode().strip().splitlines()
        if proc.returncode == 0:
            assert out == complete[name], f"{name}: exit 0 with output that differs from a complete run"
            outcomes["finished first, exit 0"] += 1
        else:
            assert proc.returncode == 6, (name, proc.returncode, lines)
            assert len(lines) == 1 and f"(pid {victim}) was killed by SIGKILL" in lines[0], lines
            assert complete[name].startswith(out), f"{name}: output that a complete run does not begin with"
            outcomes["killed, exit 6"] += 1
            slowest = max(slowest, took)
            assert took < 3, f"{name}: {took:.1f} s from the kill to the end"
        for pid in workers:  # no worker left behind
            end = time.monotonic() + 3
            while _running(pid) and time.monotonic() < end:
                time.sleep(0.05)
            assert not _running(pid), f"worker {pid} outlived the command"
    assert outcomes["killed, exit 6"] > 0
    figures.add(
        f"workers: {rounds} SIGKILLs of a worker at random moments of a cold stats, list, export --format jsonl and search: "
        f"{outcomes['killed, exit 6']} ended with exit 6 naming the killed pid (at most {slowest:.2f} s after the kill), "
        f"{outcomes['finished first, exit 0']} had finished with the complete output; 0 hangs, 0 workers left behind"
    )


def _limited(megabytes: int) -> Any:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))

    return limit


def test_workers_out_of_memory_end_the_command_with_exit_6(tmp_path: Path, figures: Any) -> None:
    """Under RLIMIT_AS a worker's MemoryError (or the parent's) is one line and exit 6, never a hang or exit 70."""
    root = tmp_path / "journal"
    for u in range(6):  # files of 20 MB: a worker's parse needs more than a small limit leaves
        folder = root / "users" / f"u{u}" / "dialogs"
        folder.mkdir(parents=True)
        big = [Message("user", ("x" * 99 + "\n") * 2000 + f"end {i}", f"2024-01-15T10:00:{i:02d}.000Z") for i in range(100)]
        (folder / "current.yaml").write_bytes(encode_batch(big, 1, "sequence"))
    (root / "config").mkdir()
    (root / "config" / "journal-config.yaml").write_text("layout: flat\nconversations: current\n")
    codes: dict[int, int] = {}
    worker_ran_out = runs = 0
    for megabytes in (40, 60, 80, 100, 120, 160, 240, 400):
        for name, args in COMMANDS.items():
            _cold(root)
            runs += 1
            started = time.monotonic()
            proc = _dialogctl(root, args, preexec_fn=_limited(megabytes))
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                pytest.fail(f"{name} under a {megabytes} MB limit hangs")
            lines = err.decode().strip().splitlines()
            codes[proc.returncode] = codes.get(proc.returncode, 0) + 1
            assert proc.returncode in (0, 6), (name, megabytes, lines)
            assert "Traceback" not in err.decode()
            if proc.returncode == 6:
                assert "out of memory" in lines[0], lines
                worker_ran_out += "worker process" in lines[0]
            assert time.monotonic() - started < 30
    assert worker_ran_out, "no run had a worker run out of memory: the limits tried do not reach the workers here"
    figures.add(
        f"workers: {runs} cold stats, list, export and search runs under RLIMIT_AS of 40-400 MB: exit codes {dict(sorted(codes.items()))}, "
        f"{worker_ran_out} naming a worker that ran out of memory; 0 hangs, 0 internal errors"
    )


# dialogctl with fork() failing as it does at a process limit (EAGAIN), no hook in dialogctl itself.
_NO_FORK = (
    "import errno, os, sys\n"
    "def fork():\n"
    "    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))\n"
    "os.fork = fork\n"
    "sys.argv = ['dialogctl', *sys.argv[1:]]\n"
    "from dialogctl.cli import main\n"
    "main()\n"
)


def test_without_workers_the_command_runs_in_one_process(tmp_path: Path) -> None:
    """Where no worker process can be started (a process limit), the work is done in the parent: the same output."""
    root = _journal(tmp_path / "journal", users=120)
    for name, args in COMMANDS.items():
        complete = _complete(root, args)
        _cold(root)
        proc = subprocess.run([sys.executable, "-c", _NO_FORK, "--root", str(root), *args], capture_output=True, timeout=120)
        assert (proc.returncode, proc.stderr) == (0, b""), name
        if name != "stats":  # stats carries the time it was generated
            assert proc.stdout == complete, name


def _crash(job: int) -> int:
    if job == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    return job


def _bug(job: int) -> int:
    if job == 3:
        raise TypeError("a bug in a worker")
    return job


def _out_of_memory(job: int) -> int:
    if job == 3:
        raise MemoryError
    return job


@pytest.mark.parametrize(
    ("func", "error", "words"),
    [
        (_crash, "WorkerCrashed", "crashed with SIGSEGV"),
        (_bug, "TypeError", "a bug in a worker"),
        (_out_of_memory, "WorkerDied", "ran out of memory while testing"),
    ],
)
def test_a_failing_worker_ends_the_run_with_its_cause(func: Any, error: str, words: str) -> None:
    from dialogctl import parallel

    got = []
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        for value in parallel.ordered(func, range(20), 2, 4, what="testing"):
            got.append(value)
    assert type(raised.value).__name__ == error and words in str(raised.value)
    if func is _crash:  # a dead worker ends the run at once: what was given is a beginning of the answers
        assert got == [0, 1, 2][: len(got)]
    else:  # a failed job is raised in its turn: every answer before it, in order; none after it
        assert got == [0, 1, 2]
    assert time.monotonic() - started < 5


def test_a_bug_in_a_worker_is_an_internal_error_exit_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dialogctl import parallel
    from dialogctl.cli.app import app
    from dialogctl.exchange import registry

    root = _journal(tmp_path / "journal", users=10)

    def broken(conv: Any, options: Any) -> str:
        raise TypeError("a bug in a formatter")

    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    monkeypatch.setitem(registry.EXPORTS, "jsonl", registry.EXPORTS["jsonl"]._replace(text=broken))  # the workers are forked with it
    result = CliRunner().invoke(app, ["--root", str(root), "export", "--all", "--format", "jsonl"])
    assert result.exit_code == 70
    assert result.stderr.strip().splitlines() == ["dialogctl: internal error (TypeError); this is a bug. Set DIALOGCTL_DEBUG=1 to see where it happened."]


def test_a_search_worker_killed_in_a_file_ends_the_search_with_exit_6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: the worker that reaches one file dies there; the search ends at once, naming it, after only hits a complete run begins with."""
    from typer.testing import CliRunner

    from dialogctl import parallel
    from dialogctl.cli.app import app
    from dialogctl.views import search_pipeline

    root = _journal(tmp_path / "journal", users=40)
    args = ["--root", str(root), *COMMANDS["search"]]
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
    complete = CliRunner().invoke(app, args)
    assert complete.exit_code == 0 and complete.stdout
    real = search_pipeline.in_file

    def dying(rel_path: Any, *rest: Any) -> Any:
        if "/u0015/" in rel_path():  # among the users with hits (10 to 19)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(rel_path, *rest)

    monkeypatch.setattr(search_pipeline, "in_file", dying)  # the workers are forked with it
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 6
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "was killed by SIGKILL" in lines[0] and "while searching the journal" in lines[0], lines
    assert complete.stdout.startswith(result.stdout) and len(result.stdout) < len(complete.stdout)
    assert time.monotonic() - started < 10
