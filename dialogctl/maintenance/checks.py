"""verify's checks, as tables: one function per check, run on each conversation file, each user folder, and the root.

A new check is a function here and one entry in :data:`FILE_CHECKS`, :data:`FOLDER_CHECKS` or :data:`ROOT_CHECKS`.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from ..disk import layout as L
from ..disk.fileops import MAX_SMALL_FILE, TEMP_MARK, backup_target, human_size, kind_of
from ..disk.paths import CLEANUP_LOG, OWN_FILES, QUARANTINE_DIR, SYSTEM_DIR
from ..disk.storage import Folder
from ..errors import NotFound, StorageError
from ..fileformat.codec import Frame
from ..fileformat.reader import TORN_BATCH, ParsedFile
from ..journal.core import Journal
from ..journal.files import FILE_TOO_LARGE
from ..journal.usermeta import METADATA_FILE
from ..models import ROLES, ConversationRef
from ..times import TIMESTAMP_RULE, parse_timestamp

METADATA_TEMP = f".{METADATA_FILE}{TEMP_MARK}"  # how usermeta's atomic rewrite names its temp file


# What repair does about each kind of damage the reader reports. Unreadable
# items are dropped from the live file, but their bytes are kept in quarantine.
_DAMAGE_MENDS = {
    "torn record": "drop the torn record (its bytes are kept in quarantine)",
    TORN_BATCH: "drop every record of the torn batch (its bytes are kept in quarantine)",
    "glued separator": "rewrite the file with the messages split apart",
    "checksum mismatch": "rewrite the record with a fresh frame (the text is kept as it is now)",
    "invalid YAML": "decode it as the reference writer meant it, else drop it to quarantine",
}


_DROP = "drop the unreadable text from the file (its bytes are kept in quarantine)"


# Problem names (the ``problem`` field) that repair acts on besides reader damage.
FRAME_NUMBERING = "frame numbering"


TEMP_FILE = "leftover temp file"


BACKUP_LINK = "leftover backup name"


CATALOG_STALE = "catalog out of step"


UNFINISHED_ARCHIVE = "unfinished archive"


SHARED_FILE = "half-finished archive move"


TOO_OPEN = "writable by others"


FOREIGN_OWNER = "foreign owner"


READABLE = "readable by others"


DOCUMENTS_SHAPE = "documents shape"


OLD_PLACE = "user folder in the place dialogctl before 0.2 used"


UNREADABLE = "unreadable"  # a file or folder dialogctl may not read: its detail is the system's reason


class Finding(NamedTuple):
    """One problem found in the journal."""

    path: str  # relative to the root; "." is the root itself
    line: int | None
    check: str  # the check that found it
    problem: str  # short name of the problem
    detail: str  # one sentence; never quotes message text
    mend: str | None  # what `dialogctl repair` does about it; None: a person must look
    user: str | None = None
    level: str = "problem"  # "problem" (verify exits 1), or "note" (said, but nothing to mend)

    def to_json(self) -> dict[str, object]:
        return {
            "level": self.level,
            "user": self.user,
            "path": self.path,
            "line": self.line,
            "check": self.check,
            "problem": self.problem,
            "detail": self.detail,
            "repair": self.mend,
        }

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.problem}: {self.detail}"


class Expectations(NamedTuple):
    """What the journal's files should look like, from its settings and its root."""

    owner: int  # uid that owns the journal root
    group: int  # and its gid
    file_shape: str  # "sequence" or "documents": what the journal's servers append to
    order_slack: float  # seconds a timestamp may run backwards (taken before waiting for the lock)
    conversations: str  # "current" or "sessions"


class ReadFile(NamedTuple):
    """One conversation file as verify reads it: bytes, stat, parse and frames, read once for every file check (the journal's :class:`~dialogctl.journal.files.ConversationFile` is only where it lies)."""

    user: str
    ref: ConversationRef
    rel_path: str
    stat: os.stat_result
    data: bytes
    parsed: ParsedFile
    frames: list[Frame]


class UserFolder(NamedTuple):
    """One user's ``dialogs/`` folder as it is on disk."""

    user: str
    rel_path: str  # users/.../dialogs
    dialogs: Folder
    entries: dict[str, os.stat_result]  # name -> lstat, in dialogs/
    archived: dict[str, os.stat_result]  # name -> lstat, in dialogs/archived/ (empty if none)
    chain: list[tuple[str, os.stat_result]]  # the folders from users/<first part> down to the user's folder
    unreadable: list[tuple[str, str]]  # (path, reason) of what could not be read here; the rest was checked


