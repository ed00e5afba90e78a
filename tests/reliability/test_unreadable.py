"""What dialogctl cannot read or write: it says which path and why, goes on where it can, and changes nothing when it fails.

Permission checks do not apply to root, so these tests give a journal to an
unprivileged owner and run dialogctl as that owner (:class:`OwnedTree`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ..conftest import FIXTURES, Cli
from .conftest import OwnedTree

# Every command, with arguments that need nothing more from the journal than to find it.
EVERY_COMMAND = [
    ["append", "x", "hi"],
    ["show", "x"],
    ["archive", "x"],
    ["restore", "x", "a"],
    ["list"],
    ["export", "--all"],
    ["import", "x", "in.jsonl"],
    ["stats"],
    ["locks"],
    ["cleanup", "--dry-run"],
    ["config"],
    ["search", "a"],
    ["follow"],
    ["rm", "x", "--all-data", "--dry-run"],
    ["verify"],
    ["repair", "--dry-run"],
    ["doctor"],
]


@pytest.mark.parametrize("how", ["flag", "env", "config file"])
def test_a_root_that_is_not_a_folder_is_one_clear_error_for_every_command(how: str, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_folder = tmp_path / "journal"
    not_a_folder.write_text("a file where the journal should be\n")
    (Path.cwd() / "in.jsonl").write_text(json.dumps({"role": "user", "content": "x"}) + "\n")
    before = not_a_folder.read_bytes()
    source = {"flag": "root from flag (--root)", "env": "root from env DIALOGUE_JOURNAL_ROOT", "config file": "root from poto.config.yaml"}[how]
    if how == "env":
        monkeypatch.setenv("DIALOGUE_JOURNAL_ROOT", str(not_a_folder))
    elif how == "config file":
        (Path.cwd() / "poto.config.yaml").write_text(f"dialogueJournal:\n  filesystem:\n    root: {not_a_folder}\n")
    for args in EVERY_COMMAND:
        full = (["--root", str(not_a_folder)] if how == "flag" else []) + args
        result = cli(*full)
        assert result.exit_code == 2, (args, result.exit_code, result.stderr)
        assert f"journal root {not_a_folder} is not a folder ({source}" in result.stderr, (args, result.stderr)
        assert result.stdout == "" or args == ["config"], (args, result.stdout)  # config still shows every setting and its source
    assert not_a_folder.read_bytes() == before
    below = cli("--root", str(not_a_folder / "journal"), "list")
    assert below.exit_code == 2 and "is below a file, not a folder" in below.stderr


def test_an_unreadable_root_is_an_io_error_naming_it_and_doctor_says_why(owned: OwnedTree) -> None:
    root = os.path.join(owned.base, "journal")
    shutil.copytree(FIXTURES / "v1-sharded", root)
    owned.give()
    os.chmod(root, 0)
    for args in (["list"], ["stats"], ["append", "x", "hi"], ["verify"], ["export", "--all"]):
        result = owned.run("--root", root, *args)
        assert result.returncode == 6, (args, result)
        assert f"cannot read journal root {root} (root from flag (--root)): Permission denied" in result.stderr, (args, result.stderr)
        assert result.stdout == ""
    env = owned.run("list", env={"DIALOGUE_JOURNAL_ROOT": root})
    assert env.returncode == 6 and "(root from env DIALOGUE_JOURNAL_ROOT)" in env.stderr
    doctor = owned.run("--root", root, "doctor", "--format", "json")
    assert doctor.returncode == 1, doctor
    advice = {a["check"]: a for a in json.loads(doctor.stdout)}
    assert advice["root"]["status"] == "warning" and "cannot be read by uid" in advice["root"]["detail"]


def _expected_messages(tree: str, without: str) -> dict[str, int]:
    """Messages per user the reference's own parser reads in a fixture tree, leaving out the files below ``without``."""
    expected = json.loads((FIXTURES / f"{tree}.expected.json").read_text())
    counts: dict[str, int] = {}
    for path, read in expected.items():
        if path.startswith(without):
            continue
        user = "user" + path.split("/")[3]  # users/us/er/-1004/... -> user-1004
        counts[user] = counts.get(user, 0) + len(read.get("messages", []))
    return counts


