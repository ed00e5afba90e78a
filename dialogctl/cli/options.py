"""Options shared by several commands, declared once.

``--format`` lives in :mod:`dialogctl.cli.output`; the time and role filters
are here, with :func:`message_filter` turning them into a
:class:`dialogctl.filters.MessageFilter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ..filters import MessageFilter

SinceOption = Annotated[
    Optional[str],
    typer.Option(
        "--since",
        help="Only messages at or after TIME: ISO 8601 (2024-01-15, 2024-01-15T10:30:00Z), a duration back from now (30s, 15m, 12h, 7d, 2w), 'N days ago', 'yesterday', 'today'.",
        metavar="TIME",
    ),
]
UntilOption = Annotated[Optional[str], typer.Option("--until", help="Only messages before TIME (same forms as --since).", metavar="TIME")]
RoleOption = Annotated[
    Optional[list[str]], typer.Option("--role", help="Only messages with this role (repeatable): user, assistant, system, tool.", metavar="ROLE")
]


def message_filter(since: str | None, until: str | None, roles: list[str] | None) -> MessageFilter:  # noqa: F821
    from ..errors import InvalidInput
    from ..filters import MessageFilter
    from ..times import parse_time_spec
    from .inputs import check_role

    start = parse_time_spec(since, "--since") if since is not None else None
    end = parse_time_spec(until, "--until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise InvalidInput(f"--until ({end.isoformat()}) must be later than --since ({start.isoformat()})")
    chosen = frozenset(check_role(r) for r in roles) if roles else None
    return MessageFilter(start, end, chosen)
