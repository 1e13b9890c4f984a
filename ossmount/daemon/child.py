"""One `ossmount` FUSE process per volume: its command line, spawning, readiness, and watching it exit.

Children must outlive the daemon (csi-daemon.md §5.1): own session, stdin /dev/null, stdout/stderr to a file
(a pipe would give them EPIPE once the daemon is gone), no parent-death signal, and never signalled when
the daemon stops. Credentials reach them only as a directory path (`passwd_file=<creds>/keys`): never in argv
or the environment, which is stripped of anything that looks like a credential.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from typing import Any, Mapping, Sequence

import trio

from ossmount.daemon import system
from ossmount.daemon.api import VolumeSpec
from ossmount.daemon.errors import LOG_TAIL_MAX_BYTES, DaemonError, code_for_oss

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (sys.executable, "-m", "ossmount")
LOG_TAIL_LINES = 40
_SECRET_ENV_WORDS = ("SECRET", "TOKEN", "PASSWORD", "ACCESSKEY", "CREDENTIAL")  # matched without underscores
_SERVICE_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment without anything that could carry a credential (OSS_ACCESS_KEY_ID, ossfs's
    OSSACCESSKEYID, ...) and without systemd's service variables (they belong to the daemon)."""
    return {name: value for name, value in environ.items()
            if not any(word in name.upper().replace("_", "") for word in _SECRET_ENV_WORDS)
            and name not in _SERVICE_ENV}


def mount_command(base: Sequence[str], spec: VolumeSpec, global_path: str, *, passwd_path: str, log_path: str,
                  status_path: str, status_interval: float, ready_fd: int) -> list[str]:
    """argv of the FUSE process (pure; holds paths only, never a secret)."""
    return [*base, "mount", spec.source, global_path, "-f", "-o", ",".join(spec.mount_option_items(passwd_path)),
            "--ready-fd", str(ready_fd), "--log-file", log_path, "--status-file", status_path,
            "--status-interval", f"{status_interval:g}"]


def read_log_tail(paths: Sequence[str], *, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_MAX_BYTES) -> str:
    """The last `lines` lines of the given logs, oldest file first, capped at `max_bytes`."""
    collected: list[str] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - max_bytes))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        collected += [line for line in text.splitlines() if line.strip()]
    return "\n".join(collected[-lines:])[-max_bytes:]


class FuseProcess:
    """A running `ossmount` process: spawned by this daemon (a trio Process) or adopted after a restart (a pidfd).

    `watch()` must run in a task: it waits for the exit, records `exit_info` ({"code", "signal"}; both None for
    an adopted process, whose status only its real parent may read) and sets `exited`."""

    def __init__(self, pid: int, start_time: int, *, process: trio.Process | None = None,
                 pidfd: int | None = None):
        self.pid = pid
        self.start_time = start_time
        self._process = process
        self._pidfd = pidfd
        self.exited = trio.Event()
        self.exit_info: dict[str, Any] | None = None
        self.expected_exit = False  # set before the daemon unmounts or stops it: no crash to report

    @classmethod
    def adopt(cls, pid: int, start_time: int) -> "FuseProcess | None":
        descriptor = system.open_pidfd(pid, start_time)
        return None if descriptor is None else cls(pid, start_time, pidfd=descriptor)

    @property
    def adopted(self) -> bool:
        return self._process is None

    async def watch(self) -> None:
        try:
            if self._process is not None:
                code = await self._process.wait()
                self.exit_info = ({"code": None, "signal": signal.Signals(-code).name} if code < 0
                                  else {"code": code, "signal": None})
            else:
                assert self._pidfd is not None
                await trio.lowlevel.wait_readable(self._pidfd)
                self.exit_info = {"code": None, "signal": None, "adopted": True}
        finally:
            if self._pidfd is not None and self.exit_info is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self.exited.set()

    def send_signal(self, signum: int) -> None:
        if self.exited.is_set():
            return
        try:
            if self._process is not None:
                self._process.send_signal(signum)
            elif self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            pass

    async def stop(self, grace: float) -> bool:
        """SIGTERM, then SIGKILL after `grace` seconds; True if SIGKILL was needed. Returns once it exited."""
        self.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            await self.exited.wait()
            return False
        self.send_signal(signal.SIGKILL)
        await self.exited.wait()
        return True

    def describe_exit(self) -> str:
        info = self.exit_info or {}
        if info.get("signal"):
            return f"killed by {info['signal']}"
        if info.get("code") is not None:
            return f"exited with code {info['code']}"
        return "exited (adopted process: see its log)"


async def spawn(command_for_fd, *, stderr_path: str, environ: Mapping[str, str]) -> tuple[FuseProcess, int]:
    """Start `command_for_fd(ready_fd)`; returns the process and the read end of its readiness pipe."""
    read_end, write_end = os.pipe()
    try:
        with open(stderr_path, "ab") as stderr:
            process = await trio.lowlevel.open_process(
                command_for_fd(write_end), pass_fds=(write_end,), start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=stderr, stderr=stderr, env=child_environment(environ), cwd="/")
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    found = system.read_proc_stat(process.pid)
    return FuseProcess(process.pid, found.start_time if found else 0, process=process), read_end


async def read_ready_line(read_end: int) -> dict[str, Any] | None:
    """The readiness report (`ossmount.mount`: {"state": "ready"|"error", ...}); None if the pipe closed first."""
    stream = trio.lowlevel.FdStream(read_end)
    data = b""
    async with stream:
        while b"\n" not in data and len(data) < 64 * 1024:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\n", 1)[0].strip()
    if not line:
        return None
    try:
        report = json.loads(line)
    except ValueError:
        return {"state": "error", "code": 1, "message": f"unreadable readiness report {line[:200]!r}"}
    return report if isinstance(report, dict) else None


def error_from_report(report: Mapping[str, Any] | None, process: FuseProcess) -> DaemonError:
    """The DaemonError for a failed readiness report (or for a process that exited without one)."""
    if report is None:
        return DaemonError("INTERNAL", f"the FUSE process {process.describe_exit()} before the mount was ready")
    reason = report.get("reason") or None
    exit_code = report.get("code") if isinstance(report.get("code"), int) else None
    return DaemonError(code_for_oss(reason, exit_code), str(report.get("message") or "mount failed"),
                       reason=reason)