FileCheck = Callable[[ReadFile, Expectations], Iterable[Finding]]


FolderCheck = Callable[[UserFolder, Expectations], Iterable[Finding]]


RootCheck = Callable[[Journal, Folder, Expectations], Iterable[Finding]]


def check_records(conv: ReadFile, expect: Expectations) -> Iterator[Finding]:
    """Parse errors, torn records, duplicate keys, glued separators, checksum mismatches."""
    for damage in conv.parsed.damage:
        mend = None if damage.kind == FILE_TOO_LARGE else _DAMAGE_MENDS.get(damage.kind, _DROP)  # too large: a person decides (maxFileMB, or archive it away)
        yield Finding(conv.rel_path, damage.line, "records", damage.kind, damage.detail, mend, conv.user)


def check_frame_numbers(conv: ReadFile, expect: Expectations) -> Iterator[Finding]:
    """The last frame's ``n`` is the file's message count, which appends continue from."""
    if not conv.frames or conv.parsed.damage or conv.parsed.framed != len(conv.parsed.messages):
        # Damaged files are rewritten with fresh frames anyway; and a server's item
        # (which the servers append without a lock, so also between our look at the
        # count and our write) legitimately moves the count past the frames.
        return
    last = conv.frames[-1]
    total = len(conv.parsed.messages)
    if last.n != total:
        yield Finding(
            conv.rel_path,
            conv.data.count(b"\n", 0, last.end) + 1,
            "frames",
            FRAME_NUMBERING,
            f"the last record's frame counts {last.n} messages (n={last.n}), but the file holds {total}: records were removed or copied by hand",
            "rewrite the file with fresh frames",
            conv.user,
        )


def check_roles(conv: ReadFile, expect: Expectations) -> Iterator[Finding]:
    unknown = [i for i, msg in enumerate(conv.parsed.messages) if msg.role not in ROLES]  # indexes from 0, as show and export number them
    if unknown:
        yield Finding(
            conv.rel_path,
            None,
            "roles",
            "unknown role",
            f"{len(unknown)} message(s) have a role other than {', '.join(ROLES)} (first: index {unknown[0]})",
            None,
            conv.user,
        )


def check_timestamps(conv: ReadFile, expect: Expectations) -> Iterator[Finding]:
    unreadable: list[int] = []
    backwards: list[int] = []
    previous = None
    for number, msg in enumerate(conv.parsed.messages):  # indexes from 0, as show and export number them
        moment = parse_timestamp(msg.timestamp)
        if moment is None:
            unreadable.append(number)
            continue
        if previous is not None and (previous - moment).total_seconds() > expect.order_slack:
            backwards.append(number)
        previous = moment if previous is None or moment > previous else previous
    if unreadable:
        yield Finding(
            conv.rel_path,
            None,
            "timestamps",
            "unreadable timestamp",
            f"{len(unreadable)} message(s) have a timestamp that is not {TIMESTAMP_RULE} (first: index {unreadable[0]}); readers count them but place them at no time",
            None,
            conv.user,
        )
    if backwards:
        yield Finding(
            conv.rel_path,
            None,
            "timestamps",
            "timestamps out of order",
            f"{len(backwards)} message(s) are older than a message before them by more than {expect.order_slack:g} s (first: index {backwards[0]})",
            None,
            conv.user,
            level="note",  # the servers stamp what their clients send: worth knowing, nothing to mend
        )


def check_file_access(conv: ReadFile, expect: Expectations) -> Iterator[Finding]:
    yield from access_findings(conv.rel_path, conv.stat, expect, conv.user)


def check_shape(conv: ReadFile, expect: Expectations) -> Iterator[Finding]:
    """A file of ``---`` documents in a journal whose servers append ``- role:`` items to a YAML sequence."""
    if expect.file_shape == "sequence" and conv.parsed.form == "documents" and conv.parsed.messages:
        yield Finding(
            conv.rel_path,
            None,
            "shape",
            DOCUMENTS_SHAPE,
            "a file of --- documents (as dialogctl before 0.2 wrote them): a server's next append, a '- role:' item, makes it invalid YAML for the servers",
            "rewrite it as a YAML sequence, the shape the servers append to (fileShape)",
            conv.user,
        )


