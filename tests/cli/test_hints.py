"""Usage errors that guide: "did you mean", and the ``--`` convention for text that starts with '-'."""

from __future__ import annotations

from pathlib import Path

from ..conftest import Cli
from ..terminal import run_tty


def test_an_unknown_command_suggests_the_closest(cli: Cli) -> None:
    result = cli("lst")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0] == "dialogctl: no such command 'lst'; did you mean 'list'?"
    assert cli("verfy").stderr.splitlines()[0] == "dialogctl: no such command 'verfy'; did you mean 'verify'?"
    far = cli("xyzzy")
    assert far.exit_code == 2 and far.stderr.splitlines()[0] == "dialogctl: no such command 'xyzzy'"


def test_an_unknown_option_suggests_the_closest(cli: Cli) -> None:
    result = cli("list", "--fromat", "json")
    assert result.exit_code == 2
    assert result.stderr == "dialogctl: no such option: --fromat; did you mean '--format'?\ndialogctl: hint: see 'dialogctl list --help'\n"
    root_level = cli("--roo", "x", "list")
    assert root_level.exit_code == 2 and "did you mean '--root'" in root_level.stderr.splitlines()[0]


def test_an_unknown_option_of_append_never_echoes_what_may_be_the_message(root: Path, cli: Cli) -> None:
    for text in ("--secret-token=abc123", "--secret-token", "- call mom", "-abc123"):
        result = cli("append", "alice", text)
        assert result.exit_code == 2, text
        assert "secret" not in result.stderr and "abc123" not in result.stderr and "call mom" not in result.stderr
        first, hint = result.stderr.splitlines()
        assert first.startswith("dialogctl: unknown option")
        assert hint.startswith("dialogctl: hint: text that starts with '-' goes after --") and "append alice -- '- buy milk'" in hint
    assert not root.exists() or cli("list", "--format", "json").stdout == "[]\n"  # nothing was appended
    typo = cli("append", "alice", "--rol", "assistant", "hi")
    assert typo.exit_code == 2 and "did you mean '--role'" in typo.stderr


def test_search_patterns_get_the_same_care(root: Path, cli: Cli) -> None:
    result = cli("search", "--password=hunter2")
    assert result.exit_code == 2 and "hunter2" not in result.stderr and "password" not in result.stderr
    assert "search -- '-v'" in result.stderr


def test_double_dash_ends_the_options(root: Path, cli: Cli) -> None:
    assert cli("append", "alice", "--", "- buy milk").exit_code == 0
    assert cli("append", "alice", "--", "--secret-token=abc123").exit_code == 0
    contents = [m["content"] for m in cli.jsonl("export", "alice", "--format", "jsonl")]
    assert contents == ["- buy milk", "--secret-token=abc123"]


def test_append_help_documents_the_double_dash(cli: Cli) -> None:
    help_text = cli("append", "--help").stdout
    assert "Use -- before a message that starts with -" in help_text
    assert "dialogctl append alice -- '- buy milk'" in help_text


def test_the_suggestion_on_a_terminal_at_80_columns(tmp_path: Path) -> None:
    result = run_tty("lst", cols=80, env={"DIALOGUE_JOURNAL_ROOT": str(tmp_path / "j")})
    assert result.returncode == 2
    assert "did you mean 'list'?" in result.output


def test_extra_words_of_an_unquoted_message_are_not_echoed(root: Path, cli: Cli) -> None:
    result = cli("append", "alice", "hello", "my", "pin", "is", "4711")
    assert result.exit_code == 2
    assert "4711" not in result.stderr and "pin" not in result.stderr
    assert result.stderr.splitlines()[0] == "dialogctl: too many arguments: the message is one argument (TEXT)"
    assert 'quote the message: dialogctl append alice "Hello there"' in result.stderr
