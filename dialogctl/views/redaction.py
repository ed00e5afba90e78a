"""Redaction: secrets and personal data in message text replaced by ``[REDACTED:<kind>]`` on the way out.

A :class:`Redactor` rewrites a :class:`~dialogctl.models.Message` (its content
and every string inside its metadata, keys untouched) and counts what it
replaced, per kind. It never touches the journal and never prints: export,
show, search and follow apply it to what they read, before any format sees it.

Design decisions a reader must know:

* The built-in rules run in a few passes, each of which Python's ``re`` can
  scan fast: one combined expression for the tokens (every alternative starts
  with a literal), e-mail found from its ``@``, IBANs from an upper-case
  letter, IPv6 from a pair of colons (only when the string has ``::`` or six
  colons), and one combined expression for cards, IPv4 and phones run only
  inside runs of digits and separators. One combined expression over
  everything was measured 6 times slower than the plain export: an
  alternation that starts with lookbehinds is tried at every position.
* Candidates the expression finds are confirmed before they are replaced:
  card numbers by the Luhn check, IBANs by their mod-97 checksum, IPv6
  addresses by :mod:`ipaddress`, phone numbers by their digit count. A
  candidate that fails stays as it is (conservative: plain numbers, ids,
  timestamps and version strings are left alone).
* The user's rules (:func:`load_rules`) run first, one pass each in file
  order, then the built-in ones; a rule's name is its kind.

Module is in ``views`` (below ``exchange``) so that export, search, show and
follow all reach it.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ..models import Message

KINDS = ("email", "phone", "card", "iban", "ip", "token")
RULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
MAX_RULES_FILE = 1 << 20  # characters: a rules file is read whole, never past this

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_BEARER = r"(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{15,}[A-Za-z0-9_~+/-]=*"
# The built-in rules, in passes. A named group ``<kind>_<variant>`` says which rule matched; the part before ``_`` is
# the kind. Python's re scans fast only to where a pattern's first character (a literal, or a set of them) can
# match; a lookbehind first, or an alternation of groups, makes it try every position. So each pass starts with a
# literal or a character set (lookbehinds come after the first character), and the narrow rules run in windows.
_TOKENS = re.compile(
    "|".join(
        [
            r"s(?<![\w-]s)(?P<token_sk>k-(?:proj-|ant-)?[A-Za-z0-9_-]{20,})",
            r"g(?<!\wg)(?P<token_gh>h[pousr]_[A-Za-z0-9]{20,}|ithub_pat_[A-Za-z0-9_]{22,})",
            r"x(?<![\w-]x)(?P<token_slack>ox[a-z]-[A-Za-z0-9-]{10,})",
            r"A(?<![A-Za-z0-9]A)(?P<token_aws>(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9]))",
            # "Bearer " is kept; the token after it (16+ characters, one a digit, not ending in a full stop) is replaced.
            r"Bearer (?P<token_bearer>" + _BEARER + ")",
            r"bearer (?P<token_bearer2>" + _BEARER + ")",
            r"BEARER (?P<token_bearer3>" + _BEARER + ")",
        ]
    )
)
# E-mail: the domain is found from its @; the local part is taken backwards from there (see Redactor._emails).
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])")
_EMAIL_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
# IBAN: country, check digits, then up to 30 letters/digits, in groups of four or not.
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9].)[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")
# IPv6: found from a colon with another within five characters; candidates are confirmed by ipaddress.
_COLONS = re.compile(r":(?=[0-9A-Fa-f]{0,4}:)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" + _OCTET + r"(?:\." + _OCTET + r"){3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\d)")
# Cards, IPv4 addresses and phone numbers are made of digits and a few separators: they are looked for only
# inside runs of those (7 characters or more), each run a window for this pattern.
_NUMBER_RUN = re.compile(r"[\d+(][\d ().:/+-]{6,}")
_NUMBERS = re.compile(
    "|".join(
        [
            # Card: 13-19 digits, the first 2-6 (the card networks' ranges), single spaces or dashes between.
            r"(?P<card_any>(?<![\w-])[2-6](?:[ -]?\d){12,18}(?![\w]|-\d))",
            r"(?P<ip_v4>(?<![\w.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?![\w]|\.\d))",
            # Phones: international (+ and a country code), NANP with separators, national with a trunk 0 and separators.
            r"(?P<phone_intl>(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}(?![\w]|[.-]\d))",
            r"(?P<phone_nanp>(?<![\w+().-])(?:\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}-\d{3}-\d{4}|\d{3}\.\d{3}\.\d{4})(?![\w]|[.-]\d))",
            r"(?P<phone_national>(?<![\w+.,/:-])0\d{1,4}(?P<sep>[ /.-])\d{2,8}(?:(?P=sep)\d{2,8}){0,3}(?![\w]|[/.,:-]\d))",
        ]
    )
)
_HEX = frozenset("0123456789abcdefABCDEF")


_SEPARATORS = " -./"


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (card numbers)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Whether an IBAN (spaces allowed) has a valid length and mod-97 checksum."""
    iban = iban.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _card(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _international_phone(candidate: str) -> bool:
    return 8 <= len(_digits(candidate)) <= 15


def _national_phone(candidate: str) -> bool:
    return 9 <= len(_digits(candidate)) <= 12


def _ipv6(candidate: str) -> bool:
    groups = [g for g in re.split(r"[:.]", candidate) if g]
    if len(groups) < 2 or max(len(g) for g in groups) < 3:  # keep "::1", "1::2" (a Python slice), "10:30:00"
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


class Rule(NamedTuple):
    """A user's rule: its name is the kind it reports and writes into ``[REDACTED:<name>]``."""

    name: str
    pattern: re.Pattern[str]


class Redactor:
    """Replaces what its rules find with ``[REDACTED:<kind>]``; :attr:`counts` says how many of each kind."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules = tuple(rules)
        self.counts: Counter[str] = Counter()

    def fresh(self) -> Redactor:
        """The same rules, counts from zero (for a worker process whose counts are merged back)."""
        return Redactor(self.rules)

    def merge(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)

    def text(self, text: str) -> str:
        """``text`` with every match replaced; the very same string when nothing matched."""
        for rule in self.rules:
            text = rule.pattern.sub(self._user_replacement(rule.name), text)
        return self._built_in(text)

    def value(self, value: Any) -> Any:
        """A metadata value with every string in it redacted (recursively; keys untouched)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def message(self, msg: Message) -> Message:
        """The message with its content and metadata strings redacted."""
        before = self.counts.total()
        content = self.text(msg.content)
        metadata = self.value(msg.metadata) if msg.metadata else msg.metadata
        if self.counts.total() == before:
            return msg
        return msg._replace(content=content, metadata=metadata)

    def summary(self) -> str:
        """``12 email, 3 card`` (built-in kinds first, then the user's), or ``nothing``."""
        order = [k for k in KINDS if self.counts.get(k)] + sorted(k for k in self.counts if k not in KINDS and self.counts[k])
        return ", ".join(f"{self.counts[k]} {k}" for k in order) or "nothing"

    def _user_replacement(self, name: str) -> Any:
        def replace(m: re.Match[str]) -> str:
            if m.start() == m.end():
                return ""  # an empty match replaces nothing
            self.counts[name] += 1
            return f"[REDACTED:{name}]"

        return replace

    def _built_in(self, text: str) -> str:
        """The built-in passes, each over what the one before left: tokens, e-mail, IBAN, IPv6, then the number runs."""
        text = self._scan(text, _TOKENS, [(0, len(text))])
        if "@" in text:
            text = self._emails(text)
        text = self._scan(text, _IBAN, [(0, len(text))], "iban_any")
        if "::" in text or text.count(":") >= 6:  # six: a full address with an IPv4 tail
            text = self._ipv6(text)
        # A window reaches two characters past its run, so the rules' lookaheads see what follows it.
        return self._scan(text, _NUMBERS, ((run.start(), run.end()) for run in _NUMBER_RUN.finditer(text)), limit=2)

    def _scan(
        self, text: str, pattern: re.Pattern[str], windows: Iterable[tuple[int, int]], group: str | None = None, limit: int = 0, anchored: bool = False
    ) -> str:
        """``pattern``'s matches starting inside each window redacted (``anchored``: at its start only); each candidate confirmed or passed over from its next group on."""
        parts: list[str] = []
        kept = 0
        for start, end in windows:
            pos, stop = max(start, kept), min(len(text), end + limit) if limit else len(text)
            while pos < end and (m := (pattern.match if anchored else pattern.search)(text, pos, stop)) is not None and m.start() < end:
                name = group or m.lastgroup or ""
                until, kind = self._judge(m, name)
                if kind is None:
                    pos = until
                    continue
                self.counts[kind] += 1
                begin = m.start(name) if name.startswith("token_bearer") else m.start()  # "Bearer " stays
                parts.append(text[kept:begin])
                parts.append(f"[REDACTED:{kind}]")
                kept = pos = until
        if not parts:
            return text
        parts.append(text[kept:])
        return "".join(parts)

    def _emails(self, text: str) -> str:
        """Each domain after an @, with the local part before it: letters, digits and ._%+- back to the first character that is none of them."""
        parts: list[str] = []
        kept = 0
        for m in _EMAIL_DOMAIN.finditer(text):
            start = m.start()
            while start > kept and text[start - 1] in _EMAIL_LOCAL:
                start -= 1
            if start == m.start() or not text[start].isalnum() or (start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_")):
                continue  # no local part, one starting with a dot or a sign, or one glued to a word
            self.counts["email"] += 1
            parts.append(text[kept:start])
            parts.append("[REDACTED:email]")
            kept = m.end()
        if not parts:
            return text
        parts.append(text[kept:])
        return "".join(parts)

    def _ipv6(self, text: str) -> str:
        def windows() -> Iterator[tuple[int, int]]:
            for colon in _COLONS.finditer(text):
                start = colon.start()
                while start > colon.start() - 4 and start > 0 and text[start - 1] in _HEX:
                    start -= 1
                yield start, start + 1  # the address starts here or not at all

        return self._scan(text, _IPV6, windows(), "ip_v6", anchored=True)

    @staticmethod
    def _judge(m: re.Match[str], group: str) -> tuple[int, str | None]:
        """Where the secret a candidate holds ends and its kind; or (where to scan on from, None) when it holds none.

        A card or phone number written next to another number is found with it
        (``4111 1111 1111 1111 2024``, ``2345 4111 1111 1111 1111``): the longest
        prefix ending before a separator that passes the check is taken, and a
        candidate with none is scanned again from its next group on, so a secret
        does not hide behind its neighbour.
        """
        kind = group.partition("_")[0]
        found = m.group()
        confirm = _CONFIRMED.get(group)
        if confirm is None:
            if group == "ip_v6" and not _ipv6(found):
                return m.end(), None
            return m.end(), kind
        cuts = [i for i in range(len(found) - 1, 0, -1) if found[i] in _SEPARATORS and found[i - 1] not in _SEPARATORS]
        for end in [len(found), *cuts]:
            if confirm(found[:end]):
                return m.start() + end, kind
        return m.start() + (cuts[-1] if cuts else len(found)), None


_CONFIRMED = {"card_any": _card, "iban_any": iban_valid, "phone_intl": _international_phone, "phone_national": _national_phone}


def load_rules(path: str) -> list[Rule]:
    """The user's rules from a YAML file: a list of ``{name: WORD, regex: PATTERN}``.

    Raises :class:`~dialogctl.errors.InvalidInput` (exit 2) naming the file,
    and the rule, for a file that cannot be read, is not such a list, or holds
    a bad name or a regular expression that does not compile or matches the
    empty string.
    """
    from ..errors import InvalidInput
    from ..yamlsafe import ItemError, load_yaml

    try:
        with open(path, encoding="utf-8") as f:  # a FIFO is waited on, as grep -f waits: <(...) works
            text = f.read(MAX_RULES_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise InvalidInput(f"--redact-rules {path}: cannot read it ({reason})") from None
    if len(text) > MAX_RULES_FILE:  # /dev/zero or a huge file: never read whole
        raise InvalidInput(f"--redact-rules {path}: larger than {MAX_RULES_FILE >> 20} MiB; a rules file is a short list")
    try:
        data = load_yaml(text)
    except ItemError as exc:
        raise InvalidInput(f"--redact-rules {path}: line {exc.line_offset + 1}: {exc.detail}") from None
    if not isinstance(data, list):
        raise InvalidInput(f"--redact-rules {path}: expected a list of {{name: ..., regex: ...}} rules", hint="- name: ticket\n  regex: 'TICKET-\\d+'")
    rules: list[Rule] = []
    for number, item in enumerate(data, 1):
        where = f"--redact-rules {path}: rule {number}"
        if not isinstance(item, dict) or set(item) != {"name", "regex"}:
            raise InvalidInput(f"{where}: expected exactly the keys name and regex")
        name, regex = item["name"], item["regex"]
        if not isinstance(name, str) or not RULE_NAME.match(name):
            raise InvalidInput(f"{where}: name {name!r} is not a simple word (a letter, then letters, digits or _)")
        where = f"--redact-rules {path}: rule {name!r}"
        if any(rule.name == name for rule in rules):
            raise InvalidInput(f"{where}: the name is used twice")
        if not isinstance(regex, str) or not regex:
            raise InvalidInput(f"{where}: regex must be a non-empty string")
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise InvalidInput(f"{where}: invalid regular expression: {exc}") from None
        if pattern.search("") is not None:
            raise InvalidInput(f"{where}: the regular expression matches the empty string")
        rules.append(Rule(name, pattern))
    return rules
