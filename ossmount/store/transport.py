"""HTTP/1.1 to one OSS endpoint: the one module that puts the store's requests on the wire.

Theory of operation:
  * One `Transport` per endpoint host (the bucket's virtual host, or the endpoint itself in path style), plain or
    TLS. Connections are framed as "Framing" says; no worker thread is involved, so a request costs no thread hop
    (performance.md §3.5: a hop is ~0.1 ms) and no requests/urllib3 machinery. A plain connection is a non-blocking
    socket driven by trio's I/O waits: a send is tried at once, the answer to a request is waited for before the
    first receive (no checkpoints around each call, no failed attempt); TLS connections are trio SSL streams.
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
  * Framing: a request head of ordinary fields is written here and checked against h11's grammar (method token,
    request-target, field names and values, one Host, a Content-Length equal to the body's length); an answer's head
    is parsed by httptools (llhttp, C) when it is a final answer framed by Content-Length or with no body (HEAD,
    204, 304). Anything else — a head h11's grammar or httptools refuses, 1xx answers (100-continue), chunked or
    close-delimited bodies, a connection closed mid-head — goes through h11, the bytes received so far replayed into
    it, so those keep h11's exact behaviour and errors. (h11 for every request cost ~45 µs of ~290 µs of client CPU
    per HEAD, issue 11.)
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
import re
import select
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import h11
import httptools
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


# h11's grammar (RFC 9110/9112 as h11 0.16 `_abnf` spells it) for the request heads written without h11: a head that
# does not match is framed by h11 instead, which refuses it with its own error.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_HEAD = re.compile(rb"%s [\x21-\x7e]+ HTTP/1\.1\r\n(?:%s: (?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?\r\n)*\r\n"
                           % (_TOKEN, _TOKEN))
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head, as h11 finds it
_CONTENT_LENGTH_MAX_DIGITS = 20  # h11's bound


def _request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: Body) -> bytes | None:
    """The request head h11 would write for these fields, or None when h11 must frame (or refuse) the request: a
    field outside its grammar, not exactly one Host (first), Transfer-Encoding, or a Content-Length that is not
    the body's length (0 without a body)."""
    try:
        if not headers or headers[0][0].lower() != b"host":
            return None
        length = None
        for name, value in headers[1:]:
            lowered = name.lower()
            if lowered == b"content-length":
                if length is not None:
                    return None
                length = value
            elif lowered == b"host" or lowered == b"transfer-encoding":
                return None
        if length is None:
            if body is not None:
                return None
        elif length != b"%d" % (0 if body is None else _body_length(body)):
            return None
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, b"".join([b"%s: %s\r\n" % field for field in headers]))
    except (TypeError, AttributeError, ValueError):  # not bytes: h11 converts or refuses them
        return None
    # One line per field: a CR LF inside a name, value or the target would make the grammar see other fields.
    return head if head.count(b"\r\n") == len(headers) + 2 and _REQUEST_HEAD.fullmatch(head) else None


