"""What every export format shares: the options, the result, a message's record, and the :class:`ExportFormat` record
that describes one format in :mod:`dialogctl.exchange.registry`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

from ..models import ConversationRef, Message
from ..times import format_timestamp, parse_timestamp, utc_now_iso
from .outputfile import OutputFile
from .selection import Selected

if TYPE_CHECKING:
    from ..views.redaction import Redactor
    from .dataset import OutputDataset
    from .reading import Found, ImportInput


class ExportResult(NamedTuple):
    conversations: int
    messages: int
    skipped: dict[str, int]  # training formats: conversations left out, by reason
    notes: tuple[str, ...] = ()  # what the operator should know about the output (sqlite: no full-text index)


class Placed(Protocol):
    """Anything that knows which conversation it belongs to (a conversation, a search hit, a followed message)."""

    @property
    def ref(self) -> ConversationRef: ...


def message_record(conv: Placed, index: int, msg: Message, mid: str | None = None) -> dict[str, Any]:
    """One message with its identity: the JSONL export line (with its ``message_id``), and every other command's message row."""
    record = {
        "user": conv.ref.user,
        "conversation": conv.ref.name,
        "archived": conv.ref.archived,
        "index": index,
        "role": msg.role,
        "content": msg.content,
        "timestamp": msg.timestamp,
        "metadata": msg.metadata,
    }
    if mid is not None:
        record["message_id"] = mid
    return record


def message_json(conv: Placed, index: int, msg: Message, extra: str = "") -> str:
    """``json.dumps`` of :func:`message_record` (without ``message_id``), assembled from pieces.

    ``extra`` is more members, already JSON, each starting ``, "key": ``. Each
    string goes through the JSON encoder's own string escaper, so the text is
    byte for byte what ``json.dumps(..., ensure_ascii=False)`` gives, without a
    dictionary per message (a search printing every message of a journal).
    """
    from json.encoder import encode_basestring as text  # what json.dumps(ensure_ascii=False) uses

    ref = conv.ref
    return (
        f'{{"user": {text(ref.user)}, "conversation": {text(ref.name)}, "archived": {"true" if ref.archived else "false"}, '
        f'"index": {index}, "role": {text(msg.role)}, "content": {text(msg.content)}, "timestamp": {text(msg.timestamp)}, '
        f'"metadata": {"null" if msg.metadata is None else dumps(msg.metadata)}{extra}}}'
    )


def model_and_tokens(metadata: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """The model name and total token count a message's metadata records, if any."""
    from ..usage import model_of, tokens_of

    return model_of(metadata), tokens_of(metadata)


def time_span(messages: Iterable[tuple[int, Message]]) -> tuple[str | None, str | None]:
    """The earliest and latest timestamps (as written) among messages whose time can be read."""
    dated = [(moment, msg.timestamp) for _, msg in messages if (moment := parse_timestamp(msg.timestamp)) is not None]
    if not dated:
        return None, None
    return min(dated)[1], max(dated)[1]


def export_time() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (reproducible exports)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        from datetime import UTC, datetime

        return format_timestamp(datetime.fromtimestamp(int(epoch), UTC))
    return utc_now_iso()


def dumps(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)``, without building an encoder for every call as that does."""
    return ENCODE_JSON(value)


ENCODE_JSON = json.JSONEncoder(ensure_ascii=False).encode


class Formatted(NamedTuple):
    """One conversation already in its format's text (by a worker process), as a writer would write it."""

    ref: ConversationRef
    data: bytes | str  # the text, UTF-8 encoded (as the formats are) unless it cannot be
    messages: int


def write_utf8(out: IO[str], data: bytes | str) -> None:
    """Write text that may already be UTF-8 encoded: straight to the stream's bytes when it is a UTF-8 text stream."""
    if isinstance(data, str):
        out.write(data)
        return
    buffer = getattr(out, "buffer", None)
    if buffer is not None and (getattr(out, "encoding", "") or "").lower().replace("-", "") == "utf8":
        out.flush()
        buffer.write(data)
    elif data:
        out.write(data.decode("utf-8"))


def write_each(out: IO[str], selected: Iterable[Selected | Formatted], text: Callable[[Selected], str]) -> ExportResult:
    """Each conversation's text, formatted here or already by a worker (:class:`Formatted`)."""
    conversations = messages = 0
    for conv in selected:
        conversations += 1
        if isinstance(conv, Formatted):
            write_utf8(out, conv.data)
            messages += conv.messages
        else:
            out.write(text(conv))
            messages += len(conv.messages)
    return ExportResult(conversations, messages, {})


class ExportOptions(NamedTuple):
    format: str = "jsonl"
    neutralised: bool = True  # csv: neutralise formula cells
    system: str | None = None  # openai/sharegpt: a system message to prepend
    redactor: Redactor | None = None  # --redact: applied to every message before any format sees it; counts what it replaced


class ExportFormat(NamedTuple):
    """One format: everything the CLI, its help, the completions, the docs and the dispatch of exports and imports know of it.

    A new format is a module in :mod:`dialogctl.exchange.formats` that defines
    one of these, and one line in :data:`dialogctl.exchange.registry.EXPORTS`.
    """

    name: str  # the --format value
    help: str  # a few words for --help and docs/cli.md
    write: Callable[[IO[str] | OutputFile | OutputDataset, Iterable[Selected | Formatted], ExportOptions], ExportResult]  # the whole export
    text: Callable[[Selected, ExportOptions], str] | None = None  # one conversation's text: set, the export is formatted on every core
    needs_file: bool = False  # writes a file by name (a database): -o FILE is required
    needs_folder: bool = False  # writes a dataset folder (:class:`~dialogctl.exchange.dataset.OutputDataset`): -o DIR is required
    requires: tuple[str, str] | None = None  # (module, extra): a library from an optional extra the format cannot run without
    options: frozenset[str] = frozenset()  # the format's own options it takes: "neutralised" (--raw-csv), "system"
    read: Callable[[ImportInput, str, str, bool], Iterator[Found]] | None = None  # import: (input, source, now, raw_csv) -> records
    import_help: str = ""  # a few words for import --format (none: just the name)


def text_out(target: IO[str] | OutputFile) -> IO[str]:
    """The text stream a text format writes to."""
    return target.text() if isinstance(target, OutputFile) else target
