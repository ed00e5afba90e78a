"""dialogctl at operator scale: workloads W1-W6 against the ruamel, SQLite and disk baselines.

    python bench/run.py            # 10k, 100k and 1M messages (about 20 minutes on 2 cores)
    python bench/run.py --quick    # a 2,000-message smoke run (about two minutes; results in bench/work/)
    python bench/run.py --size 100000   # one size only (results in bench/work/results-sizes/)

Builds each synthetic journal through ``dialogctl append --jsonl`` (sharded,
realistic mix; see ``bench/synthetic.py``), measures every workload and its
baselines in the same run (medians of ``--runs`` runs, each command its own
process, peak RSS from GNU time), and writes ``results.md``, ``results.json``
and ``chart.png`` to ``bench/results/`` (``--out``). Work files go to
``bench/work/`` (``--work``), which is not kept in git.
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synthetic  # noqa: E402

PY = sys.executable
# The installed console script, as operators run it (and never the source tree's modules).
_SCRIPT = Path(sys.executable).parent / "dialogctl"
DIALOGCTL = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "dialogctl"]
BASE = [PY, str(HERE / "baselines.py")]
WORK_CWD: list[str | None] = [None]  # commands run in the work folder, away from the source tree
SIZES = [(10_000, 100), (100_000, 1_000), (1_000_000, 10_000)]
QUICK = [(2_000, 20)]


# A child's ru_maxrss starts from its parent's size at fork, so peak RSS is taken by
# GNU time (a small parent) when it is installed; otherwise it is an upper bound.
TIME = os.path.exists("/usr/bin/time")


def run(
    cmd: list[str],
    stdin: str | None = None,
    stdout: str | None = None,
    capture: bool = False,
    ok: tuple[int, ...] = (0, 5),
    cpu: list[float] | None = None,
) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB) and captured output of one process; an exit code not in ``ok`` ends the benchmark.

    ``cpu`` gets the user and system seconds of the process and of the children it waited for (workers, a pipeline's commands).
    """
    rss_file = None
    if TIME:
        rss_file = Path(WORK_CWD[0] or ".") / ".rss"
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd]
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout: Any = subprocess.PIPE if capture else (open(stdout, "wb") if stdout else subprocess.DEVNULL)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=WORK_CWD[0])
    out = proc.stdout.read().decode() if capture and proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for handle in (fin, fout):
        if hasattr(handle, "close"):
            handle.close()
    if proc.returncode not in ok:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    rss = usage.ru_maxrss
    if rss_file is not None:
        rss = int(rss_file.read_text().split()[-1])
    return elapsed, rss, out


