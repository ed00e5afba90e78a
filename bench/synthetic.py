"""A deterministic synthetic workload: the messages the benchmark journal is built from.

Realistic mix (what chat servers log): users alternate with an assistant; user
messages are 1-3 lines, replies 1-8 lines, some with fenced code blocks and
non-ASCII text; every reply carries metadata with a model name and a token
mapping (prompt/completion/total) like the reference servers write. Messages
are spread over the 400 days before a fixed "now", so retention has old data
to plan for, and message counts per user vary (a few heavy users, many light).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta  # noqa: F401 - timedelta is used by run.py too
from pathlib import Path
from typing import Any

# Today at midnight UTC: cleanup's cut-offs are relative to the real clock.
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3.1-70b"]
WORDS = (
    "the journal keeps every message append only so a crash never loses what was said before "
    "server user assistant token model archive restore cleanup retention export stats list "
    "café naïve résumé Zürich 東京 データ сообщение λόγος 🙂 ✓ ünïcödé"
).split()
CODE = [
    "def total(xs):\n    return sum(x for x in xs if x > 0)",
    "for (let i = 0; i < n; i++) {\n  console.log(`item ${i}`);\n}",
    "SELECT user, count(*)\nFROM messages\nGROUP BY user;",
    "  indented: yes\n  - item: 1\n# not a comment",
]


def _line(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 16)))


def _content(rng: random.Random, lines: int) -> str:
    out = [_line(rng) for _ in range(lines)]
    if lines > 2 and rng.random() < 0.3:
        out.insert(rng.randint(1, lines - 1), "```\n" + rng.choice(CODE) + "\n```")
    return "\n".join(out) + ("\n" if rng.random() < 0.5 else "")


def user_id(number: int) -> str:
    return f"user-{number:05d}"


def per_user_counts(total: int, users: int, seed: int = 1) -> list[int]:
    """How many messages each user holds: skewed (a few heavy users), summing to ``total``."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(2.0) for _ in range(users)]
    scale = total / sum(weights)
    counts = [max(2, int(w * scale)) for w in weights]
    counts[0] += total - sum(counts)  # the heaviest remainder lands on one user
    if counts[0] < 2:
        counts[0] = 2
    return counts


def messages(total: int, users: int, seed: int = 1, days_back: tuple[float, float] = (1, 400)) -> Iterator[dict[str, object]]:
    """``total`` messages as ``append --jsonl`` lines (dicts), user by user, oldest first."""
    rng = random.Random(seed)
    for number, count in enumerate(per_user_counts(total, users, seed)):
        # Each user talks for a while somewhere in the last 400 days (by default).
        start = NOW - timedelta(days=rng.uniform(*days_back))
        moment = start
        for i in range(count):
            moment += timedelta(seconds=rng.uniform(5, 600))
            if i % 2 == 0:
                record: dict[str, object] = {"role": "user", "content": _content(rng, rng.randint(1, 3))}
            else:
                prompt, completion = rng.randint(20, 2000), rng.randint(10, 800)
                record = {
                    "role": "assistant",
                    "content": _content(rng, rng.randint(1, 8)),
                    "metadata": {
                        "model": rng.choice(MODELS),
                        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
                        "processingTime": rng.randint(200, 9000),
                    },
                }
            record["user"] = user_id(number)
            record["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
            yield record


def write_jsonl(path: str, total: int, users: int, seed: int = 1) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for record in messages(total, users, seed):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def reference_item(record: dict[str, object]) -> str:
    """One message byte for byte as the servers write it (``tests/reference_writer.py``), with no final newline.

    Every content line is indented four spaces, blank ones included, so a
    blank line and the empty piece after a final newline become lines of four
    spaces; a file is its items joined by ``\\n`` (see :func:`reference_file`).
    """
    return _server().format_item(record)


def reference_file(records: list[dict[str, object]]) -> str:
    """A conversation file as the servers leave it after appending ``records`` one by one: joined by ``\\n``, no final newline."""
    return "\n".join(reference_item(r) for r in records)


def _server() -> Any:
    """The byte-exact stand-in for the servers' writer, from the repository's tests."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests import reference_writer

    return reference_writer
