"""Searching what users and assistants said.

A pattern is a fixed string (default) or a regular expression, matched
case-insensitively unless asked otherwise, against message content. Results
come conversation by conversation as *groups*: each match with up to ``context``
messages before and after it, overlapping groups merged (like ``grep -C``).

Speed: parsing is what costs, so search parses only what it prints. Most
patterns have *needles* (:mod:`dialogctl.views.needles`): byte strings one of
which every match holds, and which a record of dialogctl's stores as written.
A file without one is never parsed. In a file of nothing but dialogctl's own
records (checked through their frame lines and CRC-32s, without decoding:
:func:`~dialogctl.fileformat.reader.whole_records`) each needle found is
mapped to its record, and only those records, and the ``context`` records
around them, are decoded; the pattern then decides on the decoded content,
so a needle in a key, the metadata or a frame line matches nothing. Any
other file (the servers' items, damage, a torn batch, a record the exact
decoder does not read) and any pattern without needles is read as before:
for a fixed string with no character YAML may escape (quote, backslash,
tab, line breaks), every occurrence in a message is also an occurrence in
the file's raw text, so the same pattern is first run over the raw file and
a file without a hit is never parsed; every other file is parsed whole.
Either way the output is the same (tests compare both ways).

With ``--since``/``--until``/``--role``/``--model`` the saved catalog (see
:mod:`dialogctl.journal.catalog`) also rules out, without reading them, files whose
time span, roles or models cannot hold a selected message. Either way a file ruled
out still has its damage said (from the catalog, else by parsing it): a "no
match" never hides records that could not be read. Only entries for files
unchanged since the catalog was saved are trusted, and search never scans or
saves the catalog itself (that would parse every changed file first).

On a large journal :mod:`dialogctl.views.search_pipeline` does the work of
each file (:func:`in_file`, which touches nothing but the file's bytes) in
worker processes, with the same output.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import StorageError
from ..journal.core import Journal
from ..journal.files import ConversationFile
from ..models import ConversationRef, Damage, Message
from ..times import parse_timestamp
from .filters import ALL, MessageFilter
from .needles import Needles, needles

if TYPE_CHECKING:
    from ..disk.storage import Folder
    from .redaction import Redactor

_ESCAPED_IN_YAML = re.compile(r'["\\\t\r\n\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]')


class Hit(NamedTuple):
    ref: ConversationRef
    position: int  # the message index in its conversation
    message: Message
    spans: tuple[tuple[int, int], ...]  # where the pattern matched in the content; () for context
    matched: bool


class Matcher(NamedTuple):
    pattern: re.Pattern[str]
    raw_check: bool  # True when a miss in the raw file text means a miss in every message
    needles: Needles | None = None  # what every match holds in a record's raw bytes; None: parse every file that may match


def matcher(text: str, regex: bool = False, case_sensitive: bool = False) -> Matcher:
    from ..errors import InvalidInput

    if text == "":
        raise InvalidInput("the search pattern is empty")
    flags = 0 if case_sensitive else re.IGNORECASE
    try:
        compiled = re.compile(text if regex else re.escape(text), flags)
    except re.error as exc:
        raise InvalidInput(f"invalid regular expression: {exc.msg} at position {exc.pos}") from None
    return Matcher(compiled, not regex and _ESCAPED_IN_YAML.search(text) is None, needles(text, regex, flags))


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
    return _found(journal, m, users, include_archives, selection, context)


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

    for group in _found(journal, m, users, include_archives, selection, 0, oldest_kept):
        for hit in group:
            if not hit.matched:
                continue
            moment = parse_timestamp(hit.message.timestamp)
            entry = ((moment is not None, moment or _NO_TIME, next(order)), hit)
            if len(heap) < count:
                heapq.heappush(heap, entry)
            elif entry[0] > heap[0][0]:
                heapq.heapreplace(heap, entry)
    return [hit for _, hit in sorted(heap, key=lambda entry: entry[0], reverse=True)]


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _found(
    journal: Journal,
    m: Matcher,
    users: Iterable[str] | None,
    include_archives: bool,
    selection: MessageFilter,
    context: int,
    newer_than: Callable[[], datetime | None] | None = None,
) -> Iterator[list[Hit]]:
    """The groups of :func:`search`; ``newer_than()``, asked before each file, is a time a file must
    have a message after to be read (None: no such bound now)."""
    saved: list[dict[str, list[Any]]] = []  # the catalog, loaded when first wanted

    def catalog() -> dict[str, list[Any]]:
        if not saved:
            from ..journal.catalog import load

            saved.append(load(journal.root))
        return saved[0]

    for user, dialogs, files in users_files(journal, users, include_archives):
        for f in files:
            if f.size == 0:
                continue
            bound = newer_than() if newer_than is not None else None
            if (selection.active or bound is not None) and not may_hold_selected(catalog(), f, selection, bound):
                _tell_damage(journal, catalog(), f, dialogs)
                continue
            try:
                data = _file_bytes(journal, f.ref, dialogs)
            except StorageError as exc:
                journal.note_unreadable(f.rel_path, exc, user)
                continue
            if data is None:
                continue
            groups, damage = in_file(partial(journal.rel_path, f.ref), f.ref, data, m, selection, context, partial(_saved_damage_of, catalog, f))
            journal.damage.extend(damage)
            yield from groups


def users_files(journal: Journal, users: Iterable[str] | None, include_archives: bool) -> Iterator[tuple[str, Folder | None, list[ConversationFile]]]:
    """Each user with their conversation files, and their ``dialogs/`` folder when it is open already.

    Every user with archives: one pass over the tree, each folder opened once
    (as :meth:`~dialogctl.journal.core.Journal.conversations` does). Otherwise
    user by user, so that ``archived/`` folders are not opened when archives
    are not searched.
    """
    if users is None and include_archives:
        yield from journal.walk_open()
        return
    for user in journal.users() if users is None else users:
        try:
            files = journal.conversation_files(user, include_archives=include_archives)
        except StorageError as exc:
            journal.note_unreadable(journal.user_path(user), exc, user)
            continue
        yield user, None, files


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


def _tell_damage(journal: Journal, saved: dict[str, list[Any]], f: ConversationFile, dialogs: Folder | None) -> None:
    """Put the damage of a file search ruled out unread in ``journal.damage``: from the catalog, else by reading it."""
    known = _saved_damage(saved, f)
    if known is not None:
        journal.damage.extend(known)
        return
    try:
        data = _file_bytes(journal, f.ref, dialogs)
    except StorageError as exc:
        journal.note_unreadable(f.rel_path, exc, f.ref.user)
        return
    if data is not None:
        journal.damage.extend(damage_of(journal.rel_path(f.ref), data, None))


def _saved_damage(saved: dict[str, list[Any]], f: ConversationFile) -> list[Damage] | None:
    from ..journal.catalog import saved_damage

    return saved_damage(saved, f)


def _saved_damage_of(catalog: Callable[[], dict[str, list[Any]]], f: ConversationFile) -> list[Damage] | None:
    return _saved_damage(catalog(), f)


def damage_of(rel_path: str, data: bytes, known: list[Damage] | None) -> list[Damage]:
    """The damage of a file search did not need to parse: ``known`` (the catalog's record of it) when not None, else found in ``data``."""
    if known is not None:
        return known
    from ..fileformat.reader import parse_conversation, whole_records

    if whole_records(data) is not None:
        return []  # nothing but whole records of ours: no damage (and no need to parse to know it)
    return parse_conversation(data, rel_path).damage


def in_file(
    rel_path: Callable[[], str],
    ref: ConversationRef,
    data: bytes,
    m: Matcher,
    selection: MessageFilter,
    context: int,
    known: Callable[[], list[Damage] | None],
) -> tuple[list[list[Hit]], list[Damage]]:
    """The groups of one conversation file's bytes, and its damage; ``known()``: the catalog's record of its damage (None: not
    known); ``rel_path()``: the file's path in damage reports (asked only when there is damage to find).

    Touches nothing but ``data``: a worker process runs it as this process does.
    """
    if m.needles is not None:
        fast = _through_frames(ref, data, m, selection, context)
        if fast is not None:
            groups, missed = fast
            return groups, damage_of(rel_path(), data, known()) if missed else []
    if m.raw_check and m.pattern.search(data.decode("utf-8", "replace")) is None:
        return [], damage_of(rel_path(), data, known())  # no match in the file, but its damage is said all the same
    from ..fileformat.reader import parse_conversation

    parsed = parse_conversation(data, rel_path())
    return list(_groups(ref, parsed.messages, m, selection, context)), parsed.damage


def may_hold_selected(saved: dict[str, list[Any]], f: ConversationFile, selection: MessageFilter, newer_than: datetime | None = None) -> bool:
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


def _file_bytes(journal: Journal, ref: ConversationRef, dialogs: Folder | None = None) -> bytes | None:
    """The file's bytes (never through a symlink; in ``dialogs`` if the user's folder is open); None when it is gone or too large to read."""
    from ..disk.fileops import read_all
    from ..errors import FileTooLarge

    if dialogs is not None:
        fd = journal.open_file(dialogs, ref)
    else:
        with journal.dialogs_folder(ref.user) as folder:
            fd = journal.open_file(folder, ref)
    if fd is None:
        return None
    try:
        return read_all(fd, journal.file_limit)
    except FileTooLarge:
        journal.too_large(ref, os.fstat(fd))  # reported as damage, and not searched
        return None
    finally:
        os.close(fd)


class _ReadWhole(Exception):
    """A record the exact decoder does not read: the file is read whole instead."""


def _through_frames(ref: ConversationRef, data: bytes, m: Matcher, selection: MessageFilter, context: int) -> tuple[list[list[Hit]], bool] | None:
    """The groups of a file of nothing but dialogctl's records, decoding only the records whose raw bytes hold a needle, and their context;
    with True when the pattern is nowhere in the file, whatever it holds (its damage is to be said without parsing it).

    None when the file must be read whole (it holds anything else: the
    servers' items, damage, a torn batch; or a record the exact decoder does
    not read). Every match holds a needle, and in these records content is
    stored as written, so a record without one cannot match; a record with
    one is decoded and matched like any other. Message indexes are frame
    positions: such a file reads as one message per record (see
    :func:`~dialogctl.fileformat.reader.whole_records`).
    """
    from ..fileformat.codec import decode_record
    from ..fileformat.reader import whole_records

    assert m.needles is not None
    hay = m.needles.in_bytes(data)
    if hay is None:
        if m.raw_check:
            return [], True  # the whole pattern is not in the text either (every match holds a needle)
        return ([], False) if whole_records(data) is not None else None
    records = whole_records(data)
    if records is None:
        return None
    decoded: dict[int, Message] = {}

    def message(i: int) -> Message:
        msg = decoded.get(i)
        if msg is None:
            msg = decode_record(data[records.starts[i] : records.ends[i]])
            if msg is None:
                raise _ReadWhole
            decoded[i] = msg
        return msg

    try:
        matches: dict[int, tuple[tuple[int, int], ...]] = {}
        for i in m.needles.records(hay, records.afters):
            msg = message(i)
            if selection.keeps(msg):
                spans = _spans(m, msg.content)
                if spans:
                    matches[i] = spans
        return list(_grouped(ref, len(records.starts), message, matches, context)), False
    except _ReadWhole:
        return None


def _groups(ref: ConversationRef, messages: list[Message], m: Matcher, selection: MessageFilter, context: int) -> Iterator[list[Hit]]:
    matches: dict[int, tuple[tuple[int, int], ...]] = {}
    for index, msg in selection.indexed(messages):
        spans = _spans(m, msg.content)
        if spans:
            matches[index] = spans
    return _grouped(ref, len(messages), messages.__getitem__, matches, context)


def _grouped(
    ref: ConversationRef, count: int, message: Callable[[int], Message], matches: dict[int, tuple[tuple[int, int], ...]], context: int
) -> Iterator[list[Hit]]:
    """The matches of one conversation of ``count`` messages with their context, overlapping groups merged (``message(i)``: message i)."""
    if not matches:
        return
    group: list[Hit] = []
    last = -1
    for index in sorted(matches):
        start = max(0, index - context, last + 1)
        if group and start > last + 1:
            yield group
            group = []
        for i in range(start, min(count, index + context + 1)):
            if i <= last:
                continue
            spans = matches.get(i, ())
            group.append(Hit(ref, i, message(i), spans, bool(spans)))
            last = i
    if group:
        yield group