@pytest.mark.parametrize(
    "unreadable", ["users/us/er/-1004/dialogs/archived", "users/us/er/-1000/dialogs/current.yaml", "users/us/er/-1008/dialogs", "users/us/er/-1002"]
)
def test_whole_journal_commands_go_on_past_what_they_cannot_read(unreadable: str, owned: OwnedTree, figures: Any) -> None:
    root = os.path.join(owned.base, "journal")
    shutil.copytree(FIXTURES / "v1-sharded", root)
    owned.give()
    os.chmod(os.path.join(root, unreadable), 0)
    want = _expected_messages("v1-sharded", unreadable)
    # The commands that must meet it: archive --idle and locks look at active conversations and lock files only.
    meets = {"archive": not unreadable.endswith("archived"), "locks": not unreadable.endswith(("archived", ".yaml"))}
    outputs = {}
    for args in (
        ["list", "-f", "json"],
        ["stats", "-f", "json"],
        ["export", "--all", "-f", "jsonl"],
        ["search", "e", "-a", "-f", "jsonl"],
        ["verify", "-f", "json"],
        ["cleanup", "--dry-run", "--max-inactive", "1h", "-f", "json"],
        ["archive", "--idle", "1h", "--all", "--dry-run"],
        ["locks"],
    ):
        result = owned.run("--root", root, *args)
        outputs[args[0]] = result
        if not meets.get(args[0], True):
            assert result.returncode == 0 and (result.stdout or args[0] == "locks"), (args, result)  # no lock files in the fixture
            continue
        assert result.returncode == 6, (args, result)
        assert f"cannot read {unreadable}" in result.stderr and "Permission denied" in result.stderr, (args, result.stderr)
        assert "could not be read; everything else was" in result.stderr
    listed = {u["user"]: u["messages"] for u in json.loads(outputs["list"].stdout)}
    exported: dict[str, int] = {}
    for line in outputs["export"].stdout.splitlines():
        user = json.loads(line)["user"]
        exported[user] = exported.get(user, 0) + 1
    assert exported == {u: n for u, n in want.items() if n}  # every readable message of every user
    assert {u: n for u, n in listed.items() if n} == {u: n for u, n in want.items() if n}
    stats = json.loads(outputs["stats"].stdout)
    assert stats["totalMessages"] == sum(want.values())
    findings = json.loads(outputs["verify"].stdout)
    assert [f["path"] for f in findings if f["problem"] == "unreadable"] == [unreadable]
    # The inactive-user rule never removes a user whose files it could not all read.
    plan = json.loads(outputs["cleanup"].stdout)
    removed = {a["user"] for a in plan["actions"] if a["action"] == "remove-user"}
    assert removed and not removed & {"user-1004", "user-1000", "user-1008", "user-1002"} - {u for u in removed if u not in unreadable}
    what = unreadable.split("/")[-1] + ("" if unreadable.endswith(".yaml") else "/")
    figures.add(f"unreadable {what} (chmod 000, run by the owner): 8 whole-journal commands read every other user, named it, exit 6")


def test_permission_errors_name_the_path(owned: OwnedTree) -> None:
    root = os.path.join(owned.base, "journal")
    shutil.copytree(FIXTURES / "v1-sharded", root)
    owned.give()
    os.chmod(os.path.join(root, "users/us/er/-1004"), 0)  # the user's own folder: the walk of users/ meets it
    for args in (["locks"], ["search", "e"], ["archive", "--idle", "1h", "--all", "--dry-run"], ["show", "user-1004"]):
        result = owned.run("--root", root, *args)
        assert result.returncode == 6, (args, result)
        assert "users/us/er/-1004" in result.stderr and "Permission denied" in result.stderr, (args, result.stderr)
        assert "dialogctl: Permission denied" not in result.stderr
    # A config file outside the journal that cannot be read is named too.
    os.chmod(os.path.join(root, "users/us/er/-1004"), 0o755)
    config = os.path.join(owned.home, ".config", "dialogctl")
    os.makedirs(config)
    with open(os.path.join(config, "config.yaml"), "w") as fh:
        fh.write("dialogueJournal: {}\n")
    owned.give()
    os.chmod(config, 0)
    result = owned.run("--root", root, "list")
    assert result.returncode == 6 and os.path.join(config, "config.yaml") in result.stderr, result
