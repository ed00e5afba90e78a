"""The conversation file format: exact round trips, torn records, other parsers agree.

Property tests (hypothesis) write hostile content and metadata and read it
back through dialogctl's fast reader, through ruamel.yaml, and through two
independent parsers: eemeli/yaml (a YAML 1.2 parser, under node) and
Bun.YAML.parse (the reference implementation's own parser, Bun 1.4.4).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl.fileformat.codec import decode_record, encode_batch, encode_record, find_frames, last_frame_n
from dialogctl.fileformat.reader import parse_conversation
from dialogctl.models import Message

from ..strategies import contents, messages, metadata

JS_DIR = Path(__file__).parent.parent / "js"
REQUIRE_JS = os.environ.get("DIALOGCTL_REQUIRE_JS") == "1"


def _ruamel_messages(data: bytes) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import SafeConstructor

    class Con(SafeConstructor):
        pass

    Con.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = Con
    docs = [d for d in yaml.load_all(data.decode("utf-8")) if d is not None]
    return docs[0] if len(docs) == 1 and isinstance(docs[0], list) else docs


def _raw(msgs: list[Message]) -> list[dict[str, Any]]:
    return [dict(m.to_raw()) for m in msgs]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=4), st.sampled_from(["documents", "sequence"]))
def test_round_trip_exact(msgs: list[Message], form: str) -> None:
    data = encode_batch(msgs, 1, form)  # type: ignore[arg-type]
    parsed = parse_conversation(data, "x.yaml")
    assert parsed.damage == []
    assert parsed.messages == msgs
    assert parsed.framed == len(msgs)
    # ruamel.yaml reads the same messages from the same bytes
    assert _ruamel_messages(data) == _raw(msgs)


@settings(max_examples=300, deadline=None)
@given(contents(), st.sampled_from(["documents", "sequence"]))
def test_fast_decoder_handles_every_content(content: str, form: str) -> None:
    msg = Message("user", content, "2024-01-15T10:30:00.000Z")
    record = encode_record(msg, 7, form)  # type: ignore[arg-type]
    frames, _ = find_frames(record)
    assert len(frames) == 1 and frames[0].n == 7
    assert decode_record(record[frames[0].start : frames[0].end]) == msg
    assert last_frame_n(record) == 7


@settings(max_examples=150, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=3), messages(), st.data(), st.sampled_from(["documents", "sequence"]))
def test_a_torn_last_record_is_never_read(before: list[Message], last: Message, data: st.DataObject, form: str) -> None:
    head = encode_batch(before, 1, form)  # type: ignore[arg-type]
    record = encode_record(last, len(before) + 1, form)  # type: ignore[arg-type]
    cut = data.draw(st.integers(1, len(record) - 2))  # a record missing only its final newline is whole
    parsed = parse_conversation(head + record[:cut], "x.yaml")
    assert parsed.messages == before


def test_every_cut_of_a_last_record(tmp_path: Path) -> None:
    """Truncate a file at every byte offset of its last record: never a half message."""
    before = [
        Message("user", "hello\n", "2024-01-15T10:30:00.000Z"),
        Message("assistant", "  indented\n---\n# x", "2024-01-15T10:30:01.000Z", {"model": "m", "tokens": 3}),
    ]
    last = Message("assistant", "line one\nline two\n\n", "2024-01-15T10:30:02.000Z", {"model": "gpt-4", "tokens": {"total": 5}})
    for form in ("documents", "sequence"):
        head = encode_batch(before, 1, form)  # type: ignore[arg-type]
        record = encode_record(last, 3, form)  # type: ignore[arg-type]
        for cut in range(len(record) - 1):
            parsed = parse_conversation(head + record[:cut], "x.yaml")
            assert parsed.messages == before, (form, cut)
            if record[:cut].strip():
                assert parsed.damage, (form, cut)
        # Only the frame line's newline missing: the record is whole and its checksum holds.
        assert parse_conversation(head + record[:-1], "x.yaml").messages == before + [last]
        assert parse_conversation(head + record, "x.yaml").messages == before + [last]


@settings(max_examples=200, deadline=None)
@given(metadata)
def test_metadata_round_trips_through_json_line(meta: Any) -> None:
    msg = Message("assistant", "x", "2024-01-15T10:30:00.000Z", meta)
    assert parse_conversation(encode_record(msg, 1, "documents"), "x").messages == [msg]


def test_literal_blocks_where_yaml_allows() -> None:
    record = encode_record(Message("user", "  code\nprose\n", "t"), 1, "sequence").decode()
    assert "  content: |2\n      code\n    prose\n" in record
    record = encode_record(Message("user", "bell\x07", "t"), 1, "documents").decode()
    assert 'content: "bell\\u0007"' in record


def test_reading_crlf_bom_and_empty_files() -> None:
    assert parse_conversation(b"", "x").messages == []
    assert parse_conversation(b"\n\n", "x").messages == []
    crlf = b"\xef\xbb\xbf- role: user\r\n  content: |\r\n    hi\r\n  timestamp: 2024-01-15T10:30:00.000Z\r\n"
    assert parse_conversation(crlf, "x").messages == [Message("user", "hi\n", "2024-01-15T10:30:00.000Z")]
    docs = b"role: user\ncontent: |\n  a\ntimestamp: 2024-01-15\n---\nrole: assistant\ncontent: b\ntimestamp: 2024-01-16\n"
    assert [m.content for m in parse_conversation(docs, "x").messages] == ["a\n", "b"]


def test_checksum_mismatch_is_read_and_reported() -> None:
    data = bytearray(encode_record(Message("user", "hello", "2024-01-15T10:30:00.000Z"), 1, "documents"))
    data[data.index(b"hello")] = ord("j")
    parsed = parse_conversation(bytes(data), "x")
    assert [m.content for m in parsed.messages] == ["jello"]
    assert [d.kind for d in parsed.damage] == ["checksum mismatch"]


def test_hostile_yaml_is_refused_safely() -> None:
    bomb = b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nrole: user\ncontent: x\ntimestamp: t\nmetadata: {k: *c}\n'
    assert parse_conversation(bomb, "x").messages == []
    tag = b"role: user\ncontent: !!python/object/apply:os.system ['true']\ntimestamp: t\n"
    parsed = parse_conversation(tag, "x")
    assert parsed.messages == [] and parsed.damage[0].kind == "unsupported YAML"
    deep = b"role: user\ncontent: x\ntimestamp: t\nmetadata: " + b"[" * 50000 + b"]" * 50000 + b"\n"
    parsed = parse_conversation(deep, "x")
    assert parsed.messages == [] and parsed.damage


# --- independent parsers ---------------------------------------------------------


def _js_runtime(kind: str) -> list[str] | None:
    modules = JS_DIR / "node_modules"
    if kind == "bun":
        bun = modules / "@oven" / "bun-linux-x64" / "bin" / "bun"
        return [str(bun)] if bun.exists() else None
    node = shutil.which("node")
    return [node] if node and (modules / "yaml").exists() else None


def _parse_with(kind: str, paths: list[Path]) -> dict[str, Any]:
    runtime = _js_runtime(kind)
    if runtime is None:
        if REQUIRE_JS:
            pytest.fail(f"{kind} is not installed in tests/js (run: npm ci --prefix tests/js)")
        pytest.skip(f"{kind} not installed in tests/js (npm ci --prefix tests/js)")
    proc = subprocess.run(runtime + [str(JS_DIR / "parse.mjs")], input="\n".join(map(str, paths)), capture_output=True, text=True, timeout=300, cwd=JS_DIR)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (JS has one number type: 1.0 == 1, -0.0 == 0)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)  # JSON.stringify prints 1e16 as 10000000000000000
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def generated_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[Message]]]:
    """A few hundred files of hostile messages, written by dialogctl's encoder."""
    folder = tmp_path_factory.mktemp("generated")
    files: list[tuple[Path, list[Message]]] = []

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(messages(), min_size=1, max_size=4), st.sampled_from(["documents", "sequence"]))
    def collect(msgs: list[Message], form: str) -> None:
        path = folder / f"{len(files):04d}-{form}.yaml"
        path.write_bytes(encode_batch(msgs, 1, form))  # type: ignore[arg-type]
        files.append((path, msgs))

    collect()
    return files


