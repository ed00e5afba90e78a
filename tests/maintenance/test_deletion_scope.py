"""Deletion stays inside its user, in every layout (issue 13).

A user's files are, by the layout alone: ``users/<user path>/dialogs/`` and
everything below it, ``users/<user path>/metadata.yaml`` (with the temp files
its rewrite leaves), and the same paths under each ``system/quarantine/<run>/``.
A user's folder can hold another user's folder (``ab`` holds ``abab`` in 2x2,
``x`` holds ``xx`` in 3x1) or sit beside it under one shard folder; ids here
are prefixes of each other so that every layout has both. ``rm --all-data``
and cleanup's removal of an inactive user must delete exactly that set: a
byte snapshot of everything else is unchanged.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from dialogctl import Journal
from dialogctl.models import Message

from ..conftest import Cli

IDS = ["ab", "abab", "user", "user-1000", "bob", "bobby", "x", "xx", "xxx", "xxxx"]
LAYOUTS = {
    "flat": {"layout": "flat"},
    "sharded 2x2": {"layout": "sharded", "shardLevels": "2", "shardSize": "2"},
    "sharded 1x3": {"layout": "sharded", "shardLevels": "1", "shardSize": "3"},
    "sharded 3x1": {"layout": "sharded", "shardLevels": "3", "shardSize": "1"},
}
# Written by the command itself, or derived and rebuilt: not anyone's files.
COMMAND_FILES = ("system/audit.log", "system/cleanup.log", "system/catalog.bin", "system/catalog.lock", "system/catalog.log", "system/stats.yaml")


def _build(root: Path, layout: dict[str, str], inactive: str | None = None) -> Journal:
    """Every id with an archive, a current conversation, a quarantined copy (a real repair) and a metadata temp file."""
    journal = Journal.open(str(root), archiveThreshold="0", **layout)
    for user in IDS:
        year = "2020" if user == inactive else "2099"
        journal.append(user, [Message("user", f"first of {user}", f"{year}-01-01T00:00:00.000Z")])
        journal.archive(user, archive_id="a1")
        journal.append(user, [Message("user", f"second of {user}", f"{year}-01-02T00:00:00.000Z")])
        folder = root.joinpath("users", *journal.layout().user_parts(user))
        (folder / "dialogs/current.yaml").open("ab").write(b"\n---\nrole: user\ncontent: |2\n  torn")
        (folder / ".metadata.yaml.tmp-leftover").write_text("a metadata rewrite cut short")
    from dialogctl.maintenance.repair import repair

    report = repair(Journal.open(str(root)))
    assert report.quarantine is not None and not report.unmended, report.unmended
    for user in IDS:  # a second leftover, after repair quarantined the first
        folder = root.joinpath("users", *journal.layout().user_parts(user))
        (folder / ".metadata.yaml.tmp-later").write_text("another one")
    return journal


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        if rel not in COMMAND_FILES:
            out[rel] = (st.st_mode, path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


def _own(journal: Journal, rel: str, user: str) -> bool:
    """Whether ``rel`` is one of ``user``'s files by the layout's rule."""
    base = "/".join(("users", *journal.layout().user_parts(user)))
    parts = rel.split("/")
    if parts[:2] == ["system", "quarantine"] and len(parts) > 3:
        rel = "/".join(parts[3:])
    if not rel.startswith(base + "/"):
        return False
    below = rel[len(base) + 1 :]
    return below.startswith("dialogs/") or below == "metadata.yaml" or below.startswith(".metadata.yaml.tmp-")


def _check_only_own_files_went(journal: Journal, before: dict[str, tuple[int, bytes | None]], root: Path, user: str) -> set[str]:
    after = _snapshot(root)
    own = {rel for rel, (mode, _) in before.items() if stat.S_ISREG(mode) and _own(journal, rel, user)}
    assert own, "the user had files"
    assert not own & set(after), sorted(own & set(after))  # every file of the user is gone
    for rel, entry in before.items():
        if rel in own or not stat.S_ISREG(entry[0]):
            continue
        assert after.get(rel) == entry, f"{rel} of someone else changed or went"
    for rel, entry in before.items():  # folders holding anyone else's files stay, with their modes
        if stat.S_ISDIR(entry[0]) and any(o.startswith(rel + "/") for o in before if o not in own and stat.S_ISREG(before[o][0])):
            assert after.get(rel) == entry, rel
    others = sorted(u for u in IDS if u != user)
    assert sorted(Journal.open(str(root)).users()) == others
    return own


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("user", IDS)
def test_rm_all_data_takes_exactly_the_users_files(layout: str, user: str, tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _build(root, LAYOUTS[layout])
    before = _snapshot(root)
    planned = cli("--root", str(root), "rm", user, "--all-data", "--dry-run", "--format", "json")
    assert planned.exit_code == 0, planned.stderr
    result = cli("--root", str(root), "rm", user, "--all-data", "--yes")
    assert result.exit_code == 0, result.stderr
    own = _check_only_own_files_went(journal, before, root, user)
    data = sorted(rel for rel in own if not rel.endswith("/.lock"))  # the lock file goes too, but it is not data
    assert sorted(json.loads(planned.stdout)["files"]) == data
    intent, outcome = [json.loads(line) for line in (root / "system/audit.log").read_text().splitlines()[-2:]]  # before them: the repair's
    assert (intent["phase"], sorted(intent["paths"]), intent["files"]) == ("intent", data, len(data))
    assert (outcome["phase"], outcome["user"], outcome["files"]) == ("done", user, len(data))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("user", IDS)
def test_cleanup_of_an_inactive_user_takes_exactly_its_files(layout: str, user: str, tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _build(root, LAYOUTS[layout], inactive=user)
    before = _snapshot(root)
    result = cli("--root", str(root), "cleanup", "--max-inactive", "100d", "--retention-days", "0", "--keep-last", "0", "--yes", "--format", "json")
    assert result.exit_code == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["usersRemoved"] == 1 and [a["user"] for a in done["actions"]] == [user]
    _check_only_own_files_went(journal, before, root, user)
