"""``list``, ``stats``, ``locks`` and ``config``: looking at the journal as a whole."""

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..options import complete_users
from ..output import Column, FormatOption, emit_object, emit_records, object_format
from ..state import CliState

if TYPE_CHECKING:
    from ...journal.core import Journal

USER_COLUMNS = [
    Column("user", "User", "id"),
    Column("conversations", "Active", "count"),
    Column("archives", "Archives", "count"),
    Column("messages", "Messages", "count"),
    Column("bytes", "Size", "bytes"),
    Column("lastActivity", "Last activity", "time"),
]

CONVERSATION_COLUMNS = [
    Column("user", "User", "id", in_table=False),
    Column("conversation", "Conversation", "id"),
    Column("kind", "Kind"),
    Column("archived", "Archived", "bool", in_table=False),  # the kind says it
    Column("messages", "Messages", "count"),
    Column("firstMessage", "First message", "time"),
    Column("lastMessage", "Last message", "time"),
    Column("bytes", "Size", "bytes"),
    Column("damaged", "Damaged", "count"),
]


def list_(
    ctx: typer.Context,
    user: Annotated[
        Optional[str],
        typer.Argument(
            help="List this user's conversations and archives instead of all users.", metavar="[USER]", show_default=False, autocompletion=complete_users
        ),
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """List users with message counts, size and last activity, or one user's conversations.

    Tables show human sizes and relative times (3h ago); --format json, jsonl,
    csv and tsv carry the raw values (bytes, ISO 8601 times as written).

    Examples:

    \b
      dialogctl list
      dialogctl list alice
      dialogctl list --format json | jq -r '.[] | select(.messages > 100) | .user'
      dialogctl list --format csv > users.csv
    """
    from ...views.overview import users_overview
    from ..progress import ProgressBar

    state: CliState = ctx.obj
    journal = state.journal()
    if user is None:
        if not journal.exists():
            state.say(f"journal root {journal.root} does not exist yet (no users)")
        with ProgressBar(state, "Reading users") as bar:
            overviews = users_overview(journal, progress=bar.update)
            emit_records(state, fmt, USER_COLUMNS, (o.to_json() for o in overviews), empty="no users in the journal")
        return
    records = []
    for summary in journal.summaries(user):
        records.append(
            {
                "user": user,
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


class Breakdown(StrEnum):  # dialogctl.views.analytics.BREAKDOWNS
    day = "day"
    week = "week"
    model = "model"
    user = "user"


_REACH = [Column("messages", "Messages", "count"), Column("tokens", "Tokens", "count"), Column("conversations", "Conversations", "count")]


def _breakdown_columns(by: str) -> list[Column]:
    """A breakdown's row: its key, messages, tokens, conversations, then users (or, per user, the last activity)."""
    last = Column("lastActivity", "Last activity", "time") if by == "user" else Column("users", "Users", "count")
    return [Column(by, by.capitalize(), "id" if by in ("user", "model") else "text"), *_REACH, last]


def stats(
    ctx: typer.Context,
    by: Annotated[
        Optional[Breakdown],
        typer.Option("--by", help="One row per day, ISO week, model or user instead of the totals (any --format).", case_sensitive=False, show_default=False),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, metavar="N", help="How many of the most active users to show.")] = 10,
    rescan: Annotated[
        bool, typer.Option("--rescan", help="Read every file again instead of trusting the saved catalog for unchanged ones (and rebuild it).")
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Totals and usage for the whole journal: users, messages, tokens, models, activity.

    One object (table, json or jsonl): users, messages, archives, storage,
    time span, messages by role and model, token totals and averages (an
    integer tokens, or the total, prompt+completion or input+output of a
    mapping), the longest conversation, the most active users (--top N) and
    messages per UTC day. json carries raw values (storageUsage in bytes,
    ISO 8601 times, null for a token figure no message recorded); on a
    terminal the table ends with a chart of the 30 days up to the newest
    activity. --by day|week|model|user prints rows instead (messages, tokens,
    conversations, users), in any --format including csv and tsv.

    Each run also leaves a snapshot in system/stats.yaml for other tools;
    appends do not update it and dialogctl never reads it back. Files
    unchanged since the last run (same size and modification time) are not
    read again; --rescan reads them all, for a file edited in place with its
    modification time set back.

    Examples:

    \b
      dialogctl stats
      dialogctl stats --format json | jq .totalTokens
      dialogctl stats --format jsonl >> stats-history.jsonl
      dialogctl stats --by week
      dialogctl stats --by model --format csv > models.csv
    """
    from ...views.analytics import journal_analytics, save_system_stats
    from ..progress import ProgressBar

    state: CliState = ctx.obj
    chosen = fmt if by else object_format(fmt, "stats", hint="--by day|week|model|user prints rows, which csv and tsv carry")
    journal = state.journal()
    with ProgressBar(state, "Reading users") as bar:
        found = journal_analytics(journal, by.value if by else None, progress=bar.update, rescan=rescan)
    if not save_system_stats(journal, found.totals):
        state.detail("system/stats.yaml not written (journal missing or not writable)")
    if by is not None:
        emit_records(state, chosen, _breakdown_columns(by.value), found.breakdown(), title=f"Messages by {by.value}", empty="no messages in the journal")
        return
    totals = found.to_json(top)

    def table() -> None:
        from .. import render

        render.key_values(state, _stats_pairs(totals), title="Journal statistics")
        recent = found.recent_days()
        if recent and render.on_terminal():
            render.activity_chart(state, recent)

    emit_object(state, chosen, totals, table)


def _stats_pairs(totals: dict[str, Any]) -> list[tuple[str, str]]:
    """The stats object as key/value rows for people (the json keys, in words)."""
    from .. import render

    def tokens(count: int | None) -> str:
        return "" if count is None else f", {count:,} tokens"

    pairs = [
        ("Users", f"{totals['totalUsers']:,}"),
        ("Messages", f"{totals['totalMessages']:,}"),
        ("Conversations", f"{totals['totalConversations']:,}"),
        ("Archived conversations", f"{totals['totalArchivedConversations']:,}"),
        ("Messages per user", f"{totals['averageMessagesPerUser']}"),
        ("Messages per conversation", f"{totals['averageMessagesPerConversation']}"),
        ("Storage", render.human_bytes(int(totals["storageUsage"]))),
        ("Oldest message", render.human_time(totals["oldestMessage"])),
        ("Newest message", render.human_time(totals["newestMessage"])),
        ("Last cleanup", render.human_time(totals["lastCleanup"]) or "never"),
    ]
    pairs += [(f"  {role} messages", f"{count:,}") for role, count in totals["messagesByRole"].items()]
    if totals["damagedRecords"]:
        pairs.append(("Damaged records", f"{totals['damagedRecords']:,}"))
    if totals["recoveredRecords"]:
        pairs.append(("Recovered damage", f"{totals['recoveredRecords']:,} (nothing lost; 'dialogctl repair' rewrites those files)"))
    if totals["tokenMessages"]:
        pairs += [
            ("Tokens", f"{totals['totalTokens']:,} in {totals['tokenMessages']:,} messages with a count"),
            ("Tokens per counted message", f"{totals['averageTokensPerMessage']}"),
            ("Tokens per conversation", f"{totals['averageTokensPerConversation']}"),
        ]
    else:
        pairs.append(("Tokens", "no message carries a token count"))
    models = totals["messagesByModel"]
    if models:
        pairs.append(("Models", f"{len(models):,}"))
        ranked = sorted(models.items(), key=lambda item: (-item[1], item[0]))
        pairs += [(f"  {model}", f"{count:,} messages{tokens(totals['tokensByModel'].get(model))}") for model, count in ranked]
    longest = totals["longestConversation"]
    if longest:
        where = f"{longest['user']} / {longest['conversation']}" + (" (archived)" if longest["archived"] else "")
        pairs.append(("Longest conversation", f"{longest['messages']:,} messages in {where}"))  # the count first: a narrow terminal cuts the end
    if totals["mostActiveUsers"]:
        pairs.append(("Most active users", ""))
        pairs += [
            (f"  {u['user']}", f"{u['messages']:,} messages{tokens(u['tokens'])}, last {render.human_time(u['lastActivity']) or 'unknown'}")
            for u in totals["mostActiveUsers"]
        ]
    return pairs


LOCK_COLUMNS = [
    Column("user", "User", "id"),
    Column("held", "Held", "bool"),
    Column("pid", "PID", "name"),
    Column("host", "Host", "id"),
    Column("serverId", "Server", "id"),
    Column("command", "Command"),
    Column("since", "Since", "time"),
]


def locks(
    ctx: typer.Context,
    user: Annotated[Optional[str], typer.Argument(help="Only this user's lock.", metavar="[USER]", show_default=False, autocompletion=complete_users)] = None,
    held_only: Annotated[bool, typer.Option("--held", help="Only locks that are held right now.")] = False,
    fmt: FormatOption = None,
) -> None:
    """Show users' locks: whether each is held right now, and by whom.

    A lock that is not held shows no owner (the record left in its file is
    stale). Users who never took a lock have no lock file and are not listed.

    Examples:

    \b
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


# Setting and variable names are never cut (people copy them); on a narrow terminal the variable goes first.
CONFIG_COLUMNS = [
    Column("setting", "Setting", "name"),
    Column("value", "Value", "id"),
    Column("source", "Source"),
    Column("env", "Environment variable", "name", drop=1),
]


def config(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """Show every effective setting and where it came from.

    Sources, first match wins: flag, environment variable, ./poto.config.yaml
    (or --config), the user config file, the default. The last row is the
    layout of the journal the settings select.

    Examples:

    \b
      dialogctl config
      DIALOGUE_JOURNAL_ROOT=/srv/journal dialogctl config --format json
    """
    from ...config import ENV_PREFIX, SPECS

    state: CliState = ctx.obj
    settings = state.settings()
    records: list[dict[str, Any]] = []
    for spec in SPECS:
        setting = settings.setting(spec.name)
        value = setting.value
        if spec.name in ("fileMode", "dirMode"):
            value = f"{value:04o}"
        records.append({"setting": spec.name, "value": value, "source": setting.source, "env": ENV_PREFIX + spec.env})
    from ...errors import DialogError

    failure: DialogError | None = None
    try:
        records.append(_effective_layout(state.journal()))
    except DialogError as exc:  # a root that is not a folder: every setting is still shown, then the error
        failure = exc
        records.append({"setting": "effectiveLayout", "value": None, "source": f"error: {exc.message}", "env": None})
    emit_records(state, fmt, CONFIG_COLUMNS, records)
    if failure is not None:
        raise failure


def _effective_layout(journal: "Journal") -> dict[str, Any]:
    """The layout row of ``config``: a journal whose layout cannot be told still shows every setting."""
    from ...errors import DialogError

    try:
        layout = journal.layout()
    except DialogError as exc:
        return {"setting": "effectiveLayout", "value": None, "source": f"error: {exc.message}", "env": None}
    how = "recorded in config/journal-config.yaml" if journal.read_record() else ("detected from folders" if journal.exists() else "for a new journal")
    return {"setting": "effectiveLayout", "value": layout.describe(), "source": how, "env": None}
