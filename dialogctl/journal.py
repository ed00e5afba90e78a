"""The journal: every operation on one root, for the CLI and for Python callers.

:class:`Journal` never prints. Reads collect what they could not read in
``journal.damage`` (every intact message is still returned), and writers
raise :mod:`dialogctl.errors` exceptions.

Every mutation of a user's files runs under that user's lock
(:mod:`dialogctl.locking`): append, archive, restore and cleanup. An append
learns the conversation's message count from the last frame line of the file
(:mod:`dialogctl.codec`), so its cost does not grow with the conversation.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, TypeVar

from . import layout as L
from . import usermeta
from .codec import Form, check_message, detect_form, encode_batch, encode_chunks, last_frame_n
from .config import Settings
from .errors import DialogError, FileTooLarge, InvalidInput, LayoutError, NotFound, PartlyAppended, StorageError, UnsafePath
from .locking import FolderGone, LockState, UserLock, make_owner, probe
from .models import AppendResult, ConversationRef, ConversationSummary, Damage, Message, Unreadable
from .reader import parse_conversation
from .storage import TEMP_MARK, Folder, LiveRewrites, Modes, open_root
from .times import archive_id_for, utc_now

_TAIL_BYTES = 4096
MAX_RECORD = 1 << 20  # config/journal-config.yaml: a few lines; never read past this
FILE_TOO_LARGE = "file too large"  # the damage a conversation file over maxFileMB is reported as
T = TypeVar("T")


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


class RestoreResult(NamedTuple):
    user: str
    restored: str
    into: str
    archived_first: str | None


class _Tail(NamedTuple):
    size: int
    form: Form | None
    messages: int


class FileSeen(NamedTuple):
    """A conversation file as a caller read it before rewriting it: which file, and how many bytes."""

    dev: int
    ino: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result, size: int) -> FileSeen:
        return cls(st.st_dev, st.st_ino, size)


class Journal:
    """One journal root and every operation on it."""

    def __init__(self, settings: Settings, command: str = "python") -> None:
        self.settings = settings
        self.command = command
        self.damage: list[Damage] = []  # what reads could not read, for the caller to report
        self.unreadable: list[Unreadable] = []  # files and folders whole-journal reads went on without, for the caller to report
        self._layout: L.Layout | None = None
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
        if self._layout is not None and not for_write:
            return self._layout
        explicit = {name: self.settings[name] for name in ("layout", "shardLevels", "shardSize", "conversations") if self.settings.setting(name).explicit}
        record = self._read_record()
        if record is not None:
            found = L.Layout(
                record.get("layout", "sharded"),  # type: ignore[arg-type]
                int(str(record.get("shardLevels", 2))),
                int(str(record.get("shardSize", 2))),
                record.get("conversations", "current"),  # type: ignore[arg-type]
            )
            self._check_explicit(found, explicit, f"{'/'.join(L.RECORD_PATH)} records")
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
            else:
                found = L.Layout(detected.scheme, detected.shard_levels or 0, detected.shard_size or 0, conversations)
        self._layout = found
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

    def _read_record(self) -> dict[str, object] | None:
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
            from .salvage import _ItemError, load_yaml

            try:
                loaded = load_yaml(text)
            except _ItemError as exc:
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

    def dialogs_folder(self, user: str, create: bool = False, made: list[str] | None = None) -> Folder:
        """An open handle on the user's ``dialogs/`` folder; ``made`` gets the folders made for it (below the root)."""
        L.validate_user_id(user)
        parts = (L.USERS_DIR, *self.layout().user_parts(user), L.DIALOGS_DIR)  # an id the layout refuses is refused before anything is written
        if create:
            parts = (L.USERS_DIR, *self.layout(for_write=True).user_parts(user), L.DIALOGS_DIR)
        try:
            with open_root(self.root, create=create, mode=self.root_mode) as root:
                return root.open_folder(parts, create=create, modes=self.modes, made_paths=made)
        except NotFound:
            raise NotFound(f"user {user!r} not found in {self.root}") from None

    def conversation_files(self, user: str, include_archives: bool = True) -> list[ConversationFile]:
        """The user's conversation files: current, sessions (newest last), then archives."""
        with self.dialogs_folder(user) as dialogs:
            return self._conversation_files(dialogs, user, include_archives)

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
            if not name.endswith(L.YAML_SUFFIX) or name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            if name == L.CURRENT_FILE:
                current.extend(_file(ConversationRef(user, "current"), f"{rel}/{name}", entry))
            elif name.startswith(L.SESSION_PREFIX):
                cid = name[len(L.SESSION_PREFIX) : -len(L.YAML_SUFFIX)]
                if _usable_name(cid):
                    sessions.extend(_file(ConversationRef(user, "session", cid), f"{rel}/{name}", entry))
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
                    name = entry.name
                    if not name.endswith(L.YAML_SUFFIX) or name.startswith(".") or not entry.is_file(follow_symlinks=False):
                        continue
                    aid = name[: -len(L.YAML_SUFFIX)]
                    if _usable_name(aid):
                        archives.extend(_file(ConversationRef(user, "archive", aid), f"{rel}/{L.ARCHIVE_DIR}/{name}", entry))
                archives.sort(key=lambda f: f.ref.id or "")
                files += archives
        return files

    def walk(self) -> Iterator[tuple[str, list[ConversationFile]]]:
        """Every user with their conversation files, in one pass over the tree.

        The same users in the same order as :meth:`users`, but each folder is
        opened once, relative to its parent's handle (never through a symlink),
        so a whole-journal scan costs about what listing the tree costs.
        """
        for user, _dialogs, files in self._walk_open():
            yield user, files

    def _walk_open(self) -> Iterator[tuple[str, Folder, list[ConversationFile]]]:
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
                yield from self._walk(users, ())

    def _walk(self, folder: Folder, parts: tuple[str, ...]) -> Iterator[tuple[str, Folder, list[ConversationFile]]]:
        rel = "/".join((L.USERS_DIR, *parts))
        try:
            names = sorted(e.name for e in folder.entries() if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
        except StorageError as exc:  # a folder we may not list: said at the end, the rest of the journal is read
            self.note_unreadable(rel, exc)
            return
        if parts and L.DIALOGS_DIR in names:
            user = L.user_id_from_parts(parts)
            try:
                L.check_user_folder(user, parts, self.layout())  # not where the layout keeps that id: every operation on it would miss
            except InvalidInput as exc:
                self.damage.append(Damage(rel, None, "unusable user folder", str(exc)))
            else:
                try:
                    dialogs = folder.open_child(L.DIALOGS_DIR)
                except NotFound:  # removed by a cleanup while we walked
                    dialogs = None
                except StorageError as exc:
                    self.note_unreadable(f"{rel}/{L.DIALOGS_DIR}", exc, user)
                    dialogs = None
                if dialogs is not None:
                    with dialogs:
                        yield user, dialogs, self._conversation_files(dialogs, user, True, f"{rel}/{L.DIALOGS_DIR}")
        for name in names:
            if name == L.DIALOGS_DIR and parts:
                continue
            try:
                child = folder.open_child(name)
            except NotFound:
                continue
            except StorageError as exc:
                self.note_unreadable(f"{rel}/{name}", exc)
                continue
            with child:
                yield from self._walk(child, parts + (name,))

    def resolve(self, user: str, conversation: str | None = None, archive: str | None = None) -> ConversationRef:
        """The conversation a command means: an archive, a named session, or the current one."""
        L.validate_user_id(user)
        if archive is not None:
            return ConversationRef(user, "archive", L.validate_name(archive, "archive id"))
        if conversation is not None and conversation != "current":
            return ConversationRef(user, "session", L.validate_name(conversation))
        if conversation == "current" or self.layout().conversations == "current":
            return ConversationRef(user, "current")
        files = [f for f in self.conversation_files(user, include_archives=False) if f.ref.kind == "session"]
        if not files:
            return ConversationRef(user, "current")
        return files[-1].ref  # the most recently written session

    # --- reading ---------------------------------------------------------------------

    def read(self, ref: ConversationRef, missing_ok: bool = False) -> Conversation:
        """Every intact message of one conversation; damage goes to ``self.damage`` too."""
        with self.dialogs_folder(ref.user) as dialogs:
            folder, name = self.locate(dialogs, ref)
            try:
                fd = folder.open_read(name)
                if fd is None:
                    if ref.kind == "current" or missing_ok:
                        return Conversation(ref, self.rel_path(ref), [], [])
                    raise NotFound(f"{ref.describe()} not found")
                try:
                    st = os.fstat(fd)
                    from .storage import read_all

                    data = read_all(fd, self.file_limit)
                except FileTooLarge:
                    return self.too_large(ref, st)
                finally:
                    os.close(fd)
            finally:
                if folder is not dialogs:
                    folder.close()
        return self.parse_bytes(ref, data, st.st_size, st.st_mtime)

    def read_tail(self, ref: ConversationRef, count: int) -> Conversation:
        """The last ``count`` messages, read backwards from the end of the file, frame by frame.

        Each frame gives its record's length, so only the last ``count`` records
        are read, whatever the conversation's length; their indexes come from
        the frames' message numbers. When the end of the file is not a
        contiguous run of intact dialogctl records (a file written by another
        implementation, a torn tail), the whole file is read instead, so the
        answer is always what :meth:`read` would end with.
        """
        with self.dialogs_folder(ref.user) as dialogs:
            fd = self.open_file(dialogs, ref)
        if fd is None:
            if ref.kind == "current":
                return Conversation(ref, self.rel_path(ref), [], [])
            raise NotFound(f"{ref.describe()} not found")
        try:
            st = os.fstat(fd)
            found = _framed_tail(fd, st.st_size, count) if st.st_size else (0, [], "documents")
            if found is None:
                from .storage import read_all

                os.lseek(fd, 0, os.SEEK_SET)
                try:
                    data = read_all(fd, self.file_limit)
                except FileTooLarge:
                    return self.too_large(ref, st)
                conv = self.parse_bytes(ref, data, st.st_size, st.st_mtime)
                first = max(0, len(conv.messages) - count)
                return conv._replace(messages=conv.messages[first:], first_index=first)
        finally:
            os.close(fd)
        first_index, messages, form = found
        return Conversation(ref, self.rel_path(ref), messages, [], st.st_size, st.st_mtime, form, first_index)

    def open_file(self, dialogs: Folder, ref: ConversationRef) -> int | None:
        """A read descriptor for a conversation file of the user whose ``dialogs/`` is open; None if absent."""
        folder, name = self.locate(dialogs, ref)
        try:
            return folder.open_read(name)
        finally:
            if folder is not dialogs:
                folder.close()

    def parse_bytes(self, ref: ConversationRef, data: bytes, size: int, mtime: float) -> Conversation:
        rel = self.rel_path(ref)
        parsed = parse_conversation(data, rel)
        self.damage.extend(parsed.damage)
        return Conversation(ref, rel, parsed.messages, parsed.damage, size, mtime, parsed.form)

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

    def conversations(self, users: Iterable[str] | None = None, include_archives: bool = True, active: bool = True) -> Iterator[Conversation]:
        """Stream every selected conversation, user by user (all users: in one pass over the tree)."""
        if users is None:
            for _user, dialogs, files in self._walk_open():
                archived: Folder | None = None
                try:
                    for f in files:
                        if f.ref.kind == "archive":
                            if not include_archives:
                                continue
                            try:
                                if archived is None:
                                    archived = dialogs.open_child(L.ARCHIVE_DIR)
                                conv = self._read_in(archived, L.archive_file(f.ref.id or ""), f.ref)
                            except NotFound:  # archived/ went away while we looked
                                continue
                            except StorageError as exc:
                                self.note_unreadable(f.rel_path, exc, f.ref.user)
                                continue
                        elif not active:
                            continue
                        else:
                            try:
                                conv = self._read_in(dialogs, f.rel_path.rsplit("/", 1)[1], f.ref)
                            except StorageError as exc:
                                self.note_unreadable(f.rel_path, exc, f.ref.user)
                                continue
                        if conv is not None:
                            yield conv
                finally:
                    if archived is not None:
                        archived.close()
            return
        for user in users:
            for f in self.conversation_files(user, include_archives=include_archives):
                if not active and f.ref.kind != "archive":
                    continue
                try:
                    conv = self.read(f.ref, missing_ok=True)
                except (NotFound, UnsafePath):
                    raise
                except StorageError as exc:  # one file we may not read: the user's others are still read
                    self.note_unreadable(f.rel_path, exc, user)
                    continue
                yield conv

    def _read_in(self, folder: Folder, name: str, ref: ConversationRef) -> Conversation | None:
        """One conversation file in an open folder; None if it is gone."""
        from .storage import read_all

        fd = folder.open_read(name)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            data = read_all(fd, self.file_limit)
        except FileTooLarge:
            return self.too_large(ref, st)
        except OSError as exc:
            from .errors import storage_error

            raise storage_error(exc, "read", folder.child_path(name)) from None
        finally:
            os.close(fd)
        return self.parse_bytes(ref, data, st.st_size, st.st_mtime)

    def summaries(self, user: str) -> list[ConversationSummary]:
        """One user's conversations summarised, read from the files."""
        from .catalog import summarize

        return [summarize(self.read(f.ref, missing_ok=True)) for f in self.conversation_files(user)]

    # --- writing -------------------------------------------------------------------------

    def _lock(self, dialogs: Folder, user: str, command: str) -> UserLock:
        owner = make_owner(str(self.settings["serverId"]), f"dialogctl {command}" if self.command != "python" else command)
        return UserLock(dialogs, user, owner, self.settings.lock_timeout, self.modes)

    def locked(self, user: str, command: str, body: Callable[[Folder], T], create: bool = False) -> T:
        """Run ``body(dialogs)`` under the user's lock.

        If a cleanup removed the user's folder while we waited for the lock
        (or moved it away to delete it, and died), start over on the folder as
        it is now (recreated for an append): the lock we got guards nothing.
        """
        new_root = create and not os.path.isdir(self.root)
        made: list[str] = []
        dialogs, lock = self._lock_in_place(user, command, create, made, new_root)
        try:
            return body(dialogs)
        except BaseException:
            if made or new_root:  # taken back while the lock is held, so nobody waiting on it is fooled
                self._unmake(dialogs, made, new_root)
            raise
        finally:
            lock.release()
            dialogs.close()

    def _lock_in_place(self, user: str, command: str, create: bool, made: list[str] | None = None, new_root: bool = False) -> tuple[Folder, UserLock]:
        """The user's ``dialogs/`` folder, open, and its lock, held (see :meth:`locked`).

        ``made`` gets the folders made for it (below the root); when no lock
        file can be made there, they go again (and the root, if ``new_root``).
        """
        for _ in range(5):
            if made is not None:
                made.clear()
            dialogs = self.dialogs_folder(user, create=create, made=made)
            lock = self._lock(dialogs, user, command)
            try:
                lock.acquire()
            except FolderGone:
                dialogs.close()
                continue
            except BaseException:
                if made or new_root:  # no lock file could be made: the folders made for it go
                    self._unmake(dialogs, made or [], new_root)
                dialogs.close()
                raise
            try:
                if self._still_in_place(dialogs, user):
                    return dialogs, lock
            except BaseException:
                lock.release()
                dialogs.close()
                raise
            lock.release()
            dialogs.close()
        raise StorageError(f"the folder of user {user!r} kept disappearing while waiting for its lock")

    @contextmanager
    def locked_all(self, users: Iterable[str], command: str, create: bool = False) -> Iterator[dict[str, Folder]]:
        """Hold the locks of every user at once: ``{user: dialogs folder}`` while the block runs.

        The locks are taken in user id order, so two holders of several locks
        never wait for each other in a cycle. A lock that stays busy past
        ``lockTimeoutMs`` releases every lock taken so far and raises
        :class:`~dialogctl.errors.LockBusy` before the block runs. The folders
        of new users made to lock them are removed again when nothing was
        written into them. Each lock holds two open files, so the number of
        users is bounded by the open-file limit (raised to the hard limit when
        needed; beyond it, :class:`~dialogctl.errors.InvalidInput`).
        """
        chosen = sorted(set(users))
        _allow_open_files(2 * len(chosen) + 64, f"holding the locks of {len(chosen)} users at once")
        held: list[tuple[str, Folder, UserLock]] = []
        made: list[str] = []  # users whose folders were made here
        try:
            for user in chosen:
                try:
                    if create and not self.user_exists(user):
                        made.append(user)
                    dialogs, lock = self._lock_in_place(user, command, create)
                except DialogError as exc:
                    exc.user = user
                    raise
                held.append((user, dialogs, lock))
            yield {user: dialogs for user, dialogs, _ in held}
        finally:
            for user, dialogs, lock in reversed(held):
                try:
                    if user in made:
                        self._unmake_if_unused(dialogs, user)
                finally:
                    lock.release()
                    dialogs.close()

    def _unmake_if_unused(self, dialogs: Folder, user: str) -> None:
        """Remove a user folder made only to be locked, if nothing but the lock file is in it (the lock is held)."""
        try:
            if set(dialogs.names()) - {L.LOCK_FILE}:
                return
            dialogs.remove(L.LOCK_FILE)
            with open_root(self.root) as root, root.open_folder((L.USERS_DIR,)) as users:
                users.remove_empty_folders((*self.layout().user_parts(user), L.DIALOGS_DIR))
        except DialogError:
            pass  # an empty user folder is harmless: the next append fills it

    def _unmake(self, dialogs: Folder, made: list[str], new_root: bool) -> None:
        """A command that made a user's folders (or the root) and then failed takes them away again, lock file included.

        Only what is empty again goes: anything written meanwhile (by this
        command before it failed, or by another process) keeps its folders.
        """
        try:
            if made and made[-1].endswith(L.DIALOGS_DIR) and dialogs.names() == [L.LOCK_FILE]:
                # Renamed away first, as a removed user is: another process waiting for the lock
                # finds the folder gone when it gets the lock, and starts over on a new one.
                with dialogs.open_folder(("..",)) as parent:
                    doomed = f".{L.DIALOGS_DIR}{TEMP_MARK}unmade-{os.getpid()}-{os.urandom(4).hex()}"
                    parent.rename_to(L.DIALOGS_DIR, parent, doomed)
                    parent.remove_tree(doomed)
            with open_root(self.root) as root:
                root.remove_made(made)
                if new_root:  # a root this command made: its layout record goes too, unless a user lives there now
                    root.remove_made([L.USERS_DIR])
                    if not root.has_folder(L.USERS_DIR) and root.has_folder(L.RECORD_PATH[0]):
                        with root.open_folder(L.RECORD_PATH[:-1]) as config:
                            config.remove_quietly(L.RECORD_PATH[-1])
                        root.remove_made([L.RECORD_PATH[0]])
            if new_root:
                os.rmdir(self.root)
        except (OSError, DialogError):
            pass  # best effort: the failure itself is what gets reported

    def _still_in_place(self, dialogs: Folder, user: str) -> bool:
        """Whether ``dialogs`` is still the folder found at the user's path."""
        try:
            with self.dialogs_folder(user) as now:
                here, there = os.fstat(now.fd), os.fstat(dialogs.fd)
        except NotFound:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def remove_user_folder(self, user: str) -> None:
        """Delete a user's conversations and archives (the caller holds the user's lock).

        ``dialogs/`` is first renamed to a hidden temp name, which removes the
        user in one step (a crash mid-way leaves a leftover that verify reports,
        never half a user), and only then deleted. A user's folder can also be
        the shard folder of longer ids (``user`` holds ``user-1000`` in the
        sharded layout), so only ``dialogs/`` and the user's ``metadata.yaml``
        go (with what interrupted rewrites and removals of them left), and
        folders only when empty.
        """
        parts = self.layout().user_parts(user)
        with open_root(self.root) as root:
            with root.open_folder((L.USERS_DIR, *parts)) as folder:
                doomed = f".{L.DIALOGS_DIR}{TEMP_MARK}removed-{os.getpid()}-{os.urandom(4).hex()}"
                folder.rename_to(L.DIALOGS_DIR, folder, doomed)
                folder.remove_tree(doomed)
                folder.remove(usermeta.METADATA_FILE)
                for name in folder.names():
                    if name.startswith(f".{usermeta.METADATA_FILE}{TEMP_MARK}"):
                        folder.remove(name)
                    elif name.startswith(f".{L.DIALOGS_DIR}{TEMP_MARK}") and folder.has_folder(name):
                        folder.remove_tree(name)
                try:
                    folder.fsync()
                except OSError as exc:
                    raise StorageError(f"removed user {user!r} from {folder.path}, but cannot sync that folder: {exc.strerror}") from None
            with root.open_folder((L.USERS_DIR,)) as users:
                users.remove_empty_folders(parts)

    def move_from_old_place(self, user: str, command: str = "repair") -> bool:
        """Move a short id's ``dialogs/`` and ``metadata.yaml`` from where dialogctl before 0.2 kept it to where the servers do.

        (``bob`` from ``users/bo/b/`` to ``users/bo/b/bob/``.) Runs under the
        lock in the folder being moved, the lock any dialogctl writing there
        takes. The new folder is made with the mode (and, as root, the owner)
        of the folder it is made in. Nothing is ever replaced: when the new
        folder already holds ``dialogs/``, nothing changes and the answer is
        False; a ``metadata.yaml`` already there is kept.
        """
        L.validate_user_id(user)
        layout = self.layout()
        new_parts = layout.user_parts(user)
        old_parts = layout.old_user_parts(user)
        if old_parts is None:
            raise InvalidInput(f"user {user!r} has no older place in the {layout.describe_folders()} layout")
        with open_root(self.root) as root:
            try:
                old = root.open_folder((L.USERS_DIR, *old_parts))
                dialogs = old.open_child(L.DIALOGS_DIR)
            except NotFound:
                raise NotFound(f"user {user!r} not found in users/{'/'.join(old_parts)}") from None
            with old, dialogs:
                lock = self._lock(dialogs, user, command)
                lock.acquire()
                try:
                    here, locked = old.stat(L.DIALOGS_DIR), os.fstat(dialogs.fd)
                    if here is None or (here.st_dev, here.st_ino) != (locked.st_dev, locked.st_ino):
                        raise StorageError(f"{dialogs.path} was moved while waiting for its lock")
                    with old.open_folder((new_parts[-1],), create=True, modes=self.modes) as new:
                        if not old.move_unless_there(L.DIALOGS_DIR, new, L.DIALOGS_DIR):
                            old.remove_empty_folders((new_parts[-1],))  # made for nothing
                            return False
                        if old.stat(usermeta.METADATA_FILE) is not None:
                            old.move_unless_there(usermeta.METADATA_FILE, new, usermeta.METADATA_FILE)
                    return True
                finally:
                    lock.release()

    def append(
        self, user: str, messages: Sequence[Message], conversation: str | None = None, *, one_write: bool = False, command: str = "append"
    ) -> AppendResult:
        """Append a batch to the user's conversation under the user's lock, fsynced.

        Archives automatically when the conversation reaches ``archiveThreshold``
        (or ``maxConversationLength``), splitting the batch at that point. Each
        part written to one file is marked as one batch in its frames, so it is
        read whole or not at all even if the process dies part-way through it.

        With ``one_write`` the batch is never split, so it lands all or nothing
        (an import): a non-empty conversation the batch would overflow is
        archived first, and a batch longer than the limit is written whole and
        then archived. ``messages`` may be any sequence, such as a spooled
        import read lazily (:mod:`dialogctl.spool`): a large batch is encoded
        and written a megabyte at a time. ``command`` names the operation in
        the lock's owner record.
        """
        L.validate_user_id(user)
        if conversation is not None and conversation != "current":
            L.validate_name(conversation)
        if not messages:
            raise InvalidInput("nothing to append")
        for msg in messages:
            check_message(msg)

        def body(dialogs: Folder) -> AppendResult:
            name, ref = self._target(dialogs, user, conversation)
            return self._append_locked(dialogs, user, name, ref, messages, one_write)

        return self.locked(user, command, body, create=True)

    def append_locked(self, dialogs: Folder, user: str, messages: list[Message], conversation: str | None = None, *, one_write: bool = False) -> AppendResult:
        """:meth:`append`, for a caller that holds the user's lock (``dialogs`` is the user's open folder, as :meth:`locked_all` gives it)."""
        if not messages:
            raise InvalidInput("nothing to append")
        for msg in messages:
            check_message(msg)
        name, ref = self._target(dialogs, user, conversation)
        return self._append_locked(dialogs, user, name, ref, messages, one_write)

    def _target(self, dialogs: Folder, user: str, conversation: str | None) -> tuple[str, ConversationRef]:
        if conversation is not None and conversation != "current":
            return L.session_file(conversation), ConversationRef(user, "session", conversation)
        if conversation == "current" or self.layout().conversations == "current":
            return L.CURRENT_FILE, ConversationRef(user, "current")
        sessions = [f for f in self._conversation_files(dialogs, user, False) if f.ref.kind == "session"]
        if sessions:
            ref = sessions[-1].ref
        else:
            ref = ConversationRef(user, "session", utc_now().strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex())
        return L.session_file(ref.id or ""), ref

    def _append_locked(self, dialogs: Folder, user: str, name: str, ref: ConversationRef, messages: Sequence[Message], one_write: bool = False) -> AppendResult:
        threshold = int(self.settings["archiveThreshold"])
        cap = int(self.settings["maxConversationLength"])
        limit = min(threshold, cap) if threshold > 0 else cap
        tail = self._tail(dialogs, name, ref)
        before = usermeta.key_of(dialogs.stat(name))
        count = tail.messages
        archived: list[str] = []
        moves: list[usermeta.Move] = []  # told to metadata.yaml in the one update at the end
        remaining = messages
        while remaining:
            room = limit - count
            if room <= 0 or (one_write and count and len(remaining) > room):
                try:
                    aid = self.archive_locked(dialogs, user, name, ref, moves=moves, at=len(messages) - len(remaining))
                except StorageError as exc:
                    if remaining is messages:
                        raise
                    done = len(messages) - len(remaining)
                    raise PartlyAppended(f"appended {done} of {len(messages)} messages for user {user!r}, then: {exc.message}", appended=done) from None
                if aid:
                    archived.append(aid)
                tail = _Tail(0, None, 0)
                count = 0
                continue
            cut = len(remaining) if one_write else room
            chunk, remaining = remaining[:cut], remaining[cut:]
            form = tail.form or self.file_shape
            # Every write from a fresh line: the servers append without a lock and leave their
            # last item unterminated, and one may append between our look at the tail and
            # this write, or between two writes of a large batch. (An empty line between items
            # is nothing to YAML.) Several messages are marked as one batch, so a write cut
            # short by a kill reads as nothing at all; a large one goes in pieces of about a
            # megabyte (see codec.encode_chunks).
            pieces = encode_chunks(chunk, len(chunk), count + 1, form)
            try:
                _, new_size = dialogs.append(name, (b"\n" + piece for piece in pieces), self.modes)
            except StorageError as exc:
                done = len(messages) - len(remaining) - len(chunk)
                if not done:
                    raise
                raise PartlyAppended(f"appended {done} of {len(messages)} messages for user {user!r}, then: {exc.message}", appended=done) from None
            count += len(chunk)
            tail = _Tail(new_size, form, count)
            if count >= limit and not remaining:
                # The messages are durable: a failed archive must not report them as
                # lost (a caller would append them again). The next append archives first.
                try:
                    aid = self.archive_locked(dialogs, user, name, ref, moves=moves, at=len(messages))
                except StorageError as exc:
                    self._metadata_after_append(dialogs, user, name, before, messages, moves)
                    return AppendResult(user, ref.name, len(messages), count, tuple(archived), exc.message)
                if aid:
                    archived.append(aid)
                tail = _Tail(0, None, 0)
                count = 0
        self._metadata_after_append(dialogs, user, name, before, messages, moves)
        return AppendResult(user, ref.name, len(messages), count, tuple(archived))

    def _metadata_after_append(
        self, dialogs: Folder, user: str, name: str, before: usermeta.Key, messages: Sequence[Message], moves: list[usermeta.Move]
    ) -> None:
        try:
            after = usermeta.key_of(dialogs.stat(name))
        except StorageError:
            return  # recomputed at the next append
        self._keep_metadata(dialogs, lambda meta_folder: usermeta.after_append(self, meta_folder, user, name, before, after, messages, moves))

    def _keep_metadata(self, dialogs: Folder, update: Callable[[Folder], None]) -> None:
        """Update the user's metadata.yaml; a failure there never fails the write it follows.

        The conversation change is already durable when this runs, and the
        metadata is derived data that is recomputed when found stale. That
        includes running out of memory: a recount reads the user's files whole,
        and a caller told that a committed import failed would import it again.
        """
        try:
            with dialogs.open_folder(("..",)) as user_folder:
                update(user_folder)
        except (OSError, DialogError, MemoryError):
            pass

    def _tail(self, dialogs: Folder, name: str, ref: ConversationRef) -> _Tail:
        """Size, shape and message count of a conversation, from its first and last bytes."""
        fd = dialogs.open_read(name)
        if fd is None:
            return _Tail(0, None, 0)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return _Tail(0, None, 0)
            head = os.pread(fd, _TAIL_BYTES, 0)
            tail = head if size <= _TAIL_BYTES else os.pread(fd, _TAIL_BYTES, size - _TAIL_BYTES)
            form = detect_form(head)
            if size > self.file_limit:
                # Too large for any reader: archived before more is written to it, like a full conversation.
                return _Tail(size, form, sys.maxsize)
            n = last_frame_n(tail)
            if n is None:
                # The last record is not ours (written by another implementation, or torn):
                # count by reading, once; our next record carries the count again.
                from .storage import read_all

                os.lseek(fd, 0, os.SEEK_SET)
                try:
                    data = read_all(fd, self.file_limit)
                except FileTooLarge:  # it grew past the limit meanwhile
                    return _Tail(size, form, sys.maxsize)
                n = len(parse_conversation(data, self.rel_path(ref)).messages)
            return _Tail(size, form, n)
        finally:
            os.close(fd)

    def write_conversation(
        self, dialogs: Folder, ref: ConversationRef, messages: Sequence[Message], exclusive: bool = False, replacing: FileSeen | None = None
    ) -> int:
        """Write a whole conversation file atomically, in the journal's file shape (the caller holds the user's lock).

        The messages are framed afresh (``n`` = 1..k), without batch marks: the
        file appears whole by its rename. With ``exclusive`` the file must not
        exist yet (a new archive), and the messages may be a long sequence read
        lazily (a spooled import): they are written in pieces, never held whole
        in memory. Otherwise the file is replaced, and keeps its owner and
        mode. ``replacing`` is the file as the caller read it: if it is no
        longer that file the rewrite is refused
        (:class:`~dialogctl.errors.ChangedUnderneath`), and whatever a server
        appended to it since the caller's read (servers take no lock) is carried
        over into the new file (see :class:`~dialogctl.storage.LiveRewrites`).
        Returns the number of bytes written.
        """
        for msg in messages:
            check_message(msg)
        made: list[str] = []
        folder, name = self.locate_for_write(dialogs, ref, made)
        try:
            if exclusive and folder.stat(name) is not None:
                raise InvalidInput(f"{ref.describe()} already exists")
            if replacing is None:
                written = [0]
                pieces = encode_chunks(messages, len(messages), 1, self.file_shape, marked=False)
                folder.write_atomic(name, _counted(pieces, written), self.modes)
                return written[0]
            data = encode_batch(messages, 1, self.file_shape, marked=False) if messages else b""
            self.rewrites.replace(folder, name, data, replacing, self.modes)
            return len(data)
        except BaseException:
            dialogs.remove_made(made)  # an archived/ made for a new archive that could not be written
            raise
        finally:
            if folder is not dialogs:
                folder.close()

    def locate_for_write(self, dialogs: Folder, ref: ConversationRef, made: list[str] | None = None) -> tuple[Folder, str]:
        """Like :meth:`locate`, creating ``archived/`` when an archive is meant (``made`` says if it was)."""
        if ref.kind == "archive":
            return dialogs.open_folder((L.ARCHIVE_DIR,), create=True, modes=self.modes, made_paths=made), L.archive_file(ref.id or "")
        return self.locate(dialogs, ref)

    def archive(self, user: str, conversation: str | None = None, archive_id: str | None = None) -> str | None:
        """Move the user's conversation into ``archived/``; None when it was empty."""
        if archive_id is not None:
            L.validate_name(archive_id, "archive id")
        ref = self.resolve(user, conversation)

        def body(dialogs: Folder) -> str | None:
            name, _ = self._target(dialogs, user, ref.id if ref.kind == "session" else "current")
            if ref.kind == "session" and dialogs.stat(name) is None:
                raise NotFound(f"{ref.describe()} not found")
            return self.archive_locked(dialogs, user, name, ref, archive_id)

        return self.locked(user, "archive", body)

    @staticmethod
    def target_name(ref: ConversationRef) -> str:
        """The file name in ``dialogs/`` of an active conversation."""
        if ref.kind == "archive":
            raise InvalidInput(f"{ref.describe()} is already archived")
        return L.session_file(ref.id or "") if ref.kind == "session" else L.CURRENT_FILE

    def archive_locked(
        self,
        dialogs: Folder,
        user: str,
        name: str,
        ref: ConversationRef,
        archive_id: str | None = None,
        moves: list[usermeta.Move] | None = None,
        at: int = 0,
    ) -> str | None:
        """Archive one conversation (the caller holds the user's lock); its id, or None when it was empty.

        metadata.yaml is told of the move at once, unless ``moves`` collects it
        for the caller's own update (an append tells it once, at its end; ``at``
        is how many of its messages were written before this archive).
        """
        st = _regular(dialogs, name)
        if st is None or st.st_size == 0:
            return None
        made: list[str] = []
        with dialogs.open_folder((L.ARCHIVE_DIR,), create=True, modes=self.modes, made_paths=made) as archived:
            try:
                if archive_id is not None:
                    if archived.stat(L.archive_file(archive_id)) is not None:
                        raise InvalidInput(f"archive {archive_id!r} of user {user!r} already exists")
                    chosen = archive_id
                else:
                    base = ref.id if ref.kind == "session" and ref.id else archive_id_for(utc_now())
                    chosen = _unique(archived, base)
                dialogs.rename_to(name, archived, L.archive_file(chosen))
                # The reference implementation expects the file to exist after an archive;
                # it is the servers' file as much as the one it replaces (same owner and mode).
                try:
                    dialogs.create_empty(name, self.modes, like=st)
                except StorageError:
                    _move_back(archived, L.archive_file(chosen), dialogs, name)
                    raise
            except BaseException:
                dialogs.remove_made(made)  # an archived/ made for this archive goes with it
                raise
        move = usermeta.Move(name, f"{L.ARCHIVE_DIR}/{L.archive_file(chosen)}", usermeta.key_of(st), usermeta.key_of(dialogs.stat(name)), at=at)
        if moves is not None:
            moves.append(move)
        else:
            self._keep_metadata(dialogs, lambda meta_folder: usermeta.note_moved(meta_folder, [move], self.modes))
        return chosen

    def restore(self, user: str, archive_id: str, conversation: str | None = None) -> RestoreResult:
        """Make an archive the user's conversation again; a non-empty one is archived first."""
        L.validate_user_id(user)
        L.validate_name(archive_id, "archive id")
        if conversation is not None and conversation != "current":
            L.validate_name(conversation)

        restored = f"{L.ARCHIVE_DIR}/{L.archive_file(archive_id)}"

        def body(dialogs: Folder) -> RestoreResult:
            if not dialogs.has_folder(L.ARCHIVE_DIR):
                raise NotFound(f"archive {archive_id!r} of user {user!r} not found (the user has no archives)")
            with dialogs.open_folder((L.ARCHIVE_DIR,)) as archived:
                archive_st = _regular(archived, L.archive_file(archive_id))
                if archive_st is None:
                    raise NotFound(f"archive {archive_id!r} of user {user!r} not found")
                target = conversation
                if target is None and self.layout().conversations == "sessions":
                    target = archive_id
                name, ref = self._target(dialogs, user, target or "current")
                st = _regular(dialogs, name)
                moves: list[usermeta.Move] = []
                first: str | None = None
                # The conversation file is the servers' as much as ours: what one appends to it
                # while we restore must survive, so it is swapped with the archive in one step
                # (renameat2), never overwritten, even when it looks empty.
                if st is not None and archived.exchange(L.archive_file(archive_id), dialogs, name):
                    out = archived.stat(L.archive_file(archive_id))  # what was the conversation
                    if out is not None and out.st_size == 0:
                        archived.remove(L.archive_file(archive_id))
                        archived.fsync()
                        moves = [usermeta.Move(restored, name, usermeta.key_of(archive_st), replaced=usermeta.key_of(out))]
                    else:
                        # It sits under the restored archive's name until it is given its own.
                        first = _unique(archived, ref.id if ref.kind == "session" and ref.id else archive_id_for(utc_now()))
                        try:
                            archived.rename_to(L.archive_file(archive_id), archived, L.archive_file(first))
                        except StorageError:
                            archived.exchange(L.archive_file(archive_id), dialogs, name)
                            raise
                        moves = [
                            usermeta.Move(name, f"{L.ARCHIVE_DIR}/{L.archive_file(first)}", usermeta.key_of(out)),
                            usermeta.Move(restored, name, usermeta.key_of(archive_st)),
                        ]
                elif st is None and archived.move_unless_there(L.archive_file(archive_id), dialogs, name):
                    moves = [usermeta.Move(restored, name, usermeta.key_of(archive_st))]
                if moves:
                    self._keep_metadata(dialogs, lambda meta_folder: usermeta.note_moved(meta_folder, moves, self.modes))
                    return RestoreResult(user, archive_id, ref.name, first)
                # Where the system cannot swap or refuse to overwrite (NFS): archive first, then move in.
                archived_first = self.archive_locked(dialogs, user, name, ref)
                replaced = usermeta.key_of(dialogs.stat(name))  # the empty file, if any, the archive takes the place of
                try:
                    archived.rename_to(L.archive_file(archive_id), dialogs, name)
                except StorageError:
                    if archived_first is not None:  # undo the archive-first step: all as it was
                        _move_back(archived, L.archive_file(archived_first), dialogs, name)
                    raise
            self._keep_metadata(
                dialogs,
                lambda meta_folder: usermeta.note_moved(
                    meta_folder, [usermeta.Move(restored, name, usermeta.key_of(archive_st), replaced=replaced)], self.modes
                ),
            )
            return RestoreResult(user, archive_id, ref.name, archived_first)

        return self.locked(user, "restore", body)

    # --- whole-journal views -------------------------------------------------------------

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def locks(self, users: Iterable[str] | None = None) -> Iterator[tuple[str, LockState]]:
        """Each user's lock state (users without a lock file are left out)."""
        for user in self.users() if users is None else users:
            try:
                with self.dialogs_folder(user) as dialogs:
                    state = probe(dialogs)
            except (NotFound, UnsafePath):
                raise
            except StorageError as exc:  # said at the end, naming the folder; the other users' locks are shown
                self.note_unreadable(f"{self.user_path(user)}/{L.LOCK_FILE}", exc, user)
                continue
            if state is not None:
                yield user, state


def too_large_detail(size: int, limit: int) -> str:
    from .storage import human_size

    return f"{human_size(size)}, more than the {human_size(limit)} dialogctl reads of one conversation file (maxFileMB); not read"


def _allow_open_files(needed: int, why: str) -> None:
    """Make room for ``needed`` open files (up to the hard limit), or refuse before anything is done."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise InvalidInput(f"{why} takes about {needed} open files, over this process's limit of {hard}; split the input")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError):
        raise InvalidInput(f"{why} takes about {needed} open files, over this process's limit of {soft}; split the input") from None


def _framed_tail(fd: int, size: int, count: int) -> tuple[int, list[Message], Form] | None:
    """(index of the first, messages, shape) of the last ``count`` records, or None if the end is not all framed."""
    import zlib

    from .codec import TRAILER_RE, decode_record

    found: list[Message] = []
    end = size  # the end of the trailer line looked at next
    buffer, buffer_start = b"", size  # the bytes [buffer_start, size) read so far
    form: Form = "documents"
    n = 0
    batch: tuple[int, int] | None = None  # the batch of the record read last (the next one in the file)
    while True:
        if end - buffer_start < 128:  # the trailer line may not be in the buffer yet
            # One page first, then what the records read so far say the rest will take.
            want = max(_TAIL_BYTES, (size - end) // len(found) * (count - len(found))) if found else _TAIL_BYTES
            new_start = max(0, buffer_start - want)
            buffer = os.pread(fd, buffer_start - new_start, new_start) + buffer
            buffer_start = new_start
        # Each write of ours begins with a line break (see _append_locked): skip empty lines.
        line_end = end - buffer_start
        while line_end > 0 and buffer[line_end - 1] == 10:
            line_end -= 1
        line_start = buffer.rfind(b"\n", 0, line_end) + 1
        m = TRAILER_RE.fullmatch(buffer, line_start, line_end)
        if m is None or (found and int(m.group(1)) != n - 1):
            return None
        n, length, crc = int(m.group(1)), int(m.group(4)), int(m.group(5), 16)
        # A record of a batch is read only when the batch's last record follows it: the
        # last record of the file must not be in the middle of one (a torn batch, or one
        # being written), nor may a record read before this one belong to another batch.
        mine = (int(m.group(2)), int(m.group(3))) if m.group(3) is not None else None
        if mine is not None and n != mine[1] and mine != batch:
            return None
        batch = mine
        trailer_start = buffer_start + line_start  # offsets in the file from here on
        record_start = trailer_start - length
        if record_start < 0 or n < 1:
            return None
        if record_start <= buffer_start:  # read the record and the byte before it
            new_start = max(0, record_start - 1)
            buffer = os.pread(fd, buffer_start - new_start, new_start) + buffer
            buffer_start = new_start
        body = buffer[record_start - buffer_start : trailer_start - buffer_start]
        if record_start > 0 and buffer[record_start - buffer_start - 1] != 10:
            return None
        if zlib.crc32(body) != crc:
            return None
        msg = decode_record(body)
        if msg is None:
            return None
        if not found:
            form = "documents" if body.startswith(b"---") else "sequence"
        found.append(msg)
        if n == 1 or record_start == 0:
            if n != 1 or record_start > _TAIL_BYTES or os.pread(fd, record_start, 0).strip(b"\n"):
                return None  # the frames' count does not start where the file starts
            break
        if len(found) >= max(count, 1):
            break
        end = record_start
    found.reverse()
    if count <= 0:  # only the count was wanted
        return n - 1 + len(found), [], form
    return n - 1, found, form


def _counted(pieces: Iterable[bytes], total: list[int]) -> Iterator[bytes]:
    """The pieces, adding up their length in ``total[0]``."""
    for piece in pieces:
        total[0] += len(piece)
        yield piece


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


def _regular(folder: Folder, name: str) -> os.stat_result | None:
    """lstat of a conversation file that is to be moved; anything but a regular file is refused."""
    st = folder.stat(name)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{folder.child_path(name)} is a symlink or not a regular file; dialogctl does not move it")
    return st


def _move_back(folder: Folder, name: str, target: Folder, new_name: str) -> None:
    """Undo a move while handling a failure; the failure itself is what gets reported."""
    try:
        folder.rename_to(name, target, new_name)
    except StorageError:
        pass


def _unique(folder: Folder, base: str) -> str:
    candidate = base
    number = 1
    while folder.stat(L.archive_file(candidate)) is not None:
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def _usable_name(name: str) -> bool:
    if TEMP_MARK in name:
        return False
    try:
        L.validate_name(name)
    except InvalidInput:
        return False
    return True


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
