"""Every command through CliRunner: exit codes, stdout and stderr apart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dialogctl.exchange.cursor import message_id
from dialogctl.models import Message

from ..conftest import Cli, copy_tree


def test_append_then_show(root: Path, cli: Cli) -> None:
    result = cli("append", "alice", "hello there")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    result = cli("append", "alice", "--role", "assistant", "--meta", "model=gpt-4", "--meta", "tokens.total=12", input="general kenobi\n")
    assert result.exit_code == 0, result.stderr
    shown = cli.json("show", "alice", "--format", "json")
    assert shown["messageCount"] == 2
    assert [m["content"] for m in shown["messages"]] == ["hello there", "general kenobi\n"]
    assert shown["messages"][1]["metadata"] == {"model": "gpt-4", "tokens": {"total": 12}}
    text = cli("show", "alice")
    assert text.exit_code == 0
    assert "hello there" in text.stdout and "assistant" in text.stdout and "gpt-4 · 12 tokens" in text.stdout


def test_append_reads_stdin_exactly(root: Path, cli: Cli) -> None:
    content = "  leading\n---\n# not a comment\n\n\n"
    assert cli("append", "bob", "-", input=content).exit_code == 0
    assert cli.jsonl("show", "bob", "--format", "jsonl")[0]["content"] == content
    bom = cli("append", "bob", input=b"\xef\xbb\xbfwith bom")
    assert bom.exit_code == 0
    assert cli.jsonl("show", "bob", "--format", "jsonl")[1]["content"] == "with bom"
    bad = cli("append", "bob", input=b"ok \xff\xfe bad")
    assert bad.exit_code == 2
    assert "byte offset 3" in bad.stderr


def test_append_jsonl_batches_per_user(root: Path, cli: Cli) -> None:
    lines = [
        {"user": "u1", "role": "user", "content": "a"},
        {"user": "u2", "role": "user", "content": "b", "timestamp": "2024-01-15T10:30:00.000Z"},
        {"user": "u1", "role": "assistant", "content": "c", "metadata": {"tokens": 3}},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    result = cli("append", "--jsonl", "--format", "json", input=text)
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["user"], r["appended"]) for r in records] == [("u1", 2), ("u2", 1)]
    assert [m["content"] for m in cli.jsonl("show", "u1", "--format", "jsonl")] == ["a", "c"]


def test_append_jsonl_validates_everything_first(root: Path, cli: Cli) -> None:
    text = '{"user": "u1", "role": "user", "content": "a"}\n{"user": "u2", "role": "robot", "content": "b"}\n'
    result = cli("append", "--jsonl", input=text)
    assert result.exit_code == 2
    assert "line 2" in result.stderr and "robot" in result.stderr
    assert not (root / "users").exists()  # nothing written


@pytest.mark.parametrize(
    "args",
    [
        ["append", "alice", "x", "--role", "robot"],
        ["append", "alice", "x", "--timestamp", "12"],
        ["append", "--jsonl", "alice", "text"],
        ["append", "../etc", "x"],
        ["append", "a/b", "x"],
        ["append", "", "x"],
        ["append", "ｕｓｅｒ", "x"],
        ["append", "bad\u202eid", "x"],
        ["show", "alice", "--conversation", "c1", "--archive", "a1"],
        ["export"],
        ["export", "alice", "--all"],
        ["cleanup", "--max-age", "30"],
        ["cleanup", "--dry-run", "--yes"],
        ["--color", "sometimes", "list"],
        ["--set", "nosuch=1", "list"],
        ["--set", "archiveThreshold=many", "list"],
    ],
)
def test_usage_errors_exit_2(root: Path, cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_not_found_exit_3(root: Path, cli: Cli) -> None:
    cli("append", "alice", "hi")
    for args in (
        ["show", "nobody"],
        ["show", "alice", "--archive", "nope"],
        ["restore", "alice", "nope"],
        ["list", "nobody"],
        ["export", "nobody"],
        ["archive", "nobody"],
    ):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.stderr)
        assert result.stderr.startswith("dialogctl: ")
        assert len(result.stderr.strip().splitlines()) == 1


def test_archive_and_restore(root: Path, cli: Cli) -> None:
    cli("append", "alice", "first")
    archived = cli("archive", "alice")
    assert archived.exit_code == 0
    archive_id = archived.stdout.strip()
    assert len(archive_id) == len("2024-01-15-10-30-00")
    assert cli.json("show", "alice", "--format", "json")["messageCount"] == 0
    assert cli("archive", "alice").stdout == ""  # nothing to archive: no id, exit 0
    cli("append", "alice", "second")
    restored = cli.json("restore", "alice", archive_id, "--format", "json")
    assert restored[0]["archivedFirst"]  # "second" was archived, not destroyed
    assert [m["content"] for m in cli.jsonl("show", "alice", "--format", "jsonl")] == ["first"]
    other = cli.jsonl("show", "alice", "--archive", restored[0]["archivedFirst"], "--format", "jsonl")
    assert [m["content"] for m in other] == ["second"]
    conversations = cli.json("list", "alice", "--format", "json")
    assert [(c["kind"], c["messages"]) for c in conversations] == [("current", 1), ("archive", 1)]


def test_archive_with_explicit_id(root: Path, cli: Cli) -> None:
    cli("append", "alice", "x")
    assert cli("archive", "alice", "--id", "before-upgrade").stdout == "before-upgrade\n"
    cli("append", "alice", "y")
    again = cli("archive", "alice", "--id", "before-upgrade")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_automatic_archive_at_threshold(root: Path, cli: Cli) -> None:
    lines = "".join(json.dumps({"role": "user", "content": f"m{i}"}) + "\n" for i in range(7))
    result = cli("--set", "archiveThreshold=3", "append", "alice", "--jsonl", "--format", "json", input=lines)
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert record["appended"] == 7 and record["messages"] == 1 and len(record["archived"]) == 2
    conversations = cli.json("list", "alice", "--format", "json")
    assert sorted(c["messages"] for c in conversations) == [1, 3, 3]
    everything = cli.jsonl("export", "alice", "--include-archives")
    assert sorted(r["content"] for r in everything) == [f"m{i}" for i in range(7)]


def test_list_stats_locks_config(root: Path, cli: Cli) -> None:
    cli("append", "alice", "a", "--timestamp", "2024-01-15T10:30:00Z")
    cli("append", "bob", "b", "--timestamp", "2024-02-01T00:00:00Z")
    cli("archive", "bob")
    users = cli.json("list", "--format", "json")
    assert [(u["user"], u["messages"], u["archives"]) for u in users] == [("alice", 1, 0), ("bob", 1, 1)]
    stats = cli.json("stats", "--format", "json")
    assert stats["totalUsers"] == 2
    assert stats["totalMessages"] == 2
    assert stats["totalArchivedConversations"] == 1
    assert stats["averageMessagesPerUser"] == 1
    assert stats["oldestMessage"] == "2024-01-15T10:30:00.000Z"
    assert stats["newestMessage"] == "2024-02-01T00:00:00.000Z"
    assert stats["storageUsage"] > 0
    locks = cli.json("locks", "--format", "json")
    assert {(lock["user"], lock["held"]) for lock in locks} == {("alice", False), ("bob", False)}
    config = {r["setting"]: r for r in cli.json("config", "--format", "json")}
    assert config["root"]["source"] == "env DIALOGUE_JOURNAL_ROOT"
    assert config["archiveThreshold"]["value"] == 100 and config["archiveThreshold"]["source"] == "default"


def test_empty_results(root: Path, cli: Cli) -> None:
    assert cli("list", "--format", "json").stdout == "[]\n"
    assert cli("list", "--format", "jsonl").stdout == ""
    assert cli("list", "--format", "csv").stdout == "user,conversations,archives,messages,bytes,lastActivity\n"
    assert cli("export", "--all", "--format", "json").stdout == "[]\n"
    assert cli("export", "--all").stdout == ""
    assert cli("stats", "--format", "json").exit_code == 0


def test_export_json_shapes(root: Path, cli: Cli) -> None:
    cli("append", "alice", "hi", "--timestamp", "2024-01-15T10:30:00Z")
    [single] = cli.json("export", "alice", "--format", "json")  # an array also for one conversation
    assert set(single) == {"userId", "conversation", "archived", "timestamp", "messageCount", "messages"}
    assert single["userId"] == "alice" and single["messageCount"] == 1
    assert single["messages"] == [
        {
            "role": "user",
            "content": "hi",
            "timestamp": "2024-01-15T10:30:00.000Z",
            "message_id": message_id("alice", Message("user", "hi", "2024-01-15T10:30:00.000Z"), 0),
        }
    ]
    many = cli.json("export", "--all", "--format", "json")
    assert many[0]["conversation"] == "current" and many[0]["archived"] is False
    line = cli.jsonl("export", "--all")[0]
    assert set(line) == {"user", "conversation", "archived", "index", "role", "content", "timestamp", "metadata", "message_id"}


def test_cleanup_dry_run_then_apply(root: Path, cli: Cli) -> None:
    cli("append", "old", "ancient", "--timestamp", "2020-01-01T00:00:00Z")
    cli("append", "mixed", "ancient", "--timestamp", "2020-01-01T00:00:00Z")
    cli("append", "mixed", "fresh", "--timestamp", "now")
    cli("append", "archiver", "a", "--timestamp", "2020-06-01T00:00:00Z")
    cli("archive", "archiver")
    cli("append", "archiver", "b")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    plan = cli.json("cleanup", "--max-inactive", "365d", "--max-age", "400d", "--dry-run", "--format", "json")
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert before == after  # a dry run changes nothing, not even a lock file
    assert plan["dryRun"] is True
    assert plan["usersRemoved"] == 1
    assert plan["archivesRemoved"] == 1
    assert {(a["action"], a["user"]) for a in plan["actions"]} == {("remove-user", "old"), ("trim", "mixed"), ("remove-archive", "archiver")}
    refused = cli("cleanup", "--max-inactive", "365d")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    done = cli.json("cleanup", "--max-inactive", "365d", "--max-age", "400d", "--yes", "--format", "json")
    assert done["usersRemoved"] == 1 and done["messagesRemoved"] == 3 and done["bytesFreed"] > 0
    assert [u["user"] for u in cli.json("list", "--format", "json")] == ["archiver", "mixed"]
    assert [m["content"] for m in cli.jsonl("show", "mixed", "--format", "jsonl")] == ["fresh"]
    intent, outcome = [json.loads(line) for line in (root / "system" / "cleanup.log").read_text().splitlines()]
    assert intent["phase"] == "intent" and intent["planned"]["usersRemoved"] == 1 and intent["run"] == outcome["run"]
    assert {(s["action"], s["user"]) for s in intent["steps"]} == {("remove-user", "old"), ("trim", "mixed"), ("remove-archive", "archiver")}
    assert outcome["phase"] == "done" and outcome["usersRemoved"] == 1
    assert cli.json("stats", "--format", "json")["lastCleanup"] == outcome["time"]


def test_cleanup_never_rewrites_damaged_files(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-broken", tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*.yaml")}
    result = cli("--root", str(root), "cleanup", "--max-age", "1d", "--yes")
    assert "skipped" in result.stderr
    assert {p: p.read_bytes() for p in root.rglob("*.yaml")} == before


def test_version_and_help(cli: Cli) -> None:
    from dialogctl import __version__

    assert cli("--version").stdout == f"dialogctl {__version__}\n"
    for command in ("append", "show", "archive", "restore", "list", "export", "stats", "locks", "cleanup", "config"):
        result = cli(command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.stdout, command


def test_damaged_show_exits_5_after_printing_intact_messages(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-broken", tmp_path)
    result = cli("--root", str(root), "show", "carol-3", "--format", "jsonl")
    assert result.exit_code == 5
    assert len(result.stdout.splitlines()) == 4
    assert "torn record" in result.stderr


def test_lock_busy_exits_4_naming_the_holder(root: Path, cli: Cli) -> None:
    from dialogctl import Journal
    from dialogctl.disk.locking import UserLock, make_owner

    cli("append", "alice", "hi")
    journal = Journal.open()
    with journal.dialogs_folder("alice") as dialogs, UserLock(dialogs, "alice", make_owner("srv-9", "holder-test"), 1.0):
        result = cli("--set", "lockTimeoutMs=200", "append", "alice", "blocked")
        locks = cli.json("locks", "--held", "--format", "json")
    assert result.exit_code == 4
    assert "srv-9" in result.stderr and "holder-test" in result.stderr and "pid" in result.stderr
    assert locks[0]["user"] == "alice" and locks[0]["serverId"] == "srv-9"


def test_a_filesystem_without_locks_is_a_storage_error_naming_the_lock_file(root: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """flock failing for another reason than a holder (ENOLCK on a mount without locks) is exit 6 with the system's words, never a wait."""
    import errno
    import fcntl

    cli("append", "alice", "hi")

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    with monkeypatch.context() as patched:
        patched.setattr(fcntl, "flock", no_locks)
        result = cli("append", "alice", "blocked")
    assert result.exit_code == 6
    assert "cannot lock " in result.stderr and ".lock: No locks available" in result.stderr, result.stderr
    assert [m["content"] for m in cli.jsonl("show", "alice", "--format", "jsonl")] == ["hi"]


