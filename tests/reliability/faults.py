"""Fault injection for real dialogctl processes, with no hook in dialogctl itself.

A test runs ``python faults.py ARGS...`` instead of ``dialogctl ARGS...``. This
module, running as the child's main script, wraps the ``os`` functions that
change files (write, fsync, rename, link, unlink, mkdir, ftruncate, ...) and
then runs dialogctl's normal entry point. dialogctl calls them as ``os.name``
attributes at call time, as does :mod:`shutil`, so every change to the disk
passes through the wrappers. A rule says which call to act on and what to do:

* an errno name (``ENOSPC``, ``EIO``, ``EFBIG``...): the call raises it instead of running;
* ``kill``: SIGKILL before the call; ``kill-after``: run it, then SIGKILL;
* ``torn``: a write or pwrite writes the first part of its bytes, then SIGKILL;
* ``stop``: SIGSTOP before the call (the test resumes or kills the process);
* ``sleep:SECONDS``: pause before the call.

``call`` is a function name, or ``step`` for any of them (the steps of an
operation, in order). Every step is logged to a trace file, so a test first
runs a command cleanly to count its steps, then once per step with a rule.
The configuration travels in the ``DIALOGCTL_TEST_FAULTS`` environment
variable (JSON); ``fsize`` sets RLIMIT_FSIZE (with SIGXFSZ ignored) for a real
EFBIG. In-process tests use :func:`install` directly.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ENV = "DIALOGCTL_TEST_FAULTS"
STEP_CALLS = ("write", "pwrite", "fsync", "rename", "replace", "link", "symlink", "unlink", "rmdir", "mkdir", "ftruncate", "fchmod", "fchown", "open")


class Rule(NamedTuple):
    call: str  # a name in STEP_CALLS, or "step" for any of them
    nth: int  # 1-based: act on the nth matching call
    do: str  # errno name, kill, kill-after, torn, stop, sleep:SECONDS


class Injector:
    """Counts and acts on the calls that change files under one journal root.

    Calls that touch other files (Python's own temp-dir probe, the trace) are
    passed through: a call is a step when its path lies under the root, or its
    descriptor (or ``dir_fd``) came from opening something under the root.
    """

    def __init__(self, rules: list[Rule], trace: str | None, root: str | None) -> None:
        self.rules = rules
        self.root = os.path.realpath(root) if root else None
        self.counts: dict[str, int] = {}
        self.fired: list[Rule] = []
        self.originals: dict[str, Callable[..., Any]] = {}
        self.journal_fds: set[int] = set()
        self.trace_fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600) if trace else -1

    def _log(self, text: str) -> None:
        if self.trace_fd >= 0:
            self.originals.get("write", os.write)(self.trace_fd, (text.replace("\n", " ") + "\n").encode("utf-8", "replace"))

    def _in_journal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if any(kwargs.get(key) in self.journal_fds for key in ("dir_fd", "src_dir_fd", "dst_dir_fd")):
            return True
        path = args[0] if args else None
        if isinstance(path, int):
            return path in self.journal_fds
        if isinstance(path, (str, bytes, os.PathLike)) and self.root is not None:
            full = os.path.realpath(os.fsdecode(path))
            return full == self.root or full.startswith(self.root + os.sep)
        return self.root is None

    def _track(self) -> None:
        """Remember descriptors opened under the root (a dup of one counts too)."""
        open_, dup, close = os.open, os.dup, os.close

        def tracking_open(*args: Any, **kwargs: Any) -> int:
            fd = open_(*args, **kwargs)
            if self._in_journal(args, kwargs):
                self.journal_fds.add(fd)
            return fd

        def tracking_dup(fd: int) -> int:
            new = dup(fd)
            if fd in self.journal_fds:
                self.journal_fds.add(new)
            return new

        def tracking_close(fd: int) -> None:
            self.journal_fds.discard(fd)
            close(fd)

        self.originals.update(dup=dup, close=close)
        os.open, os.dup, os.close = tracking_open, tracking_dup, tracking_close  # type: ignore[assignment]

    def wrap(self, name: str) -> Callable[..., Any]:
        original = getattr(os, name)
        self.originals.setdefault(name, original)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "open" and not (args[1] if len(args) > 1 else kwargs.get("flags", 0)) & os.O_CREAT:
                return original(*args, **kwargs)  # only opens that may create a file are steps
            if not self._in_journal(args, kwargs):
                return original(*args, **kwargs)
            step = self.counts["step"] = self.counts.get("step", 0) + 1
            count = self.counts[name] = self.counts.get(name, 0) + 1
            self._log(f"{step} {name} {count} {_describe(name, args)}")
            for rule in self.rules:
                if rule in self.fired or not ((rule.call == name and rule.nth == count) or (rule.call == "step" and rule.nth == step)):
                    continue
                self.fired.append(rule)
                self._log(f"fault {rule.do}")
                if rule.do == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                elif rule.do == "stop":
                    os.kill(os.getpid(), signal.SIGSTOP)
                elif rule.do.startswith("sleep:"):
                    time.sleep(float(rule.do.split(":", 1)[1]))
                elif rule.do == "torn":
                    if name in ("write", "pwrite"):  # half the bytes reach the file, then the process dies
                        data = bytes(args[1])
                        original(args[0], data[: max(1, len(data) // 2)], *args[2:])
                    os.kill(os.getpid(), signal.SIGKILL)
                elif rule.do == "kill-after":
                    try:
                        return original(*args, **kwargs)
                    finally:  # even when the call fails (an O_EXCL open of an existing file)
                        os.kill(os.getpid(), signal.SIGKILL)
                else:
                    code = getattr(errno, rule.do)
                    raise OSError(code, os.strerror(code))
            return original(*args, **kwargs)

        return wrapper

    def install(self) -> None:
        import shutil  # noqa: F401 - shutil decides at import whether the os functions take dir_fd; they must be the real ones

        self.originals["open"] = os.open
        self._track()
        for name in STEP_CALLS:
            setattr(os, name, self.wrap(name))

    def uninstall(self) -> None:
        for name, original in self.originals.items():
            setattr(os, name, original)
        if self.trace_fd >= 0:
            os.close(self.trace_fd)
            self.trace_fd = -1


def _describe(name: str, args: tuple[Any, ...]) -> str:
    if name in ("write", "pwrite"):
        return f"fd={args[0]} bytes={len(args[1])}"
    if name in ("fsync", "ftruncate", "fchmod", "fchown"):
        return f"fd={args[0]}"
    return " ".join(str(a) for a in args[:2])


@contextmanager
def install(rules: list[Rule], root: str | os.PathLike[str], trace: str | None = None) -> Iterator[Injector]:
    """Inject faults into this process, for calls under ``root``, while the block runs."""
    injector = Injector(rules, trace, os.fspath(root))
    injector.install()
    try:
        yield injector
    finally:
        injector.uninstall()


# --- the parent side ---------------------------------------------------------------------


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    trace: list[str]

    @property
    def steps(self) -> list[str]:
        return [line for line in self.trace if not line.startswith("fault ")]


def command(
    args: list[str], rules: list[Rule] | None = None, trace: Path | None = None, fsize: int | None = None, patches: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that run dialogctl with these faults (the root is the ``--root`` argument).

    ``patches``: module attributes set in the child before dialogctl runs (``{"dialogctl.journal.groupcommit.GROUP_USERS": 2}``).
    """
    root = args[args.index("--root") + 1] if "--root" in args else None
    config = {"rules": [list(r) for r in rules or []], "trace": str(trace) if trace else None, "fsize": fsize, "root": root, "patches": patches or {}}
    return [sys.executable, __file__, *args], {ENV: json.dumps(config)}


def run(
    args: list[str],
    rules: list[Rule] | None = None,
    tmp: Path | None = None,
    env: dict[str, str] | None = None,
    fsize: int | None = None,
    timeout: float = 60,
    input: bytes | None = None,
    patches: dict[str, Any] | None = None,
) -> Run:
    """Run dialogctl with faults and wait; the trace (kept in ``tmp``) lists every step it took."""
    trace = tmp / f"trace-{time.monotonic_ns()}" if tmp is not None else None
    argv, extra = command(args, rules, trace, fsize, patches)
    full_env = dict(os.environ, **(env or {}), **extra)
    proc = subprocess.run(argv, capture_output=True, env=full_env, timeout=timeout, input=input)
    lines = trace.read_text().splitlines() if trace is not None and trace.exists() else []
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"), lines)


def _child_main() -> None:
    config = json.loads(os.environ.pop(ENV, "{}") or "{}")
    if config.get("fsize") is not None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (config["fsize"], config["fsize"]))
    import importlib

    for dotted, value in config.get("patches", {}).items():
        module, name = dotted.rsplit(".", 1)
        setattr(importlib.import_module(module), name, value)
    injector = Injector([Rule(*r) for r in config.get("rules", [])], config.get("trace"), config.get("root"))
    injector.install()
    from dialogctl.cli import main

    sys.argv = ["dialogctl", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    _child_main()
