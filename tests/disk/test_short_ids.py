"""Short user ids, placed and read back exactly as the servers do (DOMAIN.md, "Layout of a journal root").

With 2 levels of 2, ``bob`` lives in ``users/bo/b/bob/``, ``al`` in
``users/al/al/`` and ``abcd`` in ``users/ab/cd/abcd/``: when the prefixes use
up the id, the whole id is the last folder. The rule is not one-to-one, so an
id whose folder reads back as another id is refused; a user's folder can hold
another user's, so nothing done to one user touches the other's files.
``tests/reference_writer.py`` is the servers' rule, written apart from the
package, and every placement here is checked against it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl import Journal
from dialogctl.disk.layout import Layout, detect_layout, iter_user_folders, user_id_from_parts
from dialogctl.errors import InvalidUserId, LayoutError, NotFound
from dialogctl.models import Message

from .. import reference_writer as server
from ..conftest import FIXTURES, Cli, copy_tree

SHORT_IDS = ["abcd", "abcde", "al", "bob", "user-77", "x"]
EXPECTED = json.loads((FIXTURES / "v1-short-ids.expected.json").read_text(encoding="utf-8"))

# (id, levels, size, folders below users/)
PLACES = [
    ("bob", 2, 2, ("bo", "b", "bob")),
    ("al", 2, 2, ("al", "al")),
    ("abcd", 2, 2, ("ab", "cd", "abcd")),
    ("abcde", 2, 2, ("ab", "cd", "e")),
    ("x", 2, 2, ("x", "x")),
    ("user-77", 2, 2, ("us", "er", "-77")),
    ("user-1006", 2, 2, ("us", "er", "-1006")),
    ("abc", 2, 2, ("ab", "c", "abc")),
    ("user-1006", 1, 3, ("use", "r-1006")),
    ("bob", 1, 3, ("bob", "bob")),
    ("al", 1, 3, ("al", "al")),
    ("abcd", 1, 3, ("abc", "d")),
    ("bob", 3, 1, ("b", "o", "b", "bob")),
    ("al", 3, 1, ("a", "l", "al")),
    ("abcd", 3, 1, ("a", "b", "c", "d")),
    ("x", 3, 1, ("x", "x")),
]


def _journal(root: Path, **values: str) -> Journal:
    return Journal.open(str(root), **values)


def _msg(text: str, timestamp: str = "2024-01-15T10:30:00.000Z") -> Message:
    return Message("user", text, timestamp)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def _tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path below the root with its mode and, for files, bytes."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st_ = os.lstat(path)
        out[str(path.relative_to(root))] = (st_.st_mode, path.read_bytes() if stat.S_ISREG(st_.st_mode) else None)
    return out


# --- the rule, both ways -----------------------------------------------------------------------


def test_ids_go_where_the_servers_put_them_and_read_back() -> None:
    for user, levels, size, parts in PLACES:
        assert tuple(server.user_parts(user, levels, size)) == parts  # the table is the servers' rule
        assert Layout("sharded", levels, size).user_parts(user) == parts, (user, levels, size)
        assert user_id_from_parts(parts) == user


user_ids = st.text(st.sampled_from("abcdefxyz0129-_.@"), min_size=1, max_size=14).filter(lambda u: not u.startswith("."))


@settings(max_examples=400, deadline=None)
@given(user=user_ids, levels=st.integers(1, 4), size=st.integers(1, 4))
def test_every_id_reads_back_as_itself_or_is_refused(user: str, levels: int, size: int) -> None:
    layout = Layout("sharded", levels, size)
    servers = tuple(server.user_parts(user, levels, size))
    hidden = any(part.startswith(".") for part in servers)
    try:
        parts = layout.user_parts(user)
    except InvalidUserId as exc:
        # Refused only when the servers' folder would read back as another id, or be hidden.
        owner = user_id_from_parts(servers)
        assert owner != user or hidden, (user, servers)
        if owner != user and not hidden:
            assert repr(owner) in str(exc)
        return
    assert parts == servers
    assert user_id_from_parts(parts) == user


def test_an_id_whose_folder_belongs_to_another_is_refused() -> None:
    with pytest.raises(InvalidUserId) as err:
        Layout("sharded", 2, 2).user_parts("abcdabcd")
    assert "'abcd'" in str(err.value) and "users/ab/cd/abcd" in str(err.value)
    with pytest.raises(InvalidUserId, match="'bob'"):
        Layout("sharded", 1, 3).user_parts("bobbob")
    assert Layout("sharded", 2, 2).user_parts("abcdabcdx") == ("ab", "cd", "abcdx")  # longer: its own folder
    for user in ("bob", "al", "abcd", "abcdabcd", "x"):  # the flat layout has no such folders
        assert Layout("flat").user_parts(user) == (user,)
        assert user_id_from_parts((user,)) == user


# --- the command line --------------------------------------------------------------------------


def test_append_puts_a_short_id_where_the_servers_look(root: Path, cli: Cli) -> None:
    for user in ("bob", "al", "x", "abcd"):
        assert cli("append", user, "hi").exit_code == 0
        assert (Path(server.dialogs_path(root, user)) / "current.yaml").is_file(), user
    assert (root / "users/bo/b/bob/dialogs/current.yaml").is_file()
    assert not (root / "users/bo/b/dialogs").exists()
    assert cli.json("list", "--format", "json") and sorted(r["user"] for r in cli.json("list", "--format", "json")) == ["abcd", "al", "bob", "x"]


def test_append_refuses_an_id_that_would_share_a_folder_before_touching_the_disk(root: Path, cli: Cli) -> None:
    result = cli("append", "abcdabcd", "x")
    assert result.exit_code == 2
    assert "'abcd'" in result.stderr and "abcdabcd" in result.stderr
    assert not root.exists()  # not even the root or its layout record
    assert cli("append", "abcd", "first").exit_code == 0
    before = _files(root)
    assert cli("append", "abcdabcd", "x").exit_code == 2
    assert _files(root) == before
    assert [m["content"] for m in cli.jsonl("show", "abcd", "--format", "jsonl")] == ["first"]


@pytest.mark.parametrize(
    "how",
    [
        [],
        ["--layout", "sharded", "--shard-levels", "2", "--shard-size", "2"],
        ["--layout", "sharded"],
        ["--shard-levels", "2"],
        "env",
    ],
)
def test_a_journal_the_servers_wrote_with_short_ids_lists_them(how: Any, tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-short-ids", tmp_path)
    env = {"DIALOGUE_JOURNAL_LAYOUT": "sharded", "DIALOGUE_JOURNAL_SHARD_LEVELS": "2", "DIALOGUE_JOURNAL_SHARD_SIZE": "2"} if how == "env" else None
    flags = [] if how == "env" else how
    result = cli("--root", str(root), *flags, "list", "--format", "json", env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert sorted(r["user"] for r in json.loads(result.stdout)) == SHORT_IDS


def test_show_stats_and_export_read_exactly_what_the_servers_wrote(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-short-ids", tmp_path)
    by_user: dict[str, list[dict[str, Any]]] = {}
    for rel, found in EXPECTED.items():
        parts = tuple(rel.split("/dialogs/")[0].split("/")[1:])
        by_user.setdefault(user_id_from_parts(parts), []).extend(found["messages"])
    assert sorted(by_user) == SHORT_IDS
    for user, wanted in by_user.items():
        current = cli.jsonl("--root", str(root), "show", user, "--format", "jsonl")
        archived = []
        for listed in cli.json("--root", str(root), "list", user, "--format", "json"):
            if listed["kind"] == "archive":
                archived += cli.jsonl("--root", str(root), "show", user, "--archive", listed["conversation"], "--format", "jsonl")
        got = [{k: r[k] for k in ("role", "content", "timestamp")} for r in archived + current]
        assert got == [{k: m[k] for k in ("role", "content", "timestamp")} for m in wanted], user
    exported = cli.jsonl("--root", str(root), "export", "--all", "--format", "jsonl")
    assert sorted({r["user"] for r in exported}) == SHORT_IDS
    stats = cli.json("--root", str(root), "stats", "--format", "json")
    text = json.dumps(stats)
    total = sum(len(v["messages"]) for v in EXPECTED.values())
    assert f'"totalMessages": {total}' in text and '"totalUsers": 6' in text, text[:400]


def test_completion_finds_short_ids_by_prefix(tmp_path: Path) -> None:
    root = copy_tree("v1-short-ids", tmp_path)
    journal = _journal(root)
    for prefix in ("", "b", "bo", "bob", "a", "ab", "abc", "abcd", "abcde", "al", "x", "u", "user-7", "bobb", "abcdabcd", "xx", "z"):
        assert sorted(journal.users(prefix=prefix)) == [u for u in SHORT_IDS if u.startswith(prefix)], prefix
        assert sorted(user_id_from_parts(p) for p in iter_user_folders(str(root), prefix=prefix)) == [u for u in SHORT_IDS if u.startswith(prefix)]
    assert journal.damage == []


# --- detection -----------------------------------------------------------------------------------


def _server_journal(root: Path, users: list[str], levels: int, size: int) -> None:
    for user in users:
        server.append(
            Path(server.dialogs_path(root, user, levels, size)) / "current.yaml", [server.message("user", f"hi {user}\n", "2024-01-15T10:30:00.000Z")]
        )


@pytest.mark.parametrize("levels,size", [(2, 2), (1, 3), (3, 1), (1, 2), (2, 3)])
def test_detection_is_not_fooled_by_short_ids(levels: int, size: int, tmp_path: Path) -> None:
    root = tmp_path / "j"
    users = ["al", "bob", "x", "abcd", "abcde", "user-77", "user-1006", "zz"]
    _server_journal(root, users, levels, size)
    detected = detect_layout(str(root))
    assert (detected.scheme, detected.shard_levels, detected.shard_size) == ("sharded", levels, size)
    journal = _journal(root)
    assert sorted(journal.users()) == sorted(users) and journal.damage == []


def test_detection_prefers_the_defaults_when_the_folders_fit_several_layouts(tmp_path: Path) -> None:
    root = tmp_path / "j"
    _server_journal(root, ["x"], 2, 2)  # users/x/x fits every sharded layout
    detected = detect_layout(str(root))
    assert (detected.scheme, detected.shard_levels, detected.shard_size) == ("sharded", 2, 2)
    other = tmp_path / "k"
    _server_journal(other, ["abc"], 1, 3)  # users/abc/abc: any size of 3 or more, never 2
    with pytest.raises(LayoutError) as err:
        detect_layout(str(other))
    assert "--shard-size" in (err.value.hint or "")
    assert detect_layout(str(other), given={"shardSize": 3}, preferred=Layout("sharded", 2, 3)).shard_levels == 2


def test_explicit_layout_settings_are_never_overridden(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-short-ids", tmp_path)
    result = cli("--root", str(root), "--layout", "sharded", "--shard-levels", "1", "--shard-size", "2", "list", "--format", "json")
    assert result.exit_code == 5  # not 2: the folders that do not fit 1x2 are reported one by one
    assert "users/us/er/-77: unusable user folder" in result.stderr
    assert "cannot tell the layout" not in result.stderr
    assert [r["user"] for r in json.loads(result.stdout)] == ["al", "x"]  # al/al and x/x are where 1x2 keeps them too


# --- nesting: a user's folder can hold another user's ------------------------------------------

NESTED = ["ab", "abab", "user", "user-1000", "bob", "bobby"]


def _nested_journal(root: Path) -> Journal:
    journal = _journal(root, archiveThreshold="0")
    for user in NESTED:
        old = user in ("ab", "user", "bob")
        journal.append(user, [_msg(f"hello from {user}", "2020-01-01T00:00:00.000Z" if old else "2099-01-01T00:00:00.000Z")])
        journal.archive(user)
        journal.append(user, [_msg(f"again {user}", "2020-01-02T00:00:00.000Z" if old else "2099-01-02T00:00:00.000Z")])
    assert (root / "users/ab/ab/dialogs").is_dir() and (root / "users/ab/ab/abab/dialogs").is_dir()
    assert (root / "users/us/er/user/dialogs").is_dir() and (root / "users/us/er/-1000/dialogs").is_dir()
    # A copy repair kept of each user's current conversation.
    for user in NESTED:
        folder = "/".join(("users", *journal.layout().user_parts(user)))
        quarantined = root / "system/quarantine/run-1" / folder / "dialogs/current.yaml"
        quarantined.parent.mkdir(parents=True, exist_ok=True)
        quarantined.write_text(f"old bytes of {user}")
    return journal


def _of(files: dict[str, bytes], journal: Journal, user: str) -> dict[str, bytes]:
    folder = "/".join(journal.layout().user_parts(user))
    others = ["/".join(journal.layout().user_parts(u)) for u in NESTED if u != user]
    own = {}
    for rel, data in files.items():
        below = rel.split("users/", 1)[-1] if "users/" in rel else None
        if below is None or not below.startswith(folder + "/"):
            continue
        if any(below.startswith(o + "/") and len(o) > len(folder) for o in others):
            continue  # inside a nested user's folder
        own[rel] = data
    return own


def test_walkers_find_users_nested_in_other_users_folders(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    _nested_journal(root)
    assert sorted(r["user"] for r in cli.json("--root", str(root), "list", "--format", "json")) == sorted(NESTED)
    from dialogctl.maintenance.verify import verify

    report = verify(_journal(root))
    assert report.users == len(NESTED)
    assert not report.problems


@pytest.mark.parametrize("user", NESTED)
def test_rm_of_one_user_never_touches_another_users_files(user: str, tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _nested_journal(root)
    before = _files(root)
    planned = cli.json("--root", str(root), "rm", user, "--all-data", "--dry-run", "--format", "json")
    listed = set(planned["files"] if isinstance(planned, dict) else planned[0]["files"])
    theirs = {rel for u in NESTED if u != user for rel in _of(before, journal, u)}
    assert not listed & theirs, sorted(listed & theirs)
    assert cli("--root", str(root), "rm", user, "--all-data", "--yes").exit_code == 0
    after = _files(root)
    for other in NESTED:
        if other != user:
            assert _of(after, journal, other) == _of(before, journal, other), other
    assert _of(after, journal, user) == {}
    assert sorted(_journal(root).users()) == sorted(u for u in NESTED if u != user)


def test_cleanup_of_idle_users_never_touches_nested_users(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _nested_journal(root)
    before = _files(root)
    result = cli("--root", str(root), "cleanup", "--max-inactive", "30d", "--yes")
    assert result.exit_code == 0, result.stderr
    assert sorted(_journal(root).users()) == ["abab", "bobby", "user-1000"]
    after = _files(root)
    for other in ("abab", "bobby", "user-1000"):
        assert _of(after, journal, other) == _of(before, journal, other), other


# --- journals an older dialogctl wrote: short ids in the old place ---------------------------------


def _old_place(root: Path, user: str = "bob") -> tuple[Path, Path]:
    """Move a user's dialogs/ and metadata.yaml where dialogctl before 0.2 put them (users/bo/b/ for bob)."""
    new = root.joinpath("users", *Layout().user_parts(user))
    old = new.parent
    os.rename(new / "dialogs", old / "dialogs")
    if (new / "metadata.yaml").exists():
        os.rename(new / "metadata.yaml", old / "metadata.yaml")
    new.rmdir()
    return old, new


