"""Is this machine a safe place for the journal? The checks behind ``dialogctl doctor``.

dialogctl's promises rest on the filesystem under the root: ``flock`` locks
that every server sees, atomic ``rename``, ``fsync``, and permissions only the
journal's owner passes. doctor looks at the mount that holds the root (from
``/proc/self/mountinfo``) and at the root itself, and says what would break
those promises. It reads only; nothing is created, not even the root.

Each check yields :class:`Advice`: ``ok``, ``info`` or ``warning``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import Literal, NamedTuple

from ..disk.fileops import FOLLOW, Modes

MOUNTINFO = "/proc/self/mountinfo"

# Mount options that keep locks on this machine only, so servers on other
# machines would not see dialogctl's lock (and it would not see theirs).
LOCAL_LOCK_OPTIONS = {
    "local_lock=flock": "NFS keeps flock locks local to this machine",
    "local_lock=all": "NFS keeps all locks local to this machine",
    "nolock": "NFS keeps all locks local to this machine",
    "nobrl": "CIFS does not send byte-range locks to the server",
    "localflock": "Lustre keeps flock locks local to this machine",
}
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "fuse.sshfs", "afs", "ncpfs"})
LOW_SPACE_BYTES = 64 * 1024 * 1024

Status = Literal["ok", "info", "warning"]


class Advice(NamedTuple):
    check: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail}


class Mount(NamedTuple):
    mount_point: str
    fs_type: str
    source: str
    options: tuple[str, ...]  # per-mount and per-superblock options together
    device: str  # major:minor


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts listed in ``/proc/<pid>/mountinfo`` text (see proc(5)); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        options = fields[5].split(",") + (fields[sep + 3].split(",") if len(fields) > sep + 3 else [])
        mounts.append(Mount(_unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2]), tuple(dict.fromkeys(options)), fields[2]))
    return mounts


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount that holds ``path``: the last-mounted one with the longest matching mount point."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        if real == point or real.startswith(point if point.endswith("/") else point + "/"):
            if best is None or len(point) >= len(best.mount_point.rstrip("/") or "/"):
                best = mount
    return best


def existing_ancestor(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.exists(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    return current


def diagnose(root: str, modes: Modes = FOLLOW, mountinfo: str | None = None) -> Iterator[Advice]:
    """Every piece of advice about the journal root (which need not exist yet)."""
    try:
        exists = stat.S_ISDIR(os.stat(root).st_mode)
        reachable = True
    except OSError:
        exists, reachable = False, not os.path.lexists(root) and os.access(existing_ancestor(root), os.X_OK)
    where = root if exists else existing_ancestor(root)
    if exists and not _may(root, os.R_OK | os.X_OK):
        yield Advice(
            "root", "warning", f"journal root {root} cannot be read by uid {os.geteuid()} (Permission denied): every command but doctor fails (exit 6)"
        )
    elif exists:
        yield Advice("root", "ok", f"journal root {root}")
    elif not reachable:
        yield Advice(
            "root", "warning", f"journal root {root} cannot be reached by uid {os.geteuid()}: a folder above it may not be entered (Permission denied)"
        )
    else:
        yield Advice("root", "info", f"journal root {root} does not exist yet; it is created on the first append (checked {where} instead)")
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as fh:
                mountinfo = fh.read()
        except OSError as exc:
            yield Advice("filesystem", "info", f"cannot read {MOUNTINFO} ({exc.strerror}); mount options not checked")
            mountinfo = ""
    mount = mount_of(root, parse_mountinfo(mountinfo)) if mountinfo else None
    if mount is not None:
        yield from _mount_advice(mount)
    yield from _writable_advice(where, mount)
    if exists:
        yield from _access_advice(root, modes)
    yield from _space_advice(where)


def _may(path: str, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _mount_advice(mount: Mount) -> Iterator[Advice]:
    yield Advice("filesystem", "ok", f"{mount.fs_type} mounted at {mount.mount_point} from {mount.source} ({','.join(mount.options)})")
    local = [f"{option}: {why}" for option, why in LOCAL_LOCK_OPTIONS.items() if option in mount.options]
    if local:
        yield Advice(
            "locks",
            "warning",
            "locks are local to this machine (" + "; ".join(local) + "): servers on other machines writing this journal would not see dialogctl's lock",
        )
    elif mount.fs_type in NETWORK_FILESYSTEMS or mount.fs_type.startswith("fuse."):
        yield Advice(
            "locks",
            "info",
            f"{mount.fs_type} is a network or user-space filesystem: locks and atomic rename depend on the server; every machine must mount it the same way",
        )
    else:
        yield Advice("locks", "ok", f"flock locks on {mount.fs_type} are kept by this machine's kernel, which every local process shares")


def _writable_advice(where: str, mount: Mount | None) -> Iterator[Advice]:
    read_only = mount is not None and "ro" in mount.options
    try:
        read_only = read_only or bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        pass
    if read_only:
        yield Advice("writable", "warning", f"{where} is on a read-only filesystem: appends, archives and cleanups will fail")
    elif not os.access(where, os.W_OK | os.X_OK):
        yield Advice("writable", "warning", f"{where} is not writable by uid {os.geteuid()}: appends, archives and cleanups will fail")
    else:
        yield Advice("writable", "ok", f"{where} is writable")


def _access_advice(root: str, modes: Modes) -> Iterator[Advice]:
    st = os.stat(root)
    mode = stat.S_IMODE(st.st_mode)
    new_files = f"new files get {modes.file:04o}" if modes.file is not None else "new files take the owner and mode of the folder they are made in (without x)"
    new_folders = f"new folders {modes.dir:04o}" if modes.dir is not None else "new folders those of their parent"
    if mode & 0o022:
        who = " and ".join(word for word, bits in (("its group", 0o020), ("other users", 0o002)) if mode & bits)
        yield Advice(
            "permissions",
            "warning",
            f"the root has mode {mode:04o}: {who} can write it, and so remove or replace any conversation ('dialogctl verify' lists every file and folder others can write)",
        )
    else:
        readable = " (readable by group or others: fine unless the conversations must stay private)" if mode & 0o044 else ""
        yield Advice("permissions", "ok", f"the root has mode {mode:04o}{readable}; {new_files}, {new_folders}")
    if st.st_uid != os.geteuid():
        if os.geteuid() == 0:
            yield Advice("owner", "ok", f"dialogctl runs as root: what it creates is given to uid {st.st_uid} and gid {st.st_gid}, who own the root")
        else:
            yield Advice(
                "owner",
                "warning",
                f"the root belongs to uid {st.st_uid} but dialogctl runs as uid {os.geteuid()}: files it creates will belong to uid {os.geteuid()}, "
                "and servers running as the root's owner may not be able to append to them",
            )


def _space_advice(where: str) -> Iterator[Advice]:
    try:
        vfs = os.statvfs(where)
    except OSError as exc:
        yield Advice("space", "info", f"cannot tell free space ({exc.strerror})")
        return
    free = vfs.f_bavail * vfs.f_frsize
    if free < LOW_SPACE_BYTES:
        yield Advice("space", "warning", f"only {free // 1024} KiB free: appends fail (exit 6) when the disk is full")
    elif vfs.f_files and vfs.f_favail == 0:
        yield Advice("space", "warning", "no free inodes: new users, archives and rewrites will fail")
    else:
        yield Advice("space", "ok", f"{free // (1024 * 1024)} MiB free")
