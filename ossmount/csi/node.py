"""The CSI Identity and Node services: thin glue from gRPC requests to the shared-mount daemon.

Each Node RPC validates its request (`ossmount.csi.validation`), makes one daemon call
(csi-daemon.md §5.13) and answers; the daemon does the mounting, the idempotency and the per-volume
serialisation. Daemon errors become the gRPC status of the same name (`errors.status_for_daemon_code`).
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Any

import grpc

from ossmount import __version__
from ossmount.csi import csi_pb2 as pb
from ossmount.csi import csi_pb2_grpc as pb_grpc
from ossmount.csi import validation
from ossmount.daemon.client import DaemonClient, DaemonClientError
from ossmount.csi.errors import CsiError, rpc_method, status_for_daemon_code

log = logging.getLogger("ossmount.csi")

DEFAULT_DRIVER_NAME = "csi.ossmount.io"
# The daemon's own operations are bounded by this (kubelet's per-call timeout is 2 minutes).
DAEMON_OPERATION_TIMEOUT = 90.0
# A statvfs on a wedged FUSE mount blocks; the stats RPC waits this long, then reports the volume abnormal.
STATVFS_TIMEOUT = 5.0

NODE_CAPABILITIES = (
    pb.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME,
    pb.NodeServiceCapability.RPC.GET_VOLUME_STATS,
    pb.NodeServiceCapability.RPC.VOLUME_CONDITION,
)


def daemon_failure(error: DaemonClientError, what: str) -> CsiError:
    """The CsiError for a failed daemon call: the daemon's code 1:1, its message, and where its log is."""
    where = f" (log: {error.log_path})" if error.log_path else ""
    return CsiError(status_for_daemon_code(error.code), f"{what}: {error.message}{where}")


@dataclass(frozen=True)
class PluginInfo:
    name: str = DEFAULT_DRIVER_NAME
    controller: bool = False


