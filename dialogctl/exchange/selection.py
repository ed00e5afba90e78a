"""What leaves in an export: a :class:`Selection` of users and conversations, read one conversation at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from ..errors import InvalidInput
from ..models import ConversationRef, Message
from ..views.filters import ALL, MessageFilter

if TYPE_CHECKING:  # a selection is only read when an export runs: --help need not load the journal
    from ..journal.core import Journal
    from ..journal.files import Conversation
    from .cursor import Cursor


class Selection(NamedTuple):
    """What an export takes from the journal."""

    users: tuple[str, ...] = ()  # empty: every user, every conversation, archives included
    conversation: str | None = None  # one conversation id (``current`` or a session id)
    archive: str | None = None  # one archive id
    include_archives: bool = False  # with users: their archives too
    filter: MessageFilter = ALL
    cursor: Cursor | None = None  # --cursor-file: only messages after it, each noted in it as it is handed on

    def with_cursor(self, cursor: Cursor | None) -> Selection:
        """The same selection, read through ``cursor`` (a dataset export learns its cursor once its folder is open)."""
        return self._replace(cursor=cursor)

    def check(self) -> None:
        if self.conversation is not None and self.archive is not None:
            raise InvalidInput("--conversation and --archive name different conversations; pass one")
        if (self.conversation is not None or self.archive is not None) and self.include_archives:
            raise InvalidInput("--include-archives selects many conversations; it cannot be combined with --conversation or --archive")


class Selected(NamedTuple):
    """One conversation as exported: its place, and its kept messages with their indexes."""

    ref: ConversationRef
    messages: list[tuple[int, Message]]
    ids: list[str] | None = None  # the messages' message_id, when the whole conversation was at hand to count them

    def id_list(self) -> list[str]:
        """Each kept message's ``message_id`` (counted among the kept messages when :attr:`ids` is not set)."""
        if self.ids is not None:
            return self.ids
        from .cursor import message_ids

        return message_ids(self.ref.user, (msg for _, msg in self.messages))


def is_single(journal: Journal, selection: Selection) -> bool:
    """Whether the selection can only ever be one conversation (json then writes one object)."""
    return (
        len(selection.users) == 1
        and not selection.include_archives
        and (selection.conversation is not None or selection.archive is not None or journal.layout().conversations == "current")
    )


def select(journal: Journal, selection: Selection) -> Iterator[Selected]:
    """The selected conversations, read one at a time.

    Named users are checked before anything is read, so a typo fails before
    any output. With a filter, a conversation left with no message is skipped
    (unless it is the only one asked for).
    """
    selection.check()
    for user in selection.users:
        journal.dialogs_folder(user).close()  # NotFound for a missing user
    keep_empty = not (selection.filter.active or selection.cursor is not None) or is_single(journal, selection)
    return _selected(journal, selection, keep_empty)


def _selected(journal: Journal, selection: Selection, keep_empty: bool) -> Iterator[Selected]:
    from .cursor import message_ids

    cursor = selection.cursor
    for conv in _conversations(journal, selection):
        every = message_ids(conv.ref.user, conv.messages)
        kept = list(selection.filter.indexed(conv.messages))
        if cursor is not None:
            kept = [(i, m) for i, m in kept if cursor.is_new(conv.ref.user, m, every[i])]
            for i, m in kept:
                cursor.shipped(conv.ref.user, m, every[i])
        if kept or keep_empty:
            yield Selected(conv.ref, kept, [every[i] for i, _ in kept])


def _conversations(journal: Journal, selection: Selection) -> Iterator[Conversation]:
    if selection.conversation is None and selection.archive is None:
        yield from journal.conversations(selection.users or None, include_archives=selection.include_archives or not selection.users)
        return
    for user in selection.users or journal.users():
        ref = journal.resolve(user, selection.conversation, selection.archive)
        if not selection.users and ref not in {f.ref for f in journal.conversation_files(user)}:
            continue  # --all: only the users who have it
        yield journal.read(ref)
