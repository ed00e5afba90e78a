"""Imports: messages from a file into one conversation of the journal, all or nothing.

Formats (:func:`detect_format` tells them apart by file name and content):

* ``json``: the reference implementation's export ``{userId, timestamp,
  messageCount, messages}``, and dialogctl's json exports (that object, or an
  array of them) and ``show --format json``;
* ``jsonl``: dialogctl's export lines, or ``append --jsonl`` lines;
* ``csv``: RFC 4180 with a header row naming at least ``role`` and
  ``content`` (dialogctl's export, or the reference's ``timestamp,role,content``);
  quoted cells may hold commas, quotes and line breaks. In a file with
  dialogctl's own header the formula neutralising of the export is undone
  (:func:`dialogctl.exporters.restore_cell`) unless ``raw_csv`` says the file
  was exported with ``--raw-csv``; ``model`` and ``totalTokens`` are derived from
  ``metadata`` and ignored;
* ``openai``: a ``{"messages": [{"role", "content", ...}]}`` line; keys other
  than role and content (``name``, ``weight``, ``tool_calls``...) are kept in
  the message's metadata;
* ``sqlite``: a database written by ``export --format sqlite``.

Every record is validated before anything is written, and an error names the
record (line, JSON path or table row) and the field, never the message text.
Messages without a timestamp (openai lines never have one) get the time of
the import. A file holding messages of more than one conversation is refused:
an import fills one conversation.

Writing is one atomic step, so a failure or a crash leaves the journal as it
was or with the whole import in it:

* into the current conversation or a named one: one locked ``O_APPEND`` write
  (:meth:`Journal.append` with ``one_write``). ``archiveThreshold`` still
  applies, without splitting the batch: a non-empty conversation the import
  would take past the threshold is archived first, and an import that alone
  reaches it is archived right after it is written;
* as a new archive: the file is written whole under the user's lock and never
  replaces an existing archive.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from . import layout as L
from .codec import check_message
from .errors import InvalidInput, StorageError
from .exporters import CSV_COLUMNS, restore_cell
from .journal import Journal
from .models import ROLES, AppendResult, ConversationRef, Message
from .storage import Folder
from .times import TIMESTAMP_RULE, parse_timestamp, utc_now_iso

FORMATS = ("json", "jsonl", "csv", "openai", "sqlite")
SQLITE_MAGIC = b"SQLite format 3\x00"

_MESSAGE_FIELDS = frozenset({"role", "content", "timestamp", "metadata"})
_IDENTITY_FIELDS = frozenset({"user", "conversation", "archived", "index"})  # dialogctl's export lines; index is recomputed
_OBJECT_FIELDS = frozenset({"userId", "user", "timestamp", "messageCount", "messages", "conversation", "archived"})
_SHOWN_ROLE = re.compile(r"[A-Za-z_-]{1,32}")

Record = tuple[str, Message]  # (which conversation of the file it belongs to, message)


# --- telling formats apart -------------------------------------------------------------


def detect_format(name: str | None, data: bytes) -> str:
    """The format of an import from its file name (``None`` for stdin) and content."""
    if data.startswith(SQLITE_MAGIC):
        return "sqlite"
    ext = os.path.splitext(name or "")[1].lower()
    if ext in (".csv", ".json"):
        return ext[1:]
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        try:
            first = json.loads(head.split(b"\n", 1)[0])
        except ValueError:
            return "jsonl" if ext in (".jsonl", ".ndjson") else "json"  # an object over several lines
        except RecursionError:
            return "jsonl"  # a first line nested too deep to parse: the jsonl reader names it
        if isinstance(first, dict) and "messages" in first:
            return "json" if "userId" in first or "user" in first else "openai"
        return "jsonl"
    if not head or ext in (".jsonl", ".ndjson"):
        return "jsonl"
    if b"," in head.split(b"\n", 1)[0]:
        return "csv"
    raise InvalidInput(f"cannot tell the format of {name or 'stdin'}; pass --format json, jsonl, csv, openai or sqlite")


# --- reading ---------------------------------------------------------------------------------


def parse_import(content: str | bytes, fmt: str, source: str, raw_csv: bool = False) -> list[Message]:
    """Every message of an import, validated; raises :class:`InvalidInput` naming the first bad record.

    ``content`` is the decoded text, or the raw bytes for ``sqlite``.
    """
    now = utc_now_iso()
    if fmt == "sqlite":
        if isinstance(content, str):
            raise InvalidInput(f"{source}: a SQLite database is binary")
        records = _sqlite_records(content, source, now)
    elif isinstance(content, bytes):
        raise InvalidInput(f"{source}: the {fmt} format is text")
    elif fmt == "json":
        records = _json_records(content, source, now)
    elif fmt == "jsonl":
        records = _jsonl_records(content, source, now)
    elif fmt == "csv":
        records = _csv_records(content, source, now, raw_csv)
    elif fmt == "openai":
        records = _openai_records(content, source, now)
    else:
        raise InvalidInput(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    conversations = list(dict.fromkeys(identity for identity, _ in records))
    if len(conversations) > 1:
        shown = ", ".join(conversations[:3]) + (", ..." if len(conversations) > 3 else "")
        raise InvalidInput(
            f"{source} holds messages of {len(conversations)} conversations ({shown}); an import fills one conversation",
            hint="export one conversation at a time (--conversation CID or --archive ID), or pick one out with jq",
        )
    return [msg for _, msg in records]


def _message(raw: dict[str, Any], where: str, now: str, field: str = "field") -> Message:
    role = raw.get("role")
    if not isinstance(role, str):
        raise InvalidInput(f"{where}: {field} 'role' must be text")
    if role not in ROLES:
        # A role is shown only when it looks like one: a misplaced column could hold message text.
        shown = repr(role) if _SHOWN_ROLE.fullmatch(role) else f"of {len(role)} characters"
        raise InvalidInput(f"{where}: {field} 'role': unknown role {shown}; use one of {', '.join(ROLES)}")
    content = raw.get("content")
    if not isinstance(content, str):
        raise InvalidInput(f"{where}: {field} 'content' must be text")
    timestamp = raw.get("timestamp")
    if timestamp is None:
        timestamp = now
    elif not isinstance(timestamp, str) or parse_timestamp(timestamp) is None:
        raise InvalidInput(f"{where}: {field} 'timestamp' must be {TIMESTAMP_RULE}")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: {field} 'metadata' must be an object")
    msg = Message(role, content, timestamp, metadata)
    try:
        check_message(msg)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    return msg


def _identity(user: Any, conversation: Any, archived: Any, where: str) -> str:
    for name, value, kind in (("user", user, str), ("conversation", conversation, str), ("archived", archived, bool)):
        if value is not None and not isinstance(value, kind):
            raise InvalidInput(f"{where}: field '{name}' must be {'text' if kind is str else 'true or false'}")
    return f"{user or '?'}/{conversation or 'current'}{' (archived)' if archived else ''}"


def _unknown(keys: Any, known: frozenset[str], where: str, field: str = "field") -> None:
    unknown = sorted(set(keys) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown {field}(s) {', '.join(repr(k[:40]) for k in unknown[:5])}")


def _load_json(text: str, where: str, whole_file: bool = False) -> Any:
    """Parse JSON strictly (no NaN, no repeated keys); a syntax error names its line and column in a whole file, else its character."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key[:40]!r} appears twice in one object")
            seen.add(key)
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if whole_file else f"character {exc.pos + 1}"
        raise InvalidInput(f"{where}: not valid JSON at {at} ({exc.msg})") from None
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    except RecursionError:  # too deep for the parser: found again by a loop, to name its line and path
        from .codec import MAX_METADATA_DEPTH
        from .nesting import deepest

        found = deepest(text, MAX_METADATA_DEPTH)
        if found is None or not found.path:
            raise InvalidInput(f"{where}: nested deeper than {MAX_METADATA_DEPTH} levels") from None
        line = f" line {found.line}" if whole_file else ""
        raise InvalidInput(f"{where}{line}: {found.describe(MAX_METADATA_DEPTH)}") from None


