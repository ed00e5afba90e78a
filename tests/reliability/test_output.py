"""Terminal output: untrusted text is shown escaped, never interpreted (escape sequences, controls, bidi, markup)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.models import Message

from ..conftest import run_exe
from ..terminal import run_tty

HOSTILE = {
    "clear screen": "\x1b[2J\x1b[H",
    "title": "\x1b]0;owned\x07",
    "hyperlink": "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "clipboard": "\x1b]52;c;ZWNobyBvd25lZA==\x07",
    "C1 CSI": "\x9b31m",
    "C1 OSC": "\x9d0;owned\x9c",
    "NUL": "a\x00b",
    "DEL": "a\x7fb",
    "right-to-left override": "abc\u202edcba",
    "Rich markup": "[bold red]not bold[/] [link=https://evil.example]x[/link]",
}
CONTENT = "\n".join(f"{name}: {text}" for name, text in HOSTILE.items())
SGR = re.compile(r"\x1b\[[0-9;]*m")  # dialogctl's own colours


def _journal(tmp_path: Path) -> Path:
    root = tmp_path / "journal"
    journal = Journal.open(str(root))
    journal.append("alice", [Message("assistant", CONTENT, "2024-01-15T10:30:00.000Z", {"model": HOSTILE["title"], "note": HOSTILE["C1 OSC"]})])
    # A folder whose name carries an escape sequence: it shows up in a warning on stderr.
    (root / "users" / "\x1b]0;owned\x07x" / "dialogs").mkdir(parents=True)
    return root


def _assert_inert(text: str) -> None:
    plain = SGR.sub("", text)
    assert "\x1b" not in plain, repr(plain[max(0, plain.find("\x1b") - 40) :][:120])
    for char in ("\x9b", "\x9c", "\x9d", "\x00", "\x7f", "\u202e", "\x07"):
        assert char not in plain, (repr(char), repr(plain[:300]))


def test_transcripts_and_tables_show_hostile_text_escaped(tmp_path: Path) -> None:
    root = _journal(tmp_path)
    for args in (["show", "alice"], ["show", "alice", "--format", "table"], ["list"], ["list", "alice"], ["export", "alice", "--format", "json"]):
        shown = run_tty("--root", str(root), "--color", "always", *args, cols=200, rows=50).output
        if args[-1] == "json":
            continue  # machine formats carry the exact text (checked below)
        _assert_inert(shown)
        assert "\x1b[" in shown or args[0] == "list"  # colour really was on
        if args[0] == "show":
            for escaped in ("\\e[2J", "\\e]0;owned\\a", "\\x9b31m", "\\x9d0;owned\\x9c", "a\\0b", "a\\x7fb", "abc\\u202edcba"):
                assert escaped in shown, escaped
            assert "[bold red]not bold[/]" in shown and "[link=https://evil.example]x[/link]" in shown
        if args == ["list"]:
            assert "users/\\e]0;owned\\ax: unusable user folder" in shown  # the folder's name in the warning, escaped


def test_pipes_show_the_same_escapes_and_machine_formats_the_exact_text(tmp_path: Path) -> None:
    root = _journal(tmp_path)
    piped = run_exe("--root", str(root), "show", "alice")
    _assert_inert(piped.stdout + piped.stderr)
    exported = run_exe("--root", str(root), "show", "alice", "--format", "json")
    assert json.loads(exported.stdout)["messages"][0]["content"] == CONTENT


def _run_with_stderr(args: list[str], how: str) -> tuple[int, bytes, bytes]:
    """Run dialogctl with stderr as asked: a pipe read to the end, closed (2>&-), a pipe nobody reads, or /dev/full."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "dialogctl", *args]
    if how == "normal":
        proc = subprocess.run(command, capture_output=True, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr
    if how == "closed":
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.close(2), timeout=60)
    elif how == "broken pipe":
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=write_end, timeout=60)
        finally:
            os.close(write_end)
    else:
        with open("/dev/full", "wb") as full:
            proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=full, timeout=60)
    return proc.returncode, proc.stdout, b""


