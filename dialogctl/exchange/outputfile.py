"""``-o FILE``: an export written to a temp file beside FILE, then moved into place."""

from __future__ import annotations

import errno
import os
import stat
from typing import IO

from ..disk.fileops import TEMP_MARK
from ..errors import InvalidInput, UnsafePath, storage_error


class OutputFile:
    """``-o FILE``: written to a temp file beside it, then moved into place.

    The target may not be a symlink (never followed, not even with ``force``)
    or anything but a regular file; an existing file is replaced only with
    ``force``, and without it the move is a hard link, which fails rather than
    overwrite a file that appeared meanwhile. The temp file is created with
    ``O_EXCL | O_NOFOLLOW`` and checked to still be the file we created before
    it is moved; on any failure it is removed and the target is untouched. The
    file gets ``mode`` exactly (exports hold the journal's private text).
    """

    def __init__(self, path: str, force: bool = False, mode: int = 0o600) -> None:
        self.path = path
        self.force = force
        self.mode = mode
        self.folder, self.name = os.path.split(path)
        if not self.name or self.name in (".", ".."):
            raise InvalidInput(f"-o {path}: not a file name")
        self.temp = f".{self.name[:200]}{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
        self.dir_fd = -1
        self.fd = -1
        self._text: IO[str] | None = None

    @property
    def temp_path(self) -> str:
        return os.path.join(self.folder, self.temp)

    def __enter__(self) -> OutputFile:
        try:
            self.dir_fd = os.open(self.folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise storage_error(exc, "open the folder of", self.path) from None
        try:
            self._check_target()
            self.fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, self.mode, dir_fd=self.dir_fd)
            os.fchmod(self.fd, self.mode)
        except OSError as exc:
            self._close()
            raise storage_error(exc, "create a temporary file for", self.path) from None
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                raise storage_error(exc, "write", self.path) from None
            return
        try:
            self._commit()
        except BaseException:
            self._discard()
            raise
        self._close()

    def text(self) -> IO[str]:
        """A UTF-8 text stream into the temp file."""
        if self._text is None:
            self._text = open(self.fd, "w", encoding="utf-8", newline="", closefd=False)
        return self._text

    def check_ours(self, written: bool = False) -> None:
        """Refuse if the temp file's name no longer leads to the file we created (a swapped-in symlink),
        or, with ``written``, if the file is still empty (whatever wrote by name wrote elsewhere)."""
        try:
            named = os.stat(self.temp, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        held = os.fstat(self.fd)
        if named is None or not stat.S_ISREG(named.st_mode) or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino) or (written and not held.st_size):
            raise UnsafePath(f"the temporary file for {self.path} was replaced while it was written; nothing was saved")

    def _check_target(self) -> None:
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{self.path} is a symlink; dialogctl does not write through links (remove it or choose another name)")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{self.path} exists and is not a regular file")
        if not self.force:
            raise InvalidInput(f"{self.path} exists; pass --force to replace it")

    def _commit(self) -> None:
        try:
            if self._text is not None:
                self._text.flush()
            os.fsync(self.fd)
            self.check_ours()
            if self.force:
                self._check_target()
                os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                self._link_into_place()
            os.fsync(self.dir_fd)
        except OSError as exc:
            raise storage_error(exc, "write", self.path) from None

    def _link_into_place(self) -> None:
        try:
            os.link(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)
        except FileExistsError:
            raise InvalidInput(f"{self.path} appeared while the export ran; pass --force to replace it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
                raise
            # A filesystem without hard links: check, then rename (a narrow race, and only with a file we would refuse anyway).
            self._check_target()
            os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            return
        os.unlink(self.temp, dir_fd=self.dir_fd)

    def _discard(self) -> None:
        if self.dir_fd >= 0:
            try:
                os.unlink(self.temp, dir_fd=self.dir_fd)
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self._text is not None:
            try:
                self._text.close()
            except OSError:
                pass
            self._text = None
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1
