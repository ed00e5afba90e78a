"""What every command shares: the global options, the journal, and stderr talk.

stdout carries data only; everything here that speaks goes to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from ..journal import Journal


class CliState:
    """The global options of one invocation, and the journal they select."""

    def __init__(self, flags: dict[str, Any] | None = None, config_path: str | None = None, color: str = "auto", quiet: bool = False, verbose: int = 0) -> None:
        self.flags = flags or {}
        self.config_path = config_path
        self.color = color
        self.quiet = quiet
        self.verbose = verbose
        self.command = "dialogctl"
        self._settings: Settings | None = None
        self._journal: Journal | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            self._settings = load_settings(self.flags, self.config_path)
        return self._settings

    def journal(self) -> Journal:
        if self._journal is None:
            from ..journal import Journal

            self._journal = Journal(self.settings(), command=self.command)
        return self._journal

    # --- talk on stderr -------------------------------------------------------

    def say(self, message: str) -> None:
        """A note for the operator (suppressed by -q)."""
        if not self.quiet:
            print(f"dialogctl: {message}", file=sys.stderr)

    def detail(self, message: str) -> None:
        """Shown only with -v."""
        if self.verbose and not self.quiet:
            print(f"dialogctl: {message}", file=sys.stderr)

    def warn(self, message: str) -> None:
        """Warnings are shown even with -q."""
        print(f"dialogctl: warning: {message}", file=sys.stderr)

    def stdout_is_terminal(self) -> bool:
        return sys.stdout.isatty()

    def use_color(self, stream: Any = None) -> bool:
        stream = stream or sys.stdout
        if self.color == "always":
            return True
        if self.color == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
            return False
        return bool(stream.isatty())
