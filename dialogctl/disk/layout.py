"""Where a user's files live: id validation, the folder layouts, and detection.

A journal root holds ``users/<user path>/dialogs/``. The user path is either
the id itself (*flat*) or, as the servers place it (*sharded*), up to
``shardLevels`` prefixes of ``shardSize`` characters, then the rest of the id,
or the whole id again when the prefixes used it up: with 2 levels of 2,
``user-1006`` is ``us/er/-1006``, ``abcde`` is ``ab/cd/e``, ``bob`` is
``bo/b/bob`` and ``al`` is ``al/al``. Read back, a path whose last folder
repeats the folders above it is that last folder, any other path is all its
folders joined (:func:`user_id_from_parts`). Independently, conversations are
either one ``current.yaml`` per user or one ``session-<cid>.yaml`` per
conversation id.

Three decisions a reader must know:

* Ids are validated before any path is built, so nothing that could climb out
  of the root (``..``, ``/``, NUL, control or look-alike characters) ever
  reaches a system call. Look-alikes are compatibility forms (NFKC) and ids
  mixing scripts (Unicode TR39, "highly restrictive": :func:`mixed_scripts`).
* A root records its layout in ``config/journal-config.yaml`` when dialogctl
  creates it. Roots written by the reference implementation have no record;
  their layout is detected from a sample of their folders, and anything
  ambiguous is an error naming the setting to pass, never a guess; layout
  settings given by flag, environment or config are used as given.
* The sharded rule is not one-to-one: ``abcd`` and ``abcdabcd`` both land in
  ``ab/cd/abcd`` with 2 levels of 2, which reads back as ``abcd``. An id whose
  folder reads back as another id is refused (:meth:`Layout.user_parts`), so
  two users never share a folder. A user's folder may hold another user's
  (``ab`` lives in ``ab/ab``, ``abab`` in ``ab/ab/abab``): walkers go on below
  a user folder, and removals take only the user's own files.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from ..errors import InvalidUserId, LayoutError, StorageError
from ..models import ConversationRef
from .fileops import TEMP_MARK
from .paths import ARCHIVE_DIR as ARCHIVE_DIR
from .paths import CURRENT_FILE as CURRENT_FILE
from .paths import DIALOGS_DIR as DIALOGS_DIR
from .paths import LOCK_FILE as LOCK_FILE
from .paths import RECORD_PATH as RECORD_PATH
from .paths import SESSION_PREFIX as SESSION_PREFIX
from .paths import USERS_DIR as USERS_DIR
from .paths import YAML_SUFFIX as YAML_SUFFIX
from .tree import open_users, walk_users_tree

Scheme = Literal["flat", "sharded"]
ConversationFiles = Literal["current", "sessions"]


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
    mixed = mixed_scripts(value)
    if mixed is not None:
        raise InvalidUserId(f"{what} {shown!r} mixes {mixed} (look-alike characters); an id is written in one script (Unicode TR39)")
    return value


# Unicode TR39's augmented script sets: Han is also written in Japanese (with
# Hiragana and Katakana), Korean (with Hangul) and Bopomofo text.
_AUGMENTED = {
    "Hani": ("Hani", "Hanb", "Jpan", "Kore"),
    "Hira": ("Hira", "Jpan"),
    "Kana": ("Kana", "Jpan"),
    "Hang": ("Hang", "Kore"),
    "Bopo": ("Bopo", "Hanb"),
}
_WITH_LATIN = frozenset({"Jpan", "Kore", "Hanb"})  # TR39 "highly restrictive": these may be mixed with Latin


def mixed_scripts(value: str) -> str | None:
    """What an id mixes, in words, when it is not single-script under Unicode TR39's "highly restrictive" level; else None.

    An id passes when one script can write it all (TR39 5.1: the
    intersection of its characters' augmented Script_Extensions, where
    Common and Inherited characters, such as digits and ``-``, fit any
    script), or when it is Latin plus one of Japanese (Han, Hiragana,
    Katakana), Korean (Han, Hangul) or Han with Bopomofo. ``аlice``
    (Cyrillic ``а``) is refused; ``алиса``, ``μαρία``, ``東京ユーザー``,
    ``사용자`` and ``user-東京`` pass. Digits from two number systems are
    refused too (TR39 5.3). Only ids with non-ASCII characters get here.
    """
    from bisect import bisect_right

    from ..script_table import KINDS, NAMES, RANGES, SETS

    resolved: set[str] | None = None  # None: every script so far
    without_latin: set[str] | None = None
    seen: list[str] = []
    zeros: set[int] = set()
    for ch in value:
        point = ord(ch)
        if point < 0x80:
            if not ch.isalpha():
                continue
            kind = "Latn"
        else:
            index = bisect_right(RANGES, point) - 1
            kind = SETS[KINDS[index]] if index >= 0 else "*"
            if unicodedata.category(ch) == "Nd":
                zeros.add(point - unicodedata.decimal(ch))
            if kind == "*":
                continue
        scripts = {augmented for code in kind.split() for augmented in _AUGMENTED.get(code, (code,))}
        name = NAMES.get(kind.split()[0], kind) if kind != "Latn" else "Latin"
        if name not in seen:
            seen.append(name)
        resolved = scripts if resolved is None else resolved & scripts
        if kind != "Latn":
            without_latin = scripts if without_latin is None else without_latin & scripts
    if any(ch.isdigit() and ch.isascii() for ch in value):
        zeros.add(ord("0"))
    if len(zeros) > 1:
        return "digits of different number systems"
    if resolved is None or resolved or (without_latin and without_latin & _WITH_LATIN):
        return None
    return f"the {', '.join(seen[:-1])} and {seen[-1]} scripts"


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
        if layout.old_user_parts(user) == parts:
            raise InvalidUserId(
                f"folder users/{'/'.join(parts)} is where dialogctl before 0.2 kept user {user!r}; "
                f"the servers keep it in users/{'/'.join(layout.user_parts(user))}/, and 'dialogctl repair' moves it there"
            )
        raise InvalidUserId(f"folder users/{'/'.join(parts)} is not where the {layout.describe()} layout keeps user {user!r}")


def old_place_of(parts: tuple[str, ...], layout: Layout) -> str | None:
    """The user whose folder dialogctl before 0.2 put at ``parts`` (a short id without its last folder); else None."""
    user = user_id_from_parts(parts)
    try:
        validate_user_id(user)
        if layout.old_user_parts(user) != parts:
            return None
        layout.user_parts(user)  # and the servers' place for it is usable
    except InvalidUserId:
        return None
    return user


def validate_name(name: object, what: str = "conversation id") -> str:
    """Validate a session or archive id (which may contain inner spaces)."""
    return _check_id(name, what, _NAME_PUNCTUATION)


class Layout(NamedTuple):
    scheme: Scheme = "sharded"
    shard_levels: int = 2
    shard_size: int = 2
    conversations: ConversationFiles = "current"

    def user_parts(self, user: str) -> tuple[str, ...]:
        """The folder names below ``users/`` for a (validated) user id, exactly where the servers put it.

        Raises :class:`InvalidUserId` for an id the layout cannot store: one
        that would make a folder named ``dialogs`` or a hidden folder, or one
        whose folder reads back as another id (``abcdabcd`` in 2 levels of 2).
        """
        if self.scheme == "flat":
            return (user,)
        parts = self.cut(user)
        if DIALOGS_DIR in parts[:-1] or (len(parts) > 1 and parts[-1] == DIALOGS_DIR):
            raise InvalidUserId(f"user id {user!r} cannot be stored in this layout: a folder would be named 'dialogs'")
        for part in parts:
            if part.startswith(".") or part.startswith(" ") or part.endswith(" "):
                raise InvalidUserId(f"user id {user!r} cannot be stored in this layout: folder {part!r} would be hidden")
        owner = user_id_from_parts(parts)
        if owner != user:
            raise InvalidUserId(
                f"user id {user!r} cannot be stored in the {self.describe_folders()} layout: its folder users/{'/'.join(parts)} "
                f"is the folder of user {owner!r} (the servers put both ids there, so the two users would share one folder)"
            )
        return parts

    def cut(self, user: str) -> tuple[str, ...]:
        """The servers' rule, unchecked: up to ``shard_levels`` prefixes of ``shard_size`` characters, then the rest, or the whole id when the prefixes used it up."""
        if self.scheme == "flat":
            return (user,)
        size = self.shard_size
        parts = [user[start : start + size] for start in range(0, min(len(user), self.shard_levels * size), size)]
        rest = user[self.shard_levels * size :]
        parts.append(rest if rest else user)
        return tuple(parts)

    def old_user_parts(self, user: str) -> tuple[str, ...] | None:
        """Where dialogctl before 0.2 put ``user`` when that is not where the servers put it (short ids: without the last folder); else None."""
        if self.scheme == "flat":
            return None
        parts = self.cut(user)
        if len(parts) > 1 and parts[-1] == user:
            return parts[:-1]
        return None

    def describe_folders(self) -> str:
        return "flat" if self.scheme == "flat" else f"sharded {self.shard_levels}x{self.shard_size}"

    def describe(self) -> str:
        return f"{self.describe_folders()}, {self.conversations} conversation files"

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


