"""Reading what the operator pipes in: text, JSONL messages, ``key=value`` metadata."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import InvalidInput
from ..models import ROLES, Message
from ..times import format_timestamp, parse_time_spec, parse_timestamp, utc_now_iso


def read_stdin(what: str, example: str) -> str:
    """All of stdin as text; a hint instead of hanging when stdin is a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidInput(f"{what} is read from stdin, which is a terminal; pipe it in, e.g. {example}")
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    return decode_input(data, "stdin")


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
        target = meta
        parts = key.split(".")
        for part in parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise InvalidInput(f"--meta {key}: {part!r} is already a value")
            target = nested
        target[parts[-1]] = value
    return meta


def timestamp_option(text: str | None) -> str:
    if text is None:
        return utc_now_iso()
    return format_timestamp(parse_time_spec(text, "--timestamp"))


_JSONL_KEYS = {"role", "content", "timestamp", "metadata", "user", "conversation"}
_IGNORED_KEYS = {"archived", "index"}  # fields of dialogctl's own JSONL export


def parse_jsonl_messages(text: str, default_user: str | None) -> list[tuple[str, str | None, Message]]:
    """Validate every line first: (user, conversation, message) per line, or an error naming the line."""
    out: list[tuple[str, str | None, Message]] = []
    # Only LF ends a line: JSON text may hold raw U+2028, U+0085 and other characters
    # that str.splitlines() would cut a message at.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"stdin line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
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
            raise InvalidInput(f"{where}: field 'timestamp' must be an ISO 8601 date-time")
        metadata = raw.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput(f"{where}: field 'metadata' must be an object")
        conversation = raw.get("conversation")
        if conversation is not None and not isinstance(conversation, str):
            raise InvalidInput(f"{where}: field 'conversation' must be text")
        out.append((user, conversation, Message(role, content, timestamp, metadata)))
    return out
