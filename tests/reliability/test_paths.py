"""Paths: hostile ids never reach the disk; symlinks are refused; nothing outside the root is touched.

"Before any filesystem call" is proved by recording, in-process, every call to
the ``os`` functions that reach the disk (and ``open``) whose path lies under
the journal root or that works relative to an open folder (``dir_fd``, which
is how dialogctl reaches everything below the root).
"""

from __future__ import annotations

import builtins
import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dialogctl import Journal
from dialogctl.disk.layout import Layout, validate_user_id
from dialogctl.errors import InvalidUserId
from dialogctl.maintenance.repair import repair
from dialogctl.maintenance.verify import verify
from dialogctl.models import Message

from ..conftest import Cli
from .conftest import count

TS = "2024-01-15T10:30:00.000Z"
DISK_CALLS = ("open", "stat", "lstat", "scandir", "listdir", "mkdir", "makedirs", "rename", "replace", "unlink", "rmdir", "link", "symlink", "access", "chmod")

HOSTILE_IDS = [
    "", ".", "..", "../x", "x/../../etc", "/etc/passwd", "a/b", "a\\b", "a\x00b", "\x00", "a\nb", "a\rb", "a\tb", "a\x1b[2Jb", "a\x7fb", "a\x85b",
    "a\u202eb", "a\u200bb", "a\u2028b", "ｕｓｅｒ", "a∕b", "a⁄b", "a／b", "a․b", "a﹒b", "ﬁle", "Ⅸ", "x" * 201, "é" * 101, ".hidden", " lead", "trail ",
    "a b", "a*b", "a?b", "a|b", "a;b", "a$b", "a`b", "a'b", 'a"b', "a<b", "a>b", "~/x", "\ud800",
]  # fmt: skip


@contextmanager
def disk_audit(root: Path) -> Iterator[list[str]]:
    """Record every disk call below ``root`` (or relative to an open folder) while the block runs.

    (The root itself is the operator's path: the option parser may check that it is a folder.)
    """
    calls: list[str] = []
    under = str(root)
    patched: dict[str, Any] = {}

    def touches(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if any(k.endswith("dir_fd") and v is not None for k, v in kwargs.items()):
            return True
        return any(isinstance(a, (str, bytes, os.PathLike)) and os.fsdecode(a).startswith(under + os.sep) for a in args[:2])

    def recorder(name: str, original: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            if touches(args, kwargs):
                calls.append(f"{name}{args[:2]}")
            return original(*args, **kwargs)

        return record

    for name in DISK_CALLS:
        patched[name] = getattr(os, name)
        setattr(os, name, recorder(name, patched[name]))
    real_open = builtins.open
    builtins.open = recorder("builtins.open", real_open)  # type: ignore[assignment]
    try:
        yield calls
    finally:
        for name, original in patched.items():
            setattr(os, name, original)
        builtins.open = real_open  # type: ignore[assignment]


def _operations(journal: Journal, user: str) -> list[Any]:
    msg = [Message("user", "x", TS)]
    return [
        lambda: journal.append(user, msg),
        lambda: journal.read(journal.resolve(user)),
        lambda: journal.archive(user),
        lambda: journal.restore(user, "a1"),
        lambda: journal.conversation_files(user),
        lambda: list(journal.locks([user])),
        lambda: journal.summaries(user),
        lambda: verify(journal, [user]),
        lambda: repair(journal, [user]),
    ]


def test_hostile_ids_are_refused_before_any_filesystem_call(tmp_path: Path, cli: Cli, figures: Any) -> None:
    root = tmp_path / "journal"
    journal = Journal.open(str(root))
    journal.append("alice", [Message("user", "x", TS)])
    generated = count("HOSTILE_IDS", 1000)
    ids = list(HOSTILE_IDS)

    @settings(max_examples=generated, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.text(min_size=0, max_size=30), st.tuples(st.sampled_from(["alice", "user-1", ""]), st.text(max_size=4)).map("".join)))
    def collect(user: str) -> None:
        try:
            validate_user_id(user)
        except InvalidUserId:
            ids.append(user)
            return
        assume(False)

    collect()
    operations = 0
    for user in ids:
        with disk_audit(root) as calls:
            for operation in _operations(journal, user):
                with pytest.raises(InvalidUserId):
                    operation()
                operations += 1
        assert calls == [], (user, calls)
    # The same through the command line, for each command that takes a user.
    commands = [
        ["append", "{}", "x"],
        ["show", "{}"],
        ["archive", "{}"],
        ["restore", "{}", "a1"],
        ["list", "{}"],
        ["export", "{}"],
        ["locks", "{}"],
        ["verify", "{}"],
        ["repair", "{}"],
    ]
    for user in HOSTILE_IDS:
        if "\x00" in user or "\ud800" in user:
            continue  # cannot be an argv entry
        for command in commands:
            if command[0] == "locks" and user == "":
                continue  # 'locks ""' means every user's lock (an optional argument left empty)
            args = [a.replace("{}", user) for a in command]
            with disk_audit(root) as calls:
                result = cli("--root", str(root), *args)
            assert result.exit_code == 2, (args, result.stderr)
            assert calls == [], (args, calls)
            operations += 1
    figures.add(
        f"paths: {len(ids)} hostile user ids ({len(HOSTILE_IDS)} hand-picked, {len(ids) - len(HOSTILE_IDS)} generated) x {operations} operations: all refused before any filesystem call"
    )


ID_CHARS = st.one_of(st.characters(categories=["L", "N", "M"]), st.sampled_from(list("-_.@+=:~,")))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.text(ID_CHARS, min_size=1, max_size=40))
def test_accepted_ids_stay_inside_the_root(user: str) -> None:
    try:
        validate_user_id(user)
    except InvalidUserId:
        assume(False)
    for layout in (Layout("flat"), Layout("sharded", 2, 2), Layout("sharded", 1, 3)):
        try:
            parts = layout.user_parts(user)
        except InvalidUserId:
            continue
        path = os.path.normpath(os.path.join("/root", "users", *parts, "dialogs"))
        assert path.startswith("/root/users/") and all(p not in ("", ".", "..") and "/" not in p for p in parts)


