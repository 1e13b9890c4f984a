"""The Node service end to end: a gRPC client playing the kubelet, the real `ossmount csi`, the real
`ossmount daemon` and real FUSE mounts of the local OSS server (csi-daemon.md §5.14, §6.5).

The kubelet's layout is faked under a temporary directory: the staging path
`plugins/kubernetes.io/csi/<driver>/<sha256(volume)>/globalmount` (created, as the kubelet does) and target
paths `pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount` (only their parents are created). Every test
leaves nothing mounted: teardown unstages with force, lazily unmounts whatever is still mounted under the
temporary root, and stops the daemon and the driver.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from ossmount.csi import csi_pb2 as pb
from ossmount.daemon.mountinfo import MountTable
from ossmount.daemon.system import unmount
from ossmount.testing import LocalDaemon, LocalServer, mounts_under, wait_for
from tests.csi.conftest import AccessMode, CsiDriver, mount_capability, rpc_error

if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    pytest.skip("end-to-end CSI tests mount: they need root, /dev/fuse and fusermount3", allow_module_level=True)

DRIVER = "csi.ossmount.io"
START_TIMEOUT = 20.0


def mountpoints() -> list[tuple[str, str, str]]:
    """(mount point, fstype, major:minor) of every mount, from mountinfo (never stat: it can hang on dead FUSE)."""
    return [(entry.mount_point, entry.fstype, entry.dev) for entry in MountTable.read().entries]


def mounted_under(root: Path) -> list[str]:
    return mounts_under(str(root))


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
def node(local_server: LocalServer, fresh_bucket_name: str) -> Iterator[Kubelet]:
    root = Path(tempfile.mkdtemp(prefix="csi-", dir="/tmp"))  # short: the daemon's socket path is limited
    kubelet_root = root / "kubelet"
    kubelet_root.mkdir()
    daemon = LocalDaemon(root)  # targets and staging paths must lie under its root
    driver = CsiDriver(root / "csi", controller=False, daemon_socket=daemon.socket_path)
    try:
        daemon.start()
        driver.start()
        kubelet = Kubelet(driver, kubelet_root, local_server, fresh_bucket_name)
        kubelet.daemon = daemon  # type: ignore[attr-defined]
        yield kubelet
    finally:
        driver.stop()
        daemon.cleanup()
        for path in mounts_under(str(root)):
            unmount(path, detach=True)
        shutil.rmtree(root, ignore_errors=True)


def fuse_pid(kubelet: Kubelet, volume_id: str) -> int:
    return kubelet.daemon.client.volume(volume_id)["process"]["pid"]  # type: ignore[attr-defined]


def test_lifecycle_is_idempotent_and_leaves_nothing(node: Kubelet):
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
    assert secret not in str(daemon.client.volumes())
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
    assert mounted_under(node.root) == []
    assert wait_for(lambda: os.path.exists(f"/proc/{pid}"), lambda alive: not alive, timeout=30) is False


def test_publish_secret_only_mounts_on_first_publish(node: Kubelet):
    """Alibaba's PVs carry nodePublishSecretRef only: NodeStage has no secrets and records nothing."""
    volume = "pv-publish-secret"
    node.stage(volume, secrets={})
    assert mounted_under(node.root) == []
    target = node.new_target(volume)
    node.publish(volume, target)
    assert str(target) in mounted_under(node.root)
    node.unpublish(volume, target)
    node.unstage(volume)
    assert mounted_under(node.root) == []


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
        unmount(str(target), detach=True)
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


def test_bad_credentials_are_unauthenticated_and_leave_no_secret(node: Kubelet):
    volume = "pv-badkey"
    wrong = "wrong-secret-" + uuid.uuid4().hex
    target = node.new_target(volume)
    error = rpc_error(node.publish, volume, target, secrets={"akId": node.server.access_key_id, "akSecret": wrong})
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "SignatureDoesNotMatch" in error.details() and wrong not in error.details()
    assert mounted_under(node.root) == []
    for path in (node.driver.log_path, node.daemon.log_path):  # type: ignore[attr-defined]
        assert wrong not in path.read_text(errors="replace")
    for path in node.daemon.run_dir.rglob("*"):  # type: ignore[attr-defined]
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

    def condition():
        _quietly(lambda: os.listdir(target))  # let the FUSE process meet the bucket's state, as a pod would
        return node.stats(volume, target).volume_condition

    bucket.delete_bucket()
    try:
        failing = wait_for(condition, lambda c: c.abnormal, timeout=30)
        assert failing.abnormal and "NoSuchBucket" in failing.message, failing
    finally:
        bucket.create_bucket()
    healed = wait_for(condition, lambda c: not c.abnormal, timeout=30)
    assert not healed.abnormal, healed.message
    node.unpublish(volume, target)
    node.unstage(volume)


def _quietly(probe):
    try:
        return probe()
    except OSError:
        return None
