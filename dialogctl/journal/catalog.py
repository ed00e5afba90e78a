"""The catalog: a summary of every conversation file, so whole-journal views never re-parse what they know.

``stats``, ``list`` and cleanup planning need per-file numbers (message count,
first and last timestamp, counts by role, model and UTC day, token totals, also
by model and by day, damage), not the messages. The catalog keeps those numbers
for every file in ``system/catalog.bin`` under the journal root, keyed by the
file's path and checked against its identity (device, inode, size, mtime_ns) on
every use:

* a file whose identity matches is not opened at all;
* a file that grew by dialogctl's own appends alone is not opened either:
  each append logs what it added in ``system/catalog.log`` (the tally of its
  messages, its bytes' length, line breaks and CRC-32, the file's identity
  before and after; see :mod:`dialogctl.journal.delta`), and the entry is
  carried forward when the records chain from the entry's identity to the
  file's identity now (the new CRC-32 is combined from the old one and the
  record's, without the bytes); the log is emptied after each save;
* any other file that grew (same inode, larger) is parsed only from where its last
  valid frame ended, after checking (CRC-32 of every byte before that point)
  that what was summarised is unchanged: an edit in place followed by an
  append (a token count changed, then a message added) is read from scratch;
* a file moved by archive or restore (same inode and stat elsewhere) keeps its
  summary;
* anything else (rewritten, truncated, new) is read from scratch.

The catalog is never trusted over the files: every answer is what a full
re-read would give, and :func:`check` proves it for ``verify`` (reading every
file whose entry it holds, whatever the log said). The one change it cannot
see is one made to look like no change at all: bytes rewritten in place with
the size kept and the modification time set back (``touch -d``, ``utime``).
The delta log is believed exactly that far and no further: a record applies
only to an entry that is its "before" identity, and only if the result is the
file's identity now. ``stats --rescan`` reads every file again (and trusts
neither the catalog nor the log). Saving is an
optimisation: it happens only after a whole-journal scan that learned
something, under a non-blocking lock (a busy lock means another process is
saving the same knowledge), by atomic rename (not fsynced: a torn one is rebuilt); a journal dialogctl cannot write
still gets correct answers, read from its files. Dry runs never save.

On disk: a magic line, the payload's length and CRC-32, then the entries as
:mod:`marshal` data (measured against JSON and SQLite for 20,000 entries:
load 25 ms vs 78 ms and 117 ms). Marshal is not meant for untrusted input,
so a torn, foreign or mis-shaped file is detected by the header and the
checksum and rebuilt, never believed. Cold scans of many bytes use both
cores (``multiprocessing``); the results are the same entries the serial path
computes, merged in walk order.
"""

from __future__ import annotations

import marshal
import os
import stat
import zlib
from collections.abc import Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import parallel
from ..disk.fileops import human_size, kind_of
from ..disk.locking import try_lock
from ..disk.paths import CATALOG_FILE, CATALOG_LOCK, SYSTEM_DIR
from ..disk.storage import open_below, open_root
from ..errors import DialogError, NotFound, StorageError, storage_error
from ..fileformat.reader import parse_conversation
from ..models import RECOVERED_KINDS, ConversationSummary, Damage
from . import delta
from .files import FILE_TOO_LARGE, Conversation, ConversationFile, too_large_detail
from .tally import TALLY_LEN, Tally, merged

if TYPE_CHECKING:
    from .core import Journal

MAGIC = b"dialogctl catalog 3\n"  # 2: tokens by model and by day; 3: the check covers the whole settled prefix
_HEADER = len(MAGIC) + 12  # magic, payload length (8 bytes), CRC-32 (4 bytes)
_TORN = "torn or foreign catalog"
MAX_CATALOG = 1 << 30  # entries of about 2 million files; a larger file is not ours to load (it is rebuilt, and not saved)
DEFAULT_FILE_LIMIT = 256 << 20  # maxFileMB's default; callers pass the journal's

