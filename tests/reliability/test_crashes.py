"""Crashes: a process killed at any point leaves the journal reading its old or its new state.

Two ways to kill: at every step of a command (each file-changing call, see
:mod:`tests.reliability.faults`: before it, after it, and half-way through a
write), and at random moments of a process appending as fast as it can. After
every kill, every acknowledged message is there exactly once, at most one torn
record exists, verify reports what the crash left and repair mends it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.journal.groupcommit import GROUP_USERS
from dialogctl.maintenance.repair import repair
from dialogctl.maintenance.verify import verify
from dialogctl.models import Message
from dialogctl.times import utc_now_iso

from . import faults
from .conftest import count
from .faults import Rule

# What a crash may leave behind, all of which repair mends.
CRASH_LEFTOVERS = {"torn record", "leftover temp file", "leftover backup name", "unfinished archive"}
TS = "2024-01-02T00:00:00.000Z"


def journal_at(root: Path, **settings: str) -> Journal:
    return Journal.open(str(root), **settings)


def reading(root: Path) -> dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
    """What the journal reads, per user: the current conversation's contents and the archives' (by content, not name)."""
    journal = journal_at(root)
    state: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {}
    for user in journal.users():
        current: tuple[str, ...] = ()
        archives = []
        for conv in journal.conversations([user]):
            contents = tuple(m.content for m in conv.messages)
            if conv.ref.archived:
                archives.append(contents)
            else:
                current += contents
        state[user] = (current, tuple(sorted(archives)))
    return state


def _template(root: Path) -> None:
    journal = journal_at(root, archiveThreshold="0")
    journal.append("alice", [Message("user", "archived long ago", "2020-01-01T00:00:00.000Z")])
    journal.archive("alice", archive_id="a1")
    journal.append("alice", [Message("user", f"alice {i}", TS) for i in range(4)])
    journal.append("bob", [Message("user", "bob old", "2020-01-01T00:00:00.000Z"), Message("user", "bob new", TS)])
    journal.append("user", [Message("user", "idle since 2020", "2020-01-01T00:00:00.000Z")])  # users/us/er
    journal.append("user-1000", [Message("user", "active", utc_now_iso())])  # users/us/er/-1000, inside the folder of "user"


STEP_SCENARIOS = {
    "append": ["--set", "archiveThreshold=5", "append", "alice", "fifth", "--timestamp", TS],
    "archive": ["archive", "alice", "--id", "a2"],
    "restore": ["restore", "alice", "a1"],
    "cleanup": ["cleanup", "--max-age", "365d", "--max-inactive", "400d", "--yes"],
    # Three conversations trimmed by rewrite (temp file, backup link, rename) and an archive left empty.
    "trim": ["cleanup", "--max-age", "30d", "--yes"],
}


# The append archives after its write: a kill in between leaves the message appended and the
# archive not yet made, which the next append makes first (the state of an append without one).
ALSO_VALID = {"append": ["--set", "archiveThreshold=0", "append", "alice", "fifth", "--timestamp", TS]}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash-template") / "journal"
    _template(root)
    return root


def _fresh(template: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest, symlinks=True)
    return dest


def _per_file_old_or_new(state: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> bool:
    """For a command made of several committed steps: each user reads as before or as after."""
    return all(state.get(user) in (old.get(user), new.get(user)) for user in set(old) | set(new) | set(state))


def _per_conversation_old_or_new(state: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> bool:
    """For a run of trims and archive removals: each current conversation reads as before or after, each archive is there or gone."""
    for user in set(old) | set(new) | set(state):
        (current, archives), (old_current, old_archives), (new_current, new_archives) = state[user], old[user], new[user]
        if current not in (old_current, new_current) or not set(new_archives) <= set(archives) <= set(old_archives):
            return False
    return True


@pytest.mark.parametrize("scenario", list(STEP_SCENARIOS))
def test_kill_at_every_step(scenario: str, template: Path, tmp_path: Path, figures: Any) -> None:
    args = STEP_SCENARIOS[scenario]
    root = _fresh(template, tmp_path / "journal")
    old = reading(root)
    clean = faults.run(["--root", str(root), *args], tmp=tmp_path)
    assert clean.returncode == 0, clean.stderr
    new = reading(root)
    assert new != old
    if scenario == "cleanup":
        # "user" was idle; "user-1000", whose folder lives inside the folder of "user", was not.
        assert "user" not in new and new["user-1000"] == old["user-1000"]
    between = None
    if scenario in ALSO_VALID:
        root = _fresh(template, tmp_path / "journal")
        assert faults.run(["--root", str(root), *ALSO_VALID[scenario]]).returncode == 0
        between = reading(root)
    steps = [line.split() for line in clean.steps]
    runs = [Rule("step", int(step[0]), "kill") for step in steps] + [Rule("step", int(step[0]), "kill-after") for step in steps]
    runs += [Rule("step", int(step[0]), "torn") for step in steps if step[1] in ("write", "pwrite")]
    rng = random.Random(f"{scenario}-{len(steps)}")
    while len(runs) < 20:
        runs.append(Rule("step", rng.randint(1, len(steps)), rng.choice(["kill", "kill-after"])))
    outcomes: Counter[str] = Counter()
    leftovers: Counter[str] = Counter()
    for rule in runs:
        root = _fresh(template, tmp_path / "journal")
        run = faults.run(["--root", str(root), *args], [rule], tmp=tmp_path)
        assert run.returncode == -signal.SIGKILL, (rule, run.returncode, run.stderr)
        state = reading(root)
        if state == old:
            outcomes["old"] += 1
        elif state == new:
            outcomes["new"] += 1
        elif state == between:
            outcomes["appended, archive left to the next append"] += 1
        elif scenario == "cleanup" and _per_file_old_or_new(state, old, new):
            outcomes["each user old or new"] += 1
        elif scenario == "trim" and _per_conversation_old_or_new(state, old, new):
            outcomes["each conversation old or new"] += 1
        else:
            pytest.fail(f"{scenario} killed at {rule}: the journal reads neither its old nor its new state\n{state}\nold {old}\nnew {new}")
        journal = journal_at(root)
        findings = verify(journal).findings
        assert {f.problem for f in findings} <= CRASH_LEFTOVERS, (rule, findings)
        assert sum(f.problem == "torn record" for f in findings) <= 1, (rule, findings)
        leftovers.update(f.problem for f in findings)
        if findings:
            report = repair(journal)
            assert report.unmended == [], (rule, report.unmended)
            assert verify(journal).findings == [], rule
            assert reading(root) == state, rule  # mending changes nothing the journal reads
    figures.add(
        f"crash, {scenario}: killed at {len(runs)} points ({len(steps)} steps: before, after, half-way through writes): "
        + ", ".join(f"{n} read {what}" for what, n in outcomes.items())
        + f"; leftovers {dict(leftovers) or 'none'}, all mended by repair; 0 messages lost"
    )


# A group commit (append --jsonl): four users' batches written, then made durable together.
# archiveThreshold 5: alice's batch (she holds 4) is split, 1 message then an archive then 2
# (the write before the archive is fsynced first); bob's (he holds 2) fills his conversation,
# which is archived after it; carol and dave are new users (their folders are made).
GROUP_BATCHES = {
    "alice": ["a-1", "a-2", "a-3"],
    "bob": ["b-1", "b-2", "b-3"],
    "carol": ["c-1", "c-2"],
    "dave": ["d-1"],
}
GROUP_INPUT = "".join(
    json.dumps({"user": user, "role": "user", "content": text, "timestamp": TS}) + "\n"
    for i in range(3)
    for user, texts in GROUP_BATCHES.items()
    if i < len(texts)
    for text in texts[i : i + 1]
).encode()
# How much of a batch a crash may leave: none or all of it, or for a batch split by an
# archive its parts in order (here: alice's first message alone).
GROUP_ALLOWED = {user: {0, len(texts)} for user, texts in GROUP_BATCHES.items()} | {"alice": {0, 1, 3}}


def _batch_present(state: dict[str, Any], old: dict[str, Any], user: str) -> int | None:
    """How many of the user's batch messages the journal reads, in order, with all the old ones kept once; None when anything else."""
    current, archives = state.get(user, ((), ()))
    everything = [m for archive in archives for m in archive] + list(current)
    old_current, old_archives = old.get(user, ((), ()))
    before = [m for archive in old_archives for m in archive] + list(old_current)
    batch = GROUP_BATCHES[user]
    kept = [m for m in everything if m not in batch]
    got = [m for m in everything if m in batch]
    if sorted(kept) != sorted(before) or got != batch[: len(got)]:
        return None
    return len(got)


