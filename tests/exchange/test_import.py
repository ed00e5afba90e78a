"""``import``: the formats it reads, validation before any write, and where the messages land."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialogctl.models import Message

from ..conftest import Cli
from ..samples import journal_with


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def _contents(cli: Cli, *args: str) -> list[str]:
    result = cli("export", *args)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line)["content"] for line in result.stdout.split("\n") if line]


REFERENCE_EXPORT = {
    "userId": "user-1006",
    "timestamp": "2024-01-16T08:00:00.000Z",
    "messageCount": 2,
    "messages": [
        {"role": "user", "content": "How do I sort a list?\n", "timestamp": "2024-01-15T10:30:00.000Z"},
        {
            "role": "assistant",
            "content": "Use sorted(), like this:\n\n    sorted([3, 1, 2])\n",
            "timestamp": "2024-01-15T10:30:02.512Z",
            "metadata": {"model": "gpt-4", "tokens": {"prompt": 12, "completion": 20, "total": 32}, "processingTime": 2512},
        },
    ],
}


def test_the_reference_json_export(root: Path, cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "export.json"
    source.write_text(json.dumps(REFERENCE_EXPORT, indent=2))
    result = cli("import", "user-1006", str(source))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "imported 2 messages into user-1006/current" in result.stderr
    shown = cli.json("show", "user-1006", "--format", "json")
    assert [{k: m[k] for k in m if k != "index"} for m in shown["messages"]] == REFERENCE_EXPORT["messages"]


def test_csv_with_commas_quotes_and_newlines(root: Path, cli: Cli, tmp_path: Path) -> None:
    """The reference's timestamp,role,content CSV, written by a careful writer (its own import splits on commas)."""
    source = tmp_path / "chat.csv"
    source.write_bytes(
        b"timestamp,role,content\r\n"
        b'2024-01-15T10:30:00.000Z,user,"Hello, ""world"""\r\n'
        b'2024-01-15T10:30:01.000Z,assistant,"one,\ntwo\r\nthree ""quoted"", four"\r\n'
        b"2024-01-15T10:30:02.000Z,user,=1+1\r\n"
    )
    result = cli("import", "alice", str(source))
    assert result.exit_code == 0, result.stderr
    assert _contents(cli, "alice") == ['Hello, "world"', 'one,\ntwo\r\nthree "quoted", four', "=1+1"]


def test_stdin_and_format_detection(root: Path, cli: Cli) -> None:
    lines = '{"role": "user", "content": "a"}\n{"role": "assistant", "content": "b", "timestamp": "2024-01-15T10:30:00Z"}\n'
    assert cli("import", "alice", "-", input=lines).exit_code == 0
    openai = '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q", "name": "ann", "weight": 0}]}\n'
    assert cli("import", "alice", "-", "--conversation", "tuning", input=openai).exit_code == 0
    assert _contents(cli, "alice", "--conversation", "current") == ["a", "b"]
    tuned = cli.jsonl("export", "alice", "--conversation", "tuning")
    assert [(r["role"], r["content"], r["metadata"]) for r in tuned] == [("system", "s", None), ("user", "q", {"name": "ann", "weight": 0})]
    assert tuned[0]["timestamp"] == tuned[1]["timestamp"]  # the time of the import
    one_line_reference = json.dumps(REFERENCE_EXPORT) + "\n"
    assert cli("-v", "import", "bob", "-", input=one_line_reference).stderr.startswith("dialogctl: reading stdin as json")
    assert cli("import", "carol", "-", input="just some words\n").exit_code == 2


