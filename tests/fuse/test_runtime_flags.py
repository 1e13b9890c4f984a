"""What `ossmount` gained for the shared-mount daemon (issue 8, part 2): `--log-file` with size rotation and its
ossfs alias `-o logfile=`, `--status-file`, the readiness line, and credentials re-read on change (an STS token
rotated on disk is used by the next request, without a remount)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import oss2
import pytest

from ossmount.errors import EXIT_CONFIG
from ossmount.testing import LocalServer, die_with_parent, wait_for

from .conftest import Mount, is_mounted


def test_log_file_rotates_by_size_and_never_holds_secrets(make_mount, tmp_path):
    log = tmp_path / "logs" / "ossmount.log"
    log.parent.mkdir()
    mount = make_mount(start=False)
    mount.extra_args = ("-d", "--log-file", str(log), "--log-max-size", "16K", "--log-backups", "2")
    mount.start()
    for number in range(60):  # debug logging writes every request's headers: well over 3 × 16 KiB
        (mount.path / f"f{number}").write_text("x")
    os.listdir(mount.path)
    names = sorted(p.name for p in log.parent.iterdir())
    assert names == ["ossmount.log", "ossmount.log.1", "ossmount.log.2"]
    assert all(p.stat().st_size <= 20 * 1024 for p in log.parent.iterdir())
    text = "".join(p.read_text() for p in log.parent.iterdir())
    assert "PutObject" in text or "PUT" in text
    assert mount.server.access_key_secret not in text
    assert mount.log == ""  # nothing on stderr: the log went to the file


def test_logfile_option_is_the_ossfs_alias(make_mount, tmp_path):
    log = tmp_path / "alias.log"
    mount = make_mount(f"logfile={log}")
    mount.server.oss2_bucket(mount.bucket).put_object("weird/..", b"cannot be shown")
    os.listdir(mount.path / "weird")  # a key named '..' is hidden, with one warning
    assert wait_for(lambda: log.read_text() if log.exists() else "", lambda text: "weird/" in text, timeout=10)
    assert "weird/" not in mount.log


def test_unwritable_log_file_fails_before_mounting(local_server, fresh_bucket_name, tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{local_server.access_key_id}:{local_server.access_key_secret}\n")
    passwd.chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "ossmount", fresh_bucket_name, str(mountpoint), "-o",
                             f"url={local_server.endpoint},passwd_file={passwd}", "--log-file",
                             str(tmp_path / "missing" / "dir" / "log")], capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_CONFIG
    [line] = result.stderr.strip().splitlines()
    assert "cannot open log file" in line and "missing/dir/log" in line
    assert not is_mounted(mountpoint)


@pytest.mark.parametrize("argv, message", [
    (["--log-max-size", "1K"], "--log-max-size needs a size"),
    (["--status-interval", "0"], "--status-interval needs a number"),
    (["--log-backups", "-1"], "--log-backups needs"),
])
def test_runtime_flags_are_validated(tmp_path, argv, message):
    result = subprocess.run([sys.executable, "-m", "ossmount", "bkt", str(tmp_path), *argv], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr


def test_status_file_reports_the_backend(make_mount, tmp_path):
    status_path = tmp_path / "status.json"
    # open_check_window=0: the lookup below must ask OSS, although a listing of its directory is fresh
    mount = make_mount("open_check_window=0", start=False)
    mount.extra_args = ("--status-file", str(status_path), "--status-interval", "0.2")
    mount.start()
    os.listdir(mount.path)

    def status() -> dict:
        try:
            return json.loads(status_path.read_text())
        except (OSError, ValueError):
            return {}

    first = wait_for(status, lambda s: (s.get("backend") or {}).get("ok") is True, timeout=10)
    assert first["pid"] == mount.process.pid and first["state"] == "mounted" and first["bucket"] == mount.bucket
    assert first["credentials"]["access_key_id"] != mount.server.access_key_id  # masked
    mount.server.oss2_bucket(mount.bucket).delete_bucket()
    with pytest.raises(OSError) as lookup:  # a lookup: OSS answers NoSuchBucket, which is EIO (never ENOENT)
        (mount.path / "nothing-here").exists()
    assert lookup.value.errno == errno.EIO
    broken = wait_for(status, lambda s: s["backend"]["ok"] is False, timeout=10)
    assert broken["backend"]["last_error"]["code"] == "NoSuchBucket"
    assert broken["errors"]["NoSuchBucket"] >= 1
    mount.server.oss2_bucket(mount.bucket).create_bucket()
    mount.unmount()
    assert status()["state"] == "unmounted"


def _key_dir(path: Path, token: str) -> Path:
    path.mkdir()
    for name, value in (("AccessKeyId", "STS.rotating"), ("AccessKeySecret", "sts-secret"), ("SecurityToken", token)):
        (path / name).write_text(value)
    return path


def test_rotated_sts_token_is_used_by_the_next_request_without_remount(tmp_path):
    """The server accepts only the new token after a restart; the mount's next request carries it."""
    server = LocalServer(tmp_path / "oss", buckets=(), sts=(("STS.rotating", "sts-secret", "token-1"),))
    server.start()
    mount = None
    try:
        first = oss2.Bucket(oss2.StsAuth("STS.rotating", "sts-secret", "token-1"), server.endpoint, "sts-bucket")
        first.create_bucket()
        first.put_object("before.txt", b"before")
        creds = tmp_path / "creds"
        creds.mkdir(mode=0o700)
        _key_dir(creds / "keys.1", "token-1")
        (creds / "keys").symlink_to("keys.1")
        status_path = tmp_path / "status.json"
        mount = Mount(server, "sts-bucket", tmp_path / "m", extra_args=(
            "--status-file", str(status_path), "--status-interval", "0.2"))
        mount.passwd_file = creds / "keys"
        mount.start()
        pid = mount.process.pid
        assert (mount.path / "before.txt").read_bytes() == b"before"

        server.sts = (("STS.rotating", "sts-secret", "token-2"),)
        server.restart()  # from now on only token-2 is accepted
        _key_dir(creds / "keys.2", "token-2")
        (creds / "keys.tmp").symlink_to("keys.2")
        os.replace(creds / "keys.tmp", creds / "keys")
        oss2.Bucket(oss2.StsAuth("STS.rotating", "sts-secret", "token-2"), server.endpoint,
                    "sts-bucket").put_object("after.txt", b"after")

        assert (mount.path / "after.txt").read_bytes() == b"after"
        (mount.path / "written.txt").write_bytes(b"with the new token")
        assert mount.process.pid == pid and mount.process.poll() is None
        reloads = wait_for(lambda: json.loads(status_path.read_text())["credentials"]["reloads"], bool, timeout=10)
        assert reloads == 1
        mount.unmount()
        assert "token-1" not in mount.log and "token-2" not in mount.log
    finally:
        if mount is not None:
            mount.cleanup()
        server.stop()


