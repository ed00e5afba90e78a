"""``import`` streams: each format is read a piece at a time into a spool on disk, with the same results and errors.

The json format is read by a small walker of the outer structure (each
message decoded on its own), csv through a line splitter that cuts where
``io.StringIO(newline="")`` does, and a sqlite database in place. These tests
read with tiny pieces, so every value, line break and character crosses a
piece boundary somewhere, and compare with decoding the whole text at once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dialogctl.errors import InvalidInput
from dialogctl.exchange import reading as importers
from dialogctl.exchange.importers import read_import
from dialogctl.exchange.reading import ImportInput
from dialogctl.models import Message

from ..conftest import Cli

TS = "2024-01-15T10:30:00.000Z"


def _read(data: bytes, fmt: str, source: str = "in") -> list[Message]:
    with read_import(ImportInput(io.BytesIO(data)), fmt, source) as spool:
        return list(spool.messages())


@pytest.fixture(params=[1, 3, 17, 1 << 20], ids=["pieces of 1", "of 3", "of 17", "of 1 MiB"])
def piece(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(importers, "_CHUNK", request.param)
    return int(request.param)


def _export(count: int, rng: random.Random) -> dict[str, Any]:
    texts = ["plain", "with\nlines\r\n", 'quote " and \\ back', "ünïcödé 東京 🙂", "\u2028 separator", "", "  indented", "x" * 300]
    messages = []
    for i in range(count):
        msg: dict[str, Any] = {"role": rng.choice(["user", "assistant", "system"]), "content": rng.choice(texts) + str(i), "timestamp": TS}
        if rng.random() < 0.4:
            msg["metadata"] = {"model": "gpt-4", "tokens": {"total": rng.randint(0, 10**12)}, "score": rng.random(), "tags": [1, "a", None, True]}
        messages.append(msg)
    return {"userId": "u", "timestamp": TS, "messageCount": count, "messages": messages}


def _whole(text: str) -> list[Message] | str:
    """What decoding the whole document at once gives: the messages, the syntax error as the import reports it, or "refused"."""
    try:
        value = importers._DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return f"in: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
    except (ValueError, RecursionError):
        return "refused"  # a repeated key, NaN
    try:
        objects = value if isinstance(value, list) else [value]
        return [Message(m["role"], m["content"], m.get("timestamp", TS), m.get("metadata")) for obj in objects for m in obj["messages"]]
    except (KeyError, TypeError, AttributeError):
        return "refused"  # valid JSON, but not an export


def test_json_read_in_pieces_gives_the_messages_of_a_whole_read(piece: int) -> None:
    rng = random.Random(piece)
    one = _export(40, rng)
    for text in (json.dumps(one), json.dumps(one, indent=2), json.dumps([one, _export(3, rng)], indent=1), " \n" + json.dumps(one) + "\n\n"):
        assert _read(text.encode(), "json") == _whole(text)


def test_json_syntax_errors_name_the_same_line_and_column_as_a_whole_read(piece: int) -> None:
    """Random damage to a valid export: every syntax error the walker reports is the one a whole read reports."""
    rng = random.Random(1000 + piece)
    base = json.dumps(_export(12, rng), indent=2)
    checked = 0
    for _ in range(150 if piece < 64 else 400):
        at = rng.randrange(len(base))
        mutation = rng.choice(["delete", "insert", "replace"])
        char = rng.choice('{}[],:"0 \n-tx\\')
        text = base[:at] + ("" if mutation == "delete" else char) + base[at + (mutation != "insert") :]
        expected = _whole(text)
        try:
            got: list[Message] | str = _read(text.encode(), "json")
        except InvalidInput as exc:
            got = exc.message
        if isinstance(got, str) and "not valid JSON" in got:
            assert got == expected, (at, mutation, char)  # a syntax error: exactly where a whole read finds it
            checked += 1
        elif isinstance(got, list):
            assert got == expected, (at, mutation, char)
        # Else the walker refused a message or field (checked as it is read, so possibly before a
        # syntax error further on, which a whole read would report first): never a syntax error
        # that is not there, and nothing imported.
    assert checked > 20


@pytest.mark.parametrize(
    "text,error",
    [
        ('{"userId": "u",\n  "messages": [}', "in: not valid JSON at line 2 column 16 (Expecting value)"),
        ('{"userId": "u", "messages": []} x', "in: not valid JSON at line 1 column 33 (Extra data)"),
        ('{"userId": "u", "messages": [{"role": "user", "content": "a"},]}', "in: not valid JSON at line 1 column 63 (Expecting value)"),
        ("", "in: not valid JSON at line 1 column 1 (Expecting value)"),
        ("5", "in: expected an object with userId and messages, or an array of them"),
        ('[{"userId": "u", "messages": []}, 7]', "in: [1]: expected an object with userId and messages"),
        ('{"userId": "u", "messages": [], "messages": []}', "in: the top-level object: the key 'messages' appears twice in one object"),
        ('{"userId": "u", "messages": 3}', "in: the top-level object: field 'messages' must be an array"),
        ('{"userId": "u", "messageCount": 2, "messages": [{"role": "user", "content": "a"}]}', "messageCount says 2 but messages holds 1"),
        ('{"userId": "u", "messages": [{"role": "user", "content": "a", "metadata": {"x": NaN}}]}', "NaN is not a JSON number"),
        ('{"messages": [{"role": "user", "content": "a"}], "colour": 1}', "in: the top-level object: unknown field(s) 'colour'"),
        ('{"userId": "u", "messages": [' + "[" * 100_000 + "]" * 100_000 + "]}", "is nested deeper than 64 levels"),
    ],
)
def test_json_errors(piece: int, text: str, error: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _read(text.encode(), "json")
    assert error in caught.value.message


def test_csv_read_in_pieces_cuts_lines_where_a_whole_read_does(piece: int) -> None:
    """LF, CR and CRLF line ends, also split across pieces, and line breaks inside quoted cells."""
    rng = random.Random(piece)
    rows = ["role,content,timestamp"]
    for i in range(60):
        content = rng.choice(["plain", '"quoted, with comma"', '"multi\nline"', '"cr\rinside"', '"crlf\r\ninside"', '""', "ünï"])
        rows.append(f"{rng.choice(['user', 'assistant'])},{content}{i if not content.startswith(chr(34)) else ''},{TS}")
    ends = ["\n", "\r\n", "\r"]
    text = "".join(row + rng.choice(ends) for row in rows)
    whole = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    expected = [Message(r[0], r[1], r[2]) for r in whole[1:] if r]
    assert _read(text.encode(), "csv") == expected


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "openai"])
def test_an_invalid_utf8_byte_far_into_the_input_is_named_by_its_offset(fmt: str, piece: int) -> None:
    lines = {
        "json": lambda i: ("," if i else "") + json.dumps({"role": "user", "content": f"é{i}"}, ensure_ascii=False),
        "jsonl": lambda i: json.dumps({"role": "user", "content": f"é{i}"}, ensure_ascii=False) + "\n",
        "csv": lambda i: f"user,é{i}\n",
        "openai": lambda i: json.dumps({"messages": [{"role": "user", "content": f"é{i}"}]}, ensure_ascii=False) + "\n",
    }
    head = {"json": '{"userId": "u", "messages": [', "jsonl": "", "csv": "role,content\n", "openai": ""}[fmt]
    body = (head + "".join(lines[fmt](i) for i in range(5 if piece < 64 else 40_000))).encode()
    at = body.rindex("é".encode())  # the last é: past the 1 MiB head with pieces of 1 MiB
    data = b"\xef\xbb\xbf" + body[:at] + b"\xc3\x28" + body[at + 2 :]
    with pytest.raises(InvalidInput) as caught:
        _read(data, fmt)
    assert caught.value.message == f"in is not valid UTF-8 (byte offset {3 + at})"


def test_the_spool_reads_back_large_and_many_messages_exactly() -> None:
    from dialogctl.fileformat.spool import MessageSpool

    big = Message("assistant", "x" * 3_000_000, TS, {"a": [1, 2, {"b": None}]})
    messages = [Message("user", f"m{i}", TS) for i in range(5000)] + [big] + [Message("user", "after", TS, {})]
    with MessageSpool() as spool:
        for msg in messages:
            spool.add(msg)
        assert os.fstat(spool.file.fileno()).st_nlink == 0  # no name: nothing is left behind
        run = spool.messages()
        assert len(run) == len(messages) and list(run) == messages
        assert list(run[4998:5001]) == messages[4998:5001] and run[5000] == big and run[-1] == messages[-1]
        assert len(run[10:]) == len(messages) - 10 and list(run[10:][:2]) == messages[10:12] and list(run[7:3]) == []


@pytest.mark.parametrize("held_bytes", [1, 4000, 1 << 30])
def test_the_grouped_spool_reads_each_group_back_in_order_whatever_it_holds_in_memory(held_bytes: int) -> None:
    """append --jsonl's spool: each group's messages back in the order added, some from the file and the rest still held."""
    from dialogctl.fileformat.spool import GroupedSpool

    big = Message("assistant", "x" * 300_000, TS, {"a": [1, 2, {"b": None}], "é": "\u2028"})
    expected: dict[tuple[str, str | None], list[Message]] = {}
    spool = GroupedSpool(held_bytes)
    for i in range(3000):
        key = (f"u{i % 7}", None if i % 3 else "s")
        msg = big if i == 1500 else Message("user" if i % 2 else "assistant", f"m{i}\n" * (i % 5), TS, {"n": i} if i % 4 else None)
        spool.add(key, msg)
        expected.setdefault(key, []).append(msg)
    assert os.fstat(spool.file.fileno()).st_nlink == 0  # no name: nothing is left behind
    assert bool(spool.records) == (held_bytes < 1 << 30)  # small limits went to the file, the largest held everything
    for key, messages in expected.items():
        got = spool.load(key)
        assert got == messages and all(type(m) is Message for m in got)
    assert spool.load(("nobody", None)) == []
    spool.close()


def _one_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize("kind", ["json", "openai"])
def test_a_first_line_longer_than_the_head_is_still_told_apart(kind: str, root: Path, cli: Cli) -> None:
    messages = [{"role": "user", "content": "y" * 1000 + str(i)} for i in range(1500)]  # 1.5 MB on one line
    obj = {"userId": "u", "messages": messages} if kind == "json" else {"messages": messages}
    result = cli("-v", "import", "alice", "-", input=_one_line(obj))
    assert result.exit_code == 0, result.stderr
    assert f"reading stdin as {kind}" in result.stderr and "imported 1500 messages" in result.stderr


def test_sqlite_is_read_in_place_and_left_as_it_was(root: Path, cli: Cli, tmp_path: Path) -> None:
    from ..samples import journal_with

    journal_with(root, {("alice", None): [Message("user", f"q{i}", TS) for i in range(50)]})
    db = tmp_path / "alice.db"
    assert cli("export", "alice", "--format", "sqlite", "-o", str(db)).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    db.chmod(0o444)  # read-only input: nothing is ever written beside it
    assert cli("import", "bob", str(db)).exit_code == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert len(cli.jsonl("export", "bob")) == 50
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (50,)