@pytest.mark.parametrize("group_users", [None, 2])
def test_kill_a_group_commit_at_every_step(group_users: int | None, template: Path, tmp_path: Path, figures: Any) -> None:
    """append --jsonl of four users killed before, after and half-way through every step of its group commit.

    Every user's files read, each batch is all there or not at all (a split batch: its parts
    in order), the old messages stay, and every batch reported as committed before the kill is there.
    With groups of two users (alice and bob, then carol and dave), the first group's records
    are printed (unbuffered) before the second group is written: kills there must find them.
    """
    args = ["--set", "archiveThreshold=5", "append", "--jsonl", "--format", "jsonl"]
    patches = {} if group_users is None else {"dialogctl.journal.groupcommit.GROUP_USERS": group_users}
    env = {"PYTHONUNBUFFERED": "1"}  # a record printed is in the pipe at once, as a terminal or a line-reading consumer would get it
    root = _fresh(template, tmp_path / "journal")
    old = reading(root)
    clean = faults.run(["--root", str(root), *args], tmp=tmp_path, input=GROUP_INPUT, patches=patches, env=env)
    assert clean.returncode == 0, clean.stderr
    new = reading(root)
    assert all(_batch_present(new, old, user) == len(texts) for user, texts in GROUP_BATCHES.items())
    steps = [line.split() for line in clean.steps]
    assert sum(step[1] == "fsync" for step in steps) > 4  # the flush's fsyncs are steps too
    runs = [Rule("step", int(step[0]), "kill") for step in steps] + [Rule("step", int(step[0]), "kill-after") for step in steps]
    runs += [Rule("step", int(step[0]), "torn") for step in steps if step[1] in ("write", "pwrite")]
    seen: Counter[str] = Counter()
    acknowledged = 0
    leftovers: Counter[str] = Counter()
    for rule in runs:
        root = _fresh(template, tmp_path / "journal")
        run = faults.run(["--root", str(root), *args], [rule], tmp=tmp_path, input=GROUP_INPUT, patches=patches, env=env)
        state = reading(root)
        if run.returncode == 0:  # the rule's step was not reached (the flush's fsyncs run in threads, in any order)
            assert state == new, rule
            continue
        assert run.returncode == -signal.SIGKILL, (rule, run.returncode, run.stderr)
        for user in GROUP_BATCHES:
            present = _batch_present(state, old, user)
            assert present in GROUP_ALLOWED[user], (rule, user, present, state.get(user))
            seen[f"{user} {present}/{len(GROUP_BATCHES[user])}"] += 1
        for record in map(json.loads, run.stdout.splitlines()):
            assert record["outcome"] == "committed", (rule, record)
            assert _batch_present(state, old, record["user"]) == len(GROUP_BATCHES[record["user"]]), (rule, record, state)
            acknowledged += 1
        journal = journal_at(root)
        findings = verify(journal).findings
        assert {f.problem for f in findings} <= CRASH_LEFTOVERS | {"torn batch"}, (rule, findings)  # a batch cut by the kill
        leftovers.update(f.problem for f in findings)
        if findings:
            report = repair(journal)
            assert report.unmended == [], (rule, report.unmended)
            assert verify(journal).findings == [], rule
            assert reading(root) == state, rule
    assert seen["alice 1/3"] and seen["carol 0/2"] and seen["carol 2/2"]  # the kills fell before, inside and after the group
    if group_users == 2:
        assert acknowledged > 0  # kills in the second group found the first group's records printed
    figures.add(
        f"crash, group commit (append --jsonl, 4 users in groups of {group_users or GROUP_USERS}, one batch split by an archive): "
        f"killed at {len(runs)} points ({len(steps)} steps); "
        f"per user and batch: {dict(sorted(seen.items()))}; {acknowledged} records printed before a kill, each batch there; "
        f"leftovers {dict(leftovers) or 'none'}, all mended by repair; 0 batches half there"
    )