def test_verify_explains_a_folder_in_the_old_place_and_repair_moves_it(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-short-ids", tmp_path)  # no layout record: detection must see through the old folder
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    original = _files(root)
    old, new = _old_place(root)

    listed = cli("--root", str(root), "list", "--format", "json")
    assert listed.exit_code == 5 and "bob" not in [r["user"] for r in json.loads(listed.stdout)]
    assert "users/bo/b: unusable user folder" in listed.stderr and "before 0.2" in listed.stderr and "repair" in listed.stderr

    findings = cli("--root", str(root), "verify", "--format", "json")
    assert findings.exit_code == 1
    found = [f for f in json.loads(findings.stdout) if f["path"] == "users/bo/b"]
    assert len(found) == 1
    assert found[0]["problem"] == "user folder in the place dialogctl before 0.2 used"
    assert found[0]["user"] == "bob" and found[0]["repair"] == "move it to users/bo/b/bob/"

    before = _tree(root)
    dry = cli("--root", str(root), "repair", "--dry-run", "--format", "json")
    assert _tree(root) == before  # not even a lock file
    assert any(a["action"] == "move" and a["path"] == "users/bo/b" for a in json.loads(dry.stdout))

    done = cli("--root", str(root), "repair", "--format", "json")
    assert any(a["action"] == "move" and a["path"] == "users/bo/b" for a in json.loads(done.stdout)), done.stderr
    assert not (old / "dialogs").exists()
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE(old.stat().st_mode)
    assert {k: v for k, v in _files(root).items() if k.startswith("users/")} == original  # exactly the servers' tree again
    assert sorted(r["user"] for r in cli.json("--root", str(root), "list", "--format", "json")) == SHORT_IDS
    again = cli("--root", str(root), "verify", "--format", "json")
    assert not [f for f in json.loads(again.stdout or "[]") if f["path"].startswith("users/bo/b") and f["problem"] != "timestamps out of order"]


def test_the_move_takes_metadata_and_the_parents_mode_and_appends_go_where_the_servers_look(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root)
    journal.append("bob", [_msg("one")])
    journal.archive("bob", archive_id="a1")
    journal.append("bob", [_msg("two")])
    journal.append("user-1006", [_msg("long")])
    old, new = _old_place(root)
    assert (old / "metadata.yaml").is_file() and (old / "dialogs/archived/a1.yaml").is_file()
    old.chmod(0o750)
    assert journal.move_from_old_place("bob") is True
    assert (new / "metadata.yaml").is_file() and not (old / "metadata.yaml").exists()
    assert (new / "dialogs/archived/a1.yaml").is_file() and (new / "dialogs/current.yaml").is_file()
    assert stat.S_IMODE(new.stat().st_mode) == 0o750  # the mode of the folder it was made in
    with pytest.raises(NotFound):
        journal.move_from_old_place("bob")  # nothing left to move
    assert cli("--root", str(root), "append", "bob", "three").exit_code == 0
    assert [m["content"] for m in cli.jsonl("--root", str(root), "show", "bob", "--format", "jsonl")] == ["two", "three"]
    assert json.loads((new / "metadata.yaml").read_text())["totalMessages"] == 3


def test_repair_leaves_both_folders_alone_when_the_new_one_exists_too(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root)
    journal.append("bob", [_msg("old place")])
    old, new = _old_place(root)
    journal = _journal(root)
    journal.append("bob", [_msg("new place")])  # a dialogctl 0.2 wrote since, where the servers look
    before = _files(root)
    findings = json.loads(cli("--root", str(root), "verify", "--format", "json").stdout)
    found = [f for f in findings if f["path"] == "users/bo/b"]
    assert found and found[0]["repair"] is None and "merge" in found[0]["detail"]
    result = cli("--root", str(root), "repair")
    assert result.exit_code == 1 and "users/bo/b" in result.stderr
    assert _files(root) == before


def test_repair_of_a_metadata_temp_file_in_a_folder_no_user_owns_does_not_wait_for_a_users_lock(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "j"
    journal = _journal(root)
    journal.append("bob", [_msg("hi")])
    journal.append("user-1", [_msg("hi")])
    old, _new = _old_place(root)
    stray = root / "users/us/er.old"  # reads as user.old, whom 2x2 keeps in us/er/.old
    (stray / "dialogs").mkdir(parents=True)
    temps = [old / ".metadata.yaml.tmp-1-ab", stray / ".metadata.yaml.tmp-2-cd"]
    for temp in temps:
        temp.write_text("{}")
        os.utime(temp, (1, 1))  # long past: no write can still be at work on it
    result = cli("--root", str(root), "repair", "--format", "json")
    assert result.exit_code == 1, result.stderr  # the unusable folder is left to a person
    assert "users/us/er.old: unusable user folder" in result.stderr
    assert not any(temp.exists() for temp in temps)
    assert len(list((root / "system/quarantine").rglob(".metadata.yaml.tmp-*"))) == 2
