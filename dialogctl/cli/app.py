"""The Typer application: global options, one error handler, and the command table.

Commands live in small modules (``messages``, ``archives``, ``views``,
``export``, ``retention``); each body takes the journal, calls the core once
or twice and hands the result to one writer. No command has a ``try``: every
failure reaches :meth:`DialogGroup.main`, which prints one line on stderr and
exits with the failure's code (see :mod:`dialogctl.errors`).

Start-up matters (scripts run ``dialogctl append`` once per message), so
modules here import only Typer at load time; Rich, ruamel.yaml and the rest
are imported inside the commands that use them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import EXIT_DAMAGED, EXIT_IO, DialogError
from .state import CliState

EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141


class _PipeClosed(Exception):
    pass


class DialogGroup(TyperGroup):
    """Loads commands on demand; maps every failure to one line on stderr and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = self.commands[cmd_name] = load_command(cmd_name)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            result = super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None
        state = ctx.obj
        if isinstance(state, CliState) and state._journal is not None and state._journal.damage:
            _report_damage(state)
            raise typer.Exit(EXIT_DAMAGED)
        return result

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        from .. import errors

        try:
            # Without standalone mode Typer returns the code of a typer.Exit.
            returned = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
            code = returned if isinstance(returned, int) else 0
        except typer.Exit as exc:
            code = exc.exit_code
        except DialogError as exc:
            _report_damage_of_context()
            print(f"dialogctl: {exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"dialogctl: hint: {exc.hint}", file=sys.stderr)
            code = exc.exit_code
        except _PipeClosed:
            _silence_stdout()
            code = EXIT_BROKEN_PIPE
        except KeyboardInterrupt:
            print("dialogctl: interrupted", file=sys.stderr)
            code = 130
        except typer.Abort:
            print("dialogctl: aborted", file=sys.stderr)
            code = errors.EXIT_NEGATIVE
        except Exception as exc:  # click's usage errors, and anything unexpected
            code = _report_other(exc)
        if standalone_mode:
            sys.exit(code or 0)
        return code


_CURRENT_STATE: list[CliState] = []


def _report_damage(state: CliState) -> None:
    journal = state._journal
    if journal is None or not journal.damage:
        return
    shown = journal.damage[:50]
    for damage in shown:
        state.warn(str(damage))
    if len(journal.damage) > len(shown):
        state.warn(f"... and {len(journal.damage) - len(shown)} more damaged records")
    state.warn(f"{len(journal.damage)} damaged record(s) skipped; every intact message was read")
    journal.damage.clear()


def _report_damage_of_context() -> None:
    for state in _CURRENT_STATE:
        _report_damage(state)


def _silence_stdout() -> None:
    # Python would complain again when it flushes stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _report_other(exc: Exception) -> int:
    exit_code = getattr(exc, "exit_code", None)
    show = getattr(exc, "show", None)
    if isinstance(exit_code, int) and callable(show):  # a click UsageError / BadParameter
        show()
        return exit_code
    if isinstance(exc, OSError):
        print(f"dialogctl: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_IO
    if os.environ.get("DIALOGCTL_DEBUG"):
        raise exc
    print(f"dialogctl: internal error ({type(exc).__name__}); this is a bug. Set DIALOGCTL_DEBUG=1 to see where it happened.", file=sys.stderr)
    return EXIT_INTERNAL


app = typer.Typer(
    cls=DialogGroup,
    name="dialogctl",
    help="Manage the dialogue journal of a chat service: append, show, archive, restore, list, export, stats, locks and cleanup.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version(value: bool) -> None:
    if value:
        print(f"dialogctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    root: Annotated[
        Optional[str], typer.Option("--root", "-r", help="Journal root folder (overrides DIALOGUE_JOURNAL_ROOT and config files).", metavar="PATH")
    ] = None,
    config: Annotated[Optional[str], typer.Option("--config", "-c", help="Config file to read instead of ./poto.config.yaml.", metavar="PATH")] = None,
    layout: Annotated[
        Optional[str], typer.Option("--layout", help="User folder layout: flat or sharded (needed only when it cannot be detected).", metavar="flat|sharded")
    ] = None,
    shard_levels: Annotated[Optional[int], typer.Option("--shard-levels", help="Sharded layout: number of prefix folders.", metavar="N")] = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="Sharded layout: characters per prefix folder.", metavar="N")] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Set any setting, e.g. --set archiveThreshold=50 (repeatable).", metavar="KEY=VALUE")
    ] = None,
    color: Annotated[
        str, typer.Option("--color", help="Colour: auto, always or never (NO_COLOR and TERM=dumb also turn it off).", metavar="auto|always|never")
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no notes on stderr (warnings and errors still show).")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Say more on stderr.")] = 0,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """Manage the dialogue journal of a chat service.

    Settings come from flags, then DIALOGUE_JOURNAL_* variables, then
    ./poto.config.yaml (or --config), then the user config file, then defaults;
    'dialogctl config' shows each with its source.
    """
    from ..config import parse_set_options
    from ..errors import InvalidInput

    if color not in ("auto", "always", "never"):
        raise InvalidInput(f"--color takes auto, always or never, not {color!r}")
    flags: dict[str, Any] = parse_set_options(set_ or [])
    for name, value in (("root", root), ("layout", layout), ("shardLevels", shard_levels), ("shardSize", shard_size)):
        if value is not None:
            flags[name] = value
    state = CliState(flags=flags, config_path=config, color=color, quiet=quiet, verbose=verbose)
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
    "stats": ("views", "stats"),
    "locks": ("views", "locks"),
    "cleanup": ("retention", "cleanup"),
    "config": ("views", "config"),
    "verify": ("health", "verify"),
    "repair": ("health", "repair"),
    "doctor": ("health", "doctor"),
}


def load_command(name: str) -> Any:
    """The click command for one subcommand, built from its function."""
    import importlib

    module_name, attr = COMMANDS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name)(getattr(module, attr))
    return typer.main.get_command(single)
