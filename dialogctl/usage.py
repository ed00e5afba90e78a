"""Usage accounting for one message: the model that answered and the tokens it used.

Metadata in the wild carries ``tokens`` either as an integer or as a mapping
(``prompt``/``completion``/``total``, or ``input``/``output``); the reference
implementation also wrote broken values such as ``["object Object"]``.
Anything that is not a count is ignored rather than guessed at.
"""

from __future__ import annotations

from typing import Any


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def tokens_of(metadata: dict[str, Any] | None) -> int | None:
    """Total tokens of a message, or None when its metadata does not say."""
    if not metadata:
        return None
    tokens = metadata.get("tokens")
    direct = _count(tokens)
    if direct is not None:
        return direct
    if not isinstance(tokens, dict):
        return None
    total = _count(tokens.get("total"))
    if total is not None:
        return total
    for first, second in (("prompt", "completion"), ("input", "output")):
        a, b = _count(tokens.get(first)), _count(tokens.get(second))
        if a is not None or b is not None:
            return (a or 0) + (b or 0)
    return None


def model_of(metadata: dict[str, Any] | None) -> str | None:
    if not metadata:
        return None
    model = metadata.get("model")
    return model if isinstance(model, str) and model else None
