"""The Node service end to end: a gRPC client playing the kubelet, the real `ossmount csi`, the real
`ossmount daemon` and real FUSE mounts of the local OSS server (csi-daemon.md §5.14, §6.5).

The kubelet's layout is faked under a temporary directory: the staging path
`plugins/kubernetes.io/csi/<driver>/<sha256(volume)>/globalmount` (created, as the kubelet does) and target
paths `pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount` (only their parents are created). Every test
leaves nothing mounted: teardown unstages with force, lazily unmounts whatever is still mounted under the
temporary root, and stops the daemon and the driver.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from ossmount.csi import csi_pb2 as pb
from ossmount.csi.daemon_client import DaemonError, HttpDaemon
from ossmount.testing import LocalServer, wait_for
from tests.csi.conftest import AccessMode, CsiDriver, mount_capability, rpc_error

if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    pytest.skip("end-to-end CSI tests mount: they need root, /dev/fuse and fusermount3", allow_module_level=True)
pytest.importorskip("ossmount.daemon.server", reason="the shared-mount daemon (issue 8) is not in this tree")

DRIVER = "csi.ossmount.io"
START_TIMEOUT = 20.0
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def mountpoints() -> list[tuple[str, str, str]]:
    """(mount point, fstype, major:minor) of every mount, from mountinfo (never stat: it can hang on dead FUSE)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split(" ")
            separator = fields.index("-")
            path = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            found.append((path, fields[separator + 1], fields[2]))
    return found


def mounted_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    return [path for path, _, _ in mountpoints() if path.startswith(prefix)]


def lazy_unmount(path: str) -> None:
    _libc.umount2(os.fsencode(path), MNT_DETACH)


class Daemon:
    """`python -m ossmount daemon` on sockets and directories under `root`."""

    def __init__(self, root: Path, kubelet: Path):
        self.root = root
        self.socket = root / "ossmountd.sock"
        self.run_dir = root / "run"
        self.log_path = root / "daemon.log"
        self.kubelet = kubelet
        self.process: subprocess.Popen[bytes] | None = None
        self.client = HttpDaemon(str(self.socket), timeout=60)

    def start(self) -> "Daemon":
        argv = [sys.executable, "-m", "ossmount", "daemon", "--socket", str(self.socket), "--run-dir",
                str(self.run_dir), "--mnt-dir", str(self.root / "mnt"), "--allowed-target-prefix",
                str(self.kubelet), "--health-interval", "0.5", "--status-interval", "0.5",
                "--restart-backoff", "0.5"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def healthy() -> bool:
            try:
                self.client.health()
                return True
            except DaemonError:
                return False

        assert wait_for(healthy, bool, timeout=START_TIMEOUT), f"daemon did not start\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Kubelet:
    """Issues the kubelet's CSI calls for volumes of one bucket, over gRPC against the driver."""

    def __init__(self, driver: CsiDriver, root: Path, server: LocalServer, bucket: str):
        self.driver = driver
        self.root = root
        self.server = server
        self.bucket = bucket
        self.secrets = {"akId": server.access_key_id, "akSecret": server.access_key_secret}

    def attributes(self, **extra: str) -> dict[str, str]:
        return {"bucket": self.bucket, "url": self.server.endpoint, "path": "/", "otherOpts": "-o allow_other", **extra}

    def staging(self, volume_id: str) -> Path:
        path = (self.root / "plugins/kubernetes.io/csi" / DRIVER / hashlib.sha256(volume_id.encode()).hexdigest()
                / "globalmount")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_target(self, pv: str) -> Path:
        target = self.root / "pods" / str(uuid.uuid4()) / "volumes/kubernetes.io~csi" / pv / "mount"
        target.parent.mkdir(parents=True)
        return target

    def stage(self, volume_id: str, *, secrets: dict[str, str] | None = None, **attributes: str) -> None:
        self.driver.node.NodeStageVolume(pb.NodeStageVolumeRequest(
            volume_id=volume_id, staging_target_path=str(self.staging(volume_id)),
            volume_capability=mount_capability(), volume_context=self.attributes(**attributes),
            secrets=self.secrets if secrets is None else secrets), timeout=120)

    def publish(self, volume_id: str, target: Path, *, readonly: bool = False, secrets: dict[str, str] | None = None,
                mode: int = AccessMode.MULTI_NODE_MULTI_WRITER, **attributes: str) -> None:
        self.driver.node.NodePublishVolume(pb.NodePublishVolumeRequest(
            volume_id=volume_id, staging_target_path=str(self.staging(volume_id)), target_path=str(target),
            volume_capability=mount_capability(mode), readonly=readonly, volume_context=self.attributes(**attributes),
            secrets=self.secrets if secrets is None else secrets), timeout=120)

    def unpublish(self, volume_id: str, target: Path) -> None:
        self.driver.node.NodeUnpublishVolume(pb.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target)),
                                             timeout=120)

    def unstage(self, volume_id: str) -> None:
        self.driver.node.NodeUnstageVolume(pb.NodeUnstageVolumeRequest(
            volume_id=volume_id, staging_target_path=str(self.staging(volume_id))), timeout=120)

    def stats(self, volume_id: str, path: Path) -> pb.NodeGetVolumeStatsResponse:
        return self.driver.node.NodeGetVolumeStats(pb.NodeGetVolumeStatsRequest(
            volume_id=volume_id, volume_path=str(path)), timeout=30)


