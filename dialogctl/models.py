"""Values that flow between the journal core, the exporters and the CLI.

All are immutable NamedTuples (light to create, both at import time, which
``dialogctl append`` pays on every call, and per message when millions are
read); the raw on-disk shape of a message (a YAML mapping
with ``role``, ``content``, ``timestamp`` and optional ``metadata``) is
:class:`RawMessage`. Timestamps are kept as the exact string found in the file:
the journal is the source of truth, and rewriting ``2024-01-15T10:30:00Z`` as
``...00.000Z`` on export would make exports disagree with the files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypedDict

ROLES = ("user", "assistant", "system", "tool")

# ``progress(done, total)`` after each step of a long run (total None when not known
# ahead): how the CLI draws a progress bar without the core knowing about terminals.
ProgressCallback = Callable[[int, int | None], None]

ConversationKind = Literal["current", "session", "archive"]


class RawMessage(TypedDict, total=False):
    role: str
    content: str
    timestamp: str
    metadata: dict[str, Any]


class Message(NamedTuple):
    role: str
    content: str
    timestamp: str
    metadata: dict[str, Any] | None = None

    def to_raw(self) -> RawMessage:
        raw: RawMessage = {"role": self.role, "content": self.content, "timestamp": self.timestamp}
        if self.metadata is not None:
            raw["metadata"] = self.metadata
        return raw


class ConversationRef(NamedTuple):
    """Where a conversation lives: the user's current one, a session, or an archive."""

    user: str
    kind: ConversationKind
    id: str | None = None  # session id or archive id; None for current.yaml

    @property
    def name(self) -> str:
        """The conversation's name in exports: ``current``, the session id or the archive id."""
        return self.id if self.id is not None else "current"

    @property
    def archived(self) -> bool:
        return self.kind == "archive"

    def describe(self) -> str:
        if self.kind == "current":
            return f"current conversation of user {self.user!r}"
        if self.kind == "session":
            return f"conversation {self.id!r} of user {self.user!r}"
        return f"archive {self.id!r} of user {self.user!r}"


# Damage the reader reads through without losing anything, and what it did about it: the
# reference cleanup's "---" glued onto a line is split there, and each message is read whole.
RECOVERED_KINDS = {"glued separator": "split"}


class Damage(NamedTuple):
    """One unreadable spot in a journal file. ``line`` is 1-based, when known.

    ``recovered`` damage lost nothing (every message around it was read): it is
    said, and ``repair`` rewrites the file, but it is not an unreadable record.
    """

    path: str
    line: int | None
    kind: str
    detail: str

    @property
    def recovered(self) -> bool:
        return self.kind in RECOVERED_KINDS

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.kind}: {self.detail}"


class Unreadable(NamedTuple):
    """A file or folder a whole-journal command could not read, and went on without (exit 6 at the end)."""

    path: str  # relative to the journal root, as in damage reports
    reason: str  # the system's words: "Permission denied", "Input/output error"
    user: str | None = None  # whose files it holds, when known

    def __str__(self) -> str:
        return f"cannot read {self.path}: {self.reason}"


class ConversationSummary(NamedTuple):
    """What listing, stats and cleanup planning need to know about one conversation file.

    ``first_timestamp``/``last_timestamp`` are the earliest and latest readable
    timestamps, as written. Token totals count an integer ``tokens`` or the
    ``total`` (else prompt + completion, else input + output) of a mapping;
    ``token_messages`` is how many messages carried a count. ``days`` counts
    messages per UTC day (``YYYY-MM-DD``). ``model_tokens`` and ``day_tokens``
    are the tokens per model and per day, with a key only where some message
    carried a count (a missing key means unknown, not zero).
    """

    ref: ConversationRef
    messages: int
    size: int
    mtime: float
    first_timestamp: str | None
    last_timestamp: str | None
    roles: dict[str, int]
    damaged: int = 0
    models: dict[str, int] | None = None
    tokens: int = 0
    token_messages: int = 0
    days: dict[str, int] | None = None
    model_tokens: dict[str, int] | None = None
    day_tokens: dict[str, int] | None = None
    recovered: int = 0  # damage read through with nothing lost (a glued separator), not counted in ``damaged``


class AppendResult(NamedTuple):
    user: str
    conversation: str
    appended: int
    messages: int  # messages in the conversation after the append
    archived: tuple[str, ...] = ()  # archives created automatically on the way
    archive_error: str | None = None  # the automatic archive after the last message failed; the next append retries it
