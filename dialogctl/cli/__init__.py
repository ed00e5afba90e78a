"""The dialogctl command line: a thin Typer layer over :mod:`dialogctl.journal`."""

from __future__ import annotations


def main() -> None:
    """Console-script entry point."""
    import gc

    # A command builds tens of thousands of small objects (a whole-journal scan: one
    # per file and message) and keeps most of them to the end; the collector's default
    # pace re-traverses all of them every few thousand allocations, about a fifth of a
    # stats run on a large journal. Collect far less often: cycles are still freed.
    gc.set_threshold(50_000, 20, 100)
    from .app import app

    app(prog_name="dialogctl")
