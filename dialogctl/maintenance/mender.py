"""Mending one thing at a time: the :class:`Mender` that :func:`dialogctl.maintenance.repair.repair` drives, each step logged and undoable by hand (quarantine keeps the bytes)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

from ..disk import layout as L
from ..disk.fileops import TEMP_MARK
from ..disk.paths import CATALOG_FILE, QUARANTINE_DIR, STATS_FILE, SYSTEM_DIR
from ..disk.storage import Folder, open_root
from ..errors import ChangedUnderneath, DialogError
from ..fileformat.codec import check_message
from ..fileformat.reader import TORN_BATCH
from ..journal.core import Journal
from ..journal.files import FILE_TOO_LARGE, FileSeen
from .checks import (
    CATALOG_STALE,
    FOREIGN_OWNER,
    METADATA_TEMP,
    OLD_PLACE,
    SHARED_FILE,
    UNFINISHED_ARCHIVE,
    Expectations,
    Finding,
    ReadFile,
    UserFolder,
    check_archive_moves,
    check_frame_numbers,
    check_records,
    check_shape,
    live_backup_of,
)
from .recovery import RepairAction, recover, usable_user_folder
from .verify import note_unreadable, read_conversations, read_user_folder, verify_user, walk_users

# Temp files in the journal's own folders are written without a user lock; one
# younger than this may belong to a write still in progress.
_TEMP_AGE = 60.0


_DERIVED_TEMPS = (f".{CATALOG_FILE}{TEMP_MARK}", f".{STATS_FILE}{TEMP_MARK}")


class Mender:
    """One repair run: its actions, its quarantine folder, what it leaves to a person."""

    def __init__(self, journal: Journal, dry_run: bool) -> None:
        self.journal = journal
        self.dry_run = dry_run
        self.actions: list[RepairAction] = []
        self.done: set[tuple[str, str]] = set()
        self.rewritten: set[str] = set()
        self.unmended: list[Finding] = []
        self.expect: Expectations | None = None
        self.run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}-{os.urandom(3).hex()}"
        self.quarantine_rel = f"{SYSTEM_DIR}/{QUARANTINE_DIR}/{self.run}"
        self.quarantined = False
        self.as_root = os.geteuid() == 0

    # --- the journal's own folders -------------------------------------------------------

    def mend_root(self, root: Folder) -> list[str]:
        """Mend leftovers outside user folders; return the users to mend next."""
        from .checks import ROOT_CHECKS

        assert self.expect is not None
        users: list[str] = []
        moves: list[Finding] = []
        for parts, finding in walk_users(self.journal.root, self.journal.layout()):
            if finding is None:
                users.append(L.user_id_from_parts(parts))
            elif finding.mend is None:
                self.unmended.append(finding)
                note_unreadable(self.journal, [finding])
            elif finding.problem == OLD_PLACE:
                moves.append(finding)  # after the walk, which must not meet the moved folders again
            else:
                self._mend_users_leftover(root, finding)
        for finding in moves:
            if self._move_from_old_place(finding) and finding.user not in users:
                users.append(finding.user or "")
        findings = [f for check in ROOT_CHECKS for f in check(self.journal, root, self.expect)]
        catalog_done = False
        for finding in findings:
            if finding.problem == CATALOG_STALE:
                if not catalog_done:
                    catalog_done = True
                    self._discard_catalog(root)
            elif finding.level == "note":
                continue
            elif finding.problem == FOREIGN_OWNER and self.as_root:
                self._mend_access(root, tuple(finding.path.split("/")) if finding.path != "." else (), finding)
            elif finding.mend is not None and TEMP_MARK in finding.path:
                parent, _, name = finding.path.rpartition("/")
                with root.open_folder(tuple(parent.split("/"))) as folder:
                    # Derived files (catalog, stats.yaml) are written best-effort: a writer that
                    # loses its temp file just does not save, so their temps need no age rule.
                    derived = name.startswith(_DERIVED_TEMPS)
                    self._quarantine_temp(folder, name, finding.path, None, min_age=0.0 if derived else _TEMP_AGE)
            else:
                self.unmended.append(finding)
        return users

    def _move_from_old_place(self, finding: Finding) -> bool:
        """Move a short id's folder from where dialogctl before 0.2 kept it; whether it now is where the servers keep it."""
        user = finding.user or ""
        target = "/".join((L.USERS_DIR, *self.journal.layout().user_parts(user)))
        action = RepairAction(user, finding.path, "move", f"move dialogs/ and metadata.yaml to {target}/, where the servers keep user {user!r}")
        if self.dry_run:
            self.actions.append(action)
            return False
        if not self.journal.move_from_old_place(user):
            self.unmended.append(finding._replace(detail=f"{target}/ already holds conversations of user {user!r}: merge them by hand", mend=None))
            return False
        self.actions.append(action)
        return True

    def _discard_catalog(self, root: Folder) -> None:
        """The catalog is a cache of the files: drop it and let the next scan rebuild it."""

        def run() -> None:
            with root.open_folder((SYSTEM_DIR,)) as system:
                system.remove(CATALOG_FILE)

        self._do(RepairAction(None, f"{SYSTEM_DIR}/{CATALOG_FILE}", "discard catalog", "delete the catalog; the next stats or list rebuilds it"), run)

    def _mend_users_leftover(self, root: Folder, finding: Finding) -> None:
        parts = tuple(finding.path.split("/"))
        with root.open_folder(parts[:-1]) as parent:
            st = parent.stat(parts[-1])
            if st is None:
                return
            if stat.S_ISDIR(st.st_mode):
                self._do(
                    RepairAction(None, finding.path, "finish removal", "delete a user folder an interrupted cleanup was removing"),
                    lambda: parent.remove_tree(parts[-1]),
                )
            elif parts[-1].startswith(METADATA_TEMP) and len(parts) > 2 and usable_user_folder(parts[1:-1], self.journal.layout()):
                # metadata.yaml is rewritten under the user's lock: holding it, a temp file is a leftover.
                user = L.user_id_from_parts(parts[1:-1])
                if self.dry_run:
                    self._quarantine_temp(parent, parts[-1], finding.path, user)
                else:
                    self.journal.locked(user, "repair", lambda _dialogs: self._quarantine_temp(parent, parts[-1], finding.path, user))
            else:
                self._quarantine_temp(parent, parts[-1], finding.path, None, min_age=_TEMP_AGE)

    # --- one user ----------------------------------------------------------------------------

    def mend_user(self, user: str) -> None:
        def body(dialogs: Folder) -> None:
            self._mend_user_locked(user, dialogs)

        if self.dry_run:
            with self.journal.dialogs_folder(user) as dialogs:
                body(dialogs)
        else:
            self.journal.locked(user, "repair", body)

    def _mend_user_locked(self, user: str, dialogs: Folder) -> None:
        assert self.expect is not None
        folder = read_user_folder(self.journal, user, dialogs)
        for conv in read_conversations(self.journal, folder):
            if any(d.kind == FILE_TOO_LARGE for d in conv.parsed.damage):
                continue  # not read, so never rewritten: verify leaves it to a person
            if any(check_records(conv, self.expect)) or any(check_frame_numbers(conv, self.expect)) or any(check_shape(conv, self.expect)):
                self._rewrite(dialogs, conv)
        for where, entries in ((None, folder.entries), (L.ARCHIVE_DIR, folder.archived)):
            for name in sorted(n for n in entries if TEMP_MARK in n):
                self._mend_temp_in(dialogs, where, name, folder)
        for finding in check_archive_moves(folder, self.expect):
            self._mend_archive_move(dialogs, folder, finding)
        # Owners are judged on the files as they are now (a rewritten file keeps the
        # owner and mode of the file it replaced); modes are never changed.
        findings, _ = verify_user(self.journal, user, dialogs, self.expect)
        with open_root(self.journal.root) as root:
            for finding in findings:
                if finding.level == "note":
                    continue
                if finding.problem == FOREIGN_OWNER and self.as_root:
                    self._mend_access(root, tuple(finding.path.split("/")), finding)
                elif self.dry_run and finding.mend is not None:
                    continue  # mended above
                else:
                    self.unmended.append(finding)

    def _rewrite(self, dialogs: Folder, conv: ReadFile) -> None:
        recovery = recover(conv.data, conv.rel_path)
        messages, unwritable = [], 0
        for msg in recovery.messages:
            try:
                check_message(msg)
            except DialogError:
                unwritable += 1  # read from YAML but not representable in the journal (e.g. metadata nested too deep)
                continue
            messages.append(msg)
        dropped = len(recovery.dropped) + unwritable
        detail = f"kept {len(messages)} message(s)"
        if recovery.recovered:
            detail += f", {recovery.recovered} read by decoding the reference writer's defects"
        if dropped:
            torn = sum(d.kind == TORN_BATCH for d in recovery.dropped)
            if torn:
                items = dropped - torn
                detail += f"; left out the {recovery.torn_records} record(s) of {torn} torn batch(es)" + (f" and {items} unreadable item(s)" if items else "")
                detail += ", kept in quarantine"
            else:
                detail += f"; left out {dropped} unreadable item(s), kept in quarantine"
        action = RepairAction(conv.user, conv.rel_path, "rewrite", detail, len(messages), recovery.recovered, dropped)
        self.rewritten.add(conv.rel_path)

        def run() -> None:
            undo = self._put_in_quarantine(conv.rel_path, conv.data)
            try:
                self.journal.write_conversation(dialogs, conv.ref, messages, replacing=FileSeen.of(conv.stat, len(conv.data)))
            except ChangedUnderneath as exc:
                undo()
                self.unmended.append(Finding(conv.rel_path, None, "records", "changed during repair", str(exc), None, conv.user))
            except BaseException:
                undo()  # the file is as it was: a copy of it in quarantine would say otherwise
                raise

        self._do(action, run)

    def _mend_temp_in(self, dialogs: Folder, where: str | None, name: str, folder: UserFolder) -> None:
        rel = f"{folder.rel_path}/{where + '/' if where else ''}{name}"
        entries = folder.archived if where else folder.entries
        sub = dialogs if where is None else dialogs.open_folder((where,))
        try:
            target = live_backup_of(name, entries[name], entries)
            if target is not None:
                self._remove_backup_name(sub, name, target, rel, folder.user)
            else:
                self._quarantine_temp(sub, name, rel, folder.user)
        finally:
            if sub is not dialogs:
                sub.close()

    def _remove_backup_name(self, folder: Folder, name: str, target: str, rel: str, user: str | None) -> None:
        """Drop a rewrite's backup name of a live file: its bytes are the live file's, so nothing goes to quarantine."""

        def run() -> None:
            st, live = folder.stat(name), folder.stat(target)
            if st is None or live is None or (st.st_dev, st.st_ino) != (live.st_dev, live.st_ino):
                return  # changed since it was looked at (we hold the user's lock, so only by hand): leave it
            folder.remove(name)
            folder.fsync()

        self._do(RepairAction(user, rel, "remove", f"remove a second name of {target} left by an interrupted rewrite (the file keeps its own name)"), run)

    def _quarantine_temp(self, folder: Folder, name: str, rel: str, user: str | None, min_age: float = 0.0) -> None:
        st = folder.stat(name)
        if st is None:
            return
        if not stat.S_ISREG(st.st_mode):
            self.unmended.append(Finding(rel, None, "leftovers", "not a regular file", "a temp name that is not a regular file", None, user))
            return
        if st.st_size > self.journal.file_limit:
            self.unmended.append(
                Finding(
                    rel,
                    None,
                    "leftovers",
                    FILE_TOO_LARGE,
                    f"a leftover temp file of {st.st_size} bytes, too large to copy to quarantine (maxFileMB)",
                    None,
                    user,
                )
            )
            return
        if min_age and time.time() - st.st_mtime < min_age:
            self.unmended.append(
                Finding(rel, None, "leftovers", "temp file in use", "a temp file younger than a minute may belong to a write in progress", None, user)
            )
            return

        def run() -> None:
            data = folder.read_bytes(name)
            if data is None:
                return
            undo = self._put_in_quarantine(rel, data)
            try:
                folder.remove(name)
            except BaseException:
                undo()  # the temp file stays where it was: no second copy of it in quarantine
                raise
            folder.fsync()

        self._do(RepairAction(user, rel, "quarantine", f"move a leftover temp file ({st.st_size} bytes) to quarantine"), run)

    def _mend_archive_move(self, dialogs: Folder, folder: UserFolder, finding: Finding) -> None:
        if finding.problem == UNFINISHED_ARCHIVE:
            self._do(
                RepairAction(folder.user, finding.path, "create", "create the empty current conversation the archive did not get to"),
                lambda: dialogs.create_empty(L.CURRENT_FILE, self.journal.modes),
            )
        elif finding.problem == SHARED_FILE:
            name = finding.path.rsplit("/", 1)[1]
            ref = L.conversation_of(folder.user, name)
            assert ref is not None  # verify names only conversation files as shared
            self._do(
                RepairAction(folder.user, finding.path, "finish move", "start an empty conversation; the archive keeps the messages"),
                lambda: self.journal.write_conversation(dialogs, ref, []),
            )
        else:
            self.unmended.append(finding)

    # --- permissions and owners -------------------------------------------------------------

    def _mend_access(self, root: Folder, parts: tuple[str, ...], finding: Finding) -> None:
        if not parts:
            self._fix_access(root, None, ".", os.fstat(root.fd), finding)
            return
        with root.open_folder(parts[:-1]) as parent:
            st = parent.stat(parts[-1])
            if st is not None and not stat.S_ISLNK(st.st_mode):
                self._fix_access(parent, parts[-1], finding.path, st, finding)

    def _fix_access(self, parent: Folder, name: str | None, rel: str, st: os.stat_result, finding: Finding) -> None:
        assert self.expect is not None
        expect = self.expect
        if finding.problem == FOREIGN_OWNER:
            self._do(
                RepairAction(finding.user, rel, "set owner", f"uid {st.st_uid} -> {expect.owner}"), lambda: parent.set_owner(name, expect.owner, expect.group)
            )

    # --- doing, or only saying -----------------------------------------------------------------

    def _do(self, action: RepairAction, run: Callable[[], object]) -> None:
        if (action.path, action.action) in self.done:
            return  # a shard folder shared by several users
        self.done.add((action.path, action.action))
        self.actions.append(action)
        if not self.dry_run:
            run()

    def _put_in_quarantine(self, rel: str, data: bytes) -> Callable[[], None]:
        """Keep exact bytes under ``system/quarantine/<run>/<rel>`` before anything changes them; returns how to take them back.

        A copy that cannot be written leaves no folder behind, and the caller
        takes a copy back when the change it was made for fails, so a failed
        repair leaves no quarantine of files it did not change.
        """
        parts = (SYSTEM_DIR, QUARANTINE_DIR, self.run, *rel.split("/"))
        made: list[str] = []
        with open_root(self.journal.root) as root:
            try:
                with root.open_folder(parts[:-1], create=True, modes=self.journal.modes, made_paths=made) as folder:
                    folder.write_atomic(parts[-1], data, self.journal.modes)
            except BaseException:
                root.remove_made(made)
                raise
        was_quarantined, self.quarantined = self.quarantined, True

        def undo() -> None:
            try:
                with open_root(self.journal.root) as top:
                    with top.open_folder(parts[:-1]) as folder:
                        folder.remove_quietly(parts[-1])
                    top.remove_made(made)
            except (OSError, DialogError):
                pass
            self.quarantined = was_quarantined

        return undo
