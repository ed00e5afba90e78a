"""One walk of users/ and one reading of file names: every command sees the same users and the same conversations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dialogctl import Journal
from dialogctl.disk import layout as L
from dialogctl.disk.tree import open_users, walk_users_tree
from dialogctl.maintenance.verify import read_conversations, read_user_folder, verify, walk_users
from dialogctl.models import ConversationRef, Message
from dialogctl.views.follow import Follower

MSG = [Message("user", "hello", "2024-01-15T10:00:00.000Z")]


@pytest.mark.parametrize(
    ("name", "archived", "expected"),
    [
        ("current.yaml", False, ("current", None)),
        ("session-a b.yaml", False, ("session", "a b")),
        ("session-20240115-103000-ab12.yaml", False, ("session", "20240115-103000-ab12")),
        ("2024-01-15-10-30-00.yaml", True, ("archive", "2024-01-15-10-30-00")),
        ("current.yaml", True, ("archive", "current")),  # in archived/ every name is an archive id
        ("session-.x.yaml", False, None),  # a hidden id: never a conversation
        ("session-.yaml", False, None),
        ("session- x.yaml", False, None),
        ("session-x .yaml", False, None),
        (".hidden.yaml", True, None),
        (".current.yaml", False, None),
        ("session-a.tmp-123-ab.yaml", False, None),  # a temporary file's mark
        ("a.tmp-1.yaml", True, None),
        ("notes.yaml", False, None),  # an operator's note beside current.yaml
        ("current.yml", False, None),
        ("session-a/b.yaml", False, None),
        ("session-ａ.yaml", False, None),  # fullwidth: not NFKC
        ("x" * 300 + ".yaml", True, None),  # longer than an id may be
    ],
)
def test_conversation_of_is_the_one_reading_of_file_names(name: str, archived: bool, expected: tuple[str, str | None] | None) -> None:
    ref = L.conversation_of("alice", name, archived)
    assert (None if ref is None else (ref.kind, ref.id)) == expected
    if ref is not None:
        assert ref.user == "alice"


def _plant(root: Path) -> Journal:
    """A flat journal with users where every walker could have disagreed."""
    journal = Journal.open(str(root), layout="flat")
    for user in ("alice", "bob", "ab.tmp-x"):  # a user id that merely holds the temporary mark
        journal.append(user, MSG)
    users = root / "users"
    (users / "alice" / "carol" / "dialogs").mkdir(parents=True)  # another user's folder below a user's: walked too
    (users / ".hidden" / "dialogs").mkdir(parents=True)  # hidden: never entered
    (users / ".zed.tmp-1-ab" / "dialogs").mkdir(parents=True)  # a half-removed folder: never entered
    os.symlink(users / "bob", users / "linked")  # a symlink: listed, never entered
    dialogs = users / "alice" / "dialogs"
    for name in ("session-.x.yaml", ".current.yaml", "notes.yaml", "session-a.tmp-1-ab.yaml"):
        (dialogs / name).write_text("- role: user\n  content: hidden\n  timestamp: 2024-01-15T10:00:00.000Z\n")
    return journal


def test_every_walker_sees_the_same_users(tmp_path: Path) -> None:
    journal = _plant(tmp_path / "j")
    # depth first, in name order, a folder before those below it; alice/carol is not where a flat
    # layout keeps any id, so every walker finds it and the journal reports it instead of reading it
    expected_parts = [("ab.tmp-x",), ("alice",), ("alice", "carol"), ("bob",)]
    walked = Journal.open(journal.root)
    assert [u for u, _ in walked.walk()] == ["ab.tmp-x", "alice", "bob"]
    assert [(d.path, d.kind) for d in walked.damage] == [("users/alice/carol", "unusable user folder")]
    assert list(Journal.open(journal.root).users()) == ["ab.tmp-x", "alice", "bob"]
    assert list(L.iter_user_folders(journal.root)) == expected_parts
    assert [parts for parts, finding in walk_users(journal.root, journal.layout()) if finding is None] == [("ab.tmp-x",), ("alice",), ("bob",)]
    users = open_users(journal.root)
    assert users is not None
    with users:
        seen = [t.parts for t in walk_users_tree(users, lambda where, exc: pytest.fail(f"{where}: {exc}"))]
    assert seen == [(), ("ab.tmp-x",), ("alice",), ("alice", "carol"), ("bob",)]
    findings = {(f.path, f.problem) for _, f in walk_users(journal.root, journal.layout()) if f is not None}
    assert ("users/linked", "symlink") in findings
    assert ("users/alice/carol", "unusable user folder") in findings
    assert any(p == "users/.zed.tmp-1-ab" for p, _ in findings)  # named as a leftover, not walked
    assert not any("ab.tmp-x" in p for p, _ in findings)  # a user, not a leftover


def test_every_reader_sees_the_same_conversations(tmp_path: Path) -> None:
    journal = _plant(tmp_path / "j")
    journal.archive("alice", archive_id="2024-01-15-10-30-00")
    journal.append("alice", MSG)
    archived = Path(journal.root) / "users" / "alice" / "dialogs" / "archived"
    (archived / ".old.yaml").write_text("- role: user\n  content: hidden\n  timestamp: 2024-01-15T10:00:00.000Z\n")
    expected = [ConversationRef("alice", "current"), ConversationRef("alice", "archive", "2024-01-15-10-30-00")]
    by_journal = dict(Journal.open(journal.root).walk())["alice"]
    assert [f.ref for f in by_journal] == expected
    with journal.dialogs_folder("alice") as dialogs:
        folder = read_user_folder(journal, "alice", dialogs)
        assert [c.ref for c in read_conversations(journal, folder)] == expected
    follower = Follower(Journal.open(journal.root), ["alice"])
    assert [ref for _, ref in follower._active_files("alice")] == expected[:1]
    report = verify(Journal.open(journal.root))
    unusable = sorted(f.path.rsplit("/", 1)[1] for f in report.findings if f.problem == "unusable name")
    assert unusable == [".old.yaml", "session-.x.yaml"]  # claim to be conversations, cannot be: named; notes.yaml is not
