"""``python -m dialogctl``."""

from .cli import main

main()
