"""Both cores for whole-journal reads: the worker pools of the catalog and of exports.

Reading and parsing many files is CPU-bound. With enough to read and more
than one CPU, :mod:`dialogctl.catalog` hands files to worker processes and
gets back only their small summaries (sending parsed messages back would
cost the main process about as much as parsing them), and
:mod:`dialogctl.exporters` gets back each conversation's finished text.
Workers are forked where the platform allows, so they start at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")

PARALLEL_BYTES = 2 << 20  # below this, starting workers costs more than they save (measured: a 4 MB journal gains)


def workers() -> int:
    """How many worker processes are worth starting: the CPUs this process may use (at most 8)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 8)


def pool(count: int) -> Any:
    """A process pool; forked where possible (no re-import of the program)."""
    import multiprocessing

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return context.Pool(count, initializer=_quiet_worker)


def _quiet_worker() -> None:
    """Ctrl-C reaches the whole process group: only the parent acts on it (and stops the pool), with no tracebacks from workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ordered(func: Callable[[J], R], jobs: Iterable[J], count: int, window: int) -> Iterator[R]:
    """``func(job)`` for every job on ``count`` worker processes, results in the jobs' order.

    At most ``window`` jobs are handed out ahead of the one the caller waits
    for, so a slow reader of the results (a pipe to ``less``) holds back the
    workers instead of letting finished results pile up in memory. Leaving the
    loop early stops the workers.
    """
    from collections import deque

    with pool(count) as workers_pool:
        pending: deque[Any] = deque()
        for job in jobs:
            if len(pending) >= window:
                yield pending.popleft().get()
            pending.append(workers_pool.apply_async(func, (job,)))
        while pending:
            yield pending.popleft().get()
