"""What a search pattern must find in a file's raw bytes before any message there can match: its *needles*.

A needle set is a few byte strings such that every match of the pattern in a
message's content contains one of them as a substring. In a record whose
content is stored as written (dialogctl's own records: a literal block, or a
JSON string that escapes only quote, backslash, controls and a few invisible
characters), a needle made of characters YAML never escapes, and holding no
line break, is then also in the record's raw bytes: a record without one
cannot match and need not be parsed. The raw hit is only a candidate (it may
be in a key, the metadata or a frame line); the pattern decides on the parsed
content.

Case-insensitive patterns are matched against the file's bytes lowered
(``bytes.lower``: ASCII only, never touching a byte of a multi-byte UTF-8
character), so a needle may hold only characters whose case-insensitive
matches are all found that way. Python's ``re`` (``IGNORECASE``) matches a
character without case (digits, punctuation, CJK, most symbols) only to
itself, and an ASCII letter to its two ASCII cases, except ``i``, ``k`` and
``s``, which also match ``İ ı``, the Kelvin sign and ``ſ``: those, and every
non-ASCII letter with case, end a needle (a test checks this table against
the running Python). Nothing here is a guess: a pattern with no usable needle
has none, and search then reads every file as it always did.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Any, NamedTuple

# Characters a record may store escaped (codec.quote: json.dumps's escapes and _DQ_EXTRA), a
# line break (block lines gain their indentation after it), and U+FFFD (what invalid bytes
# decode to: a match on it need not be in the raw bytes).
_NOT_RAW = frozenset('"\\\x7f\u2028\u2029\ufeff\ufffe\uffff\ufffd' + "".join(map(chr, range(0x20))) + "".join(map(chr, range(0x80, 0xA0))))
# ASCII letters IGNORECASE also matches to non-ASCII characters: i to U+0130 and U+0131, k to U+212A, s to U+017F.
ASCII_FOLDS_WIDER = frozenset("iIkKsS")
_MAX_ALTERNATIVES = 16


class Needles(NamedTuple):
    """Byte strings one of which every match holds, and whether to look for them in the lowered bytes."""

    alternatives: tuple[bytes, ...]
    folded: bool

    def in_bytes(self, data: bytes) -> bytes | None:
        """``data`` as the needles are looked for in (lowered when folded); None when none of them is there."""
        hay = data.lower() if self.folded else data
        return hay if any(needle in hay for needle in self.alternatives) else None

    def records(self, hay: bytes, afters: list[int]) -> list[int]:
        """Which records of ``hay`` (from :meth:`in_bytes`; record i ends where ``afters[i]`` begins) hold a needle, in order.

        After a hit the search goes on from the next record, so the work is
        bounded by the records, not by how often a needle occurs.
        """
        found: set[int] = set()
        last = len(afters) - 1
        for needle in self.alternatives:
            find, pos = hay.find, hay.find(needle)
            while pos >= 0:
                i = bisect_right(afters, pos)
                if i > last:
                    break  # in line breaks after the last record (a needle holds none: cannot happen)
                found.add(i)
                pos = find(needle, afters[i])
        return sorted(found)


def usable(ch: str, folded: bool) -> bool:
    """Whether ``ch`` may be in a needle: stored raw, and (folded) matched only by what ``bytes.lower`` folds to it."""
    if ch in _NOT_RAW:
        return False
    if not folded:
        return True
    if ch.isascii():
        return ch not in ASCII_FOLDS_WIDER
    return ch.lower() == ch and ch.upper() == ch and ch.casefold() == ch  # a character without case


def needles(text: str, regex: bool, flags: int) -> Needles | None:
    """The needles of a search pattern (``flags`` as it is compiled with), or None when it has none this module can vouch for."""
    # Case is folded if the pattern may ignore it anywhere; inline flags ("(?i)", "(?-i:...)") are not traced.
    folded = bool(flags & re.IGNORECASE) or (regex and "(?" in text)
    if not regex:
        found = _runs(text, folded)
    else:
        try:
            from re import _parser  # type: ignore[attr-defined]

            tree = _parser.parse(text, flags)
        except Exception:  # noqa: BLE001 - whatever this Python's parser does, search then reads every file
            return None
        found = _required(list(tree), folded, 0)
    if not found:
        return None
    return Needles(tuple(dict.fromkeys((s.lower() if folded else s).encode("utf-8") for s in found)), folded)


def _runs(text: str, folded: bool) -> list[str] | None:
    """The longest run of usable characters of a fixed string, as a requirement of one alternative."""
    best: list[str] | None = None
    run: list[str] = []
    for ch in [*text, "\n"]:
        if usable(ch, folded):
            run.append(ch)
        elif run:
            best = _best(best, ["".join(run)])
            run = []
    return best


def _best(a: list[str] | None, b: list[str] | None) -> list[str] | None:
    """The more selective of two requirements (the longer shortest alternative, then fewer alternatives)."""
    if not b:
        return a
    if not a:
        return b

    def key(alternatives: list[str]) -> tuple[int, int]:
        return (min(len(s.encode("utf-8")) for s in alternatives), -len(alternatives))

    return a if key(a) >= key(b) else b


def _required(items: list[Any], folded: bool, depth: int) -> list[str] | None:
    """A requirement of a parsed regex sequence: alternatives one of which every match of it contains."""
    from re import _constants as c  # type: ignore[attr-defined]

    if depth > 50:
        return None
    best: list[str] | None = None
    run: list[str] = []
    repeats = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)}
    for op, av in items:
        if op is c.LITERAL and usable(chr(av), folded):
            run.append(chr(av))
            continue
        if run:
            best = _best(best, ["".join(run)])
            run = []
        sub: list[str] | None = None
        if op is c.SUBPATTERN:
            sub = _required(list(av[-1]), folded, depth + 1)
        elif op is getattr(c, "ATOMIC_GROUP", None):
            sub = _required(list(av), folded, depth + 1)
        elif op in repeats and av[0] >= 1:
            sub = _required(list(av[2]), folded, depth + 1)
        elif op is c.BRANCH:
            alternatives: list[str] = []
            for branch in av[1]:
                each = _required(list(branch), folded, depth + 1)
                if not each:
                    alternatives = []
                    break
                alternatives.extend(each)
            if 0 < len(alternatives) <= _MAX_ALTERNATIVES:
                sub = alternatives
        best = _best(best, sub)
    if run:
        best = _best(best, ["".join(run)])
    return best
