"""The journal's files on disk: folder handles, appends, atomic rewrites.

Every path below the journal root is reached through open folder handles
(``openat``-style ``dir_fd`` calls) with ``O_NOFOLLOW``, one name at a time,
so a symlink planted anywhere under the root (even swapped in while we run)
is refused instead of followed out of the root. The root itself may be a
symlink: that is the operator's choice.

Durability rules: an append is one ``write`` on an ``O_APPEND`` descriptor (a
large batch: one per piece of about a megabyte, each starting on a fresh
line), cut back if it fails unless someone else appended after it, and fsynced
before it is reported; a rewrite is temp file + fsync + ``rename`` + fsync of
the folder.

Ownership and modes follow the journal (:class:`Modes`): the servers that
append to a journal run as their own user, unlocked, so whatever dialogctl
creates must stay writable by them. A new file or folder takes the owner,
group and permissions of the folder it is created in (a file without the
execute bits), a rewritten file keeps those of the file it replaces, and
only modes set explicitly by the operator are applied instead (``fchmod``
after creation, so the umask can neither widen nor narrow them).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ..errors import ChangedUnderneath, FileTooLarge, NotFound, StorageError, UnsafePath, storage_error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
# Every file inside the journal is opened without following a symlink, O_NONBLOCK (a FIFO planted
# under a journal name must not hang us; regular files ignore it) and O_NOCTTY (a terminal device
# planted there must not become ours), and is used only once fstat says it is a regular file.
_FILE_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_READ_FLAGS = os.O_RDONLY | _FILE_FLAGS
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


class Folder:
    """An open handle on a folder inside the journal, with its display path."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child_path(self, name: str) -> str:
        return os.path.join(self.path, name)

    # --- folders ---------------------------------------------------------

    def open_folder(self, parts: tuple[str, ...] | list[str], create: bool = False, modes: Modes = FOLLOW, made_paths: list[str] | None = None) -> Folder:
        """Open ``parts`` below this folder, one name at a time, never through a symlink.

        With ``create``, missing folders are made following ``modes`` (by
        default: owner, group and mode of the folder each is made in); if that
        fails part-way, the folders this call made are removed again.
        ``made_paths`` gets the path (below this folder) of each folder made,
        so a caller whose later step fails can remove them too
        (:meth:`remove_made`).
        """
        fds = [os.dup(self.fd)]  # fds[i] is the parent of parts[i]
        made: list[int] = []
        path = self.path
        try:
            for index, name in enumerate(parts):
                path = os.path.join(path, name)
                try:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
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
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                if made and made[-1] == index:
                    adopt(fds[-1], parent)
                    os.fchmod(fds[-1], mode)
                    os.fsync(fds[-2])
        except OSError as exc:
            for index in reversed(made):
                _rmdir_quietly(parts[index], fds[index])
            _close_all(fds)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{path} is a symlink or not a folder; dialogctl does not follow links inside the journal") from None
            raise storage_error(exc, "open folder", path) from None
        except BaseException:
            _close_all(fds)
            raise
        fd = fds.pop()
        _close_all(fds)
        if made_paths is not None:
            made_paths.extend("/".join(parts[: index + 1]) for index in made)
        return Folder(fd, path)

    def open_child(self, name: str) -> Folder:
        """Open one sub-folder (never through a symlink): one system call, for tree walks."""
        path = os.path.join(self.path, name)
        try:
            return Folder(os.open(name, _DIR_FLAGS, dir_fd=self.fd), path)
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{path} is a symlink or not a folder; dialogctl does not follow links inside the journal") from None
            raise storage_error(exc, "open folder", path) from None

    def has_folder(self, name: str) -> bool:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError:
            return False
        os.close(fd)
        return True

    def names(self) -> list[str]:
        try:
            return os.listdir(self.fd)
        except OSError as exc:
            raise storage_error(exc, "list", self.path) from None

    def entries(self) -> Iterator[os.DirEntry[str]]:
        """Entries of this folder; ``is_dir``/``is_file`` do not follow symlinks when asked not to."""
        try:
            with os.scandir(self.fd) as it:
                yield from it
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
        return self._open_file(name, _READ_FLAGS, "open")

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

    def open_append(self, name: str, modes: Modes = FOLLOW) -> tuple[int, bool]:
        """An ``O_APPEND`` write descriptor, creating the file following ``modes``; also says if it was created."""
        flags = os.O_WRONLY | os.O_APPEND | _FILE_FLAGS
        try:
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=self.fd)
            except FileExistsError:
                existing = self._open_file(name, flags, "open for append")
                if existing is None:  # removed since: create it after all
                    return self.open_append(name, modes)
                return existing, False
            try:
                self.set_up_new(fd, modes)
            except OSError:
                os.close(fd)
                self.remove_quietly(name)
                raise
            return fd, True
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise not_regular(self.child_path(name), stat.S_IFLNK) from None
            raise storage_error(exc, "open for append", self.child_path(name)) from None

    def open_read_write(self, name: str, modes: Modes = FOLLOW) -> int:
        """A read-write descriptor on a regular file (a lock file), created following ``modes`` when missing.

        Never through a symlink and never blocking on a FIFO planted there.
        """
        flags = os.O_RDWR | _FILE_FLAGS
        where = self.child_path(name)
        try:
            fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=self.fd)
        except FileExistsError:
            existing = self._open_file(name, flags, "open")
            if existing is None:  # removed since: create it after all
                return self.open_read_write(name, modes)
            return existing
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise not_regular(where, stat.S_IFLNK) from None
            raise storage_error(exc, "open", where) from None
        try:
            self.set_up_new(fd, modes)
        except OSError as exc:
            os.close(fd)
            raise storage_error(exc, "set up", where) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def set_up_new(self, fd: int, modes: Modes, like: os.stat_result | None = None) -> None:
        """Owner, group and mode of a file this folder just got.

        ``like`` is the file it replaces: a rewrite never narrows or widens a
        file's mode nor changes its owner, whatever the settings say.
        """
        if like is not None:
            adopt(fd, like)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))
            return
        parent = os.fstat(self.fd)
        adopt(fd, parent)
        os.fchmod(fd, modes.for_file(parent))

    def append(self, name: str, data: bytes | Iterable[bytes], modes: Modes = FOLLOW) -> tuple[int, int]:
        """Append ``data`` (bytes, or pieces written one ``write`` each), fsync it; return (where it starts, where it ends).

        On a short or failed write or fsync the file is cut back to where our
        bytes began (or removed, if this call created it), so a failed append
        leaves the folder byte-identical to before, unless someone else (a
        server, which takes no lock) appended after our bytes: then they stay,
        and what they hold is a torn record or a torn batch, which no reader
        reads and ``repair`` drops. Each write's place is known from the file
        offset ``O_APPEND`` leaves behind, so bytes a server appended before
        ours are never cut.
        """
        fd, created = self.open_append(name, modes)
        where = self.child_path(name)
        ours: list[int] = []  # [start, end] of our bytes in the file, once a write went through
        mixed = False  # someone else's bytes landed between two of our writes
        try:
            try:
                for piece in [data] if isinstance(data, bytes) else data:
                    view = memoryview(piece)
                    # One write per piece in all but failure cases: a short write (the disk
                    # filled up) is continued only to learn the real error, then cut back.
                    while view:
                        written = os.write(fd, view)
                        if written <= 0:
                            raise OSError(errno.EIO, "write returned no progress")
                        done = os.lseek(fd, 0, os.SEEK_CUR)
                        if not ours:
                            ours = [done - written, done]
                        elif done - written == ours[1]:
                            ours[1] = done
                        else:
                            mixed = True
                        view = view[written:]
                os.fsync(fd)
                if created:
                    self.fsync()
            except BaseException as exc:  # a full disk, and also an interrupt or a failing source of pieces
                size = os.fstat(fd).st_size
                if not ours:
                    if created and size == 0:
                        self.remove_quietly(name)
                elif not mixed and size == ours[1]:
                    if created and ours[0] == 0:
                        self.remove_quietly(name)
                    else:
                        _truncate_quietly(fd, ours[0])
                if isinstance(exc, OSError):
                    raise storage_error(exc, "append to", where) from None
                raise
            if not ours:
                size = os.fstat(fd).st_size
                return size, size
            return ours[0], os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)

    def create_empty(self, name: str, modes: Modes = FOLLOW, like: os.stat_result | None = None) -> None:
        """Create an empty file if the name is free (no-op if it exists); ``like``: take that file's owner and mode."""
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=self.fd)
        except FileExistsError:
            return
        except OSError as exc:
            raise storage_error(exc, "create", self.child_path(name)) from None
        try:
            self.set_up_new(fd, modes, like)
            os.fsync(fd)
        except OSError as exc:
            self.remove_quietly(name)
            raise storage_error(exc, "create", self.child_path(name)) from None
        finally:
            os.close(fd)

    def write_atomic(self, name: str, data: bytes | Iterable[bytes], modes: Modes = FOLLOW, durable: bool = True, keep_open: bool = False) -> int | None:
        """Replace ``name`` with ``data`` (bytes, or pieces written one after another): temp file, fsync, rename, fsync folder.

        The new file keeps the owner, group and mode of the file it replaces
        (a new name follows ``modes``). With ``keep_open`` an ``O_APPEND``
        descriptor on the new file is returned (the caller closes it): it
        reaches the new file wherever it is moved later.

        The old file keeps a second name (a hard link) until the folder is
        fsynced, so if that last step fails the old file is put back and a
        failed rewrite leaves the folder as it was. Where hard links are not
        available the rewrite goes ahead without that safety net.

        ``durable=False`` skips both fsyncs (and so the safety net), for derived
        files (metadata, catalog) that are recomputed when a crash leaves them
        stale: still atomic, never torn.
        """
        temp = f".{name}{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
        where = self.child_path(name)
        old = self.stat(name)
        if old is not None and not stat.S_ISREG(old.st_mode):
            old = None  # a symlink (or worse) planted there is replaced, never followed, and lends nothing
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=self.fd)
        except OSError as exc:
            raise storage_error(exc, "create a temporary file for", where) from None
        backup: str | None = None
        kept = -1
        try:
            try:
                self.set_up_new(fd, modes, old)
                for piece in [data] if isinstance(data, bytes) else data:
                    write_all(fd, piece)
                if durable:
                    os.fsync(fd)
                if keep_open:
                    import fcntl

                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
                    kept, fd = fd, -1
            finally:
                if fd >= 0:
                    os.close(fd)
            if durable:
                try:
                    os.link(name, temp + BACKUP_SUFFIX, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                    backup = temp + BACKUP_SUFFIX
                except OSError:
                    pass  # a new file, or no hard links here
            os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            self.remove_quietly(temp)
            if backup is not None:
                self.remove_quietly(backup)
            if kept >= 0:
                os.close(kept)
            raise storage_error(exc, "rewrite", where) from None
        except BaseException:
            self.remove_quietly(temp)
            if kept >= 0:
                os.close(kept)
            raise
        if not durable:
            return kept if keep_open else None
        try:
            self.fsync()
        except OSError as exc:
            if kept >= 0:
                os.close(kept)
            try:
                if backup is not None:
                    os.rename(backup, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
                    backup = None
                else:
                    os.unlink(name, dir_fd=self.fd)
            except OSError:
                pass
            raise storage_error(exc, "rewrite", where) from None
        finally:
            if backup is not None:
                self.remove_quietly(backup)
        return kept if keep_open else None

    def rename_to(self, name: str, target: Folder, new_name: str) -> None:
        """Move a file between two journal folders (same filesystem), durably.

        If the folders cannot be fsynced the file is moved back, so a failed
        move leaves both folders as they were.
        """
        where = f"{self.child_path(name)} to {target.child_path(new_name)}"
        try:
            os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)
        except OSError as exc:
            raise storage_error(exc, "move", where) from None
        try:
            target.fsync()
            if target.fd != self.fd:
                self.fsync()
        except OSError as exc:
            try:
                os.rename(new_name, name, src_dir_fd=target.fd, dst_dir_fd=self.fd)
            except OSError:
                pass
            raise storage_error(exc, "move", where) from None

    def exchange(self, name: str, other: Folder, other_name: str) -> bool:
        """Swap two files in one atomic step, durably; False (nothing changed) where the system cannot.

        Linux's ``renameat2(RENAME_EXCHANGE)``: a restore that must keep the
        conversation it replaces becomes one step instead of two, so a crash
        leaves either the old state or the new one.
        """
        swap = _renameat2()
        if swap is None:
            return False
        where = f"{self.child_path(name)} and {other.child_path(other_name)}"
        if swap(self.fd, os.fsencode(name), other.fd, os.fsencode(other_name), _RENAME_EXCHANGE) != 0:
            import ctypes

            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
                return False  # e.g. NFS: the caller falls back to two renames
            raise storage_error(OSError(code, os.strerror(code)), "swap", where)
        try:
            self.fsync()
            other.fsync()
        except OSError as exc:
            swap(self.fd, os.fsencode(name), other.fd, os.fsencode(other_name), _RENAME_EXCHANGE)
            raise storage_error(exc, "swap", where) from None
        return True

    def move_unless_there(self, name: str, target: Folder, new_name: str) -> bool:
        """Move a file or folder, durably, unless ``new_name`` exists in ``target``; False (nothing changed) when it does.

        ``renameat2(RENAME_NOREPLACE)`` where the system has it, so a folder
        another process creates meanwhile is never replaced (a plain rename
        replaces an empty folder); elsewhere a look before the rename.
        """
        where = f"{self.child_path(name)} to {target.child_path(new_name)}"
        swap = _renameat2()
        code: int | None = None
        if swap is not None:
            code = 0 if swap(self.fd, os.fsencode(name), target.fd, os.fsencode(new_name), _RENAME_NOREPLACE) == 0 else _errno()
            if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
                code = None  # e.g. NFS: look, then rename
        if code is None:
            if target.stat(new_name) is not None:
                return False
            try:
                os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)
                code = 0
            except OSError as exc:
                code = exc.errno or errno.EIO
        if code == errno.EEXIST or code == errno.ENOTEMPTY:
            return False
        if code:
            raise storage_error(OSError(code, os.strerror(code)), "move", where)
        try:
            target.fsync()
            self.fsync()
        except OSError as exc:
            raise storage_error(exc, "move", where) from None
        return True

    def remove_made(self, made_paths: list[str]) -> None:
        """Remove folders :meth:`open_folder` made (``made_paths``), deepest first, each only if it is empty again."""
        for rel in reversed(made_paths):
            try:
                os.rmdir(rel, dir_fd=self.fd)
            except FileNotFoundError:
                continue  # taken away already
            except OSError:
                return  # not empty (something else lives there now): keep it and the folders above it
        try:
            self.fsync()
        except OSError:
            pass

    def remove_empty_folders(self, parts: tuple[str, ...]) -> None:
        """Remove ``parts`` below this folder, deepest first, while they are empty; never through a symlink."""
        fds = [os.dup(self.fd)]
        try:
            for name in parts[:-1]:
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
            for depth in range(len(parts) - 1, -1, -1):
                os.rmdir(parts[depth], dir_fd=fds[depth])
                try:
                    os.fsync(fds[depth])
                except OSError:
                    pass  # the folder is gone and held nothing: only when that is on disk is unknown
        except OSError:
            pass  # not empty (another user's folder lives below), already gone, or not a folder: stop
        finally:
            _close_all(fds)

    def set_owner(self, name: str | None, uid: int, gid: int) -> None:
        """chown a file in this folder (``None``: the folder itself), never through a symlink."""
        self._change(name, "set the owner of", lambda fd: os.fchown(fd, uid, gid))

    def _change(self, name: str | None, action: str, change: Callable[[int], None]) -> None:
        where = self.path if name is None else self.child_path(name)
        try:
            if name is None:
                change(self.fd)
                return
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
            try:
                change(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error(exc, action, where) from None

    def remove(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, "remove", self.child_path(name)) from None

    def remove_quietly(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def remove_tree(self, name: str) -> None:
        """Delete a sub-folder and everything in it without following symlinks."""
        import shutil

        try:
            shutil.rmtree(name, dir_fd=self.fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, "remove", self.child_path(name)) from None


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


def open_root(root: str, create: bool = False, mode: int = 0o700) -> Folder:
    """Open the journal root (which itself may be a symlink); a root made here gets exactly ``mode``."""
    try:
        return Folder(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), root)
    except FileNotFoundError:
        if not create:
            raise NotFound(f"journal root {root} does not exist") from None
    except NotADirectoryError:
        raise StorageError(f"journal root {root} is not a folder") from None
    except OSError as exc:
        raise storage_error(exc, "open journal root", root) from None
    try:
        os.makedirs(root, mode=mode, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise storage_error(exc, "create journal root", root) from None
    os.fchmod(fd, mode)
    return Folder(fd, root)


def open_below(root: str, rel_path: str) -> int | None:
    """A read descriptor for a file given by its ``/``-separated path below the root, folder by folder
    (never through a symlink); None when it or a folder on the way does not exist."""
    *folders, name = rel_path.split("/")
    try:
        with open_root(root) as top, top.open_folder(folders) as folder:
            return folder.open_read(name)
    except NotFound:
        return None


_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_SWAP: list[Any] = []


def _renameat2() -> Any:
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


def _errno() -> int:
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


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _rmdir_quietly(name: str, dir_fd: int) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        pass


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        raise StorageError("an append failed and the file could not be cut back to its old size; run 'dialogctl verify'") from None
