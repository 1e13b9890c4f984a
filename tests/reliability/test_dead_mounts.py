"""Mounting where a mount died (issue 12, item 4): its FUSE process was killed (kill -9), so the kernel answers
"Transport endpoint is not connected" (ENOTCONN). `ossmount B MNT` then unmounts the dead mount lazily, logs it
and mounts again (`dead_mount=remount`, the default); with `dead_mount=fail`, or when this user may not unmount
it, it fails with one line naming `fusermount3 -u MNT`. Never a traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ossmount.errors import EXIT_MOUNT
from ossmount.testing import die_with_parent, wait_for
from tests.fuse.conftest import make_mount  # noqa: F401 - the fixture
from tests.fuse.conftest import Mount, as_user, is_mounted, mounts_on
from tests.reliability.test_cli_errors import assert_one_line


def kill_mount(mount: Mount) -> None:
    """kill -9 the mount's FUSE process: its mount stays in the table, dead."""
    assert mount.process is not None
    mount.process.send_signal(signal.SIGKILL)
    mount.process.wait(timeout=30)
    with pytest.raises(OSError) as dead:
        os.statvfs(mount.path)
    assert dead.value.errno == errno.ENOTCONN
    assert is_mounted(mount.path)


def mount_command(mount: Mount, *extra: str, options: str = "") -> list[str]:
    opts = f"url={mount.url},passwd_file={mount.passwd_file}" + (f",{options}" if options else "")
    return [sys.executable, "-m", "ossmount", mount.spec, str(mount.path), "-o", opts, *extra]


@pytest.fixture
def dead_mount(make_mount):
    """A mount holding one file, whose FUSE process was then killed with SIGKILL."""
    mount = make_mount()
    (mount.path / "kept.txt").write_bytes(b"written before the crash")
    kill_mount(mount)
    mount.process = None  # reaped: the fixture's cleanup only has to unmount
    return mount


@pytest.mark.parametrize("foreground", [False, True], ids=["detached", "foreground"])
def test_remount_over_a_dead_mount_just_works(dead_mount, foreground):
    """The same command an fstab or automount retry runs: it succeeds, says what it did in one warning line, and
    the bucket is mounted again (one live mount; the dead one detached)."""
    mount = dead_mount
    if foreground:
        process = subprocess.Popen(mount_command(mount, "-f"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, preexec_fn=die_with_parent)
        mount.process = process
        assert wait_for(lambda: _answers(mount.path), bool, timeout=30), process.stderr
    else:
        result = subprocess.run(mount_command(mount), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "WARNING" in line and "was a dead FUSE mount" in line and "unmounted it lazily" in line
        assert str(mount.path) in line
    assert (mount.path / "kept.txt").read_bytes() == b"written before the crash"
    (mount.path / "after.txt").write_bytes(b"the new mount writes")
    assert mount.server.oss2_bucket(mount.bucket).get_object("after.txt").read() == b"the new mount writes"
    assert mounts_on(mount.path) == ["fuse.ossmount"]
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True, capture_output=True)
    if foreground:
        assert mount.process.wait(timeout=30) == 0
        assert "Traceback" not in mount.process.stderr.read()
        mount.process = None
    else:
        wait_for(lambda: is_mounted(mount.path), lambda mounted: not mounted, timeout=30)
    assert not is_mounted(mount.path)


def _answers(path: Path) -> bool:
    try:
        os.statvfs(path)
        return os.path.exists(path / "kept.txt")
    except OSError:
        return False


def test_dead_mount_with_a_process_still_inside_is_replaced(make_mount):
    """A shell whose cwd was in the mount when it died (why a plain umount would say 'busy'): the lazy unmount does
    not wait for it, and the new mount serves the bucket."""
    mount = make_mount()
    (mount.path / "kept.txt").write_bytes(b"written before the crash")
    holder = subprocess.Popen(["sleep", "300"], cwd=mount.path)
    try:
        kill_mount(mount)
        mount.process = None
        result = subprocess.run(mount_command(mount), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert (mount.path / "kept.txt").read_bytes() == b"written before the crash"
        assert holder.poll() is None  # nobody had to end it
    finally:
        holder.kill()
        holder.wait()
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True, capture_output=True)
    wait_for(lambda: is_mounted(mount.path), lambda mounted: not mounted, timeout=30)


def test_dead_mount_fail_names_the_command(dead_mount):
    mount = dead_mount
    for extra in ((), ("-f",)):
        result = subprocess.run(mount_command(mount, *extra, options="dead_mount=fail"), capture_output=True,
                                text=True, timeout=60)
        line = assert_one_line(result, EXIT_MOUNT)
        assert "dead FUSE mount" in line and f"fusermount3 -u {mount.path}" in line
        assert mounts_on(mount.path) == ["fuse.ossmount"]  # left as it was
    with pytest.raises(OSError):
        os.statvfs(mount.path)


def test_mountpoint_inside_a_dead_mount(dead_mount):
    mount = dead_mount
    command = mount_command(mount)
    command[command.index(str(mount.path))] = str(mount.path / "sub")
    line = assert_one_line(subprocess.run(command, capture_output=True, text=True, timeout=60), EXIT_MOUNT)
    assert f"lies inside a dead FUSE mount at {mount.path}" in line and f"fusermount3 -u {mount.path}" in line


def test_another_users_dead_mount(dead_mount, test_user):
    """A non-root user cannot unmount root's dead mount: one line, and the dead mount is left for root."""
    mount = dead_mount
    passwd = mount.path.parent / f"{mount.path.name}.user-passwd"
    passwd.write_text(f"{mount.bucket}:{mount.server.access_key_id}:{mount.server.access_key_secret}\n")
    passwd.chmod(0o600)
    os.chown(passwd, test_user, test_user)
    try:
        result = as_user(test_user, sys.executable, "-m", "ossmount", mount.spec, str(mount.path), "-f", "-o",
                         f"url={mount.url},passwd_file={passwd}")
        completed = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                                result.stderr.decode())
        line = assert_one_line(completed, EXIT_MOUNT)
        assert str(mount.path) in line
        assert mounts_on(mount.path) == ["fuse.ossmount"]
    finally:
        passwd.unlink()