class IdentityService(pb_grpc.IdentityServicer):
    """GetPluginInfo, GetPluginCapabilities, Probe (ready iff the daemon's /v1/health is 200, when this
    process serves the Node service; a controller-only process is ready once it serves)."""

    def __init__(self, info: PluginInfo, daemon: DaemonClient | None):
        self.info = info
        self.daemon = daemon

    @rpc_method
    def GetPluginInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetPluginInfoResponse(name=self.info.name, vendor_version=__version__)

    @rpc_method
    def GetPluginCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        capabilities = []
        if self.info.controller:
            capabilities.append(pb.PluginCapability(service=pb.PluginCapability.Service(
                type=pb.PluginCapability.Service.CONTROLLER_SERVICE)))
        return pb.GetPluginCapabilitiesResponse(capabilities=capabilities)

    @rpc_method
    def Probe(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self.daemon is None:
            return pb.ProbeResponse(ready={"value": True})
        try:
            self.daemon.health()
        except DaemonClientError as error:
            log.info("Probe: daemon not ready: %s", error)
            return pb.ProbeResponse(ready={"value": False})
        return pb.ProbeResponse(ready={"value": True})


class StatvfsProber:
    """statvfs(path) in a worker thread with a timeout, at most one probe in flight per path.

    A statvfs on a wedged FUSE server blocks in the kernel and its thread cannot be cancelled; the kubelet
    asks for volume stats every minute, so a second probe of a path whose first one still hangs is not
    started (it would only add a stuck thread) and the answer is "did not answer" straight away.
    """

    def __init__(self, timeout: float = STATVFS_TIMEOUT):
        self.timeout = timeout
        self._lock = threading.Lock()
        self._in_flight: dict[str, threading.Thread] = {}

    def probe(self, path: str) -> os.statvfs_result | OSError | None:
        """The statvfs result, the OSError it raised, or None if it did not return within the timeout."""
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(os.statvfs(path))
            except OSError as error:
                outcome.append(error)
            finally:
                with self._lock:
                    if self._in_flight.get(path) is threading.current_thread():
                        del self._in_flight[path]

        with self._lock:
            if path in self._in_flight:
                return None
            thread = threading.Thread(target=run, name="statvfs-probe", daemon=True)
            self._in_flight[path] = thread
            thread.start()
        thread.join(self.timeout)
        return outcome[0] if outcome else None


def volume_paths(volume: dict[str, Any]) -> set[str]:
    """The paths a daemon volume object is reachable at: its global path and every target."""
    paths = {volume.get("global_path") or ""}
    for target in volume.get("targets") or []:
        paths.add(target.get("path", "") if isinstance(target, dict) else str(target))
    return {posixpath.normpath(p) for p in paths if p}


def volume_condition(volume: dict[str, Any]) -> tuple[bool, str]:
    """(abnormal, message) of a daemon volume object (csi-daemon.md §5.13): abnormal unless the state is
    `ready` and the backend is healthy."""
    state = volume.get("state", "")
    health = volume.get("health") or {}
    backend = health.get("backend") or {}
    backend_ok = backend.get("ok", True) is not False
    if state == "ready" and backend_ok:
        return False, "volume is mounted and its FUSE process and bucket answer"
    reason = (backend.get("last_error") if not backend_ok else None) or volume.get("last_error")
    if isinstance(reason, dict):
        reason = reason.get("message") or reason.get("code")
    detail = f": {reason}" if reason else ""
    if not backend_ok:
        return True, f"the bucket is failing ({state}){detail}"
    return True, f"volume is {state or 'in an unknown state'}{detail}"


class NodeService(pb_grpc.NodeServicer):
    """The Node service over the daemon (csi-daemon.md §5.13)."""

    def __init__(self, node_id: str, daemon: DaemonClient):
        self.node_id = node_id
        self.daemon = daemon
        self.prober = StatvfsProber()

    @rpc_method
    def NodeGetCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.NodeGetCapabilitiesResponse(capabilities=[
            pb.NodeServiceCapability(rpc=pb.NodeServiceCapability.RPC(type=kind)) for kind in NODE_CAPABILITIES])

    @rpc_method
    def NodeGetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.NodeGetInfoResponse(node_id=self.node_id)

    @rpc_method
    def NodeStageVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        call = validation.stage_call(request)
        if call is None:
            log.info("NodeStageVolume %s: no stage secret; mounting on the first NodePublishVolume",
                     request.volume_id)
            return pb.NodeStageVolumeResponse()
        try:
            self.daemon.stage(call.volume_id, call.spec.to_daemon(), call.credentials, global_path=call.global_path,
                              timeout_s=DAEMON_OPERATION_TIMEOUT)
        except DaemonClientError as error:
            raise daemon_failure(error, f"staging volume {call.volume_id}") from None
        log.info("NodeStageVolume %s: staged at %s", call.volume_id, call.global_path)
        return pb.NodeStageVolumeResponse()

    @rpc_method
    def NodeUnstageVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        volume_id, staging = validation.unstage_args(request)
        try:
            self.daemon.unstage(volume_id, global_path=staging)
        except DaemonClientError as error:
            raise daemon_failure(error, f"unstaging volume {volume_id}") from None
        log.info("NodeUnstageVolume %s: unstaged", volume_id)
        return pb.NodeUnstageVolumeResponse()

    @rpc_method
    def NodePublishVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        call = validation.publish_call(request)
        try:
            self.daemon.publish(call.volume_id, call.target_path, read_only=call.read_only, spec=call.spec.to_daemon(),
                                credentials=call.credentials, global_path=call.global_path, pod=call.pod or None,
                                timeout_s=DAEMON_OPERATION_TIMEOUT)
        except DaemonClientError as error:
            raise daemon_failure(error, f"publishing volume {call.volume_id} at {call.target_path}") from None
        log.info("NodePublishVolume %s: published at %s%s", call.volume_id, call.target_path,
                 " (read-only)" if call.read_only else "")
        return pb.NodePublishVolumeResponse()

    @rpc_method
    def NodeUnpublishVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        volume_id, target = validation.unpublish_args(request)
        try:
            self.daemon.unpublish(volume_id, target)
        except DaemonClientError as error:
            raise daemon_failure(error, f"unpublishing volume {volume_id} from {target}") from None
        # The CSI spec: NodeUnpublishVolume MUST delete the target it created. The daemon removes it; this
        # covers a target the daemon never recorded (a publish that failed after creating the directory).
        # rmdir never follows into a mount: on a mount point it fails with EBUSY and changes nothing.
        try:
            os.rmdir(target)
        except FileNotFoundError:
            pass
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EBUSY, errno.ENOTDIR):
                raise
            log.warning("NodeUnpublishVolume %s: left %s in place (%s)", volume_id, target, error.strerror)
        log.info("NodeUnpublishVolume %s: unpublished %s", volume_id, target)
        return pb.NodeUnpublishVolumeResponse()

    @rpc_method
    def NodeGetVolumeStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        volume_id, path = validation.volume_stats_args(request)
        try:
            volume = self.daemon.volume(volume_id)
        except DaemonClientError as error:
            if error.code != "NOT_FOUND":
                raise daemon_failure(error, f"reading the state of volume {volume_id}") from None
            volume = None
        if volume is None:
            raise CsiError(grpc.StatusCode.NOT_FOUND, f"NodeGetVolumeStats: volume {volume_id} is not "
                           "mounted on this node")
        if path not in volume_paths(volume):
            raise CsiError(grpc.StatusCode.NOT_FOUND, f"NodeGetVolumeStats: volume {volume_id} is not "
                           f"published at {path}")
        abnormal, message = volume_condition(volume)
        usage = []
        result = self.prober.probe(path)
        if isinstance(result, os.statvfs_result):
            usage = [
                pb.VolumeUsage(unit=pb.VolumeUsage.BYTES, total=result.f_blocks * result.f_frsize,
                               available=result.f_bavail * result.f_frsize,
                               used=(result.f_blocks - result.f_bfree) * result.f_frsize),
                pb.VolumeUsage(unit=pb.VolumeUsage.INODES, total=result.f_files, available=result.f_favail,
                               used=result.f_files - result.f_ffree),
            ]
        elif not abnormal:
            abnormal = True
            message = (f"statvfs({path}) failed: {result.strerror}" if isinstance(result, OSError)
                       else f"statvfs({path}) did not answer within {STATVFS_TIMEOUT:.0f} s (FUSE server wedged)")
        return pb.NodeGetVolumeStatsResponse(
            usage=usage, volume_condition=pb.VolumeCondition(abnormal=abnormal, message=message))
