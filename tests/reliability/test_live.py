"""Running beside live servers: dialogctl and the servers' unlocked writer share every file.

The servers (``tests/reference_writer.py``, byte-exact with what their real
code wrote in ``v1-short-ids``) append ``\\n- role: ...`` items with
``O_APPEND`` and no lock, leave their last item unterminated, and create
files 0644 in 0755 folders. Whatever dialogctl creates or rewrites must stay a
YAML sequence they can append to, its own writes must never glue onto their
last item, their items are messages (never damage), and owners and modes
follow the journal.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.journal.files import FileSeen
from dialogctl.models import Message

from .. import reference_writer as server
from ..conftest import REPO, Cli, copy_tree, run_exe
from ..fileformat.test_codec import _parse_with
from .conftest import count

NOW = "2026-01-15T10:30:00.000Z"
LATER = "2099-01-15T10:30:00.000Z"  # after anything dialogctl stamps "now": verify checks that time runs forward


def journal_at(root: Path, **settings: str) -> Journal:
    return Journal.open(str(root), **settings)


def item(tag: str, when: str = LATER, **metadata: Any) -> dict[str, Any]:
    return server.message("assistant" if metadata else "user", f"{tag}\n\nsecond paragraph\n", when, metadata or None)


def contents(cli: Cli, root: Path, *args: str) -> list[str]:
    result = cli("--root", str(root), "export", *args, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr  # never 5: the servers' items are messages, not damage
    return [json.loads(line)["content"].split("\n")[0] for line in result.stdout.splitlines()]


def bun_reads(paths: list[Path]) -> dict[str, Any]:
    parsed = _parse_with("bun", paths)
    for path, value in parsed.items():
        assert not isinstance(value, dict), (path, value)  # {"error": ...}: the servers' own read would throw
    return parsed


def writable_copy(name: str, dest: Path) -> Path:
    """A fixture tree as a server leaves it: 0755 folders, 0644 files."""
    root = copy_tree(name, dest)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


# --- files dialogctl creates stay appendable by the servers ------------------------------------


def _creations(root: Path, cli: Cli) -> dict[str, Path]:
    """Every way dialogctl makes a conversation file the servers then append to."""
    made: dict[str, Path] = {}
    base = ["--root", str(root)]
    assert cli(*base, "append", "alice-2", "hello").exit_code == 0  # a new user's current.yaml (the issue's reproduction)
    made["new user"] = root / "users/al/ic/e-2/dialogs/current.yaml"
    assert cli(*base, "append", "bob-3", "first").exit_code == 0
    dialogs = root / "users/bo/b-/3/dialogs"
    server.archive(dialogs, "archive-2026-01-15 10-00-00")  # the servers leave an empty file behind
    assert (dialogs / "current.yaml").read_bytes() == b""
    assert cli(*base, "append", "bob-3", "into the server's empty file").exit_code == 0
    made["empty file a server left"] = dialogs / "current.yaml"
    for text in ("one", "two", "three"):  # the third reaches the threshold: dialogctl archives, a fresh file follows
        assert cli(*base, "--set", "archiveThreshold=3", "append", "carol-4", text).exit_code == 0
    assert cli(*base, "--set", "archiveThreshold=3", "append", "carol-4", "after the archive").exit_code == 0
    made["after dialogctl's own archive"] = root / "users/ca/ro/l-4/dialogs/current.yaml"
    return made


def test_files_dialogctl_creates_stay_sequences_the_servers_can_append_to(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    made = _creations(root, cli)
    for path in made.values():
        server.append(path, [item("from a server", LATER, model="gpt-4o", tokens={"prompt": 1, "completion": 2, "total": 3})])
    sessions = tmp_path / "sessions"
    assert cli("--root", str(sessions), "--set", "conversations=sessions", "append", "dave", "hi", "--conversation", "c1").exit_code == 0
    made["new session file"] = next(sessions.rglob("session-c1.yaml"))
    server.append(made["new session file"], [item("from a server", LATER)])

    parsed = bun_reads(list(made.values()))  # the servers' own parser reads every file
    for what, path in made.items():
        journal_root = sessions if what == "new session file" else root
        ours = journal_at(journal_root).read(journal_at(journal_root).resolve(_user_of(journal_root, path), None if "session" not in what else "c1"))
        assert ours.damage == [], what
        assert [m.content.split("\n")[0] for m in ours.messages][-1] == "from a server", what
        theirs = parsed[str(path)]
        assert [m["role"] for m in theirs] == [m.role for m in ours.messages], what
        assert [m["timestamp"] for m in theirs] == [m.timestamp for m in ours.messages], what
        assert theirs[-1]["content"] == ours.messages[-1].content  # the same message, read the same way
    for where in (root, sessions):
        verified = cli("--root", str(where), "verify")
        assert verified.exit_code == 0, verified.stdout + verified.stderr
        mended = cli("--root", str(where), "repair", "--format", "json")
        assert mended.exit_code == 0 and json.loads(mended.stdout) == [], mended.stdout  # nothing to mend, nothing quarantined


def _user_of(root: Path, path: Path) -> str:
    parts = path.relative_to(root / "users").parts
    parts = parts[: parts.index("dialogs")]
    return parts[-1] if parts[-1] == "".join(parts[:-1]) else "".join(parts)


def test_the_issue_reproduction_keeps_the_servers_message(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    base = ["--root", str(root)]
    assert cli(*base, "append", "alice-2", "hello").exit_code == 0
    server.append(root / "users/al/ic/e-2/dialogs/current.yaml", [item("a server's reply", model="m")])
    shown = cli(*base, "show", "alice-2", "--format", "jsonl")
    assert shown.exit_code == 0, shown.stderr
    assert [json.loads(line)["content"].split("\n")[0] for line in shown.stdout.splitlines()] == ["hello", "a server's reply"]
    assert cli(*base, "repair").exit_code == 0
    assert not (root / "system" / "quarantine").exists()
    assert contents(cli, root, "alice-2") == ["hello", "a server's reply"]


def test_never_glued_onto_a_servers_last_item_even_when_it_lands_after_our_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server appends between dialogctl's look at the file's tail and its write: dialogctl still starts on a fresh line."""
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", [Message("user", "ours first", NOW)])
    path = root / "users/al/ic/e/dialogs/current.yaml"
    original = Journal._tail

    def tail_then_a_server_appends(self: Journal, dialogs: Any, name: str, ref: Any) -> Any:
        seen = original(self, dialogs, name, ref)
        server.append(path, [item("the server's, unterminated")])
        return seen

    monkeypatch.setattr(Journal, "_tail", tail_then_a_server_appends)
    journal.append("alice", [Message("user", "ours second", NOW)])
    journal.append("alice", [Message("user", "ours third", NOW)])
    monkeypatch.setattr(Journal, "_tail", original)
    data = path.read_bytes()
    assert b"Z- role" not in data and b"Z\n- role: user\n  content: |2-\n    ours second" in data
    fresh = journal_at(root).read(journal.resolve("alice"))
    assert fresh.damage == []
    assert [m.content.split("\n")[0] for m in fresh.messages] == [
        "ours first",
        "the server's, unterminated",
        "ours second",
        "the server's, unterminated",
        "ours third",
    ]
    assert [len(v) for v in bun_reads([path]).values()] == [5]


