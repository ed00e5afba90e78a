"""Writing many users' batches, and what became of each one.

``append --jsonl`` takes messages for many users and writes each user's
batch (one per user and conversation) under that user's lock. A batch is
committed or not on its own, so one failing user (a lock held by a stuck
process, an I/O error on that user's files) does not hide what happened to
the others: :func:`append_batches` goes on past a failing batch and reports
every batch as an :class:`Outcome`, with the input lines it came from, so a
retry sends only the lines of the batches that were not committed.

Batches are committed in groups (:mod:`dialogctl.journal.groupcommit`, whose
docstring says what a crash at each point leaves): written one after another,
each under its user's lock, then fsynced together, and only then reported.

With ``all_or_none`` every user's lock is taken first, in user id order, and
nothing is written unless all of them are held: a busy lock leaves every
batch unwritten. Every batch is then written and all are fsynced together
before any is reported. It cannot make a full disk atomic across users: a
write that fails part-way leaves the batches before it committed, the failing
one not, and the rest unwritten (each reported so); a batch whose fsync fails
is cut back and reported failed, the others committed.

Memory stays bounded: a batch's messages are loaded only when it is written
(:attr:`Batch.load`), and its input lines are kept as ranges.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import DialogError, PartlyAppended, PartlyDone
from ..models import AppendResult, Message

if TYPE_CHECKING:
    from .core import Journal

COMMITTED = "committed"
PARTLY = "partly committed"  # a batch split at the archive threshold failed after its first part
FAILED = "failed"  # written to, and nothing of it committed
SKIPPED = "skipped"  # never written: another batch's failure (--all-or-none), or an interrupt


class LineRanges:
    """Input line numbers, in increasing order, as ranges (``1-3,7``): two integers per run of consecutive lines."""

    __slots__ = ("runs", "count")

    def __init__(self) -> None:
        self.runs: array[int] = array("q")
        self.count = 0

    def add(self, line: int) -> None:
        if self.runs and self.runs[-1] == line - 1:
            self.runs[-1] = line
        else:
            self.runs.append(line)
            self.runs.append(line)
        self.count += 1

    def after(self, skip: int) -> str:
        """The ranges without their first ``skip`` lines."""
        out = []
        for i in range(0, len(self.runs), 2):
            first, last = self.runs[i], self.runs[i + 1]
            size = last - first + 1
            if skip >= size:
                skip -= size
                continue
            first += skip
            skip = 0
            out.append(str(first) if first == last else f"{first}-{last}")
        return ",".join(out)

    def __str__(self) -> str:
        return self.after(0)


class Batch(NamedTuple):
    """One user's messages for one conversation, loaded when written."""

    user: str
    conversation: str | None  # None: the current one (or the newest session)
    size: int  # how many messages
    load: Callable[[], list[Message]]
    lines: LineRanges | None = None  # where in the input they came from; None: not from numbered input
    checked: bool = False  # every message already passed check_message (an input read through input_message)


class Outcome(NamedTuple):
    """What became of one batch."""

    user: str
    conversation: str | None
    outcome: str  # COMMITTED, PARTLY, FAILED or SKIPPED
    appended: int  # messages committed
    messages: int | None  # messages in the conversation after it (None when not known)
    archived: tuple[str, ...]
    lines: str | None  # the batch's input lines ("1-3,7")
    retry_lines: str | None  # the input lines not committed: what a retry sends ("" when all were)
    reason: str | None  # why not committed; for a committed batch, a warning (its automatic archive failed)
    error: DialogError | None = None  # the failure itself (its exit code)

    @property
    def committed(self) -> bool:
        return self.outcome == COMMITTED

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "conversation": self.conversation,
            "outcome": self.outcome,
            "appended": self.appended,
            "messages": self.messages,
            "archived": list(self.archived),
            "lines": self.lines,
            "retryLines": self.retry_lines,
            "reason": self.reason,
        }

    def describe(self) -> str:
        """One line for the operator: which batch, its input lines, and what became of it.

        The input lines of a batch not committed are given in full (they are
        what a retry sends); a committed batch's are cut short when long.
        """
        lines = self.lines
        if lines and self.outcome == COMMITTED and len(lines) > 60:
            lines = lines[: lines.rindex(",", 0, 50)] + f",... ({self.appended} lines)"
        where = self.user + (f"/{self.conversation}" if self.conversation else "") + (f" (input lines {lines})" if lines else "")
        if self.outcome == COMMITTED:
            return f"committed: {where}: {self.appended} message(s)" + (f"; {self.reason}" if self.reason else "")
        if self.outcome == PARTLY:
            return f"partly committed: {where}: the first {self.appended} message(s); not lines {self.retry_lines}: {self.reason}"
        return f"not committed ({self.outcome}): {where}: {self.reason}"


def append_batches(journal: Journal, batches: Sequence[Batch], *, all_or_none: bool = False, stop: Callable[[], str | None] | None = None) -> Iterator[Outcome]:
    """Write each batch under its user's lock and yield its outcome once it is known (durable, or failed), in input order.

    The batches are committed in groups (:mod:`dialogctl.journal.groupcommit`):
    written one after another, then made durable together, and only then
    yielded as committed. ``stop`` is asked before each batch (an interrupt, a
    closed output): once it gives a reason, what is written is committed and
    reported, and the rest are skipped for that reason. Failures that are not :class:`DialogError` (a bug, a second
    Ctrl-C) cut back what is not yet committed and propagate as they are.
    """
    if all_or_none:
        yield from _all_or_none(journal, batches, stop)
        return
    from .groupcommit import GroupCommit

    with GroupCommit(journal) as group:
        for index, batch in enumerate(batches):
            if group.full():  # told before more is written, so a stop (a closed output) leaves the rest unwritten
                group.commit()
                yield from _settled(group.take())
            reason = stop() if stop is not None else None
            if reason:
                group.commit()
                yield from _settled(group.take())
                yield from (_skipped(b, reason) for b in batches[index:])
                return
            group.append(batch, batch.user, batch.load, batch.conversation, checked=batch.checked)
            yield from _settled(group.take())
        group.commit()
        yield from _settled(group.take())


