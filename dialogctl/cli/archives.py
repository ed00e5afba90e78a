"""``archive`` and ``restore``: moving conversations in and out of ``archived/``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .options import ArchiveArg, ConversationOpt, UserArg
from .output import Column, FormatOption, emit_records
from .state import CliState

ARCHIVE_COLUMNS = [Column("user", "User"), Column("archive", "Archive")]
RESTORE_COLUMNS = [Column("user", "User"), Column("restored", "Restored"), Column("into", "Into"), Column("archivedFirst", "Archived first")]


def archive(
    ctx: typer.Context,
    user: UserArg,
    conversation: ConversationOpt = None,
    archive_id: Annotated[Optional[str], typer.Option("--id", help="Archive id to use instead of the UTC time (YYYY-MM-DD-HH-MM-SS).", metavar="ID")] = None,
    fmt: FormatOption = None,
) -> None:
    """Archive a user's current conversation and start an empty one.

    Prints the new archive id on stdout (nothing when there was nothing to
    archive); with --format, a record (user, archive).

    Examples:

    \b
      dialogctl archive alice
      dialogctl archive alice --id before-upgrade
      id=$(dialogctl archive alice) && dialogctl show alice --archive "$id"
    """
    state: CliState = ctx.obj
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