def digest(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its type, mode, mtime and content hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st_ = os.lstat(path)
        content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st_.st_mode) else os.readlink(path) if path.is_symlink() else ""
        out[str(path.relative_to(folder))] = f"{stat.filemode(st_.st_mode)} {st_.st_mtime_ns} {content}"
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the journal that looks like a user's: the target of every planted link."""
    folder = tmp_path / "outside"
    (folder / "dialogs" / "archived").mkdir(parents=True)
    (folder / "dialogs" / "current.yaml").write_text("- role: user\n  content: |\n    not yours\n  timestamp: 2024-01-01T00:00:00.000Z\n")
    (folder / "dialogs" / "archived" / "a1.yaml").write_text("")
    (folder / "dialogs" / ".lock").write_text("")
    return folder


PLANTS = {
    "user folder": lambda d, o: _swap(d.parent.parent, o),  # users/al/ic/e
    "shard folder": lambda d, o: _swap(d.parent.parent.parent, o.parent),  # users/al/ic -> outside/.. (holds "outside"... and more)
    "dialogs folder": lambda d, o: _swap(d, o / "dialogs"),
    "conversation file": lambda d, o: _swap(d / "current.yaml", o / "dialogs" / "current.yaml"),
    "archived folder": lambda d, o: _swap(d / "archived", o / "dialogs" / "archived"),
    "archive file": lambda d, o: _swap(d / "archived" / "a1.yaml", o / "dialogs" / "current.yaml"),
    "lock file": lambda d, o: _swap(d / ".lock", o / "dialogs" / ".lock"),
}


