"""``rm``: deleting for real, audited; one archive or one conversation."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import Cli
from ..samples import seed_refunds


def test_rm_deletes_for_real_and_audits(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    user_dir = root / "users" / "al" / "ic" / "e"
    (user_dir / "dialogs" / ".current.yaml.tmp-1-abcd").write_text("leftover")
    quarantine = root / "system" / "quarantine" / "2024-01-01-00-00-00" / "users" / "al" / "ic" / "e" / "dialogs"
    quarantine.mkdir(parents=True)
    (quarantine / "current.yaml").write_text("secret copy")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    plan = cli.json("rm", "alice", "--all-data", "--dry-run", "--format", "json")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert plan["messages"] == 4 and any("quarantine" in f for f in plan["files"])
    refused = cli("rm", "alice", "--all-data")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    done = cli.json("rm", "alice", "--all-data", "--yes", "--format", "json")
    assert done["messages"] == 4
    assert not user_dir.exists() and not (root / "users" / "al").exists()
    assert not (root / "system" / "quarantine" / "2024-01-01-00-00-00").exists()
    assert cli("show", "alice").exit_code == 3
    audit = [json.loads(line) for line in (root / "system" / "audit.log").read_text().splitlines()]
    assert audit[-1]["user"] == "alice" and audit[-1]["what"] == "all-data" and audit[-1]["messages"] == 4
    assert "refund" not in (root / "system" / "audit.log").read_text()
    assert cli("show", "bob").exit_code == 0


def test_rm_one_archive_or_conversation(root: Path, cli: Cli) -> None:
    seed_refunds(cli)
    assert cli("rm", "alice", "--archive", "old", "--yes").exit_code == 0
    assert [c["conversation"] for c in cli.json("list", "alice", "--format", "json")] == ["current"]
    assert cli("rm", "alice", "--conversation", "current", "--yes").exit_code == 0
    assert cli.json("show", "alice", "--format", "json")["messageCount"] == 0
    meta = json.loads((root / "users" / "al" / "ic" / "e" / "metadata.yaml").read_text())
    assert meta["totalMessages"] == 0
    assert cli("rm", "alice", "--archive", "nope", "--yes").exit_code == 3
    assert cli("rm", "alice", "--yes").exit_code == 2
