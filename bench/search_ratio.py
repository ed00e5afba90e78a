"""search against grep on the same journal root, in the same run: ``python bench/search_ratio.py ROOT [--runs N] [--tree NAME=PATH ...]``.

Times (medians of ``--runs``, each command a fresh process, runs interleaved)
``dialogctl search 'Zürich 東京' -a`` and ``search -E 'rollback|résumé|データ [0-9]' -a``
(table to a file, and ``--format jsonl``) against ``grep -rFi`` / ``grep -rEi`` of
the root, for each source tree given (``NAME=PATH``: run as ``python -m dialogctl``
with PATH first on ``sys.path``; default: the installed package), with and
without the saved catalog. Prints a Markdown table of seconds and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

FIXED = "Zürich 東京"
REGEX = "rollback|résumé|データ [0-9]"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    with open(os.devnull, "wb") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env).returncode
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)}: exit {code}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH of a dialogctl source tree")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("installed", "")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    catalog = os.path.join(args.root, "system", "catalog.bin")
    workloads = {
        "fixed, table": (["search", FIXED, "-a"], ["grep", "-rFi", FIXED, args.root]),
        "fixed, jsonl": (["search", FIXED, "-a", "--format", "jsonl"], ["grep", "-rFi", FIXED, args.root]),
        "regex, jsonl": (["search", "-E", REGEX, "-a", "--format", "jsonl"], ["grep", "-rEi", REGEX, args.root]),
    }
    print("| catalog | workload | grep s | " + " | ".join(f"{name} s | {name} / grep" for name, _ in trees) + " |")
    print("|---|---|---:|" + "---:|---:|" * len(trees))
    for with_catalog in (True, False):
        if not with_catalog and os.path.exists(catalog):
            shutil.move(catalog, catalog + ".aside")
        try:
            for label, (search, grep) in workloads.items():
                times: dict[str, list[float]] = {"grep": []}
                for _ in range(args.runs):
                    times["grep"].append(timed(grep, env))
                    for name, path in trees:
                        run_env = dict(env, PYTHONPATH=path) if path else env
                        times.setdefault(name, []).append(timed([sys.executable, "-m", "dialogctl", "--root", args.root, *search], run_env))
                g = statistics.median(times["grep"])
                cells = " | ".join(f"{statistics.median(times[name]):.2f} | {statistics.median(times[name]) / g:.1f}x" for name, _ in trees)
                print(f"| {'saved' if with_catalog else 'none'} | {label} | {g:.3f} | {cells} |", flush=True)
        finally:
            if os.path.exists(catalog + ".aside"):
                shutil.move(catalog + ".aside", catalog)


if __name__ == "__main__":
    main()
