"""Low-level file operations under the journal root: open flags, modes, whole reads and writes, renameat2.

Everything here works on descriptors; :mod:`dialogctl.disk.storage` builds the folder handles on it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, NamedTuple

from ..errors import FileTooLarge, StorageError, UnsafePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


# Every file inside the journal is opened without following a symlink, O_NONBLOCK (a FIFO planted
# under a journal name must not hang us; regular files ignore it) and O_NOCTTY (a terminal device
# planted there must not become ours), and is used only once fstat says it is a regular file.
FILE_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


READ_FLAGS = os.O_RDONLY | FILE_FLAGS


TEMP_MARK = ".tmp-"


# A rewrite keeps the old file under its temp name plus this until the rename is durable
# (see Folder.write_atomic): a kill in between leaves it as a second name of the live file.
BACKUP_SUFFIX = "-old"


def backup_target(name: str) -> str | None:
    """The file whose rewrite left ``name`` as its backup name (``.<file>.tmp-<pid>-<hex>-old``); None for any other name."""
    if not (name.startswith(".") and name.endswith(BACKUP_SUFFIX)):
        return None
    target, mark, _ = name[1:].partition(TEMP_MARK)
    return target if mark and target else None


MAX_SMALL_FILE = 16 << 20  # the journal's own small files (layout record, metadata.yaml, lock records): never read past this


def kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words (for errors and verify)."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def not_regular(path: str, mode: int) -> UnsafePath:
    """The error for a journal name that holds something other than a regular file (never opened, never followed)."""
    return UnsafePath(f"{path} is {kind_of(mode)}, not a regular file; dialogctl opens only regular files inside the journal and never follows links there")


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class Modes(NamedTuple):
    """How dialogctl sets the owner and permissions of what it creates.

    ``file``/``dir`` None: follow the folder the new file or folder is made in
    (its permission bits, a file without execute bits; setgid folders keep
    setgid), and its owner and group when this process may give them away.
    A number: exactly that mode (the operator set it).
    """

    file: int | None = None
    dir: int | None = None

    def for_file(self, parent: os.stat_result) -> int:
        if self.file is not None:
            return self.file
        return stat.S_IMODE(parent.st_mode) & 0o666

    def for_dir(self, parent: os.stat_result) -> int:
        if self.dir is not None:
            return self.dir
        return stat.S_IMODE(parent.st_mode) & 0o2777


FOLLOW = Modes()


def adopt(fd: int, like: os.stat_result) -> None:
    """Give a file or folder we just made the owner and group of ``like`` (its folder, or the file it replaces).

    Best effort by design: root can give both away, a member of the group can
    give the group; anything else keeps our own ids (and ``verify`` reports a
    foreign owner). Never fails the write it follows.
    """
    own = os.fstat(fd)
    if (own.st_uid, own.st_gid) == (like.st_uid, like.st_gid):
        return
    try:
        os.fchown(fd, like.st_uid, like.st_gid)
        return
    except OSError:
        pass
    if own.st_gid != like.st_gid:
        try:
            os.fchown(fd, -1, like.st_gid)
        except OSError:
            pass


RENAME_NOREPLACE = 1


RENAME_EXCHANGE = 2


_SWAP: list[Any] = []


def renameat2() -> Any:
    """libc's renameat2, or None where there is none (loaded on first use: only restore needs it)."""
    if not _SWAP:
        try:
            import ctypes

            swap = ctypes.CDLL(None, use_errno=True).renameat2
            swap.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            swap.restype = ctypes.c_int
        except (OSError, AttributeError):
            swap = None
        _SWAP.append(swap)
    return _SWAP[0]


def last_errno() -> int:
    import ctypes

    return ctypes.get_errno()


def read_all(fd: int, limit: int | None = None, where: str = "a file") -> bytes:
    """Everything from the descriptor's position to the end; with ``limit``, a file larger than that is refused
    (:class:`~dialogctl.errors.FileTooLarge`) before anything is read, and never more than that is read."""
    size = os.fstat(fd).st_size
    if limit is not None and size > limit:
        raise too_large(where, size, limit)
    chunks = []
    read = 0
    step = min(max(size, 65536), 1 << 30)  # one read for most files; a huge one in pieces
    while True:
        chunk = os.read(fd, step if limit is None else min(step, limit + 1 - read))
        if not chunk:
            break
        chunks.append(chunk)
        read += len(chunk)
        if limit is not None and read > limit:  # it grew while we read
            raise too_large(where, read, limit)
    return b"".join(chunks)


def too_large(where: str, size: int, limit: int) -> FileTooLarge:
    return FileTooLarge(f"{where} is {human_size(size)}, larger than the {human_size(limit)} dialogctl reads of such a file; it was not read")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "write returned no progress")
        view = view[written:]


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def rmdir_quietly(name: str, dir_fd: int) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        pass


def truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        raise StorageError("an append failed and the file could not be cut back to its old size; run 'dialogctl verify'") from None