@pytest.mark.parametrize(
    "name,text,where",
    [
        ("bad.jsonl", '{"role": "user", "content": "fine"}\n{"role": "robot", "content": "x"}\n', "bad.jsonl line 2: field 'role': unknown role 'robot'"),
        ("bad.jsonl", '{"role": "user", "content": "fine"}\n\n{"role": "user", "content": 5}\n', "bad.jsonl line 3: field 'content' must be text"),
        ("bad.jsonl", '{"role": "user", "content": "a", "timestamp": "yesterday-ish"}\n', "line 1: field 'timestamp' must be an ISO 8601"),
        ("bad.jsonl", '{"role": "user", "content": "a", "colour": 1}\n', "line 1: unknown field(s) 'colour'"),
        ("bad.jsonl", '{"role": "user", "content": "a"}\n{"role": "user",\n', "bad.jsonl line 2: not valid JSON at character 17"),
        ("bad.jsonl", '{"role": "user", "content": "a", "metadata": {"x": NaN}}\n', "NaN is not a JSON number"),
        ("bad.jsonl", '{"role": "user", "role": "assistant", "content": "a"}\n', "appears twice"),
        ("bad.json", json.dumps({"userId": "u", "messages": [{"role": "user", "content": "a"}, {"content": "b"}]}), "bad.json: messages[1]: field 'role'"),
        ("bad.json", json.dumps([{"userId": "u", "messages": [{"role": "user", "content": "a", "metadata": []}]}]), "[0].messages[0]: field 'metadata'"),
        (
            "bad.json",
            json.dumps({"userId": "u", "messageCount": 3, "messages": [{"role": "user", "content": "a"}]}),
            "messageCount says 3 but messages holds 1",
        ),
        ("bad.json", '{"userId": "u",\n  "messages": [}', "bad.json: not valid JSON at line 2 column 16"),
        ("bad.csv", 'role,content\nuser,fine\nuser,"a","b"\n', "bad.csv line 3 (record 1): 3 cells where the header has 2"),
        ("bad.csv", 'role,content\nuser,"multi\nline"\nbot,x\n', "bad.csv line 4 (record 1): column 'role': unknown role 'bot'"),
        ("bad.csv", 'role,content,metadata\nuser,a,"{""x"": 1"\n', "line 2 (record 0): column 'metadata': not valid JSON at character 8"),
        ("bad.csv", "role,text\nuser,a\n", "unknown column(s) 'text'"),
        ("bad.csv", 'role,content\nuser,"unclosed\n', "not valid CSV"),
    ],
)
def test_a_bad_record_anywhere_writes_nothing(root: Path, cli: Cli, tmp_path: Path, name: str, text: str, where: str) -> None:
    journal_with(root, {("alice", None): [Message("user", "before", "2024-01-15T10:30:00.000Z")]})
    before = _files(root)
    source = tmp_path / name
    source.write_text(text)
    result = cli("import", "alice", str(source))
    assert result.exit_code == 2, result.stderr
    assert where in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert _files(root) == before


