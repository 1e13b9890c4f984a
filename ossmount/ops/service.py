"""The operators' side of one running mount, as `ossmount.mount` starts it: the FUSE call accounting, the
control socket (`ossmount stats`), the metrics listener (metrics_listen=) and the log-level signals.

Lifetime: `start(nursery)` runs before the filesystem is mounted (a control socket or metrics port that cannot be
had fails the mount with one line, nothing mounted); the control server lives in the mount's nursery and
ends with it; `stop()` closes the metrics listener at unmount.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import trio

from ossmount import mounttable
from ossmount.ops import control, metrics
from ossmount.ops.accounting import FuseCalls
from ossmount.ops.logs import LogLevels, LogTarget, reopen_log_files
from ossmount.ops.stats import MountTelemetry, options_document
from ossmount.options import parse_listen

log = logging.getLogger("ossmount.mount")


class MountOperator:
    """Accounting, control channel, metrics and log levels of the mount `args` (see the module docstring)."""

    def __init__(self, args: Any, flags: Any, store: Any, log_target: LogTarget):
        self.args = args
        self.mountpoint = mounttable.resolve(args.mountpoint)
        self.calls = FuseCalls()
        self.levels = LogLevels(args.options.dbglevel, args.debug)
        self.log_target = log_target
        self.status_file = flags.status_file
        self.telemetry = MountTelemetry(mountpoint=self.mountpoint, bucket=args.bucket, prefix=args.prefix,
                                        options=args.options, store=store, calls=self.calls, levels=self.levels,
                                        log_target=log_target)
        self.registry = metrics.registry_for(self.telemetry)
        if flags.control_socket:
            self.control_socket = os.path.abspath(flags.control_socket)
        elif flags.status_file:
            self.control_socket = control.socket_for_status_file(os.path.abspath(flags.status_file))
        else:
            self.control_socket = control.socket_in_runtime_dir(self.mountpoint)
        self._metrics_server: metrics.MetricsServer | None = None

    async def _stats(self, request: dict) -> dict:
        return self.telemetry.snapshot()

    async def _metrics(self, request: dict) -> str:
        return metrics.render(self.registry)

    async def _set_log_level(self, request: dict) -> dict:
        return {"log_level": self.levels.set(str(request.get("level", "")))}

    async def start(self, nursery: trio.Nursery) -> None:
        """Open the control socket and the metrics listener, and watch SIGUSR1/SIGHUP (ConfigError if the socket
        or the port cannot be had)."""
        server = control.ControlServer(self.control_socket, {
            "stats": self._stats, "metrics": self._metrics, "set_log_level": self._set_log_level})
        await nursery.start(server.serve)
        listen = self.args.options.metrics_listen
        if listen:
            host, port = parse_listen("metrics_listen", listen)
            self._metrics_server = metrics.MetricsServer(self.registry, host, port)
            self._metrics_server.start()
        nursery.start_soon(self._watch_signals)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    self.levels.more_verbose()
                else:
                    reopen_log_files()
                    self.levels.reset()

    def stop(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None

    def record(self) -> dict:
        """What the mount's record adds for `ossmount stats` and `ossmount diagnose`."""
        return {"control_socket": self.control_socket, "log": self.log_target.to_json(),
                "status_file": os.path.abspath(self.status_file) if self.status_file else None,
                "metrics_listen": self.args.options.metrics_listen, "options": options_document(self.args.options),
                "uid": os.geteuid()}
