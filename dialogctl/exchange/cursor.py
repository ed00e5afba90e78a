"""A message's stable id, and the cursor file of ``export/follow --cursor-file``.

**message_id.** A message's path is not its identity: conversations move
between ``current.yaml`` and ``archived/``, a cleanup trim drops a file's
oldest messages and renumbers the rest (so neither the index nor the
``n=`` of dialogctl's frames survives it), a repair rewrites a file, and the
servers' own files carry no frames at all. What every one of those moves
keeps is the user and the message itself, so the id is derived from them::

    sha256(json.dumps([user, timestamp, role, content, occurrence]))[:32]  (hex)

``timestamp`` is the string as written, and ``occurrence`` counts the
messages before it in the same conversation with the same timestamp, role
and content (0 for the first): two truly identical messages (same user,
timestamp, role and content) still get distinct ids. A trim drops messages
by time, so it drops all or none of a run of identical ones, and the
occurrence numbers stay. Metadata is not part of the id. A message imported
into the same user (e.g. after ``rm`` and a re-import of an export) gets
its old id back; into another user, a new one.

**The cursor.** A JSON file ``{"version": 1, "journal": <the journal root's
real path>, "users": {user: {"through": T, "ids": [...], "undated": [...]}}}``:
per user, the latest message time shipped (``through``, UTC), the ids of the
messages shipped *at* that time, and the ids of shipped messages whose
timestamp cannot be read. A message is new when its time is later than
``through``, or equal to it with an id not in ``ids`` (or, undated, its id is
not in ``undated``). The file stays small however much is shipped (one time
and a few ids per user), and it names no path, so archives, restores, trims,
repairs and removals of other users change nothing in what it means.

An export run ships only messages at least :data:`SETTLE` old when it
starts, so a message a server is appending while the export reads the files
(stamped "now") is left for the next run rather than passed by a later
``through``. The limitation: a message that arrives with a time older than
the user's ``through`` (an import of old conversations, a clock set back) is
taken as shipped; export those once without the cursor (``--since``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from typing import Any

from ..errors import DialogError, InvalidInput
from ..models import Message
from ..times import parse_timestamp, utc_now

_text = encode_basestring  # what json.dumps(..., ensure_ascii=False) escapes strings with

CURSOR_VERSION = 1
SETTLE = timedelta(seconds=2)  # an export ships messages at least this old when it starts


def message_id(user: str, msg: Message, occurrence: int) -> str:
    """The stable id of a message (see the module docstring)."""
    return _message_id(_text(user), msg, occurrence)


def _message_id(user_json: str, msg: Message, occurrence: int) -> str:
    # Exactly json.dumps([user, timestamp, role, content, occurrence], ensure_ascii=False), assembled from the
    # encoder's own string escaper (the user's once per conversation): ids cost a third of an export otherwise.
    key = f"[{user_json}, {_text(msg.timestamp)}, {_text(msg.role)}, {_text(msg.content)}, {occurrence:d}]"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def message_ids(user: str, messages: Iterable[Message]) -> list[str]:
    """The ids of a whole conversation's messages, in order."""
    seen: Counter[tuple[str, str, str]] = Counter()
    ids = []
    user_json = _text(user)
    for msg in messages:
        key = (msg.timestamp, msg.role, msg.content)
        ids.append(_message_id(user_json, msg, seen[key]))
        seen[key] += 1
    return ids


class IdTracker:
    """Ids of messages met one at a time with their position (``follow``): counts identical ones per conversation.

    ``whole(ref)`` gives a conversation's messages when the tracker has not seen
    the ones before a position (the first message followed in a file).
    """

    def __init__(self, whole: Any) -> None:
        self.whole = whole
        self.known: dict[Any, tuple[int, Counter[tuple[str, str, str]]]] = {}

    def id_of(self, ref: Any, position: int, msg: Message) -> str:
        count, seen = self.known.get(ref, (-1, Counter()))
        if count != position:
            try:
                earlier = list(self.whole(ref))[:position]
            except DialogError:  # moved or gone meanwhile: counted from here
                earlier = []
            seen = Counter((m.timestamp, m.role, m.content) for m in earlier)
        key = (msg.timestamp, msg.role, msg.content)
        found = message_id(ref.user, msg, seen[key])
        seen[key] += 1
        self.known[ref] = (position + 1, seen)
        return found