def test_append_jsonl_keeps_unicode_line_separators(root: Path, cli: Cli) -> None:
    content = "one\u2028two\x85three\u2029four\x1c\x1d\x1e end"
    line = json.dumps({"role": "user", "content": content}, ensure_ascii=False)
    result = cli("append", "alice", "--jsonl", input=line + "\n")
    assert result.exit_code == 0, result.stderr
    assert [m["content"] for m in cli.jsonl("show", "alice", "--format", "jsonl")] == [content]
    exported = cli("export", "alice").stdout
    assert exported.count("\n") == 1  # one message, one line, however many separators it holds


def test_append_jsonl_spools_instead_of_holding_the_input(root: Path, cli: Cli) -> None:
    """--jsonl input is validated line by line into an unlinked temporary file, then appended group by group."""
    from dialogctl.cli.inputs import SpooledMessages

    from ..samples import hostile_messages

    spool = SpooledMessages()
    expected: dict[tuple[str, str | None], list[Any]] = {}
    lines: dict[tuple[str, str | None], list[int]] = {}
    for i, msg in enumerate(hostile_messages() * 2):
        key = (f"u{i % 3}", None if i % 2 else "s1")
        spool.add(key, msg, i + 1)
        expected.setdefault(key, []).append(msg)
        lines.setdefault(key, []).append(i + 1)
    assert os.fstat(spool.spool.file.fileno()).st_nlink == 0  # no name: nothing left behind
    batches = spool.batches()
    assert [((b.user, b.conversation), b.load()) for b in batches] == list(expected.items())
    assert [str(b.lines) for b in batches] == [",".join(map(str, numbers)) for numbers in lines.values()]  # every 6th line: no runs
    spool.close()

    good = json.dumps({"user": "u1", "role": "user", "content": "ok"}).encode()
    bom = cli("append", "--jsonl", input=b"\xef\xbb\xbf" + good + b"\n")
    assert bom.exit_code == 0, bom.stderr
    bad = cli("append", "--jsonl", input=good + b"\n" + good[:10] + b"\xff" + good[10:] + b"\n")
    assert bad.exit_code == 2 and f"byte offset {len(good) + 1 + 10}" in bad.stderr
    assert [m["content"] for m in cli.jsonl("show", "u1", "--format", "jsonl")] == ["ok"]  # the bad batch left nothing