def _json_records(text: str, source: str, now: str) -> list[Record]:
    value = _load_json(text, source, whole_file=True)
    if isinstance(value, dict):
        objects = [("", value)]
    elif isinstance(value, list):
        objects = [(f"[{i}].", item) for i, item in enumerate(value)]
    else:
        raise InvalidInput(f"{source}: expected an object with userId and messages, or an array of them")
    records: list[Record] = []
    for path, obj in objects:
        where = f"{source}: {path.rstrip('.') or 'the top-level object'}"
        if not isinstance(obj, dict):
            raise InvalidInput(f"{where}: expected an object with userId and messages")
        _unknown(obj, _OBJECT_FIELDS, where)
        messages = obj.get("messages")
        if not isinstance(messages, list):
            raise InvalidInput(f"{where}: field 'messages' must be an array")
        count = obj.get("messageCount")
        if count is not None and count != len(messages):
            raise InvalidInput(f"{where}: messageCount says {count} but messages holds {len(messages)}")
        identity = _identity(obj.get("userId", obj.get("user")), obj.get("conversation"), obj.get("archived"), where)
        for i, raw in enumerate(messages):
            at = f"{source}: {path}messages[{i}]"
            if not isinstance(raw, dict):
                raise InvalidInput(f"{at}: expected an object with role, content and timestamp")
            _unknown(raw, _MESSAGE_FIELDS | {"index"}, at)
            records.append((identity, _message(raw, at, now)))
    return records


