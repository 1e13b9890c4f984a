"""The driver's view of the shared-mount daemon: a thin blocking client of its HTTP+JSON API.

This is the seam between the CSI shim and `ossmount daemon` (csi-daemon.md §5): `Daemon` names the calls
the Node service makes, `HttpDaemon` makes them over the daemon's unix socket with `http.client`
(csi-daemon.md §6.1: the gRPC threads block on the daemon, no trio needed). Errors arrive as
`DaemonError` carrying the daemon's `code` — a gRPC canonical name (§5.6) — and its one-line message.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any, Protocol

DEFAULT_SOCKET = "/run/ossmount/ossmountd.sock"
# The kubelet gives each CSI call 2 minutes (csiTimeout); the daemon bounds its own work below that.
DEFAULT_TIMEOUT = 115.0


class DaemonError(Exception):
    """The daemon refused or failed a call: `code` is a gRPC status name (csi-daemon.md §5.6)."""

    def __init__(self, code: str, message: str, *, reason: str = "", log_path: str = "", status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.log_path = log_path
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Daemon(Protocol):
    """The daemon operations the CSI Node and Identity services use."""

    def stage(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def publish(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def unpublish(self, volume_id: str, target_path: str) -> dict[str, Any]: ...
    def unstage(self, volume_id: str, *, global_path: str = "", force: bool = False) -> dict[str, Any]: ...
    def volume(self, volume_id: str) -> dict[str, Any] | None: ...
    def health(self) -> dict[str, Any]: ...


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class HttpDaemon:
    """`Daemon` over the daemon's unix socket (one connection per call)."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise DaemonError("UNAVAILABLE", f"the ossmount daemon is not running at {self.socket_path} "
                              f"({error.strerror}); start it (systemctl start ossmountd, or the daemon "
                              "DaemonSet)") from None
        except socket.timeout:
            raise DaemonError("DEADLINE_EXCEEDED", f"the ossmount daemon at {self.socket_path} did not answer "
                              f"{method} {path} within {self.timeout:.0f} s") from None
        except OSError as error:
            raise DaemonError("UNAVAILABLE", f"cannot talk to the ossmount daemon at {self.socket_path}: "
                              f"{error}") from None
        finally:
            connection.close()
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            raise DaemonError("INTERNAL", f"the ossmount daemon answered {method} {path} with "
                              f"{response.status} and no JSON") from None
        if response.status >= 400:
            error = document.get("error") if isinstance(document, dict) else None
            if not isinstance(error, dict):
                raise DaemonError("INTERNAL", f"the ossmount daemon answered {method} {path} with "
                                  f"{response.status}", status=response.status)
            raise DaemonError(str(error.get("code") or "UNKNOWN"), str(error.get("message") or "no message"),
                              reason=str(error.get("reason") or ""), log_path=str(error.get("log_path") or ""),
                              status=response.status)
        return response.status, document

    def stage(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/stage", body)[1]

    def publish(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/publish", body)[1]

    def unpublish(self, volume_id: str, target_path: str) -> dict[str, Any]:
        return self._call("POST", "/v1/unpublish", {"volume_id": volume_id, "target_path": target_path})[1]

    def unstage(self, volume_id: str, *, global_path: str = "", force: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"volume_id": volume_id, "force": force}
        if global_path:
            body["global_path"] = global_path
        return self._call("POST", "/v1/unstage", body)[1]

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        """`GET /v1/volumes/{id}`: the volume object, or None if the daemon does not know it."""
        try:
            document = self._call("GET", "/v1/volumes/" + urllib.parse.quote(volume_id, safe=""))[1]
        except DaemonError as error:
            if error.code == "NOT_FOUND":
                return None
            raise
        return document.get("volume", document) if isinstance(document, dict) else None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")[1]
