"""Writing under the user's lock: taking locks (one user or many), appending, rewriting a conversation."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, TypeVar

from ..disk import layout as L
from ..disk.fileops import TEMP_MARK
from ..disk.locking import FolderGone, UserLock, make_owner
from ..disk.storage import Folder, open_root
from ..disk.syncgroup import SyncGroup
from ..errors import DialogError, FileTooLarge, InvalidInput, NotFound, PartlyAppended, StorageError, UnsafePath, storage_error
from ..fileformat.codec import Form, check_message, detect_form, encode_batch, encode_chunks, last_frame_n
from ..fileformat.reader import parse_conversation
from ..models import AppendResult, ConversationRef, Message
from ..times import archive_id_for, utc_now
from . import delta, usermeta
from .files import FileSeen
from .reading import TAIL_BYTES, JournalReader

T = TypeVar("T")


class _Tail(NamedTuple):
    size: int
    form: Form | None
    messages: int


class JournalWriter(JournalReader):
    """Appends and rewrites, each under the user's lock."""

    # --- writing -------------------------------------------------------------------------

    def _lock(self, dialogs: Folder, user: str, command: str, timeout: float | None = None) -> UserLock:
        owner = make_owner(str(self.settings["serverId"]), f"dialogctl {command}" if self.command != "python" else command)
        return UserLock(dialogs, user, owner, self.settings.lock_timeout if timeout is None else timeout, self.modes)

    def locked(self, user: str, command: str, body: Callable[[Folder], T], create: bool = False) -> T:
        """Run ``body(dialogs)`` under the user's lock.

        If a cleanup removed the user's folder while we waited for the lock
        (or moved it away to delete it, and died), start over on the folder as
        it is now (recreated for an append): the lock we got guards nothing.
        """
        new_root = create and not os.path.isdir(self.root)
        made: list[str] = []
        dialogs, lock = self._lock_in_place(user, command, create, made, new_root)
        try:
            return body(dialogs)
        except BaseException:
            if made or new_root:  # taken back while the lock is held, so nobody waiting on it is fooled
                self._unmake(dialogs, made, new_root)
            raise
        finally:
            lock.release()
            dialogs.close()

    def _lock_in_place(
        self,
        user: str,
        command: str,
        create: bool,
        made: list[str] | None = None,
        new_root: bool = False,
        timeout: float | None = None,
        later: SyncGroup | None = None,
    ) -> tuple[Folder, UserLock]:
        """The user's ``dialogs/`` folder, open, and its lock, held (see :meth:`locked`).

        ``made`` gets the folders made for it (below the root); when no lock
        file can be made there, they go again (and the root, if ``new_root``).
        ``timeout``: how long to wait for the lock (None: ``lockTimeoutMs``);
        ``later``: a group commit, which takes the fsyncs of the folders made.
        """
        for _ in range(5):
            if made is not None:
                made.clear()
            dialogs = self.dialogs_folder(user, create=create, made=made, later=later)
            lock = self._lock(dialogs, user, command, timeout)
            try:
                lock.acquire()
            except FolderGone:
                dialogs.close()
                continue
            except BaseException:
                if made or new_root:  # no lock file could be made: the folders made for it go
                    self._unmake(dialogs, made or [], new_root)
                dialogs.close()
                raise
            try:
                if self._still_in_place(dialogs, user):
                    return dialogs, lock
            except BaseException:
                lock.release()
                dialogs.close()
                raise
            lock.release()
            dialogs.close()
        raise StorageError(f"the folder of user {user!r} kept disappearing while waiting for its lock")

    @contextmanager
    def locked_all(self, users: Iterable[str], command: str, create: bool = False) -> Iterator[dict[str, Folder]]:
        """Hold the locks of every user at once: ``{user: dialogs folder}`` while the block runs.

        The locks are taken in user id order, so two holders of several locks
        never wait for each other in a cycle. A lock that stays busy past
        ``lockTimeoutMs`` releases every lock taken so far and raises
        :class:`~dialogctl.errors.LockBusy` before the block runs. The folders
        of new users made to lock them are removed again when nothing was
        written into them. Each lock holds two open files, so the number of
        users is bounded by the open-file limit (raised to the hard limit when
        needed; beyond it, :class:`~dialogctl.errors.InvalidInput`).
        """
        chosen = sorted(set(users))
        allow_open_files(2 * len(chosen) + 64, f"holding the locks of {len(chosen)} users at once")
        held: list[tuple[Folder, UserLock, list[str]]] = []
        folders: dict[str, Folder] = {}
        try:
            for user in chosen:
                made: list[str] = []  # the folders made to lock this user
                try:
                    dialogs, lock = self._lock_in_place(user, command, create, made)
                except DialogError as exc:
                    exc.user = user
                    raise
                held.append((dialogs, lock, made))
                folders[user] = dialogs
            yield folders
        finally:
            for dialogs, lock, made in reversed(held):
                try:
                    if made:  # taken back unless something was written into them, as locked() does
                        self._unmake(dialogs, made, False)
                finally:
                    lock.release()
                    dialogs.close()

    def _unmake(self, dialogs: Folder, made: list[str], new_root: bool) -> None:
        """A command that made a user's folders (or the root) and then failed takes them away again, lock file included.

        Only what is empty again goes: anything written meanwhile (by this
        command before it failed, or by another process) keeps its folders.
        """
        try:
            if made and made[-1].endswith(L.DIALOGS_DIR) and dialogs.names() == [L.LOCK_FILE]:
                # Renamed away first, as a removed user is: another process waiting for the lock
                # finds the folder gone when it gets the lock, and starts over on a new one.
                with dialogs.open_folder(("..",)) as parent:
                    doomed = f".{L.DIALOGS_DIR}{TEMP_MARK}unmade-{os.getpid()}-{os.urandom(4).hex()}"
                    parent.rename_to(L.DIALOGS_DIR, parent, doomed)
                    parent.remove_tree(doomed)
            with open_root(self.root) as root:
                root.remove_made(made)
                if new_root:  # a root this command made: its layout record goes too, unless a user lives there now
                    root.remove_made([L.USERS_DIR])
                    if not root.has_folder(L.USERS_DIR) and root.has_folder(L.RECORD_PATH[0]):
                        with root.open_folder(L.RECORD_PATH[:-1]) as config:
                            config.remove_quietly(L.RECORD_PATH[-1])
                        root.remove_made([L.RECORD_PATH[0]])
            if new_root:
                os.rmdir(self.root)
        except (OSError, DialogError):
            pass  # best effort: the failure itself is what gets reported

    def _still_in_place(self, dialogs: Folder, user: str) -> bool:
        """Whether ``dialogs`` is still the folder found at the user's path."""
        try:
            with self.dialogs_folder(user) as now:
                here, there = os.fstat(now.fd), os.fstat(dialogs.fd)
        except NotFound:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def remove_user_folder(self, user: str) -> None:
        """Delete a user's conversations and archives (the caller holds the user's lock).

        ``dialogs/`` is first renamed to a hidden temp name, which removes the
        user in one step (a crash mid-way leaves a leftover that verify reports,
        never half a user), and only then deleted. A user's folder can also be
        the shard folder of longer ids (``user`` holds ``user-1000`` in the
        sharded layout), so only ``dialogs/`` and the user's ``metadata.yaml``
        go (with what interrupted rewrites and removals of them left), and
        folders only when empty.
        """
        parts = self.layout().user_parts(user)
        with open_root(self.root) as root:
            with root.open_folder((L.USERS_DIR, *parts)) as folder:
                doomed = f".{L.DIALOGS_DIR}{TEMP_MARK}removed-{os.getpid()}-{os.urandom(4).hex()}"
                folder.rename_to(L.DIALOGS_DIR, folder, doomed)
                folder.remove_tree(doomed)
                folder.remove(usermeta.METADATA_FILE)
                for name in folder.names():
                    if name.startswith(f".{usermeta.METADATA_FILE}{TEMP_MARK}"):
                        folder.remove(name)
                    elif name.startswith(f".{L.DIALOGS_DIR}{TEMP_MARK}") and folder.has_folder(name):
                        folder.remove_tree(name)
                try:
                    folder.fsync()
                except OSError as exc:
                    raise StorageError(f"removed user {user!r} from {folder.path}, but cannot sync that folder: {exc.strerror}") from None
            with root.open_folder((L.USERS_DIR,)) as users:
                users.remove_empty_folders(parts)

    def append(
        self, user: str, messages: Sequence[Message], conversation: str | None = None, *, one_write: bool = False, command: str = "append"
    ) -> AppendResult:
        """Append a batch to the user's conversation under the user's lock, fsynced.

        Archives automatically when the conversation reaches ``archiveThreshold``
        (or ``maxConversationLength``), splitting the batch at that point. Each
        part written to one file is marked as one batch in its frames, so it is
        read whole or not at all even if the process dies part-way through it.

        With ``one_write`` the batch is never split, so it lands all or nothing
        (an import): a non-empty conversation the batch would overflow is
        archived first, and a batch longer than the limit is written whole and
        then archived. ``messages`` may be any sequence, such as a spooled
        import read lazily (:mod:`dialogctl.fileformat.spool`): a large batch is encoded
        and written a megabyte at a time. ``command`` names the operation in
        the lock's owner record.
        """
        L.validate_user_id(user)
        if conversation is not None and conversation != "current":
            L.validate_name(conversation)
        if not messages:
            raise InvalidInput("nothing to append")
        for msg in messages:
            check_message(msg)

        def body(dialogs: Folder) -> AppendResult:
            name, ref = self._target(dialogs, user, conversation)
            return self._append_locked(dialogs, user, name, ref, messages, one_write)

        return self.locked(user, command, body, create=True)

    def append_locked(
        self,
        dialogs: Folder,
        user: str,
        messages: list[Message],
        conversation: str | None = None,
        *,
        one_write: bool = False,
        later: SyncGroup | None = None,
    ) -> AppendResult:
        """:meth:`append`, for a caller that holds the user's lock (``dialogs`` is the user's open folder, as :meth:`locked_all` gives it).

        With ``later`` (a group commit, :mod:`dialogctl.journal.groupcommit`)
        the batch's last write is not fsynced here: the caller keeps the lock
        until :meth:`SyncGroup.flush <dialogctl.disk.syncgroup.SyncGroup.flush>`
        made it durable, and only then reports it. Every write followed by an
        archive of its file is still fsynced before the archive moves the file,
        so a crash never keeps a later part of a batch without the earlier.
        The group's note for the batch is how many of its messages were
        durable before that last write (what a failed flush leaves appended).
        """
        if not messages:
            raise InvalidInput("nothing to append")
        for msg in messages:
            check_message(msg)
        name, ref = self._target(dialogs, user, conversation)
        return self._append_locked(dialogs, user, name, ref, messages, one_write, later)

    def _target(self, dialogs: Folder, user: str, conversation: str | None) -> tuple[str, ConversationRef]:
        if conversation is not None and conversation != "current":
            return L.session_file(conversation), ConversationRef(user, "session", conversation)
        if conversation == "current" or self.layout().conversations == "current":
            return L.CURRENT_FILE, ConversationRef(user, "current")
        sessions = [f for f in self._conversation_files(dialogs, user, False) if f.ref.kind == "session"]
        if sessions:
            ref = sessions[-1].ref
        else:
            ref = ConversationRef(user, "session", utc_now().strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex())
        return L.session_file(ref.id or ""), ref

    def _append_locked(
        self,
        dialogs: Folder,
        user: str,
        name: str,
        ref: ConversationRef,
        messages: Sequence[Message],
        one_write: bool = False,
        later: SyncGroup | None = None,
    ) -> AppendResult:
        steps = self.append_steps(dialogs, user, name, ref, messages, one_write, later)
        try:
            steps.send(None)
            while later is not None:  # a barrier: synced now, alone
                steps.send(later.flush_barriers().get(later.tag))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise AssertionError("append steps stop only in a group commit")

    def append_steps(
        self,
        dialogs: Folder,
        user: str,
        name: str,
        ref: ConversationRef,
        messages: Sequence[Message],
        one_write: bool = False,
        later: SyncGroup | None = None,
    ) -> Generator[None, OSError | None, AppendResult]:
        """:meth:`append_locked` without its checks, as a generator that returns the result.

        In a group commit (``later``) a write that more of the batch follows is
        a barrier (see :meth:`SyncGroup.defer <dialogctl.disk.syncgroup.SyncGroup.defer>`):
        the steps stop there until the caller has synced it, and then take that
        barrier's error, or None when it is durable (a group commit syncs many
        batches' barriers together).
        """
        threshold = int(self.settings["archiveThreshold"])
        cap = int(self.settings["maxConversationLength"])
        limit = min(threshold, cap) if threshold > 0 else cap
        tail = self._tail(dialogs, name, ref)
        before = usermeta.key_of(dialogs.stat(name))
        count = tail.messages
        archived: list[str] = []
        moves: list[usermeta.Move] = []  # told to metadata.yaml in the one update at the end
        remaining = messages
        while remaining:
            room = limit - count
            if room <= 0 or (one_write and count and len(remaining) > room):
                try:
                    aid = self.archive_locked(dialogs, user, name, ref, moves=moves, at=len(messages) - len(remaining), later=later)
                except StorageError as exc:
                    if remaining is messages:
                        raise
                    done = len(messages) - len(remaining)
                    raise PartlyAppended(f"appended {done} of {len(messages)} messages for user {user!r}, then: {exc.message}", appended=done) from None
                if aid:
                    archived.append(aid)
                tail = _Tail(0, None, 0)
                count = 0
                continue
            cut = len(remaining) if one_write else room
            chunk, remaining = remaining[:cut], remaining[cut:]
            form = tail.form or self.file_shape
            # Every write from a fresh line: the servers append without a lock and leave their
            # last item unterminated, and one may append between our look at the tail and
            # this write, or between two writes of a large batch. (An empty line between items
            # is nothing to YAML.) Several messages are marked as one batch, so a write cut
            # short by a kill reads as nothing at all; a large one goes in pieces of about a
            # megabyte (see codec.encode_chunks).
            pieces = encode_chunks(chunk, len(chunk), count + 1, form)
            # In a group commit the batch's last write waits for the group's fsync (and so does an
            # archive after it). A write followed by more of the batch is fsynced (a barrier) before
            # the archive that moves its file: a crash then keeps the batch's first parts or none,
            # never a later part without an earlier one.
            if later is not None and not remaining:
                later.note(len(messages) - len(chunk))
            digest, seen = (delta.Digest(), []) if delta.wanted(chunk) else (None, None)  # what the catalog's delta log is told
            stream = (b"\n" + piece for piece in pieces)
            try:
                _, new_size = dialogs.append(name, digest.through(stream) if digest else stream, self.modes, later=later, now=bool(remaining), seen=seen)
                if later is not None and remaining and (error := (yield)) is not None:
                    raise storage_error(error, "append to", dialogs.child_path(name))
            except StorageError as exc:
                done = len(messages) - len(remaining) - len(chunk)
                if not done:
                    raise
                raise PartlyAppended(f"appended {done} of {len(messages)} messages for user {user!r}, then: {exc.message}", appended=done) from None
            count += len(chunk)
            if digest and seen:
                delta.tell(self.root, later, self.rel_path(ref), seen, digest, chunk, form, count)
            tail = _Tail(new_size, form, count)
            if count >= limit and not remaining:
                # The messages are durable: a failed archive must not report them as
                # lost (a caller would append them again). The next append archives first.
                try:
                    aid = self.archive_locked(dialogs, user, name, ref, moves=moves, at=len(messages), later=later)
                except StorageError as exc:
                    self._metadata_after_append(dialogs, user, name, before, messages, moves)
                    return AppendResult(user, ref.name, len(messages), count, tuple(archived), exc.message)
                if aid:
                    archived.append(aid)
                tail = _Tail(0, None, 0)
                count = 0
        self._metadata_after_append(dialogs, user, name, before, messages, moves)
        return AppendResult(user, ref.name, len(messages), count, tuple(archived))

    def _metadata_after_append(
        self, dialogs: Folder, user: str, name: str, before: usermeta.Key, messages: Sequence[Message], moves: list[usermeta.Move]
    ) -> None:
        try:
            after = usermeta.key_of(dialogs.stat(name))
        except StorageError:
            return  # recomputed at the next append
        self._keep_metadata(dialogs, lambda meta_folder: usermeta.after_append(self, meta_folder, user, name, before, after, messages, moves, dialogs))

    def _keep_metadata(self, dialogs: Folder, update: Callable[[Folder], None]) -> None:
        """Update the user's metadata.yaml; a failure there never fails the write it follows.

        The conversation change is already durable when this runs, and the
        metadata is derived data that is recomputed when found stale. That
        includes running out of memory: a recount reads the user's files whole,
        and a caller told that a committed import failed would import it again.
        """
        try:
            with dialogs.open_folder(("..",)) as user_folder:
                update(user_folder)
        except (OSError, DialogError, MemoryError):
            pass

    def _tail(self, dialogs: Folder, name: str, ref: ConversationRef) -> _Tail:
        """Size, shape and message count of a conversation, from its first and last bytes."""
        fd = dialogs.open_read(name)
        if fd is None:
            return _Tail(0, None, 0)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return _Tail(0, None, 0)
            head = os.pread(fd, TAIL_BYTES, 0)
            tail = head if size <= TAIL_BYTES else os.pread(fd, TAIL_BYTES, size - TAIL_BYTES)
            form = detect_form(head)
            if size > self.file_limit:
                # Too large for any reader: archived before more is written to it, like a full conversation.
                return _Tail(size, form, sys.maxsize)
            n = last_frame_n(tail)
            if n is None:
                # The last record is not ours (written by another implementation, or torn):
                # count by reading, once; our next record carries the count again.
                from ..disk.fileops import read_all

                os.lseek(fd, 0, os.SEEK_SET)
                try:
                    data = read_all(fd, self.file_limit)
                except FileTooLarge:  # it grew past the limit meanwhile
                    return _Tail(size, form, sys.maxsize)
                n = len(parse_conversation(data, self.rel_path(ref)).messages)
            return _Tail(size, form, n)
        finally:
            os.close(fd)

    def write_conversation(
        self, dialogs: Folder, ref: ConversationRef, messages: Sequence[Message], exclusive: bool = False, replacing: FileSeen | None = None
    ) -> int:
        """Write a whole conversation file atomically, in the journal's file shape (the caller holds the user's lock).

        The messages are framed afresh (``n`` = 1..k), without batch marks: the
        file appears whole by its rename. With ``exclusive`` the file must not
        exist yet (a new archive), and the messages may be a long sequence read
        lazily (a spooled import): they are written in pieces, never held whole
        in memory. Otherwise the file is replaced, and keeps its owner and
        mode. ``replacing`` is the file as the caller read it: if it is no
        longer that file the rewrite is refused
        (:class:`~dialogctl.errors.ChangedUnderneath`), and whatever a server
        appended to it since the caller's read (servers take no lock) is carried
        over into the new file (see :class:`~dialogctl.disk.storage.LiveRewrites`).
        Returns the number of bytes written.
        """
        for msg in messages:
            check_message(msg)
        made: list[str] = []
        folder, name = self.locate_for_write(dialogs, ref, made)
        try:
            if exclusive and folder.stat(name) is not None:
                raise InvalidInput(f"{ref.describe()} already exists")
            if replacing is None:
                written = [0]
                pieces = encode_chunks(messages, len(messages), 1, self.file_shape, marked=False)
                folder.write_atomic(name, _counted(pieces, written), self.modes)
                return written[0]
            data = encode_batch(messages, 1, self.file_shape, marked=False) if messages else b""
            self.rewrites.replace(folder, name, data, replacing, self.modes)
            return len(data)
        except BaseException:
            dialogs.remove_made(made)  # an archived/ made for a new archive that could not be written
            raise
        finally:
            if folder is not dialogs:
                folder.close()

    def locate_for_write(self, dialogs: Folder, ref: ConversationRef, made: list[str] | None = None) -> tuple[Folder, str]:
        """Like :meth:`locate`, creating ``archived/`` when an archive is meant (``made`` says if it was)."""
        if ref.kind == "archive":
            return dialogs.open_folder((L.ARCHIVE_DIR,), create=True, modes=self.modes, made_paths=made), L.archive_file(ref.id or "")
        return self.locate(dialogs, ref)

    @staticmethod
    def target_name(ref: ConversationRef) -> str:
        """The file name in ``dialogs/`` of an active conversation."""
        if ref.kind == "archive":
            raise InvalidInput(f"{ref.describe()} is already archived")
        return L.session_file(ref.id or "") if ref.kind == "session" else L.CURRENT_FILE

    def archive_locked(
        self,
        dialogs: Folder,
        user: str,
        name: str,
        ref: ConversationRef,
        archive_id: str | None = None,
        moves: list[usermeta.Move] | None = None,
        at: int = 0,
        later: SyncGroup | None = None,
    ) -> str | None:
        """Archive one conversation (the caller holds the user's lock); its id, or None when it was empty.

        metadata.yaml is told of the move at once, unless ``moves`` collects it
        for the caller's own update (an append tells it once, at its end; ``at``
        is how many of its messages were written before this archive).
        ``later``: a group commit, which takes the fsyncs of the move.
        """
        st = regular_file(dialogs, name)
        if st is None or st.st_size == 0:
            return None
        made: list[str] = []
        with dialogs.open_folder((L.ARCHIVE_DIR,), create=True, modes=self.modes, made_paths=made, later=later) as archived:
            try:
                if archive_id is not None:
                    if archived.stat(L.archive_file(archive_id)) is not None:
                        raise InvalidInput(f"archive {archive_id!r} of user {user!r} already exists")
                    chosen = archive_id
                else:
                    base = ref.id if ref.kind == "session" and ref.id else archive_id_for(utc_now())
                    chosen = unique_name(archived, base)
                dialogs.rename_to(name, archived, L.archive_file(chosen), later)
                # The reference implementation expects the file to exist after an archive;
                # it is the servers' file as much as the one it replaces (same owner and mode).
                try:
                    dialogs.create_empty(name, self.modes, like=st, later=later)
                except StorageError:
                    move_back(archived, L.archive_file(chosen), dialogs, name)
                    raise
            except BaseException:
                dialogs.remove_made(made)  # an archived/ made for this archive goes with it
                raise
        move = usermeta.Move(name, f"{L.ARCHIVE_DIR}/{L.archive_file(chosen)}", usermeta.key_of(st), usermeta.key_of(dialogs.stat(name)), at=at)
        if moves is not None:
            moves.append(move)
        else:
            self._keep_metadata(dialogs, lambda meta_folder: usermeta.note_moved(meta_folder, [move], self.modes))
        return chosen


