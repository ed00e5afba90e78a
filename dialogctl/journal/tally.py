"""Running totals over a conversation's messages: what the catalog keeps of each file.

:class:`Tally` counts messages by role, model and UTC day, tokens by model and
by day, the first and last timestamps, and the damage met; its list form
(:meth:`Tally.to_list`) is what a catalog entry stores (see
:mod:`dialogctl.journal.catalog`). Its inner loop runs once per message of
every file a catalog scan reads, so the rules of :mod:`dialogctl.usage` and
:func:`dialogctl.times.parse_timestamp` are inlined there for the common values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..models import Damage, Message
from ..times import parse_timestamp
from ..usage import tokens_in

TALLY_LEN = 11  # Tally.to_list()


class Tally:
    """Running totals over a run of messages (and the damage met on the way)."""

    __slots__ = (
        "messages",
        "first",
        "last",
        "first_at",
        "last_at",
        "roles",
        "models",
        "tokens",
        "token_messages",
        "days",
        "damage",
        "model_tokens",
        "day_tokens",
    )

    def __init__(self) -> None:
        self.messages = 0
        self.first: str | None = None
        self.last: str | None = None
        self.first_at: Any = None  # parsed first/last, filled on demand
        self.last_at: Any = None
        self.roles: dict[str, int] = {}
        self.models: dict[str, int] = {}
        self.tokens = 0
        self.token_messages = 0
        self.days: dict[str, int] = {}
        self.damage: list[tuple[int | None, str, str]] = []  # (line, kind, detail)
        # Only models and days where some message carried a count: a missing key means "not known", not 0.
        self.model_tokens: dict[str, int] = {}
        self.day_tokens: dict[str, int] = {}

    def add(self, messages: Iterable[Message]) -> None:
        # usage.model_of, usage.tokens_in and times.parse_timestamp inlined for the common values
        # (an int count or total, a timestamp in the journal's own form); the rest through them.
        roles, models, days, model_tokens, day_tokens = self.roles, self.models, self.days, self.model_tokens, self.day_tokens
        first_at, last_at = self._bounds()
        first, last = self.first, self.last
        seen = tokens = token_messages = 0
        from_iso = datetime.fromisoformat
        for role, _content, stamp, meta in messages:
            seen += 1
            roles[role] = roles.get(role, 0) + 1
            count = model = None
            if meta:
                model = meta.get("model")
                if isinstance(model, str) and model:
                    models[model] = models.get(model, 0) + 1
                else:
                    model = None
                raw = meta.get("tokens")
                if type(raw) is int:
                    count = raw if raw >= 0 else None
                elif type(raw) is dict and type(total := raw.get("total")) is int and total >= 0:
                    count = total
                else:
                    count = tokens_in(raw)
                if count is not None:
                    tokens += count
                    token_messages += 1
                    if model is not None:
                        model_tokens[model] = model_tokens.get(model, 0) + count
            # The journal's own form (...T...Z) names its UTC day in its first ten characters,
            # and nothing parse_timestamp strips or converts.
            if type(stamp) is str and stamp[-1:] == "Z" and stamp[10:11] == "T" and stamp[:1].isdigit():
                try:
                    moment = from_iso(stamp)
                except ValueError:
                    continue
                if moment.tzinfo is None:  # never for a "Z" time; parse_timestamp's rule all the same
                    moment = moment.replace(tzinfo=UTC)
                day = stamp[:10]
            else:
                moment = parse_timestamp(stamp)
                if moment is None:
                    continue
                day = moment.astimezone(UTC).date().isoformat()
            days[day] = days.get(day, 0) + 1
            if count is not None:
                day_tokens[day] = day_tokens.get(day, 0) + count
            if first_at is None or moment < first_at:
                first_at, first = moment, stamp
            if last_at is None or moment > last_at:
                last_at, last = moment, stamp
        self.messages += seen
        self.tokens += tokens
        self.token_messages += token_messages
        self.first, self.last = first, last
        self.first_at, self.last_at = first_at, last_at

    def add_damage(self, damage: Iterable[Damage]) -> None:
        self.damage.extend((d.line, d.kind, d.detail) for d in damage)

    def _bounds(self) -> tuple[Any, Any]:
        if self.first_at is None and self.first is not None:
            self.first_at = parse_timestamp(self.first)
        if self.last_at is None and self.last is not None:
            self.last_at = parse_timestamp(self.last)
        return self.first_at, self.last_at

    def copy(self) -> Tally:
        return Tally.from_list(self.to_list())

    def to_list(self) -> list[Any]:
        return [
            self.messages,
            self.first,
            self.last,
            dict(self.roles),
            dict(self.models),
            self.tokens,
            self.token_messages,
            dict(self.days),
            list(self.damage),
            # None, not {}, when no count was seen: most journals carry none, and marshal loads None for free.
            dict(self.model_tokens) if self.model_tokens else None,
            dict(self.day_tokens) if self.day_tokens else None,
        ]

    @classmethod
    def from_list(cls, raw: list[Any]) -> Tally:
        tally = cls()
        (tally.messages, tally.first, tally.last, roles, models, tally.tokens, tally.token_messages, days, damage, model_tokens, day_tokens) = raw
        tally.roles, tally.models, tally.days = dict(roles), dict(models), dict(days)
        tally.model_tokens, tally.day_tokens = dict(model_tokens or {}), dict(day_tokens or {})
        tally.damage = [tuple(d) for d in damage]
        return tally


def merged(head: list[Any], tail: list[Any]) -> list[Any]:
    """The list form of the tally of ``head``'s messages and damage followed by ``tail``'s (both list forms).

    Exactly what one :class:`Tally` fed both runs in order gives: counts
    added, each mapping's keys in the order first met (``head``'s, then
    ``tail``'s new ones), the earliest and latest timestamps with ties kept
    by the first met, damage in order.
    """
    h_messages, h_first, h_last, h_roles, h_models, h_tokens, h_token_messages, h_days, h_damage, h_model_tokens, h_day_tokens = head
    t_messages, t_first, t_last, t_roles, t_models, t_tokens, t_token_messages, t_days, t_damage, t_model_tokens, t_day_tokens = tail
    first = t_first if h_first is None or (t_first is not None and _before(t_first, h_first)) else h_first
    last = t_last if h_last is None or (t_last is not None and _before(h_last, t_last)) else h_last
    model_tokens = _added(h_model_tokens or {}, t_model_tokens or {})
    day_tokens = _added(h_day_tokens or {}, t_day_tokens or {})
    return [
        h_messages + t_messages,
        first,
        last,
        _added(h_roles, t_roles),
        _added(h_models, t_models),
        h_tokens + t_tokens,
        h_token_messages + t_token_messages,
        _added(h_days, t_days),
        [tuple(d) for d in h_damage] + [tuple(d) for d in t_damage],
        model_tokens or None,
        day_tokens or None,
    ]


# The journal's own form, to the millisecond or finer: two such texts of one length are in time order as text.
_SORTABLE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z")


def _before(a: str, b: str) -> bool:
    """Whether the moment ``a`` names comes before the one ``b`` names (both are timestamps a tally kept: they parse)."""
    if len(a) == len(b) and _SORTABLE.fullmatch(a) and _SORTABLE.fullmatch(b):
        return a < b
    moment_a, moment_b = parse_timestamp(a), parse_timestamp(b)
    return moment_a is not None and moment_b is not None and moment_a < moment_b


def _added(head: dict[str, int], tail: dict[str, int]) -> dict[str, int]:
    out = dict(head)
    for key, count in tail.items():
        out[key] = out.get(key, 0) + count
    return out
