"""Terminal output: untrusted text is shown escaped, never interpreted (escape sequences, controls, bidi, markup)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dialogctl.config import load_settings
from dialogctl.journal import Journal
from dialogctl.models import Message

from ..conftest import run_exe
from ..terminal import run_tty

HOSTILE = {
    "clear screen": "\x1b[2J\x1b[H",
    "title": "\x1b]0;owned\x07",
    "hyperlink": "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "clipboard": "\x1b]52;c;ZWNobyBvd25lZA==\x07",
    "C1 CSI": "\x9b31m",
    "C1 OSC": "\x9d0;owned\x9c",
    "NUL": "a\x00b",
    "DEL": "a\x7fb",
    "right-to-left override": "abc\u202edcba",
    "Rich markup": "[bold red]not bold[/] [link=https://evil.example]x[/link]",
}
CONTENT = "\n".join(f"{name}: {text}" for name, text in HOSTILE.items())
SGR = re.compile(r"\x1b\[[0-9;]*m")  # dialogctl's own colours


def _journal(tmp_path: Path) -> Path:
    root = tmp_path / "journal"
    journal = Journal(load_settings({"root": str(root)}))
    journal.append("alice", [Message("assistant", CONTENT, "2024-01-15T10:30:00.000Z", {"model": HOSTILE["title"], "note": HOSTILE["C1 OSC"]})])
    # A folder whose name carries an escape sequence: it shows up in a warning on stderr.
    (root / "users" / "\x1b]0;owned\x07x" / "dialogs").mkdir(parents=True)
    return root


def _assert_inert(text: str) -> None:
    plain = SGR.sub("", text)
    assert "\x1b" not in plain, repr(plain[max(0, plain.find("\x1b") - 40) :][:120])
    for char in ("\x9b", "\x9c", "\x9d", "\x00", "\x7f", "\u202e", "\x07"):
        assert char not in plain, (repr(char), repr(plain[:300]))


def test_transcripts_and_tables_show_hostile_text_escaped(tmp_path: Path) -> None:
    root = _journal(tmp_path)
    for args in (["show", "alice"], ["show", "alice", "--format", "table"], ["list"], ["list", "alice"], ["export", "alice", "--format", "json"]):
        shown = run_tty("--root", str(root), "--color", "always", *args, cols=200, rows=50).output
        if args[-1] == "json":
            continue  # machine formats carry the exact text (checked below)
        _assert_inert(shown)
        assert "\x1b[" in shown or args[0] == "list"  # colour really was on
        if args[0] == "show":
            for escaped in ("\\e[2J", "\\e]0;owned\\a", "\\x9b31m", "\\x9d0;owned\\x9c", "a\\0b", "a\\x7fb", "abc\\u202edcba"):
                assert escaped in shown, escaped
            assert "[bold red]not bold[/]" in shown and "[link=https://evil.example]x[/link]" in shown
        if args == ["list"]:
            assert "users/\\e]0;owned\\ax: unusable user folder" in shown  # the folder's name in the warning, escaped


def test_pipes_show_the_same_escapes_and_machine_formats_the_exact_text(tmp_path: Path) -> None:
    root = _journal(tmp_path)
    piped = run_exe("--root", str(root), "show", "alice")
    _assert_inert(piped.stdout + piped.stderr)
    exported = run_exe("--root", str(root), "show", "alice", "--format", "json")
    assert json.loads(exported.stdout)["messages"][0]["content"] == CONTENT
