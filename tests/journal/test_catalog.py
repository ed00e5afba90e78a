"""The catalog gives exactly what a full re-read gives, whatever happened to the files.

Each test changes the journal in one of the ways journals change (appends,
archives, restores, cleanups, hand edits, truncation, several writers at
once) and compares the catalog's summaries with summaries computed by reading
every file from scratch. Other tests check what it reads (only what changed),
that a torn or foreign catalog is rebuilt, and that dry runs write nothing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl import Journal, parallel
from dialogctl.fileformat.codec import encode_batch
from dialogctl.journal import catalog
from dialogctl.models import ConversationSummary, Message
from dialogctl.times import parse_timestamp

from ..conftest import TREES, Cli, copy_tree
from ..strategies import messages as any_message

T0 = "2024-03-01T10:00:00.000Z"


def _journal(root: Path, **settings: str) -> Journal:
    return Journal.open(str(root), **settings)


def _msg(i: int, role: str = "user", day: int = 1, meta: dict[str, object] | None = None) -> Message:
    return Message(role, f"message {i}\nsecond line", f"2024-03-{day:02d}T10:00:{i % 60:02d}.000Z", meta)


def reread(journal: Journal) -> tuple[dict[str, ConversationSummary], list[str]]:
    """Every file summarised from scratch, and the damage reported, the slow and sure way."""
    journal.damage.clear()
    out = {}
    for user in journal.users():
        for f in journal.conversation_files(user):
            out[f.rel_path] = catalog.summarize(journal.read(f.ref, missing_ok=True))
    damage = sorted(map(str, journal.damage))
    journal.damage.clear()
    return out, damage


def via_catalog(journal: Journal, save: bool = True) -> tuple[dict[str, ConversationSummary], list[str]]:
    journal.damage.clear()
    out = {}
    for _user, found in catalog.summaries(journal, save_learned=save):
        for s in found:
            out[journal.rel_path(s.ref)] = s
    damage = sorted(map(str, journal.damage))
    journal.damage.clear()
    return out, damage


def assert_same(journal: Journal) -> None:
    expected = reread(journal)
    assert via_catalog(journal) == expected  # refreshing (and saving) the catalog
    assert via_catalog(journal) == expected  # answering from the saved catalog


def _path(journal: Journal, rel: str) -> Path:
    return Path(journal.root) / rel


def test_appends_are_read_from_where_the_last_frame_ended(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archiveThreshold="0")
    journal.append("alice", [_msg(i, meta={"model": "m1", "tokens": {"prompt": 2, "completion": 3}}) for i in range(5)])
    journal.append("bob", [_msg(1)])
    assert_same(journal)
    assert catalog.scan(journal).read == []  # nothing changed: no file is opened
    journal.append("alice", [_msg(9, "assistant", day=2, meta={"model": "m2", "tokens": 7})])
    (Path(journal.root) / "system" / "catalog.log").unlink()  # without the delta log (test_catalog_delta.py) a grown file is read
    result = catalog.scan(journal)
    assert result.read == ["users/al/ic/e/dialogs/current.yaml"]
    alice = result.entries["users/al/ic/e/dialogs/current.yaml"]
    assert alice == catalog.read_entry(journal.root, "users/al/ic/e/dialogs/current.yaml", None)
    assert_same(journal)
    summary = next(s for user, found in catalog.summaries(journal) for s in found if user == "alice")
    assert summary.messages == 6 and summary.roles == {"user": 5, "assistant": 1}
    assert summary.models == {"m1": 5, "m2": 1} and summary.tokens == 5 * 5 + 7 and summary.token_messages == 6
    assert summary.days == {"2024-03-01": 5, "2024-03-02": 1}


def test_archive_and_restore_keep_summaries_without_reading(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archiveThreshold="0")
    journal.append("alice", [_msg(i) for i in range(4)])
    assert_same(journal)
    archive_id = journal.archive("alice", archive_id="first")
    assert archive_id == "first"
    result = catalog.scan(journal)
    assert result.read == ["users/al/ic/e/dialogs/current.yaml"]  # the new empty file; the archive moved with its summary
    assert_same(journal)
    journal.append("alice", [_msg(7, day=3)])
    journal.restore("alice", "first")
    assert_same(journal)
    journal.append("alice", [_msg(8, day=4)])  # an archive made by threshold, too
    _journal(tmp_path / "j", archiveThreshold="3").append("alice", [_msg(i, day=5) for i in range(5)])
    assert_same(journal)


def test_cleanup_trims_and_removals(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="0")
    journal.append("old", [Message("user", "x", "2020-01-01T00:00:00.000Z")])
    journal.append("mixed", [Message("user", "x", "2020-01-01T00:00:00.000Z"), Message("user", "y", "2099-01-01T00:00:00.000Z")])
    assert_same(journal)
    result = cli("--root", str(root), "cleanup", "--max-inactive", "365d", "--max-age", "400d", "--yes")
    assert result.exit_code == 0, result.stderr
    assert_same(journal)
    assert sorted(via_catalog(journal)[0]) == ["users/mi/xe/d/dialogs/current.yaml"]


def test_external_edits_truncation_and_rewrites(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archiveThreshold="0")
    journal.append("alice", [_msg(i) for i in range(6)])
    assert_same(journal)
    path = _path(journal, "users/al/ic/e/dialogs/current.yaml")
    data = path.read_bytes()
    # Same size, different bytes, in place (an editor that keeps the inode).
    with open(path, "r+b") as fh:
        fh.seek(data.index(b"message 2"))
        fh.write(b"massage 2")
    assert_same(journal)
    # Grown after an edit before the settled offset: the checksum of the settled prefix catches it.
    with open(path, "r+b") as fh:
        fh.seek(data.index(b"message 5"))
        fh.write(b"massage 5")
    with open(path, "ab") as fh:
        fh.write(encode_batch([_msg(50)], 7, "documents"))
    assert_same(journal)
    # Truncated in the middle of a record: a torn tail, reported like a read reports it.
    with open(path, "r+b") as fh:
        fh.truncate(len(data) - 30)
    assert_same(journal)
    assert via_catalog(journal)[1]
    # Appending after the torn tail, then reference-style text by hand.
    journal.append("alice", [_msg(60)])
    assert_same(journal)
    with open(path, "ab") as fh:
        fh.write(b"---\nrole: user\ncontent: |\n  by hand\ntimestamp: 2024-03-09T00:00:00.000Z\n")
    assert_same(journal)
    journal.append("alice", [_msg(61)])
    assert_same(journal)
    # Rewritten through a new inode, and deleted.
    path.write_bytes(encode_batch([_msg(1)], 1, "sequence"))
    assert_same(journal)
    path.unlink()
    assert_same(journal)


@pytest.mark.parametrize("where", ["first item", "middle", "last server item"])
def test_an_edit_in_place_then_an_append_is_never_hidden(where: str, tmp_path: Path, cli: Cli) -> None:
    """A server's items, then dialogctl's; an assistant's tokens and a role changed in place (same inode, same size), then one append."""
    from .. import reference_writer

    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="0")
    items = [
        {
            "role": role,
            "content": f"item {i}",
            "timestamp": f"2024-03-01T10:00:{i:02d}.000Z",
            **({"metadata": {"model": "m", "tokens": 10}} if role == "assistant" else {}),
        }
        for i in range(40)
        for role in ["assistant" if i % 2 else "user"]
    ]
    path = Path(reference_writer.dialogs_path(root, "alice")) / "current.yaml"
    path.parent.mkdir(parents=True)
    reference_writer.append(path, items)
    journal.append("alice", [_msg(50, meta={"model": "m", "tokens": 1})])  # framed: the catalog settles after it
    before = cli.json("--root", str(root), "stats", "-f", "json")
    assert before["totalTokens"] == 201 and before["messagesByRole"] == {"assistant": 20, "user": 21}
    data = path.read_bytes()
    index = {"first item": 1, "middle": 19, "last server item": 39}[where]
    item = data.index(f"item {index}\n".encode())
    tokens = data.index(b"tokens: 10", item)
    role = data.rindex(b"role: assistant", 0, item)
    with open(path, "r+b") as fh:  # an editor that keeps the inode and the size
        fh.seek(tokens)
        fh.write(b"tokens: 99")
        fh.seek(role)
        fh.write(b"role: assistanT")
    assert path.stat().st_size == len(data)
    journal.append("alice", [_msg(51, meta={"model": "m", "tokens": 1})])
    after = cli.json("--root", str(root), "stats", "-f", "json")
    assert after["totalTokens"] == 201 - 10 + 99 + 1
    assert after["messagesByRole"] == {"assistanT": 1, "assistant": 19, "user": 22}
    assert_same(journal)


