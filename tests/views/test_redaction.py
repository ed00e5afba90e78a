"""Redaction: generated secrets of every kind, embedded in ordinary text, are all replaced, and nothing else changes."""

from __future__ import annotations

import ipaddress
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl.errors import InvalidInput
from dialogctl.models import Message
from dialogctl.views.redaction import Redactor, iban_valid, load_rules, luhn_valid

DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits


def _luhn_digit(body: str) -> str:
    """The check digit that makes ``body`` + it a valid card number (computed here, not by the code under test)."""
    total = sum(sum(divmod(int(d) * (2 if i % 2 == 0 else 1), 10)) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("23456")) + draw(st.text(DIGITS, min_size=length - 2, max_size=length - 2))
    number = body + _luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.text(string.ascii_uppercase, min_size=2, max_size=2))
    bban = draw(st.text(UPPER_ALNUM, min_size=11, max_size=30))
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    iban = f"{country}{check:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if draw(st.booleans()) else iban


label = st.text(string.ascii_lowercase + DIGITS, min_size=1, max_size=10)
emails = st.builds(
    lambda a, b, d, t: f"{a}{b}@{d}.{t}", label, st.sampled_from(["", ".x", "+tag", "_y"]), label, st.text(string.ascii_lowercase, min_size=2, max_size=6)
)
ipv4s = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


def _shown_as_ipv6(text: str) -> bool:  # the documented rule: two groups or more, one of three hex digits or more
    groups = [g for g in text.replace(".", ":").split(":") if g]
    return len(groups) >= 2 and max(len(g) for g in groups) >= 3


ipv6s = st.builds(
    lambda n, full: ipaddress.IPv6Address(n).exploded if full else ipaddress.IPv6Address(n).compressed, st.integers(0, 2**128 - 1), st.booleans()
).filter(_shown_as_ipv6)


@st.composite
def phones(draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(["intl", "nanp", "national"]))
    sep = draw(st.sampled_from([" ", "-", "."]))
    if form == "intl":
        country = draw(st.sampled_from(["1", "33", "44", "49", "353"]))
        groups = draw(st.lists(st.text(DIGITS, min_size=2, max_size=4), min_size=2, max_size=4).filter(lambda g: 8 <= len(country + "".join(g)) <= 15))
        return f"+{country} " + sep.join(groups)
    if form == "nanp":
        a, b, c = (draw(st.text(DIGITS, min_size=n, max_size=n)) for n in (3, 3, 4))
        return f"({a}) {b}-{c}" if sep == " " else sep.join((a, b, c))
    groups = draw(st.lists(st.text(DIGITS, min_size=2, max_size=4), min_size=2, max_size=4).filter(lambda g: 9 <= 1 + len("".join(g)) <= 12))
    return "0" + sep.join(groups)


tokens = st.one_of(
    st.builds(lambda p, t: p + t, st.sampled_from(["sk-", "sk-proj-"]), st.text(ALNUM + "_-", min_size=20, max_size=48)),
    st.builds(lambda p, t: p + t, st.sampled_from(["ghp_", "gho_", "ghs_"]), st.text(ALNUM, min_size=36, max_size=40)),
    st.builds(lambda t: "github_pat_" + t, st.text(ALNUM + "_", min_size=22, max_size=82)),
    st.builds(lambda p, t: p + t, st.sampled_from(["xoxb-", "xoxp-", "xoxa-"]), st.text(ALNUM + "-", min_size=10, max_size=40)),
    st.builds(lambda p, t: p + t, st.sampled_from(["AKIA", "ASIA"]), st.text(UPPER_ALNUM, min_size=16, max_size=16)),
)
bearer_tokens = st.builds(lambda t, d: t + d, st.text(ALNUM + "._-", min_size=16, max_size=60), st.sampled_from(DIGITS))

SECRETS = {"email": emails, "card": cards(), "iban": ibans(), "ip": st.one_of(ipv4s, ipv6s), "phone": phones(), "token": tokens}
secrets = st.one_of(*(st.tuples(st.just(kind), strategy) for kind, strategy in SECRETS.items()), st.tuples(st.just("bearer"), bearer_tokens))

