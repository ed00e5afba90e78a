"""``search`` through frames and needles against reading every file whole: the same output, byte for byte.

The fast path (``Matcher.needles``) decodes only the records whose raw bytes
hold a needle; with ``needles=None`` search reads files as it did before it
(the raw check of a fixed string, then every message of a file that passes).
Each test runs both on the same journal and compares what they give: hits
and damage through the library, stdout, stderr and exit code through the CLI
in every output format.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl import Journal
from dialogctl.fileformat.codec import encode_batch
from dialogctl.fileformat.reader import parse_conversation, whole_records
from dialogctl.models import Message
from dialogctl.views import search as core
from dialogctl.views.needles import ASCII_FOLDS_WIDER, needles, usable

from ..conftest import Cli
from ..reference_writer import append as server_append
from ..reference_writer import dialogs_path
from ..samples import hostile_messages, journal_with
from ..strategies import NASTY_LINES, messages

FORMATS = ["table", "json", "jsonl", "csv", "tsv"]
FIXED = ["refund", "REFUND", "é", "É", "日本語", "🎉", "item", "ITEM", "x" * 40, "dialogctl n=", "null", "2024-01-15", "model", "role", "S", "k", "ı",
         "\u212a", "ſ", "'single'", '"double"', "\\n", "a\rb", "Zürich 東京", "crc32=0", "# comment", "--- x", "unicode ✓ 日本"]  # fmt: skip
REGEXES = [r"\d+", r"(?i)ITEM", r"^- item$", r"x{3,}", r"l[ao]g", r"é|日本|quote", r"\bnull\b", r"re(fu|FU)nd", r"a.b", r"(?s)line one.line two",
           r"(?-i:Item)|tab", r"^$", r"[^\x00-\x7f]+", r"rollback|résumé|データ [0-9]", r"refund(?= twice)", r"(\w)\1"]  # fmt: skip


def both(journal: Journal, m: core.Matcher, **kw: Any) -> tuple[Any, Any]:
    """(hits, damage, unreadable) of the fast path and of the whole-file path, each on a fresh journal object."""
    out = []
    for matcher in (m, m._replace(needles=None)):
        fresh = Journal.open(journal.root)
        hits = [list(group) for group in core.search(fresh, matcher, **kw)]
        out.append((hits, list(fresh.damage), list(fresh.unreadable)))
    return out[0], out[1]


def assert_same(journal: Journal, pattern: str, regex: bool = False, case_sensitive: bool = False, **kw: Any) -> int:
    m = core.matcher(pattern, regex, case_sensitive)
    fast, whole = both(journal, m, **kw)
    assert fast == whole, (pattern, regex, case_sensitive, kw)
    return sum(hit.matched for group in fast[0] for hit in group)


def hostile_journal(root: Path) -> Journal:
    """dialogctl's own files (framed records, documents and sequence shapes, batches), archives, a server's file and a mixed one."""
    msgs = hostile_messages()
    extra = [
        Message("user", "I want a refund, Zürich 東京 ſ \u212a", "2024-01-16T10:00:00.000Z"),
        Message("assistant", "ITEM item Item", "2024-01-16T10:00:01.000Z"),
    ]
    plain = [m for m in msgs if "# dialogctl" not in m.content + str(m.metadata)]  # a message quoting a frame line makes its file read whole
    journal = journal_with(
        root, {("u1", "old"): msgs, ("u1", None): msgs[::-1] + extra, ("u2", None): extra * 3, ("u4", "old"): plain + extra, ("u4", None): extra + plain[::-1]}
    )
    for msg in msgs[:5]:
        journal.append("u3", [msg])  # one record per write (no batch marks)
    journal.append("u3", msgs[5:])
    # A server's file, and a file of ours a server appended to.
    items = [
        {"role": m.role, "content": m.content, "timestamp": m.timestamp} for m in extra + msgs if m.content.strip() and not m.content.startswith((" ", "\t"))
    ]
    server_append(os.path.join(dialogs_path(root, "srv"), "current.yaml"), items)
    journal.append("mixed", extra)
    server_append(os.path.join(dialogs_path(root, "mixed"), "current.yaml"), items[:3])
    journal.append("mixed", extra[::-1])
    return journal


@pytest.fixture
def hostile(tmp_path: Path) -> Journal:
    return hostile_journal(tmp_path / "hostile")


@pytest.mark.parametrize("pattern", FIXED)
def test_fixed_strings_match_the_whole_file_path(hostile: Journal, pattern: str) -> None:
    for case_sensitive in (False, True):
        for context in (0, 2):
            assert_same(hostile, pattern, case_sensitive=case_sensitive, include_archives=True, context=context)


@pytest.mark.parametrize("pattern", REGEXES)
def test_regexes_match_the_whole_file_path(hostile: Journal, pattern: str) -> None:
    for case_sensitive in (False, True):
        assert_same(hostile, pattern, regex=True, case_sensitive=case_sensitive, include_archives=True, context=1)


def test_filters_and_users_match_the_whole_file_path(hostile: Journal) -> None:
    from dialogctl.times import parse_timestamp
    from dialogctl.views.filters import MessageFilter

    since = MessageFilter(since=parse_timestamp("2024-01-15T10:00:30Z"))
    users = MessageFilter(roles=frozenset({"user"}))
    found = 0
    for selection in (since, users):
        for pattern in ("refund", "item", "é"):
            found += assert_same(hostile, pattern, include_archives=True, selection=selection, context=1)
            found += assert_same(hostile, pattern, users=["u1", "mixed"], selection=selection)
    assert found  # the filters keep some matches


def test_the_fast_path_is_taken(hostile: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """On dialogctl's own files only the records holding a needle are decoded (the rest of the test would pass without the fast path)."""
    import dialogctl.fileformat.codec as codec

    decoded: list[bytes] = []
    real = codec.decode_record
    monkeypatch.setattr(codec, "decode_record", lambda body: decoded.append(body) or real(body))
    hits = [hit for group in core.search(Journal.open(hostile.root), core.matcher("Zürich 東京"), ["u2"]) for hit in group]
    assert [hit.position for hit in hits] == [0, 2, 4] and len(decoded) == 3