def test_an_edit_that_sets_the_time_back_is_seen_by_rescan_and_verify(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    from .. import reference_writer

    items = [{"role": "assistant", "content": f"item {i}", "timestamp": "2024-03-01T10:00:00.000Z", "metadata": {"tokens": 10}} for i in range(3)]
    path = Path(reference_writer.dialogs_path(root, "alice")) / "current.yaml"
    path.parent.mkdir(parents=True)
    reference_writer.append(path, items)
    assert cli.json("--root", str(root), "stats", "-f", "json")["totalTokens"] == 30
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"tokens: 10", b"tokens: 11", 1))  # same inode, same size...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old modification time: made to look unchanged
    assert cli.json("--root", str(root), "stats", "-f", "json")["totalTokens"] == 30  # the documented blind spot
    checked = cli("--root", str(root), "verify", "-f", "json")
    assert checked.exit_code == 1 and "catalog out of step" in checked.stdout  # verify keeps comparing
    assert cli.json("--root", str(root), "stats", "--rescan", "-f", "json")["totalTokens"] == 31
    assert cli.json("--root", str(root), "stats", "-f", "json")["totalTokens"] == 31  # and the rebuilt catalog is saved


@pytest.mark.parametrize("tree", TREES)
def test_reference_trees_match_a_full_reread(tree: str, tmp_path: Path) -> None:
    root = copy_tree(tree, tmp_path)
    journal = _journal(root, archiveThreshold="0")
    assert_same(journal)
    user = next(journal.users())
    journal.append(user, [_msg(1)])  # framed records after the reference's own items
    assert_same(journal)
    journal.append(user, [_msg(2)])
    assert_same(journal)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.lists(any_message(), min_size=1, max_size=3).map(lambda ms: ("append", ms)),
            st.integers(1, 200).map(lambda n: ("cut", n)),
            st.sampled_from([b"- role: user\n  content: |\n    x\n  timestamp: 2024-01-01T00:00:00Z\n", b"---\n", b"garbage: [\n"]).map(lambda b: ("raw", b)),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(["documents", "sequence"]),
)
def test_growing_a_file_any_way_reads_like_from_scratch(tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, object]], form: str) -> None:
    """Incremental entries equal from-scratch entries after any mix of appends, cuts and foreign text."""
    root = tmp_path_factory.mktemp("grow")
    rel = "users/us/er/dialogs/current.yaml"
    path = root / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    entry = catalog.read_entry(str(root), rel, None)
    n = 0
    for kind, value in steps:
        data = path.read_bytes()
        if kind == "append":
            batch: list[Message] = value  # type: ignore[assignment]
            prefix = b"\n" if data and not data.endswith(b"\n") else b""
            path.write_bytes(data + prefix + encode_batch(batch, n + 1, form))  # type: ignore[arg-type]
            n += len(batch)
        elif kind == "cut":
            path.write_bytes(data[: max(0, len(data) - int(value))])  # type: ignore[call-overload]
        else:
            path.write_bytes(data + value)  # type: ignore[operator]
        entry = catalog.read_entry(str(root), rel, entry)
        assert entry == catalog.read_entry(str(root), rel, None)