def allow_open_files(needed: int, why: str) -> None:
    """Make room for ``needed`` open files (up to the hard limit), or refuse before anything is done."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise InvalidInput(f"{why} takes about {needed} open files, over this process's limit of {hard}; split the input")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError):
        raise InvalidInput(f"{why} takes about {needed} open files, over this process's limit of {soft}; split the input") from None


def _counted(pieces: Iterable[bytes], total: list[int]) -> Iterator[bytes]:
    """The pieces, adding up their length in ``total[0]``."""
    for piece in pieces:
        total[0] += len(piece)
        yield piece


def regular_file(folder: Folder, name: str) -> os.stat_result | None:
    """lstat of a conversation file that is to be moved; anything but a regular file is refused."""
    st = folder.stat(name)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{folder.child_path(name)} is a symlink or not a regular file; dialogctl does not move it")
    return st


def move_back(folder: Folder, name: str, target: Folder, new_name: str) -> None:
    """Undo a move while handling a failure; the failure itself is what gets reported."""
    try:
        folder.rename_to(name, target, new_name)
    except StorageError:
        pass


def unique_name(folder: Folder, base: str) -> str:
    candidate = base
    number = 1
    while folder.stat(L.archive_file(candidate)) is not None:
        number += 1
        candidate = f"{base}-{number}"
    return candidate
