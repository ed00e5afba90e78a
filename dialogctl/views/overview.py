"""Journal-wide views: the user listing, one user's conversations, and totals.

Everything here is computed from per-conversation summaries
(:class:`dialogctl.models.ConversationSummary`). Whole-journal views take them
from the catalog (:mod:`dialogctl.journal.catalog`), which reads only files that changed
and gives the same numbers as reading every file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from ..disk.paths import CLEANUP_LOG_FILE, SYSTEM_DIR
from ..journal.core import Journal
from ..models import ConversationSummary, ProgressCallback
from ..times import parse_timestamp


@dataclass(frozen=True)
class UserOverview:
    user: str
    conversations: int  # active: current and sessions holding messages
    archives: int
    messages: int
    size: int
    last_activity: str | None  # newest message timestamp, as written

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "conversations": self.conversations,
            "archives": self.archives,
            "messages": self.messages,
            "bytes": self.size,
            "lastActivity": self.last_activity,
        }


def later(a: str | None, b: str | None) -> str | None:
    """The later of two journal timestamps (None and unreadable ones lose)."""
    if a is None:
        return b
    if b is None:
        return a
    ta, tb = parse_timestamp(a), parse_timestamp(b)
    if ta is None:
        return b
    if tb is None:
        return a
    return b if tb > ta else a


def user_overview(user: str, summaries: list[ConversationSummary]) -> UserOverview:
    last = None
    for s in summaries:
        last = later(last, s.last_timestamp)
    return UserOverview(
        user,
        sum(1 for s in summaries if not s.ref.archived and s.messages),
        sum(1 for s in summaries if s.ref.archived),
        sum(s.messages for s in summaries),
        sum(s.size for s in summaries),
        last,
    )


def users_overview(journal: Journal, users: Iterable[str] | None = None, progress: ProgressCallback | None = None) -> Iterator[UserOverview]:
    if users is None:
        from ..journal.catalog import summaries

        for done, (user, found) in enumerate(summaries(journal), 1):
            yield user_overview(user, found)
            if progress is not None:
                progress(done, None)
        return
    for done, user in enumerate(users, 1):
        yield user_overview(user, journal.summaries(user))
        if progress is not None:
            progress(done, None)


@dataclass
class Totals:
    users: int = 0
    messages: int = 0
    conversations: int = 0
    archived: int = 0
    storage: int = 0
    oldest: str | None = None
    newest: str | None = None
    roles: dict[str, int] = field(default_factory=dict)
    damaged: int = 0
    recovered: int = 0  # damage read through with nothing lost (see dialogctl.models.RECOVERED_KINDS)
    last_cleanup: str | None = None
    tokens: int = 0
    token_messages: int = 0  # messages that carried a token count
    # oldest/newest parsed, so each summary's timestamps are parsed once (this runs per file on every stats)
    _oldest_at: datetime | None = field(default=None, repr=False, compare=False)
    _newest_at: datetime | None = field(default=None, repr=False, compare=False)

    def add(self, summaries: list[ConversationSummary]) -> None:
        self.users += 1
        for s in summaries:
            self.messages += s.messages
            self.storage += s.size
            self.damaged += s.damaged
            self.recovered += s.recovered
            self.tokens += s.tokens
            self.token_messages += s.token_messages
            if s.ref.archived:
                self.archived += 1
            if s.messages or s.ref.archived:
                self.conversations += 1
            if s.first_timestamp is not None:
                at = parse_timestamp(s.first_timestamp)
                if at is not None and (self._oldest_at is None or at < self._oldest_at):
                    self.oldest, self._oldest_at = s.first_timestamp, at
            if s.last_timestamp is not None:
                at = parse_timestamp(s.last_timestamp)
                if at is not None and (self._newest_at is None or at > self._newest_at):
                    self.newest, self._newest_at = s.last_timestamp, at
            for role, count in s.roles.items():
                self.roles[role] = self.roles.get(role, 0) + count

    def to_json(self) -> dict[str, object]:
        return {
            "totalUsers": self.users,
            "totalMessages": self.messages,
            "totalConversations": self.conversations,
            "totalArchivedConversations": self.archived,
            "averageMessagesPerUser": round(self.messages / self.users, 2) if self.users else 0,
            "storageUsage": self.storage,
            "oldestMessage": self.oldest,
            "newestMessage": self.newest,
            "lastCleanup": self.last_cleanup,
            "messagesByRole": dict(sorted(self.roles.items())),
            "damagedRecords": self.damaged,
            "recoveredRecords": self.recovered,
            "totalTokens": self.tokens if self.token_messages else None,  # unknown, not 0, when no message carried a count
            "tokenMessages": self.token_messages,
        }


def journal_totals(journal: Journal, progress: ProgressCallback | None = None) -> Totals:
    """Totals over every user (``progress`` is told after each); ``lastCleanup`` from the cleanup log."""
    from ..journal.catalog import summaries

    totals = Totals()
    for done, (_user, found) in enumerate(summaries(journal), 1):
        totals.add(found)
        if progress is not None:
            progress(done, None)
    totals.last_cleanup = last_cleanup(journal.root)
    return totals


def last_cleanup(root: str) -> str | None:
    """When the last cleanup ran, from the last outcome line of ``system/cleanup.log`` (an intent line says only that one began)."""
    from ..disk.storage import open_root
    from ..errors import DialogError

    try:
        with open_root(root) as top, top.open_folder((SYSTEM_DIR,)) as system:
            fd = system.open_read(CLEANUP_LOG_FILE)  # a FIFO, device or link there is never opened (verify names it)
            if fd is None:
                return None
            try:
                size = os.fstat(fd).st_size
                lines = os.pread(fd, 8192, max(0, size - 8192)).splitlines()
            finally:
                os.close(fd)
    except (DialogError, OSError):
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # not a line of ours
            continue
        if isinstance(record, dict) and isinstance(record.get("time"), str) and record.get("phase") != "intent":
            moment = parse_timestamp(record["time"])
            return record["time"] if isinstance(moment, datetime) else None
    return None
