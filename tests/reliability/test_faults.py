"""Full disks and I/O errors: a clear error, exit 6, and the files exactly as they were.

Each command is first run cleanly with every file-changing call traced (see
:mod:`tests.reliability.faults`); then once for each of those calls, with
ENOSPC or EIO injected at it. Real errors come from RLIMIT_FSIZE (EFBIG and
short writes from the kernel) and, where mount namespaces are allowed, from
a tiny tmpfs that really fills up.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dialogctl.disk.fileops import TEMP_MARK

from . import faults
from .faults import Rule
from .test_verify_repair import snapshot

CALLS = ("write", "pwrite", "fsync", "rename", "replace", "link", "ftruncate", "mkdir", "unlink", "open")
ERRNOS = ("ENOSPC", "EIO")


def _journal(root: Path) -> None:
    """alice: a current conversation of three and one archive (a1); bob: an old conversation to trim."""
    from dialogctl import Journal
    from dialogctl.models import Message

    journal = Journal.open(str(root), archiveThreshold="4")
    journal.append("alice", [Message("user", "kept in the archive", "2024-01-01T00:00:00.000Z")])
    journal.archive("alice", archive_id="a1")
    journal.append("alice", [Message("user", f"m{i}", f"2024-01-02T00:00:0{i}.000Z") for i in range(3)])
    journal.append("bob", [Message("user", "old", "2020-01-01T00:00:00.000Z"), Message("user", "new", "2999-01-01T00:00:00.000Z")])


def _damage(root: Path) -> None:
    path = root / "users/al/ic/e/dialogs/current.yaml"
    path.write_bytes(path.read_bytes() + b"---\nrole: user\ncontent: |2\n  cut sh")


SCENARIOS: dict[str, tuple[list[str], Any]] = {
    "append": (["append", "alice", "hello", "--timestamp", "2024-01-03T00:00:00Z"], None),
    "append that archives": (["--set", "archiveThreshold=4", "append", "alice", "fourth", "--timestamp", "2024-01-03T00:00:00Z"], None),
    "append to a new user": (["append", "carol", "hello", "--timestamp", "2024-01-03T00:00:00Z"], None),
    "archive": (["archive", "alice", "--id", "a2"], None),
    "restore": (["restore", "alice", "a1"], None),
    "cleanup": (["cleanup", "--max-age", "1000d", "--yes"], None),
    "cleanup of an inactive user": (["cleanup", "--max-inactive", "1000d", "--yes"], None),
    "rm of a user": (["rm", "bob", "--all-data", "--yes"], None),
    "rm of an archive": (["rm", "alice", "--archive", "a1", "--yes"], None),
    "repair": (["repair", "alice"], _damage),
    "import": (["import", "alice", "{input}", "--format", "jsonl"], None),
    "import as an archive": (["import", "alice", "{input}", "--format", "jsonl", "--as-archive", "imported"], None),
}
IMPORTED = "".join(json.dumps({"role": "user", "content": f"imported {i}", "timestamp": "2024-01-05T00:00:00.000Z"}) + "\n" for i in range(3))
# Commands made of several steps that each commit on their own: a fault after
# the first commit leaves the earlier steps done (each file old or new, never torn).
MULTI_STEP = {"cleanup", "repair", "cleanup of an inactive user", "rm of a user", "rm of an archive"}
# An append whose automatic archive fails still succeeds (its message is durable, and a
# caller told otherwise would append it twice); the next append archives first.
DEFERRED_ARCHIVE = {"append that archives": ["--set", "archiveThreshold=0", "append", "alice", "fourth", "--timestamp", "2024-01-03T00:00:00Z"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "journal"
    _journal(root)
    return root


def _fresh(template: Path, dest: Path, prepare: Any) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest, symlinks=True)
    if prepare is not None:
        prepare(dest)
    return dest


LOGS = ("system/cleanup.log", "system/audit.log")
# Caches and summaries a command writes best-effort after its last commit.
DERIVED_SYSTEM_FILES = ("system/catalog.bin", "system/catalog.lock", "system/catalog.log", "system/stats.yaml")


def normalized(root: Path, leftovers: bool = True, derived: bool = True) -> Counter[tuple[str, int, bytes | None]]:
    """The tree with names chosen at run time (archive ids from the clock, quarantine runs) and lock owner records left out.

    ``derived=False`` also leaves out users' metadata.yaml, which a command
    updates after its last commit and which is recomputed when found stale.
    """
    out: Counter[tuple[str, int, bytes | None]] = Counter()
    for path, (mode, data) in snapshot(root).items():
        if not leftovers and TEMP_MARK in path:
            continue
        if path.endswith("/metadata.yaml"):
            if not derived:
                continue
            data = _without_inodes(data)
        parts = path.split("/")
        if "archived" in parts[:-1]:
            parts[-1] = "*"
        if parts[:2] == ["system", "quarantine"] and len(parts) > 2:
            parts[2] = "*"
        if path in DERIVED_SYSTEM_FILES:
            if not derived:
                continue  # written after the last commit, best-effort
            data = None  # the catalog holds mtimes, stats.yaml its generatedAt
        if parts[-1] == ".lock" or path in LOGS:
            data = None  # owner records and log lines hold the time
        out[("/".join(parts), mode, data)] += 1
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_injected_errors_leave_files_as_they_were(scenario: str, template: Path, tmp_path: Path, figures: Any) -> None:
    """Each fault either stops the command with exit 6 and every file as it was, or lands after the
    command's last commit (releasing the lock), which then succeeds with exactly the clean run's result."""
    args, prepare = SCENARIOS[scenario]
    source = tmp_path / "import.jsonl"
    source.write_text(IMPORTED)
    args = [a.replace("{input}", str(source)) for a in args]
    root = _fresh(template, tmp_path / "journal", prepare)
    clean = faults.run(["--root", str(root), *args], tmp=tmp_path)
    assert clean.returncode == 0, clean.stderr
    done = normalized(root)
    done_but_derived = normalized(root, derived=False)
    done_files = {k: _comparable(k, v[1]) for k, v in snapshot(root).items() if k not in LOGS and k not in DERIVED_SYSTEM_FILES}
    logged = {log: _lines(root, log) for log in LOGS}
    deferred = None
    if scenario in DEFERRED_ARCHIVE:
        root = _fresh(template, tmp_path / "journal", prepare)
        assert faults.run(["--root", str(root), *DEFERRED_ARCHIVE[scenario]]).returncode == 0
        deferred = normalized(root)
    calls = Counter(line.split()[1] for line in clean.steps)
    outcomes: Counter[str] = Counter()
    bad = []
    for call in CALLS:
        for nth in range(1, calls[call] + 1):
            for code in ERRNOS:
                root = _fresh(template, tmp_path / "journal", prepare)
                before = snapshot(root)
                run = faults.run(["--root", str(root), *args], [Rule(call, nth, code)], tmp=tmp_path)
                where = (call, nth, code)
                if "Traceback" in run.stderr or any(not line.startswith("dialogctl: ") for line in run.stderr.splitlines()):
                    bad.append((where, "not one clear line", run.stderr))
                    continue
                after = snapshot(root)
                if scenario == "append to a new user":
                    after = {k: v for k, v in after.items() if k in before}  # the new user's folders and lock file may stay
                if run.returncode == 6 and after == before and os.strerror(getattr(errno, code)) in run.stderr:
                    outcomes["exit 6, files as before"] += 1
                elif (
                    run.returncode == 6
                    and _without_logs(after) == _without_logs(before)
                    and os.strerror(getattr(errno, code)) in run.stderr
                    and [phase for log in LOGS for phase in _lines(root, log)[len(_lines_of(before, log)) :]] == ["intent", "failed"]
                ):
                    outcomes["exit 6, files as before, its intent and the failure logged"] += 1
                elif run.returncode == 0 and normalized(root) == done:
                    outcomes["after the last commit: done"] += 1
                elif run.returncode == 0 and normalized(root, derived=False) == done_but_derived and _metadata_recomputed(root):
                    outcomes["done, metadata.yaml left stale and recomputed by the next append"] += 1
                elif run.returncode in (0, 1) and normalized(root, leftovers=False) == done and _reported(root, after, before):
                    outcomes["done, with a leftover temp file that verify reports"] += 1
                elif run.returncode == 0 and deferred is not None and normalized(root) == deferred and "automatic archive failed" in run.stderr:
                    outcomes["appended, archive left to the next append"] += 1
                elif (
                    run.returncode == 6
                    and normalized(root, derived=False) == done_but_derived
                    and "cannot write the log" in run.stderr
                    and all(_lines(root, log) == [*phases[:-1]] for log, phases in logged.items() if phases)
                ):
                    outcomes["exit 6 after the last commit: done, its intent logged, the outcome line could not be"] += 1
                elif (
                    run.returncode == 6
                    and scenario in MULTI_STEP
                    and all(_comparable(k, v[1]) in (_comparable(k, before[k][1]), done_files.get(k)) for k, v in snapshot(root).items() if k in before)
                ):
                    outcomes["exit 6 after some steps committed, each file old or new"] += 1
                else:
                    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                    bad.append((where, run.returncode, run.stderr, changed, run.trace[-4:]))
    assert not bad, bad[:4]
    total = sum(outcomes.values())
    figures.add(
        f"faults, {scenario}: {total} injected errors at {', '.join(f'{c} x{n}' for c, n in sorted(calls.items()) if c in CALLS)} (each ENOSPC and EIO): "
        + ", ".join(f"{n} {what}" for what, n in outcomes.items())
        + "; 0 tracebacks"
    )


def _without_logs(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tree.items() if k not in LOGS and k != "system"}


def _lines_of(tree: dict[str, Any], log: str) -> list[bytes]:
    entry = tree.get(log)
    return entry[1].splitlines() if entry is not None and entry[1] is not None else []


def _lines(root: Path, log: str) -> list[str]:
    """The phases of the lines in one of the journal's logs (intent, done...)."""
    path = root / log
    return [json.loads(line).get("phase", "") for line in path.read_text().splitlines()] if path.exists() else []


