"""Arguments and options shared by several commands, declared once.

``--format`` lives in :mod:`dialogctl.cli.output`; the user and conversation
selectors, the time, role, model and metadata filters live here, with :func:`message_filter`
turning the filters into a :class:`dialogctl.views.filters.MessageFilter`;
``--redact``/``--redact-rules`` (export, show, search, follow) live here with
:func:`redactor`, which builds the :class:`dialogctl.views.redaction.Redactor`.

User, archive and conversation ids complete from the journal (see
:mod:`dialogctl.cli.completion`): the completers read folder names only,
never a conversation file, and never create anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ..journal.core import Journal
    from ..views.filters import MessageFilter
    from ..views.redaction import Redactor
    from .state import CliState


def _journal_of(ctx: typer.Context) -> Journal:
    from .state import CliState

    return CliState.from_params(ctx.find_root().params).journal()


COMPLETION_LIMIT = 1000  # a TAB on a huge journal answers quickly; type a longer prefix for the rest


def complete_users(ctx: typer.Context, incomplete: str) -> list[str]:
    """User ids starting with ``incomplete``, from the folders of the journal the command line selects."""
    from itertools import islice

    try:
        return sorted(islice(_journal_of(ctx).users(prefix=incomplete), COMPLETION_LIMIT))
    except Exception:  # a completion never fails loudly: it just offers nothing
        return []


def _conversation_ids(ctx: typer.Context, kind: str) -> list[str]:
    try:
        user = ctx.params.get("user")
        files = _journal_of(ctx).conversation_files(user, include_archives=kind == "archive") if user else []
    except Exception:
        return []
    return [f.ref.name for f in files if f.ref.kind == kind]


def complete_archives(ctx: typer.Context, incomplete: str) -> list[str]:
    """The archive ids of the USER already on the command line."""
    return [name for name in _conversation_ids(ctx, "archive") if name.startswith(incomplete)]


def complete_conversations(ctx: typer.Context, incomplete: str) -> list[str]:
    """``current`` and the session ids of the USER already on the command line."""
    return [name for name in ["current", *_conversation_ids(ctx, "session")] if name.startswith(incomplete)]


def complete_roles(incomplete: str) -> list[str]:
    from ..models import ROLES

    return [role for role in ROLES if role.startswith(incomplete)]


UserArg = Annotated[str, typer.Argument(help="User id.", metavar="USER", show_default=False, autocompletion=complete_users)]
ConversationOpt = Annotated[
    Optional[str],
    typer.Option(
        "--conversation",
        help="Conversation id (session file session-<CID>.yaml) instead of the current conversation.",
        metavar="CID",
        autocompletion=complete_conversations,
    ),
]
ArchiveOpt = Annotated[
    Optional[str], typer.Option("--archive", help="An archived conversation instead of the current one.", metavar="ID", autocompletion=complete_archives)
]
OptionalUserArg = Annotated[Optional[str], typer.Argument(help="User id.", metavar="[USER]", show_default=False, autocompletion=complete_users)]
UsersArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Only these users (default: every user).", metavar="[USER]...", show_default=False, autocompletion=complete_users),
]
ArchiveArg = Annotated[
    str, typer.Argument(help="The archive to restore (see 'dialogctl list USER').", metavar="ARCHIVE_ID", show_default=False, autocompletion=complete_archives)
]

SinceOption = Annotated[
    Optional[str],
    typer.Option(
        "--since",
        help="Only messages at or after TIME: ISO 8601 (2024-01-15, 2024-01-15T10:30:00Z, with an offset), a duration back from now (30s, 15m, 12h, 7d, 2w), 'N days ago', 'yesterday', 'today' or 'now'.",
        metavar="TIME",
    ),
]
UntilOption = Annotated[Optional[str], typer.Option("--until", help="Only messages before TIME (same forms as --since).", metavar="TIME")]
RoleOption = Annotated[
    Optional[list[str]],
    typer.Option("--role", help="Only messages with this role (repeatable): user, assistant, system, tool.", metavar="ROLE", autocompletion=complete_roles),
]


ModelOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--model",
        help="Only messages whose metadata names this model (its 'model' key; repeatable: any of them).",
        metavar="MODEL",
    ),
]
MetaFilterOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--meta",
        help="Only messages whose metadata KEY (dotted for nested keys: usage.tier) holds VALUE; VALUE is JSON when it parses "
        "as JSON (42, true, \"42\" for the text), else text, as for 'append --meta'. Repeatable: all must hold.",
        metavar="KEY=VALUE",
    ),
]


def message_filter(
    since: str | None,
    until: str | None,
    roles: list[str] | None,
    state: CliState | None = None,
    models: list[str] | None = None,
    meta: list[str] | None = None,
) -> MessageFilter:
    """The filter ``--since/--until/--role/--model/--meta`` describe; given the state, -v says the resolved times on stderr."""
    from ..errors import InvalidInput
    from ..times import format_timestamp, parse_time_spec
    from ..views.filters import MessageFilter, MetaCondition
    from .inputs import check_role, meta_pair

    start = parse_time_spec(since, "--since") if since is not None else None
    end = parse_time_spec(until, "--until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise InvalidInput(f"--until ({format_timestamp(end)}) must be later than --since ({format_timestamp(start)})")
    for option, text, moment in (("--since", since, start), ("--until", until, end)):
        if moment is not None and state is not None:
            state.detail(f"{option} {text} resolves to {format_timestamp(moment)}")
    chosen = frozenset(check_role(r) for r in roles) if roles else None
    conditions = tuple(MetaCondition(tuple(path), value) for path, value in map(meta_pair, meta or ()))
    return MessageFilter(start, end, chosen, frozenset(models) if models else None, conditions)


RedactOption = Annotated[
    bool,
    typer.Option(
        "--redact",
        help="Replace e-mail addresses, phone numbers, card numbers (Luhn-checked), IBANs, IP addresses and API keys/tokens "
        "with [REDACTED:<kind>] in content and metadata strings; counts per kind on stderr. The journal is not changed.",
    ),
]
RedactRulesOption = Annotated[
    Optional[str],
    typer.Option(
        "--redact-rules",
        help="Also redact your own patterns: a YAML list of {name: WORD, regex: PATTERN}; the name is the kind. Implies --redact.",
        metavar="FILE",
    ),
]


def redactor(redact: bool, rules: str | None) -> Redactor | None:
    """The redactor ``--redact``/``--redact-rules`` ask for, or None; a bad rules file is exit 2 naming it and the rule."""
    if not redact and rules is None:
        return None
    from ..views.redaction import Redactor, load_rules

    return Redactor(load_rules(rules) if rules is not None else ())


def report_redactions(state: CliState, redacting: Redactor | None) -> None:
    """``redacted 12 email, 3 card`` on stderr (not with -q) once a redacted command has written its output."""
    if redacting is not None:
        state.say(f"redacted {redacting.summary()}")