FILE_CHECKS: list[FileCheck] = [check_records, check_frame_numbers, check_shape, check_roles, check_timestamps, check_file_access]


def check_leftovers(folder: UserFolder, expect: Expectations) -> Iterator[Finding]:
    """Temp files left by a rewrite that was interrupted, and things dialogctl will not touch."""
    for where, entries in ((folder.rel_path, folder.entries), (f"{folder.rel_path}/{L.ARCHIVE_DIR}", folder.archived)):
        for name, st in entries.items():
            path = f"{where}/{name}"
            target = live_backup_of(name, st, entries)
            if target is not None:
                yield Finding(
                    path,
                    None,
                    "leftovers",
                    BACKUP_LINK,
                    f"a second name of {target}, left by a rewrite interrupted before its rename ({target} is intact and unchanged)",
                    "remove the second name (the file keeps its own)",
                    folder.user,
                )
            elif TEMP_MARK in name:
                yield Finding(
                    path,
                    None,
                    "leftovers",
                    TEMP_FILE,
                    "a temporary file left by an interrupted rewrite (the file it was meant to replace is intact)",
                    "move it to quarantine",
                    folder.user,
                )
            elif stat.S_ISLNK(st.st_mode) and (name.endswith(L.YAML_SUFFIX) or name in (L.ARCHIVE_DIR, L.LOCK_FILE)):
                yield Finding(
                    path, None, "leftovers", "symlink", "a symlink where the journal keeps its own files; dialogctl never follows it", None, folder.user
                )
            elif (name.endswith(L.YAML_SUFFIX) or name == L.LOCK_FILE) and not stat.S_ISREG(st.st_mode):
                yield special_file(path, st, folder.user)
            elif name.endswith(L.YAML_SUFFIX) and not usable_file_name(name, where is not folder.rel_path):
                yield Finding(
                    path, None, "leftovers", "unusable name", "the name is not a valid conversation or archive id, so dialogctl ignores it", None, folder.user
                )


def check_archive_moves(folder: UserFolder, expect: Expectations) -> Iterator[Finding]:
    """An archive whose second step did not run, or a file that is both active and archived."""
    if expect.conversations == "current" and L.CURRENT_FILE not in folder.entries and any(is_conversation(n, s) for n, s in folder.archived.items()):
        yield Finding(
            f"{folder.rel_path}/{L.CURRENT_FILE}",
            None,
            "archive moves",
            UNFINISHED_ARCHIVE,
            "the conversation was moved to archived/ but the new empty one was not created",
            "create the empty current conversation",
            folder.user,
        )
    archived = {(s.st_dev, s.st_ino): n for n, s in folder.archived.items() if is_conversation(n, s)}
    active = {(s.st_dev, s.st_ino): n for n, s in folder.entries.items() if is_conversation(n, s)}
    for key, name in active.items():
        if key in archived:
            yield Finding(
                f"{folder.rel_path}/{name}",
                None,
                "archive moves",
                SHARED_FILE,
                f"this file is also {L.ARCHIVE_DIR}/{archived[key]}: a move into archived/ stopped half-way, so its messages show twice",
                "finish the move: start an empty conversation (the archive keeps the messages)",
                folder.user,
            )
    for where, entries in ((folder.rel_path, folder.entries), (f"{folder.rel_path}/{L.ARCHIVE_DIR}", folder.archived)):
        # A rewrite's backup name (reported as a leftover, and removed by repair) is not another writer's.
        backups = Counter((s.st_dev, s.st_ino) for n, s in entries.items() if live_backup_of(n, s, entries) is not None)
        for name, st in entries.items():
            key = (st.st_dev, st.st_ino)
            if is_conversation(name, st) and st.st_nlink - backups[key] > 1 and not (key in active and key in archived):
                yield Finding(
                    f"{where}/{name}",
                    None,
                    "archive moves",
                    "hard link",
                    f"the file has {st.st_nlink} names; a write through another name would change this conversation",
                    None,
                    folder.user,
                )


def check_folder_access(folder: UserFolder, expect: Expectations) -> Iterator[Finding]:
    """The user's folders, archived/ and the lock file (conversation files are checked with their content)."""
    for path, st in folder.chain:
        yield from access_findings(path, st, expect, folder.user)
    own = os.fstat(folder.dialogs.fd)
    yield from access_findings(folder.rel_path, own, expect, folder.user)
    lock = folder.entries.get(L.LOCK_FILE)
    if lock is not None and stat.S_ISREG(lock.st_mode):
        yield from access_findings(f"{folder.rel_path}/{L.LOCK_FILE}", lock, expect, folder.user)
    archived = folder.entries.get(L.ARCHIVE_DIR)
    if archived is not None and stat.S_ISDIR(archived.st_mode):
        yield from access_findings(f"{folder.rel_path}/{L.ARCHIVE_DIR}", archived, expect, folder.user)