def test_a_file_an_older_dialogctl_wrote_as_documents(tmp_path: Path, cli: Cli) -> None:
    """--- documents a server then appended to: both read, verify says why it matters, repair makes it a sequence."""
    root = tmp_path / "journal"
    journal_at(root, fileShape="documents").append("alice", [Message("user", "written as a document", NOW)])
    path = root / "users/al/ic/e/dialogs/current.yaml"
    assert path.read_bytes().startswith(b"\n---\n")
    server.append(path, [item("appended by a server")])
    assert contents(cli, root, "alice") == ["written as a document", "appended by a server"]
    found = cli("--root", str(root), "verify", "--format", "json")
    assert found.exit_code == 1 and [f["problem"] for f in json.loads(found.stdout) if f["level"] == "problem"] == ["documents shape"]
    assert cli("--root", str(root), "repair").exit_code == 0
    assert path.read_bytes().startswith(b"- role: user\n")
    assert contents(cli, root, "alice") == ["written as a document", "appended by a server"]
    server.append(path, [item("and one more")])
    assert [len(v) for v in bun_reads([path]).values()] == [3]
    assert cli("--root", str(root), "verify").exit_code == 0


def test_file_shape_setting(tmp_path: Path, cli: Cli) -> None:
    shown = {r["setting"]: r for r in json.loads(cli("--root", str(tmp_path / "j"), "config", "--format", "json").stdout)}
    assert shown["fileShape"]["value"] == "sequence" and shown["fileShape"]["source"] == "default"
    root = tmp_path / "documents"
    assert cli("--root", str(root), "--set", "fileShape=documents", "append", "alice", "hi").exit_code == 0
    assert (root / "users/al/ic/e/dialogs/current.yaml").read_bytes().startswith(b"\n---\n")
    assert cli("--root", str(root), "--set", "fileShape=documents", "verify").exit_code == 0
    assert cli("--root", str(root), "--set", "fileShape=yaml", "list").exit_code == 2


# --- owners and modes follow the journal ----------------------------------------------------------