def test_parallel_scan_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_tree("v1-broken", tmp_path)
    journal = _journal(root, archiveThreshold="0")
    for i in range(30):
        journal.append(f"user-{i}", [_msg(j) for j in range(i % 5 + 1)])
    serial = catalog.scan(journal, saved={}, use_cores=False)
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    fanned = catalog.scan(journal, saved={}, use_cores=True)
    assert fanned.entries == serial.entries and fanned.read == serial.read
    assert list(fanned.entries) == list(serial.entries)
    # Files that grew are read from where they were summarised, with the same result as a full read.
    for i in range(0, 30, 2):
        journal.append(f"user-{i}", [_msg(40 + j) for j in range(3)])
    grown = catalog.scan(journal, saved=serial.entries, use_cores=False)
    assert grown.entries == catalog.scan(journal, saved={}, use_cores=False).entries
    assert len(grown.read) == 15


def test_torn_or_foreign_catalog_is_rebuilt(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archiveThreshold="0")
    journal.append("alice", [_msg(i) for i in range(3)])
    assert_same(journal)
    saved = tmp_path / "j" / "system" / "catalog.bin"
    good = saved.read_bytes()
    for bad in (good[: len(good) // 2], b"something else entirely", good[:-1] + bytes([good[-1] ^ 1]), b""):
        saved.write_bytes(bad)
        assert catalog.load(journal.root) == {}
        assert_same(journal)
        assert saved.read_bytes() == good  # rebuilt, to the same bytes
    assert catalog.check(journal) == []
    saved.write_bytes(good[:-5])
    assert [p.problem for p in catalog.check(journal)] == ["torn or foreign catalog; it will be rebuilt"]


def test_check_finds_an_entry_that_lies(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j", archiveThreshold="0")
    journal.append("alice", [_msg(i) for i in range(3)])
    entries = catalog.scan(journal).entries
    rel = "users/al/ic/e/dialogs/current.yaml"
    entries[rel][catalog.E_FULL][0] = 99  # claims 99 messages for the same bytes
    assert catalog.save(journal, entries)
    assert catalog.check(journal) == [catalog.CatalogProblem(rel, "catalog summary differs from the file")]


def test_dry_run_saves_nothing_and_unwritable_journals_still_answer(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root, archiveThreshold="0")
    journal.append("alice", [Message("user", "x", "2020-01-01T00:00:00.000Z")])
    result = cli("--root", str(root), "cleanup", "--dry-run", "--max-age", "1d", "--format", "json")
    assert result.exit_code == 0 and not (root / "system").exists()
    # A journal where the catalog cannot be written: stats still reads the files.
    (root / "system").write_bytes(b"")
    stats = cli.json("--root", str(root), "stats", "--format", "json")
    assert stats["totalMessages"] == 1
    assert catalog.save(journal, {}) is False


def test_damage_is_reported_from_the_catalog_as_from_the_files(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-broken", tmp_path)
    cold = cli("--root", str(root), "stats", "--format", "json")
    warm = cli("--root", str(root), "stats", "--format", "json")
    assert cold.exit_code == warm.exit_code == 5
    assert cold.stdout == warm.stdout and cold.stderr == warm.stderr
    assert catalog.scan(_journal(root)).read == []


def _writer(root: str, number: int, count: int) -> None:
    journal = Journal.open(root, archiveThreshold="7", lockTimeoutMs="60000")
    for i in range(count):
        journal.append(f"w{number % 2}", [_msg(i, meta={"model": f"m{number}", "tokens": i})])


def test_concurrent_writers_and_scans(tmp_path: Path) -> None:
    """Scans (which save the catalog) racing writers that append and archive: the end state still matches."""
    root = str(tmp_path / "j")
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(root, n, 60)) for n in range(3)]
    for w in writers:
        w.start()
    journal = _journal(Path(root))
    scans = 0
    while any(w.is_alive() for w in writers) or scans < 3:
        if os.path.isdir(root):
            via_catalog(journal)
            scans += 1
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert scans >= 3
    assert_same(journal)
    totals = sum(s.messages for s in via_catalog(journal)[0].values())
    assert totals == 3 * 60


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 1)), st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", ""]), st.sampled_from(["T", " "]), st.booleans())
def test_days_are_utc_days(moment: datetime, zone: str, sep: str, millis: bool) -> None:
    from datetime import UTC

    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (".123" if millis else "") + zone
    tally = catalog.Tally()
    tally.add([Message("user", "x", text)])
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert tally.days == {parsed.astimezone(UTC).date().isoformat(): 1}