# Entry layout (a list, for a compact marshal payload).
E_DEV, E_INO, E_SIZE, E_MTIME, E_FORM, E_SETTLED, E_N, E_CHECK, E_LINE, E_FULL, E_BASE = range(11)
_ENTRY_LEN = 11


def summarize(conv: Conversation) -> ConversationSummary:
    """A conversation read from its file, summarised (the reference for what the catalog must say)."""
    tally = Tally()
    tally.add(conv.messages)
    tally.add_damage(conv.damage)
    return _summary(conv.ref, conv.size, conv.mtime, tally.to_list())


def _summary(ref: Any, size: int, mtime: float, full: list[Any]) -> ConversationSummary:
    messages, first, last, roles, models, tokens, token_messages, days, damage, model_tokens, day_tokens = full
    recovered = sum(1 for d in damage if d[1] in RECOVERED_KINDS) if damage else 0  # lost nothing: counted apart
    return ConversationSummary(
        ref, messages, size, mtime, first, last, roles, len(damage) - recovered, models, tokens, token_messages, days, model_tokens, day_tokens, recovered
    )


# --- reading one file into an entry ------------------------------------------------------


def read_entry(root: str, rel_path: str, old: list[Any] | None, limit: int = DEFAULT_FILE_LIMIT) -> list[Any] | None:
    """The catalog entry of one file as it is now; ``old`` (same inode) lets it read only what was added.

    None when the file is gone. The entry describes exactly the bytes read: the
    size recorded is the size read, so a file that grew meanwhile is caught next time.
    A file over ``limit`` bytes is not read: its entry records that as damage.
    """
    fd = open_below(root, rel_path)
    if fd is None:
        return None
    try:
        return _entry_from_fd(fd, os.fstat(fd), rel_path, old, limit)
    except OSError as exc:
        raise storage_error(exc, "read", rel_path) from None
    finally:
        os.close(fd)


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _too_large_entry(st: os.stat_result, limit: int) -> list[Any]:
    """What a full read of a file over the limit gives: no message, one damage (no settled offset: never read on)."""
    tally = Tally()
    tally.damage.append((None, FILE_TOO_LARGE, too_large_detail(st.st_size, limit)))
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, None, 0, 0, 0, 1, tally.to_list(), None]


def _entry_from_fd(fd: int, st: os.stat_result, rel_path: str, old: list[Any] | None, limit: int = DEFAULT_FILE_LIMIT) -> list[Any]:
    if st.st_size > limit:
        return _too_large_entry(st, limit)
    start, line, form, base, last_n, check = 0, 1, None, Tally(), 0, 0
    data = _pread_all(fd, st.st_size, 0)
    if old is not None and old[E_DEV] == st.st_dev and old[E_INO] == st.st_ino and 0 < old[E_SETTLED] <= old[E_SIZE] < len(data):
        settled = old[E_SETTLED]
        # The settled frame must end with its line break (otherwise what was added may
        # have run on into its trailer line and unmade it), and every byte before it
        # must be the one summarised: an edit in place, then an append, is read afresh.
        # (Reading and checksumming the prefix costs far less than parsing it.)
        if data[settled - 1] == 10 and zlib.crc32(memoryview(data)[:settled]) == old[E_CHECK]:
            start, line, form, last_n, check = settled, old[E_LINE], old[E_FORM], old[E_N], old[E_CHECK]
            base = Tally.from_list(old[E_BASE] if old[E_BASE] is not None else old[E_FULL])
    if len(data) > limit:  # it grew past the limit while we read
        return _too_large_entry(os.fstat(fd), limit)
    region = memoryview(data)[start:].tobytes() if start else data
    parsed = parse_conversation(region, rel_path, form=form, first_line=line, after_frame=start > 0, content=False)
    base.add(parsed.messages[: parsed.settled_messages])
    base.add_damage(parsed.damage[: parsed.settled_damage])
    settled = start
    if parsed.settled:
        settled = start + parsed.settled
        line += region.count(b"\n", 0, parsed.settled)
        last_n = parsed.last_n
        check = zlib.crc32(memoryview(data)[start:settled], check if start else 0)  # of data[:settled], carried on from the old prefix
    full = base.copy() if settled < len(data) else base
    full.add(parsed.messages[parsed.settled_messages :])
    full.add_damage(parsed.damage[parsed.settled_damage :])
    read_size = len(data)
    return [
        st.st_dev,
        st.st_ino,
        read_size,
        st.st_mtime_ns,
        parsed.form,
        settled,
        last_n,
        check,
        line,
        full.to_list(),
        None if settled == read_size else base.to_list(),
    ]


