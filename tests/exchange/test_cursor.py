"""message_id and ``--cursor-file``: every message shipped once over many runs, whatever happens to the journal between them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl.exchange.cursor import message_id, message_ids
from dialogctl.journal.core import Journal
from dialogctl.models import Message

from ..conftest import Cli, run_exe


def _at(days: float) -> str:
    """A timestamp ``days`` ago (old enough for a cursor run to ship it)."""
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _append(cli: Cli, user: str, text: str, when: str, role: str = "user") -> None:
    result = cli("append", user, text, "--timestamp", when, "--role", role)
    assert result.exit_code == 0, result.stderr


def _run(cli: Cli, cursor: Path, expect: int = 0) -> list[dict]:
    return cli.jsonl("export", "--all", "--format", "jsonl", "--cursor-file", str(cursor), expect=expect)


def _ids(cli: Cli, user: str) -> list[str]:
    return [r["message_id"] for r in cli.jsonl("export", user, "--include-archives", "--format", "jsonl")]


def test_server_written_files_get_ids_too(fixture_tree, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    tree = fixture_tree("v1-flatish")
    records = cli.jsonl("--root", str(tree), "export", "--all", "--format", "jsonl", expect=cli("--root", str(tree), "export", "--all").exit_code)
    assert records and all(len(r["message_id"]) == 32 for r in records)
    assert len({r["message_id"] for r in records}) == len(records)


def test_identical_messages_get_distinct_ids_and_the_id_is_the_documented_hash() -> None:
    msg = Message("user", "same", "2024-01-15T10:30:00.000Z")
    ids = message_ids("alice", [msg, Message("assistant", "x", msg.timestamp), msg])
    assert len(set(ids)) == 3
    assert ids[2] == message_id("alice", msg, 1) != message_id("bob", msg, 1)
    import hashlib

    assert ids[0] == hashlib.sha256(json.dumps(["alice", msg.timestamp, "user", "same", 0]).encode()).hexdigest()[:32]


def test_message_id_survives_archive_restore_and_reimport(root: Path, cli: Cli, tmp_path: Path) -> None:
    for n in range(3):
        _append(cli, "alice", "twice" if n != 1 else "once", "2024-01-15T10:30:00Z")  # two identical messages
    before = _ids(cli, "alice")
    assert len(set(before)) == 3
    archive_id = cli("archive", "alice").stdout.strip()
    assert _ids(cli, "alice") == before
    _append(cli, "alice", "later", "2024-01-16T00:00:00Z")
    assert cli("restore", "alice", archive_id).exit_code == 0  # "later" is archived first
    after = _ids(cli, "alice")
    assert set(before) < set(after) and len(after) == 4
    current = [r["message_id"] for r in cli.jsonl("export", "alice", "--format", "jsonl")]
    assert current == before  # the restored conversation, identical messages included
    for fmt in ("jsonl", "csv", "json", "sqlite"):
        out = tmp_path / f"alice.{fmt}"
        assert cli("export", "alice", "--format", fmt, "-o", str(out)).exit_code == 0
        assert cli("rm", "alice", "--all-data", "--yes").exit_code == 0
        assert cli("import", "alice", str(out)).exit_code == 0, fmt
        assert _ids(cli, "alice") == current, fmt


def test_every_message_is_shipped_once_across_appends_archives_restores_cleanup_repair_and_rm(root: Path, cli: Cli) -> None:
    cursor = root.parent / "night.cursor"
    shipped: list[str] = []

    def run(*texts: str, expect: int = 0) -> None:
        records = _run(cli, cursor, expect)
        assert sorted(r["content"] for r in records) == sorted(texts)
        shipped.extend(r["message_id"] for r in records)

    _append(cli, "alice", "a1", _at(40))
    _append(cli, "alice", "a2", _at(30), "assistant")
    _append(cli, "bob", "b1", _at(30))
    run("a1", "a2", "b1")
    run()  # nothing new: nothing again
    _append(cli, "alice", "a3", _at(20))
    archive_id = cli("archive", "alice").stdout.strip()
    _append(cli, "alice", "a4", _at(10))
    dup = _at(9)
    _append(cli, "bob", "same", dup)
    _append(cli, "bob", "same", dup)  # identical: both go, once each
    run("a3", "a4", "same", "same")
    assert cli("restore", "alice", archive_id).exit_code == 0
    _append(cli, "alice", "a5", _at(8))
    run("a5")
    assert cli("cleanup", "--max-age", "25d", "--yes").exit_code == 0  # trims alice's oldest messages, renumbering the rest
    _append(cli, "alice", "a6", _at(7))
    run("a6")
    # A torn record after carol's messages (an interrupted write): repair rewrites the file.
    _append(cli, "carol", "c0", _at(6.5))
    _append(cli, "carol", "c1", _at(6))
    journal = Journal.open(str(root))
    path = root / journal.conversation_files("carol")[0].rel_path
    with open(path, "a", encoding="utf-8") as f:
        f.write("---\nrole: user\ncontent: |2-\n  half a rec")
    run("c0", "c1", expect=5)  # damage: said, exit 5, every intact message shipped
    before_repair = path.read_bytes()
    assert cli("repair").exit_code == 0 and path.read_bytes() != before_repair
    _append(cli, "carol", "c2", _at(4))
    run("c2")
    assert cli("rm", "bob", "--all-data", "--yes").exit_code == 0
    _append(cli, "alice", "a7", _at(3))
    run("a7")
    assert len(shipped) == len(set(shipped)) == 13  # no duplicate
    everything = {r["message_id"] for r in cli.jsonl("export", "--all", "--format", "jsonl")}
    assert everything <= set(shipped)  # no gap: whatever is still there went out


def test_cursor_remembers_only_what_it_shipped_per_user_and_filter(root: Path, cli: Cli) -> None:
    cursor = root.parent / "c.json"
    _append(cli, "alice", "a1", _at(3))
    _append(cli, "bob", "b1", _at(3))
    assert [r["content"] for r in cli.jsonl("export", "alice", "--cursor-file", str(cursor))] == ["a1"]
    assert [r["content"] for r in cli.jsonl("export", "--all", "--cursor-file", str(cursor))] == ["b1"]
    _append(cli, "alice", "now", datetime.now(UTC).isoformat())  # not yet settled: the next run ships it
    assert cli.jsonl("export", "--all", "--cursor-file", str(cursor)) == []
    time.sleep(2.1)
    assert [r["content"] for r in cli.jsonl("export", "--all", "--cursor-file", str(cursor))] == ["now"]
    state = json.loads(cursor.read_text())
    assert state["version"] == 1 and set(state["users"]) == {"alice", "bob"}
    assert os.stat(cursor).st_mode & 0o777 == 0o600


def test_every_format_takes_a_cursor(root: Path, cli: Cli, tmp_path: Path) -> None:
    _append(cli, "alice", "a1", _at(3))
    _append(cli, "alice", "a2", _at(2), "assistant")
    for fmt in ("json", "jsonl", "csv", "markdown", "openai", "sharegpt", "sqlite"):
        cursor, out = tmp_path / f"{fmt}.cursor", tmp_path / f"out.{fmt}"
        assert cli("export", "--all", "-f", fmt, "--cursor-file", str(cursor), "-o", str(out)).exit_code == 0, fmt
        assert "a2" in out.read_bytes().decode("utf-8", "replace") or fmt == "sqlite"
        again = cli("export", "--all", "-f", fmt, "--cursor-file", str(cursor), "-o", str(out), "--force")
        assert again.exit_code == 0 and "a2" not in out.read_bytes().decode("utf-8", "replace"), fmt


def test_a_damaged_or_foreign_cursor_is_exit_2_and_left_alone(root: Path, cli: Cli, tmp_path: Path) -> None:
    _append(cli, "alice", "a1", _at(3))
    good = tmp_path / "good.cursor"
    assert cli("export", "--all", "--cursor-file", str(good)).exit_code == 0
    state = json.loads(good.read_text())
    cases = {
        "bad.json": "{not json",
        "version.json": json.dumps({**state, "version": 99}),
        "foreign.json": json.dumps({**state, "journal": "/somewhere/else"}),
        "shape.json": json.dumps({**state, "users": {"alice": {"through": "not a time"}}}),
        "list.json": "[]",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = cli("export", "--all", "--cursor-file", str(path))
        assert result.exit_code == 2 and result.stdout == "", name
        assert f"cursor file {path}" in result.stderr, name
        assert path.read_text() == text  # untouched
    assert cli("follow", "--cursor-file", str(tmp_path / "bad.json")).exit_code == 2


def test_a_failed_or_killed_run_leaves_the_old_cursor_and_the_next_run_resends(root: Path, cli: Cli, tmp_path: Path) -> None:
    cursor = tmp_path / "c.json"
    _append(cli, "alice", "first", _at(5))
    assert len(_run(cli, cursor)) == 1
    kept = cursor.read_bytes()
    lines = "".join(json.dumps({"user": "alice", "role": "user", "content": f"m{n} " + "x" * 200, "timestamp": _at(4)}) + "\n" for n in range(30000))
    assert cli("append", "--jsonl", input=lines).exit_code == 0
    # stdout that cannot be written: exit non-zero, cursor as it was.
    with open("/dev/full", "w") as full:
        exe = shutil.which("dialogctl")
        cmd = [exe] if exe else [sys.executable, "-m", "dialogctl"]
        done = subprocess.run([*cmd, "export", "--all", "--cursor-file", str(cursor)], stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode != 0 and cursor.read_bytes() == kept
    # SIGKILL while the -o file is being written.
    out = tmp_path / "night.jsonl"
    proc = subprocess.Popen([*cmd, "export", "--all", "--cursor-file", str(cursor), "-o", str(out)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".night.jsonl") for p in tmp_path.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed halfway: the temp file was there, the export not done
    assert cursor.read_bytes() == kept and not out.exists()
    result = run_exe("export", "--all", "--cursor-file", str(cursor), "-o", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert sum(1 for _ in out.open()) == 30000  # everything the killed run did not finish
    assert cursor.read_bytes() != kept and _run(cli, cursor) == []


def test_follow_with_a_cursor_file_continues_after_a_restart(root: Path, cli: Cli, tmp_path: Path) -> None:
    cursor = tmp_path / "follow.cursor"
    _append(cli, "bob", "before", _at(1))  # follow starts from now: not printed
    exe = shutil.which("dialogctl")
    cmd = [exe] if exe else [sys.executable, "-m", "dialogctl"]
    args = [*cmd, "follow", "--format", "jsonl", "--interval", "0.05", "--cursor-file", str(cursor)]
    proc = subprocess.Popen([*args, "--count", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and "following" in proc.stderr.readline()
    for n in range(1, 5):
        _append(cli, "alice", f"m{n}", _at(0.5 - n / 100))
    out, _ = proc.communicate(timeout=60)
    first = [json.loads(line) for line in out.splitlines()]
    assert [r["content"] for r in first] == ["m1", "m2"] and proc.returncode == 0
    again = subprocess.run([*args, "--count", "2"], capture_output=True, text=True, timeout=60)
    second = [json.loads(line) for line in again.stdout.splitlines()]
    assert [r["content"] for r in second] == ["m3", "m4"], again.stderr
    ids = {r["message_id"]: r["content"] for r in cli.jsonl("export", "alice", "--format", "jsonl")}
    assert [ids[r["message_id"]] for r in first + second] == ["m1", "m2", "m3", "m4"]  # the same ids as export's
    assert [r["content"] for r in _run(cli, cursor)] == ["before"]  # the same cursor file: export sends only what follow did not


def test_follow_ids_count_identical_messages_as_export_does() -> None:
    from dialogctl.exchange.cursor import IdTracker
    from dialogctl.models import ConversationRef

    same = Message("user", "same", "2024-01-15T10:30:00.000Z")
    whole = [same, Message("assistant", "x", same.timestamp), same, same]
    ref = ConversationRef("alice", "current")
    reads: list[ConversationRef] = []
    tracker = IdTracker(lambda r: reads.append(r) or whole)
    expected = message_ids("alice", whole)
    assert [tracker.id_of(ref, n, whole[n]) for n in (2, 3)] == expected[2:]  # started mid-file: the earlier ones read once
    assert reads == [ref]


def test_a_cursor_in_a_missing_folder_is_refused_before_anything_is_exported(tmp_path: Path) -> None:
    import pytest

    from dialogctl.errors import InvalidInput
    from dialogctl.exchange.cursor import Cursor

    with pytest.raises(InvalidInput, match="its folder .* does not exist"):
        Cursor.load(str(tmp_path / "nodir" / "c.cursor"), str(tmp_path))
    assert Cursor.load(str(tmp_path / "c.cursor"), str(tmp_path)).users == {}  # a missing file in a folder that exists: a new cursor


@settings(max_examples=500, deadline=None)
@given(st.text(), st.text(), st.text(), st.text(), st.integers(0, 10**9))
def test_the_id_is_the_documented_hash_for_any_text(user: str, timestamp: str, role: str, content: str, occurrence: int) -> None:
    """Any text, lone surrogates and escapes included: the id is the hash of json.dumps(...) as documented."""
    key = json.dumps([user, timestamp, role, content, occurrence], ensure_ascii=False)
    assert message_id(user, Message(role, content, timestamp), occurrence) == hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
