"""Large batches under a real SIGKILL, and imports in bounded memory.

A process killed during a large write leaves every whole record before the
cut on disk (the kernel stops a write part-way on a fatal signal, and a large
batch goes in several writes anyway). Here imports and ``append --jsonl``
batches of 1-100 MB are SIGKILLed at random moments after their write began
(found by polling the file's size), and the journal must read none of the
batch or all of it, before and after ``repair``; a retry must land the batch
exactly once; a server's item appended after the crash is kept. A second test
tears a write half-way at every piece of a batch (the fault injector), so the
cut also falls inside a record.

The import of an 80 MB file must succeed under a 400 MB address-space limit
(it peaked at 850 MB RSS when it read and parsed the whole file).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dialogctl import Journal
from dialogctl.fileformat.codec import find_frames
from dialogctl.maintenance.repair import repair
from dialogctl.maintenance.verify import verify
from dialogctl.models import ConversationRef

from .. import reference_writer as server
from . import faults
from .conftest import count
from .faults import Rule

TS = "2024-01-02T03:04:05.000Z"
USER = "bulk"
BIG = ["--set", "archiveThreshold=0", "--set", "maxConversationLength=100000000"]  # append --jsonl: the whole batch is one write
CRASH_LEFTOVERS = {"torn batch", "torn record"}


def _sizes() -> list[int]:
    return [int(mb) for mb in os.environ.get("DIALOGCTL_BATCH_MB", "1,4,16").split(",")]


def _contents(mb: float, tag: str) -> list[str]:
    """Messages that make about ``mb`` megabytes of JSON lines (about 120 bytes each)."""
    line = len(json.dumps({"role": "assistant", "content": f"{tag} message 00000000 lorem ipsum dolor sit amet", "timestamp": TS})) + 1
    return [f"{tag} message {i:08d} lorem ipsum dolor sit amet" for i in range(int(mb * 1e6 / line))]


def _write_input(path: Path, fmt: str, contents: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        if fmt == "json":
            out.write('{"userId": "someone", "messages": [')
            for i, content in enumerate(contents):
                out.write(("," if i else "") + json.dumps({"role": "user" if i % 2 == 0 else "assistant", "content": content, "timestamp": TS}))
            out.write("]}\n")
        else:
            for i, content in enumerate(contents):
                out.write(json.dumps({"role": "user" if i % 2 == 0 else "assistant", "content": content, "timestamp": TS}) + "\n")


def _journal(root: Path) -> Journal:
    return Journal.open(str(root))


def _read_back(root: Path) -> tuple[list[str], list[str]]:
    """Every message content of the user (archives, then current), and the damage kinds met."""
    journal = _journal(root)
    contents: list[str] = []
    for f in sorted(journal.conversation_files(USER), key=lambda f: (not f.ref.archived, f.ref.id or "")):
        contents.extend(m.content for m in journal.read(f.ref, missing_ok=True).messages)
    return contents, [d.kind for d in journal.damage]


def _batch_part(contents: list[str]) -> list[str]:
    """What a journal read holds of the batch: everything but the message before it and a server's item after it."""
    return [c for c in contents if c != "before" and not c.startswith("server after the crash")]


def _records_on_disk(root: Path) -> int:
    """Whole framed records in the user's files (read or not)."""
    journal = _journal(root)
    return sum(len(find_frames((root / f.rel_path).read_bytes())[0]) for f in journal.conversation_files(USER))


