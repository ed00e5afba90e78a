"""The baselines dialogctl is measured against, each run as its own process by ``bench/run.py``.

(a) ``ruamel_*``: the straightforward implementation: parse every file with
    ruamel.yaml (its C loader when installed), re-read and rewrite the whole
    conversation on every append, as the reference implementation does;
(b) ``sqlite_*``: one SQLite table of the same messages, what other systems in
    this field use: executemany in one transaction, count/min/max, a streamed
    SELECT to JSONL;
(c) the limits: ``stat`` of every file, ``cat`` of every file, and a raw
    append of pre-formatted bytes.

Usage: ``python bench/baselines.py NAME ARGS...``; prints a result line on stdout.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from typing import Any


def yaml_files(root: str) -> Iterator[str]:
    """Every conversation file (``*.yaml`` below a ``dialogs/`` folder; not users' metadata.yaml)."""
    stack = [os.path.join(root, "users")]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.name.endswith(".yaml") and f"{os.sep}dialogs{os.sep}" in entry.path:
                yield entry.path


def stat_all(root: str) -> None:
    count = sum(1 for path in yaml_files(root) if os.lstat(path))
    print(count)


def _yaml() -> Any:
    """ruamel.yaml's safe loader and dumper: the C (libyaml) ones when installed; timestamps kept as text."""
    from ruamel.yaml.constructor import SafeConstructor

    try:
        from ruamel.yaml.cyaml import CSafeDumper as Dumper
        from ruamel.yaml.cyaml import CSafeLoader as Base
    except ImportError:
        from ruamel.yaml import SafeDumper as Dumper  # type: ignore[assignment]
        from ruamel.yaml import SafeLoader as Base  # type: ignore[assignment]

    class Loader(Base):  # type: ignore[misc,valid-type]
        max_depth = 0  # ruamel.yaml 0.19's composer asks its loader for this; the old-style classes lack it

    Loader.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
    return Loader, Dumper


def _load_messages(yaml: Any, path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    loader = yaml[0](text)
    docs = []
    try:
        while loader.check_data():
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
    finally:
        loader.dispose()
    if len(docs) == 1 and isinstance(docs[0], list):
        return docs[0]
    return docs


def _dump(yaml: Any, messages: list[dict[str, Any]], out: Any) -> None:
    dumper = yaml[1](out, allow_unicode=True)
    try:
        dumper.open()
        dumper.represent(messages)
        dumper.close()
    finally:
        dumper.dispose()


def ruamel_stats(root: str) -> None:
    yaml = _yaml()
    total, oldest, newest, roles = 0, None, None, {}  # type: ignore[var-annotated]
    for path in yaml_files(root):
        for msg in _load_messages(yaml, path):
            total += 1
            roles[msg["role"]] = roles.get(msg["role"], 0) + 1
            ts = str(msg.get("timestamp"))
            oldest = ts if oldest is None or ts < oldest else oldest
            newest = ts if newest is None or ts > newest else newest
    print(json.dumps({"messages": total, "oldest": oldest, "newest": newest, "roles": roles}))


def ruamel_export(root: str) -> None:
    yaml = _yaml()
    out = sys.stdout
    for path in sorted(yaml_files(root)):
        for index, msg in enumerate(_load_messages(yaml, path)):
            out.write(json.dumps({"path": path, "index": index, **msg}, ensure_ascii=False, default=str) + "\n")


def ruamel_append(root: str, jsonl: str, limit: str, threshold: str) -> None:
    """Append messages one by one the reference way: load the whole conversation, add one, dump it all."""
    yaml = _yaml()
    most, cap = int(limit), int(threshold)
    start = time.perf_counter()
    done = 0
    with open(jsonl, encoding="utf-8") as fh:
        for line in fh:
            if done >= most:
                break
            record = json.loads(line)
            folder = os.path.join(root, "users", record.pop("user"), "dialogs")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, "current.yaml")
            messages = _load_messages(yaml, path) if os.path.exists(path) else []
            messages.append(record)
            if len(messages) >= cap:
                os.makedirs(os.path.join(folder, "archived"), exist_ok=True)
                target = os.path.join(folder, "archived", f"{done}.yaml")
                messages_to_write, messages = messages, []
            else:
                target, messages_to_write = path, messages
            with open(target, "w", encoding="utf-8") as out:
                _dump(yaml, messages_to_write, out)
            if not messages:
                open(path, "w").close()
            done += 1
    print(json.dumps({"messages": done, "seconds": time.perf_counter() - start}))


def raw_append(root: str, jsonl: str) -> None:
    """The disk's limit for appends: pre-formatted bytes, one write and fsync per user batch."""
    from dialogctl.fileformat.codec import encode_batch
    from dialogctl.models import Message

    batches: dict[str, list[Message]] = {}
    with open(jsonl, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            batches.setdefault(r["user"], []).append(Message(r["role"], r["content"], r["timestamp"], r.get("metadata")))
    data = {user: encode_batch(msgs, 1, "documents") for user, msgs in batches.items()}
    for user in data:
        os.makedirs(os.path.join(root, user), exist_ok=True)
    start = time.perf_counter()
    for user, payload in data.items():
        fd = os.open(os.path.join(root, user, "current.yaml"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
    print(json.dumps({"messages": sum(map(len, batches.values())), "seconds": time.perf_counter() - start}))


SCHEMA = "CREATE TABLE messages (user TEXT, conversation TEXT, role TEXT, content TEXT, timestamp TEXT, metadata TEXT)"


def sqlite_build(db: str, jsonl: str) -> None:
    start = time.perf_counter()
    con = sqlite3.connect(db)
    con.execute(SCHEMA)
    with open(jsonl, encoding="utf-8") as fh, con:
        rows = (
            (r["user"], "current", r["role"], r["content"], r["timestamp"], json.dumps(r["metadata"]) if r.get("metadata") else None)
            for r in map(json.loads, fh)
        )
        con.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute("CREATE INDEX by_user ON messages (user, timestamp)")
    con.commit()
    con.close()
    print(json.dumps({"seconds": time.perf_counter() - start}))


def sqlite_append(db: str, jsonl: str) -> None:
    con = sqlite3.connect(db)
    with open(jsonl, encoding="utf-8") as fh, con:
        rows = (
            (r["user"], "current", r["role"], r["content"], r["timestamp"], json.dumps(r["metadata"]) if r.get("metadata") else None)
            for r in map(json.loads, fh)
        )
        con.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()


def ruamel_search(root: str, needle: str) -> None:
    """Messages containing ``needle`` (case-insensitive), parsing every file."""
    yaml = _yaml()
    folded = needle.casefold()
    out = sys.stdout
    for path in sorted(yaml_files(root)):
        for index, msg in enumerate(_load_messages(yaml, path)):
            if folded in str(msg.get("content", "")).casefold():
                out.write(json.dumps({"path": path, "index": index, "content": msg["content"]}, ensure_ascii=False, default=str) + "\n")


def sqlite_search(db: str, needle: str) -> None:
    con = sqlite3.connect(db)
    out = sys.stdout
    for user, conversation, content in con.execute("SELECT user, conversation, content FROM messages WHERE instr(lower(content), lower(?)) > 0", (needle,)):
        out.write(json.dumps({"user": user, "conversation": conversation, "content": content}, ensure_ascii=False) + "\n")


def sqlite_stats(db: str) -> None:
    con = sqlite3.connect(db)
    count, oldest, newest, users = con.execute("SELECT count(*), min(timestamp), max(timestamp), count(DISTINCT user) FROM messages").fetchone()
    roles = dict(con.execute("SELECT role, count(*) FROM messages GROUP BY role").fetchall())
    print(json.dumps({"messages": count, "oldest": oldest, "newest": newest, "users": users, "roles": roles}))


def sqlite_export(db: str) -> None:
    con = sqlite3.connect(db)
    out = sys.stdout
    for user, conversation, role, content, timestamp, metadata in con.execute("SELECT * FROM messages ORDER BY rowid"):
        record = {
            "user": user,
            "conversation": conversation,
            "role": role,
            "content": content,
            "timestamp": timestamp,
            "metadata": json.loads(metadata) if metadata else None,
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def sqlite_plan(db: str, inactive_cutoff: str, age_cutoff: str) -> None:
    con = sqlite3.connect(db)
    idle = con.execute("SELECT count(*) FROM (SELECT user FROM messages GROUP BY user HAVING max(timestamp) < ?)", (inactive_cutoff,)).fetchone()[0]
    old = con.execute("SELECT count(*) FROM messages WHERE timestamp < ?", (age_cutoff,)).fetchone()[0]
    print(json.dumps({"usersRemoved": idle, "messagesOlder": old}))


def sqlite_list(db: str) -> None:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT user, count(*), max(timestamp), sum(length(content)) FROM messages GROUP BY user ORDER BY user").fetchall()
    print(json.dumps([list(r) for r in rows]))


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
