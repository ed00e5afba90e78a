"""``openai`` and ``sharegpt``: one conversation per line for fine-tuning; conversations that fail the checks are counted, not written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, cast

from ...errors import InvalidInput
from ...fileformat.codec import input_message
from ..reading import Found, ImportInput, load_json, numbered_lines, refuse_unknown
from ..records import ExportFormat, ExportResult, dumps, text_out
from ..selection import Selected

TRAINING_ROLES = ("system", "user", "assistant")


SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}


def training_messages(conv: Selected, system: str | None) -> list[tuple[str, str]] | str:
    """``(role, content)`` pairs for a fine-tuning line, or why the conversation cannot be one.

    The checks of OpenAI's chat fine-tuning data validation: every role is
    system, user or assistant (tool messages need tool-call data the journal
    does not keep), no content is empty, and there is an assistant message to
    learn from.
    """
    pairs = [("system", system)] if system is not None else []
    pairs += [(msg.role, msg.content) for _, msg in conv.messages]
    if any(role not in TRAINING_ROLES for role, _ in pairs):
        return "unknown role"
    if any(not content.strip() for _, content in pairs):
        return "empty content"
    if not any(role == "assistant" for role, _ in pairs):
        return "no assistant message"
    return pairs


def write_training(out: IO[str], selected: Iterable[Selected], flavour: str, system: str | None = None) -> ExportResult:
    """``openai``: ``{"messages": [{"role", "content"}...]}``; ``sharegpt``: ``{"conversations": [{"from", "value"}...]}``; one per line."""
    conversations = messages = 0
    skipped: Counter[str] = Counter()
    for conv in selected:
        pairs = training_messages(conv, system)
        if isinstance(pairs, str):
            skipped[pairs] += 1
            continue
        # Written message by message (the same text as dumping the whole line): a line is a whole conversation.
        out.write('{"messages": [' if flavour == "openai" else '{"conversations": [')
        for n, (role, content) in enumerate(pairs):
            item = {"role": role, "content": content} if flavour == "openai" else {"from": SHAREGPT_FROM[role], "value": content}
            out.write((", " if n else "") + dumps(item))
        out.write("]}\n")
        conversations += 1
        messages += len(conv.messages)
    return ExportResult(conversations, messages, dict(skipped))


def _training(flavour: str) -> ExportFormat:
    return ExportFormat(
        flavour,
        "fine-tuning lines",
        lambda target, conversations, options: write_training(text_out(target), cast(Iterable[Selected], conversations), flavour, options.system),
        options=frozenset({"system"}),
    )


OPENAI = _training("openai")._replace(read=lambda data, source, now, raw_csv: openai_records(data, source, now), import_help='one {"messages": [...]} line')
SHAREGPT = _training("sharegpt")


# --- reading ----------------------------------------------------------------------------


def openai_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    for number, line in numbered_lines(data, source):
        where = f"{source} line {number}"
        raw = load_json(line, where)
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
            raise InvalidInput(f"{where}: expected an object with a 'messages' array")
        refuse_unknown(raw, frozenset({"messages"}), where)
        for i, item in enumerate(raw["messages"]):
            at = f"{where}, messages[{i}]"
            if not isinstance(item, dict):
                raise InvalidInput(f"{at}: expected an object with role and content")
            extra = {k: v for k, v in item.items() if k not in ("role", "content")}
            yield f"line {number}", input_message({"role": item.get("role"), "content": item.get("content"), "metadata": extra or None}, at, now)
