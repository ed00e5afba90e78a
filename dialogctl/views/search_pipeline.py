"""Searching on every core: worker processes read and match whole files; this process hands on what they found, in order.

With more than one CPU and at least :data:`dialogctl.parallel.PARALLEL_BYTES`
of files to search, the files go to worker processes in batches of about
:data:`~dialogctl.parallel.BATCH_BYTES`. A worker does for each file what :func:`~dialogctl.views.search.search`
does (the same :func:`~dialogctl.views.search.in_file`), redacts what it found and
hands each group to the caller's ``shape`` (a command printing JSON gets its
finished text back, never parsed messages: sending those would cost this
process about what parsing them does). This process walks the tree, rules files
out through the saved catalog as a serial search does, and gives the shaped
groups in the serial search's order; the damage and the unreadable files are
told in its order too (what the walk meets ahead of the workers is held back
until the files before it have been handed on), so the output is the same byte
for byte. A worker that dies ends the run (:mod:`dialogctl.parallel`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import DialogError, StorageError
from ..journal.core import Journal
from ..journal.files import ConversationFile
from ..models import ConversationRef, Damage, Unreadable
from .filters import ALL, MessageFilter
from .search import Hit, Matcher, damage_of, in_file, may_hold_selected, redacted, search, users_files

if TYPE_CHECKING:
    from .redaction import Redactor


class _Met(NamedTuple):
    """What the walk told (damage, unreadable folders) between two files, held back until the files before it are handed on."""

    damage: list[Damage]
    unreadable: list[Unreadable]


class _Known(NamedTuple):
    """A file the catalog rules out, with the damage it records for it: nothing to read."""

    damage: list[Damage]


class _ToRead(NamedTuple):
    """A file for a worker; ``ruled_out`` (by the catalog, whose record of its damage is not usable) means: read for its damage only."""

    ref: ConversationRef
    rel_path: str  # where it was found, and what its damage is reported as (the path Journal.rel_path gives: the walk keeps only
    # folders where the layout places their user, and file names read one to one as conversations)
    size: int
    ruled_out: bool
    known: list[Damage] | None  # the catalog's record of its damage, when it knows the file as it is


class _Raise(NamedTuple):
    """An error the serial search raises at this point, after handing on everything before it."""

    error: BaseException


_Item = _Met | _Known | _ToRead | _Raise


def stream(
    journal: Journal,
    m: Matcher,
    shape: Callable[[list[list[Hit]]], Any] | None = None,
    users: Iterable[str] | None = None,
    include_archives: bool = False,
    selection: MessageFilter = ALL,
    context: int = 0,
    redactor: Redactor | None = None,
) -> Iterator[Any]:
    """The groups :func:`~dialogctl.views.search.search` finds, their hits redacted by ``redactor`` (whose counts grow
    as a serial run's do); on every core when that pays.

    With ``shape``, ``shape(groups)`` instead, for runs of consecutive groups: one file's groups on worker
    processes, each group on its own otherwise; what it gives for a run must be what it gives for each of its
    groups put together (a text, for one). ``shape`` runs in the workers: it must be picklable (a module-level
    function, or a partial of one), and only what it returns is sent back. Damage and unreadable files are told in
    ``journal`` as :func:`~dialogctl.views.search.search` tells them.
    """
    from .. import parallel

    if parallel.workers() < 2:
        groups = search(journal, m, users, include_archives, selection, context)
        if redactor is not None:
            groups = redacted(groups, m, redactor)
        return groups if shape is None else (shape([group]) for group in groups)
    return _streamed(journal, m, shape, users, include_archives, selection, context, redactor)


def _streamed(
    journal: Journal,
    m: Matcher,
    shape: Callable[[list[list[Hit]]], Any] | None,
    users: Iterable[str] | None,
    include_archives: bool,
    selection: MessageFilter,
    context: int,
    redactor: Redactor | None,
) -> Iterator[Any]:
    from .. import parallel

    walked = _walked(journal, users, include_archives)
    first: list[ConversationFile | _Met | _Raise] = []
    size = 0
    for step in walked:  # the walk goes on while the workers search: no waiting for the whole tree
        first.append(step)
        if isinstance(step, ConversationFile):
            size += step.size
            if size >= parallel.PARALLEL_BYTES:
                break
    large = size >= parallel.PARALLEL_BYTES
    items = _items(journal, m, selection, chain(first, walked))
    handed_out: deque[list[_Item]] = deque()

    def jobs() -> Iterator[tuple[str, int, list[_ToRead]]]:
        batch: list[_Item] = []
        size = 0
        for item in items:
            batch.append(item)
            if isinstance(item, _ToRead):
                size += item.size
                if size >= parallel.BATCH_BYTES:
                    handed_out.append(batch)
                    yield journal.root, journal.file_limit, [i for i in batch if isinstance(i, _ToRead)]
                    batch, size = [], 0
        if batch:
            handed_out.append(batch)
            yield journal.root, journal.file_limit, [i for i in batch if isinstance(i, _ToRead)]

    func = partial(_search_files, m, selection, context, redactor, shape)
    if large:
        count = parallel.workers()
        results: Iterator[list[Any]] = parallel.ordered(func, jobs(), count, window=2 * count, what="searching the journal")
    else:  # too little to be worth starting workers: the same work, here
        results = map(func, jobs())
    try:
        for found in results:
            answers = iter(found)
            for item in handed_out.popleft():
                if isinstance(item, _Met):
                    journal.damage.extend(item.damage)
                    journal.unreadable.extend(u for u in item.unreadable if u not in journal.unreadable)
                elif isinstance(item, _Known):
                    journal.damage.extend(item.damage)
                elif isinstance(item, _Raise):
                    raise item.error
                else:
                    answer = next(answers)
                    if answer is None:  # gone since the walk
                        continue
                    if isinstance(answer, _Raise):
                        raise answer.error
                    if isinstance(answer, StorageError):
                        journal.note_unreadable(item.rel_path, answer, item.ref.user)
                        continue
                    shaped, damage, counts = answer
                    journal.damage.extend(damage)
                    if redactor is not None:
                        redactor.merge(counts)
                    yield from shaped
    finally:
        if isinstance(results, Generator):
            results.close()  # the workers stop now, not when the error that ends the search lets go of this frame


def _walked(journal: Journal, users: Iterable[str] | None, include_archives: bool) -> Iterator[ConversationFile | _Met | _Raise]:
    """The files :func:`~dialogctl.views.search.search` looks at, in its order, with what the walk told between them
    (taken out of ``journal``, to be told in turn) and the error it raised (the walk ends there)."""
    walk = users_files(journal, users, include_archives)
    while True:
        damage, unreadable = journal.damage, journal.unreadable
        journal.damage, journal.unreadable = [], []
        step: Any
        try:
            step = next(walk, None)
        except Exception as exc:  # an unknown user, a root refused: raised in turn
            step = _Raise(exc)
        finally:
            met = _Met(journal.damage, journal.unreadable)
            journal.damage, journal.unreadable = damage, unreadable
        if met.damage or met.unreadable:
            yield met
        if step is None:
            return
        if isinstance(step, _Raise):
            yield step
            return
        yield from step[2]


def _items(journal: Journal, m: Matcher, selection: MessageFilter, walked: Iterable[ConversationFile | _Met | _Raise]) -> Iterator[_Item]:
    """What to do with each file, decided here as a serial search decides it (the saved catalog rules files out)."""
    from ..journal.catalog import load, saved_damage

    saved: list[dict[str, list[Any]]] = []  # the catalog, loaded when first wanted

    def catalog() -> dict[str, list[Any]]:
        if not saved:
            saved.append(load(journal.root))
        return saved[0]

    for step in walked:
        if not isinstance(step, ConversationFile):
            yield step
            continue
        f = step
        if f.size == 0:
            continue
        if selection.active and not may_hold_selected(catalog(), f, selection):
            known = saved_damage(catalog(), f)
            yield _Known(known) if known is not None else _ToRead(f.ref, f.rel_path, f.size, True, None)
            continue
        # Damage is said from the catalog for a file without a match, when it knows the file (only a fixed string rules out unparsed).
        yield _ToRead(f.ref, f.rel_path, f.size, False, saved_damage(catalog(), f) if m.raw_check else None)


_Answer = tuple[list[Any], list[Damage], dict[str, int]] | StorageError | _Raise | None


def _search_files(
    m: Matcher,
    selection: MessageFilter,
    context: int,
    redactor: Redactor | None,
    shape: Callable[[list[list[Hit]]], Any] | None,
    job: tuple[str, int, list[_ToRead]],
) -> list[_Answer]:
    """In a worker: search each file of a batch; per file its groups (or their shape), its damage and what redacting them replaced.

    A file that cannot be read is its error (the caller notes it and goes on); one that is gone, None. An error
    a serial search would end on ends the batch.
    """
    from ..disk.fileops import read_all
    from ..disk.storage import open_below
    from ..errors import FileTooLarge
    from ..journal.files import FILE_TOO_LARGE, too_large_detail

    root, limit, files = job
    answers: list[_Answer] = []
    for item in files:
        try:
            fd = open_below(root, item.rel_path)
        except StorageError as exc:
            answers.append(exc)
            continue
        if fd is None:
            answers.append(None)
            continue
        try:
            data = read_all(fd, limit)
        except FileTooLarge:  # not read: its damage (as Journal.too_large in a serial search)
            answers.append(([], [Damage(item.rel_path, None, FILE_TOO_LARGE, too_large_detail(os.fstat(fd).st_size, limit))], {}))
            continue
        except (OSError, DialogError) as exc:
            answers.append(_Raise(exc))
            return answers
        finally:
            os.close(fd)
        if item.ruled_out:
            answers.append(([], damage_of(item.rel_path, data, None), {}))
            continue
        groups, damage = in_file(partial(_given, item.rel_path), item.ref, data, m, selection, context, partial(_given, item.known))
        counts: dict[str, int] = {}
        if redactor is not None:
            fresh = redactor.fresh()  # this file's counts only: the caller adds them to its own
            groups = list(redacted(groups, m, fresh))
            counts = dict(fresh.counts)
        answers.append((groups if shape is None else [shape(groups)] if groups else [], damage, counts))
    return answers


def _given(value: Any) -> Any:
    """``value``, for :func:`~dialogctl.views.search.in_file`, which asks for what it may not need."""
    return value