class _Command:
    def __init__(self, kind: str, source: Path) -> None:
        self.kind = kind
        self.source = source

    def argv(self, root: Path) -> list[str]:
        base = [sys.executable, "-m", "dialogctl", "--root", str(root)]
        if self.kind == "append --jsonl":
            return [*base, *BIG, "append", USER, "--jsonl"]
        return [*base, "import", USER, str(self.source)]

    def start(self, root: Path) -> subprocess.Popen[bytes]:
        stdin = open(self.source, "rb") if self.kind == "append --jsonl" else subprocess.DEVNULL  # noqa: SIM115
        try:
            return subprocess.Popen(self.argv(root), stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()  # type: ignore[union-attr]

    def run(self, root: Path) -> None:
        proc = self.start(root)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()


def _target(root: Path) -> Path:
    return root / _journal(root).rel_path(ConversationRef(USER, "current"))


def _fresh_root(tmp: Path, command: _Command) -> Path:
    """A journal where the user has one message: in the current conversation the batch is appended to, or
    (for an import, which archives a conversation it would take past archiveThreshold first) in an archive."""
    root = tmp / "journal"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    journal = _journal(root)
    from dialogctl.models import Message

    journal.append(USER, [Message("user", "before", TS)])
    if command.kind == "import":
        journal.archive(USER)
    return root


def _start_and_wait_for_the_write(command: _Command, root: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start the command and return once its write has begun (the file grew), or it ended; with the time then."""
    target = _target(root)
    start_size = target.stat().st_size
    proc = command.start(root)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if target.stat().st_size > start_size:
                break
        except FileNotFoundError:  # moved to archived/ and not yet recreated
            pass
        time.sleep(0.0005)
    return proc, time.monotonic()


def _write_time(command: _Command, root: Path) -> float:
    """How long the command runs once its write has begun (a clean run): kills land anywhere in that time."""
    proc, began = _start_and_wait_for_the_write(command, root)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - began


def _kill_during_the_write(command: _Command, root: Path, delay: float) -> int:
    """SIGKILL the command ``delay`` seconds after its write began; its exit code (-9, or 0 if it ended first)."""
    proc, _ = _start_and_wait_for_the_write(command, root)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def test_sigkill_during_large_imports_and_batches_reads_none_or_all(tmp_path: Path, figures: Any) -> None:
    kills_each = count("BATCH_KILLS", 3)
    rng = random.Random(int(os.environ.get("DIALOGCTL_CRASH_SEED", "13")))
    outcomes: Counter[str] = Counter()
    on_disk: list[int] = []
    sizes_done: list[str] = []
    retries = 0
    for mb in _sizes():
        contents = _contents(mb, f"{mb}mb")
        inputs = {}
        for fmt in ("json", "jsonl"):
            inputs[fmt] = tmp_path / f"in-{mb}.{fmt}"
            _write_input(inputs[fmt], fmt, contents)
        sizes_done.append(f"{inputs['jsonl'].stat().st_size / 1e6:.0f} MB ({len(contents)} messages)")
        for command in (_Command("import", inputs["json"]), _Command("import", inputs["jsonl"]), _Command("append --jsonl", inputs["jsonl"])):
            write_time = _write_time(command, _fresh_root(tmp_path, command))
            for kill in range(kills_each):
                root = _fresh_root(tmp_path, command)
                delay = 0.0 if kill == 0 else rng.uniform(0, write_time)  # the first just as the file starts to grow
                code = _kill_during_the_write(command, root, delay)
                read, _ = _read_back(root)
                batch = _batch_part(read)
                where = (command.kind, command.source.name, round(delay, 3), code)
                assert read[:1] == ["before"], where
                assert batch in ([], contents), (where, len(batch))  # none of it, or all of it: never part
                outcomes["none read" if not batch else "all read"] += 1
                whole = _records_on_disk(root) - 1 - len(batch)  # whole records of the batch on disk but not read
                if whole:
                    on_disk.append(whole)
                # A server appends after the crash, unlocked as always: its item is a message.
                server.append(_target(root), [server.message("user", "server after the crash", TS)])
                findings = verify(_journal(root), [USER]).problems
                assert {f.problem for f in findings} <= CRASH_LEFTOVERS, (where, findings)
                assert sum(f.problem == "torn batch" for f in findings) <= 1, (where, findings)
                if findings:
                    assert repair(_journal(root), [USER]).unmended == [], where
                    assert verify(_journal(root), [USER]).problems == [], where
                after, _ = _read_back(root)
                assert _batch_part(after) == batch, where  # repair keeps exactly what was read: never part of a batch
                assert sum(c.startswith("server after the crash") for c in after) == 1, where
                if not batch:
                    # The retry a caller makes after a kill that committed nothing: the batch lands exactly once.
                    command.run(root)
                    assert _batch_part(_read_back(root)[0]) == contents, where
                    retries += 1
    figures.add(
        f"crash, large batches: SIGKILL during {sum(outcomes.values())} imports (json, jsonl) and append --jsonl batches of {', '.join(sizes_done)}"
        f" at random moments of the write: {dict(outcomes)}, 0 partial batches read before or after repair; whole records of the cut batch"
        f" on disk at {len(on_disk)} kills ({min(on_disk, default=0)}-{max(on_disk, default=0)}), none of them read;"
        f" {retries} retries after a kill that committed nothing, each landed the batch exactly once; a server's item appended after each crash kept"
    )
    assert on_disk, "no kill landed inside a write: the test tested nothing"


def test_a_write_torn_inside_any_piece_of_a_batch_reads_as_nothing(tmp_path: Path, figures: Any) -> None:
    """The fault injector writes half of one piece and kills: the cut falls inside a record, at every piece in turn."""
    contents = _contents(3, "torn")  # about 3 MB: four pieces of about a megabyte
    source = tmp_path / "in.jsonl"
    _write_input(source, "jsonl", contents)
    command = _Command("import", source)
    root = _fresh_root(tmp_path, command)
    clean = faults.run(["--root", str(root), "import", USER, str(source)], tmp=tmp_path, timeout=300)
    assert clean.returncode == 0, clean.stderr
    writes = [line for line in clean.steps if line.split()[1] == "write"]
    pieces = [int(line.split()[2]) for line in writes if int(line.split("bytes=")[1]) > 100_000]  # the writes of the batch
    for nth in pieces:
        root = _fresh_root(tmp_path, command)
        run = faults.run(["--root", str(root), "import", USER, str(source)], [Rule("write", nth, "torn")], tmp=tmp_path, timeout=300)
        assert run.returncode == -signal.SIGKILL, run.stderr
        read, damage = _read_back(root)
        assert read == ["before"], nth
        assert "torn batch" in damage or nth == pieces[0], (nth, damage)  # the first piece torn: no whole record yet
        assert repair(_journal(root), [USER]).unmended == []
        assert _read_back(root)[0] == ["before"]
        run = faults.run(["--root", str(root), "import", USER, str(source)], tmp=tmp_path, timeout=300)
        assert run.returncode == 0 and _batch_part(_read_back(root)[0]) == contents
    assert len(pieces) >= 3, writes  # pieces of about a megabyte
    figures.add(
        f"crash, torn pieces: an import of {len(contents)} messages ({source.stat().st_size / 1e6:.1f} MB, {len(pieces)} writes) torn half-way"
        f" through each of its {len(pieces)} writes: 0 messages of it read, repair left nothing of it, each retry landed it once"
    )


# --- memory ----------------------------------------------------------------------------------

_MEASURE = """
import resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
with open(sys.argv[2], "rb") as stdin:
    code = subprocess.run(sys.argv[3:], preexec_fn=cap, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _import_under_limit(root: Path, source: Path, limit_mb: int, *args: str, stdin: Path | None = None) -> tuple[int, int]:
    """(exit code, peak RSS in KiB) of ``dialogctl import`` run under an address-space limit (measured from a fresh parent)."""
    argv = [sys.executable, "-m", "dialogctl", "--root", str(root), "import", USER, *args]
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(limit_mb << 20), str(stdin or os.devnull), *argv], capture_output=True, text=True, check=True, timeout=900
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_an_80_mb_import_runs_in_bounded_memory(tmp_path: Path, figures: Any) -> None:
    mb = count("IMPORT_MB", 80)
    contents = _contents(mb, "mem")
    results = []
    source = tmp_path / "big.json"
    _write_input(source, "json", contents)
    size = source.stat().st_size
    root = tmp_path / "journal"
    code, rss = _import_under_limit(root, source, 400, str(source))
    assert code == 0, "the import failed under a 400 MB address-space limit"
    assert rss < 120 * 1024, rss  # it does not grow with the input (about 35 MiB)
    results.append(f"json {size / 1e6:.0f} MB: {rss // 1024} MiB")
    journal = _journal(root)
    files = journal.conversation_files(USER)
    assert sum(len(journal.read(f.ref).messages) for f in files) == len(contents)
    # The other formats, from stdin too (sqlite: copied to a temporary file, then read in place).
    smaller = contents[: len(contents) // 4]
    jsonl = tmp_path / "part.jsonl"
    _write_input(jsonl, "jsonl", smaller)
    code, rss = _import_under_limit(tmp_path / "j2", jsonl, 400, "-", stdin=jsonl)
    assert code == 0 and rss < 120 * 1024, (code, rss)
    results.append(f"jsonl {jsonl.stat().st_size / 1e6:.0f} MB from stdin: {rss // 1024} MiB")
    db = tmp_path / "part.db"
    subprocess.run([sys.executable, "-m", "dialogctl", "--root", str(tmp_path / "j2"), "export", "--all", "--format", "sqlite", "-o", str(db)], check=True)
    for how, args, stdin in (("a file", [str(db)], None), ("stdin", ["-"], db)):
        code, rss = _import_under_limit(tmp_path / f"j-{how}", db, 400, *args, stdin=stdin)
        assert code == 0 and rss < 120 * 1024, (how, code, rss)
        results.append(f"sqlite {db.stat().st_size / 1e6:.0f} MB from {how}: {rss // 1024} MiB")
    csv_path = tmp_path / "part.csv"
    subprocess.run([sys.executable, "-m", "dialogctl", "--root", str(tmp_path / "j2"), "export", "--all", "--format", "csv", "-o", str(csv_path)], check=True)
    code, rss = _import_under_limit(tmp_path / "j-csv", csv_path, 400, str(csv_path))
    assert code == 0 and rss < 120 * 1024, (code, rss)
    for name in ("j-a file", "j-stdin", "j-csv"):
        journal = _journal(tmp_path / name)
        assert sum(len(journal.read(f.ref).messages) for f in journal.conversation_files(USER)) == len(smaller), name
    results.append(f"csv {csv_path.stat().st_size / 1e6:.0f} MB: {rss // 1024} MiB")
    figures.add("memory, import under a 400 MB address-space limit (RLIMIT_AS), peak RSS: " + "; ".join(results))


def test_a_retry_after_a_kill_succeeds_in_bounded_memory(tmp_path: Path, figures: Any) -> None:
    """The retry meets the torn batch and stale metadata: the metadata recount reads the files whole and may run
    out of memory, which must not fail the import it follows (the caller would import it again)."""
    contents = _contents(30, "retry")
    source = tmp_path / "in.jsonl"
    _write_input(source, "jsonl", contents)
    command = _Command("import", source)
    root = _fresh_root(tmp_path, command)
    assert _kill_during_the_write(command, root, 0.0) == -signal.SIGKILL
    assert _batch_part(_read_back(root)[0]) == []
    code, rss = _import_under_limit(root, source, 150, str(source))
    assert code == 0, f"the retry exited {code} under a 150 MB address-space limit"
    assert _batch_part(_read_back(root)[0]) == contents
    figures.add(
        f"memory, retry after a kill: an import of {source.stat().st_size / 1e6:.0f} MB SIGKILLed during its write, run again under a 150 MB"
        f" RLIMIT_AS: exit 0, the batch read once (peak RSS {rss // 1024} MiB; the metadata recount that ran out of memory is left to the next append)"
    )
