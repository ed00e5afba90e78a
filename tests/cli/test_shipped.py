"""The files shipped beside the package: generated from the Typer app, in sync, and working.

docs/cli.md, man/dialogctl.1 and completions/ must equal what
``python -m dialogctl.cli.docs`` generates now; the man page must render
cleanly with ``man -l``; the completion scripts must complete commands,
options, user ids and archive ids in real shells (bash with bash-completion
loaded, zsh with compinit, fish).

The shells and man are Debian packages; .ci/run installs them and sets
DIALOGCTL_REQUIRE_SHELLS=1, so CI fails instead of skipping without them.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import REPO, copy_tree, run_exe
from ..terminal import _take_terminal

BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def _need(tool: str, present: bool) -> None:
    if not present:
        if os.environ.get("DIALOGCTL_REQUIRE_SHELLS"):
            pytest.fail(f"{tool} is required here (DIALOGCTL_REQUIRE_SHELLS is set)")
        pytest.skip(f"{tool} is not installed")


# --- in sync with the app ----------------------------------------------------------------------


def test_checked_in_files_are_what_the_app_generates() -> None:
    from dialogctl.cli.docs import generated

    files = generated()
    assert set(files) == {"docs/cli.md", "man/dialogctl.1", "completions/dialogctl.bash", "completions/dialogctl.zsh", "completions/dialogctl.fish"}
    for rel, text in files.items():
        assert (REPO / rel).read_text(encoding="utf-8") == text, f"{rel} is stale: run python -m dialogctl.cli.docs"


def test_the_generator_reports_drift(tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    check = [sys.executable, "-m", "dialogctl.cli.docs", "--check", str(tmp_path)]
    missing = subprocess.run(check, capture_output=True, text=True)
    assert missing.returncode == 1 and "stale: man/dialogctl.1" in missing.stderr
    assert subprocess.run([sys.executable, "-m", "dialogctl.cli.docs", str(tmp_path)], capture_output=True).returncode == 0
    assert subprocess.run(check, capture_output=True).returncode == 0
    (tmp_path / "docs" / "cli.md").write_text("# hand-edited\n")
    edited = subprocess.run(check, capture_output=True, text=True)
    assert edited.returncode == 1 and edited.stderr == "stale: docs/cli.md\n"


def test_reference_has_every_command_with_an_example() -> None:
    from dialogctl.cli.app import COMMANDS

    reference = (REPO / "docs" / "cli.md").read_text()
    for name in COMMANDS:
        section = reference.split(f"## dialogctl {name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"Usage: dialogctl {name} " in section
        assert re.search(rf"Examples:\n\n +dialogctl {name}\b", section), name
        assert run_exe(name, "--help", env={"COLUMNS": "100"}).stdout in section


# --- the man page ----------------------------------------------------------------------------


def test_man_page_renders_cleanly_and_covers_everything() -> None:
    from dialogctl.cli.app import COMMANDS, PROCESS_EXIT_CODES
    from dialogctl.cli.docs import _commands, _root_context
    from dialogctl.config import ENV_PREFIX, SPECS
    from dialogctl.errors import EXIT_CODES

    _need("man", shutil.which("man") is not None and shutil.which("groff") is not None)
    page = REPO / "man" / "dialogctl.1"
    lint = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
    assert lint.returncode == 0 and lint.stderr == ""
    shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""})
    assert shown.returncode == 0 and shown.stderr == ""
    text = re.sub(r".\x08", "", shown.stdout)  # overstrike bold and underline
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert re.search(rf"^{heading}$", text, re.M), heading
    for name in COMMANDS:
        assert re.search(rf"^   dialogctl {name} \[OPTIONS\]", text, re.M), name
    root = _root_context()
    options = {opt for param in root.command.params for opt in param.opts}
    for _, command, _ctx in _commands(root):
        options |= {opt for param in command.params for opt in param.opts if opt.startswith("-") and param.name != "help"}
    for option in options:
        assert re.search(rf"(^|[ ,]){re.escape(option)}\b", text, re.M), option
    for code in {**EXIT_CODES, **PROCESS_EXIT_CODES}:
        assert re.search(rf"^       {code}\b", text, re.M), code
    for spec in SPECS:
        assert ENV_PREFIX + spec.env in text


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    from dialogctl.cli.docs import ENVIRONMENT
    from dialogctl.cli.pager import PAGER_VARIABLES
    from dialogctl.cli.state import COMPLETE_VAR

    source = "\n".join(p.read_text() for p in (REPO / "dialogctl").rglob("*.py"))
    read = set(re.findall(r"environ\.get\(\"([A-Z_]+)\"", source)) | set(re.findall(r"env\.setdefault\(\"([A-Z_]+)\"", source))
    read |= {*PAGER_VARIABLES, COMPLETE_VAR}
    assert {"NO_COLOR", "TERM", "DIALOGCTL_DEBUG", "LESS"} <= read
    documented = " ".join(ENVIRONMENT)
    assert [name for name in sorted(read) if name not in documented] == []


# --- completions in real shells ----------------------------------------------------------------


def _shell_env(tmp_path: Path) -> dict[str, str]:
    root = copy_tree("v1-sharded", tmp_path)
    colons = tmp_path / "flat"
    env = {"DIALOGUE_JOURNAL_ROOT": str(colons), "DIALOGUE_JOURNAL_LAYOUT": "flat"}
    for user in ("team:alice", "team:bob"):
        assert run_exe("append", user, "hi", env=env).returncode == 0
    # The dialogctl installed next to this Python (the checkout under test), even when the venv is not activated.
    exe = shutil.which("dialogctl", path=str(Path(sys.executable).parent)) or shutil.which("dialogctl")
    path = os.environ["PATH"] if exe is None else f"{Path(exe).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "DIALOGUE_JOURNAL_ROOT": str(root), "FLAT_ROOT": str(colons), "HOME": str(tmp_path), "TERM": "dumb", "LC_ALL": "C.UTF-8"}


def _interactive(shell: list[str], setup: str, line: str, env: dict[str, str]) -> tuple[str, str]:
    """Type ``line`` and TAB into an interactive shell on a pty; return (the line after completion, what was listed)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    proc = subprocess.Popen(shell, stdin=slave, stdout=slave, stderr=slave, preexec_fn=_take_terminal, env={**env, "PS1": "__P__ "})
    os.close(slave)
    os.write(master, f"{setup}; echo __READY__\r".encode())
    # Readline runs the completion before it reads the next keys: go to the start of the line
    # and make it an echo between markers, to see what the line became.
    keys = f"{line}\t\x01echo __LINE__\x05__END__\rexit\r".encode()
    out = b""
    deadline = time.monotonic() + 60
    sent = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
                if not sent and b"\n__READY__" in out.replace(b"\r", b""):
                    os.write(master, keys)
                    sent = True
            elif proc.poll() is not None:
                break
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|.\x08", "", out.decode("utf-8", "replace")).replace("\r", "")
    final = re.findall(r"^__LINE__(.*)__END__$", text, re.M)
    assert final, text
    listed = text.split(f"__P__ {line}\n", 1)[1].split("__P__", 1)[0] if f"__P__ {line}\n" in text else ""
    return final[-1], listed


