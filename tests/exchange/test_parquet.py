"""``export --format parquet -o DIR``: a Hive-partitioned dataset that DuckDB and pyarrow read back exactly.

The journal holds every hostile line of tests/strategies.py (as in
test_consumers.py), times at the edges of the calendar and in other zones, a
server-written message whose timestamp is not a time, and token metadata in
both of its shapes. Runs with a cursor add files and never change old ones;
runs killed at every step of their commit lose nothing and repeat nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from dialogctl.exchange.cursor import message_ids
from dialogctl.exchange.dataset import MANIFEST, NULL_PARTITION
from dialogctl.exchange.formats.parquet import COLUMNS
from dialogctl.models import Message

from .. import reference_writer
from ..conftest import Cli
from ..reliability import faults
from ..samples import hostile_messages, journal_with

MESSAGES = hostile_messages()
HALF = len(MESSAGES) // 2
DUCKDB_TYPES = {"string": "VARCHAR", "bool": "BOOLEAN", "int64": "BIGINT", "timestamp[us, UTC]": "TIMESTAMP WITH TIME ZONE"}
EDGES = [
    Message("user", "first day", "0001-01-01T00:00:00Z"),
    Message("assistant", "last moment", "9999-12-31T23:59:59.999999Z", {"model": "m-1", "tokens": {"prompt": 7, "completion": 5}}),
    Message("user", "late in New York", "2024-03-01T23:30:00-05:00", {"tokens": {"input": 3, "output": 4, "total": 9}}),
    Message("assistant", "naive time", "2024-03-02T10:00:00", {"tokens": 12, "model": "m-2"}),
]


def _rows(dataset: Path) -> list[dict[str, Any]]:
    rel = duckdb.sql(f'SELECT * FROM read_parquet(\'{dataset}/**/*.parquet\', hive_partitioning = true) ORDER BY "user", conversation, "index"')
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def _export(cli: Cli, dataset: Path, *args: str) -> Any:
    result = cli("export", "--all", "--format", "parquet", "-o", str(dataset), *args)
    return result


def _manifest(dataset: Path) -> dict[str, Any]:
    return json.loads((dataset / MANIFEST).read_text(encoding="utf-8"))


def _part_files(dataset: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(dataset)): (p.stat().st_size, p.stat().st_mtime_ns) for p in dataset.rglob("*.parquet")}


@pytest.fixture
def journal(root: Path) -> Path:
    journal_with(root, {("alice", "old"): MESSAGES[:HALF], ("alice", None): MESSAGES[HALF:], ("carol", None): EDGES})
    # A server's message whose timestamp is not a time (they wrote such files): the null partition.
    reference_writer.append(
        Path(reference_writer.dialogs_path(root, "dave")) / "current.yaml", [reference_writer.message("user", "when?", "yesterday afternoon")]
    )
    return root


def test_duckdb_and_pyarrow_read_back_the_exact_schema_and_every_row(journal: Path, cli: Cli, tmp_path: Path) -> None:
    dataset = tmp_path / "lake"
    result = _export(cli, dataset)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # a dataset goes to its folder; stdout stays empty
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{dataset}/**/*.parquet', hive_partitioning = true)").fetchall()
    assert [(name, kind) for name, kind, *_ in described] == [(n, DUCKDB_TYPES[k]) for n, k, _ in COLUMNS] + [("date", "DATE")]
    rows = _rows(dataset)
    expected = [("alice", "current", False, MESSAGES[HALF:]), ("alice", "old", True, MESSAGES[:HALF]), ("carol", "current", False, EDGES)]
    want = [
        (user, name, archived, index, m.role, m.content, m.timestamp, m.metadata, mid)
        for user, name, archived, msgs in expected
        for (index, m), mid in zip(enumerate(msgs), message_ids(user, msgs), strict=True)
    ]
    dave = [r for r in rows if r["user"] == "dave"]
    got = [
        (
            r["user"],
            r["conversation"],
            r["archived"],
            r["index"],
            r["role"],
            r["content"],
            r["timestamp_text"],
            None if r["metadata"] is None else json.loads(r["metadata"]),
            r["message_id"],
        )
        for r in rows
        if r["user"] != "dave"
    ]
    assert got == want
    # Times: UTC, with the UTC day as the partition; the unreadable one is null, in Hive's null partition.
    by_content = {r["content"]: r for r in rows}
    assert str(by_content["late in New York"]["date"]) == "2024-03-02" and by_content["late in New York"]["timestamp"].hour == 4
    assert str(by_content["first day"]["date"]) == "0001-01-01" and str(by_content["last moment"]["date"]) == "9999-12-31"
    assert by_content["last moment"]["timestamp"].microsecond == 999999
    assert str(by_content["naive time"]["date"]) == "2024-03-02"  # a time without a zone is UTC, as everywhere in dialogctl
    assert len(dave) == 1 and dave[0]["timestamp"] is None and dave[0]["date"] is None and dave[0]["timestamp_text"] == "yesterday afternoon"
    assert (dataset / f"date={NULL_PARTITION}").is_dir()
    # Model and tokens, from both shapes of the tokens metadata.
    tokens = {r["content"]: (r["model"], r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) for r in rows if r["user"] == "carol"}
    assert tokens == {
        "first day": (None, None, None, None),
        "last moment": ("m-1", 7, 5, 12),
        "late in New York": (None, 3, 4, 9),
        "naive time": ("m-2", None, None, 12),
    }
    # pyarrow reads the same rows with the same types; the manifest counts every file's rows.
    table = pads.dataset(str(dataset), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == len(rows) == _manifest(dataset)["runs"][0]["rows"]
    assert [(f.name, str(f.type)) for f in table.schema][: len(COLUMNS)] == [(n, k.replace("[us, UTC]", "[us, tz=UTC]")) for n, k, _ in COLUMNS]
    for entry in _manifest(dataset)["runs"][0]["files"]:
        assert pq.ParquetFile(dataset / entry["path"]).metadata.num_rows == entry["rows"]
        assert (dataset / entry["path"]).stat().st_size == entry["bytes"]
    assert sorted(e["path"] for e in _manifest(dataset)["runs"][0]["files"]) == sorted(_part_files(dataset))


def test_cursor_runs_add_files_and_ship_every_message_once(journal: Path, cli: Cli, tmp_path: Path) -> None:
    dataset, cursor = tmp_path / "lake", tmp_path / "lake.cursor"
    assert _export(cli, dataset, "--cursor-file", str(cursor)).exit_code == 0
    first = _part_files(dataset)
    assert _export(cli, dataset, "--cursor-file", str(cursor)).exit_code == 0  # nothing new: a run with no files
    assert _part_files(dataset) == first and len(_manifest(dataset)["runs"]) == 2 and _manifest(dataset)["runs"][1]["rows"] == 0
    for n in range(3):
        assert cli("append", "bob", f"new {n}", "--timestamp", f"2024-05-0{n + 1}T12:00:00Z").exit_code == 0
    assert cli("archive", "carol").exit_code == 0  # moved, not new: not shipped again
    assert _export(cli, dataset, "--cursor-file", str(cursor)).exit_code == 0
    files = _part_files(dataset)
    assert {k: v for k, v in files.items() if k in first} == first  # old files untouched
    assert len(files) == len(first) + 3
    rows = _rows(dataset)
    # Every message once, except the one stamped 9999-12-31: a cursor ships messages once they are in the past.
    assert len(rows) == len({r["message_id"] for r in rows}) == len(MESSAGES) + len(EDGES) - 1 + 1 + 3
    assert "last moment" not in {r["content"] for r in rows}
    manifest = _manifest(dataset)
    assert [run["rows"] for run in manifest["runs"]] == [len(MESSAGES) + len(EDGES) - 1 + 1, 0, 3]
    assert manifest["cursor"] == json.loads(cursor.read_text())


def test_folders_and_options_refused_before_anything_is_written(journal: Path, cli: Cli, tmp_path: Path) -> None:
    assert cli("export", "--all", "--format", "parquet").exit_code == 2  # stdout: a dataset needs -o DIR
    assert cli("export", "--all", "--format", "jsonl", "--by-server").exit_code == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    result = _export(cli, busy)
    assert result.exit_code == 2 and "not a dialogctl dataset" in result.stderr and sorted(os.listdir(busy)) == [".dialogctl-dataset.lock", "notes.txt"]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = _export(cli, tmp_path / "link")
    assert result.exit_code == 6 and "symlink" in result.stderr and os.listdir(tmp_path / "real") == []
    (tmp_path / "file").write_text("x")
    assert _export(cli, tmp_path / "file").exit_code == 2
    dataset = tmp_path / "lake"
    assert _export(cli, dataset).exit_code == 0
    again = _export(cli, dataset)  # a second full run would add every message again
    assert again.exit_code == 2 and "--cursor-file" in again.stderr and len(_manifest(dataset)["runs"]) == 1
    assert _export(cli, dataset, "--by-server").exit_code == 2  # another partitioning
    assert _export(cli, dataset, "--force").exit_code == 0 and len(_manifest(dataset)["runs"]) == 2  # asked for
    (dataset / MANIFEST).write_text("{not json")
    damaged = _export(cli, dataset, "--force")
    assert damaged.exit_code == 2 and MANIFEST in damaged.stderr and (dataset / MANIFEST).read_text() == "{not json"


def test_by_server_partitions_above_the_date(journal: Path, cli: Cli, tmp_path: Path) -> None:
    dataset = tmp_path / "lake"
    result = cli("--set", "serverId=eu/west 1", "export", "--all", "--format", "parquet", "--by-server", "-o", str(dataset))
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in dataset.iterdir() if p.is_dir()] == ["server=eu%2Fwest 1"]
    servers = {row[0] for row in duckdb.sql(f"SELECT DISTINCT server FROM read_parquet('{dataset}/**/*.parquet', hive_partitioning = true)").fetchall()}
    assert servers == {"eu/west 1"}
    assert _manifest(dataset)["partitioning"] == ["server", "date"]


def test_without_pyarrow_the_command_names_the_extra(journal: Path, tmp_path: Path) -> None:
    code = "import sys; sys.modules['pyarrow'] = None; from dialogctl.cli import main; sys.argv[0] = 'dialogctl'; main()"
    args = ["--root", str(journal), "export", "--all", "--format", "parquet", "-o", str(tmp_path / "lake")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "pip install 'dialogctl[parquet]'" in done.stderr, done.stderr
    assert not (tmp_path / "lake").exists()


def test_a_second_run_into_a_busy_dataset_is_exit_4(journal: Path, cli: Cli, tmp_path: Path) -> None:
    import fcntl

    dataset = tmp_path / "lake"
    dataset.mkdir()
    with open(dataset / ".dialogctl-dataset.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = _export(cli, dataset)
    assert result.exit_code == 4 and "another export" in result.stderr


def test_runs_killed_at_every_step_of_the_commit_lose_and_repeat_nothing(journal: Path, tmp_path: Path) -> None:
    """SIGKILL at each rename and fsync of a run (parts into place, manifest, cursor file), then a clean run: every message once."""
    cursor, dataset = tmp_path / "c.json", tmp_path / "lake"
    args = ["--root", str(journal), "export", "--all", "--format", "parquet", "-o", str(dataset), "--cursor-file", str(cursor)]

    def run(rules: list[faults.Rule], trace: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        config = {"rules": [list(r) for r in rules], "trace": str(trace) if trace else None, "fsize": None, "root": str(tmp_path)}
        env = dict(os.environ, **{faults.ENV: json.dumps(config)})
        return subprocess.run([sys.executable, faults.__file__, *args], capture_output=True, env=env, timeout=120)

    def ship(n: int) -> None:
        reference_writer.append(
            Path(reference_writer.dialogs_path(journal, "erin")) / "current.yaml",
            [reference_writer.message("user", f"e{n}", f"2024-06-{1 + n // 24:02d}T{n % 24:02d}:00:00.000Z")],
        )

    assert run([]).returncode == 0
    ship(0)
    trace = tmp_path / "trace"
    assert run([], trace).returncode == 0  # a clean run with one new message, to count its steps
    steps = [line.split()[1:3] for line in trace.read_text().splitlines()]
    commit = [(call, int(nth)) for call, nth in steps if call in ("rename", "fsync")]
    assert sum(1 for call, _ in commit if call == "rename") >= 3  # a part file, the manifest, the cursor file
    shipped, kills = 1, 0
    for k, (call, nth) in enumerate(commit):
        ship(shipped)
        shipped += 1
        for do in ("kill", "kill-after"):
            killed = run([faults.Rule(call, nth, do)])
            # 0: a run after a kill can be shorter (it continues from the manifest's cursor and has nothing to write).
            assert killed.returncode in (-signal.SIGKILL, 0), (call, nth, do, killed.stderr)
            kills += killed.returncode == -signal.SIGKILL
            # Whatever the killed run left is valid: the cursor parses, the manifest parses, engines read the dataset.
            json.loads(cursor.read_text())
            _manifest(dataset)
        clean = run([])
        assert clean.returncode == 0, clean.stderr
        rows = _rows(dataset)
        ids = [r["message_id"] for r in rows]
        assert len(ids) == len(set(ids)), f"a message repeated after a kill at {call} #{nth} (step {k})"
        erin = sorted(r["content"] for r in rows if r["user"] == "erin")  # the servers write "content: |": a final newline
        assert erin == sorted(f"e{n}\n" for n in range(shipped)), f"lost after a kill at {call} #{nth}"
        assert not [p for p in dataset.rglob(".part-*")]
    assert kills >= len(commit)  # most runs were really killed where asked


def test_filters_and_redaction_apply_to_the_dataset(journal: Path, cli: Cli, tmp_path: Path) -> None:
    dataset = tmp_path / "lake"
    cli("append", "carol", "write to me at jane.doe@example.com", "--meta", "model=m-1", "--timestamp", "2024-04-01T00:00:00Z")
    result = _export(cli, dataset, "--model", "m-1", "--redact")
    assert result.exit_code == 0, result.stderr
    rows = _rows(dataset)
    assert [(r["content"], r["model"]) for r in rows] == [("last moment", "m-1"), ("write to me at [REDACTED:email]", "m-1")]
    assert not any("jane.doe" in (r["content"] + (r["metadata"] or "")) for r in _rows(dataset))
