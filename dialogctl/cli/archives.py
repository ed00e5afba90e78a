"""``archive`` and ``restore``: moving conversations in and out of ``archived/``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .messages import ConversationOpt, UserArg
from .output import Column, FormatOption, emit_records
from .state import CliState


def archive(
    ctx: typer.Context,
    user: UserArg,
    conversation: ConversationOpt = None,
    archive_id: Annotated[Optional[str], typer.Option("--id", help="Archive id to use instead of the UTC time (YYYY-MM-DD-HH-MM-SS).", metavar="ID")] = None,
    fmt: FormatOption = None,
) -> None:
    """Archive a user's current conversation and start an empty one.

    Prints the new archive id on stdout (nothing when there was nothing to archive).

    Examples:

      dialogctl archive alice

      id=$(dialogctl archive alice) && dialogctl show alice --archive "$id"
    """
    state: CliState = ctx.obj
    journal = state.journal()
    new_id = journal.archive(user, conversation, archive_id)
    if new_id is None:
        state.say(f"the conversation of user {user!r} is empty; nothing archived")
    else:
        state.detail(f"archived the conversation of user {user!r} as {new_id}")
    if fmt is None or fmt.value == "table":
        if new_id is not None:
            print(new_id)
        return
    emit_records(state, fmt, [Column("user", "User"), Column("archive", "Archive")], [{"user": user, "archive": new_id}])


def restore(
    ctx: typer.Context,
    user: UserArg,
    archive_id: Annotated[str, typer.Argument(help="The archive to restore (see 'dialogctl list USER').", metavar="ARCHIVE_ID", show_default=False)],
    conversation: ConversationOpt = None,
    fmt: FormatOption = None,
) -> None:
    """Make an archived conversation current again.

    A non-empty current conversation is archived first, never overwritten.

    Examples:

      dialogctl restore alice 2024-01-15-10-30-00
    """
    state: CliState = ctx.obj
    result = state.journal().restore(user, archive_id, conversation)
    if result.archived_first:
        state.say(f"the conversation that was current was archived first as {result.archived_first}")
    state.detail(f"restored archive {archive_id} of user {user!r} as its {result.into} conversation")
    if fmt is None or fmt.value == "table":
        return
    record = {"user": user, "restored": result.restored, "into": result.into, "archivedFirst": result.archived_first}
    columns = [Column("user", "User"), Column("restored", "Restored"), Column("into", "Into"), Column("archivedFirst", "Archived first")]
    emit_records(state, fmt, columns, [record])
