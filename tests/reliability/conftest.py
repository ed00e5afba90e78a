"""The reliability suite: real processes, injected faults, hostile input; it reports its figures.

Counts are sized for CI (a 2-core machine) by default; each heavy count has an
environment variable for a full-size run (see ``count``). Tests record what
they did with the ``figures`` fixture, and the numbers are printed at the end
of the run (``pytest tests/reliability``).
"""

from __future__ import annotations

import os

import pytest

_FIGURES: list[str] = []


def count(name: str, ci: int) -> int:
    """A heavy count: ``DIALOGCTL_<NAME>`` when set, else the CI-size default."""
    return int(os.environ.get(f"DIALOGCTL_{name}", str(ci)))


class Figures:
    def add(self, line: str) -> None:
        _FIGURES.append(line)


@pytest.fixture
def figures() -> Figures:
    return Figures()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
