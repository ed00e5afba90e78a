"""The dialogctl command line: a thin Typer layer over :mod:`dialogctl.journal`."""

from __future__ import annotations


def main() -> None:
    """Console-script entry point."""
    from .app import app

    app(prog_name="dialogctl")
