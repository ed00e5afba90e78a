"""Batches: a write of several records is read whole or not at all, by every reader.

A process killed during a large write leaves every whole record before the
cut on disk, each with a valid frame (issue 13: 18,113 of 1,000,000 imported
messages read back). The records of one write carry ``batch=<first>-<last>``
in their frames, and a batch whose last record is missing is torn: no reader
reads any of it, verify names it, repair drops it whole, and the next write
never continues it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dialogctl import Journal
from dialogctl.fileformat.codec import encode_batch, encode_record, find_frames, last_frame_n
from dialogctl.fileformat.reader import parse_conversation
from dialogctl.journal import catalog
from dialogctl.maintenance.repair import repair
from dialogctl.maintenance.verify import verify
from dialogctl.models import ConversationRef, Message
from dialogctl.views.follow import Follower

from .. import reference_writer as server
from ..conftest import Cli

TS = "2024-01-15T10:30:00.000Z"


def _msgs(count: int, tag: str = "m") -> list[Message]:
    return [Message("user" if i % 2 == 0 else "assistant", f"{tag}{i}\nline two", TS, {"i": i} if i % 3 == 0 else None) for i in range(count)]


def _journal(root: Path, **settings: str) -> Journal:
    return Journal.open(str(root), **settings)


def _current(root: Path, user: str = "alice") -> Path:
    return Path(server.dialogs_path(root, user)) / "current.yaml"


def _contents(journal: Journal, user: str = "alice") -> list[str]:
    return [m.content for m in journal.read(ConversationRef(user, "current")).messages]


# --- the frame ----------------------------------------------------------------------------


def test_a_write_of_several_records_is_marked_as_one_batch_and_a_single_one_is_not() -> None:
    one = encode_batch(_msgs(1), 7, "sequence")
    assert b"batch=" not in one and one.endswith(b"\n") and b"# dialogctl n=7 len=" in one  # today's bytes: old files read as before
    three = encode_batch(_msgs(3), 7, "sequence")
    assert [line for line in three.split(b"\n") if line.startswith(b"# dialogctl")] == [
        line for line in three.split(b"\n") if line.startswith(b"# dialogctl n=") and b" batch=7-9 len=" in line
    ]
    frames, broken = find_frames(three)
    assert broken == [] and [(f.n, f.first, f.last) for f in frames] == [(7, 7, 9), (8, 7, 9), (9, 7, 9)]
    assert encode_batch(_msgs(3), 1, "sequence", marked=False).count(b"batch=") == 0  # a rewrite: atomic by rename


def test_a_frame_line_cut_anywhere_never_reads_as_a_whole_batch() -> None:
    """The mark comes before len and crc32: a torn frame line never matches with another meaning."""
    data = encode_batch(_msgs(2), 1, "documents")
    last_line = data.rindex(b"# dialogctl")
    for cut in range(last_line, len(data) - 1):  # every cut inside the last frame line (not after its final byte)
        parsed = parse_conversation(data[:cut], "x")
        assert parsed.messages == [], cut
        assert last_frame_n(data[:cut]) is None


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["documents", "sequence"])
def test_a_batch_cut_at_any_byte_reads_as_nothing_and_says_how_much_was_there(form: str) -> None:
    before = encode_record(Message("user", "before", TS), 1, form)  # type: ignore[arg-type]
    batch = b"\n" + encode_batch(_msgs(4), 2, form)  # type: ignore[arg-type]
    whole = parse_conversation(before + batch, "x")
    assert [m.content for m in whole.messages] == ["before"] + [m.content for m in _msgs(4)] and whole.damage == []
    # Every cut from the first byte of the first record to the last byte of the last frame
    # line (a frame line missing only its line break is whole: the batch is there).
    for cut in range(2, len(batch) - 1):
        parsed = parse_conversation(before + batch[:cut], "x")
        assert [m.content for m in parsed.messages] == ["before"], cut
        records = len(find_frames(before + batch[:cut])[0]) - 1
        torn = [d for d in parsed.damage if d.kind == "torn batch"]
        if records:
            assert len(torn) == 1 and torn[0].line == before.count(b"\n") + 2, cut
            assert f"only {records} of the 4 records of a batch (messages 1-4 by index from 0; frames n=2-5)" in torn[0].detail, (cut, torn)
        assert parsed.damage, cut  # a cut is always reported
        assert parsed.settled == len(before), cut  # an incremental reader starts again before the batch


def test_the_fast_reader_and_the_general_one_agree_on_whole_batches() -> None:
    data = b"\n" + encode_batch(_msgs(3), 1, "sequence") + b"\n" + encode_record(Message("user", "one", TS), 4, "sequence")
    data += b"\n" + encode_batch(_msgs(5, "x"), 5, "sequence")
    fast = parse_conversation(data, "x")
    slow = parse_conversation(data + b"\n# a comment\n", "x")  # anything unframed sends the whole file down the general path
    assert fast.messages == slow.messages and len(fast.messages) == 9
    assert fast.damage == [] and fast.settled == len(data) and fast.last_n == 9


def test_a_torn_batch_followed_by_a_servers_item_keeps_the_item(tmp_path: Path) -> None:
    """Servers append unlocked, also after a crash: their item is a message, the torn batch is not."""
    root = tmp_path / "journal"
    journal = _journal(root)
    journal.append("alice", [Message("user", "before", TS)])
    path = _current(root)
    batch = b"\n" + encode_batch(_msgs(4), 2, "sequence")
    frames, _ = find_frames(batch)
    with open(path, "ab") as fh:
        fh.write(batch[: frames[2].start + 10])  # two whole records, and ten bytes of the third
    server.append(path, [server.message("user", "from the server", TS)])
    conv = journal.read(ConversationRef("alice", "current"))
    assert [m.content for m in conv.messages] == ["before", "from the server\n"]
    assert [d.kind for d in conv.damage][0] == "torn batch"
    assert "only 2 of the 4 records" in conv.damage[0].detail


def test_the_record_a_kill_cut_is_a_torn_record_also_when_a_servers_item_follows_it() -> None:
    """Wherever the kill cuts the record after the last whole one, verify calls it what it is (and repair drops it)."""
    batch = b"\n" + encode_batch(_msgs(4), 1, "sequence")
    frames, _ = find_frames(batch)
    item = ("\n" + server.format_item(server.message("user", "srv", TS))).encode()
    for cut in range(frames[1].after + 1, frames[2].after - 1):
        parsed = parse_conversation(batch[:cut] + item, "x")
        assert [m.content for m in parsed.messages] == ["srv\n"], cut
        assert [d.kind for d in parsed.damage] == ["torn batch", "torn record"], (cut, parsed.damage)


def test_a_server_item_between_two_writes_of_a_large_batch_is_kept_in_place(tmp_path: Path) -> None:
    """A large batch goes in several writes; a server may append between two of them: the batch is still whole."""
    root = tmp_path / "journal"
    journal = _journal(root)
    journal.append("alice", [Message("user", "before", TS)])
    path = _current(root)
    batch = b"\n" + encode_batch(_msgs(4), 2, "sequence")
    frames, _ = find_frames(batch)
    with open(path, "ab") as fh:
        fh.write(batch[: frames[1].after])
    server.append(path, [server.message("user", "server", TS)])  # unterminated, as always
    with open(path, "ab") as fh:
        fh.write(b"\n" + batch[frames[1].after :])  # every write of ours starts on a fresh line
    conv = journal.read(ConversationRef("alice", "current"))
    assert [m.content for m in conv.messages] == ["before", "m0\nline two", "m1\nline two", "server\n", "m2\nline two", "m3\nline two"]
    assert conv.damage == []


# --- writing after a torn batch -----------------------------------------------------------


def _kill_mid_batch(journal: Journal, root: Path, records: int, tag: str = "torn", total: int = 5) -> None:
    """What a kill during an append of ``total`` messages leaves: ``records`` whole ones and part of the next."""
    path = _current(root)
    count = len(_contents(journal)) if path.exists() else 0
    batch = b"\n" + encode_batch(_msgs(total, tag), count + 1, "sequence")
    frames, _ = find_frames(batch)
    cut = frames[records].start + 20 if records < total - 1 else frames[records].start + 5
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(batch[:cut])


@pytest.mark.parametrize("records", [1, 2, 4])
def test_the_next_append_never_continues_a_torn_batch(tmp_path: Path, records: int) -> None:
    """Its records are never counted, nor made valid by what follows, however the next write is shaped."""
    root = tmp_path / "journal"
    journal = _journal(root)
    journal.append("alice", _msgs(2, "old"))
    _kill_mid_batch(journal, root, records)
    assert last_frame_n(_current(root).read_bytes()[-4096:]) is None  # the count is not read from a torn batch
    journal.append("alice", [Message("user", "single", TS)])  # a record of its own
    journal.append("alice", _msgs(5, "again"))  # the same batch again (a retry): same size, same first n
    assert _contents(journal) == [m.content for m in _msgs(2, "old")] + ["single"] + [m.content for m in _msgs(5, "again")]
    from dialogctl.fileformat.codec import check_batches

    data = _current(root).read_bytes()
    frames, _ = find_frames(data)
    assert frames[-1].n == 8 and last_frame_n(data[-4096:]) == 8  # the count appends continue from
    assert len(check_batches(frames).torn) == 1


def test_a_retry_after_a_kill_that_left_a_single_record_of_the_batch(tmp_path: Path) -> None:
    """The retry's first record carries the same n and range as the torn one: a new run, never a continuation."""
    root = tmp_path / "journal"
    journal = _journal(root)
    _kill_mid_batch(journal, root, 1, tag="x", total=3)
    journal.append("alice", _msgs(3, "x"))
    assert _contents(journal) == [m.content for m in _msgs(3, "x")]