def _appender(root: str, tag: str, ack: int) -> None:
    """Child: append one message at a time, acknowledging each once append() returned."""
    journal = Journal.open(root, archiveThreshold="7", lockTimeoutMs="10000", command="appender")
    number = 0
    while True:
        content = f"{tag}-{number}"
        journal.append("shared", [Message("user", content, TS)])
        os.write(ack, (content + "\n").encode())
        number += 1


class _Reader:
    """What the journal holds for one user, re-reading only the files that changed since the last look.

    Archives never change once written, so checking after every kill stays
    linear in the number of kills instead of re-reading every archive each time.
    """

    def __init__(self, root: Path, user: str) -> None:
        self.root, self.user = root, user
        self.files: dict[str, tuple[tuple[int, float], list[str], int]] = {}

    def look(self) -> tuple[Counter[str], int]:
        """Every message content (counted) and the number of torn records."""
        journal = journal_at(self.root)
        seen: dict[str, tuple[tuple[int, float], list[str], int]] = {}
        for f in journal.conversation_files(self.user):
            known = self.files.get(f.rel_path)
            if known is None or known[0] != (f.size, f.mtime) or not f.ref.archived:
                conv = journal.read(f.ref, missing_ok=True)
                known = ((f.size, f.mtime), [m.content for m in conv.messages], sum(d.kind == "torn record" for d in conv.damage))
            seen[f.rel_path] = known
        self.files = seen
        contents: Counter[str] = Counter()
        for _, messages, _ in seen.values():
            contents.update(messages)
        return contents, sum(torn for _, _, torn in seen.values())


