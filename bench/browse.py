"""Timings of ``dialogctl browse`` on a journal, headless (Textual's pilot), in one process.

    python bench/browse.py ROOT USER [PATTERN]

Prints, in seconds from the app's start: the first paint (the screen mounted), the users pane
filled (from the catalog), USER's conversation opened (its last 400 messages on screen), the whole
conversation read (what "earlier messages" needs), and a search of PATTERN over every user with its
first hit on screen. The first run after a journal changes also builds the catalog; run it twice.
"""

from __future__ import annotations

import asyncio
import sys
import time


async def measure(root: str, user: str, pattern: str) -> None:
    from dialogctl.cli.tui.app import BrowseApp
    from dialogctl.journal.core import Journal

    started = time.perf_counter()
    app = BrowseApp(Journal.open(root))
    times: dict[str, float] = {}

    async def until(check: object, label: str, timeout: float = 120) -> None:
        while time.perf_counter() - started < timeout:
            if check():  # type: ignore[operator]
                times[label] = time.perf_counter() - started
                return
            await asyncio.sleep(0.005)
        raise SystemExit(f"{label}: not within {timeout}s")

    async with app.run_test(size=(120, 35)) as pilot:
        await until(lambda: app.screen.is_mounted, "first paint")
        await until(lambda: app.overviews, "users listed")
        mark = time.perf_counter()
        app.select_user(user)
        app.open_user(user)
        pane = app.query_one("#transcript")
        await until(lambda: app.ref is not None and app.ref.user == user and pane.option_count > 0, "large conversation opened")  # type: ignore[attr-defined]
        times["large conversation opened"] -= mark - started
        mark = time.perf_counter()
        assert app.ref is not None
        app.journal.read(app.ref)
        times["whole conversation read"] = time.perf_counter() - mark
        mark = time.perf_counter()
        app.run_search(pattern, None)
        await until(lambda: app.hits and app.ref == app.hits[0].ref and pane.option_count > 0, "search, first hit shown")  # type: ignore[attr-defined]
        times["search, first hit shown"] -= mark - started
        await pilot.press("q")
    total = sum(o.messages for o in app.overviews)
    print(f"{len(app.overviews)} users, {total:,} messages; {user}: {app.first + len(app.messages):,} messages; {len(app.hits):,} hits for {pattern!r}")
    for label, seconds in times.items():
        print(f"{label:28} {seconds:7.3f} s")


if __name__ == "__main__":
    asyncio.run(measure(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "Zürich"))
