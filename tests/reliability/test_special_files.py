"""Special files planted where dialogctl opens a file: never followed, never waited on, never read without bound.

Every file dialogctl opens inside the journal (the layout record, the logs,
the lock files, the catalog and its lock, stats.yaml, metadata.yaml, the
conversation files) gets, in turn, a FIFO, a symlink to a file inside the
root, a symlink to a file outside it, a symlink to /dev/zero, a character
device node, a socket, a folder, and (for the files dialogctl reads whole) a
sparse regular file of several GiB. The commands that open that file run in
a child process with a time limit: none may hang, crash or follow the link
(the outside file is never changed and never decides anything); each either
goes on without the file or stops with one line naming it (exit 6); and
``verify`` names the planted object.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.models import Message

from .conftest import reachable_by_others

TS = "2024-01-15T10:30:00.000Z"
DIALOGS = "users/al/ic/e/dialogs"


class Place:
    def __init__(self, path: str, commands: list[tuple[list[str], tuple[int, ...]]], reads_whole: bool = False) -> None:
        self.path = path  # relative to the root
        self.commands = commands  # (arguments, exit codes that are right)
        self.reads_whole = reads_whole  # dialogctl reads this file whole: a huge one must be refused or skipped


# For each file: commands that open it, and the exit codes that are right with an object planted there:
# 0 where dialogctl goes on without the file (derived or optional files), 6 where it cannot do its job without it.
PLACES = {
    "layout record": Place("config/journal-config.yaml", [(["list"], (6,)), (["append", "alice", "more"], (6,)), (["stats"], (6,))], reads_whole=True),
    "cleanup log": Place("system/cleanup.log", [(["stats"], (0,)), (["cleanup", "--max-age", "365d", "--yes"], (6,))]),
    "audit log": Place("system/audit.log", [(["rm", "bob", "--all-data", "--yes"], (6,))]),
    "lock file": Place(f"{DIALOGS}/.lock", [(["locks"], (6,)), (["append", "alice", "more"], (6,)), (["archive", "alice"], (6,))]),
    "catalog": Place("system/catalog.bin", [(["stats"], (0,)), (["list"], (0,)), (["repair"], (0, 1))], reads_whole=True),
    "catalog lock": Place("system/catalog.lock", [(["stats"], (0,)), (["list"], (0,))]),
    "catalog log": Place("system/catalog.log", [(["append", "alice", "more"], (0,)), (["stats"], (0,)), (["list"], (0,))]),
    "stats file": Place("system/stats.yaml", [(["stats"], (0,))]),
    "metadata": Place("users/al/ic/e/metadata.yaml", [(["append", "alice", "more"], (0,)), (["list"], (0,))], reads_whole=True),
    "conversation": Place(f"{DIALOGS}/current.yaml", [(["show", "alice"], (0, 5, 6)), (["list"], (0, 5)), (["export", "--all"], (0, 5))], reads_whole=True),
}


def _fifo(path: Path, inside: Path, outside: Path) -> None:
    os.mkfifo(path)


def _link_inside(path: Path, inside: Path, outside: Path) -> None:
    path.symlink_to(inside)


def _link_outside(path: Path, inside: Path, outside: Path) -> None:
    path.symlink_to(outside)


def _link_zero(path: Path, inside: Path, outside: Path) -> None:
    path.symlink_to("/dev/zero")


def _device(path: Path, inside: Path, outside: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    except PermissionError:
        pytest.skip("no device nodes here")


def _socket(path: Path, inside: Path, outside: Path) -> None:
    here = os.getcwd()
    os.chdir(path.parent)  # a socket's path is limited to about 100 bytes: bind it by its name alone
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(path.name)
    finally:
        os.chdir(here)


def _folder(path: Path, inside: Path, outside: Path) -> None:
    path.mkdir()
    (path / "x").write_text("")


def _huge(path: Path, inside: Path, outside: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(5 << 30)  # sparse: 5 GiB of zeros, no disk


OBJECTS: dict[str, Callable[[Path, Path, Path], None]] = {
    "FIFO": _fifo,
    "symlink inside the root": _link_inside,
    "symlink outside the root": _link_outside,
    "symlink to /dev/zero": _link_zero,
    "device": _device,
    "socket": _socket,
    "folder": _folder,
    "sparse 5 GiB file": _huge,
}


def _journal(root: Path) -> None:
    journal = Journal.open(str(root), archiveThreshold="0")
    journal.append("alice", [Message("user", "mine", TS)])
    journal.append("bob", [Message("user", "his", TS)])
    (root / "system").mkdir(exist_ok=True)


def _run(root: Path, args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_JOURNAL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialogctl", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_memory_limit,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail(f"dialogctl {' '.join(args)} still running after {timeout} s (waiting on a planted object?)")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _memory_limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # reading a planted file whole would fail, not swap


def _digest(path: Path) -> tuple[str, float]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime


_SEEN: dict[str, int] = {"runs": 0, "planted": 0}


@pytest.mark.parametrize("thing", list(OBJECTS))
@pytest.mark.parametrize("place", list(PLACES))
def test_a_planted_object_is_never_followed_waited_on_or_read_whole(place: str, thing: str, tmp_path: Path) -> None:
    spot = PLACES[place]
    if thing == "sparse 5 GiB file" and not spot.reads_whole:
        pytest.skip("dialogctl appends to this file or reads a bounded part of it")
    root = tmp_path / "journal"
    _journal(root)
    inside = root / "inside.yaml"  # a file inside the root that a link could lend its bytes
    outside = tmp_path / "outside.yaml"  # a file outside the root that must decide nothing
    for target in (inside, outside):
        target.write_text("layout: flat\nconversations: sessions\n")
    before = _digest(outside)
    path = root / spot.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    OBJECTS[thing](path, inside, outside)
    _SEEN["planted"] += 1
    report = _run(root, ["verify", "--format", "jsonl"])
    assert report.returncode == 1, report.stderr
    assert spot.path in report.stdout, (thing, report.stdout)  # verify names it
    for args, codes in spot.commands:
        result = _run(root, args)
        _SEEN["runs"] += 1
        assert "Traceback" not in result.stderr and result.returncode != 70, (args, result.stderr)
        assert result.returncode in codes, (args, result.returncode, result.stderr)
        if result.returncode == 6:
            lines = result.stderr.strip().splitlines()
            assert any(spot.path in line for line in lines), (args, lines)  # names the file
        assert _digest(outside) == before, "the outside file was written"


def test_a_layout_record_outside_the_root_decides_nothing(tmp_path: Path) -> None:
    """The record, a link to a file that says another layout: dialogctl refuses instead of putting users elsewhere."""
    root = tmp_path / "journal"
    _journal(root)
    outside = tmp_path / "outside.yaml"
    outside.write_text("layout: flat\nconversations: current\n")
    record = root / "config" / "journal-config.yaml"
    record.unlink()
    record.symlink_to(outside)
    result = _run(root, ["append", "carol", "hi"])
    assert result.returncode == 6 and "config/journal-config.yaml is a symlink" in result.stderr
    assert not (root / "users" / "carol").exists() and not (root / "users" / "ca").exists()


def test_an_unreadable_layout_record_is_an_io_error_naming_it(tmp_path: Path) -> None:
    """Run by the journal's owner (root passes every permission check): exit 6 naming the file, not Python's errno text."""
    base = Path(tempfile_dir())
    root = base / "journal"
    _journal(root)
    record = root / "config" / "journal-config.yaml"
    for path in [base, *base.rglob("*")]:
        os.lchown(path, 65534, 65534)
    record.chmod(0)
    python = sys.executable if reachable_by_others(sys.executable) else f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.exists(python):
        pytest.skip("no Python the unprivileged owner may run")
    import sysconfig

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(base),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), sysconfig.get_paths()["purelib"]]),
    }

    def drop() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    proc = subprocess.run(
        [python, "-m", "dialogctl", "--root", str(root), "list"], capture_output=True, text=True, env=env, preexec_fn=drop, timeout=60, cwd=base
    )
    assert proc.returncode == 6, proc.stderr
    assert f"cannot open {record}: Permission denied" in proc.stderr and "Errno" not in proc.stderr


def tempfile_dir() -> str:
    import tempfile

    base = tempfile.mkdtemp(prefix="dialogctl-hardened-")
    os.chmod(base, 0o755)
    return base


def test_zz_planted_objects_figures(figures: Any) -> None:
    if _SEEN["planted"]:
        figures.add(
            f"special files: {_SEEN['planted']} objects planted (FIFO, links inside and outside the root and to /dev/zero, device, socket, "
            f"folder, sparse 5 GiB file) in {len(PLACES)} places dialogctl opens, {_SEEN['runs']} commands under a 1 GiB RLIMIT_AS: "
            "0 hangs, 0 internal errors, 0 outside files written, every one named by verify"
        )
