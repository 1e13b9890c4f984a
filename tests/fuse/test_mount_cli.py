"""`ossmount mount` as users run it: mount-time checks, daemonizing, prefixes, User-Agent, archives
(issue 3, rules 7 and 8, and the Interface section)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ossmount
from ossmount.errors import EXIT_AUTH, EXIT_BUCKET, EXIT_UNREACHABLE
from ossmount.testing import LocalServer, processes_mentioning


def run_mount(spec: str, mountpoint: Path, options: str, timeout: float = 15) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "ossmount", spec, str(mountpoint), "-o", options],
                            capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def write_passwd(path: Path, line: str) -> Path:
    path.write_text(line + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def two_key_server(tmp_path_factory):
    """A server with two access keys; bucket 'other-owner' belongs to the second one."""
    server = LocalServer(tmp_path_factory.mktemp("two-keys"), buckets=(),
                         credentials=(("first-id", "first-secret"), ("second-id", "second-secret")))
    server.start()
    try:
        import oss2

        oss2.Bucket(oss2.Auth("second-id", "second-secret"), server.endpoint, "other-owner").create_bucket()
        oss2.Bucket(oss2.Auth("first-id", "first-secret"), server.endpoint, "mine").create_bucket()
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "case, bucket, credentials, code, exit_code, fix",
    [
        ("bad key id", "mine", "nobody-id:first-secret", "InvalidAccessKeyId", EXIT_AUTH,
         "check passwd_file / OSS_ACCESS_KEY_ID"),
        ("wrong secret", "mine", "first-id:wrong-secret", "SignatureDoesNotMatch", EXIT_AUTH,
         "the AccessKey secret is wrong"),
        ("missing bucket", "no-such-bucket", "first-id:first-secret", "NoSuchBucket", EXIT_BUCKET,
         "check the bucket name"),
        ("permission denied", "other-owner", "first-id:first-secret", "AccessDenied", EXIT_BUCKET,
         "grant oss:ListObjects"),
    ],
)
def test_mount_time_check_fails_fast_with_one_line(two_key_server, tmp_path, case, bucket, credentials, code,
                                                   exit_code, fix):
    """One line naming the OSS error code and what to do, in under 10 s, with no secret in it."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    passwd = write_passwd(tmp_path / "passwd", credentials)
    result, elapsed = run_mount(bucket, mountpoint, f"url={two_key_server.endpoint},passwd_file={passwd}")
    assert elapsed < 10
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and code in lines[0] and fix in lines[0], result.stderr
    assert "wrong-secret" not in lines[0] and "first-secret" not in lines[0]
    assert not os.path.ismount(mountpoint)


def test_unreachable_endpoint_fails_fast(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    passwd = write_passwd(tmp_path / "passwd", "id:secret")
    result, elapsed = run_mount("bkt", mountpoint, f"url=http://127.0.0.1:{port},passwd_file={passwd}")
    assert elapsed < 10
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ConnectionError" in lines[0] and f"cannot reach http://127.0.0.1:{port}" in lines[0], lines[0]


def test_daemon_mode_returns_when_ready_and_exits_on_umount(local_server, fresh_bucket_name, tmp_path):
    """Without -f the command returns once the mount is ready; `umount` then ends the background process."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    passwd = write_passwd(tmp_path / "passwd",
                          f"{local_server.access_key_id}:{local_server.access_key_secret}")
    local_server.oss2_bucket(fresh_bucket_name).put_object("hello.txt", b"hi")
    try:
        result, _ = run_mount(fresh_bucket_name, mountpoint, f"url={local_server.endpoint},passwd_file={passwd}")
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mountpoint)
        assert (mountpoint / "hello.txt").read_bytes() == b"hi"
        daemons = processes_mentioning(str(mountpoint))
        assert daemons
        subprocess.run(["umount", str(mountpoint)], check=True)
        deadline = time.monotonic() + 15
        while processes_mentioning(str(mountpoint)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes_mentioning(str(mountpoint))
    finally:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
        for pid in processes_mentioning(str(mountpoint)):
            os.kill(pid, 9)


def test_credentials_not_in_cmdline(make_mount):
    mount = make_mount()
    cmdline = Path(f"/proc/{mount.process.pid}/cmdline").read_bytes()
    assert mount.server.access_key_secret.encode() not in cmdline
    assert mount.server.access_key_secret not in mount.log


def test_missing_prefix_mounts_empty_and_is_created_lazily(make_mount):
    mount = make_mount(prefix="not/there/")
    assert os.listdir(mount.path) == []
    (mount.path / "f").write_bytes(b"data")
    assert mount.server.oss2_bucket(mount.bucket).get_object("not/there/f").read() == b"data"


def test_requests_carry_ossmount_user_agent(make_mount):
    mount = make_mount()
    mount.server.admin.reset_requests()
    os.listdir(mount.path)
    (mount.path / "ua").write_bytes(b"x")
    agents = {r.get("user_agent", "") for r in mount.server.admin.requests() if r.get("bucket") == mount.bucket}
    assert agents and all(f"ossmount/{ossmount.__version__}" in agent for agent in agents), agents


def test_unrestored_archive_object_gives_errno_and_log_line(make_mount):
    mount = make_mount()
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("cold", b"frozen data", headers={"x-oss-storage-class": "Archive"})
    with pytest.raises(OSError) as info:
        (mount.path / "cold").read_bytes()
    assert info.value.errno == errno.EREMOTE
    assert "cold" in mount.log and "needs RestoreObject" in mount.log


def test_read_only_mount_refuses_writes(make_mount):
    mount = make_mount("ro")
    mount.server.oss2_bucket(mount.bucket).put_object("r", b"read me")
    assert (mount.path / "r").read_bytes() == b"read me"
    with pytest.raises(OSError) as info:
        (mount.path / "w").write_bytes(b"x")
    assert info.value.errno == errno.EROFS


def test_mountpoint_must_exist_and_be_empty_unless_nonempty(local_server, fresh_bucket_name, tmp_path):
    from ossmount.errors import EXIT_MOUNT

    passwd = write_passwd(tmp_path / "passwd", f"{local_server.access_key_id}:{local_server.access_key_secret}")
    options = f"url={local_server.endpoint},passwd_file={passwd}"
    result, _ = run_mount(fresh_bucket_name, tmp_path / "missing", options)
    assert result.returncode == EXIT_MOUNT and "does not exist" in result.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    result, _ = run_mount(fresh_bucket_name, busy, options)
    assert result.returncode == EXIT_MOUNT and "-o nonempty" in result.stderr
    try:
        result, _ = run_mount(fresh_bucket_name, busy, options + ",nonempty")
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(busy)
    finally:
        subprocess.run(["fusermount3", "-u", str(busy)], capture_output=True)
        deadline = time.monotonic() + 15
        while processes_mentioning(str(busy)) and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["fusermount3", "-uz", str(busy)], capture_output=True)
        for pid in processes_mentioning(str(busy)):
            os.kill(pid, 9)
