"""`ossmount daemon`: the shared-mount daemon a CSI node plugin (or anything else) calls per volume.

It serves the API on a unix socket, runs one `ossmount` FUSE process per volume at a global path and
bind-mounts that onto every target. SIGTERM/SIGINT stop the API only: FUSE processes and mounts stay, and
the next start adopts them.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shlex
import signal
import socket

import trio

from ossmount.daemon.decisions import RestartPolicy
from ossmount.daemon.manager import DaemonConfig, VolumeManager
from ossmount.daemon.recovery import probe_loop, reconcile
from ossmount.daemon.server import ApiServer, open_unix_listener
from ossmount.errors import ArgumentParser, ConfigError, UsageError, single_quiet_error
from ossmount.logsafety import setup_logging

log = logging.getLogger("ossmount.daemon")

DEFAULT_SOCKET = "/run/ossmount/ossmountd.sock"
DEFAULT_RUN_DIR = "/run/ossmount"


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ossmount daemon", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--socket", default=DEFAULT_SOCKET, help=f"API socket (default {DEFAULT_SOCKET})")
    add("--socket-mode", default="0600", type=lambda t: int(t, 8), help="socket permissions, octal (default 0600)")
    add("--run-dir", default=DEFAULT_RUN_DIR, help=f"state, credentials and logs (default {DEFAULT_RUN_DIR}; tmpfs)")
    add("--mnt-dir", default=None, help="where default global mounts go (default RUN_DIR/mnt)")
    add("--allowed-target-prefix", action="append", default=[], metavar="PREFIX",
        help="target and global paths must lie under one of these (repeatable), e.g. /var/lib/kubelet")
    add("--allow-uid", action="append", default=[], type=int, metavar="UID",
        help="uids besides root that may call the API (repeatable; the socket mode must let them connect)")
    add("--metrics-listen", default=None, metavar="HOST:PORT", help="also serve /metrics on this TCP address")
    add("--health-interval", type=_positive(float), default=10.0, help="seconds between liveness probes (10)")
    add("--probe-timeout", type=_positive(float), default=5.0, help="seconds a statvfs probe may take (5)")
    add("--wedge-threshold", type=_positive(int), default=3,
        help="probe timeouts in a row after which the FUSE process is killed as wedged (3)")
    add("--restart-backoff", type=_positive(float), default=1.0, help="first restart delay in seconds (1)")
    add("--restart-backoff-max", type=_positive(float), default=30.0, help="longest restart delay (30)")
    add("--max-restarts", type=_positive(int), default=5, help="restarts per --restart-window before giving up (5)")
    add("--restart-window", type=_positive(float), default=600.0, help="seconds (600)")
    add("--lock-timeout", type=_positive(float), default=60.0,
        help="seconds an operation waits for its volume's lock before ABORTED (60)")
    add("--status-interval", type=_positive(float), default=5.0,
        help="seconds between status file updates of the FUSE processes (5)")
    add("--cleanup-orphans", action="store_true",
        help="at start, also unmount live fuse.ossmount mounts under --mnt-dir that no volume owns")
    add("--ossmount-command", default=None, metavar="COMMAND",
        help="command that runs ossmount (default: this interpreter with -m ossmount)")
    add("--log-file", default=None, help="log there (rotated at 10 MiB) instead of stderr")
    add("-d", "--debug", action="store_true", help="log at debug level")
    return parser


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    command = tuple(shlex.split(args.ossmount_command)) if args.ossmount_command else None
    for prefix in args.allowed_target_prefix:
        if not prefix.startswith("/"):
            raise UsageError(f"--allowed-target-prefix {prefix!r} must be an absolute path")
    if "," in args.run_dir:
        raise UsageError("--run-dir must not contain a comma (it becomes part of a mount option)")
    policy = RestartPolicy(initial=args.restart_backoff, maximum=args.restart_backoff_max,
                           max_restarts=args.max_restarts, window=args.restart_window)
    values = dict(run_dir=os.path.abspath(args.run_dir), allowed_prefixes=tuple(
        os.path.normpath(p) for p in args.allowed_target_prefix), health_interval=args.health_interval,
        probe_timeout=args.probe_timeout, wedge_threshold=args.wedge_threshold, restart_policy=policy,
        lock_timeout=args.lock_timeout, status_interval=args.status_interval, cleanup_orphans=args.cleanup_orphans)
    if args.mnt_dir:
        values["mnt_dir"] = os.path.abspath(args.mnt_dir)
    if command:
        values["ossmount_command"] = command
    return DaemonConfig(**values)


def notify_systemd(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)


async def run_daemon(config: DaemonConfig, *, socket_path: str, socket_mode: int, allowed_uids: set[int],
                     metrics_listen: str | None) -> None:
    """Serve until SIGTERM/SIGINT; FUSE processes and mounts are left running."""
    listener = await open_unix_listener(socket_path, socket_mode)
    socket_inode = os.stat(socket_path).st_ino
    try:
        async with trio.open_nursery() as root:

            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("%s: stopping the API; FUSE processes and mounts stay", signal.Signals(signum).name)
                        root.cancel_scope.cancel()
                        return

            root.start_soon(stop_on_signal)
            manager = VolumeManager(config, root)
            server = ApiServer(manager, allowed_uids=allowed_uids)
            root.start_soon(functools.partial(trio.serve_listeners, server.handle_unix, [listener],
                                              handler_nursery=root))
            if metrics_listen:
                host, _, port = metrics_listen.rpartition(":")
                tcp = await trio.open_tcp_listeners(int(port), host=host or None)
                root.start_soon(functools.partial(trio.serve_listeners, server.handle_metrics, tcp,
                                                  handler_nursery=root))
            log.info("ossmount daemon listening on %s (run dir %s); reconciling", socket_path, config.run_dir)
            await reconcile(manager)
            manager.ready = True
            root.start_soon(probe_loop, manager)
            log.info("ready: %d volume(s)", len(manager.volumes))
            notify_systemd("READY=1")
    finally:
        try:
            if os.stat(socket_path).st_ino == socket_inode:
                os.unlink(socket_path)
        except OSError:
            pass


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, logging.INFO, log_file=args.log_file)
    config = config_from_args(args)
    if os.geteuid() != 0:
        raise ConfigError("ossmount daemon must run as root: it mounts and bind-mounts")
    if args.metrics_listen and not args.metrics_listen.rpartition(":")[2].isdigit():
        raise UsageError(f"--metrics-listen {args.metrics_listen!r} must be HOST:PORT")
    try:
        trio.run(functools.partial(run_daemon, config, socket_path=os.path.abspath(args.socket),
                                   socket_mode=args.socket_mode, allowed_uids=set(args.allow_uid),
                                   metrics_listen=args.metrics_listen))
    except BaseExceptionGroup as group:
        raise single_quiet_error(group) from None
    return 0
