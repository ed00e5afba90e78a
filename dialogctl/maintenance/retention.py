"""Retention: planning a cleanup the operator can read, then applying exactly that.

A cleanup is two steps. :func:`plan_cleanup` reads the journal and changes
nothing; it returns a :class:`CleanupPlan` listing every file it would remove or
trim and why. :func:`apply_cleanup` carries out a plan user by user, each under
the user's lock, and re-checks each step against the files as they are then:
a file that changed since planning is re-planned with the same cut-off times,
and a user who became active again is kept.

Rules (each optional):

* ``max_inactive``: a user whose newest message is older than this is removed
  with all their conversations and archives;
* ``retention``: an archive whose newest message is older than this goes;
* ``max_age``: messages older than this are dropped from every conversation; a
  file left empty is removed if it is an archive, kept empty otherwise;
* ``max_conversations`` (``maxConversationsPerUser``, ``--keep-last``): a user
  holds at most this many conversations; beyond it, the oldest archives go.

What the count rule counts: every archive, plus each active conversation
(``current.yaml``, ``session-<id>.yaml``) that holds messages, because the
setting limits the conversations a user holds and in the sessions layout
those files are conversations as much as archives are. Active conversations
are never removed by it (a server may be appending to them; archiving them is
the servers' and ``archive --idle``'s job), so they take their slots first and
archives fill the rest, newest first. An archive's age is its newest message's
timestamp, else the file's mtime; ties go by name (the lower name goes first).
The rule counts what the other rules leave: an archive removed by retention or
emptied by ``max_age`` is not counted, an active conversation emptied by
``max_age`` no longer counts, and a user removed as inactive needs no count.

A damaged archive counts (it is there and takes space) but is never deleted:
when the count would cut it, it is kept and reported, and the user stays over
the limit until it is repaired; a newer archive is never removed in its
place, because then the rule would delete what it promised to keep.

Applying re-plans the count rule: a user it cuts is re-planned as a whole
under the user's lock from the files as they are then (same cut-offs, same
limit), so archives made or removed between plan and apply move the cut
instead of making it over-delete.

Never deleted: a file with damaged records (repair it first), and a message
whose timestamp cannot be read (it cannot be dated).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from ..config import Settings
from ..disk import layout as L
from ..disk.paths import CLEANUP_LOG
from ..disk.storage import Folder
from ..errors import ChangedUnderneath, DialogError, FileTooLarge, LockBusy, storage_error
from ..fileformat.codec import encode_batch
from ..journal.core import Journal
from ..journal.files import Conversation, FileSeen
from ..journal.usermeta import refresh_metadata
from ..models import ConversationRef, ConversationSummary, Message, ProgressCallback
from ..times import back, format_timestamp, parse_timestamp, span, utc_now
from .deletion import log_line, log_quietly, remove_user_data

ActionKind = Literal["remove-user", "remove-archive", "trim", "keep"]
Rule = Literal["maxAge", "maxInactive", "retention", "maxConversations"]


@dataclass(frozen=True)
class CleanupAction:
    """One step of a plan, or (``kind`` "keep") an item a rule looked at and keeps."""

    user: str
    kind: ActionKind
    rule: Rule
    conversation: str  # "current", a session id, an archive id; "*" for a whole user
    path: str  # relative to the root
    messages: int  # messages removed (0 for a keep)
    bytes: int  # bytes freed (for a trim: old size minus new size; 0 for a keep)
    reason: str
    size: int = 0  # the file's size when planned (0 for a user)
    keep: int = 0  # messages kept (trim only)
    archives: int = 0  # archives a remove-user takes with the user (for the guard: maintenance/guard.py)

    def record(self, outcome: str, reason: str) -> dict[str, object]:
        """The step as one report line: planned, done or skipped (``outcome``), and why (``reason``)."""
        return {
            "action": self.kind,
            "rule": self.rule,
            "user": self.user,
            "conversation": self.conversation,
            "path": self.path,
            "messages": self.messages,
            "bytes": self.bytes,
            "outcome": outcome,
            "reason": reason,
        }


@dataclass
class CleanupPlan:
    created: datetime
    max_age_cutoff: datetime | None
    max_inactive_cutoff: datetime | None
    retention_cutoff: datetime | None
    max_conversations: int | None = None  # per user; None: no limit
    explain: bool = False  # list the count rule's keeps for every user, not only where it removes
    file_shape: str = "sequence"  # the shape a trimmed file is rewritten in (the journal's fileShape)
    items: list[CleanupAction] = field(default_factory=list)  # actions and keeps, user by user
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    users_seen: int = 0  # the users and archives the plan looked at: what the guard measures a plan against
    archives_seen: int = 0

    @property
    def actions(self) -> list[CleanupAction]:
        """The steps that change something (everything but the keeps)."""
        return [a for a in self.items if a.kind != "keep"]

    def cutoffs(self) -> dict[str, str | int | None]:
        """Each rule's cut: a time for the age rules, a count of conversations per user for the count rule."""

        def show(moment: datetime | None) -> str | None:
            return format_timestamp(moment) if moment else None

        return {
            "maxAge": show(self.max_age_cutoff),
            "maxInactive": show(self.max_inactive_cutoff),
            "retention": show(self.retention_cutoff),
            "maxConversations": self.max_conversations,
        }

    def summary(self) -> dict[str, object]:
        return {**_counts(self.actions), "cutoffs": self.cutoffs()}


