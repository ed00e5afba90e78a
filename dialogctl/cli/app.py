"""The Typer application: global options, one error handler, and the command table.

Commands live in small modules (``messages``, ``archives``, ``views``,
``export``, ``retention``); each body takes the journal, calls the core once
or twice and hands the result to one writer. No command has a ``try``: every
failure reaches :meth:`DialogGroup.main`, which prints one line on stderr and
exits with the failure's code (see :mod:`dialogctl.errors`).

Start-up matters (scripts run ``dialogctl append`` once per message), so
modules here import only Typer at load time; Rich, ruamel.yaml and the rest
are imported inside the commands that use them. This module has no
``from __future__ import annotations``: Typer evaluates string annotations
twice on every run (signature and type hints), real ones cost once at import
(about 4 ms less for every invocation).
"""

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import TyperPath

from .. import __version__
from ..errors import EXIT_DAMAGED, EXIT_IO, EXIT_NEGATIVE, DialogError
from .state import COMPLETE_VAR, CliState, tell

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# Besides dialogctl.errors.EXIT_CODES, the process itself can end with these.
PROCESS_EXIT_CODES = {
    EXIT_INTERNAL: "internal error: a bug (DIALOGCTL_DEBUG=1 shows the traceback)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "stdout was closed by its reader (dialogctl export --all | head)",
}
# Help is plain text at up to 100 columns: the same words on a terminal, in a
# pipe, in docs/cli.md and in the man page, and no Rich import for --help.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _PipeClosed(Exception):
    pass


class _Interrupted(Exception):
    """Ctrl-C during a command (Typer would turn it into a silent exit 130)."""


class DialogCommand(TyperCommand):
    """A subcommand; its usage line names required arguments plainly (``USER``, not Typer's ``{USER}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]


class DialogGroup(TyperGroup):
    """Loads commands on demand; maps every failure to one line on stderr and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = self.commands[cmd_name] = load_command(cmd_name)
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The ``Commands`` section of ``dialogctl --help``, from each command's docstring (see :func:`short_help`)."""
        from gettext import gettext

        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, short_help(name, limit)) for name in COMMANDS]
        with formatter.section(gettext("Commands")):  # as Click says it
            formatter.write_dl(rows)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Completing a command's name: the names and their short help (see :func:`short_help`), then the options, as Typer answers."""
        from typer._click.shell_completion import CompletionItem

        found = [CompletionItem(name, help=short_help(name)) for name in COMMANDS if name.startswith(incomplete)]
        return found + super(TyperGroup, self).shell_complete(ctx, incomplete)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # Typer's own suggestions look only at the commands already loaded (none: they load on demand).
        from typer._click.exceptions import UsageError

        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as exc:
            if args and exc.message.startswith("No such command"):
                from .hints import unknown_command

                exc.message = unknown_command(args[0], COMMANDS)
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            result = super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None
        except KeyboardInterrupt:
            raise _Interrupted() from None
        return result

    def _main_shell_completion(self, ctx_args: Any, prog_name: str, complete_var: str | None = None) -> None:
        # A shell asking for completions (see dialogctl.cli.completion): answer and exit.
        if os.environ.get(COMPLETE_VAR):
            from .completion import answer

            sys.exit(answer(self, os.environ[COMPLETE_VAR], prog_name, sys.argv[1:]))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            # Without standalone mode Typer returns the code of a typer.Exit.
            returned = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
            code = _wrap_up(returned if isinstance(returned, int) else 0)
        except typer.Exit as exc:
            code = _wrap_up(exc.exit_code)
        except DialogError as exc:
            if exc.exit_code == EXIT_NEGATIVE:  # the command ran, and its answer is no
                code = _wrap_up(_fail(exc.message, exc.hint, exc.exit_code))
            else:
                _wrap_up(exc.exit_code)
                code = _fail(exc.message, exc.hint, exc.exit_code)
        except _PipeClosed:
            _silence_stdout()
            code = EXIT_BROKEN_PIPE
        except (_Interrupted, KeyboardInterrupt):
            code = _fail("interrupted", None, EXIT_INTERRUPTED)
        except typer.Abort:
            code = _fail("aborted", None, EXIT_NEGATIVE)
        except Exception as exc:  # click's usage errors, and anything unexpected
            code = _report_other(exc)
        if standalone_mode:
            sys.exit(code or 0)
        return code


_CURRENT_STATE: list[CliState] = []


def _fail(message: str, hint: str | None, code: int) -> int:
    """The one place a failure is told: one line on stderr (and a hint)."""
    tell(message)
    if hint:
        tell(f"hint: {hint}")
    return code