Job = tuple[str, str, list[Any] | None, int]  # root, file, its old entry, the size limit


def _read_job(job: Job) -> list[Any] | str | None:
    """A file's entry, None when it is gone, or why it could not be read (the scan goes on without it)."""
    try:
        return read_entry(*job)
    except NotFound:
        return None
    except StorageError as exc:
        return exc.reason or exc.message


# --- the catalog file ----------------------------------------------------------------------


def load(root: str) -> dict[str, list[Any]]:
    """The saved entries; empty when there is no catalog or it is torn, foreign or too large (it is then rebuilt).

    The header is read and checked first (magic, then a declared payload
    length that must be the file's size and within :data:`MAX_CATALOG`), and
    the checksum is computed over the payload piece by piece before the
    payload is loaded: a file that is not ours costs a few hundred bytes of
    reading, never its size in memory.
    """
    return _load(root)[0]


def _load(root: str) -> tuple[dict[str, list[Any]], str | None]:
    """The saved entries, and why a catalog file that exists could not be used (None when it could, or there is none)."""
    try:
        with open_root(root) as top, top.open_folder((SYSTEM_DIR,)) as system:
            st = system.stat(CATALOG_FILE)
            if st is not None and not stat.S_ISREG(st.st_mode):
                return {}, f"{kind_of(st.st_mode)} where the catalog belongs, not a regular file (never read)"
            fd = system.open_read(CATALOG_FILE)
            if fd is None:
                return {}, None
            try:
                return _load_fd(fd)
            finally:
                os.close(fd)
    except NotFound:
        return {}, None
    except StorageError as exc:
        return {}, f"unreadable catalog ({exc})"
    except OSError as exc:
        return {}, f"unreadable catalog ({exc.strerror or type(exc).__name__})"


def _load_fd(fd: int) -> tuple[dict[str, list[Any]], str | None]:
    size = os.fstat(fd).st_size
    header = os.pread(fd, _HEADER, 0)
    if len(header) < _HEADER or not header.startswith(MAGIC):
        return {}, _TORN
    length = int.from_bytes(header[len(MAGIC) : len(MAGIC) + 8], "big")
    crc = int.from_bytes(header[len(MAGIC) + 8 :], "big")
    if length != size - _HEADER:
        return {}, _TORN
    if length > MAX_CATALOG:
        return {}, f"catalog of {human_size(size)}, more than the {human_size(MAX_CATALOG)} dialogctl loads"
    running, offset = 0, _HEADER
    while offset < size:
        piece = os.pread(fd, min(1 << 20, size - offset), offset)
        if not piece:
            return {}, _TORN
        running = zlib.crc32(piece, running)
        offset += len(piece)
    if running != crc:
        return {}, _TORN
    try:
        payload = _pread_all(fd, length, _HEADER)
        entries = marshal.loads(payload)
    except (ValueError, EOFError, TypeError, MemoryError, RecursionError):
        return {}, _TORN
    if not isinstance(entries, dict):
        return {}, _TORN
    return entries, None


