"""Reading what the operator pipes in: text, JSONL messages, ``key=value`` metadata."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import InvalidInput, storage_error
from ..fileformat.codec import MAX_METADATA_DEPTH, check_json_like, input_message
from ..models import ROLES, Message
from ..times import format_timestamp, parse_time_spec, utc_now_iso

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


def meta_pair(pair: str) -> tuple[list[str], Any]:
    """One ``--meta KEY=VALUE``: the KEY split at its dots, and the value (JSON when it parses as JSON, else text).

    ``append --meta`` sets metadata with it; ``--meta`` on search, export and show filters by it.
    """
    key, sep, raw = pair.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--meta takes KEY=VALUE, got {pair!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    except RecursionError:
        raise InvalidInput(f"--meta {key}: the value is nested deeper than {MAX_METADATA_DEPTH} levels") from None
    check_json_like(value, f"--meta {key}")  # a non-finite number (NaN matches nothing, and cannot be stored)...
    return key.split("."), value


def parse_meta(pairs: list[str]) -> dict[str, Any] | None:
    """``--meta key=value``: the value is JSON when it parses as JSON, else text; dotted keys nest."""
    if not pairs:
        return None
    meta: dict[str, Any] = {}
    for pair in pairs:
        parts, value = meta_pair(pair)
        target = meta
        for part in parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise InvalidInput(f"--meta {pair.partition('=')[0]}: {part!r} is already a value")
            target = nested
        target[parts[-1]] = value
    check_json_like(meta, "--meta")  # nested too deep (dotted keys count), a non-finite number...
    return meta


def timestamp_option(text: str | None) -> str:
    if text is None:
        return utc_now_iso()
    return format_timestamp(parse_time_spec(text, "--timestamp"))


_JSONL_KEYS = frozenset({"role", "content", "timestamp", "metadata", "user", "conversation"})
_IGNORED_KEYS = frozenset({"archived", "index"})  # fields of dialogctl's own JSONL export
_KNOWN_KEYS = _JSONL_KEYS | _IGNORED_KEYS


class SpooledMessages:
    """Validated ``--jsonl`` messages in a :class:`~dialogctl.fileformat.spool.GroupedSpool`, grouped by (user, conversation).

    Groups keep the order each first appears in; memory holds the input line
    numbers of each group as ranges, and a bounded run of messages. Close it
    (or use it as a context manager) when done.
    """

    def __init__(self) -> None:
        from ..fileformat.spool import GroupedSpool  # only --jsonl needs it: a single append does not load it
        from ..journal.outcomes import LineRanges

        self._ranges = LineRanges
        self.spool = GroupedSpool()
        self.groups: dict[tuple[str, str | None], LineRanges] = {}  # each group's input lines

    def __enter__(self) -> SpooledMessages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, key: tuple[str, str | None], msg: Message, line: int = 0) -> None:
        lines = self.groups.get(key)
        if lines is None:
            lines = self.groups[key] = self._ranges()
        lines.add(line)
        self.spool.add(key, msg)

    def batches(self) -> list[Batch]:
        """Each group as a batch whose messages are read back from the file only when it is written."""
        from ..journal.outcomes import Batch

        return [
            Batch(user, conversation, lines.count, partial(self.spool.load, (user, conversation)), lines, checked=True)
            for (user, conversation), lines in self.groups.items()
        ]

    def close(self) -> None:
        self.spool.close()


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
            if not line or line.isspace():  # blank: what line.strip() empties, without copying the line
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
    if not raw.keys() <= _KNOWN_KEYS:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(raw.keys() - _KNOWN_KEYS))}")
    user = raw.get("user", default_user)
    if not isinstance(user, str) or not user:
        raise InvalidInput(f'{where}: no user (pass USER or give each line a "user" field)')
    msg = input_message(raw, where)
    conversation = raw.get("conversation")
    if conversation is not None and not isinstance(conversation, str):
        raise InvalidInput(f"{where}: field 'conversation' must be text")
    return user, conversation, msg


def too_deep(text: str) -> str:
    """What to say about JSON input the parser gave up on for its depth: its field, or its path."""
    from ..fileformat.codec import MAX_METADATA_DEPTH
    from ..nesting import deepest

    found = deepest(text, MAX_METADATA_DEPTH)
    if found is None or found.field is None:
        return f"nested deeper than {MAX_METADATA_DEPTH} levels"
    return f"field {found.field!r} is nested deeper than {MAX_METADATA_DEPTH} levels"
