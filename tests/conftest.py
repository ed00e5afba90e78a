"""Shared fixtures: every test runs in its own directory with its own config dirs.

Tests never touch the real home, the working directory, or the shared
fixtures: trees from ../shared/fixtures/poto are copied into tmp_path first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
FIXTURES = (REPO.parent / "shared" / "fixtures" / "poto").resolve()
if not FIXTURES.is_dir():
    FIXTURES = Path(os.environ.get("DIALOGCTL_FIXTURES", "/work/shared/fixtures/poto"))

TREES = ["v1-sharded", "v1-flatish", "v3-sessions", "v1-short-ids", "v1-broken", "v1-after-cleanup"]
DAMAGED_TREES = ["v1-broken", "v1-after-cleanup"]


def pytest_report_header(config: pytest.Config) -> str:
    """Say in the log which YAML loader this run tests (.ci/run runs the suite once with each)."""
    import ruamel.yaml

    from dialogctl.yamlsafe import yaml_loader

    return f"dialogctl: ruamel.yaml {ruamel.yaml.__version__}, {yaml_loader()} loader"


GUARD_OFF = "DIALOGUE_JOURNAL_CLEANUP_MAX_REMOVE_SHARE"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own cwd, own XDG dirs, no DIALOGUE_JOURNAL_* from the outside world."""
    for key in list(os.environ):
        if key.startswith("DIALOGUE_JOURNAL_") or key in ("NO_COLOR", "DIALOGCTL_PAGER", "PAGER"):
            monkeypatch.delenv(key, raising=False)
    # The suite's journals are tiny: nearly every cleanup in it removes most of one, which the guard
    # (cleanup.maxRemoveShare) holds back. Tests of other things run without it; tests/maintenance/test_guard.py
    # takes this away and tests the default.
    monkeypatch.setenv(GUARD_OFF, "100")
    home = tmp_path / "home"
    for sub in ("config", "data", "cache", "state"):
        (home / sub).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh journal root, selected through DIALOGUE_JOURNAL_ROOT."""
    path = tmp_path / "journal"
    monkeypatch.setenv("DIALOGUE_JOURNAL_ROOT", str(path))
    return path


def copy_tree(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(FIXTURES / name, target)
    return target


@pytest.fixture
def fixture_tree(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(name: str) -> Path:
        return copy_tree(name, tmp_path / "trees")

    return make


class Cli:
    """CliRunner with separate stdout/stderr and JSON helpers."""

    def __init__(self) -> None:
        from dialogctl.cli.app import app

        self.app = app
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Any:
        return self.runner.invoke(self.app, list(args), input=input, env=env, catch_exceptions=False)

    def json(self, *args: str, input: str | None = None) -> Any:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.exit_code, result.stderr)
        return json.loads(result.stdout)

    def jsonl(self, *args: str, input: str | None = None, expect: int = 0) -> list[Any]:
        result = self(*args, input=input)
        assert result.exit_code == expect, (result.exit_code, result.stderr)
        return [json.loads(line) for line in result.stdout.split("\n") if line]  # LF only: content may hold U+2028


@pytest.fixture
def cli() -> Cli:
    return Cli()


def run_exe(*args: str, input: bytes | str | None = None, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dialogctl`` executable (falls back to ``python -m dialogctl``)."""
    exe = shutil.which("dialogctl")
    cmd = [exe] if exe else [sys.executable, "-m", "dialogctl"]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.run(cmd + list(args), input=input, capture_output=True, env=full_env, timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))
