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

from dialogctl.config import load_settings
from dialogctl.errors import InvalidUserId, LayoutError
from dialogctl.journal import Journal
from dialogctl.layout import Layout, detect_layout, iter_user_folders, user_id_from_parts
from dialogctl.models import Message

from . import reference_writer as server
from .conftest import FIXTURES, Cli, copy_tree

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
    return Journal(load_settings({"root": str(root), **values}))


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
    from dialogctl.verify import verify

    report = verify(_journal(root))
    assert report.users == len(NESTED)
    assert not [f for f in report.findings if f.problem not in ("too open",)]


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
