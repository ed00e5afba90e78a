"""Both cores for whole-journal reads: the worker pools of the catalog and of exports.

Reading and parsing many files is CPU-bound. With enough to read and more
than one CPU, :mod:`dialogctl.journal.catalog` hands files to worker processes and
gets back only their small summaries (sending parsed messages back would
cost the main process about as much as parsing them), and
:mod:`dialogctl.exchange.pipeline` gets back each conversation's finished text.
Workers are forked where the platform allows, so they start at once.

The pool is our own, not :class:`multiprocessing.Pool`: that pool replaces a
worker that dies (SIGKILL, the kernel's OOM killer) and leaves the job it held
unanswered, so the parent waits forever. Here every worker has its own pipe,
and the parent waits on the pipes and on the workers' process sentinels at
once: a worker that dies holding a job, or whose job fails, ends the run at
once with an error naming the cause (:class:`WorkerDied`, exit 6, for a worker
killed or out of memory; the job's own exception otherwise: a
:class:`~dialogctl.errors.DialogError` keeps its exit code, anything else is a
bug, exit 70). A worker holds at most two jobs (one when the job is large), so
the pipes can never fill up in both directions at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .errors import DialogError, WorkerDied

J = TypeVar("J")
R = TypeVar("R")

PARALLEL_BYTES = 2 << 20  # below this, starting workers costs more than they save (measured: a 4 MB journal gains)
BATCH_BYTES = 1 << 20  # a worker's job in exports and searches: about this many bytes of files (one job per file costs more in hand-offs)
_SMALL_JOB = 16 << 10  # a pickled job this small may wait in a worker's pipe behind the one it runs (a pipe holds 200 KB)
_NO_MEMORY = 75  # a worker's exit status when it ran out of memory and could not even say so
# Signals that kill a worker from outside (an operator, the OOM killer, a limit): a resource failure, not a bug.
_EXTERNAL = frozenset({"SIGKILL", "SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGXCPU", "SIGXFSZ", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE"})


def workers() -> int:
    """How many worker processes are worth starting: the CPUs this process may use (at most 8)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 8)


def ordered(func: Callable[[J], R], jobs: Iterable[J], count: int, window: int, what: str = "reading the journal") -> Iterator[R]:
    """``func(job)`` for every job on ``count`` worker processes, results in the jobs' order.

    At most ``window`` jobs are handed out ahead of the one the caller waits
    for, so a slow reader of the results (a pipe to ``less``) holds back the
    workers instead of letting finished results pile up in memory. Leaving the
    loop early stops the workers. ``what`` says what the workers do, for the
    error that ends the run when one of them dies. Where no worker can be
    started (no memory for a fork, a process limit), the jobs run here, one
    after the other.
    """
    try:
        pool = _Pool(func, count, what)
    except OSError:
        for job in jobs:
            yield func(job)
        return
    try:
        yield from pool.run(jobs, max(window, 1))
    finally:
        pool.stop()


