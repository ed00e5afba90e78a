"""What commands print, for each --format, and how they take times, filters and flag combinations."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from ..conftest import Cli, copy_tree, run_exe


@pytest.fixture
def alice(root: Path, cli: Cli) -> Path:
    """alice: six messages over two days, alternating user/assistant."""
    lines = [
        {"role": ["user", "assistant"][i % 2], "content": f"m{i}", "timestamp": f"2024-01-{15 + i // 3}T10:0{i}:00.000Z", "metadata": {"tokens": i}}
        for i in range(6)
    ]
    assert cli("append", "alice", "--jsonl", input="".join(json.dumps(line) + "\n" for line in lines)).exit_code == 0
    return root


# --- show: filters, tail, indexes ----------------------------------------------------------


def test_show_filters_keep_the_indexes_of_the_whole_conversation(alice: Path, cli: Cli) -> None:
    def shown(*args: str) -> list[tuple[int, str]]:
        return [(m["index"], m["content"]) for m in cli.json("show", "alice", "--format", "json", *args)["messages"]]

    assert shown("--role", "assistant") == [(1, "m1"), (3, "m3"), (5, "m5")]
    assert shown("--since", "2024-01-16") == [(3, "m3"), (4, "m4"), (5, "m5")]
    assert shown("--until", "2024-01-15T10:02:00Z") == [(0, "m0"), (1, "m1")]
    assert shown("--since", "2024-01-15T11:00:00+01:00", "--until", "2024-01-16T10:04:00Z") == [(0, "m0"), (1, "m1"), (2, "m2"), (3, "m3")]
    assert shown("--role", "user", "--tail", "2") == [(2, "m2"), (4, "m4")]  # the last two of those kept
    assert shown("--tail", "0") == []
    assert cli.json("show", "alice", "--format", "json", "--tail", "1")["messageCount"] == 6
    records = cli.jsonl("show", "alice", "--format", "jsonl", "--role", "assistant", "--tail", "1")
    assert [(r["user"], r["conversation"], r["archived"], r["index"]) for r in records] == [("alice", "current", False, 5)]
    text = cli("show", "alice", "--role", "assistant")
    assert [line.split()[0] for line in text.stdout.splitlines() if line.startswith("[")] == ["[1]", "[3]", "[5]"]


def test_show_transcript_clocks(alice: Path, cli: Cli) -> None:
    utc = cli("show", "alice", "--tail", "1").stdout
    assert "[5] assistant  2024-01-16 10:05:00 UTC  5 tokens" in utc
    assert cli("show", "alice", "--tail", "1", "--utc").stdout == utc
    local = run_exe("show", "alice", "--tail", "1", "--local", env={"TZ": "Asia/Kolkata"}).stdout  # a new process reads TZ
    assert "2024-01-16 15:35:00 IST" in local
    heading = utc.splitlines()[0]
    assert heading == "alice · current"


def test_show_markdown_renders_the_text(root: Path, cli: Cli) -> None:
    cli("append", "bob", "# Title\n\nSome **bold** text and `code`.\n\n- one\n- two\n")
    plain = cli("show", "bob").stdout
    assert "# Title" in plain and "**bold**" in plain
    rendered = cli("show", "bob", "--markdown").stdout
    assert "**" not in rendered and "Title" in rendered and "bold" in rendered and "• one" in rendered
    assert all(line == line.rstrip() for line in rendered.splitlines())  # no padding to the layout width in a file


def test_verbose_and_dry_run_print_the_resolved_times(alice: Path, cli: Cli) -> None:
    shown = cli("-v", "show", "alice", "--since", "2 days ago", "--until", "now", "--format", "json")
    assert shown.exit_code == 0
    said = shown.stderr.splitlines()
    assert said[0].startswith("dialogctl: --since 2 days ago resolves to 20") and said[0].endswith("Z")
    assert said[1].startswith("dialogctl: --until now resolves to 20")
    assert cli("show", "alice", "--since", "2 days ago").stderr.count("resolves") == 0  # not without -v
    plan = cli("cleanup", "--max-age", "30d", "--dry-run")
    assert "cut-off times: max age 20" in plan.stderr and "max inactive not set" in plan.stderr and "retention 20" in plan.stderr
    quiet = cli("-q", "cleanup", "--max-age", "30d", "--dry-run")
    assert quiet.stderr == ""
    cutoffs = cli.json("cleanup", "--max-age", "30d", "--dry-run", "--format", "json")["cutoffs"]
    assert set(cutoffs) == {"maxAge", "maxInactive", "retention", "maxConversations"} and cutoffs["maxInactive"] is None
    assert cutoffs["maxConversations"] == 50  # maxConversationsPerUser's default


@pytest.mark.parametrize(
    "args",
    [
        ["append", "alice", "x", "--timestamp", "12"],
        ["show", "alice", "--since", "30"],
        ["show", "alice", "--until", "5 fortnights"],
        ["show", "alice", "--since", "3 light years ago"],
        ["show", "alice", "--since", "2024-13-45"],
        ["cleanup", "--max-age", "30", "--dry-run"],
        ["cleanup", "--max-inactive", "6 months", "--dry-run"],
    ],
)
def test_time_specs_without_a_known_unit_are_usage_errors_naming_the_forms(alice: Path, cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert "30s, 15m, 12h, 7d, 2w" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "spec", ["2024-01-15", "2024-01-15T10:30:00Z", "2024-01-15T12:30:00+02:00", "30s", "15m", "12h", "7d", "2w", "3 days ago", "yesterday", "today", "now"]
)
def test_every_documented_time_form_is_accepted(alice: Path, cli: Cli, spec: str) -> None:
    assert cli("show", "alice", "--since", spec, "--format", "json").exit_code == 0


# --- formats: every command, every format, empty results ------------------------------------


def _unescape(field: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[m.group(1)], field)


def read_tsv(text: str) -> list[dict[str, str]]:
    """TSV as IANA's text/tab-separated-values: a record per line, fields split at tabs, then unescaped."""
    assert text.endswith("\n") or not text
    lines = [line.split("\t") for line in text[:-1].split("\n")] if text else []
    assert all(len(line) == len(lines[0]) for line in lines)
    return [dict(zip([_unescape(f) for f in lines[0]], [_unescape(f) for f in line], strict=True)) for line in lines[1:]]