def check_metadata_file(folder: UserFolder, expect: Expectations) -> Iterator[Finding]:
    """The user's ``metadata.yaml``, beside ``dialogs/``: a FIFO, device or link there is never opened."""
    if not folder.chain:
        return
    user_path = folder.chain[-1][0]
    try:
        with folder.dialogs.open_folder(("..",)) as user_folder:
            st = user_folder.stat(METADATA_FILE)
    except (NotFound, StorageError):
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        yield special_file(f"{user_path}/{METADATA_FILE}", st, folder.user)
    elif st is not None and st.st_size > MAX_SMALL_FILE:
        yield Finding(
            f"{user_path}/{METADATA_FILE}",
            None,
            "leftovers",
            FILE_TOO_LARGE,
            f"{human_size(st.st_size)}, more than the {human_size(MAX_SMALL_FILE)} dialogctl reads of it: it is ignored (derived data), and the next append writes it afresh",
            None,
            folder.user,
        )


FOLDER_CHECKS: list[FolderCheck] = [check_leftovers, check_archive_moves, check_folder_access, check_metadata_file]


def check_root_access(journal: Journal, root: Folder, expect: Expectations) -> Iterator[Finding]:
    """The root and the journal's own folders and files: owner and permissions."""
    yield from access_findings(".", os.fstat(root.fd), expect)
    for parts in ((L.USERS_DIR,), L.RECORD_PATH[:-1], (SYSTEM_DIR,), (SYSTEM_DIR, QUARANTINE_DIR)):
        st = lstat(root, parts)
        if st is not None and stat.S_ISDIR(st.st_mode):
            yield from access_findings("/".join(parts), st, expect)
    for parts in (L.RECORD_PATH, CLEANUP_LOG):
        st = lstat(root, parts)
        if st is not None and stat.S_ISREG(st.st_mode):
            yield from access_findings("/".join(parts), st, expect)


def check_root_leftovers(journal: Journal, root: Folder, expect: Expectations) -> Iterator[Finding]:
    """Temp files in the journal's own folders (user folders are walked by :func:`walk_users`)."""
    for parts in (L.RECORD_PATH[:-1], (SYSTEM_DIR,)):
        try:
            folder = root.open_folder(parts)
        except NotFound:
            continue
        with folder:
            for entry in folder.entries():
                if TEMP_MARK in entry.name:
                    yield Finding(
                        f"{'/'.join(parts)}/{entry.name}",
                        None,
                        "leftovers",
                        TEMP_FILE,
                        "a temporary file left by an interrupted write",
                        "move it to quarantine",
                    )


def check_catalog(journal: Journal, root: Folder, expect: Expectations) -> Iterator[Finding]:
    """The saved catalog (``system/catalog.bin``) against the files it summarises.

    An entry whose file changed since is merely out of date (the next scan
    refreshes it); an entry that matches its file but disagrees with a re-read,
    or a torn catalog, is reported. The catalog is only a cache of the files,
    so repair discards it and the next ``stats`` or ``list`` rebuilds it.
    """
    from ..journal import catalog

    st = lstat(root, (SYSTEM_DIR, catalog.CATALOG_FILE))
    if st is not None and not stat.S_ISREG(st.st_mode):
        yield special_file(f"{SYSTEM_DIR}/{catalog.CATALOG_FILE}", st)  # never opened; not dialogctl's to remove either
        return
    for problem in catalog.check(journal):
        yield Finding(problem.path, None, "catalog", CATALOG_STALE, problem.problem, "discard the catalog; the next scan rebuilds it")


def check_own_files(journal: Journal, root: Folder, expect: Expectations) -> Iterator[Finding]:
    """The journal's own files (layout record, logs, the catalog's lock, stats.yaml): a FIFO, device, socket,
    folder or link there is reported, and dialogctl never opens it (the catalog itself: :func:`check_catalog`)."""
    for parts in OWN_FILES:
        st = lstat(root, parts)
        if st is not None and not stat.S_ISREG(st.st_mode):
            yield special_file("/".join(parts), st)


