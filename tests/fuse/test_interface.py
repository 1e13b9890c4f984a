"""The Interface section of issue 3 through real mounts: credentials from the environment and their secrecy,
refusal of an over-permissive passwd file, `-d`, the stat-cache bound,
and the kernel refusing other users at the 0700 root."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ossmount.errors import EXIT_CONFIG
from ossmount.testing import die_with_parent
from tests.fuse.conftest import as_user, is_mounted, new_bucket

MOUNT_TIMEOUT = 20


class ForegroundMount:
    """`ossmount BUCKET MNT -f [extra]` with credentials from the environment only."""

    def __init__(self, server, bucket: str, workdir: Path, options: str = "", extra: tuple[str, ...] = (),
                 credentials: tuple[str, ...] | None = None):
        self.bucket = bucket
        self.path = Path(tempfile.mkdtemp(prefix="ossmount-mnt-"))
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "mount.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OSS_")}
        names = ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN")
        env.update(zip(names, credentials or (server.access_key_id, server.access_key_secret)))
        opts = f"url={server.endpoint}" + (f",{options}" if options else "")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "ossmount", bucket, str(self.path), "-o", opts,
                                         "-f", *extra], stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(self.path):
            assert self.process.poll() is None, self.log
            assert time.monotonic() < deadline, self.log
            time.sleep(0.05)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> int:
        subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
        try:
            return self.process.wait(timeout=30)
        finally:
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()
            if not is_mounted(self.path):
                self.path.rmdir()


@pytest.fixture
def foreground_mount(local_server, tmp_path):
    mounts = []

    def start(options: str = "", extra: tuple[str, ...] = (), bucket: str | None = None,
              credentials: tuple[str, ...] | None = None) -> ForegroundMount:
        mount = ForegroundMount(local_server, bucket or new_bucket(local_server), tmp_path / f"f{len(mounts)}",
                                options, extra, credentials)
        mounts.append(mount)
        return mount

    try:
        yield start
    finally:
        for mount in mounts:
            if mount.process.poll() is None or is_mounted(mount.path):
                mount.close()


def test_env_sts_credentials_with_debug_log_never_expose_secrets(foreground_mount, local_server):
    """STS credentials from OSS_ACCESS_KEY_ID/SECRET/SESSION_TOKEN; with -d the log is verbose (oss2 prints every
    request's headers), yet holds no secret, no security token and no signature, and neither does the cmdline."""
    import oss2

    sts_id, sts_secret, sts_token = "STS.ossmount-sts-id", "sts-secret", "sts-token"
    bucket = f"sts-{new_bucket(local_server)}"[:63]
    oss2.Bucket(oss2.StsAuth(sts_id, sts_secret, sts_token), local_server.endpoint, bucket).create_bucket()
    quiet = foreground_mount(bucket=bucket, credentials=(sts_id, sts_secret, sts_token))
    (quiet.path / "f.txt").write_text("x")
    assert quiet.close() == 0

    mount = foreground_mount(extra=("-d",), bucket=bucket, credentials=(sts_id, sts_secret, sts_token))
    (mount.path / "g.txt").write_text("hello")
    assert (mount.path / "g.txt").read_text() == "hello"
    os.listdir(mount.path)
    cmdline = Path(f"/proc/{mount.process.pid}/cmdline").read_bytes()
    assert mount.close() == 0
    log = mount.log
    assert log.count("DEBUG") > 5 and "DEBUG" not in quiet.log, "-d must add debug logging"
    assert "authorization" in log.lower(), "oss2 logs request headers at debug level; they must be redacted"
    for secret in (sts_secret, sts_token):
        assert secret.encode() not in cmdline
        assert secret not in log
    assert f"OSS {sts_id}:" not in log


def test_over_permissive_passwd_file_is_refused(local_server, tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{local_server.access_key_id}:{local_server.access_key_secret}\n")
    passwd.chmod(0o644)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run([sys.executable, "-m", "ossmount", new_bucket(local_server), str(mountpoint), "-o",
                             f"url={local_server.endpoint},passwd_file={passwd}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == EXIT_CONFIG
    assert "chmod 600" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not is_mounted(mountpoint)


def test_stat_cache_is_bounded_by_max_stat_cache_size(foreground_mount, local_server):
    """With room for 2 entries, the oldest of 3 stats is evicted and costs a HEAD again; the newest does not."""
    mount = foreground_mount("max_stat_cache_size=2,stat_cache_expire=600")
    bucket = local_server.oss2_bucket(mount.bucket)
    for name in "abc":
        bucket.put_object(name, b"1")
    for name in "abc":
        os.stat(mount.path / name)
    local_server.admin.reset_counters()
    # Make the kernel forget its own entries so every stat reaches ossmount's cache.
    Path("/proc/sys/vm/drop_caches").write_text("2")
    os.stat(mount.path / "c")
    assert local_server.admin.counters().get("HeadObject", 0) == 0, "the newest entry must still be cached"
    os.stat(mount.path / "a")
    assert local_server.admin.counters().get("HeadObject", 0) >= 1, "the oldest entry must have been evicted"
    assert mount.close() == 0


def test_root_without_allow_other_refuses_other_users(make_mount, test_user):
    mount = make_mount()
    (mount.path / "f").write_text("x")
    result = as_user(test_user, "ls", str(mount.path))
    assert result.returncode != 0 and b"Permission denied" in result.stderr
