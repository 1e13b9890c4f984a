"""mount(8) integration: `mount -t fuse.ossmount` and fstab lines through helpers/mount.fuse.ossmount
(issue 3, Interface: "`mount -t fuse.ossmount BUCKET:/PREFIX /mnt -o opts` and fstab lines work")."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ossmount.helper_install import HELPER_NAME, install_helper, installed_command, render_helper
from ossmount.testing import LocalServer, process_exited, processes_mentioning, wait_for

from .conftest import new_bucket

REPO_HELPER = Path(__file__).resolve().parents[2] / "helpers" / HELPER_NAME
SBIN = Path("/sbin")
EXIT_WAIT = 15.0


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OSSMOUNT", None)
    return env


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    return wait_for(lambda: [pid for pid in pids if not process_exited(pid)], lambda alive: not alive,
                    timeout=timeout)


@pytest.fixture
def installed_helper():
    """The helper in /sbin for this test; a helper that was there before is put back afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mount(8) helper tests need root and util-linux mount")
    target = SBIN / HELPER_NAME
    # concurrent test runs share /sbin: one at a time, so each restores what it found
    with open("/run/lock/ossmount-helper-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = target.read_bytes() if target.exists() else None
        previous_mode = target.stat().st_mode if target.exists() else None
        try:
            yield install_helper(SBIN)
        finally:
            if previous is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(previous)
                os.chmod(target, previous_mode & 0o7777)


class SystemMount:
    """A mount made by mount(8); `finally` unmounts and ends the daemonized ossmount process."""

    def __init__(self, server: LocalServer, workdir: Path, bucket: str):
        self.server = server
        self.bucket = bucket
        self.path = workdir / "mnt"
        self.path.mkdir()
        self.passwd_file = workdir / "passwd"
        self.passwd_file.write_text(f"{bucket}:{server.access_key_id}:{server.access_key_secret}\n")
        self.passwd_file.chmod(0o600)

    @property
    def base_options(self) -> str:
        return f"url={self.server.endpoint},passwd_file={self.passwd_file}"

    def umount(self) -> None:
        pids = processes_mentioning(str(self.path))  # the daemonized mount
        assert pids, "no ossmount process serves the mount"
        subprocess.run(["umount", str(self.path)], check=True, capture_output=True, timeout=60)
        assert not os.path.ismount(self.path)
        assert _wait_gone(pids, EXIT_WAIT) == [], "ossmount did not exit after umount"

    def cleanup(self) -> None:
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        for pid in _wait_gone(processes_mentioning(str(self.path)), 5.0):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.fixture
def system_mount(local_server: LocalServer, tmp_path: Path):
    bucket = new_bucket(local_server)
    oss = local_server.oss2_bucket(bucket)
    oss.put_object("data/hello.txt", b"hello from oss\n")
    oss.put_object("data/sub/deep.bin", b"\x00\x01")
    mount = SystemMount(local_server, tmp_path, bucket)
    try:
        yield mount
    finally:
        mount.cleanup()


def _findmnt(path: Path) -> tuple[str, str, str]:
    result = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--mountpoint", str(path)],
                            capture_output=True, text=True, check=True)
    source, fstype, options = result.stdout.split()
    return source, fstype, options


def test_mount_t_fuse_ossmount(installed_helper, system_mount):
    """`mount -t fuse.ossmount BUCKET:/PREFIX DIR -o opts` mounts for real; generic options are dropped."""
    mount = system_mount
    options = f"{mount.base_options},_netdev,nofail,x-systemd.automount,comment=test,uid=1234"
    result = subprocess.run(["mount", "-t", "fuse.ossmount", f"{mount.bucket}:/data", str(mount.path),
                             "-o", options], capture_output=True, text=True, timeout=60, env=_clean_env())
    assert result.returncode == 0, result.stderr
    assert os.path.ismount(mount.path)
    source, fstype, _ = _findmnt(mount.path)
    assert (source, fstype) == (f"{mount.bucket}:/data", "fuse.ossmount")
    assert sorted(os.listdir(mount.path)) == ["hello.txt", "sub"]
    assert (mount.path / "hello.txt").read_bytes() == b"hello from oss\n"
    assert (mount.path / "hello.txt").stat().st_uid == 1234
    (mount.path / "written.txt").write_bytes(b"via mount(8)\n")
    mount.umount()
    body = mount.server.oss2_bucket(mount.bucket).get_object("data/written.txt").read()
    assert body == b"via mount(8)\n"


