"""Operator workflows: search, follow, rm, idle archiving, per-user metadata."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import reference_writer as server
from .conftest import Cli, copy_tree, run_exe
from .strategies import contents


def _seed(cli: Cli) -> None:
    cli("append", "alice", "I want a refund for order 42", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "alice", "Sure, refunds take 3 days", "--role", "assistant", "--timestamp", "2024-01-15T10:00:05Z")
    cli("append", "alice", "thanks", "--timestamp", "2024-01-15T10:00:10Z")
    cli("archive", "alice", "--id", "old")
    cli("append", "alice", "Another REFUND please", "--timestamp", "2024-01-16T10:00:00Z")
    cli("append", "bob", 'He said "refund" twice\nrefund', "--timestamp", "2024-01-17T10:00:00Z")


def test_search_basics(root: Path, cli: Cli) -> None:
    _seed(cli)
    hits = cli.jsonl("search", "refund", "--format", "jsonl")
    assert [(h["user"], h["conversation"], h["index"]) for h in hits] == [("alice", "current", 0), ("bob", "current", 0)]
    assert hits[0]["spans"] == [[8, 14]] and hits[0]["match"] is True
    assert hits[1]["spans"] == [[9, 15], [23, 29]]
    archived = cli.jsonl("search", "refund", "--include-archives", "--format", "jsonl")
    assert {(h["conversation"], h["index"]) for h in archived} == {("current", 0), ("old", 0), ("old", 1)}
    assert cli.jsonl("search", "refund", "--case-sensitive", "--format", "jsonl")[0]["user"] == "bob"
    assert [h["index"] for h in cli.jsonl("search", "refund", "alice", "-a", "--role", "assistant", "--format", "jsonl")] == [1]
    assert [h["user"] for h in cli.jsonl("search", "refund", "--since", "2024-01-17", "--format", "jsonl")] == ["bob"]
    regex = cli.jsonl("search", "-E", r"order \d+", "-a", "--format", "jsonl")
    assert [h["content"] for h in regex] == ["I want a refund for order 42"]
    quoted = cli.jsonl("search", 'said "refund"', "--format", "jsonl")
    assert [h["user"] for h in quoted] == ["bob"]


def test_search_context_and_exit_codes(root: Path, cli: Cli) -> None:
    _seed(cli)
    hits = cli.jsonl("search", "refunds take", "-a", "-C", "1", "--format", "jsonl")
    assert [(h["index"], h["match"]) for h in hits] == [(0, False), (1, True), (2, False)]
    none = cli("search", "no such words")
    assert none.exit_code == 1 and none.stdout == "" and none.stderr == ""
    assert cli("search", "no such words", "--format", "json").stdout == "[]\n"
    assert cli("search", "-E", "(unclosed").exit_code == 2
    assert cli("search", "x", "ghost").exit_code == 3
    table = cli("search", "refund")
    assert table.exit_code == 0 and "alice" in table.stdout and "bob" in table.stdout


def test_search_table_escapes_hostile_text(root: Path, cli: Cli) -> None:
    cli("append", "eve", "evil \x1b]0;title\x07 [red]markup[/red] refund\u202e")
    out = cli("search", "refund").stdout
    assert "\x1b" not in out and "\u202e" not in out and "[red]markup[/red]" in out


def test_search_skips_files_the_catalog_rules_out(root: Path, cli: Cli) -> None:
    _seed(cli)
    assert cli("stats", "--format", "json").exit_code == 0  # saves the catalog
    archive = root / "users" / "al" / "ic" / "e" / "dialogs" / "archived" / "old.yaml"
    before = archive.stat()
    expected = cli.jsonl("search", "refund", "-a", "--since", "2024-01-16", "--format", "jsonl")
    assert [(h["user"], h["conversation"]) for h in expected] == [("alice", "current"), ("bob", "current")]

    # Same size, inode and mtime, other bytes: only a search that trusts the catalog's time span skips it.
    data = archive.read_bytes()
    with open(archive, "r+b") as fh:
        fh.write(data.replace(b"refund", b"REFUND").replace(b"2024-01-15", b"2024-01-19"))
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cli.jsonl("search", "refund", "-a", "--since", "2024-01-16", "--format", "jsonl") == expected
    assert cli.jsonl("search", "refund", "-a", "--role", "system", "--format", "jsonl", expect=1) == []
    # Without a filter the file is read, so the change shows (its records no longer match their checksums).
    read = cli("search", "refund", "-a", "--format", "jsonl")
    assert read.exit_code == 5 and "old.yaml:2: checksum mismatch" in read.stderr
    assert ("alice", "old") in {(h["user"], h["conversation"]) for h in map(json.loads, read.stdout.splitlines())}
    # A file that changed since the catalog was saved is read, not trusted.
    cli("append", "bob", "refund again", "--timestamp", "2024-01-18T10:00:00Z")
    assert [h["content"] for h in cli.jsonl("search", "again", "--since", "2024-01-18", "--format", "jsonl")] == ["refund again"]


@settings(max_examples=60, deadline=None)
@given(content=contents(), needle=st.sampled_from(["a", "---", "# x", "é", "  ", "\\", '"', "fox", "\t", "日本"]))
def test_raw_prefilter_never_hides_a_match(tmp_path_factory, content: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    from dialogctl import Journal
    from dialogctl.models import Message
    from dialogctl.views.search import matcher, search

    root = tmp_path_factory.mktemp("search")
    journal = Journal.open(str(root))
    journal.append("u1", [Message("user", content + needle + content, "2024-01-15T10:00:00.000Z")])
    m = matcher(needle)
    found = [hit for group in search(journal, m) for hit in group if hit.matched]
    assert len(found) == 1
    unfiltered = [hit for group in search(journal, m._replace(raw_check=False)) for hit in group if hit.matched]
    assert found == unfiltered


def test_rm_deletes_for_real_and_audits(root: Path, cli: Cli) -> None:
    _seed(cli)
    user_dir = root / "users" / "al" / "ic" / "e"
    (user_dir / "dialogs" / ".current.yaml.tmp-1-abcd").write_text("leftover")
    quarantine = root / "system" / "quarantine" / "2024-01-01-00-00-00" / "users" / "al" / "ic" / "e" / "dialogs"
    quarantine.mkdir(parents=True)
    (quarantine / "current.yaml").write_text("secret copy")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    plan = cli.json("rm", "alice", "--all-data", "--dry-run", "--format", "json")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert plan["messages"] == 4 and any("quarantine" in f for f in plan["files"])
    refused = cli("rm", "alice", "--all-data")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    done = cli.json("rm", "alice", "--all-data", "--yes", "--format", "json")
    assert done["messages"] == 4
    assert not user_dir.exists() and not (root / "users" / "al").exists()
    assert not (root / "system" / "quarantine" / "2024-01-01-00-00-00").exists()
    assert cli("show", "alice").exit_code == 3
    audit = [json.loads(line) for line in (root / "system" / "audit.log").read_text().splitlines()]
    assert audit[-1]["user"] == "alice" and audit[-1]["what"] == "all-data" and audit[-1]["messages"] == 4
    assert "refund" not in (root / "system" / "audit.log").read_text()
    assert cli("show", "bob").exit_code == 0


def test_rm_one_archive_or_conversation(root: Path, cli: Cli) -> None:
    _seed(cli)
    assert cli("rm", "alice", "--archive", "old", "--yes").exit_code == 0
    assert [c["conversation"] for c in cli.json("list", "alice", "--format", "json")] == ["current"]
    assert cli("rm", "alice", "--conversation", "current", "--yes").exit_code == 0
    assert cli.json("show", "alice", "--format", "json")["messageCount"] == 0
    meta = json.loads((root / "users" / "al" / "ic" / "e" / "metadata.yaml").read_text())
    assert meta["totalMessages"] == 0
    assert cli("rm", "alice", "--archive", "nope", "--yes").exit_code == 3
    assert cli("rm", "alice", "--yes").exit_code == 2


def test_metadata_is_kept_incrementally(root: Path, cli: Cli) -> None:
    cli("append", "carol", "hi", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "carol", "hello", "--role", "assistant", "--meta", "tokens.total=7", "--timestamp", "2024-01-15T10:00:02Z")
    cli("archive", "carol")
    cli("append", "carol", "again", "--timestamp", "2024-01-15T11:00:00Z")
    cli("append", "carol", "ok", "--role", "assistant", "--meta", "tokens=5", "--timestamp", "2024-01-15T11:00:04Z")
    path = root / "users" / "ca" / "ro" / "l" / "metadata.yaml"
    meta = json.loads(path.read_text())
    assert meta["userId"] == "carol" and meta["totalMessages"] == 4
    assert meta["createdAt"] == "2024-01-15T10:00:00.000Z" and meta["lastActivity"] == "2024-01-15T11:00:04.000Z"
    assert meta["statistics"] == {"userMessages": 2, "assistantMessages": 2, "averageResponseTime": 3000, "totalTokens": 12}
    # A server appends behind dialogctl's back: the next append notices and recomputes.
    current = root / "users" / "ca" / "ro" / "l" / "dialogs" / "current.yaml"
    server.append(current, [server.message("user", "from a server", "2024-01-15T12:00:00.000Z")])
    cli("append", "carol", "and more", "--timestamp", "2024-01-15T12:00:01Z")
    assert json.loads(path.read_text())["totalMessages"] == 6
    # Missing or garbage metadata is recomputed, never fatal.
    path.write_text("{{{ not yaml")
    assert cli("append", "carol", "x").exit_code == 0
    assert json.loads(path.read_text())["totalMessages"] == 7
    path.unlink()
    assert cli("append", "carol", "y").exit_code == 0
    assert json.loads(path.read_text())["totalMessages"] == 8


def test_metadata_keeps_keys_it_does_not_own(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    meta_path = root / "users" / "us" / "er" / "-1001" / "metadata.yaml"
    meta_path.write_text("userId: user-1001\npreferences:\n  language: de\ntotalMessages: 3\n")
    assert cli("--root", str(root), "append", "user-1001", "hi").exit_code == 0
    meta = json.loads(meta_path.read_text())
    assert meta["preferences"] == {"language": "de"}
    expected = len(cli.jsonl("--root", str(root), "export", "user-1001", "--include-archives"))
    assert meta["totalMessages"] == expected


def test_idle_archiving_core(root: Path, cli: Cli) -> None:
    from datetime import timedelta

    from dialogctl import Journal
    from dialogctl.maintenance.idle import archive_idle, plan_idle

    cli("append", "sleepy", "zzz", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "busy", "now")
    journal = Journal.open()
    plan = plan_idle(journal, timedelta(minutes=5))
    assert [item.ref.user for item in plan] == ["sleepy"]
    cli("append", "sleepy", "awake again")  # lands between plan and archive
    outcomes = archive_idle(journal, plan, timedelta(minutes=5))
    assert [(o.ref.user, o.archive_id, o.note) for o in outcomes] == [("sleepy", None, "active again; kept")]
    cli("append", "quiet", "old", "--timestamp", "2024-01-15T10:00:00Z")
    outcomes = archive_idle(journal, plan_idle(journal, timedelta(minutes=5)), timedelta(minutes=5))
    assert [(o.ref.user, bool(o.archive_id)) for o in outcomes] == [("quiet", True)]


def _follow(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root))
    return subprocess.Popen(
        [sys.executable, "-m", "dialogctl", "follow", "--interval", "0.1", "--format", "jsonl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _wait_started(proc: subprocess.Popen[bytes]) -> None:
    """Until the follower says it has taken its starting point (its first round): what is appended after that is new."""
    import select

    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 1)[0]:
            line = proc.stderr.readline()
            assert line, proc.poll()
            if line.startswith(b"dialogctl: following "):
                return
    raise AssertionError("follow did not start")


def test_follow_sees_appends_across_archives_and_restores(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    run_exe("append", "alice", "before start", "--timestamp", "2020-01-01T00:00:00Z", env=env)
    run_exe("archive", "alice", "--id", "ancient", env=env)
    proc = _follow(root, "--count", "4")
    _wait_started(proc)
    run_exe("append", "alice", "one", env=env)
    run_exe("append", "bob", "new user", env=env)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dialogctl.cli import main; sys.argv=['dialogctl','append','alice','two']; main()"],
        env=dict(os.environ, **env),
    )
    writer.wait(timeout=60)
    run_exe("archive", "alice", env=env)
    run_exe("restore", "alice", "ancient", env=env)  # old messages come back: not new, not printed
    run_exe("append", "alice", "three", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    # in order within each conversation; a new user is found on the next walk of the folders
    assert [e["content"] for e in events if e["user"] == "alice"] == ["one", "two", "three"]
    assert [e["content"] for e in events if e["user"] == "bob"] == ["new user"]


def test_follow_from_since_and_clean_exits(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    run_exe("append", "alice", "old", "--timestamp", "2020-01-01T00:00:00Z", env=env)
    run_exe("append", "alice", "recent", env=env)
    proc = _follow(root, "alice", "--since", "1h", "--count", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["content"] for line in out.decode().splitlines()] == ["recent"]
    proc = _follow(root)
    _wait_started(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in err
    assert run_exe("follow", "--format", "json", env=env).returncode == 2
    assert run_exe("follow", "ghost", env=env).returncode == 3


def test_follow_while_another_process_appends(tmp_path: Path) -> None:
    root = tmp_path / "j"
    env = {"DIALOGUE_JOURNAL_ROOT": str(root), "DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD": "5"}
    run_exe("append", "load", "seed", env=env)
    proc = _follow(root, "--count", "30")
    _wait_started(proc)
    code = (
        "import sys; from dialogctl.config import load_settings; from dialogctl import Journal;"
        "from dialogctl.models import Message;"
        "j = Journal.open();"
        "[j.append('load', [Message('user', f'm{i}', '2030-01-01T00:00:00.000Z')]) for i in range(30)]"
    )
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), check=True, timeout=120)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["content"] for line in out.decode().splitlines()] == [f"m{i}" for i in range(30)]


def test_archive_idle_cli(root: Path, cli: Cli) -> None:
    cli("append", "sleepy", "zzz", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "busy", "now")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    plan = cli.json("archive", "--idle", "5m", "--all", "--dry-run", "--format", "json")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert [(r["user"], r["archive"], r["note"]) for r in plan] == [("sleepy", None, "would archive")]
    done = cli("archive", "--idle", "5m", "--all")
    assert done.exit_code == 0 and len(done.stdout.split()) == 1  # the new archive id, as plain archive prints
    assert cli.json("show", "sleepy", "--format", "json")["messageCount"] == 0
    assert cli.json("show", "busy", "--format", "json")["messageCount"] == 1
    assert cli.json("archive", "--idle", "5m", "--all", "--format", "json") == []
    for args in (
        ["archive", "--idle", "5"],
        ["archive", "--idle", "5m"],
        ["archive", "--all"],
        ["archive", "busy", "--idle", "5m", "--all"],
        ["archive", "--idle", "5m", "--all", "--id", "x"],
        ["archive", "busy", "--dry-run"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)


def test_idle_sweeps_while_servers_append(tmp_path: Path) -> None:
    """cron runs the idle sweep again and again while another process appends: nothing lost or doubled."""
    from collections import Counter

    root = tmp_path / "j"
    env = dict(os.environ, DIALOGUE_JOURNAL_ROOT=str(root))
    code = (
        "import time; from dialogctl.config import load_settings; from dialogctl import Journal;"
        "from dialogctl.models import Message; from dialogctl.times import utc_now_iso;"
        "j = Journal.open();"
        "[(j.append(f'u{i % 4}', [Message('user', f'm{i}', utc_now_iso())]), time.sleep(0.01)) for i in range(200)]"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], env=env)
    sweeps = 0
    while writer.poll() is None:
        result = subprocess.run([sys.executable, "-m", "dialogctl", "-q", "archive", "--idle", "1s", "--all"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        sweeps += 1
    assert writer.returncode == 0 and sweeps >= 2
    time.sleep(1.2)
    assert subprocess.run([sys.executable, "-m", "dialogctl", "-q", "archive", "--idle", "1s", "--all"], env=env).returncode == 0
    result = run_exe("export", "--all", env={"DIALOGUE_JOURNAL_ROOT": str(root)})
    seen = Counter(json.loads(line)["content"] for line in result.stdout.splitlines())
    assert seen == Counter(f"m{i}" for i in range(200))
    listing = json.loads(run_exe("list", "--format", "json", env={"DIALOGUE_JOURNAL_ROOT": str(root)}).stdout)
    assert all(row["conversations"] == 0 for row in listing)  # everyone idle now, all archived


@pytest.mark.parametrize("seed", [7, 11, 23, 42])
def test_metadata_matches_a_recount_through_archives_restores_and_lost_updates(tmp_path: Path, seed: int) -> None:
    """Random appends (archiving on the way), archives, restores, appends behind dialogctl's back, and
    metadata updates that never landed: after every append, metadata.yaml says what a full recount says."""
    import random

    from dialogctl import Journal
    from dialogctl.journal.usermeta import METADATA_FILE, recompute
    from dialogctl.models import Message

    journal = Journal.open(str(tmp_path / "journal"), archiveThreshold="4")
    rng = random.Random(seed)
    user = "meta-user"
    journal.append(user, [Message("user", "first", "2024-01-01T00:00:00.000Z")])
    meta_path = (tmp_path / "journal" / journal.user_path(user)).parent / METADATA_FILE
    clock = 0

    def stamp() -> str:
        nonlocal clock
        clock += 1
        return f"2024-01-01T{clock // 3600 % 24:02d}:{clock // 60 % 60:02d}:{clock % 60:02d}.000Z"

    def visible(meta: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in meta.items() if k != "dialogctl"}

    checked = 0
    history: list[str] = []
    for _ in range(300):
        saved = meta_path.read_bytes()
        op = rng.choice(["append", "append", "append", "archive", "restore", "behind", "lose"])
        history.append(op)
        if op == "append":
            batch = [
                Message(rng.choice(["user", "assistant"]), f"m{clock}", stamp(), {"tokens": rng.randint(1, 9)} if rng.random() < 0.5 else None)
                for _ in range(rng.randint(1, 6))
            ]
            journal.append(user, batch)
            kept, truth = json.loads(meta_path.read_text()), recompute(journal, user)
            assert visible(kept) == visible(truth), (history[-6:], kept["dialogctl"], truth["dialogctl"])
            checked += 1
        elif op == "archive":
            journal.archive(user)
        elif op == "restore":
            archives = [c.ref.id for c in journal.conversation_files(user, include_archives=True) if c.ref.archived]
            if archives:
                journal.restore(user, rng.choice(archives))  # type: ignore[arg-type]
        elif op == "behind":  # a server's own append, in the reference's format
            current = tmp_path / "journal" / journal.user_path(user) / "current.yaml"
            with current.open("ab") as fh:
                fh.write(f"---\nrole: user\ncontent: from a server\ntimestamp: {stamp()}\n".encode())
        else:  # the next operation's metadata update is lost (a crash or a full disk after its commit)
            op = rng.choice(["append", "archive"])
            history.append(op)
            if op == "append":
                journal.append(user, [Message("user", "lost update", stamp())])
            elif op == "archive":
                journal.archive(user)
            meta_path.write_bytes(saved)
    assert checked > 100


def test_follow_ends_when_its_reader_goes_away(root: Path) -> None:
    """``follow | head -1`` ends when head does, not at the next message (which may never come)."""
    proc = _follow(root)
    _wait_started(proc)
    assert run_exe("append", "erin", "only one", env={"DIALOGUE_JOURNAL_ROOT": str(root)}).returncode == 0
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["content"] == "only one"
    proc.stdout.close()  # the reader leaves; nothing more is appended
    assert proc.wait(timeout=20) == 141
    assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")


def test_cleanup_recounts_metadata_and_rewrites_system_stats(root: Path, cli: Cli) -> None:
    cli("append", "dora", "old words", "--timestamp", "2020-01-01T00:00:00Z")
    cli("archive", "dora", "--id", "ancient")
    cli("append", "dora", "new words")
    meta_path = root / "users" / "do" / "ra" / "dora" / "metadata.yaml"
    assert json.loads(meta_path.read_text())["totalMessages"] == 2
    result = cli("cleanup", "--retention-days", "365", "--keep-last", "0", "--yes")
    assert result.exit_code == 0, result.stderr
    assert not (root / "users" / "do" / "ra" / "dora" / "dialogs" / "archived" / "ancient.yaml").exists()
    assert json.loads(meta_path.read_text())["totalMessages"] == 1
    system = json.loads((root / "system" / "stats.yaml").read_text())
    assert system["totalMessages"] == 1 and system["totalUsers"] == 1
