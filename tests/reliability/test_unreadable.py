"""What dialogctl cannot read or write: it says which path and why, goes on where it can, and changes nothing when it fails.

Permission checks do not apply to root, so these tests give a journal to an
unprivileged owner and run dialogctl as that owner (:class:`OwnedTree`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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
