"""Real consumers read the exports: Python's csv and json, DuckDB, sqlite3, and a CommonMark parser.

The journal holds every hostile line of tests/strategies.py, cells a
spreadsheet would run as formulas, and text that breaks naive CSV and
Markdown writers (see tests/samples.py), in a current conversation and an
archive; each consumer must read back exactly what the journal holds.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from dialogctl.exchange.cursor import message_ids
from dialogctl.exchange.formats.csv import restore_cell
from dialogctl.models import Message

from ..conftest import Cli
from ..samples import hostile_messages, journal_with
from ..strategies import contents, roles

MESSAGES = hostile_messages()
HALF = len(MESSAGES) // 2
# (user, conversation, archived) and the messages in export order
EXPECTED = [(("alice", "current", False), MESSAGES[HALF:]), (("alice", "old", True), MESSAGES[:HALF]), (("bob", "current", False), MESSAGES[:5])]


@pytest.fixture
def hostile(root: Path) -> Path:
    journal_with(root, {("alice", "old"): MESSAGES[:HALF], ("alice", None): MESSAGES[HALF:], ("bob", None): MESSAGES[:5]})
    return root


def _export(cli: Cli, tmp_path: Path, fmt: str, *args: str) -> Path:
    target = tmp_path / f"export.{fmt}"
    result = cli("export", "--all", "--format", fmt, "-o", str(target), *args)
    assert result.exit_code == 0, result.stderr
    return target


def _expected_rows() -> list[tuple[str, str, bool, int, Message]]:
    return [(user, name, archived, index, msg) for (user, name, archived), msgs in EXPECTED for index, msg in enumerate(msgs)]


def test_python_json_and_jsonl(hostile: Path, cli: Cli, tmp_path: Path) -> None:
    array = json.loads(_export(cli, tmp_path, "json").read_text(encoding="utf-8"))
    assert [(c["userId"], c["conversation"], c["archived"]) for c in array] == [identity for identity, _ in EXPECTED]
    assert [[Message(**{k: v for k, v in m.items() if k != "message_id"}) for m in c["messages"]] for c in array] == [msgs for _, msgs in EXPECTED]
    assert [[m["message_id"] for m in c["messages"]] for c in array] == [message_ids(user, msgs) for (user, _, _), msgs in EXPECTED]
    lines = _export(cli, tmp_path, "jsonl").read_text(encoding="utf-8").split("\n")
    assert lines.pop() == ""
    records = [json.loads(line) for line in lines]
    assert [
        (r["user"], r["conversation"], r["archived"], r["index"], Message(r["role"], r["content"], r["timestamp"], r["metadata"])) for r in records
    ] == _expected_rows()


def test_python_csv_shows_formulas_as_text(hostile: Path, cli: Cli, tmp_path: Path) -> None:
    with open(_export(cli, tmp_path, "csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    got = [(r["user"], r["conversation"], r["archived"] == "true", int(r["index"]), restore_cell(r["content"])) for r in rows]
    assert got == [(u, c, a, i, m.content) for u, c, a, i, m in _expected_rows()]
    assert [json.loads(restore_cell(r["metadata"])) if r["metadata"] else None for r in rows] == [m.metadata for *_, m in _expected_rows()]
    for row in rows:
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r\n\0", cell  # nothing a spreadsheet would evaluate
    by_content = {restore_cell(r["content"]): r["content"] for r in rows}
    assert by_content["=1+1"] == "'=1+1" and by_content["@SUM(A1:A2)"] == "'@SUM(A1:A2)" and by_content["'plain quote"] == "'plain quote"
    assert rows[0]["model"] != "=cmd|' /C calc'!A0" and restore_cell(rows[0]["model"]) in ("", "=cmd|' /C calc'!A0")


def test_duckdb_read_csv(hostile: Path, cli: Cli, tmp_path: Path) -> None:
    path = _export(cli, tmp_path, "csv")
    described = {name: kind for name, kind, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM read_csv('{path}')").fetchall()}
    assert described["archived"] == "BOOLEAN" and described["index"] == "BIGINT" and described["content"] == "VARCHAR"
    rows = duckdb.sql(f'SELECT "user", conversation, archived, "index", content, metadata FROM read_csv(\'{path}\', all_varchar = true)').fetchall()
    # DuckDB reads a quoted empty cell as NULL
    got = [(u, c, a == "true", int(i), restore_cell(text or "")) for u, c, a, i, text, _ in rows]
    assert got == [(u, c, a, i, m.content) for u, c, a, i, m in _expected_rows()]
    formula = duckdb.sql(f"SELECT content FROM read_csv('{path}', all_varchar = true) WHERE content LIKE '%1+1'").fetchall()
    assert formula == [("'=1+1",)]  # text, not a formula
    per_user = duckdb.sql(f"SELECT \"user\", count(*) FROM read_csv('{path}') GROUP BY ALL ORDER BY 1").fetchall()
    assert per_user == [("alice", len(MESSAGES)), ("bob", 5)]


def test_duckdb_read_json(hostile: Path, cli: Cli, tmp_path: Path) -> None:
    jsonl = _export(cli, tmp_path, "jsonl")
    rows = duckdb.sql(f"SELECT \"user\", conversation, archived, \"index\", content FROM read_json('{jsonl}', format = 'newline_delimited')").fetchall()
    assert rows == [(u, c, a, i, m.content) for u, c, a, i, m in _expected_rows()]
    array = _export(cli, tmp_path, "json")
    counts = duckdb.sql(f"SELECT userId, conversation, messageCount, len(messages) FROM read_json('{array}', format = 'array')").fetchall()
    assert counts == [(u, c, len(msgs), len(msgs)) for (u, c, _), msgs in EXPECTED]
    nested = duckdb.sql(f"SELECT unnest(messages).content FROM read_json('{array}', format = 'array')").fetchall()
    assert [text for (text,) in nested] == [m.content for _, msgs in EXPECTED for m in msgs]


def test_duckdb_and_json_read_the_training_formats(root: Path, cli: Cli, tmp_path: Path) -> None:
    journal_with(root, {("alice", None): [m for m in MESSAGES if m.content.strip()], ("bob", None): MESSAGES[:2]})
    openai = _export(cli, tmp_path, "openai", "--system", "You are terse.")
    rows = duckdb.sql(f"SELECT messages FROM read_json('{openai}', format = 'newline_delimited')").fetchall()
    assert len(rows) == 2
    first = json.loads(openai.read_text(encoding="utf-8").split("\n")[0])
    assert first["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [m["content"] for m in first["messages"][1:]] == [m.content for m in MESSAGES if m.content.strip()]
    sharegpt = _export(cli, tmp_path, "sharegpt")
    froms = duckdb.sql(f"SELECT DISTINCT unnest(conversations).\"from\" FROM read_json('{sharegpt}', format = 'newline_delimited') ORDER BY 1").fetchall()
    assert froms == [("gpt",), ("human",)]


def test_sqlite3_reads_the_database(hostile: Path, cli: Cli, tmp_path: Path) -> None:
    db = sqlite3.connect(_export(cli, tmp_path, "sqlite"))
    db.execute("PRAGMA foreign_keys = ON")
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    rows = db.execute(
        'SELECT c.user, c.conversation, c.archived, m."index", m.role, m.content, m.timestamp, m.metadata '
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id ORDER BY m.id"
    ).fetchall()
    got = [(u, c, bool(a), i, Message(role, content, ts, None if meta is None else json.loads(meta))) for u, c, a, i, role, content, ts, meta in rows]
    assert got == _expected_rows()
    with pytest.raises(sqlite3.IntegrityError):
        db.execute('INSERT INTO messages (conversation_id, "index", timestamp, role, content) VALUES (999, 0, "t", "user", "x")')
    plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN SELECT * FROM conversations WHERE user = 'bob'"))
    assert "conversations_user" in plan
    plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN SELECT * FROM messages WHERE timestamp > '2024'"))
    assert "messages_timestamp" in plan


# --- markdown -----------------------------------------------------------------------------------


def _check_transcript(text: str, conversations: list[tuple[str, list[Message]]]) -> None:
    """The transcript parses to exactly one h1 per conversation, one h2 and one fence per message, nothing else."""
    tokens = MarkdownIt("commonmark").parse(text)
    blocks = [t for t in tokens if t.nesting >= 0 and t.level == 0]
    assert {t.type for t in blocks} <= {"heading_open", "paragraph_open", "fence"}, {t.type for t in blocks}
    headings = [(t.tag, tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert [tag for tag, _ in headings] == [tag for _, msgs in conversations for tag in ["h1"] + ["h2"] * len(msgs)]
    h2 = [inline for tag, inline in headings if tag == "h2"]
    expected = [(index, msg) for _, msgs in conversations for index, msg in enumerate(msgs)]
    for inline, (index, msg) in zip(h2, expected, strict=True):
        assert {child.type for child in inline.children or []} <= {"text"}  # no emphasis, link, html or code
        shown = "".join(child.content for child in inline.children or [])
        assert shown == re.sub(r"[\r\n]+", " ", f"{index} · {msg.role} · {msg.timestamp}").replace("\0", "\ufffd").strip()
    fences = [t for t in tokens if t.type == "fence"]
    assert [t.content for t in fences] == [_as_parsed(msg.content) for _, msg in expected]
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]


def _as_parsed(content: str) -> str:
    """Content as CommonMark hands it back from a fence: line endings normalised, NUL replaced, a final newline."""
    text = content.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return text if not text or text.endswith("\n") else text + "\n"


def test_markdown_transcript_keeps_its_structure(hostile: Path, cli: Cli, tmp_path: Path) -> None:
    text = _export(cli, tmp_path, "markdown").read_text(encoding="utf-8")
    _check_transcript(text, [(f"{u}/{c}", msgs) for (u, c, _), msgs in EXPECTED])
    # roles and timestamps come from the files too: they are escaped, not interpreted
    odd = [Message("<b>bold</b> *em* [link](x) `code` &amp; #", "x", "2024-01-15T10:30:00.000Z"), Message("user", "y", "<!-- # -->\n# 2024")]
    journal_with(hostile, {("carol", None): odd})
    _check_transcript(cli("export", "carol", "--format", "markdown").stdout_bytes.decode(), [("carol/current", odd)])


# Pieces of Markdown that open or close structure, strung together at random.
MARKUP = ["```", "````", "~~~", "`", "\n", "\r\n", "  ", "# ", "## ", "<b>", "</b>", "<!--", "-->", "<div>", "&amp;", "&#35;", "*", "_", "[x](y)", "![i](j)",
          "> ", "- ", "1. ", "| a |", "---", "===", "\\", "<http://x.y>", "www.x.y", "$x$", "a", " "]  # fmt: skip
fence_breakers = st.lists(st.sampled_from(MARKUP), max_size=20).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.one_of(contents(), fence_breakers), min_size=1, max_size=6),
    role_list=st.lists(roles | fence_breakers.filter(bool), min_size=6, max_size=6),
)
def test_markdown_structure_holds_for_any_content_and_role(cli: Cli, tmp_path_factory: pytest.TempPathFactory, texts: list[str], role_list: list[str]) -> None:
    root = tmp_path_factory.mktemp("md")
    messages = [Message(role, text, "2024-01-15T10:30:00.000Z") for text, role in zip(texts, role_list, strict=False)]
    journal_with(root, {("alice", None): messages})
    result = cli("--root", str(root), "export", "alice", "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    _check_transcript(result.stdout_bytes.decode(), [("alice/current", messages)])
