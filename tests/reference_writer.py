"""A byte-exact stand-in for the servers that write dialogue journals (the reference writer).

Written from ``../shared/DOMAIN.md`` ("The reference writer's bytes, exactly")
and checked against ``v1-short-ids``, which the real server code wrote
(``tests/fileformat/test_reference_writer.py``). It behaves as those servers do on a
live journal:

* an item is ``- role:``, ``  content: |`` and every line of
  ``content.split("\\n")`` indented four spaces (blank pieces become lines of
  exactly four spaces), the bare timestamp, then the metadata mapping;
  lines are joined by ``\\n`` with **no final newline**;
* an append opens the file with ``O_APPEND`` (creating it 0644) and writes the
  items joined by ``\\n`` in one ``write``, prefixed with ``\\n`` when the
  file already exists (an empty file counts as existing);
* **no lock** is ever taken and nothing is fsynced;
* archive renames the conversation into ``archived/`` and then writes an
  empty file in its place.

The tests use it to race dialogctl's own commands (dialogctl must never glue
onto the unterminated last item, never break the sequence shape the servers
append to, and never read their items as damage), the benchmark to build a
server-written journal.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

FILE_MODE = 0o644
DIR_MODE = 0o755
LONG_STRING = 100  # metadata strings longer than this (or multi-line) become a | block


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _number(value: int | float) -> str:
    """A number as JavaScript's ``String(n)`` writes it (for the values journals hold)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _inline(value: Any) -> str:
    """An array element, written inline."""
    if isinstance(value, str):
        return f'"{_escape(value)}"'
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return _number(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "[object Object]"


def _metadata_lines(mapping: Mapping[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, str):
            if len(value) > LONG_STRING or "\n" in value:
                lines.append(f"{pad}{key}: |")
                lines.extend(f"{pad}  {_escape(piece)}" for piece in value.split("\n"))
            else:
                lines.append(f'{pad}{key}: "{_escape(value)}"')
        elif value is None:
            lines.append(f"{pad}{key}: null")
        elif isinstance(value, (bool, int, float)):
            lines.append(f"{pad}{key}: {_number(value)}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_inline(v) for v in value)}]")
        elif isinstance(value, Mapping):
            lines.append(f"{pad}{key}:")
            lines.extend(_metadata_lines(value, indent + 2))
        else:
            lines.append(f"{pad}{key}: {value}")
    return lines


def format_item(message: Mapping[str, Any]) -> str:
    """One message exactly as the servers write it (no final newline)."""
    lines = [f"- role: {message['role']}", "  content: |"]
    lines.extend("    " + piece for piece in str(message["content"]).split("\n"))
    lines.append(f"  timestamp: {message['timestamp']}")
    metadata = message.get("metadata")
    if metadata is not None:
        lines.append("  metadata:")
        lines.extend(_metadata_lines(metadata, 4))
    return "\n".join(lines)


def format_batch(messages: Iterable[Mapping[str, Any]]) -> str:
    return "\n".join(format_item(m) for m in messages)


def append(path: str | os.PathLike[str], messages: Iterable[Mapping[str, Any]]) -> None:
    """Append like a server: unlocked, one ``O_APPEND`` write, ``\\n`` first when the file exists."""
    batch = format_batch(messages)
    if not batch:
        return
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), mode=DIR_MODE, exist_ok=True)
    exists = os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, (("\n" if exists else "") + batch).encode("utf-8"))
    finally:
        os.close(fd)


def archive(dialogs: str | os.PathLike[str], archive_id: str, name: str = "current.yaml") -> str:
    """Archive like a server: rename into ``archived/``, then write an empty file in its place."""
    dialogs = os.fspath(dialogs)
    archived = os.path.join(dialogs, "archived")
    os.makedirs(archived, mode=DIR_MODE, exist_ok=True)
    target = os.path.join(archived, f"{archive_id}.yaml")
    os.rename(os.path.join(dialogs, name), target)
    fd = os.open(os.path.join(dialogs, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.close(fd)
    return target


def user_parts(user: str, levels: int = 2, size: int = 2) -> list[str]:
    """The folders below ``users/`` where the servers keep ``user`` (DOMAIN.md's exact rule)."""
    if not user:
        return ["misc"]
    parts: list[str] = []
    rest = user
    for _ in range(levels):
        if not rest:
            break
        parts.append(rest[:size])
        rest = rest[size:]
    parts.append(rest if rest else user)
    return parts


def dialogs_path(root: str | os.PathLike[str], user: str, levels: int = 2, size: int = 2) -> str:
    return os.path.join(os.fspath(root), "users", *user_parts(user, levels, size), "dialogs")


def message(role: str, content: str, timestamp: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "content": content, "timestamp": timestamp}
    if metadata is not None:
        out["metadata"] = dict(metadata)
    return out


def to_json(messages: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(messages), ensure_ascii=False)
