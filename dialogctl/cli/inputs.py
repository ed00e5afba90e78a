"""Reading what the operator pipes in: text, JSONL messages, ``key=value`` metadata."""

from __future__ import annotations

import json
import marshal
import os
import sys
from array import array
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import InvalidInput, storage_error
from ..fileformat.codec import MAX_METADATA_DEPTH, check_json_like, check_message
from ..models import ROLES, Message
from ..times import TIMESTAMP_RULE, format_timestamp, parse_time_spec, parse_timestamp, utc_now_iso

if TYPE_CHECKING:
    from ..journal.outcomes import Batch, LineRanges  # imported when --jsonl is used: a single append need not load them


def read_stdin(what: str, example: str) -> str:
    """All of stdin as text; a hint instead of hanging when stdin is a terminal."""
    data = stdin_bytes(what, example)
    return decode_input(data.read(), "stdin")


def stdin_bytes(what: str, example: str) -> BinaryIO:
    """Stdin as a binary stream; a hint instead of hanging when stdin is a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidInput(f"{what} is read from stdin, which is a terminal; pipe it in, e.g. {example}")
    if hasattr(sys.stdin, "buffer"):
        return sys.stdin.buffer
    import io

    return io.BytesIO(sys.stdin.read().encode())


def decode_input(data: bytes, where: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{where} is not valid UTF-8 (byte offset {exc.start})") from None


def check_role(role: str, where: str = "--role") -> str:
    if role not in ROLES:
        raise InvalidInput(f"{where}: unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def parse_meta(pairs: list[str]) -> dict[str, Any] | None:
    """``--meta key=value``: the value is JSON when it parses as JSON, else text; dotted keys nest."""
    if not pairs:
        return None
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--meta takes KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        except RecursionError:
            raise InvalidInput(f"--meta {key}: the value is nested deeper than {MAX_METADATA_DEPTH} levels") from None
        target = meta
        parts = key.split(".")
        for part in parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise InvalidInput(f"--meta {key}: {part!r} is already a value")
            target = nested
        target[parts[-1]] = value
    check_json_like(meta, "--meta")  # nested too deep (dotted keys count), a non-finite number...
    return meta


def timestamp_option(text: str | None) -> str:
    if text is None:
        return utc_now_iso()
    return format_timestamp(parse_time_spec(text, "--timestamp"))


_JSONL_KEYS = {"role", "content", "timestamp", "metadata", "user", "conversation"}
_IGNORED_KEYS = {"archived", "index"}  # fields of dialogctl's own JSONL export


class SpooledMessages:
    """Validated ``--jsonl`` messages, held in an unlinked temporary file instead of memory.

    Grouped by (user, conversation) in the order each group first appears;
    memory holds two integers per message (where its record lies in the file)
    and the input line numbers of each group as ranges. The file is mode 0600
    and has no name, so nothing is left behind, whatever happens to the
    process. Close it (or use it as a context manager) when done.
    """

    def __init__(self) -> None:
        import tempfile

        from ..journal.outcomes import LineRanges

        self._ranges = LineRanges
        self.file = tempfile.TemporaryFile()
        self.groups: dict[tuple[str, str | None], array[int]] = {}
        self.lines: dict[tuple[str, str | None], LineRanges] = {}
        self.count = 0
        self._size = 0

    def __enter__(self) -> SpooledMessages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, key: tuple[str, str | None], msg: Message, line: int = 0) -> None:
        data = marshal.dumps((msg.role, msg.content, msg.timestamp, msg.metadata))
        self.file.write(data)
        places = self.groups.get(key)
        if places is None:
            places = self.groups[key] = array("q")
            self.lines[key] = self._ranges()
        places.append(self._size)
        places.append(len(data))
        self.lines[key].add(line)
        self._size += len(data)
        self.count += 1

    def batches(self) -> list[Batch]:
        """Each group as a batch whose messages are read back from the file only when it is written."""
        from ..journal.outcomes import Batch

        self.file.flush()
        return [
            Batch(user, conversation, len(places) // 2, partial(self._load, places), self.lines[(user, conversation)])
            for (user, conversation), places in self.groups.items()
        ]

    def _load(self, places: array[int]) -> list[Message]:
        fd = self.file.fileno()
        return [Message(*marshal.loads(os.pread(fd, places[i + 1], places[i]))) for i in range(0, len(places), 2)]

    def close(self) -> None:
        self.file.close()


def spool_jsonl_messages(
    stream: BinaryIO, default_user: str | None, default_conversation: str | None, check: Callable[[str, str | None], None]
) -> SpooledMessages:
    """Read and validate every line before anything is written: a bad line is an error naming it, and nothing is appended.

    ``check(user, conversation)`` validates each group the first time it is seen.
    """
    spool = SpooledMessages()
    try:
        offset = 0
        # Only LF ends a line (binary lines split nowhere else): JSON text may hold raw
        # U+2028, U+0085 and other characters that str.splitlines() would cut a message at.
        for number, raw_line in enumerate(stream, 1):
            if number == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
                raw_line = raw_line[3:]
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"stdin is not valid UTF-8 (byte offset {offset + exc.start})") from None
            offset += len(raw_line)
            if not line.strip():
                continue
            user, conversation, msg = jsonl_message(line, f"stdin line {number}", default_user)
            key = (user, conversation if conversation is not None else default_conversation)
            if key not in spool.groups:
                check(*key)
            spool.add(key, msg, number)
    except OSError as exc:
        spool.close()
        raise storage_error(exc, "spool", "the --jsonl input to a temporary file") from None
    except BaseException:
        spool.close()
        raise
    return spool


def jsonl_message(line: str, where: str, default_user: str | None) -> tuple[str, str | None, Message]:
    """One ``--jsonl`` line as (user, conversation, message), or an error naming the line."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise InvalidInput(f"{where}: {too_deep(line)}") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a JSON object")
    unknown = set(raw) - _JSONL_KEYS - _IGNORED_KEYS
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    user = raw.get("user", default_user)
    if not isinstance(user, str) or not user:
        raise InvalidInput(f'{where}: no user (pass USER or give each line a "user" field)')
    role = raw.get("role")
    if not isinstance(role, str):
        raise InvalidInput(f"{where}: field 'role' must be text")
    check_role(role, f"{where}: field 'role'")
    content = raw.get("content")
    if not isinstance(content, str):
        raise InvalidInput(f"{where}: field 'content' must be text")
    timestamp = raw.get("timestamp")
    if timestamp is None:
        timestamp = utc_now_iso()
    elif not isinstance(timestamp, str) or parse_timestamp(timestamp) is None:
        raise InvalidInput(f"{where}: field 'timestamp' must be {TIMESTAMP_RULE}")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: field 'metadata' must be an object")
    conversation = raw.get("conversation")
    if conversation is not None and not isinstance(conversation, str):
        raise InvalidInput(f"{where}: field 'conversation' must be text")
    msg = Message(role, content, timestamp, metadata)
    try:
        check_message(msg)  # what the append would refuse (metadata nested too deep, a lone surrogate): refused here, naming the line
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    return user, conversation, msg


def too_deep(text: str) -> str:
    """What to say about JSON input the parser gave up on for its depth: its field, or its path."""
    from ..fileformat.codec import MAX_METADATA_DEPTH
    from ..nesting import deepest

    found = deepest(text, MAX_METADATA_DEPTH)
    if found is None or found.field is None:
        return f"nested deeper than {MAX_METADATA_DEPTH} levels"
    return f"field {found.field!r} is nested deeper than {MAX_METADATA_DEPTH} levels"