def _wrap_up(code: int) -> int:
    """Say what the command could not read, and the exit code that follows.

    A command that ran to its end (exit 0, or 1 for a negative answer) ends
    with the first of: 6 when a file or folder could not be read at all, 5
    when records could not be read, then its own code. A command stopped by
    an error keeps that error's code; what it met on the way is said first.
    """
    unreadable = lost = False
    for state in _CURRENT_STATE:
        journal = state.opened
        if journal is None:
            continue
        unreadable = _report_unreadable(state) or unreadable
        lost = _report_damage(state) or lost
    if code not in (0, EXIT_NEGATIVE):
        return code
    return EXIT_IO if unreadable else EXIT_DAMAGED if lost else code


def _report_unreadable(state: CliState) -> bool:
    journal = state.opened
    if journal is None or not journal.unreadable:
        return False
    found = list(dict.fromkeys(journal.unreadable))  # a shard folder is met once per user below it
    for item in found[:50]:
        tell(str(item))
    if len(found) > 50:
        tell(f"... and {len(found) - 50} more")
    tell(f"{len(found)} file(s) or folder(s) could not be read; everything else was")
    journal.unreadable.clear()
    return True


def _report_damage(state: CliState) -> bool:
    """Damage that lost records (exit 5), and one line per file for damage that lost nothing; whether any was lost."""
    journal = state.opened
    if journal is None or not journal.damage:
        return False
    from ..models import RECOVERED_KINDS

    found = list(dict.fromkeys(journal.damage))  # a file summarised, then read again (a cleanup's trim), tells its damage twice
    lost = [d for d in found if not d.recovered]
    recovered: dict[str, list[str]] = {}
    for damage in found:
        if damage.recovered:
            recovered.setdefault(damage.path, []).append(damage.kind)
    journal.damage.clear()
    for path, kinds in recovered.items():
        done = ", ".join(f"{kinds.count(kind)} {kind}{'s' if kinds.count(kind) > 1 else ''} {RECOVERED_KINDS[kind]}" for kind in dict.fromkeys(kinds))
        state.say(f"{path}: {done}; every message was read ('dialogctl repair' rewrites the file cleanly)")
    if not lost:
        return False
    for damage in lost[:50]:
        state.warn(str(damage))
    if len(lost) > 50:
        state.warn(f"... and {len(lost) - 50} more damaged records")
    state.warn(f"{len(lost)} damaged record(s) skipped; every intact message was read")
    return True


def _silence_stdout() -> None:
    # Python would complain again when it flushes stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _report_other(exc: Exception) -> int:
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError

    if isinstance(exc, UsageError):
        from .hints import extra_arguments, unknown_option

        told = unknown_option(exc) if isinstance(exc, NoSuchOption) else extra_arguments(exc)
        if told is not None:
            return _fail(*told, exc.exit_code)
    if isinstance(exc, NoArgsIsHelpError):
        print(exc.format_message(), file=sys.stderr)  # the help itself: our own text
        return exc.exit_code
    if isinstance(exc, ClickException):
        ctx = getattr(exc, "ctx", None)
        hint = f"see '{ctx.command_path} --help'" if isinstance(exc, UsageError) and ctx is not None else None
        message = exc.format_message()
        return _fail(message[:1].lower() + message[1:], hint, exc.exit_code)
    if isinstance(exc, OSError):  # a file outside the journal (a config file): name it
        where = f": {exc.filename}" if exc.filename is not None else ""
        return _fail(f"{exc.strerror or type(exc).__name__}{where}", None, EXIT_IO)
    if isinstance(exc, MemoryError):  # a resource failure (ulimit -v, a full machine), not a bug
        return _fail("out of memory; the command did not finish", "free memory or raise the limit (ulimit -v), then run it again", EXIT_IO)
    if os.environ.get("DIALOGCTL_DEBUG"):
        raise exc
    return _fail(f"internal error ({type(exc).__name__}); this is a bug. Set DIALOGCTL_DEBUG=1 to see where it happened.", None, EXIT_INTERNAL)