@pytest.mark.parametrize(
    "args",
    [["list"], ["list", "alice"], ["locks"], ["config"], ["show", "alice"], ["cleanup", "--max-age", "1d", "--dry-run"], ["append", "alice", "x"]],
)
def test_each_format_has_its_shape(alice: Path, cli: Cli, args: list[str]) -> None:
    as_json = cli.json(*args, "--format", "json")
    jsonl = [json.loads(line) for line in cli(*args, "--format", "jsonl").stdout.splitlines()]
    rows = list(csv.DictReader(io.StringIO(cli(*args, "--format", "csv").stdout)))
    tsv = read_tsv(cli(*args, "--format", "tsv").stdout)
    records = as_json["messages"] if args[0] == "show" else as_json["actions"] if args[0] == "cleanup" else as_json
    assert isinstance(records, list) and records
    assert len(jsonl) == len(rows) == len(tsv) == len(records)
    assert list(rows[0]) == list(tsv[0]) and set(rows[0]) <= set(jsonl[0])
    assert [str(r[list(rows[0])[0]]) for r in jsonl] == [r[list(rows[0])[0]] for r in rows]
    if args[0] == "show":
        assert {"user", "conversation", "archived", "index"} <= set(jsonl[0])  # every record says where it came from


def test_empty_results_in_every_format(root: Path, cli: Cli) -> None:
    cli("append", "alice", "hi")
    cli("archive", "alice")
    cases = [["locks", "--held"], ["show", "alice"], ["show", "alice", "--role", "tool"], ["cleanup", "--max-age", "9999d", "--dry-run"]]
    for args in cases:
        empty_json = cli(*args, "--format", "json")
        assert empty_json.exit_code == 0, (args, empty_json.stderr)
        parsed = json.loads(empty_json.stdout)
        assert (parsed.get("messages", parsed.get("actions")) if isinstance(parsed, dict) else parsed) == [], args
        assert cli(*args, "--format", "jsonl").stdout == "", args
        header = cli(*args, "--format", "csv").stdout
        assert header.count("\n") == 1 and "," in header, args
        table = cli(*args)
        assert table.exit_code == 0 and table.stdout == "", args


def test_stats_is_one_object(alice: Path, cli: Cli) -> None:
    one = cli.json("stats", "--format", "json")
    line = cli("stats", "--format", "jsonl").stdout
    assert line.count("\n") == 1 and json.loads(line) == one
    for fmt in ("csv", "tsv"):
        refused = cli("stats", "--format", fmt)
        assert refused.exit_code == 2 and refused.stdout == ""
        assert f"'stats' prints one object, which --format {fmt} cannot carry" in refused.stderr


def test_append_and_restore_print_only_when_asked(root: Path, cli: Cli) -> None:
    assert cli("append", "alice", "one").stdout == ""
    table = cli("append", "alice", "two", "--format", "table").stdout
    assert table.splitlines()[0].split() == ["User", "Conversation", "Outcome", "Appended", "Messages", "now", "Archived"]
    assert table.splitlines()[1].split()[:5] == ["alice", "current", "committed", "1", "2"]
    archived = cli("archive", "alice").stdout.strip()
    assert cli("restore", "alice", archived).stdout == ""
    assert cli("restore", "alice", archived, "--format", "table").exit_code == 3  # already restored: gone from archived/
    assert cli("archive", "alice", "--format", "csv").stdout.startswith("user,archive\nalice,")


