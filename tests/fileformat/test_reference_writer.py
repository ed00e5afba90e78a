"""The server stand-in is byte-exact: it rewrites v1-short-ids, which the real server code wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import reference_writer as server
from tests.conftest import FIXTURES

TREE = FIXTURES / "v1-short-ids"
EXPECTED = json.loads((FIXTURES / "v1-short-ids.expected.json").read_text(encoding="utf-8"))


def _user_of(rel: str) -> str:
    """DOMAIN.md's read-back rule: the last folder if it equals the ones above joined, else all joined."""
    parts = rel.split("/dialogs/")[0].split("/")[1:]
    above, last = "".join(parts[:-1]), parts[-1]
    return last if last == above else above + last


def _originals(messages: list[dict]) -> list[dict]:
    """What the server was handed: the parser adds one final newline (clip chomping) where the content had none."""
    out = []
    for m in messages:
        original = dict(m)
        if m["content"] == "fine\n":  # the reply in al's batch of two was written without a final newline
            original["content"] = "fine"
        out.append(original)
    return out


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_items_are_byte_exact(rel: str) -> None:
    data = (TREE / rel).read_bytes()
    messages = EXPECTED[rel]["messages"]
    # Every content but the reply of al's batch ("fine", no final newline) ended in one newline.
    assert server.format_batch(_originals(messages)).encode("utf-8") == data


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_user_folders_follow_the_servers_rule(rel: str) -> None:
    user = _user_of(rel)
    assert rel.startswith("users/" + "/".join(server.user_parts(user)) + "/dialogs/")


def test_append_and_archive_write_what_the_servers_write(tmp_path: Path) -> None:
    al = _originals(EXPECTED["users/al/al/dialogs/current.yaml"]["messages"])
    path = Path(server.dialogs_path(tmp_path, "al")) / "current.yaml"
    for m in al[:-2]:
        server.append(path, [m])
    server.append(path, al[-2:])  # a batch of two, like the fixture's
    assert path.read_bytes() == (TREE / "users/al/al/dialogs/current.yaml").read_bytes()
    assert path.stat().st_mode & 0o777 == 0o644
    archived = server.archive(path.parent, "archive-2026-11-30 17-38-14")
    assert path.read_bytes() == b""
    server.append(path, al[:1])
    assert path.read_bytes() == b"\n" + server.format_item(al[0]).encode()  # an empty file counts as existing
    assert Path(archived).read_bytes() == (TREE / "users/al/al/dialogs/current.yaml").read_bytes()


def test_the_benchmark_writes_server_files_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/ builds its server-written journal with this stand-in: items joined by a line feed, no final newline."""
    import sys

    from dialogctl.fileformat import salvage
    from dialogctl.fileformat.reader import parse_conversation

    bench = Path(__file__).resolve().parent.parent.parent / "bench"
    monkeypatch.syspath_prepend(str(bench))
    for name in ("synthetic", "run"):
        sys.modules.pop(name, None)
    import run  # type: ignore[import-not-found]
    import synthetic  # type: ignore[import-not-found]

    jsonl = tmp_path / "messages.jsonl"
    synthetic.write_jsonl(str(jsonl), 60, 3)
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    # Contents that end in a line feed: the empty piece after it is a line of four spaces.
    assert any("\n    \n  timestamp: " in synthetic.reference_item(r) for r in records)
    run.build_reference_journal(jsonl, tmp_path / "root")
    loads: list[str] = []
    monkeypatch.setattr(salvage, "load_yaml", lambda text: loads.append(text))
    for user in sorted({r["user"] for r in records}):
        mine = [r for r in records if r["user"] == user]
        path = Path(server.dialogs_path(tmp_path / "root", user)) / "current.yaml"
        assert path.read_bytes() == server.format_batch(mine).encode("utf-8")
        assert synthetic.reference_file(mine) == server.format_batch(mine)
        parsed = parse_conversation(path.read_bytes(), user)
        assert len(parsed.messages) == len(mine) and not parsed.damage
    assert loads == []  # what the benchmark measures is the fast reader, as on the servers' own files
