"""Both cores for whole-journal reads: the worker pool the catalog's cold scans use.

Reading and parsing many files is CPU-bound; with enough bytes to read and
more than one CPU, :mod:`dialogctl.catalog` hands files to worker processes
and gets back only their small summaries (sending parsed messages back would
cost the main process about as much as parsing them).
"""

from __future__ import annotations

import os
from typing import Any

PARALLEL_BYTES = 16 << 20  # below this, starting workers costs more than they save


def workers() -> int:
    """How many worker processes are worth starting: the CPUs this process may use (at most 8)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 8)


def pool(count: int) -> Any:
    """A process pool; forked where possible (no re-import of the program)."""
    import multiprocessing

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return context.Pool(count)
