"""HTTP/1.1 to one OSS endpoint: the one module that puts the store's requests on the wire.

Theory of operation:
  * One `Transport` per endpoint host (the bucket's virtual host, or the endpoint itself in path style), plain or
    TLS. Connections are opened with trio and framed with h11; no worker thread is involved, so a request costs
    no thread hop (performance.md §3.5: a hop is ~0.1 ms) and no requests/urllib3 machinery. A plain connection is
    then driven on its non-blocking socket: a send or receive that can go ahead costs one system call and no pass
    through trio's scheduler; only a socket that is not ready is waited for (`trio.lowlevel.wait_*`, under the
    timeout). Measured on a 16 KiB ranged GET: about a tenth less client CPU than trio's socket methods, which
    yield to the scheduler after every successful call.
  * `Transport.request()` takes a kept-alive connection from the pool (last in, first out: the most recently used
    one is the least likely to have been closed by the server's idle timeout) or opens one, at most
    `max_connections` at once; further requests wait, first come first served. It sends the head and the body and
    returns the `Response` once its head has arrived. The caller reads the body and must `release()` the response
    (or use it as an async context manager).
  * A connection goes back to the pool only when its response was read to the end, both sides kept the connection
    alive and nothing arrived beyond the response. Anything else closes it: an abandoned body never poisons the
    pool. An idle pooled connection the server has closed is noticed before reuse (a non-blocking peek); a request
    that fails on a reused connection before any byte of its answer arrived is sent again, once, on a new connection
    (the server closed the idle connection as we used it), without counting as a failed attempt.
  * Bodies: a small request body goes out with its head in one send; a large one is sent from the caller's buffer
    without copies (one buffer, or a `BufferList` of them), or read from a file (`FileBody`, pread into one reused
    buffer, CRC-64 as it goes). A response
    body with a Content-Length is received with `recv_into` straight into the caller's buffer; chunked and
    close-delimited bodies go through h11.
  * Timeouts (`Timeouts`): `connect` bounds the TCP connection and the TLS handshake, `read` the longest wait for
    any progress (bytes sent or received) while a request is under way. Both are per request, so a caller can cap
    them to what an operation's deadline leaves.
  * TLS settings come from one place, `tls_context()`.
  * Failures are `TransportError`s (connect, timeout, connection lost, TLS, protocol); the store maps them to its
    error types in its one table (client.py `error_from_oss`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import h11
import trio

from ossmount.crc64 import crc64

# A request body up to this size is joined to its head and sent in one go.
_JOIN_BODY_MAX = 64 * 1024
_RECV_SIZE = 64 * 1024
_FILE_CHUNK = 1024 * 1024
MAX_HEAD_SIZE = 256 * 1024


class TransportError(Exception):
    """A request could not be completed at the HTTP level. `sent` is False when it never left this host."""

    def __init__(self, message: str, *, sent: bool = True):
        super().__init__(message)
        self.sent = sent


class ConnectFailed(TransportError):
    """No connection: refused, unresolvable, unreachable."""


class ConnectTimeout(TransportError):
    """The TCP connection (or TLS handshake) did not complete within the connect timeout."""


class ReadTimeout(TransportError):
    """No progress for the read timeout while sending a request or receiving its answer."""


class ConnectionLost(TransportError):
    """The peer reset or closed the connection before the exchange finished."""


class TlsFailure(TransportError):
    """The TLS handshake failed (certificate not trusted, wrong host name, protocol)."""


class ProtocolError(TransportError):
    """The peer's answer is not HTTP/1.1 as h11 understands it."""


class _StaleConnection(ConnectionLost):
    """A reused connection failed before any byte of the answer: the server had closed it."""


# Requests sent again on a new connection when a reused one turns out closed (RFC 9110 §9.2.2 idempotent methods).
_REPLAYABLE = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE"})


class _Sized:
    """Stands for a body of `length` bytes in h11's framing checks (send_with_data_passthrough)."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length


def _body_length(body) -> int:
    return len(memoryview(body).cast("B")) if isinstance(body, (bytes, bytearray, memoryview)) else body.length


@dataclass(frozen=True)
class Timeouts:
    """Seconds for one request: `connect` (TCP + TLS handshake) and `read` (longest wait for progress)."""

    connect: float
    read: float


def tls_context(*, verify: bool = True, verify_hostname: bool = True, ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS settings of https endpoints, in one place.

    Trust: `ca_bundle` (a PEM file, or a hashed directory as c_rehash makes) alone when given, as curl --cacert;
    otherwise the system's store (OpenSSL default paths, so $SSL_CERT_FILE/$SSL_CERT_DIR apply) plus certifi's
    Mozilla bundle (what requests trusted). `verify=False` accepts any certificate (no_check_certificate),
    `verify_hostname=False` a trusted certificate for another name (ssl_verify_hostname=0): both insecure.
    Raises OSError / ssl.SSLError for an unreadable bundle."""
    if ca_bundle:
        context = (ssl.create_default_context(capath=ca_bundle) if os.path.isdir(ca_bundle)
                   else ssl.create_default_context(cafile=ca_bundle))
    else:
        context = ssl.create_default_context()
        try:
            import certifi

            context.load_verify_locations(cafile=certifi.where())
        except (ImportError, OSError):  # no certifi: the system store alone
            pass
    if not verify or not verify_hostname:
        context.check_hostname = False
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    return context


