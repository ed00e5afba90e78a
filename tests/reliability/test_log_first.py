"""Log first, act second (issue 13).

``rm``, ``cleanup`` and ``repair`` write their intent to their log
(``system/audit.log``, ``system/cleanup.log``) before they change anything,
and their outcome after. A log that cannot be written stops the command with
exit 6 naming the log, and nothing else changed: a folder in its place, a
symlink (never followed), a FIFO (never waited on, with or without a reader),
a file of another owner, a full disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.models import Message

from ..conftest import run_exe
from . import faults
from .conftest import reachable_by_others
from .test_verify_repair import snapshot

OWNER = 65534
OLD = "2020-01-01T00:00:00.000Z"

COMMANDS: dict[str, tuple[list[str], str]] = {
    "rm": (["rm", "alice", "--all-data", "--yes"], "system/audit.log"),
    "cleanup": (["cleanup", "--max-inactive", "100d", "--yes", "--force"], "system/cleanup.log"),  # --force: half the users go; past the guard, to the log
    "repair": (["repair"], "system/audit.log"),
}


def _journal(root: Path, command: str = "rm") -> None:
    """alice: silent since 2020 (for repair: with a torn record); bob: active."""
    journal = Journal.open(str(root))
    journal.append("alice", [Message("user", "old words", OLD)])
    journal.archive("alice", archive_id="a1")
    journal.append("alice", [Message("user", "older words", OLD)])
    journal.append("bob", [Message("user", "fresh", "2099-01-01T00:00:00.000Z")])
    if command == "repair":
        current = root / "users/al/ic/e/dialogs/current.yaml"
        current.write_bytes(current.read_bytes() + b"\n---\nrole: user\ncontent: |2\n  torn")
    (root / "system").mkdir(exist_ok=True)


# Each way a log cannot be written: set up at the log's path, and how dialogctl is run against it.
def _folder(root: Path, log: Path, owned: Path) -> Any:
    log.mkdir()
    (log / "kept").write_text("a file in a folder where the log should be")


def _symlink(root: Path, log: Path, owned: Path) -> Any:
    target = root.parent / "outside.log"
    target.write_text("not the journal's\n")
    log.symlink_to(target)


def _fifo(root: Path, log: Path, owned: Path) -> Any:
    os.mkfifo(log)


def _fifo_with_reader(root: Path, log: Path, owned: Path) -> Any:
    os.mkfifo(log)
    return subprocess.Popen(["cat", str(log)], stdout=subprocess.PIPE)  # holds the FIFO open for reading


def _full_disk(root: Path, log: Path, owned: Path) -> Any:
    """The log is past the file-size limit the command runs under: a real EFBIG from the kernel (the journal's files are far below it)."""
    log.write_text(json.dumps({"time": "2024-01-01T00:00:00.000Z", "note": "x" * 60_000}) + "\n")


def _another_owner(root: Path, log: Path, owned: Path) -> Any:
    """The journal belongs to an unprivileged owner who runs the command; the log is root's."""
    log.write_text("")
    _give(owned)
    os.chown(log, 0, 0)
    os.chmod(log, 0o644)


BROKEN: dict[str, tuple[Callable[[Path, Path, Path], Any], str]] = {
    "a folder": (_folder, "it is a folder, not a regular file"),
    "a symlink": (_symlink, "it is a symlink, not a regular file"),
    "a FIFO without a reader": (_fifo, "it is a FIFO, not a regular file"),
    "a FIFO with a reader": (_fifo_with_reader, "it is a FIFO, not a regular file"),
    "a full disk": (_full_disk, "File too large"),
    "a file of another owner": (_another_owner, "Permission denied"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_log_that_cannot_be_written_stops_the_command_before_any_change(command: str, owned: Path, figures: Any) -> None:
    args, log = COMMANDS[command]
    for kind, (make, reason) in BROKEN.items():
        case = owned / kind.replace(" ", "-")
        root = case / "j"
        _journal(root, command)
        helper = make(root, root / log, owned)
        before = snapshot(root)
        outside = (case / "outside.log").read_bytes() if kind == "a symlink" else None
        try:
            if kind == "a full disk":
                run: Any = faults.run(["--root", str(root), *args], fsize=50_000)
            elif kind == "a file of another owner":
                run = _run_as_owner(owned, "--root", str(root), *args)
            else:
                run = run_exe("--root", str(root), *args, timeout=30)
        finally:
            if helper is not None:
                helper.kill()
                got, _ = helper.communicate()
                assert got == b"", kind  # nothing was written into the pipe
        assert run.returncode == 6, (kind, run.returncode, run.stderr)
        assert run.stderr.startswith(f"dialogctl: cannot write the log {root / log}: ") and reason in run.stderr, (kind, run.stderr)
        assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr, (kind, run.stderr)
        assert snapshot(root) == before, kind  # not a byte, not a mode, not a folder changed
        if outside is not None:
            assert (case / "outside.log").read_bytes() == outside  # the link was not followed
    figures.add(
        f"log first, {command}: its log {log} made unwritable {len(BROKEN)} ways ({', '.join(BROKEN)}): "
        f"{len(BROKEN)} x exit 6 naming the log before any change, 0 files changed, 0 bytes into the FIFO, 0 followed links"
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_log_holds_the_intent_then_the_outcome(command: str, tmp_path: Path) -> None:
    args, log = COMMANDS[command]
    root = tmp_path / "j"
    _journal(root, command)
    run = run_exe("--root", str(root), *args)
    assert run.returncode == 0, run.stderr
    intent, outcome = [json.loads(x) for x in (root / log).read_text().splitlines()]
    assert (intent["phase"], outcome["phase"]) == ("intent", "done") and intent["run"] == outcome["run"]
    text = (root / log).read_text()
    assert "old words" not in text and "older words" not in text  # never message text
    if command == "rm":
        assert intent["paths"] and all(p.startswith(("users/al/ic/e/", "system/quarantine/")) for p in intent["paths"])
        assert intent["files"] == outcome["files"] == len(intent["paths"])
    elif command == "cleanup":
        assert intent["steps"] == [{"action": "remove-user", "rule": "maxInactive", "user": "alice", "path": "users/al/ic/e"}]
    else:
        assert intent["paths"] == outcome["paths"] == [{"action": "rewrite", "path": "users/al/ic/e/dialogs/current.yaml"}]
        assert (root / intent["quarantine"] / "users/al/ic/e/dialogs/current.yaml").is_file()


def test_the_outcome_of_a_run_that_fails_midway_is_logged(tmp_path: Path) -> None:
    """rm's removal fails (EIO on unlinking a file): the intent, then a failed line naming the error."""
    root = tmp_path / "j"
    _journal(root)
    run = faults.run(["--root", str(root), "rm", "alice", "--all-data", "--yes"], [faults.Rule("unlink", 1, "EIO")])
    assert run.returncode == 6, run.stderr
    lines = [json.loads(x) for x in (root / "system/audit.log").read_text().splitlines()]
    assert [x["phase"] for x in lines] == ["intent", "failed"] and "Input/output error" in lines[1]["error"]


# --- running as the journal's owner -------------------------------------------------------------


@pytest.fixture
def owned() -> Iterator[Path]:
    """A folder the unprivileged :data:`OWNER` may enter (pytest's own tmp is root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a tree to an unprivileged owner")
    base = tempfile.mkdtemp(prefix="dialogctl-log-first-")
    os.chmod(base, 0o755)
    try:
        yield Path(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _give(base: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(base):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, OWNER, OWNER)


def _run_as_owner(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dialogctl ARGS`` as :data:`OWNER`, with an interpreter that owner may run (a pyenv under /root is out of its reach)."""
    repo = str(Path(__file__).resolve().parents[2])
    python = sys.executable
    if not reachable_by_others(python):
        python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        if not os.path.exists(python):
            pytest.skip("no Python the unprivileged owner may run")

    def drop() -> None:
        os.setgroups([])
        os.setgid(OWNER)
        os.setuid(OWNER)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALOGUE_JOURNAL_", "XDG_"))}  # pytest's XDG dirs are root's alone
    env.update(HOME=str(base), PYTHONPATH=os.pathsep.join([repo, sysconfig.get_paths()["purelib"]]))
    proc = subprocess.run([python, "-m", "dialogctl", *args], capture_output=True, env=env, cwd=base, preexec_fn=drop, timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def test_the_append_itself_never_follows_waits_or_writes_into_anything_but_a_file(tmp_path: Path) -> None:
    """The guard behind the look before the write: a log replaced between the look and the open is still refused."""
    from dialogctl.disk.storage import open_root
    from dialogctl.errors import StorageError

    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    os.mkfifo(tmp_path / "fifo")
    reader_fifo = tmp_path / "fifo-read"
    os.mkfifo(reader_fifo)
    reader = subprocess.Popen(["cat", str(reader_fifo)], stdout=subprocess.PIPE)
    try:
        with open_root(str(tmp_path)) as folder:
            for name in ("folder", "link", "fifo", "fifo-read"):
                with pytest.raises(StorageError):
                    folder.append(name, b"a line\n")
    finally:
        reader.kill()
        got, _ = reader.communicate()
    assert got == b"" and not (tmp_path / "target").exists()
