"""``follow`` against live writers: appends across archives and restores, --since, other processes, a reader that goes away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import run_exe


def _follow(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root))
    return subprocess.Popen(
        [sys.executable, "-m", "dialogctl", "follow", "--interval", "0.1", "--format", "jsonl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _wait_started(proc: subprocess.Popen[bytes]) -> None:
    """Until the follower says it has taken its starting point (its first round): what is appended after that is new."""
    import select

    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 1)[0]:
            line = proc.stderr.readline()
            assert line, proc.poll()
            if line.startswith(b"dialogctl: following "):
                return
    raise AssertionError("follow did not start")


def test_follow_sees_appends_across_archives_and_restores(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    run_exe("append", "alice", "before start", "--timestamp", "2020-01-01T00:00:00Z", env=env)
    run_exe("archive", "alice", "--id", "ancient", env=env)
    proc = _follow(root, "--count", "4")
    _wait_started(proc)
    run_exe("append", "alice", "one", env=env)
    run_exe("append", "bob", "new user", env=env)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dialogctl.cli import main; sys.argv=['dialogctl','append','alice','two']; main()"],
        env=dict(os.environ, **env),
    )
    writer.wait(timeout=60)
    run_exe("archive", "alice", env=env)
    run_exe("restore", "alice", "ancient", env=env)  # old messages come back: not new, not printed
    run_exe("append", "alice", "three", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    # in order within each conversation; a new user is found on the next walk of the folders
    assert [e["content"] for e in events if e["user"] == "alice"] == ["one", "two", "three"]
    assert [e["content"] for e in events if e["user"] == "bob"] == ["new user"]


def test_follow_from_since_and_clean_exits(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    run_exe("append", "alice", "old", "--timestamp", "2020-01-01T00:00:00Z", env=env)
    run_exe("append", "alice", "recent", env=env)
    proc = _follow(root, "alice", "--since", "1h", "--count", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["content"] for line in out.decode().splitlines()] == ["recent"]
    proc = _follow(root)
    _wait_started(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in err
    assert run_exe("follow", "--format", "json", env=env).returncode == 2
    assert run_exe("follow", "../ghost", env=env).returncode == 2  # a user that does not exist yet is waited for (tests/cli/test_consistent.py)


def test_follow_while_another_process_appends(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root), "DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD": "5"}
    run_exe("append", "load", "seed", env=env)
    proc = _follow(root, "--count", "30")
    _wait_started(proc)
    code = (
        "import sys; from dialogctl.config import load_settings; from dialogctl import Journal;"
        "from dialogctl.models import Message;"
        "j = Journal.open();"
        "[j.append('load', [Message('user', f'm{i}', '2030-01-01T00:00:00.000Z')]) for i in range(30)]"
    )
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), check=True, timeout=120)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["content"] for line in out.decode().splitlines()] == [f"m{i}" for i in range(30)]


def test_follow_ends_when_its_reader_goes_away(root: Path) -> None:
    """``follow | head -1`` ends when head does, not at the next message (which may never come)."""
    proc = _follow(root)
    _wait_started(proc)
    assert run_exe("append", "erin", "only one", env={"DIALOGUE_JOURNAL_ROOT": str(root)}).returncode == 0
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["content"] == "only one"
    proc.stdout.close()  # the reader leaves; nothing more is appended
    assert proc.wait(timeout=20) == 141
    assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")
