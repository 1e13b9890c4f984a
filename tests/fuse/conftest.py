"""Live-mount fixtures: the real `ossmount` CLI mounting a bucket of the session's LocalServer.

Every mount runs `python -m ossmount BUCKET[:/PREFIX] MNT -o url=...,passwd_file=... -f` as a subprocess,
waits for the mount while asserting the process is alive, and on exit unmounts with `fusermount3 -u`
and asserts exit code 0; `finally` always lazy-unmounts, terminates and kills.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ossmount.testing import LocalServer, die_with_parent, stop_process

MOUNT_TIMEOUT = 20.0
_names = itertools.count()

if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    pytest.skip("FUSE tests need /dev/fuse and fusermount3", allow_module_level=True)


def is_mounted(path: Path) -> bool:
    """Whether a filesystem is mounted on `path`, from the mount table: os.path.ismount stats the path, which
    even root may not do on a FUSE mount of another user without allow_other."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        mountpoints = [line.split(" ")[4] for line in table]
    # mountinfo escapes space, tab, newline and backslash as octal.
    return any(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), mp) == target for mp in mountpoints)


def mounts_on(path) -> list[str]:
    """The types of the mounts stacked on `path`, bottom first (read from mountinfo, independently of ossmount:
    a stat would fail on a dead mount)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == target]


class Mount:
    """One `ossmount -f` process and its mountpoint; `log` is everything it wrote."""

    def __init__(self, server: LocalServer, bucket: str, workdir: Path, *, prefix: str = "", options: str = "",
                 user: int | None = None, passwd: bool = True, env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = ()):
        """`passwd=False` leaves passwd_file out (credentials from `env`, ram_role or public_bucket=1); `env` is
        added to the mount process's environment; `extra_args` follow `-f` (runtime flags such as --log-file)."""
        self.server = server
        self.url = server.endpoint  # what url= says (a test may point it at a proxy in front of the server)
        self.use_passwd = passwd
        self.env = dict(env or {})
        self.extra_args = extra_args
        self.user = user
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # Outside pytest's 0700 tmp tree, so that the non-root test user can reach the mountpoint.
        self.path = Path(tempfile.mkdtemp(prefix="ossmount-mnt-"))
        self.path.chmod(0o755)
        self.passwd_file = workdir / "passwd"
        self.passwd_file.write_text(f"{bucket}:{server.access_key_id}:{server.access_key_secret}\n")
        self.passwd_file.chmod(0o600)
        if user is not None:
            for path in (self.path, self.passwd_file):
                os.chown(path, user, user)
            self.passwd_file = self.passwd_file.rename(self.path.parent / f"{self.path.name}.passwd")
        # Each mount's own persistent stat cache (ossmount.fs.persistent), not the machine's /var/cache/ossmount.
        self.stat_cache_dir = workdir / "stat-cache"
        if user is not None:
            self.stat_cache_dir = self.path.parent / f"{self.path.name}.stat-cache"
            self.stat_cache_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.stat_cache_dir, user, user)
        self.log_path = workdir / "ossmount.log"
        self.process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def spec(self) -> str:
        return f"{self.bucket}:/{self.prefix}" if self.prefix else self.bucket

    def argv(self, options: str | None = None) -> list[str]:
        opts = f"url={self.url}" + (f",passwd_file={self.passwd_file}" if self.use_passwd else "")
        extra = self.options if options is None else options
        if "stat_cache_dir=" not in (extra or ""):
            opts += f",stat_cache_dir={self.stat_cache_dir}"
        if extra:
            opts += "," + extra
        command = [sys.executable, "-m", "ossmount", self.spec, str(self.path), "-o", opts, "-f", *self.extra_args]
        if self.user is not None:
            command = ["setpriv", "--reuid", str(self.user), "--regid", str(self.user), "--clear-groups", *command]
        return command

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, options: str | None = None) -> "Mount":
        if options is not None:
            self.options = options
        self._log_file = open(self.log_path, "ab")
        # A test run killed outright (SIGKILL, a CI timeout) leaves no mount behind: the kernel sends the mount
        # SIGTERM, on which it flushes and unmounts. Only from the main thread: the signal follows the thread that
        # started the process, and a worker thread's end would stop the mount mid-test.
        on_main_thread = threading.current_thread() is threading.main_thread()
        self.process = subprocess.Popen(self.argv(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env} if self.env else None,
                                        preexec_fn=die_with_parent if on_main_thread else None)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(self.path):
            code = self.process.poll()
            assert code is None, f"ossmount exited with {code} before mounting:\n{self.log}"
            assert time.monotonic() < deadline, f"not mounted after {MOUNT_TIMEOUT} s:\n{self.log}"
            time.sleep(0.05)
        return self

    def unmount(self) -> None:
        """Unmount normally and require a clean exit (code 0)."""
        if self.process is None:
            return
        if self.process.poll() is not None and not is_mounted(self.path):
            return  # it never mounted (start() already failed the test); cleanup() reaps it
        subprocess.run(["fusermount3", "-u", str(self.path)], check=True, capture_output=True)
        try:
            code = self.process.wait(timeout=30)
        finally:
            self._close_log()
        self.process = None
        assert code == 0, f"ossmount exited with {code}:\n{self.log}"
        # An unexpected exception in a handler is logged with its traceback and answered EIO: a bug.
        assert "Traceback" not in self.log, self.log

    def remount(self, options: str | None = None) -> "Mount":
        self.unmount()
        return self.start(options)

    def cleanup(self) -> None:
        """Never leave a mount or a process behind, whatever state the test left."""
        subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        self._close_log()
        if not is_mounted(self.path):
            try:
                self.path.rmdir()
                if self.user is not None:
                    self.passwd_file.unlink()
            except OSError:
                pass

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def new_bucket(server: LocalServer) -> str:
    name = f"f-{os.getpid()}-{next(_names)}-{uuid.uuid4().hex[:6]}"
    server.oss2_bucket(name).create_bucket()
    return name


