"""Exports: conversations out of the journal in the formats other tools read, streamed.

A :class:`Selection` names what leaves (users or every user; the current
conversation, one conversation, one archive, or archives too; a time and role
filter), :func:`select` reads it one conversation at a time, and one writer
turns the stream into a format. Nothing holds more than one conversation, so
memory is bounded by the largest conversation file, not by the journal.

Every record names where it came from: user, conversation, archived, and the
message's index in its whole conversation (a filter keeps those indexes), and
carries its ``message_id`` (json, jsonl, csv, sqlite): a hash of user,
timestamp, role, content and the occurrence among identical ones, stable
across archive, restore, trims, repairs and re-import; how it is derived and
how ``--cursor-file`` uses it is in :mod:`dialogctl.exchange.cursor`.

Formats:

* ``json``: always an array (one conversation, several or none), each element
  the reference implementation's shape ``{userId, timestamp, messageCount,
  messages}`` also carrying ``conversation`` and ``archived``, written one
  conversation at a time; the importer also reads the reference's lone object. ``timestamp`` is the time of the export (pinned by
  ``SOURCE_DATE_EPOCH`` when set, so the same journal exports to the same bytes).
* ``jsonl``: one message per line (:func:`message_record`): user, conversation,
  archived, index, role, content, timestamp, metadata, message_id.
* ``csv``: RFC 4180 (CRLF rows, every cell quoted, a header row), columns
  :data:`CSV_COLUMNS`; ``metadata`` is the message's metadata as JSON (empty
  when it has none), ``model`` and ``totalTokens`` are read from it for
  spreadsheets and are ignored on import.
* ``markdown``: a transcript per conversation; see :func:`write_markdown`.
* ``openai`` / ``sharegpt``: one conversation per line for fine-tuning; a
  conversation that fails the checks of :func:`training_messages` is left out
  and counted in :attr:`ExportResult.skipped`.
* ``sqlite``: a database file with ``conversations`` and ``messages`` tables and
  ``messages_fts``, the full-text index of the content that ``sqlite-utils
  search`` and Datasette's search use (when this Python's SQLite has FTS5).
* ``parquet``: a Hive-partitioned dataset folder (``-o DIR``), each run adding
  files and a manifest entry; see :mod:`dialogctl.exchange.formats.parquet`
  and :mod:`dialogctl.exchange.dataset`. Needs the ``parquet`` extra (pyarrow).

CSV cells are neutralised against formula injection by default, following
OWASP's CSV injection guidance: a text cell whose first character is ``=``,
``+``, ``-``, ``@``, tab, CR, LF or NUL gets a ``'`` prepended, which spreadsheets
take as "this cell is text". So that the import can undo it exactly, a cell
that already starts with ``'`` followed by one of those characters or by
another ``'`` gets one too; every other cell is written as it is. Numbers and
booleans we format ourselves (``archived``, ``index``, ``totalTokens``) are never
touched. :func:`restore_cell` is the exact inverse.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from ..errors import InvalidInput
from .formats import csv, json, markdown, parquet, sqlite, training
from .outputfile import OutputFile
from .records import ExportFormat, ExportOptions, ExportResult, Formatted
from .selection import Selected

if TYPE_CHECKING:
    from .dataset import OutputDataset

# Every export format, in the order --help and the docs list them: one line each.
EXPORTS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        json.JSON,
        json.JSONL,
        csv.CSV,
        markdown.MARKDOWN,
        training.OPENAI,
        training.SHAREGPT,
        sqlite.SQLITE,
        parquet.PARQUET,
    )
}
FORMATS = tuple(EXPORTS)
# The formats an import reads: the same records, those with a reader.
IMPORTS: dict[str, ExportFormat] = {name: f for name, f in EXPORTS.items() if f.read is not None}


def export_format(name: str) -> ExportFormat:
    """The format called ``name``; an unknown name is refused, never sent to a default writer."""
    try:
        return EXPORTS[name]
    except KeyError:
        raise InvalidInput(f"unknown export format {name!r}; use one of {', '.join(FORMATS)}") from None


def export_help() -> str:
    """The --format help: each format with its few words (formats with the same words share them), from the registry."""
    groups: list[tuple[list[str], str]] = []
    for f in EXPORTS.values():
        words = f.help + ("; needs -o" if f.needs_file else "") + ("; needs -o DIR" if f.needs_folder else "")
        if groups and groups[-1][1] == words:
            groups[-1][0].append(f.name)
        else:
            groups.append(([f.name], words))
    return ", ".join(f"{' / '.join(names)} ({words})" for names, words in groups) + "."


def import_format(name: str) -> ExportFormat:
    """The import format called ``name``; an unknown name is refused."""
    try:
        return IMPORTS[name]
    except KeyError:
        raise InvalidInput(f"unknown import format {name!r}; use one of {', '.join(IMPORTS)}") from None


def import_help() -> str:
    """The import --format help, from the registry."""
    parts = [f.name + (f" ({f.import_help})" if f.import_help else "") for f in IMPORTS.values()]
    return ", ".join(parts[:-1]) + " or " + parts[-1] + "; default: told from the file name and content."


def check(options: ExportOptions, target: str) -> ExportFormat:
    """The format ``options`` name, refusing options it does not take and a target it cannot write to.

    ``target`` is ``"stream"`` (stdout), ``"file"`` (-o FILE) or ``"folder"``
    (-o DIR, a dataset). A format whose library comes from an optional extra
    that is not installed is refused here, before anything is written.
    """
    fmt = export_format(options.format)
    if fmt.needs_file and target != "file":
        raise InvalidInput(f"the {fmt.name} format writes a database file: pass -o FILE")
    if fmt.needs_folder and target != "folder":
        raise InvalidInput(f"the {fmt.name} format writes a dataset folder: pass -o DIR")
    if not fmt.needs_folder and target == "folder":
        raise InvalidInput(f"only {' and '.join(f.name for f in EXPORTS.values() if f.needs_folder)} write a dataset folder")
    if fmt.requires is not None:
        import importlib.util

        module, extra = fmt.requires
        if importlib.util.find_spec(module) is None:
            raise InvalidInput(f"the {fmt.name} format needs {module}, which is not installed", hint=f"pip install 'dialogctl[{extra}]'")
    if not options.neutralised and "neutralised" not in fmt.options:
        raise InvalidInput("--raw-csv applies only to --format " + " or ".join(f.name for f in EXPORTS.values() if "neutralised" in f.options))
    if options.system is not None and "system" not in fmt.options:
        raise InvalidInput("--system applies only to --format " + " or ".join(f.name for f in EXPORTS.values() if "system" in f.options))
    return fmt


def write_export(target: IO[str] | OutputFile | OutputDataset, conversations: Iterable[Selected | Formatted], options: ExportOptions) -> ExportResult:
    """Write the selection (from :func:`~dialogctl.exchange.pipeline.stream` or :func:`~dialogctl.exchange.selection.select`)
    to a text stream, an :class:`OutputFile` or an :class:`OutputDataset` in the chosen format."""
    from .dataset import OutputDataset

    kind = "file" if isinstance(target, OutputFile) else "folder" if isinstance(target, OutputDataset) else "stream"
    return check(options, kind).write(target, conversations, options)
