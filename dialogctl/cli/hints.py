"""Usage errors that guide: "did you mean" for commands and options, and the ``--`` convention.

Click says ``no such option: --secret-token`` for ``append alice
"--secret-token=abc123"``: it echoes what may well be the message the
operator meant to append (and it lands in shell history, logs, CI output).
For the commands whose arguments are free text (``append``'s TEXT,
``search``'s PATTERN) the error therefore names no part of the argument:
it says an unknown option was given and how ``--`` ends the options. For
every other command the unknown option is echoed with the closest known
one, as an operator expects.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches
from typing import Any

# Commands whose positional arguments are free text, and how to pass text that starts with '-'.
TEXT_COMMANDS = {
    "append": "dialogctl append alice -- '- buy milk'",
    "search": "dialogctl search -- '-v'",
}


def closest(word: str, known: Iterable[str]) -> list[str]:
    """The known words close to ``word``, closest first (at most two)."""
    return get_close_matches(word, list(known), n=2, cutoff=0.6)


def did_you_mean(matches: list[str]) -> str:
    return "did you mean " + " or ".join(f"'{m}'" for m in matches) + "?" if matches else ""


def unknown_command(word: str, known: Iterable[str]) -> str:
    suggestion = did_you_mean(closest(word, known))
    return f"no such command '{word}'" + (f"; {suggestion}" if suggestion else "")


def unknown_option(exc: Any) -> tuple[str, str]:
    """Message and hint for click's ``NoSuchOption`` (``exc.ctx`` is the command's context)."""
    ctx = exc.ctx
    command = ctx.info_name if ctx is not None else None
    path = ctx.command_path if ctx is not None else "dialogctl"
    known = [name for param in (ctx.command.params if ctx is not None else ()) for name in getattr(param, "opts", ()) if name.startswith("-")]
    option = exc.option_name.partition("=")[0]
    matches = closest(option, [k for k in known if k.startswith("--")]) if option.startswith("--") else []
    suggestion = did_you_mean(matches)
    if command in TEXT_COMMANDS:
        # Never echo the argument: it may be the message itself.
        message = "unknown option: an argument starts with '-' but is none of the command's options"
        hint = f"text that starts with '-' goes after --, which ends the options: {TEXT_COMMANDS[command]}; see '{path} --help'"
        return message + (f"; {suggestion}" if suggestion else ""), hint
    return f"no such option: {option}" + (f"; {suggestion}" if suggestion else ""), f"see '{path} --help'"


def extra_arguments(exc: Any) -> tuple[str, str] | None:
    """Message and hint for click's "unexpected extra argument(s)" from ``append``, whose extra words are message text; else None."""
    ctx = exc.ctx
    if ctx is None or ctx.info_name != "append" or not exc.message.startswith("Got unexpected extra argument"):
        return None
    return "too many arguments: the message is one argument (TEXT)", "quote the message: dialogctl append alice \"Hello there\"; see 'dialogctl append --help'"
