"""Running the real executable on a pseudo-terminal, as an operator at a terminal would.

:func:`run_tty` gives the child a pty of a chosen size for stdout (and stdin,
and stderr unless ``stderr_tty=False``), reads everything it writes, and
returns the exit code with the bytes seen on the terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from typing import NamedTuple


class TtyResult(NamedTuple):
    returncode: int
    output: str  # what the terminal received (stdout, and stderr when it shared the pty)
    stderr: str  # stderr, when it was a pipe


def executable() -> list[str]:
    exe = shutil.which("dialogctl")
    return [exe] if exe else [sys.executable, "-m", "dialogctl"]


def _take_terminal() -> None:
    """In the child: a session of its own with the pty as controlling terminal, as a shell gives it."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_tty(
    *args: str,
    env: dict[str, str] | None = None,
    cols: int = 100,
    rows: int = 30,
    stderr_tty: bool = True,
    keys: bytes | None = None,
    timeout: float = 60,
) -> TtyResult:
    """Run ``dialogctl ARGS`` with its stdin and stdout on a ``cols`` x ``rows`` pty; ``keys`` are typed into it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    full_env.setdefault("TERM", "xterm-256color")
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        executable() + list(args),
        stdin=slave,
        stdout=slave,
        stderr=slave if stderr_tty else subprocess.PIPE,
        env=full_env,
        preexec_fn=_take_terminal,
    )
    os.close(slave)
    if keys:
        os.write(master, keys)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"dialogctl {' '.join(args)} did not finish in {timeout} s")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the pty
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.stderr:
            proc.stderr.close()
    return TtyResult(proc.returncode, b"".join(chunks).decode("utf-8", "replace"), err)