# Ordinary text: words (with accents and other scripts), punctuation, and the numbers a conversation holds that are
# no secret: small counts, years, times, dates, timestamps, versions, millisecond ids, a Python slice, a C++ name.
WORDS = ["the", "order", "was", "late", "café", "naïve", "日本語", "🎉", "refund", "cafe", "dead", "beef", "Bearer", "sk", "at", "email", "@", "a@b", "x.y"]
NUMBERS = [
    "3",
    "42",
    "2024",
    "10:30",
    "10:30:00",
    "2024-01-15",
    "2024-01-15T10:30:00Z",
    "01.02.2024",
    "v1.2.3",
    "1700000000000",
    "a[1::2]",
    "std::map",
    "#1234",
]
phrases = st.builds(
    lambda w, n, p: w + (" " + n if n else "") + p, st.sampled_from(WORDS), st.one_of(st.none(), st.sampled_from(NUMBERS)), st.sampled_from(["", ",", ".", "!"])
)
ordinary = st.lists(phrases, min_size=1, max_size=6).map(" ".join).map(lambda text: text + " and")  # ends with a word


@st.composite
def texts_with_secrets(draw: st.DrawFn) -> tuple[str, str, list[str], dict[str, int]]:
    """(text, the text as redacted, the secrets in it, how many of each kind)."""
    parts, expected, found = [draw(ordinary)], [], {}
    expected.append(parts[0])
    planted: list[str] = []
    for kind, secret in draw(st.lists(secrets, max_size=5)):
        text = draw(ordinary)
        if kind == "bearer":
            parts.append(f"Bearer {secret}")
            expected.append("Bearer [REDACTED:token]")
            kind = "token"
        else:
            parts.append(secret)
            expected.append(f"[REDACTED:{kind}]")
        parts.append(text)
        expected.append(text)
        planted.append(secret)
        found[kind] = found.get(kind, 0) + 1
    return " ".join(parts), " ".join(expected), planted, found


@settings(max_examples=300, deadline=None)
@given(texts_with_secrets())
def test_every_planted_secret_is_redacted_and_nothing_else_changes(case: tuple[str, str, list[str], dict[str, int]]) -> None:
    text, expected, planted, found = case
    redactor = Redactor()
    out = redactor.text(text)
    assert out == expected
    for secret in planted:
        assert secret not in out
    assert dict(redactor.counts) == found


@settings(max_examples=200, deadline=None)
@given(ordinary)
def test_ordinary_text_is_unchanged(text: str) -> None:
    redactor = Redactor()
    assert redactor.text(text) is text
    assert not redactor.counts


@settings(max_examples=100, deadline=None)
@given(texts_with_secrets(), texts_with_secrets(), st.integers(-5, 5))
def test_metadata_strings_are_redacted_keys_and_other_values_untouched(
    content: tuple[str, str, list[str], dict[str, int]], value: tuple[str, str, list[str], dict[str, int]], number: int
) -> None:
    secret_key = "alice@example.com"  # keys are never touched
    msg = Message("user", content[0], "2024-01-15T10:30:00Z", {secret_key: {"deep": [value[0], number, None, True]}, "n": number})
    redactor = Redactor()
    out = redactor.message(msg)
    assert out.content == content[1]
    assert out.metadata == {secret_key: {"deep": [value[1], number, None, True]}, "n": number}
    assert out.timestamp == msg.timestamp and out.role == msg.role
    total = {k: content[3].get(k, 0) + value[3].get(k, 0) for k in set(content[3]) | set(value[3])}
    assert dict(redactor.counts) == total


def test_a_message_without_secrets_is_the_same_object() -> None:
    msg = Message("user", "see you at 10:30", "2024-01-15T10:30:00Z", {"note": "nothing"})
    assert Redactor().message(msg) is msg


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "1111 1111 1111 1117",  # passes Luhn, but no card network starts with 1
        "GB82 WEST 1234 5698 7654 33",  # fails mod 97
        "0612345678",  # a national number without separators is an id as much as a phone
        "555 123 4567",  # spaces only: too much like plain numbers
        "+1 234",  # too few digits for a phone
        "1.2.3.4.5",  # a version, not an address
        "256.1.1.1",
        "::1",
        "sk-short",
        "Bearer authentication tokens",
        "AKIAIOSFODNN7EXAMPL",  # 15 characters after the prefix
        "user@localhost",
    ],
)
def test_conservative_rules_leave_lookalikes(text: str) -> None:
    assert Redactor().text(text) == text


