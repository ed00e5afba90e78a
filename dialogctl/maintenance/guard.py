"""The guard against destructive cleanups: how much of the journal a plan removes, rule by rule, and whether that holds the run.

A cleanup whose rules are set too wide (365 days of retention on a journal
whose newest message is two years old) would remove every archive without a
word. So before a run, :func:`removal_share` measures the plan against the
journal it was planned on: archives removed of the archives there (an
inactive user's archives included), users removed of the users there. When
either share is over ``cleanup.maxRemoveShare`` (a percentage, default 50),
:func:`held` says the run must not go ahead unattended: the CLI then asks on
a terminal with the figure, and with ``--yes`` refuses (exit 8,
:class:`~dialogctl.errors.CleanupHeld`) unless ``--max-remove N`` allows that
many archives and users, or ``--force``. A Python caller of
:func:`~dialogctl.maintenance.retention.run_cleanup` asks the same two
functions. Nothing here reads the disk: it is arithmetic on the plan.

This is its own module because it is policy about a plan, not planning (and
``retention.py`` is at the size the architecture allows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings
from .retention import CleanupPlan

DEFAULT_MAX_REMOVE_SHARE = 50.0  # percent; the cleanup.maxRemoveShare setting's default
RULE_ORDER = ("maxInactive", "retention", "maxAge", "maxConversations")


@dataclass(frozen=True)
class RuleRemoval:
    """What one rule of a plan removes."""

    users: int = 0  # users removed whole (maxInactive)
    archives: int = 0  # archives removed, those of removed users included
    trims: int = 0  # files trimmed (maxAge)
    messages: int = 0  # messages removed, by every kind of step

    def describe(self) -> str:
        parts = []
        if self.users:
            parts.append(
                f"{self.users} user{'s' if self.users != 1 else ''}"
                + (f" (with {self.archives} archive{'s' if self.archives != 1 else ''})" if self.archives else "")
            )
        elif self.archives:
            parts.append(f"{self.archives} archive{'s' if self.archives != 1 else ''}")
        if self.trims:
            parts.append(f"trims {self.trims} file{'s' if self.trims != 1 else ''}")
        return f"{' and '.join(parts) or 'nothing'}, {self.messages} message{'s' if self.messages != 1 else ''}"

    def to_json(self) -> dict[str, int]:
        return {"usersRemoved": self.users, "archivesRemoved": self.archives, "filesTrimmed": self.trims, "messagesRemoved": self.messages}


@dataclass(frozen=True)
class RemovalShare:
    """How much of the journal a plan removes, against the limit."""

    users_removed: int
    users_total: int
    archives_removed: int
    archives_total: int
    limit: float  # percent
    by_rule: dict[str, RuleRemoval] = field(default_factory=dict)  # only the rules that remove something

    @staticmethod
    def percent(part: int, whole: int) -> float:
        return 100.0 * part / whole if whole else 0.0

    @property
    def over(self) -> bool:
        """Whether the plan removes more than ``limit`` percent of the journal's archives or of its users."""
        return self.percent(self.archives_removed, self.archives_total) > self.limit or self.percent(self.users_removed, self.users_total) > self.limit

    def figure(self) -> str:
        """``removes 50 of 50 archives (100%) and 0 of 12 users (0%)``."""

        def part(removed: int, total: int, noun: str) -> str:
            return f"{removed} of {total} {noun}{'s' if total != 1 else ''} ({self.percent(removed, total):.0f}%)"

        return f"removes {part(self.archives_removed, self.archives_total, 'archive')} and {part(self.users_removed, self.users_total, 'user')}"

    def rules(self) -> str:
        """``retention: 50 archives, 1,203 messages; maxAge: trims 3 files, 40 messages``."""
        return "; ".join(f"{rule}: {counts.describe()}" for rule, counts in self.by_rule.items()) or "nothing"

    def describe(self) -> str:
        """One sentence for a prompt or a refusal."""
        limit = f"{self.limit:g}%"
        return f"this run {self.figure()}, more than the {limit} cleanup.maxRemoveShare allows (by rule: {self.rules()})"

    def to_json(self) -> dict[str, object]:
        return {
            "archivesRemoved": self.archives_removed,
            "archivesTotal": self.archives_total,
            "usersRemoved": self.users_removed,
            "usersTotal": self.users_total,
            "maxRemoveShare": self.limit,
            "over": self.over,
            "byRule": {rule: counts.to_json() for rule, counts in self.by_rule.items()},
        }


def max_remove_share(settings: Settings) -> float:
    """The ``cleanup.maxRemoveShare`` setting, in percent."""
    value = settings["maxRemoveShare"]
    return DEFAULT_MAX_REMOVE_SHARE if value is None else float(value)


def removal_share(plan: CleanupPlan, limit: float = DEFAULT_MAX_REMOVE_SHARE) -> RemovalShare:
    """Measure a plan against the journal it was planned on (see the module's docstring)."""
    counts: dict[str, dict[str, int]] = {rule: {"users": 0, "archives": 0, "trims": 0, "messages": 0} for rule in RULE_ORDER}
    for action in plan.actions:
        rule = counts[action.rule]
        rule["messages"] += action.messages
        if action.kind == "remove-user":
            rule["users"] += 1
            rule["archives"] += action.archives
        elif action.kind == "remove-archive":
            rule["archives"] += 1
        elif action.kind == "trim":
            rule["trims"] += 1
    by_rule = {rule: RuleRemoval(**c) for rule, c in counts.items() if c["users"] or c["archives"] or c["trims"] or c["messages"]}
    return RemovalShare(
        sum(r.users for r in by_rule.values()),
        plan.users_seen,
        sum(r.archives for r in by_rule.values()),
        plan.archives_seen,
        limit,
        by_rule,
    )


def held(share: RemovalShare, max_remove: int | None = None, force: bool = False) -> bool:
    """Whether the run must stop for a person: over the share, not forced, and beyond ``max_remove`` archives or users."""
    if force or not share.over:
        return False
    return max_remove is None or share.archives_removed > max_remove or share.users_removed > max_remove
