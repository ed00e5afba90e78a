"""The fast reader reads what the servers write: as ruamel.yaml reads it, as Bun.YAML reads it, without ruamel.

Files are written by ``tests/reference_writer.py``, the byte-exact stand-in
for the servers' writer (items joined by ``\\n``, no final newline, every
content line indented four spaces), from hostile messages; some also hold
dialogctl's framed records between the servers' items, blank lines, a final
newline, or are cut short. Three readings are compared:

* the fast reader (``parse_conversation`` as it is), against the same file
  read with every unframed region handed whole to the salvage reader
  (ruamel.yaml, item by item): the same messages and the same damage, always;
* against Bun.YAML.parse, the servers' own parser, wherever Bun parses the
  file (see ``_KNOWN_YAML_SPLITS`` for the two shapes where YAML parsers
  disagree among themselves and the fast reader leaves the item to ruamel);
* and a file in the servers' exact shape, whose text YAML carries as written
  (``_certain``), never reaches ruamel.yaml at all.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl.fileformat import reader, salvage
from dialogctl.fileformat.codec import encode_record
from dialogctl.fileformat.reader import parse_conversation
from dialogctl.fileformat.sequence import read_items
from dialogctl.models import Message

from .. import reference_writer as server
from ..conftest import FIXTURES, copy_tree
from ..strategies import NASTY_LINES

JS_DIR = Path(__file__).parent.parent / "js"
BUN = JS_DIR / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"
REQUIRE_JS = os.environ.get("DIALOGCTL_REQUIRE_JS") == "1"
SERVER_TREES = ["v1-short-ids", "v1-sharded", "v1-flatish", "v3-sessions"]
ALL_TREES = SERVER_TREES + ["v1-broken", "v1-after-cleanup"]

# --- what the servers are handed --------------------------------------------------------------

# Characters YAML carries as written and every parser reads alike (the fast reader's promise).
carried_chars = st.characters(codec="utf-8", exclude_categories=("Cc",), exclude_characters="\u2028\u2029\ufeff\ufffe\uffff")
SAFE_LINES = [
    "", " ", "   ", "\t", " \t ", "- x", "-", "key: value", "---", "...", "--- x", "# comment", "# dialogctl n=1 len=10 crc32=00000000",
    "  leading", "trailing  ", "\tafter a tab", "|", "|2-", ">", "&anchor", "*alias", "!tag", "%YAML 1.2", "'single'", '"double"',
    "{a: 1}", "[1, 2]", "null", "~", "true", "0x1F", "1e3", "2024-01-15T10:30:00.000Z", "日本語", "🎉", "é", "\\", "\\n", "x" * 300,
    "\u00a0nbsp", "\u3000ideographic", "zero\u200bwidth", "\u202eevil", "\ue000private", "\U000e0001tag",
]  # fmt: skip
roles = st.sampled_from(["user", "assistant", "system", "tool"])
timestamps = st.sampled_from(["2024-01-15T10:30:00.000Z", "2025-06-02T09:01:00.000Z", "2024-01-15", "2024-01-15T10:30:00+02:00", "2024-01-15T10:30:00.123456Z"])
odd_timestamps = st.sampled_from(["12345", "not a time", "2024-1-5", "", "2024-01-15 10:30:00"])


@st.composite
def contents(draw: st.DrawFn, nasty: bool) -> str:
    line = st.one_of(st.sampled_from(SAFE_LINES), st.text(carried_chars, max_size=30))
    if nasty:
        line = st.one_of(line, st.sampled_from(NASTY_LINES), st.text(st.characters(codec="utf-8"), max_size=10))
    lines = draw(st.lists(line, max_size=7))
    body = "\n".join(lines) + "\n" * draw(st.integers(0, 3))
    if nasty and draw(st.integers(0, 4)) == 0:
        body = draw(st.sampled_from([" ", "  ", "\t", "    "])) + body  # a first line that starts with blanks: invalid YAML, or read otherwise
    return body


def metadata_strings(nasty: bool) -> st.SearchStrategy[str]:
    chars = st.one_of(carried_chars, st.sampled_from('"\\\t\r\n #:-[]{}|>'))
    if nasty:
        chars = st.one_of(chars, st.characters(codec="utf-8"))
    short = st.text(chars, max_size=12)
    long = st.text(chars, min_size=101, max_size=140)  # written as a | block (DOMAIN.md)
    lines = st.lists(st.one_of(short, st.sampled_from(SAFE_LINES)), min_size=2, max_size=4).map("\n".join)  # a | block too
    return st.one_of(short, short, long, lines)


def metadata_keys(nasty: bool) -> st.SearchStrategy[str]:
    keys = st.one_of(
        st.sampled_from(
            ["model", "tokens", "prompt", "total", "processingTime", "reasoning", "conversationId", "Yes", "no", "on", "y", "NaN", "a-b", "a.b", "_k"]
        ),
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda k: k.lower() not in ("true", "false", "null")),
    )
    if nasty:
        keys = st.one_of(keys, st.sampled_from(["true", "null", "1", "a b", "é", "#", "- x", "k: v", "~"]))
    return keys


def metadata_values(nasty: bool) -> st.SearchStrategy[Any]:
    numbers = st.one_of(
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.1, -0.5, 1e21, 1.5e-7, 5e-324, 1e300, 123456789.123, -0.0]),
    )
    if nasty:
        numbers = st.one_of(numbers, st.integers(10**21, 10**30))
    scalars = st.one_of(st.none(), st.booleans(), numbers, metadata_strings(nasty))
    keys = metadata_keys(nasty)
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
        max_leaves=10,
    )


@st.composite
def server_messages(draw: st.DrawFn, nasty: bool) -> dict[str, Any]:
    metadata = draw(st.one_of(st.none(), st.dictionaries(metadata_keys(nasty), metadata_values(nasty), max_size=5)))
    stamp = draw(st.one_of(timestamps, odd_timestamps) if nasty else timestamps)
    return server.message(draw(roles), draw(contents(nasty)), stamp, metadata)


OURS = Message("user", "written by dialogctl\n", "2024-01-15T10:30:00.000Z", {"model": "m"})


@st.composite
def server_files(draw: st.DrawFn, nasty: bool) -> tuple[bytes, list[dict[str, Any]], bool]:
    """A conversation file as a live journal has it: (bytes, the servers' messages, whether it is in their exact shape)."""
    messages = draw(st.lists(server_messages(nasty), min_size=1, max_size=5))
    exact = True
    text = ""
    n = 1
    for message in messages:
        if text and draw(st.integers(0, 5)) == 0:  # dialogctl appended here: on a fresh line, framed
            text += ("" if text.endswith("\n") else "\n") + encode_record(OURS, n, "sequence").decode()
            n += 1
        text += ("\n" if text else "") + server.format_item(message)
        if draw(st.integers(0, 6)) == 0:
            text += "\n" * draw(st.integers(1, 2))  # blank lines between items (hand edits, older writers)
    if draw(st.integers(0, 4)) == 0:
        text = "\n" + text  # the server's first append to the empty file left by an archive
    if draw(st.integers(0, 4)) == 0:
        text += "\n"
    data = text.encode("utf-8")
    if nasty and draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # cut short by a crash
        exact = False
    return data, messages, exact


# --- the three readings -----------------------------------------------------------------------


def _slowly(data: bytes) -> reader.ParsedFile:
    """The same file with every unframed region handed whole to the salvage reader (ruamel.yaml, item by item)."""
    original = reader.read_reference_items
    reader.read_reference_items = lambda data, start, end, result: iter([(start, end)])  # type: ignore[assignment]
    try:
        return parse_conversation(data, "f.yaml")
    finally:
        reader.read_reference_items = original


class _NoYaml:
    """Stands in for ``salvage.load_yaml`` and records what it was handed."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.real = salvage.load_yaml

    def __call__(self, text: str) -> Any:
        self.calls.append(text)
        return self.real(text)


def _without_yaml(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[reader.ParsedFile, list[str]]:
    spy = _NoYaml()
    with monkeypatch.context() as patch:
        patch.setattr(salvage, "load_yaml", spy)
        parsed = parse_conversation(data, "f.yaml")
    return parsed, spy.calls


def _starts_with_blank(text: str) -> bool:
    """Whether the first line of ``text`` that is not empty starts with a space or a tab."""
    first = text.lstrip("\n")
    return first[:1] in (" ", "\t")


def _carried(text: str) -> bool:
    bad = {"\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff", "\x85"}
    return all(not (ord(c) < 32 and c not in "\n\t") and not (0x7F <= ord(c) <= 0x9F) and c not in bad for c in text)


def _certain_value(value: Any) -> bool:
    if isinstance(value, str):
        escaped = value.replace("\r", "").replace("\t", "")  # the writer escapes these
        if len(value) > server.LONG_STRING or "\n" in value:  # a | block of escaped lines
            return _carried(escaped) and not _starts_with_blank("\n".join(server._escape(piece) for piece in value.split("\n")))
        return _carried(escaped)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) < 10**21
    if isinstance(value, float):
        return True  # NaN and Infinity are words; the rest numbers
    if isinstance(value, list):
        return all(isinstance(v, dict) or _certain_inline(v) for v in value)  # objects are written [object Object]
    if isinstance(value, dict):
        return all(key.lower() not in ("true", "false", "null") and _identifier(key) and _certain_value(v) for key, v in value.items())
    return False


def _certain_inline(value: Any) -> bool:
    """An array element: strings are always quoted inline (escaped, line breaks too)."""
    if isinstance(value, str):
        return _carried(value.replace("\r", "").replace("\t", "").replace("\n", ""))
    return _certain_value(value)


def _identifier(key: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key) is not None


def _certain(message: dict[str, Any]) -> bool:
    """Whether the fast reader promises to read this server-written message without YAML.

    Everything the servers write, except a content whose first line with text
    starts with a space or a tab (the writer's defect, or where libyaml and the
    pure parser disagree), text YAML does not carry as written (controls, NEL,
    U+2028/9, BOM), metadata keys YAML reads as true, false, null or a number,
    integers of 22 digits or more, and timestamps other than ISO 8601 dates and
    date-times.
    """
    content = message["content"]
    if not _carried(content) or _starts_with_blank(content):
        return False
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?", message["timestamp"]):
        return False  # an ISO 8601 date or date-time, as the servers write them
    metadata = message.get("metadata")
    return metadata is None or _certain_value(metadata)


def _as_json(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.role, "content": msg.content, "timestamp": msg.timestamp}
    if msg.metadata is not None:
        out["metadata"] = msg.metadata
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (JS has one number type: 1.0 == 1, -0.0 == 0, 10**20 == 1e20)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    return type(a) is type(b) and a == b


# --- ruamel.yaml ------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(server_files(nasty=True))
def test_fast_reader_reads_hostile_server_files_as_ruamel_does(file: tuple[bytes, list[dict[str, Any]], bool]) -> None:
    data, _, _ = file
    fast, slow = parse_conversation(data, "f.yaml"), _slowly(data)
    assert fast.messages == slow.messages
    assert fast.damage == slow.damage


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(file=server_files(nasty=False))
def test_server_files_never_reach_ruamel(file: tuple[bytes, list[dict[str, Any]], bool], monkeypatch: pytest.MonkeyPatch) -> None:
    data, messages, exact = file
    fast, calls = _without_yaml(data, monkeypatch)
    slow = _slowly(data)
    assert (fast.messages, fast.damage) == (slow.messages, slow.damage)
    if exact and all(_certain(m) for m in messages):
        assert calls == []
        assert not fast.damage


@pytest.mark.parametrize("tree", ALL_TREES)
def test_reference_trees_read_the_same_fast_or_slow(tree: str, tmp_path: Path) -> None:
    root = copy_tree(tree, tmp_path)
    for path in sorted(root.rglob("*.yaml")):
        data = path.read_bytes()
        fast, slow = parse_conversation(data, "f.yaml"), _slowly(data)
        assert (fast.messages, fast.damage) == (slow.messages, slow.damage), path


@pytest.mark.parametrize("tree", SERVER_TREES)
def test_server_written_trees_never_reach_ruamel(tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = json.loads((FIXTURES / f"{tree}.expected.json").read_text(encoding="utf-8"))
    for rel, want in expected.items():
        parsed, calls = _without_yaml((FIXTURES / tree / rel).read_bytes(), monkeypatch)
        assert calls == [], rel
        assert [_as_json(m) for m in parsed.messages] == want["messages"], rel
        assert not parsed.damage


def test_broken_items_still_reach_ruamel_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """v1-broken carol-1: the servers' writer made invalid YAML of a reply whose first line starts with spaces."""
    data = next((FIXTURES / "v1-broken").rglob("l-1/dialogs/current.yaml")).read_bytes()
    parsed, calls = _without_yaml(data, monkeypatch)
    assert [m.content for m in parsed.messages] == ["format this please\n", "thanks\n"]
    assert [(d.kind, d.line) for d in parsed.damage] == [("invalid YAML", 8)]  # as main reports it: the line that breaks the block
    assert len(calls) == 1 and calls[0].startswith("- role: assistant\n  content: |\n        indented code first")


def test_what_the_servers_write_is_read_without_yaml() -> None:
    blank = server.format_batch(
        [
            server.message("user", "question\n\nwith a blank line above\n", "2025-06-02T09:01:00.000Z"),
            server.message(
                "assistant", "\nkept\n  indented\n      \n\n", "2025-06-02T09:01:01.000Z", {"model": "m", "tokens": {"prompt": 1, "total": 2}, "empty": {}}
            ),
            server.message("user", "", "2025-06-02T09:01:02.000Z", {"note": 'say "hi"\tand \\ ' + "x" * 100, "lines": "one\n\ntwo\n", "none": None}),
            server.message(
                "assistant", "fine", "2025-06-02T09:01:03.000Z", {"list": ["a, b", 1, 1.5, None, True, [2, [3]], {"k": 1}], "n": float("nan"), "i": -math.inf}
            ),
        ]
    )
    messages, stop = read_items(blank)
    assert stop == len(blank)
    assert [(m.content, m.metadata) for m in messages] == [
        ("question\n\nwith a blank line above\n", None),
        ("\nkept\n  indented\n      \n", {"model": "m", "tokens": {"prompt": 1, "total": 2}, "empty": None}),
        ("", {"note": 'say \\"hi\\"\\tand \\\\ ' + "x" * 100 + "\n", "lines": "one\n\ntwo\n", "none": None}),
        ("fine\n", {"list": ["a, b", 1, 1.5, None, True, [2, [3]], ["object Object"]], "n": "NaN", "i": "-Infinity"}),
    ]
    flatish = '- role: assistant\n  content: |\n    hi\n  timestamp: 2024-01-15T12:30:02.500Z\n  metadata:\n    model: "gpt-4"\n    tokens: [object Object]'
    assert read_items(flatish) == ([Message("assistant", "hi\n", "2024-01-15T12:30:02.500Z", {"model": "gpt-4", "tokens": ["object Object"]})], len(flatish))


def test_the_reader_stops_at_what_it_is_not_certain_of() -> None:
    good = "- role: user\n  content: |\n    ok\n  timestamp: 2024-01-15T10:30:00.000Z"
    for odd in [
        "- role: assistant\n  content: |\n        indented first\n    then prose\n  timestamp: 2024-01-15T10:30:01.000Z",  # v1-broken carol-1
        "- role: assistant\n  content: |\n      \n    after deeper spaces\n  timestamp: 2024-01-15T10:30:01.000Z",
        "- role: assistant\n  content: |\n    \ttab first\n  timestamp: 2024-01-15T10:30:01.000Z",  # libyaml refuses, the pure parser reads
        "- role: assistant\n  content: |\n      \n    \n  timestamp: 2024-01-15T10:30:01.000Z",  # only spaces, deeper first: the two disagree
        "- role: assistant\n  content: |\n    nul \x00\n  timestamp: 2024-01-15T10:30:01.000Z",
        '- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  metadata:\n    note: "said "hi" back"',  # carol-2
        '- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  metadata:\n    note: "\\u00e9"',
        "- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  metadata:\n    true: 1",
        "- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  metadata:\n    a: 1\n    a: 2",
        "- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  metadata:\n    a: 1e999",
        "- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  metadata:\n    a: 0x1F",
        "- role: assistant\n  content: |\n    x\n  timestamp: 2024-01-15T10:30:01.000Z\n  other: 1",
        "- role: assistant\n  content: |\n    x",  # cut short
    ] + [
        server.format_item(server.message("assistant", content, "2024-01-15T10:30:01.000Z"))
        for content in ["\ttab first\n", "\n\tafter a blank line", "  \n", "\n   \n\n", "      ", " lead", "a\u2028b", "bom\ufeff"]
    ]:
        text = good + "\n" + odd + "\n" + good
        messages, stop = read_items(text)
        assert (len(messages), stop) == (1, len(good) + 1), odd
        assert read_items(text, text.index("- role", stop + 1)) == (messages, len(text)), odd


# --- Bun.YAML, the servers' own parser ----------------------------------------------------------

# Where YAML parsers disagree among themselves; the fast reader leaves these to ruamel.yaml, so
# where ruamel's loader in use disagrees with Bun, so does dialogctl (as before the fast reader):
# - a content whose first line with text starts with a space (the writer's defect, v1-broken carol-1:
#   ruamel refuses it, Bun refuses most and reads others with that line's deeper indentation) or a
#   tab (Bun and ruamel's pure loader read it, libyaml refuses it);
# - a content of only spaces and line breaks with a line of more than four spaces: Bun and libyaml
#   read "", ruamel's pure loader refuses some;
# - characters YAML does not carry as written (C0 and C1 controls, DEL, BOM, U+FFFE/U+FFFF) or reads
#   as line breaks in its version 1.1 (NEL, U+2028, U+2029): Bun keeps them in the text, ruamel
#   refuses the first kind and breaks lines at the second;
# - a metadata key YAML reads as null, true or false: Bun names it "null", dialogctl's salvage reader
#   Python's way ("None"); a key YAML reads as a number comes first in Bun's key order;
# - a metadata string written as a | block on the file's last line, with no final newline: YAML 1.2
#   (ruamel) reads no line break at its end, there being none; Bun adds one (as every parser reads
#   once the server appends its next item).
_KNOWN_YAML_SPLITS = ("blank first", "only spaces", "not carried", "key not text", "block at end")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value.replace("\r", "").replace("\t", "").replace("\n", "")  # the writer escapes these in metadata
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


def _split(message: dict[str, Any]) -> str | None:
    content = message["content"]
    if content.strip(" \n") == "" and any(len(line) > 0 for line in content.split("\n")):
        return "only spaces"
    if _starts_with_blank(content):
        return "blank first"
    if not _carried(content) or not all(_carried(text) for text in _strings(message.get("metadata"))):
        return "not carried"
    if not all(_identifier(key) and key.lower() not in ("true", "false", "null") for key in _keys(message.get("metadata"))):
        return "key not text"
    return None


def _ends_in_block(metadata: Any) -> bool:
    """Whether the writer's last line for this metadata is a line of text in a | block."""
    if not isinstance(metadata, dict) or not metadata:
        return False
    last = list(metadata.values())[-1]
    if isinstance(last, dict):
        return _ends_in_block(last)
    return isinstance(last, str) and (len(last) > server.LONG_STRING or "\n" in last) and last.split("\n")[-1] != ""


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)


