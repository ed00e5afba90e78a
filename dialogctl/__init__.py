"""dialogctl: manage the dialogue journals of chat services.

The core library (``Journal`` and the modules it uses) never prints and never
imports the CLI toolkit; ``dialogctl.cli`` is a thin layer on top.
"""

__version__ = "0.1.0"
