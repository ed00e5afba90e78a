"""Start-up time of dialogctl against the floor of any Python CLI, measured in one run.

    python bench/startup.py            # from the repository root; writes bench/results/startup.md

Installs the working tree, non-editable (an editable install compiles every
module on every run when PYTHONDONTWRITEBYTECODE is set), into
bench/work/venv, then times, round-robin so noise hits all of them alike:

* ``python -c pass`` and ``python -c 'import typer, portalocker'`` (the floor
  for a Typer CLI that locks), with the same interpreter;
* ``dialogctl --version`` (the app without a command), ``dialogctl append``
  of one message (locked, fsynced), ``dialogctl show`` of a 20-message
  conversation in a pipe, ``dialogctl --help`` and one shell-completion
  answer (``show <TAB>``: every command loaded, user ids read).

It prints and records the median of each and its ratio to both baselines.
DIALOGCTL_BENCH_RUNS sets the runs per command (default 40). Other helpers
may share the machine: only the ratios of one run mean anything.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "results" / "startup.md"
RUNS = int(os.environ.get("DIALOGCTL_BENCH_RUNS", "40"))
TARGET = 1.25  # append within this factor of the typer+portalocker floor


def install() -> Path:
    """A venv holding a regular install of this working tree; returns its bin folder."""
    venv = WORK / "venv"
    bin_dir = venv / "bin"
    if not (bin_dir / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([bin_dir / "pip", "install", "--quiet", str(REPO)], check=True)
    else:
        subprocess.run([bin_dir / "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(REPO)], check=True)
    return bin_dir


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    bin_dir = install()
    python, exe = str(bin_dir / "python"), str(bin_dir / "dialogctl")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALOGUE_JOURNAL_", "PYTHON", "DIALOGCTL_"))}
        env["DIALOGUE_JOURNAL_ROOT"] = str(Path(tmp) / "journal")
        lines = "".join(f'{{"role": "user", "content": "message {i}"}}\n' for i in range(20))
        subprocess.run([exe, "append", "reader", "--jsonl"], input=lines.encode(), env=env, check=True)
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "python -c 'import typer, portalocker'": [python, "-c", "import typer, portalocker"],
            "dialogctl --version (the app, no command)": [exe, "--version"],
            "dialogctl append alice TEXT": [exe, "append", "alice", "one more message"],
            "dialogctl show reader (20 messages, pipe)": [exe, "show", "reader"],
            "dialogctl --help": [exe, "--help"],
            "completion: dialogctl show <TAB>": [exe, "show", ""],
        }
        envs = {name: env for name in commands}
        envs["completion: dialogctl show <TAB>"] = {**env, "_DIALOGCTL_COMPLETE": "bash"}
        for name, argv in commands.items():  # warm the page cache and the .pyc files
            timed(argv, envs[name])
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(RUNS):
            for name, argv in commands.items():
                samples[name].append(timed(argv, envs[name]))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    bare, floor = medians["python -c pass"], medians["python -c 'import typer, portalocker'"]
    rows = [f"| {name} | {medians[name] * 1000:.1f} | {medians[name] / bare:.2f}x | {medians[name] / floor:.2f}x |" for name in commands]
    append_ratio = medians["dialogctl append alice TEXT"] / floor
    verdict = "within" if append_ratio <= TARGET else "OVER"
    report = "\n".join(
        [
            "# dialogctl start-up",
            "",
            f"`python bench/startup.py`: median of {RUNS} runs each, round-robin, in one run; "
            f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, a regular (non-editable) install.",
            "Absolute times move with the machine's load; the ratios are what this run measured.",
            "",
            "| command | median ms | vs `python -c pass` | vs `import typer, portalocker` |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"`dialogctl append` is {append_ratio:.2f}x the typer+portalocker floor: {verdict} the {TARGET}x budget.",
            "",
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)
    return 0 if append_ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
