"""Exports: conversations out of the journal in the formats other tools read, streamed.

A :class:`Selection` names what leaves (users or every user; the current
conversation, one conversation, one archive, or archives too; a time and role
filter), :func:`select` reads it one conversation at a time, and one writer
turns the stream into a format. Nothing holds more than one conversation, so
memory is bounded by the largest conversation file, not by the journal.

Every record names where it came from: user, conversation, archived, and the
message's index in its whole conversation (a filter keeps those indexes).

Formats:

* ``json``: one conversation in the reference implementation's shape
  ``{userId, timestamp, messageCount, messages}``; several as an array of such
  objects, each also carrying ``conversation`` and ``archived``, written one
  conversation at a time. ``timestamp`` is the time of the export (pinned by
  ``SOURCE_DATE_EPOCH`` when set, so the same journal exports to the same bytes).
* ``jsonl``: one message per line (:func:`message_record`): user, conversation,
  archived, index, role, content, timestamp, metadata.
* ``csv``: RFC 4180 (CRLF rows, every cell quoted, a header row), columns
  :data:`CSV_COLUMNS`; ``metadata`` is the message's metadata as JSON (empty
  when it has none), ``model`` and ``totalTokens`` are read from it for
  spreadsheets and are ignored on import.
* ``markdown``: a transcript per conversation; see :func:`write_markdown`.
* ``openai`` / ``sharegpt``: one conversation per line for fine-tuning; a
  conversation that fails the checks of :func:`training_messages` is left out
  and counted in :attr:`ExportResult.skipped`.
* ``sqlite``: a database file with ``conversations`` and ``messages`` tables.

CSV cells are neutralised against formula injection by default, following
OWASP's CSV injection guidance: a text cell whose first character is ``=``,
``+``, ``-``, ``@``, tab, CR, LF or NUL gets a ``'`` prepended, which spreadsheets
take as "this cell is text". So that the import can undo it exactly, a cell
that already starts with ``'`` followed by one of those characters or by
another ``'`` gets one too; every other cell is written as it is. Numbers and
booleans we format ourselves (``archived``, ``index``, ``totalTokens``) are never
touched. :func:`restore_cell` is the exact inverse.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import IO, Any, NamedTuple, Protocol, cast

from ..disk.storage import TEMP_MARK
from ..errors import DialogError, InvalidInput, StorageError, UnsafePath, storage_error
from ..journal.core import Journal
from ..journal.files import Conversation
from ..models import ConversationRef, Damage, Message
from ..times import format_timestamp, parse_timestamp, utc_now_iso
from ..views.filters import ALL, MessageFilter

FORMATS = ("json", "jsonl", "csv", "markdown", "openai", "sharegpt", "sqlite")
CSV_COLUMNS = ("user", "conversation", "archived", "index", "timestamp", "role", "content", "model", "totalTokens", "metadata")


# --- what leaves -----------------------------------------------------------------


class Selection(NamedTuple):
    """What an export takes from the journal."""

    users: tuple[str, ...] = ()  # empty: every user, every conversation, archives included
    conversation: str | None = None  # one conversation id (``current`` or a session id)
    archive: str | None = None  # one archive id
    include_archives: bool = False  # with users: their archives too
    filter: MessageFilter = ALL

    def check(self) -> None:
        if self.conversation is not None and self.archive is not None:
            raise InvalidInput("--conversation and --archive name different conversations; pass one")
        if (self.conversation is not None or self.archive is not None) and self.include_archives:
            raise InvalidInput("--include-archives selects many conversations; it cannot be combined with --conversation or --archive")


class Selected(NamedTuple):
    """One conversation as exported: its place, and its kept messages with their indexes."""

    ref: ConversationRef
    messages: list[tuple[int, Message]]


def is_single(journal: Journal, selection: Selection) -> bool:
    """Whether the selection can only ever be one conversation (json then writes one object)."""
    return (
        len(selection.users) == 1
        and not selection.include_archives
        and (selection.conversation is not None or selection.archive is not None or journal.layout().conversations == "current")
    )


def select(journal: Journal, selection: Selection) -> Iterator[Selected]:
    """The selected conversations, read one at a time.

    Named users are checked before anything is read, so a typo fails before
    any output. With a filter, a conversation left with no message is skipped
    (unless it is the only one asked for).
    """
    selection.check()
    for user in selection.users:
        journal.dialogs_folder(user).close()  # NotFound for a missing user
    keep_empty = not selection.filter.active or is_single(journal, selection)
    return _selected(journal, selection, keep_empty)


def _selected(journal: Journal, selection: Selection, keep_empty: bool) -> Iterator[Selected]:
    for conv in _conversations(journal, selection):
        kept = list(selection.filter.indexed(conv.messages))
        if kept or keep_empty:
            yield Selected(conv.ref, kept)


def _conversations(journal: Journal, selection: Selection) -> Iterator[Conversation]:
    if selection.conversation is None and selection.archive is None:
        yield from journal.conversations(selection.users or None, include_archives=selection.include_archives or not selection.users)
        return
    for user in selection.users or journal.users():
        ref = journal.resolve(user, selection.conversation, selection.archive)
        if not selection.users and ref not in {f.ref for f in journal.conversation_files(user)}:
            continue  # --all: only the users who have it
        yield journal.read(ref)


# --- on every core ---------------------------------------------------------------------------


class Formatted(NamedTuple):
    """One conversation already in its format's text (by a worker process), as a writer would write it."""

    ref: ConversationRef
    data: bytes | str  # the text, UTF-8 encoded (as the formats are) unless it cannot be
    messages: int


