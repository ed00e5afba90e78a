"""``search``: find messages by text, like grep over the journal."""

from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any, Optional

import typer

from ..options import MetaFilterOption, ModelOption, RedactOption, RedactRulesOption, RoleOption, SinceOption, UntilOption, UsersArg
from ..output import PLACE_COLUMNS, Column, Format, FormatOption, emit_json_texts, emit_row_texts, row_texts
from ..state import CliState

HIT_COLUMNS = [*PLACE_COLUMNS, Column("match", "Match", "bool"), Column("content", "Content")]


def search(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(help="Text to look for (a regular expression with --regex).", metavar="PATTERN", show_default=False)],
    users: UsersArg = None,
    regex: Annotated[bool, typer.Option("--regex", "-E", help="PATTERN is a Python regular expression.")] = False,
    case_sensitive: Annotated[bool, typer.Option("--case-sensitive", "-s", help="Match case exactly (default: ignore case).")] = False,
    role: RoleOption = None,
    model: ModelOption = None,
    meta: MetaFilterOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    include_archives: Annotated[bool, typer.Option("--include-archives", "-a", help="Search archived conversations too.")] = False,
    context: Annotated[int, typer.Option("--context", "-C", help="Show N messages before and after each match.", min=0, metavar="N")] = 0,
    latest: Annotated[
        Optional[int],
        typer.Option(
            "--latest",
            help="Only the N newest matching messages (by message timestamp), newest first, without context. The whole selection is "
            "searched, holding N hits in memory; files the saved catalog shows to be older than the N kept are not read.",
            min=1,
            metavar="N",
        ),
    ] = None,
    redact: RedactOption = False,
    redact_rules: RedactRulesOption = None,
    fmt: FormatOption = None,
) -> None:
    """Search message content; exit 1 when nothing matches (like grep).

    Each hit names its user, conversation and message index (from 0, as show
    numbers them).

    With --redact the pattern is matched against the original text (a search
    for an address finds the messages that hold it) but what is printed is
    redacted, so the address itself is not shown; spans then point into the
    redacted content.

    --latest N lists the N newest matching messages, newest first (by
    message timestamp; one whose time cannot be read counts as oldest).

    --model and --meta keep only messages whose metadata names the model, or
    holds the value at the key, as show and export do.

    Use -- before a PATTERN that starts with -: search -- '-v' alice.

    Examples:

    \b
      dialogctl search "refund"
      dialogctl search -E "order #\\d+" alice bob --include-archives -C 1
      dialogctl search password --role user --since 7d -f jsonl | jq -r .user | sort -u
      dialogctl search timeout --latest 5 --model gpt-4o
      dialogctl search refund --meta channel=email --meta usage.tier=2
    """
    from ...errors import InvalidInput
    from ...views import search as core
    from ..options import message_filter, redactor, report_redactions

    state: CliState = ctx.obj
    if latest is not None and context:
        raise InvalidInput("--latest and --context cannot be combined: --latest lists single matches newest first, across conversations")
    redacting = redactor(redact, redact_rules)
    journal = state.journal()
    m = core.matcher(pattern, regex, case_sensitive)
    selection = message_filter(since, until, role, state, model, meta)
    # JSON, CSV and TSV are written where the hits are found (in worker processes on a large journal), records joined as the format
    # joins them; a table is laid out here, from the cells made there.
    shape: Any = _cells if fmt is None or fmt is Format.table else partial(_text, fmt)
    groups: Iterator[Any]
    if latest is not None:
        groups = iter([[hit] for hit in core.latest(journal, m, latest, users or None, include_archives, selection)])
        if redacting is not None:
            groups = core.redacted(groups, m, redacting)
        groups = (shape([group]) for group in groups)
    else:
        from ...views.search_pipeline import stream

        groups = stream(journal, m, shape, users or None, include_archives, selection, context, redacting)
    found = {"matches": 0, "shown": 0}
    if fmt is None or fmt is Format.table:
        shown = _table(state, groups, found)
    else:
        if fmt in (Format.json, Format.jsonl):
            emit_json_texts(fmt, _texts(groups, found))
        else:
            emit_row_texts(fmt, HIT_COLUMNS, _texts(groups, found))
        shown = found["shown"]
    report_redactions(state, redacting)
    if latest is not None and found["matches"] == latest:  # the heap kept these: how many matched in all is not counted
        state.detail(f"the {latest} newest matching messages (--latest {latest})")
    elif latest is not None:
        state.detail(f"{found['matches']} matching messages, all of them (fewer than --latest {latest})")
    else:
        state.detail(f"{found['matches']} matching messages ({shown} shown with context)")
    if not found["matches"]:
        raise typer.Exit(1)


