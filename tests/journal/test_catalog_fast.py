"""The catalog's fast paths give what the plain ways give.

* ``parse_conversation(content=False)``: the same messages but for their
  content, the same damage, frames and offsets, whatever the bytes;
* ``Tally.add``: the same totals as the plain rules of :mod:`dialogctl.usage`
  and :func:`dialogctl.times.parse_timestamp`, for any role, timestamp and metadata.
"""

from __future__ import annotations

import zlib
from datetime import UTC
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl.fileformat.codec import encode_batch, encode_record
from dialogctl.fileformat.reader import ParsedFile, parse_conversation
from dialogctl.journal.tally import Tally
from dialogctl.models import Message
from dialogctl.times import parse_timestamp
from dialogctl.usage import model_of, tokens_in

from ..strategies import messages as any_message
from ..strategies import metadata as any_metadata


def _shape(parsed: ParsedFile, content: bool) -> tuple[Any, ...]:
    messages = [m if content else m._replace(content="") for m in parsed.messages]
    return (messages, parsed.damage, parsed.form, parsed.framed, parsed.settled, parsed.settled_messages, parsed.settled_damage, parsed.last_n)


def _same_without_content(data: bytes) -> None:
    full = parse_conversation(data, "f")
    fast = parse_conversation(data, "f", content=False)
    assert _shape(fast, False) == _shape(full, False)


def _framed(body: bytes, n: int = 1) -> bytes:
    """A record of any bytes with a valid frame (what only a hand-made file holds)."""
    return body + b"# dialogctl n=%d len=%d crc32=%08x\n" % (n, len(body), zlib.crc32(body))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_message(), max_size=6), st.sampled_from(["documents", "sequence"]), st.booleans(), st.integers(0, 400))
def test_content_false_reads_the_same_messages(messages: list[Message], form: str, batch: bool, cut: int) -> None:
    data = b"\n" + encode_batch(messages, 1, form, marked=batch) if messages else b""  # type: ignore[arg-type]
    _same_without_content(data)
    _same_without_content(data[: len(data) - cut])  # torn: the general path
    _same_without_content(data + b"- role: user\n  content: |\n    hi\n  timestamp: 2024-01-15T10:30:00.000Z")  # a server's item after ours


def test_content_false_refuses_what_the_exact_decoder_refuses() -> None:
    good = encode_record(Message("user", "a\nb", "2024-01-15T10:30:00.000Z"), 1, "sequence")
    bad_utf8 = _framed(b'- role: user\n  content: |2-\n    caf\xe9\n  timestamp: "2024-01-15T10:30:00.000Z"\n', 2)
    bad_quoted = _framed(b'- role: user\n  content: "a\\qb"\n  timestamp: "2024-01-15T10:30:00.000Z"\n', 2)
    bad_stamp = _framed(b'- role: user\n  content: |2-\n    x\n  timestamp: "2024\\q"\n', 2)
    bad_meta = _framed(b'- role: user\n  content: |2-\n    x\n  timestamp: "2024-01-15T10:30:00.000Z"\n  metadata: [1]\n', 2)
    for data in (good, good + bad_utf8, good + bad_quoted, good + bad_stamp, good + bad_meta, bad_utf8 + good):
        _same_without_content(data)


def _plain_tally(messages: list[Message]) -> dict[str, Any]:
    """What Tally.add counts, by the plain rules (the code the catalog's inner loop inlines)."""
    out: dict[str, Any] = {"messages": 0, "first": None, "last": None, "roles": {}, "models": {}, "tokens": 0, "token_messages": 0}
    out |= {"days": {}, "model_tokens": {}, "day_tokens": {}}
    first_at = last_at = None
    for msg in messages:
        out["messages"] += 1
        out["roles"][msg.role] = out["roles"].get(msg.role, 0) + 1
        model = model_of(msg.metadata)
        count = tokens_in(msg.metadata.get("tokens")) if msg.metadata else None
        if model is not None:
            out["models"][model] = out["models"].get(model, 0) + 1
        if count is not None:
            out["tokens"] += count
            out["token_messages"] += 1
            if model is not None:
                out["model_tokens"][model] = out["model_tokens"].get(model, 0) + count
        moment = parse_timestamp(msg.timestamp)
        if moment is None:
            continue
        day = moment.astimezone(UTC).date().isoformat()
        out["days"][day] = out["days"].get(day, 0) + 1
        if count is not None:
            out["day_tokens"][day] = out["day_tokens"].get(day, 0) + count
        if first_at is None or moment < first_at:
            first_at, out["first"] = moment, msg.timestamp
        if last_at is None or moment > last_at:
            last_at, out["last"] = moment, msg.timestamp
    return out


STAMPS = st.one_of(
    st.sampled_from(
        [
            "2024-01-15T10:30:00.000Z",
            "2024-01-15T10:30:00Z",
            "2024-01-15T23:30:00.000-05:00",
            "2024-01-15T10:30:00",
            "2024-02-30T10:30:00.000Z",
            "2024-01-15T25:30:00.000Z",
            " 2024-01-15T10:30:00.000Z",
            "2024-01-15T10:30:00.000Z ",
            "20240115T103000Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59.999Z",
            "2024-01-15",
            "",
            "Z",
            "not a time",
        ]
    ),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"),
)
TOKENS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(0, 10**6), st.floats(allow_nan=False), st.text(max_size=3), st.just(["object Object"]),
    st.dictionaries(st.sampled_from(["total", "prompt", "completion", "input", "output"]), st.one_of(st.integers(-2, 50), st.booleans(), st.none()), max_size=5),
)  # fmt: skip
METADATA = st.one_of(
    any_metadata,
    st.fixed_dictionaries({}, optional={"model": st.one_of(st.sampled_from(["m1", "m2", ""]), st.integers(), st.none()), "tokens": TOKENS}),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool"]), STAMPS, METADATA), max_size=12), st.integers(0, 12))
def test_tally_counts_by_the_plain_rules(raw: list[tuple[str, str, dict[str, Any] | None]], split: int) -> None:
    messages = [Message(role, "", stamp, meta) for role, stamp, meta in raw]
    tally = Tally()
    tally.add(messages[:split])  # in two runs, as a grown file is read
    tally.add(messages[split:])
    got = {key: getattr(tally, key) for key in _plain_tally([]).keys()}
    assert got == _plain_tally(messages)