def conversation_of(user: str, name: str, archived: bool = False) -> ConversationRef | None:
    """The conversation a file named ``name`` holds: the one reading of file names, for every command.

    In a user's ``dialogs/``: ``current.yaml``, and ``session-<id>.yaml``; in
    ``dialogs/archived/`` (``archived``): ``<id>.yaml``. The id must be one
    dialogctl accepts (:func:`validate_name`: so never hidden, never blank at
    either end) and hold no temporary-file mark. Any other name (an
    operator's note, a temporary file, ``session-.x.yaml``) is None: no
    conversation, never read, never removed; ``verify`` reports the unusable
    ones. Whether the file is a regular file is the caller's to check.
    """
    if not name.endswith(YAML_SUFFIX) or name.startswith(".") or TEMP_MARK in name:
        return None
    stem = name[: -len(YAML_SUFFIX)]
    if archived:
        kind: Literal["session", "archive"] = "archive"
    elif name == CURRENT_FILE:
        return ConversationRef(user, "current")
    elif stem.startswith(SESSION_PREFIX):
        kind, stem = "session", stem[len(SESSION_PREFIX) :]
    else:
        return None
    try:
        validate_name(stem)
    except InvalidUserId:
        return None
    return ConversationRef(user, kind, stem)


# --- walking and detection -------------------------------------------------


