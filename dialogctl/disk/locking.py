"""Per-user locks: one exclusive lock file in each user's ``dialogs/`` folder.

The lock file (``dialogs/.lock``) is never renamed or replaced, so every
process locks the same inode. After taking the lock, the holder checks that
the name still points at the inode it locked (the folder could have been
removed and recreated while it waited) and writes an owner record into the
file: serverId, host, pid, command and since, as one JSON line. A process
that times out names that owner in its error.

Locks are ``flock`` locks: the kernel releases them when the holder dies,
even by SIGKILL. The owner record is cleared on release, so a record left in
an unlocked file is known to be stale. They are taken with ``fcntl.flock``
itself (:func:`try_lock`), the call portalocker makes on POSIX: importing
portalocker costs about 25 ms (it reads its version with
``importlib.metadata``), a fifth of a whole ``dialogctl append``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import time
from typing import Any, NamedTuple

from ..errors import LockBusy, StorageError, storage_error
from .fileops import FOLLOW, Modes
from .layout import LOCK_FILE
from .storage import Folder


def try_lock(fd: int, shared: bool = False) -> bool:
    """Take an flock on ``fd`` without waiting: False when another process holds a conflicting one.

    Any other failure (``ENOLCK`` on a filesystem without locks) is the
    ``OSError`` itself, as portalocker raised it (wrapped) on POSIX.
    """
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


class FolderGone(StorageError):
    """The user's folder was deleted (by a cleanup) while we waited for its lock."""


class Owner(NamedTuple):
    server_id: str
    host: str
    pid: int
    command: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (server {self.server_id}, {self.command}) since {self.since}"

    def to_json(self) -> dict[str, Any]:
        return {"serverId": self.server_id, "host": self.host, "pid": self.pid, "command": self.command, "since": self.since}


def make_owner(server_id: str, command: str) -> Owner:
    from ..times import utc_now_iso

    return Owner(server_id, os.uname().nodename, os.getpid(), command, utc_now_iso())


def parse_owner(data: bytes) -> Owner | None:
    try:
        raw = json.loads(data.decode("utf-8"))
        return Owner(str(raw["serverId"]), str(raw["host"]), int(raw["pid"]), str(raw["command"]), str(raw["since"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):  # not a record of ours
        return None


class UserLock:
    """Exclusive lock on one user's ``dialogs/`` folder (a context manager)."""

    def __init__(self, dialogs: Folder, user: str, owner: Owner, timeout: float, modes: Modes = FOLLOW) -> None:
        self.dialogs = dialogs
        self.user = user
        self.owner = owner
        self.timeout = timeout
        self.modes = modes
        self.fd = -1

    def __enter__(self) -> UserLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.0005
        fd = self._open()
        try:
            while True:
                try:
                    locked = try_lock(fd)
                except OSError as exc:  # not "held by another": no locks on this filesystem (ENOLCK), or the like
                    raise storage_error(exc, "lock", self.dialogs.child_path(LOCK_FILE)) from None
                if not locked:
                    now = time.monotonic()
                    if now >= deadline:
                        raise self._busy(fd) from None
                    time.sleep(min(delay * (0.5 + random.random()), deadline - now))
                    delay = min(delay * 2, 0.02)
                    continue
                if self._still_ours(fd):
                    break
                # The lock file was removed or replaced while we waited: lock the new
                # one, or let the caller start over if the whole folder is gone.
                unlock(fd)
                os.close(fd)
                fd = -1
                if os.fstat(self.dialogs.fd).st_nlink == 0:
                    raise FolderGone(f"{self.dialogs.path} was removed while waiting for its lock")
                fd = self._open()
            record = (json.dumps(self.owner.to_json()) + "\n").encode()
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
            except OSError:
                pass  # the record only names the holder to others; a full disk must not stop an archive or a cleanup
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # a stale record is harmless: it is only believed while the lock is held
        try:
            unlock(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1

    def _open(self) -> int:
        return self.dialogs.open_read_write(LOCK_FILE, self.modes)

    def _still_ours(self, fd: int) -> bool:
        try:
            named = os.stat(LOCK_FILE, dir_fd=self.dialogs.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _busy(self, fd: int) -> LockBusy:
        try:
            owner = parse_owner(os.pread(fd, 4096, 0))
        except OSError:
            owner = None
        holder = owner.describe() if owner else "another process (no owner record)"
        return LockBusy(
            f"user {self.user!r} is locked by {holder}; gave up after {self.timeout:g} s",
            hint="raise lockTimeoutMs or look at 'dialogctl locks'",
        )


class LockState(NamedTuple):
    held: bool
    owner: Owner | None  # the record in the file (stale when not held)
    size: int


def probe(dialogs: Folder) -> LockState | None:
    """Whether a user's lock is held right now, without creating anything."""
    fd = dialogs.open_read(LOCK_FILE)  # a FIFO, device or link there is refused, never waited on
    if fd is None:
        return None
    try:
        held = not try_lock(fd, shared=True)
        if not held:
            unlock(fd)
        data = os.pread(fd, 4096, 0)  # read after the test: a new holder writes its record first thing
        return LockState(held, parse_owner(data) if data else None, len(data))
    finally:
        os.close(fd)