def test_a_servers_journal_keeps_its_modes_through_every_command(tmp_path: Path, cli: Cli) -> None:
    root = writable_copy("v1-sharded", tmp_path)
    base = ["--root", str(root)]
    users = [json.loads(line)["user"] for line in cli(*base, "list", "--format", "jsonl").stdout.splitlines()]
    user = users[0]
    steps = [
        ["append", user, "from dialogctl"],
        ["append", "newcomer-1", "a new user's folders and files"],
        ["--set", "archiveThreshold=2", "append", "newcomer-1", "reaches the threshold"],
        ["archive", user, "--id", "by-dialogctl"],
        ["restore", user, "by-dialogctl"],
        ["cleanup", "--max-age", "365d", "--yes"],
        ["cleanup", "--retention-days", "1", "--keep-last", "0", "--yes"],
        ["repair"],
        ["stats"],
        ["rm", "newcomer-1", "--all-data", "--yes"],
    ]
    for step in steps:
        result = cli(*base, *step)
        assert result.exit_code == 0, (step, result.stderr)
        wrong = {path: oct(mode) for path, mode in modes(root).items() if mode != (0o755 if (root / path).is_dir() else 0o644)}
        assert wrong == {}, step
    verified = cli(*base, "verify")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "readable by group or others" in verified.stdout  # a note, not a problem


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another owner needs root")
def test_files_dialogctl_makes_as_root_belong_to_the_journals_owner(tmp_path: Path, cli: Cli) -> None:
    root = writable_copy("v1-sharded", tmp_path)
    for path in [root, *root.rglob("*")]:
        os.lchown(path, 12345, 23456)
    base = ["--root", str(root)]
    user = json.loads(cli(*base, "list", "--format", "jsonl").stdout.splitlines()[0])["user"]
    for step in (["append", "newcomer-1", "hi"], ["append", user, "x"], ["archive", user], ["cleanup", "--max-age", "365d", "--yes"], ["repair"], ["stats"]):
        assert cli(*base, *step).exit_code == 0, step
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [root, *root.rglob("*")]}
    assert owners == {(12345, 23456)}
    assert cli(*base, "verify").exit_code == 0


