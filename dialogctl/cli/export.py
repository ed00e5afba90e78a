"""``export``: conversations out of the journal, streamed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Optional

import typer

from .state import CliState


class ExportFormat(StrEnum):
    json = "json"
    jsonl = "jsonl"


def export(
    ctx: typer.Context,
    users: Annotated[Optional[list[str]], typer.Argument(help="Users to export (or --all).", metavar="[USER]...", show_default=False)] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user and every conversation, archives included (a full dump).")] = False,
    conversation: Annotated[Optional[str], typer.Option("--conversation", help="Only this conversation id.", metavar="CID")] = None,
    archive: Annotated[Optional[str], typer.Option("--archive", help="Only this archive.", metavar="ID")] = None,
    include_archives: Annotated[bool, typer.Option("--include-archives", help="With USER: archives too, not only active conversations.")] = False,
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="json: the reference shape per conversation; jsonl: one message per line with its identity.", case_sensitive=False),
    ] = ExportFormat.jsonl,
) -> None:
    """Export conversations as JSON or JSONL on stdout.

    Examples:

      dialogctl export alice --format json > alice.json

      dialogctl export --all --format jsonl | gzip > journal.jsonl.gz
    """
    from ..errors import InvalidInput
    from ..exporters import write_json, write_jsonl
    from ..journal import Conversation
    from ..layout import validate_user_id

    state: CliState = ctx.obj
    if all_users and users:
        raise InvalidInput("pass USER names or --all, not both")
    if not all_users and not users:
        raise InvalidInput("name the users to export, or pass --all")
    if conversation is not None and archive is not None:
        raise InvalidInput("--conversation and --archive name different conversations; pass one")
    if (conversation is not None or archive is not None) and include_archives:
        raise InvalidInput("--include-archives selects many conversations; it cannot be combined with --conversation or --archive")
    for user in users or []:
        validate_user_id(user)  # before anything touches the disk
    journal = state.journal()
    single = (
        bool(users)
        and len(users or []) == 1
        and not include_archives
        and (conversation is not None or archive is not None or journal.layout().conversations == "current")
    )

    def selected() -> Iterator[Conversation]:
        if conversation is not None or archive is not None:
            for user in users if users else journal.users():
                ref = journal.resolve(user, conversation, archive)
                if all_users:
                    files = {f.ref for f in journal.conversation_files(user)}
                    if ref not in files:
                        continue
                yield journal.read(ref)
            return
        if all_users:
            yield from journal.conversations(None, include_archives=True)
            return
        for user in users or []:
            journal.conversation_files(user)  # a missing user is an error, not an empty export
            yield from journal.conversations([user], include_archives=include_archives)

    out = sys.stdout
    if fmt is ExportFormat.jsonl:
        count = write_jsonl(out, selected())
    else:
        count = write_json(out, selected(), single=single)
    out.flush()
    state.detail(f"exported {count} messages")