def _h11_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: Body
                 ) -> tuple[h11.Connection, bytes]:
    """An h11 connection that has sent this request, and the request head it wrote (ProtocolError if h11 refuses
    the head; h11's own LocalProtocolError if the body's length contradicts Content-Length)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
    try:
        head = conn.send(h11.Request(method=method, target=target, headers=headers))
    except h11.LocalProtocolError as exc:
        raise ProtocolError(f"cannot send this request: {exc}", sent=False) from exc
    if body is not None:  # h11 checks the length against Content-Length; the bytes go out elsewhere
        conn.send_with_data_passthrough(h11.Data(data=_Sized(_body_length(body))))
    conn.send(h11.EndOfMessage())
    return conn, head


def _header_dict(fields: Any) -> dict[str, str]:
    """Header fields as `Response.headers` holds them: lowercase names, latin-1 values, repeated ones joined."""
    headers: dict[str, str] = {}
    for name, value in fields:
        key = name.lower().decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class _HeadFields:
    """httptools' callbacks for one answer head: its header fields as `_header_dict` makes them, and whether the
    head ended."""

    __slots__ = ("headers", "complete")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower().decode("latin-1")
        text = value.rstrip(b" \t").decode("latin-1")  # llhttp keeps trailing whitespace, h11 does not
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self.complete = True


def _parsed_head(head: bytes, no_body: bool) -> tuple[int, bytes, dict[str, str]] | None:
    """(status, HTTP version, headers as `_header_dict` makes them) of a final answer head (ending in CRLF CRLF)
    framed by a Content-Length or without a body, parsed by httptools; None for anything h11 must read: a head
    httptools refuses, HTTP other than 1.0/1.1, 1xx, Transfer-Encoding, a Content-Length h11 might read otherwise
    (repeated, not digits), a close-delimited body."""
    sink = _HeadFields()
    parser = httptools.HttpResponseParser(sink)
    try:
        parser.feed_data(head)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    status = parser.get_status_code()
    version = parser.get_http_version()
    if not sink.complete or status < 200 or version not in ("1.1", "1.0"):
        return None
    headers = sink.headers
    if "transfer-encoding" in headers:
        return None
    length = headers.get("content-length")
    if length is None:
        if not (no_body or status in (204, 304)):
            return None
    elif not (length.isdigit() and length.isascii()) or len(length) > _CONTENT_LENGTH_MAX_DIGITS:
        return None
    return status, b"1.1" if version == "1.1" else b"1.0", headers


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

    A plain connection is a non-blocking stdlib socket driven with trio's I/O waits: a request head is sent at once
    and the receive right after it waits for the answer first, so neither costs the checkpoints and the failed
    attempt that trio's socket methods wrap around every call (issue 11: CPU per request). Bulk data (bodies) keeps
    a checkpoint per piece, so a long transfer never holds the event loop."""

    def __init__(self, stream: trio.abc.Stream, tls: bool):
        self.tls = tls
        if tls:
            self.stream = stream
            self.sock = stream.transport_stream.socket  # type: ignore[attr-defined]
        else:
            self.stream = None
            self.sock = socket.socket(fileno=stream.socket.detach())  # type: ignore[attr-defined]
            self.sock.setblocking(False)
        self.closed = False
        self._poller: select.poll | None = None

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
        if len(view) <= _JOIN_BODY_MAX:  # a request head (with a small body): sent at once, no scheduling
            view = view[self._send_now(view):]
            if not view:
                return
        else:
            await trio.lowlevel.checkpoint()  # bulk data: other tasks run (and a cancel lands) between pieces
        with trio.move_on_after(timeout) as scope:
            while view:
                sent = self._send_now(view)
                if sent:
                    view = view[sent:]
                    scope.deadline = trio.current_time() + timeout
                else:
                    await self._wait(trio.lowlevel.wait_writable)
            return
        raise ReadTimeout(f"no progress sending the request for {timeout:g} s")

    def _send_now(self, view: memoryview) -> int:
        """Bytes of `view` the socket took without waiting (plain connections)."""
        try:
            return self.sock.send(view)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ConnectionLost(f"connection lost while sending: {exc}") from exc

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
        # A body is usually streaming in already: take what is there, with the checkpoints of trio's own socket
        # methods around it (a long body read lets other tasks run, and a cancel lands, between pieces).
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            count = self.sock.recv_into(view)
        except BlockingIOError:
            return await self._when_readable(self.sock.recv_into, view, timeout)
        except OSError as exc:
            raise ConnectionLost(f"connection lost while receiving: {exc}") from exc
        await trio.lowlevel.cancel_shielded_checkpoint()
        return count

    async def recv(self, timeout: float) -> bytes:
        """Up to _RECV_SIZE bytes; b"" at the end of the stream. Waits for them first (an answer to what was just
        sent is seldom there yet)."""
        if self.tls:
            with trio.move_on_after(timeout):
                try:
                    return await self.stream.receive_some(_RECV_SIZE)
                except trio.BrokenResourceError as exc:
                    raise ConnectionLost(f"connection lost while receiving: {exc.__cause__ or exc}") from exc
            raise ReadTimeout(f"no answer for {timeout:g} s")
        return await self._when_readable(self.sock.recv, _RECV_SIZE, timeout)

    async def _when_readable(self, receive: Any, argument: Any, timeout: float) -> Any:
        """`receive(argument)` on the plain socket once it has something, waiting at most `timeout` seconds."""
        with trio.move_on_after(timeout):
            while True:
                await self._wait(trio.lowlevel.wait_readable)
                try:
                    return receive(argument)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise ConnectionLost(f"connection lost while receiving: {exc}") from exc
        raise ReadTimeout(f"no answer for {timeout:g} s")

    async def _wait(self, wait: Any) -> None:
        """`wait(sock)` (trio's wait_readable / wait_writable) on the plain socket; its closing by another task
        (`close`) is ConnectionLost like any other loss, not trio's ClosedResourceError."""
        try:
            await wait(self.sock)
        except trio.ClosedResourceError as exc:
            raise ConnectionLost(f"connection closed while waiting: {exc}") from exc

    def looks_closed(self) -> bool:
        """Whether an idle connection was closed by the server (or, plain HTTP, sent something unasked)."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock.fileno(), select.POLLIN | select.POLLRDHUP)
        events = self._poller.poll(0)
        if not events:
            return False
        flags = events[0][1]
        if flags & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        return not self.tls  # TLS may have a session ticket waiting; plain HTTP has nothing to say unasked

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._poller = None
            if not self.tls:
                try:
                    trio.lowlevel.notify_closing(self.sock)  # a task waiting on it gets ClosedResourceError
                except RuntimeError:  # outside trio (closed at exit): nobody can be waiting
                    pass
            self.sock.close()


class Response:
    """The answer to one request: `status`, `headers` (lowercase names, latin-1 decoded values, repeated ones
    joined with ", "), and its body, read with `read_into` / `read` / `drain`. `release()` hands the connection back
    (or closes it if the body was not read to its end)."""

    def __init__(self, transport: "Transport", channel: _Channel, conn: h11.Connection | None, status: int,
                 http_version: bytes, headers: dict[str, str], trailing: bytes, head_request: bool, timeout: float):
        """`headers` as `_header_dict` makes them; `trailing`: bytes received after the head; `conn`: the h11
        connection that read the head (needed for bodies h11 frames), None when httptools parsed it."""
        self.status = status
        self.headers = headers
        self.request_id = headers.get("x-oss-request-id", "")
        self._transport = transport
        self._channel: _Channel | None = channel
        self._conn = conn
        self._timeout = timeout
        self._keep_alive = http_version == b"1.1" and "close" not in headers.get("connection", "").lower()
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
            self._buffered = trailing
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
        await acquire_promptly(self._slots)  # the exchange below waits anyway
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
        answered = False
        head_request = method == b"HEAD"
        try:
            head = _request_head(method, target, headers, body)
            conn = None
            if head is None:
                conn, head = _h11_request(method, target, headers, body)
            await self._send_body(channel, head, body, timeouts.read)
            # Appended in place and searched from where the last search stopped: an answer head trickling in byte by
            # byte is neither copied whole nor scanned again on every read (as the server's `_Channel`).
            received = bytearray()
            searched = 0
            while conn is None:  # the usual answer: its head parsed by httptools (module docstring, "Framing")
                data = await channel.recv(timeouts.read)
                if not data:
                    if not answered:
                        raise ConnectionLost("the server closed the connection without an answer")
                    conn = _h11_request(method, target, headers, body)[0]
                    conn.receive_data(received)
                    conn.receive_data(b"")
                    break
                answered = True
                received += data
                blank = _BLANK_LINE.search(received, searched) if received[0] >= 0x21 else None  # else h11's error
                if blank is None:
                    if len(received) <= MAX_HEAD_SIZE and received[0] >= 0x21:
                        searched = max(0, len(received) - 2)  # a blank line split across reads is still found
                        continue
                elif blank.end() - blank.start() == 3 and received[blank.start() - 1] == 13:  # CRLF CRLF
                    end = blank.end()
                    parsed = _parsed_head(bytes(received[:end]), head_request)
                    if parsed is not None:
                        return Response(self, channel, None, *parsed, bytes(received[end:]), head_request,
                                        timeouts.read)
                conn = _h11_request(method, target, headers, body)[0]  # h11 reads it, from its first byte
                conn.receive_data(received)
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise ProtocolError(f"malformed answer: {exc}") from exc
                if event is h11.NEED_DATA:
                    data = await channel.recv(timeouts.read)
                    if data:
                        answered = True
                    elif not answered:
                        raise ConnectionLost("the server closed the connection without an answer")
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    return Response(self, channel, conn, event.status_code, event.http_version,
                                    _header_dict(event.headers.raw_items()), conn.trailing_data[0], head_request,
                                    timeouts.read)
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


async def acquire_promptly(resource: trio.Semaphore | trio.CapacityLimiter) -> None:
    """`await resource.acquire()`, without its trip through the scheduler when a unit is free at once: for callers
    that wait on something else right after (a request's answer), where that checkpoint is CPU for nothing."""
    try:
        resource.acquire_nowait()
    except trio.WouldBlock:
        await resource.acquire()


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