def test_fstab_line_with_mount_T(installed_helper, system_mount, tmp_path):
    """An fstab line (in a temp file, used with `mount -T`) mounts; `ro` is honoured."""
    mount = system_mount
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# ossmount test fstab\n"
        f"{mount.bucket}:/data {mount.path} fuse.ossmount "
        f"_netdev,nofail,noauto,defaults,x-systemd.requires=network-online.target,ro,{mount.base_options} 0 0\n"
    )
    result = subprocess.run(["mount", "-T", str(fstab), str(mount.path)], capture_output=True, text=True,
                            timeout=60, env=_clean_env())
    assert result.returncode == 0, result.stderr
    assert os.path.ismount(mount.path)
    assert (mount.path / "sub" / "deep.bin").read_bytes() == b"\x00\x01"
    _, fstype, options = _findmnt(mount.path)
    assert fstype == "fuse.ossmount" and "ro" in options.split(",")
    with pytest.raises(OSError) as info:
        (mount.path / "new.txt").write_bytes(b"x")
    assert info.value.errno == errno.EROFS
    mount.umount()


def test_mount_t_reports_a_bad_option(installed_helper, system_mount):
    """An unknown option fails the mount with a message naming it (not silently ignored)."""
    mount = system_mount
    result = subprocess.run(["mount", "-t", "fuse.ossmount", mount.bucket, str(mount.path), "-o",
                             f"{mount.base_options},bogus_option"], capture_output=True, text=True, timeout=60,
                            env=_clean_env())
    assert result.returncode != 0
    assert "unknown option 'bogus_option'" in result.stderr
    assert not os.path.ismount(mount.path)


# ---- the helper script itself (no mount needed) ---------------------------------------------------

def test_repo_helper_matches_the_installer_template():
    assert REPO_HELPER.read_text() == render_helper(None)
    assert os.stat(REPO_HELPER).st_mode & 0o755 == 0o755


def test_install_helper_writes_absolute_command_0755(tmp_path, capsys):
    from ossmount.helper_install import main

    assert main(["--prefix", str(tmp_path)]) == 0
    target = tmp_path / HELPER_NAME
    assert capsys.readouterr().out.strip() == str(target)
    assert os.stat(target).st_mode & 0o7777 == 0o755
    assert os.path.abspath(sys.executable) in target.read_text()
    assert installed_command().endswith("-m ossmount")


@pytest.fixture
def recorder(tmp_path):
    """A fake ossmount that prints its argv, one [arg] per argument."""
    script = tmp_path / "fake-ossmount"
    script.write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]" "$a"; done\necho\n')
    script.chmod(0o755)
    return script


HELPER_ARGV_CASES = [
    (["bkt:/p", "/m", "-o", "rw,_netdev,nofail,uid=1"], "[mount][bkt:/p][/m][-o][rw,uid=1]"),
    (["bkt", "/m", "-n", "-s", "-v", "-o", "defaults,noauto,auto,user,users"], "[mount][bkt][/m]"),
    (["bkt", "/m", "-oallow_other", "-o", "x-systemd.automount,comment=x,mp_umask=007"],
     "[mount][bkt][/m][-o][allow_other,mp_umask=007]"),
    (["-o", "ro", "bkt", "/a dir"], "[mount][bkt][/a dir][-o][ro]"),
    (["bkt", "/m", "-r"], "[mount][bkt][/m][-o][ro]"),
    (["bkt", "/m", "-N", "/proc/1/ns/mnt", "-w"], "[mount][bkt][/m][-o][rw]"),
]


@pytest.mark.parametrize("argv, expected", HELPER_ARGV_CASES)
def test_helper_argument_handling(recorder, argv, expected):
    result = subprocess.run(["sh", str(REPO_HELPER), *argv], capture_output=True, text=True,
                            env={**_clean_env(), "OSSMOUNT": str(recorder)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_helper_uses_installed_command_and_fake_mode(recorder, tmp_path):
    helper = install_helper(tmp_path, f"{recorder} --extra")
    result = subprocess.run([str(helper), "bkt", "/m"], capture_output=True, text=True, env=_clean_env())
    assert result.stdout.strip() == "[--extra][mount][bkt][/m]"
    faked = subprocess.run([str(helper), "bkt", "/m", "-f"], capture_output=True, text=True, env=_clean_env())
    assert faked.returncode == 0 and faked.stdout == ""


@pytest.mark.parametrize("argv", [["bkt"], [], ["bkt", "/m", "/extra"], ["bkt", "/m", "-Z"]])
def test_helper_usage_errors(recorder, argv):
    result = subprocess.run(["sh", str(REPO_HELPER), *argv], capture_output=True, text=True,
                            env={**_clean_env(), "OSSMOUNT": str(recorder)})
    assert result.returncode == 2 and result.stdout == ""