def test_damaged_files_match_the_whole_file_path(tmp_path: Path) -> None:
    root = tmp_path / "damaged"
    journal = hostile_journal(root)
    u1 = Path(dialogs_path(root, "u1"))
    current = u1 / "current.yaml"
    data = current.read_bytes()
    at = data.index(b"refund")
    current.write_bytes(data[:at] + b"REFUSE" + data[at + 6 :])  # a record changed after it was written: checksum mismatch
    archive = next((u1 / "archived").iterdir())
    archive.write_bytes(archive.read_bytes()[:-300])  # cut short: a torn batch
    u2 = Path(dialogs_path(root, "u2")) / "current.yaml"
    with open(u2, "ab") as fh:
        fh.write(b"- role: user\n  content: |2-\n    refund torn")  # a torn last record
    for pattern in ("refund", "item", "Zürich 東京", "REFUSE"):
        assert_same(journal, pattern, include_archives=True, context=1)
    assert_same(journal, r"re\w+", regex=True, include_archives=True)
    fresh = Journal.open(journal.root)
    list(core.search(fresh, core.matcher("refund"), include_archives=True))
    assert {d.kind for d in fresh.damage} >= {"checksum mismatch", "torn batch"}


@pytest.mark.parametrize("tree", ["v1-after-cleanup", "v1-broken", "v1-flatish", "v1-sharded", "v1-short-ids", "v3-sessions"])
def test_fixture_trees_match_the_whole_file_path(fixture_tree: Any, tree: str) -> None:
    journal = Journal.open(str(fixture_tree(tree)))
    found = 0
    for pattern in ["the", "THE", "é", "refund", "help", "?", '"', "order"]:
        found += assert_same(journal, pattern, include_archives=True, context=1)
    for pattern in [r"\w+ing\b", r"(?i)hello|thanks", r"\d{2}"]:
        found += assert_same(journal, pattern, regex=True, include_archives=True)
    assert found


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_output_is_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli, fmt: str) -> None:
    root = tmp_path / "j"
    hostile_journal(root)
    current = Path(dialogs_path(root, "u1")) / "current.yaml"
    data = current.read_bytes()
    at = data.index(b"ITEM")
    current.write_bytes(data[:at] + b"item" + data[at + 4 :])  # damage: said on stderr, exit 5
    runs = [
        ["search", "refund", "-a"],
        ["search", "Zürich 東京", "-a", "-C", "1"],
        ["search", "item", "-a", "-s"],
        ["search", "-E", "rollback|résumé|データ [0-9]|re(f)und", "-a"],
        ["search", "-E", r"^\W+$", "-a", "-C", "2"],
        ["search", "é", "--since", "2024-01-15T10:00:30Z", "-a"],
        ["search", "no such text anywhere", "-a"],
        ["search", "日本語", "u1", "u2", "--role", "assistant"],
    ]
    for args in runs:
        full = ["--root", str(root), *args, "--format", fmt]
        new = cli(*full)
        with monkeypatch.context() as patched:
            patched.setattr(core, "needles", lambda *a: None)
            old = cli(*full)
        assert (new.exit_code, new.stdout, new.stderr) == (old.exit_code, old.stdout, old.stderr), args


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    batches=st.lists(st.lists(messages(), min_size=1, max_size=4), min_size=1, max_size=4),
    needle=st.one_of(st.sampled_from(NASTY_LINES + FIXED), st.text(st.sampled_from('aAéÉsSkKıİſ日 "\\\n-#'), min_size=1, max_size=4)),
    context=st.integers(0, 2),
    regex=st.booleans(),
)
def test_generated_journals_match_the_whole_file_path(tmp_path_factory: Any, batches: list[list[Message]], needle: str, context: int, regex: bool) -> None:
    root = tmp_path_factory.mktemp("gen")
    journal = Journal.open(str(root))
    for i, batch in enumerate(batches):
        journal.append(f"u{i % 2}", batch)
    pattern = re.escape(needle) if regex else needle
    if needle.strip() == "":
        pattern = needle + "x"
    assert_same(journal, pattern, regex=regex, context=context, include_archives=True)
    # The same needle found inside a content, in another case.
    content = batches[0][0].content
    if len(content) > 3:
        assert_same(journal, content[1:4].swapcase(), context=context)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    msgs=st.lists(messages(), min_size=2, max_size=5),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from([b"", b"\n", b"x", b"# dialogctl n=", b"- role: user\n", b"\xff"])), min_size=1, max_size=3
    ),
)
def test_mutated_files_match_the_whole_file_path(tmp_path_factory: Any, msgs: list[Message], edits: list[tuple[int, bytes]]) -> None:
    root = tmp_path_factory.mktemp("mut")
    journal = Journal.open(str(root))
    journal.append("u", msgs)
    path = Path(dialogs_path(root, "u")) / "current.yaml"
    data = bytearray(path.read_bytes())
    for at, text in edits:
        at %= len(data)
        data[at : at + (1 if text else 0)] = text or b""
    path.write_bytes(bytes(data))
    for pattern in {msgs[0].content[:3] or "a", "a", "e", "role", "user"}:
        if pattern.strip():
            assert_same(journal, pattern, context=1)