def _swap(path: Path, target: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("plant", list(PLANTS))
def test_symlinks_are_refused_and_nothing_outside_is_touched(plant: str, tmp_path: Path, outside: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    journal = Journal.open(str(root), archiveThreshold="0")
    journal.append("alice", [Message("user", "mine", TS)])
    journal.archive("alice", archive_id="a1")
    journal.append("alice", [Message("user", "mine too", TS)])
    dialogs = root / "users/al/ic/e/dialogs"
    PLANTS[plant](dialogs, outside)
    before = digest(outside)
    commands = [
        ["append", "alice", "more"],
        ["show", "alice"],
        ["show", "alice", "--archive", "a1"],
        ["archive", "alice"],
        ["archive", "alice", "--id", "a1"],
        ["restore", "alice", "a1"],
        ["export", "alice", "--include-archives"],
        ["list", "alice"],
        ["locks", "alice"],
        ["cleanup", "--max-age", "1d", "--yes"],
        ["cleanup", "--max-inactive", "1d", "--yes"],
        ["verify"],
        ["repair"],
    ]
    for args in commands:
        result = cli("--root", str(root), *args)
        assert result.exit_code != 70 and "Traceback" not in result.stderr, (args, result.stderr)
        assert digest(outside) == before, (plant, args)
    found = cli("--root", str(root), "verify", "--format", "json")
    assert found.exit_code in (1, 6), found.stderr  # reported as a problem (or refused outright)
    assert digest(outside) == before


def test_export_never_writes_through_a_symlinked_target(tmp_path: Path, outside: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    Journal.open(str(root)).append("alice", [Message("user", "mine", TS)])
    target = tmp_path / "export.jsonl"
    target.symlink_to(outside / "dialogs" / "current.yaml")
    before = digest(outside)
    for extra in ([], ["--force"]):
        result = cli("--root", str(root), "export", "--all", "-o", str(target), *extra)
        assert result.exit_code in (2, 6) and "symlink" in result.stderr, (extra, result.stderr)
        assert target.is_symlink() and digest(outside) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temp file left beside it


def test_a_folder_swapped_for_a_symlink_during_cleanup(tmp_path: Path, outside: Path, figures: Any) -> None:
    """Another process keeps swapping a shard folder for a symlink out of the root while cleanups run."""
    rounds = count("SWAP_ROUNDS", 20)
    root = tmp_path / "journal"
    script = tmp_path / "swapper.py"
    script.write_text(
        "import os, sys, time\n"
        "folder, link_to, stop = sys.argv[1:]\n"
        "while not os.path.exists(stop):\n"
        "    try:\n"
        "        os.rename(folder, folder + '.away')\n"
        "        os.symlink(link_to, folder)\n"
        "        time.sleep(0.002)\n"
        "        os.unlink(folder)\n"
        "        os.rename(folder + '.away', folder)\n"
        "    except OSError:\n"
        "        pass\n"
        "    time.sleep(0.001)\n"
    )
    touched = 0
    for number in range(rounds):
        journal = Journal.open(str(root), archiveThreshold="0")
        for user in ("user", "user-1000", "user-2000", "usher"):
            journal.append(user, [Message("user", "old", "2020-01-01T00:00:00.000Z"), Message("user", "new", "2999-01-01T00:00:00.000Z")])
        journal.append("user-3000", [Message("user", "idle", "2020-01-01T00:00:00.000Z")])
        before = digest(outside)
        stop = tmp_path / f"stop-{number}"
        swapper = subprocess.Popen([sys.executable, str(script), str(root / "users" / "us" / "er"), str(outside), str(stop)])
        try:
            for _ in range(3):
                result = subprocess.run(
                    [sys.executable, "-m", "dialogctl", "--root", str(root), "cleanup", "--max-age", "1000d", "--max-inactive", "1000d", "--yes"],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert result.returncode in (0, 3, 5, 6), result.stderr  # 5: the folder swapped away, seen as a stray user
                assert "Traceback" not in result.stderr
                touched += digest(outside) != before
        finally:
            stop.touch()
            swapper.wait(timeout=60)
        assert digest(outside) == before
        if (root / "users/us/er.away").exists():
            os.rename(root / "users/us/er.away", root / "users/us/er") if not (root / "users/us/er").exists() else None
        time.sleep(0)
    assert touched == 0
    figures.add(f"paths: {rounds * 3} cleanups while another process swapped users/us/er for a symlink out of the root: nothing outside touched")


def test_umask_000_still_gives_0700_and_0600(tmp_path: Path) -> None:
    root = tmp_path / "journal"

    def run(*args: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "dialogctl", "--root", str(root), *args], capture_output=True, text=True, preexec_fn=lambda: os.umask(0))
        assert proc.returncode in (0, 1), (args, proc.stderr)

    run("append", "alice", "one", "--timestamp", "2020-01-01T00:00:00Z")
    run("archive", "alice", "--id", "a1")
    run("append", "alice", "two", "--timestamp", "now")
    run("restore", "alice", "a1")
    run("cleanup", "--max-age", "1000d", "--yes")
    current = root / "users/al/ic/e/dialogs/current.yaml"
    current.write_bytes(current.read_bytes() + b"---\nrole: user\ncontent: |2\n  torn")
    current.chmod(0o600)
    run("repair")
    assert any((root / "system" / "quarantine").rglob("current.yaml"))
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
