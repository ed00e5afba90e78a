"""Rewritten files still watched for a server's late append (see :class:`LiveRewrites`)."""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

from ..errors import ChangedUnderneath, StorageError, storage_error
from .fileops import FOLLOW, Modes, write_all
from .storage import Folder


class _Watched(NamedTuple):
    path: str
    old: int  # read descriptor on the replaced file
    new: int  # O_APPEND descriptor on the file that replaced it
    carried: list[int]  # bytes of the replaced file accounted for: [size]
    at: float  # when the rename happened (monotonic)


class LiveRewrites:
    """Rewrites of conversation files that servers may still be appending to.

    A rewrite (cleanup's trim, repair) replaces a file by rename. The servers
    append without a lock: one that opened the file just before the rename
    writes its item into the replaced file, which nothing reads any more. So
    the replaced file stays open here after each rewrite, and whatever lands
    in it is carried over into the new file, from a fresh line as every write
    of ours: once right after the rename, and again by :meth:`settle` once
    :attr:`GRACE` has passed, by when an append that was under way at the
    rename has finished. Commands that rewrite call :meth:`settle` before they
    end (and it runs by itself when many rewrites are pending). An append held
    up longer than that between its open and its write (a server process
    stopped in between) can still land in the replaced file: only a lock taken
    by the servers would close that window.
    """

    GRACE = 0.1  # seconds
    LIMIT = 128  # rewrites watched at once (two descriptors each)

    def __init__(self) -> None:
        self.pending: list[_Watched] = []

    def replace(self, folder: Folder, name: str, data: bytes, seen: Any, modes: Modes = FOLLOW) -> None:
        """Replace ``name`` (which must still be the file ``seen``: dev, ino, size as read) with ``data``, and watch the old file."""
        where = folder.child_path(name)
        old = folder.open_read(name)
        if old is None:
            raise ChangedUnderneath(f"{where} was moved away while it was being rewritten (a server archived it?); left as it is")
        try:
            st = os.fstat(old)
            if (st.st_dev, st.st_ino) != (seen.dev, seen.ino) or st.st_size < seen.size:
                raise ChangedUnderneath(f"{where} was replaced or cut short while it was being rewritten (a server archived it?); left as it is")
            new = folder.write_atomic(name, data, modes, keep_open=True)
        except BaseException:
            os.close(old)
            raise
        assert new is not None
        watched = _Watched(where, old, new, [seen.size], time.monotonic())
        try:
            _carry_over(watched)
        except BaseException:
            _close_watched(watched)
            raise
        self.pending.append(watched)
        if len(self.pending) > self.LIMIT:
            self.settle(len(self.pending) // 2)

    def settle(self, count: int | None = None) -> None:
        """Carry over what reached the oldest ``count`` (all) replaced files after the grace period; stop watching them."""
        batch = self.pending[: len(self.pending) if count is None else count]
        if not batch:
            return
        del self.pending[: len(batch)]
        wait = self.GRACE - (time.monotonic() - batch[-1].at)
        if wait > 0:
            time.sleep(wait)
        failure: StorageError | None = None
        for watched in batch:
            try:
                _carry_over(watched)
            except StorageError as exc:
                failure = failure or exc
            finally:
                _close_watched(watched)
        if failure is not None:
            raise failure


def _carry_over(watched: _Watched) -> None:
    """Append to the new file what a server appended to the replaced one since we last looked."""
    try:
        size = os.fstat(watched.old).st_size
        done = watched.carried[0]
        if size <= done:
            return
        extra = os.pread(watched.old, size - done, done)
        write_all(watched.new, b"\n" + extra)
        os.fsync(watched.new)
        watched.carried[0] = done + len(extra)
    except OSError as exc:
        raise storage_error(exc, "carry a server's late append over into", watched.path) from None


def _close_watched(watched: _Watched) -> None:
    for fd in (watched.old, watched.new):
        try:
            os.close(fd)
        except OSError:
            pass