def _counts(actions: list[CleanupAction]) -> dict[str, object]:
    """The totals of a plan or of what was done, and how many steps each rule took."""
    by_rule = {rule: 0 for rule in ("maxAge", "maxInactive", "retention", "maxConversations")}
    for a in actions:
        by_rule[a.rule] += 1
    return {
        "usersRemoved": sum(1 for a in actions if a.kind == "remove-user"),
        "archivesRemoved": sum(1 for a in actions if a.kind == "remove-archive"),
        "filesTrimmed": sum(1 for a in actions if a.kind == "trim"),
        "messagesRemoved": sum(a.messages for a in actions),
        "bytesFreed": sum(a.bytes for a in actions),
        "actionsByRule": by_rule,
    }


class CleanupRules(NamedTuple):
    """The four rules of a cleanup; None (or 0 for the count) turns a rule off."""

    max_age: timedelta | None = None  # messages older than this go
    max_inactive: timedelta | None = None  # users with nothing newer go
    retention: timedelta | None = None  # archives older than this go
    max_conversations: int | None = None  # conversations kept per user (count rule)


def rules_from_settings(
    settings: Settings,
    max_age: timedelta | None = None,
    max_inactive: timedelta | None = None,
    retention_days: int | None = None,
    max_conversations: int | None = None,
) -> CleanupRules:
    """Which setting feeds which rule: ``maxAgeHours``, ``maxInactiveHours``, ``retentionDays``, ``maxConversationsPerUser``.

    An argument that is not None overrides its setting (the command line's
    ``--max-age``, ``--max-inactive``, ``--retention-days``, ``--keep-last``).
    """
    days = settings["retentionDays"] if retention_days is None else retention_days
    return CleanupRules(
        max_age if max_age is not None else _hours(settings["maxAgeHours"]),
        max_inactive if max_inactive is not None else _hours(settings["maxInactiveHours"]),
        span(days * 86400.0) if days else None,
        settings["maxConversationsPerUser"] if max_conversations is None else max_conversations,
    )


def _hours(value: Any) -> timedelta | None:
    return span(float(value) * 3600) if value else None


def plan_rules(journal: Journal, rules: CleanupRules, progress: ProgressCallback | None = None, explain: bool = False) -> CleanupPlan:
    """:func:`plan_cleanup` of a set of rules (see :func:`rules_from_settings`)."""
    return plan_cleanup(
        journal, rules.max_age, rules.max_inactive, rules.retention, progress=progress, max_conversations=rules.max_conversations, explain=explain
    )


def run_cleanup(journal: Journal, plan: CleanupPlan, progress: ProgressCallback | None = None) -> CleanupResult:
    """:func:`apply_cleanup`, then ``system/stats.yaml`` rewritten as the journal now is when anything changed."""
    result = apply_cleanup(journal, plan, progress=progress)
    if result.applied:
        from ..views.analytics import save_system_stats
        from ..views.overview import journal_totals

        save_system_stats(journal, journal_totals(journal))
    return result


