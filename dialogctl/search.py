"""Searching what users and assistants said.

A pattern is a fixed string (default) or a regular expression, matched
case-insensitively unless asked otherwise, against message content. Results
come conversation by conversation as *groups*: each match with up to ``context``
messages before and after it, overlapping groups merged (like ``grep -C``).

Speed: parsing YAML is what costs. For a fixed string with no character YAML
may escape (quote, backslash, tab, line breaks), every occurrence in a message
is also an occurrence in the file's raw text, so the same pattern is first run
over the raw file and a file without a hit is never parsed.

With ``--since``/``--until``/``--role`` the saved catalog (see
:mod:`dialogctl.catalog`) also rules out, without reading them, files whose
time span or roles cannot hold a selected message. Only entries for files
unchanged since the catalog was saved are trusted, and search never scans or
saves the catalog itself (that would parse every changed file first).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .filters import ALL, MessageFilter
from .journal import ConversationFile, Journal
from .models import ConversationRef, Message
from .times import parse_timestamp

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
    from .errors import InvalidInput

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
    """Groups of hits (matches with their context), conversation by conversation."""
    saved: dict[str, list[Any]] = {}
    if selection.active:
        from .catalog import load

        saved = load(journal.root)
    for user in journal.users() if users is None else users:
        for f in journal.conversation_files(user, include_archives=include_archives):
            if f.size == 0 or (saved and not _may_hold_selected(saved, f, selection)):
                continue
            if m.raw_check:  # the bytes read for the prefilter are the ones parsed: one read per file
                data = _file_bytes(journal, f.ref)
                if data is None or m.pattern.search(data.decode("utf-8", "replace")) is None:
                    continue
                conv = journal.parse_bytes(f.ref, data, len(data), f.mtime)
            else:
                conv = journal.read(f.ref, missing_ok=True)
            yield from _groups(f.ref, conv.messages, m, selection, context)


def _may_hold_selected(saved: dict[str, list[Any]], f: ConversationFile, selection: MessageFilter) -> bool:
    """False when the catalog shows that no message of ``f`` passes the time and role filter."""
    from .catalog import saved_summary

    summary = saved_summary(saved, f)
    if summary is None:
        return True  # not known: read it
    if selection.roles is not None and not any(summary.roles.get(role) for role in selection.roles):
        return False
    if selection.since is not None or selection.until is not None:
        first, last = parse_timestamp(summary.first_timestamp or ""), parse_timestamp(summary.last_timestamp or "")
        if first is None or last is None:
            return False  # no readable timestamp: a time bound keeps none of its messages
        if (selection.since is not None and last < selection.since) or (selection.until is not None and first >= selection.until):
            return False
    return True


def _file_bytes(journal: Journal, ref: ConversationRef) -> bytes | None:
    """The file's bytes (never through a symlink); None when it is gone or too large to read."""
    from .errors import FileTooLarge
    from .storage import read_all

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