def _settled(done: list[tuple[Any, AppendResult | DialogError]]) -> Iterator[Outcome]:
    for batch, result in done:
        yield _failed(batch, result) if isinstance(result, DialogError) else _committed(batch, result)


def _all_or_none(journal: Journal, batches: Sequence[Batch], stop: Callable[[], str | None] | None) -> Iterator[Outcome]:
    from ..disk.syncgroup import SyncGroup
    from ..errors import storage_error

    told = 0  # outcomes yielded so far
    try:
        with journal.locked_all([b.user for b in batches], "append", create=True) as held:
            # Every lock is held: each batch is written with its last fsync left to one flush at
            # the end (a group commit), and the outcomes are told once that flush made them durable.
            group = SyncGroup()
            written: list[Outcome | tuple[Batch, AppendResult]] = []
            failure: Outcome | None = None
            failed: dict[object, OSError] = {}
            room = _descriptors_free(len(held))
            try:
                for index, batch in enumerate(batches):
                    if failure is not None:
                        written.append(_skipped(batch, f"not written: --all-or-none stops at the first failure (user {failure.user!r})"))
                    elif stop is not None and (reason := stop()):
                        written.append(_skipped(batch, reason))
                    else:
                        group.tag = index
                        try:
                            written.append((batch, journal.append_locked(held[batch.user], batch.user, batch.load(), batch.conversation, later=group)))
                        except DialogError as exc:
                            written.append(failure := _failed(batch, exc))
                    if 2 * len(group) >= room:  # each deferred fsync holds up to two descriptors: flush early (nothing is told yet)
                        failed.update(group.flush())
                failed.update(group.flush())
            except BaseException:
                group.abandon()
                raise
            for index, item in enumerate(written):
                if not isinstance(item, Outcome):
                    batch, result = item
                    error = failed.get(index)
                    if error is None:
                        item = _committed(batch, result)
                    else:
                        where = f"the conversation of user {batch.user!r}"
                        durable = int(group.notes.get(index, 0))
                        failure_error = storage_error(error, "append to", where)
                        item = _failed(
                            batch,
                            PartlyAppended(
                                f"appended {durable} of {batch.size} messages for user {batch.user!r}, then: {failure_error.message}", appended=durable
                            )
                            if durable
                            else failure_error,
                        )
                told += 1
                yield item
    except DialogError as exc:  # a lock that stayed busy, a folder that could not be made: nothing was written
        for batch in batches[told:]:
            if exc.user is None:
                yield _skipped(batch, f"not written: {exc.message}", exc)
            elif batch.user == exc.user:
                yield _failed(batch, exc)
            else:
                yield _skipped(batch, f"not written: --all-or-none could not lock user {exc.user!r}", exc)


def _descriptors_free(locked: int) -> int:
    """Descriptors left for a group commit's deferred fsyncs once ``locked`` users' locks are held (three each, with their folders)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * locked + 64 + 4096
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:  # room for a few thousand deferred fsyncs, when the hard limit allows
            soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, soft - 3 * locked - 64)


def _committed(batch: Batch, result: AppendResult) -> Outcome:
    lines = None if batch.lines is None else str(batch.lines)
    return Outcome(
        batch.user,
        result.conversation,
        COMMITTED,
        result.appended,
        result.messages,
        result.archived,
        lines,
        None if lines is None else "",
        result.archive_error,
    )


def _failed(batch: Batch, exc: DialogError) -> Outcome:
    lines = None if batch.lines is None else str(batch.lines)
    if isinstance(exc, PartlyAppended) and exc.appended:
        retry = None if batch.lines is None else batch.lines.after(exc.appended)
        return Outcome(batch.user, batch.conversation, PARTLY, exc.appended, None, (), lines, retry, exc.message, exc)
    return Outcome(batch.user, batch.conversation, FAILED, 0, None, (), lines, lines, exc.message, exc)


def _skipped(batch: Batch, reason: str, exc: DialogError | None = None) -> Outcome:
    lines = None if batch.lines is None else str(batch.lines)
    return Outcome(batch.user, batch.conversation, SKIPPED, 0, None, (), lines, lines, reason, exc)


def verdict(outcomes: Sequence[Outcome]) -> DialogError | None:
    """What the command ends with: None when every batch was committed.

    Some committed and some not: :class:`PartlyDone` (exit 7). None committed:
    the first failure's own error (its exit code: 4 for a busy lock, 6 for an
    I/O error), unchanged when there was only one batch.
    """
    missed = [o for o in outcomes if not o.committed]
    if not missed:
        return None
    done = len(outcomes) - len(missed)
    tried = [o for o in missed if o.outcome in (FAILED, PARTLY)] or missed
    first = next((o for o in tried if o.error is not None), None)
    if done or any(o.outcome == PARTLY for o in missed) or first is None or first.error is None:
        names = sorted({o.user for o in missed})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return PartlyDone(
            f"{done} of {len(outcomes)} user batches committed; not committed: {len(missed)} (users {shown})",
            hint="send again only the input lines of the batches not committed (retryLines in the --format records)",
        )
    if len(outcomes) == 1:
        return first.error
    error = type(first.error)(f"none of {len(outcomes)} user batches committed; the first failure: {first.reason}", hint=first.error.hint)
    return error