@pytest.mark.parametrize("parser", ["node-yaml", "bun"])
def test_independent_parsers_read_the_same_messages(parser: str, generated_files: list[tuple[Path, list[Message]]]) -> None:
    results = _parse_with("bun" if parser == "bun" else "node", [p for p, _ in generated_files])
    failures = []
    for path, msgs in generated_files:
        got = results[str(path)]
        if not _same(got, _raw(msgs)):
            failures.append((path.name, got, _raw(msgs)))
    assert not failures, failures[:3]


def test_reference_parser_reads_our_appends_to_its_files(tmp_path: Path) -> None:
    """Appending to a reference-written sequence file keeps it readable by Bun.YAML.parse."""
    from dialogctl import Journal

    from ..conftest import FIXTURES, copy_tree

    root = copy_tree("v1-sharded", tmp_path)
    journal = Journal.open(str(root), archiveThreshold="0")
    added = [
        Message("user", "  after: us\n---\n", "2024-01-16T00:00:00.000Z"),
        Message("assistant", 'quote " and \\', "2024-01-16T00:00:01.000Z", {"model": "x", "tokens": {"total": 3}}),
    ]
    journal.append("user-1000", added)
    path = root / "users/us/er/-1000/dialogs/current.yaml"
    assert path.read_bytes().startswith(b"\n- role: user")  # still the sequence form
    expected = json.loads((FIXTURES / "v1-sharded.expected.json").read_text())["users/us/er/-1000/dialogs/current.yaml"]["messages"]
    for kind in ("bun", "node"):
        got = _parse_with(kind, [path])[str(path)]
        assert _same(got, expected + _raw(added)), kind


def test_duplicate_keys_skip_only_that_item() -> None:
    data = (
        b"- role: user\n  content: |\n    a\n  timestamp: 2024-01-15T10:30:00.000Z\n"
        b"- role: user\n  role: assistant\n  content: |\n    b\n  timestamp: 2024-01-15T10:30:01.000Z\n"
        b"- role: user\n  content: |\n    c\n  timestamp: 2024-01-15T10:30:02.000Z\n"
    )
    parsed = parse_conversation(data, "f.yaml")
    assert [m.content for m in parsed.messages] == ["a\n", "c\n"]
    assert [(d.kind, d.line) for d in parsed.damage] == [("duplicate key", 6)]
    assert "assistant" not in str(parsed.damage[0])  # errors never quote the file's text
