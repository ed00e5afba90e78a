"""``parquet``: a Hive-partitioned Parquet dataset (``-o DIR``), written with pyarrow (the ``parquet`` extra).

Every file has the same schema (:data:`COLUMNS`), so DuckDB, ClickHouse,
Trino, Spark and BigQuery read every run alike. The partition columns are
folders, not columns in the files: ``date`` (the message's UTC day; a
timestamp that cannot be read goes to Hive's null partition) and, when asked,
``server`` above it. Rows are buffered per partition up to
:data:`BUFFER_ROWS` rows or :data:`BUFFER_BYTES` of text in all, then written
as row groups, so memory stays flat however large the journal; at most
:data:`MAX_OPEN` part files are open at once (a partition whose file was
closed gets another part file later in the run).

Why pyarrow and not DuckDB (both measured in ``bench/parquet.py``'s notes):
pyarrow takes row groups as they come, from Python lists, with bounded
buffers; DuckDB's partitioned ``COPY`` needs the whole selection staged first
(a temporary JSONL file as large as the export) or an insert per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import IO, TYPE_CHECKING, Any, cast

from ...errors import InvalidInput
from ...models import Message
from ...times import parse_timestamp
from ...usage import model_of, token_counts
from ..outputfile import OutputFile
from ..records import ExportFormat, ExportOptions, ExportResult, Formatted, dumps
from ..selection import Selected

if TYPE_CHECKING:  # the registry imports every format at start-up: the dataset's modules load only when one is written
    from ..dataset import OutputDataset, PartFile

SCHEMA_VERSION = "1"
# Column, Arrow type, nullable. Written in this order in every file.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("user", "string", False),
    ("conversation", "string", False),
    ("archived", "bool", False),
    ("index", "int64", False),
    ("role", "string", False),
    ("content", "string", False),
    ("timestamp", "timestamp[us, UTC]", True),  # null when the text is not a time
    ("timestamp_text", "string", False),  # as written in the journal
    ("model", "string", True),
    ("prompt_tokens", "int64", True),
    ("completion_tokens", "int64", True),
    ("total_tokens", "int64", True),
    ("metadata", "string", True),  # the message's metadata as a JSON object, null when it has none
    ("message_id", "string", False),
)
BUFFER_ROWS = 20_000  # rows held before the largest partitions are written as row groups
BUFFER_BYTES = 16 * 1024 * 1024  # content held before the same
MAX_OPEN = 16  # part files open at once
COMPRESSION = "zstd"


def load_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``; without them, exit 2 naming the extra."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InvalidInput("the parquet format needs pyarrow, which is not installed", hint="pip install 'dialogctl[parquet]'") from None
    return pyarrow, pyarrow.parquet


def arrow_schema(pa: Any) -> Any:
    types = {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64(), "timestamp[us, UTC]": pa.timestamp("us", tz="UTC")}
    fields = [pa.field(name, types[kind], nullable=nullable) for name, kind, nullable in COLUMNS]
    return pa.schema(fields, metadata={b"dialogctl.schema": SCHEMA_VERSION.encode()})


class _Buffer:
    """One partition's rows not yet written, column by column."""

    __slots__ = ("columns", "rows", "size")

    def __init__(self) -> None:
        self.columns: list[list[Any]] = [[] for _ in COLUMNS]
        self.rows = 0
        self.size = 0


class _Partition:
    __slots__ = ("open", "part", "rows", "writer")

    def __init__(self) -> None:
        self.part: PartFile | None = None
        self.writer: Any = None
        self.rows = 0
        self.open = False


