"""The table layout of dialogctl.cli.fit: what is cut, where, and which columns go first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from dialogctl.cli.fit import END, FIXED, GAP, MIDDLE, Spec, cut_end, cut_middle, fit


def test_ids_lose_their_middle_and_text_its_end() -> None:
    assert cut_middle("user-0123456789-abcdef", 11) == "user-…bcdef"
    assert cut_end("lock busy: pid 4711 on host", 12) == "lock busy: …"
    assert cut_middle("short", 10) == "short" and cut_end("short", 5) == "short"


@given(st.text(min_size=1, max_size=60), st.integers(min_value=1, max_value=70))
def test_a_cut_cell_is_never_wider_than_asked(text: str, width: int) -> None:
    for cut in (cut_middle, cut_end):
        short = cut(text, width)
        assert cell_len(short) <= width
        assert (short == text) == (cell_len(text) <= width)


def test_wide_characters_count_as_two_cells() -> None:
    assert cell_len(cut_middle("日本語のユーザー名です", 9)) <= 9
    assert cut_end("日本語", 4) == "日…"


def test_a_wide_table_narrows_cut_columns_first_and_keeps_numbers() -> None:
    specs = [Spec("User", MIDDLE), Spec("Messages", FIXED), Spec("Detail", END)]
    rows = [["u" * 100, "12,345", "d" * 100]]
    layout = fit(specs, rows, 80)
    assert layout.keep == [0, 1, 2]
    assert layout.widths[1] == 8 and sum(layout.widths) + 2 * GAP == 80


def test_columns_go_by_rank_then_from_the_right_and_the_first_stays() -> None:
    specs = [Spec("Key", FIXED), Spec("A", FIXED), Spec("B", FIXED, drop=1), Spec("C", FIXED)]
    rows = [["k" * 10, "a" * 10, "b" * 10, "c" * 10]]
    assert fit(specs, rows, 10 * 3 + 2 * GAP).keep == [0, 1, 3]  # B (rank 1) first
    assert fit(specs, rows, 10 * 2 + GAP).keep == [0, 1]  # then C, the right-most
    assert fit(specs, rows, 5).keep == [0]  # the first column is never dropped


def test_a_ranked_column_goes_before_any_cell_is_cut_and_headings_fold_first() -> None:
    specs = [Spec("Id", MIDDLE), Spec("Messages removed", FIXED), Spec("Rule", FIXED, drop=1)]
    rows = [["i" * 30, "7", "r" * 10]]
    assert fit(specs, rows, 30 + 8 + 10 + 2 * GAP) == ([0, 1, 2], [30, 8, 10])  # the heading folds to "removed"
    assert fit(specs, rows, 30 + 8 + 10 + 2 * GAP - 1) == ([0, 1], [30, 16])  # Rule goes; the heading has room again
    assert fit(specs, rows, 20 + 8 + GAP).widths == [20, 8]  # then the id is cut, the heading folded
