"""CSI fixtures: the real `ossmount csi` process on a unix socket, and a gRPC client playing the kubelet and
the external-provisioner against it.

`CsiDriver` starts `python -m ossmount csi ...` (always stopped in `finally`), waits for its "serving on"
line, and can be killed with SIGKILL and restarted on the same socket and state directory, as a crashed
and rescheduled controller container would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import grpc
import pytest

from ossmount.csi import csi_pb2 as pb
from ossmount.csi import csi_pb2_grpc as pb_grpc
from ossmount.testing import LocalServer, die_with_parent, read_first_line, terminate

START_TIMEOUT = 20.0
SERVING_PREFIX = "ossmount csi: serving on "
AccessMode = pb.VolumeCapability.AccessMode.Mode


def mount_capability(mode: int = AccessMode.MULTI_NODE_MULTI_WRITER, *, fs_type: str = "",
                     flags: Sequence[str] = ()) -> pb.VolumeCapability:
    return pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
                               access_mode=pb.VolumeCapability.AccessMode(mode=mode))


def block_capability(mode: int = AccessMode.MULTI_NODE_MULTI_WRITER) -> pb.VolumeCapability:
    return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                               access_mode=pb.VolumeCapability.AccessMode(mode=mode))


class CsiDriver:
    """One `ossmount csi` subprocess serving `endpoint`, with stubs for every service."""

    def __init__(self, workdir: Path, *, node_id: str | None = "node-1", controller: bool = True,
                 daemon_socket: Path | None = None, env: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = ()):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "csi.sock"
        self.state_dir = workdir / "state"
        self.daemon_socket = daemon_socket or workdir / "no-daemon.sock"
        self.node_id = node_id
        self.controller = controller
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.log_path = workdir / "csi.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "ossmount", "csi", "--endpoint", f"unix://{self.socket}",
                "--daemon-socket", str(self.daemon_socket)]
        if self.node_id:
            argv += ["--node-id", self.node_id]
        if self.controller:
            argv += ["--controller", "--state-dir", str(self.state_dir)]
        return argv + self.extra_args

    def start(self) -> "CsiDriver":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OSS_", "KUBE_"))}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=log, env=env, preexec_fn=die_with_parent)
        line = self._first_line()
        assert line.startswith(SERVING_PREFIX), f"unexpected first line {line!r}\n{self.log()}"
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT)
        return self

    def _first_line(self) -> str:
        assert self.process is not None
        return read_first_line(self.process, "ossmount csi", START_TIMEOUT, self.log, AssertionError)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def identity(self) -> pb_grpc.IdentityStub:
        return pb_grpc.IdentityStub(self.channel)

    @property
    def node(self) -> pb_grpc.NodeStub:
        return pb_grpc.NodeStub(self.channel)

    @property
    def ctrl(self) -> pb_grpc.ControllerStub:
        return pb_grpc.ControllerStub(self.channel)

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def stop(self) -> int | None:
        """SIGTERM, wait 10 s, then SIGKILL; the exit status."""
        self._close_channel()
        process = self.process
        if process is None:
            return None
        terminate(process, 10)
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._close_channel()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def restart_after_crash(self) -> "CsiDriver":
        self.kill()
        return self.start()


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    """The grpc.RpcError `call(*args)` raises (fails the test if it succeeds)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{call} succeeded; an error was expected")


@pytest.fixture
def csi_driver(tmp_path: Path) -> Iterator[CsiDriver]:
    """`ossmount csi` with the Node service (no daemon running) and the Controller service."""
    driver = CsiDriver(tmp_path / "csi")
    try:
        yield driver.start()
    finally:
        driver.stop()


@pytest.fixture
def provisioner_secrets(local_server: LocalServer) -> dict[str, str]:
    """The Secret the StorageClass names as csi.storage.k8s.io/provisioner-secret-name."""
    return {"akId": local_server.access_key_id, "akSecret": local_server.access_key_secret}
