"""Unknown keys in config files: warned about with the closest known key, errors with strictConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogctl.config import load_settings
from dialogctl.errors import InvalidInput

from ..conftest import Cli

TYPOS = """
server:
  port: 8080
dialogueJournal:
  backend: filesystem
  cleanp:
    maxAgeHours: 5
  filesystem:
    root: ./journal
    archiveTreshold: 50
    maxAgeHours: 3
    serverId: web-1
  cleanup:
    intervalHours: 24
    dryRun: true
    maxInactiveHours: 100
"""


def test_the_core_returns_every_unknown_key_with_its_closest(isolated: Path) -> None:
    (isolated / "poto.config.yaml").write_text(TYPOS)
    settings = load_settings()
    found = {(u.section, u.key): u.closest for u in settings.unknown}
    assert found == {
        ("dialogueJournal", "cleanp"): "cleanup",
        ("dialogueJournal.filesystem", "archiveTreshold"): "archiveThreshold",
        ("dialogueJournal.filesystem", "maxAgeHours"): "cleanup.maxAgeHours",  # a known key in the wrong section
    }
    assert all(u.path == isolated / "poto.config.yaml" for u in settings.unknown)
    assert settings["archiveThreshold"] == 100  # the typo is ignored, as before
    assert settings["serverId"] == "web-1" and settings["maxInactiveHours"] == 100


def test_keys_only_the_reference_reads_are_known(isolated: Path) -> None:
    # intervalHours and dryRun (cleanup), backend: the reference implementation reads them, dialogctl does not.
    (isolated / "poto.config.yaml").write_text("other: 1\ndialogueJournal:\n  backend: filesystem\n  cleanup:\n    intervalHours: 1\n    dryRun: false\n")
    assert load_settings().unknown == []


def test_the_cli_warns_naming_file_key_and_closest(isolated: Path, cli: Cli) -> None:
    (isolated / "poto.config.yaml").write_text(TYPOS)
    result = cli("-q", "list")
    assert result.exit_code == 0, result.stderr
    config = isolated / "poto.config.yaml"
    lines = result.stderr.splitlines()
    assert f"dialogctl: warning: config file {config}: unknown key archiveTreshold in dialogueJournal.filesystem; did you mean archiveThreshold?" in lines
    assert f"dialogctl: warning: config file {config}: unknown key cleanp in dialogueJournal; did you mean cleanup?" in lines
    assert any("strictConfig" in line for line in lines if line.startswith("dialogctl: hint:"))


def test_the_user_config_file_is_checked_too(tmp_path: Path, cli: Cli) -> None:
    user_file = tmp_path / "home" / "config" / "dialogctl" / "config.yaml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("dialogueJournal:\n  filesystem:\n    retentionDay: 30\n")
    result = cli("config")
    assert result.exit_code == 0
    assert f"config file {user_file}: unknown key retentionDay in dialogueJournal.filesystem; did you mean retentionDays?" in result.stderr


@pytest.mark.parametrize(
    ("how", "env"),
    [(["--set", "strictConfig=true"], {}), ([], {"DIALOGUE_JOURNAL_STRICT_CONFIG": "1"}), ([], {})],
)
def test_strict_config_makes_them_errors(isolated: Path, cli: Cli, how: list[str], env: dict[str, str]) -> None:
    text = TYPOS if how or env else TYPOS.replace("    serverId: web-1\n", "    serverId: web-1\n    strictConfig: true\n")
    (isolated / "poto.config.yaml").write_text(text)
    result = cli(*how, "list", env=env)
    assert result.exit_code == 2 and result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert "unknown key cleanp in dialogueJournal; did you mean cleanup? (and 2 more unknown key(s))" in first
    with pytest.raises(InvalidInput, match="unknown key"):
        load_settings({"strictConfig": "yes"})


def test_a_clean_config_says_nothing(isolated: Path, cli: Cli) -> None:
    (isolated / "poto.config.yaml").write_text("dialogueJournal:\n  filesystem:\n    root: ./j\n    strictConfig: true\n")
    result = cli("list")
    assert result.exit_code == 0 and "warning" not in result.stderr
