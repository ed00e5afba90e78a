"""This tree against an earlier revision on the same journal: what a change bought, measured in one run.

    python bench/against.py --against 846ea78 --root JOURNAL --jsonl MESSAGES.jsonl [--rounds 3] [WORKLOAD...]

The ratios in ``bench/limits.py`` move with the machine (a disk that fsyncs in
0.2 ms makes the raw append baseline eight times faster than one at 1.7 ms);
this compares code with code. The revision is checked out in a temporary git
worktree and run with ``PYTHONPATH`` pointing at it (same interpreter, same
dependencies); each workload runs alternately with the revision and with this
tree, ``--rounds`` times, and the table gives the medians of the wall time and
of the CPU time (user + system, workers included) and their ratio.

Workloads: ``search-fixed``, ``search-regex``, ``export``, ``first-stats``
(the catalog removed first), ``warm-stats``, ``after-appends-stats`` (on a
fresh copy of the journal each run: ``stats`` to save the catalog, then
``append --jsonl`` of 1% of its messages spread over every user, as
``bench/limits.py`` appends them, both untimed and by the same code as the
timed ``stats`` that follows), ``append`` (``append --jsonl`` of ``--jsonl``
into a fresh root); all of them by default. ``search``, ``export`` and
``stats`` need ``--root`` (a journal, e.g. one ``bench/limits.py`` wrote);
``append`` needs ``--jsonl``. Output goes to /dev/null.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
sys.path.insert(0, str(TREE))
sys.path.insert(0, str(HERE))

from dialogctl.disk import paths  # noqa: E402

FIXED = "Zürich 東京"
REGEX = "rollback|résumé|データ [0-9]"
# -P: not the current folder first on sys.path (``-m`` puts it there): run from a checkout, its
# dialogctl/ would shadow the tree PYTHONPATH names, and both sides would run the same code.
RUN = ("-P", "-m", "dialogctl")
WORKLOADS = ("search-fixed", "search-regex", "export", "first-stats", "warm-stats", "after-appends-stats", "append")


Before = Callable[[str], None]  # what a run needs done first (untimed), given the tree it runs from


def untimed(tree: str, args: list[str], stdin: str | None = None) -> None:
    env = dict(os.environ, PYTHONPATH=tree, LC_ALL="C.UTF-8")
    with open(stdin or os.devnull, "rb") as given:
        subprocess.run([sys.executable, *RUN, *args], stdin=given, stdout=subprocess.DEVNULL, check=True, env=env)


def timed(tree: str, args: list[str], stdin: str | None, before: Before | None) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m dialogctl ARGS`` run from ``tree``."""
    if before is not None:
        before(tree)
    env = dict(os.environ, PYTHONPATH=tree, LC_ALL="C.UTF-8")
    start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stdin or os.devnull, "rb") as given:
        done = subprocess.run([sys.executable, *RUN, *args], stdin=given, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # search exits 1 when nothing matches
        raise SystemExit(f"{' '.join(args)} from {tree} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return wall, after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime


def one_percent(root: str, out: Path) -> Path:
    """1% of the journal's messages (it has about 100 a user, as ``bench/limits.py`` writes it), new, one for each user in turn."""
    import json

    import synthetic  # bench/synthetic.py, as bench/run.py's one_percent uses it

    from dialogctl import Journal

    users = sorted(Journal.open(root).users())
    count = len(users)  # 1% of 100 a user
    with out.open("w", encoding="utf-8") as spread:
        for i, record in enumerate(synthetic.messages(count, max(1, count // 2), seed=1000, days_back=(0.2, 1))):
            record["user"] = users[(i * 7919) % len(users)]
            spread.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def commands(root: str | None, jsonl: str | None, scratch: Path) -> dict[str, tuple[list[str], str | None, Before | None]]:
    catalog = os.path.join(root or "", *paths.CATALOG)
    appended = scratch / "appended"
    table: dict[str, tuple[list[str], str | None, Before | None]] = {}
    if root is not None:
        table["search-fixed"] = (["--root", root, "search", FIXED, "-a", "--format", "jsonl"], None, None)
        table["search-regex"] = (["--root", root, "search", "-E", REGEX, "-a", "--format", "jsonl"], None, None)
        table["export"] = (["--root", root, "export", "--all", "--format", "jsonl"], None, None)
        table["first-stats"] = (["--root", root, "stats", "--format", "json"], None, lambda tree: Path(catalog).unlink(missing_ok=True))
        table["warm-stats"] = (["--root", root, "stats", "--format", "json"], None, None)
        copy = scratch / "after-appends"
        extra = one_percent(root, scratch / "one-percent.jsonl")

        def fresh_copy_appended(tree: str) -> None:
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(root, copy, symlinks=True)
            untimed(tree, ["--root", str(copy), "stats", "--format", "json"])
            untimed(tree, ["--root", str(copy), "-q", "append", "--jsonl"], str(extra))

        table["after-appends-stats"] = (["--root", str(copy), "stats", "--format", "json"], None, fresh_copy_appended)
    if jsonl is not None:
        table["append"] = (["--root", str(appended), "-q", "append", "--jsonl"], jsonl, lambda tree: shutil.rmtree(appended, ignore_errors=True))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the earlier revision (anything git rev-parse takes)")
    parser.add_argument("--root", help="the journal the reading workloads run on")
    parser.add_argument("--jsonl", help="the messages the append workload appends")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"any of {', '.join(WORKLOADS)}; default: every one the arguments allow")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}: use any of {', '.join(WORKLOADS)}")
    rev = subprocess.run(["git", "-C", str(TREE), "rev-parse", "--short", args.against], capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="dialogctl-against-") as tmp:
        scratch = Path(tmp)
        old = scratch / rev
        subprocess.run(["git", "-C", str(TREE), "worktree", "add", "--detach", "-q", str(old), rev], check=True)
        try:
            for tree in (str(old), str(TREE)):
                # Bytecode compiled on both sides, as an install has it (PYTHONDONTWRITEBYTECODE would
                # leave one side compiling every module it imports, every run: tenths of a second).
                compileall.compile_dir(os.path.join(tree, "dialogctl"), quiet=1)
                env = dict(os.environ, PYTHONPATH=tree)
                found = subprocess.run(
                    [sys.executable, "-P", "-c", "import dialogctl; print(dialogctl.__file__)"], capture_output=True, text=True, env=env, check=True
                )
                if not found.stdout.strip().startswith(tree):
                    raise SystemExit(f"PYTHONPATH={tree} runs the dialogctl of {found.stdout.strip()}: both sides would run the same code")
            table = commands(args.root, args.jsonl, scratch)
            chosen = [w for w in (args.workloads or WORKLOADS) if w in table]
            if not chosen:
                raise SystemExit("nothing to run: give --root for the reading workloads, --jsonl for append")
            runs: dict[str, dict[str, list[tuple[float, float]]]] = {w: {rev: [], "this tree": []} for w in chosen}
            for _ in range(args.rounds):
                for workload in chosen:
                    command, stdin, before = table[workload]
                    for name, tree in ((rev, str(old)), ("this tree", str(TREE))):
                        runs[workload][name].append(timed(tree, command, stdin, before))
        finally:
            subprocess.run(["git", "-C", str(TREE), "worktree", "remove", "--force", str(old)], check=False)
    print(
        f"`python bench/against.py {' '.join(sys.argv[1:])}`: medians of {args.rounds} alternating rounds, load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print(f"| workload | {rev} wall | this tree wall | ratio | {rev} CPU | this tree CPU | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for workload, by in runs.items():
        (old_wall, old_cpu), (new_wall, new_cpu) = (
            (statistics.median(t[0] for t in by[n]), statistics.median(t[1] for t in by[n])) for n in (rev, "this tree")
        )
        print(
            f"| {workload} | {old_wall:.2f} s | {new_wall:.2f} s | {new_wall / old_wall:.2f}x "
            f"| {old_cpu:.2f} s | {new_cpu:.2f} s | {new_cpu / max(old_cpu, 1e-3):.2f}x |"
        )


if __name__ == "__main__":
    main()
