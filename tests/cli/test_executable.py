"""The installed ``dialogctl`` executable, as scripts and cron call it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import copy_tree, run_exe


def test_core_never_loads_the_cli_toolkit() -> None:
    code = (
        "import sys, dialogctl.journal.core, dialogctl.maintenance.retention, dialogctl.views.overview, dialogctl.exchange.registry, dialogctl.exchange.pipeline\n"
        "bad = [m for m in ('typer', 'rich', 'click') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_append_path_imports_no_rich_no_yaml_and_no_script_table(tmp_path: Path) -> None:
    """Nor portalocker: its import (importlib.metadata, for its version) was a fifth of an append; the lock is fcntl.flock."""
    code = (
        "import sys\n"
        "from dialogctl.cli.app import app\n"
        "try:\n"
        "    app(['--root', sys.argv[1], 'append', 'alice', 'hi'], prog_name='dialogctl')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(','.join(m for m in ('rich', 'ruamel.yaml', 'dialogctl.script_table', 'portalocker', 'importlib.metadata') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "j")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_round_trip_through_the_executable(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "j")}
    assert run_exe("append", "alice", "hello", env=env).returncode == 0
    assert run_exe("append", "alice", "--role", "assistant", input="piped\n", env=env).returncode == 0
    result = run_exe("show", "alice", "--format", "json", env=env)
    assert result.returncode == 0
    assert [m["content"] for m in json.loads(result.stdout)["messages"]] == ["hello", "piped\n"]
    assert result.stderr == ""
    module = subprocess.run([sys.executable, "-m", "dialogctl", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("dialogctl ")


def test_pipe_output_is_plain(tmp_path: Path) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    result = run_exe("--root", str(root), "list")
    assert result.returncode == 0
    assert "\x1b[" not in result.stdout
    assert result.stdout.splitlines()[0].split() == ["User", "Active", "Archives", "Messages", "Size", "Last", "activity"]
    assert all(line == line.rstrip() for line in result.stdout.splitlines())


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "j")}
    for args, code in ((["show", "ghost"], 3), (["append", "../x", "t"], 2), (["nosuchcommand"], 2)):
        result = run_exe(*args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_stdin_from_a_terminal_gives_a_hint(tmp_path: Path) -> None:
    """With stdin on a pseudo-terminal, append prints a hint instead of waiting forever."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dialogctl", "--root", str(tmp_path / "j"), "append", "alice"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2
    assert b"pipe it in" in err


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    exe = [sys.executable, "-m", "dialogctl", "--root", str(root), "export", "--all"]
    proc = subprocess.run(" ".join(f"'{a}'" for a in exe) + " | head -c 10 >/dev/null", shell=True, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr


def test_every_command_through_the_executable(tmp_path: Path) -> None:
    env = {"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "j")}
    steps = [
        (["append", "alice", "one", "--timestamp", "2020-01-01T00:00:00Z"], 0),
        (["archive", "alice", "--id", "first"], 0),
        (["append", "alice", "two"], 0),
        (["restore", "alice", "first", "--format", "json"], 0),
        (["show", "alice", "--format", "jsonl"], 0),
        (["list", "--format", "json"], 0),
        (["list", "alice", "--format", "csv"], 0),
        (["export", "--all", "--format", "json"], 0),
        (["stats", "--format", "json"], 0),
        (["locks", "--format", "json"], 0),
        (["config", "--format", "json"], 0),
        (["cleanup", "--max-age", "365d", "--dry-run", "--format", "json"], 0),
        (["cleanup", "--max-age", "365d", "--yes", "--format", "json"], 0),
    ]
    outputs = {}
    for args, code in steps:
        result = run_exe(*args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr
        outputs[args[0]] = result.stdout
    assert json.loads(outputs["restore"])[0]["archivedFirst"]
    assert json.loads(outputs["cleanup"])["messagesRemoved"] == 1
    assert json.loads(outputs["stats"])["totalMessages"] == 2
