"""dialogctl against the tools an operator would use instead on the same files (issue 17).

    python bench/limits.py                  # 10k, 100k and 1M messages: the full run (results in bench/results/)
    python bench/limits.py --quick          # a 2,000-message smoke run, under two minutes (bench/work/limits-quick/)
    python bench/limits.py --size 100000    # one size only (repeatable; bench/work/limits-sizes/ unless --out)
    python bench/limits.py --report bench/results/limits.json   # only redraw the table and chart

The full run (10k/100k/1M, 40 to 60 minutes on 2 cores, most of it at 1M) is
the one to commit once the issue 17 optimisations are merged:
``pip install -e '.[bench]' && python bench/limits.py`` writes ``limits.md``,
``limits.json`` and ``limits.png`` to ``bench/results/``, replacing the first
measurement committed with them (100k messages only, before the optimisations,
``--size 100000 --out bench/results`` on a loaded machine).

Each journal is written by dialogctl itself (``append --jsonl`` of the synthetic
messages of ``bench/synthetic.py``, 100 messages a user, sharded, as
``bench/run.py`` builds them), and every workload is measured against its
baseline in the same run, each command a whole process (start-up included),
the median of ``--runs`` runs; peak RSS is GNU time's (the largest single
process: a worker's or the parent's):

1. ``search 'Zürich 東京' -a``                  vs ``grep -rFi``                 target <= 4x
2. ``search -E 'rollback|résumé|データ [0-9]' -a`` vs ``grep -rEi``             target <= 6x
3. ``export --all --format jsonl > /dev/null``  vs ``cat`` of every file         target <= 5x
4. first ``stats`` (``system/catalog.bin`` removed) vs ``cat`` of every file     target <= 4x
5. warm ``stats``                               vs ``stat`` of every file        target <= 2x
6. ``stats`` after 1% appends over every user   vs ``stat`` of every file        target <= 3x
7. ``append --jsonl`` of every message, msg/s   vs a raw append of the same bytes
   with one write and fsync per user (``baselines.raw_append``)                   target >= 0.33x
   and peak RSS below 150 MB for every workload (the target is for 1M messages).

grep searches exactly the files dialogctl searches: ``grep -r --include='*.yaml'
--exclude=metadata.yaml ROOT/users``, every conversation file with archives
(before timing, the harness checks that the files grep reads are exactly the
journal's conversation files).
Both run under ``LC_ALL=C.UTF-8`` so that ``-i`` folds non-ASCII letters, and
both write their hits to a file (GNU grep stops at its first match when its
output is ``/dev/null``). dialogctl prints ``--format jsonl``, one line per
message; grep one line per matching line, so the counts differ: the table shows
dialogctl's messages, grep's lines, and the files with a hit for both, which
agree when they searched the same data.

Wall times are what the targets are set in; the CPU seconds of each process
and the children it waited for are recorded beside them, because on a shared
machine the wall times include waiting for a core (the load average at the
start and end of each size is in the table) and CPU seconds do not. dialogctl's bytecode is compiled first, as
``pip install`` does: with ``PYTHONDONTWRITEBYTECODE`` set, an editable install
would otherwise compile every module again in every process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as harness  # noqa: E402
import synthetic  # noqa: E402

from dialogctl.disk import paths  # noqa: E402

SIZES = [10_000, 100_000, 1_000_000]
QUICK = [2_000]
RSS_TARGET_MB = 150
LOCALE = "C.UTF-8"
FIXED = "Zürich 東京"  # the pattern: two words of the synthetic vocabulary side by side
REGEX = "rollback|résumé|データ [0-9]"
GREP_FILES = ["--include=*.yaml", "--exclude=" + paths.METADATA_FILE]  # the last matching one wins: metadata.yaml is out


class Workload(NamedTuple):
    key: str
    name: str
    baseline: str
    target: float
    title: str  # for the chart, in ASCII (the default font has no CJK glyphs)
    higher_is_better: bool = False  # append: a rate, not a time

    def met(self, ratio: float) -> bool:
        return ratio >= self.target if self.higher_is_better else ratio <= self.target

    def target_text(self) -> str:
        return f">= {self.target:g}x" if self.higher_is_better else f"<= {self.target:g}x"


WORKLOADS = [
    Workload("search_fixed", f"`search '{FIXED}' -a`", "`grep -rFi`", 4, "1. search, fixed string"),
    Workload("search_regex", f"`search -E '{REGEX}' -a`".replace("|", "\\|"), "`grep -rEi`", 6, "2. search -E, regex"),
    Workload("export", "`export --all --format jsonl`", "`cat` of every file", 5, "3. export --all jsonl"),
    Workload("stats_first", "first `stats` (no catalog)", "`cat` of every file", 4, "4. first stats (no catalog)"),
    Workload("stats_warm", "warm `stats`", "`stat` of every file", 2, "5. warm stats"),
    Workload("stats_after", "`stats` after 1% appends over every user", "`stat` of every file", 3, "6. stats after 1% appends"),
    Workload("append", "`append --jsonl` of every message (msg/s)", "raw append, one fsync per user", 0.33, "7. append --jsonl (msg/s)", True),
]


def grep_command(flags: str, pattern: str, root: Path) -> list[str]:
    return ["grep", flags, *GREP_FILES, "--", pattern, str(root / paths.USERS_DIR)]


def check_grep_files(root: Path) -> int:
    """The number of files grep reads, which must be the journal's conversation files."""
    listed = subprocess.run(["grep", "-rc", *GREP_FILES, "", str(root / paths.USERS_DIR)], capture_output=True, check=False).stdout
    searched = {line.rsplit(b":", 1)[0] for line in listed.splitlines()}
    expected = {str(p).encode() for p in harness.conversation_files(root)}
    if searched != expected:
        raise SystemExit(f"bench: grep reads {len(searched)} files, the journal has {len(expected)} conversation files: the baselines would differ")
    return len(expected)


