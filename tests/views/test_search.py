"""``search``: matches, context, exit codes, escaping, and the catalog's and the raw prefilter's shortcuts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ..conftest import Cli
from ..samples import seed_refunds
from ..strategies import contents


def test_search_basics(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    hits = cli.jsonl("search", "refund", "--format", "jsonl")
    assert [(h["user"], h["conversation"], h["index"]) for h in hits] == [("alice", "current", 0), ("bob", "current", 0)]
    assert hits[0]["spans"] == [[8, 14]] and hits[0]["match"] is True
    assert hits[1]["spans"] == [[9, 15], [23, 29]]
    archived = cli.jsonl("search", "refund", "--include-archives", "--format", "jsonl")
    assert {(h["conversation"], h["index"]) for h in archived} == {("current", 0), ("old", 0), ("old", 1)}
    assert cli.jsonl("search", "refund", "--case-sensitive", "--format", "jsonl")[0]["user"] == "bob"
    assert [h["index"] for h in cli.jsonl("search", "refund", "alice", "-a", "--role", "assistant", "--format", "jsonl")] == [1]
    assert [h["user"] for h in cli.jsonl("search", "refund", "--since", "2024-01-17", "--format", "jsonl")] == ["bob"]
    regex = cli.jsonl("search", "-E", r"order \d+", "-a", "--format", "jsonl")
    assert [h["content"] for h in regex] == ["I want a refund for order 42"]
    quoted = cli.jsonl("search", 'said "refund"', "--format", "jsonl")
    assert [h["user"] for h in quoted] == ["bob"]


def test_search_context_and_exit_codes(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    hits = cli.jsonl("search", "refunds take", "-a", "-C", "1", "--format", "jsonl")
    assert [(h["index"], h["match"]) for h in hits] == [(0, False), (1, True), (2, False)]
    none = cli("search", "no such words")
    assert none.exit_code == 1 and none.stdout == "" and none.stderr == ""
    assert cli("search", "no such words", "--format", "json").stdout == "[]\n"
    assert cli("search", "-E", "(unclosed").exit_code == 2
    assert cli("search", "x", "ghost").exit_code == 3
    table = cli("search", "refund")
    assert table.exit_code == 0 and "alice" in table.stdout and "bob" in table.stdout


def test_search_table_escapes_hostile_text(root: Path, cli: Cli) -> None:
    cli("append", "eve", "evil \x1b]0;title\x07 [red]markup[/red] refund\u202e")
    out = cli("search", "refund").stdout
    assert "\x1b" not in out and "\u202e" not in out and "[red]markup[/red]" in out


def test_search_skips_files_the_catalog_rules_out(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    assert cli("stats", "--format", "json").exit_code == 0  # saves the catalog
    archive = root / "users" / "al" / "ic" / "e" / "dialogs" / "archived" / "old.yaml"
    before = archive.stat()
    expected = cli.jsonl("search", "refund", "-a", "--since", "2024-01-16", "--format", "jsonl")
    assert [(h["user"], h["conversation"]) for h in expected] == [("alice", "current"), ("bob", "current")]

    # Same size, inode and mtime, other bytes: only a search that trusts the catalog's time span skips it.
    data = archive.read_bytes()
    with open(archive, "r+b") as fh:
        fh.write(data.replace(b"refund", b"REFUND").replace(b"2024-01-15", b"2024-01-19"))
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cli.jsonl("search", "refund", "-a", "--since", "2024-01-16", "--format", "jsonl") == expected
    assert cli.jsonl("search", "refund", "-a", "--role", "system", "--format", "jsonl", expect=1) == []
    assert cli.jsonl("search", "refund", "-a", "--model", "gpt-4o", "--format", "jsonl", expect=1) == []  # the catalog counts no such model there
    # Without a filter the file is read, so the change shows (its records no longer match their checksums).
    read = cli("search", "refund", "-a", "--format", "jsonl")
    assert read.exit_code == 5 and "old.yaml:2: checksum mismatch" in read.stderr
    assert ("alice", "old") in {(h["user"], h["conversation"]) for h in map(json.loads, read.stdout.splitlines())}
    # A file that changed since the catalog was saved is read, not trusted.
    cli("append", "bob", "refund again", "--timestamp", "2024-01-18T10:00:00Z")
    assert [h["content"] for h in cli.jsonl("search", "again", "--since", "2024-01-18", "--format", "jsonl")] == ["refund again"]


def test_search_by_model_and_metadata(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    cli("append", "bob", "refund issued", "--role", "assistant", "--meta", "model=gpt-4o", "--meta", "usage.tier=2", "--timestamp", "2024-01-17T10:00:01Z")
    cli("append", "carol", "no refund", "--role", "assistant", "--meta", "model=claude", "--meta", "usage.tier=3", "--timestamp", "2024-01-17T11:00:00Z")

    def found(*args: str) -> list[tuple[str, int]]:
        result = cli("search", "refund", "-a", "--format", "jsonl", *args)
        assert result.exit_code in (0, 1), result.stderr
        return [(h["user"], h["index"]) for h in map(json.loads, result.stdout.splitlines())]

    assert found("--model", "gpt-4o") == [("bob", 1)]
    assert found("--model", "gpt-4o", "--model", "claude") == [("bob", 1), ("carol", 0)]
    assert found("--meta", "usage.tier=3") == [("carol", 0)]
    assert found("--meta", "usage.tier=2", "--model", "claude") == []
    assert found("--model", "gpt-4o", "-C", "1") == [("bob", 0), ("bob", 1)]  # context is the conversation's, unfiltered (as with --role)


def test_latest_lists_the_newest_hits_first(root: Path, cli: Cli) -> None:
    seed_refunds(cli)  # refund hits at 01-15T10:00:00 and :05 (archived), 01-16 (alice), 01-17 (bob)
    cli("append", "carol", "refund, in Paris time", "--timestamp", "2024-01-17T10:30:00+01:00")  # 09:30 UTC: before bob's
    cli("append", "dave", "refund when?", "--timestamp", "2024-01-16T10:00:00Z")  # the same time as alice's current one

    def latest(*args: str) -> list[tuple[str, str, int]]:
        return [(h["user"], h["conversation"], h["index"]) for h in cli.jsonl("search", "refund", "-a", "--format", "jsonl", *args)]

    everything = latest()
    newest_first = latest("--latest", "10")
    assert sorted(newest_first) == sorted(everything) and len(newest_first) == 6
    assert newest_first == [
        ("bob", "current", 0),
        ("carol", "current", 0),
        ("dave", "current", 0),  # equal times: the one found later (dave comes after alice in the walk) counts as newer
        ("alice", "current", 0),
        ("alice", "old", 1),
        ("alice", "old", 0),
    ]
    assert latest("--latest", "2") == newest_first[:2]
    assert cli("-v", "search", "refund", "-a", "--latest", "2").stderr.endswith("the 2 newest matching messages (--latest 2)\n")
    assert cli("-v", "search", "refund", "-a", "--latest", "7").stderr.endswith("6 matching messages, all of them (fewer than --latest 7)\n")
    assert latest("--latest", "1", "--role", "assistant") == [("alice", "old", 1)]
    assert latest("--latest", "3", "--until", "2024-01-16T10:00:00Z") == newest_first[4:]
    table = cli("search", "refund", "-a", "--latest", "2")
    assert table.exit_code == 0 and table.stdout.index("bob") < table.stdout.index("carol")
    assert cli("search", "nothing like it", "--latest", "3").exit_code == 1
    refused = cli("search", "refund", "--latest", "3", "-C", "1")
    assert refused.exit_code == 2 and "--context" in refused.stderr and refused.stdout == ""
    assert cli("search", "refund", "--latest", "0").exit_code == 2


def test_latest_skips_files_the_catalog_shows_are_older_than_the_hits_kept(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    assert cli("stats", "--format", "json").exit_code == 0  # saves the catalog
    archive = root / "users" / "al" / "ic" / "e" / "dialogs" / "archived" / "old.yaml"  # walked after alice's current (01-16)
    before = archive.stat()
    data = archive.read_bytes()
    with open(archive, "r+b") as fh:  # same size, inode and mtime; newer times, broken checksums
        fh.write(data.replace(b"2024-01-15", b"2024-01-19"))
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns))
    # One hit kept (alice's, 01-16) when the archive comes up: the catalog says it ends on 01-15, so it is not read.
    assert [(h["user"], h["conversation"]) for h in cli.jsonl("search", "refund", "-a", "--latest", "1", "--format", "jsonl")] == [("bob", "current")]
    # Three wanted: the heap is not full yet, so it is read, and its damage shows.
    read = cli("search", "refund", "-a", "--latest", "3", "--format", "jsonl")
    assert read.exit_code == 5 and "old.yaml:2: checksum mismatch" in read.stderr


@settings(max_examples=60, deadline=None)
@given(content=contents(), needle=st.sampled_from(["a", "---", "# x", "é", "  ", "\\", '"', "fox", "\t", "日本"]))
def test_raw_prefilter_never_hides_a_match(tmp_path_factory, content: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    from dialogctl import Journal
    from dialogctl.models import Message
    from dialogctl.views.search import matcher, search

    root = tmp_path_factory.mktemp("search")
    journal = Journal.open(str(root))
    journal.append("u1", [Message("user", content + needle + content, "2024-01-15T10:00:00.000Z")])
    m = matcher(needle)
    found = [hit for group in search(journal, m) for hit in group if hit.matched]
    assert len(found) == 1
    unfiltered = [hit for group in search(journal, m._replace(raw_check=False)) for hit in group if hit.matched]
    assert found == unfiltered