def test_show_tail_reads_a_batch_backwards_and_never_shows_a_torn_one(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", _msgs(300))
    tail = journal.read_tail(ConversationRef("alice", "current"), 3)
    assert tail.first_index == 297 and [m.content for m in tail.messages] == [m.content for m in _msgs(300)[-3:]]
    _kill_mid_batch(journal, root, 2)
    for count in (1, 3, 400):
        tail = journal.read_tail(ConversationRef("alice", "current"), count)
        full = journal.read(ConversationRef("alice", "current")).messages
        assert tail.messages == full[-count:] and tail.first_index == max(0, 300 - count)
    shown = cli("--root", str(root), "show", "alice", "--tail", "2", "--format", "jsonl")
    assert shown.exit_code == 5 and "torn batch" in shown.stderr
    assert [json.loads(line)["index"] for line in shown.stdout.splitlines()] == [298, 299]


# --- the catalog, follow, verify, repair -------------------------------------------------


def test_the_catalog_never_settles_inside_a_batch(tmp_path: Path) -> None:
    """stats while a batch is half written counts none of it, and all of it once it is whole."""
    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", _msgs(3, "old"))
    path = _current(root)
    batch = b"\n" + encode_batch(_msgs(6), 4, "sequence")
    frames, _ = find_frames(batch)
    with open(path, "ab") as fh:
        fh.write(batch[: frames[3].after])  # four of six records: a write under way
    scan = catalog.scan(journal, {})
    entry = scan.entries[scan.users[0][1][0].rel_path]
    assert entry[catalog.E_FULL][0] == 3  # messages
    catalog.save(journal, scan.entries)
    with open(path, "ab") as fh:
        fh.write(batch[frames[3].after :])
    fresh = catalog.scan(journal)
    assert fresh.read  # the grown file was read from where the catalog settled
    entry = fresh.entries[fresh.users[0][1][0].rel_path]
    assert entry[catalog.E_FULL][0] == 9 and entry[catalog.E_FULL][8] == []  # no damage left
    catalog.save(journal, fresh.entries)
    assert catalog.check(journal) == []


def test_follow_prints_a_batch_only_whole_and_never_a_torn_one(tmp_path: Path) -> None:
    from dialogctl.disk.locking import UserLock, make_owner

    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", [Message("user", "before", TS)])
    follower = Follower(journal, ["alice"])
    assert follower.poll() == []
    path = _current(root)
    batch = b"\n" + encode_batch(_msgs(4), 2, "sequence")
    frames, _ = find_frames(batch)
    with journal.dialogs_folder("alice") as dialogs, UserLock(dialogs, "alice", make_owner("test", "import"), 1.0):
        with open(path, "ab") as fh:
            fh.write(batch[: frames[1].after])  # the writer holds the user's lock for its whole batch
        assert follower.poll() == [] and follower.poll() == [] and follower.poll() == []  # stopped growing, but locked: waits
        with open(path, "ab") as fh:
            fh.write(b"\n" + batch[frames[1].after :])
    events = follower.poll()
    assert [(e.position, e.message.content) for e in events] == [(i + 1, m.content) for i, m in enumerate(_msgs(4))]
    # A batch cut off for good: once it stops growing and no writer holds the lock, follow goes on after it.
    _kill_mid_batch(journal, root, 2, tag="torn")
    assert follower.poll() == []
    assert follower.poll() == []
    journal.append("alice", [Message("user", "after the crash", TS)])
    events = follower.poll()
    assert [(e.position, e.message.content) for e in events] == [(5, "after the crash")]


def test_follow_started_in_the_middle_of_a_batch_prints_all_of_it_once(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", [Message("user", "before", TS)])
    path = _current(root)
    batch = b"\n" + encode_batch(_msgs(4), 2, "sequence")
    frames, _ = find_frames(batch)
    with open(path, "ab") as fh:
        fh.write(batch[: frames[1].after])
    follower = Follower(journal, ["alice"])
    assert follower.poll() == []  # starts from now: the batch is not whole yet, so it is not "before now"
    with open(path, "ab") as fh:
        fh.write(batch[frames[1].after :])
    assert [e.message.content for e in follower.poll()] == [m.content for m in _msgs(4)]


def test_verify_names_the_torn_batch_and_repair_drops_all_of_it_keeping_the_servers_items(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    journal = _journal(root)
    journal.append("alice", [Message("user", "before", TS)])
    _kill_mid_batch(journal, root, 3)
    server.append(_current(root), [server.message("assistant", "server reply", TS)])
    found = cli("--root", str(root), "verify", "--format", "json")
    assert found.exit_code == 1
    problems = [(f["problem"], f["line"]) for f in json.loads(found.stdout)]
    data = _current(root).read_bytes()
    assert ("torn batch", data.count(b"\n", 0, find_frames(data)[0][1].start) + 1) in problems  # the line of its first record
    detail = next(f for f in json.loads(found.stdout) if f["problem"] == "torn batch")
    assert "only 3 of the 5 records" in detail["detail"] and detail["path"].endswith("current.yaml") and "drop every record" in detail["repair"]
    before = _current(root).read_bytes()
    report = repair(journal)
    assert report.unmended == []
    assert [a.detail for a in report.actions if a.action == "rewrite"] == [
        "kept 2 message(s); left out the 3 record(s) of 1 torn batch(es) and 1 unreadable item(s), kept in quarantine"
    ]  # the unreadable item: the half record the kill left after them
    assert _contents(journal) == ["before", "server reply\n"]  # (the reference's `|` block keeps a final line break)
    quarantined = list((root / "system" / "quarantine").rglob("current.yaml"))
    assert [q.read_bytes() for q in quarantined] == [before]  # every byte of the batch kept there
    assert verify(journal).problems == []
    journal.append("alice", _msgs(5, "again"))  # the retry lands once
    assert _contents(journal) == ["before", "server reply\n"] + [m.content for m in _msgs(5, "again")]


def test_the_archive_of_a_file_ending_in_a_torn_batch_reads_the_same(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = _journal(root)
    journal.append("alice", _msgs(2, "old"))
    _kill_mid_batch(journal, root, 2)
    aid = journal.archive("alice")
    assert aid is not None
    conv = journal.read(ConversationRef("alice", "archive", aid))
    assert [m.content for m in conv.messages] == [m.content for m in _msgs(2, "old")] and conv.damage[0].kind == "torn batch"


# --- the writer -------------------------------------------------------------------------


def test_a_large_batch_is_written_in_pieces_that_read_only_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of about a megabyte (here 1 kB): after every piece but the last, the file reads as before the batch."""
    from dialogctl.fileformat import codec

    monkeypatch.setattr(codec, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(codec.encode_chunks, "__defaults__", (True, 1024))
    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", [Message("user", "before", TS)])
    seen: list[list[str]] = []
    real_write = os.write
    path = str(_current(root))

    def watching_write(fd: int, data: bytes) -> int:
        written = real_write(fd, data)
        if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path):
            seen.append([m.content for m in parse_conversation(Path(path).read_bytes(), "x").messages])
        return written

    monkeypatch.setattr(os, "write", watching_write)
    journal.append("alice", _msgs(200), one_write=True)
    monkeypatch.setattr(os, "write", real_write)
    assert len(seen) > 10
    assert all(contents == ["before"] for contents in seen[:-1])
    assert seen[-1] == ["before"] + [m.content for m in _msgs(200)]


def test_a_failed_batch_never_cuts_back_over_a_servers_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up on the second piece, after a server appended between two pieces: its item stays."""
    from dialogctl.errors import StorageError
    from dialogctl.fileformat import codec

    monkeypatch.setattr(codec.encode_chunks, "__defaults__", (True, 1024))
    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", [Message("user", "before", TS)])
    path = _current(root)
    real_write = os.write
    calls = [0]

    def failing_write(fd: int, data: bytes) -> int:
        if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path):
            calls[0] += 1
            if calls[0] == 2:  # a server appends between our first and second piece
                with open(path, "ab") as fh:
                    fh.write(b"\n" + server.format_item(server.message("user", "server", TS)).encode())
            if calls[0] == 3:
                import errno

                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(StorageError):
        journal.append("alice", _msgs(200), one_write=True)
    monkeypatch.setattr(os, "write", real_write)
    conv = journal.read(ConversationRef("alice", "current"))
    assert [m.content for m in conv.messages] == ["before", "server\n"]  # none of the batch, the server's item kept
    assert conv.damage and conv.damage[0].kind == "torn batch"
    repair(journal)
    assert _contents(journal) == ["before", "server\n"] and verify(journal).problems == []


def test_a_failed_batch_alone_at_the_end_is_cut_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogctl.errors import StorageError
    from dialogctl.fileformat import codec

    monkeypatch.setattr(codec.encode_chunks, "__defaults__", (True, 1024))
    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", [Message("user", "before", TS)])
    path = _current(root)
    before = path.read_bytes()
    real_write = os.write
    calls = [0]

    def failing_write(fd: int, data: bytes) -> int:
        if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path):
            calls[0] += 1
            if calls[0] == 4:
                import errno

                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(StorageError):
        journal.append("alice", _msgs(200), one_write=True)
    monkeypatch.setattr(os, "write", real_write)
    assert path.read_bytes() == before


def test_an_interrupted_batch_is_cut_back_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or a spool that fails to read back) between two pieces: the pieces written are cut back."""
    from collections.abc import Iterator, Sequence

    from dialogctl.fileformat import codec

    monkeypatch.setattr(codec.encode_chunks, "__defaults__", (True, 1024))
    messages = _msgs(200)

    class Interrupted(Sequence[Message]):
        """Read whole once (the check before the lock), then interrupted half-way through the write."""

        def __init__(self) -> None:
            self.reads = 0

        def __len__(self) -> int:
            return len(messages)

        def __getitem__(self, index):  # type: ignore[no-untyped-def]
            if isinstance(index, slice) and index.indices(len(messages)) == (0, len(messages), 1):
                return self  # the whole batch, as a spooled run slices itself
            return messages[index]

        def __iter__(self) -> Iterator[Message]:
            self.reads += 1
            for i, msg in enumerate(messages):
                if self.reads > 1 and i == 150:
                    raise KeyboardInterrupt
                yield msg

    root = tmp_path / "journal"
    journal = _journal(root, maxConversationLength="100000", archiveThreshold="0")
    journal.append("alice", [Message("user", "before", TS)])
    before = _current(root).read_bytes()
    with pytest.raises(KeyboardInterrupt):
        journal.append("alice", Interrupted(), one_write=True)
    assert _current(root).read_bytes() == before


def test_the_catalog_reads_on_from_before_a_torn_batch_and_names_its_damage_as_a_whole_read_does(tmp_path: Path) -> None:
    """Two batches torn in a row, then a server's item: a read from the catalog's settled point equals a fresh one
    (the record the first kill cut is named by knowing the torn batch before it, so reading on never starts after it)."""
    root = tmp_path / "journal"
    rel = "users/us/er/dialogs/current.yaml"
    path = root / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    entry = catalog.read_entry(str(root), rel, None)
    msg = Message("user", "", TS)
    data = b""
    for step in (
        encode_batch([msg, msg], 1, "documents"),
        -2,
        encode_batch([msg, msg, msg], 3, "documents"),
        -2,
        b"- role: user\n  content: |\n    x\n  timestamp: 2024-01-01T00:00:00Z\n",
    ):
        data = data[:step] if isinstance(step, int) else data + (b"\n" if data else b"") + step  # every write on a fresh line
        path.write_bytes(data)
        entry = catalog.read_entry(str(root), rel, entry)
        assert entry == catalog.read_entry(str(root), rel, None)