def plan_cleanup(
    journal: Journal,
    max_age: timedelta | None = None,
    max_inactive: timedelta | None = None,
    retention: timedelta | None = None,
    now: datetime | None = None,
    users: list[str] | None = None,
    progress: ProgressCallback | None = None,
    max_conversations: int | None = None,
    explain: bool = False,
) -> CleanupPlan:
    """What a cleanup would do, changing nothing at all (not even a lock file); ``progress`` is told after each user.

    ``max_conversations`` (None or 0: no limit) is the count rule's limit per
    user. The count rule's keeps are listed in ``items`` for the users over
    the limit, and with ``explain`` for every user.
    """
    now = now or utc_now()
    plan = CleanupPlan(
        now,
        back(now, max_age) if max_age else None,
        back(now, max_inactive) if max_inactive else None,
        back(now, retention) if retention else None,
        max_conversations or None,
        explain,
        journal.file_shape,
    )
    if users is None:
        from ..journal.catalog import summaries

        # Planning changes nothing, not even the catalog: it reads what is saved and the files.
        found_by_user: Iterator[tuple[str, list[ConversationSummary]]] = summaries(journal, save_learned=False)
    else:
        found_by_user = ((user, journal.summaries(user)) for user in users)
    for done, (user, found) in enumerate(found_by_user, 1):
        plan.users_seen, plan.archives_seen = plan.users_seen + 1, plan.archives_seen + sum(1 for s in found if s.ref.archived)
        plan.items.extend(_plan_user(journal, plan, user, found))
        if progress is not None:
            progress(done, None)
    return plan


def _plan_user(journal: Journal, plan: CleanupPlan, user: str, found: list[ConversationSummary]) -> list[CleanupAction]:
    """The user's actions (and the count rule's keeps), from summaries; a file is read only when some of its messages may go."""
    last = _newest_of(s.last_timestamp for s in found)
    if plan.max_inactive_cutoff and last is not None and last < plan.max_inactive_cutoff:
        if any(s.damaged for s in found):
            plan.skipped.append((journal.user_path(user), "has damaged records; repair them before removing the user"))
            return []
        if any(u.user == user for u in journal.unreadable):
            # Its newest message may be in what could not be read: never removed on a guess.
            plan.skipped.append((journal.user_path(user), "some of its files or folders cannot be read, so its last activity is not known"))
            return []
        messages = sum(s.messages for s in found)
        size = sum(s.size for s in found)
        reason = f"inactive: newest message {format_timestamp(last)} is older than {format_timestamp(plan.max_inactive_cutoff)}"
        archives = sum(1 for s in found if s.ref.archived)
        return [CleanupAction(user, "remove-user", "maxInactive", "*", journal.user_path(user).rsplit("/", 1)[0], messages, size, reason, archives=archives)]
    actions = []
    for summary in found:
        action = _plan_summary(journal, plan, summary)
        if action is not None:
            actions.append(action)
    if plan.max_conversations:
        actions = _plan_count(journal, plan, found, actions)
    return actions


