"""``cleanup``: retention with a plan the operator sees before anything goes."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from .output import Column, FormatOption, emit_object, emit_records
from .state import CliState

PLAN_COLUMNS = [
    Column("action", "Action"),
    Column("user", "User"),
    Column("conversation", "Conversation"),
    Column("messages", "Messages removed", "count"),
    Column("bytes", "Bytes freed", "bytes"),
    Column("reason", "Why"),
]


def cleanup(
    ctx: typer.Context,
    max_age: Annotated[
        Optional[str], typer.Option("--max-age", help="Drop messages older than this (e.g. 90d); default: cleanup.maxAgeHours.", metavar="DURATION")
    ] = None,
    max_inactive: Annotated[
        Optional[str],
        typer.Option(
            "--max-inactive", help="Remove users whose newest message is older than this (e.g. 180d); default: cleanup.maxInactiveHours.", metavar="DURATION"
        ),
    ] = None,
    retention_days: Annotated[
        Optional[int],
        typer.Option("--retention-days", help="Remove archives older than this many days; default: retentionDays (0 keeps them).", min=0, metavar="DAYS"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show exactly what would go and change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (required when stdin is not a terminal).")] = False,
    fmt: FormatOption = None,
) -> None:
    """Apply retention: drop old messages, idle users and expired archives.

    Always plans first. --dry-run prints the plan and changes nothing; a real
    run asks for confirmation on a terminal and needs --yes otherwise (cron).
    Each run appends one line to system/cleanup.log.

    Examples:

      dialogctl cleanup --dry-run

      dialogctl cleanup --max-inactive 180d --dry-run --format json

      dialogctl cleanup --yes -q          # nightly, from cron
    """
    from datetime import timedelta

    from ..errors import InvalidInput
    from ..retention import apply_cleanup, plan_cleanup
    from ..times import parse_duration

    state: CliState = ctx.obj
    settings = state.settings()
    age = parse_duration(max_age, "--max-age") if max_age is not None else _hours(settings["maxAgeHours"])
    inactive = parse_duration(max_inactive, "--max-inactive") if max_inactive is not None else _hours(settings["maxInactiveHours"])
    days = settings["retentionDays"] if retention_days is None else retention_days
    retention = timedelta(days=days) if days else None
    if dry_run and yes:
        raise InvalidInput("--dry-run changes nothing, so --yes has nothing to confirm; pass one")
    if not dry_run and not yes and not sys.stdin.isatty():
        raise InvalidInput("cleanup deletes data: pass --yes to run it without a terminal, or --dry-run to see the plan")
    journal = state.journal()
    plan = plan_cleanup(journal, age, inactive, retention)
    for label, cutoff in plan.cutoffs().items():
        state.detail(f"cut-off {label}: {cutoff or 'not set'}")
    if dry_run or (not yes and plan.actions):
        _show_plan(state, fmt, plan, dry_run)
    for path, reason in plan.skipped:
        state.warn(f"{path}: skipped: {reason}")
    if dry_run:
        return
    if not plan.actions:
        state.say("nothing to clean up")
        if fmt is not None and fmt.value != "table":
            emit_object(state, fmt, {"dryRun": False, **_zero()}, lambda: None)
        apply_cleanup(journal, plan)  # still logged: the run happened
        return
    if not yes and not typer.confirm(f"Apply this cleanup ({len(plan.actions)} actions)?", default=False, err=True):
        raise typer.Abort()
    result = apply_cleanup(journal, plan)
    for path, reason in result.skipped[len(plan.skipped) :]:
        state.warn(f"{path}: skipped: {reason}")
    summary = result.summary()
    state.say(
        f"removed {summary['usersRemoved']} users, {summary['archivesRemoved']} archives and "
        f"{summary['messagesRemoved']} messages; freed {summary['bytesFreed']} bytes"
    )
    if fmt is not None and fmt.value != "table":
        emit_object(state, fmt, {"dryRun": False, **summary, "actions": [_record(a) for a in result.applied]}, lambda: None)


def _hours(value: Any) -> Any:
    from datetime import timedelta

    return timedelta(hours=float(value)) if value else None


def _zero() -> dict[str, int]:
    return {"usersRemoved": 0, "archivesRemoved": 0, "filesTrimmed": 0, "messagesRemoved": 0, "bytesFreed": 0}


def _record(action: Any) -> dict[str, Any]:
    return {
        "action": action.kind,
        "user": action.user,
        "conversation": action.conversation,
        "path": action.path,
        "messages": action.messages,
        "bytes": action.bytes,
        "reason": action.reason,
    }


def _show_plan(state: CliState, fmt: Any, plan: Any, dry_run: bool) -> None:
    records = [_record(a) for a in plan.actions]
    if fmt is None or fmt.value == "table":
        if not records:
            state.say("nothing to clean up")
            return
        emit_records(state, fmt, PLAN_COLUMNS, records, title="Cleanup plan" + (" (dry run)" if dry_run else ""))
        s = plan.summary()
        state.say(
            f"{'would remove' if dry_run else 'will remove'} {s['usersRemoved']} users, {s['archivesRemoved']} archives and "
            f"{s['messagesRemoved']} messages, freeing {s['bytesFreed']} bytes"
        )
        return
    if fmt.value == "json":
        emit_object(state, fmt, {"dryRun": dry_run, **plan.summary(), "actions": records}, lambda: None)
    else:
        emit_records(state, fmt, PLAN_COLUMNS, records)
