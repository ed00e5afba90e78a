"""Long output through a pager, on a terminal only.

The pager is ``$DIALOGCTL_PAGER``, else ``$PAGER``, else ``less -FRX``; an
empty value means no pager. It is used only when stdout is a terminal and
the text is taller than the terminal, so pipes, files and short output are
written directly. As git does, ``LESS=FRX`` is set for the pager when
``LESS`` is not set, so a plain ``less`` keeps colours and quits on short text.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

from .state import CliState

DEFAULT_PAGER = "less -FRX"
PAGER_VARIABLES = ("DIALOGCTL_PAGER", "PAGER")  # first set one wins


def pager_command() -> tuple[list[str], bool]:
    """The pager as an argument list (empty: paging is turned off), and whether the operator chose it."""
    import shlex

    for variable in PAGER_VARIABLES:
        value = os.environ.get(variable)
        if value is not None:
            return shlex.split(value), True
    return shlex.split(DEFAULT_PAGER), False


@contextmanager
def paged(state: CliState, enabled: bool = True) -> Iterator[IO[str]]:
    """A text stream for output meant for people; it reaches a pager when it is long and stdout is a terminal."""
    if not enabled or not sys.stdout.isatty():
        yield sys.stdout
        return
    buffer = io.StringIO()
    yield buffer
    show(state, buffer.getvalue())


def show(state: CliState, text: str) -> None:
    import shutil

    command, chosen = pager_command()
    if not command or text.count("\n") < shutil.get_terminal_size().lines:
        sys.stdout.write(text)
        return
    if not _run(state, command, text, chosen):
        sys.stdout.write(text)


def _run(state: CliState, command: list[str], text: str, chosen: bool) -> bool:
    """Feed ``text`` to the pager and wait for it; False if it could not be started (said only of a chosen pager)."""
    import signal
    import subprocess

    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    sys.stdout.flush()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, env=env, encoding="utf-8", errors="replace")
    except OSError as exc:
        if chosen:  # no less on a minimal system is no news
            state.warn(f"cannot run the pager {command[0]!r} ({exc.strerror}); printing directly")
        return False
    # Ctrl-C belongs to the pager while it runs (less uses it to stop a search).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert proc.stdin is not None
        # A reader that quits before the end closes the pipe: that is its right.
        with suppress(BrokenPipeError):
            proc.stdin.write(text)
        with suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return True
