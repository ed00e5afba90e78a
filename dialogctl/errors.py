"""The error hierarchy of dialogctl.

Every failure the core can report is a :class:`DialogError` subclass carrying
the process exit code the CLI turns it into, so the CLI has exactly one place
that maps failures to a line on stderr and an exit status. Messages never
contain message text from the journal (it may be private); they name users,
files, lines and settings instead.

Exit codes (stable, documented in the README and the man page):

====  ===========================================================
0     success, including an empty result
1     a negative answer (nothing matched, verify found problems)
2     usage error or invalid input
3     user, conversation or archive not found
4     lock busy (another process holds the user's lock)
5     damaged data (unreadable records; intact ones were still used)
6     I/O or permission error, or out of resources (memory, a worker
      process killed)
7     partly done: of many users' batches, some were committed and
      some were not (the report names each, and its input lines)
8     held back: a cleanup would remove more of the journal than
      cleanup.maxRemoveShare allows, and nothing said it may (nothing
      was removed)
70    internal error (a bug)
====  ===========================================================

A command that ran to its end ends with the first that applies: 6 when a
file or folder could not be read (whole-journal reads go on past it), 5
when records could not be read, then its own answer (1 or 0). A command
stopped by an error exits with that error's code.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_LOCK_BUSY = 4
EXIT_DAMAGED = 5
EXIT_IO = 6
EXIT_PARTLY_DONE = 7
EXIT_HELD = 8
EXIT_INTERNAL = 70

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (also an empty result)",
    EXIT_NEGATIVE: "a negative answer: nothing matched, or a check found problems",
    EXIT_USAGE: "usage error or invalid input",
    EXIT_NOT_FOUND: "user, conversation or archive not found",
    EXIT_LOCK_BUSY: "lock busy: another process holds the user's lock",
    EXIT_DAMAGED: "damaged data: some records could not be read (intact ones were)",
    EXIT_IO: "I/O, permission or resource error (disk full, read-only, permission denied, out of memory, a worker process killed)",
    EXIT_PARTLY_DONE: "partly done: some users' batches were committed and some were not (append --jsonl reports each, with its input lines)",
    EXIT_HELD: "held back: a cleanup would remove more than cleanup.maxRemoveShare of the archives or users; nothing was removed (--max-remove N, --force)",
}


class DialogError(Exception):
    """Base class: a failure with a one-line explanation and an exit code."""

    exit_code: int = EXIT_NEGATIVE
    user: str | None = None  # the user the failure is about, where a caller handling many users needs to know

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Whole across processes (a worker's error reaches the parent with its hint and reason).
        return (self.__class__, (self.message,), dict(vars(self)))


class NegativeAnswer(DialogError):
    """The command ran, and the answer is no (grep-style exit 1)."""

    exit_code = EXIT_NEGATIVE


class InvalidInput(DialogError):
    """Bad arguments, bad settings, or input that cannot be accepted."""

    exit_code = EXIT_USAGE


class InvalidUserId(InvalidInput):
    """A user, conversation or archive id that could escape the journal root."""


class LayoutError(InvalidInput):
    """The journal's folder layout is ambiguous or conflicts with the settings."""


class NotFound(DialogError):
    """A user, conversation or archive that does not exist."""

    exit_code = EXIT_NOT_FOUND


class CleanupHeld(DialogError):
    """A cleanup that would remove more of the journal than the guard allows, refused before any change."""

    exit_code = EXIT_HELD


class LockBusy(DialogError):
    """The user's lock is held by someone else past the lock timeout."""

    exit_code = EXIT_LOCK_BUSY


class WorkerCrashed(DialogError):
    """A worker process ended in a way only a bug explains (a crash, an exception nobody expected)."""

    exit_code = EXIT_INTERNAL


class StorageError(DialogError):
    """The operating system refused an I/O operation (disk full, permissions...)."""

    exit_code = EXIT_IO
    reason: str | None = None  # the system's words for it ("Permission denied"), when it came from the system


class WorkerDied(StorageError):
    """A worker process was killed (SIGKILL, the out-of-memory killer) or ran out of memory: the command did not finish."""


class FileTooLarge(StorageError):
    """A file larger than dialogctl reads of its kind (a limit that keeps memory bounded); it was not read."""


class UnsafePath(StorageError):
    """A symlink or foreign object where the journal expects its own folder or file."""


class PartlyDone(DialogError):
    """Of a multi-user write, some users' batches were committed and some were not; the command reported each."""

    exit_code = EXIT_PARTLY_DONE


class PartlyAppended(StorageError):
    """An append split at the archive threshold failed after its first ``appended`` messages were written (and stay)."""

    def __init__(self, message: str, *, appended: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.appended = appended


class ChangedUnderneath(StorageError):
    """A file was replaced or cut short by someone else (a server's archive) between our read and our rewrite."""


def storage_error(exc: OSError, action: str, where: str) -> StorageError:
    """Wrap an OSError with what dialogctl was doing and where, without message text."""
    reason = exc.strerror or exc.__class__.__name__
    error = StorageError(f"cannot {action} {where}: {reason}")
    error.reason = reason
    return error
