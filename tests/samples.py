"""Journals with hostile messages, written through the core, for the export and import tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialogctl import Journal
from dialogctl.models import ROLES, Message

from .strategies import NASTY_LINES

# Cells a spreadsheet would run as formulas, and text that breaks naive CSV and Markdown writers.
FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1:A2)", "\t=tab", "\r=cr", "\n=lf", "\x00nul", "'=quoted formula", "''twice", "'plain quote", '=HYPERLINK("http://x")']
STRUCTURE = [
    "a,b,c",
    'say "hi", then go',
    "line one\nline two, with comma\n",
    "crlf\r\nline",
    "```\n# not a heading\n```",
    "````python\nx = 1\n````\n~~~\n",
    "<script>alert(1)</script>\n<div>\n\n# heading\n---\n",
    "> quote\n- item\n1. item\n| a | b |\n",
    "`` inline ``` code ``",
    "[link](http://example.com) ![img](x.png) &amp; \\*",
]


def hostile_messages() -> list[Message]:
    """Every nasty line, formula and structure breaker as a message, roles cycling, some with metadata."""
    texts = NASTY_LINES + FORMULAS + STRUCTURE + ["", "\n\n", "🎉 unicode ✓ 日本語"]
    out = []
    for i, text in enumerate(texts):
        metadata = {"model": "=cmd|' /C calc'!A0", "tokens": {"total": i, "prompt": 1}, "note": text} if i % 3 == 0 else None
        out.append(Message(ROLES[i % 2], text, f"2024-01-15T10:{i // 60:02d}:{i % 60:02d}.000Z", metadata))
    return out


def journal_with(root: Path, conversations: dict[tuple[str, str | None], list[Message]]) -> Journal:
    """A journal holding ``{(user, archive id or None for current): messages}``."""
    journal = Journal.open(str(root))
    for (user, archive), messages in conversations.items():
        journal.append(user, messages)
        if archive is not None:
            journal.archive(user, archive_id=archive)
    return journal


def seed_refunds(cli: Any) -> None:
    """alice and bob talking about refunds, one of alice's conversations archived (as "old"): what the search and rm tests look at."""
    cli("append", "alice", "I want a refund for order 42", "--timestamp", "2024-01-15T10:00:00Z")
    cli("append", "alice", "Sure, refunds take 3 days", "--role", "assistant", "--timestamp", "2024-01-15T10:00:05Z")
    cli("append", "alice", "thanks", "--timestamp", "2024-01-15T10:00:10Z")
    cli("archive", "alice", "--id", "old")
    cli("append", "alice", "Another REFUND please", "--timestamp", "2024-01-16T10:00:00Z")
    cli("append", "bob", 'He said "refund" twice\nrefund', "--timestamp", "2024-01-17T10:00:00Z")
