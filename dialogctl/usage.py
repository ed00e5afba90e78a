"""Usage accounting for one message: the model that answered and the tokens it used.

Metadata in the wild carries ``tokens`` either as an integer or as a mapping:
its ``total``, else ``prompt`` + ``completion``, else ``input`` + ``output``.
The reference implementation also wrote broken values such as
``["object Object"]``; anything that is not a count is ignored rather than
guessed at. Every place that counts tokens (stats, the catalog, metadata.yaml,
CSV export, transcripts) uses these two functions.
"""

from __future__ import annotations

from typing import Any


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def tokens_in(tokens: Any) -> int | None:
    """The token count a ``tokens`` value records, or None."""
    direct = _count(tokens)
    if direct is not None or not isinstance(tokens, dict):
        return direct
    total = _count(tokens.get("total"))
    if total is not None:
        return total
    for first, second in (("prompt", "completion"), ("input", "output")):
        a, b = _count(tokens.get(first)), _count(tokens.get(second))
        if a is not None and b is not None:
            return a + b
    return None


def tokens_of(metadata: dict[str, Any] | None) -> int | None:
    """Total tokens of a message, or None when its metadata does not say."""
    return tokens_in(metadata.get("tokens")) if metadata else None


def model_of(metadata: dict[str, Any] | None) -> str | None:
    if not metadata:
        return None
    model = metadata.get("model")
    return model if isinstance(model, str) and model else None


def token_counts(metadata: dict[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    """Prompt, completion and total tokens of a message (each None when its metadata does not say).

    Prompt is ``tokens.prompt`` (else ``tokens.input``), completion is
    ``tokens.completion`` (else ``tokens.output``), total is :func:`tokens_of`.
    """
    tokens = metadata.get("tokens") if metadata else None
    total = tokens_in(tokens)
    if not isinstance(tokens, dict):
        return None, None, total
    prompt = _count(tokens.get("prompt"))
    completion = _count(tokens.get("completion"))
    return (
        prompt if prompt is not None else _count(tokens.get("input")),
        completion if completion is not None else _count(tokens.get("output")),
        total,
    )