def _a_message(value: Any) -> bool:
    """What dialogctl takes for a message (salvage's rules): text role, content and timestamp, metadata a mapping or null."""
    if not isinstance(value, dict):
        return False
    role, content, stamp, meta = (value.get(k) for k in ("role", "content", "timestamp", "metadata"))
    return (
        isinstance(role, str)
        and role != ""
        and isinstance(content, str)
        and isinstance(stamp, str)
        and stamp != ""
        and (meta is None or isinstance(meta, dict))
    )


def _bun(paths: list[Path]) -> dict[str, Any]:
    if not BUN.exists():
        if REQUIRE_JS:
            pytest.fail("bun is not installed in tests/js (run: npm ci --prefix tests/js)")
        pytest.skip("bun not installed in tests/js (npm ci --prefix tests/js)")
    proc = subprocess.run([str(BUN), str(JS_DIR / "parse.mjs")], input="\n".join(map(str, paths)), capture_output=True, text=True, timeout=600, cwd=JS_DIR)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def generated_server_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Path, list[dict[str, Any]], bool]]]:
    """Server-written files of hostile messages, written to disk for one Bun process to read them all."""
    folder = tmp_path_factory.mktemp("server-files")
    files: list[tuple[Path, list[dict[str, Any]], bool]] = []

    @settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(server_files(nasty=False), server_files(nasty=True)))
    def collect(file: tuple[bytes, list[dict[str, Any]], bool]) -> None:
        data, messages, exact = file
        path = folder / f"{len(files):04d}.yaml"
        path.write_bytes(data)
        files.append((path, messages, exact))

    collect()
    yield files
    shutil.rmtree(folder, ignore_errors=True)


