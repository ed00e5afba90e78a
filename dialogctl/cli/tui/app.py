"""``dialogctl browse``: users, their conversations and a transcript, in a Textual app.

Reading happens in thread workers (the catalog for the users pane, one
user's summaries, a transcript, a search, following), so the screen stays
responsive on a large journal; the UI thread only builds widgets from what
they found. A transcript opens with its last :data:`~.data.WINDOW` messages
(read from the end of the file); earlier ones are read when asked for.
Read-only: nothing here archives, restores or removes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, OptionList, Static
from textual.worker import get_current_worker

from . import data

if TYPE_CHECKING:
    from ...journal.core import Journal
    from ...models import ConversationRef, ConversationSummary, Message
    from ...views.overview import UserOverview

EARLIER = "earlier"


class AskPath(ModalScreen[str | None]):
    """Asks where to export; Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = "AskPath { align: center middle; } AskPath > Vertical { width: 70; height: 7; border: round $accent; background: $surface; }"

    def __init__(self, suggested: str) -> None:
        super().__init__()
        self.suggested = suggested

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Export to (.jsonl .json .csv .md .db; an existing file is never replaced):"))
            yield Input(value=self.suggested, id="path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class BrowseApp(App[int]):
    """The browser; ``run()`` returns 0 when it is quit."""

    TITLE = "dialogctl browse"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #left { width: 45%; min-width: 36; }
    #users, #conversations { height: 1fr; border: round $primary-darken-2; }
    #users:focus-within, #conversations:focus-within, #transcript:focus { border: round $accent; }
    #transcript { width: 1fr; height: 1fr; border: round $primary-darken-2; }
    #filter, #search { height: 3; }
    #search { display: none; }
    #status { height: 1; background: $boost; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("u", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("slash", "search(False)", "Search"),
        Binding("s", "search(True)", "Search user"),
        Binding("n", "hit(1)", "Next"),
        Binding("N", "hit(-1)", "Prev"),
        Binding("f", "follow", "Follow"),
        Binding("e", "export", "Export"),
        Binding("y", "copy", "Copy"),
        Binding("escape", "leave", "Back", show=False),
    ]
    SORTS = ("user", "messages", "last activity")

    def __init__(self, journal: Journal, user: str | None = None) -> None:
        super().__init__()
        self.journal = journal
        self.start_user = user
        self.overviews: list[UserOverview] = []
        self.saved: dict[str, list[Any]] = {}  # the catalog as the users pane left it (summaries of unchanged files)
        self.sort_by = 0
        self.user: str | None = None
        self.summaries: list[ConversationSummary] = []
        self.ref: ConversationRef | None = None
        self.messages: list[Message] = []  # the open conversation, from index ``first``
        self.first = 0
        self.shown_from = 0  # index of the first message in the transcript pane
        self.unfolded: set[int] = set()
        self.live: list[tuple[ConversationRef, int, Message]] = []  # followed messages, when following
        self.following: str | None = None
        self.follow_started = threading.Event()
        self.hits: list[data.Hit] = []
        self.hit = -1
        self.search_user: str | None = None  # the user a search from the search box covers (None: everyone)
        self.pending: int | None = None  # the message to highlight once the transcript is read

    # --- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="left"):
                yield Input(placeholder="filter users (u)", id="filter")
                users: DataTable[Any] = DataTable(id="users", cursor_type="row", zebra_stripes=True)
                users.border_title = "Users"
                yield users
                conversations: DataTable[Any] = DataTable(id="conversations", cursor_type="row")
                conversations.border_title = "Conversations"
                yield conversations
            transcript = OptionList(id="transcript", markup=False)
            transcript.border_title = "Transcript"
            yield transcript
        yield Input(placeholder="search", id="search")
        yield Static(Text("reading users…"), id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#users", DataTable).add_columns("User", "Active", "Arch", "Messages", "Last activity")
        self.query_one("#conversations", DataTable).add_columns("Conversation", "Messages", "Span")
        self.query_one("#users", DataTable).focus()
        self.load_users()

    def status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))

    # --- users -------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="users")
    def load_users(self) -> None:
        from ...journal.catalog import load
        from ...views.overview import users_overview

        found = list(users_overview(self.journal))  # from the catalog, which this brings up to date and saves
        self.saved = load(self.journal.root)
        self.call_from_thread(self.show_users, found)

    def show_users(self, found: list[UserOverview]) -> None:
        self.overviews = found
        self.fill_users()
        total = sum(o.messages for o in found)
        self.status(f"{len(found)} users, {total:,} messages · read-only · Enter opens, Tab moves between panes")
        if self.start_user is not None:
            self.select_user(self.start_user)
            self.open_user(self.start_user)

    def fill_users(self) -> None:
        table = self.query_one("#users", DataTable)
        wanted = self.query_one("#filter", Input).value.strip().lower()
        keys = {
            0: lambda o: o.user,
            1: lambda o: -o.messages,
            2: lambda o: "" if o.last_activity is None else o.last_activity,
        }
        rows = sorted((o for o in self.overviews if wanted in o.user.lower()), key=keys[self.sort_by], reverse=self.sort_by == 2)
        table.clear()
        for o in rows:
            table.add_row(data.cell(o.user), str(o.conversations), str(o.archives), f"{o.messages:,}", data.ago(o.last_activity), key=o.user)
        table.border_title = f"Users ({len(rows)}/{len(self.overviews)}, by {self.SORTS[self.sort_by]})"

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.fill_users()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#users", DataTable).focus()
        elif event.input.id == "search":
            event.input.display = False
            if event.value:
                self.run_search(event.value, self.search_user)
            self.query_one("#transcript", OptionList).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        self.sort_by = (self.sort_by + 1) % len(self.SORTS)
        self.fill_users()

    def action_leave(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.display = False
        self.query_one("#users", DataTable).focus()

    def select_user(self, user: str) -> None:
        table = self.query_one("#users", DataTable)
        try:
            row = table.get_row_index(user)
        except Exception:  # filtered out: show every user again
            self.query_one("#filter", Input).value = ""
            self.fill_users()
            try:
                row = table.get_row_index(user)
            except Exception:
                return
        table.move_cursor(row=row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # a stale highlight (the table's first row, told after the cursor was moved to a start user or a hit)
        if event.data_table.id == "users" and event.row_key.value is not None and event.row_key.value != self.user:
            self.user = event.row_key.value
            self.load_conversations(self.user)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key is None:
            return
        if event.data_table.id == "users":
            self.open_user(key)
        else:
            wanted = next((s.ref for s in self.summaries if self.ref_key(s.ref) == key), None)
            if wanted is not None:
                self.open_conversation(wanted)

    def open_user(self, user: str) -> None:
        """Enter on a user: its conversations, and the first of them opened."""
        self.user = user
        self.load_conversations(user, open_first=True)

    # --- conversations -----------------------------------------------------------------

    @staticmethod
    def ref_key(ref: ConversationRef) -> str:
        return f"{ref.kind}:{ref.id or ''}"

    @work(thread=True, exclusive=True, group="conversations")
    def load_conversations(self, user: str, open_first: bool = False) -> None:
        found = data.order(data.user_summaries(self.journal, user, self.saved))
        self.call_from_thread(self.show_conversations, user, found, open_first)

    def show_conversations(self, user: str, found: list[ConversationSummary], open_first: bool) -> None:
        if user != self.user:
            return
        self.summaries = found
        table = self.query_one("#conversations", DataTable)
        table.clear()
        for s in found:
            table.add_row(data.cell(data.conversation_label(s.ref)), f"{s.messages:,}", data.span(s), key=self.ref_key(s.ref))
        table.border_title = f"Conversations of {data.cell(user).plain} ({len(found)})"
        if open_first and found:
            first = next((s for s in found if s.messages), found[0])  # an empty session says nothing
            table.move_cursor(row=found.index(first))
            self.open_conversation(first.ref)

    # --- transcript --------------------------------------------------------------------

    def open_conversation(self, ref: ConversationRef, at: int | None = None) -> None:
        self.ref = ref
        self.live = []
        self.pending = at
        self.unfolded = set()
        pane = self.query_one("#transcript", OptionList)
        pane.border_title = f"{data.cell(ref.user).plain} · {data.conversation_label(ref)} (reading…)"
        self.read_conversation(ref, at)
        pane.focus()

    @work(thread=True, exclusive=True, group="transcript")
    def read_conversation(self, ref: ConversationRef, at: int | None, whole: bool = False) -> None:
        if whole or at is not None:
            conv = self.journal.read(ref, missing_ok=True)
        else:
            conv = self.journal.read_tail(ref, data.WINDOW)
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self.show_conversation, ref, conv.messages, conv.first_index, at)

    def show_conversation(self, ref: ConversationRef, messages: list[Message], first: int, at: int | None) -> None:
        if ref != self.ref or self.following:
            return
        self.messages, self.first = messages, first
        end = first + len(messages)
        start = max(first, end - data.WINDOW)
        if at is not None:
            start = max(first, min(start, at - data.WINDOW // 2))
        self.fill_transcript(start, at)

    def fill_transcript(self, start: int, at: int | None = None) -> None:
        assert self.ref is not None
        pane = self.query_one("#transcript", OptionList)
        self.shown_from = start
        options: list[Any] = []
        if start > 0:
            options.append(_option(Text(f"↑ {start:,} earlier messages: Enter shows them", style="italic"), EARLIER))
        for i in range(start, min(start + data.WINDOW * 4, self.first + len(self.messages))):
            options.append(_option(data.message_text(i, self.messages[i - self.first], i not in self.unfolded), str(i)))
        pane.clear_options()
        pane.add_options(options)
        total = self.first + len(self.messages)
        pane.border_title = f"{data.cell(self.ref.user).plain} · {data.conversation_label(self.ref)} ({total:,} messages)"
        target = at if at is not None else total - 1
        self.highlight(target)

    def highlight(self, index: int) -> None:
        pane = self.query_one("#transcript", OptionList)
        try:
            pane.highlighted = pane.get_option_index(str(index))
        except Exception:
            return
        pane.scroll_to_highlight(top=True)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        key = event.option.id
        if key == EARLIER:
            if self.ref is not None and self.first > 0:
                self.read_conversation(self.ref, self.shown_from - 1, whole=True)
            elif self.ref is not None:
                self.fill_transcript(max(0, self.shown_from - data.WINDOW), self.shown_from)
            return
        message = self.message_at(event.option_index)
        if key is None or message is None or not data.folds(message) or self.following:
            return
        index = int(key)
        self.unfolded ^= {index}
        event.option_list.replace_option_prompt_at_index(event.option_index, data.message_text(index, message, index not in self.unfolded))

    def message_at(self, option_index: int | None) -> Message | None:
        pane = self.query_one("#transcript", OptionList)
        if option_index is None:
            return None
        key = pane.get_option_at_index(option_index).id
        if key is None or key == EARLIER:
            return None
        if self.following:
            return self.live[int(key)][2]
        return self.messages[int(key) - self.first]

    # --- search ------------------------------------------------------------------------

    def action_search(self, this_user: bool) -> None:
        if this_user and self.user is None:
            self.notify("select a user first")
            return
        box = self.query_one("#search", Input)
        self.search_user = self.user if this_user else None
        box.placeholder = f"search {self.user}'s conversations" if this_user else "search every user's conversations (the matcher of 'dialogctl search')"
        box.value = ""
        box.display = True
        box.focus()

    @work(thread=True, exclusive=True, group="search")
    def run_search(self, pattern: str, user: str | None) -> None:
        from ...errors import DialogError

        worker = get_current_worker()
        self.call_from_thread(self.status, f"searching for {pattern!r}…")
        try:
            hits = data.find(self.journal, pattern, user, lambda: worker.is_cancelled)
        except DialogError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
            return
        self.call_from_thread(self.found, pattern, hits)

    def found(self, pattern: str, hits: list[data.Hit]) -> None:
        self.hits, self.hit = hits, -1
        if not hits:
            self.status(f"no message matches {pattern!r}")
            return
        users = len({h.ref.user for h in hits})
        self.status(f"{len(hits):,} messages of {users} user(s) match {pattern!r}" + (" (the first shown)" if len(hits) >= data.MAX_HITS else ""))
        self.action_hit(1)

    def action_hit(self, step: int) -> None:
        if not self.hits:
            self.notify("no search hits: / searches every user, s the selected one")
            return
        self.stop_following()
        self.hit = (self.hit + step) % len(self.hits)
        target = self.hits[self.hit]
        self.status(f"hit {self.hit + 1}/{len(self.hits)}: {data.cell(target.ref.user).plain}/{data.conversation_label(target.ref)} [{target.position}]")
        if target.ref.user != self.user:
            self.select_user(target.ref.user)
            self.user = target.ref.user
            self.load_conversations(target.ref.user)
        if target.ref == self.ref and self.shown_from <= target.position < self.first + len(self.messages):
            self.highlight(target.position)
        else:
            self.open_conversation(target.ref, target.position)

    # --- follow, export, copy ------------------------------------------------------------

    def action_follow(self) -> None:
        if self.following:
            self.stop_following()
            self.status("stopped following")
            return
        if self.user is None:
            self.notify("select a user first")
            return
        self.following = self.user
        self.live = []
        self.follow_started.clear()
        pane = self.query_one("#transcript", OptionList)
        pane.clear_options()
        pane.border_title = f"following {data.cell(self.user).plain}: new messages appear here (f stops)"
        self.status(f"following {data.cell(self.user).plain} from now, across archives and restores; f stops")
        pane.focus()
        self.follow(self.user)

    def stop_following(self) -> None:
        if self.following:
            self.following = None
            self.workers.cancel_group(self, "follow")

    @work(thread=True, exclusive=True, group="follow")
    def follow(self, user: str) -> None:
        import time

        from ...views.follow import Follower

        worker = get_current_worker()
        follower = Follower(self.journal, [user])
        rounds = 0
        while not worker.is_cancelled:
            events = follower.poll()
            self.follow_started.set()
            if events:
                self.call_from_thread(self.followed, user, events)
            elif rounds % 10 == 9:  # an archive or restore underneath, with no new message: the conversations pane shows it
                self.call_from_thread(self.load_conversations, user)
            rounds += 1
            time.sleep(0.2)

    def followed(self, user: str, events: list[Any]) -> None:
        if self.following != user:
            return
        pane = self.query_one("#transcript", OptionList)
        for event in events:
            self.live.append((event.ref, event.position, event.message))
            where = f"{event.ref.user}/{event.ref.name}" + (" (archived)" if event.ref.archived else "")
            pane.add_option(_option(data.message_text(event.position, event.message, True, where), str(len(self.live) - 1)))
        pane.highlighted = pane.option_count - 1
        self.load_conversations(user)

    def action_export(self) -> None:
        if self.ref is None:
            self.notify("open a conversation first (Enter)")
            return
        ref = self.ref
        suggested = f"{ref.user}-{ref.name}.jsonl"

        def chosen(path: str | None) -> None:
            if path:
                self.write_export(ref, path)

        self.push_screen(AskPath(suggested), chosen)

    @work(thread=True, group="export")
    def write_export(self, ref: ConversationRef, path: str) -> None:
        from ...errors import DialogError

        try:
            told = data.export(self.journal, ref, path)
        except DialogError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
            return
        self.call_from_thread(self.status, told)
        self.call_from_thread(self.notify, told)

    def action_copy(self) -> None:
        pane = self.query_one("#transcript", OptionList)
        message = self.message_at(pane.highlighted)
        if message is None:
            self.notify("highlight a message in the transcript first")
            return
        self.copy_to_clipboard(message.content)
        self.notify(f"copied {len(message.content):,} characters (through the terminal's clipboard)")

    async def action_quit(self) -> None:
        self.stop_following()
        self.exit(0)


def _option(prompt: Text, key: str) -> Any:
    from textual.widgets.option_list import Option

    return Option(prompt, id=key)
