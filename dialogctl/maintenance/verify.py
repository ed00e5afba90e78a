"""Checking a journal without changing it: the checks behind ``dialogctl verify``.

verify is strictly read-only: files are opened for reading (``O_NOFOLLOW``,
through :class:`dialogctl.disk.storage.Folder`), no lock is taken and nothing is
created, not even a lock file, so it is safe on a live journal. A record being
appended while verify reads may show up as a torn record, and a large batch
being written (an import) as a torn batch; run it again, or when the servers
are idle, before mending (repair itself takes each user's lock, so it never
meets a batch still being written).

The checks are independent functions, each looking at one kind of thing and
yielding :class:`Finding` values:

* :data:`FILE_CHECKS` get one conversation file, read and parsed once
  (:class:`ReadFile`);
* :data:`FOLDER_CHECKS` get one user's ``dialogs/`` folder (:class:`UserFolder`);
* :data:`ROOT_CHECKS` get the journal root, for a whole-journal run.

Adding a check means writing one function and listing it there. A finding
names the file (relative to the root) and line when known, and says what
``repair`` would do about it (``mend``), or None when a person must decide.
Findings never quote message text.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ..disk import layout as L
from ..disk.fileops import TEMP_MARK
from ..disk.storage import Folder, open_root
from ..disk.tree import open_users, walk_users_tree
from ..errors import FileTooLarge, InvalidInput, NotFound, StorageError, UnsafePath
from ..fileformat.codec import find_frames
from ..fileformat.reader import ParsedFile, parse_conversation
from ..journal.core import Journal
from ..journal.files import FILE_TOO_LARGE, too_large_detail
from ..models import ConversationRef, Damage
from .checks import (
    FILE_CHECKS,
    FOLDER_CHECKS,
    METADATA_TEMP,
    OLD_PLACE,
    ROOT_CHECKS,
    TEMP_FILE,
    UNREADABLE,
    Expectations,
    Finding,
    ReadFile,
    UserFolder,
    collapse_notes,
    lstat,
    special_file,
)


def walk_users(root: str, layout: L.Layout) -> Iterator[tuple[tuple[str, ...], Finding | None]]:
    """Every folder under ``users/`` that holds ``dialogs/``, and what dialogctl cannot use there.

    Yields ``(parts, None)`` for a usable user folder and ``(parts, finding)``
    for an unusable one, a symlink, a folder that cannot be listed, or what an
    interrupted write left. The journal's own walk (:mod:`dialogctl.disk.tree`):
    the same folders in the same order as every other command sees them.
    """
    pending: list[Finding] = []

    def unreadable(where: str, exc: StorageError) -> None:  # the users below it are not checked, and the run says so
        pending.append(unreadable_finding(where, exc.reason or exc.message, None))

    try:
        users = open_users(root)
    except StorageError as exc:
        yield (), unreadable_finding(L.USERS_DIR, exc.reason or exc.message, None)
        return
    if users is None:
        return
    with users:
        for listed in walk_users_tree(users, unreadable):
            for finding in pending:
                yield listed.parts, finding
            pending.clear()
            parts = listed.parts
            if listed.holds_dialogs:
                try:
                    L.check_user_folder(L.user_id_from_parts(parts), parts, layout)
                except InvalidInput as exc:
                    yield (
                        parts,
                        old_place_finding(root, parts, layout)
                        or Finding(listed.rel, None, "leftovers", "unusable user folder", f"dialogctl ignores it: {exc}", None),
                    )
                else:
                    yield parts, None
            for name, is_dir, is_link in reversed(listed.entries):
                path = f"{listed.rel}/{name}"
                temporary = name.startswith(".") and TEMP_MARK in name  # dialogctl's temporary names are hidden
                if temporary and is_dir:
                    yield parts, Finding(path, None, "leftovers", TEMP_FILE, "a user folder left half-removed by an interrupted cleanup", "finish removing it")
                elif temporary and name.startswith(METADATA_TEMP) and listed.holds_dialogs:
                    # Written under the user's lock, so repair takes that lock and needs no age rule.
                    yield (
                        parts,
                        Finding(path, None, "leftovers", TEMP_FILE, "a metadata.yaml rewrite cut short (metadata is derived data)", "move it to quarantine"),
                    )
                elif temporary:
                    yield parts, Finding(path, None, "leftovers", TEMP_FILE, "a temporary file left by an interrupted write", "move it to quarantine")
                elif is_link:
                    yield parts, Finding(path, None, "leftovers", "symlink", "a symlink among the user folders; dialogctl never follows it", None)
    for finding in pending:
        yield (), finding


def unreadable_finding(path: str, reason: str, user: str | None) -> Finding:
    return Finding(path, None, "access", UNREADABLE, reason, None, user)


def note_unreadable(journal: Journal, findings: Iterable[Finding]) -> None:
    """Tell the journal what could not be read, so the command ends with exit 6 however its checks went."""
    for finding in findings:
        if finding.problem == UNREADABLE:
            journal.note_unreadable(finding.path, finding.detail, finding.user)


def old_place_finding(root: str, parts: tuple[str, ...], layout: L.Layout) -> Finding | None:
    """A user folder where dialogctl before 0.2 put a short id (``users/bo/b`` for ``bob``); None for any other folder.

    Its mend is a move to where the servers keep the user, unless that folder
    holds ``dialogs/`` too: then a person must merge the two.
    """
    user = L.old_place_of(parts, layout)
    if user is None:
        return None
    where = "/".join((L.USERS_DIR, *parts))
    target = "/".join((L.USERS_DIR, *layout.user_parts(user)))
    if os.path.lexists(os.path.join(root, target, L.DIALOGS_DIR)):
        return Finding(
            where,
            None,
            "layout",
            OLD_PLACE,
            f"dialogctl before 0.2 kept user {user!r} here, but {target}/, where the servers keep that user, has conversations too: merge them by hand",
            None,
            user,
        )
    return Finding(
        where,
        None,
        "layout",
        OLD_PLACE,
        f"dialogctl before 0.2 kept user {user!r} here; the servers keep that user in {target}/, so dialogctl and the servers miss these files",
        f"move it to {target}/",
        user,
    )


def expectations(journal: Journal, root: Folder) -> Expectations:
    return Expectations(
        owner=os.fstat(root.fd).st_uid,
        group=os.fstat(root.fd).st_gid,
        file_shape=journal.file_shape,
        order_slack=journal.settings.lock_timeout + 1.0,
        conversations=journal.layout().conversations,
    )


class Report(NamedTuple):
    findings: list[Finding]  # problems and notes
    users: int
    files: int

    @property
    def problems(self) -> list[Finding]:
        """The findings that make verify exit 1 (notes do not)."""
        return [f for f in self.findings if f.level == "problem"]


def verify(journal: Journal, users: list[str] | None = None) -> Report:
    """Run every check on the whole journal, or on the given users only."""
    for user in users or []:
        L.validate_user_id(user)  # before anything touches the disk
    findings: list[Finding] = []
    try:
        journal.layout()
    except StorageError as exc:  # the layout record cannot be used: said, and the rest checked with the layout the folders show
        findings.append(_record_finding(journal, exc))
        journal.skip_record()
    with open_root(journal.root) as root:
        expect = expectations(journal, root)
        if users is None:
            for check in ROOT_CHECKS:
                findings.extend(f for f in check(journal, root, expect) if f not in findings)  # the layout record's may be in already
            users = []
            for parts, finding in walk_users(journal.root, journal.layout()):
                if finding is None:
                    users.append(L.user_id_from_parts(parts))
                else:
                    findings.append(finding)
            note_unreadable(journal, findings)
    files = 0
    seen = {(f.path, f.problem) for f in findings}
    for user in users:
        try:
            with journal.dialogs_folder(user) as dialogs:
                user_findings, count = verify_user(journal, user, dialogs, expect)
        except (NotFound, UnsafePath):
            raise
        except StorageError as exc:
            user_findings, count = [unreadable_finding(journal.user_path(user), exc.reason or exc.message, user)], 0
            note_unreadable(journal, user_findings)
        files += count
        for finding in user_findings:
            if (finding.path, finding.problem) not in seen:  # shard folders are shared by users
                seen.add((finding.path, finding.problem))
                findings.append(finding)
    return Report(collapse_notes(findings), len(users), files)


def _record_finding(journal: Journal, exc: StorageError) -> Finding:
    path = "/".join(L.RECORD_PATH)
    try:
        with open_root(journal.root) as root:
            st = lstat(root, L.RECORD_PATH)
    except StorageError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        return special_file(path, st)
    problem = "file too large" if isinstance(exc, FileTooLarge) else "unreadable"
    return Finding(
        path,
        None,
        "layout",
        problem,
        f"{exc.message.replace(os.path.join(journal.root, path), 'the layout record')}; the layout was detected from the folders",
        None,
    )


def verify_user(journal: Journal, user: str, dialogs: Folder, expect: Expectations) -> tuple[list[Finding], int]:
    """Every finding in one user's folder; also how many conversation files were read."""
    folder = read_user_folder(journal, user, dialogs)
    findings: list[Finding] = []
    for check in FOLDER_CHECKS:
        findings.extend(check(folder, expect))
    files = 0
    for conv in read_conversations(journal, folder):
        files += 1
        for file_check in FILE_CHECKS:
            findings.extend(file_check(conv, expect))
    unreadable = [unreadable_finding(path, reason, user) for path, reason in folder.unreadable]
    note_unreadable(journal, unreadable)
    return findings + unreadable, files


