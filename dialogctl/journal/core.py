"""The journal: every operation on one root, for the CLI and for Python callers.

:class:`Journal` never prints. Reads collect what they could not read in
``journal.damage`` (every intact message is still returned), and writers
raise :mod:`dialogctl.errors` exceptions.

Every mutation of a user's files runs under that user's lock
(:mod:`dialogctl.disk.locking`): append, archive, restore and cleanup. An append
learns the conversation's message count from the last frame line of the file
(:mod:`dialogctl.fileformat.codec`), so its cost does not grow with the conversation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ..disk import layout as L
from ..disk.locking import LockState, probe
from ..disk.storage import Folder, open_root
from ..errors import InvalidInput, NotFound, StorageError, UnsafePath
from ..times import archive_id_for, utc_now
from . import usermeta
from .writing import JournalWriter, move_back, regular_file, unique_name


class RestoreResult(NamedTuple):
    user: str
    restored: str
    into: str
    archived_first: str | None


class Journal(JournalWriter):
    """One journal root and every operation on it.

    Built in layers, one module each: :class:`~dialogctl.journal.files.JournalFiles` (layout, users, files),
    :class:`~dialogctl.journal.reading.JournalReader` (reads),
    :class:`~dialogctl.journal.writing.JournalWriter` (locks, appends, rewrites); archiving, restoring and moving a
    user's folder from an older place are here.
    """

    @classmethod
    def open(
        cls, root: str | os.PathLike[str] | None = None, *, config: str | os.PathLike[str] | None = None, command: str = "python", **settings: Any
    ) -> Journal:
        """The one way to open a journal from Python: ``Journal.open("/srv/journal", archiveThreshold=50)``.

        Settings are named as in the config file and resolved as the command
        line resolves them: these first, then ``DIALOGUE_JOURNAL_*``, the
        config file ``config`` (or the project's and the user's), then the
        defaults. ``root`` is the ``root`` setting (None: from those sources).
        """
        from ..config import load_settings

        flags = {name: value for name, value in settings.items() if value is not None}
        if root is not None:
            flags["root"] = os.fspath(root)
        return cls(load_settings(flags, config), command=command)

    def archive(self, user: str, conversation: str | None = None, archive_id: str | None = None) -> str | None:
        """Move the user's conversation into ``archived/``; None when it was empty."""
        if archive_id is not None:
            L.validate_name(archive_id, "archive id")
        ref = self.resolve(user, conversation)

        def body(dialogs: Folder) -> str | None:
            name, _ = self._target(dialogs, user, ref.id if ref.kind == "session" else "current")
            if dialogs.stat(name) is None and not self.always_there(ref):
                raise self.not_found(ref)
            return self.archive_locked(dialogs, user, name, ref, archive_id)

        return self.locked(user, "archive", body)

    def restore(self, user: str, archive_id: str, conversation: str | None = None) -> RestoreResult:
        """Make an archive the user's conversation again; a non-empty one is archived first."""
        L.validate_user_id(user)
        L.validate_name(archive_id, "archive id")
        if conversation is not None and conversation != "current":
            L.validate_name(conversation)

        restored = f"{L.ARCHIVE_DIR}/{L.archive_file(archive_id)}"

        def body(dialogs: Folder) -> RestoreResult:
            if not dialogs.has_folder(L.ARCHIVE_DIR):
                raise NotFound(f"archive {archive_id!r} of user {user!r} not found (the user has no archives)")
            with dialogs.open_folder((L.ARCHIVE_DIR,)) as archived:
                archive_st = regular_file(archived, L.archive_file(archive_id))
                if archive_st is None:
                    raise NotFound(f"archive {archive_id!r} of user {user!r} not found")
                target = conversation
                if target is None and self.layout().conversations == "sessions":
                    target = archive_id
                name, ref = self._target(dialogs, user, target or "current")
                st = regular_file(dialogs, name)
                moves: list[usermeta.Move] = []
                first: str | None = None
                # The conversation file is the servers' as much as ours: what one appends to it
                # while we restore must survive, so it is swapped with the archive in one step
                # (renameat2), never overwritten, even when it looks empty.
                if st is not None and archived.exchange(L.archive_file(archive_id), dialogs, name):
                    out = archived.stat(L.archive_file(archive_id))  # what was the conversation
                    if out is not None and out.st_size == 0:
                        archived.remove(L.archive_file(archive_id))
                        archived.fsync()
                        moves = [usermeta.Move(restored, name, usermeta.key_of(archive_st), replaced=usermeta.key_of(out))]
                    else:
                        # It sits under the restored archive's name until it is given its own.
                        first = unique_name(archived, ref.id if ref.kind == "session" and ref.id else archive_id_for(utc_now()))
                        try:
                            archived.rename_to(L.archive_file(archive_id), archived, L.archive_file(first))
                        except StorageError:
                            archived.exchange(L.archive_file(archive_id), dialogs, name)
                            raise
                        moves = [
                            usermeta.Move(name, f"{L.ARCHIVE_DIR}/{L.archive_file(first)}", usermeta.key_of(out)),
                            usermeta.Move(restored, name, usermeta.key_of(archive_st)),
                        ]
                elif st is None and archived.move_unless_there(L.archive_file(archive_id), dialogs, name):
                    moves = [usermeta.Move(restored, name, usermeta.key_of(archive_st))]
                if moves:
                    self._keep_metadata(dialogs, lambda meta_folder: usermeta.note_moved(meta_folder, moves, self.modes))
                    return RestoreResult(user, archive_id, ref.name, first)
                # Where the system cannot swap or refuse to overwrite (NFS): archive first, then move in.
                archived_first = self.archive_locked(dialogs, user, name, ref)
                replaced = usermeta.key_of(dialogs.stat(name))  # the empty file, if any, the archive takes the place of
                try:
                    archived.rename_to(L.archive_file(archive_id), dialogs, name)
                except StorageError:
                    if archived_first is not None:  # undo the archive-first step: all as it was
                        move_back(archived, L.archive_file(archived_first), dialogs, name)
                    raise
            self._keep_metadata(
                dialogs,
                lambda meta_folder: usermeta.note_moved(
                    meta_folder, [usermeta.Move(restored, name, usermeta.key_of(archive_st), replaced=replaced)], self.modes
                ),
            )
            return RestoreResult(user, archive_id, ref.name, archived_first)

        return self.locked(user, "restore", body)

    def move_from_old_place(self, user: str, command: str = "repair") -> bool:
        """Move a short id's ``dialogs/`` and ``metadata.yaml`` from where dialogctl before 0.2 kept it to where the servers do.

        (``bob`` from ``users/bo/b/`` to ``users/bo/b/bob/``.) Runs under the
        lock in the folder being moved, the lock any dialogctl writing there
        takes. The new folder is made with the mode (and, as root, the owner)
        of the folder it is made in. Nothing is ever replaced: when the new
        folder already holds ``dialogs/``, nothing changes and the answer is
        False; a ``metadata.yaml`` already there is kept.
        """
        L.validate_user_id(user)
        layout = self.layout()
        new_parts = layout.user_parts(user)
        old_parts = layout.old_user_parts(user)
        if old_parts is None:
            raise InvalidInput(f"user {user!r} has no older place in the {layout.describe_folders()} layout")
        with open_root(self.root) as root:
            try:
                old = root.open_folder((L.USERS_DIR, *old_parts))
                dialogs = old.open_child(L.DIALOGS_DIR)
            except NotFound:
                raise NotFound(f"user {user!r} not found in users/{'/'.join(old_parts)}") from None
            with old, dialogs:
                lock = self._lock(dialogs, user, command)
                lock.acquire()
                try:
                    here, locked = old.stat(L.DIALOGS_DIR), os.fstat(dialogs.fd)
                    if here is None or (here.st_dev, here.st_ino) != (locked.st_dev, locked.st_ino):
                        raise StorageError(f"{dialogs.path} was moved while waiting for its lock")
                    with old.open_folder((new_parts[-1],), create=True, modes=self.modes) as new:
                        if not old.move_unless_there(L.DIALOGS_DIR, new, L.DIALOGS_DIR):
                            old.remove_empty_folders((new_parts[-1],))  # made for nothing
                            return False
                        if old.stat(usermeta.METADATA_FILE) is not None:
                            old.move_unless_there(usermeta.METADATA_FILE, new, usermeta.METADATA_FILE)
                    return True
                finally:
                    lock.release()

    # --- whole-journal views -------------------------------------------------------------

    def locks(self, users: Iterable[str] | None = None) -> Iterator[tuple[str, LockState]]:
        """Each user's lock state (users without a lock file are left out)."""
        for user in self.users() if users is None else users:
            try:
                with self.dialogs_folder(user) as dialogs:
                    state = probe(dialogs)
            except (NotFound, UnsafePath):
                raise
            except StorageError as exc:  # said at the end, naming the folder; the other users' locks are shown
                self.note_unreadable(f"{self.user_path(user)}/{L.LOCK_FILE}", exc, user)
                continue
            if state is not None:
                yield user, state
