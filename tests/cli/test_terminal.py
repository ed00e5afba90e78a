"""The installed executable on a pseudo-terminal and in a pipe, as operators and scripts meet it.

What may differ between the two is colour, paging and the cutting of long
table cells; the shape of machine output may not. Text from the journal never
reaches the terminal raw, and every class of failure has its exit code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import copy_tree, run_exe
from ..terminal import executable, run_tty

SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and style: the only escapes dialogctl itself writes


def _lines(text: str) -> str:
    """Terminal output with the pty's CR LF line ends made plain."""
    return text.replace("\r\n", "\n")


def _journal(tmp_path: Path, messages: int = 3, user: str = "alice") -> dict[str, str]:
    env = {"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "journal")}
    lines = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i}", "timestamp": f"2024-01-15T10:{i % 60:02d}:00.000Z"}
        for i in range(messages)
    ]
    done = run_exe("append", user, "--jsonl", input="".join(json.dumps(line) + "\n" for line in lines), env=env)
    assert done.returncode == 0, done.stderr
    return env


# --- shape: tables for people, the same machine output everywhere ----------------------------


def test_table_on_a_terminal_and_plain_columns_in_a_pipe(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(copy_tree("v1-sharded", tmp_path))}
    tty = run_tty("list", env=env, cols=100)
    assert tty.returncode == 0
    screen = SGR.sub("", _lines(tty.output)).splitlines()
    assert screen[0].split() == ["User", "Active", "Archives", "Messages", "Size", "Last", "activity"]
    assert set(screen[1]) == {"─"}  # Rich's rule under the header
    assert all(len(line) <= 100 for line in screen)
    assert re.search(r"user-1000 +1 +1 +26 +6\.2 KiB +\d+(s|m|h|d|mo|y) ago", screen[2])
    pipe = run_exe("list", env=env)
    assert pipe.stdout.splitlines()[0].split() == screen[0].split()
    assert "─" not in pipe.stdout and "\x1b" not in pipe.stdout


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "tsv"])
def test_machine_formats_are_the_same_on_a_terminal_and_in_a_pipe(tmp_path: Path, fmt: str) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(copy_tree("v1-sharded", tmp_path))}
    for args in (["list"], ["list", "user-1000"], ["show", "user-1000", "--tail", "2"], ["config"], ["locks"]):
        pipe = run_exe(*args, "--format", fmt, env=env)
        tty = run_tty(*args, "--format", fmt, env=env, stderr_tty=False, cols=40)
        assert pipe.returncode == tty.returncode == 0, (args, pipe.stderr, tty.stderr)
        assert _lines(tty.output) == pipe.stdout, args
        if fmt == "json":
            json.loads(pipe.stdout)


def test_stats_json_carries_raw_values_and_the_table_human_ones(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(copy_tree("v1-sharded", tmp_path))}
    raw = json.loads(run_exe("stats", "--format", "json", env=env).stdout)
    assert raw["storageUsage"] > 1024 and raw["oldestMessage"] == "2024-01-15T10:30:00.000Z"
    screen = SGR.sub("", _lines(run_tty("stats", env=env).output))
    assert re.search(r"Storage +\d+\.\d KiB", screen)
    assert re.search(r"Oldest message +2024-01-15 10:30 \(\d+(mo|y) ago\)", screen)


# --- colour -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "coloured"),
    [
        ([], {}, True),
        ([], {"NO_COLOR": "1"}, False),
        ([], {"NO_COLOR": ""}, True),  # set but empty does not count (no-color.org)
        ([], {"TERM": "dumb"}, False),
        (["--color", "never"], {}, False),
        (["--color", "always"], {"NO_COLOR": "1", "TERM": "dumb"}, True),  # the flag wins
    ],
)
def test_colour_on_a_terminal(tmp_path: Path, args: list[str], env: dict[str, str], coloured: bool) -> None:
    env = {**_journal(tmp_path), **env}
    for command in (["list"], ["show", "alice"], ["stats"]):
        out = run_tty(*args, *command, env=env).output
        assert ("\x1b[" in out) is coloured, (command, out)


def test_colour_in_a_pipe_only_when_forced(tmp_path: Path) -> None:
    env = _journal(tmp_path)
    assert "\x1b[" not in run_exe("show", "alice", env=env).stdout
    assert "\x1b[" not in run_exe("list", env=env).stdout
    forced = run_exe("--color", "always", "show", "alice", env=env).stdout
    assert "\x1b[1;36muser" in forced  # the role's colour


