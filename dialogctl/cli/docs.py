"""The shipped reference files, generated from the Typer app.

``python -m dialogctl.cli.docs`` writes, below the current folder (the
repository root):

* ``docs/cli.md``: every command's ``--help``, exactly as printed at 100 columns;
* ``man/dialogctl.1``: the man page, built from the same commands, options and
  help texts, with the exit codes, environment variables and files;
* ``completions/dialogctl.{bash,zsh,fish}``: the shell completion scripts.

``--check`` writes nothing and exits 1 when a checked-in file differs from
what the app generates now; the test suite runs the same comparison. Nothing
here depends on the date, the terminal or the machine, so the output is the
same everywhere.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import ENV_PREFIX, SPECS
from ..disk.paths import PATHS
from ..errors import EXIT_CODES
from .app import COMMANDS, PROCESS_EXIT_CODES, app
from .completion import SHELLS, script

WIDTH = 100
GENERATED = "Generated from the Typer app by `python -m dialogctl.cli.docs`; do not edit."

# Environment variables read outside the settings table (config.SPECS documents those).
ENVIRONMENT = {
    "NO_COLOR": "When set and not empty, no colour (unless --color always).",
    "TERM": "TERM=dumb turns colour off (unless --color always).",
    "DIALOGCTL_PAGER": "The pager for long transcripts on a terminal; empty turns paging off. Takes precedence over PAGER.",
    "PAGER": "The pager when DIALOGCTL_PAGER is not set; default: less -FRX.",
    "LESS": "Options for less; set to FRX for the pager when not set.",
    "TZ": "The local time zone of show --local.",
    "DIALOGCTL_DEBUG": "When set, an internal error shows its Python traceback.",
    "SOURCE_DATE_EPOCH": "Seconds since 1970: the export time export --format json writes instead of now, so the same journal exports to the same bytes.",
    "XDG_CONFIG_HOME, XDG_DATA_HOME": "Where the user config file and the default journal root live (through platformdirs).",
    "_DIALOGCTL_COMPLETE": "Set by the shell completion scripts: dialogctl then prints completions instead of running a command.",
}

# Outside the root, then every path under it from the one table (dialogctl.disk.paths).
FILES = {
    "./poto.config.yaml": "Project settings, under dialogueJournal.filesystem and dialogueJournal.cleanup (or the file named by --config).",
    "~/.config/dialogctl/config.yaml": "The user config file, with the same structure.",
    "~/.local/share/dialogctl/journal": "The default journal root.",
    **{f"ROOT/{entry.path}": entry.meaning for entry in PATHS},
}


# --- the commands as Click sees them ----------------------------------------------


def _root_context() -> Any:
    import typer

    group = typer.main.get_command(app)
    # Click fills a terminal of N columns to N - 2: lay out exactly what --help shows on a 100-column one.
    return group.make_context("dialogctl", [], resilient_parsing=True, terminal_width=WIDTH - 2, max_content_width=WIDTH)


def _commands(root: Any) -> list[tuple[str, Any, Any]]:
    """``(name, command, context)`` for every subcommand, in the order of ``dialogctl --help``."""
    out = []
    for name in COMMANDS:
        command = root.command.get_command(root, name)
        out.append((name, command, command.make_context(name, [], parent=root, resilient_parsing=True)))
    return out


def _help(command: Any, ctx: Any) -> str:
    return str(command.get_help(ctx)).rstrip() + "\n"


# --- docs/cli.md ----------------------------------------------------------------


def cli_markdown() -> str:
    root = _root_context()
    parts = ["# dialogctl command-line reference", "", GENERATED, "", "## dialogctl", "", "```text", _help(root.command, root) + "```", ""]
    for name, command, ctx in _commands(root):
        parts += [f"## dialogctl {name}", "", "```text", _help(command, ctx) + "```", ""]
    parts += ["## Exit codes", "", "| code | meaning |", "|---|---|"]
    parts += [f"| {code} | {meaning} |" for code, meaning in _exit_codes()]
    parts += ["", "## Environment", "", "| variable | meaning |", "|---|---|"]
    parts += [f"| `{name}` | {meaning} |" for name, meaning in _environment()]
    return "\n".join(parts) + "\n"


def _exit_codes() -> list[tuple[int, str]]:
    return sorted({**EXIT_CODES, **PROCESS_EXIT_CODES}.items())


def _environment() -> list[tuple[str, str]]:
    settings = [(ENV_PREFIX + spec.env, f"Setting {spec.name}: {spec.help}.") for spec in SPECS]
    return settings + list(ENVIRONMENT.items())


# --- man/dialogctl.1 ----------------------------------------------------------------


def _roff(text: str) -> str:
    """Text for roff: backslashes and hyphens escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def _paragraphs(help_text: str) -> list[tuple[str, str]]:
    """A Click help text as ``("text"|"verbatim", body)`` paragraphs (``\\b`` marks verbatim ones)."""
    import inspect

    out = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(help_text)):
        lines = block.split("\n")
        if lines[0].strip() == "\b":
            out.append(("verbatim", "\n".join(line.strip() for line in lines[1:])))
        else:
            out.append(("text", " ".join(line.strip() for line in lines)))
    return out


