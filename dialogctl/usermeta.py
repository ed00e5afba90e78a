"""``users/<user path>/metadata.yaml``: the design's per-user summary, kept current cheaply.

The file holds ``userId``, ``createdAt``, ``lastActivity``, ``totalMessages``,
``preferences`` and ``statistics`` (``userMessages``, ``assistantMessages``,
``averageResponseTime`` in milliseconds, ``totalTokens``). dialogctl writes it
as JSON, which is YAML 1.2 (the reference implementation reads it), and keeps
every key it does not own (``preferences``, anything a server added).

Decisions a reader must know:

* An append updates it from the batch in hand; conversations are never
  re-read for it. The update is trusted only while the conversation file it
  counted last is exactly as dialogctl left it (its size is recorded under
  ``dialogctl.counted``). When anything else changed that file (a server's own
  append, an archive by another tool, an edit), the metadata is recomputed
  from the user's files once, and then kept incrementally again.
* It is derived data: written atomically but not fsynced. A crash can leave
  it stale, and a stale or missing file is simply recomputed; nothing reads it
  as the truth about messages.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .models import Message
from .times import parse_timestamp
from .usage import tokens_of

if TYPE_CHECKING:
    from .journal import Journal
    from .storage import Folder

METADATA_FILE = "metadata.yaml"
_OWN = "dialogctl"  # our bookkeeping inside the file


def load(user_folder: Folder) -> dict[str, Any] | None:
    """The metadata as a dict; None when missing or unreadable (it will be recomputed)."""
    try:
        data = user_folder.read_bytes(METADATA_FILE)
    except Exception:  # noqa: BLE001 - unreadable derived data is recomputed, never fatal
        return None
    if not data:
        return None
    try:
        meta = json.loads(data)
    except ValueError:
        meta = _load_yaml(data)
    return meta if isinstance(meta, dict) else None


def _load_yaml(data: bytes) -> Any:
    """A metadata.yaml written by another implementation, in block YAML."""
    from .salvage import _ItemError, load_yaml

    try:
        return load_yaml(data.decode("utf-8"))
    except (UnicodeDecodeError, _ItemError):
        return None


_ORDER = ("userId", "createdAt", "lastActivity", "totalMessages", "preferences", "statistics")


def save(user_folder: Folder, meta: dict[str, Any], mode: int) -> None:
    ordered = {key: meta[key] for key in _ORDER if key in meta}
    ordered.update((key, value) for key, value in meta.items() if key not in ordered and key != _OWN)
    ordered[_OWN] = meta.get(_OWN)
    text = json.dumps(ordered, ensure_ascii=False, indent=2) + "\n"
    user_folder.write_atomic(METADATA_FILE, text.encode("utf-8"), mode, durable=False)


def _fresh(user: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = dict(previous or {})
    meta["userId"] = user
    meta.setdefault("preferences", {})
    meta["totalMessages"] = 0
    meta["statistics"] = dict(meta.get("statistics") or {}) if isinstance(meta.get("statistics"), dict) else {}
    meta["statistics"].update(userMessages=0, assistantMessages=0, averageResponseTime=0, totalTokens=0)
    meta[_OWN] = {"counted": {}, "responses": 0, "responseMs": 0, "last": None}
    meta.pop("lastActivity", None)
    return meta


def _add(meta: dict[str, Any], messages: list[Message]) -> None:
    """Count a run of messages that follows what ``meta`` has counted so far."""
    stats = meta["statistics"]
    own = meta[_OWN]
    last = own.get("last")
    for msg in messages:
        meta["totalMessages"] += 1
        if msg.role == "user":
            stats["userMessages"] += 1
        elif msg.role == "assistant":
            stats["assistantMessages"] += 1
            if last and last[0] == "user":
                start, end = parse_timestamp(last[1]), parse_timestamp(msg.timestamp)
                if start is not None and end is not None and end >= start:
                    own["responses"] += 1
                    own["responseMs"] += int((end - start).total_seconds() * 1000)
        tokens = tokens_of(msg.metadata)
        if tokens:
            stats["totalTokens"] += tokens
        moment = parse_timestamp(msg.timestamp)
        if moment is not None:
            if not meta.get("createdAt") or (parse_timestamp(meta["createdAt"]) or moment) > moment:
                meta["createdAt"] = msg.timestamp
            if not meta.get("lastActivity") or (parse_timestamp(meta["lastActivity"]) or moment) < moment:
                meta["lastActivity"] = msg.timestamp
        last = [msg.role, msg.timestamp]
    own["last"] = last
    stats["averageResponseTime"] = round(own["responseMs"] / own["responses"]) if own["responses"] else 0


def recompute(journal: Journal, user: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata from the user's files (archives first, oldest first, then the active ones)."""
    meta = _fresh(user, previous)
    files = journal.conversation_files(user)
    ordered = [f for f in files if f.ref.archived] + [f for f in files if not f.ref.archived]
    for f in ordered:
        conv = journal.read(f.ref, missing_ok=True)
        _add(meta, conv.messages)
        meta[_OWN]["counted"][f.rel_path.rsplit("/dialogs/", 1)[-1]] = f.size
    return meta


def after_append(journal: Journal, user_folder: Folder, user: str, target: str, size_before: int, size_after: int, batch: list[Message]) -> None:
    """Bring the metadata up to date after ``batch`` was appended to ``target`` (under the user's lock)."""
    meta = load(user_folder)
    counted = meta.get(_OWN, {}).get("counted", {}) if meta else {}
    if meta is None or not isinstance(counted, dict) or counted.get(target) != size_before or "statistics" not in meta:
        meta = recompute(journal, user, meta)
    else:
        _add(meta, batch)
    meta[_OWN]["counted"][target] = size_after
    save(user_folder, meta, journal.file_mode)


def note_moved(user_folder: Folder, moves: list[tuple[str, str]], mode: int) -> None:
    """Files moved (archive, restore; several at once for a swap): totals stand, the counted sizes follow the files."""
    meta = load(user_folder)
    if meta is None or not isinstance(meta.get(_OWN), dict) or not isinstance(meta[_OWN].get("counted"), dict):
        return  # recomputed at the next append
    counted = meta[_OWN]["counted"]
    sizes = {old: counted.pop(old, None) for old, _new in moves}
    for old, new in moves:
        if sizes[old] is None:
            counted.pop(new, None)  # never counted: the next append recomputes
        else:
            counted[new] = sizes[old]
    for old, _new in moves:
        counted.setdefault(old, 0)  # the reference's empty file left in place (or the name now free)
    save(user_folder, meta, mode)


def refresh(journal: Journal, user: str) -> None:
    """Recompute a user's metadata after a change that is not an append (cleanup, rm, repair...)."""

    def body(dialogs: Folder) -> None:
        with dialogs.open_folder(("..",)) as user_folder:
            save(user_folder, recompute(journal, user, load(user_folder)), journal.file_mode)

    journal.locked(user, "metadata", body)