def test_ready_line_names_the_pid_and_the_oss_code(local_server, fresh_bucket_name, tmp_path):
    """--ready-fd: {"state": "ready", "pid": N} once mounted; {"state": "error", "reason": OSS code, ...} if not."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    passwd = tmp_path / "passwd"

    def run(secret: str) -> tuple[dict, subprocess.Popen]:
        passwd.write_text(f"{local_server.access_key_id}:{secret}\n")
        passwd.chmod(0o600)
        read_end, write_end = os.pipe()
        process = subprocess.Popen([sys.executable, "-m", "ossmount", fresh_bucket_name, str(mountpoint), "-f", "-o",
                                    f"url={local_server.endpoint},passwd_file={passwd}", "--ready-fd",
                                    str(write_end)], pass_fds=(write_end,), stderr=subprocess.DEVNULL,
                                   preexec_fn=die_with_parent)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            return json.loads(pipe.readline()), process

    report, process = run("wrong-secret")
    assert process.wait(30) == 4
    assert report["state"] == "error" and report["reason"] == "SignatureDoesNotMatch" and report["code"] == 4
    assert "wrong-secret" not in report["message"]
    report, process = run(local_server.access_key_secret)
    try:
        assert report == {"state": "ready", "pid": process.pid}
        assert is_mounted(mountpoint)
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        assert process.wait(30) == 0
