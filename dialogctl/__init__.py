"""dialogctl: manage the dialogue journals of chat services.

The core library (``Journal`` and the modules it uses) never prints and never
imports the CLI toolkit; ``dialogctl.cli`` is a thin layer on top::

    from dialogctl import Journal, Message

    journal = Journal.open("/srv/journal", archiveThreshold=50)
    journal.append("alice", [Message("user", "hello", "2024-01-15T10:30:00.000Z")])

The names below are imported when first used, so ``import dialogctl`` costs
nothing on the path of ``dialogctl append``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["ConversationRef", "DialogError", "Journal", "Message", "Settings", "__version__", "load_settings"]

_WHERE = {
    "Journal": "dialogctl.journal.core",
    "Message": "dialogctl.models",
    "ConversationRef": "dialogctl.models",
    "DialogError": "dialogctl.errors",
    "Settings": "dialogctl.config",
    "load_settings": "dialogctl.config",
}

if TYPE_CHECKING:
    from .config import Settings, load_settings
    from .errors import DialogError
    from .journal.core import Journal
    from .models import ConversationRef, Message


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dialogctl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
