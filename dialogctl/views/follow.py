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
* Position, not time, decides what is new: every message appended after
  following started is printed, whatever its timestamp (a replayed backlog
  stamped an hour ago included). Growth of the same inode is simply read on.
* When a file's inode changes, it was moved (archive, restore) or replaced
  (cleanup, repair). For the user whose file moved, everything written since
  the last look is then read: the rest of the old file where it went in
  ``archived/`` (found by inode), archives written meanwhile (a fast writer
  can fill and archive several conversations between two looks), and the new
  file. A file that appears for a user we knew (a look that fell between an
  archive's rename and its new empty file) is read the same way, archives
  filled meanwhile first. Content that was there before is told apart from new appends by
  position: a file we read before (an archive restored) goes on from where we
  left it, a file not modified since the last look holds nothing new, and a
  new file (a new user, the empty file after an archive) is new from its first
  byte; a message already printed (kept as a per-user fingerprint) is not
  printed again. The one place time still decides is a file rewritten in place
  of one we watched (a cleanup's trim, a repair): its kept messages were never
  printed, so there a message older than the moment following started counts
  as kept, not new.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from ..disk import layout as L
from ..disk.locking import probe
from ..disk.storage import open_below
from ..errors import DialogError
from ..fileformat.codec import check_batches, find_frames, last_frame_n
from ..fileformat.reader import parse_conversation
from ..journal.core import Journal
from ..journal.files import FILE_TOO_LARGE, too_large_detail
from ..models import ConversationRef, Damage, Message
from ..times import parse_timestamp, utc_now

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


_KNOWN = 4096  # files we stopped watching (moved into archived/), remembered by inode


class Follower:
    def __init__(self, journal: Journal, users: Iterable[str] | None = None, since: datetime | None = None, rescan: float = 2.0) -> None:
        self.journal = journal
        self.users = list(users) if users is not None else None
        self.since = since
        self.rescan = rescan
        self.started = utc_now()
        self.files: dict[str, _Watched] = {}  # by path relative to the root
        self.printed: dict[str, OrderedDict[bytes, None]] = {}  # per user
        self.known: OrderedDict[int, tuple[int, int]] = OrderedDict()  # inode -> (offset, count) of a file read, then moved away
        self.archived_at_start: dict[int, int] = {}  # inode -> size of each archive of a user when first looked at
        self._looked_at: set[str] = set()  # users whose archives were noted
        self._scan_look = time.time()  # when the user folders were last listed
        self._new_since: float | None = None  # for users found by the latest listing: when the one before it ran
        self._last_look = time.time()
        self._last_scan = -1e18
        self._user_list: list[str] = []
        self._first_round = True
        self._too_large: set[str] = set()  # files reported once as too large to read

    # --- rounds ----------------------------------------------------------------------

    def poll(self) -> list[Event]:
        """Everything appended since the last round (the first round sets the starting point)."""
        events: list[Event] = []
        look = time.time()
        if self.users is None and time.monotonic() - self._last_scan >= self.rescan:
            self._user_list = list(self.journal.users())
            self._last_scan = time.monotonic()
            # A user the previous listing did not see was made since it ran: its files are new from then on.
            self._new_since, self._scan_look = self._scan_look, look
        for user in self.users if self.users is not None else self._user_list:
            events.extend(self._poll_user(user))
        self._first_round = False
        self._last_look = look
        return events

    def run(
        self,
        interval: float = 0.5,
        stop: Callable[[], bool] = lambda: False,
        started: Callable[[], None] | None = None,
        rested: Callable[[], None] | None = None,
    ) -> Iterator[Event]:
        """Poll every ``interval`` seconds until ``stop``; ``started`` is called once the starting point is taken (after the first round),
        ``rested`` after every round's events were taken, before the pause (where ``follow --cursor-file`` saves its cursor)."""
        while not stop():
            yield from self.poll()
            if started is not None:
                started()
                started = None
            if rested is not None:
                rested()
            time.sleep(interval)

    def _poll_user(self, user: str) -> list[Event]:
        events: list[Event] = []
        present = self._active_files(user)
        new_user = user not in self._looked_at
        if new_user:
            self._looked_at.add(user)
            if self._first_round:
                self._note_archives(user)
        moved: list[_Watched] = []
        replaced: list[tuple[str, ConversationRef, os.stat_result, _Watched]] = []
        appeared = False
        for path, ref in present:
            st = self._stat(path)
            if st is None:
                continue
            watched = self.files.get(path)
            if watched is None:
                since = self._new_since if new_user and self._new_since is not None else self._last_look
                events.extend(self._start(path, ref, st, since))
                appeared = True
            elif st.st_ino != watched.ino or st.st_size < watched.offset:
                moved.append(watched)
                replaced.append((path, ref, st, watched))
            elif st.st_size > watched.offset:
                events.extend(self._read_new(path, watched, st.st_size))
        gone = [p for p in self.files if p.startswith(self._user_prefix(user)) and p not in dict(present)]
        moved.extend(self.files.pop(p) for p in gone)
        recovered: list[Event] = []
        archived: set[int] = set()
        # A file that appeared for a user we knew (the last look fell between an archive's rename and
        # its new empty file) may follow conversations filled and archived meanwhile: look for them too.
        if moved or (appeared and not new_user and not self._first_round):
            recovered, archived = self._recover_moved(user, moved)
        for path, ref, st, old in replaced:
            # The old file went into archived/ (an archive, a restore's swap): the new one is new from its
            # first byte. It went nowhere: the new file was rewritten from it (a trim, a repair).
            self.files[path] = self._replacement(path, ref, st, events, rewritten=old.ino not in archived)
        return recovered + events

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
            ref = L.conversation_of(user, name)
            if ref is not None:
                out.append((f"{rel}/{name}", ref))
        return out

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            st = os.stat(os.path.join(self.journal.root, path), follow_symlinks=False)
        except OSError:
            return None
        return st if (st.st_mode & 0o170000) == 0o100000 else None  # regular files only

    def _read(self, path: str, start: int, end: int, ino: int | None = None) -> bytes:
        """Bytes [start, end) of a file, opened like every file in the journal (folder by folder, never through a link,
        never a FIFO); nothing when that is more than ``maxFileMB`` (reported once, as damage).

        ``ino``: the file that was looked at. The name may hold another file by
        the time it is opened (an archive renamed it away and the next append
        filled its successor): nothing is read then, and the next round finds
        the move and reads the file where it went.
        """
        if end - start > self.journal.file_limit:
            if path not in self._too_large:
                self._too_large.add(path)
                self.journal.damage.append(Damage(path, None, FILE_TOO_LARGE, too_large_detail(end - start, self.journal.file_limit)))
            return b""
        try:
            fd = open_below(self.journal.root, path)
        except (DialogError, OSError):
            return b""
        if fd is None:
            return b""
        try:
            if ino is not None and os.fstat(fd).st_ino != ino:
                return b""
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    def _note_archives(self, user: str) -> None:
        """Remember the inode and size of each archive there before we started: restored, it holds nothing new up to that size."""
        folder = os.path.join(self.journal.root, self._user_prefix(user), L.ARCHIVE_DIR)
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(L.YAML_SUFFIX) and not entry.name.startswith("."):
                        self.archived_at_start[entry.inode()] = entry.stat(follow_symlinks=False).st_size
        except (OSError, ValueError):
            pass

    def _start(self, path: str, ref: ConversationRef, st: os.stat_result, since: float | None = None) -> list[Event]:
        if self._first_round and self.since is None:
            # Start from now: skip what is there, but know how many messages it holds.
            self.files[path] = self._skipping(path, ref, st)
            return []
        if not self._first_round:
            events: list[Event] = []
            again = self._known_file(path, ref, st, events)
            if again is not None:  # a file we read before, back under an active name (a restore)
                self.files[path] = again
                return events
            if st.st_mtime < (self._last_look if since is None else since) - _SLACK:  # not written since we could have seen it
                self.files[path] = self._skipping(path, ref, st)
                return []
        # A file that appeared while following (a new user, a new session), or --since: read it from the start.
        watched = self.files[path] = _Watched(ref, st.st_ino, 0, 0)
        return self._read_new(path, watched, st.st_size, fresh_only=not self._first_round)

    def _known_file(self, path: str, ref: ConversationRef, st: os.stat_result, events: list[Event]) -> _Watched | None:
        """A file we read up to some point before it moved away, now back: read on from that point."""
        known = self.known.pop(st.st_ino, None)
        if known is None and st.st_ino in self.archived_at_start:
            size = self.archived_at_start.pop(st.st_ino)
            known = (size, self._count_at(path, size))
        if known is None:
            return None
        if known[0] > st.st_size:  # shorter than what we read of it: rewritten in place, or a look that is already stale
            now = self._stat(path)
            if now is None or now.st_ino != st.st_ino:
                # The name holds another file already: the one looked at grew and moved on since (an archive).
                # Watched from what was read of it, the next round finds it where it went and reads the rest.
                return _Watched(ref, st.st_ino, *known)
            if known[0] > now.st_size:
                return None
            st = now
        watched = _Watched(ref, st.st_ino, *known)
        events.extend(self._read_new(path, watched, st.st_size))
        return watched

    def _count_at(self, path: str, size: int) -> int:
        """How many messages the first ``size`` bytes of a file hold (its last frame says, else a read)."""
        tail = self._read(path, max(0, size - 4096), size)
        count = last_frame_n(tail) if tail else 0
        if count is None:
            count = len(parse_conversation(self._read(path, 0, size), path).messages)
        return count

    def _remember(self, watched: _Watched) -> None:
        self.known[watched.ino] = (watched.offset, watched.count)
        self.known.move_to_end(watched.ino)
        if len(self.known) > _KNOWN:
            self.known.popitem(last=False)

    def _skipping(self, path: str, ref: ConversationRef, st: os.stat_result) -> _Watched:
        """Watch a file from its current end (from before a batch still being written: it is new when it is whole)."""
        tail = self._read(path, max(0, st.st_size - 4096), st.st_size, st.st_ino)
        count = last_frame_n(tail) if tail else 0
        offset = st.st_size
        if count is None:  # not ending on our frame: count by reading the file once
            data = self._read(path, 0, st.st_size, st.st_ino)
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

    def _replacement(self, path: str, ref: ConversationRef, st: os.stat_result, events: list[Event], rewritten: bool) -> _Watched:
        """A new file under a watched name: read what was written since the last look."""
        again = self._known_file(path, ref, st, events)
        if again is not None:
            return again
        if st.st_mtime < self._last_look - _SLACK:
            return self._skipping(path, ref, st)  # untouched since before our last look: nothing new (a restored archive)
        watched = _Watched(ref, st.st_ino, 0, 0)
        events.extend(self._read_new(path, watched, st.st_size, fresh_only=True, kept_by_time=rewritten))
        return watched

    def _recover_moved(self, user: str, moved: list[_Watched]) -> tuple[list[Event], set[int]]:
        """Messages written to files that moved into ``archived/`` since the last look; also which of ``moved`` went there."""
        folder = os.path.join(self.journal.root, self.journal.user_path(user), L.ARCHIVE_DIR)
        try:
            entries = [(e, ref) for e in os.scandir(folder) if (ref := L.conversation_of(user, e.name, archived=True)) is not None]
        except OSError:
            return [], set()
        by_ino = {w.ino: w for w in moved}
        found: set[int] = set()
        events: list[Event] = []
        for entry, archived in sorted(entries, key=lambda e: e[0].stat(follow_symlinks=False).st_mtime):
            st = entry.stat(follow_symlinks=False)
            rel = os.path.relpath(entry.path, self.journal.root)
            old = by_ino.get(st.st_ino)
            if old is not None:
                # The file we were reading: its tail after our offset is new.
                watched = _Watched(archived, st.st_ino, old.offset, old.count)
                events.extend(self._read_new(rel, watched, st.st_size, fresh_only=False, final=True))
                found.add(st.st_ino)
                self._remember(watched)
            elif st.st_mtime >= self._last_look - _SLACK and st.st_ino not in self.known and st.st_ino not in self.archived_at_start:
                # Filled and archived between two looks: new from its first byte.
                watched = _Watched(archived, st.st_ino, 0, 0)
                events.extend(self._read_new(rel, watched, st.st_size, fresh_only=True, final=True))
                self._remember(watched)
        return events, found

    def _read_new(self, path: str, watched: _Watched, size: int, fresh_only: bool = False, final: bool = False, kept_by_time: bool = False) -> list[Event]:
        """Read complete records between ``watched.offset`` and ``size``.

        ``fresh_only``: skip messages already printed. ``kept_by_time`` (a file
        rewritten from one we watched): also skip messages older than the
        moment following started, the part the rewrite kept.
        """
        data = self._read(path, watched.offset, size, watched.ino)
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
            if fresh_only and (mark in printed or (kept_by_time and (moment is None or moment < self.started))):
                continue  # printed already, or kept by a rewrite from before we started
            if self.since is not None and (moment is None or moment < self.since):
                continue
            printed[mark] = None
            if len(printed) > _REMEMBERED:
                printed.popitem(last=False)
            events.append(Event(watched.ref, position, msg))
        return events