def _plan_count(journal: Journal, plan: CleanupPlan, found: list[ConversationSummary], actions: list[CleanupAction]) -> list[CleanupAction]:
    """``actions`` with the count rule applied to what they leave: the oldest archives beyond the limit go.

    An archive the count removes replaces its trim (it would be trimmed, then
    deleted). Returns the actions on active conversations and archives the
    other rules remove first, then every archive the count ranks, newest first.
    """
    limit = plan.max_conversations or 0
    # Keyed by conversation, not path: a path is only worked out for the rows this rule adds.
    by_ref = {_ref_of(a): a for a in actions}
    gone = {ref for ref, a in by_ref.items() if a.kind == "remove-archive" or (a.kind == "trim" and a.keep == 0)}
    active = [s for s in found if not s.ref.archived and s.messages and s.ref not in gone]
    archives = [s for s in found if s.ref.archived and s.ref not in gone]
    cut = len(active) + len(archives) > limit
    if not cut and not plan.explain:
        return actions
    slots = max(0, limit - len(active))
    besides = f" beside {len(active)} active" if active else ""

    def age(s: ConversationSummary) -> tuple[datetime, str]:
        return _newest_of([s.last_timestamp]) or datetime.fromtimestamp(s.mtime, plan.created.tzinfo), s.ref.id or ""

    ranked = sorted(archives, key=age, reverse=True)
    skipped = {path for path, _ in plan.skipped}
    rows = [a for a in actions if not _ref_of(a).archived or _ref_of(a) in gone]
    for s in active:
        why = f"count: an active conversation is never removed; it counts toward the limit of {limit}"
        rows.append(CleanupAction(s.ref.user, "keep", "maxConversations", s.ref.name, journal.rel_path(s.ref), 0, 0, why, s.size))
    for rank, s in enumerate(ranked, 1):
        path = journal.rel_path(s.ref)
        place = f"{_ordinal(rank)} newest archive; the newest {slots} are kept{besides} (limit {limit})"
        if rank <= slots:
            planned = by_ref.get(s.ref)
            if planned is not None:  # trimmed by max age, and kept by the count
                rows.append(planned)
            else:
                why = f"count: one of the newest {slots} archives{besides} (limit {limit})"
                rows.append(CleanupAction(s.ref.user, "keep", "maxConversations", s.ref.name, path, 0, 0, why, s.size))
        elif s.damaged:
            if path not in skipped:
                plan.skipped.append((path, f"count: {place}, but it has damaged records; repair it before cleanup"))
            rows.append(CleanupAction(s.ref.user, "keep", "maxConversations", s.ref.name, path, 0, 0, f"count: {place}; kept: damaged records", s.size))
        else:
            rows.append(CleanupAction(s.ref.user, "remove-archive", "maxConversations", s.ref.name, path, s.messages, s.size, f"count: {place}", s.size))
    return rows


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _plan_summary(journal: Journal, plan: CleanupPlan, s: ConversationSummary) -> CleanupAction | None:
    """Like :func:`_plan_file`, reading the conversation only if ``max_age`` may trim it."""
    ref = s.ref
    if s.damaged and (plan.max_age_cutoff or plan.retention_cutoff):
        if ref.archived or s.messages:
            plan.skipped.append((journal.rel_path(ref), "has damaged records; repair it before cleanup"))
        return None
    if ref.archived and plan.retention_cutoff:
        when = _newest_of([s.last_timestamp]) or datetime.fromtimestamp(s.mtime, plan.created.tzinfo)
        if when < plan.retention_cutoff:
            reason = f"retention: newest message {format_timestamp(when)} is older than {format_timestamp(plan.retention_cutoff)}"
            return CleanupAction(ref.user, "remove-archive", "retention", ref.name, journal.rel_path(ref), s.messages, s.size, reason, s.size)
    oldest = _newest_of([s.first_timestamp])
    if plan.max_age_cutoff and s.messages and oldest is not None and oldest < plan.max_age_cutoff:
        return _plan_file(plan, journal.read(ref, missing_ok=True))
    return None


def _plan_file(plan: CleanupPlan, conv: Conversation) -> CleanupAction | None:
    ref = conv.ref
    # Damage that lost nothing (a glued separator) does not hold a file back: its rewrite is clean.
    if any(not d.recovered for d in conv.damage) and (plan.max_age_cutoff or plan.retention_cutoff):
        if ref.archived or conv.messages:
            plan.skipped.append((conv.rel_path, "has damaged records; repair it before cleanup"))
        return None
    if ref.archived and plan.retention_cutoff:
        newest = _newest_of(m.timestamp for m in conv.messages)
        when = newest or datetime.fromtimestamp(conv.mtime, plan.created.tzinfo)
        if when < plan.retention_cutoff:
            reason = f"retention: newest message {format_timestamp(when)} is older than {format_timestamp(plan.retention_cutoff)}"
            return CleanupAction(ref.user, "remove-archive", "retention", ref.name, conv.rel_path, len(conv.messages), conv.size, reason, conv.size)
    if plan.max_age_cutoff and conv.messages:
        kept = _keep_newer(conv.messages, plan.max_age_cutoff)
        dropped = len(conv.messages) - len(kept)
        if dropped:
            reason = f"max age: {dropped} messages older than {format_timestamp(plan.max_age_cutoff)}"
            if not kept and ref.archived:
                return CleanupAction(ref.user, "remove-archive", "maxAge", ref.name, conv.rel_path, dropped, conv.size, reason, conv.size)
            new_size = len(_rewrite_bytes(kept, plan))
            return CleanupAction(ref.user, "trim", "maxAge", ref.name, conv.rel_path, dropped, conv.size - new_size, reason, conv.size, len(kept))
    return None


def _newest_of(timestamps: Iterable[str | None]) -> datetime | None:
    newest = None
    for text in timestamps:
        moment = parse_timestamp(text) if text is not None else None
        if moment is not None and (newest is None or moment > newest):
            newest = moment
    return newest


def _keep_newer(messages: list[Message], cutoff: datetime) -> list[Message]:
    kept = []
    for msg in messages:
        moment = parse_timestamp(msg.timestamp)
        if moment is None or moment >= cutoff:  # undatable messages are never dropped
            kept.append(msg)
    return kept


