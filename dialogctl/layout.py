"""Where a user's files live: id validation, the folder layouts, and detection.

A journal root holds ``users/<user path>/dialogs/``. The user path is either
the id itself (*flat*) or the id cut into ``shardLevels`` prefixes of
``shardSize`` characters and the rest (*sharded*: ``user-1006`` with 2 levels
of 2 is ``us/er/-1006``). Independently, conversations are either one
``current.yaml`` per user or one ``session-<cid>.yaml`` per conversation id.

Two decisions a reader must know:

* Ids are validated before any path is built, so nothing that could climb out
  of the root (``..``, ``/``, NUL, control or look-alike characters) ever
  reaches a system call.
* A root records its layout in ``config/journal-config.yaml`` when dialogctl
  creates it. Roots written by the reference implementation have no record;
  their layout is detected from a sample of their folders, and anything
  ambiguous is an error naming the setting to pass, never a guess.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

from .errors import InvalidUserId, LayoutError

Scheme = Literal["flat", "sharded"]
ConversationFiles = Literal["current", "sessions"]

USERS_DIR = "users"
DIALOGS_DIR = "dialogs"
ARCHIVE_DIR = "archived"
CURRENT_FILE = "current.yaml"
SESSION_PREFIX = "session-"
YAML_SUFFIX = ".yaml"
LOCK_FILE = ".lock"
RECORD_PATH = ("config", "journal-config.yaml")

MAX_ID_BYTES = 200
# ASCII punctuation accepted in ids; everything else must be a letter, digit or mark.
_ID_PUNCTUATION = frozenset("-_.@+=:~,")
# Archive and session ids may also hold inner spaces: the reference names its
# archives ``archive-2024-01-15 10-30-00.yaml``.
_NAME_PUNCTUATION = _ID_PUNCTUATION | {" "}
_ID_CATEGORIES = ("L", "N", "M")


_PLAIN_IDS: dict[bool, Any] = {}  # compiled on first use (start-up matters)


def _plainly_valid(value: str, spaces: bool) -> bool:
    """The common case, decided by one pattern: an ASCII id that passes every check below."""
    pattern = _PLAIN_IDS.get(spaces)
    if pattern is None:
        import re

        char = "A-Za-z0-9_@+=:~,-"
        if spaces:
            pattern = re.compile(f"[{char}](?:[{char}. ]{{0,198}}[{char}.])?")
        else:
            pattern = re.compile(f"[{char}][{char}.]{{0,199}}")
        _PLAIN_IDS[spaces] = pattern
    return pattern.fullmatch(value) is not None


def _check_id(value: object, what: str, punctuation: frozenset[str]) -> str:
    if not isinstance(value, str) or value == "":
        raise InvalidUserId(f"{what} must not be empty")
    if _plainly_valid(value, " " in punctuation):
        return value
    shown = value.encode("unicode_escape").decode("ascii")[:80]
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InvalidUserId(f"{what} {shown!r} is longer than {MAX_ID_BYTES} bytes")
    if value[0] in ". " or value[-1] == " ":
        raise InvalidUserId(f"{what} {shown!r} must not start with '.' or a space, nor end with a space")
    for ch in value:
        if ch.isascii():
            if ch.isalnum() or ch in punctuation:
                continue
        elif unicodedata.category(ch)[0] in _ID_CATEGORIES:
            continue
        raise InvalidUserId(
            f"{what} {shown!r} holds the character {ch.encode('unicode_escape').decode('ascii')!r}; ids may hold letters, digits and - _ . @ + = : ~ ,"
        )
    # Look-alikes: a fullwidth or compatibility form would name a different
    # folder than the id it resembles.
    if unicodedata.normalize("NFKC", value) != value:
        raise InvalidUserId(f"{what} {shown!r} is not in Unicode normal form NFKC (look-alike characters)")
    return value


def validate_user_id(user: object) -> str:
    """Return ``user`` if it is a safe user id, else raise :class:`InvalidUserId`."""
    return _check_id(user, "user id", _ID_PUNCTUATION)


def check_user_folder(user: str, parts: tuple[str, ...], layout: Layout) -> None:
    """Refuse a folder found under ``users/`` whose id is unsafe or that is not where the layout keeps that id.

    (``users/us/er.old/dialogs`` reads as user ``user.old``, whom the sharded
    layout keeps in ``users/us/er/.old``: every operation on it would miss.)
    """
    validate_user_id(user)
    if layout.user_parts(user) != parts:
        raise InvalidUserId(f"folder users/{'/'.join(parts)} is not where the {layout.describe()} layout keeps user {user!r}")


def validate_name(name: object, what: str = "conversation id") -> str:
    """Validate a session or archive id (which may contain inner spaces)."""
    return _check_id(name, what, _NAME_PUNCTUATION)


class Layout(NamedTuple):
    scheme: Scheme = "sharded"
    shard_levels: int = 2
    shard_size: int = 2
    conversations: ConversationFiles = "current"

    def user_parts(self, user: str) -> tuple[str, ...]:
        """The folder names below ``users/`` for a (validated) user id."""
        if self.scheme == "flat":
            return (user,)
        parts: list[str] = []
        rest = user
        for _ in range(self.shard_levels):
            segment, rest = rest[: self.shard_size], rest[self.shard_size :]
            if segment:
                parts.append(segment)
        if rest:
            parts.append(rest)
        if DIALOGS_DIR in parts[:-1] or (len(parts) > 1 and parts[-1] == DIALOGS_DIR):
            raise InvalidUserId(f"user id {user!r} cannot be stored in this layout: a folder would be named 'dialogs'")
        for part in parts:
            if part.startswith(".") or part.startswith(" ") or part.endswith(" "):
                raise InvalidUserId(f"user id {user!r} cannot be stored in this layout: folder {part!r} would be hidden")
        return tuple(parts)

    def describe(self) -> str:
        where = "flat" if self.scheme == "flat" else f"sharded {self.shard_levels}x{self.shard_size}"
        return f"{where}, {self.conversations} conversation files"

    def as_record(self) -> dict[str, object]:
        return {
            "layout": self.scheme,
            "shardLevels": self.shard_levels,
            "shardSize": self.shard_size,
            "conversations": self.conversations,
        }


def session_file(cid: str) -> str:
    return f"{SESSION_PREFIX}{cid}{YAML_SUFFIX}"


def archive_file(archive_id: str) -> str:
    return f"{archive_id}{YAML_SUFFIX}"


# --- walking and detection -------------------------------------------------


def iter_user_folders(root: str, limit: int | None = None, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """Yield the path parts (below ``users/``) of every folder that holds ``dialogs/``.

    Symlinks are never followed. Yields at most ``limit`` folders when given.
    With ``prefix``, only folders of ids starting with it, and only folders
    that can lead to such ids are entered (shell completion stays fast).
    """
    base = os.path.join(root, USERS_DIR)
    stack: list[tuple[str, ...]] = [()]
    found = 0
    while stack:
        parts = stack.pop()
        try:
            with os.scandir(os.path.join(base, *parts)) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            continue
        subdirs = sorted((name for name, is_dir in entries if is_dir and not name.startswith(".")), reverse=True)
        so_far = "".join(parts)
        if parts and DIALOGS_DIR in subdirs and so_far.startswith(prefix):
            yield parts
            found += 1
            if limit is not None and found >= limit:
                return
        for name in subdirs:
            below = so_far + name
            if (name != DIALOGS_DIR or not parts) and (below.startswith(prefix) or prefix.startswith(below)):
                stack.append(parts + (name,))


class Detected(NamedTuple):
    scheme: Scheme | None  # None: no user folders yet
    shard_levels: int | None
    shard_size: int | None
    conversations: ConversationFiles | None  # None: none seen, or both seen


DETECTION_SAMPLE = 256
LAYOUT_HINT = (
    "pass --layout flat|sharded with --shard-levels N --shard-size N (or DIALOGUE_JOURNAL_LAYOUT, DIALOGUE_JOURNAL_SHARD_LEVELS, DIALOGUE_JOURNAL_SHARD_SIZE)"
)


def detect_layout(root: str, sample: int = DETECTION_SAMPLE) -> Detected:
    """Infer the layout of a root written without a layout record.

    Looks at up to ``sample`` user folders. Raises :class:`LayoutError` when
    the folders fit no single layout.
    """
    folders = list(iter_user_folders(root, limit=sample))
    conversations = _detect_conversation_files(root, folders[:32])
    if not folders:
        return Detected(None, None, None, conversations)
    depth = max(len(p) for p in folders)
    if depth == 1:
        return Detected("flat", 0, 0, conversations)
    levels = depth - 1
    sizes = {len(seg) for p in folders if len(p) == depth for seg in p[:-1]}
    if len(sizes) != 1:
        raise LayoutError(f"cannot tell the layout of {root}: shard folder names have lengths {sorted(sizes)}", hint=LAYOUT_HINT)
    size = sizes.pop()
    for p in folders:
        if len(p) < depth:
            # A sharded id shorter than levels*size has fewer folders; it must
            # still be cut at the same width.
            if any(len(seg) != size for seg in p[:-1]) or len(p[-1]) > size:
                raise LayoutError(
                    f"cannot tell the layout of {root}: users/{'/'.join(p)} fits neither flat nor sharded {levels}x{size}",
                    hint=LAYOUT_HINT,
                )
    return Detected("sharded", levels, size, conversations)


def _detect_conversation_files(root: str, folders: list[tuple[str, ...]]) -> ConversationFiles | None:
    seen: set[str] = set()
    for parts in folders:
        try:
            names = os.listdir(os.path.join(root, USERS_DIR, *parts, DIALOGS_DIR))
        except OSError:
            continue
        for name in names:
            if name == CURRENT_FILE:
                seen.add("current")
            elif name.startswith(SESSION_PREFIX) and name.endswith(YAML_SUFFIX):
                seen.add("sessions")
    if len(seen) == 1:
        return "current" if "current" in seen else "sessions"
    return None


def user_id_from_parts(parts: tuple[str, ...]) -> str:
    return "".join(parts)
