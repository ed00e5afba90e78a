"""``search`` on worker processes against the serial search: the same stdout, stderr and exit code, byte for byte.

Workers start only past :data:`dialogctl.parallel.PARALLEL_BYTES` of files; the
tests lower it to 0 (and the batch size to a file or a few) so that the small
hostile journals here go through real worker processes, and compare every
output format with the serial search (``parallel.workers() == 1``) and with the
same pipeline run in this process (too little to read for workers). The
journals hold what search meets in the wild: dialogctl's own records, a
server's files (the reference writer), damaged files, a folder the layout does
not place, a file over ``maxFileMB``, files and folders that cannot be read.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal, parallel
from dialogctl.fileformat.codec import encode_batch
from dialogctl.models import Message
from dialogctl.views import search as core
from dialogctl.views import search_pipeline

from ..conftest import Cli
from ..reference_writer import append as server_append
from ..reference_writer import dialogs_path, message
from .test_search_fast import FORMATS, hostile_journal

RUNS = [
    ["search", "refund", "-a"],
    ["search", "Zürich 東京", "-a", "-C", "1"],
    ["search", "item", "-a", "-s", "-C", "2"],
    ["search", "-E", "rollback|résumé|データ [0-9]|re(f)und", "-a"],
    ["search", "-E", r"^\W+$", "-a", "-C", "2"],
    ["search", "-E", r"\d+", "-a"],
    ["search", "é", "--since", "2024-01-15T10:00:30Z", "-a"],
    ["search", "item", "--role", "assistant", "--until", "2024-01-16T10:00:00.500Z", "-a", "-C", "1"],
    ["search", "e", "--model", "=cmd|' /C calc'!A0", "-a", "-C", "1"],
    ["search", "e", "--meta", "tokens.prompt=1", "-a"],
    ["search", "no such text anywhere", "-a"],
    ["search", "no such text anywhere", "--role", "user", "-a"],
    ["search", "no such text anywhere", "u3", "u4"],
    ["search", "日本語", "u1", "u2", "srv", "--role", "assistant", "-C", "1"],
    ["search", "refund", "u4", "mixed", "srv", "u1", "-a"],
    ["search", "refund", "u1", "nobody", "u2"],  # an unknown user: the error comes after the users before it
    ["search", "-E", "card|4111|@", "-a", "--redact"],
    ["search", "item", "-a", "--redact", "-C", "1"],
    ["search", "refund", "-a", "--latest", "3"],
]


def _damaged_journal(root: Path) -> Journal:
    """The hostile journal with damage in it, a server's own archive, a folder the layout does not place and a file too large to read."""
    journal = hostile_journal(root)
    u1 = Path(dialogs_path(root, "u1"))
    current = u1 / "current.yaml"
    data = current.read_bytes()
    at = data.index(b"ITEM")
    current.write_bytes(data[:at] + b"item" + data[at + 4 :])  # a record changed after it was written: checksum mismatch
    archive = next((u1 / "archived").iterdir())
    archive.write_bytes(archive.read_bytes()[:-300])  # cut short: a torn batch
    with open(Path(dialogs_path(root, "u2")) / "current.yaml", "ab") as fh:
        fh.write(b"- role: user\n  content: |2-\n    refund torn")  # a torn last record
    srv = Path(dialogs_path(root, "srv2"))
    server_append(srv / "current.yaml", [message("user", f"refund {i} card 4111 1111 1111 1111 a@b.example", f"2024-01-1{i}T10:00:00.000Z") for i in range(5)])
    os.makedirs(srv / "archived")
    os.rename(srv / "current.yaml", srv / "archived" / "2024-01-15.yaml")
    server_append(srv / "current.yaml", [message("assistant", "item refund\n  not: yaml\n- role", "2024-01-17T10:00:00.000Z")])
    misplaced = root / "users" / "zz" / "qq" / "dialogs"  # "zzqq" belongs in zz/qq/zzqq: an unusable user folder, told by the walk
    misplaced.mkdir(parents=True)
    (misplaced / "current.yaml").write_bytes(encode_batch([Message("user", "refund", "2024-01-15T10:00:00.000Z")], 1, "sequence"))
    big = Path(dialogs_path(root, "big"))
    big.mkdir(parents=True)
    (big / "current.yaml").write_bytes(
        encode_batch([Message("user", "refund " + "x" * 600_000, f"2024-01-15T10:00:0{i}.000Z") for i in range(2)], 1, "sequence")
    )
    return journal


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: Any) -> Path:
    root = tmp_path_factory.mktemp("workers") / "j"
    _damaged_journal(root)
    return root


def _runs(cli: Cli, root: Path, fmt: str, runs: list[list[str]]) -> list[tuple[int, str, str]]:
    out = []
    for args in runs:
        result = cli("--root", str(root), "--set", "maxFileMB=1", *args, "--format", fmt)
        out.append((result.exit_code, result.stdout, result.stderr))
    return out


