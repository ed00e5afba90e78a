"""How deeply JSON input is nested: found by a loop over its brackets, never by recursion.

Python's JSON parser recurses once per level and gives up with a
``RecursionError`` about a thousand levels down; metadata is refused anyway
past :data:`dialogctl.fileformat.codec.MAX_METADATA_DEPTH` levels. When the parser gives
up, :func:`deepest` says where the input went too deep (its line and its JSON
path, such as ``messages[3].metadata``), so the refusal names the place as
every other input error does. Only the error path pays for this scan.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TooDeep(NamedTuple):
    line: int  # 1-based line of the bracket that went one level too deep
    path: str  # JSON path of the value holding it ("" for the top level)
    field: str | None  # the top-level key it lies under, when the top level is an object

    def describe(self, limit: int) -> str:
        where = self.path or "the value"
        return f"{where} is nested deeper than {limit} levels"


def deepest(text: str, limit: int) -> TooDeep | None:
    """Where ``text`` first nests more than ``limit`` arrays and objects inside each other; None if it never does.

    The text need not be valid JSON (a parser gave up on it): strings are
    skipped, brackets counted.
    """
    stack: list[list[object]] = []  # per open container: [kind, key or index, expecting a key]
    for m in _TOKENS.finditer(text):
        token = m.group()
        head = token[0]
        if head == '"':
            if stack and stack[-1][0] == "{" and stack[-1][2]:
                try:
                    stack[-1][1] = json.loads(token)
                except ValueError:
                    stack[-1][1] = token[1:-1]
                stack[-1][2] = False
        elif head in "[{":
            if len(stack) >= limit:
                return TooDeep(text.count("\n", 0, m.start()) + 1, _path(stack), _field(stack))
            stack.append([head, 0 if head == "[" else None, head == "{"])
        elif head in "]}":
            if stack:
                stack.pop()
        elif head == "," and stack:
            if stack[-1][0] == "[":
                stack[-1][1] = int(stack[-1][1]) + 1  # type: ignore[call-overload]
            else:
                stack[-1][2] = True
    return None


_SHOWN = 4  # path steps named in a message; a path a thousand steps long says no more than its start


def _path(stack: list[list[object]]) -> str:
    out = ""
    for step, (kind, key, _) in enumerate(stack):
        if step == _SHOWN:
            return out + "..."
        if kind == "[":
            out += f"[{key}]"
        elif isinstance(key, str) and _NAME.fullmatch(key):
            out += f".{key}" if out else key
        elif key is not None:
            out += f"[{json.dumps(str(key)[:40])}]"
    return out


def _field(stack: list[list[object]]) -> str | None:
    if stack and stack[0][0] == "{" and isinstance(stack[0][1], str):
        return stack[0][1]
    return None
