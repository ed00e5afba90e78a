"""A failed command changes nothing: not a mode, not a lock file, not a folder, not a quarantine copy.

Two ways to fail: a journal its owner made read-only (folders 0555, files
0444, dialogctl run as that owner), and a full disk or an I/O error injected
at one step of a command (:mod:`tests.reliability.faults`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.models import Message

from ..conftest import FIXTURES
from . import faults
from .conftest import OwnedTree
from .faults import Rule

TS = "2024-01-02T00:00:00.000Z"


def snapshot(root: str | Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every file and folder below ``root`` (and the root): mode, owner, group, size, and the bytes' hash."""
    out = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            digest = hashlib.sha256(Path(name).read_bytes()).hexdigest() if os.path.isfile(name) and not os.path.islink(name) else ""
            out[os.path.relpath(name, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size if digest else 0, digest)
    return out


WRITING_COMMANDS = [
    ["repair"],
    ["append", "carol-1", "hi"],
    ["append", "newbie", "hi"],
    ["import", "newbie", "in.jsonl"],
    ["import", "carol-1", "in.jsonl", "--as-archive", "x"],
    ["archive", "carol-1"],
    ["archive", "dana"],
    ["restore", "dana", "a1"],
    ["cleanup", "--max-age", "1d", "--max-inactive", "1d", "--keep-last", "1", "--yes", "--force"],  # --force: past the guard, to the writes
    ["archive", "--idle", "1m", "--all"],
    ["rm", "carol-2", "--all-data", "--yes"],
    ["stats"],  # answers from the files (exit 5: the damage); writes neither catalog nor stats.yaml where it may not
]


def test_a_read_only_journal_run_by_its_owner_is_left_exactly_as_it_was(owned: OwnedTree, figures: Any) -> None:
    root = os.path.join(owned.base, "journal")
    shutil.copytree(FIXTURES / "v1-broken", root)  # the servers' journal: no lock file anywhere
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    journal = Journal.open(root, archiveThreshold="0")
    journal.append("dana", [Message("user", "old", TS)])  # and one user dialogctl wrote, lock file and all
    journal.archive("dana", archive_id="a1")
    journal.append("dana", [Message("user", "newer", TS)])
    Path(owned.base, "in.jsonl").write_text(json.dumps({"role": "user", "content": "x"}) + "\n")
    owned.give()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)
        os.chmod(dirpath, 0o555)
    before = snapshot(root)
    for args in WRITING_COMMANDS:
        result = owned.run("--root", root, *args)
        if args == ["stats"]:
            assert result.returncode == 5 and json.loads(owned.run("--root", root, "stats", "-f", "json").stdout)["totalMessages"] > 0
        else:
            assert result.returncode == 6, (args, result)
            assert "Permission denied" in result.stderr, (args, result.stderr)
        assert snapshot(root) == before, (args, result.stderr)
    figures.add(
        f"read-only journal (folders 0555, files 0444) run by its owner: {len(WRITING_COMMANDS)} writing commands exit 6, every mode, file and folder as before"
    )


@pytest.fixture
def journal_root(tmp_path: Path) -> Path:
    root = tmp_path / "journal"
    journal = Journal.open(str(root), archiveThreshold="0")
    journal.append("alice", [Message("user", "hello", TS)])
    # A torn record for repair to mend.
    with open(root / "users/al/ic/e/dialogs/current.yaml", "ab") as fh:
        fh.write(b"\n- role: user\n  content: |2\n    cut")
    (tmp_path / "in.jsonl").write_text(json.dumps({"role": "user", "content": "x", "timestamp": TS}) + "\n")
    return root


# (command, the fault, what it hits): each fails with exit 6 after it made something on the way.
FAILURES = {
    "append to a new user": (["append", "newbie", "hi"], Rule("write", 1, "ENOSPC")),
    "append to a new user, lock file refused": (["append", "newbie", "hi"], Rule("open", 1, "EDQUOT")),
    "import of a new user": (["import", "newbie", "{in}"], Rule("write", 1, "ENOSPC")),
    "import as a new archive of a new user": (["import", "newbie", "{in}", "--as-archive", "x"], Rule("fsync", 1, "EIO")),
    "import as the first archive": (["import", "alice", "{in}", "--as-archive", "x"], Rule("write", 1, "ENOSPC")),
    "first archive of a user": (["archive", "alice"], Rule("rename", 1, "EIO")),
    # repair logs its run to system/audit.log first (then acts): writes 2 and 3 are the quarantine copy and the rewrite.
    "repair, rewrite after the quarantine copy": (["repair", "alice"], Rule("write", 3, "ENOSPC")),
    "repair, the quarantine copy itself": (["repair", "alice"], Rule("write", 2, "ENOSPC")),
}
# What a failed command may leave, on purpose: the line the audit log got before the command acted.
LOGGED_FIRST = {"system", "system/audit.log"}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failed_command_takes_back_what_it_made_on_the_way(case: str, journal_root: Path, tmp_path: Path, figures: Any) -> None:
    args, rule = FAILURES[case]
    args = [a.replace("{in}", str(tmp_path / "in.jsonl")) for a in args]
    before = snapshot(journal_root)
    run = faults.run(["--root", str(journal_root), *args], [rule], tmp=tmp_path)
    assert run.returncode == 6, (case, run.returncode, run.stderr)
    assert any(line.startswith("fault ") for line in run.trace), (case, run.trace)  # the fault did hit
    after = snapshot(journal_root)
    if args[0] == "repair":
        after = {path: what for path, what in after.items() if path not in LOGGED_FIRST or path in before}
    assert after == before, (case, sorted(set(after) ^ set(before)), run.stderr)


def test_a_failed_first_append_leaves_no_root(tmp_path: Path, figures: Any) -> None:
    made = 0
    for rule in (Rule("write", 1, "ENOSPC"), Rule("write", 2, "ENOSPC"), Rule("fsync", 2, "EIO"), Rule("open", 2, "ENOSPC")):
        root = tmp_path / f"new-{made}"
        run = faults.run(["--root", str(root), "append", "alice", "hi"], [rule], tmp=tmp_path)
        assert run.returncode == 6, (rule, run.stderr)
        assert not root.exists(), (rule, snapshot(root))
        made += 1
    figures.add(f"failed commands: {len(FAILURES)} failures after something was made on the way and {made} first appends to a new root: nothing left behind")