ROOT_CHECKS: list[RootCheck] = [check_root_access, check_root_leftovers, check_own_files, check_catalog]


def access_findings(path: str, st: os.stat_result, expect: Expectations, user: str | None = None) -> Iterator[Finding]:
    """An owner other than the root's; who else may write (a problem) or read (a note) it.

    The servers' own journals are 0644 files in 0755 folders: readable by
    others, which may be intended (a note that changes no exit code), never
    writable by them (anyone in the group, or on the machine, could change or
    remove conversations). Repair never changes a mode: that is the
    operator's decision, and the servers may rely on it.
    """
    if st.st_uid != expect.owner:
        yield Finding(
            path,
            None,
            "access",
            FOREIGN_OWNER,
            f"owned by uid {st.st_uid}, not by uid {expect.owner} who owns the journal root; dialogctl and the servers may not be able to write it",
            "give it to the root's owner (only when repair runs as root)",
            user,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = " and ".join(word for word, bits in (("its group", 0o020), ("other users", 0o002)) if mode & bits)
        yield Finding(
            path,
            None,
            "access",
            TOO_OPEN,
            f"mode {mode:04o}: {who} can write it, and so change or remove conversations (chmod g-w,o-w if that is not intended)",
            None,
            user,
        )
    elif mode & 0o044:
        who = " and ".join(word for word, bits in (("its group", 0o040), ("other users", 0o004)) if mode & bits)
        yield Finding(path, None, "access", READABLE, f"mode {mode:04o}: readable by {who}", None, user, level="note")


def collapse_notes(findings: list[Finding]) -> list[Finding]:
    """One line for every path readable by others (a journal of 0644 files would otherwise list each)."""
    readable = [f for f in findings if f.problem == READABLE]
    if len(readable) <= 1:
        return findings
    rest = [f for f in findings if f.problem != READABLE]
    users = {f.user for f in readable}
    summary = Finding(
        ".",
        None,
        "access",
        READABLE,
        f"{len(readable)} files and folders are readable by group or others (first: {readable[0].path}), as the servers' own 0644 files "
        "and 0755 folders are: fine unless the conversations must stay private",
        None,
        users.pop() if len(users) == 1 else None,
        level="note",
    )
    return rest + [summary]


def special_file(path: str, st: os.stat_result, user: str | None = None) -> Finding:
    """Something other than a regular file under a name where the journal keeps one of its files."""
    return Finding(
        path,
        None,
        "leftovers",
        "symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file",
        f"{kind_of(st.st_mode)} where the journal keeps a regular file; dialogctl never opens it, follows it or reads through it",
        None,
        user,
    )


def lstat(root: Folder, parts: tuple[str, ...]) -> os.stat_result | None:
    if len(parts) == 1:
        return root.stat(parts[0])
    try:
        with root.open_folder(parts[:-1]) as parent:
            return parent.stat(parts[-1])
    except NotFound:
        return None


def live_backup_of(name: str, st: os.stat_result, entries: dict[str, os.stat_result]) -> str | None:
    """The conversation file ``name`` is a second name of, when it is a rewrite's backup name of it; else None.

    :meth:`dialogctl.disk.storage.Folder.write_atomic` links the old file to a
    backup name just before its rename: a kill in between leaves the live file
    with that second name (and its temp file beside it). A backup name of a
    file it is not a name of any more (the rename was done) is an ordinary
    leftover: the old bytes.
    """
    target = backup_target(name)
    live = entries.get(target) if target is not None else None
    if live is None or not stat.S_ISREG(st.st_mode) or (live.st_dev, live.st_ino) != (st.st_dev, st.st_ino):
        return None
    return target


def is_conversation(name: str, st: os.stat_result) -> bool:
    return name.endswith(L.YAML_SUFFIX) and TEMP_MARK not in name and stat.S_ISREG(st.st_mode)


def usable_file_name(name: str, archived: bool) -> bool:
    """False for a ``.yaml`` name that stands for a conversation dialogctl cannot read (:func:`~dialogctl.disk.layout.conversation_of`).

    A name that does not claim to be a conversation (an operator's note beside
    ``current.yaml``) is usable: dialogctl leaves it alone without a finding.
    """
    claims = archived or name == L.CURRENT_FILE or name.startswith(L.SESSION_PREFIX)
    return not claims or L.conversation_of("", name, archived) is not None
