"""``stats`` analytics and ``system/stats.yaml``, checked against counts made here from the messages themselves.

The journal below mixes every form of token count (an integer, a mapping with
total, prompt + completion or input + output) with the junk the reference
implementation wrote, several models, days on both sides of ISO week and year
boundaries, an offset timestamp that falls on another UTC day, and an archive.
The expected figures are computed in :func:`expected` by plain loops over the
messages, independently of the catalog.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from dialogctl import Journal
from dialogctl.cli.render import SPARKS
from dialogctl.journal import catalog
from dialogctl.models import Message

from ..conftest import Cli, copy_tree, run_exe
from ..terminal import run_tty

SGR = re.compile(r"\x1b\[[0-9;]*m")

# (tokens value as written, the count it records or None)
TOKEN_FORMS: list[tuple[Any, int | None]] = [
    (120, 120),
    ({"prompt": 10, "completion": 32, "total": 42}, 42),
    ({"prompt": 7, "completion": 8}, 15),
    ({"input": 3, "output": 4, "cached": 100}, 7),
    ("[object Object]", None),
    (-5, None),
    (True, None),
    ("12", None),
    ({"prompt": 1}, None),
    (0, 0),
]
DAYS = ["2024-12-29", "2024-12-30", "2025-01-02", "2025-01-06", "2021-01-03"]


def _conversation(user_no: int, length: int, day_shift: int) -> list[Message]:
    out = []
    for i in range(length):
        day = DAYS[(i + day_shift) % len(DAYS)]
        stamp = f"{day}T{(i * 7 + user_no) % 24:02d}:{i % 60:02d}:00.000Z"
        if i % 2 == 0:
            out.append(Message("user", f"question {i}", stamp))
            continue
        tokens, _ = TOKEN_FORMS[(i // 2 + user_no) % len(TOKEN_FORMS)]
        meta: dict[str, Any] = {"tokens": tokens}
        if i % 5 != 1:
            meta["model"] = ["gpt-4", "claude-3", "llama-3"][(i + user_no) % 3]
        out.append(Message("assistant", f"answer {i}", stamp, meta))
    return out


def build(root: Path) -> tuple[Journal, dict[str, list[list[Message]]]]:
    """A journal with archives; returns it and, per user, the messages of each conversation."""
    journal = Journal.open(str(root), archiveThreshold="0")
    written: dict[str, list[list[Message]]] = {}
    for n, (user, sizes) in enumerate({"alice": [9, 23], "bob": [31], "carol": [4, 6, 2], "dave": [17]}.items()):
        written[user] = []
        for k, size in enumerate(sizes):
            messages = _conversation(n, size, k)
            journal.append(user, messages)
            if k < len(sizes) - 1:
                journal.archive(user, archive_id=f"2025-01-0{k + 1}-00-00-00")
            written[user].append(messages)
    # A timestamp with an offset: 01:30 at +05:00 is still the previous UTC day.
    late = Message("assistant", "late", "2025-01-06T01:30:00+05:00", {"model": "gpt-4", "tokens": 120})
    journal.append("dave", [late])
    written["dave"][-1].append(late)
    # A user whose messages carry no metadata at all.
    plain = [Message("user", f"hi {i}", f"2025-01-02T0{i}:00:00.000Z") for i in range(3)]
    journal.append("erin", plain)
    written["erin"] = [plain]
    return journal, written


def _day(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(UTC).date().isoformat()


def _week(day: str) -> str:
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _count(tokens: Any) -> int | None:
    for value, count in TOKEN_FORMS:
        if type(value) is type(tokens) and value == tokens:
            return count
    raise AssertionError(tokens)


def expected(written: dict[str, list[list[Message]]]) -> dict[str, Any]:
    """Every analytics figure, counted the plain way from the messages."""
    by_model: dict[str, int] = defaultdict(int)
    model_tokens: dict[str, int] = defaultdict(int)
    by_day: dict[str, int] = defaultdict(int)
    day_tokens: dict[str, int] = defaultdict(int)
    reach: dict[str, dict[str, tuple[set[Any], set[str]]]] = {b: defaultdict(lambda: (set(), set())) for b in ("day", "week", "model")}
    users = []
    total_tokens = token_messages = 0
    longest = None
    for user, conversations in written.items():
        u_tokens = u_counted = 0
        for c, messages in enumerate(conversations):
            if longest is None or len(messages) > longest[2]:
                longest = (user, c, len(messages))
            for m in messages:
                day = _day(m.timestamp)
                by_day[day] += 1
                keys = {"day": day, "week": _week(day)}
                count = _count(m.metadata["tokens"]) if m.metadata else None
                model = m.metadata.get("model") if m.metadata else None
                if model:
                    by_model[model] += 1
                    keys["model"] = model
                if count is not None:
                    total_tokens += count
                    token_messages += 1
                    u_tokens += count
                    u_counted += 1
                    day_tokens[day] += count
                    if model:
                        model_tokens[model] += count
                for b, key in keys.items():
                    reach[b][key][0].add((user, c))
                    reach[b][key][1].add(user)
        last = max((m.timestamp for conv in conversations for m in conv), key=lambda s: datetime.fromisoformat(s))
        users.append(
            {
                "user": user,
                "messages": sum(map(len, conversations)),
                "tokens": u_tokens if u_counted else None,
                "conversations": len(conversations),
                "lastActivity": last,
            }
        )
    users.sort(key=lambda u: (-u["messages"], u["user"]))
    weeks: dict[str, list[Any]] = {}
    for day in sorted(by_day):
        row = weeks.setdefault(_week(day), [0, None])
        row[0] += by_day[day]
        if day in day_tokens:
            row[1] = (row[1] or 0) + day_tokens[day]

    def rows(name: str, items: list[tuple[str, int, int | None]]) -> list[dict[str, Any]]:
        return [{name: key, "messages": n, "tokens": t, "conversations": len(reach[name][key][0]), "users": len(reach[name][key][1])} for key, n, t in items]

    conversations = sum(len(c) for c in written.values())
    return {
        "totalTokens": total_tokens,
        "tokenMessages": token_messages,
        "averageTokensPerMessage": round(total_tokens / token_messages, 2),
        "averageTokensPerConversation": round(total_tokens / conversations, 2),
        "averageMessagesPerConversation": round(sum(u["messages"] for u in users) / conversations, 2),
        "messagesByModel": dict(sorted(by_model.items())),
        "tokensByModel": dict(sorted(model_tokens.items())),
        "messagesByDay": dict(sorted(by_day.items())),
        "tokensByDay": dict(sorted(day_tokens.items())),
        "longest": longest,
        "users": users,
        "by": {
            "user": users,
            "day": rows("day", [(d, by_day[d], day_tokens.get(d)) for d in sorted(by_day)]),
            "week": rows("week", [(w, n, t) for w, (n, t) in weeks.items()]),
            "model": rows("model", [(m, n, model_tokens.get(m)) for m, n in sorted(by_model.items(), key=lambda i: (-i[1], i[0]))]),
        },
    }


@pytest.fixture
def journal_root(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    root = tmp_path / "journal"
    _journal, written = build(root)
    return root, expected(written)


def test_stats_json_matches_an_independent_count(journal_root: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    root, want = journal_root
    got = cli.json("--root", str(root), "stats", "--format", "json")
    for key in (
        "totalTokens",
        "tokenMessages",
        "averageTokensPerMessage",
        "averageTokensPerConversation",
        "averageMessagesPerConversation",
        "messagesByModel",
        "tokensByModel",
        "messagesByDay",
        "tokensByDay",
    ):
        assert got[key] == want[key], key
    assert got["totalMessages"] == sum(want["messagesByDay"].values())
    user, index, messages = want["longest"]
    assert got["longestConversation"] == {"user": user, "conversation": "current", "archived": False, "messages": messages}
    assert (user, index) == ("bob", 0)
    assert got["mostActiveUsers"] == want["users"][:10]
    # Every existing key is still there, with its meaning.
    assert {"totalUsers", "totalArchivedConversations", "storageUsage", "oldestMessage", "newestMessage", "lastCleanup", "messagesByRole"} <= set(got)
    assert got["totalUsers"] == 5 and got["totalArchivedConversations"] == 3


def test_the_week_is_the_iso_week(journal_root: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    root, _ = journal_root
    weeks = [row["week"] for row in cli.json("--root", str(root), "stats", "--by", "week", "--format", "json")]
    # 2024-12-29 is in 2024-W52, 2024-12-30 and 2025-01-02 in 2025-W01, 2021-01-03 in 2020-W53.
    assert weeks == ["2020-W53", "2024-W52", "2025-W01", "2025-W02"]


@pytest.mark.parametrize("by", ["day", "week", "model", "user"])
def test_every_breakdown_in_every_format(journal_root: tuple[Path, dict[str, Any]], cli: Cli, by: str) -> None:
    root, want = journal_root
    rows = cli.json("--root", str(root), "stats", "--by", by, "--format", "json")
    assert rows == want["by"][by]
    assert cli.jsonl("--root", str(root), "stats", "--by", by, "--format", "jsonl") == rows
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        result = cli("--root", str(root), "stats", "--by", by, "--format", fmt)
        assert result.exit_code == 0 and result.stderr == ""
        table = list(csv.reader(io.StringIO(result.stdout), delimiter=delimiter))
        assert table[0] == list(rows[0])
        assert table[1:] == [["" if v is None else str(v) for v in row.values()] for row in rows]
    people = cli("--root", str(root), "stats", "--by", by)
    assert people.exit_code == 0
    lines = people.stdout.splitlines()
    assert len(lines) == 1 + len(rows)
    first = rows[0][by]
    assert lines[1].split()[0] == first


def test_top_limits_the_most_active_users(journal_root: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    root, want = journal_root
    assert cli.json("--root", str(root), "stats", "--top", "2", "--format", "json")["mostActiveUsers"] == want["users"][:2]
    assert cli.json("--root", str(root), "stats", "--top", "0", "--format", "json")["mostActiveUsers"] == []
    refused = cli("--root", str(root), "stats", "--top", "-1")
    assert refused.exit_code == 2 and refused.stdout == ""
    refused = cli("--root", str(root), "stats", "--by", "month")
    assert refused.exit_code == 2 and refused.stdout == ""
    refused = cli("--root", str(root), "stats", "--format", "csv")
    assert refused.exit_code == 2 and refused.stdout == "" and "hint: --by day|week|model|user prints rows" in refused.stderr


def test_table_carries_the_new_numbers(journal_root: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    root, want = journal_root
    result = cli("--root", str(root), "stats")
    assert result.exit_code == 0
    text = result.stdout
    assert re.search(rf"Tokens +{want['totalTokens']:,} in {want['tokenMessages']:,} messages with a count", text)
    assert re.search(rf"Tokens per counted message +{want['averageTokensPerMessage']}\n", text)
    for model, count in want["messagesByModel"].items():
        assert re.search(rf"  {model} +{count:,} messages, {want['tokensByModel'][model]:,} tokens", text)
    assert re.search(r"Longest conversation +31 messages in bob / current", text)
    assert re.search(r"  bob +31 messages, [\d,]+ tokens, last 2025-01-\d\d \d\d:\d\d \(", text)
    assert re.search(r"  erin +3 messages, last ", text)  # no count known: no tokens claimed
    assert SPARKS[-1] not in text  # the chart is for terminals only


def test_a_journal_without_token_counts(tmp_path: Path, cli: Cli) -> None:
    root = copy_tree("v1-sharded", tmp_path)  # the reference wrote "[object Object]" for every tokens value
    got = cli.json("--root", str(root), "stats", "--format", "json")
    assert got["totalTokens"] is None and got["tokenMessages"] == 0  # no count behind it: unknown, as per user
    assert json.loads((root / "system" / "stats.yaml").read_text())["totalTokens"] is None
    assert got["averageTokensPerMessage"] is None and got["averageTokensPerConversation"] is None
    assert got["tokensByModel"] == {} and got["tokensByDay"] == {}
    assert got["messagesByModel"] == {"gpt-4": got["messagesByRole"]["assistant"]}
    assert all(u["tokens"] is None for u in got["mostActiveUsers"])
    assert all(row["tokens"] is None for row in cli.json("--root", str(root), "stats", "--by", "model", "--format", "json"))
    assert re.search(r"Tokens +no message carries a token count", cli("--root", str(root), "stats").stdout)


def test_an_empty_journal(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    got = cli.json("--root", str(root), "stats", "--format", "json")
    assert got["totalMessages"] == 0 and got["totalTokens"] is None
    assert got["longestConversation"] is None and got["mostActiveUsers"] == [] and got["messagesByDay"] == {}
    for by in ("day", "week", "model", "user"):
        assert cli("--root", str(root), "stats", "--by", by, "--format", "json").stdout == "[]\n"
        assert cli("--root", str(root), "stats", "--by", by, "--format", "csv").stdout.count("\n") == 1
        people = cli("--root", str(root), "stats", "--by", by)
        assert people.exit_code == 0 and people.stdout == "" and "no messages in the journal" in people.stderr
    # A root that does not exist is not created for stats.yaml.
    missing = tmp_path / "missing"
    assert cli("--root", str(missing), "stats", "--format", "json").exit_code == 0
    assert not missing.exists()


def test_stats_yaml_is_written_and_overwrites_what_was_there(journal_root: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    root, want = journal_root
    target = root / "system" / "stats.yaml"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"totalMessages: 999999\n\x00garbage: [unclosed\n")
    before = datetime.now(UTC)
    got = cli.json("--root", str(root), "stats", "--format", "json")
    saved = YAML(typ="safe", pure=True).load(target.read_text())
    reference = ["totalUsers", "totalMessages", "totalConversations", "averageMessagesPerUser", "storageUsage", "oldestMessage", "newestMessage", "lastCleanup"]
    assert set(reference) <= set(saved)
    assert {k: saved[k] for k in saved if k != "generatedAt"} == {k: got[k] for k in saved if k != "generatedAt"}
    assert saved["totalTokens"] == want["totalTokens"] and saved["tokenMessages"] == want["tokenMessages"]
    assert before <= datetime.fromisoformat(saved["generatedAt"]) <= datetime.now(UTC)
    assert json.loads(target.read_text()) == saved  # JSON, which is YAML
    # Nothing reads it back: a lie in it changes nothing.
    target.write_text(json.dumps({**saved, "totalMessages": 1}))
    assert cli.json("--root", str(root), "stats", "--format", "json")["totalMessages"] == got["totalMessages"]
    assert json.loads(target.read_text())["totalMessages"] == got["totalMessages"]


def test_stats_yaml_never_follows_a_symlink_and_is_never_an_error(journal_root: tuple[Path, dict[str, Any]], tmp_path: Path, cli: Cli) -> None:
    root, _ = journal_root
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me\n")
    target = root / "system" / "stats.yaml"
    target.parent.mkdir(exist_ok=True)
    target.symlink_to(elsewhere)
    assert cli("--root", str(root), "stats").exit_code == 0
    assert elsewhere.read_text() == "keep me\n" and not target.is_symlink()
    # system/ cannot hold it (a file where the folder should be): stats still answers, exit 0.
    for name in os.listdir(root / "system"):
        (root / "system" / name).unlink()
    (root / "system").rmdir()
    (root / "system").write_text("")
    result = cli("--root", str(root), "stats", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["totalUsers"] == 5
    assert "stats.yaml not written" in cli("--root", str(root), "-v", "stats", "--format", "json").stderr


def test_a_catalog_of_the_previous_version_is_rebuilt(journal_root: tuple[Path, dict[str, Any]]) -> None:
    root, want = journal_root
    journal = Journal.open(str(root))
    entries = catalog.scan(journal).entries
    assert catalog.save(journal, entries)
    saved = root / "system" / "catalog.bin"
    saved.write_bytes(saved.read_bytes().replace(catalog.MAGIC, b"dialogctl catalog 1\n", 1))
    assert catalog.load(str(root)) == {}
    assert [p.problem for p in catalog.check(journal)] == ["torn or foreign catalog; it will be rebuilt"]
    assert len(catalog.scan(journal).read) == len(entries)  # every file read again
    list(catalog.summaries(journal))  # and the catalog saved in the new version
    assert catalog.load(str(root)) == entries and catalog.check(journal) == []


def test_the_activity_chart_on_a_terminal(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    journal = Journal.open(str(root), archiveThreshold="0")
    # Activity on 3 days of the last 30 before the newest one, and one long before (outside the chart).
    counts = {"2025-03-01": 8, "2025-03-15": 2, "2025-03-30": 4, "2024-01-01": 50}
    for day, count in counts.items():
        journal.append("alice", [Message("user", f"m{i}", f"{day}T12:00:{i:02d}.000Z") for i in range(count)])
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    screen = SGR.sub("", run_tty("stats", env=env, cols=100).output.replace("\r\n", "\n"))
    assert "Messages per UTC day, 2025-03-01 to 2025-03-30 (busiest: 8 on 2025-03-01)" in screen
    line = next(line for line in screen.splitlines() if line.startswith("2025-03-01 "))
    spark = line[len("2025-03-01 ") : -len(" 2025-03-30")]
    assert line.endswith(" 2025-03-30") and len(spark) == 30
    assert spark[0] == SPARKS[-1] and spark[14] == SPARKS[1] and spark[29] == SPARKS[3]
    assert set(spark) - {" "} == {SPARKS[-1], SPARKS[1], SPARKS[3]} and spark.count(" ") == 27
    # Machine formats on the same terminal carry no chart.
    raw = run_tty("stats", "--format", "json", env=env, stderr_tty=False)
    assert json.loads(raw.output)["messagesByDay"] == dict(sorted(counts.items()))


def test_the_real_executable(journal_root: tuple[Path, dict[str, Any]]) -> None:
    root, want = journal_root
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    done = run_exe("stats", "--by", "week", "--format", "csv", env=env)
    assert done.returncode == 0 and done.stderr == ""
    assert list(csv.DictReader(io.StringIO(done.stdout))) == [{k: "" if v is None else str(v) for k, v in row.items()} for row in want["by"]["week"]]
    done = run_exe("stats", "--format", "jsonl", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["tokensByModel"] == want["tokensByModel"]
    assert json.loads((root / "system" / "stats.yaml").read_text())["totalTokens"] == want["totalTokens"]


def test_save_system_stats_from_the_plain_totals(journal_root: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    """What the lead's cleanup calls: the journal's totals alone, without the analytics."""
    from dialogctl.views.analytics import save_system_stats
    from dialogctl.views.overview import journal_totals

    root, want = journal_root
    journal = Journal.open(str(root))
    assert save_system_stats(journal, journal_totals(journal))
    saved = json.loads((root / "system" / "stats.yaml").read_text())
    got = cli.json("--root", str(root), "stats", "--format", "json")
    assert {k: v for k, v in saved.items() if k != "generatedAt"} == {k: got[k] for k in saved if k != "generatedAt"}
    assert saved["totalTokens"] == want["totalTokens"]