def compile_bytecode() -> None:
    """Compile the installed package's bytecode, as ``pip install`` does.

    An editable install run with ``PYTHONDONTWRITEBYTECODE`` set (or from a
    read-only tree) never caches it, and every process would then compile
    every module it imports again: a few tenths of a second of start-up that
    no operator's install pays.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("dialogctl")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(folder, quiet=1)


def median(cmd: list[str], runs: int, **kw: Any) -> dict[str, float]:
    times: list[float] = []
    cpu: list[float] = []
    rss = 0
    for _ in range(runs):
        t, r, _ = run(cmd, cpu=cpu, **kw)
        times.append(t)
        rss = max(rss, r)
    return {"s": statistics.median(times), "cpu_s": statistics.median(cpu), "rss_mb": rss / 1024, "runs": runs}


def conversation_files(root: Path) -> list[Path]:
    """The journal's conversation files (not users' metadata.yaml)."""
    return [p for p in root.rglob("*.yaml") if "dialogs" in p.parts]


def journal_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in conversation_files(root))


def build_journal(dctl: list[str], root: Path, jsonl: Path, times: int) -> tuple[list[float], int]:
    """Write the journal afresh ``times`` times with one ``append --jsonl`` process: the wall times and the last peak RSS (KiB)."""
    builds, rss = [], 0
    for _ in range(times):
        shutil.rmtree(root, ignore_errors=True)
        t, rss, _ = run([*dctl, "-q", "append", "--jsonl"], stdin=str(jsonl))
        builds.append(t)
    return builds, rss


def cat_every_file(root: Path) -> list[str]:
    """The ``cat`` limit: every conversation file read once, as one shell pipeline."""
    return ["sh", "-c", f"find '{root}' -path '*/dialogs/*' -name '*.yaml' -type f -print0 | xargs -0 cat > /dev/null"]


def build_reference_journal(jsonl: Path, root: Path) -> None:
    """The same messages byte for byte as the servers write them (sequence form, 2x2 shards, see ``synthetic.reference_item``).

    Each server append writes its item after a ``\\n`` when the file exists, so
    a file is its items joined by ``\\n`` with no final newline.
    """
    shutil.rmtree(root, ignore_errors=True)
    files: dict[str, Any] = {}
    with open(jsonl, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            user = record["user"]
            out = files.get(user)
            if out is None:
                folder = root / "users" / user[:2] / user[2:4] / user[4:] / "dialogs"
                folder.mkdir(parents=True)
                out = files[user] = open(folder / "current.yaml", "w", encoding="utf-8")
            else:
                out.write("\n")
            out.write(synthetic.reference_item(record))
    for fh in files.values():
        fh.close()


def one_percent(size: int, users: int, work: Path, run_number: int) -> Path:
    """1% new messages for existing users, from the last day (as servers keep appending)."""
    path = work / f"new-{size}-{run_number}.jsonl"
    count = max(1, size // 100)
    with open(path, "w", encoding="utf-8") as out:
        for i, record in enumerate(synthetic.messages(count, max(1, min(users, count // 2)), seed=1000 + run_number, days_back=(0.2, 1))):
            record["user"] = synthetic.user_id((i * 7919) % users)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


NEEDLE = "Zürich 東京"  # two words of the synthetic vocabulary side by side: in some messages, not most
NEEDLE_REGEX = r"z.rich 東京"


def bench_size(size: int, users: int, work: Path, runs: int, base_runs: int) -> dict[str, Any]:
    res: dict[str, Any] = {"messages": size, "users": users}
    jsonl = work / f"messages-{size}.jsonl"
    if not jsonl.exists():
        synthetic.write_jsonl(str(jsonl), size, users)
    root = work / f"journal-{size}"
    db = work / f"sqlite-{size}.db"
    dctl = [*DIALOGCTL, "--root", str(root)]
    print(f"== {size} messages, {users} users", flush=True)

    # W1: batch append of everything, against the baselines' messages/s.
    builds, rss = build_journal(dctl, root, jsonl, runs if size <= 100_000 else 1)
    sample = min(size, 1000)
    scratch = work / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    ruamel = json.loads(run([*BASE, "ruamel_append", str(scratch), str(jsonl), str(sample), "100"], capture=True)[2])
    shutil.rmtree(scratch, ignore_errors=True)
    raw = json.loads(run([*BASE, "raw_append", str(scratch), str(jsonl)], capture=True)[2])
    shutil.rmtree(scratch, ignore_errors=True)
    if db.exists():
        db.unlink()
    t_sql, _, _ = run([*BASE, "sqlite_build", str(db), str(jsonl)], capture=True)
    res["W1"] = {
        "dialogctl_mps": size / statistics.median(builds),
        "ruamel_mps": ruamel["messages"] / ruamel["seconds"],
        "ruamel_sample": ruamel["messages"],
        "sqlite_mps": size / t_sql,
        "raw_mps": raw["messages"] / raw["seconds"],
        "rss_mb": rss / 1024,
    }
    print("  W1", res["W1"], flush=True)
    res["bytes"] = journal_bytes(root)
    res["files"] = len(conversation_files(root))

    # W2: stats cold, warm, after 1% new appends.
    catalog = root / "system" / "catalog.bin"
    cold = []
    cold_rss = 0
    for _ in range(base_runs):
        catalog.unlink(missing_ok=True)
        t, r, _ = run([*dctl, "stats", "--format", "json"])
        cold.append(t)
        cold_rss = max(cold_rss, r)
    warm = median([*dctl, "stats", "--format", "json"], runs)
    after = []
    for number in range(runs):
        extra = one_percent(size, users, work, number)
        run([*dctl, "-q", "append", "--jsonl"], stdin=str(extra))
        run([*BASE, "sqlite_append", str(db), str(extra)])
        t, _, _ = run([*dctl, "stats", "--format", "json"])
        after.append(t)
    res["W2"] = {
        "cold": {"s": statistics.median(cold), "rss_mb": cold_rss / 1024},
        "warm": warm,
        "after1pct": {"s": statistics.median(after)},
        "ruamel": median([*BASE, "ruamel_stats", str(root)], base_runs),
        "sqlite": median([*BASE, "sqlite_stats", str(db)], runs),
        "stat": median([*BASE, "stat_all", str(root)], runs),
        "cat": median(cat_every_file(root), runs),
    }
    print("  W2", res["W2"], flush=True)
    res["bytes"] = journal_bytes(root)

    # W3: export everything as JSONL.
    res["W3"] = {
        "dialogctl": median([*dctl, "export", "--all", "--format", "jsonl"], runs, stdout=os.devnull),
        "ruamel": median([*BASE, "ruamel_export", str(root)], base_runs, stdout=os.devnull),
        "sqlite": median([*BASE, "sqlite_export", str(db)], runs, stdout=os.devnull),
        "cat": res["W2"]["cat"],
    }
    ref_root = work / f"reference-{size}"
    build_reference_journal(jsonl, ref_root)
    res["W3"]["reference_bytes"] = journal_bytes(ref_root)
    res["W3"]["reference_dialogctl"] = median([*DIALOGCTL, "--root", str(ref_root), "export", "--all", "--format", "jsonl"], base_runs, stdout=os.devnull)
    res["W3"]["reference_ruamel"] = median([*BASE, "ruamel_export", str(ref_root)], base_runs, stdout=os.devnull)
    shutil.rmtree(ref_root, ignore_errors=True)
    print("  W3", res["W3"], flush=True)

    # W5: cleanup --dry-run and list over the whole journal.
    cutoff_inactive = (synthetic.NOW - synthetic.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    cutoff_age = (synthetic.NOW - synthetic.timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    res["W5"] = {
        # Idle users and expired archives (retentionDays 365 by default): decided from the catalog.
        "cleanup": median([*dctl, "cleanup", "--dry-run", "--max-inactive", "365d", "--format", "json"], runs),
        # With --max-age, every file holding messages on both sides of the cut-off is read whole.
        "cleanup_max_age": median([*dctl, "cleanup", "--dry-run", "--max-inactive", "365d", "--max-age", "300d", "--format", "json"], runs),
        "list": median([*dctl, "list", "--format", "json"], runs),
        "warm_stats": res["W2"]["warm"],
        "sqlite_cleanup": median([*BASE, "sqlite_plan", str(db), cutoff_inactive, cutoff_age], runs),
        "sqlite_list": median([*BASE, "sqlite_list", str(db)], runs),
        "ruamel": res["W2"]["ruamel"],
    }
    print("  W5", res["W5"], flush=True)

    # W6 (issue 7): search over every conversation and archive. A fixed string is
    # first looked for in the raw bytes; a regex parses every file; --since lets
    # the saved catalog rule out files whose time span is before the bound.
    recent = (synthetic.NOW - synthetic.timedelta(days=30)).strftime("%Y-%m-%d")
    res["W6"] = {
        "fixed": median([*dctl, "search", NEEDLE, "-a", "--format", "jsonl"], runs, stdout=os.devnull),
        "regex": median([*dctl, "search", "-E", NEEDLE_REGEX, "-a", "--format", "jsonl"], runs, stdout=os.devnull),
        "recent": median([*dctl, "search", NEEDLE, "-a", "--since", recent, "--format", "jsonl"], runs, stdout=os.devnull),
        "ruamel": median([*BASE, "ruamel_search", str(root), NEEDLE], base_runs, stdout=os.devnull),
        "sqlite": median([*BASE, "sqlite_search", str(db), NEEDLE], runs, stdout=os.devnull),
        "cat": res["W2"]["cat"],
    }
    print("  W6", res["W6"], flush=True)
    return res


def bench_long_conversation(work: Path, runs: int, length: int) -> dict[str, Any]:
    """W1 append cost and W4 --tail against the conversation's length."""
    big_jsonl, small_jsonl = work / f"one-user-{length}.jsonl", work / "one-user-20.jsonl"
    if not big_jsonl.exists():
        synthetic.write_jsonl(str(big_jsonl), length, 1)
    synthetic.write_jsonl(str(small_jsonl), 20, 1, seed=2)
    big, small = work / "journal-long", work / "journal-short"
    settings = ["--set", "archiveThreshold=0", "--set", f"maxConversationLength={10 * length}"]
    for root, source in ((big, big_jsonl), (small, small_jsonl)):
        shutil.rmtree(root, ignore_errors=True)
        run([*DIALOGCTL, "--root", str(root), *settings, "-q", "append", "--jsonl"], stdin=str(source))
    user = synthetic.user_id(0)

    def appends(root: Path, fresh_user: bool) -> dict[str, float]:
        times = []
        for i in range(runs):
            target = f"fresh-{i}-{time.monotonic_ns()}" if fresh_user else user
            times.append(run([*DIALOGCTL, "--root", str(root), *settings, "append", target, "one more message"])[0])
        return {"s": statistics.median(times), "runs": runs}

    floor = median([PY, "-c", "import typer, portalocker"], runs)
    return {
        "length": length,
        "append_long": appends(big, False),
        "append_empty": appends(big, True),
        "tail_long": median([*DIALOGCTL, "--root", str(big), "show", user, "--tail", "20", "--format", "jsonl"], runs),
        "tail_short": median([*DIALOGCTL, "--root", str(small), "show", user, "--tail", "20", "--format", "jsonl"], runs),
        "import_floor": floor,
    }


