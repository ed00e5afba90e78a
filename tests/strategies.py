"""Hypothesis strategies for hostile message content and JSON-like metadata."""

from __future__ import annotations

from hypothesis import strategies as st

from dialogctl.models import Message

# Lines that trip YAML writers: document markers, comments, indentation,
# block indicators, quotes, our own frame comment, control characters.
NASTY_LINES = [
    "---", "...", "--- x", "# comment", "#", "# dialogctl n=1 len=10 crc32=00000000", "  leading", "trailing  ", "\t", "\ttab first",
    "- item", "key: value", "|", ">", "|2-", "&anchor", "*alias", "!tag", "%YAML 1.2", "'single'", '"double"', "{a: 1}", "[1, 2]",
    "", " ", "   ", "\r", "a\rb", "\x00", "\x1b[31mred\x1b[0m", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\u202eevil", "null", "~", "true",
    "0x1F", "1e3", "2024-01-15T10:30:00.000Z", "日本語", "🎉", "é", "\U0001f600" * 3, "x" * 5000, "\\", "\\n",
]  # fmt: skip

text_chars = st.characters(codec="utf-8")  # any code point UTF-8 can carry (no lone surrogates)


@st.composite
def contents(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.one_of(st.sampled_from(NASTY_LINES), st.text(text_chars, max_size=40)), max_size=8))
    body = "\n".join(lines)
    if draw(st.booleans()):
        body = draw(st.sampled_from(["", " ", "  ", "\t"])) + body
    return body + "\n" * draw(st.integers(0, 3))


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(text_chars, max_size=20),
    st.sampled_from(NASTY_LINES),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(text_chars, max_size=10), children, max_size=4)),
    max_leaves=12,
)
metadata = st.one_of(st.none(), st.dictionaries(st.text(text_chars, max_size=12), json_values, max_size=5))
timestamps = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"),
    st.sampled_from(["2024-01-15T10:30:00Z", "2024-01-15T10:30:00.000+02:00", "2024-01-15"]),
)
roles = st.sampled_from(["user", "assistant", "system", "tool"])


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(draw(roles), draw(contents()), draw(timestamps), draw(metadata))
