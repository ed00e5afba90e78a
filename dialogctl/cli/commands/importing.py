"""``import``: messages from a file into one conversation, validated first, written all or nothing."""

from enum import StrEnum
from typing import Annotated, Optional

import typer

from ...exchange.registry import IMPORTS
from ..options import ConversationOpt, UserArg
from ..state import CliState

# The --format choices and help come from the one registry of formats.
ImportFormat = StrEnum("ImportFormat", {name: name for name in IMPORTS})  # type: ignore[misc]


def import_(
    ctx: typer.Context,
    user: UserArg,
    file: Annotated[str, typer.Argument(help="The file to import; '-' reads stdin.", metavar="FILE|-", show_default=False)],
    fmt: Annotated[
        Optional[ImportFormat],
        typer.Option(
            "--format",
            "-f",
            help="json (the reference export {userId, messages...} or dialogctl's), jsonl, csv (with a header naming role and content), "
            'openai (one {"messages": [...]} line) or sqlite (dialogctl\'s database); default: told from the file name and content.',
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    conversation: ConversationOpt = None,
    as_archive: Annotated[Optional[str], typer.Option("--as-archive", help="Import as a new archive with this id (never replaces one).", metavar="ID")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Validate and report counts; write nothing.")] = False,
    raw_csv: Annotated[bool, typer.Option("--raw-csv", help="csv: the file was exported with --raw-csv; take cells exactly as they are.")] = False,
) -> None:
    """Import messages from a file into one of a user's conversations.

    Every record is checked first; an error names the line or record and the
    field, and nothing is written. The file is read once, a piece at a time,
    so memory does not grow with it. The import then lands as one batch: all
    of it or none of it, even if the process dies while writing it (verify
    reports what such a crash left as a torn batch, repair drops it, and the
    import can simply be run again). A conversation the import would take past
    archiveThreshold is archived first; an import that alone reaches the
    threshold is archived right after it is written.

    CSV cells may hold commas, quotes and line breaks (RFC 4180). In a CSV with
    dialogctl's own header the ' that export put before formula-like cells is
    removed again (pass --raw-csv for a file exported with --raw-csv). Messages
    without a timestamp get the time of the import.

    Examples:

      dialogctl import alice alice.json

      dialogctl export alice --format csv -o alice.csv && dialogctl import bob alice.csv --dry-run

      dialogctl import alice old.jsonl --as-archive 2023-imported

      jq -c 'select(.conversation == "current")' dump.jsonl | dialogctl import alice -
    """
    from ...errors import InvalidInput, storage_error
    from ...exchange.importers import ImportInput, detect_format, import_messages, read_import
    from ..inputs import stdin_bytes

    state: CliState = ctx.obj
    try:
        if file == "-":
            data, source = ImportInput(stdin_bytes("the import", f"dialogctl import {user} - < messages.jsonl")), "stdin"
            name = None
        else:
            try:
                stream = open(file, "rb")  # noqa: SIM115 - closed below, after the import is read
            except FileNotFoundError:
                raise InvalidInput(f"{file}: no such file") from None
            data, source, name = ImportInput(stream, file), file, file
    except OSError as exc:
        raise storage_error(exc, "read", file if file != "-" else "stdin") from None
    try:
        chosen = fmt.value if fmt is not None else detect_format(name, data.head)
        if raw_csv and chosen != "csv":
            raise InvalidInput(f"--raw-csv applies only to csv, and {source} is read as {chosen}")
        state.detail(f"reading {source} as {chosen}" + ("" if fmt is not None else " (told from its name and content)"))
        try:
            spool = read_import(data, chosen, source, raw_csv)
        except OSError as exc:
            raise storage_error(exc, "read", source) from None
    finally:
        if name is not None:
            data.stream.close()
    with spool:
        if not len(spool):
            state.say(f"{source} holds no messages; nothing imported")
            return
        result = import_messages(state.journal(), user, spool.messages(), conversation, as_archive, dry_run)
    target = f"{user}/{result.conversation}{' (a new archive)' if as_archive is not None else ''}"
    if dry_run:
        state.say(f"{source}: {result.appended} valid messages for {target}, which holds {result.messages} now; nothing written (dry run)")
        return
    archived = f"; archived as {', '.join(result.archived)}" if result.archived else ""
    state.say(f"imported {result.appended} messages into {target}{archived}")
