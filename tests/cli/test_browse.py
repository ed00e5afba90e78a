"""``dialogctl browse``: the Textual app driven by its pilot, on copies of the fixture trees.

Each test drives keys the way an operator would (``App.run_test``); the
screen is read back from the widgets. ``DIALOGCTL_WRITE_SCREENSHOT=1`` also
writes docs/browse.svg, the README's screenshot.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from textual.worker import WorkerCancelled  # noqa: E402

from dialogctl.cli.tui.app import BrowseApp  # noqa: E402
from dialogctl.journal.core import Journal  # noqa: E402
from dialogctl.models import Message  # noqa: E402

FIXTURES = Path("/work/shared/fixtures/poto")
if not FIXTURES.exists():
    FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "poto"
HOSTILE = "look \x1b]0;pwned\x07 here \x1b[31mred \u202eevil [bold red]x[/] end"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "browse.svg"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    source = FIXTURES / "v3-sessions"
    if not source.exists():
        pytest.skip("fixture tree v3-sessions not found")
    target = tmp_path / "journal"
    shutil.copytree(source, target)
    journal = Journal.open(target)
    journal.append("zed", [Message("user", HOSTILE, "2025-10-04T09:00:00Z"), Message("assistant", "needle in zed's haystack", "2025-10-04T09:00:01Z")])
    return target


async def settle(app: BrowseApp, pilot: Any) -> None:
    """Until no reading worker has run for a few rounds (a worker's result may start the next: users, then conversations, then a transcript)."""
    quiet = 0
    for _ in range(500):
        await pilot.pause(0.02)
        if any(w.is_running or w.state.name == "PENDING" for w in app.workers if w.group != "follow"):
            quiet = 0
            try:
                await app.workers.wait_for_complete([w for w in app.workers if w.group != "follow"])
            except WorkerCancelled:  # an exclusive worker replaced by a newer one (Enter after a highlight)
                pass
        else:
            quiet += 1
            if quiet >= 5:
                return
    raise AssertionError("the app never settled")


def transcript_text(app: BrowseApp) -> str:
    pane = app.query_one("#transcript")
    return "\n".join(str(pane.get_option_at_index(i).prompt) for i in range(pane.option_count))  # type: ignore[attr-defined]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_users_enter_search_and_quit(root: Path) -> None:
    async def main() -> None:
        app = BrowseApp(Journal.open(root))
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            users = app.query_one("#users")
            assert users.row_count == 9  # type: ignore[attr-defined]
            assert app.overviews and {o.user for o in app.overviews} >= {"alice0", "zed"}
            await pilot.press("enter")  # the first user, alice0: its conversation with messages opens
            await settle(app, pilot)
            assert app.ref is not None and app.ref.user == "alice0"
            assert "[11] assistant" in transcript_text(app)
            # / searches every user: the hit is zed's, another user's.
            await pilot.press("slash", *"needle", "enter")
            await settle(app, pilot)
            assert [(h.ref.user, h.position) for h in app.hits] == [("zed", 1)]
            assert app.ref is not None and app.ref.user == "zed"
            pane = app.query_one("#transcript")
            assert pane.get_option_at_index(pane.highlighted).id == "1"  # type: ignore[attr-defined]
            await pilot.press("q")
        assert app.return_value == 0

    run(main())


def test_next_and_previous_hit(root: Path) -> None:
    async def main() -> None:
        app = BrowseApp(Journal.open(root))
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            await pilot.press("slash", *"fox", "enter")
            await settle(app, pilot)
            assert len(app.hits) > 2
            assert app.hit == 0
            await pilot.press("n")
            await settle(app, pilot)
            assert app.hit == 1
            second = app.hits[1]
            assert app.ref == second.ref
            pane = app.query_one("#transcript")
            assert pane.get_option_at_index(pane.highlighted).id == str(second.position)  # type: ignore[attr-defined]
            await pilot.press("N", "N")
            await settle(app, pilot)
            assert app.hit == len(app.hits) - 1  # wraps around
            assert app.ref == app.hits[-1].ref
            # s searches only the selected user
            user = app.hits[-1].ref.user
            await pilot.press("s", *"fox", "enter")
            await settle(app, pilot)
            assert app.hits and {h.ref.user for h in app.hits} == {user}

    run(main())


def test_filter_as_you_type_and_sort(root: Path) -> None:
    async def main() -> None:
        app = BrowseApp(Journal.open(root))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("u", "z")
            users = app.query_one("#users")
            assert users.row_count == 1  # type: ignore[attr-defined]
            await pilot.press("backspace", "enter", "o")
            assert users.row_count == 9  # type: ignore[attr-defined]
            assert app.SORTS[app.sort_by] == "messages"

    run(main())


def test_hostile_text_is_shown_escaped_never_as_markup(root: Path) -> None:
    async def main() -> None:
        app = BrowseApp(Journal.open(root), "zed")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            text = transcript_text(app)
            assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
            assert "look \\e]0;pwned\\a here \\e[31mred \\u202eevil [bold red]x[/] end" in text
            pane = app.query_one("#transcript")
            prompt = pane.get_option_at_index(0).prompt  # type: ignore[attr-defined]
            assert not any("red" in str(span.style) and "bold" in str(span.style) for span in prompt.spans)  # markup not interpreted
            # What reaches the screen: no raw escape from the message.
            screen = app.export_screenshot()
            assert "pwned" in screen and "\x1b]0;" not in screen and "\u202e" not in screen
            if os.environ.get("DIALOGCTL_WRITE_SCREENSHOT") == "1":
                SCREENSHOT.write_text(screen, encoding="utf-8")

    run(main())


def test_follow_shows_a_message_appended_meanwhile(root: Path) -> None:
    async def main() -> None:
        journal = Journal.open(root)
        app = BrowseApp(journal, "zed")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            await pilot.press("f")
            for _ in range(100):
                if app.follow_started.is_set():
                    break
                await pilot.pause(0.05)
            Journal.open(root).append("zed", [Message("user", "appended while following", "2025-10-04T10:00:00Z")])
            for _ in range(100):
                await pilot.pause(0.05)
                if "appended while following" in transcript_text(app):
                    break
            assert "appended while following" in transcript_text(app)
            assert "[2] user" in transcript_text(app)  # numbered as in its conversation, after the two there
            await pilot.press("f")  # stops
            assert app.following is None
            await pilot.press("q")
        assert app.return_value == 0

    run(main())


def test_export_writes_the_open_conversation(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    async def main() -> None:
        app = BrowseApp(Journal.open(root), "zed")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            await pilot.press("e")
            await pilot.pause(0.1)
            await pilot.press("enter")  # the suggested name: zed-CONVERSATION.jsonl
            await settle(app, pilot)
            # the same -o rule: an existing file is never replaced
            await pilot.press("e")
            await pilot.pause(0.1)
            await pilot.press("enter")
            await settle(app, pilot)

    run(main())
    written = list(tmp_path.glob("zed-*.jsonl"))
    assert len(written) == 1  # the second export refused to replace it
    lines = [json.loads(line) for line in written[0].read_text(encoding="utf-8").splitlines()]
    assert [(r["user"], r["content"]) for r in lines] == [("zed", HOSTILE), ("zed", "needle in zed's haystack")]
    assert written[0].name == f"zed-{lines[0]['conversation']}.jsonl"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".zed")] == []  # no temp file left behind