@pytest.fixture
def node(tmp_path: Path, local_server: LocalServer, fresh_bucket_name: str) -> Iterator[Kubelet]:
    kubelet_root = tmp_path / "kubelet"
    kubelet_root.mkdir()
    daemon = Daemon(tmp_path / "daemon", kubelet_root)
    daemon.root.mkdir()
    driver = CsiDriver(tmp_path / "csi", controller=False, daemon_socket=daemon.socket)
    pids: set[int] = set()
    try:
        daemon.start()
        driver.start()
        kubelet = Kubelet(driver, kubelet_root, local_server, fresh_bucket_name)
        kubelet.daemon = daemon  # type: ignore[attr-defined]
        yield kubelet
    finally:
        try:
            for volume in daemon.client._call("GET", "/v1/volumes")[1].get("volumes", []):
                pid = (volume.get("process") or {}).get("pid")
                if pid:
                    pids.add(pid)
                daemon.client.unstage(volume["volume_id"], force=True)
        except DaemonError:
            pass
        driver.stop()
        daemon.stop()
        for path in sorted(mounted_under(tmp_path), key=len, reverse=True):
            lazy_unmount(path)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def fuse_pid(kubelet: Kubelet, volume_id: str) -> int:
    volume = kubelet.daemon.client.volume(volume_id)  # type: ignore[attr-defined]
    assert volume is not None
    return volume["process"]["pid"]


def test_lifecycle_is_idempotent_and_leaves_nothing(node: Kubelet, tmp_path: Path):
    """§6.5 lifecycle and idempotency: 10× stage, 10× publish, 2× unpublish, 2× unstage; two targets share one
    FUSE process; NodeUnpublish removes the target directory; nothing stays mounted."""
    volume = "pv-lifecycle"
    for _ in range(10):
        node.stage(volume)
    first, second = node.new_target(volume), node.new_target(volume)
    for _ in range(10):
        node.publish(volume, first)
    node.publish(volume, second)
    pid = fuse_pid(node, volume)
    secret = node.secrets["akSecret"]
    daemon = node.daemon  # type: ignore[attr-defined]
    assert secret not in str(daemon.client._call("GET", "/v1/volumes")[1])
    for path in [*(daemon.run_dir / "state").glob("*.json"), daemon.log_path, node.driver.log_path]:
        assert secret not in path.read_text(errors="replace"), path
    (first / "hello.txt").write_text("written through the first target")
    assert (second / "hello.txt").read_text() == "written through the first target"
    devices = {dev for path, fstype, dev in mountpoints() if path in (str(first), str(second))}
    assert len(devices) == 1
    for target in (first, second):
        node.unpublish(volume, target)
        node.unpublish(volume, target)
        assert not target.exists()
    node.unstage(volume)
    node.unstage(volume)
    assert mounted_under(tmp_path / "kubelet") == []
    assert wait_for(lambda: os.path.exists(f"/proc/{pid}"), lambda alive: not alive, timeout=30) is False


def test_publish_secret_only_mounts_on_first_publish(node: Kubelet, tmp_path: Path):
    """Alibaba's PVs carry nodePublishSecretRef only: NodeStage has no secrets and records nothing."""
    volume = "pv-publish-secret"
    node.stage(volume, secrets={})
    assert mounted_under(tmp_path / "kubelet") == []
    target = node.new_target(volume)
    node.publish(volume, target)
    assert str(target) in mounted_under(tmp_path / "kubelet")
    node.unpublish(volume, target)
    node.unstage(volume)
    assert mounted_under(tmp_path / "kubelet") == []


def test_readonly_target_and_a_changed_readonly_is_already_exists(node: Kubelet):
    volume = "pv-readonly"
    node.stage(volume)
    writable, readonly = node.new_target(volume), node.new_target(volume)
    node.publish(volume, writable)
    node.publish(volume, readonly, readonly=True)
    with pytest.raises(OSError) as caught:
        (readonly / "nope.txt").write_text("x")
    assert caught.value.errno == errno.EROFS
    (writable / "yes.txt").write_text("ok")
    error = rpc_error(node.publish, volume, readonly, readonly=False)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    node.publish(volume, readonly, readonly=True)
    for target in (writable, readonly):
        node.unpublish(volume, target)
    node.unstage(volume)


