"""The catalog's delta log: what dialogctl's own appends added, so the catalog need not read it back.

A file that grew since the catalog summarised it is read from where its
summary ended, after a CRC-32 of every byte before that point (see
:mod:`dialogctl.journal.catalog`): for files that grow a little each, most of
that cost is reading and checksumming the prefix again. But when dialogctl
itself appended, it knew exactly what it wrote. Each append (``append``, and
each user's batch of ``append --jsonl`` once its group commit made it
durable) therefore adds one line to ``system/catalog.log`` telling:

* the file (its path, and its device and inode), its identity just before
  our write (size, mtime_ns) and just after it;
* the tally of the messages written (:class:`~dialogctl.journal.tally.Tally`),
  the shape they were written in, the ``n`` of the last one, the number of
  line breaks in the bytes, their CRC-32 and length.

It is written only when the ``fstat`` just before our first write and the one
just after our last say that nobody else wrote to the file in between: the
same inode, and the size grown by exactly our bytes (the servers append
without any lock, and only ever append, so any byte of theirs shows in the
size). A batch too large to tally cheaply (:data:`MAX_MESSAGES`,
:data:`MAX_BYTES`) is not logged: the catalog reads it as before.

Trust. The catalog applies a record to a file's entry only when the entry
describes the file exactly as the record's "before" (device, inode, size,
mtime_ns), and that entry is fully settled (it ends with our last whole
record); records are applied in log order, each to what the one before left;
and the result is used only when its "after" is the file's identity now.
So a record is believed exactly as far as an unchanged (device, inode, size,
mtime_ns) is believed already: the one thing it cannot see is bytes rewritten
in place with the size kept and the modification time set back, or (on a file
system whose clock ticks coarser than the gap) an edit in place made within the
same tick as our append, which leaves the identity our record's "after" too. A server's
append after ours, an archive, a restore, a rewrite, an edit then an append,
a write cut back (the log is written only after the fsync) all leave a file
whose identity is not the record's "after": the file is read, as before.

The log is an optimisation only. It is never fsynced; a failure to write it
never fails an append; it is appended to only when it exists (the catalog's
save creates it beside ``catalog.bin``, with the journal's owner and modes:
the writer never creates anything in ``system/``) and is under
:data:`MAX_LOG` bytes, so a log nobody reads cannot grow for ever. Each
record is one line written by one ``write`` on an ``O_APPEND`` descriptor
(appends of several users at once do not mix), and carries its own CRC-32:
a torn line, or two glued together, fails it and is ignored (a read more,
nothing worse). The catalog empties the log after each save.
"""

from __future__ import annotations

import json
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ..disk.fileops import FILE_FLAGS, Modes
from ..disk.paths import CATALOG_LOG, SYSTEM_DIR
from ..disk.storage import Folder, open_root
from ..disk.syncgroup import SyncGroup
from ..errors import DialogError
from ..models import Message
from .tally import TALLY_LEN, Tally

MAX_LOG = 32 << 20  # a log this large is no longer appended to (the next catalog save empties it)
MAX_MESSAGES = 4096  # a write of more messages than this is not logged (tallying them costs more than a read)
MAX_BYTES = 4 << 20  # nor one of more bytes
_VERSION = 1
_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode  # one line, ASCII: no line break can get into a record


class Record(NamedTuple):
    """One append of ours, as the log tells it."""

    before: tuple[int, int, int, int]  # device, inode, size, mtime_ns
    size: int  # after the write
    mtime_ns: int
    form: str
    tally: list[Any]  # Tally.to_list() of the messages written
    newlines: int
    last_n: int
    crc: int  # CRC-32 of the bytes written
    length: int


