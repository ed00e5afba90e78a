"""Real processes writing one user at once: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path

from .conftest import run_exe

WRITERS = int(os.environ.get("DIALOGCTL_STRESS_WRITERS", "8"))
APPENDS = int(os.environ.get("DIALOGCTL_STRESS_APPENDS", "500"))


def _settings(root: str):  # type: ignore[no-untyped-def]
    from dialogctl.config import load_settings

    # archiveThreshold 0: only the archiver process archives, so every move races appends.
    return load_settings({"root": root, "archiveThreshold": "0", "maxConversationLength": "1000000", "lockTimeoutMs": "60000"})


def _writer(root: str, number: int, count: int, acked: multiprocessing.Queue[list[str]]) -> None:
    from dialogctl.journal import Journal
    from dialogctl.models import Message

    journal = Journal(_settings(root), command="writer")
    done = []
    for i in range(count):
        content = f"p{number}-{i}"
        journal.append("shared", [Message("user", content, "2024-01-15T10:30:00.000Z")])
        done.append(content)
    acked.put(done)


def _archiver(root: str, stop: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    from dialogctl.journal import Journal

    journal = Journal(_settings(root), command="archiver")
    while not stop.is_set():  # type: ignore[attr-defined]
        try:
            journal.archive("shared")
        except Exception:  # noqa: BLE001 - the user may not exist yet
            pass
        time.sleep(0.003)


def test_parallel_appends_while_archiving_lose_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "journal")
    ctx = multiprocessing.get_context("spawn")
    acked: multiprocessing.Queue[list[str]] = ctx.Queue()
    stop = ctx.Event()
    archiver = ctx.Process(target=_archiver, args=(root, stop))
    archiver.start()
    writers = [ctx.Process(target=_writer, args=(root, n, APPENDS, acked)) for n in range(WRITERS)]
    for w in writers:
        w.start()
    acknowledged: list[str] = []
    for _ in writers:
        acknowledged.extend(acked.get(timeout=600))
    for w in writers:
        w.join(timeout=60)
        assert w.exitcode == 0
    stop.set()
    archiver.join(timeout=60)
    assert archiver.exitcode == 0

    from dialogctl.journal import Journal

    journal = Journal(_settings(root))
    seen = Counter(m.content for conv in journal.conversations(["shared"]) for m in conv.messages)
    assert journal.damage == []
    assert len(acknowledged) == WRITERS * APPENDS
    assert set(seen) == set(acknowledged)
    assert all(count == 1 for count in seen.values())
    archives = [f for f in journal.conversation_files("shared") if f.ref.archived]
    assert len(archives) > 5  # the archiver really did run between appends


def test_executable_appends_from_parallel_shells(tmp_path: Path) -> None:
    """The installed command, several at once, with archives in between."""
    import subprocess
    import sys

    root = tmp_path / "journal"
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root), DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD="7")
    script = 'for i in $(seq 1 15); do dialogctl append shared "w$W-$i" || exit 1; done'
    exe_dir = os.path.dirname(sys.executable)
    env["PATH"] = exe_dir + os.pathsep + env.get("PATH", "")
    procs = [subprocess.Popen(["bash", "-c", script], env=dict(env, W=str(w))) for w in range(4)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    result = run_exe("export", "shared", "--include-archives", env={"DIALOGUE_JOURNAL_ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    contents = Counter(json.loads(line)["content"] for line in result.stdout.splitlines())
    assert contents == Counter(f"w{w}-{i}" for w in range(4) for i in range(1, 16))