def test_whole_records_answers_exactly_for_files_of_our_records_only(tmp_path: Path) -> None:
    everything = hostile_messages()
    quoting_frames = b"\n" + encode_batch(everything, 1, "sequence")
    assert whole_records(quoting_frames) is None  # a message quoting a frame line: read whole (never guessed)
    assert len(parse_conversation(quoting_frames, "f").messages) == len(everything)
    msgs = [m for m in everything if "# dialogctl" not in m.content]
    data = b"\n" + encode_batch(msgs[:20], 1, "sequence") + b"\n" + encode_batch(msgs[20:], 21, "sequence")
    spans = whole_records(data)
    assert spans is not None and len(spans.starts) == len(msgs)
    assert parse_conversation(data, "f").messages == msgs
    torn = data[: spans.afters[24]]  # the second batch cut after its 4th record
    assert whole_records(torn) is None and parse_conversation(torn, "f").damage
    changed = data.replace(b"refund", b"REFUND", 1) if b"refund" in data else data[:100] + bytes([data[100] ^ 1]) + data[101:]
    assert whole_records(changed) is None
    body = data[spans.starts[0] : spans.ends[0]]
    assert zlib.crc32(body) == int(data[spans.ends[0] :].split(b"crc32=")[1][:8], 16)
    documents = encode_batch(msgs[:3], 1, "documents", marked=False)
    assert whole_records(documents) is not None and whole_records(documents + b"x") is None
    assert whole_records(b"- role: user\n  content: |\n    hi\n  timestamp: 2024-01-15T10:30:00.000Z") is None


def test_needles_fold_only_what_ascii_lowering_folds() -> None:
    """The table of ASCII letters IGNORECASE matches beyond ASCII, and the rule for other characters, hold for the running Python."""
    import _sre  # type: ignore[import-not-found]

    wider = set()
    for letter in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        pattern = re.compile(re.escape(letter), re.IGNORECASE)
        if any(pattern.fullmatch(chr(c)) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000):
            wider.add(letter)
    assert wider == set(ASCII_FOLDS_WIDER)
    # A character a needle may hold unfolded is one re matches only to itself (re compiles a caseless literal as itself).
    assert not [c for c in range(0x80, 0x110000) if usable(chr(c), True) and _sre.unicode_iscased(c)]


def test_needles_of_patterns() -> None:
    assert needles("Zürich 東京", False, re.IGNORECASE) == (("ch 東京".encode(),), True)
    assert needles("rollback|résumé|データ [0-9]", True, re.IGNORECASE) == ((b"rollbac", b"um", "データ ".encode()), True)
    assert needles('say "hi"', False, 0) == ((b"say ",), False)
    assert needles("(?i)Foo", True, 0) == ((b"foo",), True)  # inline flags: folded
    for no_needle in ("a*", "[abc]", "(a|)", "ÉÜ", "\\d+", "(?:x)?"):
        assert needles(no_needle, True, re.IGNORECASE) is None