def save(journal: Journal, entries: dict[str, list[Any]]) -> bool:
    """Write the catalog atomically under its lock; False when busy or not writable (never an error)."""
    payload = marshal.dumps(entries)
    if len(payload) > MAX_CATALOG:
        return False  # it would never be loaded
    data = MAGIC + len(payload).to_bytes(8, "big") + zlib.crc32(payload).to_bytes(4, "big") + payload
    try:
        with open_root(journal.root) as top, top.open_folder((SYSTEM_DIR,), create=True, modes=journal.modes) as system:
            fd = system.open_read_write(CATALOG_LOCK, journal.modes)
            try:
                if not try_lock(fd):
                    return False  # another process is saving what it learned; ours is no better
                # Not fsynced (write_atomic's derived files): a catalog a crash leaves torn fails its
                # checksum and is rebuilt, and a stale one only costs reads. The fsyncs were most of a save.
                system.write_atomic(CATALOG_FILE, data, journal.modes, durable=False)
                # What the delta log told is in the entries just saved (a record appended since our
                # look at it is lost with it: that costs its file a read, nothing else). A log that
                # cannot be emptied keeps records whose "before" no saved entry is any more.
                try:
                    delta.empty(system, journal.modes)
                except (DialogError, OSError):
                    pass
            finally:
                os.close(fd)  # closing releases the lock
    except (DialogError, OSError):
        return False
    return True


_NUMBERS = itemgetter(E_DEV, E_INO, E_SIZE, E_MTIME, E_SETTLED, E_N, E_CHECK, E_LINE)
_ALL_INT = (int,) * 8


def _valid(entry: Any) -> bool:
    return (
        type(entry) is list
        and len(entry) == _ENTRY_LEN
        and type(entry[E_FULL]) is list
        and len(entry[E_FULL]) == TALLY_LEN
        and tuple(map(type, _NUMBERS(entry))) == _ALL_INT  # checked once per file on every scan: no loop in Python
    )


def _matches(entry: list[Any], f: ConversationFile) -> bool:
    return entry[E_SIZE] == f.size and entry[E_MTIME] == f.mtime_ns and entry[E_INO] == f.ino and entry[E_DEV] == f.dev


def _under(entry: list[Any], f: ConversationFile, limit: int) -> bool:
    """Whether an entry of an unchanged file says what a read under this ``maxFileMB`` says (the setting may differ from the last run's)."""
    damage = entry[E_FULL][8]
    too_large = bool(damage) and damage[0][1] == FILE_TOO_LARGE and entry[E_SETTLED] == 0
    if f.size <= limit:
        return not too_large
    return too_large and tuple(damage[0]) == (None, FILE_TOO_LARGE, too_large_detail(f.size, limit))


# --- whole-journal summaries -----------------------------------------------------------------


class Scan(NamedTuple):
    """What one pass over the journal found: per user, the files and their entries."""

    users: list[tuple[str, list[ConversationFile]]]
    entries: dict[str, list[Any]]
    read: list[str]  # files that were opened (new, grown or changed)
    learned: bool  # anything read, moved or dropped since the saved catalog


