"""follow: position, not time, decides what is new.

Driven round by round through :class:`dialogctl.views.follow.Follower` (``poll``),
so what happens between two looks is exactly what the test does.
"""

from __future__ import annotations

import time
from pathlib import Path

from dialogctl import Journal
from dialogctl.models import Message
from dialogctl.times import format_timestamp, utc_now
from dialogctl.views.follow import Follower

from .. import reference_writer
from ..conftest import Cli


def _journal(root: Path, **settings: str) -> Journal:
    return Journal.open(str(root), **settings)


def _ago(minutes: float) -> str:
    from datetime import timedelta

    return format_timestamp(utc_now() - timedelta(minutes=minutes))


def _contents(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.message.content for e in events]


def _round(follower: Follower) -> list:  # type: ignore[type-arg]
    time.sleep(0.01)
    return follower.poll()


def test_old_timestamps_appended_after_the_start_are_printed(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="3")
    journal.append("alice", [Message("user", "there before", _ago(60))])
    follower = Follower(journal, rescan=0)  # the user folders are listed every round
    assert follower.poll() == []  # the starting point
    # A new user's first message, stamped five minutes ago (a replayed backlog).
    assert cli("--root", str(root), "append", "newbie", "replayed", "--timestamp", "5 minutes ago").exit_code == 0
    # The first message after an archive lands in a new file.
    journal.append("alice", [Message("user", "fills", _ago(50)), Message("user", "and archives", _ago(40))])
    journal.append("alice", [Message("user", "first after the archive", _ago(30))])
    # A backlog an hour old for an existing user, in one batch, and a server's item stamped a day ago.
    journal.append("alice", [Message("user", f"backlog {i}", _ago(60 + i)) for i in range(2)])
    reference_writer.append(Path(reference_writer.dialogs_path(root, "bob")) / "current.yaml", [{"role": "user", "content": "server", "timestamp": _ago(1440)}])
    got = _contents(_round(follower) + _round(follower))  # a server's unframed item is read once it stopped growing for a round
    assert sorted(got) == sorted(["replayed", "fills", "and archives", "first after the archive", "backlog 0", "backlog 1", "server\n"])
    assert _round(follower) == []  # and never twice


def test_what_was_there_before_stays_unprinted_through_archives_restores_and_trims(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="0")
    journal.append("alice", [Message("user", "ancient", "2020-01-01T00:00:00.000Z")])
    journal.archive("alice", archive_id="ancient")
    journal.append("alice", [Message("user", "there at the start", _ago(100))])
    follower = Follower(journal, rescan=0)
    assert follower.poll() == []
    journal.append("alice", [Message("user", "one", _ago(90))])
    assert _contents(_round(follower)) == ["one"]
    # A restore brings an old archive back (swapped in, written a moment ago): not new.
    journal.restore("alice", "ancient")
    journal.append("alice", [Message("user", "after the restore", _ago(80))])
    assert _contents(_round(follower)) == ["after the restore"]
    # An archive we read, restored again: read on from where we were.
    assert journal.archive("alice", archive_id="second") == "second"
    assert _round(follower) == []
    journal.restore("alice", "second")
    journal.append("alice", [Message("user", "on the restored one", _ago(70))])
    assert _contents(_round(follower)) == ["on the restored one"]
    # A trim rewrites the file: what it keeps is not new; what is appended after it is.
    done = cli("--root", str(root), "cleanup", "--max-age", "1000d", "--yes")
    assert done.exit_code == 0 and "1 files trimmed" in done.stderr, done.stderr
    assert _round(follower) == []
    journal.append("alice", [Message("user", "after the trim", _ago(500))])
    assert _contents(_round(follower)) == ["after the trim"]


def test_a_new_user_found_by_a_later_listing_is_read_from_its_first_byte(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root)
    journal.append("alice", [Message("user", "hi", _ago(1))])
    follower = Follower(journal, rescan=1.5)
    assert follower.poll() == []
    assert cli("--root", str(root), "append", "newbie", "replayed", "--timestamp", "1 hour ago").exit_code == 0
    time.sleep(1.6)  # the next listing of the user folders comes well after the file was written
    assert _contents(_round(follower)) == ["replayed"]


