"""``show --tail``: read backwards frame by frame, always the end of what a full read gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogctl import Journal
from dialogctl.fileformat.codec import encode_batch
from dialogctl.models import ConversationRef, Message

from ..conftest import TREES, Cli, copy_tree


def _msgs(count: int, start: int = 0) -> list[Message]:
    return [
        Message("user" if i % 2 else "assistant", f"m{i}\n" * (i % 4), f"2024-03-01T10:00:{i % 60:02d}.000Z", {"n": i} if i % 3 else None)
        for i in range(start, start + count)
    ]


def _expected(journal: Journal, ref: ConversationRef, count: int) -> tuple[int, list[Message]]:
    messages = journal.read(ref).messages
    first = max(0, len(messages) - count)
    return first, messages[first:]


@pytest.mark.parametrize("form", ["documents", "sequence"])
def test_tail_equals_the_end_of_a_full_read(tmp_path: Path, form: str) -> None:
    journal = Journal.open(str(tmp_path / "j"), archiveThreshold="0")
    journal.append("alice", _msgs(1))
    path = tmp_path / "j/users/al/ic/e/dialogs/current.yaml"
    path.write_bytes(encode_batch(_msgs(300), 1, form))  # type: ignore[arg-type]
    ref = ConversationRef("alice", "current")
    for count in (0, 1, 2, 20, 299, 300, 301, 1000):
        tail = journal.read_tail(ref, count)
        assert (tail.first_index, tail.messages) == _expected(journal, ref, count), count
        assert tail.form == form
    # A file that does not end in intact frames is read whole: same answer.
    for damaged in (path.read_bytes()[:-10], path.read_bytes() + b"- role: user\n  content: x\n  timestamp: 2024-01-01T00:00:00Z\n"):
        path.write_bytes(damaged)
        for count in (0, 3, 500):
            tail = journal.read_tail(ref, count)
            assert (tail.first_index, tail.messages) == _expected(journal, ref, count), count


def test_tail_of_empty_and_missing_conversations(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = Journal.open(str(root))
    journal.append("alice", _msgs(3))
    journal.archive("alice", archive_id="a1")
    assert journal.read_tail(ConversationRef("alice", "current"), 5).messages == []
    assert [m.content for m in journal.read_tail(ConversationRef("alice", "archive", "a1"), 2).messages] == ["m1\n", "m2\nm2\n"]
    missing = cli("--root", str(root), "show", "alice", "--archive", "nope", "--tail", "2")
    assert missing.exit_code == 3


def test_show_tail_through_the_cli(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    Journal.open(str(root), archiveThreshold="0").append("alice", _msgs(50))
    shown = cli.json("--root", str(root), "show", "alice", "--tail", "3", "--format", "json")
    assert shown["messageCount"] == 50
    assert [m["index"] for m in shown["messages"]] == [47, 48, 49]
    lines = cli.jsonl("--root", str(root), "show", "alice", "--tail", "2", "--format", "jsonl")
    assert [(r["index"], r["content"]) for r in lines] == [(48, ""), (49, "m49\n")]


@pytest.mark.parametrize("tree", TREES)
def test_tail_on_reference_trees(tree: str, tmp_path: Path) -> None:
    root = copy_tree(tree, tmp_path)
    journal = Journal.open(str(root), archiveThreshold="0")
    for user in list(journal.users()):
        for f in journal.conversation_files(user):
            for count in (1, 4):
                tail = journal.read_tail(f.ref, count)
                assert (tail.first_index, tail.messages) == _expected(journal, f.ref, count)
        journal.append(user, _msgs(3))
        ref = journal.resolve(user)
        assert (journal.read_tail(ref, 2).first_index, journal.read_tail(ref, 2).messages) == _expected(journal, ref, 2)


def test_tail_reads_only_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    journal = Journal.open(str(tmp_path / "j"), archiveThreshold="0", maxConversationLength="100000")
    journal.append("alice", _msgs(5000))
    size = (tmp_path / "j/users/al/ic/e/dialogs/current.yaml").stat().st_size
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        data = real_pread(fd, length, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    monkeypatch.setattr(os, "read", lambda *a: pytest.fail("the whole file was read"))
    tail = journal.read_tail(ConversationRef("alice", "current"), 20)
    assert tail.first_index == 4980 and len(tail.messages) == 20
    assert sum(read) < size / 50


def test_tail_of_records_longer_than_a_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    journal = Journal.open(str(tmp_path / "j"), archiveThreshold="0")
    big = [Message("user", f"{i}\n" + "x" * (3000 + 1500 * i), f"2024-03-01T10:00:{i:02d}.000Z") for i in range(8)]
    journal.append("alice", big)
    ref = ConversationRef("alice", "current")
    for count in (1, 2, 3, 8, 9):
        expected = _expected(journal, ref, count)
        with monkeypatch.context() as patch:
            patch.setattr(os, "read", lambda *a: pytest.fail("the whole file was read"))
            tail = journal.read_tail(ref, count)
        assert (tail.first_index, tail.messages) == expected, count
