"""The filesystems the benchmark mounts: ossmount, the peers (s3fs-fuse, rclone mount) and the pyfuse3 RAM
ceiling. Each knows its command line (recorded in the results), mounts in the foreground as a child process,
waits for the mount, and unmounts cleanly (lazy unmount and kill as the last resort)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ossmount.testing import stop_process

MOUNT_TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parent.parent


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split(" ")[4]) for line in table]
    return target in points


def tool_version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


class Client:
    """One filesystem under test. `kind` is "subject" (ossmount), "peer" or "limit"."""

    name = ""
    kind = "peer"
    fuse = True
    binary = ""  # an installed program (peers): missing() and version() look for it
    package = ""
    version_args: tuple[str, ...] = ("--version",)

    def __init__(self, server, bucket: str, workdir: Path):
        self.server = server
        self.bucket = bucket
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mountpoint = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.process: subprocess.Popen | None = None
        self._log = None
        self.variant: str | None = None

    # -- description ---------------------------------------------------------------------------------------
    def missing(self) -> str | None:
        """Why this client cannot run here (None if it can)."""
        if self.binary and not shutil.which(self.binary):
            return f"{self.binary} is not installed (Debian package {self.package}; bash .ci/setup)"
        return None

    def version(self) -> str | None:
        return tool_version([self.binary, *self.version_args]) if self.binary else None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def options(self) -> dict:
        """The options that matter for the figures, recorded in the JSON."""
        return {}

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def describe(self) -> dict:
        return {"kind": self.kind, "version": self.version(), "command": " ".join(self.argv()),
                "options": self.options()}

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def mount(self) -> None:
        self._log = open(self.workdir / "mount.log", "ab")
        self.process = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env(),
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(self.mountpoint):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} before mounting; "
                                   f"see {self.workdir / 'mount.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not mount within {MOUNT_TIMEOUT:.0f} s")
            time.sleep(0.05)
        self.after_mount()

    def after_mount(self) -> None:
        pass

    def unmount(self) -> None:
        if self.process is None:
            return
        try:
            if is_mounted(self.mountpoint):
                subprocess.run(["umount", str(self.mountpoint)], capture_output=True, timeout=120)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._force_cleanup()

    def _force_cleanup(self) -> None:
        if is_mounted(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        if self.process is not None:
            stop_process(self.process)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def remount(self, variant: str | None = None, *, keep_persistent: bool = False) -> None:
        """Unmount and mount again, with `variant` (a mode only some clients have, such as "readdir_optimize";
        others ignore it) and, unless `keep_persistent`, without what the client keeps on disk across mounts."""
        self.unmount()
        self.variant = variant
        if not keep_persistent:
            self.forget_persistent()
        self.mount()

    def forget_persistent(self) -> None:
        """Drop what survives a remount (nothing for most clients)."""

    def close(self) -> None:
        self.unmount()
        try:
            self.mountpoint.rmdir()
        except OSError:
            pass


class OssmountClient(Client):
    name = "ossmount"
    kind = "subject"

    def __init__(self, server, bucket, workdir):
        super().__init__(server, bucket, workdir)
        self.passwd = self.workdir / "passwd"
        self.passwd.write_text(f"{bucket}:{server.access_key_id}:{server.access_key_secret}\n")
        self.passwd.chmod(0o600)

    def version(self) -> str:
        import ossmount
        return f"ossmount {ossmount.__version__}"

    def argv(self) -> list[str]:
        variant = f",{self.variant}" if self.variant == "readdir_optimize" else ""
        return [sys.executable, "-m", "ossmount", self.bucket, str(self.mountpoint), "-o",
                f"url={self.server.endpoint},passwd_file={self.passwd},stat_cache_dir={self.stat_cache}{variant}",
                "-f"]

    @property
    def stat_cache(self) -> Path:
        return self.workdir / "stat-cache"

    def forget_persistent(self) -> None:
        shutil.rmtree(self.stat_cache, ignore_errors=True)

    def options(self) -> dict:
        return {"mount options": "defaults (stat_cache_expire=900, multipart_size=10, parallel_count=5); the "
                                 "persistent stat cache in the run's work directory, emptied before every cold "
                                 "figure and kept only for ls_l_remount; readdir_optimize only for *_rdo",
                "read_ahead_kb": "raised to 1024 by ossmount (root)"}


class S3fsClient(Client):
    name = "s3fs"
    binary = os.environ.get("BENCH_S3FS", "s3fs")  # another build (or a missing one) for a run
    package = "s3fs"

    def __init__(self, server, bucket, workdir):
        super().__init__(server, bucket, workdir)
        self.passwd = self.workdir / "passwd-s3fs"
        self.passwd.write_text(f"{server.access_key_id}:{server.access_key_secret}\n")
        self.passwd.chmod(0o600)

    def argv(self) -> list[str]:
        return [self.binary, self.bucket, str(self.mountpoint), "-f", "-o",
                f"url={self.server.endpoint},use_path_request_style,passwd_file={self.passwd}"]

    def options(self) -> dict:
        return {"mount options": "defaults: no use_cache (temporary files), sigv4, multipart_size=10, "
                                 "parallel_count=5, max_stat_cache_size=100000"}


class RcloneClient(Client):
    name = "rclone"
    binary = os.environ.get("BENCH_RCLONE", "rclone")
    package = "rclone"
    version_args = ("version",)
    VFS_OPTIONS = ["--vfs-cache-mode", "writes", "--vfs-write-back", "0s", "--dir-cache-time", "15m",
                   "--attr-timeout", "1s"]

    def argv(self) -> list[str]:
        return [self.binary, "mount", f"bench:{self.bucket}", str(self.mountpoint), "--cache-dir",
                str(self.workdir / "cache"), *self.VFS_OPTIONS]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # plain HTTP; a bundle breaks rclone
        env.update(RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                   RCLONE_CONFIG_BENCH_ENDPOINT=self.server.endpoint,
                   RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=self.server.access_key_id,
                   RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=self.server.access_key_secret,
                   RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true", RCLONE_CONFIG_BENCH_REGION=self.server.region,
                   RCLONE_CONFIG=str(self.workdir / "rclone.conf"))
        return env

    def options(self) -> dict:
        return {"vfs": " ".join(self.VFS_OPTIONS),
                "why": "writes: fio opens files O_RDWR, which rclone refuses without a write cache; write-back 0s "
                       "starts the upload at close (the write figure waits for the object on the server)"}


class RamFsClient(Client):
    name = "ramfs"
    kind = "limit"

    def __init__(self, server, bucket, workdir, big_name: str = "", big_size: int = 0):
        super().__init__(server, bucket, workdir)
        self.big_name, self.big_size = big_name, big_size

    def version(self) -> str:
        import pyfuse3
        return f"pyfuse3 {pyfuse3.__version__} RAM filesystem (benchmarks/ramfs.py)"

    def argv(self) -> list[str]:
        return [sys.executable, str(ROOT / "benchmarks" / "ramfs.py"), str(self.mountpoint),
                "--file", f"{self.big_name}:{self.big_size}"]

    def options(self) -> dict:
        return {"ttl": "60 s entry/attr", "keep_cache": False, "read_ahead_kb": 1024}

    def after_mount(self) -> None:
        set_read_ahead(self.mountpoint, 1024)


def set_read_ahead(mountpoint: Path, kib: int) -> None:
    """Raise the kernel readahead of a FUSE mount (ossmount does the same for itself when root)."""
    try:
        device = os.stat(mountpoint).st_dev
        with open(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb", "w") as f:
            f.write(str(kib))
    except OSError:
        pass
