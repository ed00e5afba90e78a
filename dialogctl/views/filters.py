"""Selecting messages by time and role: the one place ``--since``, ``--until`` and ``--role`` are applied.

Bounds are aware datetimes (see :func:`dialogctl.times.parse_time_spec`);
``since`` is inclusive and ``until`` exclusive. A message whose timestamp
cannot be read is kept when no time bound is given and left out otherwise
(it cannot be placed in time).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from ..models import Message
from ..times import parse_timestamp


class MessageFilter(NamedTuple):
    since: datetime | None = None
    until: datetime | None = None
    roles: frozenset[str] | None = None

    @property
    def active(self) -> bool:
        return self.since is not None or self.until is not None or self.roles is not None

    def keeps(self, msg: Message) -> bool:
        if self.roles is not None and msg.role not in self.roles:
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