def _comparable(path: str, data: bytes | None) -> bytes | None:
    """A file's bytes as compared across copies of the journal (metadata.yaml without the inode numbers it records)."""
    return _without_inodes(data) if path.endswith("/metadata.yaml") else data


def _without_inodes(data: bytes | None) -> bytes | None:
    """metadata.yaml with the inode numbers of the files it counted left out (they differ from copy to copy)."""
    if data is None:
        return None
    meta = json.loads(data)
    counted = meta.get("dialogctl", {}).get("counted") or {}
    for name, key in counted.items():
        counted[name] = key[:1] if isinstance(key, list) else key
    return json.dumps(meta, sort_keys=True).encode()


def _metadata_recomputed(root: Path) -> bool:
    """Whether every user's metadata.yaml, left stale by a failed update, is brought back to the truth by the next append."""
    from dialogctl import Journal
    from dialogctl.journal.usermeta import METADATA_FILE, recompute
    from dialogctl.models import Message

    journal = Journal.open(str(root))
    for user in journal.users():
        journal.append(user, [Message("user", "after the fault", "2024-06-01T00:00:00.000Z")])
        kept = json.loads((root / journal.user_path(user)).parent.joinpath(METADATA_FILE).read_text())
        truth = recompute(journal, user, kept)  # a recount keeps when the user was first seen (createdAt), as every recount does
        if {k: v for k, v in kept.items() if k != "dialogctl"} != {k: v for k, v in truth.items() if k != "dialogctl"}:
            return False
    return True