def test_copy_puts_the_exact_message_on_the_clipboard(root: Path) -> None:
    async def main() -> None:
        app = BrowseApp(Journal.open(root), "zed")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            pane = app.query_one("#transcript")
            pane.highlighted = 0  # type: ignore[attr-defined]
            await pilot.press("y")
            assert app.clipboard == HOSTILE  # the exact text (the terminal gets it base64-encoded)
            await pilot.press("ctrl+c")
        assert app.return_value == 0

    run(main())


def test_long_messages_fold_and_unfold(root: Path) -> None:
    long = "\n".join(f"line {i}" for i in range(40))
    Journal.open(root).append("zed", [Message("assistant", long, "2025-10-04T09:00:02Z")])

    async def main() -> None:
        app = BrowseApp(Journal.open(root), "zed")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            assert "line 39" not in transcript_text(app) and "30 more lines" in transcript_text(app)
            await pilot.press("enter")  # the last message is highlighted
            assert "line 39" in transcript_text(app)

    run(main())


def test_other_commands_start_without_textual() -> None:
    code = "import sys\nfrom dialogctl.cli import main\nsys.argv = ['dialogctl', '--help']\ntry:\n    main()\nexcept SystemExit:\n    pass\nassert 'textual' not in sys.modules, 'textual imported'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_textual_browse_says_which_extra(tmp_path: Path) -> None:
    # A meta path hook hides textual, as if it were not installed.
    code = (
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'textual' or name.startswith('textual.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from dialogctl.cli import main\n"
        f"sys.argv = ['dialogctl', '--root', {str(tmp_path)!r}, 'browse']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert "pip install 'dialogctl[tui]'" in done.stderr


def test_a_long_conversation_opens_at_its_end_and_earlier_messages_load_on_demand(root: Path) -> None:
    journal = Journal.open(root, archiveThreshold=10_000, maxConversationLength=10_000)
    journal.append("long", [Message("user", f"message {i}", "2025-10-04T09:00:00Z") for i in range(450)])

    async def main() -> None:
        app = BrowseApp(Journal.open(root), "long")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            pane = app.query_one("#transcript")
            assert pane.option_count == 401  # type: ignore[attr-defined]  # the last 400, and the line that loads earlier ones
            assert pane.get_option_at_index(0).id == "earlier"  # type: ignore[attr-defined]
            assert "message 49\n" not in transcript_text(app) + "\n" and "message 449" in transcript_text(app)
            pane.highlighted = 0  # type: ignore[attr-defined]
            await pilot.press("enter")
            await settle(app, pilot)
            assert pane.option_count == 450  # type: ignore[attr-defined]
            assert pane.get_option_at_index(0).id == "0"  # type: ignore[attr-defined]

    run(main())


def test_follow_notices_an_archive_underneath(root: Path) -> None:
    async def main() -> None:
        app = BrowseApp(Journal.open(root), "zed")
        async with app.run_test(size=(120, 35)) as pilot:
            await settle(app, pilot)
            before = len(app.summaries)
            await pilot.press("f")
            for _ in range(100):
                if app.follow_started.is_set():
                    break
                await pilot.pause(0.05)
            archived = Journal.open(root).archive("zed", app.ref.name if app.ref is not None and app.ref.kind == "session" else None)
            assert archived is not None
            for _ in range(100):
                await pilot.pause(0.05)
                if any(s.ref.archived and s.ref.id == archived for s in app.summaries):
                    break
            assert any(s.ref.archived and s.ref.id == archived for s in app.summaries), (before, app.summaries)
            await pilot.press("q")

    run(main())


def test_browse_needs_a_terminal(root: Path, cli: Any) -> None:
    result = cli("--root", str(root), "browse")
    assert result.exit_code == 2
    assert "run it on a terminal" in result.stderr
