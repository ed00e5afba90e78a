"""One index base, not-found is exit 3 everywhere, follow waits for a new user, empty stdin is no message."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import Cli, run_exe


def test_verify_numbers_messages_from_0_as_show_does(root: Path, cli: Cli) -> None:
    dialogs = root / "users/al/ic/e/dialogs"  # as the servers write it (they check no role)
    dialogs.mkdir(parents=True)
    items = [("user", "fine", "2024-01-15T10:30:00.000Z"), ("robot", "odd", "2024-01-15T10:30:01.000Z"), ("user", "late", "soon")]
    (dialogs / "current.yaml").write_text("\n".join(f"- role: {r}\n  content: |\n    {c}\n  timestamp: {t}" for r, c, t in items))
    found = cli("verify", "--format", "json")
    assert found.exit_code == 1
    details = {f["problem"]: f["detail"] for f in json.loads(found.stdout)}
    shown = cli.json("show", "alice", "--format", "json")
    assert [(m["index"], m["role"]) for m in shown["messages"]][1:] == [(1, "robot"), (2, "user")]
    assert "(first: index 1)" in details["unknown role"]  # the index show and export give that message
    assert "(first: index 2)" in details["unreadable timestamp"]


def test_csv_import_errors_count_records_from_0(root: Path, cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("role,content\nuser,first\nbot,second\n")
    result = cli("import", "alice", str(source))
    assert result.exit_code == 2 and "line 3 (record 1)" in result.stderr


def test_the_current_conversation_of_a_sessions_journal_is_not_found(fixture_tree, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    tree = fixture_tree("v3-sessions")
    for args in (
        ["show", "alice6", "--conversation", "current"],
        ["show", "alice6", "--conversation", "current", "--tail", "2"],
        ["export", "alice6", "--conversation", "current"],
        ["archive", "alice6", "--conversation", "current"],
        ["rm", "alice6", "--conversation", "current", "--dry-run"],
        ["show", "alice6", "--conversation", "nope"],
        ["show", "alice6", "--archive", "nope"],
        ["show", "nobody"],
        ["export", "nobody"],
        ["archive", "nobody"],
        ["restore", "nobody", "x"],
        ["restore", "alice6", "nope"],
        ["rm", "nobody", "--all-data", "--dry-run"],
        ["rm", "alice6", "--archive", "nope", "--dry-run"],
    ):
        result = cli("--root", str(tree), *args)
        assert result.exit_code == 3, (args, result.exit_code, result.stderr)
        assert result.stdout == "", args
    said = cli("--root", str(tree), "show", "alice6", "--conversation", "current").stderr
    assert "no current conversation" in said and "dialogctl list alice6" in said
    # the conversation the user does have still shows (exit 0, even when empty)
    assert cli("--root", str(tree), "show", "alice1").exit_code == 0


def test_the_current_conversation_of_a_current_journal_is_always_there(root: Path, cli: Cli) -> None:
    cli("append", "alice", "hi")
    assert cli("archive", "alice").exit_code == 0
    (next(root.glob("users/**/current.yaml"))).unlink()  # not even the empty file the servers leave
    shown = cli("show", "alice", "--conversation", "current")
    assert shown.exit_code == 0 and "holds no messages" in shown.stderr


def test_append_refuses_empty_stdin(root: Path, cli: Cli) -> None:
    for given in ("", "\n", "\r\n"):
        for args in (["append", "alice"], ["append", "alice", "-"]):
            result = cli(*args, input=given)
            assert result.exit_code == 2, (given, args)
            assert "no message text on stdin" in result.stderr
    assert not root.exists() or not list(root.glob("users/**/*.yaml"))  # nothing written, no user made
    assert cli("append", "alice", input=" \n").exit_code == 0  # spaces are text (kept exactly)
    assert cli.jsonl("show", "alice", "--format", "jsonl")[0]["content"] == " \n"
    assert cli("append", "alice", input="\n\n").exit_code == 0  # two line breaks: what was piped is the text
    empty = cli("append", "--jsonl", "--format", "json", input="")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == [] and "nothing appended" in empty.stderr


def _follow(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root))
    return subprocess.Popen(
        [sys.executable, "-m", "dialogctl", "follow", "--interval", "0.1", "--format", "jsonl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


class _Lines:
    """Lines of a child's pipe, read with os.read (a buffered reader hides what it read ahead from select)."""

    def __init__(self, stream: object) -> None:
        self.fd = stream.fileno()  # type: ignore[attr-defined]
        self.buffer = b""

    def next(self, deadline: float) -> bytes:
        while b"\n" not in self.buffer:
            if time.monotonic() > deadline:
                raise AssertionError(f"no whole line came: {self.buffer!r}")
            if select.select([self.fd], [], [], 0.5)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"the pipe closed: {self.buffer!r}")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


def test_follow_waits_for_a_user_that_does_not_exist_yet(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    run_exe("append", "someone", "else", env=env)
    proc = _follow(root, "newbie")
    try:
        deadline = time.monotonic() + 60
        stdout, stderr = _Lines(proc.stdout), _Lines(proc.stderr)
        said = b""
        while b"waiting for newbie" not in said:
            said += stderr.next(deadline)
        assert proc.poll() is None  # still running: not exit 3
        run_exe("append", "someone", "not followed", env=env)
        assert run_exe("append", "newbie", "first words", env=env).returncode == 0
        record = json.loads(stdout.next(deadline))
        assert (record["user"], record["index"], record["content"]) == ("newbie", 0, "first words")
        run_exe("append", "newbie", "second", env=env)
        assert json.loads(stdout.next(deadline))["content"] == "second"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert stdout.buffer + out == b""  # nothing else: the other user's messages were not printed


@pytest.mark.parametrize("user", ["../x", "", "a/b"])
def test_follow_refuses_a_malformed_user_id(root: Path, cli: Cli, user: str) -> None:
    result = cli("follow", user)
    assert result.exit_code == 2 and result.stdout == ""
