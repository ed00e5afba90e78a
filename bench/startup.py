"""Start-up time of dialogctl against the floor of any Python CLI, measured in one run.

    python bench/startup.py                  # from the repository root; writes bench/results/startup.md
    python bench/startup.py --against main   # also time another revision, installed the same way

Installs the working tree, non-editable (an editable install compiles every
module on every run when PYTHONDONTWRITEBYTECODE is set), into
bench/work/venv, then times, round-robin so noise hits all of them alike:

* ``python -c pass`` and ``python -c 'import typer, portalocker'`` (the floor
  for a Typer CLI that locks), with the same interpreter; ``import typer``
  alone (dialogctl takes its flock with ``fcntl`` and imports no portalocker,
  so this is the floor it has); and that import
  followed by what an append must do at least (open, flock, write, fsync),
  which shows how much of ``append`` is the disk;
* ``dialogctl --version`` (the app without a command), ``dialogctl append``
  of one message (locked, fsynced), ``dialogctl show`` of a 20-message
  conversation in a pipe, ``dialogctl --help`` and one shell-completion
  answer (``show <TAB>``: every command loaded, user ids read);
* with ``--against REV``, ``append``, ``show`` and ``--help`` of that
  revision, so a regression shows as a ratio of the same run.

It prints and records the median of each and its ratio to the baselines.
DIALOGCTL_BENCH_RUNS sets the runs per command (default 40). Other work on
the machine moves absolute times (and fsync most): compare ratios of one run.
"""

from __future__ import annotations

import argparse
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
FLOOR = "python -c 'import typer, portalocker'"
TYPER_ONLY = "python -c 'import typer'"

DURABLE_APPEND = """
import os, sys, typer, portalocker
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
portalocker.lock(fd, portalocker.LockFlags.EXCLUSIVE)
os.write(fd, b"- role: user\\n  content: one more message\\n")
os.fsync(fd)
"""


def install(source: Path, venv: Path, fresh: bool) -> Path:
    """A venv holding a regular install of ``source``; returns its bin folder."""
    bin_dir = venv / "bin"
    if not (bin_dir / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([bin_dir / "pip", "install", "--quiet", str(source)], check=True)
    elif fresh:
        subprocess.run([bin_dir / "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(source)], check=True)
    return bin_dir


def revision_source(rev: str) -> Path:
    """The files of a git revision, exported (the repository itself is left alone)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], capture_output=True, text=True, check=True).stdout.strip()
    target = WORK / f"src-{commit[:12]}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description="dialogctl start-up against the Python and Typer floors")
    parser.add_argument("--against", metavar="REV", help="also time this git revision (e.g. main)")
    args = parser.parse_args()
    bin_dir = install(REPO, WORK / "venv", fresh=True)
    python, exe = str(bin_dir / "python"), str(bin_dir / "dialogctl")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALOGUE_JOURNAL_", "PYTHON", "DIALOGCTL_"))}
        env["DIALOGUE_JOURNAL_ROOT"] = str(Path(tmp) / "journal")
        lines = "".join(f'{{"role": "user", "content": "message {i}"}}\n' for i in range(20))
        subprocess.run([exe, "append", "reader", "--jsonl"], input=lines.encode(), env=env, check=True, stderr=subprocess.DEVNULL)
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([python, "-c", "pass"], env),
            FLOOR: ([python, "-c", "import typer, portalocker"], env),
            TYPER_ONLY: ([python, "-c", "import typer"], env),
            "that import + open, flock, write, fsync": ([python, "-c", DURABLE_APPEND, str(Path(tmp) / "raw.yaml")], env),
            "dialogctl --version (the app, no command)": ([exe, "--version"], env),
            "dialogctl append alice TEXT": ([exe, "append", "alice", "one more message"], env),
            "dialogctl show reader (20 messages, pipe)": ([exe, "show", "reader"], env),
            "dialogctl --help": ([exe, "--help"], env),
            "completion: dialogctl show <TAB>": ([exe, "show", ""], {**env, "_DIALOGCTL_COMPLETE": "bash"}),
        }
        if args.against:
            other = str(install(revision_source(args.against), WORK / f"venv-{args.against.replace('/', '-')}", fresh=False) / "dialogctl")
            other_env = {**env, "DIALOGUE_JOURNAL_ROOT": str(Path(tmp) / "journal-other")}
            subprocess.run([other, "append", "reader", "--jsonl"], input=lines.encode(), env=other_env, check=True, stderr=subprocess.DEVNULL)
            commands[f"{args.against}: dialogctl append alice TEXT"] = ([other, "append", "alice", "one more message"], other_env)
            commands[f"{args.against}: dialogctl show reader"] = ([other, "show", "reader"], other_env)
            commands[f"{args.against}: dialogctl --help"] = ([other, "--help"], other_env)
        for argv, run_env in commands.values():  # warm the page cache and the .pyc files
            timed(argv, run_env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(RUNS):
            for name, (argv, run_env) in commands.items():
                samples[name].append(timed(argv, run_env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    bare, floor = medians["python -c pass"], medians[FLOOR]
    rows = [f"| {name} | {medians[name] * 1000:.1f} | {medians[name] / bare:.2f}x | {medians[name] / floor:.2f}x |" for name in commands]
    append_ratio = medians["dialogctl append alice TEXT"] / floor
    verdict = "within" if append_ratio <= TARGET else "OVER"
    summary = [
        f"`dialogctl append` is {append_ratio:.2f}x the typer+portalocker floor: {verdict} the {TARGET}x budget "
        f"({medians['dialogctl append alice TEXT'] / medians[TYPER_ONLY]:.2f}x `import typer` alone: dialogctl imports no portalocker)."
    ]
    if args.against:
        for what in ("append alice TEXT", "show reader", "--help"):
            mine = medians[next(name for name in commands if name.startswith(f"dialogctl {what}"))]
            summary.append(f"This tree's `{what.split()[0]}` takes {mine / medians[f'{args.against}: dialogctl {what}']:.2f}x the time of {args.against}'s.")
    report = "\n".join(
        [
            "# dialogctl start-up",
            "",
            f"`python bench/startup.py{' --against ' + args.against if args.against else ''}`: median of {RUNS} runs each, "
            f"round-robin, in one run; Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at the end, regular (non-editable) installs.",
            "Absolute times move with the machine's load (fsync most); the ratios are what this run measured.",
            "",
            "| command | median ms | vs `python -c pass` | vs `import typer, portalocker` |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            *summary,
            "",
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)
    return 0 if append_ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
