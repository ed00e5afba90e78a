"""doctor: the root's filesystem, read from /proc/self/mountinfo, and the root's own state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dialogctl.maintenance.doctor import diagnose, mount_of, parse_mountinfo

from ..conftest import Cli

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 0:50 / /srv/nfs rw,relatime shared:5 - nfs4 files:/export rw,vers=4.2,local_lock=flock
41 27 0:51 / /srv/nfs-ok rw,relatime - nfs4 files:/export rw,vers=4.2,local_lock=none
42 27 0:52 / /srv/old\040nfs rw - nfs files:/old rw,nolock
43 27 0:53 / /srv/smb rw - cifs //files/share rw,nobrl
44 27 0:54 / /srv/lustre rw - lustre mgs@tcp:/fs rw,localflock
45 27 0:55 / /srv/ro ro,relatime - ext4 /dev/vdb ro
"""


def test_mountinfo_parsing_and_lookup() -> None:
    mounts = parse_mountinfo(MOUNTINFO + "garbage line\n")
    assert len(mounts) == 8
    assert mounts[4].mount_point == "/srv/old nfs" and "nolock" in mounts[4].options
    assert mount_of("/srv/nfs/journal", mounts).fs_type == "nfs4"  # type: ignore[union-attr]
    assert mount_of("/srv/nfs-ok/journal", mounts).mount_point == "/srv/nfs-ok"  # type: ignore[union-attr]
    assert mount_of("/srv/nfsx/journal", mounts).mount_point == "/"  # type: ignore[union-attr]
    assert mount_of("/srv/old nfs", mounts).fs_type == "nfs"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "where,status,words",
    [
        ("/srv/nfs/j", "warning", "local_lock=flock"),
        ("/srv/old nfs/j", "warning", "nolock"),
        ("/srv/smb/j", "warning", "nobrl"),
        ("/srv/lustre/j", "warning", "localflock"),
        ("/srv/nfs-ok/j", "info", "network"),
        ("/var/j", "ok", "ext4"),
    ],
)
def test_local_only_locks_are_warned_about(where: str, status: str, words: str) -> None:
    advice = {a.check: a for a in diagnose(where, mountinfo=MOUNTINFO)}
    assert advice["locks"].status == status and words in advice["locks"].detail


def test_read_only_mount_is_not_writable() -> None:
    advice = {a.check: a for a in diagnose("/srv/ro/j", mountinfo=MOUNTINFO)}
    assert advice["writable"].status == "warning" and "read-only" in advice["writable"].detail


def test_doctor_on_this_machine(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    result = cli("--root", str(root), "doctor", "--format", "json")
    assert result.exit_code == 0, result.stdout
    checks = {a["check"]: a for a in json.loads(result.stdout)}
    assert checks["root"]["status"] == "info" and "does not exist yet" in checks["root"]["detail"]
    assert checks["filesystem"]["status"] == "ok"
    assert not root.exists()  # doctor creates nothing
    cli("--root", str(root), "append", "alice", "hi")
    assert cli("--root", str(root), "doctor").exit_code == 0
    root.chmod(0o755)  # the servers' own modes: readable by others is a note, not a warning
    result = cli("--root", str(root), "doctor", "--format", "json")
    assert result.exit_code == 0, result.stderr
    permissions = next(a for a in json.loads(result.stdout) if a["check"] == "permissions")
    assert permissions["status"] == "ok" and "readable by group or others" in permissions["detail"]
    root.chmod(0o775)  # writable by the group: anyone in it can remove conversations
    result = cli("--root", str(root), "doctor", "--format", "json")
    assert result.exit_code == 1 and "warning" in result.stderr
    permissions = next(a for a in json.loads(result.stdout) if a["check"] == "permissions")
    assert permissions["status"] == "warning" and "its group can write it" in permissions["detail"]


def test_doctor_warns_when_the_root_is_not_writable(tmp_path: Path) -> None:
    """As a normal user a 0500 root is not writable; as root, a read-only bind mount (needs a mount namespace)."""
    root = tmp_path / "journal"
    root.mkdir(mode=0o700)
    cmd = [sys.executable, "-m", "dialogctl", "--root", str(root), "doctor", "--format", "json"]
    if os.geteuid() != 0:
        root.chmod(0o500)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    else:
        unshare = shutil.which("unshare")
        probe = subprocess.run([unshare, "-m", "true"], capture_output=True) if unshare else None
        if probe is None or probe.returncode != 0:
            pytest.skip("running as root without mount namespaces: cannot make the root read-only")
        script = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && exec " + " ".join(f"'{c}'" for c in cmd)
        proc = subprocess.run([unshare, "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    writable = next(a for a in json.loads(proc.stdout) if a["check"] == "writable")
    assert writable["status"] == "warning"
