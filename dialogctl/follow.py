"""Following the journal live: messages as they are appended, anywhere or for some users.

A :class:`Follower` polls. Each round it stats the active conversation files
(``current.yaml``, ``session-*.yaml``) of the followed users, reads only the
bytes added since its last look, and yields the messages in them. With no
users named, the user folders are re-walked every ``rescan`` seconds so new
users are picked up.

Decisions a reader must know:

* Framed records (dialogctl's own) are yielded as soon as their frame line is
  there. Text another writer appended without frames is read once the file
  has stopped growing for one round, so a write in progress is never read in
  half.
* A file whose inode changed was moved away (archive, restore) or replaced
  (cleanup). The rest of the old file, appended after our last look and before
  the move, is read where it went (found in ``archived/`` by its inode). In the
  new file only messages newer than the newest one already seen for that
  conversation are new: a restored archive or a trimmed rewrite brings back
  old messages, which were not appended now and are not printed again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from . import layout as L
from .codec import find_frames, last_frame_n
from .journal import Journal
from .models import ConversationRef, Message
from .reader import parse_conversation
from .times import parse_timestamp, utc_now


class Event(NamedTuple):
    ref: ConversationRef
    position: int  # the message index in its conversation
    message: Message


class _Watched:
    """What we know of one active conversation file."""

    __slots__ = ("ref", "ino", "offset", "count", "newest", "pending_size")

    def __init__(self, ref: ConversationRef, ino: int, offset: int, count: int, newest: datetime | None) -> None:
        self.ref = ref
        self.ino = ino
        self.offset = offset  # bytes already read
        self.count = count  # messages before ``offset``
        self.newest = newest  # newest timestamp seen in this conversation
        self.pending_size = -1  # size seen last round while unframed text waited


class Follower:
    def __init__(
        self,
        journal: Journal,
        users: Iterable[str] | None = None,
        since: datetime | None = None,
        rescan: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.users = list(users) if users is not None else None
        self.since = since
        self.rescan = rescan
        self.clock = clock
        self.started = utc_now()
        self.files: dict[str, _Watched] = {}  # by path relative to the root
        self._last_scan = -1e18
        self._user_list: list[str] = []
        self._first_round = True

    # --- one round --------------------------------------------------------------

    def poll(self) -> list[Event]:
        """Everything appended since the last round (the first round sets the starting point)."""
        events: list[Event] = []
        now = self.clock()
        if self.users is None and now - self._last_scan >= self.rescan:
            self._user_list = list(self.journal.users())
            self._last_scan = now
        users = self.users if self.users is not None else self._user_list
        seen: set[str] = set()
        for user in users:
            for path, ref in self._active_files(user):
                seen.add(path)
                events.extend(self._look(path, ref))
        for path in set(self.files) - seen:
            # The file went away (archived with nothing left behind, or the user removed).
            events.extend(self._drain_moved(path, self.files.pop(path)))
        self._first_round = False
        return events

    def run(self, interval: float = 0.5, stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        while not stop():
            yield from self.poll()
            time.sleep(interval)

    # --- files -----------------------------------------------------------------------

    def _active_files(self, user: str) -> list[tuple[str, ConversationRef]]:
        try:
            rel = self.journal.user_path(user)
            names = os.listdir(os.path.join(self.journal.root, rel))
        except (OSError, ValueError):
            return []
        out = []
        for name in names:
            if name == L.CURRENT_FILE:
                out.append((f"{rel}/{name}", ConversationRef(user, "current")))
            elif name.startswith(L.SESSION_PREFIX) and name.endswith(L.YAML_SUFFIX) and not name.startswith("."):
                out.append((f"{rel}/{name}", ConversationRef(user, "session", name[len(L.SESSION_PREFIX) : -len(L.YAML_SUFFIX)])))
        return out

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            st = os.stat(os.path.join(self.journal.root, path), follow_symlinks=False)
        except OSError:
            return None
        return st if (st.st_mode & 0o170000) == 0o100000 else None  # regular files only

    def _look(self, path: str, ref: ConversationRef) -> list[Event]:
        st = self._stat(path)
        if st is None:
            return []
        watched = self.files.get(path)
        if watched is None:
            return self._start(path, ref, st)
        events: list[Event] = []
        if st.st_ino != watched.ino or st.st_size < watched.offset:
            events.extend(self._drain_moved(path, watched))
            watched = self.files[path] = _Watched(ref, st.st_ino, 0, 0, watched.newest)
            events.extend(self._read_new(path, watched, st.st_size, only_newer=True))
            return events
        if st.st_size > watched.offset:
            events.extend(self._read_new(path, watched, st.st_size, only_newer=False))
        return events

    def _start(self, path: str, ref: ConversationRef, st: os.stat_result) -> list[Event]:
        if self._first_round and self.since is None:
            # Start from now: skip what is there, but know how many messages it holds.
            data = self._read(path, 0, st.st_size)
            count = last_frame_n(data[-4096:]) if data else 0
            if count is None:
                count = len(parse_conversation(data, path).messages)
            self.files[path] = _Watched(ref, st.st_ino, st.st_size, count, None)
            return []
        # A file that appeared while following (or --since): read it from the start.
        watched = self.files[path] = _Watched(ref, st.st_ino, 0, 0, None)
        return self._read_new(path, watched, st.st_size, only_newer=False)

    def _read(self, path: str, start: int, end: int) -> bytes:
        try:
            fd = os.open(os.path.join(self.journal.root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return b""
        try:
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    def _read_new(self, path: str, watched: _Watched, size: int, only_newer: bool) -> list[Event]:
        data = self._read(path, watched.offset, size)
        return self._consume(path, watched, data, size, only_newer)

    def _consume(self, label: str, watched: _Watched, data: bytes, size: int, only_newer: bool) -> list[Event]:
        """Read complete records from ``data`` (the bytes from ``watched.offset``)."""
        frames, _ = find_frames(data)
        end = frames[-1].after if frames else 0
        rest = data[end:]
        if rest.strip():
            if watched.pending_size == size:
                end = len(data)  # unframed text that stopped growing: read it now
                watched.pending_size = -1
            else:
                watched.pending_size = size
        if end == 0:
            return []
        parsed = parse_conversation(data[:end], label)
        watched.offset += end
        events = []
        floor = watched.newest if only_newer else None
        if only_newer and floor is None:
            floor = self.started
        for msg in parsed.messages:
            index = watched.count
            watched.count += 1
            moment = parse_timestamp(msg.timestamp)
            if moment is not None and (watched.newest is None or moment > watched.newest):
                watched.newest = moment
            if floor is not None and (moment is None or moment <= floor):
                continue
            if self.since is not None and (moment is None or moment < self.since):
                continue
            events.append(Event(watched.ref, index, msg))
        return events

    def _drain_moved(self, path: str, watched: _Watched) -> list[Event]:
        """Read the rest of a file that was moved into ``archived/`` after our last look."""
        folder = os.path.join(self.journal.root, path.rsplit("/", 1)[0], L.ARCHIVE_DIR)
        try:
            entries = [e for e in os.scandir(folder) if e.inode() == watched.ino and e.name.endswith(L.YAML_SUFFIX)]
        except OSError:
            return []
        if not entries:
            return []
        entry = entries[0]
        archived = ConversationRef(watched.ref.user, "archive", entry.name[: -len(L.YAML_SUFFIX)])
        rel = os.path.relpath(entry.path, self.journal.root)
        size = entry.stat(follow_symlinks=False).st_size
        if size <= watched.offset:
            return []
        moved = _Watched(archived, watched.ino, watched.offset, watched.count, watched.newest)
        moved.pending_size = size  # it will not grow any more
        return self._consume(rel, moved, self._read(rel, watched.offset, size), size, only_newer=False)