def test_conversations_filled_and_archived_while_the_file_was_missing_are_read(tmp_path: Path) -> None:
    """A look that falls between an archive's rename and its new empty file, then a whole conversation filled and archived before the next look.

    (Stamped in the future, so no rule of time can be what reads or drops them: this is what made the
    test of a follower beside a fast appender flaky under load.)
    """
    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="3")
    journal.append("alice", [Message("user", "seed", "2030-01-01T00:00:00.000Z")])
    follower = Follower(journal, rescan=0)
    assert follower.poll() == []
    journal.append("alice", [Message("user", f"a{i}", "2030-01-01T00:00:00.000Z") for i in range(1)])
    dialogs = root / "users/al/ic/e/dialogs"
    (dialogs / "archived").mkdir()
    (dialogs / "current.yaml").rename(dialogs / "archived" / "first.yaml")  # an archive's first step, and our look
    assert _contents(_round(follower)) == ["a0"]
    journal.append("alice", [Message("user", f"b{i}", "2030-01-01T00:00:00.000Z") for i in range(3)])  # new file, filled, archived at 3
    journal.append("alice", [Message("user", "c0", "2030-01-01T00:00:00.000Z")])
    assert _contents(_round(follower)) == ["b0", "b1", "b2", "c0"]
    assert _round(follower) == []


def test_every_interleaving_of_looks_with_archives_and_restores(tmp_path: Path) -> None:
    """Appends stamped long ago, two archives and two restores (one of an archive there before the start), with a look after any step or none."""
    import itertools
    import random

    steps = ["one", "two", "archive", "restore ancient", "three", "archive later", "restore later", "four"]
    masks = list(itertools.product([False, True], repeat=len(steps)))
    random.Random(14).shuffle(masks)
    for number, mask in enumerate(masks[:64]):
        root = tmp_path / f"j{number}"
        journal = _journal(root, archiveThreshold="0")
        journal.append("alice", [Message("user", "before start", "2020-01-01T00:00:00.000Z")])
        journal.archive("alice", archive_id="ancient")
        follower = Follower(journal, rescan=0)
        assert follower.poll() == []
        got: list[str] = []
        for step, look in zip(steps, mask, strict=True):
            if step.startswith("archive"):
                journal.archive("alice", archive_id=step.split()[1] if " " in step else None)
            elif step.startswith("restore"):
                journal.restore("alice", step.split()[1])
            else:
                journal.append("alice", [Message("user", step, "2020-01-01T00:00:00.000Z")])
            if look:
                got += _contents(_round(follower))
        got += _contents(_round(follower))
        assert got == ["one", "two", "three", "four"], (mask, got)


def test_a_file_swapped_between_its_stat_and_its_read_is_read_where_it_went(tmp_path: Path) -> None:
    """A look stats current.yaml, then, before the read, the file is filled, archived, and its successor holds as many bytes.

    Reading by name then gave the successor's bytes to the file the stat saw: the next round read the
    archived file on from the wrong offset (messages lost, or printed twice). Found by
    ``test_follow_while_another_process_appends`` under load, one run in 10 to 60.
    """
    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="3")
    stamp = "2030-01-01T00:00:00.000Z"
    journal.append("alice", [Message("user", "seed", stamp)])
    follower = Follower(journal, rescan=0)
    assert follower.poll() == []
    journal.append("alice", [Message("user", "a0", stamp), Message("user", "a1", stamp)])  # current full: seed a0 a1
    journal.append("alice", [Message("user", "b0", stamp)])  # archived, the new current holds b0
    real_stat = follower._stat
    swapped: list[str] = []

    def stat_then_swap(path: str):  # type: ignore[no-untyped-def]
        st = real_stat(path)
        if path.endswith("current.yaml") and not swapped:
            swapped.append(path)  # once, between this stat and the read: b0's file filled and archived, c0 (as long as b0) after it
            journal.append("alice", [Message("user", "b1", stamp), Message("user", "b2", stamp)])
            journal.append("alice", [Message("user", "c0", stamp)])
        return st

    follower._stat = stat_then_swap  # type: ignore[method-assign]
    seen = _contents(_round(follower))
    follower._stat = real_stat  # type: ignore[method-assign]
    seen += _contents(_round(follower)) + _contents(_round(follower))
    assert swapped
    assert sorted(seen) == ["a0", "a1", "b0", "b1", "b2", "c0"]  # each once
    assert [c for c in seen if c[0] in "ab"] == ["a0", "a1", "b0", "b1", "b2"]  # in order within the conversations
