"""Folder handles: every path below the root reached one name at a time, ``O_NOFOLLOW``, through ``dir_fd`` calls."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Self

from ..errors import NotFound, UnsafePath, storage_error
from .fileops import DIR_FLAGS, FOLLOW, READ_FLAGS, Modes, adopt, close_all, not_regular, read_all, rmdir_quietly

if TYPE_CHECKING:
    from .syncgroup import SyncGroup


class FolderHandle:
    """An open handle on a folder inside the journal, with its display path: finding, stating and reading what it holds.

    :class:`dialogctl.disk.storage.Folder` adds every change (appends, rewrites, renames, removals).
    """

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child_path(self, name: str) -> str:
        path = self.path
        # os.path.join for one name in this folder (never absolute), without its call layers: a walk asks once per folder.
        return f"{path}/{name}" if path and path[-1] != "/" else path + name

    # --- folders ---------------------------------------------------------

    def open_folder(
        self,
        parts: tuple[str, ...] | list[str],
        create: bool = False,
        modes: Modes = FOLLOW,
        made_paths: list[str] | None = None,
        later: SyncGroup | None = None,
    ) -> Self:
        """Open ``parts`` below this folder, one name at a time, never through a symlink.

        With ``create``, missing folders are made following ``modes`` (by
        default: owner, group and mode of the folder each is made in); if that
        fails part-way, the folders this call made are removed again.
        ``made_paths`` gets the path (below this folder) of each folder made,
        so a caller whose later step fails can remove them too
        (:meth:`remove_made`). With ``later`` (a group commit) the fsync of
        the folder each new one is made in is left to the group's flush.
        """
        fds = [os.dup(self.fd)]  # fds[i] is the parent of parts[i]
        made: list[int] = []
        path = self.path
        try:
            for index, name in enumerate(parts):
                path = os.path.join(path, name)
                try:
                    fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
                    continue
                except FileNotFoundError:
                    if not create:
                        raise NotFound(f"{path} does not exist") from None
                parent = os.fstat(fds[-1])
                mode = modes.for_dir(parent)
                try:
                    os.mkdir(name, mode & 0o777, dir_fd=fds[-1])
                    made.append(index)
                except FileExistsError:
                    pass
                fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
                if made and made[-1] == index:
                    adopt(fds[-1], parent)
                    os.fchmod(fds[-1], mode)
                    if later is None:
                        os.fsync(fds[-2])
                    else:
                        later.defer(os.dup(fds[-2]))
        except OSError as exc:
            for index in reversed(made):
                rmdir_quietly(parts[index], fds[index])
            close_all(fds)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{path} is a symlink or not a folder; dialogctl does not follow links inside the journal") from None
            raise storage_error(exc, "open folder", path) from None
        except BaseException:
            close_all(fds)
            raise
        fd = fds.pop()
        close_all(fds)
        if made_paths is not None:
            made_paths.extend("/".join(parts[: index + 1]) for index in made)
        return type(self)(fd, path)

    def open_child(self, name: str) -> Self:
        """Open one sub-folder (never through a symlink): one system call, for tree walks."""
        path = self.child_path(name)
        try:
            return type(self)(os.open(name, DIR_FLAGS, dir_fd=self.fd), path)
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{path} is a symlink or not a folder; dialogctl does not follow links inside the journal") from None
            raise storage_error(exc, "open folder", path) from None

    def has_folder(self, name: str) -> bool:
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=self.fd)
        except OSError:
            return False
        os.close(fd)
        return True

    def names(self) -> list[str]:
        try:
            return os.listdir(self.fd)
        except OSError as exc:
            raise storage_error(exc, "list", self.path) from None

    def entries(self) -> list[os.DirEntry[str]]:
        """Entries of this folder, read in one go; ``is_dir``/``is_file`` do not follow symlinks when asked not to."""
        try:
            with os.scandir(self.fd) as it:
                return list(it)
        except OSError as exc:
            raise storage_error(exc, "list", self.path) from None

    def fsync(self) -> None:
        os.fsync(self.fd)

    # --- files -------------------------------------------------------------

    def stat(self, name: str) -> os.stat_result | None:
        """lstat of a name in this folder; None when it does not exist."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, "inspect", self.child_path(name)) from None

    def open_read(self, name: str) -> int | None:
        """A read descriptor for a regular file; None when it does not exist.

        Anything else under the name (a symlink, a FIFO, a device, a socket, a
        folder) is refused without being opened (:class:`UnsafePath`).
        """
        return self._open_file(name, READ_FLAGS, "open")

    def _open_file(self, name: str, flags: int, action: str, mode: int = 0o600) -> int | None:
        """Open a regular file in this folder with ``flags`` (never through a symlink, never blocking); None when absent."""
        where = self.child_path(name)
        if not flags & os.O_CREAT:
            # Look before opening: a device's open can have effects of its own (a tape rewinds).
            st = self.stat(name)
            if st is None:
                return None
            if not stat.S_ISREG(st.st_mode):
                raise not_regular(where, st.st_mode)
        try:
            fd = os.open(name, flags, mode, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # swapped for a link, a FIFO without a reader, a socket, a folder
                st = self.stat(name)
                if st is not None and not stat.S_ISREG(st.st_mode):
                    raise not_regular(where, st.st_mode) from None
            raise storage_error(exc, action, where) from None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise storage_error(exc, action, where) from None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise not_regular(where, st.st_mode)
        return fd

    def read_bytes(self, name: str, limit: int | None = None) -> bytes | None:
        read = self.read_with_stat(name, limit)
        return None if read is None else read[0]

    def read_with_stat(self, name: str, limit: int | None = None) -> tuple[bytes, os.stat_result] | None:
        """A regular file's bytes and the ``fstat`` of the same open file (so they agree); None when absent.

        With ``limit``, a file larger than that many bytes is refused before
        it is read (:class:`~dialogctl.errors.FileTooLarge`), and no more than
        that is ever read from it (a file that grows meanwhile too).
        """
        fd = self.open_read(name)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            return read_all(fd, limit, self.child_path(name)), st
        except OSError as exc:
            raise storage_error(exc, "read", self.child_path(name)) from None
        finally:
            os.close(fd)
