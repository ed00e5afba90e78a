"""Mending what :mod:`dialogctl.maintenance.verify` finds: the core of ``dialogctl repair``.

Repair works user by user under the user's lock and never destroys bytes:
before a conversation file is rewritten, or a leftover temp file removed, its
exact bytes are copied to ``system/quarantine/<run>/<path in the journal>``
(atomically, with the journal's file mode). The file is then rewritten
atomically in its own shape (:meth:`dialogctl.journal.core.Journal.write_conversation`)
with every message that can be recovered, framed afresh.

Recovery reads what the normal reader reads and, for items the reader has to
skip, tries decoders for the reference implementation's own defects (see
:func:`mend_reference_item`): a literal block whose first line starts with
spaces, and metadata strings holding unescaped double quotes. Torn records,
every record of a torn batch (a multi-record write cut off before its last
record: never part of one) and anything still unreadable are left out of the
rewritten file; their bytes stay in quarantine.

A dry run takes the same path and records the same actions without doing any
of them: no lock file, no quarantine folder, nothing written.
"""

from __future__ import annotations

from typing import NamedTuple

from ..disk import layout as L
from ..disk.storage import open_root
from ..errors import DialogError
from ..journal.core import Journal
from ..journal.usermeta import refresh_metadata
from .checks import (
    Finding,
)
from .mender import Mender
from .recovery import RepairAction
from .verify import expectations


class RepairReport(NamedTuple):
    actions: list[RepairAction]
    unmended: list[Finding]  # problems repair leaves to a person (after a real run: what verify still finds)
    quarantine: str | None  # the run's quarantine folder, relative to the root, if anything was put there
    dry_run: bool
    log_error: str | None = None  # the outcome line could not be written to system/audit.log (the repair itself is done)


def repair(journal: Journal, users: list[str] | None = None, dry_run: bool = False) -> RepairReport:
    """Mend the whole journal (or the given users); with ``dry_run``, only say what would be done.

    Log first, act second: a real run plans first (a dry run), and when there
    is anything to do, logs that intent to ``system/audit.log`` (each step's
    action and path, and the quarantine folder) before it changes anything;
    a log that cannot be written stops it there. The outcome follows the run.
    """
    for user in users or []:
        L.validate_user_id(user)  # before anything touches the disk
    if dry_run:
        return _repair(journal, users, Mender(journal, True))
    plan = _repair(journal, users, Mender(journal, True))
    if not plan.actions:
        return plan._replace(dry_run=False)
    from .deletion import AUDIT_LOG, log_line, log_quietly

    mender = Mender(journal, False)
    log_line(journal, AUDIT_LOG, _audit_record(journal, mender, users, "intent", plan.actions), "nothing was repaired")
    try:
        report = _repair(journal, users, mender)
    except BaseException as exc:
        error = exc.message if isinstance(exc, DialogError) else type(exc).__name__
        log_quietly(journal, AUDIT_LOG, _audit_record(journal, mender, users, "failed", mender.actions, error=error))
        raise
    try:
        log_line(journal, AUDIT_LOG, _audit_record(journal, mender, users, "done", report.actions, len(report.unmended)), "the repair itself is done")
    except DialogError as exc:
        return report._replace(log_error=exc.message)
    return report


def _audit_record(
    journal: Journal, mender: Mender, users: list[str] | None, phase: str, actions: list[RepairAction], unmended: int | None = None, error: str | None = None
) -> dict[str, object]:
    """A repair's line in ``system/audit.log``: who, when, which files and what was done to them; never message text."""
    from collections import Counter

    from ..times import utc_now_iso
    from .deletion import operator

    record: dict[str, object] = {
        "time": utc_now_iso(),
        "action": "repair",
        "phase": phase,
        "run": mender.run,
        "users": users,
        "quarantine": mender.quarantine_rel,
        "files": len({a.path for a in actions}),
        "steps": dict(Counter(a.action for a in actions)),
        "paths": [{"action": a.action, "path": a.path} for a in actions],
        "by": {**operator(), "serverId": journal.settings["serverId"]},
    }
    if unmended is not None:
        record["unmended"] = unmended
    if error is not None:
        record["error"] = error
    return record


def _repair(journal: Journal, users: list[str] | None, mender: Mender) -> RepairReport:
    dry_run = mender.dry_run
    with open_root(journal.root) as root:
        mender.expect = expectations(journal, root)
        if users is None:
            users = mender.mend_root(root)
    try:
        for user in users:
            done = len(mender.actions)
            mender.mend_user(user)
            if not dry_run and any(a.user == user and a.action == "rewrite" for a in mender.actions[done:]):
                refresh_metadata(journal, user)
    finally:
        journal.rewrites.settle()  # what a server appended to a rewritten file just as it was replaced
    return RepairReport(mender.actions, mender.unmended, mender.quarantine_rel if mender.quarantined else None, dry_run)
