"""``archive`` and ``restore``: moving conversations in and out of ``archived/``."""

from typing import Annotated, Any, Optional

import typer

from ..options import ArchiveArg, ConversationOpt, OptionalUserArg, UserArg
from ..output import Column, FormatOption, emit_records
from ..progress import ProgressBar
from ..state import CliState

ARCHIVE_COLUMNS = [Column("user", "User", "id"), Column("archive", "Archive", "id")]
RESTORE_COLUMNS = [
    Column("user", "User", "id"),
    Column("restored", "Restored", "id"),
    Column("into", "Into", "id"),
    Column("archivedFirst", "Archived first", "id"),
]


IDLE_COLUMNS = [
    Column("user", "User", "id"),
    Column("conversation", "Conversation", "id"),
    Column("lastMessage", "Last message", "time"),
    Column("messages", "Messages", "count"),
    Column("archive", "Archive", "id"),
    Column("note", "Outcome"),
]


def archive(
    ctx: typer.Context,
    user: OptionalUserArg = None,
    conversation: ConversationOpt = None,
    archive_id: Annotated[Optional[str], typer.Option("--id", help="Archive id to use instead of the UTC time (YYYY-MM-DD-HH-MM-SS).", metavar="ID")] = None,
    idle: Annotated[
        Optional[str],
        typer.Option("--idle", help="Archive every active conversation whose newest message is older than DURATION (5m, 1h, ...).", metavar="DURATION"),
    ] = None,
    all_users: Annotated[bool, typer.Option("--all", help="With --idle: every user of the journal.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="With --idle: list what would be archived and change nothing.")] = False,
    fmt: FormatOption = None,
) -> None:
    """Archive a user's current conversation and start an empty one; or sweep idle ones.

    Prints the new archive id on stdout (nothing when there was nothing to
    archive); with --format, a record (user, archive). With --idle, archives
    every active conversation idle longer than DURATION (the disconnect
    fallback: safe to run from cron every minute while servers append), one
    row per conversation (user, conversation, last message, messages,
    archive, outcome), the same rows with or without --dry-run, in every
    --format. A conversation whose user's lock stays busy (a stuck
    server) is skipped and reported, every other one is handled, and the
    sweep then exits 4.

    Examples:

    \b
      dialogctl archive alice
      dialogctl archive alice --id before-upgrade
      id=$(dialogctl archive alice) && dialogctl show alice --archive "$id"
      dialogctl archive --idle 5m --all --dry-run
      * * * * *  dialogctl -q archive --idle 5m --all
    """
    from ...errors import InvalidInput

    state: CliState = ctx.obj
    if idle is not None:
        if archive_id is not None or conversation is not None:
            raise InvalidInput("--idle archives every idle conversation it finds; --id and --conversation name one, pass either")
        if all_users == (user is not None):
            raise InvalidInput("--idle needs a USER or --all (not both)")
        _archive_idle(state, user, idle, dry_run, fmt)
        return
    if all_users or dry_run:
        raise InvalidInput("--all and --dry-run go with --idle DURATION")
    if user is None:
        raise InvalidInput("missing USER (or --idle DURATION --all to sweep idle conversations)")
    new_id = state.journal().archive(user, conversation, archive_id)
    if new_id is None:
        state.say(f"the conversation of user {user!r} is empty; nothing archived")
    else:
        state.detail(f"archived the conversation of user {user!r} as {new_id}")
    if fmt is None:
        if new_id is not None:
            print(new_id)
        return
    emit_records(state, fmt, ARCHIVE_COLUMNS, [{"user": user, "archive": new_id}])


def restore(
    ctx: typer.Context,
    user: UserArg,
    archive_id: ArchiveArg,
    conversation: ConversationOpt = None,
    fmt: FormatOption = None,
) -> None:
    """Make an archived conversation current again.

    A non-empty current conversation is archived first, never overwritten.
    Prints nothing unless --format asks for the result (user, restored, into,
    archivedFirst).

    Examples:

    \b
      dialogctl restore alice 2024-01-15-10-30-00
      dialogctl restore alice before-upgrade --format json
    """
    state: CliState = ctx.obj
    result = state.journal().restore(user, archive_id, conversation)
    if result.archived_first:
        state.say(f"the conversation that was current was archived first as {result.archived_first}")
    state.detail(f"restored archive {archive_id} of user {user!r} as its {result.into} conversation")
    if fmt is not None:
        record = {"user": user, "restored": result.restored, "into": result.into, "archivedFirst": result.archived_first}
        emit_records(state, fmt, RESTORE_COLUMNS, [record])


def _archive_idle(state: CliState, user: str | None, idle: str, dry_run: bool, fmt: Any) -> None:
    from ...maintenance.idle import archive_idle, plan_idle
    from ...times import back, format_timestamp, parse_duration, utc_now

    span = parse_duration(idle, "--idle")
    journal = state.journal()
    now = utc_now()
    state.detail(f"cut-off: newest message before {format_timestamp(back(now, span))}")
    with ProgressBar(state, "Looking for idle conversations") as bar:
        plan = plan_idle(journal, span, None if user is None else [user], now, progress=bar.update)
    if dry_run:
        rows = [_idle_row(item.ref, item.last_message, item.messages, None, "would archive") for item in plan]
        emit_records(state, fmt, IDLE_COLUMNS, rows, empty="no idle conversations")
        return
    outcomes = archive_idle(journal, plan, span, now)
    rows = [_idle_row(o.ref, o.last_message, o.messages, o.archive_id, o.note) for o in outcomes]
    archived = sum(1 for o in outcomes if o.archive_id)
    busy = [o for o in outcomes if o.busy]
    for o in busy:
        state.warn(f"{o.ref.describe()}: skipped: lock busy: {o.busy}")
    state.detail(f"archived {archived} of {len(outcomes)} idle conversations")
    emit_records(state, fmt, IDLE_COLUMNS, rows, empty="no idle conversations")  # the rows of the dry run, with what happened
    if busy:
        from ...errors import LockBusy

        users = ", ".join(sorted({repr(o.ref.user) for o in busy}))
        raise LockBusy(
            f"{len(busy)} idle conversation(s) skipped, their users' locks busy: {users}; every other one was handled",
            hint="the next sweep archives them, or look at 'dialogctl locks --held'",
        )


def _idle_row(ref: Any, last: str, messages: int, archive_id: str | None, note: str) -> dict[str, Any]:
    return {"user": ref.user, "conversation": ref.name, "lastMessage": last, "messages": messages, "archive": archive_id, "note": note}
