"""Secrets: message text never appears in an error message, a warning, a report or a log line.

A canary is planted in the content and metadata of every message, including
the damaged, torn and unreadable ones, and every error path is forced: damage
of each kind, a busy lock, a full disk, bad input, missing users and archives.
Data commands print the canary on stdout (it is their job); nothing else may.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dialogctl import Journal
from dialogctl.disk.locking import UserLock, make_owner
from dialogctl.models import Message

from .. import reference_writer as server
from ..conftest import Cli
from . import faults
from .faults import Rule

CANARY = "CANARY-7f3a9c-do-not-leak"
TS = "2024-01-15T10:30:00.000Z"


def _secret(n: int) -> Message:
    return Message("user", f"{CANARY} message {n}\n  {CANARY}", TS, {"apiKey": CANARY, "nested": {"k": [CANARY]}})


def _damaged_journal(tmp_path: Path) -> Path:
    root = tmp_path / "journal"
    # Documents shape: the damage below is what goes wrong in --- documents.
    journal = Journal.open(str(root), archiveThreshold="0", fileShape="documents")
    for user in ("intact", "torn", "invalid", "glued", "dupkey", "badutf8", "checksum", "roles"):
        journal.append(user, [_secret(1), _secret(2)])
    journal.archive("intact", archive_id="a1")
    journal.append("intact", [_secret(3)])
    folder = root / "users"

    def add(user: str, data: bytes) -> None:
        path = Path(server.dialogs_path(root, user)) / "current.yaml"  # where the servers, and dialogctl, keep the user
        path.write_bytes(path.read_bytes() + data)

    secret = CANARY.encode()
    add("torn", b"---\nrole: user\ncontent: |2\n  " + secret + b" cut")
    add("invalid", b"---\nrole: user\ncontent: [" + secret + b"\ntimestamp: x\n---\nrole: user\ncontent: ok\ntimestamp: 2024-01-15\n")
    add("glued", b"---\nrole: user\ncontent: " + secret + b"\ntimestamp: 2024-01-15---\nrole: user\ncontent: " + secret + b"\ntimestamp: 2024-01-16\n")
    add("dupkey", b"---\nrole: user\ncontent: " + secret + b"\ncontent: " + secret + b"\ntimestamp: 2024-01-15\n")
    add("badutf8", b"---\nrole: user\ncontent: " + secret + b" \xff\xfe\ntimestamp: 2024-01-15\n")
    add("roles", b"---\nrole: " + b"robot" + b"\ncontent: " + secret + b"\ntimestamp: 2020-01-15\n")
    checksum = next(p for p in folder.rglob("current.yaml") if "ch/ec" in p.as_posix())
    checksum.write_bytes(checksum.read_bytes().replace(b"message 1", b"message X", 1))
    return root


def test_no_error_path_leaks_message_text(tmp_path: Path, cli: Cli, figures: Any) -> None:
    root = _damaged_journal(tmp_path)
    base = ["--root", str(root)]
    leaks: list[tuple[list[str], str]] = []
    paths = 0

    def check(args: list[str], result: Any, stdout_is_data: bool = False) -> None:
        nonlocal paths
        paths += 1
        if CANARY in result.stderr:
            leaks.append((args, "stderr"))
        if not stdout_is_data and CANARY in result.stdout:
            leaks.append((args, "stdout"))

    data_commands = [["show", u, "--format", f] for u in ("torn", "invalid", "glued", "dupkey", "badutf8", "checksum", "roles") for f in ("json", "table")]
    data_commands += [["export", "--all", "--format", "jsonl"], ["export", "intact", "--archive", "a1", "--format", "json"]]
    for args in data_commands:
        result = cli(*base, *args)
        assert CANARY in result.stdout, args  # the canary is really there to leak
        check(args, result, stdout_is_data=True)
    verified = cli(*base, "verify", "--format", "json")
    found = {f["problem"] for f in json.loads(verified.stdout)}
    assert found >= {"torn record", "invalid YAML", "glued separator", "duplicate key", "invalid UTF-8", "checksum mismatch", "unknown role"}, found
    for args in (
        ["list"],
        ["list", "torn"],
        ["stats", "--format", "json"],
        ["locks"],
        ["verify"],
        ["verify", "--format", "json"],
        ["repair", "--dry-run", "--format", "json"],
        ["cleanup", "--max-age", "1d", "--dry-run", "--format", "json"],
        ["cleanup", "--max-age", "1d", "--yes"],
        ["doctor"],
        ["show", "nobody"],
        ["restore", "intact", "nope"],
        ["show", "intact", "--archive", "nope"],
        ["append", "intact", CANARY, "--role", "robot"],
        ["append", "intact", CANARY, "--timestamp", "whenever"],
        ["append", "intact", CANARY, "--meta", "x"],
        ["archive", "intact", "--id", "a1"],
    ):
        check(args, cli(*base, *args))
    for stdin in (
        f'{{"user": "intact", "role": "robot", "content": "{CANARY}"}}\n',
        f'{{"user": "intact", "role": "user", "content": "{CANARY}"\n',
        f'{{"user": "intact", "role": "user", "content": "{CANARY}", "timestamp": "{CANARY}"}}\n',
        f'{{"user": "intact", "role": "user", "content": "{CANARY}", "metadata": "{CANARY}"}}\n',
    ):
        check(["append", "--jsonl"], cli(*base, "append", "--jsonl", input=stdin))
    check(["append", "stdin"], cli(*base, "append", "intact", input=CANARY.encode() + b"\xff"))

    journal = Journal.open(str(root))
    with journal.dialogs_folder("intact") as dialogs, UserLock(dialogs, "intact", make_owner("srv", "holder"), 5.0):
        check(["append", "(lock busy)"], cli(*base, "--set", "lockTimeoutMs=100", "append", "intact", CANARY))
    for rule in (Rule("write", 1, "ENOSPC"), Rule("fsync", 1, "EIO"), Rule("rename", 1, "EIO")):
        run = faults.run([*base, "append", "intact", CANARY], [rule])
        check(["append", str(rule)], run)
        run = faults.run([*base, "repair"], [rule])
        check(["repair", str(rule)], run)
    check(["repair"], cli(*base, "repair", "--format", "json"))

    assert leaks == []
    log = (root / "system" / "cleanup.log").read_text()
    assert CANARY not in log and json.loads(log.splitlines()[-1])["messagesRemoved"] >= 0
    for lock in root.rglob(".lock"):
        assert CANARY not in lock.read_text()
    quarantined = list((root / "system" / "quarantine").rglob("*.yaml"))
    assert quarantined and all(CANARY.encode() in q.read_bytes() and (q.stat().st_mode & 0o077) == 0 for q in quarantined)  # kept, privately
    figures.add(f"secrets: canary in every message; {paths} error and report paths forced (damage of 7 kinds, busy lock, ENOSPC/EIO, bad input): 0 leaks")
