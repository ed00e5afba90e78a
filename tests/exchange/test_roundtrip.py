"""Export -> import -> export is identical for every format that carries full data, on hostile generated data.

Each example writes a conversation (current, or an archive) into a fresh
journal, exports it, imports the export into a second fresh journal under the
same user and place, exports that, and compares: the two exports byte for
byte (SQLite databases by their SQL dump first, for a readable failure), and the messages read back from
the second journal with the originals. ``DIALOGCTL_ROUNDTRIP_EXAMPLES`` sets
the number of examples per format (default 40).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogctl import Journal
from dialogctl.models import ConversationRef, Message

from ..conftest import Cli
from ..samples import hostile_messages, journal_with
from ..strategies import contents, metadata, roles

EXAMPLES = int(os.environ.get("DIALOGCTL_ROUNDTRIP_EXAMPLES", "40"))

# Import accepts ISO 8601 timestamps only (as append does), so years are written with four digits.
iso_timestamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1)).map(lambda d: f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"),
    st.sampled_from(["2024-01-15T10:30:00Z", "2024-01-15T10:30:00.000+02:00", "2024-01-15", "2024-01-15 10:30:00"]),
)
messages = st.builds(Message, roles, contents(), iso_timestamps, metadata)
conversations = st.lists(messages, min_size=1, max_size=8) | st.just(hostile_messages())

# (export format, extra export options, extra import options)
FORMATS = {
    "json": ("json", [], []),
    "jsonl": ("jsonl", [], []),
    "csv": ("csv", [], []),
    "csv-raw": ("csv", ["--raw-csv"], ["--raw-csv"]),
    "sqlite": ("sqlite", [], []),
}


def _export(cli: Cli, root: Path, selector: list[str], fmt: str, options: list[str], target: Path) -> bytes:
    result = cli("--root", str(root), "export", *selector, "--format", fmt, *options, "-o", str(target), env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert result.exit_code == 0, result.stderr
    return target.read_bytes()


def _dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


@pytest.mark.parametrize("variant", list(FORMATS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(original=conversations, archived=st.booleans())
def test_export_import_export_is_identical(cli: Cli, variant: str, original: list[Message], archived: bool) -> None:
    fmt, export_options, import_options = FORMATS[variant]
    selector = ["alice", "--archive", "kept"] if archived else ["alice"]
    place = ["--as-archive", "kept"] if archived else []
    with tempfile.TemporaryDirectory() as work:
        first, second = Path(work, "first"), Path(work, "second")
        journal_with(first, {("alice", "kept" if archived else None): original})
        exported = _export(cli, first, selector, fmt, export_options, Path(work, f"first.{fmt}"))
        imported = cli("--root", str(second), "import", "alice", str(Path(work, f"first.{fmt}")), *import_options, *place)
        assert imported.exit_code == 0, imported.stderr
        again = _export(cli, second, selector, fmt, export_options, Path(work, f"second.{fmt}"))
        if fmt == "sqlite":
            assert _dump(Path(work, "second.sqlite")) == _dump(Path(work, "first.sqlite"))
        assert again == exported
        ref = ConversationRef("alice", "archive", "kept") if archived else ConversationRef("alice", "current")
        assert Journal.open(str(second)).read(ref).messages == original
