"""The dialogctl command line: a thin Typer layer over :mod:`dialogctl.journal.core`."""

from __future__ import annotations

import io
import os
import sys
from typing import Any


def main() -> None:
    """Console-script entry point."""
    import gc

    guard_standard_streams()
    # A command builds tens of thousands of small objects (a whole-journal scan: one
    # per file and message) and keeps most of them to the end; the collector's default
    # pace re-traverses all of them every few thousand allocations, about a fifth of a
    # stats run on a large journal. Collect far less often: cycles are still freed.
    gc.set_threshold(50_000, 20, 100)
    from .app import app

    app(prog_name="dialogctl")


def guard_standard_streams() -> None:
    """Closed or broken stderr never changes stdout or the exit code.

    A descriptor 0, 1 or 2 the caller closed (``2>&-``) is filled with
    ``/dev/null`` first: otherwise the next file dialogctl opens (a
    conversation, a lock) would get that number, and Python, finding stderr
    closed at start-up, would send every note to stdout. stderr itself is
    wrapped so that a write that fails (a reader that went away, ``/dev/full``)
    silences it for the rest of the run instead of failing the command. A
    closed stdout is a reader that went away before it started: data written
    there ends the command as a closed pipe does (exit 141).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    elif isinstance(getattr(sys.stdout, "buffer", None), io.FileIO):
        sys.stdout = _buffered(sys.stdout)
    if sys.stderr is None:  # closed at start-up: Python has no stream for it
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115 - lives as long as the process
    if not isinstance(sys.stderr, QuietStream):
        sys.stderr = QuietStream(sys.stderr)


def _buffered(stream: Any) -> Any:
    """stdout with a buffer under its text layer again, flushed at every line break.

    ``PYTHONUNBUFFERED=1`` (or ``python -u``, common in containers) gives stdout
    no buffer: its text layer writes straight to the descriptor and ignores
    what a short write left unwritten. A reader that goes away mid-write (``|
    head``) then cost the rest of the text silently and the command exited 0,
    not 141. A buffered writer finishes every short write or raises. Flushing
    at each line break keeps what the variable asked for: a line printed is in
    the pipe at once.
    """
    return open(stream.fileno(), "w", encoding=stream.encoding, errors=stream.errors, closefd=False, buffering=1)  # noqa: SIM115 - lives as long as the process


class QuietStream:
    """A text stream whose writes never fail: after the first failure it writes to ``/dev/null``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):
            self._lost()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._lost()

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError):
            return False

    def _lost(self) -> None:
        broken = self._stream
        # Later writes, ours and those of any child process, go nowhere instead of failing.
        _to_devnull(2, os.O_WRONLY)
        self._stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        try:
            broken.close()  # its unwritten buffer is dropped with it (fd 2 is now /dev/null)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class ClosedStdout:
    """stdout when the caller closed it: writing data is writing to a closed pipe."""

    encoding = "utf-8"
    errors = "strict"

    def write(self, text: str) -> int:
        if not text:
            return 0
        raise BrokenPipeError(32, "stdout is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1


def _to_devnull(fd: int, flags: int) -> None:
    try:
        null = os.open(os.devnull, flags | os.O_CLOEXEC)
    except OSError:
        return
    if null != fd:
        os.dup2(null, fd)  # dup2 clears close-on-exec on the copy: children inherit it
        os.close(null)
    else:
        os.set_inheritable(fd, True)
