"""Peak memory of ``dialogctl export`` on a large journal, against a small one, in the same run.

    python bench/export_memory.py                 # a 500 MB journal (and a 5 MB one)
    DIALOGCTL_BENCH_MB=2000 python bench/export_memory.py --formats jsonl,csv

Exports stream one conversation at a time, so peak RSS should not grow with
the journal: for each format this runs ``dialogctl export --all`` as a child
process on both journals and reports each child's peak RSS (``wait4``), the
ratio large/small, and the throughput in journal MB/s. A third journal holding
a single conversation of ``--conversation-mb`` MB shows what memory does
depend on: the largest conversation, which is read whole. Text formats go to
/dev/null through stdout; sqlite writes a database with ``-o`` in the work
folder, parquet a dataset folder (``pip install '.[parquet]'``; both removed afterwards).

The journals are written directly as framed files with
``dialogctl.fileformat.codec.encode_batch`` (sharded layout, 100 messages per
conversation, a current conversation and two archives per user, a realistic
mix of message sizes, code blocks, Unicode and assistant metadata), not one
append per message, and kept in ``bench/work/`` for the next run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dialogctl.config import load_settings  # noqa: E402
from dialogctl.disk.layout import Layout  # noqa: E402
from dialogctl.fileformat.codec import encode_batch  # noqa: E402
from dialogctl.journal.core import Journal  # noqa: E402
from dialogctl.models import Message  # noqa: E402
from dialogctl.times import format_timestamp  # noqa: E402

FORMATS = ("json", "jsonl", "csv", "markdown", "openai", "sharegpt", "sqlite", "parquet")
PER_CONVERSATION = 100
ARCHIVES_PER_USER = 2

WORDS = "the a journal message archive export server user model token stream memory flat large small quick answer question code block unicode".split()
SNIPPETS = ["日本語のテキスト", "Ünïcödé ✓", "emoji 🎉🚀", "Ελληνικά", "עברית", "русский текст"]


def _text(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 8)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 24))]
        if rng.random() < 0.2:
            words.append(rng.choice(SNIPPETS))
        lines.append(" ".join(words))
    if rng.random() < 0.25:
        code = "\n".join(f"    value_{i} = compute({i}, '{rng.choice(WORDS)}')" for i in range(rng.randint(2, 12)))
        lines.append(f"```python\ndef example():\n{code}\n```")
    return "\n".join(lines)


def _pool(rng: random.Random, size: int = 4000) -> list[tuple[str, str]]:
    return [(_text(rng), _text(rng) + "\n") for _ in range(size)]


def build_journal(
    root: Path, megabytes: int, per_conversation: int = PER_CONVERSATION, archives: int = ARCHIVES_PER_USER, seed: int = 7
) -> tuple[int, int, int]:
    """Write a journal of about ``megabytes`` MB; return (bytes, messages, largest file). Reuses one built before."""
    marker = root / ".bench-size"
    if marker.exists():
        recorded = [int(number) for number in marker.read_text().split()]
        return recorded[0], recorded[1], recorded[2]
    shutil.rmtree(root, ignore_errors=True)
    journal = Journal(load_settings({"root": str(root)}))
    journal.layout(for_write=True)  # records the sharded 2x2 layout
    layout = Layout()
    rng = random.Random(seed)
    pool = _pool(rng)
    target = megabytes * 1_000_000
    written = messages = user_number = largest = 0
    moment = 1_700_000_000.0
    while written < target:
        user_number += 1
        dialogs = root.joinpath("users", *layout.user_parts(f"user-{user_number:06d}"), "dialogs")
        (dialogs / "archived").mkdir(parents=True)
        for part in range(archives + 1):
            batch = []
            for i in range(per_conversation):
                question, answer = rng.choice(pool)
                moment += rng.uniform(1, 90)
                stamp = format_timestamp(datetime.fromtimestamp(moment, UTC))
                if i % 2 == 0:
                    batch.append(Message("user", question, stamp))
                else:
                    meta = {"model": "gpt-4o", "tokens": {"prompt": rng.randint(10, 900), "completion": rng.randint(10, 900), "total": rng.randint(20, 1800)}}
                    batch.append(Message("assistant", answer, stamp, meta))
            data = encode_batch(batch, 1, "documents")
            path = dialogs / "current.yaml" if part == archives else dialogs / "archived" / f"2024-01-{part + 10:02d}-10-30-00.yaml"
            path.write_bytes(data)
            written += len(data)
            messages += len(batch)
            largest = max(largest, len(data))
    marker.write_text(f"{written} {messages} {largest}")
    return written, messages, largest


# A child's ru_maxrss includes the memory of the process it was forked from
# (Linux records the old image's peak at exec), and this script holds the
# journals it built. So each command is started from a small fresh Python
# process that reports its own child's peak.
PEAK_OF_CHILD = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``cmd`` run with stdout to /dev/null."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        out = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *cmd], stdout=subprocess.PIPE, stderr=err, check=True)
        elapsed = time.perf_counter() - started
        kib, code = (int(n) for n in out.stdout.split())
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd[3:])} failed: {err.read().decode()}")
    return kib / 1024, elapsed


def measure(root: Path, fmt: str, work: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one export of the whole journal."""
    cmd = [sys.executable, "-m", "dialogctl", "--root", str(root), "export", "--all", "--format", fmt]
    target = work / "export.db"
    dataset = work / "export-parquet"
    if fmt == "sqlite":
        target.unlink(missing_ok=True)
        cmd += ["-o", str(target)]
    if fmt == "parquet":  # a dataset folder (the parquet extra)
        shutil.rmtree(dataset, ignore_errors=True)
        cmd += ["-o", str(dataset)]
    result = peak_rss(cmd)
    target.unlink(missing_ok=True)
    shutil.rmtree(dataset, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated formats (default: all)")
    parser.add_argument("--megabytes", type=int, default=int(os.environ.get("DIALOGCTL_BENCH_MB", "500")), help="size of the large journal")
    parser.add_argument("--small", type=int, default=5, help="size of the small journal (the baseline)")
    parser.add_argument("--conversation-mb", type=int, default=20, help="size of the journal that is one conversation")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "export-memory", help="where the journals live")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    journals = {
        "small": (args.work / f"journal-{args.small}mb", args.small, {}),
        "large": (args.work / f"journal-{args.megabytes}mb", args.megabytes, {}),
        # About 650 bytes a message: one conversation of about the size asked for.
        "one conversation": (
            args.work / f"conversation-{args.conversation_mb}mb",
            args.conversation_mb,
            {"per_conversation": args.conversation_mb * 1540, "archives": 0},
        ),
    }
    sizes = {}
    for label, (root, mb, shape) in journals.items():
        started = time.perf_counter()
        sizes[label] = size, count, largest = build_journal(root, mb, **shape)
        print(f"{label} journal: {size / 1e6:.0f} MB, {count:,} messages, largest conversation file {largest / 1e3:.0f} kB", file=sys.stderr)
        print(f"  ({time.perf_counter() - started:.0f} s to build or find)", file=sys.stderr)
    floor = measure_import_floor()
    print(f"\nPeak RSS of `dialogctl export --all` (child process, wait4), Python {sys.version.split()[0]}; "
          f"interpreter + dialogctl CLI imported: {floor:.0f} MiB\n")  # fmt: skip
    print(
        f"| format | RSS {sizes['small'][0] / 1e6:.0f} MB journal | RSS {sizes['large'][0] / 1e6:.0f} MB journal | large / small "
        f"| RSS one {sizes['one conversation'][2] / 1e6:.0f} MB conversation | throughput (large) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for fmt in args.formats.split(","):
        small_rss, _ = measure(journals["small"][0], fmt, args.work)
        large_rss, seconds = measure(journals["large"][0], fmt, args.work)
        one_rss, _ = measure(journals["one conversation"][0], fmt, args.work)
        print(
            f"| {fmt} | {small_rss:.0f} MiB | {large_rss:.0f} MiB | {large_rss / small_rss:.2f}x | {one_rss:.0f} MiB | {sizes['large'][0] / 1e6 / seconds:.0f} MB/s |",
            flush=True,
        )


def measure_import_floor() -> float:
    """RSS in MiB of a process that only starts Python and imports the CLI: the part no journal size can change."""
    return peak_rss([sys.executable, "-c", "import dialogctl.cli.app, dialogctl.exchange.registry, dialogctl.exchange.pipeline, dialogctl.journal.core"])[0]


if __name__ == "__main__":
    main()
