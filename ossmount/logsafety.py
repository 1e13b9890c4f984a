"""Secrets never reach a log line, even at debug level.

With `-d`, oss2 and urllib3 log every request's headers and URL: the Authorization signature and an STS
security token would land in the log (and in whatever collects it). `RedactSecrets` is attached to the log
handler, so it sees every record from every library and rewrites those values before they are formatted.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys

from ossmount.errors import ConfigError
from ossmount.ops.accounting import current_request_id

REDACTED = "<redacted>"
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024  # rotate at 10 MiB ...
LOG_FILE_BACKUPS = 2  # ... keeping PATH.1 and PATH.2 (at most 30 MiB per log)

# `'authorization': 'OSS ak:sig'` / `Authorization: OSS ak:sig` / `x-oss-security-token: tok` as dict reprs or header
# lines print them; an unquoted value keeps its scheme word (OSS, OSS4-HMAC-SHA256, AWS, ...) with the credential.
_SECRET_HEADER = re.compile(
    r"""(?P<name>(?:authorization|x-oss-security-token|security-token|x-oss-signature|signature)['"]?\s*[:=]\s*)"""
    r"""(?P<quote>['"])?(?P<value>(?(quote)(?:(?!(?P=quote)).)*|(?:(?:OSS|AWS)[\w-]*\s+)?[^\s&,'"}]+))""",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with the values of credential-bearing headers and query parameters replaced."""
    return _SECRET_HEADER.sub(lambda m: f"{m['name']}{m['quote'] or ''}{REDACTED}", text)


class OperationRequestId(logging.Filter):
    """Adds `(last OSS request-id ID)` to WARNING and ERROR lines that name no request id, from the FUSE
    operation (or pseudo-operation) that logged them (`ossmount.ops.accounting.current_request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            request_id = current_request_id()
            if request_id:
                message = record.getMessage()
                if "request-id" not in message:
                    record.msg, record.args = f"{message} (last OSS request-id {request_id})", ()
        return True


class RedactSecrets(logging.Filter):
    """A handler filter that redacts credential values in each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def open_log_file(path: str, *, max_bytes: int = LOG_FILE_MAX_BYTES,
                  backups: int = LOG_FILE_BACKUPS) -> logging.Handler:
    """A handler appending to `path` that rotates it by size (PATH → PATH.1 → ... PATH.<backups>).

    The file is created 0640 (logs name keys and paths, never secrets). Raises ConfigError if it cannot be
    opened, so a bad `--log-file` fails before anything is mounted."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        os.close(descriptor)
        return logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                    encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot open log file {path}: {exc.strerror}; check that its directory exists "
                          "and is writable") from None


def log_format(*, timestamps: bool = True, instance: str | None = None, mountpoint: str | None = None) -> str:
    """The client's log line format: time stamp (unless no_time_stamp_msg), [instance_name], level, logger,
    [mountpoint] (a mount process names its mountpoint in every line), text."""
    parts = ["%(asctime)s"] if timestamps else []
    if instance:
        parts.append("[" + instance.replace("%", "%%") + "]")
    where = f" [{mountpoint.replace('%', '%%')}]" if mountpoint else ""
    return " ".join(parts + [f"%(levelname)s %(name)s{where}: %(message)s"])


def apply_level(level: int, debug: bool = False) -> int:
    """Set the log level of the process: `level`, but never above WARNING (warnings are always logged), DEBUG
    with `debug` (-d); oss2, urllib3 and requests stay at WARNING unless `debug` (they print every request's
    headers). Returns the level set."""
    level = logging.DEBUG if debug else min(logging.WARNING, level)
    logging.getLogger().setLevel(level)
    for library in ("urllib3", "oss2", "requests"):
        logging.getLogger(library).setLevel(logging.NOTSET if debug else max(level, logging.WARNING))
    return level


def setup_logging(debug: bool, level: int = logging.WARNING, *, timestamps: bool = True,
                  instance: str | None = None, log_file: str | None = None, max_bytes: int = LOG_FILE_MAX_BYTES,
                  backups: int = LOG_FILE_BACKUPS, handler: logging.Handler | None = None,
                  mountpoint: str | None = None, syslog: bool = False) -> logging.Handler:
    """The one log setup of the client commands: one line per record on stderr (or in `log_file`, rotated at
    `max_bytes` keeping `backups` old files, or to `handler`, e.g. syslog), secrets redacted, levels as
    `apply_level`. `timestamps=False` (no_time_stamp_msg, and always with `syslog`: the syslog daemon stamps)
    drops the time stamp; `instance` (instance_name) and `mountpoint` are named in every line. ConfigError if
    `log_file` cannot be opened. Returns the handler."""
    if handler is None:
        if log_file is not None:
            handler = open_log_file(log_file, max_bytes=max_bytes, backups=backups)
        else:
            handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format(timestamps=timestamps and not syslog, instance=instance,
                                                      mountpoint=mountpoint)))
    handler.addFilter(OperationRequestId())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    apply_level(level, debug)
    return handler