def test_closed_or_broken_stderr_changes_neither_stdout_nor_the_exit_code(tmp_path: Path, figures: Any) -> None:
    from ..conftest import copy_tree

    broken = copy_tree("v1-broken", tmp_path)  # warnings on stderr, exit 5
    root = tmp_path / "journal"
    Journal.open(str(root)).append("alice", [Message("user", "hello", "2024-01-15T10:30:00.000Z")])
    runs = [
        ["--root", str(root), "list", "-f", "json"],
        ["--root", str(root), "-v", "list", "-f", "json"],  # notes
        ["--root", str(root), "-v", "export", "--all", "-f", "jsonl"],
        ["--root", str(broken), "search", "hi", "-f", "jsonl"],  # warnings and exit 5
        ["--root", str(broken), "show", "carol-1", "-f", "jsonl"],
        ["--root", str(root), "show", "nobody"],  # an error line, exit 3
        ["--root", str(root), "-v", "append", "bob", "hi", "--timestamp", "2024-01-15T10:31:00Z"],  # a write with notes
    ]
    checked = 0
    for args in runs:
        code, out, err = _run_with_stderr(args, "normal")
        assert err or args[-2:] == ["-f", "json"], args  # all but the first say something on stderr
        if "append" in args:
            before = (root / "users/bo/b/bob/dialogs/current.yaml").read_bytes()
            (root / "users/bo/b/bob/dialogs/current.yaml").unlink()
        for how in ("closed", "broken pipe", "/dev/full"):
            got = _run_with_stderr(args, how)
            assert got[:2] == (code, out), (args, how, got[:2], (code, out))
            if "append" in args:
                written = root / "users/bo/b/bob/dialogs/current.yaml"
                assert written.read_bytes() == before, how
                written.unlink()
            checked += 1
    figures.add(f"stderr closed, a closed pipe or /dev/full: {checked} runs of {len(runs)} commands, stdout and exit code as with a working stderr")


def test_a_closed_stdout_is_a_closed_pipe_and_never_reaches_a_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "journal"

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "dialogctl", "--root", str(root), *args]
        return subprocess.run(command, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1), timeout=60)

    # Nothing to print: the append succeeds, and the descriptor stdout left free never becomes a journal file's.
    assert run("-v", "append", "alice", "hello", "--timestamp", "2024-01-15T10:30:00Z").returncode == 0
    assert [m.content for m in Journal.open(str(root)).read(Journal.open(str(root)).resolve("alice")).messages] == ["hello"]
    for args in (["list", "-f", "json"], ["list"], ["export", "--all", "-f", "jsonl"]):
        result = run(*args)
        assert result.returncode == 141 and b"internal error" not in result.stderr, (args, result)


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_that_goes_away_mid_output_is_exit_141_with_or_without_pythonunbuffered(tmp_path: Path, unbuffered: str) -> None:
    """``dialogctl ... | head`` over megabytes of output: 141, nothing on stderr about it, whatever the stdout buffering.

    With ``PYTHONUNBUFFERED=1`` (containers set it) stdout's text layer writes straight to the
    descriptor and ignores what a short write left: the rest of the text was dropped and the
    command exited 0, as if the reader had had everything.
    """
    import os
    import subprocess
    import sys

    root = tmp_path / "journal"
    journal = Journal.open(str(root))
    line = "needle " + "x" * 12_000  # 90 messages: 1 MB, all in the current conversation (under archiveThreshold)
    journal.append("alice", [Message("user" if i % 2 == 0 else "assistant", f"{i} {line}", f"2024-01-15T10:30:{i % 60:02d}.{i:03d}Z") for i in range(90)])
    # and 3,000 short ones, archived a hundred at a time: a table of search hits over 300 KB
    journal.append("bob", [Message("user", f"{i} needle", f"2024-01-16T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z") for i in range(3000)])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    commands = [
        ["search", "needle", "-a"],  # a table, laid out in one write
        ["search", "needle", "-a", "--format", "jsonl"],
        ["show", "alice", "--format", "jsonl"],
        ["show", "alice"],
        ["export", "--all", "--format", "jsonl"],
    ]
    for args in commands:
        proc = subprocess.Popen([sys.executable, "-m", "dialogctl", "--root", str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stderr is not None
        if len(proc.stdout.read(10)) != 10:
            raise AssertionError((args, unbuffered, proc.wait(timeout=60), proc.stderr.read()))
        proc.stdout.close()  # the reader goes away with a megabyte still to come
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141, (args, unbuffered, proc.returncode, err)
        assert b"Traceback" not in err and b"Exception ignored" not in err and b"internal error" not in err, (args, err)
