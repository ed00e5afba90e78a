"""Following the journal live: messages as they are appended, anywhere or for some users.

A :class:`Follower` polls. Each round it stats the active conversation files
(``current.yaml``, ``session-*.yaml``) of the followed users, reads only the
bytes added since its last look, and yields the messages in them. With no
users named, the user folders are re-walked every ``rescan`` seconds so new
users are picked up.

Decisions a reader must know:

* Framed records (dialogctl's own) are yielded as soon as their frame line is
  there; the records of a batch (a multi-record write) only once its last
  record is there, so a batch is printed whole or not at all. A batch that
  stopped growing while nobody holds the user's lock was cut off by a crash:
  its records are never printed, and reading goes on after it. Text another
  writer appended without frames is read once the file has stopped growing
  for one round, so a write in progress is never read in half.
* When a file's inode changes, it was moved (archive, restore) or replaced
  (cleanup). Growth of the same inode is simply read on. For the user whose
  file moved, everything written since the last look is then read: the rest
  of the old file where it went in ``archived/`` (found by inode), archives
  written meanwhile (a fast writer can fill and archive several conversations
  between two looks), and the new file. Content that was already there before
  we started (a restored archive, the kept part of a trimmed file) is told
  apart from new appends by two rules: a file not modified since the last look
  holds nothing new, and a message older than the moment following started,
  or already printed (kept as a per-user fingerprint), is not printed again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from . import layout as L
from .codec import check_batches, find_frames, last_frame_n
from .errors import DialogError
from .journal import Journal
from .locking import probe
from .models import ConversationRef, Message
from .reader import parse_conversation
from .times import parse_timestamp, utc_now

_SLACK = 1.0  # seconds: mtime and the wall clock may disagree this much
_REMEMBERED = 4096  # fingerprints of printed messages kept per user


class Event(NamedTuple):
    ref: ConversationRef
    position: int  # the message index in its conversation
    message: Message


class _Watched:
    """What we know of one active conversation file."""

    __slots__ = ("ref", "ino", "offset", "count", "pending_size")

    def __init__(self, ref: ConversationRef, ino: int, offset: int, count: int) -> None:
        self.ref = ref
        self.ino = ino
        self.offset = offset  # bytes already read
        self.count = count  # messages before ``offset``
        self.pending_size = -1  # size seen last round while unframed text waited


def _fingerprint(msg: Message) -> bytes:
    return hashlib.blake2b(f"{msg.role}\0{msg.timestamp}\0{msg.content}".encode("utf-8", "surrogatepass"), digest_size=12).digest()


class Follower:
    def __init__(self, journal: Journal, users: Iterable[str] | None = None, since: datetime | None = None, rescan: float = 2.0) -> None:
        self.journal = journal
        self.users = list(users) if users is not None else None
        self.since = since
        self.rescan = rescan
        self.started = utc_now()
        self.files: dict[str, _Watched] = {}  # by path relative to the root
        self.printed: dict[str, OrderedDict[bytes, None]] = {}  # per user
        self._last_look = time.time()
        self._last_scan = -1e18
        self._user_list: list[str] = []
        self._first_round = True

    # --- rounds ----------------------------------------------------------------------

    def poll(self) -> list[Event]:
        """Everything appended since the last round (the first round sets the starting point)."""
        events: list[Event] = []
        look = time.time()
        if self.users is None and time.monotonic() - self._last_scan >= self.rescan:
            self._user_list = list(self.journal.users())
            self._last_scan = time.monotonic()
        for user in self.users if self.users is not None else self._user_list:
            events.extend(self._poll_user(user))
        self._first_round = False
        self._last_look = look
        return events

    def run(self, interval: float = 0.5, stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        while not stop():
            yield from self.poll()
            time.sleep(interval)

    def _poll_user(self, user: str) -> list[Event]:
        events: list[Event] = []
        present = self._active_files(user)
        moved: list[_Watched] = []
        for path, ref in present:
            st = self._stat(path)
            if st is None:
                continue
            watched = self.files.get(path)
            if watched is None:
                events.extend(self._start(path, ref, st))
            elif st.st_ino != watched.ino or st.st_size < watched.offset:
                moved.append(watched)
                self.files[path] = self._replacement(path, ref, st, events)
            elif st.st_size > watched.offset:
                events.extend(self._read_new(path, watched, st.st_size))
        gone = [p for p in self.files if p.startswith(self._user_prefix(user)) and p not in dict(present)]
        moved.extend(self.files.pop(p) for p in gone)
        if moved:
            events[:0] = self._recover_moved(user, moved)
        return events

    # --- files ---------------------------------------------------------------------------

    def _user_prefix(self, user: str) -> str:
        try:
            return self.journal.user_path(user) + "/"
        except Exception:  # noqa: BLE001 - an id this layout cannot place has no files
            return "\0"

    def _active_files(self, user: str) -> list[tuple[str, ConversationRef]]:
        try:
            rel = self.journal.user_path(user)
            names = os.listdir(os.path.join(self.journal.root, rel))
        except (OSError, ValueError):
            return []
        out = []
        for name in sorted(names):
            if name == L.CURRENT_FILE:
                out.append((f"{rel}/{name}", ConversationRef(user, "current")))
            elif name.startswith(L.SESSION_PREFIX) and name.endswith(L.YAML_SUFFIX):
                out.append((f"{rel}/{name}", ConversationRef(user, "session", name[len(L.SESSION_PREFIX) : -len(L.YAML_SUFFIX)])))
        return out

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            st = os.stat(os.path.join(self.journal.root, path), follow_symlinks=False)
        except OSError:
            return None
        return st if (st.st_mode & 0o170000) == 0o100000 else None  # regular files only

    def _read(self, path: str, start: int, end: int) -> bytes:
        try:
            fd = os.open(os.path.join(self.journal.root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return b""
        try:
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    def _start(self, path: str, ref: ConversationRef, st: os.stat_result) -> list[Event]:
        if self._first_round and self.since is None:
            # Start from now: skip what is there, but know how many messages it holds.
            self.files[path] = self._skipping(path, ref, st)
            return []
        # A file that appeared while following (or --since): read it from the start.
        watched = self.files[path] = _Watched(ref, st.st_ino, 0, 0)
        return self._read_new(path, watched, st.st_size, fresh_only=not self._first_round)

    def _skipping(self, path: str, ref: ConversationRef, st: os.stat_result) -> _Watched:
        """Watch a file from its current end (from before a batch still being written: it is new when it is whole)."""
        tail = self._read(path, max(0, st.st_size - 4096), st.st_size)
        count = last_frame_n(tail) if tail else 0
        offset = st.st_size
        if count is None:  # not ending on our frame: count by reading the file once
            data = self._read(path, 0, st.st_size)
            frames, _ = find_frames(data)
            settled = check_batches(frames).settled
            if settled < len(frames):
                offset = frames[settled].start
                data = data[:offset]
            count = len(parse_conversation(data, path).messages)
        return _Watched(ref, st.st_ino, offset, count)

    def _locked(self, user: str) -> bool:
        """Whether someone holds the user's lock now (a batch writer does for its whole batch)."""
        try:
            with self.journal.dialogs_folder(user) as dialogs:
                state = probe(dialogs)
        except (DialogError, OSError):
            return False
        return state is not None and state.held

    def _grew(self, path: str, size: int) -> bool:
        """Whether the file is larger now than ``size`` (a batch writer finishes its writes before it lets go of the lock)."""
        st = self._stat(path)
        return st is not None and st.st_size > size

    def _replacement(self, path: str, ref: ConversationRef, st: os.stat_result, events: list[Event]) -> _Watched:
        """A new file under a watched name: read what was written since the last look."""
        if st.st_mtime < self._last_look - _SLACK:
            return self._skipping(path, ref, st)  # untouched since before our last look: nothing new
        watched = _Watched(ref, st.st_ino, 0, 0)
        events.extend(self._read_new(path, watched, st.st_size, fresh_only=True))
        return watched

    def _recover_moved(self, user: str, moved: list[_Watched]) -> list[Event]:
        """Messages written to files that moved into ``archived/`` since the last look."""
        folder = os.path.join(self.journal.root, self.journal.user_path(user), L.ARCHIVE_DIR)
        try:
            entries = [e for e in os.scandir(folder) if e.name.endswith(L.YAML_SUFFIX) and not e.name.startswith(".")]
        except OSError:
            return []
        by_ino = {w.ino: w for w in moved}
        events: list[Event] = []
        for entry in sorted(entries, key=lambda e: e.stat(follow_symlinks=False).st_mtime):
            st = entry.stat(follow_symlinks=False)
            rel = os.path.relpath(entry.path, self.journal.root)
            archived = ConversationRef(user, "archive", entry.name[: -len(L.YAML_SUFFIX)])
            old = by_ino.get(st.st_ino)
            if old is not None:
                # The file we were reading: its tail after our offset is new.
                watched = _Watched(archived, st.st_ino, old.offset, old.count)
                events.extend(self._read_new(rel, watched, st.st_size, fresh_only=False, final=True))
            elif st.st_mtime >= self._last_look - _SLACK:
                # Filled and archived between two looks.
                watched = _Watched(archived, st.st_ino, 0, 0)
                events.extend(self._read_new(rel, watched, st.st_size, fresh_only=True, final=True))
        return events

    def _read_new(self, path: str, watched: _Watched, size: int, fresh_only: bool = False, final: bool = False) -> list[Event]:
        """Read complete records between ``watched.offset`` and ``size``."""
        data = self._read(path, watched.offset, size)
        frames, _ = find_frames(data)
        settled = check_batches(frames).settled
        end = frames[settled - 1].after if settled else 0
        if settled < len(frames):
            # A batch not yet whole: still being written (its writer holds the user's lock),
            # or cut off by a crash, which becomes certain once it stops growing unlocked.
            if final or (watched.pending_size == size and not self._locked(watched.ref.user) and not self._grew(path, size)):
                end = len(data)  # the reader leaves the torn batch out
                watched.pending_size = -1
            else:
                watched.pending_size = size
        elif data[end:].strip():
            if final or watched.pending_size == size:
                end = len(data)  # unframed text that stopped growing: read it now
                watched.pending_size = -1
            else:
                watched.pending_size = size
        if end == 0:
            return []
        parsed = parse_conversation(data[:end], path)
        watched.offset += end
        printed = self.printed.setdefault(watched.ref.user, OrderedDict())
        events = []
        for msg in parsed.messages:
            position = watched.count
            watched.count += 1
            moment = parse_timestamp(msg.timestamp)
            mark = _fingerprint(msg)
            if fresh_only and (mark in printed or moment is None or moment < self.started):
                continue  # there before we started, or printed already
            if self.since is not None and (moment is None or moment < self.since):
                continue
            printed[mark] = None
            if len(printed) > _REMEMBERED:
                printed.popitem(last=False)
            events.append(Event(watched.ref, position, msg))
        return events