BATCH_BYTES = 1 << 20  # a worker's job: about this many bytes of files (one job per file costs more in hand-offs)


def stream(journal: Journal, selection: Selection, options: ExportOptions) -> Iterator[Selected | Formatted]:
    """What :func:`select` gives, for the writer of ``options.format``; formatted on every core when that pays.

    JSONL and CSV format each conversation on its own, so with more than one
    CPU and at least :data:`dialogctl.parallel.PARALLEL_BYTES` to read, worker
    processes read, parse and format whole files while this one only writes
    their text, in the order a serial export writes it (same bytes, same
    damage reports). Everything else is :func:`select`.
    """
    from .. import parallel

    selected = select(journal, selection)
    if options.format not in _FORMATTERS or selection.conversation is not None or selection.archive is not None or parallel.workers() < 2:
        return selected
    if selection.users:
        files: Iterator[Any] = (f for user in selection.users for f in journal.conversation_files(user, include_archives=selection.include_archives))
    else:
        files = (f for _, user_files in journal.walk() for f in user_files)
    first, size = [], 0
    for f in files:  # the walk goes on while the workers read: no waiting for the whole tree
        first.append(f)
        size += f.size
        if size >= parallel.PARALLEL_BYTES:
            keep_empty = not selection.filter.active or is_single(journal, selection)
            return _formatted(journal, chain(first, files), options, selection.filter, keep_empty)
    return selected


def _formatted(journal: Journal, files: Iterator[Any], options: ExportOptions, message_filter: MessageFilter, keep_empty: bool) -> Iterator[Formatted]:
    from .. import parallel

    handed_out: deque[list[tuple[ConversationRef, str]]] = deque()

    def jobs() -> Iterator[tuple[str, str, bool, MessageFilter, list[tuple[ConversationRef, str]], int]]:
        batch: list[tuple[ConversationRef, str]] = []
        size = 0
        for f in files:
            batch.append((f.ref, f.rel_path))
            size += f.size
            if size >= BATCH_BYTES:
                handed_out.append(batch)
                yield journal.root, options.format, options.neutralised, message_filter, batch, journal.file_limit
                batch, size = [], 0
        if batch:
            handed_out.append(batch)
            yield journal.root, options.format, options.neutralised, message_filter, batch, journal.file_limit

    count = parallel.workers()
    for results in parallel.ordered(_format_files, jobs(), count, window=2 * count, what="exporting"):
        for (ref, rel_path), result in zip(handed_out.popleft(), results, strict=True):
            if result is None:  # gone since the walk
                continue
            if isinstance(result, StorageError) and not isinstance(result, UnsafePath):
                journal.note_unreadable(rel_path, result, ref.user)  # as a serial export does: said at the end, the rest is exported
                continue
            if isinstance(result, DialogError):
                raise result
            data, messages, damage = result
            journal.damage.extend(damage)
            if messages or keep_empty:
                yield Formatted(ref, data, messages)


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


