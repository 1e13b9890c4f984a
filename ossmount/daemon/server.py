"""The daemon's HTTP/1.1 front: h11 on trio over a unix socket (and optionally /metrics on TCP).

* The socket is created with the requested mode (0600 by default) under a 0700 directory; every connection's
  caller is identified with SO_PEERCRED and refused (403 PERMISSION_DENIED) unless its uid is allowed.
* Bodies are JSON, at most `api.MAX_BODY_BYTES`; every answer is JSON with `X-Request-Id` (echoed or made
  up), except /metrics (Prometheus text).
* An operation runs shielded from cancellation: a client that hangs up, or a daemon told to stop, does not
  interrupt a mount half-way (the operation's own deadline bounds it).
* Errors become one status here (`DaemonError.http_status`); anything unexpected is logged with its traceback
  and answered INTERNAL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
import uuid
from typing import Any

import h11
import trio

from ossmount import __version__
from ossmount.daemon import api
from ossmount.daemon.errors import DaemonError
from ossmount.daemon.manager import Outcome, VolumeManager
from ossmount.errors import ConfigError

log = logging.getLogger("ossmount.daemon.api")

RECV_SIZE = 64 * 1024
MAX_HEAD_SIZE = 64 * 1024
SERVER_HEADER = f"ossmount-daemon/{__version__}"


def peer_uid(sock: trio.socket.SocketType) -> int | None:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return None
    return uid


async def open_unix_listener(path: str, mode: int) -> trio.SocketListener:
    """Listen on `path` (mode `mode`); a stale socket is replaced, a live one (another daemon) is an error."""
    if len(os.fsencode(path)) > 107:
        raise ConfigError(f"socket path {path} is longer than 107 bytes (the unix socket limit); choose a shorter one")
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the socket's directory {directory}: {exc.strerror}; choose another "
                          "--socket") from None
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{path} exists and is not a socket; remove it or choose another --socket")
        probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens
        else:
            raise ConfigError(f"another daemon is already listening on {path}")
        finally:
            probe.close()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        await sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(128)
    return trio.SocketListener(sock)


class ApiServer:
    """Answers the API (`handle_unix`) and the metrics-only TCP listener (`handle_metrics`)."""

    OPERATIONS = {"stage": "stage", "publish": "publish", "unpublish": "unpublish", "unstage": "unstage",
                  "rotate-credentials": "rotate"}

    def __init__(self, manager: VolumeManager, *, allowed_uids: set[int]):
        self.manager = manager
        self.allowed_uids = set(allowed_uids) | {0}

    async def handle_unix(self, stream: trio.SocketStream) -> None:
        await self._serve(stream, uid=peer_uid(stream.socket), full_api=True)

    async def handle_metrics(self, stream: trio.SocketStream) -> None:
        await self._serve(stream, uid=None, full_api=False)

    async def _serve(self, stream: trio.SocketStream, *, uid: int | None, full_api: bool) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        try:
            while True:
                event = await self._next_event(stream, conn)
                if not isinstance(event, h11.Request):
                    return
                body, too_large = await self._read_body(stream, conn)
                status, headers, payload = await self._answer(event, body, too_large, uid, full_api)
                headers.append(("Content-Length", str(len(payload))))
                await self._send(stream, conn, h11.Response(status_code=status, headers=headers))
                await self._send(stream, conn, h11.Data(data=payload))
                await self._send(stream, conn, h11.EndOfMessage())
                if too_large or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return
        except Exception:
            log.exception("internal error on an API connection")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    @staticmethod
    async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await stream.receive_some(RECV_SIZE))

    async def _read_body(self, stream: trio.SocketStream, conn: h11.Connection) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(stream, conn)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > api.MAX_BODY_BYTES:
                    return b"", True
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks), False
            else:
                raise trio.BrokenResourceError("connection closed in the middle of a request body")

    @staticmethod
    async def _send(stream: trio.SocketStream, conn: h11.Connection, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _answer(self, head: h11.Request, body: bytes, too_large: bool, uid: int | None,
                      full_api: bool) -> tuple[int, list[tuple[str, str]], bytes]:
        request_headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in head.headers}
        request_id = request_headers.get("x-request-id") or uuid.uuid4().hex
        method = head.method.decode("ascii", "replace")
        target = head.target.decode("latin-1")
        headers = [("X-Request-Id", request_id), ("Server", SERVER_HEADER)]
        if too_large:
            headers.append(("Connection", "close"))
        started = trio.current_time()
        operation = None
        try:
            if full_api and uid not in self.allowed_uids:
                raise DaemonError("PERMISSION_DENIED", f"uid {uid} may not use this daemon (allowed: "
                                                       f"{', '.join(str(u) for u in sorted(self.allowed_uids))}; "
                                                       "see --allow-uid)")
            if too_large:
                raise DaemonError("INVALID_ARGUMENT", f"request body larger than {api.MAX_BODY_BYTES} bytes")
            found = api.route(method, target)
            if found.name == "metrics":
                payload, content_type = await self.manager.render_metrics()
                return 200, headers + [("Content-Type", content_type)], payload
            if not full_api:
                raise DaemonError("NOT_FOUND", "this listener serves /metrics only")
            if found.name in self.OPERATIONS:
                operation = found.name
                status, document = await self._operate(operation, body)
            elif found.name == "health":
                status, document = self._health()
            elif found.name == "volumes":
                status, document = 200, {"volumes": self.manager.list()}
            else:
                assert found.volume_id is not None
                status, document = 200, self.manager.get(found.volume_id)
            code = "OK"
        except DaemonError as error:
            status, document, code = error.http_status, error.to_json(), error.code
            if error.retry_after is not None:
                headers.append(("Retry-After", str(error.retry_after)))
        except Exception:
            log.exception("%s %s failed [%s]", method, target, request_id)
            error = DaemonError("INTERNAL", f"internal error in {method} {target}; the daemon log has the "
                                            f"traceback (request {request_id})")
            status, document, code = error.http_status, error.to_json(), error.code
        elapsed = trio.current_time() - started
        if operation is not None:
            self.manager.metrics.operations.labels(operation, code).inc()
            self.manager.metrics.operation_duration.labels(operation).observe(elapsed)
            volume_id = _volume_id_of(body)
            message = document.get("error", {}).get("message", "") if code != "OK" else document.get("changed")
            log.info("%s volume=%r -> %d %s %s (%.2f s) [%s]", operation, volume_id, status, code, message or "-",
                     elapsed, request_id)
        elif code != "OK":
            log.info("%s %s -> %d %s [%s]", method, target, status, code, request_id)
        payload = json.dumps(document, sort_keys=True).encode() + b"\n"
        return status, headers + [("Content-Type", "application/json")], payload

    async def _operate(self, operation: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if not self.manager.ready:
            raise DaemonError("UNAVAILABLE", "the daemon is still reconciling its volumes after a start; retry in "
                                             "a moment")
        request = api.PARSERS[operation](api.decode_body(body), self.manager.config.allowed_prefixes)
        with trio.CancelScope(shield=True):
            outcome: Outcome = await getattr(self.manager, self.OPERATIONS[operation])(request)
        return outcome.status, outcome.to_json()

    def _health(self) -> tuple[int, dict[str, Any]]:
        if not self.manager.ready:
            return 503, {"status": "starting", "version": __version__, "pid": os.getpid()}
        if not os.access(self.manager.run_dir.state_dir, os.W_OK):
            return 503, {"status": "degraded", "reason": f"state directory {self.manager.run_dir.state_dir} is not "
                                                         "writable", "version": __version__, "pid": os.getpid()}
        return 200, {"status": "ok", "version": __version__, "volumes": len(self.manager.volumes),
                     "pid": os.getpid(), "started_at": self.manager.started_at}


def _volume_id_of(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("volume_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
