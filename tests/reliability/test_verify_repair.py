"""verify finds every kind of damage without changing anything; repair mends it and loses nothing.

The reference implementation's damaged journals are the real test: after
``repair`` every message ``.truth.json`` says was written is in the file, read
back by dialogctl and by the reference's own parser. The reference writer
writes content as a ``|`` block, which YAML reads with clip chomping: the
content's trailing newlines become exactly one (that is how the reference
reads its own files, and what its cleanup then kept). So content is compared
as ``repaired == truth.rstrip("\\n") + "\\n"``, and exactly otherwise; role,
timestamp and metadata are compared exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from dialogctl import Journal
from dialogctl.errors import UnsafePath
from dialogctl.fileformat.codec import encode_batch, encode_record
from dialogctl.maintenance.recovery import mend_reference_item, recover
from dialogctl.maintenance.repair import repair
from dialogctl.maintenance.verify import verify
from dialogctl.models import Message

from ..conftest import FIXTURES, TREES, Cli, copy_tree
from ..fileformat.test_codec import _parse_with

MESSAGES = [
    Message("user", "hello\n", "2024-01-15T10:30:00.000Z"),
    Message("assistant", "  indented\n---\n# x", "2024-01-15T10:30:01.000Z", {"model": "m", "tokens": 3}),
    Message("user", "plain", "2024-01-15T10:30:02.000Z"),
]
LAST = Message("assistant", "line one\nline two\n\n", "2024-01-15T10:30:03.000Z", {"model": "gpt-4", "tokens": {"total": 5}})


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under the root with its mode and (for files) bytes."""
    out: dict[str, tuple[int, bytes | None]] = {".": (os.lstat(root).st_mode, None)}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        out[str(path.relative_to(root))] = (st.st_mode, path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


def writable_copy(name: str, dest: Path) -> Path:
    """A fixture tree as a reference server leaves it: 0755 folders, 0644 files."""
    root = copy_tree(name, dest)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def clipped(content: str) -> str:
    """What a YAML ``|`` block (clip chomping) gives back for ``content``."""
    return content.rstrip("\n") + "\n"


def journal_at(root: Path, **settings: str) -> Journal:
    return Journal.open(str(root), **settings)


def user_messages(journal: Journal, user: str) -> list[dict[str, Any]]:
    out = []
    for conv in journal.conversations([user]):
        out.extend(m._asdict() for m in conv.messages)
    return out


@pytest.mark.parametrize("tree", ["v1-broken", "v1-after-cleanup"])
def test_repair_recovers_every_message_the_reference_wrote(tree: str, tmp_path: Path, cli: Cli, figures: Any) -> None:
    root = writable_copy(tree, tmp_path)
    before = snapshot(root)
    found = cli("--root", str(root), "verify", "--format", "json")
    assert found.exit_code == 1 and "repair" in found.stderr
    assert snapshot(root) == before  # verify wrote nothing, not even a lock file
    problems = {f["problem"] for f in json.loads(found.stdout)}
    assert problems >= ({"invalid YAML", "torn record"} if tree == "v1-broken" else {"glued separator"})
    assert all(f["line"] for f in json.loads(found.stdout) if f["check"] not in ("access", "shape"))

    plan = cli("--root", str(root), "repair", "--dry-run", "--format", "json")
    assert plan.exit_code == 0, plan.stderr
    assert snapshot(root) == before  # a dry run changes nothing
    done = cli("--root", str(root), "repair", "--format", "json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(plan.stdout)  # the plan is what was done
    assert cli("--root", str(root), "verify").exit_code == 0

    truth = json.loads((FIXTURES / f"{tree}.truth.json").read_text())
    journal = journal_at(root)
    recovered = 0
    for user, written in truth.items():
        wanted = [m for m in written if m.get("keptByCleanup", True) and not m.get("torn")]
        got = user_messages(journal, user)
        assert [m["content"] for m in got] == [clipped(m["content"]) for m in wanted], user
        assert [(m["role"], m["timestamp"], m["metadata"]) for m in got] == [(m["role"], m["timestamp"], m.get("metadata")) for m in wanted], user
        recovered += len(got)
    assert journal.damage == []

    # The originals are in quarantine, byte for byte, and the reference parser reads the repaired files.
    quarantine = next((root / "system" / "quarantine").iterdir())
    repaired = sorted(root.glob("users/**/current.yaml"))
    for path in repaired:
        rel = path.relative_to(root)
        assert (quarantine / rel).read_bytes() == before[str(rel)][1]
        # The copy follows the journal's modes, as the file it keeps did; the file keeps its own.
        assert stat.S_IMODE((quarantine / rel).stat().st_mode) == stat.S_IMODE(before[str(rel)][0]) == stat.S_IMODE(path.stat().st_mode) == 0o644
    for parser in ("bun", "node"):
        parsed = _parse_with(parser, repaired)
        assert sum(len(v) for v in parsed.values()) == recovered, parser
    figures.add(f"repair {tree}: {recovered} of {recovered} messages the reference wrote (truth.json) recovered, 0 lost")


@pytest.mark.parametrize("tree", [t for t in TREES if t not in ("v1-broken", "v1-after-cleanup")])
def test_intact_reference_trees_need_nothing_and_keep_their_modes(tree: str, tmp_path: Path) -> None:
    """The servers' 0644 files in 0755 folders are what they need: a note, never a problem, and repair changes no mode."""
    root = writable_copy(tree, tmp_path)
    before = snapshot(root)
    journal = journal_at(root)
    report = verify(journal)
    # The servers' 0644/0755 and their clients' clocks (v1-short-ids holds messages dated back): notes, never problems.
    assert report.problems == [] and {(f.problem, f.level) for f in report.findings} <= {("readable by others", "note"), ("timestamps out of order", "note")}
    mended = repair(journal)
    assert mended.actions == [] and mended.unmended == []
    assert snapshot(root) == before  # modes and bytes; with nothing to mend, not even a lock file or a log line
    for user in journal.users():
        journal.locked(user, "test", lambda _dialogs: None)
    after = snapshot(root)
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == before
    assert {stat.S_IMODE(v[0]) for k, v in after.items() if k.endswith(".lock")} == {0o644}  # the lock files follow their folders
    assert verify(journal).problems == []


def test_reference_defect_decoders() -> None:
    indented = b"- role: assistant\n  content: |\n        code first\n    then prose\n  timestamp: 2024-03-01T09:00:02.000Z\n"
    assert mend_reference_item(indented, "sequence") == Message("assistant", "    code first\nthen prose\n", "2024-03-01T09:00:02.000Z")
    quoted = b'- role: assistant\n  content: |\n    hello\n  timestamp: 2024-03-02T09:00:01.000Z\n  metadata:\n    note: "a "b" \\\\c"\n    model: "x"\n'
    mended = mend_reference_item(quoted, "sequence")
    assert mended is not None and mended.metadata == {"note": 'a "b" \\\\c', "model": "x"}
    assert mend_reference_item(b"- role: user\n  content: [unclosed\n", "sequence") is None
    assert mend_reference_item(b"\xff\xfe", "sequence") is None


@pytest.mark.parametrize("form", ["documents", "sequence"])
def test_torn_tail_at_every_byte_offset_is_found_and_mended(form: str, tmp_path: Path, figures: Any) -> None:
    """Cut the last record at every byte: verify reports one torn record; repair keeps every earlier message."""
    root = tmp_path / "journal"
    journal = journal_at(root, fileShape=form)
    journal.append("alice", MESSAGES)
    path = root / "users/al/ic/e/dialogs/current.yaml"
    head = encode_batch(MESSAGES, 1, form)  # type: ignore[arg-type]
    record = encode_record(LAST, len(MESSAGES) + 1, form)  # type: ignore[arg-type]
    cuts = 0
    for cut in range(1, len(record) - 1):
        path.write_bytes(head + record[:cut])
        findings = verify(journal, ["alice"]).findings
        assert [f.problem for f in findings] == ["torn record"], (cut, findings)
        assert findings[0].line == head.count(b"\n") + 1
        report = repair(journal, ["alice"])
        assert [a.action for a in report.actions] == ["rewrite"] and report.actions[0].dropped == 1
        assert journal.read(journal.resolve("alice")).messages == MESSAGES
        assert verify(journal, ["alice"]).findings == []
        assert journal.append("alice", [LAST]).messages == len(MESSAGES) + 1  # appends count on from the mended file
        cuts += 1
    quarantined = list((root / "system" / "quarantine").rglob("current.yaml"))
    assert len(quarantined) == cuts
    figures.add(f"torn tail ({form}): cut at every one of {cuts} byte offsets of the last record: {cuts} found by verify, {cuts} mended, 0 messages lost")


def test_recover_never_reads_less_than_the_reader(tmp_path: Path) -> None:
    from dialogctl.fileformat.reader import parse_conversation

    for tree in TREES:
        for path in (FIXTURES / tree).rglob("*.yaml"):
            data = path.read_bytes()
            read = parse_conversation(data, "x").messages
            saved = recover(data, "x").messages
            assert all(m in saved for m in read), path


def test_leftovers_and_unfinished_archive_moves(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", MESSAGES[:1])
    journal.archive("alice", archive_id="a1")
    journal.append("alice", MESSAGES[1:2])
    journal.append("bob", MESSAGES[:2])
    journal.archive("bob", archive_id="b1")
    alice = root / "users/al/ic/e/dialogs"
    bob = root / "users/bo/b/bob/dialogs"
    (alice / ".current.yaml.tmp-999-abcd").write_bytes(b"half a rewrite")
    (bob / "current.yaml").unlink()  # an archive that stopped before creating the empty conversation
    os.link(alice / "archived" / "a1.yaml", tmp_path / "elsewhere")  # a second name outside the journal
    findings = {(f.user, f.problem) for f in verify(journal).findings}
    assert findings == {("alice", "leftover temp file"), ("bob", "unfinished archive"), ("alice", "hard link")}

    result = cli("--root", str(root), "repair")
    assert result.exit_code == 1  # the hard link needs a person
    assert "hard link" in result.stderr and "a person must look" in result.stderr
    assert not (alice / ".current.yaml.tmp-999-abcd").exists()
    assert next((root / "system" / "quarantine").rglob(".current.yaml.tmp-999-abcd")).read_bytes() == b"half a rewrite"
    assert (bob / "current.yaml").read_bytes() == b""
    (tmp_path / "elsewhere").unlink()
    assert cli("--root", str(root), "verify").exit_code == 0


def test_half_finished_move_shows_twice_until_repaired(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", MESSAGES)
    dialogs = root / "users/al/ic/e/dialogs"
    (dialogs / "archived").mkdir(mode=0o700)
    os.link(dialogs / "current.yaml", dialogs / "archived" / "a1.yaml")  # a link-then-unlink move, stopped half-way
    assert [f.problem for f in verify(journal).findings] == ["half-finished archive move"]
    repair(journal)
    assert user_messages(journal, "alice") == [m._asdict() for m in MESSAGES]  # once, in the archive
    assert (dialogs / "current.yaml").read_bytes() == b""
    assert verify(journal).findings == []


def test_records_removed_by_hand_break_the_numbering(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", MESSAGES)
    path = root / "users/al/ic/e/dialogs/current.yaml"
    assert path.read_bytes() == b"\n" + encode_batch(MESSAGES, 1, "sequence")  # every write of ours starts on a fresh line
    path.write_bytes(encode_record(MESSAGES[0], 1, "sequence") + encode_record(MESSAGES[2], 3, "sequence"))  # the second removed
    assert [f.problem for f in verify(journal).findings] == ["frame numbering"]
    repair(journal)
    assert verify(journal).findings == []
    assert journal.append("alice", [LAST]).messages == 3


def test_what_repair_leaves_to_a_person(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", [Message("robot", "x", "2024-01-15T10:30:00.000Z"), Message("user", "y", "2024-01-14T00:00:00.000Z"), Message("user", "z", "soon")])
    before = snapshot(root)
    result = cli("--root", str(root), "verify", "--format", "json")
    assert result.exit_code == 1
    assert sorted(f["problem"] for f in json.loads(result.stdout)) == ["timestamps out of order", "unknown role", "unreadable timestamp"]
    assert all(f["repair"] is None for f in json.loads(result.stdout))
    result = cli("--root", str(root), "repair")
    assert result.exit_code == 1 and result.stderr.count("a person must look") == 2  # timestamps out of order is a note
    after = snapshot(root)
    assert after == before  # nothing to mend, nothing changed (the lock file was there already)


def test_permissions_and_owners(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", MESSAGES)
    current = root / "users/al/ic/e/dialogs/current.yaml"
    current.chmod(0o666)
    (root / "users/al").chmod(0o755)
    findings = {(f.path, f.problem, f.level) for f in verify(journal).findings}
    assert findings == {("users/al/ic/e/dialogs/current.yaml", "writable by others", "problem"), ("users/al", "readable by others", "note")}
    if os.geteuid() == 0:
        os.chown(current, 12345, 12345)
        assert ("users/al/ic/e/dialogs/current.yaml", "foreign owner") in {(f.path, f.problem) for f in verify(journal).findings}
    report = repair(journal)
    # Modes are the operator's: repair changes none, and says who must look; an owner it gives back (as root).
    assert [(f.path, f.problem) for f in report.unmended] == [("users/al/ic/e/dialogs/current.yaml", "writable by others")]
    assert stat.S_IMODE(current.stat().st_mode) == 0o666 and stat.S_IMODE((root / "users/al").stat().st_mode) == 0o755
    assert current.stat().st_uid == os.geteuid()
    current.chmod(0o644)
    assert verify(journal).problems == []


def test_verify_and_repair_one_user_and_errors(tmp_path: Path, cli: Cli) -> None:
    root = writable_copy("v1-broken", tmp_path)
    one = cli("--root", str(root), "verify", "carol-3", "--format", "json")
    assert one.exit_code == 1 and {f["user"] for f in json.loads(one.stdout)} == {"carol-3"}
    assert cli("--root", str(root), "repair", "carol-3").exit_code == 0
    assert cli("--root", str(root), "verify", "carol-3").exit_code == 0
    assert cli("--root", str(root), "verify", "carol-1").exit_code == 1
    assert cli("--root", str(root), "verify", "nobody").exit_code == 3
    assert cli("--root", str(root), "repair", "nobody").exit_code == 3
    assert cli("--root", str(root), "verify", "../x").exit_code == 2
    assert cli("--root", str(tmp_path / "missing"), "verify").exit_code == 3
    for command in ("verify", "repair", "doctor"):
        assert "Example" in cli(command, "--help").stdout


def test_damaged_file_that_cannot_be_rewritten_is_left_alone(tmp_path: Path) -> None:
    """A quarantine that cannot be written stops the repair of that file before anything changes."""
    root = writable_copy("v1-broken", tmp_path)
    (root / "system").mkdir()
    (root / "system" / "quarantine").symlink_to(tmp_path)  # planted: repair must not follow it
    before = snapshot(root / "users")
    outside = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UnsafePath, match="symlink"):
        repair(journal_at(root))
    after = snapshot(root / "users")
    assert {k: v[1] for k, v in after.items() if not k.endswith(".lock")} == {k: v[1] for k, v in before.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == outside  # nothing written through the link
    shutil.rmtree(root / "system")


def test_catalog_out_of_step_with_the_files(tmp_path: Path, cli: Cli) -> None:
    from dialogctl.journal import catalog

    root = tmp_path / "journal"
    journal = journal_at(root)
    journal.append("alice", MESSAGES[:2])
    journal.append("bob", MESSAGES[:3])
    assert cli("--root", str(root), "stats", "--format", "json").exit_code == 0
    assert (root / "system" / "catalog.bin").exists()
    assert verify(journal).findings == []

    # An entry that still matches its file's identity but says something else.
    entries = catalog.load(str(root))
    rel = next(k for k in entries if "alice" in k or "al/ic" in k)
    entries[rel][catalog.E_FULL][0] += 7  # the message count
    assert catalog.save(journal, entries)
    findings = verify(journal).findings
    assert [(f.path, f.problem, f.check) for f in findings] == [(rel, "catalog out of step", "catalog")]
    assert cli("--root", str(root), "verify").exit_code == 1

    plan = cli("--root", str(root), "repair", "--dry-run")
    assert plan.exit_code == 0 and "discard catalog" in plan.stdout
    assert (root / "system" / "catalog.bin").exists()
    assert cli("--root", str(root), "repair").exit_code == 0
    assert not (root / "system" / "catalog.bin").exists()
    assert cli("--root", str(root), "verify").exit_code == 0
    stats = json.loads(cli("--root", str(root), "stats", "--format", "json").stdout)
    assert stats["totalMessages"] == 5

    # A torn catalog is reported too, and is never read as entries.
    data = (root / "system" / "catalog.bin").read_bytes()
    (root / "system" / "catalog.bin").write_bytes(data[: len(data) - 3])
    assert [f.detail for f in verify(journal).findings] == ["torn or foreign catalog; it will be rebuilt"]
    assert catalog.load(str(root)) == {}
