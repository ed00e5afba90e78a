"""What every command shares: the global options, the journal, and stderr talk.

stdout carries data only; everything here that speaks goes to stderr, with
untrusted text (ids and paths from the disk) passed through
:func:`dialogctl.cli.render.visible`, because stderr is a terminal too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from ..journal.core import Journal

# The global options that select the journal, as (parameter name, setting name).
SETTING_OPTIONS = (("root", "root"), ("layout", "layout"), ("shard_levels", "shardLevels"), ("shard_size", "shardSize"))


# The environment variable a shell's completion function sets when it asks for candidates (see completion.py).
COMPLETE_VAR = "_DIALOGCTL_COMPLETE"


class CliState:
    """The global options of one invocation, and the journal they select."""

    def __init__(self, flags: dict[str, Any] | None = None, config_path: str | None = None, color: str = "auto", quiet: bool = False, verbose: int = 0) -> None:
        self.flags = flags or {}
        self.config_path = config_path
        self.color = color
        self.quiet = quiet
        self.verbose = verbose
        self.command = "dialogctl"
        self.wide = False  # --wide: tables show every cell whole on a terminal (see dialogctl.cli.fit)
        self._settings: Settings | None = None
        self._journal: Journal | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CliState:
        """The state the global options (the root command's parameters) describe."""
        from ..config import parse_set_options

        flags: dict[str, Any] = parse_set_options(params.get("set_") or [])
        for param, setting in SETTING_OPTIONS:
            if params.get(param) is not None:
                flags[setting] = params[param]  # str-valued enums and paths: settings convert them
        config = params.get("config")
        color = str(params.get("color") or "auto")
        return cls(flags, None if config is None else str(config), color, bool(params.get("quiet")), int(params.get("verbose") or 0))

    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            self._settings = load_settings(self.flags, self.config_path)
            for unknown in self._settings.unknown:  # a typo in a config file is ignored, but never silently
                self.warn(str(unknown))
            if self._settings.unknown:
                tell("hint: unknown keys are ignored; strictConfig: true (or --set strictConfig=true) makes them errors")
        return self._settings

    @property
    def opened(self) -> Journal | None:
        """The journal if a command opened it (its damage and unreadable paths are reported at the end), else None."""
        return self._journal

    def journal(self, readable: bool = True) -> Journal:
        """The journal the settings select; a root that is not a folder (or, with ``readable``, cannot be read) is refused here."""
        if self._journal is None:
            from ..journal.core import Journal

            journal = Journal(self.settings(), command=self.command)
            journal.check_root(readable)
            self._journal = journal
        return self._journal

    # --- talk on stderr -------------------------------------------------------

    def say(self, message: str) -> None:
        """A note for the operator (suppressed by -q)."""
        if not self.quiet:
            tell(message)

    def detail(self, message: str) -> None:
        """Shown only with -v."""
        if self.verbose and not self.quiet:
            tell(message)

    def warn(self, message: str) -> None:
        """Warnings are shown even with -q."""
        tell(f"warning: {message}")

    def use_color(self, stream: Any = None) -> bool:
        """Colour for ``stream`` (stdout by default): the flag wins, then NO_COLOR and TERM=dumb, then whether it is a terminal."""
        stream = stream or sys.stdout
        if self.color == "always":
            return True
        if self.color == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
            return False
        return bool(stream.isatty())

    def show_progress(self) -> bool:
        """Progress bars are drawn on stderr when it is a terminal, never with -q."""
        return not self.quiet and sys.stderr.isatty()


def tell(message: str) -> None:
    """One line on stderr, escaped: ``dialogctl: message``."""
    from .render import visible

    print(f"dialogctl: {visible(message)}", file=sys.stderr)