def read_user_folder(journal: Journal, user: str, dialogs: Folder) -> UserFolder:
    """The user's ``dialogs/`` as it is; a part that cannot be read is listed in ``unreadable`` and the rest is looked at."""
    rel = journal.user_path(user)
    unreadable: list[tuple[str, str]] = []
    try:
        entries = {e.name: e.stat(follow_symlinks=False) for e in dialogs.entries()}
    except StorageError as exc:
        entries, unreadable = {}, [(rel, exc.reason or exc.message)]
    archived: dict[str, os.stat_result] = {}
    st = entries.get(L.ARCHIVE_DIR)
    if st is not None and stat.S_ISDIR(st.st_mode):
        try:
            with dialogs.open_folder((L.ARCHIVE_DIR,)) as folder:
                archived = {e.name: e.stat(follow_symlinks=False) for e in folder.entries()}
        except StorageError as exc:
            unreadable.append((f"{rel}/{L.ARCHIVE_DIR}", exc.reason or exc.message))
    parts = journal.layout().user_parts(user)
    chain = []
    with open_root(journal.root) as root:
        for depth in range(1, len(parts) + 1):
            with root.open_folder((L.USERS_DIR, *parts[:depth])) as folder:
                chain.append(("/".join((L.USERS_DIR, *parts[:depth])), os.fstat(folder.fd)))
    return UserFolder(user, rel, dialogs, entries, archived, chain, unreadable)


