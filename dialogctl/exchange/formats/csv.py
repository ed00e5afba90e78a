"""``csv``: RFC 4180, every cell quoted, formula cells neutralised (see :mod:`dialogctl.exchange`'s notes in the registry)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

from ...errors import InvalidInput
from ...fileformat.codec import input_message
from ..reading import Found, ImportInput, Record, conversation_identity, load_json, refuse_unknown, universal_lines
from ..records import ExportFormat, ExportResult, Formatted, dumps, model_and_tokens, text_out, write_each
from ..selection import Selected

CSV_COLUMNS = ("user", "conversation", "archived", "index", "timestamp", "role", "content", "model", "totalTokens", "metadata", "message_id")
# The columns dialogctl wrote before message_id: such a file is still dialogctl's, its cells restored alike.
OLD_CSV_COLUMNS = CSV_COLUMNS[:-1]


_FORMULA_START = frozenset("=+-@\t\r\n\0")


def _quote_first(cell: str) -> bool:
    """Whether a cell starts with the ``'`` that :func:`neutralise` puts before a formula character or a quote."""
    return len(cell) > 1 and cell[0] == "'" and (cell[1] in _FORMULA_START or cell[1] == "'")


def neutralise(cell: str) -> str:
    """Make a cell a spreadsheet shows as text (see the module docstring); exactly undone by :func:`restore_cell`."""
    return "'" + cell if cell and (cell[0] in _FORMULA_START or _quote_first(cell)) else cell


def restore_cell(cell: str) -> str:
    """The cell as it was before :func:`neutralise`."""
    return cell[1:] if _quote_first(cell) else cell


def write_csv(out: IO[str], selected: Iterable[Selected | Formatted], neutralised: bool = True) -> ExportResult:
    import csv

    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(CSV_COLUMNS)
    return write_each(out, selected, lambda conv: csv_text(conv, neutralised))


def csv_text(conv: Selected, neutralised: bool = True) -> str:
    """A conversation's CSV rows (RFC 4180: every cell quoted, CRLF)."""
    import csv
    import io

    text = neutralise if neutralised else str
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    user, name, archived = text(conv.ref.user), text(conv.ref.name), "true" if conv.ref.archived else "false"
    for (index, msg), mid in zip(conv.messages, conv.id_list(), strict=True):
        model, tokens = model_and_tokens(msg.metadata)
        writer.writerow(
            (
                user,
                name,
                archived,
                str(index),
                text(msg.timestamp),
                text(msg.role),
                text(msg.content),
                text(model or ""),
                "" if tokens is None else str(tokens),
                "" if msg.metadata is None else text(dumps(msg.metadata)),
                mid,
            )
        )
    return buffer.getvalue()


CSV = ExportFormat(
    "csv",
    "RFC 4180, formula cells neutralised",
    lambda target, conversations, options: write_csv(text_out(target), conversations, options.neutralised),
    text=lambda conv, options: csv_text(conv, options.neutralised),
    options=frozenset({"neutralised"}),
    read=lambda data, source, now, raw_csv: csv_records(data, source, now, raw_csv),
    import_help="with a header naming role and content",
)


# --- reading ----------------------------------------------------------------------------


def csv_records(data: ImportInput, source: str, now: str, raw_csv: bool) -> Iterator[Found]:
    import csv

    csv.field_size_limit(2**31 - 1)  # content has no length limit
    reader = csv.reader(universal_lines(data.text(source)), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = [name.strip() for name in header]
        refuse_unknown(columns, frozenset(CSV_COLUMNS), f"{source} line 1 (header)", "column")
        if len(set(columns)) != len(columns) or not {"role", "content"} <= set(columns):
            raise InvalidInput(f"{source} line 1 (header): the header must name 'role' and 'content', each column once")
        restore = tuple(columns) in (CSV_COLUMNS, OLD_CSV_COLUMNS) and not raw_csv
        line, number = reader.line_num + 1, 0
        for row in reader:
            where, line = f"{source} line {line} (record {number})", reader.line_num + 1  # records from 0, as messages are numbered; lines from 1
            if not row:
                continue  # a blank line
            number += 1
            if len(row) != len(columns):
                raise InvalidInput(f"{where}: {len(row)} cells where the header has {len(columns)}")
            cells = dict(zip(columns, (restore_cell(c) for c in row) if restore else row, strict=True))
            yield csv_record(cells, where, now)
    except csv.Error as exc:
        raise InvalidInput(f"{source} line {reader.line_num}: not valid CSV ({exc})") from None


def csv_record(cells: dict[str, str], where: str, now: str) -> Record:
    archived: bool | None = None
    if cells.get("archived"):
        if cells["archived"] not in ("true", "false"):
            raise InvalidInput(f"{where}: column 'archived' must be true or false")
        archived = cells["archived"] == "true"
    if cells.get("index") and not cells["index"].isdigit():
        raise InvalidInput(f"{where}: column 'index' must be a whole number")
    metadata: Any = None
    if cells.get("metadata"):
        metadata = load_json(cells["metadata"], f"{where}: column 'metadata'")
        if not isinstance(metadata, dict):
            raise InvalidInput(f"{where}: column 'metadata' must be a JSON object")
    raw = {"role": cells["role"], "content": cells["content"], "timestamp": cells.get("timestamp") or None, "metadata": metadata}
    return conversation_identity(cells.get("user") or None, cells.get("conversation") or None, archived, where), input_message(raw, where, now, "column")