def test_ctrl_c_stops_the_workers_quietly(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the parent stops, the workers leave without a word."""
    import signal
    import subprocess
    import sys
    import time

    script = "import time\nfrom dialogctl import parallel\nprint('started', flush=True)\nfor _ in parallel.ordered(time.sleep, [0.2] * 1000, 2, 4): pass\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert "ForkPoolWorker" not in err and err.count("Traceback") == 1


def test_files_moved_while_a_folder_is_listed_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive or cleanup in another process moves files between our listing of a folder and our look at them."""
    from dialogctl.disk import storage
    from dialogctl.errors import NotFound

    journal = _journal(tmp_path / "j", archiveThreshold="0")
    journal.append("alice", [_msg(1)])
    journal.archive("alice")
    journal.append("alice", [_msg(2)])
    assert [f.ref.kind for f in journal.conversation_files("alice")] == ["current", "archive"]
    real_entries, real_open_child = storage.Folder.entries, storage.Folder.open_child

    class Moved:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self.name, self._entry = entry.name, entry

        def is_file(self, follow_symlinks: bool = True) -> bool:
            return self._entry.is_file(follow_symlinks=follow_symlinks)

        def is_dir(self, follow_symlinks: bool = True) -> bool:
            return self._entry.is_dir(follow_symlinks=follow_symlinks)

        def stat(self, follow_symlinks: bool = True) -> os.stat_result:
            raise FileNotFoundError(2, "No such file or directory")

    def entries(self: storage.Folder) -> Iterator[object]:
        for entry in real_entries(self):
            yield Moved(entry) if entry.name == "current.yaml" else entry

    def open_child(self: storage.Folder, name: str) -> storage.Folder:
        if name == "archived":
            raise NotFound(f"{name} does not exist")
        return real_open_child(self, name)

    monkeypatch.setattr(storage.Folder, "entries", entries)
    assert [f.ref.kind for f in journal.conversation_files("alice")] == ["archive"]
    monkeypatch.setattr(storage.Folder, "open_child", open_child)
    assert journal.conversation_files("alice") == []
    assert [user for user, _ in journal.walk()] == ["alice"]