def _reported(root: Path, after: dict[str, Any], before: dict[str, Any]) -> bool:
    """Whether every temp file the run left behind is one that verify reports."""
    new = sorted(k for k in after if TEMP_MARK in k and k not in before)
    if not new:
        return False
    found = faults.run(["--root", str(root), "verify", "--format", "json"])
    return found.returncode == 1 and set(new) <= {f["path"] for f in json.loads(found.stdout)}


def test_real_efbig_and_short_writes_from_the_kernel(template: Path, tmp_path: Path, figures: Any) -> None:
    root = _fresh(template, tmp_path / "journal", None)
    current = root / "users/al/ic/e/dialogs/current.yaml"
    size = current.stat().st_size
    for limit in (size, size + 10):  # EFBIG at once; a short write that is cut back
        before = snapshot(root)
        run = faults.run(["--root", str(root), "append", "alice", "x" * 500], fsize=limit)
        assert run.returncode == 6, run.stderr
        assert "Traceback" not in run.stderr and run.stderr.startswith("dialogctl: cannot append") and "File too large" in run.stderr
        assert snapshot(root) == before
    figures.add("faults: RLIMIT_FSIZE gave a real EFBIG and a real short write: both exit 6, files byte-identical")


def _unshare() -> str | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for flags in (["-rm"], ["-m"]):
        probe = subprocess.run(
            [unshare, *flags, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True
        )
        if probe.returncode == 0:
            return " ".join([unshare, *flags])
    return None


FILL_SCRIPT = r"""
import json, subprocess, sys
root = sys.argv[1]
def run(*args):
    return subprocess.run([sys.executable, "-m", "dialogctl", "--root", root, *args], capture_output=True, text=True)
acked, results = [], {}
for i in range(400):
    text = f"message {i} " + "x" * 1500
    r = run("--set", "archiveThreshold=0", "append", "alice", text)
    if r.returncode != 0:
        results["full"] = [r.returncode, r.stderr]
        break
    acked.append(text)
export = run("export", "alice", "--format", "jsonl")
results["acked"] = len(acked)
results["read"] = [json.loads(line)["content"] for line in export.stdout.splitlines()] == acked
results["export"] = export.returncode
results["verify"] = [run("verify").returncode, run("verify").stdout]
results["archive"] = [run("archive", "alice").returncode, run("archive", "alice").stderr]
print(json.dumps(results))
"""


def test_a_small_filesystem_that_really_fills_up(tmp_path: Path, figures: Any) -> None:
    """A 96 KiB tmpfs in a private mount namespace: appends fail with exit 6 and nothing acknowledged is lost."""
    unshare = _unshare()
    if unshare is None:
        pytest.skip("no mount namespace here (unshare -rm refused): no small filesystem; RLIMIT_FSIZE covers real EFBIG")
    mount = tmp_path / "small"
    mount.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    shell = f"mount -t tmpfs -o size=96k,nr_inodes=64 tmpfs '{mount}' && exec '{sys.executable}' '{script}' '{mount}/journal'"
    proc = subprocess.run([*unshare.split(), "sh", "-c", shell], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    code, stderr = results["full"]
    assert code == 6 and "No space left on device" in stderr and "Traceback" not in stderr
    assert results["read"] and results["export"] == 0
    assert results["verify"][0] == 0, results["verify"]
    assert results["archive"][0] == 0, results["archive"]  # a rename needs no space: archiving still works on a full disk
    figures.add(
        f"faults: a 96 KiB tmpfs filled after {results['acked']} appends: exit 6 'No space left on device', all {results['acked']} acknowledged messages read back"
    )