def test_help_is_plain_text_everywhere(tmp_path: Path) -> None:
    tty = run_tty("show", "--help", cols=100)
    assert tty.returncode == 0
    assert "\x1b" not in tty.output
    assert _lines(tty.output) == run_exe("show", "--help", env={"COLUMNS": "100"}).stdout


# --- the pager ------------------------------------------------------------------------------


@pytest.fixture
def fake_pager(tmp_path: Path) -> tuple[str, Path]:
    """A pager that records what it was given: the command for DIALOGCTL_PAGER, and its record."""
    script = tmp_path / "fake-pager"
    record = tmp_path / "paged.txt"
    script.write_text('#!/bin/sh\necho "LESS=$LESS" > "$1"\ncat >> "$1"\n')
    script.chmod(0o755)
    return f"{script} {record}", record


def test_long_transcript_goes_through_the_pager_on_a_terminal(tmp_path: Path, fake_pager: tuple[str, Path]) -> None:
    pager, record = fake_pager
    env = {**_journal(tmp_path, messages=40), "DIALOGCTL_PAGER": pager}
    tty = run_tty("show", "alice", env=env, rows=24)
    assert tty.returncode == 0
    paged = record.read_text()
    assert paged.startswith("LESS=FRX\n")  # set for the pager when LESS is not set
    assert "message number 0" in paged and "message number 39" in paged
    assert "\x1b[" in paged  # colour reaches the pager (less -R shows it)
    assert "message number" not in tty.output


def test_the_pager_is_never_used_in_a_pipe_or_when_not_needed(tmp_path: Path, fake_pager: tuple[str, Path]) -> None:
    pager, record = fake_pager
    env = {**_journal(tmp_path, messages=40), "DIALOGCTL_PAGER": pager}
    piped = run_exe("show", "alice", env=env)
    assert piped.returncode == 0 and "message number 39" in piped.stdout
    assert "message number 39" in run_tty("show", "alice", "--no-pager", env=env, rows=24).output
    assert "message number 39" in run_tty("show", "alice", "--tail", "3", env=env, rows=24).output  # fits the screen
    assert "message number 39" in run_tty("show", "alice", "--format", "jsonl", env=env, rows=24).output
    assert "message number 39" in run_tty("show", "alice", env={**env, "DIALOGCTL_PAGER": ""}, rows=24).output
    assert not record.exists()


def test_pager_choice_dialogctl_pager_then_pager(tmp_path: Path, fake_pager: tuple[str, Path]) -> None:
    pager, record = fake_pager
    env = _journal(tmp_path, messages=40)
    run_tty("show", "alice", env={**env, "PAGER": pager, "LESS": "-X"}, rows=24)
    assert record.read_text().startswith("LESS=-X\n")  # PAGER is used; an operator's LESS is kept
    record.unlink()
    run_tty("show", "alice", env={**env, "PAGER": "false", "DIALOGCTL_PAGER": pager}, rows=24)
    assert record.exists()


def test_the_default_pager_is_less(tmp_path: Path) -> None:
    if shutil.which("less") is None:
        if os.environ.get("DIALOGCTL_REQUIRE_SHELLS"):
            pytest.fail("less is required here (DIALOGCTL_REQUIRE_SHELLS is set)")
        pytest.skip("less is not installed")
    env = _journal(tmp_path, messages=40)
    tty = run_tty("show", "alice", env=env, rows=24, keys=b"q")  # read the first screen, then quit
    assert tty.returncode == 0
    assert "message number 0" in tty.output and "message number 39" not in tty.output


def test_a_missing_pager_prints_directly(tmp_path: Path) -> None:
    env = {**_journal(tmp_path, messages=40), "DIALOGCTL_PAGER": "no-such-pager-anywhere"}
    tty = run_tty("show", "alice", env=env, rows=24)
    assert tty.returncode == 0
    assert "message number 39" in tty.output and "cannot run the pager 'no-such-pager-anywhere'" in tty.output
    without_less = run_tty("show", "alice", env={"DIALOGUE_JOURNAL_ROOT": env["DIALOGUE_JOURNAL_ROOT"], "PATH": "/nonexistent"}, rows=24)
    assert without_less.returncode == 0
    assert "message number 39" in without_less.output and "pager" not in without_less.output  # the default, missing: no news


# --- untrusted text ---------------------------------------------------------------------