def iter_user_folders(
    root: str, limit: int | None = None, prefix: str = "", on_error: Callable[[str, StorageError], None] | None = None
) -> Iterator[tuple[str, ...]]:
    """Yield the path parts (below ``users/``) of every folder that holds ``dialogs/``.

    The walk of :mod:`dialogctl.disk.tree` (symlinks never followed, hidden
    folders never entered, a user folder's other sub-folders walked too).
    Yields at most ``limit`` folders when given. With ``prefix``, only folders
    whose id (:func:`user_id_from_parts`) starts with it, and only folders that
    can lead to such ids are entered (shell completion stays fast). A folder
    that cannot be listed is told to ``on_error`` (its path below the root, and
    the error) and left out; without ``on_error`` it is an error naming it.
    """

    def refuse(_where: str, exc: StorageError) -> None:
        raise exc

    def enter(parts: tuple[str, ...], name: str) -> bool:
        # Every id found below parts+(name,) starts with the folders above its
        # last one; the one exception is a short id in its own last folder
        # (bob in bo/b/bob), which is the folders above it.
        so_far = "".join(parts)
        below = so_far + name
        return below.startswith(prefix) or prefix.startswith(below) or (name == so_far and so_far.startswith(prefix))

    try:
        users = open_users(root)
    except StorageError as exc:
        (on_error or refuse)(USERS_DIR, exc)
        return
    if users is None:
        return
    found = 0
    with users:
        for listed in walk_users_tree(users, on_error or refuse, enter if prefix else None):
            if listed.holds_dialogs and user_id_from_parts(listed.parts).startswith(prefix):
                yield listed.parts
                found += 1
                if limit is not None and found >= limit:
                    return


class Detected(NamedTuple):
    scheme: Scheme | None  # None: no user folders yet
    shard_levels: int | None
    shard_size: int | None
    conversations: ConversationFiles | None  # None: none seen, or both seen


DETECTION_SAMPLE = 256
LAYOUT_HINT = (
    "pass --layout flat|sharded with --shard-levels N --shard-size N (or DIALOGUE_JOURNAL_LAYOUT, DIALOGUE_JOURNAL_SHARD_LEVELS, DIALOGUE_JOURNAL_SHARD_SIZE)"
)
# The values the settings accept for shardLevels and shardSize (dialogctl.config).
SHARD_LEVELS = range(1, 9)
SHARD_SIZES = range(1, 17)


