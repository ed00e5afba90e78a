"""Rendering for people: Rich tables and transcripts (the only module besides the CLI that imports Rich).

Untrusted text (message content, roles, metadata, user and conversation ids,
paths from the disk) goes through :func:`visible` before it reaches a
terminal: every control and bidi-format character except newline and tab is
shown as an escape, and Rich markup is never interpreted (``markup=False``
everywhere; Markdown is rendered by Rich's Markdown parser, which knows no
Rich markup, with hyperlinks off). Machine formats (and exports) written to a
terminal pass through :func:`for_people`, the same rule; in a file or a pipe
they carry the exact text.

On a terminal, tables use Rich's box drawing, colour (see
:meth:`dialogctl.cli.state.CliState.use_color`) and the terminal's width
(long cells cut, see :mod:`dialogctl.cli.fit`); in a pipe, the same columns are printed as plain aligned
text on one line per row. Times in tables are relative (``3h ago``); the
machine formats carry them as written. Colour means the 16 standard ANSI
colours, or no escape sequence at all.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import IO, TYPE_CHECKING, Any

from ..times import parse_timestamp, utc_now

if TYPE_CHECKING:
    from rich.console import Console

    from ..models import Message
    from .fit import Spec
    from .output import Column
    from .state import CliState

# C0/C1 controls (not \t \n), DEL, and the invisible format characters that can
# reorder or hide text (bidi overrides and isolates, zero-width joiners, BOM).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_NAMED = {"\r": "\\r", "\x1b": "\\e", "\x00": "\\0", "\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f"}

ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta", "tool": "bold yellow"}
# Markdown needs a width to lay out rules and code blocks; in a pipe there is no terminal to ask.
PIPE_MARKDOWN_WIDTH = 100


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """Text safe to print on a terminal: dangerous characters become visible escapes."""
    return _UNSAFE.sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"


class TerminalText:
    """A text stream for a terminal: what is written shows control and bidi characters as escapes.

    Text goes through :func:`visible` (a CR LF line end, as CSV writes it,
    stays); ``json`` text gets ``\\uXXXX`` instead, which is the same JSON
    (those characters only occur inside strings), so it still parses to the
    exact values. Everything else (``flush``, ``fileno``) is the stream's.
    """

    def __init__(self, stream: IO[str], json: bool = False) -> None:
        self.stream = stream
        self.json = json

    def write(self, text: str) -> int:
        if self.json:
            safe = _UNSAFE.sub(_json_escape, text)
        else:
            safe = "\r\n".join(visible(part) for part in text.split("\r\n"))
        self.stream.write(safe)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def for_people(stream: IO[str], json: bool = False) -> IO[str]:
    """``stream`` as it is for a file or a pipe (exact bytes), or escaped by :class:`TerminalText` when it is a terminal."""
    return TerminalText(stream, json) if stream.isatty() else stream  # type: ignore[return-value]


def one_line(text: str) -> str:
    """Text for a table cell: escaped, on one line."""
    return visible(text).replace("\n", "⏎ ").replace("\t", " ")


def console(state: CliState, file: IO[str] | None = None, stderr: bool = False, markdown: bool = False) -> Console:
    """A Rich console for stdout (or stderr) that follows the colour rules.

    ``file`` receives the output instead of the stream (a pager's buffer); it
    is laid out as the stream would be: the terminal's width on a terminal,
    unbounded lines in a pipe.
    """
    import shutil

    stream = sys.stderr if stderr else sys.stdout
    color = state.use_color(stream)
    terminal = stream.isatty()
    if terminal:
        width = shutil.get_terminal_size().columns
    else:
        width = PIPE_MARKDOWN_WIDTH if markdown else 1_000_000
    return _console_class()(
        file=file or stream,
        # A terminal stays one without colour (progress bars redraw in place); a pipe is
        # treated as a terminal only when colour is forced into it.
        force_terminal=terminal or color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        markup=False,
        emoji=False,
        width=width,
        soft_wrap=not terminal and not markdown,
    )


@cache
def _console_class() -> Any:
    """Rich's Console, except that a reader gone away is a closed pipe as everywhere else: exit 141, not Rich's exit 1."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:  # Rich: silence stdout and exit 1
            self.quiet = True
            raise BrokenPipeError(32, "stdout was closed by its reader")  # the command ends with 141 (see app.DialogGroup.invoke)

    return PipeConsole


def print_renderable(state: CliState, renderable: Any, whole: bool = False) -> None:
    """Print to stdout; in a pipe, without trailing padding.

    On a terminal, ``whole`` lays the renderable out at its full width (a
    ``--wide`` table: the terminal wraps its long lines, no cell is folded).
    """
    if sys.stdout.isatty():
        from rich.measure import Measurement

        con = console(state)
        # Too narrow a terminal: lay the table out wider and let the terminal wrap its lines,
        # rather than let Rich squeeze columns to nothing and drop them.
        measured = Measurement.get(con, con.options.update_width(1_000_000), renderable)
        con.width = max(con.width, measured.maximum if whole else measured.minimum)
        con.print(renderable)
        return
    buffer = io.StringIO()
    console(state, buffer).print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


# --- value formatting ---------------------------------------------------------


def human_bytes(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


_SPANS = ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h"), (86400 * 60, 86400, "d"), (86400 * 730, 86400 * 30, "mo"))


def relative(moment: datetime, now: datetime | None = None) -> str:
    """``3h ago``, ``5d ago``, ``in 2m``: the largest unit that keeps the number small."""
    now = now or utc_now()
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    amount, unit = int(seconds // (86400 * 365)), "y"
    for limit, size, name in _SPANS:
        if seconds < limit:
            amount, unit = int(seconds // size), name
            break
    return f"in {amount}{unit}" if future else f"{amount}{unit} ago"


def human_time(text: str | None) -> str:
    """A journal time for people: UTC to the minute, and how long ago."""
    if not text:
        return ""
    moment = parse_timestamp(text)
    if moment is None:
        return visible(text)
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.strftime('%m-%d %H:%M')} ({relative(moment)})"


def clock(text: str, local: bool = False) -> str:
    """A message time for a transcript: to the second, in UTC or the local zone, with the zone's name."""
    moment = parse_timestamp(text)
    if moment is None:
        return visible(text)
    try:
        moment = moment.astimezone() if local else moment.astimezone(UTC)
    except OverflowError:  # the calendar's first or last hours, outside it in the local zone: shown in UTC
        moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-" + moment.strftime("%m-%d %H:%M:%S ") + (moment.tzname() or moment.strftime("%z"))


def cell(column: Column, value: Any) -> str:
    if value is None:
        return ""
    if column.kind == "bytes":
        return human_bytes(int(value))
    if column.kind == "count":
        return f"{int(value):,}"
    if column.kind == "time":
        moment = parse_timestamp(str(value))
        return relative(moment) if moment is not None else visible(str(value))
    if column.kind == "bool":
        return "yes" if value else "no"
    if column.kind == "json":
        import json

        return one_line(json.dumps(value, ensure_ascii=False))
    return one_line(str(value))


# --- renderables -------------------------------------------------------------------


def _fit_kind(column: Column) -> str:
    from . import fit

    if column.kind in ("count", "bytes", "bool", "time", "name"):
        return fit.FIXED
    return fit.MIDDLE if column.kind == "id" else fit.END


def table(state: CliState, columns: list[Column], rows: Iterable[Mapping[str, Any]], title: str | None = None) -> None:
    """Rows as a table: fitted to the terminal on one (see :mod:`dialogctl.cli.fit`), plain aligned columns in a pipe."""
    from .fit import Spec

    shown = [c for c in columns if c.in_table]
    specs = [Spec(c.header, _fit_kind(c), c.drop) for c in shown]
    right = {i for i, c in enumerate(shown) if c.kind in ("count", "bytes")}
    grid(state, specs, [[cell(c, row.get(c.key)) for c in shown] for row in rows], title=title, right=right)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else str(value.plain)


def _cut_cell(value: Any, how: str, width: int) -> Any:
    """A cell (text, or Rich Text with styled spans) cut to ``width``; Rich Text keeps its styles."""
    from . import fit

    if isinstance(value, str):
        return fit.cut(value, how, width)
    plain = value.plain
    short = fit.cut(plain, how, width)
    if short == plain:
        return value
    from rich.text import Text

    head, _, tail = short.partition(fit.ELLIPSIS)
    return value[: len(head)] + Text(fit.ELLIPSIS) + (value[len(plain) - len(tail) :] if tail else Text())


def grid(
    state: CliState,
    specs: list[Spec],
    rows: list[list[Any]],
    title: str | None = None,
    header: bool = True,
    right: Collection[int] = (),
    styles: list[str | None] | None = None,
    ends: list[bool] | None = None,
) -> None:
    """Cells (escaped text on one line, or Rich Text) under their headings: the one table renderer.

    On a terminal the table fits its width (cells cut, columns dropped; see
    :mod:`dialogctl.cli.fit`) unless the command was given ``--wide``, which
    prints every cell whole and leaves long rows to the terminal to wrap; in a
    pipe every cell is whole and every row one line. ``right``: the columns
    aligned to the right; ``styles`` and ``ends``: per row, a style and
    whether a section (a rule) ends after it.
    """
    terminal = sys.stdout.isatty()
    if not terminal and not state.use_color(sys.stdout):
        text = plain_grid([spec.heading for spec in specs], rows, header, right)
        if text is not None:
            sys.stdout.write(text)
            return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from . import fit

    fitted = terminal and not state.wide
    if fitted:
        import shutil

        layout = fit.fit(specs, [[_plain(value) for value in row] for row in rows], shutil.get_terminal_size().columns)
        title = fit.cut_end(visible(title), sum(layout.widths) + fit.GAP * (len(layout.widths) - 1)) if title else None
    else:
        layout = fit.Layout(list(range(len(specs))), [])
        title = visible(title) if title and terminal else None
    t = Table(
        box=(box.SIMPLE_HEAD if header else box.SIMPLE) if terminal else None,
        title=title,
        show_header=header,
        show_edge=False,
        header_style="bold" if terminal else "",
        pad_edge=False,
    )
    for n, i in enumerate(layout.keep):
        style = "bold" if terminal and not header and n == 0 else None  # the labels of key/value rows
        width = layout.widths[n] if fitted else None
        # The heading may fold onto a second line; a row never does.
        t.add_column(Text(specs[i].heading, no_wrap=False, overflow="fold"), justify="right" if i in right else "left", width=width, no_wrap=True, style=style)
    for r, row in enumerate(rows):
        cells = [_cut_cell(row[i], specs[i].cut, layout.widths[n]) if fitted else row[i] for n, i in enumerate(layout.keep)]
        t.add_row(*cells, style=styles[r] if styles else None, end_section=bool(ends and ends[r]))
    print_renderable(state, t, whole=not fitted)


def plain_grid(headings: list[str], rows: list[list[Any]], header: bool = True, right: Collection[int] = ()) -> str | None:
    """A table for a pipe, laid out as :func:`grid`'s Rich table is there, without Rich: the same bytes, a hundred times faster.

    Columns as wide as their widest cell (in terminal cells), two spaces
    apart, right-aligned where asked, each line without trailing spaces; no
    title, rules or styles (a pipe without colour has none). None when a cell
    is something this layout does not know (a line break, a tab, a control
    character, a space at the end of a right-aligned cell, which Rich strips
    before it aligns, a cell of zero-width characters only, a line longer than the pipe console's width): Rich lays
    those out. Spaces at the start of a cell, and at the end of a left-aligned
    one, Rich keeps (``stats`` indents its per-role lines that way).
    """
    from rich.cells import cell_len

    lines = [headings, *rows] if header else rows
    texts = [[value if isinstance(value, str) else getattr(value, "plain", None) for value in line] for line in lines]
    if not texts:
        return ""
    widths = [0] * len(headings)
    for line in texts:
        if len(line) != len(headings):
            return None
        for i, cell in enumerate(line):
            if cell is None or not cell.isprintable() or (cell[-1:] == " " and i in right):
                return None  # a line break, a tab, a control character, Text of another kind, a space Rich strips: Rich decides
            width = cell_len(cell)
            if not width and cell:
                return None  # nothing but zero-width characters (a lone combining accent): Rich drops the line
            widths[i] = max(widths[i], width)
    if sum(widths) + 2 * len(widths) > 1_000_000:
        return None
    out = []
    for line in texts:
        cells = []
        for i, cell in enumerate(line):
            pad = " " * (widths[i] - cell_len(cell))
            cells.append(pad + cell if i in right else cell + pad)
        out.append("  ".join(cells).rstrip() + "\n")
    return "".join(out)


def key_values(state: CliState, pairs: Iterable[tuple[str, str]], title: str | None = None) -> None:
    """Labelled values, one per line: labels (and the ids among them) cut in the middle, values at the end."""
    from .fit import END, MIDDLE, Spec

    rows = [[visible(key), one_line(value)] for key, value in pairs]
    grid(state, [Spec("", MIDDLE), Spec("", END)], rows, title=title, header=False)


SPARKS = "▁▂▃▄▅▆▇█"


def on_terminal() -> bool:
    """Whether stdout is a terminal (charts are for people; a pipe gets only the numbers)."""
    return sys.stdout.isatty()


def sparkline(counts: list[int]) -> str:
    """One character per count, ``▁`` to ``█`` scaled to the largest; a zero is a space, so a quiet day shows as a gap."""
    peak = max(counts, default=0)
    if peak <= 0:
        return " " * len(counts)
    steps = len(SPARKS)
    return "".join(SPARKS[(count * steps + peak - 1) // peak - 1] if count > 0 else " " for count in counts)


def activity_chart(state: CliState, days: list[tuple[str, int]]) -> None:
    """Messages per day as a sparkline between its first and last date, with the busiest day named."""
    from rich.text import Text

    counts = [count for _day, count in days]
    peak_day, peak = max(days, key=lambda item: item[1])
    chart = Text("\n")
    chart.append(f"Messages per UTC day, {days[0][0]} to {days[-1][0]} (busiest: {peak:,} on {peak_day})\n", style="bold")
    chart.append(f"{days[0][0]} ")
    chart.append(sparkline(counts), style="cyan")
    chart.append(f" {days[-1][0]}")
    print_renderable(state, chart)


def transcript(
    state: CliState,
    messages: Iterable[tuple[int, Message]],
    heading: str | None = None,
    *,
    file: IO[str] | None = None,
    markdown: bool = False,
    local: bool = False,
) -> None:
    """A readable transcript: a role-coloured header per message (index, role, time), then its text.

    The text is shown as it is (escaped), or rendered as Markdown with
    ``markdown``; trailing line breaks are left out.
    """
    from rich.text import Text

    con = console(state, file, markdown=markdown)
    if heading:
        con.print(Text(visible(heading), style="bold underline"))
        con.print()
    for index, msg in messages:
        header = Text()
        header.append(f"[{index}] ", style="dim")
        header.append(visible(msg.role), style=ROLE_STYLES.get(msg.role, "bold"))
        header.append(f"  {clock(msg.timestamp, local)}", style="dim")
        extra = _metadata_summary(msg)
        if extra:
            header.append(f"  {extra}", style="dim")
        con.print(header)
        text = visible(msg.content.rstrip("\n"))
        if not markdown:
            con.print(Text(text))
        elif sys.stdout.isatty():
            from rich.markdown import Markdown

            con.print(Markdown(text, hyperlinks=False))
        else:
            from rich.markdown import Markdown

            with con.capture() as captured:  # Markdown pads every line to the width: not in a file
                con.print(Markdown(text, hyperlinks=False))
            con.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        con.print()


def _metadata_summary(msg: Message) -> str:
    from ..usage import model_of, tokens_of

    model, tokens = model_of(msg.metadata), tokens_of(msg.metadata)
    parts = [visible(model)] if model else []
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    return " · ".join(parts)