HOSTILE = (
    "clear\x1b[2J\x1b[H title\x1b]0;owned\x07 link\x1b]8;;http://evil.example\x1b\\here\x1b]8;;\x1b\\ "
    "csi\x9b31m c1\x85 nul\x00 del\x7f bell\x07 rlo\u202egnp.exe zw\u200bj bom\ufeff [bold red]markup[/] :smile:"
)
ESCAPED = ["clear\\e[2J\\e[H", "title\\e]0;owned\\a", "link\\e]8;;http://evil.example\\e\\here", "csi\\x9b31m", "c1\\x85", "nul\\0"]
ESCAPED += ["del\\x7f", "bell\\a", "rlo\\u202egnp.exe", "zw\\u200bj", "bom\\ufeff", "[bold red]markup[/]", ":smile:"]


def _raw(text: str) -> list[str]:
    """Characters that must never reach a terminal raw, found in ``text`` once colour codes are removed."""
    plain = SGR.sub("", _lines(text))
    return [ch for ch in plain if (ord(ch) < 32 and ch not in "\n\t") or 0x7F <= ord(ch) <= 0x9F or ch in "\u202e\u200b\ufeff"]


def test_control_characters_are_escaped_on_the_terminal_and_exact_in_json(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "journal")}
    line = {"role": "assistant", "content": HOSTILE, "metadata": {"model": "gpt\x1b[31m-4\u202e", "tokens": 3}}
    assert run_exe("append", "mallory", "--jsonl", input=json.dumps(line) + "\n", env=env).returncode == 0
    for args in (["show", "mallory"], ["show", "mallory", "--markdown"], ["show", "mallory", "--local"]):
        tty = run_tty(*args, env=env, cols=400)  # wide enough that no escape is wrapped apart
        assert tty.returncode == 0, args
        assert _raw(tty.output) == [], args
        if "--markdown" not in args:  # Markdown may re-flow the words; the escapes are checked above
            for escaped in ESCAPED:
                assert escaped in tty.output, (args, escaped)
        assert "gpt\\e[31m-4\\u202e" in tty.output
    exact = json.loads(run_exe("show", "mallory", "--format", "json", env=env).stdout)["messages"][0]
    assert exact["content"] == HOSTILE and exact["metadata"]["model"] == "gpt\x1b[31m-4\u202e"
    jsonl = json.loads(run_exe("show", "mallory", "--format", "jsonl", env=env).stdout)
    assert jsonl["content"] == HOSTILE


@pytest.mark.parametrize(
    "args",
    [
        ["export", "mallory", "-f", "markdown"],
        ["export", "mallory", "-f", "csv"],
        ["export", "mallory", "-f", "jsonl"],
        ["show", "mallory", "-f", "csv"],
        ["show", "mallory", "-f", "tsv"],
        ["show", "mallory", "-f", "json"],
        ["show", "mallory", "-f", "jsonl"],
        ["list", "-f", "csv"],
    ],
)
def test_every_format_escapes_on_a_terminal_and_is_exact_in_a_pipe(tmp_path: Path, args: list[str]) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "journal")}
    line = {"role": "assistant", "content": HOSTILE, "metadata": {"model": "gpt\x1b[31m-4\u202e", "tokens": 3}}
    assert run_exe("append", "mallory", "--jsonl", input=json.dumps(line) + "\n", env=env).returncode == 0
    tty = run_tty(*args, env=env, cols=400, stderr_tty=False)
    assert tty.returncode == 0, tty.stderr
    shown = _lines(tty.output).replace("\r\n", "\n")  # CSV's CR LF line ends, after the pty's
    assert _raw(shown) == []
    piped = run_exe(*args, env=env).stdout
    if args[0] == "list":
        assert shown == piped  # nothing to escape: the same bytes
        return
    if "json" in args or "jsonl" in args:  # still JSON, of the exact values
        parse = json.loads if "json" in args else lambda text: json.loads(text.split("\n")[0])
        assert parse(shown) == parse(piped)
        assert "\\u009b31m" in shown and "\\u202egnp.exe" in shown
        assert "\x9b31m" in piped and "\u202egnp.exe" in piped  # files and pipes get the exact text
    else:
        assert all(escaped in shown for escaped in ("clear\\e[2J\\e[H", "csi\\x9b31m", "rlo\\u202egnp.exe")), shown
        assert "\x1b[2J" in piped and "\u202egnp.exe" in piped