def _rewrite_bytes(messages: list[Message], plan: CleanupPlan) -> bytes:
    """The file's new bytes: the kept messages, framed afresh, in the journal's file shape (as the trim writes them)."""
    return encode_batch(messages, 1, "documents" if plan.file_shape == "documents" else "sequence") if messages else b""


@dataclass
class CleanupResult:
    applied: list[CleanupAction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): the plan's skips, then the run's
    not_done: list[tuple[CleanupAction, str]] = field(default_factory=list)  # planned steps the run did not take, and why
    busy: list[tuple[str, str]] = field(default_factory=list)  # (user, the lock error): users left for the next run
    log_error: str | None = None  # the outcome line could not be written to cleanup.log (everything else was done)

    def summary(self) -> dict[str, object]:
        return _counts(self.applied)

    def skip(self, action: CleanupAction, reason: str) -> None:
        self.skipped.append((action.path, reason))
        self.not_done.append((action, reason))


def apply_cleanup(journal: Journal, plan: CleanupPlan, progress: ProgressCallback | None = None) -> CleanupResult:
    """Carry out a plan, user by user under each user's lock (``progress`` is told after each); logged first.

    Before the first change the intent (every step: action, rule, user, path)
    goes to ``system/cleanup.log``: a log that cannot be written stops the run
    here (:class:`~dialogctl.errors.StorageError`), with nothing changed.
    A user whose lock stays busy is skipped and reported (``busy``), and
    every other user is still handled. The outcome line follows at the end:
    the totals, each skipped step and why, and the busy users. A plan with
    nothing to do logs only the outcome line, as every run did before.
    """
    result = CleanupResult(skipped=list(plan.skipped))
    by_user: dict[str, list[CleanupAction]] = {}
    for action in plan.actions:
        by_user.setdefault(action.user, []).append(action)
    run = os.urandom(6).hex()
    if by_user:
        log_line(journal, CLEANUP_LOG, _intent_record(journal, plan, run), "nothing was cleaned up")
    try:
        for done, (user, actions) in enumerate(by_user.items(), 1):
            try:
                _apply_user(journal, plan, user, actions, result)
            except LockBusy as exc:
                result.busy.append((user, exc.message))
                for action in actions:
                    result.skip(action, f"lock busy: {exc.message}")
            if progress is not None:
                progress(done, len(by_user))
        journal.rewrites.settle()  # what a server appended to a trimmed file just as it was replaced
    except BaseException as exc:
        try:
            journal.rewrites.settle()
        except DialogError:
            pass
        error = exc.message if isinstance(exc, DialogError) else type(exc).__name__
        log_quietly(journal, CLEANUP_LOG, _outcome_record(journal, plan, result, run, error))
        raise
    try:
        log_line(journal, CLEANUP_LOG, _outcome_record(journal, plan, result, run), "the cleanup itself is done")
    except DialogError as exc:
        result.log_error = exc.message
    return result


def _apply_user(journal: Journal, plan: CleanupPlan, user: str, actions: list[CleanupAction], result: CleanupResult) -> None:
    from ..errors import NotFound

    def body(dialogs: Folder) -> None:
        if actions[0].kind == "remove-user":
            # Re-check under the lock: a user who spoke since planning stays.
            fresh = _plan_user(journal, _scratch(plan), user, journal.summaries(user))
            if not (fresh and fresh[0].kind == "remove-user"):
                result.skip(actions[0], "became active since the plan was made; kept")
                return
            remove_user_data(journal, user)  # exactly the user's files, quarantined copies too
            result.applied.append(fresh[0])
            return
        if any(a.rule == "maxConversations" for a in actions):
            _apply_replanned(journal, dialogs, plan, user, actions, result)
            return
        for action in actions:
            applied = _apply_file(journal, dialogs, plan, action)
            if applied is None:
                result.skip(action, "changed since the plan was made and no longer qualifies")
            else:
                result.applied.append(applied)

    before = len(result.applied)
    try:
        journal.locked(user, "cleanup", body)
    except NotFound:
        for action in actions:
            result.skip(action, "removed by someone else since the plan was made")
        return
    if any(a.kind in ("trim", "remove-archive") for a in result.applied[before:]):
        refresh_metadata(journal, user)


def _scratch(plan: CleanupPlan) -> CleanupPlan:
    """The plan's rules and cut-offs with nothing planned yet: for re-planning one user under the lock."""
    return replace(plan, explain=False, items=[], skipped=[])