def test_luhn_check_digits_agree() -> None:
    assert _luhn_digit("411111111111111") == "1"
    assert _luhn_digit("555555555555444") == "4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a 0:0:0:0:0:ffff:1.2.3.4 b", "a [REDACTED:ip] b"),  # six colons and an IPv4 tail
        ("64:ff9b::192.0.2.33", "[REDACTED:ip]"),
        ("host 10.0.0.1:8080", "host [REDACTED:ip]:8080"),
        ("x 2345 4111 1111 1111 1111 y", "x 2345 [REDACTED:card] y"),  # a number before the card
        ("4111 1111 1111 1111 2024", "[REDACTED:card] 2024"),  # and one after it
        ("AB12 GB82 WEST 1234 5698 7654 32 ok", "AB12 [REDACTED:iban] ok"),
        ("(555) 123-4567 and 030/1234567", "[REDACTED:phone] and [REDACTED:phone]"),
        ("Authorization: bearer abcdef0123456789abcdef.", "Authorization: bearer [REDACTED:token]."),
        ("mail: Jane.Doe+x@mail.example.co.uk, thanks", "mail: [REDACTED:email], thanks"),
        ("é@example.com x.y@example", "é@example.com x.y@example"),  # no ASCII local part; no TLD
    ],
)
def test_examples(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_checks() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_summary_lists_built_in_kinds_first() -> None:
    r = Redactor()
    r.merge({"ticket": 2, "email": 3, "card": 1})
    assert r.summary() == "3 email, 1 card, 2 ticket"
    assert Redactor().summary() == "nothing"


def _rules(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_user_rules_run_first_and_name_their_kind(tmp_path: Path) -> None:
    rules = load_rules(_rules(tmp_path, "- name: ticket\n  regex: 'TICKET-\\d+'\n- name: codename\n  regex: '(?i)bluebird'\n"))
    r = Redactor(rules)
    assert r.text("TICKET-42 about Bluebird from bob@example.com") == "[REDACTED:ticket] about [REDACTED:codename] from [REDACTED:email]"
    assert dict(r.counts) == {"ticket": 1, "codename": 1, "email": 1}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name: x\nregex: y\n", "expected a list"),
        ("", "expected a list"),
        ("- name: x\n", "rule 1: expected exactly the keys name and regex"),
        ("- name: x\n  regex: y\n  flags: i\n", "rule 1: expected exactly the keys"),
        ("- name: two words\n  regex: y\n", "rule 1: name 'two words' is not a simple word"),
        ("- name: 1st\n  regex: y\n", "is not a simple word"),
        ("- name: ok\n  regex: '('\n", "rule 'ok': invalid regular expression"),
        ("- name: ok\n  regex: 'a*'\n", "rule 'ok': the regular expression matches the empty string"),
        ("- name: ok\n  regex: ''\n", "rule 'ok': regex must be a non-empty string"),
        ("- name: ok\n  regex: [1]\n", "rule 'ok': regex must be a non-empty string"),
        ("- name: ok\n  regex: a\n- name: ok\n  regex: b\n", "rule 'ok': the name is used twice"),
        ("- name: ok\n  regex: !!python/object:os.system a\n", "--redact-rules"),
        ("- [unclosed\n", "line"),
    ],
)
def test_bad_rules_files_are_usage_errors_naming_file_and_rule(tmp_path: Path, text: str, says: str) -> None:
    path = _rules(tmp_path, text)
    with pytest.raises(InvalidInput) as caught:
        load_rules(path)
    assert caught.value.exit_code == 2
    assert f"--redact-rules {path}" in caught.value.message
    assert says in caught.value.message


def test_a_missing_rules_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read it"):
        load_rules(str(tmp_path / "nope.yaml"))