def timed(cmd: list[str], runs: int, out: Path, **kw: Any) -> dict[str, Any]:
    """Median time and peak RSS of ``runs`` runs, stdout to ``out`` (exit 1, nothing found, is allowed)."""
    return harness.median(cmd, runs, stdout=str(out), ok=(0, 1), **kw)


def search_counts(out: Path) -> dict[str, int]:
    """Messages and conversations with a hit in dialogctl's JSONL."""
    hits = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {"messages": len(hits), "files": len({(h["user"], h["archived"], h["conversation"]) for h in hits})}


def grep_counts(out: Path) -> dict[str, int]:
    """Matching lines and files with a hit in grep's ``path:line`` output."""
    lines = out.read_bytes().splitlines()
    return {"lines": len(lines), "files": len({line.split(b":", 1)[0] for line in lines})}


def bench_size(size: int, work: Path, runs: int) -> dict[str, Any]:
    users = max(1, size // 100)
    res: dict[str, Any] = {"messages": size, "users": users, "runs": runs, "load_before": os.getloadavg()[0]}
    jsonl = work / f"messages-{size}.jsonl"
    if not jsonl.exists():
        synthetic.write_jsonl(str(jsonl), size, users)
    root = work / f"journal-{size}"
    out = work / "limits-out.txt"
    dctl = [*harness.DIALOGCTL, "--root", str(root)]
    w: dict[str, Any] = {}
    print(f"== {size:,} messages, {users:,} users", flush=True)

    # 7. The batch append, which also writes the journal every other workload reads.
    builds, rss = harness.build_journal(dctl, root, jsonl, runs if size <= 100_000 else 1)
    raw_times = []
    scratch = work / "scratch"
    for _ in range(runs):
        shutil.rmtree(scratch, ignore_errors=True)
        raw_times.append(json.loads(harness.run([*harness.BASE, "raw_append", str(scratch), str(jsonl)], capture=True)[2])["seconds"])
    shutil.rmtree(scratch, ignore_errors=True)
    ours = {"s": statistics.median(builds), "rss_mb": rss / 1024, "runs": len(builds)}
    base = {"s": statistics.median(raw_times), "runs": runs}
    w["append"] = {"dialogctl": ours, "baseline": base, "dialogctl_mps": size / ours["s"], "baseline_mps": size / base["s"]}
    w["append"]["ratio"] = w["append"]["dialogctl_mps"] / w["append"]["baseline_mps"]
    res["files"] = check_grep_files(root)
    res["bytes"] = harness.journal_bytes(root)
    print(f"  journal: {res['files']:,} conversation files, {res['bytes'] / 1e6:.1f} MB; append {w['append']['ratio']:.2f}x raw", flush=True)

    # 1-2. Search against grep, both writing their hits to a file.
    for key, args, flags, pattern in (("search_fixed", [FIXED], "-rFi", FIXED), ("search_regex", ["-E", REGEX], "-rEi", REGEX)):
        ours = timed([*dctl, "search", *args, "-a", "--format", "jsonl"], runs, out)
        ours_counts = search_counts(out)
        base = timed(grep_command(flags, pattern, root), runs, out)
        w[key] = {"dialogctl": ours, "baseline": base, "dialogctl_hits": ours_counts, "grep_hits": grep_counts(out)}
        print(f"  {key}: {w[key]['dialogctl_hits']} vs grep {w[key]['grep_hits']}", flush=True)
    out.unlink()

    # 3-4. Reading everything: export and a first stats against cat.
    cat = harness.median(harness.cat_every_file(root), runs)
    w["export"] = {"dialogctl": harness.median([*dctl, "export", "--all", "--format", "jsonl"], runs, stdout=os.devnull), "baseline": cat}
    catalog = root.joinpath(*paths.CATALOG)
    cold: list[float] = []
    cold_cpu: list[float] = []
    cold_rss = 0
    for _ in range(runs):
        catalog.unlink(missing_ok=True)
        t, r, _ = harness.run([*dctl, "stats", "--format", "json"], cpu=cold_cpu)
        cold.append(t)
        cold_rss = max(cold_rss, r)
    ours = {"s": statistics.median(cold), "cpu_s": statistics.median(cold_cpu), "rss_mb": cold_rss / 1024, "runs": runs}
    w["stats_first"] = {"dialogctl": ours, "baseline": cat}

    # 5-6. stats from the catalog against stat, before and after 1% appends spread over every user.
    stat = harness.median([*harness.BASE, "stat_all", str(root)], runs)
    w["stats_warm"] = {"dialogctl": harness.median([*dctl, "stats", "--format", "json"], runs), "baseline": stat}
    after: list[float] = []
    after_cpu: list[float] = []
    after_rss = 0
    for number in range(runs):
        extra = harness.one_percent(size, users, work, number)
        harness.run([*dctl, "-q", "append", "--jsonl"], stdin=str(extra))
        t, r, _ = harness.run([*dctl, "stats", "--format", "json"], cpu=after_cpu)
        after.append(t)
        after_rss = max(after_rss, r)
    ours = {"s": statistics.median(after), "cpu_s": statistics.median(after_cpu), "rss_mb": after_rss / 1024, "runs": runs}
    w["stats_after"] = {"dialogctl": ours, "baseline": harness.median([*harness.BASE, "stat_all", str(root)], runs)}

    for key, entry in w.items():
        if key != "append":
            entry["ratio"] = entry["dialogctl"]["s"] / entry["baseline"]["s"]
            entry["cpu_ratio"] = entry["dialogctl"]["cpu_s"] / max(entry["baseline"]["cpu_s"], 1e-3)
        print(f"  {key}: {entry['ratio']:.2f}x, peak RSS {entry['dialogctl']['rss_mb']:.0f} MB", flush=True)
    res["workloads"] = w
    res["load_after"] = os.getloadavg()[0]
    return res


def report(results: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "limits.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    sizes = results["sizes"]
    head = " | ".join(f"{r['messages']:,} msgs" for r in sizes)
    lines = [
        "# dialogctl at the limits: against grep, cat, stat and a raw append (issue 17)",
        "",
        f"Machine: {results['cores']} cores, Python {results['python']}, {results['grep']}, LC_ALL={results['locale']}; {results['when']}; "
        f"command: `{results['command']}`.",
        "Each ratio is dialogctl's median time over its baseline's, both whole processes in the same run "
        "(append: dialogctl's messages/s over the raw append's, whose time is its writes and fsyncs only). "
        "Journals written by `dialogctl append --jsonl`, 100 messages a user. How it is measured: `bench/limits.py`.",
        "Load average (1 min) when each size started and ended, other work included: "
        + ", ".join(f"{r['messages']:,}: {r['load_before']:.1f} / {r['load_after']:.1f}" for r in sizes)
        + f" (on {results['cores']} cores: above that, other work shared the cores and every time, ours and the baselines', is longer than on an idle machine).",
        "",
        "## Ratios",
        "",
        f"| workload | baseline | {head} | target |",
        "|---|---|" + "---:|" * len(sizes) + "---|",
    ]

    def mark(workload: Workload, ratio: float) -> str:
        return f"{ratio:.2f}x" + ("" if workload.met(ratio) else " **(not met)**")

    for wl in WORKLOADS:
        cells = " | ".join(mark(wl, r["workloads"][wl.key]["ratio"]) for r in sizes)
        lines.append(f"| {wl.name} | {wl.baseline} | {cells} | {wl.target_text()} |")
    cells = " | ".join(
        f"{m:.0f} MB" + ("" if m < RSS_TARGET_MB else " **(not met)**") for m in (max(w["dialogctl"]["rss_mb"] for w in r["workloads"].values()) for r in sizes)
    )
    lines += [f"| peak RSS, largest of the workloads | | {cells} | < {RSS_TARGET_MB} MB at 1M |", ""]
    lines += [
        "## Times",
        "",
        "The CPU columns are user + system seconds of each process and the children it waited for (dialogctl's workers, "
        "the `find | xargs cat` pipeline). Unlike the wall times the targets are set in, they leave out time spent waiting "
        "for a core while other work ran; they exceed the wall time when dialogctl uses both cores. The append's baseline "
        "times its writes and fsyncs inside one process, so it has no CPU figure.",
        "",
        "| messages | files | MB | workload | dialogctl | baseline | ratio | target | met | CPU: dialogctl | CPU: baseline | CPU ratio | peak RSS |",
        "|---:|---:|---:|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in sizes:
        for wl in WORKLOADS:
            w = r["workloads"][wl.key]
            if wl.higher_is_better:
                ours, base = f"{w['dialogctl_mps']:,.0f} msg/s", f"{w['baseline_mps']:,.0f} msg/s"
                cpu = "| - | - | -"
            else:
                ours, base = f"{w['dialogctl']['s']:.3f} s", f"{w['baseline']['s']:.3f} s"
                cpu = f"| {w['dialogctl']['cpu_s']:.3f} s | {w['baseline']['cpu_s']:.3f} s | {w['cpu_ratio']:.2f}x"
            lines.append(
                f"| {r['messages']:,} | {r['files']:,} | {r['bytes'] / 1e6:.1f} | {wl.name} | {ours} | {base} | {w['ratio']:.2f}x "
                f"| {wl.target_text()} | {'yes' if wl.met(w['ratio']) else '**no**'} {cpu} | {w['dialogctl']['rss_mb']:.0f} MB |"
            )
    lines += [
        "",
        "## The searches read the same data",
        "",
        "dialogctl counts messages, grep matching lines (a message can hold several); the files with a hit are counted by both.",
        "",
        "| messages | search | dialogctl: messages | grep: lines | dialogctl: files with a hit | grep: files with a hit |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in sizes:
        for key in ("search_fixed", "search_regex"):
            w = r["workloads"][key]
            ours, theirs = w["dialogctl_hits"], w["grep_hits"]
            name = next(wl.name for wl in WORKLOADS if wl.key == key)
            lines.append(f"| {r['messages']:,} | {name} | {ours['messages']:,} | {theirs['lines']:,} | {ours['files']:,} | {theirs['files']:,} |")
    lines += ["", "![ratio against journal size](limits.png)", ""]
    text = "\n".join(lines)
    (out / "limits.md").write_text(text)
    chart(results, out / "limits.png")
    return text


def plain(markdown: str) -> str:
    """A table cell in a chart: without its backquotes."""
    return markdown.replace("`", "")


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    sizes = [r["messages"] for r in results["sizes"]]
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.5))
    for ax, wl in zip(axes.flat, WORKLOADS, strict=False):
        ratios = [r["workloads"][wl.key]["ratio"] for r in results["sizes"]]
        ax.plot(sizes, ratios, "-o", label="dialogctl / baseline")
        ax.axhline(wl.target, color="tab:red", linestyle="--", label=f"target {wl.target_text()}")
        ax.set_title(wl.title + "\nvs " + plain(wl.baseline), fontsize=8)
        ax.set_ylabel("rate ratio (higher is better)" if wl.higher_is_better else "time ratio (lower is better)", fontsize=7)
        ax.set_yscale("log")  # ratios of 100x and a target of 4x on one axis
        ax.set_ylim(min([*ratios, wl.target]) / 1.5, max([*ratios, wl.target]) * 1.5)
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax = axes.flat[len(WORKLOADS)]
    for wl in WORKLOADS:
        ax.plot(sizes, [r["workloads"][wl.key]["dialogctl"]["rss_mb"] for r in results["sizes"]], "-o", label=wl.key)
    ax.axhline(RSS_TARGET_MB, color="tab:red", linestyle="--", label=f"target < {RSS_TARGET_MB} MB")
    ax.set_title("peak RSS (MB)", fontsize=8)
    ax.legend(fontsize=6)
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("messages in the journal", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"dialogctl against grep, cat, stat and a raw append ({results['when']}, {results['cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 2,000-message journal: a smoke run")
    parser.add_argument("--size", type=int, action="append", help="only this many messages (repeatable; users = messages / 100)")
    parser.add_argument("--runs", type=int, default=None, help="runs per measurement (median); default 5, 3 with --quick")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results (--quick: bench/work/limits-quick, --size: bench/work/limits-sizes, so they never replace the committed results)",
    )
    parser.add_argument("--report", type=Path, default=None, help="only rewrite limits.md and limits.png (in --out) from this limits.json")
    args = parser.parse_args()
    if args.report is not None:
        print(report(json.loads(args.report.read_text()), args.out or args.report.parent))
        return
    runs = args.runs or (3 if args.quick else 5)
    if args.out is None:
        args.out = args.work / "limits-quick" if args.quick else args.work / "limits-sizes" if args.size else HERE / "results"
    args.out = args.out.resolve()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    harness.WORK_CWD[0] = str(args.work)
    harness.compile_bytecode()
    os.environ["LC_ALL"] = LOCALE  # grep -i folds non-ASCII letters only in a UTF-8 locale
    grep_version = subprocess.run(["grep", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python bench/limits.py", *sys.argv[1:]]),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "grep": grep_version,
        "locale": LOCALE,
    }
    results["sizes"] = [bench_size(size, args.work, runs if size < 1_000_000 else min(runs, 3)) for size in (QUICK if args.quick else args.size or SIZES)]
    print(report(results, args.out))


if __name__ == "__main__":
    main()
