"""One module per command family: each command body parses, calls the core, renders.

These modules have no ``from __future__ import annotations``, as
:mod:`dialogctl.cli.app` has none: Typer evaluates a command's string
annotations three times as it builds the command (signature, type hints,
callback), real ones are evaluated once, at import (``append`` builds in
about 1 ms instead of 3.5). Names imported only for type checking are quoted.
"""
