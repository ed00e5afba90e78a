"""Both cores for whole-journal reads: conversation files parsed and formatted in worker processes.

:func:`map_conversations` reads every conversation file of a journal, applies
a function to each :class:`~dialogctl.journal.Conversation` and yields the
results in walk order, exactly as the serial loop would. With enough bytes to
read and more than one CPU, the files are read, parsed and handed to the
function in worker processes, and only the (small, or already formatted)
results travel back: sending the parsed messages themselves would cost the
main process about as much as parsing them. At most a few batches are in
flight, so memory stays flat however slowly the output is consumed.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .journal import Conversation, Journal
from .models import ConversationRef, Damage
from .reader import parse_conversation
from .storage import open_below, read_all

T = TypeVar("T")
PARALLEL_BYTES = 16 << 20  # below this, starting workers costs more than they save
BATCH_BYTES = 4 << 20  # bytes of files per task sent to a worker


def read_conversation(root: str, rel_path: str, ref: ConversationRef) -> Conversation | None:
    """One conversation file by its path below the root; None if it is gone."""
    fd = open_below(root, rel_path)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        data = read_all(fd)
    finally:
        os.close(fd)
    parsed = parse_conversation(data, rel_path)
    return Conversation(ref, rel_path, parsed.messages, parsed.damage, st.st_size, st.st_mtime, parsed.form)


def _batch(task: tuple[str, list[tuple[str, ConversationRef]], Callable[[Conversation], Any]]) -> list[tuple[Any, list[Damage]]]:
    root, files, fn = task
    out = []
    for rel_path, ref in files:
        conv = read_conversation(root, rel_path, ref)
        if conv is not None:
            out.append((fn(conv), conv.damage))
    return out


def workers() -> int:
    """How many worker processes are worth starting: the CPUs this process may use (at most 8)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 8)


def pool(count: int) -> Any:
    """A process pool; forked where possible (no re-import of the program)."""
    import multiprocessing

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return context.Pool(count)


def map_conversations(journal: Journal, fn: Callable[[Conversation], T], include_archives: bool = True, min_bytes: int | None = None) -> Iterator[T]:
    """``fn(conversation)`` for every conversation file, in walk order; damage goes to ``journal.damage``.

    ``fn`` must be a module-level function (it may run in another process).
    """
    files = [(f.rel_path, f.ref, f.size) for _user, found in journal.walk() for f in found if include_archives or not f.ref.archived]
    threshold = PARALLEL_BYTES if min_bytes is None else min_bytes
    count = workers()
    if count < 2 or len(files) < 2 or sum(size for _, _, size in files) < threshold:
        for rel_path, ref, _ in files:
            conv = read_conversation(journal.root, rel_path, ref)
            if conv is not None:
                journal.damage.extend(conv.damage)
                yield fn(conv)
        return
    tasks: list[tuple[str, list[tuple[str, ConversationRef]], Callable[[Conversation], Any]]] = []
    batch: list[tuple[str, ConversationRef]] = []
    size = 0
    for rel_path, ref, file_size in files:
        batch.append((rel_path, ref))
        size += file_size
        if size >= BATCH_BYTES:
            tasks.append((journal.root, batch, fn))
            batch, size = [], 0
    if batch:
        tasks.append((journal.root, batch, fn))
    with pool(count) as workers_pool:
        pending: deque[Any] = deque()
        queued = iter(tasks)
        for task in queued:
            pending.append(workers_pool.apply_async(_batch, (task,)))
            if len(pending) >= 2 * count:
                break
        while pending:
            results = pending.popleft().get()
            for task in queued:  # keep the workers busy, a bounded number of batches ahead
                pending.append(workers_pool.apply_async(_batch, (task,)))
                break
            for value, damage in results:
                journal.damage.extend(damage)
                yield value
