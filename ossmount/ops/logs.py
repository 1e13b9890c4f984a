"""Where a mount logs, and changing its level while it runs.

Rules (README "Operating ossmount"):
  * `logfile=PATH` (= `--log-file`) wins: the log goes there, rotated by size; a file that cannot be opened
    fails the mount before anything is mounted.
  * Otherwise a foreground mount (`-f`, or `-d`) logs to stderr, and a detached mount (the default) logs to
    syslog, as ossfs does: the datagram socket `/dev/log` (journald reads it), facility user, identity
    `ossmount[PID]`, no time stamp (the syslog daemon adds one). `$OSSMOUNT_SYSLOG_SOCKET` names another
    socket (tests bind their own).
  * When no syslog socket answers, a detached mount logs to `/var/log/ossmount/<mountpoint, escaped>.log`
    (rotated like logfile=), or, when that directory cannot be written (not root), under the runtime dir
    (`/run/user/UID/ossmount/logs/` or `/tmp/ossmount-UID/logs/`). The mount's record and status file name
    the target, so `ossmount diagnose` finds the log.
  * Every line of a mount names its mountpoint; a WARNING or ERROR line that does not name an OSS request id
    gets the id of the last OSS request the FUSE operation that logged it made, `(last OSS request-id ...)`.
  * Level: dbglevel= at start (warnings are always logged); `ossmount stats MOUNTPOINT --set-log-level LEVEL`
    changes it at once; SIGUSR1 makes it one step more verbose (crit → err → warn → info → debug, then back
    to dbglevel=), as s3fs's SIGUSR2 does; SIGHUP restores dbglevel= and reopens the log file (for logrotate).
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import socket
from dataclasses import dataclass

from ossmount.errors import ConfigError
from ossmount.logsafety import apply_level, open_log_file

SYSLOG_ENV = "OSSMOUNT_SYSLOG_SOCKET"
DEFAULT_SYSLOG_SOCKET = "/dev/log"
FALLBACK_LOG_DIR = "/var/log/ossmount"
LEVELS = ("crit", "err", "warn", "info", "debug")
_LEVEL_VALUES = {"crit": logging.CRITICAL, "err": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
                 "debug": logging.DEBUG}


@dataclass(frozen=True)
class LogTarget:
    """Where the log goes: kind "file" (path), "syslog" (path of the socket) or "stderr"."""

    kind: str
    path: str | None = None
    reason: str | None = None  # why a detached mount logs to a file rather than syslog

    def to_json(self) -> dict:
        return {"target": self.kind, "path": self.path, "reason": self.reason}


def syslog_socket() -> str:
    return os.environ.get(SYSLOG_ENV) or DEFAULT_SYSLOG_SOCKET


def open_syslog(address: str) -> logging.Handler:
    """A handler sending to the syslog datagram socket `address` as `ossmount[PID]`, facility user. OSError if
    nothing listens there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(address)
    finally:
        probe.close()
    handler = logging.handlers.SysLogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_USER,
                                             socktype=socket.SOCK_DGRAM)
    handler.ident = f"ossmount[{os.getpid()}]: "
    return handler


def escaped_name(mountpoint: str) -> str:
    """`/mnt/oss data` → `mnt-oss_data`: a file name for the mountpoint (systemd-escape-like), with a digest
    when it is long."""
    name = "".join(c if c.isalnum() or c in "._" else "-" if c == "/" else "_"
                   for c in mountpoint.strip("/")) or "root"
    if len(name) > 100:
        name = name[:80] + "-" + hashlib.sha256(mountpoint.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return name


def fallback_log_paths(mountpoint: str, runtime_dir: str) -> list[str]:
    name = escaped_name(mountpoint) + ".log"
    return [os.path.join(FALLBACK_LOG_DIR, name), os.path.join(runtime_dir, "logs", name)]


def detached_handler(mountpoint: str, runtime_dir: str, *, max_bytes: int,
                     backups: int) -> tuple[logging.Handler, LogTarget]:
    """The handler of a detached mount without logfile= (module rules): syslog, else a fallback file.
    ConfigError when neither can be had."""
    address = syslog_socket()
    try:
        return open_syslog(address), LogTarget("syslog", address)
    except OSError as exc:
        reason = f"syslog socket {address}: {exc.strerror or exc}"
    errors = []
    for path in fallback_log_paths(mountpoint, runtime_dir):
        try:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            return open_log_file(path, max_bytes=max_bytes, backups=backups), LogTarget("file", path, reason)
        except (OSError, ConfigError) as exc:
            errors.append(f"{path}: {exc}")
    raise ConfigError(f"nowhere to log: {reason}; " + "; ".join(errors) + "; give -o logfile=PATH")


def parse_level(text: str) -> str:
    """crit|err|warn|info|debug, or an ossfs alias (error, warning, dbg, ...); ConfigError otherwise."""
    from ossmount.errors import UsageError
    from ossmount.options import _parse_dbglevel

    try:
        return _parse_dbglevel("log level", text)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None


class LogLevels:
    """The mount's log level now: `configured` (dbglevel=) at start, changed by `set`, `more_verbose`
    (SIGUSR1) and `reset` (SIGHUP)."""

    def __init__(self, configured: str, debug: bool = False):
        self.configured = "debug" if debug else configured
        self.current = self.configured

    def set(self, level: str) -> str:
        self.current = parse_level(level)
        apply_level(_LEVEL_VALUES[self.current])
        logging.getLogger("ossmount").info("log level is now %s", self.current)
        return self.current

    def more_verbose(self) -> str:
        index = LEVELS.index(self.current)
        return self.set(LEVELS[index + 1] if index + 1 < len(LEVELS) else self.configured)

    def reset(self) -> str:
        return self.set(self.configured)


def reopen_log_files() -> None:
    """Reopen every file the log is written to (after logrotate moved it away)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                old = handler.setStream(handler._open())
                if old is not None:
                    old.close()
            finally:
                handler.release()
