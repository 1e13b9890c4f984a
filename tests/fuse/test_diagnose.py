"""`ossmount diagnose` (issue 13, item 5): one archive on a healthy mount, a dead one (FUSE process killed) and
with no mount at all, never hanging, with a summary of the problems and no secret, token or signature in any
file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import oss2
import pytest

from ossmount.testing import LocalServer, wait_for

from .conftest import Mount

HANG_GUARD = 60  # diagnose bounds itself to 25 s; this only stops a hung test


def diagnose(*args: str, cwd: Path, prefix: list[str] | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    output = cwd / f"diag-{uuid.uuid4().hex[:6]}.tar.gz"
    command = [*(prefix or []), sys.executable, "-m", "ossmount", "diagnose", *args, "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert output.stat().st_mode & 0o777 == 0o600
    with tarfile.open(output) as archive:
        files = {Path(member.name).relative_to(Path(member.name).parts[0]).as_posix():
                 archive.extractfile(member).read().decode() for member in archive.getmembers() if member.isfile()}
    return result, files


def assert_no_secrets(files: dict, *secrets: str) -> None:
    signature = re.compile(r"(OSS4?-?[A-Z0-9-]* [^\s:'\"]+:(?!<redacted>)[A-Za-z0-9+/=]{8,}|Signature=(?!<redacted>)\w)")
    for name, text in files.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {name}"
        assert not signature.search(text), f"a signature in {name}: {signature.search(text)[0]}"


@pytest.fixture
def secret_server(tmp_path):
    """A server whose STS secret and token are unique strings, so a grep cannot mistake anything for them."""
    secret, token = f"Sec{uuid.uuid4().hex}", f"Tok{uuid.uuid4().hex}"
    server = LocalServer(tmp_path / "oss", buckets=(), sts=(("STS.diagnose-id", secret, token),))
    server.start()
    try:
        oss2.Bucket(oss2.StsAuth("STS.diagnose-id", secret, token), server.endpoint, "diag-bucket").create_bucket()
        yield server, secret, token
    finally:
        server.stop()


def key_dir(path: Path, secret: str, token: str) -> Path:
    """A credentials directory, as the CSI driver mounts a Secret (STS: the only way to give a token)."""
    path.mkdir(mode=0o700, parents=True)
    for name, value in (("AccessKeyId", "STS.diagnose-id"), ("AccessKeySecret", secret), ("SecurityToken", token)):
        (path / name).write_text(value)
    return path


def sts_mount(server, secret: str, token: str, workdir: Path, *extra: str) -> Mount:
    mount = Mount(server, "diag-bucket", workdir, extra_args=extra)
    mount.passwd_file = key_dir(workdir / "keys", secret, token)
    return mount


def test_diagnose_a_healthy_mount_without_secrets(secret_server, tmp_path):
    server, secret, token = secret_server
    log_path = tmp_path / "mount.log"
    mount = sts_mount(server, secret, token, tmp_path / "m", "-d", "--log-file", str(log_path),
                      "--status-file", str(tmp_path / "status.json"))
    try:
        mount.start()
        (mount.path / "hello.txt").write_text("hello")
        assert (mount.path / "hello.txt").read_text() == "hello"
        assert "<redacted>" in log_path.read_text()  # -d logged request headers: signed requests
        result, files = diagnose(str(mount.path), cwd=tmp_path)
        assert {"summary.txt", "versions.txt", "mountinfo.txt", "kernel.txt", "updatedb.txt"} <= set(files)
        for name in ("mount.json", "stats.json", "status.json", "log-tail.txt", "check.txt", "clock.txt"):
            assert f"mount-1/{name}" in files, name
        assert "ossmount " in files["versions.txt"] and "kernel" in files["versions.txt"]
        assert str(mount.path) in files["mountinfo.txt"]
        assert '"hello.txt"' not in files["mount-1/stats.json"] and '"GetObject"' in files["mount-1/stats.json"]
        assert "exit 0" in files["mount-1/check.txt"]
        assert "PutObject" in files["mount-1/log-tail.txt"] or "PUT" in files["mount-1/log-tail.txt"]
        assert '"passwd_file"' in files["mount-1/mount.json"]  # the effective options
        assert "ENOTCONN" not in files["summary.txt"] and str(mount.path) in files["summary.txt"]
        assert_no_secrets(files, secret, token)
        assert secret not in result.stdout and token not in result.stdout
        mount.unmount()
    finally:
        mount.cleanup()


def test_diagnose_reports_failed_uploads_and_a_dead_mount(secret_server, tmp_path):
    server, secret, token = secret_server
    mount = sts_mount(server, secret, token, tmp_path / "m")
    try:
        mount.start()
        fd = os.open(mount.path / "stuck.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        server.admin.set_faults([{"op": "PutObject", "action": "error", "status": 403, "code": "AccessDenied",
                                  "count": None}])
        try:
            os.write(fd, b"not uploaded")
            with pytest.raises(OSError):
                os.close(fd)
            _, files = diagnose(str(mount.path), cwd=tmp_path)
        finally:
            server.admin.clear_faults()
        assert "could not be uploaded and are kept in the mount's spool" in files["summary.txt"]
        assert "stuck.txt (AccessDenied" in files["summary.txt"]

        os.kill(mount.process.pid, signal.SIGKILL)  # the FUSE process dies: ENOTCONN from now on
        mount.process.wait(timeout=30)
        result, files = diagnose(cwd=tmp_path)  # every mount of the host, this dead one among them
        dead = [line for line in files["summary.txt"].splitlines() if str(mount.path) in line and "dead" in line]
        assert dead and "ENOTCONN" in dead[0] and f"fusermount3 -u {mount.path}" in dead[0]
        assert_no_secrets(files, secret, token)
    finally:
        mount.cleanup()


def test_diagnose_with_no_mount_checks_a_bucket(secret_server, tmp_path):
    server, secret, token = secret_server
    passwd = key_dir(tmp_path / "keys", secret, token)
    # A private mount namespace without any fuse.ossmount mount (other tests' mounts stay untouched).
    isolate = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               "awk '$0 ~ / - fuse.ossmount / {print $5}' /proc/self/mountinfo | "
               "while read mp; do umount -l \"$mp\"; done; exec \"$@\"", "isolate"]
    result, files = diagnose("diag-bucket", "-o", f"url={server.endpoint},passwd_file={passwd}", cwd=tmp_path,
                             prefix=isolate)
    assert "Examined: no ossmount mount" in files["summary.txt"] and "No problem found" in files["summary.txt"]
    assert " - fuse.ossmount " not in files["mountinfo.txt"]
    assert "exit 0" in files["bucket-1/check.txt"]
    assert "local clock minus the server's Date" in files["bucket-1/clock.txt"]
    assert_no_secrets(files, secret, token)
    assert "archive:" in result.stdout


def test_diagnose_of_something_that_is_no_mount_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ossmount", "diagnose", str(tmp_path)], capture_output=True,
                            text=True, timeout=HANG_GUARD, cwd=tmp_path)
    assert result.returncode == 2 and "is no ossmount mount" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("*.tar.gz"))


def test_an_archive_that_cannot_be_written_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ossmount", "diagnose", "--output", str(tmp_path / "no" / "x.tgz")],
                            capture_output=True, text=True, timeout=HANG_GUARD, cwd=tmp_path)
    assert result.returncode == 3 and "cannot write the archive" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
