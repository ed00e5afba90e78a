"""The reliability suite: real processes, injected faults, hostile input; it reports its figures.

Counts are sized for CI (a 2-core machine) by default; each heavy count has an
environment variable for a full-size run (see ``count``). Tests record what
they did with the ``figures`` fixture, and the numbers are printed at the end
of the run (``pytest tests/reliability``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_FIGURES: list[str] = []


def count(name: str, ci: int) -> int:
    """A heavy count: ``DIALOGCTL_<NAME>`` when set, else the CI-size default."""
    return int(os.environ.get(f"DIALOGCTL_{name}", str(ci)))


class Figures:
    def add(self, line: str) -> None:
        _FIGURES.append(line)


@pytest.fixture
def figures() -> Figures:
    return Figures()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


OWNER = 65534  # the unprivileged owner of trees that tests run dialogctl on as their owner (root passes every permission check)


class OwnedTree:
    """A folder outside pytest's private tmp (which others cannot enter), owned by :data:`OWNER`; dialogctl runs there as that owner."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.home = os.path.join(base, "home")

    def give(self) -> None:
        """chown everything below the base to the owner (after a test laid out its files as root)."""
        for dirpath, dirnames, filenames in os.walk(self.base):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.lchown(name, OWNER, OWNER)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
        """``dialogctl ARGS`` as the owner: exit code, stdout and stderr as text."""
        import subprocess

        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_JOURNAL_")}
        full_env.update(HOME=self.home, XDG_CONFIG_HOME=os.path.join(self.home, ".config"), **(env or {}))

        def drop() -> None:
            os.setgroups([])
            os.setgid(OWNER)
            os.setuid(OWNER)

        python, path = owner_python()
        full_env["PYTHONPATH"] = os.pathsep.join(path)
        proc = subprocess.run([python, "-m", "dialogctl", *args], capture_output=True, env=full_env, cwd=self.base, preexec_fn=drop, timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def reachable_by_others(path: str) -> bool:
    """Whether every folder above ``path`` may be entered by anyone (so the owner can run it)."""
    import stat

    folder = os.path.dirname(os.path.realpath(path))
    while True:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return False
        if folder == os.path.dirname(folder):
            return True
        folder = os.path.dirname(folder)


def owner_python() -> tuple[str, list[str]]:
    """An interpreter the unprivileged owner can run, and the import path that finds this checkout's dialogctl and its packages.

    This interpreter may live where others cannot go (a pyenv under /root):
    then the system's Python of the same version runs the same packages.
    """
    import sys
    import sysconfig

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [repo, sysconfig.get_paths()["purelib"]]
    if reachable_by_others(sys.executable):
        return sys.executable, path
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.exists(system):
        pytest.skip("no Python the unprivileged owner may run")
    return system, path


@pytest.fixture
def owned() -> Any:
    """An :class:`OwnedTree` (skipped unless the tests run as root, who can give files away)."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to give a tree to an unprivileged owner")
    base = tempfile.mkdtemp(prefix="dialogctl-owned-")
    os.chmod(base, 0o755)
    tree = OwnedTree(base)
    os.mkdir(tree.home)
    tree.give()
    try:
        yield tree
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)  # a test may have left a folder unreadable
        shutil.rmtree(base, ignore_errors=True)
