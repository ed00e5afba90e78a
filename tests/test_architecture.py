"""The shape of the package, read from its imports (``ast``, so imports inside functions count too).

* Layers, bottom to top: the base modules directly in ``dialogctl/``, then
  ``disk``, ``fileformat``, ``journal``, ``views``, ``exchange``,
  ``maintenance``, ``cli``. A module imports only from its own layer and the
  layers below it.
* No import cycle between the package's modules.
* No module outside ``cli/`` imports ``dialogctl.cli``, typer, rich or textual.
* Textual is imported only in ``cli/tui/``, which only the ``browse`` command imports, inside
  its function: every other command starts without it.
* No private name (``_x``) of one module is imported by another.
* No module over 600 lines, at most a dozen modules directly in ``dialogctl/``, and
  nothing vulture finds unused but what ``tools/vulture_whitelist.py`` names.

Imports under ``if TYPE_CHECKING:`` are not run and may point anywhere.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dialogctl"
LAYERS = ["base", "disk", "fileformat", "journal", "views", "exchange", "maintenance", "cli"]
UI_LIBRARIES = ("typer", "rich", "click", "textual")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    if module == "dialogctl.__main__":
        return "cli"  # ``python -m dialogctl`` is the command line's entry point
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "base"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` for every run-time import of ``module``, absolute."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            for name in submodules:
                found.append((f"{target}.{name}", [], node.lineno))
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                found.append((target, rest, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        edges[module] = set()
        for target, _names, _line in imports(module):
            if target in MODULES and target != module:
                edges[module].add(target)
    return edges


def test_each_layer_imports_only_from_below() -> None:
    wrong = []
    for module in MODULES:
        mine = LAYERS.index(layer_of(module))
        for target, _names, line in imports(module):
            if target in MODULES and target != "dialogctl" and LAYERS.index(layer_of(target)) > mine:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert wrong == []


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert cycles == []


def test_only_cli_knows_the_cli_and_the_terminal() -> None:
    wrong = []
    for module in MODULES:
        if layer_of(module) == "cli" or module == "dialogctl.__main__":
            continue
        for target, _names, line in imports(module):
            if target.startswith("dialogctl.cli") or target.split(".")[0] in UI_LIBRARIES:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert wrong == []


def test_textual_only_behind_browse() -> None:
    wrong = []
    for module in MODULES:
        inside = module.startswith("dialogctl.cli.tui") or module == "dialogctl.cli.commands.browse"
        for target, _names, line in imports(module):
            if (target.split(".")[0] == "textual" or target.startswith("dialogctl.cli.tui")) and not inside:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert wrong == []
    # browse loads the UI inside its function, never when its module is loaded (dialogctl --help loads every command).
    tree = ast.parse(MODULES["dialogctl.cli.commands.browse"].read_text(encoding="utf-8"))
    top = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [line for line in top if "tui" in line or "textual" in line] == []


def test_no_private_names_across_modules() -> None:
    wrong = []
    for module in MODULES:
        for target, names, line in imports(module):
            if target.startswith("dialogctl") and target != module:
                wrong.extend(
                    f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")
                )
    # module._name through an imported module
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for target, _names, _line in imports(module):
            if target in MODULES:
                aliases[target.rpartition(".")[2]] = target
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = aliases.get(alias.name, alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                if node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != module:
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert wrong == []


def test_the_tree_draws_the_layers() -> None:
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(LAYERS[1:])
    flat = [p.name for p in PACKAGE.glob("*.py")]
    assert len(flat) <= 12, flat


def test_no_dead_code() -> None:
    """vulture finds nothing unused but what the whitelist names (what Typer, Click or a protocol calls by name)."""
    pytest.importorskip("vulture")
    repo = PACKAGE.parent
    found = subprocess.run(
        [sys.executable, "-m", "vulture", "dialogctl", "tools/vulture_whitelist.py", "--min-confidence", "60"], cwd=repo, capture_output=True, text=True
    )
    assert found.stdout == ""


def test_no_module_over_600_lines() -> None:
    long = {str(path.relative_to(PACKAGE.parent)): n for path in MODULES.values() if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}
