"""Identity and Node over gRPC (csi-daemon.md §6.5), as the kubelet calls them: the cases that are decided
before the daemon is reached, and what the driver says when the daemon is down.
(The lifecycle over real daemon mounts is tests/csi/test_node_daemon.py.)"""

from __future__ import annotations

import grpc
import pytest

from ossmount import __version__
from ossmount.csi import csi_pb2 as pb
from tests.csi.conftest import CsiDriver, block_capability, mount_capability, rpc_error

ATTRS = {"bucket": "data-bucket", "url": "http://127.0.0.1:9", "path": "/train"}
SECRET = "node-secret-value-abcdef012345"
STAGING = "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.ossmount.io/0123/globalmount"
TARGET = "/var/lib/kubelet/pods/0000/volumes/kubernetes.io~csi/pv-data/mount"


def test_identity(csi_driver):
    info = csi_driver.identity.GetPluginInfo(pb.GetPluginInfoRequest())
    assert info.name == "csi.ossmount.io" and info.vendor_version == __version__
    csi_driver.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest())


def test_probe_follows_the_daemon(csi_driver, tmp_path):
    # No daemon listens on the configured socket: not ready (the node-driver-registrar / liveness probe sees it).
    assert csi_driver.identity.Probe(pb.ProbeRequest()).ready.value is False
    controller_only = CsiDriver(tmp_path / "ctrl", node_id=None)
    try:
        controller_only.start()
        assert controller_only.identity.Probe(pb.ProbeRequest()).ready.value is True
        assert controller_only.ctrl.ControllerGetCapabilities(pb.ControllerGetCapabilitiesRequest()).capabilities
        error = rpc_error(controller_only.node.NodeGetInfo, pb.NodeGetInfoRequest())
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        controller_only.stop()


def test_node_capabilities_and_info(csi_driver):
    caps = csi_driver.node.NodeGetCapabilities(pb.NodeGetCapabilitiesRequest())
    assert {c.rpc.type for c in caps.capabilities} == {
        pb.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME, pb.NodeServiceCapability.RPC.GET_VOLUME_STATS,
        pb.NodeServiceCapability.RPC.VOLUME_CONDITION}
    assert csi_driver.node.NodeGetInfo(pb.NodeGetInfoRequest()).node_id == "node-1"


def _publish(**kwargs):
    request = dict(volume_id="pv-data", staging_target_path=STAGING, target_path=TARGET,
                   volume_capability=mount_capability(), volume_context=ATTRS, secrets={"akId": "id-1", "akSecret": SECRET})
    request.update(kwargs)
    return pb.NodePublishVolumeRequest(**{k: v for k, v in request.items() if v is not None})


@pytest.mark.parametrize("rpc, request_, code", [
    ("NodeStageVolume", pb.NodeStageVolumeRequest(staging_target_path=STAGING, volume_capability=mount_capability()),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeStageVolume", pb.NodeStageVolumeRequest(volume_id="v", volume_capability=mount_capability()),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeStageVolume", pb.NodeStageVolumeRequest(volume_id="v", staging_target_path=STAGING),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(staging_target_path=STAGING), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(volume_id="v"), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodePublishVolume", _publish(volume_id=""), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodePublishVolume", _publish(target_path=""), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodePublishVolume", _publish(volume_capability=None), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodePublishVolume", _publish(staging_target_path=""), grpc.StatusCode.FAILED_PRECONDITION),
    ("NodePublishVolume", _publish(volume_capability=block_capability()), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeUnpublishVolume", pb.NodeUnpublishVolumeRequest(target_path=TARGET), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeUnpublishVolume", pb.NodeUnpublishVolumeRequest(volume_id="v"), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeGetVolumeStats", pb.NodeGetVolumeStatsRequest(volume_path=TARGET), grpc.StatusCode.INVALID_ARGUMENT),
    ("NodeGetVolumeStats", pb.NodeGetVolumeStatsRequest(volume_id="v"), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_sanity_field_checks(csi_driver, rpc, request_, code):
    """The csi-sanity node cases of csi-daemon.md §6.5 that need no volume."""
    error = rpc_error(getattr(csi_driver.node, rpc), request_)
    assert error.code() == code
    assert error.details().startswith(rpc + ": ")


def test_daemon_down_is_unavailable_and_secrets_stay_out(csi_driver):
    error = rpc_error(csi_driver.node.NodePublishVolume, _publish())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert str(csi_driver.daemon_socket) in error.details()
    stage = pb.NodeStageVolumeRequest(volume_id="pv-data", staging_target_path=STAGING,
                                      volume_capability=mount_capability(), volume_context=ATTRS,
                                      secrets={"AccessKeyId": "id-1", "AccessKeySecret": SECRET, "SecurityToken": "tok-" + SECRET})
    assert rpc_error(csi_driver.node.NodeStageVolume, stage).code() == grpc.StatusCode.UNAVAILABLE
    # A malformed attribute that quotes the secret back: scrubbed from the status and the log.
    error = rpc_error(csi_driver.node.NodePublishVolume, _publish(volume_context={**ATTRS, "otherOpts": f"-o {SECRET}"}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert SECRET not in error.details() and "<redacted>" in error.details()
    assert SECRET not in csi_driver.log()
    # Without stage secrets NodeStage succeeds without the daemon: the mount waits for NodePublish (§5.13).
    stage.ClearField("secrets")
    csi_driver.node.NodeStageVolume(stage)


def test_sigterm_stops_serving_and_removes_the_socket(csi_driver):
    assert oct(csi_driver.socket.stat().st_mode & 0o777) == oct(0o600)
    assert csi_driver.stop() == 0
    assert not csi_driver.socket.exists()


@pytest.mark.parametrize("args, code, words", [
    ([], 2, "--endpoint"),
    (["--endpoint", "unix:///tmp/x.sock"], 2, "nothing to serve"),
    (["--endpoint", "tcp://127.0.0.1:9", "--controller"], 2, "unix:///"),
    (["--endpoint", "unix:///tmp/x.sock", "--controller", "--driver-name", "Bad_Name"], 2, "driver-name"),
    (["--endpoint", "unix:///tmp/x.sock", "--controller", "--state-dir", "/proc/version/state"], 3, "state-dir"),
])
def test_usage_errors_are_one_line(args, code, words):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ossmount", "csi", *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ossmount csi: ")
    assert words in result.stderr
