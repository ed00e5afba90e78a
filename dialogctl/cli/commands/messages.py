"""``append`` and ``show``: messages in and out of one user's conversation."""

from typing import Annotated, Any, Optional

import typer

from ..options import (
    ArchiveOpt,
    ConversationOpt,
    MetaFilterOption,
    ModelOption,
    RedactOption,
    RedactRulesOption,
    RoleOption,
    SinceOption,
    UntilOption,
    UserArg,
    complete_roles,
    complete_users,
)
from ..output import PLACE_COLUMNS, Column, Format, FormatOption, emit_object, emit_records
from ..state import CliState

APPEND_COLUMNS = [
    Column("user", "User", "id"),
    Column("conversation", "Conversation", "id"),
    Column("outcome", "Outcome"),
    Column("appended", "Appended", "count"),
    Column("messages", "Messages now", "count"),
    Column("archived", "Archived", "json"),
    Column("lines", "Input lines"),
    Column("retryLines", "Retry lines"),
    Column("reason", "Reason"),
]


def append(
    ctx: typer.Context,
    user: Annotated[
        Optional[str],
        typer.Argument(
            help='User id (with --jsonl optional: lines may carry a "user" field).', metavar="USER", show_default=False, autocompletion=complete_users
        ),
    ] = None,
    text: Annotated[
        Optional[str],
        typer.Argument(
            help="Message text; absent or '-' reads it from stdin (empty stdin, or just a line break, is an error: exit 2).",
            metavar="[TEXT]",
            show_default=False,
        ),
    ] = None,
    role: Annotated[str, typer.Option("--role", help="Role: user, assistant, system or tool.", metavar="ROLE", autocompletion=complete_roles)] = "user",
    meta: Annotated[
        Optional[list[str]],
        typer.Option(
            "--meta",
            help="Metadata KEY=VALUE; VALUE is JSON if it parses (12, true, {...}), dotted keys nest (tokens.total=5). Repeatable.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    timestamp: Annotated[
        Optional[str],
        typer.Option("--timestamp", help="Message time: ISO 8601, or a time back from now (5m, '2 hours ago', yesterday); default now.", metavar="TIME"),
    ] = None,
    conversation: ConversationOpt = None,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl", help='Read many messages from stdin, one JSON object per line: {"role", "content", "timestamp"?, "metadata"?, "user"?, "conversation"?}.'
        ),
    ] = False,
    all_or_none: Annotated[
        bool,
        typer.Option(
            "--all-or-none",
            help="With --jsonl: take every user's lock first (in user id order) and write nothing if one stays busy. "
            "A failure while writing (a full disk) still leaves the batches before it committed; the report says which.",
        ),
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Append a message (or, with --jsonl, many) to a user's conversation.

    The text is taken exactly (spaces and line breaks included); stdin with no
    text at all (zero bytes, or only a line break) appends nothing and exits 2
    ("no message text on stdin"). With --jsonl, empty stdin is zero messages:
    nothing is appended, and the exit code is 0.

    Each user's batch is one locked write, fsynced before it is reported;
    the conversation is archived automatically when it reaches
    archiveThreshold messages. Prints
    nothing unless --format asks for the result: one record per user batch
    (user, conversation, outcome, appended, messages, archived, lines,
    retryLines, reason).

    With --jsonl each user's batch (one per user and conversation) is
    committed or not on its own: a user whose lock stays busy or whose files
    fail does not stop the others. When some batches are not committed,
    stderr names every batch with its input lines and what became of it, the
    records say the same (outcome committed, partly committed, failed or
    skipped; retryLines: the input lines to send again), and the exit code is
    7 if some were committed, else the failure's own (4 lock busy, 6 I/O).
    Batches are written a group of users at a time and made durable together
    (a group commit) before they are reported. Ctrl-C commits the batches
    already written, reports, and exits 130.

    Use -- before a message that starts with -: -- ends the options, so
    everything after it is USER and TEXT (append alice -- '- buy milk').

    Examples:

    \b
      dialogctl append alice "Hello there"
      echo "Hi! How can I help?" | dialogctl append alice --role assistant --meta model=gpt-4 --meta tokens=12
      dialogctl append alice - < reply.txt
      dialogctl append alice -- '- buy milk'
      dialogctl append --jsonl < messages.jsonl
      dialogctl append --jsonl --all-or-none --format jsonl < messages.jsonl > outcome.jsonl
    """
    from ...disk.layout import validate_name, validate_user_id
    from ...errors import InvalidInput
    from ...models import Message
    from ..inputs import check_role, parse_meta, read_stdin, spool_jsonl_messages, stdin_bytes, timestamp_option

    state: CliState = ctx.obj
    if all_or_none and not jsonl:
        raise InvalidInput("--all-or-none goes with --jsonl (one message is always all or nothing)")
    journal = state.journal()
    if jsonl:
        if text is not None or meta or timestamp is not None or role != "user":
            raise InvalidInput("--jsonl reads every field from stdin; TEXT, --role, --meta and --timestamp cannot be combined with it")

        def check(line_user: str, line_conv: Optional[str]) -> None:
            validate_user_id(line_user)
            journal.layout().user_parts(line_user)  # an id whose folder is another user's is refused before anything is written
            if line_conv is not None and line_conv != "current":
                validate_name(line_conv)

        with spool_jsonl_messages(stdin_bytes("--jsonl input", "dialogctl append --jsonl < messages.jsonl"), user, conversation, check) as spool:
            if not spool.groups:
                state.say("no messages on stdin; nothing appended")
                if fmt is not None:
                    emit_records(state, fmt, APPEND_COLUMNS, [])
                return
            _append_many(state, spool.batches(), all_or_none, fmt)
        return
    if user is None:
        raise InvalidInput('missing USER (or use --jsonl with a "user" field on each line)')
    check_role(role)
    content = text if text is not None and text != "-" else read_stdin("the message text", f"echo hello | dialogctl append {user}")
    if (text is None or text == "-") and content in ("", "\n", "\r\n"):
        # Nothing piped in (an empty file, a bare `echo`): a script's mistake, not a message to keep.
        raise InvalidInput(
            "no message text on stdin; nothing appended", hint=f"echo hello | dialogctl append {user}, or pass the text: dialogctl append {user} -- TEXT"
        )
    # One message is all or nothing: a failure is the command's error, as it always was.
    # (This path does not import dialogctl.journal.outcomes: scripts run it once per message.)
    result = journal.append(user, [Message(role, content, timestamp_option(timestamp), parse_meta(meta or []))], conversation)
    record = {
        "user": result.user,
        "conversation": result.conversation,
        "outcome": "committed",
        "appended": result.appended,
        "messages": result.messages,
        "archived": list(result.archived),
        "lines": None,
        "retryLines": None,
        "reason": result.archive_error,
    }
    _tell(state, record)
    if fmt is not None:  # scripts append once per message: stdout stays quiet unless asked
        columns = APPEND_COLUMNS if fmt is not Format.table else APPEND_COLUMNS[:6]  # one message: no input lines to show
        emit_records(state, fmt, columns, [record])


def _append_many(state: CliState, batches: list[Any], all_or_none: bool, fmt: Optional[Format]) -> None:
    """Write every batch, stream each outcome to stdout (--format) as it is known, then report and choose the exit code."""
    import signal

    from ...journal.outcomes import append_batches, verdict
    from ..state import tell

    interrupted: list[bool] = []
    closed: list[str] = []  # stdout's reader went away

    def on_interrupt(signum: int, frame: Any) -> None:
        if interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        interrupted.append(True)
        tell("interrupted: finishing the batches being written, then stopping (Ctrl-C again stops at once)")

    def stop() -> str | None:
        if closed:
            return closed[0]
        return "interrupted before it was written" if interrupted else None

    previous = signal.signal(signal.SIGINT, on_interrupt)
    outcomes: list[Any] = []
    try:

        def each() -> Any:
            for outcome in append_batches(state.journal(), batches, all_or_none=all_or_none, stop=stop):
                outcomes.append(outcome)
                record = outcome.to_json()
                if outcome.committed:
                    _tell(state, record)
                yield record

        records = each()
        if fmt is not None:
            try:
                emit_records(state, fmt, APPEND_COLUMNS, records)
            except BrokenPipeError:
                # stdout's reader went away: write no more batches, and say on stderr what was and was not
                # written (the batches written with the one being printed are committed all the same).
                closed.append("not written: stdout was closed")
                for _ in records:
                    pass
                for outcome in outcomes:
                    tell(outcome.describe())
                raise
        else:
            for _ in records:
                pass
    finally:
        signal.signal(signal.SIGINT, previous)
    failure = verdict(outcomes)
    if failure is None:  # also when a Ctrl-C came during the last batch: everything was committed
        total = sum(o.appended for o in outcomes)
        if len(outcomes) > 1 or total > 1:
            state.say(f"appended {total} messages for {len(outcomes)} user conversation(s)")
        return
    for outcome in outcomes:  # what a retry needs, whatever -q says
        tell(outcome.describe())
    if interrupted:
        raise KeyboardInterrupt
    assert failure is not None
    raise failure


def _tell(state: CliState, record: dict[str, Any]) -> None:
    """Notes on a committed batch's record: a failed automatic archive (a warning), and with -v what was appended."""
    if record["reason"]:
        state.warn(f"the messages were appended, but the automatic archive failed ({record['reason']}); the next append archives first")
    archived = f"; archived as {', '.join(record['archived'])}" if record["archived"] else ""
    state.detail(f"appended {record['appended']} message(s) to {record['user']}/{record['conversation']}, which now holds {record['messages']}{archived}")


MESSAGE_COLUMNS = [*PLACE_COLUMNS, Column("content", "Content"), Column("metadata", "Metadata", "json")]


def show(
    ctx: typer.Context,
    user: UserArg,
    conversation: ConversationOpt = None,
    archive: ArchiveOpt = None,
    tail: Annotated[Optional[int], typer.Option("--tail", "-n", help="Only the last N messages (of those the filters keep).", min=0, metavar="N")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    role: RoleOption = None,
    model: ModelOption = None,
    meta: MetaFilterOption = None,
    markdown: Annotated[bool, typer.Option("--markdown", "-m", help="Render message text as Markdown (transcript only).")] = False,
    utc: Annotated[bool, typer.Option("--utc", help="Times in UTC (the default; transcript only).")] = False,
    local: Annotated[bool, typer.Option("--local", help="Times in the local time zone (transcript only).")] = False,
    no_pager: Annotated[
        bool,
        typer.Option(
            "--no-pager", help="Never page the transcript (by default a long one goes through $DIALOGCTL_PAGER, $PAGER or 'less -FRX' on a terminal)."
        ),
    ] = False,
    redact: RedactOption = False,
    redact_rules: RedactRulesOption = None,
    fmt: FormatOption = None,
) -> None:
    """Show a user's conversation as a transcript (or as data with --format).

    Messages are numbered from 0, with the indexes of the whole conversation,
    also when --tail or a filter leaves messages out. json prints one object
    (user, conversation, archived, messageCount, messages); jsonl, csv and tsv
    print one message per line with its identity. --redact replaces secrets
    and personal data in what is shown (every format), never in the journal.

    Examples:

    \b
      dialogctl show alice
      dialogctl show alice --tail 20 --local
      dialogctl show alice --since yesterday --role assistant --markdown
      dialogctl show alice --archive 2024-01-15-10-30-00 --format json
      dialogctl show alice --tail 20 --format jsonl | jq -r .content
      dialogctl show alice --redact
    """
    from ...errors import InvalidInput
    from ..options import message_filter, redactor, report_redactions

    state: CliState = ctx.obj
    chosen = fmt or Format.table
    if conversation is not None and archive is not None:
        raise InvalidInput("--conversation and --archive name different conversations; pass one")
    if utc and local:
        raise InvalidInput("--utc and --local ask for different clocks; pass one")
    transcript_only = [name for name, given in (("--markdown", markdown), ("--utc", utc), ("--local", local)) if given]
    if transcript_only and chosen is not Format.table:
        raise InvalidInput(f"{' and '.join(transcript_only)} only shape the transcript (--format table); --format {chosen.value} prints the exact data")
    selection = message_filter(since, until, role, state, model, meta)
    redacting = redactor(redact, redact_rules)
    journal = state.journal()
    ref = journal.resolve(user, conversation, archive)
    if tail is not None and not selection.active:
        # A plain --tail reads from the end of the file, whatever the conversation's length.
        conv = journal.read_tail(ref, tail)
        indexed = list(enumerate(conv.messages, conv.first_index))
    else:
        conv = journal.read(ref)
        indexed = list(selection.indexed(conv.messages))
        if tail is not None:
            indexed = indexed[len(indexed) - tail :] if tail else []
    if redacting is not None:
        indexed = [(i, redacting.message(m)) for i, m in indexed]
    _show(state, chosen, user, ref, conv, indexed, markdown, local, no_pager)
    report_redactions(state, redacting)


def _show(state: CliState, chosen: Format, user: str, ref: Any, conv: Any, indexed: list[Any], markdown: bool, local: bool, no_pager: bool) -> None:
    from ...exchange.records import message_record

    if chosen is Format.table:
        from .. import render
        from ..pager import paged

        if not indexed:
            state.say(f"{ref.describe()} holds no messages" + (" that match" if conv.messages else ""))
            return
        heading = f"{user} · {ref.name}{' (archived)' if ref.archived else ''}"
        with paged(state, enabled=not no_pager) as out:
            render.transcript(state, indexed, heading, file=out, markdown=markdown, local=local)
        return
    if chosen is Format.json:
        obj = {
            "user": user,
            "conversation": ref.name,
            "archived": ref.archived,
            "messageCount": conv.first_index + len(conv.messages),
            "messages": [{"index": i, **m.to_raw()} for i, m in indexed],
        }
        emit_object(state, chosen, obj, lambda: None)
        return
    emit_records(state, chosen, MESSAGE_COLUMNS, (message_record(conv, i, m) for i, m in indexed))