class BodySource(Protocol):
    """A request body read piece by piece (`FileBody`): `length` bytes in all, from the start again after
    `restart()` (the transport restarts it before each send, so a replay sends it whole)."""

    length: int

    def read_into(self, view: memoryview) -> int: ...

    def restart(self) -> None: ...


class FileBody:
    """`size` bytes of an open file from `offset`, read with pread (several parts of one file can be sent at once)
    and CRC-64 summed as they are read; `restart()` goes back to the start (the transport calls it before each send)."""

    def __init__(self, fileobj, offset: int, size: int):
        self._file = fileobj
        self._offset = offset
        self.length = size
        self._position = 0
        self.crc = 0
        try:
            self._fd: int | None = fileobj.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def restart(self) -> None:
        self._position = 0
        self.crc = 0

    def read_into(self, view: memoryview) -> int:
        want = min(len(view), self.length - self._position)
        if want <= 0:
            return 0
        if self._fd is not None:
            count = os.preadv(self._fd, [view[:want]], self._offset + self._position)
        else:
            self._file.seek(self._offset + self._position)
            count = self._file.readinto(view[:want])
        if not count:
            raise OSError(f"file ended {self.length - self._position} bytes before the announced size")
        self.crc = crc64(view[:count], self.crc)
        self._position += count
        return count


class BufferList:
    """A request body of several buffers (the pieces of an upload part, as the writer handed them over): sent one
    after the other straight from the buffers, never joined or copied into a send buffer."""

    def __init__(self, buffers: Any):
        self.views = [memoryview(buffer).cast("B") for buffer in buffers]
        self.length = sum(len(view) for view in self.views)

    def crc(self) -> int:
        crc = 0
        for view in self.views:
            crc = crc64(view, crc)
        return crc


Body = bytes | bytearray | memoryview | BufferList | BodySource | None


