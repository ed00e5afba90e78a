"""Archiving idle conversations: the disconnect fallback of the original design.

Servers archive a user's conversation when the user's connection closes, and
sweep idle sessions in case a disconnect was missed (every 30 s, for sessions
idle over 5 minutes). ``archive --idle 5m --all`` is that sweep for cron.

Planning reads only; each archive then happens under the user's lock after
re-reading the conversation's last message, so a message that lands between
the plan and the archive keeps the conversation active. Running it every
minute while servers append is safe: the worst case is a conversation that
is archived one sweep later.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from ..errors import LockBusy, NotFound, StorageError
from ..journal.core import Journal
from ..models import ConversationRef, ProgressCallback
from ..times import back, parse_timestamp, utc_now


class IdleConversation(NamedTuple):
    ref: ConversationRef
    last_message: str  # its timestamp, as written
    messages: int


class IdleOutcome(NamedTuple):
    ref: ConversationRef
    last_message: str
    messages: int
    archive_id: str | None  # None: kept (active again, or emptied meanwhile), or skipped
    note: str
    busy: str | None = None  # the lock error, when the user's lock stayed busy and the conversation was skipped


def _last(journal: Journal, ref: ConversationRef) -> tuple[datetime | None, str | None, int]:
    conv = journal.read(ref, missing_ok=True)
    if not conv.messages:
        return None, None, 0
    stamps = [(parse_timestamp(m.timestamp), m.timestamp) for m in conv.messages]
    dated = [(moment, text) for moment, text in stamps if moment is not None]
    if not dated:
        return None, None, len(conv.messages)
    moment, text = max(dated, key=lambda pair: pair[0])
    return moment, text, len(conv.messages)


def plan_idle(
    journal: Journal, idle: timedelta, users: Iterable[str] | None = None, now: datetime | None = None, progress: ProgressCallback | None = None
) -> list[IdleConversation]:
    """Active conversations whose newest message is older than ``idle``; changes nothing."""
    cutoff = back(now or utc_now(), idle)
    found = []
    for done, user in enumerate(journal.users() if users is None else users, 1):
        if progress is not None:
            progress(done, None)
        try:
            files = journal.conversation_files(user, include_archives=False)
        except StorageError as exc:  # said at the end; every other user is looked at
            journal.note_unreadable(journal.user_path(user), exc, user)
            continue
        for f in files:
            if f.size == 0:
                continue
            try:
                moment, text, count = _last(journal, f.ref)
            except StorageError as exc:
                journal.note_unreadable(f.rel_path, exc, user)
                continue
            if moment is not None and text is not None and moment < cutoff:
                found.append(IdleConversation(f.ref, text, count))
    return found


def archive_idle(journal: Journal, plan: list[IdleConversation], idle: timedelta, now: datetime | None = None) -> list[IdleOutcome]:
    """Archive each planned conversation that is still idle when its lock is held.

    A conversation whose user's lock stays busy (a stuck server) is skipped
    and reported (``busy``); every other one is still handled.
    """
    cutoff = back(now or utc_now(), idle)
    outcomes = []
    for item in plan:
        ref = item.ref

        def body(dialogs: object, ref: ConversationRef = ref, planned: IdleConversation = item) -> IdleOutcome:
            moment, text, count = _last(journal, ref)
            if moment is None or text is None:
                return IdleOutcome(ref, planned.last_message, count, None, "empty or undated now; kept")
            if moment >= cutoff:
                return IdleOutcome(ref, text, count, None, "active again; kept")
            name = journal.target_name(ref)
            archive_id = journal.archive_locked(dialogs, ref.user, name, ref)  # type: ignore[arg-type]
            return IdleOutcome(ref, text, count, archive_id, "archived")

        try:
            outcomes.append(journal.locked(ref.user, "archive --idle", body))
        except NotFound:
            outcomes.append(IdleOutcome(ref, item.last_message, item.messages, None, "gone since the plan was made"))
        except LockBusy as exc:
            outcomes.append(IdleOutcome(ref, item.last_message, item.messages, None, "lock busy; skipped", exc.message))
    return outcomes