def test_errors_never_quote_message_text(root: Path, cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "swapped.csv"
    source.write_text("content,role\nuser,my secret diagnosis\n")  # columns mixed up: the role column holds text
    result = cli("import", "alice", str(source))
    assert result.exit_code == 2
    assert "secret" not in result.stderr and "unknown role of 19 characters" in result.stderr


def test_several_conversations_in_one_file_are_refused(root: Path, cli: Cli, tmp_path: Path) -> None:
    journal_with(
        root, {("alice", "a1"): [Message("user", "old", "2024-01-15T10:30:00.000Z")], ("alice", None): [Message("user", "new", "2024-01-16T10:30:00.000Z")]}
    )
    dump = tmp_path / "dump.jsonl"
    assert cli("export", "alice", "--include-archives", "-o", str(dump)).exit_code == 0
    result = cli("import", "bob", str(dump))
    assert result.exit_code == 2
    assert "holds messages of 2 conversations (alice/current, alice/a1 (archived))" in result.stderr
    assert "--conversation" in result.stderr  # the hint
    assert not (root / "users" / "bo").exists()


def test_dry_run_writes_nothing_not_even_a_lock(root: Path, cli: Cli, tmp_path: Path) -> None:
    journal_with(root, {("alice", None): [Message("user", "before", "2024-01-15T10:30:00.000Z")]})
    source = tmp_path / "in.json"
    source.write_text(json.dumps(REFERENCE_EXPORT))
    before = _files(root)
    for user in ("alice", "newcomer"):
        result = cli("import", user, str(source), "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert "2 valid messages" in result.stderr and "nothing written" in result.stderr
    assert "which holds 1 now" in cli("import", "alice", str(source), "--dry-run").stderr
    assert _files(root) == before
    assert not (root / "users" / "ne").exists()


def test_as_archive_never_replaces_one(root: Path, cli: Cli, tmp_path: Path) -> None:
    journal_with(root, {("alice", "kept"): [Message("user", "original", "2024-01-15T10:30:00.000Z")]})
    source = tmp_path / "in.json"
    source.write_text(json.dumps(REFERENCE_EXPORT))
    before = _files(root)
    for args in ([], ["--dry-run"]):
        refused = cli("import", "alice", str(source), "--as-archive", "kept", *args)
        assert refused.exit_code == 2 and "already exists" in refused.stderr
    assert _files(root) == before
    assert cli("import", "alice", str(source), "--as-archive", "imported").exit_code == 0
    assert _contents(cli, "alice", "--archive", "imported") == [m["content"] for m in REFERENCE_EXPORT["messages"]]
    assert _contents(cli, "alice") == []  # the current conversation is untouched


def test_a_new_user_imported_as_an_archive_verifies_clean(root: Path, cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps({"role": "user", "content": "hi", "timestamp": "2023-01-01T00:00:00.000Z"}) + "\n")
    assert cli("import", "newbie", str(source), "--as-archive", "2023-imported").exit_code == 0
    # As the servers leave a user after an archive: the archive, and an empty current conversation.
    dialogs = root / "users/ne/wb/ie/dialogs"
    assert (dialogs / "current.yaml").read_bytes() == b""
    result = cli("verify")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert _contents(cli, "newbie", "--archive", "2023-imported") == ["hi"]
    assert _contents(cli, "newbie") == []


def test_archive_threshold_never_splits_an_import(root: Path, cli: Cli, tmp_path: Path) -> None:
    def import_lines(user: str, count: int, tag: str) -> None:
        source = tmp_path / f"{tag}.jsonl"
        source.write_text("".join(json.dumps({"role": "user", "content": f"{tag}{i}"}) + "\n" for i in range(count)))
        result = cli("--set", "archiveThreshold=4", "import", user, str(source))
        assert result.exit_code == 0, result.stderr

    import_lines("alice", 3, "a")  # 3 of 4: stays current
    import_lines("alice", 2, "b")  # 3 + 2 would pass 4: the 3 are archived first
    conversations = cli.json("list", "alice", "--format", "json")
    assert sorted((c["kind"], c["messages"]) for c in conversations) == [("archive", 3), ("current", 2)]
    assert _contents(cli, "alice") == ["b0", "b1"]
    import_lines("bob", 6, "c")  # more than the threshold alone: written whole, then archived
    conversations = cli.json("list", "bob", "--format", "json")
    assert sorted((c["kind"], c["messages"]) for c in conversations) == [("archive", 6), ("current", 0)]


def test_raw_csv_round_trip_keeps_leading_quotes(root: Path, cli: Cli, tmp_path: Path) -> None:
    contents = ["'=kept as typed", "=1+1", "''", "'"]
    journal_with(root, {("alice", None): [Message("user", c, "2024-01-15T10:30:00.000Z") for c in contents]})
    raw = tmp_path / "raw.csv"
    assert cli("export", "alice", "--format", "csv", "--raw-csv", "-o", str(raw)).exit_code == 0
    assert cli("import", "bob", str(raw), "--raw-csv").exit_code == 0
    assert _contents(cli, "bob") == contents
    assert cli("import", "carol", str(raw), "--format", "jsonl", "--raw-csv").exit_code == 2


def test_sessions_layout_imports_into_a_named_conversation(root: Path, cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps(REFERENCE_EXPORT))
    result = cli("--set", "conversations=sessions", "import", "alice", str(source), "--conversation", "chat-7")
    assert result.exit_code == 0, result.stderr
    assert (root / "users" / "al" / "ic" / "e" / "dialogs" / "session-chat-7.yaml").is_file()


def test_a_missing_file_and_an_empty_one(root: Path, cli: Cli, tmp_path: Path) -> None:
    missing = cli("import", "alice", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = cli("import", "alice", str(empty))
    assert result.exit_code == 0 and "nothing imported" in result.stderr
    assert not root.exists()


def test_help_has_examples(cli: Cli) -> None:
    result = cli("import", "--help")
    assert result.exit_code == 0 and "Examples" in result.stdout and "--as-archive" in result.stdout


def test_sqlite_from_a_file_or_stdin_and_foreign_databases(root: Path, cli: Cli, tmp_path: Path) -> None:
    import sqlite3

    journal_with(root, {("alice", None): [Message("user", "q", "2024-01-15T10:30:00.000Z"), Message("assistant", "a", "2024-01-15T10:30:01.000Z")]})
    db = tmp_path / "alice.db"
    assert cli("export", "alice", "--format", "sqlite", "-o", str(db)).exit_code == 0
    assert cli("import", "bob", "-", input=db.read_bytes()).exit_code == 0
    assert _contents(cli, "bob") == ["q", "a"]
    tampered = tmp_path / "tampered.db"
    tampered.write_bytes(db.read_bytes())
    with sqlite3.connect(tampered) as conn:
        conn.execute("UPDATE conversations SET message_count = 3")
    result = cli("import", "carol", str(tampered))
    assert result.exit_code == 2 and "message_count says 3 but the messages table holds 2" in result.stderr
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x)")
    result = cli("import", "carol", str(foreign))
    assert result.exit_code == 2 and "not a database written by" in result.stderr
    broken = tmp_path / "broken.db"
    broken.write_bytes(db.read_bytes()[:100] + b"\xff" * 4000)
    result = cli("import", "carol", str(broken))
    assert result.exit_code == 2 and "not a readable SQLite database" in result.stderr
    assert not (root / "users" / "ca").exists()


def test_the_import_and_export_cores_never_load_the_cli_toolkit() -> None:
    import subprocess
    import sys

    code = "import sys, dialogctl.exchange.importers, dialogctl.exchange.registry, dialogctl.exchange.pipeline\nprint(','.join(m for m in ('typer', 'rich', 'click') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