def test_foreign_mount_at_target_is_failed_precondition_and_untouched(node: Kubelet):
    volume = "pv-foreign"
    node.stage(volume)
    target = node.new_target(volume)
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        (target / "precious").write_text("not yours")
        error = rpc_error(node.publish, volume, target)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "tmpfs" in error.details()
        assert (target / "precious").read_text() == "not yours"
        assert [fstype for path, fstype, _ in mountpoints() if path == str(target)] == ["tmpfs"]
    finally:
        lazy_unmount(str(target))
    node.unstage(volume)


def test_volume_stats_and_condition_follow_the_fuse_process(node: Kubelet):
    """NodeGetVolumeStats: NOT_FOUND for unknown volumes and wrong paths; abnormal when the volume's FUSE
    process is killed, normal again once the daemon has restarted it and re-bound the target."""
    volume = "pv-stats"
    node.stage(volume)
    target = node.new_target(volume)
    node.publish(volume, target)
    stats = node.stats(volume, target)
    assert not stats.volume_condition.abnormal
    assert {u.unit for u in stats.usage} == {pb.VolumeUsage.BYTES, pb.VolumeUsage.INODES}
    assert rpc_error(node.stats, "pv-unknown", target).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(node.stats, volume, target.parent).code() == grpc.StatusCode.NOT_FOUND
    old_pid = fuse_pid(node, volume)
    os.kill(old_pid, signal.SIGKILL)
    abnormal = wait_for(lambda: node.stats(volume, target).volume_condition, lambda c: c.abnormal,
                        timeout=10, interval=0.02)
    assert abnormal.abnormal and abnormal.message
    healed = wait_for(lambda: node.stats(volume, target).volume_condition, lambda c: not c.abnormal, timeout=60)
    assert not healed.abnormal, healed.message
    assert fuse_pid(node, volume) != old_pid
    (target / "after-restart.txt").write_text("new opens work again")
    node.unpublish(volume, target)
    node.unstage(volume)


def test_bad_credentials_are_unauthenticated_and_leave_no_secret(node: Kubelet, tmp_path: Path):
    volume = "pv-badkey"
    wrong = "wrong-secret-" + uuid.uuid4().hex
    target = node.new_target(volume)
    error = rpc_error(node.publish, volume, target, secrets={"akId": node.server.access_key_id, "akSecret": wrong})
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "SignatureDoesNotMatch" in error.details() and wrong not in error.details()
    assert mounted_under(tmp_path / "kubelet") == []
    for path in (tmp_path / "csi" / "csi.log", tmp_path / "daemon" / "daemon.log"):
        assert wrong not in path.read_text(errors="replace")
    for path in (tmp_path / "daemon" / "run").rglob("*"):
        if path.is_file():
            assert wrong.encode() not in path.read_bytes(), path


def test_a_driver_crash_leaves_mounts_alone(node: Kubelet):
    """The node plugin holds no mounts: kill -9 it, and the pod's target keeps working; the restarted plugin
    unpublishes and unstages as usual."""
    volume = "pv-driver-crash"
    node.stage(volume)
    target = node.new_target(volume)
    node.publish(volume, target)
    pid = fuse_pid(node, volume)
    node.driver.restart_after_crash()
    (target / "still-here.txt").write_text("the mount outlived the driver")
    node.publish(volume, target)  # the kubelet's retry after the crash: a no-op
    assert fuse_pid(node, volume) == pid
    node.unpublish(volume, target)
    node.unstage(volume)
    assert not target.exists()


def test_volume_condition_reports_a_failing_bucket(node: Kubelet, local_server: LocalServer):
    """The bucket is deleted under a mounted volume: NodeGetVolumeStats turns abnormal naming NoSuchBucket;
    once the bucket is back and answers again, the condition is normal again."""
    volume = "pv-bucket-gone"
    node.stage(volume)
    target = node.new_target(volume)
    node.publish(volume, target)
    assert not node.stats(volume, target).volume_condition.abnormal
    bucket = local_server.oss2_bucket(node.bucket)
    bucket.delete_bucket()
    try:
        def probe():
            os.listdir(target)  # let the FUSE process meet the error, as a pod would
            return node.stats(volume, target).volume_condition

        condition = wait_for(lambda: _quietly(probe), lambda c: c is not None and c.abnormal, timeout=30)
        assert condition.abnormal and "NoSuchBucket" in condition.message
    finally:
        bucket.create_bucket()
    healed = wait_for(lambda: _quietly(lambda: (os.listdir(target), node.stats(volume, target).volume_condition)[1]),
                      lambda c: c is not None and not c.abnormal, timeout=30)
    assert healed is not None and not healed.abnormal, healed
    node.unpublish(volume, target)
    node.unstage(volume)


def _quietly(probe):
    try:
        return probe()
    except OSError:
        return None
