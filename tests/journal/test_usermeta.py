"""Per-user ``metadata.yaml``: kept incrementally, foreign keys kept, always what a recount gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .. import reference_writer as server
from ..conftest import Cli, copy_tree


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
