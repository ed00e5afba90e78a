"""``sqlite``: a database file with ``conversations`` and ``messages`` tables, and a full-text index of the content.

The index is the convention ``sqlite-utils search`` and Datasette's search
detect: an external-content FTS5 table ``messages_fts`` over ``messages``
(``content="messages"``, ``content_rowid="id"``, one column ``content``), built
in one pass once every row is in. It holds no copy of the text. A Python
whose SQLite lacks FTS5 writes the same database without it, and the result
says so in :attr:`ExportResult.notes`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast

from ...errors import InvalidInput, StorageError, storage_error
from ...fileformat.codec import input_message
from ...models import Message
from ..outputfile import OutputFile
from ..reading import Found, ImportInput, conversation_identity, load_json
from ..records import ExportFormat, ExportOptions, ExportResult, Formatted, dumps, model_and_tokens, time_span
from ..selection import Selected

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
    metadata TEXT,
    message_id TEXT NOT NULL
);
"""


# Built after the rows are in: one sort per index instead of a B-tree update per row.
SQLITE_INDEXES = """
CREATE INDEX conversations_user ON conversations (user);
CREATE UNIQUE INDEX messages_conversation ON messages (conversation_id, "index");
CREATE INDEX messages_timestamp ON messages (timestamp);
CREATE INDEX messages_message_id ON messages (message_id);
"""


# The index sqlite-utils and Datasette look for (content="messages"); filled from the table by 'rebuild'.
SQLITE_FTS = """
CREATE VIRTUAL TABLE messages_fts USING fts5(content, content="messages", content_rowid="id");
INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
"""
NO_FTS5 = "the database has no full-text index (messages_fts): this Python's SQLite has no FTS5; everything else was written"


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
                    'INSERT INTO messages (conversation_id, "index", timestamp, role, content, model, total_tokens, metadata, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
                    (_message_row(cid, index, msg, mid) for (index, msg), mid in zip(conv.messages, conv.id_list(), strict=True)),
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
            notes = () if _full_text_index(db) else (NO_FTS5,)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot write the database {path}: {exc}") from None
    return ExportResult(conversations, messages, {}, notes)


def _full_text_index(db: Any) -> bool:
    """Build ``messages_fts``; False when this SQLite has no FTS5 (any other failure is raised)."""
    import sqlite3

    try:
        db.executescript(SQLITE_FTS)
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such module"):  # CREATE VIRTUAL TABLE failed: nothing was made
            return False
        raise
    return True


def _message_row(cid: int | None, index: int, msg: Message, mid: str) -> tuple[Any, ...]:
    model, tokens = model_and_tokens(msg.metadata)
    return (cid, index, msg.timestamp, msg.role, msg.content, model, tokens, None if msg.metadata is None else dumps(msg.metadata), mid)


def _write(target: IO[str] | OutputFile, conversations: Iterable[Selected | Formatted], options: ExportOptions) -> ExportResult:
    assert isinstance(target, OutputFile)  # needs_file: the registry refuses stdout
    file = target
    # SQLite opens files by name: check the name right before, and that it wrote into our file right after.
    file.check_ours()
    return write_sqlite(file.temp_path, cast(Iterable[Selected], conversations), check=lambda: file.check_ours(written=True))


SQLITE = ExportFormat(
    "sqlite",
    "a database",
    _write,
    needs_file=True,
    read=lambda data, source, now, raw_csv: sqlite_records(data, source, now),
    import_help="dialogctl's database",
)


# --- reading ----------------------------------------------------------------------------


def sqlite_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    """The rows of a database file, read in place (stdin is copied to a temporary file first: SQLite reads files)."""
    import sqlite3
    import tempfile
    from collections import Counter
    from urllib.parse import quote

    copy = None
    try:
        if data.path is None:
            copy = tempfile.NamedTemporaryFile(prefix="dialogctl-import-", suffix=".db")
            try:
                data.copy_to(copy.fileno())
            except OSError as exc:
                raise storage_error(exc, "copy", f"{source} to a temporary file") from None
            path = copy.name
        else:
            path = data.path
        # Read-only and immutable: nothing is ever written beside the file (no journal, no -shm).
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro&immutable=1", uri=True)
        found: Counter[int] = Counter()
        try:
            db.execute("PRAGMA query_only = ON")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"conversations", "messages"} <= tables:
                raise InvalidInput(f"{source}: not a database written by 'dialogctl export --format sqlite' (no conversations and messages tables)")
            expected = dict(db.execute("SELECT id, message_count FROM conversations"))
            rows = db.execute(
                "SELECT c.id, c.user, c.conversation, c.archived, m.id, m.role, m.content, m.timestamp, m.metadata "
                'FROM messages m JOIN conversations c ON c.id = m.conversation_id ORDER BY c.id, m."index"'
            )
            for cid, user, conversation, archived, mid, role, content, timestamp, meta in rows:
                where = f"{source}: messages row {mid}"
                if archived not in (0, 1):
                    raise InvalidInput(f"{source}: conversations row {cid}: column 'archived' must be 0 or 1")
                metadata = load_json(meta, f"{where}: column 'metadata'") if isinstance(meta, str) else meta
                if metadata is not None and not isinstance(metadata, dict):
                    raise InvalidInput(f"{where}: column 'metadata' must hold a JSON object")
                raw = {"role": role, "content": content, "timestamp": timestamp, "metadata": metadata}
                yield conversation_identity(user, conversation, bool(archived), where), input_message(raw, where, now, "column")
                found[cid] += 1
        except sqlite3.Error as exc:
            raise InvalidInput(f"{source}: not a readable SQLite database of dialogctl's shape ({exc})") from None
        finally:
            db.close()
        for cid, count in expected.items():
            if found[cid] != count:
                raise InvalidInput(f"{source}: conversations row {cid}: message_count says {count} but the messages table holds {found[cid]}")
    finally:
        if copy is not None:
            copy.close()