class ParquetWriter:
    """Rows in, row groups out: per-partition buffers and part files, bounded in memory and open files."""

    def __init__(self, dataset: OutputDataset, fixed: tuple[str, ...]) -> None:
        self.pa, self.pq = load_pyarrow()
        self.schema = arrow_schema(self.pa)
        self.dataset = dataset
        self.fixed = fixed  # the partition folders above date (server=...)
        self.buffers: dict[str | None, _Buffer] = {}
        self.partitions: dict[str | None, _Partition] = {}
        self.buffered = 0
        self.buffered_bytes = 0
        self.open_order: list[str | None] = []  # least recently written first

    def add(self, conv: Selected, index: int, msg: Message, mid: str) -> None:
        moment = parse_timestamp(msg.timestamp)
        utc = moment.astimezone(UTC) if moment is not None else None
        day = utc.date().isoformat() if utc is not None else None
        buffer = self.buffers.get(day)
        if buffer is None:
            buffer = self.buffers[day] = _Buffer()
        prompt, completion, total = token_counts(msg.metadata)
        meta = msg.metadata
        row = (
            conv.ref.user,
            conv.ref.name,
            conv.ref.archived,
            index,
            msg.role,
            msg.content,
            utc,
            msg.timestamp,
            model_of(meta),
            prompt,
            completion,
            total,
            None if meta is None else dumps(meta),  # as jsonl, csv and sqlite write it
            mid,
        )
        for column, value in zip(buffer.columns, row, strict=True):
            column.append(value)
        buffer.rows += 1
        size = len(msg.content) + (len(row[12]) if row[12] else 0)
        buffer.size += size
        self.buffered += 1
        self.buffered_bytes += size
        if self.buffered >= BUFFER_ROWS or self.buffered_bytes >= BUFFER_BYTES:
            self._spill()

    def _spill(self) -> None:
        """Write the largest buffers until half the budget is free (small partitions keep gathering rows)."""
        for day in sorted(self.buffers, key=lambda d: self.buffers[d].rows, reverse=True):
            self._write(day)
            if self.buffered < BUFFER_ROWS // 2 and self.buffered_bytes < BUFFER_BYTES // 2:
                break

    def _write(self, day: str | None) -> None:
        buffer = self.buffers.pop(day)
        self.buffered -= buffer.rows
        self.buffered_bytes -= buffer.size
        partition = self.partitions.get(day)
        if partition is None:
            partition = self.partitions[day] = _Partition()
        if not partition.open:
            if len(self.open_order) >= MAX_OPEN:
                self._close(self.open_order[0])
            from ..dataset import partition_folder

            part = self.dataset.new_part((*self.fixed, partition_folder("date", day)))
            partition.part, partition.rows, partition.open = part, 0, True
            partition.writer = self.pq.ParquetWriter(part.stream, self.schema, compression=COMPRESSION)
        else:
            self.open_order.remove(day)
        self.open_order.append(day)
        partition.writer.write_batch(self._batch(buffer), row_group_size=buffer.rows)
        partition.rows += buffer.rows

    def _batch(self, buffer: _Buffer) -> Any:
        pa = self.pa
        arrays = []
        for (name, _, _), field, values in zip(COLUMNS, self.schema, buffer.columns, strict=True):
            try:
                arrays.append(pa.array(values, type=field.type))
            except (UnicodeEncodeError, pa.ArrowException) as exc:
                raise InvalidInput(f"column {name}: a value Parquet cannot hold ({exc}); nothing was written") from None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _close(self, day: str | None) -> None:
        partition = self.partitions[day]
        partition.writer.close()
        assert partition.part is not None
        partition.part.finish(partition.rows)
        partition.open = False
        partition.writer = partition.part = None
        self.open_order.remove(day)

    def finish(self) -> None:
        for day in list(self.buffers):
            self._write(day)
        for day in list(self.open_order):
            self._close(day)

    def abandon(self) -> None:
        """A failed run: drop the open writers without the footer they would try to write (the dataset removes their files)."""
        for partition in self.partitions.values():
            if partition.writer is not None:
                partition.writer.is_open = False  # pyarrow's __del__ would close it: a write into a closed or full file
                partition.writer = None


def write_parquet(dataset: OutputDataset, conversations: Iterable[Selected], fixed: tuple[str, ...] = ()) -> ExportResult:
    """Write the selection into ``dataset`` (the files are renamed into place when the dataset is committed)."""
    writer = ParquetWriter(dataset, fixed)
    count = messages = 0
    try:
        for conv in conversations:
            count += 1
            for (index, msg), mid in zip(conv.messages, conv.id_list(), strict=True):
                writer.add(conv, index, msg, mid)
            messages += len(conv.messages)
        writer.finish()
    except BaseException:
        writer.abandon()
        raise
    return ExportResult(count, messages, {})


def _write(target: IO[str] | OutputFile | OutputDataset, conversations: Iterable[Selected | Formatted], options: ExportOptions) -> ExportResult:
    from ..dataset import OutputDataset

    assert isinstance(target, OutputDataset)  # needs_folder: the registry refuses anything else
    return write_parquet(target, cast(Iterable[Selected], conversations), target.fixed)


PARQUET = ExportFormat(
    "parquet",
    "a Hive-partitioned dataset folder, date=YYYY-MM-DD/, the parquet extra",
    _write,
    needs_folder=True,
    requires=("pyarrow", "parquet"),
)
