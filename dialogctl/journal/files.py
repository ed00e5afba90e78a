"""Finding a journal's users and conversation files: the layout record, the walk of ``users/``, the file names.

:class:`JournalFiles` is the base of :class:`dialogctl.journal.core.Journal`; it never writes
a conversation.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from ..config import Settings
from ..disk import layout as L
from ..disk.fileops import Modes
from ..disk.rewrites import LiveRewrites
from ..disk.storage import Folder, open_root
from ..disk.tree import TreeFolder, walk_users_tree
from ..errors import FileTooLarge, InvalidInput, LayoutError, NotFound, StorageError, UnsafePath
from ..fileformat.codec import Form
from ..models import ConversationRef, Damage, Message, Unreadable

if TYPE_CHECKING:
    from ..disk.syncgroup import SyncGroup

MAX_RECORD = 1 << 20  # config/journal-config.yaml: a few lines; never read past this
FILE_TOO_LARGE = "file too large"  # the damage a conversation file over maxFileMB is reported as


class ConversationFile(NamedTuple):
    """A conversation file found on disk."""

    ref: ConversationRef
    rel_path: str  # relative to the journal root, as in damage reports
    size: int
    mtime: float
    dev: int = 0
    ino: int = 0
    mtime_ns: int = 0


class Conversation(NamedTuple):
    ref: ConversationRef
    rel_path: str
    messages: list[Message]
    damage: list[Damage]
    size: int = 0
    mtime: float = 0.0
    form: Form | None = None  # the file's shape, kept when it is rewritten
    first_index: int = 0  # index of messages[0] in the conversation (a tail read starts late)


class FileSeen(NamedTuple):
    """A conversation file as a caller read it before rewriting it: which file, and how many bytes."""

    dev: int
    ino: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result, size: int) -> FileSeen:
        return cls(st.st_dev, st.st_ino, size)


class JournalFiles:
    """One journal root: its settings, its layout, its users and their conversation files."""

    def __init__(self, settings: Settings, command: str = "python") -> None:
        self.settings = settings
        self.command = command
        self.damage: list[Damage] = []  # what reads could not read, for the caller to report
        self.unreadable: list[Unreadable] = []  # files and folders whole-journal reads went on without, for the caller to report
        self._layout: L.Layout | None = None
        self._recorded_in: tuple[int, int] | None = None  # the root (device, inode) whose layout record _layout was read from or written to
        self._skip_record = False
        self.rewrites = LiveRewrites()  # rewritten files still watched for a server's late append

    def __repr__(self) -> str:
        return f"Journal({self.root!r})"

    @property
    def root(self) -> str:
        return str(self.settings.root)

    @property
    def modes(self) -> Modes:
        """Owner and modes of what dialogctl creates: the journal's own, unless the operator set them."""
        explicit = self.settings.setting
        return Modes(
            int(self.settings["fileMode"]) if explicit("fileMode").explicit else None,
            int(self.settings["dirMode"]) if explicit("dirMode").explicit else None,
        )

    @property
    def file_limit(self) -> int:
        """The largest conversation file read, in bytes (``maxFileMB``): memory stays bounded whatever lies in the journal."""
        return int(self.settings["maxFileMB"]) << 20

    def too_large(self, ref: ConversationRef, st: os.stat_result) -> Conversation:
        """A conversation file over :attr:`file_limit`: not read, reported as damage (``verify`` names it, repair leaves it to a person)."""
        rel = self.rel_path(ref)
        damage = Damage(rel, None, FILE_TOO_LARGE, too_large_detail(st.st_size, self.file_limit))
        self.damage.append(damage)
        return Conversation(ref, rel, [], [damage], st.st_size, st.st_mtime)

    @property
    def root_mode(self) -> int:
        """The mode of a root dialogctl creates itself (everything below follows it)."""
        return int(self.settings["dirMode"])

    @property
    def file_shape(self) -> Form:
        """The shape of files dialogctl creates or rewrites (existing files keep theirs when appended to)."""
        return "documents" if self.settings["fileShape"] == "documents" else "sequence"

    def check_root(self, readable: bool = True) -> None:
        """Refuse a root setting that names something other than a folder (exit 2, naming where the setting came from).

        A root that does not exist yet is fine (the first append creates it).
        With ``readable``, a root folder dialogctl may not list or enter is an
        I/O error naming it (exit 6); ``doctor`` asks without, to diagnose it.
        """
        root = self.root
        source = self.settings.setting("root").source
        try:
            st = os.stat(root)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            st = None
        except OSError as exc:
            if not readable:
                return
            raise StorageError(f"cannot reach journal root {root} (root from {source}): {exc.strerror}", hint="'dialogctl doctor' looks at it") from None
        if st is None or not stat.S_ISDIR(st.st_mode):
            what = "is not a folder" if st is not None else "is below a file, not a folder"
            raise InvalidInput(
                f"journal root {root} {what} (root from {source})",
                hint="point the root at a journal folder, or at a path that does not exist yet (the first append creates it)",
            )
        if readable and not os.access(root, os.R_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            raise StorageError(f"cannot read journal root {root} (root from {source}): Permission denied", hint="'dialogctl doctor' looks at it")

    def note_unreadable(self, path: str, error: StorageError | OSError | str, user: str | None = None) -> None:
        """Remember a file or folder (``path`` relative to the root) that a read went on without."""
        if isinstance(error, str):
            reason = error
        elif isinstance(error, OSError):
            reason = error.strerror or type(error).__name__
        else:
            reason = error.reason or error.message
        item = Unreadable(path, reason, user)
        if item not in self.unreadable:  # met again (a shard folder above several users, a follower's every rescan)
            self.unreadable.append(item)

    # --- layout ----------------------------------------------------------------

    def layout(self, for_write: bool = False) -> L.Layout:
        """The root's layout: its record, else detected; settings may only confirm it."""
        if self._layout is not None and (not for_write or (self._recorded_in is not None and self._recorded_in == _identity(self.root))):
            return self._layout  # for a write, only while the root is still the one whose record was read (a record is never replaced)
        self._recorded_in = None
        explicit = {name: self.settings[name] for name in ("layout", "shardLevels", "shardSize", "conversations") if self.settings.setting(name).explicit}
        root, before = None, _identity(self.root)  # taken before the read: a root replaced meanwhile is read again next time
        record = self.read_record()
        if record is not None:
            found = L.Layout(
                record.get("layout", "sharded"),  # type: ignore[arg-type]
                int(str(record.get("shardLevels", 2))),
                int(str(record.get("shardSize", 2))),
                record.get("conversations", "current"),  # type: ignore[arg-type]
            )
            self._check_explicit(found, explicit, f"{'/'.join(L.RECORD_PATH)} records")
            root = before
        else:
            # Layout settings given by flag, environment or config are used as given:
            # detection only fills in the ones not given (folders that do not fit are
            # then reported one by one, as unusable user folders).
            given = {k: v for k, v in explicit.items() if k != "conversations"}
            preferred = L.Layout(explicit.get("layout", "sharded"), self.settings["shardLevels"], self.settings["shardSize"])
            detected = L.detect_layout(self.root, given=given, preferred=preferred)
            conversations = explicit.get("conversations") or detected.conversations or "current"
            if detected.scheme is None:
                found = preferred._replace(conversations=conversations)
                if for_write:
                    self._write_record(found)
                    root = _identity(self.root)
            else:
                found = L.Layout(detected.scheme, detected.shard_levels or 0, detected.shard_size or 0, conversations)
        self._layout = found
        self._recorded_in = root
        return found

    def _check_explicit(self, found: L.Layout, explicit: dict[str, object], how: str) -> None:
        actual: dict[str, object] = {"layout": found.scheme, "conversations": found.conversations}
        if found.scheme == "sharded":
            actual.update(shardLevels=found.shard_levels, shardSize=found.shard_size)
        for name, value in explicit.items():
            if name in actual and actual[name] != value:
                source = self.settings.setting(name).source
                raise LayoutError(
                    f"{name} is {value!r} ({source}) but the journal at {self.root} {how} {found.describe()}",
                    hint=f"drop the {name} setting, or point --root at another journal",
                )

    def skip_record(self) -> None:
        """Go on without the layout record (``verify`` does, after reporting why it cannot be used): the layout is detected."""
        self._skip_record = True
        self._layout = None
        self._recorded_in = None

    def read_record(self) -> dict[str, object] | None:
        """The layout record, read through the root's folder handle like every file inside the journal.

        Never through a symlink (a link to a file elsewhere would let that file
        decide where every user lives), never from a FIFO or a device, never
        more than :data:`MAX_RECORD` bytes. Anything else under its name stops
        the command (exit 6, naming it): a layout guessed instead could put
        users where the servers never look.
        """
        if self._skip_record:
            return None
        path = os.path.join(self.root, *L.RECORD_PATH)
        try:
            with open_root(self.root) as root, root.open_folder(L.RECORD_PATH[:-1]) as folder:
                data = folder.read_bytes(L.RECORD_PATH[-1], MAX_RECORD)
        except NotFound:
            return None
        except (UnsafePath, FileTooLarge) as exc:
            exc.hint = "the layout record must be a small regular file: put the journal's own back, or remove it and the layout is detected from the folders"
            raise
        if data is None:
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LayoutError(f"{path} is not UTF-8 text (byte offset {exc.start})") from None
        record = _parse_simple_mapping(text)
        if record is None:
            from ..yamlsafe import ItemError, load_yaml

            try:
                loaded = load_yaml(text)
            except ItemError as exc:
                raise LayoutError(f"{path} line {exc.line_offset + 1}: {exc.detail}") from None
            record = loaded if isinstance(loaded, dict) else {}
        if "layout" not in record:
            return None  # the reference's own settings file, without a layout record
        if record.get("layout") not in ("flat", "sharded") or record.get("conversations", "current") not in ("current", "sessions"):
            raise LayoutError(f"{path} holds an unknown layout record")
        return record

    def _write_record(self, layout: L.Layout) -> None:
        lines = ["# Written by dialogctl when it created this journal: how the journal is laid out."]
        lines += [f"{key}: {value}" for key, value in layout.as_record().items()]
        new_root = not os.path.isdir(self.root)
        made: list[str] = []
        with open_root(self.root, create=True, mode=self.root_mode) as root:
            try:
                with root.open_folder(L.RECORD_PATH[:-1], create=True, modes=self.modes, made_paths=made) as folder:
                    if folder.stat(L.RECORD_PATH[-1]) is None:
                        folder.write_atomic(L.RECORD_PATH[-1], ("\n".join(lines) + "\n").encode(), self.modes)
            except BaseException:
                root.remove_made(made)  # a failed command leaves no folder it made, nor a root
                if new_root:
                    try:
                        os.rmdir(self.root)
                    except OSError:
                        pass
                raise

    # --- finding users and conversations ----------------------------------------

    def users(self, prefix: str = "") -> Iterator[str]:
        """Every user id in the journal (starting with ``prefix``), in folder order; unusable folder names are reported."""
        layout = self.layout()
        for parts in L.iter_user_folders(self.root, prefix=prefix, on_error=self.note_unreadable):
            user = L.user_id_from_parts(parts)
            try:
                L.check_user_folder(user, parts, layout)
            except InvalidInput as exc:
                self.damage.append(Damage(f"{L.USERS_DIR}/{'/'.join(parts)}", None, "unusable user folder", str(exc)))
                continue
            yield user

    def user_exists(self, user: str) -> bool:
        try:
            self.dialogs_folder(user).close()
        except NotFound:
            return False
        return True

    def user_path(self, user: str) -> str:
        return "/".join((L.USERS_DIR, *self.layout().user_parts(user), L.DIALOGS_DIR))

    def dialogs_folder(self, user: str, create: bool = False, made: list[str] | None = None, later: SyncGroup | None = None) -> Folder:
        """An open handle on the user's ``dialogs/`` folder; ``made`` gets the folders made for it (below the root).

        ``later``: a group commit, which takes the fsyncs of the folders made (see :mod:`dialogctl.disk.syncgroup`).
        """
        L.validate_user_id(user)
        parts = (L.USERS_DIR, *self.layout().user_parts(user), L.DIALOGS_DIR)  # an id the layout refuses is refused before anything is written
        if create:
            parts = (L.USERS_DIR, *self.layout(for_write=True).user_parts(user), L.DIALOGS_DIR)
        try:
            with open_root(self.root, create=create, mode=self.root_mode) as root:
                return root.open_folder(parts, create=create, modes=self.modes, made_paths=made, later=later)
        except NotFound:
            raise NotFound(f"user {user!r} not found in {self.root}") from None

    def conversation_files(self, user: str, include_archives: bool = True, dialogs: Folder | None = None) -> list[ConversationFile]:
        """The user's conversation files: current, sessions (newest last), then archives.

        ``dialogs``: the user's folder, already open (a writer holding its lock), listed instead of opened again.
        """
        if dialogs is not None:
            return self._conversation_files(dialogs, user, include_archives)
        with self.dialogs_folder(user) as opened:
            return self._conversation_files(opened, user, include_archives)

    def _conversation_files(self, dialogs: Folder, user: str, include_archives: bool, rel: str | None = None) -> list[ConversationFile]:
        rel = rel if rel is not None else self.user_path(user)
        current: list[ConversationFile] = []
        sessions: list[ConversationFile] = []
        has_archives = False
        try:
            listed = list(dialogs.entries())
        except StorageError as exc:  # a folder we may not list: said at the end, the rest is read
            self.note_unreadable(rel, exc, user)
            return []
        for entry in listed:
            name = entry.name
            if name == L.ARCHIVE_DIR:
                has_archives = entry.is_dir(follow_symlinks=False)
                continue
            ref = L.conversation_of(user, name)
            if ref is None or not entry.is_file(follow_symlinks=False):
                continue
            (current if ref.kind == "current" else sessions).extend(_file(ref, f"{rel}/{name}", entry))
        sessions.sort(key=lambda f: (f.mtime, f.ref.id or ""))
        files = current + sessions
        archived: Folder | None = None
        if include_archives and has_archives:
            try:
                archived = _open_if_there(dialogs, L.ARCHIVE_DIR)
                archived_entries = list(archived.entries()) if archived is not None else []
            except StorageError as exc:
                self.note_unreadable(f"{rel}/{L.ARCHIVE_DIR}", exc, user)
                if archived is not None:
                    archived.close()
                archived = None
        if archived is not None:
            with archived:
                archives = []
                for entry in archived_entries:
                    ref = L.conversation_of(user, entry.name, archived=True)
                    if ref is not None and entry.is_file(follow_symlinks=False):
                        archives.extend(_file(ref, f"{rel}/{L.ARCHIVE_DIR}/{entry.name}", entry))
                archives.sort(key=lambda f: f.ref.id or "")
                files += archives
        return files

    def walk(self) -> Iterator[tuple[str, list[ConversationFile]]]:
        """Every user with their conversation files, in one pass over the tree.

        The same users in the same order as :meth:`users`, but each folder is
        opened once, relative to its parent's handle (never through a symlink),
        so a whole-journal scan costs about what listing the tree costs.
        """
        for user, _dialogs, files in self.walk_open():
            yield user, files

    def walk_open(self) -> Iterator[tuple[str, Folder, list[ConversationFile]]]:
        """Like :meth:`walk`, with each user's ``dialogs/`` folder open while the user is looked at."""
        if not self.exists():
            return
        self.layout()  # an ambiguous root is refused here as everywhere else
        try:
            root = open_root(self.root)
        except NotFound:
            return
        with root:
            try:
                users = root.open_child(L.USERS_DIR)
            except NotFound:
                return
            with users:
                for listed in walk_users_tree(users, self.note_unreadable):
                    if listed.holds_dialogs:
                        yield from self._user_files(listed)

    def _user_files(self, listed: TreeFolder[Folder]) -> Iterator[tuple[str, Folder, list[ConversationFile]]]:
        user = L.user_id_from_parts(listed.parts)
        try:
            L.check_user_folder(user, listed.parts, self.layout())  # not where the layout keeps that id: every operation on it would miss
        except InvalidInput as exc:
            self.damage.append(Damage(listed.rel, None, "unusable user folder", str(exc)))
            return
        try:
            dialogs = listed.folder.open_child(L.DIALOGS_DIR)
        except NotFound:  # removed by a cleanup while we walked
            return
        except StorageError as exc:
            self.note_unreadable(f"{listed.rel}/{L.DIALOGS_DIR}", exc, user)
            return
        with dialogs:
            yield user, dialogs, self._conversation_files(dialogs, user, True, f"{listed.rel}/{L.DIALOGS_DIR}")

    def rel_path(self, ref: ConversationRef) -> str:
        base = self.user_path(ref.user)
        if ref.kind == "current":
            return f"{base}/{L.CURRENT_FILE}"
        if ref.kind == "session":
            return f"{base}/{L.session_file(ref.id or '')}"
        return f"{base}/{L.ARCHIVE_DIR}/{L.archive_file(ref.id or '')}"

    def locate(self, dialogs: Folder, ref: ConversationRef) -> tuple[Folder, str]:
        if ref.kind == "current":
            return dialogs, L.CURRENT_FILE
        if ref.kind == "session":
            return dialogs, L.session_file(ref.id or "")
        try:
            return dialogs.open_folder((L.ARCHIVE_DIR,)), L.archive_file(ref.id or "")
        except NotFound:
            raise NotFound(f"{ref.describe()} not found (the user has no archives)") from None

    def exists(self) -> bool:
        return os.path.isdir(self.root)


def too_large_detail(size: int, limit: int) -> str:
    from ..disk.fileops import human_size

    return f"{human_size(size)}, more than the {human_size(limit)} dialogctl reads of one conversation file (maxFileMB); not read"


def _file(ref: ConversationRef, rel_path: str, entry: os.DirEntry[str]) -> list[ConversationFile]:
    """The file a folder listing named; none if it was moved or removed since (an archive or a cleanup at work)."""
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return []
    return [ConversationFile(ref, rel_path, st.st_size, st.st_mtime, st.st_dev, st.st_ino, st.st_mtime_ns)]


def _open_if_there(folder: Folder, name: str) -> Folder | None:
    try:
        return folder.open_child(name)
    except NotFound:  # removed since the folder was listed
        return None


def _parse_simple_mapping(text: str) -> dict[str, object] | None:
    """``key: value`` lines (dialogctl's own record); None if the text is anything else."""
    out: dict[str, object] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = line.partition(": ")
        if not sep or key != key.strip() or not key.isidentifier():
            return None
        value = value.strip()
        out[key] = int(value) if value.isdigit() else value
    return out


def _identity(root: str) -> tuple[int, int] | None:
    """The root folder's (device, inode), or None when it is not there."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return st.st_dev, st.st_ino