def scan(journal: Journal, saved: dict[str, list[Any]] | None = None, use_cores: bool = True) -> Scan:
    """Walk the journal and bring every file's entry up to date, reading only what changed.

    A file that grew is read on the spot, through its folder's open handle
    (a few hundred bytes); files to read from the start are read after the
    walk, on every core when they add up to many bytes.
    """
    deltas: dict[tuple[int, int], list[delta.Record]] | None = None  # the delta log, read when a file is first found grown
    saved = load(journal.root) if saved is None else saved
    users: list[tuple[str, list[ConversationFile]]] = []
    entries: dict[str, list[Any]] = {}
    by_inode: dict[tuple[int, int], list[Any]] | None = None
    read: list[str] = []
    jobs: list[Job] = []
    users_of: dict[str, str] = {}
    to_read = 0
    learned = False
    limit = journal.file_limit
    root = journal.root  # a property that builds a path each time
    for user, dialogs, files in journal.walk_open():
        users.append((user, files))
        for f in files:
            entry = saved.get(f.rel_path)
            if entry is not None and not _valid(entry):
                entry = None
            if entry is not None and _matches(entry, f) and _under(entry, f, limit):
                entries[f.rel_path] = entry
                continue
            if entry is None or (entry[E_DEV], entry[E_INO]) != (f.dev, f.ino):
                if by_inode is None:
                    by_inode = {(e[E_DEV], e[E_INO]): e for e in saved.values() if _valid(e)}
                entry = by_inode.get((f.dev, f.ino))
                if entry is not None and _matches(entry, f) and _under(entry, f, limit):  # moved by archive or restore
                    entries[f.rel_path] = entry
                    learned = True
                    continue
            if entry is not None and entry[E_SETTLED] == entry[E_SIZE] < f.size <= limit and (entry[E_DEV], entry[E_INO]) == (f.dev, f.ino):
                if deltas is None:
                    deltas = delta.load(root)
                told = deltas.get((f.dev, f.ino))
                fresh = _told(entry, told, f) if told else None
                if fresh is not None:  # grown by our own appends alone: known without a read
                    entries[f.rel_path] = fresh
                    learned = True
                    continue
            if entry is not None and 0 < entry[E_SETTLED] <= entry[E_SIZE] < f.size and (entry[E_DEV], entry[E_INO]) == (f.dev, f.ino):
                fresh = _read_grown(journal, dialogs, f, entry)
                read.append(f.rel_path)
                learned = True
                if fresh is not None:
                    entries[f.rel_path] = fresh
                continue
            jobs.append((root, f.rel_path, entry, limit))
            users_of[f.rel_path] = user
            to_read += f.size
    if jobs:
        learned = True
        for (_, rel_path, _, _), got in zip(jobs, _run(jobs, use_cores and to_read >= parallel.PARALLEL_BYTES), strict=True):
            read.append(rel_path)
            if isinstance(got, str):  # could not be read: said at the end, and left out
                journal.note_unreadable(rel_path, got, users_of.get(rel_path))
            elif got is not None:
                entries[rel_path] = got
    if len(entries) != len(saved):
        learned = True
    return Scan(users, entries, read, learned)


def _told(entry: list[Any], records: list[delta.Record], f: ConversationFile) -> list[Any] | None:
    """The entry of a file grown by our own appends alone, from the delta log's records of its inode; None when they do not account for it.

    Each record applies to the entry that is exactly its "before" and fully
    settled (it ends with our last whole record, as each record leaves it);
    the result counts only once it is the file as the walk found it (see
    :mod:`dialogctl.journal.delta` for why that is what a read would give).
    """
    current = entry
    for rec in records:
        if (current[E_DEV], current[E_INO], current[E_SIZE], current[E_MTIME]) != rec.before or current[E_SETTLED] != current[E_SIZE]:
            continue
        if current[E_SIZE] and current[E_FORM] != rec.form:
            continue
        n = rec.length
        zeros = bytes(n)
        # CRC-32 is affine: crc(A + B) = crc(B, crc(A)) = crc(0^n, crc(A)) ^ crc(B) ^ crc(0^n)
        check = zlib.crc32(zeros, current[E_CHECK]) ^ rec.crc ^ zlib.crc32(zeros)
        current = [
            current[E_DEV],
            current[E_INO],
            rec.size,
            rec.mtime_ns,
            current[E_FORM] if current[E_SIZE] else rec.form,
            rec.size,
            rec.last_n,
            check,
            current[E_LINE] + rec.newlines,
            merged(current[E_FULL], rec.tally),
            None,
        ]
        if _matches(current, f):  # the file as the walk found it: appends since then are the next scan's
            return current
    return None


def _read_grown(journal: Journal, dialogs: Any, f: ConversationFile, entry: list[Any]) -> list[Any] | None:
    """A grown file's entry, opened through the user's open ``dialogs/`` handle."""
    try:
        fd = journal.open_file(dialogs, f.ref)
    except NotFound:  # archived/ went away while we looked
        return None
    except StorageError as exc:
        journal.note_unreadable(f.rel_path, exc, f.ref.user)
        return None
    if fd is None:
        return None
    try:
        return _entry_from_fd(fd, os.fstat(fd), f.rel_path, entry, journal.file_limit)
    except OSError as exc:
        journal.note_unreadable(f.rel_path, exc, f.ref.user)
        return None
    finally:
        os.close(fd)