def test_sigkill_an_appender_at_random_points(tmp_path: Path, figures: Any) -> None:
    kills = count("CRASH_KILLS", 200)
    rng = random.Random(int(os.environ.get("DIALOGCTL_CRASH_SEED", "6")))
    root = tmp_path / "journal"
    journal_at(root).append("shared", [Message("user", "first", TS)])
    reader = _Reader(root, "shared")
    acknowledged: set[str] = {"first"}
    leftovers: Counter[str] = Counter()
    in_flight = 0
    for kill in range(kills):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_end)
            try:
                _appender(str(root), f"k{kill}", write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as pipe:
            acknowledged.update(pipe.read().decode().split())
        seen, torn = reader.look()
        missing = [c for c in acknowledged if seen[c] != 1]
        assert not missing, (kill, missing[:5])
        extra = [c for c in seen if c not in acknowledged]
        assert len(extra) <= 1 and all(seen[c] == 1 for c in extra), (kill, extra)  # the append in flight, at most once
        in_flight += len(extra)
        acknowledged.update(extra)  # written, so it must stay
        assert torn <= 1, kill
        if torn or kill % 20 == 19 or kill == kills - 1:
            journal = journal_at(root)
            findings = verify(journal, ["shared"]).findings
            assert {f.problem for f in findings} <= CRASH_LEFTOVERS, (kill, findings)
            if findings:
                leftovers.update(f.problem for f in findings)
                assert repair(journal, ["shared"]).unmended == []
    archives = sum(1 for f in journal_at(root).conversation_files("shared") if f.ref.archived)
    figures.add(
        f"crash, appender: SIGKILL at {kills} random points; {len(acknowledged)} messages written ({in_flight} of them by the append in flight),"
        f" {archives} automatic archives; 0 acknowledged messages lost or doubled; leftovers {dict(leftovers) or 'none'}, mended by repair"
    )


def test_a_torn_append_is_one_torn_tail_that_verify_finds_and_repair_mends(tmp_path: Path, cli: Any) -> None:
    """The process dies half-way through its one write: the next append goes on after the torn bytes."""
    root = tmp_path / "journal"
    journal_at(root).append("alice", [Message("user", "before", TS)])
    run = faults.run(["--root", str(root), "append", "alice", "torn apart", "--timestamp", TS], [Rule("write", 1, "torn")])
    assert run.returncode == -signal.SIGKILL
    assert faults.run(["--root", str(root), "append", "alice", "after", "--timestamp", TS]).returncode == 0
    found = cli("--root", str(root), "verify", "--format", "json")
    assert found.exit_code == 1 and [f["problem"] for f in json.loads(found.stdout)] == ["torn record"]
    assert cli("--root", str(root), "repair").exit_code == 0
    assert [m["content"] for m in cli.jsonl("--root", str(root), "show", "alice", "--format", "jsonl")] == ["before", "after"]
    assert cli("--root", str(root), "verify").exit_code == 0
