"""``users/<user path>/metadata.yaml``: the design's per-user summary, kept current cheaply.

The file holds ``userId``, ``createdAt``, ``lastActivity``, ``totalMessages``,
``preferences`` and ``statistics`` (``userMessages``, ``assistantMessages``,
``averageResponseTime`` in milliseconds, ``totalTokens``). dialogctl writes it
as JSON, which is YAML 1.2 (the reference implementation reads it), and keeps
every key it does not own (``preferences``, anything a server added).

Decisions a reader must know:

* An append updates it from the batch in hand; conversations are never
  re-read for it. The update is trusted only while the conversation file it
  counted last is exactly as dialogctl left it: each counted file's identity
  (size and inode) is recorded under ``dialogctl.counted``, and a rename keeps
  both. When anything else changed that file (a server's own append, an
  archive by another tool, an edit, a metadata write that failed after the
  append it followed), the metadata is recomputed from the user's files once,
  and then kept incrementally again.
* One append makes one metadata write, even when it archived on the way, so
  the file is either wholly before or wholly after the append.
* It is derived data: written atomically but not fsynced. A crash can leave
  it stale, and a stale or missing file is simply recomputed; nothing reads it
  as the truth about messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..disk.paths import METADATA_FILE as METADATA_FILE
from ..models import Message
from ..times import parse_timestamp
from ..usage import tokens_of

if TYPE_CHECKING:
    import os

    from ..disk.fileops import Modes
    from ..disk.storage import Folder
    from .writing import JournalWriter

# A counted file's identity: [size, inode]; None for a file that does not exist.
Key = list[int] | None


def key_of(st: os.stat_result | None) -> Key:
    return None if st is None else [st.st_size, st.st_ino]


class Move(NamedTuple):
    """A file renamed within the user's folder (``dialogs/``-relative names).

    ``key`` is the moved file's identity (a rename keeps it); ``replaced`` the
    identity of the file the rename replaced at the new name (None: there was
    none); ``left`` the identity of what now sits at the old name (the
    reference's empty file after an archive), or None when the name is now free.
    """

    old: str
    new: str
    key: Key
    left: Key = None
    replaced: Key = None
    at: int = 0  # for an archive during an append: how many of the batch's messages went in before it


_OWN = "dialogctl"  # our bookkeeping inside the file


def load(user_folder: Folder) -> dict[str, Any] | None:
    """The metadata as a dict; None when missing or unreadable (it will be recomputed)."""
    try:
        from ..disk.fileops import MAX_SMALL_FILE

        data = user_folder.read_bytes(METADATA_FILE, MAX_SMALL_FILE)
    except Exception:  # noqa: BLE001 - unreadable derived data is recomputed, never fatal
        return None
    if not data:
        return None
    try:
        meta = json.loads(data)
    except RecursionError:  # nested too deep to be ours: recomputed
        return None
    except ValueError:
        meta = _load_yaml(data)
    return meta if isinstance(meta, dict) else None


def _load_yaml(data: bytes) -> Any:
    """A metadata.yaml written by another implementation, in block YAML."""
    from ..yamlsafe import ItemError, load_yaml

    try:
        return load_yaml(data.decode("utf-8"))
    except (UnicodeDecodeError, ItemError):
        return None


_ORDER = ("userId", "createdAt", "lastActivity", "totalMessages", "preferences", "statistics")


def save(user_folder: Folder, meta: dict[str, Any], modes: Modes) -> None:
    ordered = {key: meta[key] for key in _ORDER if key in meta}
    ordered.update((key, value) for key, value in meta.items() if key not in ordered and key != _OWN)
    ordered[_OWN] = meta.get(_OWN)
    text = json.dumps(ordered, ensure_ascii=False, indent=2) + "\n"
    user_folder.write_atomic(METADATA_FILE, text.encode("utf-8"), modes, durable=False)


def _fresh(user: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = dict(previous or {})
    meta["userId"] = user
    meta.setdefault("preferences", {})
    meta["totalMessages"] = 0
    meta["statistics"] = dict(meta.get("statistics") or {}) if isinstance(meta.get("statistics"), dict) else {}
    meta["statistics"].update(userMessages=0, assistantMessages=0, averageResponseTime=0, totalTokens=0)
    meta[_OWN] = {"counted": {}, "responses": 0, "responseMs": 0, "last": {}}
    meta.pop("lastActivity", None)
    return meta


def _add(meta: dict[str, Any], messages: Iterable[Message], name: str) -> None:
    """Count a run of messages that follows what ``meta`` has counted so far in conversation file ``name``.

    A response time is the time from a user message to the assistant message
    right after it in the same conversation, so each file keeps its own last
    message (``dialogctl.last``), which follows the file when it is moved.
    """
    stats = meta["statistics"]
    own = meta[_OWN]
    lasts = own.setdefault("last", {})
    last = lasts.get(name)
    last_at = parse_timestamp(last[1]) if last else None  # each timestamp is parsed once
    created, active = meta.get("createdAt"), meta.get("lastActivity")
    created_at = parse_timestamp(created) if created else None
    active_at = parse_timestamp(active) if active else None
    for msg in messages:
        moment = parse_timestamp(msg.timestamp)
        meta["totalMessages"] += 1
        if msg.role == "user":
            stats["userMessages"] += 1
        elif msg.role == "assistant":
            stats["assistantMessages"] += 1
            if last and last[0] == "user" and last_at is not None and moment is not None and moment >= last_at:
                own["responses"] += 1
                own["responseMs"] += int((moment - last_at).total_seconds() * 1000)
        tokens = tokens_of(msg.metadata)
        if tokens:
            stats["totalTokens"] += tokens
        if moment is not None:
            if not created or (created_at is not None and created_at > moment):
                created, created_at = msg.timestamp, moment
            if not active or (active_at is not None and active_at < moment):
                active, active_at = msg.timestamp, moment
        last, last_at = [msg.role, msg.timestamp], moment
    if created:
        meta["createdAt"] = created
    if active:
        meta["lastActivity"] = active
    lasts[name] = last
    stats["averageResponseTime"] = round(own["responseMs"] / own["responses"]) if own["responses"] else 0


def recompute(journal: JournalWriter, user: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata from the user's files (archives first, oldest first, then the active ones).

    Damage met on the way is not reported: the command that asked for the
    metadata did not read those files for its caller (``verify`` does).
    """
    meta = _fresh(user, previous)
    files = journal.conversation_files(user)
    ordered = [f for f in files if f.ref.archived] + [f for f in files if not f.ref.archived]
    reported = len(journal.damage)
    try:
        for f in ordered:
            conv = journal.read(f.ref, missing_ok=True)
            name = f.rel_path.rsplit("/dialogs/", 1)[-1]
            _add(meta, conv.messages, name)
            meta[_OWN]["counted"][name] = [f.size, f.ino]
    finally:
        del journal.damage[reported:]
    return meta


def after_append(
    journal: JournalWriter,
    user_folder: Folder,
    user: str,
    target: str,
    before: Key,
    after: Key,
    batch: Sequence[Message],
    moves: Sequence[Move] = (),
    dialogs: Folder | None = None,
) -> None:
    """Bring the metadata up to date after ``batch`` was appended to ``target`` (under the user's lock).

    ``before``/``after`` are the target's identity before and after the append;
    ``moves`` are the archives the append made on the way; ``dialogs`` is the
    user's open (locked) ``dialogs/`` folder, listed when the files must be.
    """
    meta = load(user_folder)
    own = meta.get(_OWN) if meta else None
    trusted = (
        meta is not None
        and isinstance(own, dict)
        and isinstance(own.get("counted"), dict)
        and isinstance(own.get("last"), dict)
        and own["counted"].get(target) == before
        and isinstance(meta.get("statistics"), dict)
    )
    if meta is None and before is None and _only_written_by(journal, user, target, moves, dialogs):
        meta, trusted = _fresh(user, None), True  # a new user: this batch is all there is
    if meta is None or not trusted:
        meta = recompute(journal, user, meta)  # reads the files as they are now: the batch and moves included
    else:
        done = 0
        for move in moves:  # each archive on the way closes the file that held the messages before it
            _add(meta, batch[done : move.at], target)
            _apply_moves(meta[_OWN], [move])
            done = move.at
        _add(meta, batch[done:], target)
        meta[_OWN]["counted"][target] = after
    save(user_folder, meta, journal.modes)


def _only_written_by(journal: JournalWriter, user: str, target: str, moves: Sequence[Move], dialogs: Folder | None) -> bool:
    """Whether the user's conversation files are exactly what this append wrote (a listing; nothing is read)."""
    names = {f.rel_path.rsplit("/dialogs/", 1)[-1] for f in journal.conversation_files(user, include_archives=True, dialogs=dialogs)}
    return names <= {target, *(m.new for m in moves)}


def _apply_moves(own: dict[str, Any], moves: Sequence[Move]) -> None:
    """Move the per-file bookkeeping (identity, last message) along with the files."""
    counted, lasts = own["counted"], own.setdefault("last", {})
    last = {m.old: lasts.pop(m.old, None) for m in moves}
    for m in moves:
        counted.pop(m.old, None)
    for m in moves:
        counted[m.new] = m.key
        lasts[m.new] = last[m.old]
    for m in moves:
        counted.setdefault(m.old, m.left)


def note_moved(user_folder: Folder, moves: list[Move], modes: Modes) -> None:
    """Files moved (archive, restore; several at once for a swap): totals stand, the counted identities follow the files.

    A moved or replaced file that is not the one last counted (changed behind
    dialogctl's back, or its metadata update was lost) marks the metadata
    stale: the next append recomputes it.
    """
    meta = load(user_folder)
    if meta is None or not isinstance(meta.get(_OWN), dict) or not isinstance(meta[_OWN].get("counted"), dict):
        return  # recomputed at the next append
    counted = meta[_OWN]["counted"]
    olds = {m.old for m in moves}
    known = all(counted.get(m.old) == m.key for m in moves) and all(counted.get(m.new) == m.replaced for m in moves if m.new not in olds)
    if known and isinstance(meta[_OWN].get("last"), dict):
        _apply_moves(meta[_OWN], moves)
    else:
        meta[_OWN]["counted"] = None
    save(user_folder, meta, modes)


def refresh(journal: JournalWriter, user: str) -> None:
    """Recompute a user's metadata after a change that is not an append (cleanup, rm, repair...)."""

    def body(dialogs: Folder) -> None:
        with dialogs.open_folder(("..",)) as user_folder:
            save(user_folder, recompute(journal, user, load(user_folder)), journal.modes)

    journal.locked(user, "metadata", body)


def refresh_metadata(journal: JournalWriter, user: str) -> None:
    """:func:`refresh` after cleanup or repair changed files; metadata is derived data, so failing here fails nothing.

    Left stale, it is recounted by the next append that meets a changed file.
    """
    from ..errors import DialogError

    try:
        refresh(journal, user)
    except DialogError:
        pass