def _run(jobs: list[Job], use_cores: bool) -> list[list[Any] | str | None]:
    count = parallel.workers()
    if not use_cores or count < 2 or len(jobs) < 2:
        return [_read_job(job) for job in jobs]
    size = max(1, min(64, len(jobs) // (count * 8)))
    chunks = (jobs[i : i + size] for i in range(0, len(jobs), size))
    out: list[list[Any] | str | None] = []
    for entries in parallel.ordered(_read_jobs, chunks, count, window=4 * count, what="reading conversation files for the catalog"):
        out.extend(entries)
    return out


def _read_jobs(jobs: list[Job]) -> list[list[Any] | str | None]:
    return [_read_job(job) for job in jobs]


def summaries(journal: Journal, save_learned: bool = True, rescan: bool = False) -> Iterator[tuple[str, list[ConversationSummary]]]:
    """Every user's conversation summaries, in :meth:`Journal.users` order, exactly as a full re-read gives them.

    Damage stored for a file is reported in ``journal.damage`` as a read would.
    With ``save_learned`` (not for dry runs) the refreshed catalog is saved.
    ``rescan`` trusts nothing saved: every file is read again (and the catalog
    rebuilt from them).
    """
    result = scan(journal, {} if rescan else None)
    if result.learned and save_learned and result.users:
        save(journal, result.entries)
    for user, files in result.users:
        out = []
        for f in files:
            entry = result.entries.get(f.rel_path)
            if entry is None:  # vanished between the walk and the read
                continue
            full = entry[E_FULL]
            if full[8]:
                journal.damage.extend(Damage(f.rel_path, line, kind, detail) for line, kind, detail in full[8])
            out.append(_summary(f.ref, entry[E_SIZE], f.mtime, full))
        yield user, out


def saved_summary(saved: dict[str, list[Any]], f: ConversationFile) -> ConversationSummary | None:
    """The summary the saved catalog holds for ``f`` if the file is unchanged since; else None.

    Reads nothing: for commands that only want to skip files (``search`` with a
    time or role filter) and must not pay for a scan of the whole journal.
    """
    entry = saved.get(f.rel_path)
    if entry is None or not _valid(entry) or not _matches(entry, f):
        return None
    return _summary(f.ref, entry[E_SIZE], f.mtime, entry[E_FULL])


def saved_damage(saved: dict[str, list[Any]], f: ConversationFile) -> list[Damage] | None:
    """The damage the saved catalog records for ``f`` if the file is unchanged since; else None (read the file to know)."""
    entry = saved.get(f.rel_path)
    if entry is None or not _valid(entry) or not _matches(entry, f):
        return None
    return [Damage(f.rel_path, line, kind, detail) for line, kind, detail in entry[E_FULL][8]]


class CatalogProblem(NamedTuple):
    path: str
    problem: str


def check(journal: Journal) -> list[CatalogProblem]:
    """Compare the saved catalog with the files (for ``verify``); changes nothing.

    An entry that no longer matches its file's identity is merely out of date
    (the next scan refreshes it). An entry that matches but says something a
    full re-read does not is a problem, and so is a catalog file that exists
    but is torn or foreign.
    """
    problems: list[CatalogProblem] = []
    saved, unusable = _load(journal.root)
    rel = f"{SYSTEM_DIR}/{CATALOG_FILE}"
    if unusable is not None:
        problems.append(CatalogProblem(rel, f"{unusable}; it will be rebuilt"))
    if not saved:
        return problems
    for _user, files in journal.walk():
        for f in files:
            entry = saved.get(f.rel_path)
            if entry is None or not _valid(entry) or not _matches(entry, f):
                continue
            fresh = read_entry(journal.root, f.rel_path, None, journal.file_limit)
            if fresh is not None and _matches(fresh, f) and fresh[E_FULL] != entry[E_FULL]:
                problems.append(CatalogProblem(f.rel_path, "catalog summary differs from the file"))
    return problems
