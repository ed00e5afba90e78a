"""What ``--redact`` costs an export: ``export --all --format jsonl`` of one journal with and without it, in the same run.

    python bench/redact.py                       # 20,000 messages
    python bench/redact.py --messages 100000 --runs 5

The journal (written directly as framed files with
``dialogctl.fileformat.codec.encode_batch``, 100 messages per conversation,
assistant messages with metadata) holds ordinary prose, code, timestamps and
ids, and in about one message in ten a secret: an e-mail address, a phone
number, a card number, an IBAN, an IP address or an API key. Each export runs
as a child process with stdout to /dev/null; the best of ``--runs`` is kept.
The report gives both times, the ratio, journal MB/s, and the redaction
engine alone over the same contents (MB/s, in this process). Nothing fails on
a slow machine: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import random
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
from dialogctl.views.redaction import Redactor  # noqa: E402

PER_CONVERSATION = 100
WORDS = "the a journal message order refund server user model token stream answer question code block release version at on".split()
EXTRAS = ["at 10:30", "on 2024-01-15T10:30:00Z", "order #48213", "v1.2.3", "id 1700000000000", "日本語", "emoji 🎉", "std::vector", "x[1::2]"]
SECRETS = [
    "mail me at jane.doe@example.com",
    "call +44 20 7946 0958",
    "card 4111 1111 1111 1111",
    "IBAN GB82 WEST 1234 5698 7654 32",
    "from 192.168.10.24",
    "key sk-proj-Abc123def456GHI789jkl012",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig0123",
]


def _text(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 8)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 24))]
        if rng.random() < 0.3:
            words.append(rng.choice(EXTRAS))
        lines.append(" ".join(words))
    if rng.random() < 0.1:
        lines.insert(rng.randint(0, len(lines)), rng.choice(SECRETS))
    if rng.random() < 0.25:
        lines.append("```python\n" + "\n".join(f"value_{i} = compute({i}, 'x')" for i in range(rng.randint(2, 12))) + "\n```")
    return "\n".join(lines)


def build(root: Path, total: int, seed: int = 3) -> tuple[int, list[Message]]:
    """Write the journal; return its size in bytes and its messages."""
    Journal(load_settings({"root": str(root)})).layout(for_write=True)
    layout = Layout()
    rng = random.Random(seed)
    moment = 1_700_000_000.0
    size, everything, number = 0, [], 0
    while len(everything) < total:
        number += 1
        dialogs = root.joinpath("users", *layout.user_parts(f"user-{number:05d}"), "dialogs")
        dialogs.mkdir(parents=True)
        batch = []
        for i in range(min(PER_CONVERSATION, total - len(everything))):
            moment += rng.uniform(1, 90)
            stamp = format_timestamp(datetime.fromtimestamp(moment, UTC))
            meta = None if i % 2 == 0 else {"model": "gpt-4o", "client": {"ip": f"10.0.{i}.{number % 250}"}, "tokens": {"total": rng.randint(20, 1800)}}
            batch.append(Message("user" if i % 2 == 0 else "assistant", _text(rng), stamp, meta))
        data = encode_batch(batch, 1, "documents")
        (dialogs / "current.yaml").write_bytes(data)
        size += len(data)
        everything.extend(batch)
    return size, everything


def export_seconds(root: Path, redact: bool, runs: int) -> float:
    cmd = [sys.executable, "-m", "dialogctl", "-q", "--root", str(root), "export", "--all", "--format", "jsonl"] + (["--redact"] if redact else [])
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "journal"
        size, messages = build(root, args.messages)
        plain = export_seconds(root, False, args.runs)
        redacted = export_seconds(root, True, args.runs)
        redactor = Redactor()
        started = time.perf_counter()
        for msg in messages:
            redactor.message(msg)
        engine = time.perf_counter() - started
        text_mb = sum(len(m.content.encode()) for m in messages) / 1e6
    mb = size / 1e6
    print(f"journal: {len(messages)} messages, {mb:.1f} MB (best of {args.runs} runs)")
    print(f"export --format jsonl           {plain:6.2f} s  {mb / plain:6.1f} MB/s")
    print(f"export --format jsonl --redact  {redacted:6.2f} s  {mb / redacted:6.1f} MB/s")
    print(f"ratio redacted/plain            {redacted / plain:6.2f}")
    print(f"engine alone: {text_mb:.1f} MB of content in {engine:.2f} s ({text_mb / engine:.1f} MB/s); redacted {redactor.summary()}")


if __name__ == "__main__":
    main()