class Digest:
    """CRC-32, length and line breaks of the pieces that pass through :meth:`through`."""

    __slots__ = ("crc", "length", "newlines")

    def __init__(self) -> None:
        self.crc = self.length = self.newlines = 0

    def through(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.crc = zlib.crc32(piece, self.crc)
            self.length += len(piece)
            self.newlines += piece.count(b"\n")
            yield piece


def wanted(messages: Any) -> bool:
    """Whether a write of ``messages`` is worth a record (a list, and few enough)."""
    return type(messages) is list and len(messages) <= MAX_MESSAGES


def record(rel_path: str, seen: list[os.stat_result], digest: Digest, messages: list[Message], form: str, last_n: int) -> bytes | None:
    """The log line of an append that wrote ``digest``'s bytes; None unless the file took exactly our bytes (see the module docstring)."""
    if len(seen) != 2 or digest.length > MAX_BYTES:
        return None
    before, after = seen
    if (
        (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino)
        or after.st_size != before.st_size + digest.length
        or not stat.S_ISREG(after.st_mode)
        or not digest.length
    ):
        return None
    tally = Tally()
    tally.add(messages)
    if tally.damage:
        return None
    fields = [
        _VERSION,
        rel_path,
        before.st_dev,
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
        after.st_size,
        after.st_mtime_ns,
        form,
        digest.newlines,
        last_n,
        digest.crc,
        digest.length,
        tally.to_list(),
    ]
    body = _encode(fields).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def tell(
    root: str, later: SyncGroup | None, rel_path: str, seen: list[os.stat_result], digest: Digest, messages: list[Message], form: str, last_n: int
) -> None:
    """Log an append of ours that is durable now, or (a group commit, ``later``) keep its line until the group's flush made it durable."""
    try:
        line = record(rel_path, seen, digest, messages, form, last_n)
    except Exception:  # an optimisation only: whatever goes wrong here never fails the append it follows
        return
    if line is None:
        return
    if later is None:
        write(root, line)
    else:
        later.keep(line)


def write(root: str, data: bytes) -> None:
    """Append log lines (one ``write``) if the log exists and is under :data:`MAX_LOG`; never an error."""
    if not data:
        return
    try:
        with open_root(root) as top, top.open_folder((SYSTEM_DIR,)) as system:
            seen = system.stat(CATALOG_LOG)  # looked at before it is opened: a device's open can have effects of its own
            if seen is None or not stat.S_ISREG(seen.st_mode) or seen.st_size + len(data) > MAX_LOG:
                return
            fd = os.open(CATALOG_LOG, os.O_WRONLY | os.O_APPEND | FILE_FLAGS, dir_fd=system.fd)
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_size + len(data) <= MAX_LOG:
                    os.write(fd, data)
            finally:
                os.close(fd)
    except (OSError, DialogError):
        pass  # no log (no catalog yet), or not ours to write: the next scan reads the file instead


def load(root: str) -> dict[tuple[int, int], list[Record]]:
    """The log's valid records by (device, inode), each file's in log order; empty when there is no log or it cannot be read."""
    try:
        with open_root(root) as top, top.open_folder((SYSTEM_DIR,)) as system:
            fd = system.open_read(CATALOG_LOG)
            if fd is None:
                return {}
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, min(size, MAX_LOG + (1 << 20)), 0) if size else b""
            finally:
                os.close(fd)
    except (OSError, DialogError):
        return {}
    return parse(data)


def parse(data: bytes) -> dict[tuple[int, int], list[Record]]:
    """The valid records of a log's bytes (a torn, glued or foreign line is skipped)."""
    found: dict[tuple[int, int], list[Record]] = {}
    crc32 = zlib.crc32
    for line in data.split(b"\n")[:-1]:  # the last piece has no line break: torn, or empty
        if len(line) < 10 or line[8:9] != b" ":
            continue
        try:
            if int(line[:8], 16) != crc32(memoryview(line)[9:]):
                continue
            fields = json.loads(line[9:])
        except ValueError:
            continue
        got = _record(fields)
        if got is not None:
            found.setdefault(got.before[:2], []).append(got)
    return found


def _record(fields: Any) -> Record | None:
    if type(fields) is not list or len(fields) != 14 or fields[0] != _VERSION:
        return None
    _, _path, dev, ino, size0, mtime0, size1, mtime1, form, newlines, last_n, crc, length, tally = fields
    numbers = (dev, ino, size0, mtime0, size1, mtime1, newlines, last_n, crc, length)
    if any(type(n) is not int for n in numbers) or form not in ("documents", "sequence") or size1 != size0 + length or length <= 0:
        return None
    if not _tally_shape(tally):
        return None
    return Record((dev, ino, size0, mtime0), size1, mtime1, form, tally, newlines, last_n, crc, length)


def _tally_shape(tally: Any) -> bool:
    """Whether a record's tally has the list form's shape (a record passed its CRC; this keeps a foreign one from breaking a scan)."""
    if type(tally) is not list or len(tally) != TALLY_LEN:
        return False
    messages, first, last, roles, models, tokens, token_messages, days, damage, model_tokens, day_tokens = tally
    counts = [roles, models, days] + [d for d in (model_tokens, day_tokens) if d is not None]
    return (
        all(type(n) is int for n in (messages, tokens, token_messages))
        and all(t is None or type(t) is str for t in (first, last))
        and damage == []
        and all(type(d) is dict and all(type(v) is int for v in d.values()) for d in counts)
    )


def empty(system: Folder, modes: Modes) -> None:
    """Create the log (following ``modes``, as the catalog's other files), or empty it: its records are in the catalog just saved."""
    fd = system.open_read_write(CATALOG_LOG, modes)
    try:
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
