"""Messages kept in an unlinked temporary file instead of memory: how an import stays in bounded memory.

An import is validated whole before anything is written (an error names its
record and nothing is written), so every message must be kept until the
write. A :class:`MessageSpool` keeps them as :mod:`marshal` records in a
temporary file that has no name (mode 0600, gone whatever happens to the
process); memory holds one integer per message. :meth:`MessageSpool.messages`
is a read-only sequence over them, read back lazily in blocks of about a
megabyte, which :meth:`dialogctl.journal.core.Journal.append` and
:meth:`~dialogctl.journal.core.Journal.write_conversation` take like a list and
write in pieces (a batch mark, not a single ``write``, makes it all or
nothing: see :mod:`dialogctl.fileformat.codec`).
"""

from __future__ import annotations

import marshal
import os
from array import array
from collections.abc import Hashable, Iterator, Sequence
from typing import IO, overload

from ..errors import storage_error
from ..models import Message

_BLOCK = 1 << 20  # bytes read back at a time
# About this much memory is taken by the messages a GroupedSpool holds before they go to its file,
# reckoned as two bytes a character of content and a kilobyte for each message's other objects
# (about what messages parsed from JSON take: their metadata mappings are most of that).
HELD_BYTES = 16 << 20
_HELD_EXTRA = 1024


def _temporary_file() -> IO[bytes]:
    import tempfile

    try:
        return tempfile.TemporaryFile()
    except OSError as exc:
        raise storage_error(exc, "create", "a temporary file to hold the input") from None


class MessageSpool:
    """Validated messages in a nameless temporary file (a context manager; :meth:`close` removes it)."""

    def __init__(self) -> None:
        self.file = _temporary_file()
        self.offsets = array("q", [0])  # where each record starts; the last entry is where the next one will
        self._flushed = True

    def add(self, msg: Message) -> int:
        """Keep ``msg``; returns its number in the spool (0, 1, ...)."""
        data = marshal.dumps((msg.role, msg.content, msg.timestamp, msg.metadata))
        try:
            self.file.write(data)
        except OSError as exc:
            raise storage_error(exc, "write", "a temporary file holding the input") from None
        self.offsets.append(self.offsets[-1] + len(data))
        self._flushed = False
        return len(self.offsets) - 2

    def flush(self) -> None:
        """Make every message added readable (:meth:`messages` and :meth:`pick` do it themselves)."""
        if not self._flushed:
            try:
                self.file.flush()
            except OSError as exc:
                raise storage_error(exc, "write", "a temporary file holding the input") from None
            self._flushed = True

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def messages(self) -> SpooledRun:
        """Every message added, in order, as a sequence read lazily from the file."""
        self.flush()
        return SpooledRun(self, 0, len(self))

    def read(self, start: int, stop: int) -> Iterator[Message]:
        """Messages ``start``..``stop - 1``, read in blocks."""
        fd = self.file.fileno()
        offsets = self.offsets
        i = start
        while i < stop:
            begin = offsets[i]
            # As many whole records as fit in a block (at least one, however large).
            last = i + 1
            while last < stop and offsets[last + 1] - begin <= _BLOCK:
                last += 1
            try:
                block = os.pread(fd, offsets[last] - begin, begin)
            except OSError as exc:
                raise storage_error(exc, "read", "a temporary file holding the input") from None
            view = memoryview(block)
            for j in range(i, last):
                yield Message(*marshal.loads(view[offsets[j] - begin : offsets[j + 1] - begin]))
            view.release()
            i = last

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> MessageSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpooledRun(Sequence[Message]):
    """A run of a spool's messages, as a read-only sequence (slicing gives another run, reading nothing)."""

    __slots__ = ("spool", "start", "stop")

    def __init__(self, spool: MessageSpool, start: int, stop: int) -> None:
        self.spool, self.start, self.stop = spool, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> SpooledRun: ...

    def __getitem__(self, index: int | slice) -> Message | SpooledRun:
        if isinstance(index, slice):
            begin, end, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a spooled run is sliced only in steps of 1")
            return SpooledRun(self.spool, self.start + begin, self.start + max(begin, end))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("spooled message index out of range")
        return next(self.spool.read(self.start + index, self.start + index + 1))

    def __iter__(self) -> Iterator[Message]:
        return self.spool.read(self.start, self.stop)


class GroupedSpool:
    """Validated messages by group (each user's batch of ``append --jsonl``) in a nameless temporary file.

    Messages are held in memory by group until they take about :data:`HELD_BYTES`;
    then each group's run goes to the file as one :mod:`marshal` record. A
    group is read back as those few records, one read each, and the run still
    held: memory is bounded however large the input, and neither writing nor
    reading costs a system call per message.
    """

    def __init__(self, held_bytes: int = HELD_BYTES) -> None:
        self.file = _temporary_file()
        self.held: dict[Hashable, list[Message]] = {}
        self.records: dict[Hashable, list[tuple[int, int]]] = {}  # each group's records in the file: (offset, length)
        self.held_bytes = held_bytes
        self._holding = 0  # about how many bytes the held messages take
        self._end = 0

    def add(self, key: Hashable, msg: Message) -> None:
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = []
        held.append(msg)
        self._holding += 2 * len(msg.content) + _HELD_EXTRA
        if self._holding >= self.held_bytes:
            self._write_held()

    def _write_held(self) -> None:
        try:
            for key, held in self.held.items():
                data = marshal.dumps(list(map(tuple, held)))
                self.file.write(data)
                self.records.setdefault(key, []).append((self._end, len(data)))
                self._end += len(data)
            self.file.flush()
        except OSError as exc:
            raise storage_error(exc, "write", "a temporary file holding the input") from None
        self.held = {}
        self._holding = 0

    def load(self, key: Hashable) -> list[Message]:
        """The messages of a group, in the order added."""
        messages: list[Message] = []
        fd = self.file.fileno()
        try:
            for offset, length in self.records.get(key, ()):
                messages.extend(map(Message._make, marshal.loads(os.pread(fd, length, offset))))
        except OSError as exc:
            raise storage_error(exc, "read", "a temporary file holding the input") from None
        messages.extend(self.held.get(key, ()))
        return messages

    def close(self) -> None:
        self.file.close()
