"""The test harness itself: a test run killed outright leaves no mount and no process behind (README "Tests")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ossmount.testing import wait_for
from tests.fuse.conftest import is_mounted

ROOT = Path(__file__).resolve().parents[2]

CHILD_TEST = '''
import time


def test_holds_a_mount(make_mount, tmp_path):
    mount = make_mount()
    (mount.path / "x").write_bytes(b"1")
    (Path(__file__).parent / "mountpoint").write_text(str(mount.path))
    time.sleep(120)
'''


def processes_naming(path: Path) -> list[int]:
    """The pids of processes whose command line names `path` (or something under it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if os.fsencode(str(path)) in cmdline.read():
                    found.append(int(entry))
        except OSError:
            continue  # gone meanwhile
    return found


def test_a_test_run_killed_outright_leaves_no_mount_behind(tmp_path):
    """SIGKILL gives pytest no chance to run its fixtures' `finally`: the kernel's parent-death signal (SIGTERM) makes
    the mount flush, unmount and exit, and the server stop."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F401,F403\n"
                                          "from tests.fuse.conftest import *  # noqa: F401,F403\n")
    (tmp_path / "test_child.py").write_text("from pathlib import Path\n" + CHILD_TEST)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
            "--basetemp", str(tmp_path / "basetemp"), str(tmp_path / "test_child.py")]
    run = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    recorded = tmp_path / "mountpoint"
    mountpoint = None
    try:
        assert wait_for(recorded.exists, bool, timeout=120), "the child test never mounted"
        mountpoint = Path(recorded.read_text())
        assert is_mounted(mountpoint)
        assert len(processes_naming(tmp_path)) >= 2, "the child's mount and server are seen by their command lines"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        assert not wait_for(lambda: is_mounted(mountpoint), lambda mounted: not mounted, timeout=30), \
            "the mount outlived the killed test run"
        # Its mount process and server (their data and caches are under tmp_path) are gone too.
        assert wait_for(lambda: processes_naming(tmp_path), lambda found: not found, timeout=30) == []
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if mountpoint is not None and is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