def _man_body(help_text: str) -> list[str]:
    lines = []
    for kind, body in _paragraphs(help_text):
        if kind == "verbatim":
            lines += [".PP", ".RS 4", ".nf", _roff(body), ".fi", ".RE"]
        else:
            lines += [".PP", _roff(body)]
    return lines


def _man_params(command: Any, ctx: Any, with_help: bool = False) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or (param.name == "help" and not with_help):
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(help_text or "")]
    return lines


def man_page() -> str:
    root = _root_context()
    group = root.command
    lines = [
        f'.\\" {GENERATED}',
        f'.TH DIALOGCTL 1 "" "dialogctl {__version__}" "User Commands"',
        ".nh",  # ids and option names read badly hyphenated
        ".SH NAME",
        "dialogctl \\- manage the dialogue journals of chat services",
        ".SH SYNOPSIS",
        ".B dialogctl",
        "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".SH DESCRIPTION",
    ]
    lines += _man_body(group.help or "")
    lines += [
        ".PP",
        "stdout carries data only; notes, warnings, errors and progress bars go to stderr. Commands that print data take "
        "\\fB\\-\\-format\\fR table (the default), json, jsonl, csv or tsv; the shape of machine output never depends on "
        "whether stdout is a terminal, only colour, paging and the layout of tables do. Text from the journal "
        "is shown on a terminal with control and bidi characters escaped; machine formats carry it exactly.",
        ".SH GLOBAL OPTIONS",
    ]
    lines += _man_params(group, root, with_help=True)
    lines.append(".SH COMMANDS")
    for name, command, ctx in _commands(root):
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += [f'.SS "dialogctl {name} {_roff(usage)}"']
        lines += _man_body(command.help or "")
        lines += _man_params(command, ctx)
    lines.append(".SH EXIT STATUS")
    for code, meaning in _exit_codes():
        lines += [".TP", f"\\fB{code}\\fR", _roff(meaning)]
    lines.append(".SH ENVIRONMENT")
    for variable, meaning in _environment():
        lines += [".TP", f"\\fB{_roff(variable)}\\fR", _roff(meaning)]
    lines.append(".SH FILES")
    for path, meaning in FILES.items():
        lines += [".TP", f"\\fI{_roff(path)}\\fR", _roff(meaning)]
    lines += [
        ".SH SEE ALSO",
        "The full \\fB\\-\\-help\\fR of every command is in docs/cli.md; shell completions for bash, zsh and fish are in completions/.",
    ]
    return "\n".join(lines) + "\n"


# --- all of it ------------------------------------------------------------------


def generated() -> dict[str, str]:
    """Every shipped file, by its path relative to the repository root."""
    files = {"docs/cli.md": cli_markdown(), "man/dialogctl.1": man_page()}
    for shell in SHELLS:
        files[f"completions/dialogctl.{shell}"] = script(shell)
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    base = Path(next((a for a in args if not a.startswith("-")), "."))
    if not (base / "pyproject.toml").is_file():
        print(f"dialogctl.cli.docs: {base.resolve()} is not the repository root (no pyproject.toml)", file=sys.stderr)
        return 2
    stale = []
    for rel, text in generated().items():
        path = base / rel
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(rel)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for rel in stale:
        print(f"{'stale' if check else 'wrote'}: {rel}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
