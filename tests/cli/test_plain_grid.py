"""A table in a pipe is written without Rich (``render.plain_grid``): byte for byte what Rich's layout gives there.

Rich lays out a 30,000-row search result in a pipe in about 25 s; the plain
layout takes a fraction of a second. The property below checks the two agree
on any cells (wide and combining characters, empty cells, Rich Text, right
alignment, section ends, no header), and that every cell the plain layout
cannot vouch for (line breaks, tabs, control and format characters) is left
to Rich.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.text import Text

from dialogctl.cli import render
from dialogctl.cli.fit import END, Spec


class _State:
    wide = False

    def use_color(self, stream: Any) -> bool:
        return False


def _through_rich(monkeypatch: pytest.MonkeyPatch, headings: list[str], rows: list[list[Any]], header: bool, right: set[int], ends: list[bool]) -> str:
    out = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(render, "plain_grid", lambda *args, **kwargs: None)
        patch.setattr(sys, "stdout", out)
        render.grid(_State(), [Spec(h, END) for h in headings], rows, header=header, right=right, ends=ends)  # type: ignore[arg-type]
    return out.getvalue()


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
tables = st.integers(1, 5).flatmap(
    lambda n: st.tuples(
        st.lists(cells, min_size=n, max_size=n),
        st.lists(st.lists(st.one_of(cells, cells.map(Text)), min_size=n, max_size=n), max_size=6),
        st.booleans(),
        st.sets(st.integers(0, n - 1)),
        st.lists(st.booleans(), min_size=6, max_size=6),
    )
)


def _rich_decides(cell: Any, right: bool) -> bool:
    from rich.cells import cell_len

    text = cell if isinstance(cell, str) else cell.plain
    return not text.isprintable() or (right and text[-1:] == " ") or (text != "" and cell_len(text) == 0)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # the patch is undone each example
@given(tables)
@example(table=(["0 "], [], True, {0}, [False] * 6))  # Rich strips the space when it right-aligns: " 0", where the plain layout gave "0"
@example(table=([" a", "b"], [["x ", " y"]], True, set(), [False] * 6))
@example(table=(["", ""], [["Messages", "21"], ["  user messages", "11"]], False, set(), [False] * 6))  # stats: indented labels stay plain
@example(table=(["#", "b"], [[" 1", "x "], ["10 ", "y"]], True, {0}, [False] * 6))  # right-aligned: a space at the end goes to Rich
@example(table=(["a", "b"], [["\u0301", "x"]], False, set(), [False] * 6))  # a lone combining accent: Rich drops it ("  x"), the plain layout kept it
def test_the_plain_layout_is_riches_layout_in_a_pipe(monkeypatch: pytest.MonkeyPatch, table: Any) -> None:
    headings, rows, header, right, ends = table
    plain = render.plain_grid(headings, rows, header, right)
    if plain is None:  # left to Rich: only for what the plain layout does not know
        assert any(_rich_decides(c, i in right) for line in ([headings] if header else []) + rows for i, c in enumerate(line))
        return
    assert plain == _through_rich(monkeypatch, headings, rows, header, right, ends[: len(rows)])


def test_indented_labels_are_laid_out_without_rich() -> None:
    """``stats`` in a pipe indents its per-role lines: Rich keeps leading spaces, so the plain layout takes them (no Rich import)."""
    text = render.plain_grid(["", ""], [["Messages", "21"], ["  user messages", "11"]], False)
    assert text == "Messages         21\n  user messages  11\n"
    assert render.plain_grid(["n"], [["1 "]], True, {0}) is None  # right-aligned with a space at its end: Rich strips it first


def test_wide_characters_and_right_alignment() -> None:
    text = render.plain_grid(["User", "#", "Message"], [["東京", "7", "ok"], ["alice", "12", ""]], True, {1})
    assert text == "User    #  Message\n東京    7  ok\nalice  12\n"
    assert render.plain_grid(["a"], [["line\nbreak"]]) is None and render.plain_grid(["a"], [["\ttab"]]) is None
