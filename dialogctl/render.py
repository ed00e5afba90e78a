"""Rendering for people: Rich tables and transcripts (the only module besides the CLI that imports Rich).

Untrusted text (message content, user and conversation ids from the disk) is
passed through :func:`visible` before it reaches a terminal: every control
and bidi-format character except newline and tab is shown as an escape, and
Rich markup is never interpreted (``markup=False`` everywhere). Machine
formats never come through here; they carry the exact text.

On a terminal, tables use Rich's box drawing and colour; in a pipe, the same
columns are printed as plain aligned text with no colour and no truncation.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .times import parse_timestamp, utc_now

if TYPE_CHECKING:
    from rich.console import Console

    from .cli.output import Column
    from .cli.state import CliState
    from .models import Message

# C0/C1 controls (not \t \n), DEL, and the invisible format characters that can
# reorder or hide text (bidi overrides and isolates, zero-width joiners, BOM).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_NAMED = {"\r": "\\r", "\x1b": "\\e", "\x00": "\\0", "\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f"}

ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta", "tool": "bold yellow"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """Text safe to print on a terminal: dangerous characters become visible escapes."""
    return _UNSAFE.sub(_escape, text)


def one_line(text: str, limit: int | None = None) -> str:
    flat = visible(text).replace("\n", "⏎ ").replace("\t", " ")
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat


def console(state: CliState, stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    color = state.use_color(stream)
    terminal = stream.isatty()
    return Console(
        file=stream,
        force_terminal=True if color and not terminal else None,
        no_color=not color,
        color_system="auto" if color else None,
        highlight=False,
        markup=False,
        emoji=False,
        width=None if terminal else 1_000_000,
        soft_wrap=not terminal,
    )


def _print(state: CliState, renderable: Any) -> None:
    """Print to stdout; in a pipe, without trailing padding."""
    con = console(state)
    if sys.stdout.isatty():
        con.print(renderable)
        return
    buffer = io.StringIO()
    con.file = buffer
    con.print(renderable)
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
    if not text:
        return ""
    moment = parse_timestamp(text)
    if moment is None:
        return visible(text)
    return f"{moment.strftime('%Y-%m-%d %H:%M')} ({relative(moment)})"


def cell(column: Column, value: Any) -> str:
    if value is None:
        return ""
    if column.kind == "bytes":
        return human_bytes(int(value))
    if column.kind == "count":
        return f"{int(value):,}"
    if column.kind == "time":
        return human_time(str(value))
    if column.kind == "bool":
        return "yes" if value else "no"
    if column.kind == "json":
        import json

        return one_line(json.dumps(value, ensure_ascii=False), column.max_width)
    return one_line(str(value), column.max_width)


# --- renderables -------------------------------------------------------------------


def table(state: CliState, columns: list[Column], rows: Iterable[Mapping[str, Any]], title: str | None = None) -> None:
    from rich import box
    from rich.table import Table

    terminal = sys.stdout.isatty()
    t = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        title=visible(title) if title and terminal else None,
        show_edge=False,
        header_style="bold" if terminal else "",
        pad_edge=False,
    )
    for column in columns:
        t.add_column(column.header, justify="right" if column.kind in ("count", "bytes") else "left", overflow="fold")
    for row in rows:
        t.add_row(*(cell(c, row.get(c.key)) for c in columns))
    _print(state, t)


def key_values(state: CliState, pairs: Iterable[tuple[str, str]], title: str | None = None) -> None:
    from rich import box
    from rich.table import Table

    terminal = sys.stdout.isatty()
    t = Table(box=box.SIMPLE if terminal else None, show_header=False, title=title if terminal else None, show_edge=False, pad_edge=False)
    t.add_column(style="bold" if terminal else "")
    t.add_column()
    for key, value in pairs:
        t.add_row(key, visible(value))
    _print(state, t)


def transcript(state: CliState, messages: Iterable[tuple[int, Message]], heading: str | None = None) -> int:
    """A readable transcript: a coloured header per message, then its text as it is."""
    from rich.text import Text

    con = console(state)
    count = 0
    if heading:
        con.print(Text(visible(heading), style="bold underline"))
    for index, msg in messages:
        header = Text()
        header.append(f"[{index}] ", style="dim")
        header.append(visible(msg.role), style=ROLE_STYLES.get(msg.role, "bold"))
        header.append(f"  {visible(msg.timestamp)}", style="dim")
        extra = _metadata_summary(msg)
        if extra:
            header.append(f"  {extra}", style="dim")
        con.print(header)
        con.print(Text(visible(msg.content)))
        con.print()
        count += 1
    return count


def _metadata_summary(msg: Message) -> str:
    meta = msg.metadata or {}
    parts = []
    if isinstance(meta.get("model"), str):
        parts.append(visible(meta["model"]))
    tokens = meta.get("tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        parts.append(f"{tokens} tokens")
    elif isinstance(tokens, dict) and isinstance(tokens.get("total"), int):
        parts.append(f"{tokens['total']} tokens")
    return " · ".join(parts)