def test_a_root_dialogctl_creates_is_private(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    assert cli("--root", str(root), "append", "alice", "hi").exit_code == 0
    assert {mode for path, mode in modes(root).items() if (root / path).is_dir()} == {0o700}
    assert {mode for path, mode in modes(root).items() if not (root / path).is_dir()} == {0o600}
    explicit = tmp_path / "explicit"
    (explicit / "users").mkdir(parents=True, mode=0o755)
    assert cli("--root", str(explicit), "--set", "fileMode=0640", "--set", "dirMode=0750", "append", "robert", "hi").exit_code == 0
    assert stat.S_IMODE((explicit / "users/ro/be/rt/dialogs/current.yaml").stat().st_mode) == 0o640
    assert stat.S_IMODE((explicit / "users/ro/be/rt/dialogs").stat().st_mode) == 0o750


# --- rewrites carry a server's late append over --------------------------------------------------------


def test_a_servers_append_into_the_file_a_rewrite_replaced_is_carried_over(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", [Message("user", "old", "2020-01-01T00:00:00.000Z"), Message("user", "kept", NOW)])
    path = root / "users/al/ic/e/dialogs/current.yaml"
    data = path.read_bytes()
    seen = FileSeen.of(path.stat(), len(data))
    late = os.open(path, os.O_WRONLY | os.O_APPEND)  # a server that opened the file just before the rename
    try:
        server.append(path, [item("before the rewrite")])  # lands before the rename: carried at once
        with journal.dialogs_folder("alice") as dialogs:
            journal.write_conversation(dialogs, journal.resolve("alice"), [Message("user", "kept", NOW)], replacing=seen)
        os.write(late, b"\n" + server.format_item(item("just after the rename")).encode())
    finally:
        os.close(late)
    journal.rewrites.settle()
    fresh = journal_at(root).read(journal.resolve("alice"))
    assert fresh.damage == [] and [m.content.split("\n")[0] for m in fresh.messages] == ["kept", "before the rewrite", "just after the rename"]
    server.append(path, [item("after")])
    assert [len(v) for v in bun_reads([path]).values()] == [4]


def test_a_rewrite_of_a_file_a_server_replaced_meanwhile_is_refused(tmp_path: Path) -> None:
    from dialogctl.errors import ChangedUnderneath

    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", [Message("user", "x", NOW)])
    path = root / "users/al/ic/e/dialogs/current.yaml"
    seen = FileSeen.of(path.stat(), path.stat().st_size)
    server.archive(path.parent, "by-a-server")
    with journal.dialogs_folder("alice") as dialogs, pytest.raises(ChangedUnderneath):
        journal.write_conversation(dialogs, journal.resolve("alice"), [], replacing=seen)
    assert path.read_bytes() == b""


# --- the race: a server appending unlocked while dialogctl works ------------------------------------------

_SERVER = """
import sys, time
sys.path.insert(0, {repo!r})
from tests import reference_writer as server
root, rounds = {root!r}, {rounds}
users = {users!r}
for i in range(rounds):
    user = users[i % len(users)]
    old = i % 7 == 3  # now and then a message old enough for cleanup's max-age trim
    when = "2020-01-01T00:00:00.000Z" if old else "{now}"
    tag = ("old-srv-" if old else "srv-") + str(i)
    msg = server.message("assistant", tag + "\\n\\nsecond line\\n", when, {{"model": "gpt-4o", "tokens": {{"total": i}}}})
    server.append(server.dialogs_path(root, user) + "/current.yaml", [msg])
    print(tag, flush=True)
    time.sleep(0.002)
"""

_DIALOGCTL = """
import random, sys
from dialogctl.config import load_settings
from dialogctl import Journal
from dialogctl.models import Message
from dialogctl.errors import LockBusy, NotFound
root, rounds, role = {root!r}, {rounds}, {role!r}
users = {users!r}
journal = Journal(load_settings({{"root": root, "archiveThreshold": "6", "lockTimeoutMs": "20000"}}))
rng = random.Random(role)
for i in range(rounds):
    user = users[i % len(users)]
    if role == "append":
        tag = "dctl-" + str(i)
        journal.append(user, [Message("user", tag + "\\n\\n  indented", "{now}")])
        print(tag, flush=True)
    elif role == "archive":
        try:
            if rng.random() < 0.5:
                journal.archive(user)
            else:
                archives = [f.ref.id for f in journal.conversation_files(user) if f.ref.kind == "archive"]
                if archives:
                    journal.restore(user, rng.choice(archives))
        except NotFound:
            pass
"""


# Only the max-age rule: it trims (rewrites) the files the server keeps appending to.
CLEANUP = ["--max-age", "365d", "--retention-days", "0", "--keep-last", "0", "--yes"]


def test_a_server_appending_unlocked_races_every_command(tmp_path: Path, figures: Any) -> None:
    root = tmp_path / "journal"
    users = ["alice", "al", "bob", "ab", "abab", "x", "user-1000"]  # short ids, one user's folder inside another's
    rounds = count("LIVE_ROUNDS", 1500)
    journal_at(root).append("alice", [Message("user", "seed", NOW)])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server_proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(repo=str(REPO), root=str(root), rounds=rounds, users=users, now=NOW)], stdout=subprocess.PIPE, text=True, env=env
    )
    ours = {
        role: subprocess.Popen(
            [sys.executable, "-c", _DIALOGCTL.format(root=str(root), rounds=rounds // (1 if role == "append" else 3), role=role, users=users, now=NOW)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for role in ("append", "archive")
    }
    cleanups = trimmed = 0
    while server_proc.poll() is None or any(p.poll() is None for p in ours.values()):
        result = run_exe("--root", str(root), "cleanup", *CLEANUP)
        assert result.returncode == 0, result.stderr
        cleanups += 1
        done = re.search(r"\((\d+) files trimmed\)", result.stderr)
        trimmed += int(done.group(1)) if done else 0
        time.sleep(random.uniform(0, 0.05))
    acknowledged = server_proc.stdout.read().split() + ours["append"].stdout.read().split()  # type: ignore[union-attr]
    assert server_proc.wait() == 0 and all(p.wait() == 0 for p in ours.values())
    assert run_exe("--root", str(root), "cleanup", *CLEANUP).returncode == 0

    exported = run_exe("--root", str(root), "export", "--all", "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr  # no damage: every item of both writers is a message
    found = [json.loads(line)["content"].split("\n")[0] for line in exported.stdout.splitlines()]
    kept = [tag for tag in acknowledged if not tag.startswith("old-")]
    missing = sorted(set(kept) - set(found))
    twice = sorted(tag for tag in set(found) if found.count(tag) > 1)
    assert missing == [] and twice == [], (missing[:10], twice[:10])
    files = sorted(root.glob("users/**/*.yaml"))
    files = [p for p in files if p.name != "metadata.yaml"]
    parsed = bun_reads(files)
    assert sum(len(v) for v in parsed.values()) == len(found)  # the servers' parser reads the same messages
    verified = run_exe("--root", str(root), "verify", "--format", "json")
    damage = [f for f in json.loads(verified.stdout) if f["check"] == "records"]
    assert damage == []
    figures.add(
        f"live: a server appended {rounds} items unlocked while dialogctl appended {rounds} (archiving every 6), "
        f"archived/restored {rounds // 3} times and ran {cleanups} cleanups ({trimmed} files trimmed): {len(kept)} acknowledged messages found exactly once, "
        f"{len(files)} files parsed by Bun.YAML, 0 damage"
    )