def _format_files(
    job: tuple[str, str, bool, MessageFilter, list[tuple[ConversationRef, str]], int],
) -> list[tuple[bytes | str, int, list[Damage]] | DialogError | None]:
    """In a worker: read, parse, filter and format each file of a batch; None for a file that is gone."""
    from ..disk.storage import open_below, read_all
    from ..errors import FileTooLarge
    from ..fileformat.reader import parse_conversation
    from ..journal.files import FILE_TOO_LARGE, too_large_detail

    root, fmt, neutralised, message_filter, files, limit = job
    formatter = _FORMATTERS[fmt]
    results: list[tuple[bytes | str, int, list[Damage]] | DialogError | None] = []
    for ref, rel_path in files:
        try:
            fd = open_below(root, rel_path)
            if fd is None:
                results.append(None)
                continue
            try:
                raw = read_all(fd, limit)
            except FileTooLarge:  # not read: no message, its damage (as Journal.too_large in a serial export)
                damage = [Damage(rel_path, None, FILE_TOO_LARGE, too_large_detail(os.fstat(fd).st_size, limit))]
                results.append((formatter(Selected(ref, []), neutralised).encode("utf-8"), 0, damage))
                continue
            finally:
                os.close(fd)
        except OSError as exc:
            results.append(storage_error(exc, "read", os.path.join(root, rel_path)))
            continue
        except DialogError as exc:
            results.append(exc)
            continue
        parsed = parse_conversation(raw, rel_path)
        conv = Selected(ref, list(message_filter.indexed(parsed.messages)))
        text = formatter(conv, neutralised)
        try:
            data: bytes | str = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (from a \u escape): the parent's stream decides, as in a serial export
            data = text
        results.append((data, len(conv.messages), parsed.damage))
    return results


# --- results and shared pieces ---------------------------------------------------------


class ExportResult(NamedTuple):
    conversations: int
    messages: int
    skipped: dict[str, int]  # training formats: conversations left out, by reason


class Placed(Protocol):
    """Anything that knows which conversation it belongs to (a conversation, a search hit, a followed message)."""

    @property
    def ref(self) -> ConversationRef: ...


def message_record(conv: Placed, index: int, msg: Message) -> dict[str, Any]:
    """One message with its identity: the JSONL export line, and every other command's message row."""
    return {
        "user": conv.ref.user,
        "conversation": conv.ref.name,
        "archived": conv.ref.archived,
        "index": index,
        "role": msg.role,
        "content": msg.content,
        "timestamp": msg.timestamp,
        "metadata": msg.metadata,
    }


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