def _fanned(cli: Cli, root: Path, fmt: str, runs: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str]]:
    """Every run on worker processes (every file its own job, then a few files a job) and in this process: as the serial search."""
    with monkeypatch.context() as patched:
        patched.setattr(parallel, "workers", lambda: 1)
        serial = _runs(cli, root, fmt, runs)
    with monkeypatch.context() as patched:
        patched.setattr(parallel, "workers", lambda: 2)
        assert _runs(cli, root, fmt, runs) == serial  # too little for workers: the same work in this process
        patched.setattr(parallel, "PARALLEL_BYTES", 0)
        for batch in (1, 3000):
            patched.setattr(parallel, "BATCH_BYTES", batch)
            for args, got, want in zip(runs, _runs(cli, root, fmt, runs), serial, strict=True):
                assert got == want, (args, batch)
    return serial


@pytest.mark.parametrize("fmt", FORMATS)
def test_workers_give_the_serial_output_on_a_hostile_damaged_journal(damaged: Path, cli: Cli, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _fanned(cli, damaged, fmt, RUNS, monkeypatch)
    codes = [code for code, _, _ in serial]
    assert 5 in codes and 1 in codes and 3 in codes  # damage said (exit 5), nothing found (1), the unknown user (3)
    every = "".join(err for _, _, err in serial)
    for said in ("checksum mismatch", "torn batch", "unusable user folder", "file too large", "redacted"):
        assert said in every, said


@pytest.mark.parametrize("fmt", ["jsonl", "table"])
def test_workers_give_the_serial_output_with_the_saved_catalog(damaged: Path, cli: Cli, fmt: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a saved catalog, files are ruled out and their damage said from it: in the serial search's order too."""
    import shutil

    root = tmp_path / "j"
    shutil.copytree(damaged, root)
    assert cli("--root", str(root), "--set", "maxFileMB=1", "stats").exit_code == 5  # saves the catalog
    _fanned(cli, root, fmt, RUNS, monkeypatch)


@pytest.mark.parametrize("tree", ["v1-broken", "v1-after-cleanup", "v3-sessions", "v1-short-ids"])
def test_workers_give_the_serial_output_on_the_fixture_trees(fixture_tree: Any, cli: Cli, tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fixture_tree(tree)
    runs = [["search", "the", "-a", "-C", "1"], ["search", "-E", r"(?i)hello|thanks|\d{2}", "-a"], ["search", "refund", "--role", "user", "-a"]]
    for fmt in ("jsonl", "csv"):
        _fanned(cli, root, fmt, runs, monkeypatch)


def test_files_and_folders_that_cannot_be_read_are_told_in_the_serial_order(damaged: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be opened is named at the end and the search goes on; a read that fails ends it, after the files before it."""
    import shutil

    from dialogctl.disk import fileops
    from dialogctl.disk.handle import FolderHandle
    from dialogctl.errors import storage_error

    root = tmp_path / "j"
    shutil.copytree(damaged, root)
    real_open, real_read_all = FolderHandle.open_read, fileops.read_all

    def refusing_open(self: FolderHandle, name: str) -> int | None:
        if "/u2/" in self.path + "/" or name == "2024-01-15.yaml":
            raise storage_error(OSError(errno.EACCES, os.strerror(errno.EACCES)), "open", self.child_path(name))
        return real_open(self, name)

    def failing_read_all(fd: int, *args: Any) -> bytes:
        data = real_read_all(fd, *args)
        if b"not: yaml" in data:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return data

    monkeypatch.setattr(FolderHandle, "open_read", refusing_open)  # worker processes are forked with them
    runs = [["search", "refund", "-a"], ["search", "item", "-a", "-C", "1"], ["search", "e", "u1", "u2", "u3", "-a"]]
    serial = _fanned(cli, root, "jsonl", runs, monkeypatch)
    assert [code for code, _, _ in serial] == [6, 6, 6] and all("Permission denied" in err for _, _, err in serial)
    monkeypatch.setattr(fileops, "read_all", failing_read_all)
    serial = _fanned(cli, root, "jsonl", runs, monkeypatch)
    assert serial[0][0] == 6 and "Input/output error" in serial[0][2] and serial[0][1]  # what came before the failed read was printed


def test_the_library_stream_gives_the_hits_damage_and_unreadable_of_search(damaged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogctl.times import parse_timestamp
    from dialogctl.views.filters import MessageFilter

    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
    since = MessageFilter(since=parse_timestamp("2024-01-15T10:00:30Z"))
    for pattern, regex, kw in [("refund", False, {"include_archives": True}), (r"\w+", True, {"context": 2}), ("é", False, {"selection": since})]:
        m = core.matcher(pattern, regex)
        serial = Journal.open(str(damaged), maxFileMB=1)
        want = list(core.search(serial, m, **kw))
        fanned = Journal.open(str(damaged), maxFileMB=1)
        got = list(search_pipeline.stream(fanned, m, **kw))
        assert (got, fanned.damage, fanned.unreadable) == (want, serial.damage, serial.unreadable)
        assert want and serial.damage