def test_cleanup_from_cron_prints_nothing_on_stdout(alice: Path, cli: Cli) -> None:
    run = cli("cleanup", "--max-age", "1d", "--yes")
    assert run.exit_code == 0 and run.stdout == ""
    assert run.stderr.startswith("dialogctl: removed 0 users, 0 archives and 6 messages (1 files trimmed), freeing ")
    assert run.stderr.count("\n") == 1  # no plan, no question: one line for the log mail
    assert cli("-q", "cleanup", "--max-age", "1d", "--yes").stderr == ""
    assert cli("show", "alice", "--format", "jsonl").stdout == ""


# --- flag combinations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-q", "-v", "list"],
        ["show", "alice", "--utc", "--local"],
        ["show", "alice", "--markdown", "--format", "json"],
        ["show", "alice", "--local", "--format", "csv"],
        ["show", "alice", "--tail", "-1"],
        ["show", "alice", "--since", "now", "--until", "yesterday"],
        ["show", "alice", "--role", "robot"],
        ["show", "alice", "--format", "xml"],
        ["cleanup", "--max-age", "1d", "--format", "json"],
        ["--layout", "spiral", "list"],
        ["--layout", "flat", "--shard-size", "3", "list"],
        ["--root", "/etc/passwd", "list"],
        ["list", "alice", "bob"],
    ],
)
def test_invalid_combinations_are_usage_errors(alice: Path, cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("dialogctl: ") and all(line.startswith("dialogctl: hint: ") for line in lines[1:])


def test_usage_errors_name_the_help_to_read(cli: Cli) -> None:
    result = cli("show", "--bogus")
    assert result.stderr == "dialogctl: no such option: --bogus\ndialogctl: hint: see 'dialogctl show --help'\n"
    bare = run_exe()
    assert bare.returncode == 2 and bare.stdout == "" and bare.stderr.startswith("Usage: dialogctl [OPTIONS] COMMAND")


# --- progress bars ----------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("quiet", "tty", "drawn"), [(False, True, True), (True, True, False), (False, False, False)])
def test_progress_bar_only_on_a_terminal_and_never_with_quiet(monkeypatch: pytest.MonkeyPatch, quiet: bool, tty: bool, drawn: bool) -> None:
    import sys

    from dialogctl.cli import progress
    from dialogctl.cli.state import CliState

    stderr = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    with progress.ProgressBar(CliState(color="never", quiet=quiet), "Reading users", total=3) as bar:
        assert list(bar.track(["a", "b", "c"])) == ["a", "b", "c"]
        bar.update(2, 5)
        assert bar.done == 2 and bar.total == 5
    assert ("Reading users" in stderr.getvalue()) is drawn


def test_progress_waits_before_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from dialogctl.cli import progress
    from dialogctl.cli.state import CliState

    stderr = _Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    with progress.ProgressBar(CliState(), "Quick", total=2) as bar:
        list(bar.track([1, 2]))
    assert stderr.getvalue() == ""  # done before DELAY: nothing flickered


# --- completion answers --------------------------------------------------------------------------


def _complete(*words: str, shell: str = "bash", env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    result = run_exe(*words, env={"_DIALOGCTL_COMPLETE": shell, **(env or {})})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [(line.split("\t")[0], line.split("\t")[1]) for line in result.stdout.splitlines()]


def test_completion_answers_and_writes_nothing(tmp_path: Path) -> None:
    root = copy_tree("v3-sessions", tmp_path)
    env = {"DIALOGUE_JOURNAL_ROOT": str(root)}
    before = sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*"))
    users = [value for _, value in _complete("show", "", env=env)]
    assert users == sorted(users) and len(users) == 8
    first = users[0]
    assert [v for _, v in _complete("show", first[:-1], env=env)] == [u for u in users if u.startswith(first[:-1])]
    archives = [v for _, v in _complete("show", first, "--archive", "", env=env)]
    sessions = [v for _, v in _complete("show", first, "--conversation", "", env=env)]
    listed = json.loads(run_exe("list", first, "--format", "json", env=env).stdout)
    assert archives == [c["conversation"] for c in listed if c["kind"] == "archive"] and archives
    assert sessions == ["current"] + [c["conversation"] for c in listed if c["kind"] == "session"]
    assert _complete("--root", "", env=env) == [("dir", "")]
    assert _complete("--config", "po", env=env) == [("file", "po")]
    assert _complete("show", "--format=c", shell="zsh", env=env) == [("plain", "--format=csv")]
    assert _complete("show", "--format=c", shell="bash", env=env) == [("plain", "csv")]
    assert _complete("--root", str(tmp_path / "nowhere"), "show", "", env=env) == []
    assert sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    assert not (tmp_path / "nowhere").exists()


def test_users_by_prefix_enter_only_matching_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogctl.disk.layout import iter_user_folders

    root = copy_tree("v1-sharded", tmp_path)
    every = ["".join(parts) for parts in iter_user_folders(str(root))]
    assert len(every) == 12
    for prefix in ("", "u", "user-", "user-100", "user-1011", "user-10110", "x"):
        assert sorted("".join(p) for p in iter_user_folders(str(root), prefix=prefix)) == sorted(u for u in every if u.startswith(prefix))
    entered: list[str] = []
    real = os.scandir

    def spy(path: str) -> object:
        entered.append(str(path))
        return real(path)

    import dialogctl.disk.layout as layout

    monkeypatch.setattr(layout.os, "scandir", spy)
    list(iter_user_folders(str(root), prefix="user-101"))
    assert not any(path.endswith(("-1000", "-1001", "-1002")) for path in entered)


@pytest.mark.parametrize("fmt", [None, "json", "jsonl", "csv", "tsv"])
def test_archive_idle_prints_the_rows_of_its_dry_run_with_the_outcome(alice: Path, cli: Cli, fmt: str | None) -> None:
    args = ["archive", "--idle", "1m", "--all", *(["--format", fmt] if fmt else [])]
    planned = cli(*args, "--dry-run")
    done = cli(*args)
    assert planned.exit_code == done.exit_code == 0, done.stderr
    [archive_id] = [c["conversation"] for c in cli.json("list", "alice", "--format", "json") if c["kind"] == "archive"]  # the sweep's
    if fmt in ("json", "jsonl"):
        rows = json.loads(done.stdout) if fmt == "json" else [json.loads(line) for line in done.stdout.splitlines()]
        plan = json.loads(planned.stdout) if fmt == "json" else [json.loads(line) for line in planned.stdout.splitlines()]
        assert [set(row) for row in rows] == [set(row) for row in plan]
        assert [(r["user"], r["conversation"], r["messages"], r["archive"], r["note"]) for r in rows] == [("alice", "current", 6, archive_id, "archived")]
        return
    lines, plan_lines = done.stdout.splitlines(), planned.stdout.splitlines()
    assert lines[0].split() == plan_lines[0].split() and len(lines) == len(plan_lines) == 2  # the same heading, one row each
    separator = "\t" if fmt == "tsv" else "," if fmt == "csv" else None
    heading, row = lines[0].split(separator), lines[1].split(separator)
    if fmt is None:
        assert heading == ["User", "Conversation", "Last", "message", "Messages", "Archive", "Outcome"]
        assert row[:2] == ["alice", "current"] and row[-2:] == [archive_id, "archived"]
    else:
        assert heading == ["user", "conversation", "lastMessage", "messages", "archive", "note"]
        assert row == ["alice", "current", "2024-01-16T10:05:00.000Z", "6", archive_id, "archived"]


TRICKY = "tab\there\nnew line\r\ncr lf, back\\slash \\t not a tab, \"quoted\" and 'single'"


def test_tsv_is_one_line_per_record_without_quoting(root: Path, cli: Cli) -> None:
    assert cli("append", "alice", "--jsonl", input=json.dumps({"role": "user", "content": TRICKY, "metadata": {"k": "a\tb"}}) + "\n").exit_code == 0
    assert cli("append", "alice", "plain").exit_code == 0
    out = cli("show", "alice", "--format", "tsv").stdout
    lines = out.split("\n")
    assert len(lines) == 4 and lines[-1] == ""  # heading, two records, the final newline
    assert all(line.count("\t") == 7 for line in lines[:-1])  # what awk -F'\t' sees: eight fields on every line
    assert '"' not in lines[0] and lines[1].split("\t")[6] == "tab\\there\\nnew line\\r\\ncr lf, back\\\\slash \\\\t not a tab, \"quoted\" and 'single'"
    records = read_tsv(out)
    assert [r["content"] for r in records] == [TRICKY, "plain"]
    assert json.loads(records[0]["metadata"]) == {"k": "a\tb"} and records[0]["archived"] == "false"
    assert read_tsv(cli("list", "--format", "tsv").stdout)[0]["user"] == "alice"
    followed = cli("follow", "alice", "--since", "2000-01-01", "--count", "2", "--format", "tsv").stdout
    assert [r["content"] for r in read_tsv(followed)] == [TRICKY, "plain"]
