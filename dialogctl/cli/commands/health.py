"""``verify``, ``repair`` and ``doctor``: checking the journal and mending it."""

from typing import Annotated, Optional

import typer

from ..output import Column, FormatOption, emit_records
from ..state import CliState

UserOpt = Annotated[Optional[str], typer.Argument(help="Only this user (default: the whole journal).", metavar="[USER]", show_default=False)]

FINDING_COLUMNS = [
    Column("level", "Level", "name"),
    Column("path", "File", "id"),
    Column("line", "Line"),
    Column("problem", "Problem"),
    Column("detail", "Detail"),
    Column("repair", "What repair does"),
]

ACTION_COLUMNS = [
    Column("path", "File", "id"),
    Column("action", "Action"),
    Column("messages", "Messages"),
    Column("recovered", "Recovered"),
    Column("dropped", "Left out"),
    Column("detail", "Detail"),
]

ADVICE_COLUMNS = [Column("check", "Check"), Column("status", "Status"), Column("detail", "Detail")]


def verify(ctx: typer.Context, user: UserOpt = None, fmt: FormatOption = None) -> None:
    """Check every file of the journal (or of one user) without changing anything.

    Looks for unreadable records, torn writes, checksum mismatches, glued
    separators, duplicate keys, unknown roles, timestamps out of order, leftover
    temp files, unfinished archive moves, files of --- documents the servers
    cannot append to, files and folders others can write or that someone else
    owns, and (for the whole journal) a catalog out of step with the files.
    Files readable by others are a note, which changes no exit code. Takes no
    lock and creates nothing, so it is safe on a live journal. Exits 1 when it
    finds a problem; 'dialogctl repair' mends what it can. A finding names
    messages by index from 0, as show and export number them, and lines of the
    file from 1.

    A whole-journal run also reports user folders where dialogctl before 0.2
    put short ids (users/bo/b/ for bob, whom the servers keep in
    users/bo/b/bob/).

    Examples:

      dialogctl verify

      dialogctl verify alice --format json | jq '.[].problem'
    """
    from ...errors import NegativeAnswer
    from ...maintenance.verify import verify as run_checks

    state: CliState = ctx.obj
    journal = state.journal()
    report = run_checks(journal, None if user is None else [user])
    journal.damage.clear()  # damage met on the way is in the findings: verify's answer is 1, not 5 (what it could not read still makes it 6)
    emit_records(state, fmt, FINDING_COLUMNS, (f.to_json() for f in report.findings), title="Problems found")
    scope = f"user {user!r}" if user is not None else f"{report.users} user(s)"
    problems = report.problems
    notes = len(report.findings) - len(problems)
    and_notes = f" ({notes} note(s))" if notes else ""
    if problems:
        mendable = sum(1 for f in problems if f.mend is not None)
        raise NegativeAnswer(
            f"{len(problems)} problem(s) in {report.files} conversation file(s) of {scope}{and_notes}; 'dialogctl repair' mends {mendable} of them"
        )
    state.say(f"checked {report.files} conversation file(s) of {scope}: no problems found{and_notes}")


def repair(
    ctx: typer.Context,
    user: UserOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be done and change nothing (not even a lock file).")] = False,
    fmt: FormatOption = None,
) -> None:
    """Mend what 'dialogctl verify' finds, keeping the original bytes in quarantine.

    Works user by user under the user's lock. A real run plans first, and
    logs what it is about to change to system/audit.log before it changes
    anything (a log that cannot be written stops it, exit 6), and what it did
    after. Before a file is rewritten its
    exact bytes are copied to system/quarantine/<run>/; the file is then
    rewritten atomically, as a YAML sequence the servers can append to, with
    every message that can be recovered, including the ones the reference
    implementation wrote as invalid YAML; it keeps the file's owner and mode.
    Torn records are left out (they stay in quarantine). Also removes leftover
    temp files, finishes interrupted archive moves and, run as root, gives
    files owned by someone else back to the root's owner. It never changes a
    file's mode. Exits 1 when problems remain that need a person.

    A whole-journal run moves the dialogs/ and metadata.yaml of a user folder
    where dialogctl before 0.2 put a short id to where the servers keep that
    user (users/bo/b/ to users/bo/b/bob/), unless that folder already holds
    conversations.

    Examples:

      dialogctl repair --dry-run

      dialogctl repair alice
    """
    from ...errors import NegativeAnswer
    from ...maintenance.repair import repair as run_repair

    state: CliState = ctx.obj
    journal = state.journal()
    report = run_repair(journal, None if user is None else [user], dry_run=dry_run)
    journal.damage.clear()  # what it met is in its actions and in what it leaves to a person
    title = "Repair plan (dry run)" if dry_run else "Repairs"
    emit_records(state, fmt, ACTION_COLUMNS, (a.to_json() for a in report.actions), title=title, empty="nothing to repair")
    if report.quarantine:
        state.say(f"the original bytes are kept in {journal.root}/{report.quarantine}")
    for finding in report.unmended:
        state.warn(f"{finding}: repair cannot mend this; a person must look")
    if report.log_error is not None:
        from ...errors import StorageError

        raise StorageError(report.log_error)
    if report.unmended:
        raise NegativeAnswer(f"{len(report.unmended)} problem(s) left that repair does not mend")
    if report.actions:
        state.say(f"{'would make' if dry_run else 'made'} {len(report.actions)} repair(s)")


def doctor(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """Check that the journal's filesystem keeps dialogctl's promises.

    Reads the root's mount from /proc/self/mountinfo and warns when locks are
    local to this machine (NFS local_lock, nolock; CIFS nobrl; Lustre
    localflock), when the root is read-only or not writable, when it is open
    to other users, and when the disk is nearly full. Changes nothing. Exits 1
    when there is a warning.

    Examples:

      dialogctl doctor

      dialogctl --root /srv/journal doctor --format json
    """
    from ...errors import NegativeAnswer
    from ...maintenance.doctor import diagnose

    state: CliState = ctx.obj
    journal = state.journal(readable=False)  # a root dialogctl cannot read is what doctor is asked about
    advice = list(diagnose(journal.root, journal.modes))
    emit_records(state, fmt, ADVICE_COLUMNS, (a.to_json() for a in advice), title="Doctor")
    warnings = [a for a in advice if a.status == "warning"]
    if warnings:
        raise NegativeAnswer(f"{len(warnings)} warning(s) about the journal's filesystem")
