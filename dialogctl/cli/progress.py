"""Progress bars on stderr for long runs.

A bar is drawn only when stderr is a terminal and -q was not given, and only
once the run has lasted :data:`DELAY` seconds, so short runs never flicker.
Otherwise every call is a no-op and Rich is not imported.

Commands feed a bar in one of two ways; the core never imports Rich:

* hand ``bar.update`` to a core function as its ``progress(done, total)``
  callback (:data:`dialogctl.models.ProgressCallback`);
* iterate through it: ``for user in bar.track(users): ...``.

    with ProgressBar(state, "Reading users") as bar:
        totals = journal_totals(journal, progress=bar.update)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .state import CliState

T = TypeVar("T")
DELAY = 0.5  # seconds before a bar appears


class ProgressBar:
    """One task's bar (a context manager); silent when the state says so."""

    def __init__(self, state: CliState, description: str, total: int | None = None) -> None:
        self.state = state
        self.description = description
        self.total = total
        self.done = 0
        self.enabled = state.show_progress()
        self._started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` items of ``total`` (unknown when None) are finished."""
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        if self._bar is None:
            if time.monotonic() - self._started < DELAY:
                return
            self._start()
        self._bar.update(self._task, completed=done, total=self.total)

    def advance(self, step: int = 1) -> None:
        self.update(self.done + step)

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, advancing the bar after each."""
        for item in items:
            yield item
            self.advance()

    def _start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from . import render

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=render.console(self.state, stderr=True),
            transient=True,
            # Rich would otherwise route stdout through the bar's console, which is stderr.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._bar.add_task(render.visible(self.description), total=self.total, completed=self.done)
        self._bar.start()
