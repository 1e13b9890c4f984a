"""Daemon fixtures: a real `ossmount daemon` subprocess with a private run dir and socket under a short temp root,
kubelet-like staging and target paths under the same root, against the session's LocalServer.

Everything runs as root in the host mount namespace (the test process must read and write through the targets
the daemon binds); `LocalDaemon.cleanup()` unstages, stops the daemon, kills any process naming the root and
lazily unmounts anything left under it. Teardown fails a test that left something only force could remove.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from ossmount.testing import LocalDaemon, LocalServer, mounts_under, processes_mentioning

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("daemon tests need /dev/fuse and root", allow_module_level=True)

DRIVER = "ossmount.csi.example.com"


class Kubelet:
    """Paths laid out as the kubelet lays them out; it creates the parents, the daemon the leaves."""

    def __init__(self, root: Path):
        self.root = root / "kubelet"

    def staging_path(self, volume_id: str) -> str:
        digest = hashlib.sha256(volume_id.encode()).hexdigest()
        path = self.root / "plugins" / "kubernetes.io" / "csi" / DRIVER / digest / "globalmount"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def target_path(self, pv: str) -> str:
        path = self.root / "pods" / str(uuid.uuid4()) / "volumes" / "kubernetes.io~csi" / pv / "mount"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)


def spec_for(server: LocalServer, bucket: str, **changes: Any) -> dict[str, Any]:
    return {"bucket": bucket, "endpoint": server.endpoint, **changes}


def credentials_for(server: LocalServer, **changes: Any) -> dict[str, Any]:
    return {"type": "access_key", "access_key_id": server.access_key_id,
            "access_key_secret": server.access_key_secret, **changes}


@pytest.fixture
def daemon_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="omd-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if not mounts_under(str(root)):  # never rmtree through a mount
            shutil.rmtree(root, ignore_errors=True)


def finish(daemon: LocalDaemon) -> None:
    """Clean up and fail if anything needed force or is still there."""
    forced = daemon.cleanup()
    leftovers = mounts_under(str(daemon.root)) + [f"pid {p}" for p in processes_mentioning(str(daemon.root))]
    assert not leftovers, f"left behind: {leftovers}"
    assert not forced, f"had to be removed by force: {forced}\n{daemon.log[-4000:]}"
    assert "Traceback" not in daemon.log, daemon.log  # an unexpected exception in the daemon is a bug


@pytest.fixture
def make_daemon(daemon_root: Path):
    """Factory: `make_daemon(*extra_args, env=None, start=True)` → a LocalDaemon under the test's root."""
    daemons: list[LocalDaemon] = []

    def factory(*extra_args: str, env: dict[str, str] | None = None, start: bool = True) -> LocalDaemon:
        assert not daemons, "one daemon per test root"
        daemon = LocalDaemon(daemon_root, extra_args=extra_args, env=env)
        daemons.append(daemon)
        return daemon.start() if start else daemon

    try:
        yield factory
    finally:
        for daemon in daemons:
            finish(daemon)


@pytest.fixture
def daemon(make_daemon) -> LocalDaemon:
    return make_daemon()


@pytest.fixture
def kubelet(daemon_root: Path) -> Kubelet:
    return Kubelet(daemon_root)
