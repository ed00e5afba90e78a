"""Start-up: what a command imports and builds before it runs (scripts call dialogctl once per message).

Each guard here fails if an import or a build that was taken off a path
comes back; bench/startup.py measures the time itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

from dialogctl.cli.app import COMMANDS, app


@pytest.mark.parametrize("width", [50, 80, 120])
def test_help_lists_the_commands_as_typer_does_without_building_them(width: int) -> None:
    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="dialogctl", terminal_width=width, max_content_width=100)
    ours = ctx.make_formatter()
    group.format_commands(ctx, ours)
    assert group.commands == {}  # no command built: their docstrings were enough
    typers = ctx.make_formatter()
    TyperGroup.format_commands(group, ctx, typers)  # builds every command and asks it
    assert len(group.commands) == len(COMMANDS)
    assert ours.getvalue() == typers.getvalue()


@pytest.mark.parametrize("incomplete", ["", "s", "re", "x", "-", "--"])
def test_completing_a_command_name_answers_as_typer_does_without_building_the_commands(incomplete: str) -> None:
    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="dialogctl", resilient_parsing=True)
    ours = [(item.value, item.type, item.help) for item in group.shell_complete(ctx, incomplete)]
    assert group.commands == {}
    typers = [(item.value, item.type, item.help) for item in TyperGroup.shell_complete(group, ctx, incomplete)]
    assert ours == typers


def _imported_by(argv: list[str], modules: tuple[str, ...]) -> list[str]:
    code = (
        "import sys\n"
        "from dialogctl.cli.app import app\n"
        "try:\n"
        "    app(sys.argv[2:], prog_name='dialogctl')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('imported:' + ','.join(m for m in sys.argv[1].split(',') if m in sys.modules), file=sys.__stderr__)"
    )
    out = subprocess.run([sys.executable, "-c", code, ",".join(modules), *argv], capture_output=True, text=True, check=True)
    told = [line for line in out.stderr.splitlines() if line.startswith("imported:")]
    assert len(told) == 1, out.stderr
    return [m for m in told[0].removeprefix("imported:").split(",") if m]


def test_stats_in_a_pipe_imports_no_rich_table_console_or_yaml(tmp_path: Path) -> None:
    """A pipe gets stats as plain aligned text: Rich's table and console (~20 ms of imports) are for terminals."""
    root = str(tmp_path / "j")
    subprocess.run([sys.executable, "-m", "dialogctl", "--root", root, "append", "alice", "hi"], check=True, capture_output=True)
    for _ in range(2):  # the first builds the catalog, the second reads it
        found = _imported_by(["--root", root, "stats"], ("rich.table", "rich.console", "rich.text", "ruamel.yaml", "portalocker", "importlib.metadata"))
    assert found == []


def test_help_imports_no_rich_and_no_yaml() -> None:
    assert _imported_by(["--help"], ("rich", "ruamel.yaml", "portalocker")) == []


def test_command_modules_have_real_annotations() -> None:
    """Typer evaluates a string annotation on every build of the command (three times per run): see dialogctl.cli.commands."""
    folder = Path(__file__).resolve().parents[2] / "dialogctl" / "cli" / "commands"
    lazy = [
        path.name
        for path in sorted(folder.glob("*.py"))
        if any(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in ast.parse(path.read_text(encoding="utf-8")).body)
    ]
    assert lazy == []
