"""Deleting a user's data on request: planned first, done for real, audited.

``rm`` removes one conversation, one archive, or all of a user's data. "For
real" means no copy stays behind inside the journal: the user's leftover temp
files and any copies ``repair`` put in ``system/quarantine/`` go too, and the
user's metadata is recomputed (or removed with everything else). Each run that
deletes appends one JSON line to ``system/audit.log``: who, when, what and how
much, never message text.

Like cleanup, the plan is computed without changing anything, and applied
under the user's lock after re-checking it against the files as they are then.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import NamedTuple

from . import layout as L
from .errors import InvalidInput, NotFound
from .journal import Journal
from .storage import TEMP_MARK, Folder, open_root
from .times import utc_now_iso

AUDIT_LOG = ("system", "audit.log")
QUARANTINE = ("system", "quarantine")


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
        extra = _user_extras(journal, user)
        paths = tuple(f.rel_path for f in files) + tuple(path for path, _ in extra)
        return Removal(user, "all-data", None, paths, messages, sum(f.size for f in files) + sum(size for _, size in extra))
    ref = journal.resolve(user, conversation, archive)
    match = [f for f in files if f.ref == ref]
    if not match:
        raise NotFound(f"{ref.describe()} not found")
    conv = journal.read(ref)
    quarantined = _quarantined(journal, match[0].rel_path)
    paths = (match[0].rel_path,) + tuple(path for path, _ in quarantined)
    return Removal(user, "archive" if ref.archived else "conversation", ref.name, paths, len(conv.messages), match[0].size + sum(s for _, s in quarantined))


def _user_extras(journal: Journal, user: str) -> list[tuple[str, int]]:
    """Everything else of the user's inside the root: metadata, temp files, quarantined copies.

    The user's own files are those in its folder and below its ``dialogs/``:
    the folder's other sub-folders hold other users (``ab`` holds ``abab``
    in the sharded layout), whose files are never the user's.
    """
    base = journal.user_path(user).rsplit("/", 1)[0]  # users/<user path>
    found = []
    for rel in _own_files(journal.root, base):
        name = rel.rsplit("/", 1)[1]
        if name.endswith(L.YAML_SUFFIX) and f"/{L.DIALOGS_DIR}/" in f"/{rel}" and not name.startswith("."):
            continue  # conversation files are listed already
        if name != L.LOCK_FILE:
            found.append(rel)
    try:
        runs = sorted(os.listdir(os.path.join(journal.root, *QUARANTINE)))
    except OSError:
        runs = []
    for run in runs:
        found.extend(_own_files(journal.root, "/".join((*QUARANTINE, run, base))))
    return [(rel, os.lstat(os.path.join(journal.root, rel)).st_size) for rel in found]


def _own_files(root: str, base: str) -> list[str]:
    """The files (relative to ``root``) in the user folder ``base`` and below its ``dialogs/``; never below another sub-folder."""
    folder = os.path.join(root, base)
    if os.path.islink(folder):
        return []
    try:
        with os.scandir(folder) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
    except OSError:
        return []
    out = [f"{base}/{name}" for name, is_dir in entries if not is_dir]
    if (L.DIALOGS_DIR, True) in entries:
        for path, _dirs, names in os.walk(os.path.join(folder, L.DIALOGS_DIR)):
            out.extend(os.path.relpath(os.path.join(path, name), root) for name in sorted(names))
    return out


def _quarantined(journal: Journal, rel: str) -> list[tuple[str, int]]:
    """Copies of ``rel`` (a file or a folder below the root) kept in ``system/quarantine/<run>/``."""
    quarantine = os.path.join(journal.root, *QUARANTINE)
    out = []
    try:
        runs = sorted(os.listdir(quarantine))
    except OSError:
        return []
    for run in runs:
        target = os.path.join(quarantine, run, rel)
        if os.path.islink(target):
            continue
        if os.path.isfile(target):
            out.append((os.path.relpath(target, journal.root), os.lstat(target).st_size))
        elif os.path.isdir(target):
            for folder, _dirs, names in os.walk(target):
                for name in names:
                    path = os.path.join(folder, name)
                    out.append((os.path.relpath(path, journal.root), os.lstat(path).st_size))
    return out


def remove(journal: Journal, plan: Removal) -> Removal:
    """Carry out a removal under the user's lock; returns what was actually removed."""

    def body(dialogs: Folder) -> Removal:
        fresh = plan_removal(journal, plan.user, *_selection(plan))
        if plan.what == "all-data":
            journal.remove_user_folder(plan.user)
        else:
            ref = journal.resolve(plan.user, *(_selection(plan)[:2]))
            folder, name = journal.locate(dialogs, ref)
            try:
                folder.remove(name)
                for leftover in [n for n in folder.names() if n.startswith(f".{name}{TEMP_MARK}")]:
                    folder.remove(leftover)
                folder.fsync()
            finally:
                if folder is not dialogs:
                    folder.close()
            if ref.kind == "current":
                dialogs.create_empty(name, journal.modes)  # the reference expects the file
        _remove_quarantined(journal, fresh)
        return fresh

    done = journal.locked(plan.user, "rm", body)
    if done.what != "all-data":
        from . import usermeta

        usermeta.refresh(journal, plan.user)
    audit(journal, "rm", done)
    return done


def _selection(plan: Removal) -> tuple[str | None, str | None, bool]:
    if plan.what == "all-data":
        return None, None, True
    if plan.what == "archive":
        return None, plan.conversation, False
    return plan.conversation, None, False


def _remove_quarantined(journal: Journal, plan: Removal) -> None:
    prefix = "/".join(QUARANTINE) + "/"
    with open_root(journal.root) as root:
        for rel in plan.files:
            if not rel.startswith(prefix):
                continue
            parts = rel.split("/")
            try:
                with root.open_folder(tuple(parts[:-1])) as folder:
                    folder.remove(parts[-1])
            except NotFound:
                continue
    _prune_empty(os.path.join(journal.root, *QUARANTINE))


def _prune_empty(top: str) -> None:
    """Remove folders left empty under ``top`` (deepest first), never ``top`` itself."""
    for folder, _dirs, _names in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        if folder != top:
            try:
                os.rmdir(folder)
            except OSError:
                pass


def audit(journal: Journal, action: str, removal: Removal) -> None:
    """One line in ``system/audit.log``: who, when, what, how much; never message text."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    record = {
        "time": utc_now_iso(),
        "action": action,
        "user": removal.user,
        "what": removal.what,
        "conversation": removal.conversation,
        "files": len(removal.files),
        "messages": removal.messages,
        "bytes": removal.bytes,
        "by": {"osUser": who, "host": os.uname().nodename, "pid": os.getpid(), "serverId": journal.settings["serverId"]},
    }
    with open_root(journal.root) as root, root.open_folder(AUDIT_LOG[:-1], create=True, modes=journal.modes) as system:
        system.append(AUDIT_LOG[-1], (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"), journal.modes)