@contextlib.contextmanager
def running_mount(server: LocalServer, workdir: Path, *, prefix: str = "", options: str = "") -> Iterator[Mount]:
    """A started mount of a fresh bucket; unmounted cleanly (exit code 0 asserted) and always cleaned up."""
    mount = Mount(server, new_bucket(server), workdir, prefix=prefix, options=options)
    try:
        mount.start()
        yield mount
        mount.unmount()
    finally:
        mount.cleanup()


@pytest.fixture(scope="module", params=["", "some/prefix/"], ids=["bucket-root", "prefixed"])
def module_mount(request: pytest.FixtureRequest, local_server: LocalServer,
                 tmp_path_factory: pytest.TempPathFactory):
    """One default mount of a fresh bucket (at its root, then at a prefix), shared by a test module."""
    with running_mount(local_server, tmp_path_factory.mktemp("mount"), prefix=request.param) as mount:
        yield mount


@pytest.fixture
def workdir(module_mount: Mount, request: pytest.FixtureRequest) -> Path:
    """A fresh directory on the module's mount, named after the test."""
    path = module_mount.path / request.node.name.replace("[", "_").replace("]", "")[:80]
    path.mkdir()
    return path


@pytest.fixture
def make_mount(local_server: LocalServer, tmp_path: Path):
    """Factory: `make_mount(options="", bucket=None, prefix="", user=None, server=None, passwd=True, env=None,
    extra_args=())` -> a started Mount, cleaned up after the test; with `user` the mount runs as that uid, with
    `server` against another LocalServer (see Mount for `passwd`, `env` and `extra_args`)."""
    mounts: list[Mount] = []

    def factory(options: str = "", *, bucket: str | None = None, prefix: str = "", start: bool = True,
                user: int | None = None, server: LocalServer | None = None, passwd: bool = True,
                env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> Mount:
        server = server or local_server
        mount = Mount(server, bucket or new_bucket(server), tmp_path / f"m{len(mounts)}",
                      prefix=prefix, options=options, user=user, passwd=passwd, env=env, extra_args=extra_args)
        mounts.append(mount)
        return mount.start() if start else mount

    try:
        yield factory
        for mount in mounts:
            mount.unmount()
    finally:
        for mount in mounts:
            mount.cleanup()


def as_user(uid: int, *command: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `command` as `uid` (same gid, no supplementary groups)."""
    return subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *command],
                          capture_output=True, input=input, timeout=60)


@pytest.fixture
def fuse_for_users(test_user):
    """/dev/fuse usable by the test user, as on a standard Debian system (0666): some containers create it
    0600, so as root it is opened up for the test and its original mode restored afterwards. Non-root
    mounts also need a setuid-root fusermount3, which cannot be arranged here: without one, skip."""
    fusermount = shutil.which("fusermount3")
    info = os.stat(fusermount)
    if not (info.st_mode & stat.S_ISUID and info.st_uid == 0):
        pytest.skip(f"{fusermount} is not setuid root (mode {stat.S_IMODE(info.st_mode):o}, owner uid "
                    f"{info.st_uid}): a non-root user cannot mount FUSE filesystems here")
    original_mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    accessible = as_user(test_user, "test", "-r", "/dev/fuse", "-a", "-w", "/dev/fuse").returncode == 0
    if not accessible and os.geteuid() != 0:
        pytest.skip(f"/dev/fuse is mode {original_mode:o} and this test is not root, so it cannot make it "
                    f"usable by uid {test_user}")
    if not accessible:
        os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        if not accessible:
            os.chmod("/dev/fuse", original_mode)
