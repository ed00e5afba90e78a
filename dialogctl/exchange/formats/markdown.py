"""``markdown``: a transcript per conversation."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import IO, cast

from ..records import ExportFormat, ExportResult, model_and_tokens, text_out, time_span
from ..selection import Selected

# The characters that can start markup inside a line: escapes, code spans,
# emphasis, links and images, HTML and autolinks, entities, heading closers,
# strikethrough, table cells and math. Backslash-escaping them (CommonMark
# allows it for any ASCII punctuation) keeps ids and timestamps readable.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&!#~|$])")


_MD_LINE_BREAKS = re.compile(r"[\r\n]+")


_BACKTICK_RUNS = re.compile(r"`+")


def markdown_text(text: str) -> str:
    """Untrusted text as one line of literal Markdown inline text."""
    return _MD_SPECIAL.sub(r"\\\1", _MD_LINE_BREAKS.sub(" ", text))


def markdown_fence(content: str) -> str:
    """Content as a fenced code block nothing inside can close or escape.

    The fence is one backtick longer than the longest run of backticks in the
    content (at least three). Only a line of at least that many backticks could
    close it, and tildes never close a backtick fence, so headings, HTML and
    fences of any kind inside the content stay inside the block.
    """
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(content)), default=0)
    fence = "`" * max(3, longest + 1)
    body = content if not content or content.endswith(("\n", "\r")) else content + "\n"
    return f"{fence}text\n{body}{fence}\n"


def write_markdown(out: IO[str], selected: Iterable[Selected]) -> ExportResult:
    """A transcript per conversation: a level-1 heading naming the user, the
    conversation and its time span, then a level-2 heading per message (index,
    role, time), a line with model and tokens when recorded, and the content
    fenced by :func:`markdown_fence`. Everything outside fences is escaped by
    :func:`markdown_text`, so the document has exactly that structure whatever
    the messages hold."""
    conversations = messages = 0
    for conv in selected:
        first, last = time_span(conv.messages)
        title = f"{conv.ref.user} · {conv.ref.name}{' (archived)' if conv.ref.archived else ''}"
        if first is not None:
            title += f" · {first} to {last}" if first != last else f" · {first}"
        out.write(("\n" if conversations else "") + f"# {markdown_text(title)}\n")
        if not conv.messages:
            out.write("\nNo messages.\n")
        for index, msg in conv.messages:
            out.write(f"\n## {markdown_text(f'{index} · {msg.role} · {msg.timestamp}')}\n\n")
            model, tokens = model_and_tokens(msg.metadata)
            details = [f"model {model}"] if model else []
            details += [f"{tokens} tokens"] if tokens is not None else []
            if details:
                out.write(markdown_text(" · ".join(details)) + "\n\n")
            out.write(markdown_fence(msg.content))
            messages += 1
        conversations += 1
    return ExportResult(conversations, messages, {})


MARKDOWN = ExportFormat(
    "markdown", "transcripts", lambda target, conversations, options: write_markdown(text_out(target), cast(Iterable[Selected], conversations))
)