class WorkerTraceback(Exception):
    """Where a worker's unexpected exception was raised (shown under ``DIALOGCTL_DEBUG=1``)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


class _Worker:
    __slots__ = ("process", "conn", "jobs")

    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn
        self.jobs: list[int] = []  # indexes of the jobs it holds, oldest first


class _Pool:
    def __init__(self, func: Callable[[Any], Any], count: int, what: str) -> None:
        import multiprocessing

        forked = "fork" in multiprocessing.get_all_start_methods()
        context: Any = multiprocessing.get_context("fork" if forked else "spawn")
        self.what = what
        self.workers: list[_Worker] = []
        self.results: dict[int, tuple[bool, Any]] = {}  # answers not yet given to the caller: (ok, result or exception)
        try:
            for _ in range(max(count, 1)):
                ours, theirs = context.Pipe(duplex=True)
                # A forked worker closes the parent's ends of its own and the other workers' pipes,
                # so that it sees the end of its pipe (and leaves) when the parent is gone.
                others = [w.conn.fileno() for w in self.workers] + [ours.fileno()] if forked else []
                process = context.Process(target=_serve, args=(func, theirs, others), daemon=True)
                try:
                    process.start()
                finally:
                    theirs.close()
                self.workers.append(_Worker(process, ours))
        except BaseException:
            self.stop()
            raise

    def run(self, jobs: Iterable[Any], window: int) -> Iterator[Any]:
        import pickle
        from multiprocessing.connection import wait

        results = self.results
        pending = iter(jobs)
        handed = wanted = 0  # jobs handed out so far; the index of the next result to give
        exhausted = False
        spare: tuple[bytes, int] | None = None  # the next job, pickled, waiting for a worker that can take it: (data, size)
        while True:
            while not exhausted and handed - wanted < window:
                if spare is None:
                    try:
                        job = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    data = pickle.dumps(job, pickle.HIGHEST_PROTOCOL)
                    spare = (data, len(data))
                worker = self._free_worker(spare[1])
                if worker is None:
                    break
                worker.jobs.append(handed)  # held from now on: if the hand-over fails, the worker died holding it
                handed += 1
                data, spare = spare[0], None
                self._send(worker, data)
            if wanted in results:
                ok, value = results.pop(wanted)
                wanted += 1
                if not ok:
                    raise value
                yield value
                continue
            if exhausted and wanted == handed:
                return
            if not any(w.jobs for w in self.workers):  # never: every job handed out is held or answered
                raise RuntimeError(f"job {wanted} of a worker pool was lost")
            by_conn = {w.conn: w for w in self.workers}
            by_sentinel = {w.process.sentinel: w for w in self.workers}
            for ready in wait(list(by_conn) + list(by_sentinel)):
                worker = by_conn[ready] if ready in by_conn else by_sentinel[ready]
                if worker in self.workers:
                    self._collect(worker)

    def _free_worker(self, size: int) -> _Worker | None:
        """The worker holding the fewest jobs, if it can take one more (a large job only goes to an idle worker)."""
        if not self.workers:
            raise WorkerDied(f"every worker process died while {self.what}; the command did not finish")
        worker = min(self.workers, key=lambda w: len(w.jobs))
        limit = 2 if size <= _SMALL_JOB else 1
        return worker if len(worker.jobs) < limit else None

    def _send(self, worker: _Worker, data: bytes) -> None:
        try:
            worker.conn.send_bytes(data)
        except OSError:  # it died: its sentinel says how
            self._died(worker)

    def _collect(self, worker: _Worker) -> None:
        """Take every answer a worker has sent; a worker that is gone is dealt with."""
        gone = False
        try:
            while worker.jobs and worker.conn.poll(0):
                self._answer(worker, worker.conn.recv())
        except (EOFError, OSError):
            gone = True
        if gone or not worker.process.is_alive():
            self._died(worker)

    def _answer(self, worker: _Worker, reply: tuple[str, Any]) -> None:
        status, value = reply
        index = worker.jobs.pop(0)
        self.results[index] = (True, value) if status == "ok" else (False, _failure(status, value, worker.process.pid, self.what))

    def _died(self, worker: _Worker) -> None:
        """A worker is gone: what it answered before it died stands; a job it still held ends the run."""
        try:
            while worker.jobs and worker.conn.poll(0):
                self._answer(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass
        worker.process.join(1)
        self.workers.remove(worker)
        worker.conn.close()
        if worker.jobs:
            raise _death(worker.process, self.what)
        # Died idle, every answer in: the others go on without it.

    def stop(self) -> None:
        """Let the workers go: asked to leave when idle, stopped when not, reaped either way."""
        for worker in self.workers:
            try:
                if worker.jobs:
                    worker.process.terminate()
                else:
                    worker.conn.send_bytes(b"")
            except (OSError, ValueError):
                pass
        for worker in self.workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers = []


def _death(process: Any, what: str) -> DialogError:
    import signal

    code = process.exitcode
    if code == _NO_MEMORY:
        return WorkerDied(f"a worker process (pid {process.pid}) ran out of memory while {what}")
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name in _EXTERNAL:
            why = " (the kernel's out-of-memory killer sends it too)" if name == "SIGKILL" else ""
            return WorkerDied(f"a worker process (pid {process.pid}) was killed by {name}{why} while {what}; the command did not finish")
        from .errors import WorkerCrashed

        return WorkerCrashed(f"internal error: a worker process (pid {process.pid}) crashed with {name} while {what}; this is a bug")
    from .errors import WorkerCrashed

    return WorkerCrashed(f"internal error: a worker process (pid {process.pid}) ended unexpectedly (exit status {code}) while {what}; this is a bug")


def _failure(status: str, value: Any, pid: int, what: str) -> BaseException:
    """The exception a worker's failed job raises in the parent."""
    if status == "error":  # a DialogError: the same error a serial run raises
        error: BaseException = value
        return error
    if status == "memory":
        return WorkerDied(f"a worker process (pid {pid}) ran out of memory while {what}")
    exception, trace = value
    if not isinstance(exception, BaseException):
        from .errors import WorkerCrashed

        exception = WorkerCrashed(f"internal error ({exception}) in a worker process while {what}; this is a bug")
    exception.__cause__ = WorkerTraceback(trace)
    return exception


def _serve(func: Callable[[Any], Any], conn: Any, others: list[int]) -> None:
    """A worker: run each job the parent sends, send back ("ok", result) or what went wrong; an empty message ends it."""
    import pickle
    import signal

    # Ctrl-C reaches the whole process group: only the parent acts on it (and stops the workers), with no tracebacks from workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in others:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the parent is gone
            if not data:
                return
            try:
                reply: tuple[str, Any] = ("ok", func(pickle.loads(data)))
            except MemoryError:
                reply = ("memory", None)
            except DialogError as exc:
                reply = ("error", exc)
            except BaseException as exc:  # a bug: the parent re-raises it, with where it happened
                import traceback

                reply = ("bug", (_portable(exc), traceback.format_exc()))
            try:
                conn.send(reply)
            except MemoryError:
                conn.send(("memory", None))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send(("bug", (type(exc).__name__, f"the result of a job could not be sent back: {exc}")))
    except MemoryError:
        os._exit(_NO_MEMORY)
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent is gone


def _portable(exc: BaseException) -> BaseException | str:
    """The exception itself when it survives pickling, else its type's name."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return type(exc).__name__
    return exc
