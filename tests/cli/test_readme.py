"""The README's first lines work for a newcomer: on an empty home, and run again.

The install step (``python3 -m venv ... && pip install .``) is what the test
environment already did; the rest of the first command (the demo, ``list`` and
``stats``) runs here exactly as written, with the installed ``dialogctl``, in
bash with an empty HOME, twice. The shell-completion lines run the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install . && "


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)


def _bash(line: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("dialogctl")
    bindir = os.path.dirname(exe) if exe else os.path.dirname(sys.executable)
    env = {"HOME": str(home), "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "COLUMNS": "80", "TMPDIR": str(home.parent)}
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_the_first_command_shows_the_demo_journal(tmp_path: Path) -> None:
    first = _shell_blocks()[0].strip()
    assert first.startswith(INSTALL) and "\n" not in first
    rest = first[len(INSTALL) :]
    assert "dialogctl demo" in rest and " list" in rest and " stats" in rest
    if shutil.which("dialogctl") is None:
        pytest.skip("dialogctl is not installed as an executable")
    home = tmp_path / "empty-home"
    home.mkdir()
    for _ in range(2):  # a second run works too: each takes a new folder
        run = _bash(rest, home, tmp_path)
        assert run.returncode == 0, run.stderr
        assert re.search(r"^alice +1 +2 +9 ", run.stdout, re.M), run.stdout  # list
        assert re.search(r"^Users +5$", run.stdout, re.M)  # stats
        assert "warning" not in run.stderr
    assert os.listdir(home) == []  # nothing written to the home


def test_the_completion_lines_work_on_a_fresh_home(tmp_path: Path) -> None:
    block = next(b for b in _shell_blocks() if "completions/dialogctl.bash" in b)
    home = tmp_path / "fresh-home"
    home.mkdir()
    for line in block.strip().splitlines():
        command = line.split("   #")[0].strip()
        run = _bash(command, home, REPO)
        assert run.returncode == 0, (command, run.stderr)
    assert (home / ".local/share/bash-completion/completions/dialogctl").read_bytes() == (REPO / "completions/dialogctl.bash").read_bytes()
    assert (home / ".zfunc/_dialogctl").is_file()
    assert (home / ".config/fish/completions/dialogctl.fish").is_file()
