"""``dialogctl browse`` in a real terminal: tmux at 120x35 and 80x24, read back with capture-pane.

Skipped without tmux, unless DIALOGCTL_REQUIRE_SHELLS is set (CI), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dialogctl.journal.core import Journal
from dialogctl.models import Message

from ..terminal import executable

pytest.importorskip("textual")
FIXTURES = Path("/work/shared/fixtures/poto")
if not FIXTURES.exists():
    FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "poto"


def tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("DIALOGCTL_REQUIRE_SHELLS"):
            pytest.fail("tmux is required here (DIALOGCTL_REQUIRE_SHELLS is set)")
        pytest.skip("tmux is not installed")
    return found


def capture(tool: str, socket: str) -> str:
    return subprocess.run([tool, "-L", socket, "capture-pane", "-p", "-e", "-t", "browse"], capture_output=True, text=True).stdout


def wait_for(tool: str, socket: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(tool, socket)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared on the screen:\n{screen}")


@pytest.mark.parametrize("size", [(120, 35), (80, 24)])
def test_browse_in_tmux(tmp_path: Path, size: tuple[int, int]) -> None:
    tool = tmux()
    source = FIXTURES / "v3-sessions"
    if not source.exists():
        pytest.skip("fixture tree v3-sessions not found")
    root = tmp_path / "journal"
    shutil.copytree(source, root)
    Journal.open(root).append("zz", [Message("user", "hi \x1b]0;pwned\x07 \x1b[2J needle-in-zz", "2025-10-04T09:00:00Z")])
    socket = f"dialogctl-test-{os.getpid()}-{size[0]}"
    done = tmp_path / "rc"
    command = " ".join([*executable(), "--root", str(root), "browse"])
    env = {"TERM": "xterm-256color", "DIALOGCTL_CONFIG": "", "NO_COLOR": ""}
    shell = f"env TERM=xterm-256color {command}; echo $? > {done}"
    cols, rows = size
    subprocess.run(
        [tool, "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "browse", "-x", str(cols), "-y", str(rows), shell],
        check=True,
        env={**os.environ, **env},
    )
    try:
        screen = wait_for(tool, socket, "alice0")
        assert "alice7" in screen or "zz" in screen or rows < 30  # users listed
        subprocess.run([tool, "-L", socket, "send-keys", "-t", "browse", "Enter"], check=True)
        wait_for(tool, socket, "[11] assistant")  # alice0's archived conversation opened
        subprocess.run([tool, "-L", socket, "send-keys", "-t", "browse", "/"], check=True)
        wait_for(tool, socket, "search every user")  # the search box is there (and focused) before typing into it
        subprocess.run([tool, "-L", socket, "send-keys", "-t", "browse", "-l", "needle-in-zz"], check=True)
        subprocess.run([tool, "-L", socket, "send-keys", "-t", "browse", "Enter"], check=True)
        wait_for(tool, socket, "hit 1/1")
        screen = wait_for(tool, socket, "\\e]0;pwned\\a")  # the message is shown (once read), its escapes as text
        assert "\x1b]0;pwned" not in screen and "\x1b[2J" not in screen  # never sent to the terminal
        subprocess.run([tool, "-L", socket, "send-keys", "-t", "browse", "q"], check=True)
        deadline = time.monotonic() + 15
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.read_text().strip() == "0"
    finally:
        subprocess.run([tool, "-L", socket, "kill-server"], capture_output=True)