def _lines(text: str) -> list[tuple[int, str]]:
    # Only LF ends a line: JSON text may hold raw U+2028 and other characters str.splitlines() would cut at.
    return [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def _jsonl_records(text: str, source: str, now: str) -> list[Record]:
    records: list[Record] = []
    for number, line in _lines(text):
        where = f"{source} line {number}"
        raw = _load_json(line, where)
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where}: expected a JSON object")
        _unknown(raw, _MESSAGE_FIELDS | _IDENTITY_FIELDS, where)
        identity = _identity(raw.get("user"), raw.get("conversation"), raw.get("archived"), where)
        records.append((identity, _message(raw, where, now)))
    return records


def _openai_records(text: str, source: str, now: str) -> list[Record]:
    records: list[Record] = []
    for number, line in _lines(text):
        where = f"{source} line {number}"
        raw = _load_json(line, where)
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
            raise InvalidInput(f"{where}: expected an object with a 'messages' array")
        _unknown(raw, frozenset({"messages"}), where)
        for i, item in enumerate(raw["messages"]):
            at = f"{where}, messages[{i}]"
            if not isinstance(item, dict):
                raise InvalidInput(f"{at}: expected an object with role and content")
            extra = {k: v for k, v in item.items() if k not in ("role", "content")}
            records.append((f"line {number}", _message({"role": item.get("role"), "content": item.get("content"), "metadata": extra or None}, at, now)))
    return records


def _csv_records(text: str, source: str, now: str, raw_csv: bool) -> list[Record]:
    import csv
    import io

    csv.field_size_limit(2**31 - 1)  # content has no length limit
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[Record] = []
    try:
        header = next(reader, None)
        if header is None:
            return records
        columns = [name.strip() for name in header]
        _unknown(columns, frozenset(CSV_COLUMNS), f"{source} line 1 (header)", "column")
        if len(set(columns)) != len(columns) or not {"role", "content"} <= set(columns):
            raise InvalidInput(f"{source} line 1 (header): the header must name 'role' and 'content', each column once")
        restore = tuple(columns) == CSV_COLUMNS and not raw_csv
        line, number = reader.line_num + 1, 0
        for row in reader:
            where, line = f"{source} line {line} (record {number + 1})", reader.line_num + 1
            if not row:
                continue  # a blank line
            number += 1
            if len(row) != len(columns):
                raise InvalidInput(f"{where}: {len(row)} cells where the header has {len(columns)}")
            cells = dict(zip(columns, (restore_cell(c) for c in row) if restore else row, strict=True))
            records.append(_csv_record(cells, where, now))
    except csv.Error as exc:
        raise InvalidInput(f"{source} line {reader.line_num}: not valid CSV ({exc})") from None
    return records


def _csv_record(cells: dict[str, str], where: str, now: str) -> Record:
    archived: bool | None = None
    if cells.get("archived"):
        if cells["archived"] not in ("true", "false"):
            raise InvalidInput(f"{where}: column 'archived' must be true or false")
        archived = cells["archived"] == "true"
    if cells.get("index") and not cells["index"].isdigit():
        raise InvalidInput(f"{where}: column 'index' must be a whole number")
    metadata: Any = None
    if cells.get("metadata"):
        metadata = _load_json(cells["metadata"], f"{where}: column 'metadata'")
        if not isinstance(metadata, dict):
            raise InvalidInput(f"{where}: column 'metadata' must be a JSON object")
    raw = {"role": cells["role"], "content": cells["content"], "timestamp": cells.get("timestamp") or None, "metadata": metadata}
    return _identity(cells.get("user") or None, cells.get("conversation") or None, archived, where), _message(raw, where, now, "column")


