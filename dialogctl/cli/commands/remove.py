"""``rm``: delete a conversation, an archive, or all of a user's data, for real."""

import sys
from typing import Annotated

import typer

from ..options import ArchiveOpt, ConversationOpt, UserArg
from ..output import Column, FormatOption, emit_object, emit_records
from ..state import CliState

FILE_COLUMNS = [Column("path", "File", "id")]


def rm(
    ctx: typer.Context,
    user: UserArg,
    conversation: ConversationOpt = None,
    archive: ArchiveOpt = None,
    all_data: Annotated[
        bool, typer.Option("--all-data", help="Delete everything of this user: conversations, archives, metadata, quarantined copies.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be deleted and change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (required when stdin is not a terminal).")] = False,
    fmt: FormatOption = None,
) -> None:
    """Delete a user's conversation, archive, or all their data, and log it in system/audit.log.

    Nothing is kept anywhere in the journal afterwards. Before the first file
    goes, the intent (who, when, what, how much and the paths; never message
    text) is appended to system/audit.log, and the outcome after; a log that
    cannot be written stops rm there (exit 6) with nothing deleted. --all-data
    takes exactly the user's files by the layout: its dialogs/, metadata.yaml
    and their copies in quarantine, never another user's folder inside its own.

    Examples:

    \b
      dialogctl rm alice --all-data --dry-run
      dialogctl rm alice --archive 2024-01-15-10-30-00 --yes
      dialogctl rm alice --conversation current --yes
    """
    from ...errors import InvalidInput
    from ...maintenance.deletion import plan_removal, remove

    state: CliState = ctx.obj
    if dry_run and yes:
        raise InvalidInput("--dry-run deletes nothing, so --yes has nothing to confirm; pass one")
    if not dry_run and not yes and not sys.stdin.isatty():
        raise InvalidInput("rm deletes data: pass --yes to run it without a terminal, or --dry-run to see what it would delete")
    journal = state.journal()
    plan = plan_removal(journal, user, conversation, archive, all_data)
    what = "all data" if plan.what == "all-data" else f"{plan.what} {plan.conversation!r}"
    summary = f"{what} of user {user!r}: {len(plan.files)} files, {plan.messages} messages, {plan.bytes} bytes"
    if dry_run:
        state.say(f"would delete {summary}")
        if fmt is None or fmt.value == "table":
            emit_records(state, fmt, FILE_COLUMNS, [{"path": p} for p in plan.files])
        else:
            emit_object(state, fmt, {"dryRun": True, **plan.to_json()}, lambda: None)
        return
    if not yes:
        emit_records(state, None, FILE_COLUMNS, [{"path": p} for p in plan.files])
        if not typer.confirm(f"Delete {summary}?", default=False, err=True):
            raise typer.Abort()
    done = remove(journal, plan)
    state.say(f"deleted {what} of user {user!r}: {len(done.files)} files, {done.messages} messages")
    if fmt is not None and fmt.value != "table":
        emit_object(state, fmt, {"dryRun": False, **done.to_json()}, lambda: None)
