"""The JSONL export writer: fast, and byte for byte what json.dumps of each record gives."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl import parallel
from dialogctl.config import load_settings
from dialogctl.exporters import message_record, write_jsonl, write_jsonl_journal
from dialogctl.journal import Conversation, Journal
from dialogctl.models import ConversationRef, Message

from .conftest import copy_tree
from .strategies import messages as any_message


def test_jsonl_export_lines_are_json_dumps_of_the_records() -> None:
    """The export's hand-assembled lines are exactly json.dumps of each record."""

    @settings(max_examples=100, deadline=None)
    @given(st.lists(any_message(), max_size=4), st.sampled_from([ConversationRef("u-1", "current"), ConversationRef("é", "archive", "a b")]))
    def check(msgs: list[Message], ref: ConversationRef) -> None:
        conv = Conversation(ref, "x", msgs, [])
        out = io.StringIO()
        assert write_jsonl(out, [conv]) == len(msgs)
        expected = "".join(json.dumps(message_record(conv, i, m), ensure_ascii=False) + "\n" for i, m in enumerate(msgs))
        assert out.getvalue() == expected

    check()


def test_parallel_export_equals_the_serial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes give the same lines in the same order, and the same damage, as one process."""
    root = copy_tree("v1-broken", tmp_path)
    journal = Journal(load_settings({"root": str(root), "archiveThreshold": "4"}))
    for i in range(12):
        journal.append(f"user-{i}", [Message("user", f"m{j}\n", "2024-01-15T10:30:00.000Z", {"n": j}) for j in range(i + 1)])
    serial = io.StringIO()
    count = write_jsonl(serial, journal.conversations(None))
    serial_damage = list(journal.damage)
    journal.damage.clear()
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "BATCH_BYTES", 300)  # many small batches in flight
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    fanned = io.StringIO()
    assert write_jsonl_journal(fanned, journal) == count > 0
    assert fanned.getvalue() == serial.getvalue()
    assert journal.damage == serial_damage and serial_damage
