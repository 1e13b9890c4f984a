"""`ossmount --status-file PATH`: what a running mount reports about itself, as one JSON document.

The mount rewrites the file atomically (temp file + rename) every `--status-interval` seconds and once more
when it unmounts. The shared-mount daemon reads it to tell a healthy volume from one whose bucket was
deleted or whose credentials expired (no restart helps there: the volume is `degraded`), and it is the
seam where per-mount OSS metrics are exported.

Document (version 1; fields are only ever added):

    {"version": 1, "pid": 4242, "state": "mounted" | "unmounted",
     "mountpoint": "/run/ossmount/mnt/<vh>/globalmount", "bucket": "data", "prefix": "train/",
     "started_at": 1700000000.0, "updated_at": 1700000005.0,                     # epoch seconds
     "backend": {"ok": true | false | null, "last_error": {"code": "NoSuchBucket", "at": ...} | null,
                 "last_ok_at": ... | null},
     "credentials": {"access_key_id": "STS.****abcd", "source": "/run/.../creds/keys", "sts": true,
                     "expiration": "2030-01-01T00:00:00Z" | null, "reloads": 1, "reload_error": null},
                    # source: a file or directory, "environment", "ram role NAME", "request", or "anonymous"
     "requests": {"ListObjectsV2": 3, ...}, "errors": {"NoSuchKey": 1, ...},
     "bytes_in": 0, "bytes_out": 0, "retries": 0,
     "control_socket": "/run/.../status.sock", "log": {"target": "file", "path": "...", "reason": null},
     "filesystem": {"fuse_requests": {"lookup": 3, "getxattr": 2, ...}, "attribute_builds": 10, ...}}
    # control_socket: where `ossmount stats` and the daemon's /metrics ask (ossmount.ops.control)
    # filesystem: ossmount.fs.model.FsStatistics plus FUSE requests per operation (absent until mounted)

Backend health rule (`backend_verdict`): the most recent request decides. If it failed with a backend-level
error (bad credentials, missing bucket, access denied, unreachable or failing endpoint) the backend is
unhealthy; any other answer, including a missing key (NoSuchKey), proves it healthy; `ok` is null until the
first request. No request is made for the sake of the check: an idle mount of a deleted bucket is reported
healthy until something touches it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import trio

log = logging.getLogger(__name__)

STATUS_VERSION = 1
DEFAULT_STATUS_INTERVAL = 5.0

# Store error codes that mean "the backend as a whole does not work for this mount".
BACKEND_ERROR_CODES = frozenset({
    "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurityToken", "SecurityTokenExpired",
    "RequestTimeTooSkewed", "AccessDenied", "AccessForbidden", "ConnectionError", "RequestTimeout",
    "ConnectionReset", "ServiceUnavailable", "InternalError",
})


@dataclass(frozen=True)
class BackendHealth:
    """The verdict on the backend: `ok` is None before any request."""

    ok: bool | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        error = {"code": self.last_error, "at": self.last_error_at} if self.last_error else None
        return {"ok": self.ok, "last_error": error, "last_ok_at": self.last_ok_at}


def backend_verdict(last_success_at: float | None, last_error: str | None,
                    last_error_at: float | None) -> BackendHealth:
    """The verdict from the store's last successful attempt and last failed one (epoch seconds; rules above)."""
    backend_failure = last_error in BACKEND_ERROR_CODES and last_error_at is not None
    if backend_failure and (last_success_at is None or last_error_at >= last_success_at):  # type: ignore[operator]
        return BackendHealth(False, last_error, last_error_at, last_success_at)
    answers = [t for t in (last_success_at, None if backend_failure else last_error_at) if t is not None]
    return BackendHealth(True, last_ok_at=max(answers)) if answers else BackendHealth()


def mask_access_key_id(access_key_id: str) -> str:
    """`STS.NUh5x...abcd` → `STS.****abcd`, `LTAI5tAbCdEf` → `LTAI****CdEf`: enough to tell keys apart."""
    head, dot, rest = access_key_id.partition(".")
    if dot and head.isalpha() and len(head) <= 4:
        return f"{head}.****{rest[-4:]}"
    if len(access_key_id) <= 8:
        return "****"
    return f"{access_key_id[:4]}****{access_key_id[-4:]}"


def credentials_status(provider: Any) -> dict[str, Any]:
    """The document's `credentials` for a store's credentials provider (`ObjectStore.credentials`; None: unsigned
    requests): the masked key id last used, where it came from, whether it is STS and until when, and how often
    rotated credentials were picked up. No secret and no I/O (a refreshing provider is not asked again)."""
    from ossmount.credentials import RefreshingCredentials

    if provider is None:
        return {"access_key_id": None, "source": "anonymous", "sts": False, "expiration": None, "reloads": 0,
                "reload_error": None}
    last = provider.last if isinstance(provider, RefreshingCredentials) else provider.current()
    return {"access_key_id": mask_access_key_id(last.access_key_id) if last else None,
            "source": last.source if last else None, "sts": bool(last and last.is_sts),
            "expiration": last.expiration if last else None, "reloads": provider.reloads,
            "reload_error": provider.reload_error}


def write_json_atomically(path: str, document: Mapping[str, Any], *, mode: int = 0o644) -> None:
    """Replace `path` with `document` so that readers see the old or the new file, never half of one."""
    temp = f"{path}.tmp.{os.getpid()}"
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


class StatusReporter:
    """Keeps the backend verdict of one mount and writes its status file.

    `statistics` returns the store's `StoreStatistics`; `credentials` returns a dict describing the current
    credentials (no secrets); `filesystem`, once set, returns the filesystem's statistics as a dict."""

    def __init__(self, path: str, *, mountpoint: str, bucket: str, prefix: str,
                 statistics: Callable[[], Any], credentials: Callable[[], Mapping[str, Any]],
                 clock: Callable[[], float] = time.time, extra: Mapping[str, Any] | None = None):
        self.path = path
        self._identity = {"pid": os.getpid(), "mountpoint": mountpoint, "bucket": bucket, "prefix": prefix,
                          **(extra or {})}
        self._statistics = statistics
        self._credentials = credentials
        self._clock = clock
        self._started_at = clock()
        self.filesystem: Callable[[], Mapping[str, Any]] | None = None

    def update(self, state: str = "mounted") -> dict[str, Any]:
        """The status document now (not written)."""
        stats = self._statistics()
        health = backend_verdict(stats.last_success_at, stats.last_error, stats.last_error_at)
        return {
            "version": STATUS_VERSION, **self._identity, "state": state,
            "started_at": self._started_at, "updated_at": self._clock(),
            "backend": health.to_json(), "credentials": dict(self._credentials()),
            "requests": dict(stats.requests), "errors": dict(stats.errors),
            "bytes_in": stats.bytes_in, "bytes_out": stats.bytes_out, "retries": stats.retries,
            **({"filesystem": dict(self.filesystem())} if self.filesystem is not None else {}),
        }

    def write(self, state: str = "mounted") -> None:
        """Update and write the file now (blocking; used once more at unmount)."""
        self._save(self.update(state))

    def _save(self, document: Mapping[str, Any]) -> None:
        try:
            write_json_atomically(self.path, document)
        except OSError as exc:  # never fatal to the mount
            log.warning("cannot write the status file %s: %s", self.path, exc.strerror)

    async def run(self, interval: float) -> None:
        """Write now and then every `interval` seconds until cancelled. The document is built in the trio thread
        (the store's counters are only touched there); only the file write goes to a worker thread."""
        while True:
            await trio.to_thread.run_sync(self._save, self.update())
            await trio.sleep(interval)