def test_fast_reader_reads_server_files_as_bun_does(
    generated_server_files: list[tuple[Path, list[dict[str, Any]], bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = _bun([path for path, _, _ in generated_server_files])
    compared, certain, failures = 0, 0, []
    for path, messages, exact in generated_server_files:
        got = results[str(path)]
        if isinstance(got, dict) or not exact:
            continue  # Bun refuses the file (invalid YAML somewhere in it), or a crash cut it short (dialogctl reports that)
        if any(_split(m) for m in messages) or (not path.read_bytes().endswith(b"\n") and _ends_in_block(messages[-1].get("metadata"))):
            continue  # see _KNOWN_YAML_SPLITS
        compared += 1
        parsed, calls = _without_yaml(path.read_bytes(), monkeypatch)
        if all(_certain(m) for m in messages):
            certain += 1
            assert calls == [], path.name  # the fast reader's own reading, not ruamel's
        fast = [_as_json(m) for m in parsed.messages]
        # Bun's values that dialogctl does not take for a message (a number or nothing as the timestamp): damage there.
        bun = [{k: v for k, v in m.items() if not (k == "metadata" and v is None)} for m in got if _a_message(m)]
        if not _same(fast, bun):
            failures.append((path.name, fast, bun))
    if os.environ.get("DEBUG_BUN"):
        for name, fast, bun in failures:
            print("=====", name)
            print(" fast", repr(fast))
            print(" bun ", repr(bun))
    assert not failures, failures[:3]
    assert compared >= len(generated_server_files) // 3 and certain >= compared // 2


def test_a_block_on_the_last_line_ends_as_yaml_ends_it() -> None:
    """With no final newline, a | block's last line has no line break for clip chomping to keep."""
    item = server.format_item(server.message("assistant", "x", "2024-01-15T10:30:00.000Z", {"reasoning": "step one\nstep two"}))
    assert read_items(item)[0][0].metadata == {"reasoning": "step one\nstep two"}
    assert _slowly(item.encode()).messages[0].metadata == {"reasoning": "step one\nstep two"}
    assert read_items(item + "\n")[0][0].metadata == {"reasoning": "step one\nstep two\n"}
    followed = item + "\n" + server.format_item(server.message("user", "y", "2024-01-15T10:30:01.000Z"))
    assert read_items(followed)[0][0].metadata == {"reasoning": "step one\nstep two\n"}
