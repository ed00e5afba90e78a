"""A small, realistic journal to try dialogctl on: ``dialogctl demo [DIR]``.

It holds what a newcomer meets in a real journal: several users, files the
chat servers wrote (their exact bytes, see :func:`server_item`) beside files
dialogctl wrote through :class:`~dialogctl.journal.core.Journal`, archives from
both, a session conversation, token metadata, and one archive the reference
implementation's cleanup damaged by gluing its ``---`` separators onto the lines
before (``verify`` reports exactly that file; every other command reads all of
its messages, so ``list`` and ``stats`` on the demo exit 0). Content is fixed;
timestamps are relative to ``now``, so the examples the command suggests
(idle conversations, inactive users, archives past retention) find something.

It only ever creates: a folder that exists and holds anything is refused, and
nothing is ever removed or overwritten.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from ..config import SPECS, load_settings
from ..errors import InvalidInput
from ..journal.core import Journal
from ..models import Message
from ..times import archive_id_for, format_timestamp, utc_now

DEFAULT_DIR = "dialogctl-demo"
# The settings the demo journal is written with, whatever the environment and config files say.
_FIXED = {"layout": "sharded", "shardLevels": 2, "shardSize": 2, "conversations": "current", "fileShape": "sequence"}
_PASSED_ON = ("maxConversationLength", "archiveThreshold", "lockTimeoutMs", "maxFileMB", "backend")

Turn = tuple[str, str, dict[str, Any] | None]  # role, content, metadata


class DemoJournal(NamedTuple):
    root: Path
    users: list[str]
    damaged: str  # the one damaged file, relative to the root


def _tokens(model: str, prompt: int, completion: int) -> dict[str, Any]:
    return {"model": model, "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion}}


_ORDER: list[Turn] = [
    ("user", "Hi! My order #4411 hasn't arrived yet. Can you check?", None),
    ("assistant", "Of course. Order #4411 left the warehouse on Monday and is due tomorrow.\nWould you like a tracking link?", _tokens("gpt-4o", 212, 31)),
    ("user", "Yes please.", None),
    ("assistant", "Here it is: https://example.com/track/4411\nAnything else I can help with?", _tokens("gpt-4o", 260, 22)),
]
_REFUND: list[Turn] = [
    ("user", "I'd like a refund for the blue kettle, it leaks.", None),
    ("assistant", "Sorry to hear that! I've opened refund request R-208.\nYou'll get an email with a return label.", _tokens("gpt-4o", 190, 28)),
]
_POEM: list[Turn] = [
    ("system", "You are a helpful assistant for a kitchenware shop.", None),
    ("user", "Write a two-line poem about tea.", None),
    ("assistant", "Steam curls from the pot at dawn,\na quiet cup, and worry's gone.", _tokens("claude-3-5-sonnet", 48, 19)),
]
_PASSWORD: list[Turn] = [
    ("user", "How do I reset my password?", None),
    ("assistant", "Open Settings > Account > Reset password, then follow the link we email you.", _tokens("claude-3-5-sonnet", 75, 21)),
    ("user", "Thanks, that worked.", None),
]
_CODE: list[Turn] = [
    ("user", "Can you show me how to read a file line by line in Python?", None),
    ("assistant", "Sure:\n\nwith open('notes.txt') as f:\n    for line in f:\n        print(line.rstrip())", _tokens("llama-3", 64, 41)),
]
_CSV: list[Turn] = [
    ("user", "How do I read a CSV file in Python?", None),
    ("assistant", "Use the csv module: csv.reader(f) gives one list per row.", _tokens("llama-3", 58, 17)),
]
_SESSION: list[Turn] = [
    ("user", "Is the store open on Sunday?", None),
    ("assistant", "Yes, from 10:00 to 16:00.", {**_tokens("gpt-4o-mini", 40, 9), "conversationId": "conv-2f9c"}),
]
_SHIPPING: list[Turn] = [
    ("user", "Do you ship to Norway?", None),
    ("assistant", "We do: delivery to Norway takes 3-5 working days.", _tokens("gpt-4o-mini", 52, 14)),
    ("user", "And what does it cost?", None),
]


def _messages(turns: list[Turn], last: datetime) -> list[Message]:
    """The turns as messages 40 seconds apart, the last one at ``last``."""
    start = last - timedelta(seconds=40 * (len(turns) - 1))
    return [Message(role, content, format_timestamp(start + timedelta(seconds=40 * i)), meta) for i, (role, content, meta) in enumerate(turns)]


# --- the servers' bytes ------------------------------------------------------------------------


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _server_metadata(mapping: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.extend(_server_metadata(value, indent + 2))
        elif isinstance(value, str):
            lines.append(f"{pad}{key}: {_quoted(value)}")
        else:  # the demo's numbers are whole: JavaScript's String(n) is Python's str(n) for them
            lines.append(f"{pad}{key}: {json.dumps(value)}")
    return lines


def server_item(message: Message) -> str:
    """One message exactly as the chat servers write it (DOMAIN.md, "The reference writer's bytes"), no final newline."""
    lines = [f"- role: {message.role}", "  content: |"]
    lines.extend("    " + piece for piece in message.content.split("\n"))
    lines.append(f"  timestamp: {message.timestamp}")
    if message.metadata is not None:
        lines.append("  metadata:")
        lines.extend(_server_metadata(message.metadata, 4))
    return "\n".join(lines)


def glued_documents(messages: list[Message]) -> str:
    """A file as the reference implementation's cleanup rewrote it: ``---`` documents, each separator glued onto the line before."""
    docs = []
    for m in messages:
        lines = [f"role: {m.role}", f"content: {json.dumps(m.content, ensure_ascii=False)}", f"timestamp: {m.timestamp}"]
        if m.metadata is not None:
            lines.append("metadata:")
            lines.extend(f"  {key}: {value}" for key, value in m.metadata.items())
        docs.append("\n".join(lines) + "---\n")
    return "".join(docs)