def detect_layout(
    root: str,
    sample: int = DETECTION_SAMPLE,
    given: Mapping[str, object] | None = None,
    preferred: Layout | None = None,
) -> Detected:
    """Infer the layout of a root written without a layout record.

    Looks at up to ``sample`` user folders and keeps the layouts every one of
    them fits: the folder is where that layout keeps the id it reads back as
    (or where dialogctl before 0.2 kept it, so such a journal is still
    recognised and its old folders reported). Of those, the layout most
    folders fit exactly wins; when several fit equally (a journal holding only
    ``x/x`` fits every sharded layout), ``preferred`` (the defaults, 2 levels
    of 2) if it is one of them.

    ``given`` holds the layout settings given explicitly (``layout``,
    ``shardLevels``, ``shardSize``): only layouts that agree with them are
    considered, and when none or several fit, ``preferred`` (the given values
    and the defaults for the rest) is the answer, never an error: folders that
    do not fit it are then reported one by one. Without ``given``, raises
    :class:`LayoutError` when no layout or several fit.
    """
    given = given or {}
    preferred = _folders_only(preferred or Layout())
    folders = list(iter_user_folders(root, limit=sample, on_error=lambda _where, _exc: None))  # what cannot be read is told by the walk that needs it
    conversations = _detect_conversation_files(root, folders[:32])
    if not folders:
        return Detected(None, None, None, conversations)
    shapes = _shapes(folders)
    fitting = [(exact, layout) for layout in _candidates(given) if (exact := _fits(layout, shapes)) is not None]
    best = max((exact for exact, _ in fitting), default=0)
    chosen = [layout for exact, layout in fitting if exact == best]
    if len(chosen) > 1 and preferred in chosen:
        chosen = [preferred]
    if len(chosen) != 1:
        if given:
            chosen = [preferred]
        elif chosen:
            shown = ", ".join(layout.describe_folders() for layout in chosen[:4]) + (", ..." if len(chosen) > 4 else "")
            raise LayoutError(f"cannot tell the layout of {root}: its folders fit {len(chosen)} layouts ({shown})", hint=LAYOUT_HINT)
        else:
            odd = next((parts for parts in folders if not any(_fits(layout, _shapes([parts])) is not None for layout in _candidates({}))), None)
            why = f"users/{'/'.join(odd)} fits no layout" if odd else "its folders fit no single layout"
            raise LayoutError(f"cannot tell the layout of {root}: {why}", hint=LAYOUT_HINT)
    layout = chosen[0]
    if layout.scheme == "flat":
        return Detected("flat", 0, 0, conversations)
    return Detected("sharded", layout.shard_levels, layout.shard_size, conversations)


# A folder's shape: its parts' lengths, and whether its last part repeats the
# others. Whether a folder fits a layout depends on its shape alone.
_Shape = tuple[tuple[int, ...], bool]


def _shapes(folders: list[tuple[str, ...]]) -> dict[_Shape, tuple[tuple[str, ...], int]]:
    """The folders by shape: one of them, and how many."""
    out: dict[_Shape, tuple[tuple[str, ...], int]] = {}
    for parts in folders:
        shape = (tuple(map(len, parts)), len(parts) > 1 and parts[-1] == "".join(parts[:-1]))
        one, count = out.get(shape, (parts, 0))
        out[shape] = (one, count + 1)
    return out


def _folders_only(layout: Layout) -> Layout:
    """The part of a layout that decides the folders (what detection compares)."""
    return Layout("flat", 0, 0) if layout.scheme == "flat" else Layout("sharded", layout.shard_levels, layout.shard_size)


def _candidates(given: Mapping[str, object]) -> Iterator[Layout]:
    """Every layout the settings could name that agrees with the layout settings ``given``."""
    if given.get("layout", "flat") == "flat":
        yield Layout("flat", 0, 0)
    if given.get("layout", "sharded") == "sharded":
        for levels in SHARD_LEVELS:
            for size in SHARD_SIZES:
                if given.get("shardLevels", levels) == levels and given.get("shardSize", size) == size:
                    yield Layout("sharded", levels, size)


def _fits(layout: Layout, shapes: dict[_Shape, tuple[tuple[str, ...], int]]) -> int | None:
    """How many folders are where ``layout`` keeps the ids they read back as; None if one is not even where dialogctl before 0.2 kept it."""
    exact = 0
    for parts, count in shapes.values():
        user = user_id_from_parts(parts)
        if layout.cut(user) == parts:
            exact += count
        elif layout.old_user_parts(user) != parts:
            return None
    return exact


def _detect_conversation_files(root: str, folders: list[tuple[str, ...]]) -> ConversationFiles | None:
    seen: set[str] = set()
    for parts in folders:
        try:
            names = os.listdir(os.path.join(root, USERS_DIR, *parts, DIALOGS_DIR))
        except OSError:
            continue
        for name in names:
            ref = conversation_of("", name)
            if ref is not None:
                seen.add("current" if ref.kind == "current" else "sessions")
    if len(seen) == 1:
        return "current" if "current" in seen else "sessions"
    return None


def user_id_from_parts(parts: tuple[str, ...]) -> str:
    """The user id a folder's path parts below ``users/`` stand for, read back as the servers do.

    When the last part equals the parts above it joined (``bo/b/bob``), the id
    is the last part; otherwise it is all the parts joined (``us/er/-77``).
    """
    if len(parts) > 1 and parts[-1] == "".join(parts[:-1]):
        return parts[-1]
    return "".join(parts)
