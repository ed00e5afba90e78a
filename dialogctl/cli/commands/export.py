"""``export``: conversations out of the journal, streamed to stdout or a file."""

import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ...exchange.registry import FORMATS, export_help
from ..options import MetaFilterOption, ModelOption, RedactOption, RedactRulesOption, RoleOption, SinceOption, UntilOption, complete_users
from ..state import CliState

if TYPE_CHECKING:
    from ...exchange.cursor import Cursor
    from ...exchange.records import ExportOptions, ExportResult
    from ...exchange.selection import Selection
    from ...journal.core import Journal

# The --format choices, help and completions come from the one registry of formats.
ExportFormat = StrEnum("ExportFormat", {name: name for name in FORMATS})  # type: ignore[misc]
FORMAT_HELP = export_help()


def export(
    ctx: typer.Context,
    users: Annotated[
        Optional[list[str]], typer.Argument(help="Users to export (or --all).", metavar="[USER]...", show_default=False, autocompletion=complete_users)
    ] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user and every conversation, archives included (a full dump).")] = False,
    conversation: Annotated[Optional[str], typer.Option("--conversation", help="Only this conversation id ('current' or a session id).", metavar="CID")] = None,
    archive: Annotated[Optional[str], typer.Option("--archive", help="Only this archive.", metavar="ID")] = None,
    include_archives: Annotated[bool, typer.Option("--include-archives", help="With USER: archives too, not only active conversations.")] = False,
    since: SinceOption = None,
    until: UntilOption = None,
    role: RoleOption = None,
    model: ModelOption = None,
    meta: MetaFilterOption = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help=FORMAT_HELP, case_sensitive=False)] = ExportFormat["jsonl"],
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output", "-o", help="Write to FILE (via a temp file renamed into place; '-' is stdout); parquet: the dataset folder DIR.", metavar="FILE"
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With -o: replace FILE if it exists (a symlink is never followed or replaced); parquet: add to an existing dataset without --cursor-file.",
        ),
    ] = False,
    by_server: Annotated[
        bool, typer.Option("--by-server", help="parquet: partition by server too (server=<serverId>/date=YYYY-MM-DD/), serverId from the settings.")
    ] = False,
    raw_csv: Annotated[
        bool,
        typer.Option("--raw-csv", help="csv: write cells exactly, without prefixing ' to cells a spreadsheet would run as formulas (= + - @ tab CR LF)."),
    ] = False,
    system: Annotated[
        Optional[str], typer.Option("--system", help="openai/sharegpt: prepend this system message to every conversation.", metavar="TEXT")
    ] = None,
    redact: RedactOption = False,
    redact_rules: RedactRulesOption = None,
    cursor_file: Annotated[
        Optional[str],
        typer.Option(
            "--cursor-file",
            help="Export only messages not shipped by earlier runs with this FILE, then record these in it (replaced atomically once the output is complete; created if missing).",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Export conversations as JSON, JSONL, CSV, Markdown, fine-tuning lines, SQLite or Parquet.

    Every record names its user, conversation, archive state and message
    index (from 0). json is always an array of conversations, also for one.
    Output streams one conversation at a time, so memory stays flat
    however large the journal. Conversations that fail the fine-tuning checks
    (openai/sharegpt: no assistant message, empty content, a role other than
    system/user/assistant) are skipped and counted on stderr.

    Every json, jsonl, csv and sqlite record carries a message_id that
    stays the same when the conversation is archived, restored, trimmed,
    repaired or re-imported. With --cursor-file, a run exports only what
    earlier runs with the same FILE did not (messages at least 2 seconds
    old), and records what it shipped only after the output is complete: a
    failed or killed run leaves the file as it was, and the next run sends
    the same again. A damaged cursor file, or one of another journal, is
    exit 2. Use one cursor file per command line (same users, format and
    filters).

    The sqlite database carries messages_fts, a full-text index of the
    content (FTS5, external content): 'sqlite-utils search journal.db
    messages WORD' and Datasette's search box use it. Where Python's SQLite
    lacks FTS5 the database is written without it and a note says so.

    CSV cells starting with = + - @ tab CR LF NUL (or with ' followed by one of
    them or by another ') get a ' prepended so spreadsheets show them as text;
    'dialogctl import' removes exactly that prefix again.

    parquet writes a dataset folder (-o DIR) that DuckDB, ClickHouse,
    Trino, Spark and BigQuery read: date=YYYY-MM-DD/ partitions by the
    message's UTC day, one fixed schema, and _manifest.json listing every
    run's files with their row counts. Each run adds files and never changes
    old ones; with --cursor-file a nightly run ships only what is new. Needs
    the parquet extra: pip install 'dialogctl[parquet]'.

    --redact rewrites every message before it is formatted (so every format
    carries the redacted text) and says on stderr how many of each kind it
    replaced; see README "Redaction" for the rules and their limits.

    Examples:

      dialogctl export alice --format json > alice.json

      dialogctl export --all --format jsonl | gzip > journal.jsonl.gz

      dialogctl export alice --include-archives --since 30d --format csv -o alice.csv

      dialogctl export --all --format sqlite -o journal.db

      dialogctl export --all --format openai --system "You are helpful." -o train.jsonl

      dialogctl export --all --redact --redact-rules rules.yaml -o shared.jsonl

      dialogctl export --all --cursor-file ~/.dialogctl.cursor -o "new-$(date +%F).jsonl"

      dialogctl export --all --format parquet --redact --cursor-file ~/parquet.cursor -o /srv/lake/dialogs
    """
    from ...disk.layout import validate_user_id
    from ...errors import InvalidInput
    from ...exchange.outputfile import OutputFile
    from ...exchange.pipeline import stream
    from ...exchange.records import ExportOptions
    from ...exchange.registry import check, export_format, write_export
    from ...exchange.selection import Selection
    from ..options import message_filter, redactor, report_redactions
    from ..progress import ProgressBar

    state: CliState = ctx.obj
    if all_users and users:
        raise InvalidInput("pass USER names or --all, not both")
    if not all_users and not users:
        raise InvalidInput("name the users to export, or pass --all")
    to_file = output is not None and output != "-"
    to_folder = export_format(fmt.value).needs_folder
    if force and not to_file:
        raise InvalidInput("--force replaces the file named by -o; there is none")
    if by_server and not to_folder:
        raise InvalidInput("--by-server partitions a dataset: it applies only to --format parquet")
    for user in users or []:
        validate_user_id(user)  # before anything touches the disk
    journal = state.journal()
    cursor = None
    if cursor_file is not None:
        from ...exchange.cursor import Cursor

        cursor = Cursor.load(cursor_file, journal.root)
    filters = message_filter(since, until, role, state, model, meta)
    redacting = redactor(redact, redact_rules)
    options = ExportOptions(fmt.value, not raw_csv, system, redacting)
    check(options, "folder" if to_folder and to_file else "file" if to_file else "stream")  # before anything is written
    if to_folder:
        assert output is not None
        result = _export_dataset(
            state,
            journal,
            output,
            Selection(tuple(users or ()), conversation, archive, include_archives, filters),
            options,
            force,
            by_server,
            cursor_file,
            cursor,
        )
        report_redactions(state, redacting)
        return
    selection = Selection(tuple(users or ()), conversation, archive, include_archives, filters, cursor)
    conversations = stream(journal, selection, options)
    with ProgressBar(state, "Exporting conversations") as bar:
        if to_file:
            assert output is not None
            with OutputFile(output, force, int(journal.settings["fileMode"])) as target:
                result = write_export(target, bar.track(conversations), options)
        else:
            if hasattr(sys.stdout, "reconfigure"):
                sys.stdout.reconfigure(encoding="utf-8")  # the formats are UTF-8 whatever the locale
            from ..render import for_people

            # On a terminal, control and bidi characters are shown escaped (JSON formats: as \\uXXXX, the same JSON).
            out = for_people(sys.stdout, json=fmt.value not in ("csv", "markdown"))
            result = write_export(out, bar.track(conversations), options)
            sys.stdout.flush()
            if cursor is not None and _is_file(sys.stdout):
                os.fsync(sys.stdout.fileno())  # > file: on disk before the cursor says it was shipped
    if cursor is not None:  # only now that the output is complete (and -o renamed into place)
        cursor.save()
        state.detail(f"cursor file {cursor_file} updated")
    report_redactions(state, redacting)
    for note in result.notes:
        state.say(note)
    if result.skipped:
        reasons = ", ".join(f"{count} with {reason}" for reason, count in sorted(result.skipped.items()))
        state.say(f"skipped {sum(result.skipped.values())} conversation(s) that fail the fine-tuning checks: {reasons}")
    state.detail(f"exported {result.messages} messages from {result.conversations} conversation(s)" + (f" to {output}" if to_file else ""))


def _export_dataset(
    state: CliState,
    journal: "Journal",
    output: str,
    selection: "Selection",
    options: "ExportOptions",
    force: bool,
    by_server: bool,
    cursor_file: str | None,
    cursor: "Cursor | None",
) -> "ExportResult":
    """``--format parquet -o DIR``: one run added to the dataset, then the cursor saved (see :mod:`dialogctl.exchange.dataset`)."""
    from ...exchange.dataset import OutputDataset
    from ...exchange.pipeline import stream
    from ...exchange.registry import write_export
    from ..progress import ProgressBar

    fixed = (("server", str(journal.settings["serverId"])),) if by_server else ()
    with OutputDataset(output, "parquet", fixed, force, int(journal.settings["fileMode"])) as dataset:
        if dataset.removed:
            state.say(f"removed {len(dataset.removed)} file(s) an interrupted run left in {output} (their messages are sent again by this run)")
        cursor = dataset.resume(cursor, cursor_file)
        if dataset.resumed:
            state.say(f"the last run into {output} finished but could not save {cursor_file}; continuing from the cursor its manifest recorded")
        with ProgressBar(state, "Exporting conversations") as bar:
            result = write_export(dataset, bar.track(stream(journal, selection.with_cursor(cursor), options)), options)
        files = len(dataset.parts)
    if cursor is not None:  # only now that every file is in place and the manifest names them
        cursor.save()
        state.detail(f"cursor file {cursor_file} updated")
    state.detail(f"exported {result.messages} messages from {result.conversations} conversation(s) to {output} ({files} new file(s), run {dataset.run})")
    return result


def _is_file(stream: object) -> bool:
    """Whether the stream is a regular file (flushed to disk before the cursor moves past what it holds)."""
    import stat

    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
