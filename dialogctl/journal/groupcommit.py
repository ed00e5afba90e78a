"""Group commit: many users' batches written one after another, made durable together, then reported.

Each batch is written under its user's lock as a single append is (the
conversation's tail read, the records framed and marked as one batch, an
automatic archive when the conversation fills up), but the fsyncs of its last
write (and of the folders and file made for a new user) are left to a
:class:`~dialogctl.disk.syncgroup.SyncGroup`. Up to :data:`GROUP_USERS` users
are written this way, holding each one's lock, then one flush fsyncs
everything in parallel, and only then are the locks released and the batches
reported: nothing is reported as appended before it is durable, and no other
writer sees (or appends after) bytes that may still be lost or cut back. A group is
also committed once it has been written for :data:`GROUP_SECONDS`, which bounds how
much longer than its own batch a user's lock is held.

A batch that an automatic archive splits must have each part durable before
the archive that moves its file (a crash then keeps its first parts or none,
never a later part without an earlier one). That write is a *barrier*: the
batch's steps (:meth:`JournalWriter.append_steps
<dialogctl.journal.writing.JournalWriter.append_steps>`) stop there, and at the
commit the barriers of every such batch are fsynced together, then each goes
on (the archive, the next part), until every batch is written; then the flush.

What a crash leaves, by when it comes:

* while a batch is written: its records are there whole or the batch's marks
  make it read as nothing (a torn batch, which ``repair`` drops); batches
  written before it in the group are there if the page cache reached the disk
  (a killed process: always; a power cut: maybe), each whole or not at all.
  None of them was reported.
* during the flush: each batch whole or not at all, as above. None was reported.
* after the flush: every batch of the group is durable, reported or not yet.

Whatever a command reported as appended (its records, exit 0) was durable
before it was reported. A batch whose fsync fails at the flush has its bytes
cut back (its lock is still held) and is reported as failed, or as partly
appended when an automatic archive made its first part durable before.

The lock of a user is never waited for while others are held: a lock found
busy first commits the group (flush, report, release), then is waited for as
a single append waits, so two commands never hold each other's users.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Hashable, Sequence
from typing import NamedTuple

from ..disk import layout as L
from ..disk.locking import UserLock
from ..disk.storage import Folder
from ..disk.syncgroup import SyncGroup
from ..errors import DialogError, InvalidInput, LockBusy, PartlyAppended, storage_error
from ..fileformat.codec import check_message
from ..models import AppendResult, Message
from . import delta
from .writing import JournalWriter, allow_open_files

# Users written (and locks held) before a flush: each holds its lock (two open files),
# its dialogs/ folder, and until the flush its file and the folders it made (at most
# :data:`FILES_PER_USER` descriptors). More users per flush pay little more: the flush of
# 256 costs about what one of 32 does.
GROUP_USERS = 256
FILES_PER_USER = 10
# And at most about this long: a user's lock is held from its batch's write to the flush, so
# another writer waiting for it (lockTimeoutMs, 5 s by default) waits for the group, not only the batch.
GROUP_SECONDS = 1.0


class _Held(NamedTuple):
    dialogs: Folder
    lock: UserLock
    made: list[str]  # folders made to lock this user (taken back when nothing was written into them)
    new_root: bool


class _Slot(NamedTuple):
    key: Hashable  # the caller's batch
    tag: int  # its deferred fsyncs' tag in the group
    user: str
    where: str  # the file the batch's last write went to (for the error of a failed flush)
    size: int  # messages in the batch
    result: AppendResult | DialogError | None  # None: its steps wait for a barrier (see commit)


class GroupCommit:
    """Batches written under their users' locks, committed together by :meth:`commit`.

    :meth:`append` writes one batch; :meth:`take` returns the batches whose
    fate is known (committed by a flush, or failed), in the order they were
    given; :meth:`commit` flushes what is written. Use as a context manager:
    leaving it by an exception abandons what was not committed (its bytes
    are cut back) and releases every lock.
    """

    def __init__(self, journal: JournalWriter, command: str = "append") -> None:
        self.journal = journal
        self.command = command
        self.group = SyncGroup()
        self.held: dict[str, _Held] = {}
        self.written: list[_Slot] = []  # in order, not yet committed
        self.waiting: list[tuple[int, Generator[None, OSError | None, AppendResult]]] = []  # (place in written, its steps) stopped at a barrier
        self.done: list[tuple[Hashable, AppendResult | DialogError]] = []
        self.limit = _group_size()
        self.count = 0  # batches given so far (each one's tag)
        self.started = 0.0  # when the group in hand took its first lock

    def __enter__(self) -> GroupCommit:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is not None:
            self.abandon()
        else:
            self.commit()

    def append(self, key: Hashable, user: str, load: Callable[[], Sequence[Message]], conversation: str | None = None, *, checked: bool = False) -> None:
        """Write one batch (checked as :meth:`JournalWriter.append` checks it); its outcome comes from :meth:`take` once known.

        ``checked``: every message already passed :func:`~dialogctl.fileformat.codec.check_message` (read through ``input_message``).
        """
        where = user
        size = 0
        tag = self.count
        self.count += 1
        try:
            L.validate_user_id(user)
            if conversation is not None and conversation != "current":
                L.validate_name(conversation)
            messages = load()
            size = len(messages)
            if not messages:
                raise InvalidInput("nothing to append")
            if not checked:  # read through input_message: validated once, on input
                for msg in messages:
                    check_message(msg)
            self.group.tag = tag
            dialogs = self._hold(user)
            try:
                name, ref = self.journal._target(dialogs, user, conversation)
                where = dialogs.child_path(name)
                steps = self.journal.append_steps(dialogs, user, name, ref, messages, later=self.group)
                result: AppendResult | DialogError | None = None
                try:
                    steps.send(None)
                    self.waiting.append((len(self.written), steps))  # a barrier: the rest is written at the commit
                except StopIteration as done:
                    result = done.value
            except DialogError:
                self._let_go_if_unused(user)
                raise
        except DialogError as exc:
            result = exc
        self.written.append(_Slot(key, tag, user, where, size, result))
        if all(isinstance(s.result, DialogError) for s in self.written) and not len(self.group):
            self._settle({})  # nothing waits for a flush: report the failures at once

    def full(self) -> bool:
        """Whether the group holds as many users as it may, or has been written for long enough: the next new user's batch commits it first."""
        return len(self.held) >= self.limit or (bool(self.held) and time.monotonic() - self.started > GROUP_SECONDS)

    def commit(self) -> None:
        """Make every written batch durable together, release the locks, and make the outcomes ready for :meth:`take`."""
        try:
            self._go_on()
            failed = self.group.flush()
        except BaseException:
            self.abandon()
            raise
        self._settle(failed)

    def _go_on(self) -> None:
        """Sync the barriers of the batches waiting on one (all together), then let each go on, until none waits."""
        while self.waiting:
            failed = self.group.flush_barriers()
            waiting, self.waiting = self.waiting, []
            for index, steps in waiting:
                slot = self.written[index]
                self.group.tag = slot.tag
                result: AppendResult | DialogError
                try:
                    steps.send(failed.get(slot.tag))
                    self.waiting.append((index, steps))  # stopped at its next barrier
                    continue
                except StopIteration as done:
                    result = done.value
                except DialogError as exc:
                    self._let_go_if_unused(slot.user, index)
                    result = exc
                self.written[index] = slot._replace(result=result)

    def take(self) -> list[tuple[Hashable, AppendResult | DialogError]]:
        """The batches whose outcome is known, in the order given (each once)."""
        done, self.done = self.done, []
        return done

    def abandon(self) -> None:
        """Cut back every batch not yet committed and release the locks (nothing is reported for them)."""
        try:
            self.group.abandon()
        finally:
            self.written = []
            self.waiting = []
            self._release(set(self.held))  # folders made for batches now cut back go too (only when nothing else is in them)

    def _settle(self, failed: dict[object, OSError]) -> None:
        emptied: set[str] = set()
        committed: set[int] = set()  # tags whose batch is durable and reported appended
        for slot in self.written:
            result = slot.result
            assert result is not None, "a batch still waits for its barrier"  # _go_on ran every batch's steps to their end
            error = failed.get(slot.tag)
            if error is not None and isinstance(result, AppendResult):
                durable = int(self.group.notes.get(slot.tag, 0))
                failure = storage_error(error, "append to", slot.where)
                if durable:
                    result = PartlyAppended(f"appended {durable} of {slot.size} messages for user {slot.user!r}, then: {failure.message}", appended=durable)
                else:
                    result = failure
                    emptied.add(slot.user)
            self.done.append((slot.key, result))
            if isinstance(result, AppendResult):
                committed.add(slot.tag)
        self.written = []
        self.group.notes.clear()
        kept, self.group.kept = self.group.kept, []
        try:  # before the locks go: the log tells each file's appends in the order they were made
            delta.write(self.journal.root, b"".join(line for tag, line in kept if tag in committed))
        finally:
            self._release(emptied)

    def _hold(self, user: str) -> Folder:
        """The user's dialogs/ folder, its lock held until the next commit (taken now if not yet)."""
        held = self.held.get(user)
        if held is not None:
            return held.dialogs
        if self.full():
            self.commit()
        if not self.held:
            self.started = time.monotonic()
        new_root = not os.path.isdir(self.journal.root)
        made: list[str] = []
        try:
            dialogs, lock = self.journal._lock_in_place(user, self.command, True, made, new_root, timeout=0, later=self.group)
        except LockBusy:
            # Never wait for one lock while holding others: commit what is written, then wait as one append would.
            self.commit()
            made = []
            dialogs, lock = self.journal._lock_in_place(user, self.command, True, made, new_root, later=self.group)
        self.held[user] = _Held(dialogs, lock, made, new_root)
        return dialogs

    def _let_go_if_unused(self, user: str, failed: int = -1) -> None:
        """After a failed batch (``failed``: its place in :attr:`written`, if there): a user locked for it alone, whose folders were made for it, is let go (the folders taken back)."""
        held = self.held.get(user)
        if held is None or not held.made or any(s.user == user for i, s in enumerate(self.written) if i != failed):
            return
        del self.held[user]
        self._let_go(held, True)

    def _release(self, emptied: set[str]) -> None:
        held, self.held = self.held, {}
        for user in sorted(held, reverse=True):
            self._let_go(held[user], user in emptied)

    def _let_go(self, held: _Held, taken_back: bool) -> None:
        try:
            if held.made and taken_back:  # folders made for a batch that is not there: they go, as after a failed append
                self.journal._unmake(held.dialogs, held.made, held.new_root)
        finally:
            held.lock.release()
            held.dialogs.close()


def _group_size() -> int:
    """Users per flush: :data:`GROUP_USERS`, fewer when the open-file limit cannot be raised for that many."""
    import resource

    try:
        allow_open_files(FILES_PER_USER * GROUP_USERS + 64, "a group commit")
    except InvalidInput:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return max(1, min(GROUP_USERS, (soft - 64) // FILES_PER_USER))
    return GROUP_USERS
