"""Time in the journal: message timestamps, archive ids, durations and time specs.

Journal timestamps are ISO 8601 in UTC with a ``Z`` and milliseconds
(``2024-01-15T10:30:00.000Z``), as the reference writes them; what a file
holds is kept verbatim, and parsed only to compare or filter.

A *time spec* (``--since``, ``--until``, ``--timestamp``) is an ISO 8601 date or
date-time, a duration back from now with a unit (``30s``, ``15m``, ``12h``,
``7d``, ``2w``), ``N <unit>s ago``, ``yesterday``, ``today`` or ``now``. A
*duration* (``--max-age``, ``--idle``) always carries its unit: a bare number is
refused because ``--max-age 30`` could mean seconds or days.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import InvalidInput

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.I)
_AGO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s+ago\s*", re.I)

_LONGEST = timedelta.max.total_seconds()
TIMESTAMP_RULE = "an ISO 8601 date or date-time that, in UTC, lies in the years 1 to 9999"
DURATION_FORMS = "a number with a unit: 30s, 15m, 12h, 7d, 2w"
TIME_FORMS = (
    "an ISO 8601 date or time (2024-01-15, 2024-01-15T10:30:00Z), a duration back from now (30s, 15m, 12h, 7d, 2w), 'N days ago', 'yesterday', 'today' or 'now'"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """The journal's own form: ``2024-01-15T10:30:00.000Z``."""
    moment = moment.astimezone(UTC)
    # Not strftime's %Y: the C library writes year 1 as "1", which is not ISO 8601 (and not readable back).
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_now_iso() -> str:
    return format_timestamp(utc_now())


def parse_timestamp(text: str) -> datetime | None:
    """A journal timestamp as an aware datetime (naive ones are taken as UTC); None if unreadable.

    This is the one rule for timestamps, on input (append, import) and in
    files alike: an ISO 8601 date or date-time that names a moment on the
    calendar in UTC. ``0001-01-01T00:30:00+01:00`` is a valid ISO 8601 text,
    but in UTC it falls before the first day Python's calendar has (and
    ``9999-12-31T23:30:00-01:00`` after its last), so it could be neither
    converted nor compared: it is refused on input and reported as an
    unreadable timestamp in a file, like any other text that is not a time.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError, TypeError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return None
    return moment


def span(seconds: float) -> timedelta:
    """A duration of ``seconds``; one longer than Python's calendar can hold is the longest it can (longer than any journal)."""
    if not seconds < _LONGEST:  # also infinity and NaN
        return timedelta.max
    return timedelta(seconds=seconds)


def back(moment: datetime, delta: timedelta) -> datetime:
    """``moment - delta`` for a cut-off; the calendar's first moment when that lies before it (nothing is older)."""
    try:
        return moment - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def archive_id_for(moment: datetime) -> str:
    """Archive ids are the UTC time of archiving: ``YYYY-MM-DD-HH-MM-SS``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d-%H-%M-%S")


def parse_duration(text: str, what: str = "duration") -> timedelta:
    m = _DURATION.fullmatch(text or "")
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidInput(f"{what} {text!r} is not a duration; use {DURATION_FORMS}")
    return span(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_time_spec(text: str, what: str = "time", now: datetime | None = None) -> datetime:
    """A point in time from any of the accepted forms (see the module docstring)."""
    now = now or utc_now()
    spec = (text or "").strip()
    low = spec.lower()
    if low == "now":
        return now
    if low in ("today", "yesterday"):
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight if low == "today" else midnight - timedelta(days=1)
    m = _AGO.fullmatch(spec) or _DURATION.fullmatch(spec)
    if m and m.group(2).lower() in _UNITS:
        try:
            return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
        except OverflowError:
            raise InvalidInput(f"{what} {text!r} lies before the first day of the calendar; use {TIME_FORMS}") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", spec):
        moment = parse_timestamp(spec.replace("z", "Z"))
        if moment is not None:
            return moment
    raise InvalidInput(f"{what} {text!r} is not a time; use {TIME_FORMS}")
