"""Settings precedence, config files, layouts, and id validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogctl.config import interpolate, load_settings
from dialogctl.disk.layout import Layout, detect_layout, validate_name, validate_user_id
from dialogctl.errors import InvalidInput, InvalidUserId, LayoutError

from ..conftest import Cli, copy_tree

POTO = """
server:
  port: 8080
dialogueJournal:
  backend: filesystem
  filesystem:
    root: ${JOURNAL_DIR:-./data/dialogues}
    archiveThreshold: 40
    lockTimeoutMs: 2500
    serverId: ${HOSTNAME_FOR_TEST}
  cleanup:
    maxAgeHours: 720
"""


def test_precedence_flag_env_project_user_default(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "poto.config.yaml").write_text(POTO)
    user_cfg = Path(tmp_path / "home" / "config" / "dialogctl")
    user_cfg.mkdir(parents=True)
    (user_cfg / "config.yaml").write_text("dialogueJournal:\n  filesystem:\n    retentionDays: 30\n    archiveThreshold: 10\n")
    monkeypatch.setenv("HOSTNAME_FOR_TEST", "web-7")
    s = load_settings()
    assert s["root"] == str(isolated / "data" / "dialogues")  # relative to the config file's folder
    assert s["archiveThreshold"] == 40 and s.setting("archiveThreshold").source.startswith("poto.config.yaml")
    assert s["retentionDays"] == 30 and s.setting("retentionDays").source.startswith("user config")
    assert s["serverId"] == "web-7"
    assert s["maxAgeHours"] == 720
    assert s["maxConversationLength"] == 1000 and s.setting("maxConversationLength").source == "default"
    monkeypatch.setenv("DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD", "55")
    monkeypatch.setenv("JOURNAL_DIR", "/srv/j")
    s = load_settings()
    assert s["archiveThreshold"] == 55 and s.setting("archiveThreshold").source == "env DIALOGUE_JOURNAL_ARCHIVE_THRESHOLD"
    assert s["root"] == "/srv/j"
    s = load_settings({"archiveThreshold": "5", "root": "rel"})
    assert s["archiveThreshold"] == 5 and s.setting("archiveThreshold").source == "flag (--set archiveThreshold)"
    assert s["root"] == str(isolated / "rel")


def test_explicit_config_path_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "other.yaml"
    cfg.write_text("dialogueJournal:\n  filesystem:\n    lockTimeoutMs: -5\n")
    with pytest.raises(InvalidInput, match="lockTimeoutMs"):
        load_settings(config_path=cfg)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_settings(config_path=tmp_path / "missing.yaml")
    cfg.write_text("dialogueJournal: [1, 2\n")
    with pytest.raises(InvalidInput, match="line"):
        load_settings(config_path=cfg)
    cfg.write_text("dialogueJournal:\n  backend: memory\n")
    with pytest.raises(InvalidInput, match="filesystem"):
        load_settings(config_path=cfg)


def test_interpolation() -> None:
    env = {"A": "x", "EMPTY": ""}
    assert interpolate("${A}/${B}/${B:-d}/${EMPTY:-e}/${A:-no}", env) == "x//d/e/x"
    assert interpolate({"k": ["${A}"]}, env) == {"k": ["x"]}


def test_default_root_is_platform_data_dir(isolated: Path, tmp_path: Path) -> None:
    s = load_settings()
    assert s["root"] == str(tmp_path / "home" / "data" / "dialogctl" / "journal")
    assert s.setting("root").source == "default"


@pytest.mark.parametrize("user", ["user-12345", "alice0", "a@b.com", "日本語", "café", "x" * 200, "-1000", "a.b", "U_1+2=3:4~5,6"])
def test_good_ids(user: str) -> None:
    assert validate_user_id(user) == user


@pytest.mark.parametrize(
    "user",
    [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\tb",
        "x" * 201,
        ".hidden",
        "a b",
        "a\u202eb",
        "a\u200bb",
        "ａ",
        "a∕b",
        "a／b",
        "a․b",
        "ﬁ",
        "\x85",
    ],
)
def test_bad_ids(user: str) -> None:
    with pytest.raises(InvalidUserId):
        validate_user_id(user)


def test_archive_names_allow_inner_spaces() -> None:
    assert validate_name("archive-2024-01-15 10-30-00", "archive id")
    with pytest.raises(InvalidUserId):
        validate_name(" lead", "archive id")


def test_layout_parts() -> None:
    sharded = Layout("sharded", 2, 2)
    assert sharded.user_parts("user-1006") == ("us", "er", "-1006")
    assert sharded.user_parts("abc") == ("ab", "c", "abc")  # the servers keep a short id whole in its last folder
    assert Layout("sharded", 1, 3).user_parts("user-1006") == ("use", "r-1006")
    assert Layout("flat").user_parts("user-1006") == ("user-1006",)
    with pytest.raises(InvalidUserId):
        sharded.user_parts("abcddialogs")


def test_detection_and_ambiguity(tmp_path: Path) -> None:
    root = tmp_path / "j"
    (root / "users" / "alice" / "dialogs").mkdir(parents=True)
    assert detect_layout(str(root)).scheme == "flat"
    (root / "users" / "bo" / "b1" / "dialogs").mkdir(parents=True)
    with pytest.raises(LayoutError) as err:
        detect_layout(str(root))
    assert "--layout" in (err.value.hint or "")


def test_ambiguous_root_names_the_setting(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    (root / "users" / "abc" / "de" / "f" / "dialogs").mkdir(parents=True)
    (root / "users" / "ab" / "cde" / "g" / "dialogs").mkdir(parents=True)
    result = cli("--root", str(root), "list")
    assert result.exit_code == 2
    assert "--layout" in result.stderr


def test_explicit_layout_is_used_even_when_the_folders_disagree(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-sharded", tmp_path)
    result = cli("--root", str(root), "--layout", "flat", "list", "--format", "json")
    # Settings given by flag, environment or config are never overridden by detection:
    # the folders that do not fit them are reported one by one.
    assert result.exit_code == 5 and result.stdout.strip() == "[]"
    assert "users/us/er/-1000: unusable user folder" in result.stderr
    ok = cli("--root", str(root), "--layout", "sharded", "--shard-levels", "2", "list", "--format", "json")
    assert ok.exit_code == 0


def test_new_root_records_its_layout(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "new"
    assert cli("--root", str(root), "--layout", "flat", "append", "alice", "hi").exit_code == 0
    assert (root / "users" / "alice" / "dialogs" / "current.yaml").is_file()
    record = (root / "config" / "journal-config.yaml").read_text()
    assert "layout: flat" in record
    # later runs follow the record without being told
    assert cli("--root", str(root), "append", "bob", "hi").exit_code == 0
    assert (root / "users" / "bob" / "dialogs" / "current.yaml").is_file()
    assert cli("--root", str(root), "--layout", "sharded", "list").exit_code == 2


def test_sessions_layout(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v3-sessions", tmp_path)
    conversations = cli.json("--root", str(root), "list", "alice2", "--format", "json")
    assert [c["conversation"] for c in conversations if c["kind"] == "session"] == ["conv-2-0", "conv-2-1", "conv-2-2"] or len(conversations) == 4
    assert cli("--root", str(root), "append", "alice2", "more", "--conversation", "conv-2-2").exit_code == 0
    shown = cli.jsonl("--root", str(root), "show", "alice2", "--conversation", "conv-2-2", "--format", "jsonl")
    assert shown[-1]["content"] == "more"
    new_user = cli("--root", str(root), "append", "zed9", "hello")
    assert new_user.exit_code == 0
    files = list((root / "users" / "ze" / "d9" / "zed9" / "dialogs").glob("session-*.yaml"))
    assert len(files) == 1


def test_file_and_folder_modes_ignore_umask(root: Path, cli: Cli) -> None:
    import os

    old = os.umask(0)
    try:
        cli("append", "alice", "hi")
    finally:
        os.umask(old)
    for path in root.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_a_config_file_is_read_bounded(tmp_path: Path) -> None:
    """--config /dev/zero (or a huge sparse file) is refused after 1 MiB instead of being read whole."""
    from dialogctl.config import read_config_file
    from dialogctl.errors import InvalidInput

    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(1 << 32)
    for path in (Path("/dev/zero"), huge):
        with pytest.raises(InvalidInput, match="is larger than 1 MiB"):
            read_config_file(path)
