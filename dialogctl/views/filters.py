"""Selecting messages: the one place ``--since``, ``--until``, ``--role``, ``--model`` and ``--meta`` are applied.

Bounds are aware datetimes (see :func:`dialogctl.times.parse_time_spec`);
``since`` is inclusive and ``until`` exclusive. A message whose timestamp
cannot be read is kept when no time bound is given and left out otherwise
(it cannot be placed in time).

``models`` keeps a message whose metadata names one of them, read as usage
accounting reads it (:func:`dialogctl.usage.model_of`). ``meta`` conditions
must all hold: the value at a key path of the metadata equals the wanted JSON
value (the CLI parses ``KEY=VALUE`` as ``append --meta`` does). Equality is
JSON's: ``true`` is not ``1``, ``"1"`` is not ``1``, ``1`` is ``1.0``.

A filter is a plain tuple of plain values, so it crosses into the export's
worker processes unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

from ..models import Message
from ..times import parse_timestamp
from ..usage import model_of


class MetaCondition(NamedTuple):
    """``--meta KEY=VALUE`` as a filter: ``path`` is the dotted KEY split at its dots."""

    path: tuple[str, ...]
    value: Any

    def holds(self, metadata: dict[str, Any] | None) -> bool:
        found: Any = metadata
        for key in self.path:
            if not isinstance(found, dict) or key not in found:
                return False
            found = found[key]
        return json_equal(found, self.value)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values as JSON sees them: a boolean is never a number (Python's ``True == 1`` is not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)):
        return isinstance(b, (int, float)) and a == b
    return type(a) is type(b) and a == b


class MessageFilter(NamedTuple):
    since: datetime | None = None
    until: datetime | None = None
    roles: frozenset[str] | None = None
    models: frozenset[str] | None = None
    meta: tuple[MetaCondition, ...] = ()

    @property
    def active(self) -> bool:
        return self.since is not None or self.until is not None or self.roles is not None or self.models is not None or bool(self.meta)

    def keeps(self, msg: Message) -> bool:
        if self.roles is not None and msg.role not in self.roles:
            return False
        if self.models is not None and model_of(msg.metadata) not in self.models:
            return False
        if self.meta and not all(condition.holds(msg.metadata) for condition in self.meta):
            return False
        if self.since is None and self.until is None:
            return True
        moment = parse_timestamp(msg.timestamp)
        if moment is None:
            return False
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until

    def indexed(self, messages: Iterable[Message]) -> Iterator[tuple[int, Message]]:
        """``(index, message)`` for every kept message; indexes stay those of the whole conversation."""
        for index, msg in enumerate(messages):
            if self.keeps(msg):
                yield index, msg


ALL = MessageFilter()
