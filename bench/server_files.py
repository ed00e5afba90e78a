"""Reading what the servers write against reading dialogctl's own files: the same messages, both ways.

    python bench/server_files.py                      # 100,000 messages, 1,000 users, 5 runs each
    python bench/server_files.py --messages 20000 --users 200 --runs 3

Builds one journal with ``dialogctl append --jsonl`` (dialogctl's framed
records) and one with the byte-exact stand-in for the servers' writer
(``synthetic.reference_item``: items joined by ``\\n``, no final newline, every
content line indented four spaces), from the same synthetic messages. Then
times, alternating between the two so noise hits both alike, a cold
``dialogctl stats`` (``system/catalog.bin`` deleted first) and
``dialogctl export --all --format jsonl > /dev/null``, and prints the medians
and the ratio server-written / own format (issue 12's target: at most 1.5).
Work files go to ``bench/work/server-files/`` (``--work``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
import synthetic  # noqa: E402


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=run.WORK_CWD[0])
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "server-files")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    run.WORK_CWD[0] = str(work)
    jsonl = work / f"messages-{args.messages}-{args.users}.jsonl"
    if not jsonl.exists():
        synthetic.write_jsonl(str(jsonl), args.messages, args.users)
    roots = {"own format": work / "own", "server-written": work / "server"}
    shutil.rmtree(roots["own format"], ignore_errors=True)
    with open(jsonl, "rb") as fh:
        subprocess.run([*run.DIALOGCTL, "--root", str(roots["own format"]), "-q", "append", "--jsonl"], stdin=fh, check=True, cwd=work)
    run.build_reference_journal(jsonl, roots["server-written"])
    for name, root in roots.items():
        print(f"{name}: {run.journal_bytes(root) / 1e6:.1f} MB in {len(run.conversation_files(root))} files ({root})")

    commands = {
        "stats (cold)": lambda root: [*run.DIALOGCTL, "--root", str(root), "stats", "--format", "json"],
        "export --all --format jsonl": lambda root: [*run.DIALOGCTL, "--root", str(root), "export", "--all", "--format", "jsonl"],
    }
    times: dict[tuple[str, str], list[float]] = {(c, r): [] for c in commands for r in roots}
    for _ in range(args.runs):
        for command, build in commands.items():
            for name, root in roots.items():
                (root / "system" / "catalog.bin").unlink(missing_ok=True)  # cold: every file is read and parsed
                times[(command, name)].append(timed(build(root)))
    print(f"\n{args.messages} messages, {args.users} users; median of {args.runs} runs (s)")
    print(f"{'':30} {'own format':>11} {'server-written':>15} {'ratio':>7}")
    for command in commands:
        own = statistics.median(times[(command, "own format")])
        server = statistics.median(times[(command, "server-written")])
        print(f"{command:30} {own:11.2f} {server:15.2f} {server / own:7.2f}")
    print(f"\n(cpus: {os.cpu_count()}, python: {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
