"""``cleanup``: retention with a plan the operator sees before anything goes."""

import sys
from typing import Annotated, Any, Optional

import typer

from ..output import Column, Format, FormatOption, emit_object, emit_records
from ..state import CliState

# On a narrow terminal the reason goes first, then the rule, then the bytes; action and rule are words, never cut.
PLAN_COLUMNS = [
    Column("action", "Action", "name"),
    Column("rule", "Rule", "name", drop=2),
    Column("user", "User", "id"),
    Column("conversation", "Conversation", "id"),
    Column("messages", "Messages removed", "count"),
    Column("bytes", "Bytes freed", "bytes", drop=1),
    Column("outcome", "Outcome", in_table=False),  # a table is the plan (its title says so); a real run prints rows only in machine formats
    Column("reason", "Why", drop=3),
]


def cleanup(
    ctx: typer.Context,
    max_age: Annotated[
        Optional[str],
        typer.Option("--max-age", help="Drop messages older than DURATION (30s, 15m, 12h, 90d, 2w); default: cleanup.maxAgeHours.", metavar="DURATION"),
    ] = None,
    max_inactive: Annotated[
        Optional[str],
        typer.Option(
            "--max-inactive",
            help="Remove users whose newest message is older than DURATION (e.g. 180d); default: cleanup.maxInactiveHours.",
            metavar="DURATION",
        ),
    ] = None,
    retention_days: Annotated[
        Optional[int],
        typer.Option("--retention-days", help="Remove archives older than this many days; default: retentionDays (0 keeps them).", min=0, metavar="DAYS"),
    ] = None,
    keep_last: Annotated[
        Optional[int],
        typer.Option(
            "--keep-last",
            help="Keep at most N conversations per user, removing the oldest archives beyond it (0: no limit); default: maxConversationsPerUser.",
            min=0,
            metavar="N",
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="List every archive the count rule looks at as keep or remove, also for users within the limit."),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show exactly what would go, and the cut-off times, and change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (required without a terminal, and with --format json/jsonl/csv/tsv).")] = False,
    max_remove: Annotated[
        Optional[int],
        typer.Option(
            "--max-remove",
            help="Let a run go ahead that removes more than cleanup.maxRemoveShare of the archives or users, up to N archives and N users.",
            min=0,
            metavar="N",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Let a run go ahead however much of the journal it removes (no guard).")] = False,
    fmt: FormatOption = None,
) -> None:
    """Apply retention: old messages, idle users, old and surplus archives.

    Always plans first. --dry-run prints the plan and changes nothing; a real
    run shows the plan and asks on a terminal, and needs --yes otherwise
    (cron). A real run logs to system/cleanup.log what it is about to do
    before the first change (a log that cannot be written stops it, exit 6,
    with nothing changed) and what it did after. A user whose lock stays busy
    (a stuck server) is skipped and reported, every other user is still
    cleaned up and logged, and the run then exits 4. A table run prints the
    plan; json prints one object (counts, cut-offs, the guard's figures, actions); jsonl, csv and
    tsv print one action per line: the plan with --dry-run, what was done and
    what was skipped otherwise.

    Each line has an action (remove-user, remove-archive, trim or keep), the
    rule behind it (maxInactive, retention, maxAge or maxConversations), user,
    conversation, path (json and jsonl), messages and bytes removed, the
    outcome (planned, done or skipped) and the reason (for a skipped step: why
    it was skipped). The json object adds the totals (usersRemoved,
    archivesRemoved, filesTrimmed, messagesRemoved, bytesFreed, actionsByRule),
    each rule's cut-off (maxConversations: the limit per user) and the busy
    users.

    The guard: a run that would remove more than cleanup.maxRemoveShare
    (default 50%) of the journal's archives (an inactive user's included) or
    of its users asks on a terminal with that figure, and with --yes refuses
    with exit 8, nothing removed, unless --max-remove N allows that many
    archives and users, or --force. The plan says what each rule removes.

    The count rule (maxConversationsPerUser, --keep-last) counts a user's archives
    and the active conversations that hold messages; beyond the limit the
    oldest archives go (age: newest message, else file time). Active
    conversations and files with damaged records are never removed. The plan
    lists every archive as keep or remove for each user over the limit
    (--explain: for every user).

    Examples:

    \b
      dialogctl cleanup --dry-run
      dialogctl cleanup --keep-last 20 --dry-run       # at most 20 conversations per user
      dialogctl cleanup --max-inactive 180d --dry-run --format json
      dialogctl cleanup --max-age 90d --yes --format jsonl >> cleanup-actions.jsonl
      dialogctl -q cleanup --yes          # nightly, from cron
      dialogctl -q cleanup --yes --max-remove 100   # a first cleanup of a large backlog
    """
    from ...errors import CleanupHeld, InvalidInput, LockBusy, StorageError
    from ...maintenance.guard import held, max_remove_share, removal_share
    from ...maintenance.retention import plan_rules, rules_from_settings, run_cleanup
    from ...times import parse_duration
    from ..progress import ProgressBar

    state: CliState = ctx.obj
    rules = rules_from_settings(
        state.settings(),
        parse_duration(max_age, "--max-age") if max_age is not None else None,
        parse_duration(max_inactive, "--max-inactive") if max_inactive is not None else None,
        retention_days,
        keep_last,
    )
    table = fmt in (None, Format.table)
    if dry_run and yes:
        raise InvalidInput("--dry-run changes nothing, so --yes has nothing to confirm; pass one")
    if dry_run and (force or max_remove is not None):
        raise InvalidInput("--dry-run changes nothing, so --force and --max-remove have nothing to allow; the plan says what a run would do")
    if not dry_run and not yes and not table:
        raise InvalidInput(f"--format {fmt} reports what a cleanup did and cannot stop to ask first; pass --yes, or --dry-run for the plan")
    if not dry_run and not yes and not sys.stdin.isatty():
        raise InvalidInput("cleanup deletes data: pass --yes to run it without a terminal, or --dry-run to see the plan")
    journal = state.journal()
    with ProgressBar(state, "Planning cleanup") as bar:
        plan = plan_rules(journal, rules, progress=bar.update, explain=explain)
    labels = {"maxAge": "max age", "maxInactive": "max inactive", "retention": "retention", "maxConversations": "max conversations per user"}
    cutoffs = ", ".join(f"{labels[key]} {moment or 'not set'}" for key, moment in plan.cutoffs().items())
    (state.say if dry_run else state.detail)(f"cut-off times: {cutoffs}")
    for path, reason in plan.skipped:
        state.warn(f"{path}: skipped: {reason}")
    actions = plan.actions
    share = removal_share(plan, max_remove_share(state.settings()))  # the guard's measure: core policy, rendered here
    hold = held(share, max_remove, force)
    if hold and yes:  # unattended (cron): refuse, before anything is shown or changed
        raise CleanupHeld(
            f"{share.describe()}; nothing was removed",
            hint="see the plan with 'dialogctl cleanup --dry-run'; --max-remove N lets a run remove N archives and N users, --force any number",
        )
    if dry_run or (table and actions and not yes):  # with --yes (cron) the plan is not shown
        planned = [(a, "planned", a.reason) for a in plan.items]
        header = {"dryRun": dry_run, **plan.summary(), "guard": share.to_json()}
        _emit(state, fmt, planned, header, title="Cleanup plan" + (" (dry run)" if dry_run else ""))
        if table and actions:
            state.say(_counts("would remove" if dry_run else "will remove", plan.summary()))
            state.say(f"by rule: {share.rules()}")
        if dry_run and share.over:
            state.warn(f"a run with --yes would refuse (exit 8): {share.describe()}; --max-remove N or --force lets it run")
    if dry_run:
        return
    if actions and not yes:
        question = f"Apply this cleanup ({len(actions)} actions)?"
        if share.over:
            question = f"{share.describe()[0].upper()}{share.describe()[1:]}. {question}"
        if not typer.confirm(question, default=False, err=True):
            raise typer.Abort()
    elif share.over:
        state.detail(f"{share.describe()}; allowed by {'--force' if force else '--max-remove'}")
    with ProgressBar(state, "Cleaning up") as bar:
        result = run_cleanup(journal, plan, progress=bar.update)  # system/stats.yaml rewritten after a run that changed anything
    for path, reason in result.skipped[len(plan.skipped) :]:
        state.warn(f"{path}: skipped: {reason}")
    summary = result.summary()
    state.say(_counts("removed", summary) if actions else "nothing to clean up")
    if not table:
        rows = [(a, "done", a.reason) for a in result.applied] + [(a, "skipped", why) for a, why in result.not_done]
        _emit(state, fmt, rows, {"dryRun": False, **summary, "cutoffs": plan.cutoffs(), "busyUsers": [u for u, _ in result.busy]})
    if result.log_error is not None:
        raise StorageError(result.log_error)
    if result.busy:
        users = ", ".join(repr(u) for u, _ in result.busy)
        raise LockBusy(
            f"{len(result.busy)} user(s) skipped, their locks busy: {users}; every other user was cleaned up and the run was logged",
            hint="run cleanup again later, or look at 'dialogctl locks --held'",
        )


def _counts(verb: str, summary: dict[str, Any]) -> str:
    freed = summary["bytesFreed"]
    # A trimmed file the servers wrote can grow: dialogctl frames every record it rewrites.
    size = f"freeing {freed:,} bytes" if freed >= 0 else f"the files growing by {-freed:,} bytes (rewritten records carry dialogctl's frames)"
    return (
        f"{verb} {summary['usersRemoved']} users, {summary['archivesRemoved']} archives and {summary['messagesRemoved']} messages "
        f"({summary['filesTrimmed']} files trimmed), {size}"
    )


def _emit(state: CliState, fmt: Format | None, rows: list[tuple[Any, str, str]], header: dict[str, Any], title: str | None = None) -> None:
    """Steps (action, outcome, reason) as a table or rows, or one object (``header`` plus the steps) in json."""
    records = [action.record(outcome, reason) for action, outcome, reason in rows]
    if fmt is Format.json:
        emit_object(state, fmt, {**header, "actions": records}, lambda: None)
    else:
        emit_records(state, fmt, PLAN_COLUMNS, records, title=title, empty="nothing to clean up")
