"""``--redact`` on export (every format, serial and on worker processes), show, search and follow."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from dialogctl import Journal
from dialogctl.exchange.registry import FORMATS
from dialogctl.models import Message
from dialogctl.times import format_timestamp, utc_now

from ..conftest import Cli

# Each secret as written in the journal, and what it must become.
SECRETS = {
    "bob@example.com": "[REDACTED:email]",
    "carol@example.org": "[REDACTED:email]",
    "4111 1111 1111 1111": "[REDACTED:card]",
    "+44 20 7946 0958": "[REDACTED:phone]",
    "GB82 WEST 1234 5698 7654 32": "[REDACTED:iban]",
    "192.168.1.20": "[REDACTED:ip]",
    "2001:db8::8a2e:370:7334": "[REDACTED:ip]",
    "sk-proj-abcdefghijklmnopqrstuvwx1234": "[REDACTED:token]",
    "AKIAIOSFODNN7EXAMPLE": "[REDACTED:token]",
    "abcdef0123456789abcdef": "[REDACTED:token]",  # after "Bearer "
}
COUNTS = "redacted 2 email, 1 phone, 1 card, 1 iban, 2 ip, 3 token"


def _now(second: int) -> str:
    from datetime import timedelta

    return format_timestamp(utc_now() - timedelta(seconds=60 - second))


@pytest.fixture
def secrets(root: Path) -> Path:
    journal = Journal.open(str(root))
    journal.append(
        "alice",
        [
            Message("user", "Hi, I'm bob@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958", _now(0)),
            Message(
                "assistant",
                "Thanks. Your IBAN GB82 WEST 1234 5698 7654 32 is noted; a refund is on its way.",
                _now(1),
                {"client": {"ip": "192.168.1.20", "emails": ["carol@example.org"]}, "model": "gpt-4", "tokens": 12},
            ),
            Message("user", "my key is sk-proj-abcdefghijklmnopqrstuvwx1234 and AKIAIOSFODNN7EXAMPLE, server 2001:db8::8a2e:370:7334", _now(2)),
            Message("assistant", "Use the header Authorization: Bearer abcdef0123456789abcdef. Refund done at 10:30 on 2024-01-15.", _now(3)),
        ],
    )
    journal.append("bob", [Message("user", "hello there, order #1234 at 10:30", _now(4)), Message("assistant", "Hi! v1.2.3 is out.", _now(5))])
    return root


def _journal_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and "users" in p.parts}


def _redacted(text: str) -> str:
    for secret, replacement in SECRETS.items():
        text = text.replace(secret, replacement)
    return text


def _output(cli: Cli, tmp_path: Path, fmt: str, *args: str) -> tuple[str, str]:
    """(the export as text, stderr); sqlite's database dumped as SQL, parquet's dataset as its rows in JSON."""
    if fmt == "parquet":
        import duckdb

        lake = tmp_path / f"lake{len(list(tmp_path.glob('lake*')))}"
        result = cli("export", "--all", "--format", "parquet", "-o", str(lake), *args)
        assert result.exit_code == 0, result.stderr
        rel = duckdb.sql(f'SELECT * EXCLUDE (date) FROM read_parquet(\'{lake}/**/*.parquet\', hive_partitioning = true) ORDER BY "user", conversation, "index"')
        rows = [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
        return json.dumps(rows, ensure_ascii=False, default=str, indent=1), result.stderr
    if fmt != "sqlite":
        result = cli("export", "--all", "--format", fmt, *args, env={"SOURCE_DATE_EPOCH": "1700000000"})
        assert result.exit_code == 0, result.stderr
        return result.stdout, result.stderr
    db = tmp_path / f"out{len(list(tmp_path.glob('*.db')))}.db"
    result = cli("export", "--all", "--format", "sqlite", "-o", str(db), *args, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(db) as con:
        # The full-text index is built from the rows as written: with --redact no secret is found through it.
        for word in ("bob", "4111", "AKIAIOSFODNN7EXAMPLE", "abcdef0123456789abcdef"):
            found = con.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (f'"{word}"',)).fetchone()
            assert found == ((0,) if "--redact" in args else (1,)), word
        assert con.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'REDACTED'").fetchone() == ((4,) if "--redact" in args else (0,))
        # The index's own tables (binary segments) are derived from the content compared here: left out of the dump.
        return "\n".join(line for line in con.iterdump() if "messages_fts" not in line), result.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_export_format_carries_the_redacted_text_and_nothing_else_changes(secrets: Path, cli: Cli, tmp_path: Path, fmt: str) -> None:
    before = _journal_files(secrets)
    plain, plain_err = _output(cli, tmp_path, fmt)
    redacted, err = _output(cli, tmp_path, fmt, "--redact")
    assert "redacted" not in plain_err
    assert any(secret in plain for secret in SECRETS)  # the format carries the text at all
    for secret in SECRETS:
        assert secret not in redacted
    assert redacted == _redacted(plain)  # exactly the secrets replaced, every other byte the same
    assert COUNTS in err  # counted over the messages, metadata included, whatever the format shows of them
    assert _journal_files(secrets) == before  # the journal is never changed


def test_export_on_worker_processes_redacts_and_counts_as_a_serial_export(secrets: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogctl import parallel

    monkeypatch.setattr(parallel, "workers", lambda: 1)
    serial = cli("export", "--all", "--redact")
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
    parallel_run = cli("export", "--all", "--redact")
    assert parallel_run.exit_code == serial.exit_code == 0
    assert parallel_run.stdout == serial.stdout
    assert "[REDACTED:card]" in parallel_run.stdout
    assert COUNTS in parallel_run.stderr and COUNTS in serial.stderr


def test_quiet_silences_the_counts_and_stdout_never_has_them(secrets: Path, cli: Cli) -> None:
    result = cli("-q", "export", "--all", "--redact")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "redacted" not in cli("export", "--all", "--redact").stdout.replace("[REDACTED:", "")


def test_a_conversation_without_secrets_is_byte_for_byte_the_same(secrets: Path, cli: Cli) -> None:
    plain = cli("export", "bob", "--format", "json", env={"SOURCE_DATE_EPOCH": "1700000000"})
    redacted = cli("export", "bob", "--format", "json", "--redact", env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert redacted.stdout == plain.stdout
    assert "redacted nothing" in redacted.stderr


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv", "tsv"])
def test_show_redacts_every_view(secrets: Path, cli: Cli, fmt: str) -> None:
    before = _journal_files(secrets)
    result = cli("show", "alice", "--redact", "--format", fmt, "--no-pager")
    assert result.exit_code == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout
    assert "[REDACTED:iban]" in result.stdout
    assert COUNTS in result.stderr
    assert _journal_files(secrets) == before


def test_show_tail_counts_only_what_it_shows(secrets: Path, cli: Cli) -> None:
    result = cli("show", "alice", "--redact", "--tail", "1", "--format", "jsonl")
    assert json.loads(result.stdout)["content"] == "Use the header Authorization: Bearer [REDACTED:token]. Refund done at 10:30 on 2024-01-15."
    assert "redacted 1 token" in result.stderr


def test_search_matches_the_original_but_prints_redacted_text(secrets: Path, cli: Cli) -> None:
    hits = cli.jsonl("search", "bob@example.com", "--redact", "--format", "jsonl")
    assert [(h["user"], h["index"]) for h in hits] == [("alice", 0)]  # found by the address it holds
    assert hits[0]["content"] == "Hi, I'm [REDACTED:email], card [REDACTED:card], call [REDACTED:phone]"
    assert hits[0]["spans"] == []  # the match was inside what is no longer shown
    refunds = cli.jsonl("search", "refund", "--redact", "--format", "jsonl")
    assert [h["index"] for h in refunds] == [1, 3]
    for hit in refunds:
        assert all(hit["content"][a:b].lower() == "refund" for a, b in hit["spans"]) and hit["spans"]
        assert hit["metadata"] is None or hit["metadata"]["client"] == {"ip": "[REDACTED:ip]", "emails": ["[REDACTED:email]"]}


def test_search_table_shows_no_secret_and_says_the_counts(secrets: Path, cli: Cli) -> None:
    result = cli("search", "card", "--redact", "-C", "1")
    assert result.exit_code == 0
    for secret in SECRETS:
        assert secret not in result.stdout
    assert "[REDACTED:email]" in result.stdout
    assert "redacted 2 email, 1 phone, 1 card, 1 iban, 1 ip" in result.stderr  # the hit and its context message after it


def test_follow_redacts_what_it_prints(secrets: Path, cli: Cli) -> None:
    result = cli("follow", "alice", "--since", "1h", "-n", "4", "--redact", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    for secret in SECRETS:
        assert secret not in result.stdout
    assert lines[1]["metadata"]["client"]["emails"] == ["[REDACTED:email]"]
    assert COUNTS in result.stderr
    plain = cli("follow", "alice", "--since", "1h", "-n", "4", "--format", "jsonl")
    # A message's message_id is taken from the message as written: the same with and without --redact.
    assert [r["message_id"] for r in lines] == [json.loads(line)["message_id"] for line in plain.stdout.splitlines()]


def test_redact_rules_add_kinds_and_imply_redact(secrets: Path, cli: Cli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: refund\n  regex: '(?i)refund'\n- name: order\n  regex: 'order #\\d+'\n", encoding="utf-8")
    out = cli.jsonl("export", "--all", "--redact-rules", str(rules))
    contents = [line["content"] for line in out]
    assert "hello there, [REDACTED:order] at 10:30" in contents
    assert any("[REDACTED:card]" in c for c in contents)  # the built-in rules too
    assert not any("refund" in c.replace("[REDACTED:refund]", "").lower() for c in contents)
    result = cli("export", "--all", "--redact-rules", str(rules))
    assert f"{COUNTS}, 1 order, 2 refund" in result.stderr


@pytest.mark.parametrize("command", [["export", "--all"], ["show", "alice"], ["search", "refund"], ["follow", "--since", "1h", "-n", "1"]], ids=lambda c: c[0])
def test_a_bad_rules_file_is_exit_2_naming_file_and_rule_before_any_output(secrets: Path, cli: Cli, tmp_path: Path, command: list[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: fine\n  regex: 'x+'\n- name: broken\n  regex: 'a(b'\n", encoding="utf-8")
    result = cli(*command, "--redact-rules", str(rules))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"--redact-rules {rules}: rule 'broken': invalid regular expression" in result.stderr
    missing = cli(*command, "--redact-rules", str(tmp_path / "absent.yaml"))
    assert missing.exit_code == 2 and "absent.yaml" in missing.stderr and missing.stdout == ""


def test_a_rules_file_is_read_bounded_and_a_pipe_works(secrets: Path, cli: Cli, tmp_path: Path) -> None:
    """/dev/zero or a huge sparse file as the rules file is refused after 1 MiB; a FIFO (``<(...)``) is read like grep -f reads one."""
    import os
    import threading

    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(1 << 32)  # 4 GiB, sparse: read whole it would take the memory
    for path in ("/dev/zero", str(huge)):
        result = cli("export", "--all", "--redact-rules", path)
        assert result.exit_code == 2 and f"--redact-rules {path}: larger than 1 MiB" in result.stderr and result.stdout == ""
    fifo = tmp_path / "rules.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("- name: order\n  regex: '#\\d+'\n"))
    writer.start()
    result = cli("show", "bob", "--redact-rules", str(fifo))
    writer.join(10)
    assert result.exit_code == 0, result.stderr
    assert "[REDACTED:order]" in result.stdout and "#1234" not in result.stdout
