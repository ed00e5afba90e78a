"""Fitting a table into the terminal's width: cut cells, then drop columns, never wrap a row.

Every table for people (:func:`dialogctl.cli.render.table` and
:func:`~dialogctl.cli.render.key_values`) goes through :func:`fit` on a
terminal, unless the command was given ``--wide``:

* a column's natural width is its widest cell (or its heading);
* too wide a table first folds its headings onto a second line, then drops
  its ranked columns (``drop`` above 0: the highest rank first, among equals
  the right-most), then narrows the columns that may be cut, the widest
  first, down to :data:`MIN_CUT` characters each (12 for an id, 20 for text);
  numbers, sizes, yes/no, relative times and names (settings, variables,
  actions) are never cut. An id (user, conversation, archive, path) loses
  its middle, ``user-1…-4711``, so both ends stay readable; free text loses
  its end, ``lock busy: pid 4…``;
* when even that does not fit, the other columns are dropped from the right;
  the first column (what the row is about) is never dropped, and no row
  ever takes more than one line.

Pipes and files get the whole table (no width at all), and the machine
formats (json, jsonl, csv, tsv) never come through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from rich.cells import cell_len, get_character_cell_size

ELLIPSIS = "…"
MIN_CUT = {"middle": 12, "end": 20}  # a cut column keeps at least this many characters (or all it has)
GAP = 3  # what separates two columns in a terminal table: padding, divider, padding

# How a column may be shortened.
FIXED = "fixed"  # never cut
MIDDLE = "middle"  # ids: both ends stay
END = "end"  # free text: the start stays


class Spec(NamedTuple):
    heading: str
    cut: str = END  # FIXED, MIDDLE or END
    drop: int = 0  # higher goes first when columns must be dropped


class Layout(NamedTuple):
    keep: list[int]  # the indexes of the columns shown
    widths: list[int]  # their widths


def _take_left(text: str, width: int) -> str:
    used = 0
    for i, ch in enumerate(text):
        used += get_character_cell_size(ch)
        if used > width:
            return text[:i]
    return text


def _take_right(text: str, width: int) -> str:
    used = 0
    for i in range(len(text) - 1, -1, -1):
        used += get_character_cell_size(text[i])
        if used > width:
            return text[i + 1 :]
    return text


def cut_end(text: str, width: int) -> str:
    """``text`` in ``width`` cells: its end replaced by an ellipsis when too long."""
    if cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    return _take_left(text, width - 1) + ELLIPSIS


def cut_middle(text: str, width: int) -> str:
    """``text`` in ``width`` cells: its middle replaced by an ellipsis when too long (both ends stay)."""
    if cell_len(text) <= width:
        return text
    if width < 3:
        return cut_end(text, width)
    left = width // 2
    return _take_left(text, left) + ELLIPSIS + _take_right(text, width - 1 - left)


def cut(text: str, how: str, width: int) -> str:
    if how == MIDDLE:
        return cut_middle(text, width)
    if how == END:
        return cut_end(text, width)
    return text


def _longest_word(heading: str) -> int:
    return max((cell_len(word) for word in heading.split()), default=0)


def _squeeze(natural: list[int], minimum: list[int], room: int) -> list[int] | None:
    """Widths within ``room``: the widest columns narrowed first, none below its minimum; None if the minimums do not fit."""
    if sum(natural) <= room:
        return natural
    if sum(minimum) > room:
        return None

    def widths(cap: int) -> list[int]:
        return [max(low, min(nat, cap)) for nat, low in zip(natural, minimum, strict=True)]

    low, high = 0, max(natural)  # the largest cap that fits: widths(low) fits, widths(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if sum(widths(middle)) <= room:
            low = middle
        else:
            high = middle
    found = widths(low)
    spare = room - sum(found)
    for i, nat in enumerate(natural):  # what the cap left over, to the left-most columns it held back
        if spare and found[i] < nat:
            found[i] += 1
            spare -= 1
    return found


def _unfold(folded: list[int], whole: list[int], room: int) -> list[int]:
    """Folded headings given back the room left, left to right, up to one line each."""
    widths = list(folded)
    spare = room - sum(widths)
    for i, full in enumerate(whole):
        more = min(spare, full - widths[i])
        widths[i] += more
        spare -= more
    return widths


def fit(specs: Sequence[Spec], rows: Sequence[Sequence[str]], width: int) -> Layout:
    """Which columns to show, and how wide, for rows of (escaped, one-line) cells in ``width`` terminal cells."""
    count = len(specs)
    cells = [max([0, *(cell_len(row[i]) for row in rows)]) for i in range(count)]
    floors = [_longest_word(spec.heading) for spec in specs]
    whole = [max(cell_len(spec.heading), cells[i]) for i, spec in enumerate(specs)]  # the heading on one line
    folded = [max(floors[i], cells[i]) for i in range(count)]  # the heading folded onto more lines
    minimum = [folded[i] if spec.cut == FIXED else min(folded[i], max(floors[i], MIN_CUT[spec.cut])) for i, spec in enumerate(specs)]
    optional = sorted((i for i in range(1, count) if specs[i].drop > 0), key=lambda i: (-specs[i].drop, -i))
    others = sorted((i for i in range(1, count) if specs[i].drop <= 0), reverse=True)
    keep = list(range(count))
    while True:
        room = width - GAP * (len(keep) - 1)
        if sum(folded[i] for i in keep) <= room:  # headings fold before anything else gives way
            return Layout(keep, _unfold([folded[i] for i in keep], [whole[i] for i in keep], room))
        if optional:  # ranked columns go before any cell is cut
            keep.remove(optional.pop(0))
            continue
        found = _squeeze([folded[i] for i in keep], [minimum[i] for i in keep], room)
        if found is not None:
            return Layout(keep, found)
        if not others:
            return Layout(keep, [max(1, width)])
        keep.remove(others.pop(0))
