"""Parsing YAML safely: one document, no tags, timestamps kept as text, bounded depth, no shared aliases.

Used for every YAML file dialogctl reads (the config file, the layout record,
metadata.yaml, and the items of a damaged conversation file). A document it
refuses raises :class:`ItemError` with a kind, a detail and the line it is on.
"""

from __future__ import annotations

from typing import Any

# libyaml's composer recurses on the C stack; past this bound on possible
# nesting the pure-Python parser is used, which fails cleanly.
_C_DEPTH_BOUND = 4000
MAX_DEPTH = 200


class ItemError(Exception):
    """A YAML text refused: ``kind`` names the trouble, ``detail`` says it, ``line_offset`` counts lines from the start."""

    def __init__(self, kind: str, detail: str, line_offset: int = 0) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.line_offset = line_offset


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely: no tags, dates kept as text, bounded depth."""
    import warnings

    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        with warnings.catch_warnings():
            # ruamel warns on stderr about YAML 1.1 forms it reads (a float such as 1e3): stderr is ours.
            warnings.simplefilter("ignore")
            value = _load_one(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line if mark is not None else 0
        raise ItemError(*_describe(exc), line) from None
    except YAMLError as exc:
        raise ItemError(*_describe(exc)) from None
    except RecursionError:
        raise ItemError("too deep", "nesting is too deep to parse") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a malformed number in a tag
        raise ItemError("invalid YAML", type(exc).__name__) from None
    _check_shape(value)
    return value


def _load_one(text: str) -> Any:
    if _depth_bound(text) <= _C_DEPTH_BOUND and _c_loader() is not None:
        loader = _c_loader()(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    yaml = _pure_yaml()
    try:
        return yaml.load(text)
    except BaseException:
        # A refused document can leave state behind in the loader (ruamel's
        # composer keeps counting the depth it was at), and the next, valid,
        # document would be refused too: start the next parse afresh.
        _LOADERS.pop("pure", None)
        raise


def _describe(exc: Exception) -> tuple[str, str]:
    name = type(exc).__name__
    if name == "DuplicateKeyError":
        return "duplicate key", "a key appears twice in one message"
    if name == "ComposerError" and "expected a single document" in str(getattr(exc, "problem", "")):
        return "invalid YAML", "more than one document where one was expected"
    if name in ("ConstructorError",):
        return "unsupported YAML", "a tag or node type that journals do not use"
    if name == "ComposerError":
        return "unsupported YAML", "an anchor or alias that cannot be resolved"
    return "invalid YAML", "the text is not valid YAML here"


def _depth_bound(text: str) -> int:
    """A cheap upper bound on how deep the YAML in ``text`` can nest."""
    return text.count("[") + text.count("{") + text.count("-") + text.count("?") + text.count("\n") + 1


def _check_shape(value: Any) -> None:
    """Refuse alias-shared containers (billion laughs) and extreme depth."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise ItemError("too deep", f"nested deeper than {MAX_DEPTH} levels")
            if id(node) in seen:
                raise ItemError("unsupported YAML", "aliases that share a node are not allowed in journals")
            seen.add(id(node))
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


_LOADERS: dict[str, Any] = {}


def yaml_loader() -> str:
    """Which ruamel.yaml loader reads text dialogctl did not frame: ``"C (libyaml)"`` or ``"pure Python"``.

    A plain ``pip install`` gives the pure one; the ``fast`` extra adds libyaml
    (about five times faster). Each document is parsed with fresh loader
    state either way: the C loader is a new object per document, the pure one
    is rebuilt after any document it refuses.
    """
    return "C (libyaml)" if _c_loader() is not None else "pure Python"


def _c_loader() -> Any:
    if "c" not in _LOADERS:
        try:
            from ruamel.yaml.constructor import SafeConstructor
            from ruamel.yaml.cyaml import CSafeLoader
        except ImportError:
            _LOADERS["c"] = None
        else:

            class JournalCLoader(CSafeLoader):
                pass

            JournalCLoader.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
            _LOADERS["c"] = JournalCLoader
    return _LOADERS["c"]


def _pure_yaml() -> Any:
    if "pure" not in _LOADERS:
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe", pure=True)
        yaml.Constructor = _journal_constructor()
        yaml.max_depth = MAX_DEPTH
        _LOADERS["pure"] = yaml
    return _LOADERS["pure"]


def _journal_constructor() -> Any:
    """ruamel's safe constructor, with timestamps kept as the text written."""
    if "constructor" not in _LOADERS:
        from ruamel.yaml.constructor import SafeConstructor

        class JournalConstructor(SafeConstructor):
            pass

        JournalConstructor.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
        _LOADERS["constructor"] = JournalConstructor
    return _LOADERS["constructor"]
