"""Tables on an 80-column terminal: one line per row, cut cells, dropped columns, --wide; whole in a pipe.

The journal is a fixture copy plus a user whose id is 150 characters long
(ids may be that long) with archives, a lock file and a message to find.
"""

from __future__ import annotations

import re

import pytest

from ..conftest import copy_tree, run_exe
from ..terminal import run_tty

LONG = "u" + "x" * 140 + "-end-4711"  # 150 characters
SGR = re.compile(r"\x1b\[[0-9;]*m")
COLS = 80


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"DIALOGUE_JOURNAL_ROOT": str(copy_tree("v3-sessions", tmp_path_factory.mktemp("tables")))}
    for n in range(4):
        assert run_exe("append", LONG, f"needle number {n}", env=env).returncode == 0
        assert run_exe("archive", LONG, "--id", f"2024-01-0{n + 1}-00-00-00", env=env).returncode == 0
    assert run_exe("append", LONG, "needle in the current conversation", env=env).returncode == 0
    return env


def _screen(*args: str, env: dict[str, str], cols: int = COLS) -> list[str]:
    done = run_tty(*args, env={**env, "NO_COLOR": "1"}, cols=cols, stderr_tty=False)
    assert done.returncode in (0, 1), (args, done.stderr)
    return [line.rstrip() for line in SGR.sub("", done.output.replace("\r\n", "\n")).splitlines()]


def _rule(screen: list[str]) -> int:
    return next(i for i, line in enumerate(screen) if line and set(line) == {"─"})


def _body(screen: list[str]) -> list[str]:
    """The rows of a table on a terminal: the lines after the rule under its header."""
    return [line for line in screen[_rule(screen) + 1 :] if line.strip()]


def _heading(screen: list[str]) -> list[str]:
    """The words of a table's heading (which may fold onto two lines), top line first."""
    return " ".join(screen[: _rule(screen)]).split()


def _pipe_rows(*args: str, env: dict[str, str]) -> list[str]:
    done = run_exe(*args, env=env)
    assert done.returncode in (0, 1), done.stderr
    return [line for line in done.stdout.splitlines()[1:] if line.strip() and line != "--"]


def _fits(screen: list[str], cols: int = COLS) -> None:
    assert screen and all(len(line) <= cols for line in screen), max(screen, key=len)


def test_list_cuts_a_long_id_in_the_middle_and_keeps_every_column(journal: dict[str, str]) -> None:
    screen = _screen("list", env=journal)
    _fits(screen)
    assert sorted(_heading(screen)) == sorted(["User", "Active", "Archives", "Messages", "Size", "Last", "activity"])
    rows = _body(screen)
    assert len(rows) == len(_pipe_rows("list", env=journal))  # one line per row
    long_row = next(row for row in rows if row.startswith("uxxx"))
    cell = long_row.split()[0]
    assert "…" in cell and cell.endswith("-end-4711") and len(cell) < 40
    assert re.search(r" 1 +4 +5 +[\d.]+ (B|KiB) +\S+ ago$", long_row)  # the other columns are all there


def test_wide_and_pipes_show_the_whole_id(journal: dict[str, str]) -> None:
    wide = "\n".join(_screen("list", "--wide", env=journal))
    assert LONG in wide and "…" not in wide
    piped = run_exe("list", env=journal).stdout
    assert LONG in piped and "…" not in piped
    assert all(LONG in run_exe("list", "--format", fmt, env=journal).stdout for fmt in ("json", "jsonl", "csv", "tsv"))


def test_a_cleanup_plan_row_is_one_line(journal: dict[str, str]) -> None:
    args = ("cleanup", "--keep-last", "2", "--retention-days", "0", "--dry-run")
    screen = _screen(*args, env=journal)
    _fits(screen)
    rows = _body(screen)
    assert len(rows) == len(_pipe_rows(*args, env=journal))
    removed = [row for row in rows if row.startswith("remove-archive") and "-end-4711" in row]
    assert len(removed) == 3 and all("…" in row for row in removed)
    # The ranked columns (why, rule, bytes freed) go before an id is cut: the archive ids stay whole.
    assert [row.split()[2] for row in removed] == ["2024-01-03-00-00-00", "2024-01-02-00-00-00", "2024-01-01-00-00-00"]
    assert screen[0].strip() == "Cleanup plan (dry run)"
    assert sorted(_heading(screen[1:])) == sorted(["Action", "User", "Conversation", "Messages", "removed"])
    assert "Why" in "\n".join(_screen(*args, "--wide", env=journal))


def test_config_never_splits_a_name(journal: dict[str, str]) -> None:
    screen = _screen("config", env=journal)
    _fits(screen)
    rows = _body(screen)
    assert len(rows) == len(_pipe_rows("config", env=journal))
    assert {row.split()[0] for row in rows} >= {"maxConversationsPerUser", "maxInactiveHours", "effectiveLayout"}
    # Too narrow for the variable names: their column goes, whole; wide enough, they are whole.
    assert "Environment" not in _heading(screen)
    wider = "\n".join(_screen("config", env=journal, cols=240))
    assert all(f"DIALOGUE_JOURNAL_{name}" in wider for name in ("MAX_CONVERSATIONS_PER_USER", "CLEANUP_MAX_INACTIVE_HOURS", "LOCK_TIMEOUT_MS"))


def test_stats_most_active_users_are_one_line_each(journal: dict[str, str]) -> None:
    screen = _screen("stats", env=journal)
    _fits(screen)
    start = screen.index(next(line for line in screen if line.startswith("Most active users")))
    users = screen[start + 1 : start + 1 + 9]  # the 8 fixture users and the long one
    assert all(line.startswith("  ") and "messages" in line for line in users)
    long_row = next(line for line in users if line.startswith("  uxxx"))
    assert "…" in long_row.split()[0] and long_row.split()[0].endswith("-end-4711")


@pytest.mark.parametrize("args", [("locks",), ("search", "needle"), ("verify",), ("list", LONG)])
def test_other_tables_keep_one_line_per_row(journal: dict[str, str], args: tuple[str, ...]) -> None:
    screen = _screen(*args, env=journal)
    _fits(screen)
    rows = _body(screen)
    assert len(rows) == len(_pipe_rows(*args, env=journal))
    if args[0] in ("locks", "search"):
        assert any("…" in row and "-end-4711" in row for row in rows)