def _apply_replanned(journal: Journal, dialogs: Folder, plan: CleanupPlan, user: str, actions: list[CleanupAction], result: CleanupResult) -> None:
    """Re-plan a user the count rule cuts from the files as they are now (the lock is held), and apply that.

    Archives made or removed since planning (an archive or rm run in between)
    move the cut: the limit is honoured and never exceeded by what is removed.
    """
    again = _scratch(plan)
    fresh = [a for a in _plan_user(journal, again, user, journal.summaries(user)) if a.kind in ("remove-archive", "trim")]
    result.skipped.extend(item for item in again.skipped if item not in plan.skipped)
    now_due = {a.path for a in fresh}
    for action in actions:
        if action.path not in now_due:
            result.skip(action, "changed since the plan was made and no longer qualifies")
    for action in fresh:
        if action.kind == "remove-archive":
            _remove_archive(journal, dialogs, _ref_of(action))
            result.applied.append(action)
            continue
        applied = _apply_file(journal, dialogs, plan, action)
        if applied is not None:
            result.applied.append(applied)


def _remove_archive(journal: Journal, dialogs: Folder, ref: ConversationRef) -> None:
    folder, name = journal.locate(dialogs, ref)
    try:
        folder.remove(name)
        try:
            folder.fsync()
        except OSError as exc:
            raise storage_error(exc, "remove", folder.child_path(name)) from None
    finally:
        folder.close()


def _apply_file(journal: Journal, dialogs: Folder, plan: CleanupPlan, action: CleanupAction) -> CleanupAction | None:
    ref = _ref_of(action)
    folder, name = journal.locate(dialogs, ref)
    try:
        try:
            read = folder.read_with_stat(name, journal.file_limit)
        except FileTooLarge:
            return None  # grew past maxFileMB since the plan: not read, so never rewritten
        if read is None:
            return None
        data, st = read
        conv = journal.parse_bytes(ref, data, st.st_size, st.st_mtime)
        fresh = _plan_file(plan, conv)
        if fresh is None or fresh.kind != action.kind:
            return None
    finally:
        if folder is not dialogs:
            folder.close()
    if fresh.kind == "remove-archive":
        _remove_archive(journal, dialogs, ref)
        return fresh
    kept = _keep_newer(conv.messages, plan.max_age_cutoff)  # type: ignore[arg-type]
    try:
        written = journal.write_conversation(dialogs, ref, kept, replacing=FileSeen.of(st, len(data)))
    except ChangedUnderneath:
        return None  # a server archived it meanwhile: the next run plans it afresh
    return replace(fresh, bytes=len(data) - written, size=len(data), keep=len(kept))


def _ref_of(action: CleanupAction) -> ConversationRef:
    path = action.path
    if f"/{L.ARCHIVE_DIR}/" in path:
        return ConversationRef(action.user, "archive", action.conversation)
    if action.conversation == "current":
        return ConversationRef(action.user, "current")
    return ConversationRef(action.user, "session", action.conversation)


def _intent_record(journal: Journal, plan: CleanupPlan, run: str) -> dict[str, object]:
    """The line logged before a cleanup changes anything: what it is about to do, never message text."""
    return {
        "time": format_timestamp(utc_now()),
        "phase": "intent",
        "run": run,
        "host": socket.gethostname(),
        "serverId": journal.settings["serverId"],
        "pid": os.getpid(),
        "planned": _counts(plan.actions),
        "cutoffs": plan.cutoffs(),
        "steps": [{"action": a.kind, "rule": a.rule, "user": a.user, "path": a.path} for a in plan.actions],
    }


def _outcome_record(journal: Journal, plan: CleanupPlan, result: CleanupResult, run: str, error: str | None = None) -> dict[str, object]:
    """The line logged after a cleanup: what it did (the totals every run has logged), what it skipped and why."""
    record: dict[str, object] = {
        "time": format_timestamp(utc_now()),
        "phase": "failed" if error is not None else "done",
        "run": run,
        "host": socket.gethostname(),
        "serverId": journal.settings["serverId"],
        **result.summary(),
        "cutoffs": plan.cutoffs(),
        "skipped": len(result.skipped),
        "skippedSteps": [{"path": path, "reason": reason} for path, reason in result.skipped],
        "busyUsers": [user for user, _ in result.busy],
    }
    if error is not None:
        record["error"] = error
    return record
