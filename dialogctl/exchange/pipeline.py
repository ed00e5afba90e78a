"""Formatting an export on every core: worker processes read, parse and format whole files; this process writes their text in order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from itertools import chain
from typing import Any

from ..errors import DialogError, StorageError, UnsafePath, storage_error
from ..journal.core import Journal
from ..models import ConversationRef, Damage
from ..views.filters import MessageFilter
from .records import ExportOptions, Formatted
from .registry import export_format
from .selection import Selected, Selection, is_single, select


def stream(journal: Journal, selection: Selection, options: ExportOptions) -> Iterator[Selected | Formatted]:
    """What :func:`select` gives, for the writer of ``options.format``; formatted on every core when that pays.

    JSONL and CSV format each conversation on its own, so with more than one
    CPU and at least :data:`dialogctl.parallel.PARALLEL_BYTES` to read, worker
    processes read, parse and format whole files while this one only writes
    their text, in the order a serial export writes it (same bytes, same
    damage reports). Everything else is :func:`select`, and so is an export
    with a cursor (which notes each message as it is handed on).
    """
    from .. import parallel

    selected = _redacted(select(journal, selection), options)
    if (
        export_format(options.format).text is None
        or selection.cursor is not None
        or selection.conversation is not None
        or selection.archive is not None
        or parallel.workers() < 2
    ):
        return selected
    if selection.users:
        files: Iterator[Any] = (f for user in selection.users for f in journal.conversation_files(user, include_archives=selection.include_archives))
    else:
        files = (f for _, user_files in journal.walk() for f in user_files)
    first, size = [], 0
    for f in files:  # the walk goes on while the workers read: no waiting for the whole tree
        first.append(f)
        size += f.size
        if size >= parallel.PARALLEL_BYTES:
            keep_empty = not selection.filter.active or is_single(journal, selection)
            return _formatted(journal, chain(first, files), options, selection.filter, keep_empty)
    return selected


def _redacted(selected: Iterator[Selected], options: ExportOptions) -> Iterator[Selected]:
    """The conversations with :attr:`ExportOptions.redactor` applied to every message (the journal is not touched)."""
    redactor = options.redactor
    if redactor is None:
        return selected
    # The ids are taken before the text changes: a message's message_id is the same with and without --redact.
    return (Selected(conv.ref, [(i, redactor.message(m)) for i, m in conv.messages], conv.id_list()) for conv in selected)


def _formatted(journal: Journal, files: Iterator[Any], options: ExportOptions, message_filter: MessageFilter, keep_empty: bool) -> Iterator[Formatted]:
    from .. import parallel

    handed_out: deque[list[tuple[ConversationRef, str]]] = deque()

    def jobs() -> Iterator[tuple[str, ExportOptions, MessageFilter, list[tuple[ConversationRef, str]], int]]:
        batch: list[tuple[ConversationRef, str]] = []
        size = 0
        for f in files:
            batch.append((f.ref, f.rel_path))
            size += f.size
            if size >= parallel.BATCH_BYTES:
                handed_out.append(batch)
                yield journal.root, options, message_filter, batch, journal.file_limit
                batch, size = [], 0
        if batch:
            handed_out.append(batch)
            yield journal.root, options, message_filter, batch, journal.file_limit

    count = parallel.workers()
    for results in parallel.ordered(_format_files, jobs(), count, window=2 * count, what="exporting"):
        for (ref, rel_path), result in zip(handed_out.popleft(), results, strict=True):
            if result is None:  # gone since the walk
                continue
            if isinstance(result, StorageError) and not isinstance(result, UnsafePath):
                journal.note_unreadable(rel_path, result, ref.user)  # as a serial export does: said at the end, the rest is exported
                continue
            if isinstance(result, DialogError):
                raise result
            data, messages, damage, redacted = result
            journal.damage.extend(damage)
            if options.redactor is not None:
                options.redactor.merge(redacted)
            if messages or keep_empty:
                yield Formatted(ref, data, messages)


def _format_files(
    job: tuple[str, ExportOptions, MessageFilter, list[tuple[ConversationRef, str]], int],
) -> list[tuple[bytes | str, int, list[Damage], dict[str, int]] | DialogError | None]:
    """In a worker: read, parse, filter, redact and format each file of a batch; None for a file that is gone.

    Each result carries what the worker's redactor replaced in that file, for the parent's counts.
    """
    from ..disk.fileops import read_all
    from ..disk.storage import open_below
    from ..errors import FileTooLarge
    from ..fileformat.reader import parse_conversation
    from ..journal.files import FILE_TOO_LARGE, too_large_detail
    from .cursor import message_ids

    root, options, message_filter, files, limit = job
    formatter = export_format(options.format).text
    assert formatter is not None  # stream() hands out only formats that format one conversation at a time
    results: list[tuple[bytes | str, int, list[Damage], dict[str, int]] | DialogError | None] = []
    for ref, rel_path in files:
        try:
            fd = open_below(root, rel_path)
            if fd is None:
                results.append(None)
                continue
            try:
                raw = read_all(fd, limit)
            except FileTooLarge:  # not read: no message, its damage (as Journal.too_large in a serial export)
                damage = [Damage(rel_path, None, FILE_TOO_LARGE, too_large_detail(os.fstat(fd).st_size, limit))]
                results.append((formatter(Selected(ref, []), options).encode("utf-8"), 0, damage, {}))
                continue
            finally:
                os.close(fd)
        except OSError as exc:
            results.append(storage_error(exc, "read", os.path.join(root, rel_path)))
            continue
        except DialogError as exc:
            results.append(exc)
            continue
        parsed = parse_conversation(raw, rel_path)
        every = message_ids(ref.user, parsed.messages)
        kept = list(message_filter.indexed(parsed.messages))
        conv = Selected(ref, kept, [every[i] for i, _ in kept])  # ids of the messages as written, before any redaction
        redacted: dict[str, int] = {}
        if options.redactor is not None:
            redactor = options.redactor.fresh()  # this file's counts only: the parent adds them to its own
            conv = Selected(ref, [(i, redactor.message(m)) for i, m in conv.messages], conv.ids)
            redacted = dict(redactor.counts)
        text = formatter(conv, options)
        try:
            data: bytes | str = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (from a \u escape): the parent's stream decides, as in a serial export
            data = text
        results.append((data, len(conv.messages), parsed.damage, redacted))
    return results
