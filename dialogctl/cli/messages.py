"""``append`` and ``show``: messages in and out of one user's conversation."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .output import Column, FormatOption, emit_records
from .state import CliState

UserArg = Annotated[str, typer.Argument(help="User id.", metavar="USER", show_default=False)]
ConversationOpt = Annotated[
    Optional[str], typer.Option("--conversation", help="Conversation id (session file session-<CID>.yaml) instead of the current conversation.", metavar="CID")
]

APPEND_COLUMNS = [
    Column("user", "User"),
    Column("conversation", "Conversation"),
    Column("appended", "Appended", "count"),
    Column("messages", "Messages now", "count"),
    Column("archived", "Archived", "json"),
]


def append(
    ctx: typer.Context,
    user: Annotated[
        Optional[str], typer.Argument(help='User id (with --jsonl optional: lines may carry a "user" field).', metavar="USER", show_default=False)
    ] = None,
    text: Annotated[Optional[str], typer.Argument(help="Message text; absent or '-' reads it from stdin.", metavar="[TEXT]", show_default=False)] = None,
    role: Annotated[str, typer.Option("--role", help="Role: user, assistant, system or tool.")] = "user",
    meta: Annotated[
        Optional[list[str]],
        typer.Option(
            "--meta",
            help="Metadata KEY=VALUE; VALUE is JSON if it parses (12, true, {...}), dotted keys nest (tokens.total=5). Repeatable.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    timestamp: Annotated[Optional[str], typer.Option("--timestamp", help="Message time (ISO 8601 or e.g. '5m'); default now.", metavar="TIME")] = None,
    conversation: ConversationOpt = None,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl", help='Read many messages from stdin, one JSON object per line: {"role", "content", "timestamp"?, "metadata"?, "user"?, "conversation"?}.'
        ),
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Append a message (or, with --jsonl, many) to a user's conversation.

    Each user's batch is one locked, fsynced write; the conversation is
    archived automatically when it reaches archiveThreshold messages.

    Examples:

      dialogctl append alice "Hello there"

      echo "Hi! How can I help?" | dialogctl append alice --role assistant --meta model=gpt-4 --meta tokens=12

      dialogctl append --jsonl < messages.jsonl
    """
    from ..errors import InvalidInput
    from ..layout import validate_name, validate_user_id
    from ..models import Message
    from .inputs import check_role, parse_jsonl_messages, parse_meta, read_stdin, timestamp_option

    state: CliState = ctx.obj
    if jsonl:
        if text is not None or meta or timestamp is not None or role != "user":
            raise InvalidInput("--jsonl reads every field from stdin; TEXT, --role, --meta and --timestamp cannot be combined with it")
        lines = parse_jsonl_messages(read_stdin("--jsonl input", "dialogctl append --jsonl < messages.jsonl"), user)
        groups: dict[tuple[str, Optional[str]], list[Message]] = {}
        for line_user, line_conv, msg in lines:
            key = (validate_user_id(line_user), line_conv if line_conv is not None else conversation)
            groups.setdefault(key, []).append(msg)
        for _, conv in groups:
            if conv is not None and conv != "current":
                validate_name(conv)
        if not groups:
            state.say("no messages on stdin; nothing appended")
            emit_records(state, fmt, APPEND_COLUMNS, [])
            return
    else:
        if user is None:
            raise InvalidInput('missing USER (or use --jsonl with a "user" field on each line)')
        check_role(role)
        content = text if text is not None and text != "-" else read_stdin("the message text", f"echo hello | dialogctl append {user}")
        groups = {(user, conversation): [Message(role, content, timestamp_option(timestamp), parse_meta(meta or []))]}
    journal = state.journal()
    results = []
    for (group_user, group_conv), batch in groups.items():
        result = journal.append(group_user, batch, group_conv)
        results.append(result)
        if result.archive_error:
            state.warn(f"the messages were appended, but the automatic archive failed ({result.archive_error}); the next append archives first")
        archived = f"; archived as {', '.join(result.archived)}" if result.archived else ""
        state.detail(f"appended {result.appended} message(s) to {result.user}/{result.conversation}, which now holds {result.messages}{archived}")
    if fmt is None or fmt.value == "table":
        total = sum(r.appended for r in results)
        if len(results) > 1 or total > 1:
            state.say(f"appended {total} messages for {len(results)} user conversation(s)")
        return
    emit_records(state, fmt, APPEND_COLUMNS, [_append_record(r) for r in results])


def _append_record(result: Any) -> dict[str, Any]:
    return {
        "user": result.user,
        "conversation": result.conversation,
        "appended": result.appended,
        "messages": result.messages,
        "archived": list(result.archived),
    }


MESSAGE_COLUMNS = [
    Column("index", "#", "count"),
    Column("timestamp", "Time"),
    Column("role", "Role"),
    Column("content", "Content", max_width=200),
    Column("metadata", "Metadata", "json", max_width=80),
]


def show(
    ctx: typer.Context,
    user: UserArg,
    conversation: ConversationOpt = None,
    archive: Annotated[Optional[str], typer.Option("--archive", help="Show this archived conversation.", metavar="ID")] = None,
    tail: Annotated[Optional[int], typer.Option("--tail", "-n", help="Only the last N messages.", min=0, metavar="N")] = None,
    fmt: FormatOption = None,
) -> None:
    """Show a user's conversation as a transcript (or as data with --format).

    Examples:

      dialogctl show alice

      dialogctl show alice --archive 2024-01-15-10-30-00 --format json

      dialogctl show alice --tail 20 --format jsonl | jq .content
    """
    from ..errors import InvalidInput
    from ..exporters import message_record

    state: CliState = ctx.obj
    if conversation is not None and archive is not None:
        raise InvalidInput("--conversation and --archive name different conversations; pass one")
    journal = state.journal()
    ref = journal.resolve(user, conversation, archive)
    conv = journal.read(ref)
    indexed = list(enumerate(conv.messages))
    if tail is not None:
        indexed = indexed[len(indexed) - tail :] if tail else []
    if fmt is None or fmt.value == "table":
        from .. import render

        if not indexed:
            state.say(f"{ref.describe()} holds no messages")
            return
        render.transcript(state, indexed, heading=f"{user} · {ref.name}{' (archived)' if ref.archived else ''}")
        return
    if fmt.value == "json":
        import json

        from .output import write

        obj = {
            "user": user,
            "conversation": ref.name,
            "archived": ref.archived,
            "messageCount": len(conv.messages),
            "messages": [{"index": i, **m.to_raw()} for i, m in indexed],
        }
        write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
        return
    emit_records(state, fmt, MESSAGE_COLUMNS, (message_record(conv, i, m) for i, m in indexed))
