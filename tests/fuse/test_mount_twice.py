"""Mounting where a mount already is (issue 6, C).

The rule (README "Mounting twice"): the same bucket, prefix and options succeed at once with no second
process (fstab and automount retries); anything else on a FUSE mountpoint is refused with exit 7 and one
line naming the existing mount and its pid; a dead mount (its process killed: ENOTCONN) is replaced (see
tests/reliability/test_dead_mounts.py) or, with dead_mount=fail, refused with the command that clears it, never
with a traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from ossmount.errors import EXIT_MOUNT

from .conftest import is_mounted, mounts_on, new_bucket


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def background(mount, options: str | None = None, spec: str | None = None) -> list[str]:
    """The mount's own command line without -f: what fstab or a user would run again."""
    argv = [arg for arg in mount.argv(options) if arg != "-f"]
    if spec is not None:
        argv[argv.index(mount.spec)] = spec
    return argv


def test_the_same_mount_again_succeeds_without_a_second_process(make_mount):
    mount = make_mount("allow_other")
    for _ in range(3):
        result = run(background(mount))
        assert result.returncode == 0, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert f"already mounted on {mount.path}" in line and f"pid {mount.process.pid}" in line
    assert mounts_on(mount.path) == ["fuse.ossmount"]
    # and in the foreground too (the form the CSI daemon and `mount -t fuse.ossmount -f` use)
    assert run(mount.argv()).returncode == 0
    assert mounts_on(mount.path) == ["fuse.ossmount"]


@pytest.mark.parametrize("change", ["options", "prefix", "bucket"])
def test_another_mount_on_the_mountpoint_is_refused_naming_the_existing_one(make_mount, local_server, change):
    mount = make_mount("allow_other")
    if change == "options":
        argv = background(mount, options="allow_other,ro")
    elif change == "prefix":
        argv = background(mount, spec=f"{mount.bucket}:/elsewhere")
    else:
        argv = background(mount, spec=new_bucket(local_server))
    result = run(argv)
    assert result.returncode == EXIT_MOUNT, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"already an ossmount mount of {mount.bucket}" in line and f"pid {mount.process.pid}" in line
    assert f"umount {mount.path}" in line
    assert mounts_on(mount.path) == ["fuse.ossmount"] and "Traceback" not in result.stderr


def test_a_dead_mount_is_refused_with_the_command_that_clears_it(make_mount):
    mount = make_mount("dead_mount=fail")
    mount.process.send_signal(signal.SIGKILL)
    mount.process.wait(timeout=30)
    try:
        with pytest.raises(OSError) as info:
            os.statvfs(mount.path)  # the kernel still has the mount, nobody serves it
        assert info.value.errno == errno.ENOTCONN
        for argv in (background(mount), mount.argv()):
            result = run(argv)
            assert result.returncode == EXIT_MOUNT, result.stderr
            [line] = result.stderr.strip().splitlines()
            assert "dead FUSE mount" in line and f"fusermount3 -u {mount.path}" in line
            assert "Traceback" not in result.stderr
    finally:
        subprocess.run(["fusermount3", "-uz", str(mount.path)], capture_output=True)
        deadline = time.monotonic() + 10
        while is_mounted(mount.path) and time.monotonic() < deadline:
            time.sleep(0.1)
        mount.process = None  # reaped above; nothing left for the fixture to unmount


def test_a_mount_process_killed_as_soon_as_it_mounted_dies(make_mount):
    """SIGKILL right after the mount appears, while the mount process may still be probing its own mountpoint
    (readiness, readahead): the process must die and leave a dead mount, never wait in the kernel for an answer
    it can no longer give (a thread of the mount process asking its own mount hung for ever, holding /dev/fuse)."""
    for _ in range(5):
        mount = make_mount()
        mount.process.send_signal(signal.SIGKILL)
        try:
            mount.process.wait(timeout=30)
            with pytest.raises(OSError) as info:
                os.statvfs(mount.path)
            assert info.value.errno == errno.ENOTCONN
        finally:
            subprocess.run(["fusermount3", "-uz", str(mount.path)], capture_output=True)
            if mount.process.poll() is not None:
                mount.process = None  # reaped; nothing left for the fixture to stop


def test_unmount_then_mount_again_works(make_mount):
    mount = make_mount()
    (mount.path / "kept").write_bytes(b"1")
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True)
    assert mount.process.wait(timeout=30) == 0
    mount.process = None
    result = run(background(mount))
    try:
        assert result.returncode == 0, result.stderr
        assert (mount.path / "kept").read_bytes() == b"1"
        assert mounts_on(mount.path) == ["fuse.ossmount"]
    finally:
        subprocess.run(["fusermount3", "-u", str(mount.path)], capture_output=True)
        deadline = time.monotonic() + 10
        while is_mounted(mount.path) and time.monotonic() < deadline:
            time.sleep(0.1)
