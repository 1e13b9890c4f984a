"""Errors of the CSI driver and the one place they become gRPC statuses.

Rules:
  1. Every failure travels as a `CsiError(code, message)`; `code` is a `grpc.StatusCode`. The servicers
     never call `context.abort` themselves: `rpc_method` does, once, for every RPC.
  2. The daemon's error `code`s are the gRPC canonical names (csi-daemon.md §5.6), so `status_for_daemon_code`
     maps them 1:1 by name; a code the daemon might add later becomes UNKNOWN, never a crash.
  3. Object-store errors met by the controller become the codes the daemon gives them, by the daemon's own
     table (`ossmount.daemon.errors.code_for_oss`): bad credentials UNAUTHENTICATED, AccessDenied
     PERMISSION_DENIED, NoSuchBucket NOT_FOUND, unreachable UNAVAILABLE.
  4. Secrets never leave in a status message or a log line: `Scrubber` replaces the secret values of the
     request being served (and `logsafety.redact` the credential-bearing headers) in every message that
     `rpc_method` sends or logs. An unexpected exception becomes INTERNAL with a one-line message; its
     traceback goes to the log, scrubbed too. The status `details` stay empty (CSI spec, "Error Scheme").
"""

from __future__ import annotations

import functools
import logging
import traceback
from typing import Any, Callable, Iterable, Mapping, TypeVar

import grpc

from ossmount.check import CheckError
from ossmount.daemon.errors import code_for_oss
from ossmount.logsafety import REDACTED, redact
from ossmount.store import types as store_types

log = logging.getLogger("ossmount.csi")

F = TypeVar("F", bound=Callable[..., Any])

# Secrets shorter than this are not scrubbed as substrings (a 1-character "secret" would mangle every
# message); CSI secrets are access keys and tokens, far longer.
_MIN_SCRUB_LENGTH = 4



class CsiError(Exception):
    """A failure to report to the CO as `code` (a grpc.StatusCode) with a human-readable `message`."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid(message: str) -> CsiError:
    """INVALID_ARGUMENT: a missing or malformed field (CSI spec: every RPC's error table)."""
    return CsiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def status_for_daemon_code(code: str) -> grpc.StatusCode:
    """The gRPC status for an ossmount daemon error `code` (csi-daemon.md §5.6): the status of that name."""
    try:
        status = grpc.StatusCode[code]
    except KeyError:
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.UNKNOWN if status is grpc.StatusCode.OK else status


def status_for_store_error(error: store_types.StoreError | CheckError) -> grpc.StatusCode:
    """The gRPC status for an object-store error (or a failed mount-time check, which carries the same OSS
    code): the daemon's own table from OSS codes to its codes (csi-daemon.md §5.6), then by error type."""
    code = status_for_daemon_code(code_for_oss(error.code, getattr(error, "exit_code", None)))
    if code is not grpc.StatusCode.INTERNAL:
        return code
    if isinstance(error, store_types.NoSuchBucket):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, store_types.AccessDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, store_types.TransientError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(error, store_types.InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


class Scrubber:
    """Replaces known secret values (and credential headers) in text bound for a log or a status."""

    def __init__(self, secrets: Iterable[str] = ()):
        values = {value for value in secrets if isinstance(value, str) and len(value) >= _MIN_SCRUB_LENGTH}
        self._values = sorted(values, key=len, reverse=True)  # longest first: a secret containing another

    @classmethod
    def for_request(cls, request: Any) -> "Scrubber":
        """A scrubber for the `secrets` map of a CSI request, plus secret-like volume attributes
        (Alibaba's deprecated `akId`/`akSecret` in volumeAttributes)."""
        values: list[str] = []
        secrets = getattr(request, "secrets", None)
        if secrets:
            values += list(secrets.values())
        for context_field in ("volume_context", "parameters"):
            context = getattr(request, context_field, None)
            if context:
                values += [value for key, value in context.items() if is_secret_key(key)]
        return cls(values)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return redact(text)


def is_secret_key(key: str) -> bool:
    """Whether a volume attribute / parameter name carries a secret (akId, akSecret, *secret*, *token*)."""
    lowered = key.strip().lower()
    return lowered in ("akid", "aksecret", "accesskeyid") or "secret" in lowered or "token" in lowered


def safe_map(values: Mapping[str, str]) -> dict[str, str]:
    """`values` with secret-looking entries replaced, for log lines (volume contexts, parameters)."""
    return {key: (REDACTED if is_secret_key(key) else value) for key, value in values.items()}


def rpc_method(fn: F) -> F:
    """Wrap a servicer method `fn(self, request, context)`: the one place errors become gRPC statuses.

    CsiError → its code and (scrubbed) message; any other exception → INTERNAL "internal error in <RPC>:
    <type>; see the driver log", with the scrubbed traceback logged.
    """
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        scrub = Scrubber.for_request(request)
        try:
            return fn(self, request, context)
        except CsiError as error:
            message = scrub(error.message)
            log.warning("%s: %s: %s", name, error.code.name, message)
            status, text = error.code, message
        except Exception as error:  # noqa: BLE001 - the one place a bug becomes INTERNAL
            log.error("%s failed unexpectedly: %s", name, scrub("".join(traceback.format_exception(error))))
            status, text = grpc.StatusCode.INTERNAL, f"internal error in {name}: {type(error).__name__}; see the driver log"
        context.abort(status, text)

    return wrapper  # type: ignore[return-value]