class Cursor:
    """What a cursor file says was shipped, and what this run ships (see the module docstring)."""

    def __init__(self, path: str, journal_root: str, users: dict[str, dict[str, Any]] | None = None, settle: bool = True) -> None:
        self.path = path
        self.journal = os.path.realpath(journal_root)
        self.users: dict[str, dict[str, Any]] = users or {}  # what was shipped, this run's messages included
        self.before: dict[str, dict[str, Any]] = json.loads(json.dumps(self.users))  # what earlier runs shipped: what is new is judged by this
        self.cut = utc_now() - SETTLE if settle else None
        self.changed = False

    @classmethod
    def load(cls, path: str, journal_root: str, settle: bool = True) -> Cursor:
        """The cursor in ``path`` (an empty one when there is no such file); a damaged or foreign one is refused (exit 2)."""
        cursor = cls(path, journal_root, settle=settle)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(1 << 26)
        except FileNotFoundError:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):  # said now, before anything is exported, not after (it could not be saved)
                raise InvalidInput(f"cursor file {path}: its folder {folder} does not exist") from None
            return cursor
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cursor file {path}: cannot be read ({exc}); it was left as it is") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput(f"cursor file {path}: not valid JSON (damaged?); it was left as it is (remove it to ship everything again)") from None
        return cls.from_data(path, journal_root, data, settle)

    @classmethod
    def from_data(cls, path: str, journal_root: str, data: Any, settle: bool = True) -> Cursor:
        """A cursor from its parsed JSON (a cursor file's, or the copy a Parquet dataset's manifest keeps), checked as :meth:`load` checks it."""
        cursor = cls(path, journal_root, settle=settle)
        if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
            found = data.get("version") if isinstance(data, dict) else None
            raise InvalidInput(f"cursor file {path}: not a dialogctl cursor of version {CURSOR_VERSION} (version {found!r}); it was left as it is")
        if data.get("journal") != cursor.journal:
            raise InvalidInput(f"cursor file {path}: it belongs to the journal at {data.get('journal')!r}, not {cursor.journal!r}; it was left as it is")
        users = data.get("users")
        if not isinstance(users, dict) or not all(_valid_entry(entry) for entry in users.values()):
            raise InvalidInput(f"cursor file {path}: its users are not in the cursor's shape (damaged?); it was left as it is")
        cursor.users, cursor.before = users, json.loads(json.dumps(users))
        return cursor

    def through(self, user: str, before: bool = False) -> datetime | None:
        entry = (self.before if before else self.users).get(user)
        return parse_timestamp(entry["through"]) if entry and entry.get("through") else None

    def earliest(self, users: Sequence[str] | None) -> datetime | None:
        """The earliest ``through`` of these users (every user when None): where a restarted ``follow`` starts."""
        names = users if users is not None else list(self.users)
        moments = [m for u in names if (m := self.through(u)) is not None]
        return min(moments) if moments else None

    def is_new(self, user: str, msg: Message, mid: str) -> bool:
        """Whether the message is after the cursor (and, for an export, settled)."""
        entry = self.before.get(user)
        moment = parse_timestamp(msg.timestamp)
        if moment is None:
            return entry is None or mid not in entry.get("undated", ())
        if self.cut is not None and moment >= self.cut:
            return False
        through = self.through(user, before=True)
        if through is None or moment > through:
            return True
        return moment == through and mid not in entry.get("ids", ()) if entry else True

    def shipped(self, user: str, msg: Message, mid: str) -> None:
        """Note that the message went out (saved only by :meth:`save`, after the output is complete)."""
        entry = self.users.setdefault(user, {"through": None, "ids": [], "undated": []})
        entry.setdefault("ids", [])
        entry.setdefault("undated", [])
        self.changed = True
        moment = parse_timestamp(msg.timestamp)
        if moment is None:
            entry["undated"].append(mid)
            return
        through = self.through(user)
        if through is None or moment > through:
            entry["through"] = moment.astimezone(UTC).isoformat()  # every digit: a later message at .0005 s is later
            entry["ids"] = [mid]
        elif moment == through and mid not in entry["ids"]:
            entry["ids"].append(mid)

    def text(self) -> str:
        return json.dumps({"version": CURSOR_VERSION, "journal": self.journal, "users": self.users}, ensure_ascii=False, indent=1, sort_keys=True) + "\n"

    def save(self) -> None:
        """Replace the cursor file atomically: a temp file in its folder, fsync, rename, fsync of the folder."""
        from .outputfile import OutputFile

        with OutputFile(self.path, force=True, mode=0o600) as target:
            target.text().write(self.text())
        self.changed = False


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    through = entry.get("through")
    if through is not None and (not isinstance(through, str) or parse_timestamp(through) is None):
        return False
    return all(isinstance(entry.get(k, []), list) and all(isinstance(i, str) for i in entry.get(k, [])) for k in ("ids", "undated"))