class _Channel:
    """One connection's byte stream: a plain socket (recv_into straight into the caller's buffer) or a TLS stream
    (one copy out of the TLS layer). Every wait is bounded by `timeout` seconds without progress.

    A plain connection is driven on its non-blocking socket directly: a send or receive that can go ahead at once
    costs one system call and no trip through trio's scheduler (trio's socket methods yield after every successful
    call, and each `move_on_after` is a cancel scope); only a call that would block waits, under the timeout, for
    the socket to become ready."""

    def __init__(self, stream: trio.abc.Stream, tls: bool):
        self.stream = stream
        self.tls = tls
        if tls:
            self.sock = stream.transport_stream.socket  # type: ignore[attr-defined]
        else:  # the stream's socket, taken over as a plain non-blocking one (TCP_NODELAY as trio set it)
            trio_socket = stream.socket  # type: ignore[attr-defined]
            self.sock = socket.socket(trio_socket.family, trio_socket.type, trio_socket.proto,
                                      fileno=trio_socket.detach())
            self.sock.setblocking(False)
        self.closed = False

    async def _ready(self, wait: Any, timeout: float, message: str) -> None:
        """Until the socket is ready (`wait`: trio's wait_readable / wait_writable); ReadTimeout after `timeout`."""
        with trio.move_on_after(timeout):
            try:
                await wait(self.sock)
            except trio.ClosedResourceError as exc:
                raise ConnectionLost(f"connection closed while waiting: {exc}") from exc
            return
        raise ReadTimeout(message)

    async def send_all(self, data: bytes | bytearray | memoryview, timeout: float) -> None:
        view = memoryview(data)
        if self.tls:
            with trio.move_on_after(timeout):
                try:
                    await self.stream.send_all(view)
                except trio.BrokenResourceError as exc:
                    raise ConnectionLost(f"connection lost while sending: {exc.__cause__ or exc}") from exc
                return
            raise ReadTimeout(f"no progress sending the request for {timeout:g} s")
        sock = self.sock
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await self._ready(trio.lowlevel.wait_writable, timeout,
                                  f"no progress sending the request for {timeout:g} s")
                continue
            except OSError as exc:
                raise ConnectionLost(f"connection lost while sending: {exc}") from exc
            view = view[sent:]

    async def recv_into(self, view: memoryview, timeout: float) -> int:
        if self.tls:
            with trio.move_on_after(timeout):
                try:
                    data = await self.stream.receive_some(len(view))
                except trio.BrokenResourceError as exc:
                    raise ConnectionLost(f"connection lost while receiving: {exc.__cause__ or exc}") from exc
                view[:len(data)] = data
                return len(data)
            raise ReadTimeout(f"no answer for {timeout:g} s")
        sock = self.sock
        while True:
            try:
                return sock.recv_into(view)
            except BlockingIOError:
                await self._ready(trio.lowlevel.wait_readable, timeout, f"no answer for {timeout:g} s")
            except OSError as exc:
                raise ConnectionLost(f"connection lost while receiving: {exc}") from exc

    async def recv(self, timeout: float, *, wait_first: bool = False) -> bytes:
        """Up to _RECV_SIZE bytes. `wait_first`: the answer is not expected to be here yet (the request just went
        out), so wait for the socket before the first try instead of failing one call."""
        if self.tls:
            with trio.move_on_after(timeout):
                try:
                    return await self.stream.receive_some(_RECV_SIZE)
                except trio.BrokenResourceError as exc:
                    raise ConnectionLost(f"connection lost while receiving: {exc.__cause__ or exc}") from exc
            raise ReadTimeout(f"no answer for {timeout:g} s")
        sock = self.sock
        if wait_first:
            await self._ready(trio.lowlevel.wait_readable, timeout, f"no answer for {timeout:g} s")
        while True:
            try:
                return sock.recv(_RECV_SIZE)
            except BlockingIOError:
                await self._ready(trio.lowlevel.wait_readable, timeout, f"no answer for {timeout:g} s")
            except OSError as exc:
                raise ConnectionLost(f"connection lost while receiving: {exc}") from exc

    def looks_closed(self) -> bool:
        """Whether an idle connection was closed by the server (or, plain HTTP, sent something unasked)."""
        if not self.tls:  # one non-blocking peek: nothing waiting means open and quiet
            try:
                self.sock.recv(1, socket.MSG_PEEK)  # b"": the server closed it; a byte: it said something unasked
            except BlockingIOError:
                return False
            except OSError:  # reset
                pass
            return True
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLRDHUP)
        events = poller.poll(0)
        if not events:
            return False
        flags = events[0][1]
        if flags & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        return not self.tls  # TLS may have a session ticket waiting; plain HTTP has nothing to say unasked

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.tls:
                try:  # wake any task waiting on it (trio's own sockets do this in their close)
                    trio.lowlevel.notify_closing(self.sock)
                except RuntimeError:  # outside the event loop (a store closed after trio.run ended): none waits
                    pass
            self.sock.close()


