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
  (:func:`dialogctl.exchange.formats.csv.restore_cell`) unless ``raw_csv`` says the file
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

Reading streams (:func:`read_import`): the input is read once, a piece at a
time (a json file's ``messages`` array element by element, see
:class:`_JsonStream`; a sqlite database in place), and each validated message
goes to a :class:`~dialogctl.fileformat.spool.MessageSpool` on disk, so memory does not
grow with the import.

Writing is all or nothing, so a failure or a crash leaves the journal as it
was or with the whole import in it:

* into the current conversation or a named one: one batch appended under the
  user's lock (:meth:`Journal.append` with ``one_write``), marked as a batch
  in its frames, so a write cut short by a kill reads as nothing at all
  (:mod:`dialogctl.fileformat.codec`), in as many ``write`` calls as its size takes.
  ``archiveThreshold`` still applies, without splitting the batch: a non-empty
  conversation the import would take past the threshold is archived first,
  and an import that alone reaches it is archived right after it is written;
* as a new archive: the file is written whole (temp file, fsync, rename) under
  the user's lock and never replaces an existing archive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from ..disk import layout as L
from ..disk.storage import Folder
from ..errors import InvalidInput, StorageError
from ..fileformat.spool import MessageSpool
from ..journal.core import Journal
from ..models import AppendResult, ConversationRef, Message
from ..times import utc_now_iso
from .reading import HEAD_BYTES, ImportInput, Incomplete, JsonStream
from .registry import IMPORTS, import_format

FORMATS = tuple(IMPORTS)


SQLITE_MAGIC = b"SQLite format 3\x00"


_MAX_NAMED = 1000  # distinct conversations counted exactly in the "several conversations" error


def detect_format(name: str | None, head: bytes) -> str:
    """The format of an import from its file name (``None`` for stdin) and its first bytes (:data:`HEAD_BYTES` of them)."""
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    ext = os.path.splitext(name or "")[1].lower()
    if ext in (".csv", ".json"):
        return ext[1:]
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        line, newline, _ = head.partition(b"\n")
        try:
            first = json.loads(line)
        except ValueError:
            if not newline and len(head) >= HEAD_BYTES // 2:
                # A first line longer than the head: a one-line export, or a long openai line.
                return _long_first_line(line)
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


def _long_first_line(line: bytes) -> str:
    """json or openai, for an object whose first line is longer than the head: by its keys before ``messages``."""
    try:
        text = line.decode("utf-8", "ignore")
        stream = JsonStream(iter([text]), "stdin", complete=False)
        keys = stream.keys_before("messages")
    except (InvalidInput, Incomplete):
        return "json"
    if keys is None:
        return "jsonl"
    return "json" if keys & {"userId", "user"} or "messages" not in keys else "openai"


def read_import(data: ImportInput, fmt: str, source: str, raw_csv: bool = False) -> MessageSpool:
    """Every message of an import, validated, kept in a :class:`~dialogctl.fileformat.spool.MessageSpool` (the caller closes it).

    Raises :class:`InvalidInput` naming the first bad record (line, JSON path or
    table row, and field); nothing is kept then. Memory stays flat however
    large the input: records are read and checked one at a time.
    """
    now = utc_now_iso()
    records = import_format(fmt).read(data, source, now, raw_csv)  # type: ignore[misc]  # import formats have a reader
    spool = MessageSpool()
    conversations: dict[str, None] = {}
    more = False
    try:
        for identity, msg in records:
            if msg is not None:
                spool.add(msg)
            if identity is not None and identity not in conversations:
                if len(conversations) < _MAX_NAMED:
                    conversations[identity] = None
                else:
                    more = True
        if len(conversations) > 1:
            named = list(conversations)
            shown = ", ".join(named[:3]) + (", ..." if len(named) > 3 else "")
            count = f"more than {_MAX_NAMED}" if more else str(len(named))
            raise InvalidInput(
                f"{source} holds messages of {count} conversations ({shown}); an import fills one conversation",
                hint="export one conversation at a time (--conversation CID or --archive ID), or pick one out with jq",
            )
    except BaseException:
        spool.close()
        raise
    return spool


def import_messages(
    journal: Journal, user: str, messages: Sequence[Message], conversation: str | None = None, as_archive: str | None = None, dry_run: bool = False
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


def _import_archive(journal: Journal, dialogs: Folder, ref: ConversationRef, messages: Sequence[Message]) -> None:
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