class _FolderSetting(TyperPath):
    """A folder path (completed as one) that is not checked here: the journal checks its root whatever the setting's source, and names the source."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, dir_okay=True, path_type=Path)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return Path(value) if not isinstance(value, Path) else value


app = typer.Typer(
    cls=DialogGroup,
    name="dialogctl",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT_SETTINGS,
)


class ColorMode(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class LayoutName(StrEnum):
    flat = "flat"
    sharded = "sharded"


def _version(value: bool) -> None:
    if value:
        print(f"dialogctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    root: Annotated[
        Optional[Path],
        typer.Option(
            "--root", "-r", help="Journal root folder (overrides DIALOGUE_JOURNAL_ROOT and config files).", metavar="PATH", click_type=_FolderSetting()
        ),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Config file to read instead of ./poto.config.yaml.", metavar="PATH", dir_okay=False)
    ] = None,
    layout: Annotated[
        Optional[LayoutName], typer.Option("--layout", help="User folder layout: flat or sharded (needed only when it cannot be detected).", show_default=False)
    ] = None,
    shard_levels: Annotated[Optional[int], typer.Option("--shard-levels", help="Sharded layout: number of prefix folders.", metavar="N")] = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="Sharded layout: characters per prefix folder.", metavar="N")] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Set any setting, e.g. --set archiveThreshold=50 (repeatable; see 'dialogctl config').", metavar="KEY=VALUE"),
    ] = None,
    color: Annotated[
        ColorMode, typer.Option("--color", help="Colour on stdout and stderr: auto (on a terminal, unless NO_COLOR is set or TERM=dumb), always or never.")
    ] = ColorMode.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no notes or progress bars on stderr (warnings and errors still show).")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Say more on stderr: resolved times, what each step did.", show_default=False)
    ] = 0,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """Manage the dialogue journal of a chat service: append, show, archive, restore, list, export, stats, locks, cleanup, verify, repair and doctor.

    Settings come from flags, then DIALOGUE_JOURNAL_* variables, then
    ./poto.config.yaml (or --config), then the user config file, then defaults;
    'dialogctl config' shows each with its source. Run 'dialogctl COMMAND --help'
    for a command's options and examples.
    """
    from ..errors import InvalidInput

    if quiet and verbose:
        raise InvalidInput("--quiet and --verbose pull in opposite directions; pass one")
    if layout is LayoutName.flat and (shard_levels is not None or shard_size is not None):
        raise InvalidInput("--shard-levels and --shard-size describe the sharded layout; --layout flat has no shard folders")
    state = CliState.from_params(ctx.params)
    state.command = ctx.invoked_subcommand or "dialogctl"
    ctx.obj = state
    _CURRENT_STATE[:] = [state]


# Commands are loaded on demand: building a command means inspecting its
# signature, and `dialogctl append` should not pay for the other nine.
COMMANDS: dict[str, tuple[str, str]] = {
    "append": ("messages", "append"),
    "show": ("messages", "show"),
    "archive": ("archives", "archive"),
    "restore": ("archives", "restore"),
    "list": ("views", "list_"),
    "export": ("export", "export"),
    "import": ("importing", "import_"),
    "stats": ("views", "stats"),
    "locks": ("views", "locks"),
    "cleanup": ("retention", "cleanup"),
    "config": ("views", "config"),
    "search": ("search", "search"),
    "follow": ("follow", "follow"),
    "rm": ("remove", "rm"),
    "verify": ("health", "verify"),
    "repair": ("health", "repair"),
    "doctor": ("health", "doctor"),
    "demo": ("demo", "demo"),
    "browse": ("browse", "browse"),
}


# The commands that print tables for people: each takes --wide, in one place (load_command).
TABLE_COMMANDS = frozenset(
    {"append", "archive", "restore", "list", "import", "stats", "locks", "cleanup", "config", "search", "rm", "verify", "repair", "doctor"}
)
WIDE_HELP = (
    "Tables on a terminal: show every cell whole and let long rows wrap, instead of cutting long cells (with an ellipsis) "
    "and dropping the least important columns to fit the width. Pipes and machine formats are never cut."
)


def _set_wide(ctx: Any, param: Any, value: bool) -> None:
    if value and isinstance(ctx.obj, CliState):
        ctx.obj.wide = True


def short_help(name: str, limit: int = 45) -> str:
    """A command's help in the list of commands, read from its function's docstring without building the command.

    Typer builds every command to ask it (each signature inspected, each
    parameter converted: most of a ``--help`` run, or of completing a command's
    name); the short help is only the docstring's first paragraph, shortened
    by the same Click function, so the bytes are the same.
    """
    import inspect

    from typer._click.utils import make_default_short_help

    doc = inspect.getdoc(command_function(name))
    return make_default_short_help(doc, limit).strip() if doc else ""


def command_function(name: str) -> Any:
    """The function a subcommand runs, from its module (imported on first use)."""
    import importlib

    module_name, attr = COMMANDS[name]
    return getattr(importlib.import_module(f"{__package__}.commands.{module_name}"), attr)


def load_command(name: str) -> Any:
    """The click command for one subcommand, built from its function (with --wide for a table command)."""
    from typer.core import TyperOption

    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command(name, cls=DialogCommand, context_settings=CONTEXT_SETTINGS)(command_function(name))
    command = typer.main.get_command(single)
    if name in TABLE_COMMANDS:
        wide = TyperOption(param_decls=["--wide"], is_flag=True, default=False, expose_value=False, callback=_set_wide, help=WIDE_HELP)
        command.params.insert(next((i for i, p in enumerate(command.params) if p.name == "fmt"), len(command.params)), wide)
    return command