def test_text_from_files_is_escaped_in_tables_and_on_stderr(tmp_path: Path) -> None:
    """Roles, ids and paths come from files other programs wrote: escaped everywhere people read them."""
    root = tmp_path / "journal"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root), "DIALOGUE_JOURNAL_LAYOUT": "flat"}
    assert run_exe("append", "bob", "hi", env=env).returncode == 0
    dialogs = root / "users" / "bob" / "dialogs"
    with open(dialogs / "current.yaml", "a") as fh:  # a hand-written record with a hostile role
        fh.write('\n- role: "evil\\e[31m[bold]role[/]:smile:\\u202e"\n  content: x\n  timestamp: 2024-01-15T10:30:00.000Z\n')
    (root / "users" / "bad\x1b[2Jname" / "dialogs").mkdir(parents=True)  # a folder no valid id could make
    for args in (["show", "bob"], ["stats"], ["list", "bob"], ["list"]):
        tty = run_tty(*args, env=env)
        assert _raw(tty.output) == [], (args, tty.output)
    for args in (["show", "bob"], ["stats"]):  # a transcript header and a table cell: markup and emoji codes stay text
        assert "evil\\e[31m[bold]role[/]:smile:\\u202e" in run_tty(*args, env=env).output
    warned = run_tty("list", env=env).output
    assert "bad\\e[2Jname" in warned and "unusable user folder" in warned


# --- exit codes -----------------------------------------------------------------------------


def test_exit_codes_of_every_error_class(tmp_path: Path) -> None:
    """0 ok, 1 a negative answer, 2 usage, 3 not found, 4 lock busy, 5 damaged data, 6 I/O: one line each on stderr."""
    env = _journal(tmp_path)
    root = Path(env["DIALOGUE_JOURNAL_ROOT"])
    assert run_exe("show", "alice", env=env).returncode == 0
    # 1: the operator answers no to a cleanup on a terminal
    declined = run_tty("cleanup", "--max-age", "1d", env=env, keys=b"n\r")
    assert declined.returncode == 1 and "aborted" in declined.output
    assert run_exe("show", "alice", "--format", "jsonl", env=env).stdout.count("\n") == 3  # nothing was removed
    cases = [
        (["show", "alice", "--since", "12"], 2, "not a time"),
        (["show", "nobody"], 3, "not found"),
        (["--root", str(copy_tree("v1-broken", tmp_path)), "show", "carol-3"], 5, "damaged record"),
    ]
    for args, code, words in cases:
        result = run_exe(*args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr
    # 6: a symlink inside the journal is refused, not followed
    (root / "users" / "al" / "ic" / "e" / "dialogs" / "current.yaml").rename(tmp_path / "moved.yaml")
    (root / "users" / "al" / "ic" / "e" / "dialogs" / "current.yaml").symlink_to(tmp_path / "moved.yaml")
    io_error = run_exe("show", "alice", env=env)
    assert io_error.returncode == 6 and "symlink" in io_error.stderr
    # 4: another process holds the lock past lockTimeoutMs
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(root), "bob"], stdout=subprocess.PIPE, env={**os.environ, **env}, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = run_exe("--set", "lockTimeoutMs=200", "append", "bob", "blocked", env=env)
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == 4 and f"pid {holder.pid}" in busy.stderr
    assert len(busy.stderr.splitlines()) == 2  # the error, and a hint


_HOLD_LOCK = """
import sys, time
from dialogctl.config import load_settings
from dialogctl import Journal
journal = Journal.open(sys.argv[1])
def hold(dialogs):
    print("held", flush=True)
    time.sleep(60)
journal.locked(sys.argv[2], "holder", hold, create=True)
"""


def test_interrupted_exits_130(tmp_path: Path) -> None:
    env = {**os.environ, "DIALOGUE_JOURNAL_ROOT": str(tmp_path / "journal")}
    proc = subprocess.Popen(executable() + ["append", "alice"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    wchan = Path(f"/proc/{proc.pid}/wchan")
    deadline = time.monotonic() + 30
    while not wchan.read_text().endswith("pipe_read") and time.monotonic() < deadline:  # until it waits for stdin to end
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.decode() == "dialogctl: interrupted\n"


def test_progress_and_notes_stay_off_stdout(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(copy_tree("v1-sharded", tmp_path))}
    tty = run_tty("stats", "--format", "json", env=env, stderr_tty=False)
    assert json.loads(_lines(tty.output))["totalUsers"] == 12
    assert tty.stderr == ""
    quiet = run_tty("-q", "cleanup", "--max-age", "1d", "--dry-run", env=env)
    assert "cut-off times" not in quiet.output and "would remove" not in quiet.output
