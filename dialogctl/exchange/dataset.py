"""``-o DIR`` for a dataset format (``parquet``): a folder of Hive partitions that every run adds files to.

Layout::

    DIR/_manifest.json                       every run: its files with their row counts, and the cursor
    DIR/[server=<id>/]date=YYYY-MM-DD/part-<run>-<n>.parquet
    DIR/.dialogctl-dataset.lock              held while a run writes (a second run is exit 4)

A run never changes a file an earlier run wrote. Its part files are written
under temporary names (``.part-...tmp``, which the engines skip) and renamed
into place only once every one of them is complete and on disk; then the
manifest (replaced atomically) records the run; then the caller saves the
cursor file. A run killed at any point loses nothing and repeats nothing:

* before its renames: only temp files exist; the next run removes them and
  sends the same messages (the cursor did not move);
* between its renames and the manifest: part files exist that no manifest
  names; the next run removes them (they are its own naming, ``part-<run>-``
  with a run the manifest does not know) and sends them again;
* between the manifest and the cursor file: the manifest holds the cursor
  that run reached and the digest of the cursor it started from; the next run
  with the same cursor file, finding that file still at the start of the
  recorded run, continues from the manifest's cursor (:meth:`resume`).

Only files of exactly that naming, in partition folders of exactly this
dataset's partitioning, are ever removed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from ..disk.fileops import DIR_FLAGS, Modes, rmdir_quietly
from ..disk.storage import Folder
from ..errors import FileTooLarge, InvalidInput, LockBusy, UnsafePath, storage_error
from ..times import format_timestamp, utc_now

if TYPE_CHECKING:
    from .cursor import Cursor

MANIFEST = "_manifest.json"
LOCK = ".dialogctl-dataset.lock"
MANIFEST_VERSION = 1
MAX_MANIFEST = 64 * 1024 * 1024  # a manifest is read whole: refuse anything absurdly larger than years of nightly runs
# The Hive convention for a partition whose value is null (a message whose timestamp cannot be read).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_RUN = r"\d{8}T\d{6}Z-[0-9a-f]{8}"
_PART = re.compile(rf"part-(?P<run>{_RUN})-\d{{4,}}\.[a-z]+")
_TEMP = re.compile(rf"\.part-{_RUN}-\d{{4,}}\.[a-z]+\.tmp")


def partition_folder(key: str, value: str | None) -> str:
    """``key=value`` with the value escaped as Hive does (``%XX`` for ``/``, ``=``, ``%`` and the like); None is the null partition."""
    if value is None:
        return f"{key}={NULL_PARTITION}"
    escaped = quote(value, safe="-_.:+ ~")
    return f"{key}={escaped if escaped not in ('', '.', '..') else quote(value, safe='') or NULL_PARTITION}"


class PartFile:
    """One part file being written: a binary stream into its temporary name."""

    def __init__(self, dataset: OutputDataset, folder_fd: int, folder: str, name: str, fd: int) -> None:
        self.dataset = dataset
        self.folder_fd = folder_fd  # owned by the dataset (one per partition folder)
        self.folder = folder  # relative to the dataset: "date=2024-03-01"
        self.name = name
        self.fd = fd
        self.stream: IO[bytes] = open(fd, "wb", closefd=False)  # noqa: SIM115 - closed by finish()
        self.rows = 0
        self.size = 0
        self.finished = False

    @property
    def temp(self) -> str:
        return f".{self.name}.tmp"

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"

    def finish(self, rows: int) -> None:
        """The format wrote its last byte: flush and sync (the rename waits for every part)."""
        self.stream.flush()
        self.stream.close()
        os.fsync(self.fd)
        self.rows = rows
        self.size = os.fstat(self.fd).st_size
        self.finished = True


class OutputDataset:
    """``-o DIR`` for a dataset: the folder, its lock, its manifest, and the part files of this run.

    The partitions are ``date`` (the format chooses each row's) below the
    ``fixed`` ones every row of the run shares (``server``); a dataset keeps
    the partitioning it was made with.
    An existing dataset takes a new run only with a cursor (or ``force``): a
    run without one would add every message again. A folder that exists but
    is neither empty nor a dataset is refused, as is a symlink.
    """

    def __init__(self, path: str, extension: str, fixed: tuple[tuple[str, str], ...] = (), force: bool = False, file_mode: int = 0o600) -> None:
        self.path = path
        # (key, value) of the partitions above date that every row of this run shares: (("server", "server-001"),)
        self.fixed = tuple(partition_folder(key, value) for key, value in fixed)
        self.partitioning = (*(key for key, _ in fixed), "date")
        self.extension = extension
        self.force = force
        self.file_mode = file_mode & 0o666
        self.dir_mode = self.file_mode | ((self.file_mode & 0o444) >> 2)  # x where r: 0600 -> 0700, 0644 -> 0755
        now = utc_now()
        self.run = f"{now:%Y%m%dT%H%M%SZ}-{os.urandom(4).hex()}"
        self.started = format_timestamp(now)
        self.fd = -1
        self.lock_fd = -1
        self.created = False
        self.manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "partitioning": list(self.partitioning), "runs": [], "cursor": None}
        self.parts: list[PartFile] = []
        self.folders: dict[str, int] = {}
        self.made: list[str] = []  # each partition folder this run made (below the dataset, parents first): removed again on failure
        self.removed: list[str] = []  # leftovers of interrupted runs removed by this one (relative paths)
        self.resumed = False  # the cursor was taken from the manifest (see resume)
        self.cursor: Cursor | None = None
        self.cursor_path: str | None = None
        self.cursor_before: str | None = None

    # --- opening -------------------------------------------------------------------------

    def __enter__(self) -> OutputDataset:
        try:
            self._open()
            self._lock()
            self._read_manifest()
            self._remove_leftovers()
        except BaseException:
            self._close()
            raise
        return self

    def _open(self) -> None:
        try:
            os.mkdir(self.path, self.dir_mode)
            self.created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise storage_error(exc, "create the dataset folder", self.path) from None
        try:
            self.fd = os.open(self.path, DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    st = os.lstat(self.path)
                except OSError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise UnsafePath(f"{self.path} is a symlink; dialogctl does not write through links (remove it or choose another name)") from None
                raise InvalidInput(f"{self.path} exists and is not a folder; the parquet format writes a dataset folder: -o DIR") from None
            raise storage_error(exc, "open the dataset folder", self.path) from None
        if self.created:
            os.fchmod(self.fd, self.dir_mode)

    def _lock(self) -> None:
        try:
            self.lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, self.file_mode, dir_fd=self.fd)
        except OSError as exc:
            raise storage_error(exc, "create the lock file of", self.path) from None
        if not stat.S_ISREG(os.fstat(self.lock_fd).st_mode):
            raise UnsafePath(f"{self.path}/{LOCK} is not a regular file")
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"another export is writing to the dataset {self.path}", hint="wait for it to finish; runs to one dataset take turns") from None

    def _read_manifest(self) -> None:
        names = set(os.listdir(self.fd)) - {LOCK}
        if MANIFEST not in names:
            if names and not self.created:
                raise InvalidInput(f"{self.path} is not empty and is not a dialogctl dataset (no {MANIFEST})", hint="choose a new or empty folder for -o DIR")
            return
        where = f"{self.path}/{MANIFEST}"
        try:
            data = self._folder().read_bytes(MANIFEST, MAX_MANIFEST)
        except FileTooLarge:
            data = None
        try:
            manifest = json.loads(data) if data is not None else None
        except ValueError:
            manifest = None
        if not _valid_manifest(manifest):
            raise InvalidInput(f"{where} is damaged or is not a dialogctl dataset manifest; nothing was written", hint="choose a new folder for -o DIR")
        assert isinstance(manifest, dict)
        if tuple(manifest["partitioning"]) != self.partitioning:
            have, want = "/".join(manifest["partitioning"]), "/".join(self.partitioning)
            raise InvalidInput(f"{self.path} is partitioned by {have}, not {want}; a dataset keeps one partitioning", hint="choose a new folder for -o DIR")
        self.manifest = manifest

    def _remove_leftovers(self) -> None:
        """Remove what interrupted runs left: temp part files, and part files no manifest names."""
        known = {run["run"] for run in self.manifest["runs"]}

        def visit(fd: int, rel: str, depth: int) -> None:
            for entry in os.scandir(fd):
                here = f"{rel}/{entry.name}" if rel else entry.name
                if depth < len(self.partitioning):
                    if entry.name.startswith(self.partitioning[depth] + "=") and entry.is_dir(follow_symlinks=False):
                        child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                        try:
                            visit(child, here, depth + 1)
                        finally:
                            os.close(child)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                part = _PART.fullmatch(entry.name)
                if _TEMP.fullmatch(entry.name) or (part is not None and part["run"] not in known):
                    os.unlink(entry.name, dir_fd=fd)
                    self.removed.append(here)
            if self.removed:
                os.fsync(fd)

        if not self.created:
            try:
                visit(self.fd, "", 0)
            except OSError as exc:
                raise storage_error(exc, "clean up an interrupted run in", self.path) from None

    # --- the cursor ----------------------------------------------------------------------

    def resume(self, cursor: Cursor | None, cursor_path: str | None) -> Cursor | None:
        """The cursor this run starts from: ``cursor``, or the manifest's when the last run finished but its cursor file was not saved.

        Called before anything is selected. The manifest's last run recorded
        the digest of the cursor it started from and the cursor file it used;
        if that file still holds exactly that cursor, the run ended between
        its manifest and its cursor file, and its files are in the dataset:
        starting from the old cursor would send them again.
        """
        self.cursor = cursor
        self.cursor_path = os.path.realpath(cursor_path) if cursor_path else None
        if cursor is None:
            if self.manifest["runs"] and not self.force:
                runs = len(self.manifest["runs"])
                raise InvalidInput(
                    f"{self.path} already holds a dataset ({runs} run(s)); without --cursor-file this run would add every selected message again",
                    hint="pass --cursor-file FILE to add only new messages, --force to add this selection anyway, or choose a new folder",
                )
            return None
        runs = self.manifest["runs"]
        saved = self.manifest.get("cursor")
        if runs and saved is not None and runs[-1].get("cursor_file") == self.cursor_path and runs[-1].get("cursor_before") == _digest(cursor.text()):
            from .cursor import Cursor

            reached = Cursor.from_data(cursor.path, cursor.journal, saved)  # refused like a damaged cursor file if it is not one
            if reached.text() != cursor.text():
                reached.changed = True
                self.resumed = True
                self.cursor = cursor = reached
        self.cursor_before = _digest(cursor.text())
        return cursor

    # --- writing -------------------------------------------------------------------------

    def new_part(self, partition: tuple[str, ...]) -> PartFile:
        """A new part file in the partition folder named by ``partition`` (``partition_folder`` names, top first)."""
        rel = "/".join(partition)
        folder_fd = self.folders.get(rel)
        if folder_fd is None:
            folder_fd = self._make_folders(partition)
            self.folders[rel] = folder_fd
        name = f"part-{self.run}-{len(self.parts):04d}.{self.extension}"
        part_temp = f".{name}.tmp"
        try:
            fd = os.open(part_temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, self.file_mode, dir_fd=folder_fd)
            os.fchmod(fd, self.file_mode)
        except OSError as exc:
            raise storage_error(exc, "create a part file in", f"{self.path}/{rel}") from None
        part = PartFile(self, folder_fd, rel, name, fd)
        self.parts.append(part)
        return part

    def _make_folders(self, partition: tuple[str, ...]) -> int:
        """Open (making what is missing, never through a link) the partition folder; its descriptor, owned by the dataset."""
        made: list[str] = []
        folder = self._folder().open_folder(partition, create=True, modes=Modes(file=self.file_mode, dir=self.dir_mode), made_paths=made)
        self.made.extend(made)
        return folder.fd

    def _folder(self) -> Folder:
        """The dataset folder as a :class:`~dialogctl.disk.storage.Folder` on the descriptor this run holds (not to be closed)."""
        return Folder(self.fd, self.path)

    # --- committing ----------------------------------------------------------------------

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is None:
                self._commit()
            else:
                self._discard()
                if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                    raise storage_error(exc, "write the dataset", self.path) from None
        except BaseException:
            if exc is None:
                self._discard()
            raise
        finally:
            self._close()

    def _commit(self) -> None:
        try:
            for part in self.parts:
                if not part.finished:
                    raise RuntimeError(f"part file {part.path} was never finished")  # a bug in the format's writer
            renamed: set[int] = set()
            for part in self.parts:
                os.rename(part.temp, part.name, src_dir_fd=part.folder_fd, dst_dir_fd=part.folder_fd)
                renamed.add(part.folder_fd)
            for fd in renamed:
                os.fsync(fd)
            for fd in self.folders.values():
                os.fsync(fd)  # the partition folders made by this run, in their parents (fsync of each parent below)
            self._fsync_partition_parents()
            self._write_manifest()
        except OSError as exc:
            raise storage_error(exc, "write the dataset", self.path) from None

    def _fsync_partition_parents(self) -> None:
        parents = {"/".join(rel.split("/")[:-1]) for rel in self.folders}
        for rel in sorted(parents):
            if not rel:
                os.fsync(self.fd)
                continue
            fd = os.open(rel, DIR_FLAGS, dir_fd=self.fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def run_record(self) -> dict[str, Any]:
        files = [{"path": p.path, "rows": p.rows, "bytes": p.size} for p in self.parts]
        return {
            "run": self.run,
            "started": self.started,
            "finished": format_timestamp(datetime.now(UTC)),
            "rows": sum(p.rows for p in self.parts),
            "files": files,
            "cursor_file": self.cursor_path,
            "cursor_before": self.cursor_before,
        }

    def _write_manifest(self) -> None:
        manifest = dict(self.manifest)
        manifest["runs"] = [*manifest["runs"], self.run_record()]
        manifest["cursor"] = json.loads(self.cursor.text()) if self.cursor is not None else manifest.get("cursor")
        text = json.dumps(manifest, ensure_ascii=False, indent=1) + "\n"
        self._folder().write_atomic(MANIFEST, text.encode("utf-8"), Modes(file=self.file_mode, dir=self.dir_mode))
        self.manifest = manifest

    def _discard(self) -> None:
        for part in self.parts:
            try:
                part.stream.close()
            except (OSError, ValueError):
                pass
            try:
                os.unlink(part.temp, dir_fd=part.folder_fd)
            except OSError:
                pass
        for rel in reversed(self.made):  # deepest first; a folder someone else filled meanwhile stays
            rmdir_quietly(rel, self.fd)
        if self.created and self.fd >= 0:  # nothing of this dataset existed before the run: leave no trace
            try:
                if set(os.listdir(self.fd)) <= {LOCK}:
                    os.unlink(LOCK, dir_fd=self.fd)
                    os.rmdir(self.path)
            except OSError:
                pass

    def _close(self) -> None:
        for part in self.parts:
            if part.fd >= 0:
                os.close(part.fd)
                part.fd = -1
        for fd in self.folders.values():
            os.close(fd)
        self.folders = {}
        for fd in (self.lock_fd, self.fd):
            if fd >= 0:
                os.close(fd)  # closing the lock file releases the lock
        self.lock_fd = self.fd = -1


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _valid_manifest(manifest: Any) -> bool:
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return False
    parts, runs = manifest.get("partitioning"), manifest.get("runs")
    if not (isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts) and isinstance(runs, list)):
        return False
    if not all(isinstance(run, dict) and isinstance(run.get("run"), str) and isinstance(run.get("files"), list) for run in runs):
        return False
    return manifest.get("cursor") is None or isinstance(manifest.get("cursor"), dict)
