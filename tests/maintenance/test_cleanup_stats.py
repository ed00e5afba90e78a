"""A cleanup recounts metadata and rewrites system/stats.yaml."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import Cli


def test_cleanup_recounts_metadata_and_rewrites_system_stats(root: Path, cli: Cli) -> None:
    cli("append", "dora", "old words", "--timestamp", "2020-01-01T00:00:00Z")
    cli("archive", "dora", "--id", "ancient")
    cli("append", "dora", "new words")
    meta_path = root / "users" / "do" / "ra" / "dora" / "metadata.yaml"
    assert json.loads(meta_path.read_text())["totalMessages"] == 2
    result = cli("cleanup", "--retention-days", "365", "--keep-last", "0", "--yes")
    assert result.exit_code == 0, result.stderr
    assert not (root / "users" / "do" / "ra" / "dora" / "dialogs" / "archived" / "ancient.yaml").exists()
    assert json.loads(meta_path.read_text())["totalMessages"] == 1
    system = json.loads((root / "system" / "stats.yaml").read_text())
    assert system["totalMessages"] == 1 and system["totalUsers"] == 1
