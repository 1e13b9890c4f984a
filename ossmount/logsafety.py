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


def log_format(*, timestamps: bool = True, instance: str | None = None) -> str:
    """The client's log line format: time stamp (unless no_time_stamp_msg), [instance_name], level, logger, text."""
    parts = ["%(asctime)s"] if timestamps else []
    if instance:
        parts.append("[" + instance.replace("%", "%%") + "]")
    return " ".join(parts + ["%(levelname)s %(name)s: %(message)s"])


def setup_logging(debug: bool, level: int = logging.WARNING, *, timestamps: bool = True,
                  instance: str | None = None, log_file: str | None = None, max_bytes: int = LOG_FILE_MAX_BYTES,
                  backups: int = LOG_FILE_BACKUPS) -> None:
    """The one log setup of the client commands: one line per record on stderr (or in `log_file`, rotated at
    `max_bytes` keeping `backups` old files), secrets redacted; oss2, urllib3 and requests stay at WARNING unless
    `debug` (they print every request's headers). `timestamps=False` (no_time_stamp_msg) drops the time stamp;
    `instance` (instance_name) names the mount in every line. ConfigError if `log_file` cannot be opened."""
    level = logging.DEBUG if debug else min(logging.WARNING, level)
    if log_file is not None:
        handler: logging.Handler = open_log_file(log_file, max_bytes=max_bytes, backups=backups)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format(timestamps=timestamps, instance=instance)))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for library in ("urllib3", "oss2", "requests"):
        logging.getLogger(library).setLevel(logging.NOTSET if debug else max(level, logging.WARNING))
