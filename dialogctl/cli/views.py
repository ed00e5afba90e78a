"""``list``, ``stats``, ``locks`` and ``config``: looking at the journal as a whole."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .output import Column, FormatOption, emit_object, emit_records
from .state import CliState

USER_COLUMNS = [
    Column("user", "User"),
    Column("conversations", "Active", "count"),
    Column("archives", "Archives", "count"),
    Column("messages", "Messages", "count"),
    Column("bytes", "Size", "bytes"),
    Column("lastActivity", "Last activity", "time"),
]

CONVERSATION_COLUMNS = [
    Column("conversation", "Conversation"),
    Column("kind", "Kind"),
    Column("archived", "Archived", "bool"),
    Column("messages", "Messages", "count"),
    Column("firstMessage", "First message", "time"),
    Column("lastMessage", "Last message", "time"),
    Column("bytes", "Size", "bytes"),
    Column("damaged", "Damaged", "count"),
]


def list_(
    ctx: typer.Context,
    user: Annotated[
        Optional[str], typer.Argument(help="List this user's conversations and archives instead of all users.", metavar="[USER]", show_default=False)
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """List users with message counts and last activity, or one user's conversations.

    Examples:

      dialogctl list

      dialogctl list alice

      dialogctl list --format json | jq '.[] | select(.messages > 100) | .user'
    """
    from ..overview import users_overview

    state: CliState = ctx.obj
    journal = state.journal()
    if user is None:
        if not journal.exists():
            state.say(f"journal root {journal.root} does not exist yet (no users)")
        emit_records(state, fmt, USER_COLUMNS, (o.to_json() for o in users_overview(journal)), empty="no users in the journal")
        return
    records = []
    for summary in journal.summaries(user):
        records.append(
            {
                "conversation": summary.ref.name,
                "kind": summary.ref.kind,
                "archived": summary.ref.archived,
                "messages": summary.messages,
                "firstMessage": summary.first_timestamp,
                "lastMessage": summary.last_timestamp,
                "bytes": summary.size,
                "damaged": summary.damaged,
            }
        )
    emit_records(state, fmt, CONVERSATION_COLUMNS, records, title=f"Conversations of {user}", empty=f"user {user!r} has no conversations")


def stats(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """Totals for the whole journal: users, messages, archives, storage, time span.

    Examples:

      dialogctl stats

      dialogctl stats --format json | jq .totalMessages
    """
    from ..overview import journal_totals

    state: CliState = ctx.obj
    totals = journal_totals(state.journal()).to_json()

    def table() -> None:
        from .. import render

        pairs = [
            ("Users", f"{totals['totalUsers']:,}"),
            ("Messages", f"{totals['totalMessages']:,}"),
            ("Conversations", f"{totals['totalConversations']:,}"),
            ("Archived conversations", f"{totals['totalArchivedConversations']:,}"),
            ("Messages per user", f"{totals['averageMessagesPerUser']}"),
            ("Storage", render.human_bytes(int(totals["storageUsage"]))),  # type: ignore[call-overload]
            ("Oldest message", render.human_time(totals["oldestMessage"])),  # type: ignore[arg-type]
            ("Newest message", render.human_time(totals["newestMessage"])),  # type: ignore[arg-type]
            ("Last cleanup", render.human_time(totals["lastCleanup"]) or "never"),  # type: ignore[arg-type]
        ]
        pairs += [(f"  {role} messages", f"{count:,}") for role, count in totals["messagesByRole"].items()]  # type: ignore[attr-defined]
        if totals["damagedRecords"]:
            pairs.append(("Damaged records", f"{totals['damagedRecords']:,}"))
        render.key_values(state, pairs, title="Journal statistics")

    emit_object(state, fmt, totals, table)


LOCK_COLUMNS = [
    Column("user", "User"),
    Column("held", "Held", "bool"),
    Column("pid", "PID"),
    Column("host", "Host"),
    Column("serverId", "Server"),
    Column("command", "Command"),
    Column("since", "Since", "time"),
]


def locks(
    ctx: typer.Context,
    user: Annotated[Optional[str], typer.Argument(help="Only this user's lock.", metavar="[USER]", show_default=False)] = None,
    held_only: Annotated[bool, typer.Option("--held", help="Only locks that are held right now.")] = False,
    fmt: FormatOption = None,
) -> None:
    """Show users' locks: whether each is held right now, and by whom.

    The owner of a lock that is not held is the last holder (left for inspection).

    Examples:

      dialogctl locks --held

      dialogctl locks alice --format json
    """
    state: CliState = ctx.obj
    journal = state.journal()
    records = []
    for lock_user, lock in journal.locks([user] if user else None):
        if held_only and not lock.held:
            continue
        owner = lock.owner
        records.append(
            {
                "user": lock_user,
                "held": lock.held,
                "pid": owner.pid if owner and lock.held else None,
                "host": owner.host if owner and lock.held else None,
                "serverId": owner.server_id if owner and lock.held else None,
                "command": owner.command if owner and lock.held else None,
                "since": owner.since if owner and lock.held else None,
            }
        )
    emit_records(state, fmt, LOCK_COLUMNS, records, empty="no locks held" if held_only else "no lock files")


CONFIG_COLUMNS = [Column("setting", "Setting"), Column("value", "Value"), Column("source", "Source"), Column("env", "Environment variable")]


def config(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """Show every effective setting and where it came from.

    Examples:

      dialogctl config

      DIALOGUE_JOURNAL_ROOT=/srv/journal dialogctl config --format json
    """
    from ..config import ENV_PREFIX, SPECS
    from ..errors import DialogError

    state: CliState = ctx.obj
    settings = state.settings()
    records: list[dict[str, Any]] = []
    for spec in SPECS:
        setting = settings.setting(spec.name)
        value = setting.value
        if spec.name in ("fileMode", "dirMode"):
            value = f"{value:04o}"
        records.append({"setting": spec.name, "value": value, "source": setting.source, "env": ENV_PREFIX + spec.env})
    journal = state.journal()
    try:
        layout = journal.layout()
        how = "recorded in config/journal-config.yaml" if journal._read_record() else ("detected from folders" if journal.exists() else "for a new journal")
        records.append({"setting": "effectiveLayout", "value": layout.describe(), "source": how, "env": None})
    except DialogError as exc:
        records.append({"setting": "effectiveLayout", "value": None, "source": f"error: {exc.message}", "env": None})
    emit_records(state, fmt, CONFIG_COLUMNS, records)
