"""What the browser shows, as Rich text, and the work it does off the UI thread; no Textual here.

Every piece of journal text (user ids, conversation ids, roles, content,
metadata) goes through :func:`dialogctl.cli.render.visible` and into a
:class:`rich.text.Text`, which is never parsed as markup: ``[bold]`` in a
message is shown as the characters ``[bold]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from rich.text import Text

from ..render import ROLE_STYLES, clock, human_time, visible

if TYPE_CHECKING:
    from ...journal.core import Journal
    from ...models import ConversationRef, ConversationSummary, Message

FOLD_LINES = 12  # a longer message shows its first FOLD_LINES - 2 lines until unfolded
WINDOW = 400  # messages shown at once; earlier ones load on demand
MAX_HITS = 10_000
# -o FILE's extension chooses the export format, as the registry names them.
EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".md": "markdown", ".db": "sqlite", ".sqlite": "sqlite"}


def cell(text: str | None) -> Text:
    """A table cell from journal text: escaped, on one line, never markup."""
    return Text(visible(text or "").replace("\n", "⏎ ").replace("\t", " "), no_wrap=True, overflow="ellipsis")


def short_time(text: str | None) -> str:
    """A timestamp to the minute (``2024-01-15 10:30``), as written when it cannot be read."""
    if not text:
        return ""
    readable = human_time(text)
    return readable.split(" (")[0] if readable else visible(text)


def ago(text: str | None) -> str:
    """How long ago, for the users pane (``3h ago``)."""
    readable = human_time(text)
    return readable.split(" (")[-1].rstrip(")") if "(" in readable else readable


def conversation_label(ref: ConversationRef) -> str:
    return visible(ref.name) + (" (archived)" if ref.archived else "")


def span(summary: ConversationSummary) -> str:
    first, last = short_time(summary.first_timestamp), short_time(summary.last_timestamp)
    if not first:
        return ""
    return first if first == last else f"{first} → {last[11:] if last[:10] == first[:10] else last}"


def user_summaries(journal: Journal, user: str, saved: dict[str, list[Any]]) -> list[ConversationSummary]:
    """One user's conversations summarised: from the catalog ``saved`` for files unchanged since, else read.

    (``Journal.summaries`` reads every file; a 200k-message conversation takes seconds to parse.)
    """
    from ...journal.catalog import saved_summary, summarize

    found = []
    for f in journal.conversation_files(user):
        known = saved_summary(saved, f)
        found.append(known if known is not None else summarize(journal.read(f.ref, missing_ok=True)))
    return found


def order(summaries: list[ConversationSummary]) -> list[ConversationSummary]:
    """Current first, then sessions, then archives (newest first)."""
    rank = {"current": 0, "session": 1, "archive": 2}
    return sorted(summaries, key=lambda s: (rank[s.ref.kind], -(s.mtime or 0) if s.ref.archived else 0, s.ref.name))


def message_text(index: int, msg: Message, folded: bool, where: str = "") -> Text:
    """One message as the transcript shows it: a header (index, role, time, model, tokens), then its text.

    The text is kept as written (no Markdown, no reflow); lines inside ``````` fences are
    coloured as code. With ``folded``, a long message shows its first lines and how many more.
    """
    from ...usage import model_of, tokens_of

    out = Text()
    if where:
        out.append(f"{visible(where)}  ", style="bold")
    out.append(f"[{index}] ", style="dim")
    out.append(visible(msg.role), style=ROLE_STYLES.get(msg.role, "bold"))
    out.append(f"  {clock(msg.timestamp)}", style="dim")
    model, tokens = model_of(msg.metadata), tokens_of(msg.metadata)
    if model:
        out.append(f"  {visible(model)}", style="dim italic")
    if tokens is not None:
        out.append(f"  {tokens} tokens", style="dim")
    lines = msg.content.rstrip("\n").split("\n")
    hidden = 0
    if folded and len(lines) > FOLD_LINES:
        hidden = len(lines) - (FOLD_LINES - 2)
        lines = lines[: FOLD_LINES - 2]
    fenced = False
    for line in lines:
        out.append("\n")
        if line.lstrip().startswith("```"):
            out.append(visible(line), style="dim")
            fenced = not fenced
            continue
        out.append(visible(line), style="green" if fenced else "")
    if hidden:
        out.append(f"\n… {hidden} more lines (Enter unfolds)", style="italic dim")
    return out


def folds(msg: Message) -> bool:
    return msg.content.rstrip("\n").count("\n") + 1 > FOLD_LINES


class Hit(NamedTuple):
    ref: ConversationRef
    position: int


def find(journal: Journal, pattern: str, user: str | None, stop: Any) -> list[Hit]:
    """Matching messages (the matcher ``search`` uses, archives included), at most MAX_HITS; ``stop()`` ends early."""
    from ...views.search import matcher, search

    m = matcher(pattern)
    hits: list[Hit] = []
    for group in search(journal, m, [user] if user is not None else None, include_archives=True):
        if stop():
            break
        hits.extend(Hit(hit.ref, hit.position) for hit in group if hit.matched)
        if len(hits) >= MAX_HITS:
            break
    return hits[:MAX_HITS]


def export(journal: Journal, ref: ConversationRef, path: str) -> str:
    """Write one conversation to ``path`` as ``export -o`` does (never over an existing file); what was written."""
    import os

    from ...errors import InvalidInput
    from ...exchange.outputfile import OutputFile
    from ...exchange.pipeline import stream
    from ...exchange.records import ExportOptions
    from ...exchange.registry import write_export
    from ...exchange.selection import Selection

    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise InvalidInput(f"{path}: name the format by the extension ({', '.join(EXTENSIONS)})")
    options = ExportOptions(EXTENSIONS[extension], True, None)
    if ref.archived:
        selection = Selection((ref.user,), archive=ref.id)
    else:
        selection = Selection((ref.user,), conversation=ref.name)
    with OutputFile(path, False, int(journal.settings["fileMode"])) as target:
        result = write_export(target, stream(journal, selection, options), options)
    return f"exported {result.messages} messages as {options.format} to {path}"
