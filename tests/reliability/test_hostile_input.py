"""Hostile input: mutated journals, YAML tricks, huge and deep documents, bad bytes, fuzzed arguments.

Nothing here may raise, execute code, hang, or eat memory: damaged input is
reported as damage (exit 5, file and line) and every intact message is still
read. Heavy inputs run in child processes with a time limit and a memory
measurement, so a crash of the YAML library (libyaml recurses on the C stack)
would fail the test instead of killing the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dialogctl.fileformat.codec import encode_batch
from dialogctl.fileformat.reader import parse_conversation
from dialogctl.fileformat.salvage import MAX_ITEM_BYTES
from dialogctl.maintenance.recovery import recover
from dialogctl.models import Message

from ..conftest import FIXTURES, Cli
from .conftest import count

SEED_MESSAGES = [
    Message("user", "hello\n", "2024-01-15T10:30:00.000Z"),
    Message("assistant", "  code\n---\n# not a comment\n", "2024-01-15T10:30:01.000Z", {"model": "m", "tokens": {"total": 3}}),
    Message("user", 'quote " and \\ and \x07', "2024-01-15T10:30:02.000Z"),
]
SEEDS = [encode_batch(SEED_MESSAGES, 1, "documents"), encode_batch(SEED_MESSAGES, 1, "sequence")] + [
    path.read_bytes() for path in sorted(FIXTURES.rglob("*.yaml"))[:12]
]
TOKENS = [
    b"---\n", b"- ", b"...\n", b"&a ", b"*a", b"!!python/object/apply:os.system ['true']", b"!custom ", b"!!binary ", b"{", b"}", b"[", b"]",
    b": ", b"\n  ", b"|", b"|2-", b">", b'"', b"'", b"#", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\r", b"\t", b"%YAML 1.2\n",
    b"# dialogctl n=1 len=10 crc32=00000000\n", b"? ", b"<<: *a\n", b"\xe2\x80\xae",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif op == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
        else:
            del data[at:]
    return bytes(data)


def test_mutated_journal_files_never_break_the_reader(figures: Any) -> None:
    examples = count("FUZZ_FILES", 10_000)
    seen = {"files": 0, "damaged": 0, "messages": 0}

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutated())
    def check(data: bytes) -> None:
        parsed = parse_conversation(data, "f.yaml")
        lines = data.count(b"\n") + 1
        for msg in parsed.messages:
            assert isinstance(msg.role, str) and isinstance(msg.content, str) and isinstance(msg.timestamp, str)
            assert msg.metadata is None or isinstance(msg.metadata, dict)
        for damage in parsed.damage:
            assert damage.line is None or 1 <= damage.line <= lines, damage
            assert damage.kind and damage.detail
        saved = recover(data, "f.yaml")
        assert all(m in saved.messages for m in parsed.messages)
        seen["files"] += 1
        seen["damaged"] += bool(parsed.damage)
        seen["messages"] += len(parsed.messages)

    check()
    figures.add(
        f"hostile: {seen['files']} mutated journal files (hypothesis): {seen['damaged']} reported damaged, {seen['messages']} messages read, 0 exceptions"
    )


# dialogctl's own entry point, reporting its peak RSS (KiB) on its last stderr line as it exits.
_MEASURED = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: sys.stderr.write(f'peak-rss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'))\n"
    "sys.argv = ['dialogctl', *sys.argv[1:]]\n"
    "from dialogctl.cli import main\n"
    "main()\n"
)


def _run_child(args: list[str], root: Path, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], int]:
    """dialogctl in a child with a time limit; also its own peak RSS in KiB."""
    proc = subprocess.run([sys.executable, "-c", _MEASURED, "--root", str(root), *args], capture_output=True, text=True, timeout=timeout)
    rest, _, rss = proc.stderr.rstrip("\n").rpartition("peak-rss=")
    proc.stderr = rest
    return proc, int(rss)


def _reference_item(content: bytes, metadata: bytes = b"") -> bytes:
    return b"- role: assistant\n  content: " + content + b"\n  timestamp: 2024-03-01T09:00:00.000Z\n" + metadata


def _journal_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "journal"
    for user, data in files.items():
        folder = root / "users" / user / "dialogs"
        folder.mkdir(parents=True)
        (folder / "current.yaml").write_bytes(data)
    return root


GOOD = _reference_item(b"|\n    intact before") + _reference_item(b"|\n    intact after")


def _with_bad(bad: bytes) -> bytes:
    items = GOOD.split(b"- role: assistant\n", 2)
    return b"- role: assistant\n" + items[1] + bad + b"- role: assistant\n" + items[2]


def test_tags_anchors_bombs_depth_and_bad_bytes(tmp_path: Path, figures: Any) -> None:
    canary = tmp_path / "code-ran"
    bomb = b"&a [x, x, x, x, x, x, x, x, x]"
    for level in "bcdefghij":
        bomb = bomb + f"\n    {level}: &{level} [".encode() + b", ".join([f"*{chr(ord(level) - 1)}".encode()] * 9) + b"]"
    hostile = {
        "pytag": _reference_item(f"!!python/object/apply:os.mkdir ['{canary}']".encode()),
        "pyname": _reference_item(b"|\n    x", f"  metadata: !!python/object/new:os.mkdir ['{canary}']\n".encode()),
        "custom": _reference_item(b"!custom |\n    x"),
        "binary": _reference_item(b"!!binary aGVsbG8="),
        "bomb": _reference_item(b"|\n    x", b"  metadata:\n    a: " + bomb + b"\n"),
        "flowdeep": _reference_item(b"|\n    x", b"  metadata: " + b"[" * 10_000 + b"]" * 10_000 + b"\n"),
        "blockdeep": _reference_item(b"|\n    x", b"  metadata:\n    k: " + b"- " * 10_000 + b"x\n"),
        "mapdeep": _reference_item(b"|\n    x", b"  metadata: " + b"{a: " * 10_000 + b"1" + b"}" * 10_000 + b"\n"),
        "utf8": _reference_item(b"|\n    bad \xff\xfe bytes \xc3"),
        "nul": _reference_item(b'"nul \x00 inside"'),
    }
    root = _journal_with(tmp_path, {user: _with_bad(bad) for user, bad in hostile.items()})
    proc, rss = _run_child(["export", "--all", "--format", "jsonl"], root)
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr and not canary.exists()
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_user: dict[str, list[str]] = {}
    for record in records:
        by_user.setdefault(record["user"], []).append(record["content"])
    assert by_user == {user: ["intact before\n", "intact after\n"] for user in hostile}  # every intact message, nothing else
    for user, bad in hostile.items():  # file and line of each bad item (it starts on line 5)
        line = int(proc.stderr.split(f"users/{user}/dialogs/current.yaml:", 1)[1].split(":", 1)[0])
        assert 5 <= line < 5 + bad.count(b"\n"), (user, line)
    assert rss < 1024 * 1024, rss
    for command in (["verify"], ["repair", "--dry-run"], ["repair"], ["verify"]):
        proc, _ = _run_child(command, root)
        assert "Traceback" not in proc.stderr and not canary.exists(), command
        assert proc.returncode in (0, 1), (command, proc.stderr)
    figures.add(
        f"hostile: python and custom tags, a 9^9 alias bomb, nesting 10,000 deep (flow, block, mapping), invalid UTF-8, NUL: 0 code executed, 0 tracebacks, {len(hostile)} files exit 5 naming file and line, peak RSS {rss // 1024} MiB"
    )


def test_a_huge_document(tmp_path: Path, figures: Any) -> None:
    megabytes = count("HOSTILE_MB", 100)
    line = b"    " + b"x" * 95 + b"\n"
    body = line * (megabytes * 1024 * 1024 // len(line))
    root = _journal_with(tmp_path, {"huge": _with_bad(_reference_item(b"|\n" + body.rstrip(b"\n")))})
    proc, rss = _run_child(["show", "huge", "--format", "jsonl"], root)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    contents = [json.loads(x)["content"] for x in proc.stdout.splitlines()]
    if len(body) > MAX_ITEM_BYTES:
        assert proc.returncode == 5 and "users/huge/dialogs/current.yaml:5: too large" in proc.stderr, proc.stderr
        assert contents == ["intact before\n", "intact after\n"]
    else:  # a smaller run (DIALOGCTL_HOSTILE_MB) reads it as the message it is
        assert proc.returncode == 0 and len(contents) == 3 and len(contents[1]) == len(body) // 100 * 96
    assert rss < 1024 * 1024, rss  # KiB
    figures.add(f"hostile: a {megabytes} MB document: exit 5 naming file and line, the messages around it read, peak RSS {rss // 1024} MiB")


COMMANDS = ["append", "show", "archive", "restore", "list", "export", "stats", "locks", "cleanup", "config", "verify", "repair", "doctor"]
VOCABULARY = [
    *COMMANDS,
    "alice", "bob", "ghost", "../etc", "a/b", "", " ", "-", "--", "\x00", "\x1b[2J", "ｕｓｅｒ", "x" * 300, "é", "\u202e", "%s", "{}", "[bold]x[/]",
    "--format", "json", "jsonl", "csv", "tsv", "table", "yaml", "--role", "assistant", "robot", "--meta", "k=v", "k", "=v", "a.b=1", "--meta=a=[1",
    "--timestamp", "2024-01-15", "5m", "yesterday", "30", "never", "--conversation", "c1", "--archive", "a1", "--id", "first", "--tail", "-1", "0",
    "3", "--since", "--until", "--all", "--include-archives", "--jsonl", "--dry-run", "-n", "--yes", "-y", "--max-age", "30d", "--max-inactive",
    "--retention-days", "--held", "--set", "archiveThreshold=2", "lockTimeoutMs=50", "nosuch=1", "--color", "always", "-q", "-v", "--help",
    "--version", "--layout", "flat", "sharded", "--shard-levels", "9", "--shard-size",
]  # fmt: skip


def test_fuzzed_argument_lists(tmp_path: Path, cli: Cli, figures: Any) -> None:
    lists = count("FUZZ_ARGS", 2000)
    root = tmp_path / "journal"
    assert cli("--root", str(root), "append", "alice", "hi").exit_code == 0
    assert cli("--root", str(root), "archive", "alice", "--id", "a1").exit_code == 0
    codes: dict[int, int] = {}

    words = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=12))

    @settings(max_examples=lists, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.lists(words, max_size=7), st.tuples(st.sampled_from(COMMANDS), st.lists(words, max_size=6)).map(lambda t: [t[0], *t[1]])))
    def check(args: list[str]) -> None:
        assume(not any(a == "-r" or "root" in a for a in args))  # never let the fuzz aim at a real folder
        result = cli("--root", str(root), *args)
        assert result.exit_code != 70, (args, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, args
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1

    check()
    figures.add(
        f"hostile: {sum(codes.values())} fuzzed argument lists through the CLI: exit codes {dict(sorted(codes.items()))}, 0 tracebacks, 0 internal errors"
    )
    assert os.path.isdir(root)
