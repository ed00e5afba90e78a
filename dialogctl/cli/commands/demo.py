"""``demo``: write a small journal to try dialogctl on, and say what to try next."""

import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..state import CliState

# What to try next: (arguments after "dialogctl --root DIR", what it shows).
NEXT_STEPS = [
    ("list", "users, counts, last activity"),
    ("stats", "totals, tokens by model, the most active users"),
    ("show alice", "a transcript"),
    ("list alice", "one user's conversations and archives"),
    ("search refund -a", "what was said, archives included"),
    ("verify", "names the one damaged file (exit 1)"),
    ("repair --dry-run", "how repair would mend it; nothing changes"),
    ("archive --idle 5m --all --dry-run", "conversations idle for 5 minutes"),
    ("cleanup --max-inactive 180d --dry-run", "what retention and inactivity would remove"),
]


def demo(
    ctx: typer.Context,
    folder: Annotated[
        Optional[Path],
        typer.Argument(
            help="New or empty folder to write the demo journal into (default: --root if given, else ./dialogctl-demo).",
            metavar="[DIR]",
            show_default=False,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Write a small demo journal into DIR and say what to try on it.

    Five users with files the chat servers wrote (their exact bytes) and
    files dialogctl wrote, archives, a session conversation, models and token
    counts, and one archive the reference implementation's cleanup damaged.
    Timestamps are relative to now, so idle conversations, an inactive user
    and an archive past retention show up in the examples. The default
    journal is not touched. DIR must be new or empty: the demo never
    overwrites anything (exit 2 otherwise).

    stdout is the journal's absolute path (data: D=$(dialogctl -q demo
    "$(mktemp -d)")); stderr lists commands to try, with the root option
    (-q leaves them out).

    Examples:

    \b
      dialogctl demo /tmp/dialogctl-demo
      d=$(mktemp -d) && dialogctl demo "$d" && dialogctl --root "$d" list
      export DIALOGUE_JOURNAL_ROOT=$(dialogctl -q demo "$(mktemp -d)") && dialogctl stats
    """
    from ...maintenance.demo import DEFAULT_DIR, write_demo
    from ..render import visible

    state: CliState = ctx.obj
    target = folder if folder is not None else Path(state.flags.get("root") or DEFAULT_DIR)
    made = write_demo(target)
    print(made.root)
    if state.quiet:
        return
    root = visible(shlex.quote(str(made.root)))
    lines = [
        f"dialogctl: wrote a demo journal: {len(made.users)} users, archives, a session, token counts,",
        "dialogctl: and one damaged file (verify names it). Try:",
    ]
    steps = [(f"  dialogctl --root {root} {args}", what) for args, what in NEXT_STEPS]
    steps.append((f"  export DIALOGUE_JOURNAL_ROOT={root}", "or: this root for every command in this shell"))
    width = max(len(command) for command, _ in steps) + 2
    if width + max(len(what) for _, what in steps) + 2 <= shutil.get_terminal_size((80, 24)).columns:
        lines.extend(f"{command.ljust(width)}# {what}" for command, what in steps)
    else:  # too narrow for a comment beside each command: above it
        lines.extend(f"  # {what}\n{command}" for command, what in steps)
    print("\n".join(lines), file=sys.stderr)