class Response:
    """The answer to one request: `status`, `headers` (lowercase names, latin-1 decoded values, repeated ones
    joined with ", "), and its body, read with `read_into` / `read` / `drain`. `release()` hands the connection back
    (or closes it if the body was not read to its end)."""

    def __init__(self, transport: "Transport", channel: _Channel, conn: h11.Connection, event: h11.Response,
                 head_request: bool, timeout: float):
        self.status = event.status_code
        headers: dict[str, str] = {}
        connection_tokens = ""
        for name, value in event.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
            if key == "connection":
                connection_tokens += text.lower()
        self.headers = headers
        self.request_id = headers.get("x-oss-request-id", "")
        self._transport = transport
        self._channel: _Channel | None = channel
        self._conn = conn
        self._timeout = timeout
        self._keep_alive = event.http_version == b"1.1" and "close" not in connection_tokens
        self.received = 0  # body bytes handed to the caller so far
        length = headers.get("content-length")
        no_body = head_request or self.status in (204, 304) or self.status < 200
        if no_body:
            self._remaining: int | None = 0
        elif "transfer-encoding" not in headers and length is not None and length.isdigit():
            self._remaining = int(length)
        else:
            self._remaining = None  # chunked or close-delimited: h11 frames it
        self._buffered = b""
        self._buffered_at = 0
        if self._remaining is not None:
            self._buffered = conn.trailing_data[0]
            if len(self._buffered) > self._remaining:
                self._keep_alive = False  # more than the answer: never reuse this connection
        self._done = self._remaining == 0

    @property
    def complete(self) -> bool:
        """True once the whole body has been read."""
        return self._done

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    async def read_into(self, view: memoryview) -> int:
        """Up to len(view) body bytes into `view`; 0 at the end of the body. ConnectionLost if it ends early."""
        if self._done or not len(view):
            return 0
        channel = self._channel
        assert channel is not None, "response already released"
        if self._remaining is None:
            return await self._read_framed_into(view)
        want = min(len(view), self._remaining)
        available = len(self._buffered) - self._buffered_at
        if available:
            count = min(want, available)
            view[:count] = memoryview(self._buffered)[self._buffered_at:self._buffered_at + count]
            self._buffered_at += count
        else:
            count = await channel.recv_into(view[:want], self._timeout)
            if not count:
                raise ConnectionLost(f"connection closed with {self._remaining} body bytes missing")
        self._remaining -= count
        self.received += count
        if self._remaining == 0:
            self._done = True
        return count

    async def _read_framed_into(self, view: memoryview) -> int:
        while True:
            if self._buffered_at < len(self._buffered):
                count = min(len(view), len(self._buffered) - self._buffered_at)
                view[:count] = memoryview(self._buffered)[self._buffered_at:self._buffered_at + count]
                self._buffered_at += count
                self.received += count
                return count
            event = await self._next_event()
            if isinstance(event, h11.Data):
                self._buffered, self._buffered_at = bytes(event.data), 0
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                self._keep_alive = (self._keep_alive and self._conn.our_state is h11.DONE
                                    and self._conn.their_state is h11.DONE and not self._conn.trailing_data[0])
                return 0
            else:  # ConnectionClosed before the end of a chunked body
                raise ConnectionLost("connection closed before the end of the body")

    async def _next_event(self):
        assert self._channel is not None
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolError(f"malformed answer: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            self._conn.receive_data(await self._channel.recv(self._timeout))

    async def read(self, limit: int, on_data: Callable[[bytes], object] | None = None) -> bytes:
        """The rest of the body; BodyTooLarge once it exceeds `limit` bytes (the connection is then closed).
        `on_data(piece)` sees each piece as it arrives (a listing's head read before the rest, store/pages.py)."""
        chunks = []
        size = 0
        length = self._remaining if self._remaining is not None else _RECV_SIZE
        buffer = bytearray(min(max(length, 1), limit + 1, 4 * 1024 * 1024))
        view = memoryview(buffer)
        while True:
            count = await self.read_into(view)
            if not count:
                return b"".join(chunks)
            size += count
            if size > limit:
                self.release()
                raise BodyTooLarge(f"the answer is larger than {limit} bytes")
            chunk = bytes(view[:count])
            chunks.append(chunk)
            if on_data is not None:
                on_data(chunk)
                # A plain connection's receive does not yield when bytes are waiting: let what `on_data` started (the
                # next LIST page, store/pages.py) go out now, not once this body has been drained.
                await trio.lowlevel.checkpoint()

    def release(self) -> None:
        """Give the connection back to the pool if the exchange ended cleanly, else close it. Idempotent."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        self._transport._give_back(channel, reusable=self._done and self._keep_alive
                                   and self._buffered_at >= len(self._buffered))

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class BodyTooLarge(TransportError):
    """A response body exceeded the size its reader accepts."""


@dataclass
class TransportStatistics:
    """Connections the transport opened, requests it sent on a reused connection, stale idle ones it dropped."""

    connections_opened: int = 0
    connections_reused: int = 0
    stale_dropped: int = 0


class Transport:
    """Kept-alive HTTP/1.1 connections to `host`:`port` (TLS with `tls`), at most `max_connections` at once.

    `request()` is the one coroutine that sends a request; see the module docstring for the rules."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None, max_connections: int,
                 server_hostname: str | None = None):
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname or host
        self.max_connections = max_connections
        self._slots = trio.Semaphore(max_connections)
        self._idle: deque[_Channel] = deque()
        self.statistics = TransportStatistics()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def busy_connections(self) -> int:
        return self.max_connections - self._slots.value

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: Body,
                      timeouts: Timeouts) -> Response:
        """Send one request and return its answer once the head has arrived (TransportError on failure).

        `headers` must hold Host (and Content-Length when there is a body). The caller owns the Response."""
        try:  # a free slot is taken without a pass through the scheduler; else wait, first come first served
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            channel, reused = await self._checkout(timeouts)
            try:
                return await self._exchange(channel, method, target, headers, body, timeouts)
            except _StaleConnection:
                if not reused:
                    raise
                channel, _ = await self._checkout(timeouts, fresh=True)
                try:
                    return await self._exchange(channel, method, target, headers, body, timeouts, stale_ok=False)
                except _StaleConnection as exc:
                    raise ConnectionLost(str(exc)) from exc
        except BaseException:
            self._slots.release()
            raise

    async def _checkout(self, timeouts: Timeouts, *, fresh: bool = False) -> tuple[_Channel, bool]:
        while self._idle and not fresh:
            channel = self._idle.pop()
            if channel.looks_closed():
                channel.close()
                self.statistics.stale_dropped += 1
                continue
            self.statistics.connections_reused += 1
            return channel, True
        return await self._connect(timeouts.connect), False

    async def _connect(self, timeout: float) -> _Channel:
        with trio.move_on_after(timeout):
            try:
                stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError as exc:
                raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {_reason(exc)}", sent=False) from exc
            if self.tls is None:
                self.statistics.connections_opened += 1
                return _Channel(stream, tls=False)
            secure = trio.SSLStream(stream, self.tls, server_hostname=self.server_hostname, https_compatible=True)
            try:
                await secure.do_handshake()
            except trio.BrokenResourceError as exc:
                stream.socket.close()
                cause = exc.__cause__ or exc
                if isinstance(cause, ssl.SSLError):
                    raise TlsFailure(str(cause), sent=False) from cause
                raise ConnectionLost(f"connection lost during the TLS handshake: {cause}", sent=False) from exc
            except BaseException:
                stream.socket.close()
                raise
            self.statistics.connections_opened += 1
            return _Channel(secure, tls=True)
        raise ConnectTimeout(f"no connection to {self.host}:{self.port} within {timeout:g} s", sent=False)

    async def _exchange(self, channel: _Channel, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                        body: Body, timeouts: Timeouts, *, stale_ok: bool = True) -> Response:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        answered = False
        try:
            try:
                head = conn.send(h11.Request(method=method, target=target, headers=headers))
            except h11.LocalProtocolError as exc:
                raise ProtocolError(f"cannot send this request: {exc}", sent=False) from exc
            if body is not None:  # h11 checks the length against Content-Length; the bytes go out below
                conn.send_with_data_passthrough(h11.Data(data=_Sized(_body_length(body))))
            conn.send(h11.EndOfMessage())
            await self._send_body(channel, head, body, timeouts.read)
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise ProtocolError(f"malformed answer: {exc}") from exc
                if event is h11.NEED_DATA:
                    data = await channel.recv(timeouts.read, wait_first=not answered)
                    if data:
                        answered = True
                    elif not answered:
                        raise ConnectionLost("the server closed the connection without an answer")
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    return Response(self, channel, conn, event, method == b"HEAD", timeouts.read)
                raise ConnectionLost("the server closed the connection without an answer")
        except ConnectionLost as exc:
            channel.close()
            if stale_ok and not answered and method in _REPLAYABLE and not isinstance(exc, _StaleConnection):
                raise _StaleConnection(str(exc)) from exc
            raise
        except BaseException:
            channel.close()
            raise

    @staticmethod
    async def _send_body(channel: _Channel, head: bytes, body: Body, timeout: float) -> None:
        if body is None:
            await channel.send_all(head, timeout)
        elif isinstance(body, (bytes, bytearray, memoryview)):
            if len(body) <= _JOIN_BODY_MAX:
                await channel.send_all(head + bytes(body), timeout)
            else:
                await channel.send_all(head, timeout)
                await channel.send_all(body, timeout)
        elif isinstance(body, BufferList):
            await channel.send_all(head, timeout)
            for view in body.views:
                await channel.send_all(view, timeout)
        else:
            body.restart()  # a replay on a new connection (a stale one) sends the body from its start
            await channel.send_all(head, timeout)
            buffer = memoryview(bytearray(min(_FILE_CHUNK, max(body.length, 1))))
            sent = 0
            while sent < body.length:
                count = body.read_into(buffer)
                if count <= 0:
                    raise ProtocolError(f"the request body ended {body.length - sent} bytes early", sent=sent > 0)
                await channel.send_all(buffer[:count], timeout)
                sent += count

    def _give_back(self, channel: _Channel, *, reusable: bool) -> None:
        if reusable and not channel.closed:
            self._idle.append(channel)
        else:
            channel.close()
        self._slots.release()

    def close(self) -> None:
        """Close every idle connection (those in use close when their responses are released)."""
        while self._idle:
            self._idle.pop().close()


def _reason(exc: BaseException) -> str:
    """The innermost useful words of a connect failure (trio wraps per-address failures in a group)."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[-1]
    inner = cause if isinstance(cause, OSError) else exc
    if isinstance(inner, socket.gaierror):
        return f"cannot resolve the host name ({inner.strerror or inner})"
    if getattr(inner, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    return getattr(inner, "strerror", None) or str(inner)