def report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# dialogctl benchmark results",
        "",
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {results['when']}; command: `{results['command']}`.",
        "Times are medians of the runs shown, each command a fresh process (start-up included); "
        "ratios are from this one run. `ruamel` = parse every file with ruamel.yaml (C loader), "
        "`SQLite` = one table of the same messages, limits = `os.stat`/`cat` of every file and a raw append of pre-formatted bytes.",
        "",
        "| messages | files | MB | workload | dialogctl | ruamel | SQLite | limit | vs ruamel | vs SQLite | vs limit | target | peak RSS |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]

    def row(
        r: dict[str, Any], name: str, ours: float, ruamel: float | None, sql: float | None, limit: float | None, target: str, rss: float | None, unit: str = "s"
    ) -> None:
        def fmt(v: float | None) -> str:
            if v is None:
                return "-"
            return f"{v:,.0f}" if unit == "msg/s" else f"{v:.3f}"

        if unit == "msg/s":  # higher is better: speed-up = ours / theirs
            vs_r = f"{ours / ruamel:.1f}x faster" if ruamel else "-"
            vs_s = f"{ours / sql:.2f}x" if sql else "-"
            vs_l = f"{ours / limit:.2f}x" if limit else "-"
        else:
            vs_r = f"{ruamel / ours:.1f}x faster" if ruamel else "-"
            vs_s = f"{ours / sql:.2f}x the time" if sql else "-"
            vs_l = f"{ours / limit:.2f}x" if limit else "-"
        lines.append(
            f"| {r['messages']:,} | {r['files']:,} | {r['bytes'] / 1e6:.0f} | {name} ({unit}) | {fmt(ours)} | {fmt(ruamel)} | {fmt(sql)} | {fmt(limit)} "
            f"| {vs_r} | {vs_s} | {vs_l} | {target} | {f'{rss:.0f} MB' if rss else '-'} |"
        )

    for r in results["sizes"]:
        w1, w2, w3, w5 = r["W1"], r["W2"], r["W3"], r["W5"]
        row(r, "W1 append --jsonl", w1["dialogctl_mps"], w1["ruamel_mps"], w1["sqlite_mps"], w1["raw_mps"], ">=20x ruamel", w1["rss_mb"], "msg/s")
        row(r, "W2 stats cold", w2["cold"]["s"], w2["ruamel"]["s"], w2["sqlite"]["s"], w2["cat"]["s"], ">=5x ruamel; limit=cat", w2["cold"]["rss_mb"])
        row(r, "W2 stats warm", w2["warm"]["s"], w2["ruamel"]["s"], w2["sqlite"]["s"], w2["stat"]["s"], "<=2x stat", w2["warm"]["rss_mb"])
        row(r, "W2 stats after 1% appends", w2["after1pct"]["s"], w2["ruamel"]["s"], w2["sqlite"]["s"], w2["stat"]["s"], "<=3x stat", None)
        mbps = r["bytes"] / 1e6 / w3["dialogctl"]["s"]
        row(
            r,
            f"W3 export jsonl ({mbps:.0f} MB/s)",
            w3["dialogctl"]["s"],
            w3["ruamel"]["s"],
            w3["sqlite"]["s"],
            w3["cat"]["s"],
            ">=50 MB/s, >=8x ruamel; RSS<150MB",
            w3["dialogctl"]["rss_mb"],
        )
        ref_mbps = w3["reference_bytes"] / 1e6 / w3["reference_dialogctl"]["s"]
        row(
            r,
            f"W3 export, reference-written ({ref_mbps:.0f} MB/s)",
            w3["reference_dialogctl"]["s"],
            w3["reference_ruamel"]["s"],
            None,
            None,
            "no slower than ruamel",
            w3["reference_dialogctl"]["rss_mb"],
        )
        row(
            r,
            "W5 cleanup --dry-run --max-inactive 365d",
            w5["cleanup"]["s"],
            w5["ruamel"]["s"],
            w5["sqlite_cleanup"]["s"],
            w5["warm_stats"]["s"],
            "<=2x warm stats (limit col)",
            w5["cleanup"]["rss_mb"],
        )
        row(
            r,
            "W5 same, with --max-age 300d",
            w5["cleanup_max_age"]["s"],
            w5["ruamel"]["s"],
            w5["sqlite_cleanup"]["s"],
            w5["warm_stats"]["s"],
            "(reads files straddling the cut-off)",
            w5["cleanup_max_age"]["rss_mb"],
        )
        row(
            r, "W5 list", w5["list"]["s"], w5["ruamel"]["s"], w5["sqlite_list"]["s"], w5["warm_stats"]["s"], "<=2x warm stats (limit col)", w5["list"]["rss_mb"]
        )
        w6 = r.get("W6")
        if w6 is None:  # results from before the search workload
            continue
        row(r, f"W6 search {NEEDLE!r} -a", w6["fixed"]["s"], w6["ruamel"]["s"], w6["sqlite"]["s"], w6["cat"]["s"], "(issue 7: report)", w6["fixed"]["rss_mb"])
        row(r, "W6 same as a regex (parses every file)", w6["regex"]["s"], w6["ruamel"]["s"], w6["sqlite"]["s"], w6["cat"]["s"], "", w6["regex"]["rss_mb"])
        row(r, "W6 fixed string, --since 30 days ago", w6["recent"]["s"], w6["ruamel"]["s"], w6["sqlite"]["s"], w6["cat"]["s"], "", w6["recent"]["rss_mb"])
    lc = results["long"]
    lines += [
        "",
        f"Length-independence ({lc['length']:,}-message conversation vs a short one; medians of {lc['append_long']['runs']} runs):",
        "",
        "| workload | long | short | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| W1 append one message: {lc['length']:,}-message vs empty conversation | {lc['append_long']['s']:.3f} s | {lc['append_empty']['s']:.3f} s "
        f"| {lc['append_long']['s'] / lc['append_empty']['s']:.2f}x | <=1.2x |",
        f"| W4 show --tail 20: {lc['length']:,}-message vs 20-message conversation | {lc['tail_long']['s']:.3f} s | {lc['tail_short']['s']:.3f} s "
        f"| {lc['tail_long']['s'] / lc['tail_short']['s']:.2f}x | <=3x |",
        f"| start-up floor: `python -c 'import typer, portalocker'` | {lc['import_floor']['s']:.3f} s | | | |",
        "",
        "![cost against journal size](chart.png)",
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))
    chart(results, out / "chart.png")


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["messages"] for r in results["sizes"]]
    series = {
        "dialogctl stats (cold)": [r["W2"]["cold"]["s"] for r in results["sizes"]],
        "dialogctl stats (warm)": [r["W2"]["warm"]["s"] for r in results["sizes"]],
        "dialogctl stats (after 1%)": [r["W2"]["after1pct"]["s"] for r in results["sizes"]],
        "dialogctl export": [r["W3"]["dialogctl"]["s"] for r in results["sizes"]],
        "dialogctl cleanup --dry-run": [r["W5"]["cleanup"]["s"] for r in results["sizes"]],
        "dialogctl cleanup --dry-run --max-age": [r["W5"]["cleanup_max_age"]["s"] for r in results["sizes"]],
        "dialogctl list": [r["W5"]["list"]["s"] for r in results["sizes"]],
        "ruamel stats": [r["W2"]["ruamel"]["s"] for r in results["sizes"]],
        "ruamel export": [r["W3"]["ruamel"]["s"] for r in results["sizes"]],
        "SQLite stats": [r["W2"]["sqlite"]["s"] for r in results["sizes"]],
        "SQLite export": [r["W3"]["sqlite"]["s"] for r in results["sizes"]],
        "stat every file": [r["W2"]["stat"]["s"] for r in results["sizes"]],
        "cat every file": [r["W2"]["cat"]["s"] for r in results["sizes"]],
    }
    fig, ax = plt.subplots(figsize=(9, 6))
    for label, values in series.items():
        style = "-" if label.startswith("dialogctl") else ("--" if label.startswith(("ruamel", "SQLite")) else ":")
        ax.plot(sizes, values, style, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages in the journal")
    ax.set_ylabel("seconds (median, whole process)")
    ax.set_title("dialogctl: cost against journal size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small journal: a smoke run")
    parser.add_argument("--runs", type=int, default=None, help="runs per measurement (median); default 5, 3 with --quick")
    parser.add_argument(
        "--size", type=int, action="append", help="only this many messages (repeatable; users = messages / 100); results go to bench/work/results-sizes"
    )
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: bench/results (--quick: bench/work/results-quick, so a smoke run never replaces the committed results)"
    )
    parser.add_argument("--report", type=Path, default=None, help="only rewrite results.md and chart.png (in --out) from this results.json")
    args = parser.parse_args()
    if args.report is not None:
        out = args.out or args.report.parent
        report(json.loads(args.report.read_text()), out)
        print((out / "results.md").read_text())
        return
    runs = args.runs or (3 if args.quick else 5)
    if args.out is None:
        args.out = args.work / "results-quick" if args.quick else args.work / "results-sizes" if args.size else HERE / "results"
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    WORK_CWD[0] = str(args.work)
    compile_bytecode()
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(["python bench/run.py", *sys.argv[1:]])}
    results["sizes"] = [
        bench_size(size, users, args.work, runs, 1 if size >= 1_000_000 else min(runs, 3))
        for size, users in (QUICK if args.quick else [(n, max(1, n // 100)) for n in args.size] if args.size else SIZES)
    ]
    results["long"] = bench_long_conversation(args.work, runs, 2_000 if args.quick or args.size else 100_000)
    report(results, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
