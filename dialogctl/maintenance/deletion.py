"""Deleting a user's data on request: planned first, logged first, done for real.

``rm`` removes one conversation, one archive, or all of a user's data. "For
real" means no copy stays behind inside the journal: the user's leftover temp
files and any copies ``repair`` put in ``system/quarantine/`` go too, and the
user's metadata is recomputed (or removed with everything else).

A user's files are found from the layout alone (:func:`user_files`): the
user's ``dialogs/`` and everything in it, its ``metadata.yaml`` (and the temp
files a rewrite of it left), and the same paths under each quarantine run.
A user's folder can hold another user's folder (``ab`` holds ``abab`` in the
sharded layout), so nothing else in it is ever walked or deleted.

Log first, act second: each run that deletes appends to ``system/audit.log``
the intent (what will go: counts and paths) before the first change, and the
outcome after; never message text. A log that cannot be written (a folder in
its place, a symlink, a FIFO, another owner, a full disk) stops the command
before anything changes. Like cleanup, the plan is computed without changing
anything, and applied under the user's lock after re-checking it against the
files as they are then.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
from typing import Any, NamedTuple

from ..disk import layout as L
from ..disk.fileops import TEMP_MARK
from ..disk.paths import AUDIT_LOG, QUARANTINE
from ..disk.storage import Folder, open_root
from ..errors import DialogError, InvalidInput, NotFound, StorageError, UnsafePath, storage_error
from ..journal.core import Journal
from ..journal.usermeta import METADATA_FILE
from ..times import utc_now_iso

_METADATA_TEMP = f".{METADATA_FILE}{TEMP_MARK}"  # what a cut-short rewrite of metadata.yaml leaves
_REMOVED_DIALOGS = f".{L.DIALOGS_DIR}{TEMP_MARK}"  # what a cut-short removal of dialogs/ leaves


class Removal(NamedTuple):
    user: str
    what: str  # "all-data", "conversation" or "archive"
    conversation: str | None  # the conversation or archive name; None for all-data
    files: tuple[str, ...]  # paths relative to the root
    messages: int
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "what": self.what,
            "conversation": self.conversation,
            "files": list(self.files),
            "messages": self.messages,
            "bytes": self.bytes,
        }


def plan_removal(journal: Journal, user: str, conversation: str | None = None, archive: str | None = None, all_data: bool = False) -> Removal:
    """What ``rm`` would delete; reads only."""
    chosen = sum(x is not None and x is not False for x in (conversation, archive, all_data))
    if chosen != 1:
        raise InvalidInput("say what to remove: --conversation CID, --archive ID or --all-data")
    files = journal.conversation_files(user)  # NotFound for an unknown user
    if all_data:
        messages = sum(len(journal.read(f.ref, missing_ok=True).messages) for f in files)
        listed = {f.rel_path for f in files}
        extra = [(path, size) for path, size in user_files(journal, user) if path not in listed]
        paths = tuple(f.rel_path for f in files) + tuple(path for path, _ in extra)
        return Removal(user, "all-data", None, paths, messages, sum(f.size for f in files) + sum(size for _, size in extra))
    ref = journal.resolve(user, conversation, archive)
    match = [f for f in files if f.ref == ref]
    if not match:
        raise journal.not_found(ref)
    conv = journal.read(ref)
    extra = _leftovers_of(journal, match[0].rel_path) + _quarantined(journal, match[0].rel_path)
    paths = (match[0].rel_path,) + tuple(path for path, _ in extra)
    return Removal(user, "archive" if ref.archived else "conversation", ref.name, paths, len(conv.messages), match[0].size + sum(s for _, s in extra))


def user_files(journal: Journal, user: str) -> list[tuple[str, int]]:
    """Every file of ``user`` in the journal, found from the layout alone: (path relative to the root, size).

    The user's ``dialogs/`` and everything below it (but its lock file, which
    is how dialogctl works, not data), ``metadata.yaml`` and its temp files,
    what an interrupted removal of ``dialogs/`` left, and the same paths under
    each ``system/quarantine/<run>/``. Other sub-folders of the user's folder
    belong to other users and are never entered. Nothing is followed through
    a symlink: a quarantine run that is one is passed over.
    """
    base = (L.USERS_DIR, *journal.layout().user_parts(user))
    with open_root(journal.root) as root:
        found = _own_files(root, base, strict=True)
        for run in _quarantine_runs(root):
            found.extend(_own_files(root, (*QUARANTINE, run, *base), strict=False))
    return [(path, size) for path, size in found if path.rsplit("/", 1)[-1] != L.LOCK_FILE]


def _quarantine_runs(root: Folder) -> list[str]:
    try:
        with root.open_folder(QUARANTINE) as quarantine:
            return sorted(e.name for e in quarantine.entries() if e.is_dir(follow_symlinks=False))
    except (NotFound, UnsafePath):
        return []


def _own_files(root: Folder, base: tuple[str, ...], strict: bool) -> list[tuple[str, int]]:
    """The files of the user whose folder is ``base``: its ``dialogs/`` (whole), ``metadata.yaml`` and their leftovers."""
    try:
        folder = root.open_folder(base)
    except NotFound:
        return []
    except UnsafePath:
        if strict:
            raise
        return []
    prefix = "/".join(base)
    out: list[tuple[str, int]] = []
    with folder:
        for entry in sorted(folder.entries(), key=lambda e: e.name):
            name = entry.name
            if entry.is_dir(follow_symlinks=False):
                if name == L.DIALOGS_DIR or name.startswith(_REMOVED_DIALOGS):
                    out.extend(_everything_in(folder, name, f"{prefix}/{name}"))
            elif name == METADATA_FILE or name.startswith(_METADATA_TEMP):
                out.extend(_sized(folder, name, f"{prefix}/{name}"))
    return out


def _everything_in(parent: Folder, name: str, rel: str) -> list[tuple[str, int]]:
    """Every file below ``parent/name`` (a folder that holds only the user's files), never through a symlink."""
    try:
        folder = parent.open_child(name)
    except NotFound:
        return []
    out: list[tuple[str, int]] = []
    with folder:
        for entry in sorted(folder.entries(), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                out.extend(_everything_in(folder, entry.name, f"{rel}/{entry.name}"))
            else:
                out.extend(_sized(folder, entry.name, f"{rel}/{entry.name}"))
    return out


def _sized(folder: Folder, name: str, rel: str) -> list[tuple[str, int]]:
    st = folder.stat(name)
    return [] if st is None else [(rel, st.st_size if stat.S_ISREG(st.st_mode) else 0)]


def _leftovers_of(journal: Journal, rel: str) -> list[tuple[str, int]]:
    """Temp files a cut-short rewrite of the conversation ``rel`` left beside it."""
    *folders, name = rel.split("/")
    try:
        with open_root(journal.root) as root, root.open_folder(folders) as folder:
            return [x for n in sorted(folder.names()) if n.startswith(f".{name}{TEMP_MARK}") for x in _sized(folder, n, "/".join((*folders, n)))]
    except NotFound:
        return []


def _quarantined(journal: Journal, rel: str) -> list[tuple[str, int]]:
    """Copies of the file ``rel`` kept in ``system/quarantine/<run>/``."""
    *folders, name = rel.split("/")
    out = []
    with open_root(journal.root) as root:
        for run in _quarantine_runs(root):
            try:
                with root.open_folder((*QUARANTINE, run, *folders)) as folder:
                    st = folder.stat(name)
                    if st is not None and stat.S_ISREG(st.st_mode):
                        out.append(("/".join((*QUARANTINE, run, rel)), st.st_size))
            except (NotFound, UnsafePath):
                continue
    return out


def remove_user_data(journal: Journal, user: str) -> list[tuple[str, int]]:
    """Delete every file of ``user`` (:func:`user_files`; the caller holds the user's lock); return what was there."""
    files = user_files(journal, user)
    journal.remove_user_folder(user)
    remove_quarantined(journal, [path for path, _ in files])
    return files


def remove_quarantined(journal: Journal, paths: list[str] | tuple[str, ...]) -> None:
    """Delete the given files of ``system/quarantine/`` (others are ignored), then the folders that left empty."""
    prefix = "/".join(QUARANTINE) + "/"
    emptied: set[tuple[str, ...]] = set()
    with open_root(journal.root) as root:
        for rel in paths:
            if not rel.startswith(prefix):
                continue
            parts = tuple(rel[len(prefix) :].split("/"))
            try:
                with root.open_folder((*QUARANTINE, *parts[:-1])) as folder:
                    folder.remove(parts[-1])
            except (NotFound, UnsafePath):
                continue
            emptied.add(parts[:-1])
        if emptied:
            with root.open_folder(QUARANTINE) as quarantine:
                for parts in sorted(emptied, key=len, reverse=True):
                    quarantine.remove_empty_folders(parts)


def remove(journal: Journal, plan: Removal) -> Removal:
    """Carry out a removal under the user's lock, logged first; returns what was actually removed.

    Under the lock the plan is made again from the files as they are; its
    intent goes to ``system/audit.log`` before the first file goes (a log that
    cannot be written stops here, with nothing changed), and the outcome after.
    """
    run = os.urandom(6).hex()

    def body(dialogs: Folder) -> Removal:
        fresh = plan_removal(journal, plan.user, *_selection(plan))
        log_line(journal, AUDIT_LOG, audit_record(journal, "rm", fresh, "intent", run, paths=fresh.files), "nothing was deleted")
        try:
            if fresh.what == "all-data":
                journal.remove_user_folder(plan.user)
            else:
                ref = journal.resolve(plan.user, *(_selection(plan)[:2]))
                folder, name = journal.locate(dialogs, ref)
                try:
                    folder.remove(name)
                    for leftover in [n for n in folder.names() if n.startswith(f".{name}{TEMP_MARK}")]:
                        folder.remove(leftover)
                    _sync(folder, name)
                finally:
                    if folder is not dialogs:
                        folder.close()
                if ref.kind == "current":
                    dialogs.create_empty(name, journal.modes)  # the reference expects the file
            remove_quarantined(journal, fresh.files)
        except BaseException as exc:
            failed = audit_record(journal, "rm", fresh, "failed", run, error=exc.message if isinstance(exc, DialogError) else type(exc).__name__)
            log_quietly(journal, AUDIT_LOG, failed)
            raise
        return fresh

    done = journal.locked(plan.user, "rm", body)
    if done.what != "all-data":
        from ..journal.usermeta import refresh_metadata

        refresh_metadata(journal, plan.user)  # derived data: a busy lock here leaves it to be recounted
    log_line(journal, AUDIT_LOG, audit_record(journal, "rm", done, "done", run), "the deletion itself is done")
    return done


def _sync(folder: Folder, name: str) -> None:
    """fsync a folder a file was just removed from (the removal is durable only then)."""
    try:
        folder.fsync()
    except OSError as exc:
        raise storage_error(exc, "remove", folder.child_path(name)) from None


def _selection(plan: Removal) -> tuple[str | None, str | None, bool]:
    if plan.what == "all-data":
        return None, None, True
    if plan.what == "archive":
        return None, plan.conversation, False
    return plan.conversation, None, False


def operator() -> dict[str, Any]:
    """Who runs this command, for a log line: OS user, host, pid."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return {"osUser": who, "host": os.uname().nodename, "pid": os.getpid()}


def audit_record(
    journal: Journal, action: str, removal: Removal, phase: str, run: str, paths: tuple[str, ...] | None = None, error: str | None = None
) -> dict[str, Any]:
    """One ``system/audit.log`` line: who, when, what, how much, never message text.

    ``phase`` is ``intent`` (before the first change; it lists the paths),
    ``done`` or ``failed`` (with the error); ``run`` ties the lines of one run.
    """
    record: dict[str, Any] = {
        "time": utc_now_iso(),
        "action": action,
        "phase": phase,
        "run": run,
        "user": removal.user,
        "what": removal.what,
        "conversation": removal.conversation,
        "files": len(removal.files),
        "messages": removal.messages,
        "bytes": removal.bytes,
        "by": {**operator(), "serverId": journal.settings["serverId"]},
    }
    if paths is not None:
        record["paths"] = list(paths)
    if error is not None:
        record["error"] = error
    return record


def log_line(journal: Journal, log: tuple[str, ...], record: dict[str, Any], unless: str) -> None:
    """Append one JSON line to a log of the journal's (``system/audit.log``, ``system/cleanup.log``), durably.

    Never through a symlink, never blocking on a FIFO, only to a regular
    file; a failed write is cut back, and a ``system/`` folder made for it is
    removed again. Failing, it raises :class:`StorageError` naming the log,
    with ``unless`` saying what that means for the command ("nothing was
    deleted"): a destructive command logs its intent this way before it acts.
    """
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    where = os.path.join(journal.root, *log)
    try:
        with open_root(journal.root) as root:
            had_folder = root.stat(log[0]) is not None
            with root.open_folder(log[:-1], create=True, modes=journal.modes) as folder:
                st = folder.stat(log[-1])
                if st is not None and not stat.S_ISREG(st.st_mode):
                    links = "; dialogctl does not follow links inside the journal" if stat.S_ISLNK(st.st_mode) else ""
                    raise StorageError(f"{where} {_kind(st)}, not a regular file{links}")
                try:
                    folder.append(log[-1], line, journal.modes)  # opened without following links or waiting on a FIFO, should one appear now
                except StorageError:
                    if not had_folder:
                        root.remove_empty_folders(log[:-1])
                    raise
    except (NotFound, StorageError) as exc:
        reason = exc.message
        if reason.startswith("cannot ") and where in reason:
            reason = reason.rsplit(": ", 1)[-1]  # "cannot open for append <the log>: Is a directory"
        elif reason.startswith(where + " "):
            reason = "it " + reason[len(where) + 1 :]  # "<the log> is a symlink; ..."
        raise StorageError(f"cannot write the log {where}: {reason}" + (f"; {unless}" if unless else "")) from None


def _kind(st: os.stat_result) -> str:
    for test, kind in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return f"is {kind}"
    return "is a device"


def log_quietly(journal: Journal, log: tuple[str, ...], record: dict[str, Any]) -> None:
    """:func:`log_line` while another failure is being reported (that one is what the operator hears)."""
    try:
        log_line(journal, log, record, "")
    except DialogError:
        pass
