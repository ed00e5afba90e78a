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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import NotFound, StorageError, storage_error
from .fileops import (
    BACKUP_SUFFIX,
    DIR_FLAGS,
    FILE_FLAGS,
    FOLLOW,
    READ_FLAGS,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    TEMP_MARK,
    Modes,
    adopt,
    close_all,
    last_errno,
    not_regular,
    renameat2,
    truncate_quietly,
    write_all,
)
from .handle import FolderHandle

if TYPE_CHECKING:
    from .syncgroup import SyncGroup


class Folder(FolderHandle):
    """A folder handle that also changes what the folder holds."""

    __slots__ = ()

    def open_append(self, name: str, modes: Modes = FOLLOW) -> tuple[int, bool]:
        """An ``O_APPEND`` write descriptor, creating the file following ``modes``; also says if it was created."""
        flags = os.O_WRONLY | os.O_APPEND | FILE_FLAGS
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
        flags = os.O_RDWR | FILE_FLAGS
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

    def append(
        self,
        name: str,
        data: bytes | Iterable[bytes],
        modes: Modes = FOLLOW,
        later: SyncGroup | None = None,
        now: bool = False,
        seen: list[os.stat_result] | None = None,
    ) -> tuple[int, int]:
        """Append ``data`` (bytes, or pieces written one ``write`` each), fsync it; return (where it starts, where it ends).

        On a short or failed write or fsync the file is cut back to where our
        bytes began (or removed, if this call created it), so a failed append
        leaves the folder byte-identical to before, unless someone else (a
        server, which takes no lock) appended after our bytes: then they stay,
        and what they hold is a torn record or a torn batch, which no reader
        reads and ``repair`` drops. Each write's place is known from the file
        offset ``O_APPEND`` leaves behind, so bytes a server appended before
        ours are never cut.

        With ``later`` (a group commit) the fsyncs of the file (and of this
        folder, for a new file) are left to :meth:`SyncGroup.flush
        <dialogctl.disk.syncgroup.SyncGroup.flush>`, which cuts the bytes back
        in the same way if they fail; the caller holds the file's lock until then.
        With ``now`` as well, the write is a barrier (what follows must not reach
        the disk before it): its fsync is deferred as one
        (:meth:`SyncGroup.flush_barriers <dialogctl.disk.syncgroup.SyncGroup.flush_barriers>`),
        and the caller writes nothing more of the batch before that has run.

        ``seen`` (an existing file only) gets the ``fstat`` of the file just
        before our first write and just after our last, for the catalog's
        delta log (see :mod:`dialogctl.journal.delta`): from them the caller
        tells whether anyone else wrote to the file in between.
        """
        fd, created = self.open_append(name, modes)
        where = self.child_path(name)
        ours: list[int] = []  # [start, end] of our bytes in the file, once a write went through
        mixed = False  # someone else's bytes landed between two of our writes
        before: os.stat_result | None = None
        try:
            try:
                if seen is not None and not created:
                    before = os.fstat(fd)
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
                if before is not None and seen is not None:
                    seen.extend((before, os.fstat(fd)))
                if later is None:
                    os.fsync(fd)
                if later is None and created:
                    self.fsync()
            except BaseException as exc:  # a full disk, and also an interrupt or a failing source of pieces
                self._cut_back(fd, name, ours, created, mixed)
                if isinstance(exc, OSError):
                    raise storage_error(exc, "append to", where) from None
                raise
            if not ours:
                size = os.fstat(fd).st_size
                return size, size
            end = os.lseek(fd, 0, os.SEEK_CUR)
            if later is not None:
                kept = os.dup(fd)
                folder = Folder(os.dup(self.fd), self.path)
                later.defer(kept, lambda: folder._cut_back_quietly(kept, name, ours, created, mixed), folder, barrier=now)
                if created:
                    later.defer(os.dup(self.fd))
            return ours[0], end
        finally:
            os.close(fd)

    def _cut_back(self, fd: int, name: str, ours: list[int], created: bool, mixed: bool) -> None:
        """Take our bytes (``ours``: [start, end]) back off a file whose append failed, when nobody appended after them."""
        size = os.fstat(fd).st_size
        if not ours:
            if created and size == 0:
                self.remove_quietly(name)
        elif not mixed and size == ours[1]:
            if created and ours[0] == 0:
                self.remove_quietly(name)
            else:
                truncate_quietly(fd, ours[0])

    def _cut_back_quietly(self, fd: int, name: str, ours: list[int], created: bool, mixed: bool) -> None:
        """:meth:`_cut_back` for a group commit's undo (best effort: the failure itself is what gets reported).

        The file may have been moved since (an automatic archive after the
        batch): then it is cut back through ``fd``, never removed by a name
        that is now another file's.
        """
        try:
            here, ours_st = self.stat(name), os.fstat(fd)
            if here is None or (here.st_dev, here.st_ino) != (ours_st.st_dev, ours_st.st_ino):
                created = False
            self._cut_back(fd, name, ours, created, mixed)
        except (OSError, StorageError):
            pass

    def create_empty(self, name: str, modes: Modes = FOLLOW, like: os.stat_result | None = None, later: SyncGroup | None = None) -> None:
        """Create an empty file if the name is free (no-op if it exists); ``like``: take that file's owner and mode.

        ``later``: a group commit, which takes its fsync.
        """
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=self.fd)
        except FileExistsError:
            return
        except OSError as exc:
            raise storage_error(exc, "create", self.child_path(name)) from None
        try:
            self.set_up_new(fd, modes, like)
            if later is None:
                os.fsync(fd)
            else:
                later.defer(os.dup(fd))
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

    def rename_to(self, name: str, target: Folder, new_name: str, later: SyncGroup | None = None) -> None:
        """Move a file between two journal folders (same filesystem), durably.

        If the folders cannot be fsynced the file is moved back, so a failed
        move leaves both folders as they were. With ``later`` (a group commit)
        their fsyncs are left to its flush (and a failure there moves nothing back).
        """
        where = f"{self.child_path(name)} to {target.child_path(new_name)}"
        try:
            os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)
        except OSError as exc:
            raise storage_error(exc, "move", where) from None
        if later is not None:
            later.defer(os.dup(target.fd))
            if target.fd != self.fd:
                later.defer(os.dup(self.fd))
            return
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
        swap = renameat2()
        if swap is None:
            return False
        where = f"{self.child_path(name)} and {other.child_path(other_name)}"
        if swap(self.fd, os.fsencode(name), other.fd, os.fsencode(other_name), RENAME_EXCHANGE) != 0:
            import ctypes

            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
                return False  # e.g. NFS: the caller falls back to two renames
            raise storage_error(OSError(code, os.strerror(code)), "swap", where)
        try:
            self.fsync()
            other.fsync()
        except OSError as exc:
            swap(self.fd, os.fsencode(name), other.fd, os.fsencode(other_name), RENAME_EXCHANGE)
            raise storage_error(exc, "swap", where) from None
        return True

    def move_unless_there(self, name: str, target: Folder, new_name: str) -> bool:
        """Move a file or folder, durably, unless ``new_name`` exists in ``target``; False (nothing changed) when it does.

        ``renameat2(RENAME_NOREPLACE)`` where the system has it, so a folder
        another process creates meanwhile is never replaced (a plain rename
        replaces an empty folder); elsewhere a look before the rename.
        """
        where = f"{self.child_path(name)} to {target.child_path(new_name)}"
        swap = renameat2()
        code: int | None = None
        if swap is not None:
            code = 0 if swap(self.fd, os.fsencode(name), target.fd, os.fsencode(new_name), RENAME_NOREPLACE) == 0 else last_errno()
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
                fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
            for depth in range(len(parts) - 1, -1, -1):
                os.rmdir(parts[depth], dir_fd=fds[depth])
                try:
                    os.fsync(fds[depth])
                except OSError:
                    pass  # the folder is gone and held nothing: only when that is on disk is unknown
        except OSError:
            pass  # not empty (another user's folder lives below), already gone, or not a folder: stop
        finally:
            close_all(fds)

    def set_owner(self, name: str | None, uid: int, gid: int) -> None:
        """chown a file in this folder (``None``: the folder itself), never through a symlink."""
        self._change(name, "set the owner of", lambda fd: os.fchown(fd, uid, gid))

    def _change(self, name: str | None, action: str, change: Callable[[int], None]) -> None:
        where = self.path if name is None else self.child_path(name)
        try:
            if name is None:
                change(self.fd)
                return
            fd = os.open(name, READ_FLAGS, dir_fd=self.fd)
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
