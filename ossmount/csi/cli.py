"""`ossmount csi`: serve the CSI Identity, Node and/or Controller services on a unix socket.

    ossmount csi --endpoint unix:///csi/csi.sock --node-id NODE [--daemon-socket /run/ossmount/ossmountd.sock]
    ossmount csi --endpoint unix:///csi/csi.sock --controller [--state-dir /var/lib/ossmount-csi]

With `--node-id` (or $KUBE_NODE_NAME) the Node service runs and talks to the daemon; with `--controller`
the Controller service runs over its records in `--state-dir`; both may run in one process. Identity
always runs. Once the socket is bound it prints one line, `ossmount csi: serving on unix://PATH`. SIGTERM
or SIGINT stops serving (in-flight calls get 5 s); mounts are the daemon's and are never touched.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures

from ossmount.errors import ConfigError, UsageError
from ossmount.logsafety import setup_logging

log = logging.getLogger("ossmount.csi")

GRACE_SECONDS = 5.0
MAX_WORKERS = 16


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from ossmount.daemon.client import DEFAULT_SOCKET
    from ossmount.csi.node import DEFAULT_DRIVER_NAME
    from ossmount.csi.records import DEFAULT_STATE_DIR

    parser = _ArgumentParser(prog="ossmount csi", description="Serve the ossmount CSI driver.")
    parser.add_argument("--endpoint", required=True, metavar="unix:///PATH",
                        help="the gRPC endpoint (a unix socket), e.g. unix:///csi/csi.sock")
    parser.add_argument("--node-id", default=os.environ.get("KUBE_NODE_NAME", ""),
                        help="serve the Node service as this node (default $KUBE_NODE_NAME)")
    parser.add_argument("--daemon-socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"the ossmount daemon's socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--controller", action="store_true", help="serve the Controller service")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                        help=f"where the controller keeps its volume records (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--driver-name", default=DEFAULT_DRIVER_NAME,
                        help=f"the CSI driver name (default {DEFAULT_DRIVER_NAME})")
    parser.add_argument("-d", "--debug", action="store_true", help="log at debug level")
    return parser


def socket_path(endpoint: str) -> str:
    """`unix:///abs/path` (or `unix:/abs/path`, or a bare absolute path) → the path; UsageError otherwise."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://"):]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:"):]
    else:
        path = endpoint
    if not path.startswith("/"):
        raise UsageError(f"--endpoint must be unix:///ABSOLUTE/PATH, not {endpoint!r}")
    return path


def _check_driver_name(name: str) -> str:
    import re

    if len(name) > 63 or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", name):
        raise UsageError(f"--driver-name {name!r} must be a DNS-like name of at most 63 characters "
                         "(CSI spec, GetPluginInfo)")
    return name


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, logging.INFO)
    path = socket_path(args.endpoint)
    name = _check_driver_name(args.driver_name)
    if not args.node_id and not args.controller:
        raise UsageError("nothing to serve: give --node-id NODE (Node service) and/or --controller")

    import grpc

    from ossmount.csi import csi_pb2_grpc as pb_grpc
    from ossmount.csi.controller import ControllerService
    from ossmount.daemon.client import DaemonClient
    from ossmount.csi.node import IdentityService, NodeService, PluginInfo
    from ossmount.csi.records import RecordStore

    daemon = DaemonClient(args.daemon_socket) if args.node_id else None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="csi"))
    pb_grpc.add_IdentityServicer_to_server(IdentityService(PluginInfo(name, args.controller), daemon), server)
    if daemon is not None:
        pb_grpc.add_NodeServicer_to_server(NodeService(args.node_id, daemon), server)
    if args.controller:
        try:
            records = RecordStore(args.state_dir).open()
        except OSError as error:
            raise ConfigError(f"--state-dir {args.state_dir}: {error.strerror or error}; the controller keeps "
                              "its volume records there and needs it writable") from None
        pb_grpc.add_ControllerServicer_to_server(ControllerService(records), server)

    try:
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        if os.path.exists(path) or os.path.islink(path):
            os.unlink(path)  # a stale socket of an earlier run
    except OSError as error:
        raise ConfigError(f"--endpoint {path}: {error.strerror}") from None
    try:
        server.add_insecure_port("unix://" + path)
    except RuntimeError as error:
        raise ConfigError(f"--endpoint {path}: cannot listen there ({error})") from None

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    os.chmod(path, 0o600)  # only root (the kubelet and the sidecars) may call the driver
    services = ["Identity"] + (["Node"] if daemon else []) + (["Controller"] if args.controller else [])
    log.info("%s %s: serving %s on unix://%s", name, "ossmount csi", ", ".join(services), path)
    print(f"ossmount csi: serving on unix://{path}", flush=True)
    stop.wait()
    server.stop(GRACE_SECONDS).wait()
    try:
        os.unlink(path)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
