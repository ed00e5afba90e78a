"""Searching what users and assistants said.

A pattern is a fixed string (default) or a regular expression, matched
case-insensitively unless asked otherwise, against message content. Results
come conversation by conversation as *groups*: each match with up to ``context``
messages before and after it, overlapping groups merged (like ``grep -C``).

Speed: parsing YAML is what costs. For a fixed string with no character YAML
may escape (quote, backslash, tab, line breaks), every occurrence in a message
is also an occurrence in the file's raw text, so the same pattern is first run
over the raw file and a file without a hit is never parsed.

With ``--since``/``--until``/``--role``/``--model`` the saved catalog (see
:mod:`dialogctl.journal.catalog`) also rules out, without reading them, files whose
time span, roles or models cannot hold a selected message. Either way a file ruled
out still has its damage said (from the catalog, else by parsing it): a "no
match" never hides records that could not be read. Only entries for files
unchanged since the catalog was saved are trusted, and search never scans or
saves the catalog itself (that would parse every changed file first).
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import StorageError
from ..journal.core import Journal
from ..journal.files import ConversationFile
from ..models import ConversationRef, Message
from ..times import parse_timestamp
from .filters import ALL, MessageFilter

if TYPE_CHECKING:
    from .redaction import Redactor

_ESCAPED_IN_YAML = re.compile(r'["\\\t\r\n\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]')


class Hit(NamedTuple):
    ref: ConversationRef
    position: int  # the message index in its conversation
    message: Message
    spans: tuple[tuple[int, int], ...]  # where the pattern matched in the content; () for context
    matched: bool


class Matcher(NamedTuple):
    pattern: re.Pattern[str]
    raw_check: bool  # True when a miss in the raw file text means a miss in every message


def matcher(text: str, regex: bool = False, case_sensitive: bool = False) -> Matcher:
    from ..errors import InvalidInput

    if text == "":
        raise InvalidInput("the search pattern is empty")
    flags = 0 if case_sensitive else re.IGNORECASE
    try:
        compiled = re.compile(text if regex else re.escape(text), flags)
    except re.error as exc:
        raise InvalidInput(f"invalid regular expression: {exc.msg} at position {exc.pos}") from None
    return Matcher(compiled, not regex and _ESCAPED_IN_YAML.search(text) is None)


def _spans(m: Matcher, content: str) -> tuple[tuple[int, int], ...]:
    return tuple(hit.span() for hit in m.pattern.finditer(content))


def search(
    journal: Journal,
    m: Matcher,
    users: Iterable[str] | None = None,
    include_archives: bool = False,
    selection: MessageFilter = ALL,
    context: int = 0,
) -> Iterator[list[Hit]]:
    """Groups of hits (matches with their context), conversation by conversation.

    Damage is told in ``journal.damage`` whatever the answer: a file ruled out
    without being parsed (no raw hit, or outside the filter by the catalog)
    has its damage taken from the catalog when it knows the file as it is, and
    is parsed for it otherwise. A folder or file that cannot be read is told
    in ``journal.unreadable`` and the search goes on.
    """
    for ref, messages in _searched(journal, m, users, include_archives, selection):
        yield from _groups(ref, messages, m, selection, context)


def latest(
    journal: Journal,
    m: Matcher,
    count: int,
    users: Iterable[str] | None = None,
    include_archives: bool = False,
    selection: MessageFilter = ALL,
) -> list[Hit]:
    """The ``count`` newest matching messages (by their timestamp), newest first; no context.

    Memory holds ``count`` hits and one conversation: the hits are kept in a
    min-heap of at most ``count``, and once it is full the saved catalog rules
    out, unread, files whose newest message is older than the oldest hit kept.
    A message whose timestamp cannot be read counts as older than any that
    can; among equal times the one found later (in walk order, then in its
    conversation) counts as newer. Damage is told as :func:`search` tells it.
    """
    heap: list[tuple[tuple[bool, datetime, int], Hit]] = []
    order = itertools.count()

    def oldest_kept() -> datetime | None:
        if len(heap) < count or not heap[0][0][0]:
            return None
        return heap[0][0][1]

    for ref, messages in _searched(journal, m, users, include_archives, selection, oldest_kept):
        for index, msg in selection.indexed(messages):
            spans = _spans(m, msg.content)
            if not spans:
                continue
            moment = parse_timestamp(msg.timestamp)
            entry = ((moment is not None, moment or _NO_TIME, next(order)), Hit(ref, index, msg, spans, True))
            if len(heap) < count:
                heapq.heappush(heap, entry)
            elif entry[0] > heap[0][0]:
                heapq.heapreplace(heap, entry)
    return [hit for _, hit in sorted(heap, key=lambda entry: entry[0], reverse=True)]


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _searched(
    journal: Journal,
    m: Matcher,
    users: Iterable[str] | None,
    include_archives: bool,
    selection: MessageFilter,
    newer_than: Callable[[], datetime | None] | None = None,
) -> Iterator[tuple[ConversationRef, list[Message]]]:
    """Each conversation that may hold a match, parsed; files ruled out unread have their damage told.

    ``newer_than()``, asked before each file, is a time a file must have a
    message after to be read (None: no such bound now).
    """
    saved: list[dict[str, list[Any]]] = []  # the catalog, loaded when first wanted

    def catalog() -> dict[str, list[Any]]:
        if not saved:
            from ..journal.catalog import load

            saved.append(load(journal.root))
        return saved[0]

    for user in journal.users() if users is None else users:
        try:
            files = journal.conversation_files(user, include_archives=include_archives)
        except StorageError as exc:
            journal.note_unreadable(journal.user_path(user), exc, user)
            continue
        for f in files:
            if f.size == 0:
                continue
            bound = newer_than() if newer_than is not None else None
            if (selection.active or bound is not None) and not _may_hold_selected(catalog(), f, selection, bound):
                _tell_damage(journal, catalog(), f, None)
                continue
            try:
                data = _file_bytes(journal, f.ref)
            except StorageError as exc:
                journal.note_unreadable(f.rel_path, exc, user)
                continue
            if data is None:
                continue
            if m.raw_check and m.pattern.search(data.decode("utf-8", "replace")) is None:
                _tell_damage(journal, catalog(), f, data)  # no match in the file, but its damage is said all the same
                continue
            conv = journal.parse_bytes(f.ref, data, len(data), f.mtime)
            yield f.ref, conv.messages


def redacted(groups: Iterable[list[Hit]], m: Matcher, redactor: Redactor) -> Iterator[list[Hit]]:
    """The hits of :func:`search` with their messages redacted.

    Matching was done on the original text (so an operator can find the
    messages that hold a given address); the hit's ``spans`` are where the
    pattern matches in the redacted content, none when it matched only
    inside what was redacted.
    """
    for group in groups:
        shown = []
        for hit in group:
            msg = redactor.message(hit.message)
            spans = hit.spans if msg.content == hit.message.content else _spans(m, msg.content) if hit.matched else ()
            shown.append(hit._replace(message=msg, spans=spans))
        yield shown


def _tell_damage(journal: Journal, saved: dict[str, list[Any]], f: ConversationFile, data: bytes | None) -> None:
    """Put the damage of a file search did not need to parse in ``journal.damage``: from the catalog, else by parsing it."""
    from ..journal.catalog import saved_damage

    known = saved_damage(saved, f)
    if known is not None:
        journal.damage.extend(known)
        return
    if data is None:
        try:
            data = _file_bytes(journal, f.ref)
        except StorageError as exc:
            journal.note_unreadable(f.rel_path, exc, f.ref.user)
            return
        if data is None:
            return
    journal.parse_bytes(f.ref, data, len(data), f.mtime)


def _may_hold_selected(saved: dict[str, list[Any]], f: ConversationFile, selection: MessageFilter, newer_than: datetime | None = None) -> bool:
    """False when the catalog shows that no message of ``f`` passes the time, role and model filter, or is after ``newer_than``."""
    from ..journal.catalog import saved_summary

    summary = saved_summary(saved, f)
    if summary is None:
        return True  # not known: read it
    if selection.roles is not None and not any(summary.roles.get(role) for role in selection.roles):
        return False
    if selection.models is not None and summary.models is not None and not any(summary.models.get(model) for model in selection.models):
        return False
    if selection.since is not None or selection.until is not None or newer_than is not None:
        first, last = parse_timestamp(summary.first_timestamp or ""), parse_timestamp(summary.last_timestamp or "")
        if first is None or last is None:
            return False  # no readable timestamp: a time bound keeps none of its messages, and none is newer than a time
        if (selection.since is not None and last < selection.since) or (selection.until is not None and first >= selection.until):
            return False
        if newer_than is not None and last < newer_than:
            return False
    return True


def _file_bytes(journal: Journal, ref: ConversationRef) -> bytes | None:
    """The file's bytes (never through a symlink); None when it is gone or too large to read."""
    from ..disk.fileops import read_all
    from ..errors import FileTooLarge

    with journal.dialogs_folder(ref.user) as dialogs:
        fd = journal.open_file(dialogs, ref)
    if fd is None:
        return None
    try:
        return read_all(fd, journal.file_limit)
    except FileTooLarge:
        journal.too_large(ref, os.fstat(fd))  # reported as damage, and not searched
        return None
    finally:
        os.close(fd)


def _groups(ref: ConversationRef, messages: list[Message], m: Matcher, selection: MessageFilter, context: int) -> Iterator[list[Hit]]:
    matches: dict[int, tuple[tuple[int, int], ...]] = {}
    for index, msg in selection.indexed(messages):
        spans = _spans(m, msg.content)
        if spans:
            matches[index] = spans
    if not matches:
        return
    group: list[Hit] = []
    last = -1
    for index in sorted(matches):
        start = max(0, index - context, last + 1)
        if group and start > last + 1:
            yield group
            group = []
        for i in range(start, min(len(messages), index + context + 1)):
            if i <= last:
                continue
            spans = matches.get(i, ())
            group.append(Hit(ref, i, messages[i], spans, bool(spans)))
            last = i
    if group:
        yield group
