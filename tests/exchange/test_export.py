"""``export``: selection, every format's shape, and the -o FILE rules."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialogctl.exchange.cursor import message_id, message_ids
from dialogctl.models import Message

from ..conftest import Cli
from ..samples import hostile_messages, journal_with


def _msg(content: str, role: str = "user", second: int = 0, metadata: dict | None = None) -> Message:
    return Message(role, content, f"2024-01-15T10:30:{second:02d}.000Z", metadata)


@pytest.fixture
def two_users(root: Path) -> Path:
    journal_with(
        root,
        {
            ("alice", "first"): [_msg("old question"), _msg("old answer", "assistant", 1)],
            ("alice", None): [_msg("hi", second=10), _msg("hello", "assistant", 11, {"model": "gpt-4", "tokens": 7}), _msg("bye", second=12)],
            ("bob", None): [_msg("only question", second=20)],
        },
    )
    return root


def test_selection_current_archives_and_filters(two_users: Path, cli: Cli) -> None:
    current = cli.jsonl("export", "alice")
    assert [(r["conversation"], r["index"], r["content"]) for r in current] == [("current", 0, "hi"), ("current", 1, "hello"), ("current", 2, "bye")]
    everything = cli.jsonl("export", "alice", "--include-archives")
    assert [(r["conversation"], r["archived"]) for r in everything][-2:] == [("first", True), ("first", True)]
    archive = cli.jsonl("export", "alice", "--archive", "first")
    assert [r["content"] for r in archive] == ["old question", "old answer"]
    both = cli.jsonl("export", "alice", "bob")
    assert [r["user"] for r in both] == ["alice"] * 3 + ["bob"]
    # filters keep each message's index in its whole conversation
    answers = cli.jsonl("export", "alice", "--include-archives", "--role", "assistant")
    assert [(r["conversation"], r["index"]) for r in answers] == [("current", 1), ("first", 1)]
    late = cli.jsonl("export", "--all", "--since", "2024-01-15T10:30:11Z", "--until", "2024-01-15T10:30:20Z")
    assert [(r["user"], r["index"]) for r in late] == [("alice", 1), ("alice", 2)]
    # --model and --meta: the metadata's model, a key's JSON value; indexes as ever
    assert [(r["user"], r["index"]) for r in cli.jsonl("export", "--all", "--model", "gpt-4")] == [("alice", 1)]
    assert [(r["user"], r["index"]) for r in cli.jsonl("export", "--all", "--meta", "tokens=7")] == [("alice", 1)]
    assert cli.jsonl("export", "--all", "--meta", 'tokens="7"') == [] and cli.jsonl("export", "--all", "--model", "gpt-3") == []
    # --all with --archive: only the users who have that archive
    assert [r["user"] for r in cli.jsonl("export", "--all", "--archive", "first")] == ["alice", "alice"]


def test_a_missing_user_fails_before_any_output(two_users: Path, cli: Cli) -> None:
    result = cli("export", "alice", "nobody", "--format", "json")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "nobody" in result.stderr


def test_json_is_an_array_of_conversations_whatever_their_number(two_users: Path, cli: Cli) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    single = cli("export", "alice", "--format", "json", env=env)
    array = json.loads(single.stdout)
    assert isinstance(array, list) and len(array) == 1  # one conversation: the same shape as several
    obj = array[0]
    assert list(obj) == ["userId", "conversation", "archived", "timestamp", "messageCount", "messages"]
    assert (obj["conversation"], obj["archived"]) == ("current", False)
    assert obj["timestamp"] == "2023-11-14T22:13:20.000Z" and obj["messageCount"] == 3
    assert obj["messages"][1] == {
        "role": "assistant",
        "content": "hello",
        "timestamp": "2024-01-15T10:30:11.000Z",
        "metadata": {"model": "gpt-4", "tokens": 7},
        "message_id": message_id("alice", Message("assistant", "hello", "2024-01-15T10:30:11.000Z"), 0),
    }
    assert single.stdout.splitlines()[0] == "[" and len(single.stdout.splitlines()) == 3
    many = cli("export", "--all", "--format", "json", env=env)
    array = json.loads(many.stdout)
    assert [(c["userId"], c["conversation"], c["archived"], c["messageCount"]) for c in array] == [
        ("alice", "current", False, 3),
        ("alice", "first", True, 2),
        ("bob", "current", False, 1),
    ]
    lines = many.stdout.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 5  # one conversation per line
    filtered = json.loads(cli("export", "--all", "--format", "json", "--role", "assistant").stdout)
    assert [c["userId"] for c in filtered] == ["alice", "alice"]  # bob has no assistant message
    archive = json.loads(cli("export", "alice", "--archive", "first", "--format", "json").stdout)
    assert [(c["conversation"], c["archived"]) for c in archive] == [("first", True)]


def test_json_import_reads_the_old_single_object_and_the_array(two_users: Path, cli: Cli, tmp_path: Path) -> None:
    exported = json.loads(cli("export", "alice", "--format", "json").stdout)
    old_form = {k: v for k, v in exported[0].items() if k not in ("conversation", "archived")}  # what earlier versions wrote for one conversation
    for name, body in (("old.json", old_form), ("new.json", exported)):
        source = tmp_path / name
        source.write_text(json.dumps(old_form if name == "old.json" else body, indent=2), encoding="utf-8")
        user = name.split(".")[0]
        assert cli("import", user, str(source)).exit_code == 0
        again = json.loads(cli("export", user, "--format", "json").stdout)
        # The same messages; their ids are the new user's (message_id includes the user).
        assert [{k: v for k, v in m.items() if k != "message_id"} for m in again[0]["messages"]] == [
            {k: v for k, v in m.items() if k != "message_id"} for m in exported[0]["messages"]
        ]
        assert [m["message_id"] for m in again[0]["messages"]] == message_ids(
            user, [Message(**{k: v for k, v in m.items() if k != "message_id"}) for m in exported[0]["messages"]]
        )


def test_csv_is_rfc4180_with_formula_cells_neutralised(root: Path, cli: Cli) -> None:
    import csv
    import io

    journal_with(root, {("alice", None): [_msg("=1+1"), _msg('a,b\n"c"', "assistant", 1, {"model": "@evil", "tokens": {"total": 5}}), _msg("'=x", second=2)]})
    result = cli("export", "alice", "--format", "csv")
    assert result.exit_code == 0
    text = result.stdout_bytes.decode()  # .stdout turns CRLF into LF
    assert text.startswith('"user","conversation","archived","index","timestamp","role","content","model","totalTokens","metadata","message_id"\r\n"alice",')
    last_id = message_id("alice", _msg("'=x", second=2), 0)
    assert text.endswith('"user","\'\'=x","","","","' + last_id + '"\r\n')
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["content"] for r in rows] == ["'=1+1", 'a,b\n"c"', "''=x"]
    assert rows[1]["model"] == "'@evil" and rows[1]["totalTokens"] == "5"
    assert json.loads(rows[1]["metadata"]) == {"model": "@evil", "tokens": {"total": 5}}
    assert rows[0]["metadata"] == "" and rows[0]["archived"] == "false" and rows[0]["index"] == "0"
    raw = list(csv.DictReader(io.StringIO(cli("export", "alice", "--format", "csv", "--raw-csv").stdout, newline="")))
    assert [r["content"] for r in raw] == ["=1+1", 'a,b\n"c"', "'=x"]


def test_markdown_transcript(two_users: Path, cli: Cli) -> None:
    text = cli("export", "alice", "--format", "markdown").stdout
    assert text.startswith("# alice · current · 2024-01-15T10:30:10.000Z to 2024-01-15T10:30:12.000Z\n")
    assert "\n## 1 · assistant · 2024-01-15T10:30:11.000Z\n\nmodel gpt-4 · 7 tokens\n\n```text\nhello\n```\n" in text


def test_openai_and_sharegpt_skip_and_count_what_fails_the_checks(root: Path, cli: Cli) -> None:
    journal_with(
        root,
        {
            ("good", None): [_msg("q"), _msg("a", "assistant", 1)],
            ("no-answer", None): [_msg("q")],
            ("tools", None): [_msg("q"), _msg("{}", "tool", 1), _msg("a", "assistant", 2)],
            ("blank", None): [_msg("q"), _msg("  \n", "assistant", 1)],
        },
    )
    result = cli("export", "--all", "--format", "openai", "--system", "Be brief.")
    assert result.exit_code == 0
    expected = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert result.stdout == json.dumps(expected) + "\n"
    assert "skipped 3 conversation(s)" in result.stderr
    assert "1 with empty content" in result.stderr and "1 with no assistant message" in result.stderr and "1 with unknown role" in result.stderr
    share = cli("export", "good", "--format", "sharegpt", "--system", "Be brief.")
    assert (
        share.stdout
        == json.dumps({"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}) + "\n"
    )
    assert cli("-q", "export", "--all", "--format", "openai").stderr == ""


def test_sqlite_database(two_users: Path, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "journal.db"
    result = cli("export", "--all", "--format", "sqlite", "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    db = sqlite3.connect(target)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    indexed = {
        row[1]: [c[2] for c in db.execute(f"PRAGMA index_info({row[1]})")]
        for table in ("conversations", "messages")
        for row in db.execute(f"PRAGMA index_list({table})")
    }
    assert indexed["conversations_user"] == ["user"] and indexed["messages_timestamp"] == ["timestamp"]
    rows = db.execute(
        'SELECT c.user, c.conversation, c.archived, m."index", m.role, m.content, m.model, m.total_tokens, json_extract(m.metadata, "$.model") '
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.user = 'alice' AND m.role = 'assistant' ORDER BY m.timestamp"
    ).fetchall()
    assert rows == [
        ("alice", "first", 1, 1, "assistant", "old answer", None, None, None),
        ("alice", "current", 0, 1, "assistant", "hello", "gpt-4", 7, "gpt-4"),
    ]
    # The full-text index sqlite-utils and Datasette detect (their query), and what it finds.
    detect = "SELECT name FROM sqlite_master WHERE rootpage = 0 AND (sql LIKE :like OR sql LIKE :like2 OR (tbl_name = :table AND sql LIKE '%VIRTUAL TABLE%USING FTS%'))"
    like = {"like": "%VIRTUAL TABLE%USING FTS%content=[messages]%", "like2": '%VIRTUAL TABLE%USING FTS%content="messages"%', "table": "messages"}
    assert db.execute(detect, like).fetchall() == [("messages_fts",)]
    found = db.execute("SELECT m.content, m.role FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH 'answer'").fetchall()
    assert found == [("old answer", "assistant")]
    assert db.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'question'").fetchone() == (2,)
    spans = db.execute("SELECT conversation, message_count, first_timestamp, last_timestamp FROM conversations WHERE user = 'alice' ORDER BY id").fetchall()
    assert spans == [
        ("current", 3, "2024-01-15T10:30:10.000Z", "2024-01-15T10:30:12.000Z"),
        ("first", 2, "2024-01-15T10:30:00.000Z", "2024-01-15T10:30:01.000Z"),
    ]


def test_sqlite_without_fts5_is_written_without_the_index_and_says_so(two_users: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogctl.exchange.formats import sqlite as fmt

    monkeypatch.setattr(fmt, "SQLITE_FTS", fmt.SQLITE_FTS.replace("USING fts5", "USING no_such_fts"))  # as a SQLite built without FTS5 answers
    target = tmp_path / "journal.db"
    result = cli("export", "alice", "--format", "sqlite", "-o", str(target))
    assert result.exit_code == 0 and "no full-text index" in result.stderr and "no FTS5" in result.stderr
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (3,)
    assert db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'messages_fts%'").fetchall() == []
    imported = cli("--root", str(tmp_path / "again"), "import", "alice", str(target))
    assert imported.exit_code == 0 and "imported 3 messages" in imported.stderr, imported.stderr
    assert cli("-q", "export", "--all", "--format", "sqlite", "-o", str(tmp_path / "quiet.db")).stderr == ""


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "sqlite"], "-o FILE"),
        (["--format", "sqlite", "-o", "-"], "-o FILE"),
        (["--format", "json", "--raw-csv"], "--raw-csv"),
        (["--format", "csv", "--system", "x"], "--system"),
        (["--force"], "--force"),
        (["--conversation", "c", "--include-archives"], "--include-archives"),
    ],
)
def test_option_combinations_are_usage_errors(two_users: Path, cli: Cli, args: list[str], message: str) -> None:
    result = cli("export", "alice", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and result.stdout == ""


# --- -o FILE ----------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_output_file_is_created_with_the_journal_mode(two_users: Path, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "out" / "alice.jsonl"
    target.parent.mkdir()
    result = cli("export", "alice", "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert [json.loads(line)["content"] for line in target.read_text().splitlines()] == ["hi", "hello", "bye"]
    assert target.stat().st_mode & 0o777 == 0o600
    assert _leftovers(target.parent) == []
    assert cli("export", "alice", "-o", "-").stdout == target.read_text()


def test_output_file_is_never_overwritten_without_force(two_users: Path, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "alice.json"
    target.write_text("precious")
    refused = cli("export", "alice", "--format", "json", "-o", str(target))
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert target.read_text() == "precious"
    replaced = cli("export", "alice", "--format", "json", "-o", str(target), "--force")
    assert replaced.exit_code == 0
    assert json.loads(target.read_text())[0]["messageCount"] == 3
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_symlink_at_the_target_is_never_followed(two_users: Path, cli: Cli, tmp_path: Path, force: list[str]) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "export.jsonl"
    link.symlink_to(victim)
    result = cli("export", "alice", "-o", str(link), *force)
    assert result.exit_code == 6, result.stderr
    assert "symlink" in result.stderr
    assert victim.read_text() == "precious" and link.is_symlink()
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "nowhere")
    assert cli("export", "alice", "-o", str(dangling), *force).exit_code == 6
    assert not (tmp_path / "nowhere").exists()
    assert _leftovers(tmp_path) == []


def test_a_folder_at_the_target_is_refused(two_users: Path, cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    result = cli("export", "alice", "-o", str(tmp_path / "taken"), "--force")
    assert result.exit_code == 2 and "not a regular file" in result.stderr


def test_a_failed_export_leaves_no_file(two_users: Path, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "dump.jsonl"
    result = cli("export", "alice", "ghost", "-o", str(target))
    assert result.exit_code == 3
    assert not target.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_a_temp_file_swapped_for_a_symlink_is_refused(two_users: Path, tmp_path: Path, fmt: str) -> None:
    from dialogctl import Journal
    from dialogctl.errors import UnsafePath
    from dialogctl.exchange.outputfile import OutputFile
    from dialogctl.exchange.records import ExportOptions
    from dialogctl.exchange.registry import write_export
    from dialogctl.exchange.selection import Selection, select

    journal = Journal.open()
    victim = tmp_path / "victim.db"
    victim.write_bytes(b"")  # an empty file is what SQLite would happily turn into a database
    target = tmp_path / f"out.{fmt}"
    with pytest.raises(UnsafePath):
        with OutputFile(str(target)) as out:
            os.unlink(out.temp_path)
            os.symlink(victim, out.temp_path)
            write_export(out, select(journal, Selection(("alice",))), ExportOptions(fmt))
    assert victim.read_bytes() == b""
    assert not target.exists() and _leftovers(tmp_path) == []


def test_large_content_and_every_hostile_line_survive_jsonl(root: Path, cli: Cli) -> None:
    messages = hostile_messages() + [_msg("x" * 300_000)]
    journal_with(root, {("alice", None): messages})
    result = cli("export", "alice")
    records = [json.loads(line) for line in result.stdout.split("\n") if line]  # not splitlines(): content holds U+2028 and friends
    assert [(r["role"], r["content"], r["timestamp"], r["metadata"]) for r in records] == [tuple(m) for m in messages]


@given(st.text())
def test_neutralising_is_undone_exactly_and_leaves_no_formula(cell: str) -> None:
    from dialogctl.exchange.formats.csv import neutralise, restore_cell

    assert restore_cell(neutralise(cell)) == cell
    assert not neutralise(cell) or neutralise(cell)[0] not in "=+-@\t\r\n\0"


def test_damaged_files_still_export_every_intact_message_to_the_file(fixture_tree, cli: Cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = fixture_tree("v1-broken")
    target = tmp_path / "broken.csv"
    result = cli("--root", str(root), "export", "--all", "--format", "csv", "-o", str(target))
    assert result.exit_code == 5  # damage reported after the file was written
    assert "torn record" in result.stderr
    import csv

    with open(target, newline="", encoding="utf-8") as fh:
        users = [row["user"] for row in csv.DictReader(fh)]
    assert sorted(set(users)) == ["carol-1", "carol-2", "carol-3"] and len(users) == 8


@given(
    st.lists(
        st.builds(
            Message,
            st.sampled_from(["user", "assistant"]),
            st.text(),
            st.just("2024-01-15T10:30:00.000Z"),
            st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2), max_size=3),
        ),
        max_size=4,
    ),
)
def test_conversation_objects_are_written_exactly_as_json_dumps_would(messages: list[Message]) -> None:
    import io

    from dialogctl.exchange.formats.json import write_conversation_object
    from dialogctl.exchange.selection import Selected
    from dialogctl.models import ConversationRef

    out = io.StringIO()
    write_conversation_object(out, Selected(ConversationRef("alice", "archive", "a1"), list(enumerate(messages))), "2024-01-15T00:00:00.000Z")
    whole = {
        "userId": "alice",
        "conversation": "a1",
        "archived": True,
        "timestamp": "2024-01-15T00:00:00.000Z",
        "messageCount": len(messages),
        "messages": [{**m.to_raw(), "message_id": mid} for m, mid in zip(messages, message_ids("alice", messages), strict=True)],
    }
    assert out.getvalue() == json.dumps(whole, ensure_ascii=False)


@pytest.mark.parametrize("tree", ["v1-broken", "v1-after-cleanup", "v3-sessions"])
def test_export_on_every_core_writes_what_a_serial_export_writes(tree: str, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes format JSONL and CSV; the bytes, the damage reported and the exit code stay a serial export's."""
    from dialogctl import parallel

    from ..conftest import copy_tree

    root = copy_tree(tree, tmp_path)
    monkeypatch.setenv("DIALOGUE_JOURNAL_ROOT", str(root))
    journal_with(root, {("zed", None): hostile_messages(), ("zed", "old"): hostile_messages()[:5], ("amy", None): hostile_messages()[3:9]})
    users = sorted({p.parent.parent.name for p in root.glob("users/**/dialogs/current.yaml")} | {"amy", "zed"})[:3]
    runs = [
        ("--all",),
        ("--all", "--role", "assistant"),
        ("--all", "--since", "2024-01-15T10:00:30Z"),
        ("--all", "--until", "2000-01-01T00:00:00Z"),  # every conversation filtered empty
        ("--all", "--model", "=cmd|' /C calc'!A0"),  # hostile_messages' model
        ("--all", "--meta", "tokens.total=3", "--meta", "tokens.prompt=1"),
        (*users, "--include-archives"),
        ("zed", "amy"),
    ]

    def exports() -> list[tuple[int, str, str]]:
        out = []
        for fmt in ("jsonl", "csv"):
            for args in runs:
                result = cli("export", *args, "--format", fmt)
                out.append((result.exit_code, result.stdout, result.stderr))
        return out

    monkeypatch.setattr(parallel, "workers", lambda: 1)
    serial = exports()
    by_model, by_meta = serial[len(runs) - 4][1], serial[len(runs) - 3][1]  # jsonl: the filters leave some messages, not all
    assert 0 < by_model.count("\n") < serial[0][1].count("\n") and by_meta.count("\n") == 3  # message 3: zed's, zed's "old", amy's
    assert any(code == 5 for code, _, _ in serial) == (tree == "v1-broken")  # the damaged tree reports its damage (v1-after-cleanup's is recovered)
    assert any("glued separators split" in err for _, _, err in serial) == (tree == "v1-after-cleanup")
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    for batch in (1, 3000):  # every file its own job; several files a job
        monkeypatch.setattr(parallel, "BATCH_BYTES", batch)
        assert exports() == serial


def test_a_read_error_in_a_worker_is_the_serial_exports_error(root: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogctl import parallel

    journal_with(root, {("alice", None): [_msg("hi")], ("bob", None): [_msg("yo")]})
    from dialogctl.disk import fileops as storage

    real_read_all = storage.read_all

    def failing_read_all(fd: int, *args: object) -> bytes:
        data = real_read_all(fd, *args)  # type: ignore[arg-type]
        if b"yo" in data:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return data

    monkeypatch.setattr(storage, "read_all", failing_read_all)  # worker processes are forked with it
    serial = cli("export", "--all")
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    fanned = cli("export", "--all")
    assert (fanned.exit_code, fanned.stdout, fanned.stderr) == (serial.exit_code, serial.stdout, serial.stderr)
    assert serial.exit_code == 6 and "Input/output error" in serial.stderr
