"""One timestamp rule: what is accepted can be converted to UTC and compared; nothing else is.

``0001-01-01T00:30:00+01:00`` is valid ISO 8601, but in UTC it lies before the
first day of the calendar (``9999-12-31T23:30:00-01:00`` after its last).
:func:`dialogctl.times.parse_timestamp` is the rule; every entry point applies
it (``append`` arguments, ``--timestamp``, ``--jsonl``, every import format)
and every reader goes through it, so such a timestamp is refused on input
(exit 2 naming the line) and, found in a file, is an unreadable timestamp that
``verify`` reports and every command reads past. Accepted timestamps at the
very edges of the calendar go through everything that counts, bins, draws or
compares times.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl.cli.render import clock, human_time
from dialogctl.errors import InvalidInput
from dialogctl.journal.catalog import Tally
from dialogctl.models import Message
from dialogctl.times import back, format_timestamp, parse_duration, parse_time_spec, parse_timestamp
from dialogctl.views.analytics import Analytics, iso_week
from dialogctl.views.filters import MessageFilter

from ..conftest import Cli
from .conftest import count

FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)
OUTSIDE = ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "0001-01-01T00:00:00.000+00:01", "9999-12-31 23:59:59.999-00:01"]
EDGES = ["0001-01-01T00:00:00.000Z", "0001-01-01T00:30:00+00:30", "9999-12-31T23:59:59.999Z", "9999-12-31T22:00:00-01:59", "0001-01-01", "9999-12-31"]

near_edges = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3)),
    st.datetimes(min_value=datetime(9999, 12, 29), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
)
offsets = st.one_of(st.none(), st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timedelta(minutes=minutes)))


def _text(moment: datetime, offset: timedelta | None, sep: str, fraction: bool) -> str:
    body = f"{moment.year:04d}-{moment.strftime('%m-%d')}{sep}{moment.strftime('%H:%M:%S')}" + (f".{moment.microsecond // 1000:03d}" if fraction else "")
    if offset is None:
        return body
    sign, minutes = ("+" if offset >= timedelta(0) else "-"), abs(int(offset.total_seconds())) // 60
    return body + ("Z" if minutes == 0 and sign == "+" else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}")


@settings(max_examples=count("TIMESTAMP_EDGES", 3000), deadline=None, suppress_health_check=list(HealthCheck))
@given(near_edges, offsets, st.sampled_from(["T", " "]), st.booleans())
def test_the_rule_at_the_calendars_edges(moment: datetime, offset: timedelta | None, sep: str, fraction: bool) -> None:
    text = _text(moment, offset, sep, fraction)
    wall = moment.replace(microsecond=moment.microsecond // 1000 * 1000 if fraction else 0)
    try:  # the UTC moment the text names, if the calendar has it
        expected: datetime | None = wall - (offset or timedelta(0))
    except OverflowError:
        expected = None
    parsed = parse_timestamp(text)
    if expected is None:
        assert parsed is None, text
        return
    assert parsed is not None, text
    utc = parsed.astimezone(UTC)  # converts...
    assert utc.replace(tzinfo=None) == expected
    assert FIRST <= parsed <= LAST  # ...and compares
    assert parse_timestamp(format_timestamp(parsed)) == parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)  # written back, read back
    # Everything that counts, bins, draws or filters times takes it.
    tally = Tally()
    tally.add([Message("user", "x", text, {"tokens": 1})])
    (day,) = tally.days
    iso_week(day)
    analytics = Analytics()
    analytics.days = dict(tally.days)
    assert analytics.recent_days()[-1] == (day, 1)
    clock(text), clock(text, local=True), human_time(text)
    MessageFilter(since=FIRST, until=LAST).keeps(Message("user", "x", text))


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**30), st.sampled_from(["s", "m", "h", "d", "w"]), st.booleans())
def test_durations_and_time_specs_never_overflow(amount: int, unit: str, ago: bool) -> None:
    spec = f"{amount}{unit}" + (" ago" if ago else "")
    try:
        moment = parse_time_spec(spec, "--since")
    except InvalidInput:
        pass  # before the first day of the calendar: refused, exit 2
    else:
        assert FIRST <= moment
    span = parse_duration(f"{amount}{unit}", "--max-age")
    assert FIRST <= back(datetime.now(UTC), span)


@pytest.mark.parametrize("text", OUTSIDE)
def test_input_outside_the_calendar_is_refused_naming_the_line(text: str, tmp_path: Path, cli: Cli) -> None:
    root = str(tmp_path / "journal")
    good = json.dumps({"role": "user", "content": "fine", "timestamp": "2024-01-15T10:30:00Z"})
    bad = json.dumps({"role": "user", "content": "x", "timestamp": text})
    result = cli("--root", root, "append", "alice", "--jsonl", input=f"{good}\n{bad}\n")
    assert result.exit_code == 2 and "stdin line 2: field 'timestamp'" in result.stderr, result.stderr
    assert cli("--root", root, "append", "alice", "hi", "--timestamp", text).exit_code == 2
    files = {
        "one.jsonl": f"{good}\n{bad}\n",
        "one.json": json.dumps({"userId": "alice", "messages": [json.loads(good), json.loads(bad)]}),
        "one.csv": f"role,content,timestamp\r\nuser,fine,2024-01-15T10:30:00Z\r\nuser,x,{text}\r\n",
        "one.openai": json.dumps({"messages": [{"role": "user", "content": "x", "timestamp": text}]}) + "\n",
    }
    names = {"one.jsonl": "one.jsonl line 2", "one.json": "messages[1]", "one.csv": "line 3", "one.openai": "line 1"}
    for name, data in files.items():
        path = tmp_path / name
        path.write_text(data)
        fmt = ["--format", "openai"] if name == "one.openai" else []
        result = cli("--root", root, "import", "bob", str(path), *fmt)
        if name == "one.openai":  # openai lines carry no timestamp: the key is metadata there, and the import takes it
            assert result.exit_code == 0, result.stderr
            continue
        assert result.exit_code == 2 and names[name] in result.stderr and "timestamp" in result.stderr, (name, result.stderr)
    db = tmp_path / "one.sqlite"
    exported = tmp_path / "ok.sqlite"
    assert cli("--root", root, "export", "alice", "--format", "sqlite", "-o", str(exported)).exit_code in (0, 3)
    if exported.exists():
        exported.rename(db)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE messages SET timestamp = ?", (text,))
        result = cli("--root", root, "import", "carol", str(db))
        assert result.exit_code == 2 and "messages row" in result.stderr and "timestamp" in result.stderr, result.stderr
    assert not (tmp_path / "journal" / "users" / "ca").exists()


def _server_items(stamps: list[str]) -> bytes:
    items = [f"- role: user\n  content: |\n    said at {stamp}\n  timestamp: {stamp}" for stamp in stamps]
    return "\n".join(items).encode()


COMMANDS = [
    ["stats"],
    ["stats", "--format", "json"],
    ["stats", "--by", "day"],
    ["stats", "--by", "week"],
    ["list"],
    ["list", "alice"],
    ["show", "alice"],
    ["show", "alice", "--local"],
    ["show", "alice", "--tail", "2"],
    ["show", "alice", "--since", "0001-01-01"],
    ["export", "--all", "--format", "jsonl"],
    ["export", "alice", "--format", "csv"],
    ["export", "alice", "--format", "json"],
    ["export", "alice", "--format", "markdown"],
    ["search", "said"],
    ["search", "said", "--since", "1d"],
    ["cleanup", "--max-age", "1d", "--dry-run"],
    ["cleanup", "--max-inactive", "1d", "--dry-run"],
    ["cleanup", "--max-age", "99999999999d", "--retention-days", "999999999999", "--dry-run"],
    ["archive", "--idle", "5m", "--all", "--dry-run"],
    ["verify"],
    ["repair", "--dry-run"],
]


def test_timestamps_outside_and_at_the_edges_of_the_calendar_in_files(tmp_path: Path, figures: Any) -> None:
    """A server (or a hand edit) wrote them: every command reads past them; verify names the unreadable ones."""
    root = tmp_path / "journal"
    folder = root / "users" / "al" / "ic" / "e" / "dialogs"
    folder.mkdir(parents=True)
    (folder / "current.yaml").write_bytes(_server_items(["2024-01-15T10:30:00.000Z", *OUTSIDE, *EDGES]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_JOURNAL_")}
    env["TZ"] = "America/Los_Angeles"  # west of UTC: the calendar's first hours are outside it in local time
    codes: dict[int, int] = {}
    for args in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "dialogctl", "--root", str(root), *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode not in (70,) and "Traceback" not in proc.stderr, (args, proc.stderr)
        codes[proc.returncode] = codes.get(proc.returncode, 0) + 1
        if args == ["verify"]:
            assert proc.returncode == 1 and "unreadable timestamp" in proc.stdout and f"{len(OUTSIDE)} message(s)" in proc.stdout, proc.stdout
        if args == ["stats", "--format", "json"]:
            stats = json.loads(proc.stdout)
            assert stats["totalMessages"] == 1 + len(OUTSIDE) + len(EDGES)
            assert (stats["oldestMessage"], stats["newestMessage"]) == ("0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z")
    follower = subprocess.Popen(
        [sys.executable, "-m", "dialogctl", "--root", str(root), "follow", "--since", "0001-01-01", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(3)
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=30)
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(out.splitlines()) == 1 + len(EDGES)  # since the first day: every message whose time the calendar has
    trim = subprocess.run(
        [sys.executable, "-m", "dialogctl", "--root", str(root), "cleanup", "--max-age", "1d", "--yes"], capture_output=True, text=True, env=env
    )
    assert trim.returncode == 0, trim.stderr
    kept = subprocess.run(
        [sys.executable, "-m", "dialogctl", "--root", str(root), "show", "alice", "--format", "jsonl"], capture_output=True, text=True, env=env
    )
    stamps = [json.loads(line)["timestamp"] for line in kept.stdout.splitlines()]
    assert stamps == OUTSIDE + [s for s in EDGES if s.startswith("9999")]  # unreadable times are never trimmed away
    figures.add(
        f"timestamps: {len(OUTSIDE)} outside the calendar in UTC and {len(EDGES)} at its edges in a server-written file, through "
        f"{len(COMMANDS) + 2} commands (stats, list, show, export, search, cleanup, idle archive, follow, verify, repair; TZ west of UTC): "
        f"exit codes {dict(sorted(codes.items()))}, 0 internal errors; verify names the {len(OUTSIDE)} unreadable; "
        "the same texts on input are refused, exit 2 naming the line, by append --jsonl, --timestamp and import json, jsonl, csv and sqlite"
    )


def test_the_sparkline_at_the_calendars_first_days() -> None:
    analytics = Analytics()
    analytics.days = {"0001-01-03": 2}
    assert analytics.recent_days() == [("0001-01-01", 0), ("0001-01-02", 0), ("0001-01-03", 2)]
    assert date.fromisoformat(analytics.recent_days()[0][0]) == date.min
