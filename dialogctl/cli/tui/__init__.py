"""The terminal UI of ``dialogctl browse`` (Textual, the optional ``tui`` extra).

Nothing outside :mod:`dialogctl.cli.commands.browse` imports this package, and
that command imports it only when it runs: every other command starts
without Textual.
"""
