"""Huge files: a conversation file of any size is read within bounded memory, or refused by a documented limit.

``maxFileMB`` (default 256) is the largest conversation file dialogctl reads.
A larger one is reported as damage naming the file (``file too large``, exit
5) and skipped by whole-journal commands, which read everything else; ``show
--tail`` still reads the end of a file whose end is dialogctl's own records;
``append`` archives a file too large to read before it writes, so new
messages land in a file that can be read; ``verify`` names it and ``repair``
leaves it as it is. The catalog (``system/catalog.bin``) is checked by its
header before anything else is read, so a huge or foreign one costs nothing.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.journal.catalog import _HEADER, MAGIC
from dialogctl.models import Message

TS = "2024-01-15T10:30:00.000Z"
LIMIT_MB = 1 << 30 >> 20  # RLIMIT_AS for the children: 1 GiB


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_MB << 20, LIMIT_MB << 20))


def _run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_JOURNAL_")}
    return subprocess.run(
        [sys.executable, "-m", "dialogctl", "--root", str(root), *args], capture_output=True, text=True, env=env, preexec_fn=_limited, timeout=timeout
    )


def _journal(root: Path) -> Journal:
    journal = Journal.open(str(root), archiveThreshold="0")
    journal.append("alice", [Message("user", "alice's", TS)])
    journal.append("bob", [Message("user", f"bob {i}", TS) for i in range(3)])
    return journal


def test_a_sparse_3_gib_conversation_file(tmp_path: Path, figures: Any) -> None:
    root = tmp_path / "journal"
    _journal(root)
    huge = root / "users/al/ic/e/dialogs/current.yaml"
    os.truncate(huge, 3 << 30)
    rel = "users/al/ic/e/dialogs/current.yaml"
    started = time.monotonic()
    for args in (["stats", "--format", "json"], ["list", "--format", "jsonl"], ["export", "--all", "--format", "jsonl"], ["search", "bob"]):
        result = _run(root, *args)
        assert result.returncode == 5, (args, result.stderr)
        assert f"{rel}: file too large: 3.0 GiB" in result.stderr, (args, result.stderr)
    bob = [json.loads(line)["content"] for line in _run(root, "export", "--all", "--format", "jsonl").stdout.splitlines()]
    assert bob == ["bob 0", "bob 1", "bob 2"]  # everything else is read
    tail = _run(root, "show", "alice", "--tail", "2")
    assert tail.returncode == 5 and f"{rel}: file too large" in tail.stderr
    report = _run(root, "verify", "--format", "jsonl")
    assert report.returncode == 1
    found = [json.loads(line) for line in report.stdout.splitlines()]
    assert [(f["problem"], f["repair"]) for f in found if f["path"] == rel] == [("file too large", None)]
    assert _run(root, "repair").returncode == 1 and huge.stat().st_size == 3 << 30  # a person decides; repair never rewrites it
    appended = _run(root, "append", "alice", "after")
    assert appended.returncode == 0, appended.stderr
    archived = list((root / "users/al/ic/e/dialogs/archived").iterdir())
    assert [p.stat().st_size for p in archived] == [3 << 30]  # archived first: the new message is in a file that reads
    shown = _run(root, "show", "alice", "--format", "jsonl")
    assert shown.returncode == 0 and [json.loads(x)["content"] for x in shown.stdout.splitlines()] == ["after"]
    figures.add(
        f"huge files: a sparse 3 GiB conversation file under a {LIMIT_MB} MiB RLIMIT_AS: stats, list, export, search, show --tail exit 5 naming it "
        f"(the rest read), verify names it, repair leaves it, append archives it first; {time.monotonic() - started:.1f} s in all"
    )


def test_show_tail_reads_only_the_end_of_a_file_over_the_limit(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = Journal.open(str(root), archiveThreshold="0", maxConversationLength="100000")
    journal.append("alice", [Message("user", f"{i} " + "x" * 2000, TS) for i in range(1000)])  # about 2 MB of our own records
    tail = _run(root, "--set", "maxFileMB=1", "show", "alice", "--tail", "2", "--format", "jsonl")
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(x)["content"][:4] for x in tail.stdout.splitlines()] == ["998 ", "999 "]
    whole = _run(root, "--set", "maxFileMB=1", "show", "alice")
    assert whole.returncode == 5 and "file too large: 2.0 MiB, more than the 1.0 MiB" in whole.stderr
    assert _run(root, "show", "alice").returncode == 0  # the default limit reads it


def test_the_catalog_knows_a_file_that_grew_past_the_limit(tmp_path: Path) -> None:
    """A file summarised once and grown past the limit reads as a full re-read would: too large."""
    root = tmp_path / "journal"
    journal = Journal.open(str(root), archiveThreshold="0", maxConversationLength="100000")
    journal.append("alice", [Message("user", "x" * 1000, TS) for i in range(500)])
    first = _run(root, "--set", "maxFileMB=1", "stats", "--format", "json")
    assert first.returncode == 0 and json.loads(first.stdout)["totalMessages"] == 500
    journal.append("alice", [Message("user", "x" * 1000, TS) for i in range(700)])
    grown = _run(root, "--set", "maxFileMB=1", "stats", "--format", "json")
    assert grown.returncode == 5 and json.loads(grown.stdout)["totalMessages"] == 0 and "file too large" in grown.stderr
    again = _run(root, "--set", "maxFileMB=1", "stats", "--format", "json")  # from the saved catalog: the same answer
    assert (again.returncode, json.loads(again.stdout)["totalMessages"]) == (5, 0)
    assert json.loads(_run(root, "stats", "--format", "json").stdout)["totalMessages"] == 1200


@pytest.mark.parametrize("header", ["zeros", "magic and a declared length of the file's size"])
def test_a_huge_catalog_costs_nothing(tmp_path: Path, header: str, figures: Any) -> None:
    """A 4 GiB catalog.bin (sparse) is refused by its header: stats, list, verify and repair run in bounded memory."""
    root = tmp_path / "journal"
    _journal(root)
    assert _run(root, "stats").returncode == 0
    catalog = root / "system" / "catalog.bin"

    def plant() -> None:
        size = 4 << 30
        with open(catalog, "wb") as fh:
            if header != "zeros":
                fh.write(MAGIC + (size - _HEADER).to_bytes(8, "big") + b"\0" * 4)
            fh.truncate(size)

    took = {}
    for args in (["stats", "--format", "json"], ["list"], ["verify"], ["repair"]):
        plant()
        started = time.monotonic()
        result = _run(root, *args)
        took[args[0]] = time.monotonic() - started
        assert result.returncode == (1 if args == ["verify"] else 0), (args, result.stderr)
        if args[0] == "verify":
            assert "system/catalog.bin" in result.stdout and "it will be rebuilt" in result.stdout
        if args[0] == "stats":
            assert json.loads(result.stdout)["totalMessages"] == 4
    assert max(took.values()) < 10, took
    figures.add(
        f"catalog: a sparse 4 GiB catalog.bin ({header}) under a {LIMIT_MB} MiB RLIMIT_AS: stats, list, verify, repair each within "
        f"{max(took.values()):.1f} s, rebuilt, reported, discarded"
    )
