"""Usage analytics for ``stats``, and the ``system/stats.yaml`` it leaves behind.

Everything is computed from the catalog's per-conversation summaries
(:func:`dialogctl.journal.catalog.summaries`) in one pass, so ``stats`` never re-parses
a file it already knows: totals by role and model, token totals and averages,
the longest conversation, the most active users, messages per UTC day, and on
request a breakdown by day, ISO week, model or user. Tokens follow the one
rule of :mod:`dialogctl.usage`; a token figure is None ("not known") where no
message behind it carried a count, never a made-up 0.

``system/stats.yaml`` holds the reference's statistics (totalUsers,
totalMessages, ... lastCleanup) plus ``generatedAt`` and the token totals, as
JSON (which is YAML). It is written, atomically and not fsynced, after each
``stats`` run (and by whoever calls :func:`save_system_stats`, e.g. after a
cleanup). Appends do not update it: that would need a journal-wide lock on
every append. Nothing in dialogctl reads it back as truth (``stats``
recomputes from the catalog), so a stale, garbled or missing file is harmless,
and failing to write it (a read-only journal) is never an error.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, NamedTuple

from ..disk.paths import STATS_FILE, SYSTEM_DIR
from ..disk.storage import open_root
from ..errors import DialogError
from ..journal.core import Journal
from ..models import ConversationRef, ConversationSummary, ProgressCallback
from ..times import utc_now_iso
from .overview import Totals, last_cleanup, later

# The reference's keys (DOMAIN.md), then ours.
SYSTEM_STATS_KEYS = (
    "totalUsers",
    "totalMessages",
    "totalConversations",
    "totalArchivedConversations",
    "averageMessagesPerUser",
    "storageUsage",
    "oldestMessage",
    "newestMessage",
    "lastCleanup",
    "totalTokens",
    "tokenMessages",
)
CHART_DAYS = 30
BREAKDOWNS = ("day", "week", "model", "user")


class UserActivity(NamedTuple):
    user: str
    messages: int
    tokens: int | None  # None when none of the user's messages carried a count
    conversations: int  # conversations holding messages, archived or not
    last_activity: str | None

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "messages": self.messages, "tokens": self.tokens, "conversations": self.conversations, "lastActivity": self.last_activity}


class Longest(NamedTuple):
    user: str
    ref: ConversationRef
    messages: int

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "conversation": self.ref.name, "archived": self.ref.archived, "messages": self.messages}


def iso_week(day: str) -> str:
    """``2026-11-16`` -> ``2026-W47`` (the ISO 8601 week, whose year may differ from the day's)."""
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _ratio(a: int, b: int) -> float:
    return round(a / b, 2) if b else 0


class Analytics:
    """Journal-wide usage figures, fed one user at a time (:meth:`add`).

    ``by`` asks for the bookkeeping a breakdown needs beyond the totals (how
    many conversations and users each day, week or model reaches); without it
    that work is skipped.
    """

    def __init__(self, by: str | None = None) -> None:
        if by is not None and by not in BREAKDOWNS:
            raise ValueError(f"no breakdown by {by!r}; one of {', '.join(BREAKDOWNS)}")
        self.by = by
        self.totals = Totals()
        self.models: dict[str, int] = {}
        self.model_tokens: dict[str, int] = {}
        self.days: dict[str, int] = {}
        self.day_tokens: dict[str, int] = {}
        self.users: list[UserActivity] = []
        self.longest: Longest | None = None
        self._reach: dict[str, list[int]] = {}  # breakdown key -> [conversations, users]
        self._weeks: dict[str, str] = {}

    def add(self, user: str, summaries: list[ConversationSummary]) -> None:
        self.totals.add(summaries)
        conversations = messages = tokens = token_messages = 0
        last = None
        # Merged inline (not through a helper): this runs once per conversation file on every stats.
        models, model_tokens, days, day_tokens = self.models, self.model_tokens, self.days, self.day_tokens
        longest = self.longest
        for s in summaries:
            count = s.messages
            if not count:
                continue
            conversations += 1
            messages += count
            tokens += s.tokens
            token_messages += s.token_messages
            last = s.last_timestamp if last is None else later(last, s.last_timestamp)
            if longest is None or count > longest.messages:
                longest = self.longest = Longest(user, s.ref, count)
            if s.models:
                for key, count in s.models.items():
                    models[key] = models.get(key, 0) + count
            if s.model_tokens:
                for key, count in s.model_tokens.items():
                    model_tokens[key] = model_tokens.get(key, 0) + count
            if s.days:
                for key, count in s.days.items():
                    days[key] = days.get(key, 0) + count
            if s.day_tokens:
                for key, count in s.day_tokens.items():
                    day_tokens[key] = day_tokens.get(key, 0) + count
        self.users.append(UserActivity(user, messages, tokens if token_messages else None, conversations, last))
        if self.by in ("day", "week", "model"):
            self._count_reach(summaries)

    def _count_reach(self, summaries: list[ConversationSummary]) -> None:
        reached: set[str] = set()
        for s in summaries:
            keys = self._keys(s)
            for key in keys:
                self._reach.setdefault(key, [0, 0])[0] += 1
            reached |= keys
        for key in reached:
            self._reach[key][1] += 1

    def _keys(self, s: ConversationSummary) -> set[str]:
        if self.by == "model":
            return set(s.models or ())
        if self.by == "day":
            return set(s.days or ())
        return {self._week(day) for day in s.days or ()}

    def _week(self, day: str) -> str:
        week = self._weeks.get(day)
        if week is None:
            week = self._weeks[day] = iso_week(day)
        return week

    def most_active(self, top: int) -> list[UserActivity]:
        """The ``top`` users with the most messages (ties by user id); users without messages never."""
        return heapq.nsmallest(top, (u for u in self.users if u.messages), key=lambda u: (-u.messages, u.user))

    def recent_days(self, span: int = CHART_DAYS) -> list[tuple[str, int]]:
        """Messages per UTC day for the ``span`` calendar days ending on the newest day with activity (quiet days as 0)."""
        if not self.days:
            return []
        end = date.fromisoformat(max(self.days))
        span = min(span, (end - date.min).days + 1)  # a journal whose newest day is in the calendar's first weeks
        days = [(end - timedelta(days=back)).isoformat() for back in range(span - 1, -1, -1)]
        return [(day, self.days.get(day, 0)) for day in days]

    def to_json(self, top: int = 10) -> dict[str, Any]:
        """The ``stats`` object: the totals' keys, then the analytics, in the reference's camelCase."""
        totals = self.totals
        out = totals.to_json()
        out.update(
            averageMessagesPerConversation=_ratio(totals.messages, totals.conversations),
            # Unknown (None), not 0, when no message carried a count.
            averageTokensPerMessage=_ratio(totals.tokens, totals.token_messages) if totals.token_messages else None,
            averageTokensPerConversation=_ratio(totals.tokens, totals.conversations) if totals.token_messages else None,
            messagesByModel=dict(sorted(self.models.items())),
            tokensByModel=dict(sorted(self.model_tokens.items())),
            longestConversation=self.longest.to_json() if self.longest else None,
            mostActiveUsers=[u.to_json() for u in self.most_active(top)],
            messagesByDay=dict(sorted(self.days.items())),
            tokensByDay=dict(sorted(self.day_tokens.items())),
        )
        return out

    def breakdown(self) -> Iterator[dict[str, Any]]:
        """One row per day or ISO week (oldest first), or per model or user (most messages first); nothing without ``by``."""
        by = self.by
        if by is None:
            return
        if by == "user":
            for u in sorted(self.users, key=lambda u: (-u.messages, u.user)):
                yield u.to_json()
            return
        if by == "model":
            for model, messages in sorted(self.models.items(), key=lambda item: (-item[1], item[0])):
                yield self._row("model", model, messages, self.model_tokens.get(model))
            return
        if by == "day":
            for day, messages in sorted(self.days.items()):
                yield self._row("day", day, messages, self.day_tokens.get(day))
            return
        weeks: dict[str, list[Any]] = {}
        for day, messages in sorted(self.days.items()):
            row = weeks.setdefault(self._week(day), [0, None])
            row[0] += messages
            if day in self.day_tokens:
                row[1] = (row[1] or 0) + self.day_tokens[day]
        for week, (messages, tokens) in weeks.items():
            yield self._row("week", week, messages, tokens)

    def _row(self, name: str, key: str, messages: int, tokens: int | None) -> dict[str, Any]:
        conversations, users = self._reach.get(key, (0, 0))
        return {name: key, "messages": messages, "tokens": tokens, "conversations": conversations, "users": users}


def journal_analytics(journal: Journal, by: str | None = None, progress: ProgressCallback | None = None, rescan: bool = False) -> Analytics:
    """Analytics over every user, from the catalog (``progress`` is told after each user); ``rescan``: from every file, read again."""
    from ..journal.catalog import summaries

    found = Analytics(by)
    for done, (user, conversations) in enumerate(summaries(journal, rescan=rescan), 1):
        found.add(user, conversations)
        if progress is not None:
            progress(done, None)
    found.totals.last_cleanup = last_cleanup(journal.root)
    return found


def system_stats(totals: Totals) -> dict[str, Any]:
    """What ``system/stats.yaml`` holds."""
    record = {key: value for key, value in totals.to_json().items() if key in SYSTEM_STATS_KEYS}
    record["generatedAt"] = utc_now_iso()
    return record


def save_system_stats(journal: Journal, totals: Totals) -> bool:
    """Write ``system/stats.yaml`` from ``totals``; False when it cannot be written (never an error).

    ``totals`` is :func:`dialogctl.views.overview.journal_totals` (e.g. after a
    cleanup) or :attr:`Analytics.totals`. A journal root that does not exist
    is not created for it.
    """
    data = (json.dumps(system_stats(totals), ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    try:
        with open_root(journal.root) as top, top.open_folder((SYSTEM_DIR,), create=True, modes=journal.modes) as system:
            system.write_atomic(STATS_FILE, data, journal.modes, durable=False)
    except (DialogError, OSError):
        return False
    return True