def _sqlite_records(data: bytes, source: str, now: str) -> list[Record]:
    import sqlite3
    from collections import Counter

    db = sqlite3.connect(":memory:")
    records: list[Record] = []
    found: Counter[int] = Counter()
    try:
        db.deserialize(data)
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
            metadata = _load_json(meta, f"{where}: column 'metadata'") if isinstance(meta, str) else meta
            if metadata is not None and not isinstance(metadata, dict):
                raise InvalidInput(f"{where}: column 'metadata' must hold a JSON object")
            raw = {"role": role, "content": content, "timestamp": timestamp, "metadata": metadata}
            records.append((_identity(user, conversation, bool(archived), where), _message(raw, where, now, "column")))
            found[cid] += 1
    except sqlite3.Error as exc:
        raise InvalidInput(f"{source}: not a readable SQLite database of dialogctl's shape ({exc})") from None
    finally:
        db.close()
    for cid, count in expected.items():
        if found[cid] != count:
            raise InvalidInput(f"{source}: conversations row {cid}: message_count says {count} but the messages table holds {found[cid]}")
    return records


# --- writing ---------------------------------------------------------------------------------


def import_messages(
    journal: Journal, user: str, messages: list[Message], conversation: str | None = None, as_archive: str | None = None, dry_run: bool = False
) -> AppendResult:
    """Put validated messages into one conversation of ``user``, all or nothing (see the module docstring).

    With ``dry_run`` nothing is written (not even a lock file): the result's
    ``messages`` is what the target holds now.
    """
    L.validate_user_id(user)
    if conversation is not None and as_archive is not None:
        raise InvalidInput("--conversation and --as-archive name different targets; pass one")
    if conversation is not None and conversation != "current":
        L.validate_name(conversation)
    if as_archive is not None:
        L.validate_name(as_archive, "archive id")
    if not messages:
        raise InvalidInput("nothing to import")
    count = len(messages)
    if dry_run:
        return _dry_run(journal, user, count, conversation, as_archive)
    if as_archive is None:
        return journal.append(user, messages, conversation, one_write=True, command="import")
    ref = ConversationRef(user, "archive", as_archive)
    journal.locked(user, "import", lambda dialogs: _import_archive(journal, dialogs, ref, messages), create=True)
    return AppendResult(user, as_archive, count, count)


def _import_archive(journal: Journal, dialogs: Folder, ref: ConversationRef, messages: list[Message]) -> None:
    """A new archive, and (for a user who has none) the empty current conversation the servers leave beside every archive.

    A user with archives always has ``current.yaml`` (the servers' archive
    leaves it empty; ``verify`` calls its absence an unfinished archive), so
    importing the first conversation of a new user as an archive leaves the
    user as an archive would. If that empty file cannot be made, the archive
    goes again: an import is all or nothing.
    """
    journal.write_conversation(dialogs, ref, messages, exclusive=True)
    if journal.layout().conversations != "current" or dialogs.stat(L.CURRENT_FILE) is not None:
        return
    try:
        dialogs.create_empty(L.CURRENT_FILE, journal.modes)
    except StorageError:
        with dialogs.open_folder((L.ARCHIVE_DIR,)) as archived:
            archived.remove_quietly(L.archive_file(ref.id or ""))
        raise


def _dry_run(journal: Journal, user: str, count: int, conversation: str | None, as_archive: str | None) -> AppendResult:
    exists = journal.user_exists(user)
    if as_archive is not None:
        ref = ConversationRef(user, "archive", as_archive)
        if exists and ref in {f.ref for f in journal.conversation_files(user)}:
            raise InvalidInput(f"{ref.describe()} already exists")
        return AppendResult(user, as_archive, count, 0)
    if not exists:
        return AppendResult(user, conversation or "current", count, 0)
    ref = journal.resolve(user, conversation)
    return AppendResult(user, ref.name, count, len(journal.read(ref, missing_ok=True).messages))
