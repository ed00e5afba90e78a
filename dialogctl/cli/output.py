"""One ``--format`` option for every command that prints data, and its writers.

Records are streamed: a JSON array is written element by element, JSONL one
object per line, CSV/TSV one row per record (TSV as IANA's
text/tab-separated-values: no quoting, and tab, newline, carriage return and
backslash written ``\\t`` ``\\n`` ``\\r`` ``\\\\``, so every record is one line of
fields split by tabs); an empty result is ``[]`` in JSON
and nothing (CSV: just the header) otherwise. The shape of machine output never
depends on whether stdout is a terminal; on one, control and bidi characters are
shown escaped (:func:`stdout_for`). ``table`` is for people: Rich on a
terminal, plain aligned columns in a pipe (imported only when used).

A command whose data is one object (``stats``) prints it as a JSON object, one
JSONL line or key/value rows for people; CSV and TSV do not fit it, and asking
for them is a usage error (:func:`object_format`), never silently ignored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import IO, Annotated, Any, NamedTuple, Optional

import typer

from .state import CliState


class Format(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"


FormatOption = Annotated[
    Optional[Format],
    typer.Option(
        "--format",
        "-f",
        help="Output format: table (default), json (an array of records, [] when none; a one-object command: that object), jsonl, csv or tsv (one line per record, no quoting; tab, newline, CR and backslash as \t \n \r \\).",
        case_sensitive=False,
        show_default=False,
    ),
]


OBJECT_FORMATS = (Format.table, Format.json, Format.jsonl)


def object_format(fmt: Format | None, command: str, hint: str | None = None) -> Format:
    """The format for a command whose data is one object: a usage error for csv and tsv (``hint``: how to get rows)."""
    chosen = fmt or Format.table
    if chosen not in OBJECT_FORMATS:
        from ..errors import InvalidInput

        raise InvalidInput(f"'{command}' prints one object, which --format {chosen.value} cannot carry; use table, json or jsonl", hint=hint)
    return chosen


class Column(NamedTuple):
    key: str  # the field name in json/jsonl/csv
    header: str  # the table heading
    kind: str = "text"  # text, id, name (never cut), count, bytes, time, bool, json
    in_table: bool = True  # False: a field of the machine formats only (the table's title says it)
    drop: int = 0  # on too narrow a terminal, columns with a higher rank are dropped first (see dialogctl.cli.fit)


# Where a message sits and who wrote it: the leading columns of every per-message listing (show, search).
PLACE_COLUMNS = [
    Column("user", "User", "id"),
    Column("conversation", "Conversation", "id"),
    Column("archived", "Archived", "bool"),
    Column("index", "#", "count"),
    Column("timestamp", "Time"),
    Column("role", "Role"),
]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def stdout_for(fmt: Format) -> IO[str]:
    """stdout for a machine format: exact bytes in a file or a pipe; on a terminal, control and bidi
    characters escaped (:func:`dialogctl.cli.render.for_people`; json and jsonl stay valid JSON of the same values)."""
    if not sys.stdout.isatty():
        return sys.stdout
    from .render import for_people

    return for_people(sys.stdout, json=fmt in (Format.json, Format.jsonl))


def emit_records(
    state: CliState,
    fmt: Format | None,
    columns: list[Column],
    records: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
    empty: str | None = None,
) -> int:
    """Write records in the chosen format; return how many were written."""
    fmt = fmt or Format.table
    if fmt in (Format.json, Format.jsonl):
        return emit_json_texts(fmt, (dumps(dict(record)) for record in records))
    count = 0
    out = stdout_for(fmt)
    if fmt is Format.tsv:
        out.write(tsv_line([c.key for c in columns]))
        for record in records:
            out.write(tsv_line([cell_text(record.get(c.key)) for c in columns]))
            count += 1
    elif fmt is Format.csv:
        import csv

        writer = csv.writer(out, dialect="excel", lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for record in records:
            writer.writerow([cell_text(record.get(c.key)) for c in columns])
            count += 1
    else:
        from . import render

        rows = list(records)
        count = len(rows)
        if rows:
            render.table(state, columns, rows, title=title)
        elif empty:
            state.say(empty)
    out.flush()
    return count


def emit_json_texts(fmt: Format, texts: Iterable[str]) -> int:
    """Records already encoded as JSON objects, as a json array or as jsonl; return how many were written."""
    count = 0
    out = stdout_for(fmt)
    if fmt is Format.json:
        out.write("[")
        for text in texts:
            out.write(("\n" if count == 0 else ",\n") + text)
            count += 1
        out.write("\n]\n" if count else "]\n")
    else:
        for text in texts:
            out.write(text + "\n")
            count += 1
    out.flush()
    return count


def emit_row_texts(fmt: Format, columns: list[Column], texts: Iterable[str]) -> None:
    """Rows already written as CSV or TSV (any number to a text), after the header :func:`emit_records` writes."""
    out = stdout_for(fmt)
    if fmt is Format.tsv:
        out.write(tsv_line([c.key for c in columns]))
    else:
        import csv

        csv.writer(out, dialect="excel", lineterminator="\n").writerow([c.key for c in columns])
    for text in texts:
        out.write(text)
    out.flush()


def row_texts(fmt: Format, columns: list[Column], records: Iterable[Mapping[str, Any]]) -> str:
    """Records as the CSV or TSV rows :func:`emit_records` writes for them."""
    if fmt is Format.tsv:
        return "".join(tsv_line([cell_text(record.get(c.key)) for c in columns]) for record in records)
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, dialect="excel", lineterminator="\n").writerows([cell_text(record.get(c.key)) for c in columns] for record in records)
    return buffer.getvalue()


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_line(fields: Iterable[str]) -> str:
    """One TSV record (IANA text/tab-separated-values): fields joined by tabs, their tab, LF, CR and backslash escaped."""
    return "\t".join(field.translate(_TSV_ESCAPES) for field in fields) + "\n"


def cell_text(value: Any) -> str:
    """A value as a CSV or TSV cell: empty for null, true/false, JSON for objects and lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return dumps(value)
    return str(value)


def emit_object(state: CliState, fmt: Format | None, obj: Mapping[str, Any], table: Callable[[], None]) -> None:
    """A single result object (stats, a cleanup): a JSON object, one JSONL line, or ``table()`` for people."""
    fmt = fmt or Format.table
    if fmt is Format.json:
        stdout_for(fmt).write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    elif fmt is Format.jsonl:
        stdout_for(fmt).write(dumps(dict(obj)) + "\n")
    else:
        object_format(fmt, state.command)
        table()
    sys.stdout.flush()
