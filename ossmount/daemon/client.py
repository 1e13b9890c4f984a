"""`DaemonClient`: the blocking Python client of the daemon's API, used by `ossmount ctl` and the CSI node plugin.

    from ossmount.daemon.client import DaemonClient, DaemonClientError

    client = DaemonClient("/run/ossmount/ossmountd.sock")
    answer = client.publish("pv-data", "/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~csi/pv-data/mount",
                            read_only=False, global_path=staging_target_path,
                            spec={"bucket": "data", "prefix": "/train", "endpoint": "oss-cn-hangzhou.aliyuncs.com",
                                  "options": other_opts},
                            credentials={"type": "access_key", "access_key_id": ak, "access_key_secret": sk})
    answer["volume"]["process"]["pid"], answer["changed"]

Every call is one HTTP request on a fresh connection (thread-safe, no shared state; a gRPC server may call it from
many threads). An error answer raises `DaemonClientError`, whose `code` is the gRPC status name to return
(csi-daemon.md §5.6); a daemon that is not running raises it with code UNAVAILABLE. Secrets travel only in the
request body over the unix socket and never appear in an exception.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping

DEFAULT_SOCKET = "/run/ossmount/ossmountd.sock"
DEFAULT_TIMEOUT = 120.0  # longer than any operation's own deadline (timeout_s ≤ 110 s + lock wait)


class DaemonClientError(Exception):
    """An error answer (or no answer) from the daemon. `code` is a gRPC canonical status name."""

    def __init__(self, code: str, message: str, *, http_status: int | None = None, reason: str | None = None,
                 retryable: bool = False, log_tail: str | None = None, log_path: str | None = None,
                 volume_id: str | None = None, retry_after: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.reason = reason
        self.retryable = retryable
        self.log_tail = log_tail
        self.log_path = log_path
        self.volume_id = volume_id
        self.retry_after = retry_after

    @classmethod
    def from_answer(cls, status: int, document: Any, retry_after: str | None) -> "DaemonClientError":
        error = document.get("error") if isinstance(document, dict) else None
        if not isinstance(error, dict):
            return cls("INTERNAL", f"unexpected answer (HTTP {status}): {str(document)[:200]}", http_status=status)
        return cls(str(error.get("code", "INTERNAL")), str(error.get("message", "")), http_status=status,
                   reason=error.get("reason"), retryable=bool(error.get("retryable")), log_tail=error.get("log_tail"),
                   log_path=error.get("log_path"), volume_id=error.get("volume_id"),
                   retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the daemon: status, decoded JSON (or text for /metrics) and Retry-After."""

    status: int
    document: Any
    retry_after: str | None = None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DaemonClient:
    """One daemon, reached through its unix socket."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                request_id: str | None = None) -> Answer:
        """One request; raises DaemonClientError(UNAVAILABLE) if the daemon cannot be reached, but not for error
        statuses (see `call`)."""
        connection = _UnixConnection(self.socket_path, self.timeout)
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        payload = None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            retry_after = response.getheader("Retry-After")
        except FileNotFoundError:
            raise DaemonClientError("UNAVAILABLE", f"no daemon socket at {self.socket_path}: is `ossmount daemon` "
                                                   "running?", retryable=True) from None
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as exc:
            raise DaemonClientError("UNAVAILABLE", f"the daemon at {self.socket_path} does not answer ({exc}); is it "
                                                   "running?", retryable=True) from None
        except PermissionError:
            raise DaemonClientError("PERMISSION_DENIED", f"may not connect to {self.socket_path} (run as root)") from None
        except (socket.timeout, TimeoutError):
            raise DaemonClientError("DEADLINE_EXCEEDED", f"no answer from the daemon within {self.timeout:g} s",
                                    retryable=True) from None
        finally:
            connection.close()
        content_type = response.getheader("Content-Type", "")
        document: Any = json.loads(data) if content_type.startswith("application/json") and data else data.decode()
        return Answer(response.status, document, retry_after)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """The JSON answer of a successful request; DaemonClientError otherwise."""
        answer = self.request(method, path, body)
        if answer.status >= 400:
            raise DaemonClientError.from_answer(answer.status, answer.document, answer.retry_after)
        return answer.document

    # -- operations (each returns {"volume": {...} | None, "changed": str | None}) ------------------------

    @staticmethod
    def _body(**fields: Any) -> dict[str, Any]:
        return {name: value for name, value in fields.items() if value is not None}

    def stage(self, volume_id: str, spec: Mapping[str, Any], credentials: Mapping[str, Any], *,
              global_path: str | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        return self.call("POST", "/v1/stage", self._body(volume_id=volume_id, spec=spec, credentials=credentials,
                                                          global_path=global_path, timeout_s=timeout_s))

    def publish(self, volume_id: str, target_path: str, *, read_only: bool = False,
                spec: Mapping[str, Any] | None = None, credentials: Mapping[str, Any] | None = None,
                global_path: str | None = None, pod: Mapping[str, str] | None = None,
                timeout_s: float | None = None) -> dict[str, Any]:
        return self.call("POST", "/v1/publish", self._body(
            volume_id=volume_id, target_path=target_path, read_only=read_only, spec=spec, credentials=credentials,
            global_path=global_path, pod=pod, timeout_s=timeout_s))

    def unpublish(self, volume_id: str, target_path: str) -> dict[str, Any]:
        return self.call("POST", "/v1/unpublish", {"volume_id": volume_id, "target_path": target_path})

    def unstage(self, volume_id: str, *, force: bool = False, drain_timeout_s: float | None = None,
                global_path: str | None = None) -> dict[str, Any]:
        return self.call("POST", "/v1/unstage", self._body(volume_id=volume_id, force=force,
                                                            drain_timeout_s=drain_timeout_s, global_path=global_path))

    def rotate_credentials(self, volume_id: str, credentials: Mapping[str, Any], *,
                           timeout_s: float | None = None) -> dict[str, Any]:
        return self.call("POST", "/v1/rotate-credentials", self._body(volume_id=volume_id, credentials=credentials,
                                                                       timeout_s=timeout_s))

    # -- reads ----------------------------------------------------------------------------------------------

    def volumes(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/volumes")["volumes"]

    def volume(self, volume_id: str) -> dict[str, Any]:
        """The volume document (csi-daemon.md §5.4); DaemonClientError NOT_FOUND if it is not staged."""
        return self.call("GET", "/v1/volumes/" + urllib.parse.quote(volume_id, safe=""))

    def health(self) -> dict[str, Any]:
        """{"status": "ok", ...}; DaemonClientError UNAVAILABLE while the daemon starts or cannot be reached."""
        answer = self.request("GET", "/v1/health")
        status, document = answer.status, answer.document
        if status != 200:
            state = document.get("status") if isinstance(document, dict) else None
            raise DaemonClientError("UNAVAILABLE", f"the daemon is {state or 'not healthy'}"
                                    + (f": {document.get('reason')}" if isinstance(document, dict)
                                       and document.get("reason") else ""), http_status=status, retryable=True)
        return document

    def metrics(self) -> str:
        return self.call("GET", "/metrics")


def credentials_from(credentials: Any) -> dict[str, Any]:
    """A request's `credentials` object from an `ossmount.credentials.Credentials` (passwd file, env, directory)."""
    document: dict[str, Any] = {"type": "sts" if credentials.security_token else "access_key",
                                "access_key_id": credentials.access_key_id,
                                "access_key_secret": credentials.access_key_secret}
    if credentials.security_token:
        document["security_token"] = credentials.security_token
        if credentials.expiration:
            document["expiration"] = credentials.expiration
    return document