def _bash(line: str, env: dict[str, str]) -> tuple[str, str]:
    inputrc = Path(env["HOME"]) / "inputrc"
    inputrc.write_text(
        "set show-all-if-ambiguous on\nset completion-display-width 0\nset completion-query-items 0\n"
        "set page-completions off\nset bell-style none\nset enable-bracketed-paste off\n"
    )
    setup = f"source {BASH_COMPLETION}; source {REPO / 'completions' / 'dialogctl.bash'}"
    return _interactive(["bash", "--norc", "--noprofile", "-i"], setup, line, {**env, "INPUTRC": str(inputrc)})


def test_bash_completes_commands_options_users_and_archives(tmp_path: Path) -> None:
    _need("bash-completion", shutil.which("bash") is not None and BASH_COMPLETION.is_file())
    env = _shell_env(tmp_path)
    assert _bash("dialogctl sh", env)[0] == "dialogctl show "
    assert _bash("dialogctl show --ta", env)[0] == "dialogctl show --tail "
    line, listed = _bash("dialogctl show user-101", env)
    assert line == "dialogctl show user-101" and listed.split() == ["user-1010", "user-1011"]
    assert _bash("dialogctl list user-1011", env)[0] == "dialogctl list user-1011 "
    assert _bash("dialogctl restore user-1004 arch", env)[0] == "dialogctl restore user-1004 archive-2024-01-14-10-00-00 "
    assert _bash("dialogctl show user-1000 --archive=a", env)[0] == "dialogctl show user-1000 --archive=archive-2024-01-10-10-00-00 "
    line, listed = _bash("dialogctl show --format=js", env)
    assert line == "dialogctl show --format=json" and listed.split() == ["json", "jsonl"]
    assert _bash("dialogctl --color n", env)[0] == "dialogctl --color never "
    flat = env["FLAT_ROOT"]
    assert _bash(f"dialogctl --root {flat} show team:a", env)[0] == f"dialogctl --root {flat} show team:alice "
    # a quoted root (the echo that reads the line back removes the quotes)
    assert _bash(f"dialogctl --root '{flat}' show team:b", env)[0] == f"dialogctl --root {flat} show team:bob "
    (tmp_path / "somewhere").mkdir()
    assert _bash(f"dialogctl --root {tmp_path}/somew", env)[0] == f"dialogctl --root {tmp_path}/somewhere/"


def test_zsh_completes_commands_users_and_archives(tmp_path: Path) -> None:
    _need("zsh", shutil.which("zsh") is not None)
    env = _shell_env(tmp_path)
    setup = f"bindkey -e; unsetopt beep; autoload -Uz compinit; compinit -u -D; source {REPO / 'completions' / 'dialogctl.zsh'}"

    def zsh(line: str) -> tuple[str, str]:
        return _interactive(["zsh", "-f", "-i"], setup, line, env)

    assert zsh("dialogctl sh")[0].rstrip() == "dialogctl show"
    assert zsh("dialogctl restore user-1004 arch")[0].rstrip() == "dialogctl restore user-1004 archive-2024-01-14-10-00-00"
    line, listed = zsh("dialogctl show user-101")
    assert line == "dialogctl show user-101" and {"user-1010", "user-1011"} <= set(listed.split())
    assert zsh("dialogctl show --format=jsonl")[0].rstrip() == "dialogctl show --format=jsonl"


def test_fish_completes_commands_users_and_archives(tmp_path: Path) -> None:
    _need("fish", shutil.which("fish") is not None)
    env = _shell_env(tmp_path)

    def fish(line: str) -> list[str]:
        script = f"source {REPO / 'completions' / 'dialogctl.fish'}; complete -C {line!r}"
        done = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert fish("dialogctl sh") == ["show"]
    assert fish("dialogctl show user-101") == ["user-1010", "user-1011"]
    assert fish("dialogctl restore user-1004 ") == ["archive-2024-01-14-10-00-00"]
    assert fish("dialogctl show --format=js") == ["--format=json", "--format=jsonl"]
    assert "--tail" in fish("dialogctl show --t")