def _dumps(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)``, without building an encoder for every call as that does."""
    return _ENCODE_JSON(value)


_ENCODE_JSON = json.JSONEncoder(ensure_ascii=False).encode


# --- json and jsonl ------------------------------------------------------------------------


def write_conversation_object(out: IO[str], conv: Selected, with_identity: bool, exported_at: str, pretty: bool = False) -> None:
    """The reference implementation's export shape (plus identity when several are exported), message by message.

    The text is exactly ``json.dumps`` of the whole object (``indent=2`` when
    ``pretty``), without ever holding the whole conversation as one string.
    """
    head: dict[str, Any] = {"userId": conv.ref.user}
    if with_identity:
        head["conversation"] = conv.ref.name
        head["archived"] = conv.ref.archived
    head["timestamp"] = exported_at
    head["messageCount"] = len(conv.messages)
    head["messages"] = []
    if pretty:
        text = json.dumps(head, ensure_ascii=False, indent=2)  # ends with '"messages": []\n}'
        out.write(text[: -len("[]\n}")] + ("[" if conv.messages else "[]\n}"))
        for n, (_, msg) in enumerate(conv.messages):
            item = json.dumps(msg.to_raw(), ensure_ascii=False, indent=2).replace("\n", "\n    ")  # LF only ever separates JSON tokens
            out.write(("\n    " if not n else ",\n    ") + item)
        if conv.messages:
            out.write("\n  ]\n}")
        return
    out.write(_dumps(head)[: -len("[]}")] + "[")
    for n, (_, msg) in enumerate(conv.messages):
        out.write((", " if n else "") + _dumps(msg.to_raw()))
    out.write("]}")


def write_json(out: IO[str], selected: Iterable[Selected], single: bool) -> ExportResult:
    """One object for a single conversation; otherwise an array written one conversation at a time."""
    exported_at = export_time()
    conversations = messages = 0
    if single:
        for conv in selected:
            write_conversation_object(out, conv, False, exported_at, pretty=True)
            out.write("\n")
            return ExportResult(1, len(conv.messages), {})
        out.write("null\n")
        return ExportResult(0, 0, {})
    out.write("[")
    for conv in selected:
        out.write("\n" if not conversations else ",\n")
        write_conversation_object(out, conv, True, exported_at)
        conversations += 1
        messages += len(conv.messages)
    out.write("\n]\n" if conversations else "]\n")
    return ExportResult(conversations, messages, {})


def write_jsonl(out: IO[str], selected: Iterable[Selected | Formatted]) -> ExportResult:
    """One :func:`message_record` per line, byte for byte what ``json.dumps`` of it gives (see :func:`jsonl_text`)."""
    return _write_each(out, selected, jsonl_text)


def _write_each(out: IO[str], selected: Iterable[Selected | Formatted], text: Callable[[Selected], str]) -> ExportResult:
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


def jsonl_text(conv: Selected) -> str:
    """A conversation's JSONL lines.

    Each line is assembled from pieces (the identity once per conversation,
    each string through the JSON encoder's own string escaper): the export
    spends its time reading, not building dictionaries.
    """
    from json.encoder import encode_basestring as text  # what json.dumps(ensure_ascii=False) uses

    if not conv.messages:
        return ""
    head = f'{{"user": {text(conv.ref.user)}, "conversation": {text(conv.ref.name)}, "archived": {"true" if conv.ref.archived else "false"}, "index": '
    return "".join(
        [
            f'{head}{index}, "role": {text(msg.role)}, "content": {text(msg.content)}, "timestamp": {text(msg.timestamp)}, '
            f'"metadata": {"null" if msg.metadata is None else _dumps(msg.metadata)}}}\n'
            for index, msg in conv.messages
        ]
    )


# --- csv -----------------------------------------------------------------------------------

_FORMULA_START = frozenset("=+-@\t\r\n\0")


def _quote_first(cell: str) -> bool:
    """Whether a cell starts with the ``'`` that :func:`neutralise` puts before a formula character or a quote."""
    return len(cell) > 1 and cell[0] == "'" and (cell[1] in _FORMULA_START or cell[1] == "'")


def neutralise(cell: str) -> str:
    """Make a cell a spreadsheet shows as text (see the module docstring); exactly undone by :func:`restore_cell`."""
    return "'" + cell if cell and (cell[0] in _FORMULA_START or _quote_first(cell)) else cell


def restore_cell(cell: str) -> str:
    """The cell as it was before :func:`neutralise`."""
    return cell[1:] if _quote_first(cell) else cell


def write_csv(out: IO[str], selected: Iterable[Selected | Formatted], neutralised: bool = True) -> ExportResult:
    import csv

    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(CSV_COLUMNS)
    return _write_each(out, selected, lambda conv: csv_text(conv, neutralised))


def csv_text(conv: Selected, neutralised: bool = True) -> str:
    """A conversation's CSV rows (RFC 4180: every cell quoted, CRLF)."""
    import csv
    import io

    text = neutralise if neutralised else str
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    user, name, archived = text(conv.ref.user), text(conv.ref.name), "true" if conv.ref.archived else "false"
    for index, msg in conv.messages:
        model, tokens = model_and_tokens(msg.metadata)
        writer.writerow(
            (
                user,
                name,
                archived,
                str(index),
                text(msg.timestamp),
                text(msg.role),
                text(msg.content),
                text(model or ""),
                "" if tokens is None else str(tokens),
                "" if msg.metadata is None else text(_dumps(msg.metadata)),
            )
        )
    return buffer.getvalue()


# The formats whose conversations are formatted one by one (on every core by :func:`stream`): (conversation, neutralised) -> text.
_FORMATTERS: dict[str, Callable[[Selected, bool], str]] = {"jsonl": lambda conv, _neutralised: jsonl_text(conv), "csv": csv_text}


# --- markdown ----------------------------------------------------------------------------------

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


# --- fine-tuning formats ----------------------------------------------------------------------

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
            out.write((", " if n else "") + _dumps(item))
        out.write("]}\n")
        conversations += 1
        messages += len(conv.messages)
    return ExportResult(conversations, messages, dict(skipped))


# --- sqlite ------------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    conversation TEXT NOT NULL,
    archived INTEGER NOT NULL CHECK (archived IN (0, 1)),
    message_count INTEGER NOT NULL,
    first_timestamp TEXT,
    last_timestamp TEXT
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    "index" INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    model TEXT,
    total_tokens INTEGER,
    metadata TEXT
);
"""
# Built after the rows are in: one sort per index instead of a B-tree update per row.
SQLITE_INDEXES = """
CREATE INDEX conversations_user ON conversations (user);
CREATE UNIQUE INDEX messages_conversation ON messages (conversation_id, "index");
CREATE INDEX messages_timestamp ON messages (timestamp);
"""
SQLITE_BATCH = 20_000  # messages per transaction


def write_sqlite(path: str, selected: Iterable[Selected], check: Callable[[], None] | None = None) -> ExportResult:
    """Write a new database at ``path`` (an empty file the caller created).

    No rollback journal: the file is a temp file that is renamed into place
    only when complete, so a failure leaves nothing to recover. ``check`` is
    called once the database has written its first page into the file.
    """
    import sqlite3

    conversations = messages = pending = 0
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON;")
            db.executescript(SQLITE_SCHEMA)
            if check is not None:
                check()
            db.execute("BEGIN")
            for conv in selected:
                first, last = time_span(conv.messages)
                row = (conv.ref.user, conv.ref.name, int(conv.ref.archived), len(conv.messages), first, last)
                cid = db.execute(
                    "INSERT INTO conversations (user, conversation, archived, message_count, first_timestamp, last_timestamp) VALUES (?, ?, ?, ?, ?, ?)", row
                ).lastrowid
                db.executemany(
                    'INSERT INTO messages (conversation_id, "index", timestamp, role, content, model, total_tokens, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                    (_message_row(cid, index, msg) for index, msg in conv.messages),
                )
                conversations += 1
                messages += len(conv.messages)
                pending += len(conv.messages)
                if pending >= SQLITE_BATCH:
                    db.execute("COMMIT")
                    db.execute("BEGIN")
                    pending = 0
            db.execute("COMMIT")
            db.executescript(SQLITE_INDEXES)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot write the database {path}: {exc}") from None
    return ExportResult(conversations, messages, {})


def _message_row(cid: int | None, index: int, msg: Message) -> tuple[Any, ...]:
    model, tokens = model_and_tokens(msg.metadata)
    return (cid, index, msg.timestamp, msg.role, msg.content, model, tokens, None if msg.metadata is None else _dumps(msg.metadata))


# --- where it goes -----------------------------------------------------------------------------


class OutputFile:
    """``-o FILE``: written to a temp file beside it, then moved into place.

    The target may not be a symlink (never followed, not even with ``force``)
    or anything but a regular file; an existing file is replaced only with
    ``force``, and without it the move is a hard link, which fails rather than
    overwrite a file that appeared meanwhile. The temp file is created with
    ``O_EXCL | O_NOFOLLOW`` and checked to still be the file we created before
    it is moved; on any failure it is removed and the target is untouched. The
    file gets ``mode`` exactly (exports hold the journal's private text).
    """

    def __init__(self, path: str, force: bool = False, mode: int = 0o600) -> None:
        self.path = path
        self.force = force
        self.mode = mode
        self.folder, self.name = os.path.split(path)
        if not self.name or self.name in (".", ".."):
            raise InvalidInput(f"-o {path}: not a file name")
        self.temp = f".{self.name[:200]}{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
        self.dir_fd = -1
        self.fd = -1
        self._text: IO[str] | None = None

    @property
    def temp_path(self) -> str:
        return os.path.join(self.folder, self.temp)

    def __enter__(self) -> OutputFile:
        try:
            self.dir_fd = os.open(self.folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise storage_error(exc, "open the folder of", self.path) from None
        try:
            self._check_target()
            self.fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, self.mode, dir_fd=self.dir_fd)
            os.fchmod(self.fd, self.mode)
        except OSError as exc:
            self._close()
            raise storage_error(exc, "create a temporary file for", self.path) from None
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                raise storage_error(exc, "write", self.path) from None
            return
        try:
            self._commit()
        except BaseException:
            self._discard()
            raise
        self._close()

    def text(self) -> IO[str]:
        """A UTF-8 text stream into the temp file."""
        if self._text is None:
            self._text = open(self.fd, "w", encoding="utf-8", newline="", closefd=False)
        return self._text

    def check_ours(self, written: bool = False) -> None:
        """Refuse if the temp file's name no longer leads to the file we created (a swapped-in symlink),
        or, with ``written``, if the file is still empty (whatever wrote by name wrote elsewhere)."""
        try:
            named = os.stat(self.temp, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        held = os.fstat(self.fd)
        if named is None or not stat.S_ISREG(named.st_mode) or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino) or (written and not held.st_size):
            raise UnsafePath(f"the temporary file for {self.path} was replaced while it was written; nothing was saved")

    def _check_target(self) -> None:
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{self.path} is a symlink; dialogctl does not write through links (remove it or choose another name)")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{self.path} exists and is not a regular file")
        if not self.force:
            raise InvalidInput(f"{self.path} exists; pass --force to replace it")

    def _commit(self) -> None:
        try:
            if self._text is not None:
                self._text.flush()
            os.fsync(self.fd)
            self.check_ours()
            if self.force:
                self._check_target()
                os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                self._link_into_place()
            os.fsync(self.dir_fd)
        except OSError as exc:
            raise storage_error(exc, "write", self.path) from None

    def _link_into_place(self) -> None:
        try:
            os.link(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)
        except FileExistsError:
            raise InvalidInput(f"{self.path} appeared while the export ran; pass --force to replace it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
                raise
            # A filesystem without hard links: check, then rename (a narrow race, and only with a file we would refuse anyway).
            self._check_target()
            os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            return
        os.unlink(self.temp, dir_fd=self.dir_fd)

    def _discard(self) -> None:
        if self.dir_fd >= 0:
            try:
                os.unlink(self.temp, dir_fd=self.dir_fd)
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self._text is not None:
            try:
                self._text.close()
            except OSError:
                pass
            self._text = None
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1


class ExportOptions(NamedTuple):
    format: str = "jsonl"
    single: bool = False  # json: one object instead of an array
    neutralised: bool = True  # csv: neutralise formula cells
    system: str | None = None  # openai/sharegpt: a system message to prepend

    def check(self, to_file: bool) -> None:
        if self.format not in FORMATS:
            raise InvalidInput(f"unknown export format {self.format!r}; use one of {', '.join(FORMATS)}")
        if self.format == "sqlite" and not to_file:
            raise InvalidInput("the sqlite format writes a database file: pass -o FILE")
        if not self.neutralised and self.format != "csv":
            raise InvalidInput("--raw-csv applies only to --format csv")
        if self.system is not None and self.format not in ("openai", "sharegpt"):
            raise InvalidInput("--system applies only to --format openai or sharegpt")


def write_export(target: IO[str] | OutputFile, conversations: Iterable[Selected | Formatted], options: ExportOptions) -> ExportResult:
    """Write the selection (from :func:`stream` or :func:`select`) to a text stream or an :class:`OutputFile` in the chosen format."""
    options.check(isinstance(target, OutputFile))
    selected = cast(Iterable[Selected], conversations)  # only jsonl and csv (_FORMATTERS) are ever given formatted text
    if options.format == "sqlite":
        assert isinstance(target, OutputFile)
        file = target
        # SQLite opens files by name: check the name right before, and that it wrote into our file right after.
        file.check_ours()
        return write_sqlite(file.temp_path, selected, check=lambda: file.check_ours(written=True))
    out = target.text() if isinstance(target, OutputFile) else target
    if options.format == "jsonl":
        return write_jsonl(out, conversations)
    if options.format == "csv":
        return write_csv(out, conversations, options.neutralised)
    if options.format == "json":
        return write_json(out, selected, options.single)
    if options.format == "markdown":
        return write_markdown(out, selected)
    return write_training(out, selected, options.format, options.system)
