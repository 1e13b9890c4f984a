"""Where a mount's warnings go (issue 13, item 4): a detached mount logs to syslog, or to a file under
/var/log/ossmount when no syslog socket answers; logfile= wins; every WARNING and ERROR line names the
mountpoint, the key and the OSS request id."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ossmount.ops import control
from ossmount.ops.logs import FALLBACK_LOG_DIR, SYSLOG_ENV, escaped_name
from ossmount.testing import process_exited, wait_for

from .conftest import Mount, is_mounted, new_bucket


class DetachedMount:
    """`ossmount BUCKET MNT -o ...` without -f: the command returns once the detached child serves the mount."""

    def __init__(self, server, env: dict[str, str]):
        self.server = server
        self.bucket = new_bucket(server)
        self.dir = Path(tempfile.mkdtemp(prefix="ossmount-detached-"))
        self.path = self.dir / "mnt"
        self.path.mkdir()
        self.passwd = self.dir / "passwd"
        self.passwd.write_text(f"{server.access_key_id}:{server.access_key_secret}\n")
        self.passwd.chmod(0o600)
        self.env = {**os.environ, **env}
        self.pid: int | None = None

    def start(self) -> "DetachedMount":
        result = subprocess.run([sys.executable, "-m", "ossmount", self.bucket, str(self.path), "-o",
                                 f"url={self.server.endpoint},passwd_file={self.passwd}"], env=self.env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        self.pid = next(r["pid"] for r in control.all_records() if r["mountpoint"] == str(self.path))
        return self

    def stop(self) -> None:
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
        if self.pid is not None:
            assert wait_for(lambda: process_exited(self.pid), bool, timeout=30)

    def cleanup(self) -> None:
        subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        if self.pid is not None and not process_exited(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def hide_a_key(mount) -> str:
    """Put a key no directory can show and list its directory: one warning naming it."""
    mount.server.oss2_bucket(mount.bucket).put_object("weird/..", b"cannot be shown")
    os.listdir(mount.path / "weird")
    return "weird/.."


def test_a_detached_mount_logs_to_syslog(local_server):
    directory = Path(tempfile.mkdtemp(prefix="ossmount-syslog-"))
    address = str(directory / "log")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(20)
    mount = DetachedMount(local_server, {SYSLOG_ENV: address})
    try:
        mount.start()
        key = hide_a_key(mount)
        while True:
            datagram = receiver.recv(65536).decode()
            if key in datagram:
                break
        # <12>: facility user (1), severity warning (4); the syslog daemon adds time and host
        assert datagram.startswith(f"<12>ossmount[{mount.pid}]: WARNING ")
        assert f"[{mount.path}]" in datagram
        mount.stop()
    finally:
        mount.cleanup()
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_without_syslog_a_detached_mount_logs_under_var_log_ossmount(local_server):
    mount = DetachedMount(local_server, {SYSLOG_ENV: "/nonexistent/ossmount-test/log"})
    log_path = Path(FALLBACK_LOG_DIR) / (escaped_name(str(mount.path)) + ".log")
    try:
        mount.start()
        key = hide_a_key(mount)
        text = wait_for(lambda: log_path.read_text() if log_path.exists() else "", lambda t: key in t, timeout=20)
        assert key in text and "instead of syslog" in text and "/nonexistent/ossmount-test/log" in text
        stats = subprocess.run([sys.executable, "-m", "ossmount", "stats", str(mount.path), "--json"],
                               capture_output=True, text=True, timeout=60)
        assert f'"path": "{log_path}"' in stats.stdout and '"target": "file"' in stats.stdout
        mount.stop()
    finally:
        mount.cleanup()
        for path in log_path.parent.glob(log_path.name + "*"):
            path.unlink()


def test_logfile_of_a_detached_mount_rotates_at_the_configured_size(local_server, tmp_path):
    log_path = tmp_path / "rotated.log"
    mount = DetachedMount(local_server, {})
    try:
        result = subprocess.run([sys.executable, "-m", "ossmount", mount.bucket, str(mount.path), "-o",
                                 f"url={local_server.endpoint},passwd_file={mount.passwd},logfile={log_path},"
                                 "dbglevel=debug", "--log-max-size", "8K", "--log-backups", "1"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        mount.pid = next(r["pid"] for r in control.all_records() if r["mountpoint"] == str(mount.path))
        for number in range(40):
            (mount.path / f"file-{number}").write_text("x")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == ["rotated.log", "rotated.log.1"]
        assert all(p.stat().st_size <= 12 * 1024 for p in tmp_path.iterdir())
        mount.stop()
    finally:
        mount.cleanup()


def test_every_warning_names_the_mountpoint_the_key_and_the_request_id(make_mount, tmp_path):
    log_path = tmp_path / "audit.log"
    mount = make_mount(start=False, options=f"nocomplement_stat,tmpdir={tmp_path}")
    mount.extra_args = ("--log-file", str(log_path))
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("dirlike/", b"")  # no x-oss-meta-mode: without complement_stat, a file (warned)
    bucket.put_object("conflict.bin", b"0123456789")
    mount.start()
    admin = mount.server.admin

    os.listdir(mount.path)  # the directory-like file
    failing = mount.path / "failing.txt"
    fd = os.open(failing, os.O_WRONLY | os.O_CREAT, 0o644)
    admin.set_faults([{"op": "PutObject", "action": "error", "status": 403, "code": "AccessDenied", "count": None}])
    try:
        os.write(fd, b"refused")
        with pytest.raises(OSError):
            os.close(fd)  # the failed upload
    finally:
        admin.clear_faults()
    fd = os.open(mount.path / "conflict.bin", os.O_RDWR)
    try:
        os.pwrite(fd, b"AB", 0)
        bucket.put_object("conflict.bin", b"another client's version")
        with pytest.raises(OSError) as conflict:
            os.fsync(fd)  # the conflict: this writer's bytes are kept aside
        assert conflict.value.errno == errno.EIO
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    for key in ("dirlike/", "conflict.bin", "failing.txt"):
        bucket.delete_object(key)
    bucket.delete_bucket()
    with pytest.raises(OSError):
        os.stat(mount.path / "after-the-bucket")  # the bucket missing
    bucket.create_bucket()
    os.listdir(mount.path)  # the bucket is back
    mount.unmount()

    lines = [line for line in log_path.read_text().splitlines() if re.search(r" (WARNING|ERROR) ", line)]
    expected = {"dirlike/": "has no x-oss-meta-mode", "failing.txt": "upload of 'failing.txt' failed",
                "conflict.bin": "replaced or deleted by another client", "after-the-bucket": "does not exist"}
    for key, words in expected.items():
        assert any(key in line and words in line for line in lines), (key, lines)
    for line in lines:
        assert f"[{mount.path}]" in line, line
        assert "request-id" in line and "request-id -" not in line, line