def read_conversations(journal: Journal, folder: UserFolder) -> Iterator[ReadFile]:
    """Each conversation file of the folder, read once (regular files with usable names only)."""
    refs: list[ConversationRef] = []
    for archived, entries in ((False, folder.entries), (True, folder.archived)):
        for name, st in sorted(entries.items()):
            ref = L.conversation_of(folder.user, name, archived)
            if ref is not None and stat.S_ISREG(st.st_mode):
                refs.append(ref)
    for ref in refs:
        try:
            conv = read_conversation(journal, folder.dialogs, ref)
        except (NotFound, UnsafePath):
            raise
        except StorageError as exc:  # reported as a finding by the caller; the other files are checked
            folder.unreadable.append((journal.rel_path(ref), exc.reason or exc.message))
            continue
        if conv is not None:
            yield conv


def read_conversation(journal: Journal, dialogs: Folder, ref: ConversationRef) -> ReadFile | None:
    """One conversation file read and parsed, without touching ``journal.damage``; None if it is gone."""
    folder, name = journal.locate(dialogs, ref)
    rel = journal.rel_path(ref)
    try:
        read = folder.read_with_stat(name, journal.file_limit)  # bytes and identity of the same open file
    except FileTooLarge:
        st = folder.stat(name)
        if st is None:
            return None
        parsed = ParsedFile()
        parsed.damage.append(Damage(rel, None, FILE_TOO_LARGE, too_large_detail(st.st_size, journal.file_limit)))
        return ReadFile(ref.user, ref, rel, st, b"", parsed, [])
    finally:
        if folder is not dialogs:
            folder.close()
    if read is None:
        return None
    data, st = read
    return ReadFile(ref.user, ref, rel, st, data, parse_conversation(data, rel), find_frames(data)[0])