def _write_new(folder: Path, name: str, text: str) -> None:
    for level in reversed([folder, *folder.parents]):
        if not level.is_dir():
            level.mkdir(mode=0o700)
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    data = text.encode("utf-8")
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# --- the journal -------------------------------------------------------------------------------


def check_target(root: Path) -> None:
    """Refuse a folder that exists and is not empty (or is not a folder): the demo never overwrites."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise InvalidInput(f"{root} exists and is not a folder; the demo writes a new journal into an empty or new folder")
    if root.is_dir() and any(root.iterdir()):
        raise InvalidInput(f"{root} exists and is not empty; the demo never overwrites: give a new or empty folder")


def write_demo(root: str | os.PathLike[str], now: datetime | None = None) -> DemoJournal:
    """Write the demo journal into ``root`` (new, or an empty folder)."""
    root = Path(os.path.abspath(root))
    check_target(root)
    now = (now or utc_now()).replace(microsecond=0)
    flags: dict[str, Any] = {spec.name: spec.default for spec in SPECS if spec.name in _PASSED_ON}
    flags.update(_FIXED, root=str(root))
    journal = Journal(load_settings(flags, env={}, cwd=root.parent), command="demo")
    day = timedelta(days=1)

    # alice: everything written by dialogctl; an archive past the default retention (365 days), one from last week.
    for turns, last in ((_REFUND, now - 400 * day), (_PASSWORD, now - 6 * day)):
        journal.append("alice", _messages(turns, last))
        journal.archive("alice", archive_id=archive_id_for(last + timedelta(minutes=5)))
    journal.append("alice", _messages(_ORDER, now - timedelta(minutes=2)))

    def folder(user: str) -> Path:
        return root.joinpath(*journal.user_path(user).split("/"))

    def server_file(user: str, name: str, turns: list[Turn], last: datetime) -> None:
        _write_new(folder(user), name, "\n".join(server_item(m) for m in _messages(turns, last)))

    # bob: a server's files, idle for 12 minutes. His archive (named as the servers name them, in local
    # time) went through the reference implementation's cleanup, which glued every --- onto the line
    # before: the one damaged file. dialogctl reads every message of it; verify names it, repair mends it.
    archived_at = now - 2 * day
    archive = f"archive-{archived_at.astimezone().strftime('%Y-%m-%d %H-%M-%S')}.yaml"
    poem = [
        Message(m.role, m.content, m.timestamp, None if m.metadata is None else {"model": m.metadata["model"], "tokens": m.metadata["tokens"]["total"]})
        for m in _messages(_POEM, archived_at - timedelta(minutes=9))
    ]
    _write_new(folder("bob") / "archived", archive, glued_documents(poem))
    server_file("bob", "current.yaml", _CODE, now - timedelta(minutes=12))

    # user-1006: a session conversation a server wrote (newer servers: one file per conversation id).
    server_file("user-1006", "session-conv-2f9c.yaml", _SESSION, now - timedelta(hours=3))
    # carol: a server's conversation, an hour old.
    server_file("carol", "current.yaml", _SHIPPING, now - timedelta(hours=1))

    # dave: written by dialogctl, nothing for 200 days (cleanup --max-inactive 180d finds him).
    journal.append("dave", _messages(_CSV, now - 200 * day))

    return DemoJournal(
        root,
        ["alice", "bob", "carol", "dave", "user-1006"],
        f"{journal.user_path('bob')}/archived/{archive}",
    )