def _text(fmt: Format, groups: list[list[Any]]) -> tuple[str, int, int]:
    """The hits of ``groups`` as the format writes them (JSON records joined by the format's separator; CSV or TSV rows),
    how many there are and how many matched."""
    hits = [hit for group in groups for hit in group]
    matched = sum(hit.matched for hit in hits)
    if fmt not in (Format.json, Format.jsonl):
        return row_texts(fmt, HIT_COLUMNS, [_record(hit) for hit in hits]), len(hits), matched
    from ...exchange.records import message_json

    texts = []
    for hit in hits:  # _record encoded, byte for byte, without building it (a search can print every message)
        spans = ", ".join(f"[{a}, {b}]" for a, b in hit.spans)
        texts.append(message_json(hit, hit.position, hit.message, f', "match": {"true" if hit.matched else "false"}, "spans": [{spans}]'))
    return (",\n" if fmt is Format.json else "\n").join(texts), len(hits), matched


def _texts(parts: Iterator[tuple[str, int, int]], found: dict[str, int]) -> Iterator[str]:
    """The texts of :func:`_text`: each written as one record is (a JSON text's separators are within it)."""
    for text, records, matched in parts:
        found["matches"] += matched
        found["shown"] += records
        yield text


def _record(hit: Any) -> dict[str, Any]:
    from ...exchange.records import message_record

    return {**message_record(hit, hit.position, hit.message), "match": hit.matched, "spans": [list(span) for span in hit.spans]}


SNIPPET = 100  # characters of context around the first match in a table row


def _snippet(content: str, spans: tuple[tuple[int, int], ...]) -> tuple[str, list[tuple[int, int]]]:
    """A one-line window of the content around its first match, and the matches in that window."""
    start = 0
    if spans and len(content) > SNIPPET:
        start = max(0, min(spans[0][0] - SNIPPET // 3, len(content) - SNIPPET))
    end = min(len(content), start + SNIPPET)
    window = [(max(a, start) - start, min(b, end) - start) for a, b in spans if b > start and a < end]
    text = content[start:end]
    return ("…" if start else "") + text + ("…" if end < len(content) else ""), [(a + (1 if start else 0), b + (1 if start else 0)) for a, b in window]


def _highlighted(text: str, spans: list[tuple[int, int]], style: str) -> Any:
    """Rich Text of untrusted text with matches styled; escaping is applied piece by piece."""
    from rich.text import Text

    from ..render import one_line

    out = Text()
    cursor = 0
    for a, b in spans:
        if a > cursor:
            out.append(one_line(text[cursor:a]))
        out.append(one_line(text[a:b]), style=style)
        cursor = max(cursor, b)
    out.append(one_line(text[cursor:]))
    return out


def _cells(groups: list[list[Any]]) -> list[list[tuple[str, str, str, str, str, str, list[tuple[int, int]], bool]]]:
    """The hits of ``groups`` as the table shows them, group by group: user, conversation, index, time and role escaped,
    the window of the content around its first match with the matches in it, and whether it matched.

    A few hundred characters a hit, where the hit holds the whole message: what worker processes send back for a table.
    """
    from ..render import visible

    cells = []
    for group in groups:
        rows = []
        for hit in group:
            text, spans = _snippet(hit.message.content, hit.spans)
            conversation = visible(hit.ref.name) + (" (archived)" if hit.ref.archived else "")
            rows.append(
                (visible(hit.ref.user), conversation, str(hit.position), visible(hit.message.timestamp), visible(hit.message.role), text, spans, hit.matched)
            )
        cells.append(rows)
    return cells


def _table(state: CliState, parts: Any, found: dict[str, int]) -> int:
    """The hits' table; ``parts``: what :func:`_cells` gives, for runs of groups."""
    import sys

    from ..fit import END, FIXED, MIDDLE, Spec
    from ..render import grid

    terminal = sys.stdout.isatty()
    color = state.use_color()
    # On a narrow terminal the time goes first, then the role; the message is cut at its end.
    specs = [Spec("User", MIDDLE), Spec("Conversation", MIDDLE), Spec("#", FIXED), Spec("Time", FIXED, 2), Spec("Role", FIXED, 1), Spec("Message", END)]
    rows: list[list[Any]] = []
    styles: list[str | None] = []
    ends: list[bool] = []
    group_number = 0
    for part in parts:
        for group in part:
            if group_number and not terminal:
                rows.append(["--", "", "", "", "", ""])  # grep's group separator, for pipes
                styles.append(None)
                ends.append(False)
            group_number += 1
            for number, (user, conversation, position, timestamp, role, text, spans, matched) in enumerate(group):
                found["matches"] += matched
                rows.append([user, conversation, position, timestamp, role, _highlighted(text, spans, "bold red" if color else "")])
                styles.append(None if matched else "dim")
                ends.append(number == len(group) - 1)
    shown = len(rows) - sum(1 for row in rows if row[0] == "--" and not row[1])
    if rows:
        grid(state, specs, rows, right={2}, styles=styles, ends=ends)
    return shown
