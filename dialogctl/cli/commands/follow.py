"""``follow``: print messages as they are appended, like ``tail -f`` for the journal."""

import os
import sys
from typing import Annotated, Any, Optional

import typer

from ..options import RedactOption, RedactRulesOption, SinceOption, UsersArg
from ..output import Format, FormatOption, cell_text, stdout_for, tsv_line
from ..state import CliState


def follow(
    ctx: typer.Context,
    users: UsersArg = None,
    since: SinceOption = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between looks at the files.", min=0.05, metavar="SECONDS")] = 0.5,
    count: Annotated[Optional[int], typer.Option("--count", "-n", help="Stop after N messages.", min=1, metavar="N")] = None,
    redact: RedactOption = False,
    redact_rules: RedactRulesOption = None,
    fmt: FormatOption = None,
    cursor_file: Annotated[
        Optional[str],
        typer.Option(
            "--cursor-file",
            help="Start after the messages this FILE says were shipped (from now if it does not exist), and record each printed message in it (replaced atomically after each flushed round).",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Print new messages as they are appended anywhere in the journal (Ctrl-C stops, exit 0).

    Starts from now, or from --since (older messages of active conversations first),
    and says so on stderr once it has taken its starting point. Every message
    appended after that is printed, whatever its timestamp (a replayed backlog
    too). Keeps going across archives, restores and cleanups. A USER that does
    not exist yet is waited for (said on stderr): its messages are printed from
    the first one. A malformed user id is an error (exit 2). jsonl, csv and
    tsv records carry each message's message_id (as export's, taken from the
    message as written, before any redaction). With --redact each message is
    redacted before it is printed; the counts are said when following ends.

    With --cursor-file, a restarted follow continues where the last one
    stopped: it starts at the cursor's earliest time among the followed
    users (older messages of active conversations first) and prints only
    those not yet recorded in FILE; after each round of printed (and
    flushed) messages the file is replaced atomically. It is the same file
    'export --cursor-file' reads and writes (the same rules: a damaged or
    foreign cursor file is exit 2).

    Examples:

    \b
      dialogctl follow
      dialogctl follow alice bob --since 10m
      dialogctl follow --format jsonl | jq -c '{user, role, content}'
      dialogctl follow --format jsonl --cursor-file ~/follow.cursor >> shipped.jsonl
    """
    import csv
    import json

    from ...errors import InvalidInput, NotFound
    from ...times import parse_time_spec
    from ...views.follow import Follower
    from ..options import redactor, report_redactions

    state: CliState = ctx.obj
    if fmt is Format.json:
        raise InvalidInput("follow streams without end; use --format jsonl (one object per line) instead of json")
    redacting = redactor(redact, redact_rules)
    journal = state.journal()
    waiting: list[str] = []
    for user in users or []:
        try:  # a malformed id, or one whose folder is another user's, is a usage error (2) at once
            journal.dialogs_folder(user).close()
        except NotFound:
            waiting.append(user)  # not there yet: followed from its first message
    start = parse_time_spec(since, "--since") if since is not None else None
    from ...exchange.cursor import Cursor, IdTracker

    cursor = None
    if cursor_file is not None:
        cursor = Cursor.load(cursor_file, journal.root, settle=False)
        if start is None:
            start = cursor.earliest(users or None)
    ids = IdTracker(lambda ref: journal.read(ref).messages)
    follower = Follower(journal, users or None, start)
    out = stdout_for(fmt) if fmt not in (None, Format.table) else sys.stdout  # a terminal sees control characters escaped
    fields = ("user", "conversation", "archived", "index", "timestamp", "role", "content", "metadata", "message_id")
    writer = csv.writer(out, dialect="excel", lineterminator="\n") if fmt is Format.csv else None
    if writer is not None:
        writer.writerow(fields)
    elif fmt is Format.tsv:
        out.write(tsv_line(fields))
    out.flush()
    printed = 0
    try:
        whom = ", ".join(users) if users else "every user"
        since_when = f"since {since}" if since is not None else "from now"

        def started() -> None:
            state.say(f"following {whom} {since_when}; Ctrl-C stops")
            if waiting:
                state.say(f"waiting for {', '.join(waiting)}: no such user yet; its messages are printed from its first one")

        def rested() -> None:
            if cursor is not None and cursor.changed:
                cursor.save()

        for event in follower.run(interval, stop=_reader_gone(out), started=started, rested=rested):
            mid = ids.id_of(event.ref, event.position, event.message) if cursor is not None or fmt not in (None, Format.table) else None
            if cursor is not None and mid is not None:
                if not cursor.is_new(event.ref.user, event.message, mid):
                    continue
                cursor.shipped(event.ref.user, event.message, mid)
            if redacting is not None:  # after the id and the cursor, which know the message as written
                event = event._replace(message=redacting.message(event.message))
            record = _record(event, mid)
            if fmt is Format.jsonl:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            elif writer is not None:
                writer.writerow([cell_text(record[k]) for k in fields])
            elif fmt is Format.tsv:
                out.write(tsv_line([cell_text(record[k]) for k in fields]))
            else:
                _print_event(state, event)
            out.flush()
            printed += 1
            if count is not None and printed >= count:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C is how following ends
    if cursor is not None and cursor.changed:
        cursor.save()  # everything printed was flushed
    report_redactions(state, redacting)
    state.detail(f"{printed} messages followed")


def _reader_gone(out: Any) -> Any:
    """A check, between looks, that stdout's reader is still there (``follow | head -1`` ends
    when head does, as ``tail -f`` does, not at the next message, which may never come)."""
    import select
    import stat

    try:
        fd = out.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (AttributeError, OSError, ValueError):
        is_pipe = False
    if not is_pipe:
        return lambda: False
    watch = select.poll()
    watch.register(fd, 0)  # POLLERR and POLLHUP are always reported

    def gone() -> bool:
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in watch.poll(0)):
            raise BrokenPipeError  # the same exit as a failed write: 141
        return False

    return gone


def _record(event: Any, mid: str | None) -> dict[str, Any]:
    from ...exchange.records import message_record

    return message_record(event, event.position, event.message, mid)


def _print_event(state: CliState, event: Any) -> None:
    from rich.text import Text

    from ..render import ROLE_STYLES, console, visible

    con = console(state)
    header = Text()
    header.append(visible(event.message.timestamp), style="dim")
    header.append(f"  {visible(event.ref.user)}/{visible(event.ref.name)}", style="bold")
    header.append(f" [{event.position}] ", style="dim")
    header.append(visible(event.message.role), style=ROLE_STYLES.get(event.message.role, "bold"))
    con.print(header)
    con.print(Text(visible(event.message.content)))
