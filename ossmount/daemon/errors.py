"""The daemon's one error type and the one table from error code to HTTP status (csi-daemon.md §5.6).

`code` is a gRPC canonical status name, so a CSI node plugin maps it 1:1 onto its gRPC answer; `reason` is
the OSS error code (or other machine-readable cause) behind it. Messages are one line that says what to do.
"""

from __future__ import annotations

from typing import Any

# code → HTTP status. ABORTED shares 409 with ALREADY_EXISTS and carries Retry-After.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 412,
    "ABORTED": 409,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
}
RETRYABLE = frozenset({"UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"})
LOG_TAIL_MAX_BYTES = 8 * 1024

# OSS error codes (and the store's local ones) → daemon code, for validation and readiness failures.
OSS_CODE_TO_CODE = {
    "InvalidAccessKeyId": "UNAUTHENTICATED",
    "SignatureDoesNotMatch": "UNAUTHENTICATED",
    "InvalidSecurityToken": "UNAUTHENTICATED",
    "SecurityTokenExpired": "UNAUTHENTICATED",
    "RequestTimeTooSkewed": "UNAUTHENTICATED",
    "AccessDenied": "PERMISSION_DENIED",
    "AccessForbidden": "PERMISSION_DENIED",
    "NoSuchBucket": "NOT_FOUND",
    "ConnectionError": "UNAVAILABLE",
    "ServiceUnavailable": "UNAVAILABLE",
    "InternalError": "UNAVAILABLE",
    "ConnectionReset": "UNAVAILABLE",
    "RequestTimeout": "DEADLINE_EXCEEDED",
}

# `ossmount` exit codes (ossmount.errors) → daemon code, when the child names no OSS code.
EXIT_CODE_TO_CODE = {2: "INVALID_ARGUMENT", 3: "INVALID_ARGUMENT", 4: "UNAUTHENTICATED", 5: "NOT_FOUND",
                     6: "UNAVAILABLE", 7: "INTERNAL", 1: "INTERNAL"}


class DaemonError(Exception):
    """A failed operation: `code` (gRPC name), one-line `message`, optional OSS `reason`, log tail and path."""

    def __init__(self, code: str, message: str, *, reason: str | None = None, volume_id: str | None = None,
                 log_tail: str | None = None, log_path: str | None = None, retry_after: int | None = None):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.volume_id = volume_id
        self.log_tail = log_tail[-LOG_TAIL_MAX_BYTES:] if log_tail else log_tail
        self.log_path = log_path
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    def with_volume(self, volume_id: str, *, log_tail: str | None = None, log_path: str | None = None) -> "DaemonError":
        """This error, naming the volume (and its log) if it does not yet."""
        self.volume_id = self.volume_id or volume_id
        self.log_tail = self.log_tail or (log_tail[-LOG_TAIL_MAX_BYTES:] if log_tail else None)
        self.log_path = self.log_path or log_path
        return self

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        for name in ("reason", "volume_id", "log_tail", "log_path"):
            value = getattr(self, name)
            if value is not None:
                error[name] = value
        return {"error": error}


def invalid(message: str) -> DaemonError:
    return DaemonError("INVALID_ARGUMENT", message)


def code_for_oss(reason: str | None, exit_code: int | None = None) -> str:
    """The daemon code for an OSS error code, else for an `ossmount` exit code, else INTERNAL."""
    if reason and reason in OSS_CODE_TO_CODE:
        return OSS_CODE_TO_CODE[reason]
    if exit_code is not None:
        return EXIT_CODE_TO_CODE.get(exit_code, "INTERNAL")
    return "INTERNAL"
