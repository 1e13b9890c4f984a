"""The HTTP/1.1 front end of `ossmount serve`: trio sockets + h11 (plain requests without it), zero-copy where it
matters.

The front is deliberately thin: it parses the head, asks the core to classify the request (for counters and fault
injection), spools the body to a file in `core.tmp_dir` while computing MD5 and CRC64, hands a complete `Request` to
`core.handle` in a worker thread (lock-free reads, `INLINE_OPS`, on the event loop itself), and writes the
`Response` (a small one in a single send).

Plain requests bypass h11 (issue 11: reading the head and framing the response with h11 cost ~100 µs per HEAD or
small GET; without it the server spends ~25 % less CPU per HEAD, 4 KiB GET and small listing).
`_Channel._plain_request` is the one place that decides who reads a head. A head that is complete, matches h11's own
grammar narrowed to HTTP/1.1 with CR LF line ends, has exactly one Host and no Content-Length, Transfer-Encoding,
Expect or Upgrade, is not CONNECT and does not ask to close is read by `_plain_request_head`: such a request has no
body and keeps the connection alive, and its response is framed by the channel (`response_head`, `body_pieces`,
`end_of_message`: the bytes h11 writes, and h11's errors for a body off its Content-Length). Anything else is read by
h11, every byte received so far replayed into a fresh h11 connection, so malformed heads (400, 431 beyond
`MAX_HEAD_SIZE`), bodies, 100-continue, HTTP/1.0, `Connection: close` and the end of the stream keep h11's exact
behaviour and errors. A plain request whose response head is unusual (a header h11 frames by, writes first or
refuses) or that goes to the admin API is replayed into h11 at that point (`_Channel._replay_into_h11`). After an
exchange h11 ran, the bytes it holds beyond it go back to the channel, and the next head is decided afresh.

Why the two bulk paths bypass h11 (oss-api.md §5.1):
* Request bodies with a Content-Length of at least `FAST_BODY_MIN` are read with `recv_into` into a
  reused buffer and written with `os.write`: h11's `Data` events copy every byte twice. h11 is then
  re-synchronised by feeding a fresh connection the same head with `content-length: 0`.
* Response bodies that are file extents go out with `os.sendfile`; the framing is still checked, by h11's
  `send_with_data_passthrough` (which hands our `_FileSpan` objects back untouched) or, for a plain request, by
  the channel (`_Channel.body_pieces`).

A request whose body does not arrive completely never reaches the core, and its spool file is
removed, so a client (or server) dying mid-upload leaves nothing visible.

Slow and silent clients (`FrontLimits`, the `ossmount serve` timeout flags): a connection waiting for its next
request is closed after `idle_timeout`; a request head must be complete `header_timeout` seconds after its first
byte (else 408 RequestTimeout, then close); a body that pauses longer than `body_timeout` in either direction ends
the exchange (a request body: 400 RequestTimeout; a response the client stops reading: the connection is dropped).
At most `max_connections` connections are served at once; further ones wait in the listen backlog. A request body
whose framing is broken (`Transfer-Encoding: chunked` or S3 `aws-chunked`) is answered 400 with an error document
in the request's dialect, never with a silent close.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import socket
import struct
import time
import urllib.parse
import uuid
from http import HTTPStatus
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import h11
import trio

from ossmount.crc64 import crc64
from ossmount.errors import exception_leaves
from ossmount.server.core.common import TRAFFIC_LIMIT_HEADER, parse_traffic_limit
from ossmount.server.core.errors import OssError
from ossmount.server.core.model import FileExtent, Request, Response, SpooledBody
from ossmount.server.core.payload import declares_sha256
from ossmount.server.core.routing import Route
from ossmount.server.core.s3.chunked import AwsChunkedDecoder, ChunkedFormatError, is_aws_chunked
from ossmount.server.faults import (
    ADMIN_PREFIX,
    AdminApi,
    FaultPlan,
    FaultRule,
    RequestRecord,
    injected_error_response,
    loggable_headers,
    redact_query,
)

log = logging.getLogger("ossmount.server.http")

RECV_SIZE = 64 * 1024
SPOOL_BUFFER_SIZE = 4 * 1024 * 1024
# While a large body is received, a wait for the socket lasts until this much has arrived (SO_RCVLOWAT; the kernel
# lets the receive buffer grow to twice this): one event-loop pass per MiB rather than one per burst of segments.
BODY_LOWAT_MAX = 1024 * 1024
# Offset of `tcpi_last_data_recv` (u32, milliseconds) in Linux's struct tcp_info (include/uapi/linux/tcp.h): eight u8
# fields, then rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, fackets, last_data_sent, last_ack_sent.
TCP_INFO_LAST_DATA_RECV = 52
# Spool buffers kept for the next body (4 MiB each): a fresh bytearray per request costs a memset and a page fault
# per 4 KiB on first touch and an munmap on release, as much CPU as writing the body to the spool file. Each large
# body in flight holds two, so 16 cover the client's default 5 parallel parts (ossfs `parallel_count`) with room;
# they are memory the server reached at its peak anyway (at most 64 MiB kept).
SPOOL_BUFFERS_KEPT = 16
FAST_BODY_MIN = 256 * 1024
IN_MEMORY_BODY_MAX = 64 * 1024
MAX_HEAD_SIZE = 256 * 1024
SENDFILE_CHUNK = 16 * 1024 * 1024
# Response bodies up to this size are read and sent together with the head in one send (no sendfile).
COALESCE_MAX = 64 * 1024
# Worker threads for the core: requests run there in parallel, and one waiting for another's key lock (locking.py)
# occupies one, so there are enough that a few writers queued on one key do not hold up everyone else.
CORE_THREADS = 32
EMPTY_MD5 = hashlib.md5(b"").digest()
# Operations whose body x-oss-traffic-limit throttles: uploads (request body) and downloads (response body).
UPLOAD_LIMITED_OPS = frozenset({"PutObject", "UploadPart", "AppendObject"})
DOWNLOAD_LIMITED_OPS = frozenset({"GetObject"})
_EMPTY_BODY = SpooledBody(path=None, size=0, md5=EMPTY_MD5, crc64=0, data=b"")
_EMPTY_BODY_NO_MD5 = SpooledBody(path=None, size=0, md5=None, crc64=0, data=b"")
# Operations the core answers on the event loop itself, without a worker thread: they take no lock (locking.py,
# rule 1) and read one or two rows by primary key, which costs less (~0.1 ms) than the hop to a worker thread and
# back (a thread wakeup, trio's wakeup socket, a reschedule). A request held by a "hold" fault still goes to a
# worker thread, since it must wait there.
INLINE_OPS = frozenset({"HeadObject", "GetObject", "GetObjectMeta", "HeadBucket"})
# Listings of at most this many entries also run on the event loop: they take no lock either, and a page costs at
# most max-keys + 1 index seeks (listing.py). The mount asks such pages for every lookup that a HEAD does not answer
# (max-keys 1 or 2: is it a directory?), where the hop to a worker thread and back was ~40 % of the request's CPU.
INLINE_LIST_OPS = frozenset({"ListObjects", "ListObjectsV2"})
INLINE_LIST_MAX_KEYS = 10


def runs_inline(route: Route) -> bool:
    """Whether the core answers this request on the event loop (no lock, a bounded read): see INLINE_OPS."""
    if route.op in INLINE_OPS:
        return True
    if route.op not in INLINE_LIST_OPS or route.target is None:
        return False
    max_keys = route.target.query.get("max-keys") or ""
    # At most 4 digits before int(): a longer value (int() refuses more than 4300 digits, sys.int_info) goes to the
    # core, which answers it with InvalidArgument.
    return (max_keys.isascii() and max_keys.isdigit() and len(max_keys) <= 4
            and int(max_keys) <= INLINE_LIST_MAX_KEYS)


def traffic_limit_of(op: str, headers: dict[str, str]) -> int | None:
    """The x-oss-traffic-limit (bit/s) a request's body is throttled to; None when absent, invalid (the core
    answers 400) or not applicable to the operation."""
    if op not in UPLOAD_LIMITED_OPS and op not in DOWNLOAD_LIMITED_OPS:
        return None
    try:
        return parse_traffic_limit(headers.get(TRAFFIC_LIMIT_HEADER))
    except OssError:
        return None


def _slowest(*rates: int) -> int:
    """The smallest positive rate (bytes per second); 0 when none limits."""
    return min((rate for rate in rates if rate > 0), default=0)


class _Pacer:
    """Keeps a byte stream at or below `rate` bytes per second (0: unlimited), in pieces of 1/20 s."""

    def __init__(self, rate: int):
        self.rate = rate
        self._started = trio.current_time()

    def piece(self, wanted: int) -> int:
        """How much to move in one go."""
        return min(wanted, max(1, self.rate // 20)) if self.rate else wanted

    async def wait(self, done: int) -> None:
        """Sleep until `done` bytes are within the rate."""
        if self.rate:
            await trio.sleep_until(self._started + done / self.rate)


class ClientGone(Exception):
    """The peer closed or reset the connection before the exchange finished (or stopped reading a response);
    `sent` is how many response body bytes had gone out."""

    sent = 0


class IdleTimeout(Exception):
    """No request began within `idle_timeout` (nothing was received)."""


class HeadTimeout(Exception):
    """A request head was not complete `header_timeout` seconds after its first byte."""


class BodyTimeout(Exception):
    """A request body paused for longer than `body_timeout`."""


class MalformedBody(Exception):
    """A request body whose framing is broken; `error` is the answer, `framing_lost` whether the connection can go
    on (an aws-chunked error inside a well-framed body) or must close (a broken `Transfer-Encoding: chunked`)."""

    def __init__(self, error: OssError, framing_lost: bool):
        super().__init__(error.message)
        self.error = error
        self.framing_lost = framing_lost


@dataclass(frozen=True)
class FrontLimits:
    """How long the front waits for a client and how many it serves at once (`ossmount serve` flags).

    `idle_timeout`: seconds a connection may wait for its next request (nothing received yet).
    `header_timeout`: seconds from a request's first byte until its head must be complete.
    `body_timeout`: longest pause, in seconds, in a request body being received or a response being sent.
    `max_connections`: connections served at once; more wait in the kernel's listen backlog."""

    idle_timeout: float = 120.0
    header_timeout: float = 60.0
    body_timeout: float = 120.0
    max_connections: int = 2048

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


# errno values of accept() that mean "out of resources for now": wait and retry (as trio.serve_listeners does)
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class ConnectionAborted(Exception):
    """We reset the connection on purpose (fault injection); nothing more may be sent."""


@dataclass(frozen=True)
class _FileSpan:
    """A file region handed through h11 untouched; `len()` lets h11 check Content-Length framing."""

    fd: int
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length


@functools.lru_cache(maxsize=None)
def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


# A block of header lines "name: value\r\n" each of which h11 would accept (h11._abnf: a token, then a field-value:
# no NUL, CR, LF or other whitespace but inner SP/HTAB, none at either end). When the block holds exactly one LF per
# header (no name or value hides a line break) and a name can hold no ':' or SP, the block matches exactly when every
# line does: one regex call instead of two per header.
_VALID_HEADER_BLOCK = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+: (?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?\r\n)*")


def _response_event(status: int, headers: list[tuple[str, bytes]]) -> h11.Response:
    """An h11 Response of `headers` (str names, bytes values). h11 checks every name and value with two regexes and a
    type coercion each (~8 % of a HEAD's CPU); when one match over the whole header block shows they are all valid,
    the event is built as h11 builds the ones it parses (`_parsed=True`, h11 pinned in pyproject.toml): the framing
    headers (Content-Length, Transfer-Encoding) are still checked. Otherwise h11's own checks run and raise."""
    try:
        encoded = [(name.encode("ascii"), value) for name, value in headers]
    except UnicodeEncodeError:
        encoded = None
    block = b"" if encoded is None else b"".join([b"%s: %s\r\n" % pair for pair in encoded])
    if encoded is not None and block.count(b"\n") == len(encoded) and _VALID_HEADER_BLOCK.fullmatch(block):
        return h11.Response(status_code=status, headers=encoded, reason=_reason(status), _parsed=True)
    return h11.Response(status_code=status, headers=headers, reason=_reason(status))


# Header names h11 writes before the others (Host) or that change how it frames a response, as they start a line of a
# lowercased header block: such a response head is left to h11 (`_Channel.response_head`).
_FRAMING_FIELDS = (b"\nhost:", b"\ncontent-length:", b"\ntransfer-encoding:", b"\nconnection:")


def _plain_header_block(headers: list[tuple[str, bytes]]) -> bytes | None:
    """The header lines h11 would write for `headers` (str names, bytes values) when it would accept every one
    (`_VALID_HEADER_BLOCK`) and none is one of `_FRAMING_FIELDS`; None otherwise."""
    try:
        block = b"".join([b"%s: %s\r\n" % (name.encode("ascii"), value) for name, value in headers])
    except (UnicodeEncodeError, TypeError):
        return None
    if block.count(b"\n") != len(headers) or not _VALID_HEADER_BLOCK.fullmatch(block):
        return None
    lowered = b"\n" + block.lower()
    for field in _FRAMING_FIELDS:
        if field in lowered:
            return None
    return block


def _decode_header_value(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _lowercase_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = _decode_header_value(value)
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


# h11's request-head grammar (h11 0.16 `_abnf`, `_readers`; h11 is pinned in pyproject.toml) narrowed to HTTP/1.1
# with CR LF line ends: method token SP request-target (visible ASCII) SP "HTTP/1.1", then header lines
# `token ":" OWS field-value OWS`. A field-value is runs of bytes other than NUL and whitespace joined by SP/HTAB, so
# `OWS field-value OWS` is exactly a run of bytes other than NUL, CR, LF, VT and FF. A line starting with SP/HTAB
# (obs-fold, which h11 joins) or ending in a bare LF does not match, and goes to h11. (httptools, which reads answer
# heads in store/transport.py, costs as much per head, ~8 µs, and differs from h11 both ways: it takes two Host
# fields or none, and refuses control bytes h11 allows in a value. This check would be needed anyway, so llhttp
# would only be a second grammar to keep in step.)
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_PLAIN_REQUEST_HEAD = re.compile(rb"(%s) ([\x21-\x7e]+) HTTP/1\.1\r\n((?:%s:[^\x00\n\r\x0b\x0c]*\r\n)*)\r\n"
                                 % (_TOKEN, _TOKEN))
_BLANK_LINE = re.compile(rb"\n\r?\n")  # where h11 finds the end of a head (h11 `_receivebuffer`)
# Request headers that make h11 do more than read a head and an empty body: framing of a body (Content-Length and
# Transfer-Encoding, also refused when malformed or repeated), 100-continue, a protocol switch.
_H11_REQUEST_HEADERS = frozenset({"content-length", "transfer-encoding", "expect", "upgrade"})


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request head as the front reads it: `method`, `target` (UTF-8, else latin-1) and `headers` as
    `_lowercase_headers` makes them. `event` is h11's Request when h11 read the head; None when
    `_plain_request_head` did, and then the request has no body and the connection stays open after it."""

    method: str
    target: str
    headers: dict[str, str]
    event: h11.Request | None = None


def _plain_request_head(head: bytes) -> RequestHead | None:
    """The head `head` (a whole head, up to and including its blank line) when h11 would read it as a bodiless
    HTTP/1.1 request that keeps the connection alive, with the same fields; None for anything h11 must read: outside
    the grammar above, not exactly one Host, Content-Length, Transfer-Encoding, Expect, Upgrade, CONNECT, or a
    Connection header naming close."""
    match = _PLAIN_REQUEST_HEAD.fullmatch(head)
    if match is None:
        return None
    method, target, block = match.groups()
    if method == b"CONNECT":
        return None
    # Each line of the block is `token ":" value CR LF` (matched above), and a token holds no ":".
    try:  # as `_decode_header_value` decodes each value: the block is UTF-8 exactly when every value is
        lines = block.decode("utf-8").split("\r\n")
    except UnicodeDecodeError:
        lines = [_decode_header_value(line) for line in block.split(b"\r\n")]
    headers: dict[str, str] = {}
    for line in lines[:-1]:  # the block ends with CR LF
        name, _, value = line.partition(":")
        key = name.lower()
        text = value.strip(" \t")
        if key not in headers:
            headers[key] = text
        elif key == "host":
            return None  # h11: "Found multiple Host: headers"
        else:
            headers[key] = f"{headers[key]},{text}"
    if ("host" not in headers or not _H11_REQUEST_HEADERS.isdisjoint(headers)
            or "close" in headers.get("connection", "").lower()):
        return None
    return RequestHead(method.decode("ascii"), _decode_header_value(target), headers)


@contextlib.contextmanager
def _single_exception_unwrapped() -> Iterator[None]:
    """Re-raise a nursery's ExceptionGroup holding one exception as that exception, so that callers
    can keep catching ClientGone (trio nurseries always wrap)."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = exception_leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


class _Channel:
    """One client connection: the socket, and the h11 connection of an exchange h11 runs (`conn`, which the fast
    body path may replace), None while no exchange is under way or one of a plain request (module docstring). Every
    wait on the peer is bounded by `limits`."""

    def __init__(self, sock: trio.socket.SocketType, limits: FrontLimits):
        self.sock = sock
        self.limits = limits
        self.conn: h11.Connection | None = None
        self.eof = False  # the peer closed its side
        self.counted = False
        self._lowat = 1  # the socket's SO_RCVLOWAT
        self._received = bytearray()  # bytes received and not yet read, while `conn` is None (appended in place: a
        # head trickling in byte by byte is not copied whole on every read)
        self._searched = 0  # how far `_received` holds no end of a head
        self._plain_head = b""  # the head of the plain request being served
        self._head_only = False  # its response has no body (HEAD; 204, 304)
        self._unsent = 0  # body bytes its response still owes (Content-Length framing)

    async def _recv(self, deadline: float, timeout: type[Exception], *, wait_first: bool = False) -> bytes:
        # What has arrived is taken at once (one system call, no pass through the scheduler); only an empty socket
        # is waited for, until `deadline`. `wait_first`: nothing is expected yet (the next request of a kept-alive
        # connection), so wait for the socket before the first try instead of failing one call.
        fd = self.sock.fileno()
        if wait_first:
            with trio.move_on_at(deadline) as scope:
                await trio.lowlevel.wait_readable(self.sock)
            if scope.cancelled_caught:
                raise timeout()
        while True:
            try:
                data = os.read(fd, RECV_SIZE)
            except BlockingIOError:
                with trio.move_on_at(deadline):
                    await trio.lowlevel.wait_readable(self.sock)
                    continue
                raise timeout() from None
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            self.eof = not data
            if len(data) == RECV_SIZE:  # a stream of bytes (a body through h11): other connections' turn between
                await trio.lowlevel.checkpoint()  # pieces, so a fast sender never holds the event loop
            return data

    async def next_request(self) -> RequestHead | None:
        """The next request head, None when the peer closed the connection between requests: `idle_timeout` until
        its first byte, then `header_timeout`. Raises IdleTimeout, HeadTimeout, h11.RemoteProtocolError."""
        head_deadline = trio.current_time() + self.limits.header_timeout if self._received else None
        idle_deadline = trio.current_time() + self.limits.idle_timeout
        while True:
            if self.conn is None:
                head = self._plain_request()
                if head is not None:
                    return head
            if self.conn is not None:
                event = self.conn.next_event()
                if isinstance(event, h11.Request):
                    return RequestHead(event.method.decode("ascii", "replace"), _decode_header_value(event.target),
                                       _lowercase_headers(event.headers), event)
                if event is not h11.NEED_DATA:  # ConnectionClosed, or a state we do not expect: give up
                    return None
                if self.conn.trailing_data[0] and head_deadline is None:  # part of a pipelined head is here
                    head_deadline = trio.current_time() + self.limits.header_timeout
            if head_deadline is None:
                data = await self._recv(idle_deadline, IdleTimeout, wait_first=True)
                if data:
                    head_deadline = trio.current_time() + self.limits.header_timeout
            else:
                data = await self._recv(head_deadline, HeadTimeout)
            if self.conn is None:
                self._received += data
            else:
                self.conn.receive_data(data)

    def _plain_request(self) -> RequestHead | None:
        """The one place that decides who reads a head (module docstring): the next request out of the bytes
        received when it is plain (`_plain_request_head`); None when more bytes are needed, or when h11 must read
        it, after replaying them into a fresh h11 connection (`conn`)."""
        received = self._received
        if received and received[0] >= 0x21:  # else h11 refuses at once ("illegal request line")
            blank = _BLANK_LINE.search(received, self._searched)
            if blank is None:
                if len(received) <= MAX_HEAD_SIZE and not self.eof:
                    self._searched = max(0, len(received) - 2)
                    return None
            else:
                end = blank.end()
                plain_head = received[:end]
                head = _plain_request_head(plain_head)
                if head is not None:
                    self._plain_head = plain_head
                    self._head_only = head.method == "HEAD"
                    self._received = received[end:]
                    self._searched = 0
                    return head
        elif not received and not self.eof:
            return None
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self.conn.receive_data(received)
        if self.eof:
            self.conn.receive_data(b"")
        self._received = bytearray()
        self._searched = 0
        return None

    def _replay_into_h11(self) -> None:
        """Let h11 run the rest of the plain request's exchange: a fresh connection that has read its head and its
        (empty) body. The bytes received after the head stay in `_received` until the exchange ends."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        conn.receive_data(self._plain_head)
        request, end = conn.next_event(), conn.next_event()
        assert isinstance(request, h11.Request) and isinstance(end, h11.EndOfMessage), (request, end)
        self.conn = conn

    def next_cycle(self) -> bool:
        """Ready for the next request after an exchange; False when the connection must close (h11 says so)."""
        conn = self.conn
        if conn is None:
            return True
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        trailing, closed = conn.trailing_data
        self._received = bytearray(trailing) + self._received
        self.eof = self.eof or closed
        self.conn = None
        return True

    def take_empty_body(self) -> None:
        """Take the end of a request body h11 knows to be empty (a plain request has no body to take)."""
        if self.conn is not None:
            event = self.conn.next_event()
            if not isinstance(event, h11.EndOfMessage):
                raise ClientGone(f"unexpected {type(event).__name__} for a request without a body")

    async def next_event(self) -> Any:
        """The next body event; raises BodyTimeout after a pause of `body_timeout`. A plain request has no body:
        its end is there at once."""
        if self.conn is None:
            return h11.EndOfMessage()
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self._recv(trio.current_time() + self.limits.body_timeout, BodyTimeout))

    async def recv_into(self, view: memoryview) -> int:
        """Raw body bytes (the fast path) into `view`: what has arrived is taken at once; an empty socket is waited
        for until at least `len(view)` bytes (at most `BODY_LOWAT_MAX`) are there, or the peer closed, so a fast
        sender costs one wakeup per that much instead of one per TCP segment burst. Raises BodyTimeout after a pause
        of `body_timeout`, ClientGone on a socket error; 0 is the peer's end of stream."""
        fd = self.sock.fileno()
        timeout = self.limits.body_timeout
        deadline = None
        last_try = False
        while True:
            try:
                return os.readv(fd, [view])
            except BlockingIOError:
                if last_try:
                    raise BodyTimeout() from None
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if deadline is None:
                self._set_lowat(min(len(view), BODY_LOWAT_MAX))
                deadline = trio.current_time() + timeout
            with trio.move_on_at(deadline) as scope:
                await trio.lowlevel.wait_readable(self.sock)
            if scope.cancelled_caught:
                # Fewer bytes than the low-water mark may have trickled in meanwhile: only a real pause ends the body.
                quiet = self._seconds_since_data()
                if quiet is not None and quiet >= timeout:
                    raise BodyTimeout()
                if quiet is not None:
                    deadline = trio.current_time() + timeout - quiet
                else:  # no TCP_INFO: whatever is queued counts as progress, nothing queued is the pause
                    last_try = True

    def _set_lowat(self, lowat: int) -> None:
        # SO_RCVLOWAT (socket(7)): epoll reports the socket readable only once `lowat` bytes are queued, or at EOF or
        # an error, so a wait cannot outlast the peer. A non-blocking read still returns whatever is there.
        if lowat != self._lowat:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            except OSError:
                return  # the socket is going away; the next read says so
            self._lowat = lowat

    def _seconds_since_data(self) -> float | None:
        """Time since the peer's last data segment arrived (TCP_INFO `tcpi_last_data_recv`, Linux), None if unknown."""
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LAST_DATA_RECV + 4)
        except (OSError, AttributeError):
            return None
        if len(info) < TCP_INFO_LAST_DATA_RECV + 4:
            return None
        return struct.unpack_from("I", info, TCP_INFO_LAST_DATA_RECV)[0] / 1000

    def end_body(self) -> None:
        """Back to waking on every byte (request heads are small) once a body has been received or abandoned."""
        self._set_lowat(1)

    async def send(self, event: Any) -> None:
        """Send an h11 event; h11 runs the rest of a plain request's exchange from here."""
        if self.conn is None:
            self._replay_into_h11()
        data = self.conn.send(event)
        if data:
            await self.send_bytes(data)

    def response_head(self, status: int, headers: list[tuple[str, bytes]], length: int) -> bytes:
        """The head of a response with `headers` (str names, bytes values, no Content-Length) and a body of `length`
        bytes (Content-Length is added). Written here for a plain request when `_plain_header_block` passes the
        headers and the status is one h11 sends (the bytes h11 writes); otherwise h11 writes it, or raises."""
        if self.conn is None:
            block = _plain_header_block(headers)
            if block is not None and 200 <= status <= 999:
                self._unsent = 0 if self._head_only or status in (204, 304) else length
                return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n" % (status, _reason(status), block, length)
            self._replay_into_h11()
        return self.conn.send(_response_event(status, headers + [("Content-Length", b"%d" % length)]))

    def body_pieces(self, data: Any) -> list[Any]:
        """What goes on the wire for response body `data` (bytes, memoryview or `_FileSpan`, passed through
        untouched): h11 frames it, or it goes out as it is within the Content-Length (h11's error beyond)."""
        if self.conn is not None:
            return self.conn.send_with_data_passthrough(h11.Data(data=data)) or []
        if len(data) > self._unsent:
            raise h11.LocalProtocolError("Too much data for declared Content-Length")
        self._unsent -= len(data)
        return [data]

    def end_of_message(self) -> bytes:
        """What ends the response on the wire (h11's error if the body fell short of its Content-Length)."""
        if self.conn is not None:
            return self.conn.send(h11.EndOfMessage()) or b""
        if self._unsent:
            raise h11.LocalProtocolError("Too little data for declared Content-Length")
        return b""

    async def send_bytes(self, data: bytes | memoryview) -> None:
        """Send all of `data`; ClientGone if the peer is gone or accepts nothing for `body_timeout`."""
        # Written straight to the non-blocking socket (one system call for a response that fits its buffer, no pass
        # through the scheduler); only a full socket is waited for.
        view = memoryview(data)
        fd = self.sock.fileno()
        while view:
            try:
                sent = os.write(fd, view)
            except BlockingIOError:
                await self.wait_writable()
                continue
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            view = view[sent:]

    async def wait_writable(self) -> None:
        with trio.move_on_after(self.limits.body_timeout):
            await trio.lowlevel.wait_writable(self.sock)
            return
        raise ClientGone(f"the client read nothing for {self.limits.body_timeout:g} s")

    async def send_refusal(self, response: Response) -> None:
        """Send an error response outside h11's state machine, then the connection must close."""
        body = response.body if isinstance(response.body, bytes) else b""
        lines = [f"HTTP/1.1 {response.status} {_reason(response.status).decode()}".encode()]
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection"):
                lines.append(name.encode("latin-1", "replace") + b": " + value.encode("utf-8"))
        lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
        try:
            await self.send_bytes(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        except ClientGone:
            pass

    def abort(self) -> None:
        """Close with SO_LINGER 0 so that the peer sees a TCP reset, not an orderly close."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


class _BufferPool:
    """Reusable `size`-byte bytearrays, at most `kept` of them held while idle (sans-IO: single-threaded use from
    the event loop)."""

    def __init__(self, size: int, kept: int):
        self.size = size
        self.kept = kept
        self._free: list[bytearray] = []

    def take(self) -> bytearray:
        return self._free.pop() if self._free else bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        if len(self._free) < self.kept and len(buffer) == self.size:
            self._free.append(buffer)


class _BodySpool:
    """Receives a request body into memory or a file under `tmp_dir`, hashing as it goes.

    Without `md5` only the CRC is computed (MD5 is the slowest step of a PUT) and the body's `md5` is None."""

    def __init__(self, tmp_dir: str, *, md5: bool = True, sha256: bool = False):
        self._tmp_dir = tmp_dir
        self._md5 = hashlib.md5() if md5 else None
        self._sha256 = hashlib.sha256() if sha256 else None
        self._crc = 0
        self._size = 0
        self._memory = bytearray()
        self._fd: int | None = None
        self.path: str | None = None

    def _open_file(self) -> None:
        self.path = os.path.join(self._tmp_dir, f"upload-{uuid.uuid4().hex}")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        if self._memory:
            os.write(self._fd, self._memory)
            self._memory = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        """Append `data`: hash it, CRC it and store it. hashlib, the CRC and os.write release the GIL, so a worker
        thread runs this while the event loop receives the next buffer."""
        if not data:
            return
        if self._md5 is not None:
            self._md5.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        self._crc = crc64(data, self._crc)
        self._size += len(data)
        if self._fd is None and self._size > IN_MEMORY_BODY_MAX:
            self._open_file()
        if self._fd is None:
            self._memory += data
            return
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def finish(self, aws_chunked: Any = None) -> SpooledBody:
        md5 = self._md5.digest() if self._md5 is not None else None
        sha256 = self._sha256.digest() if self._sha256 is not None else None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            return SpooledBody(self.path, self._size, md5, self._crc, sha256=sha256, aws_chunked=aws_chunked)
        return SpooledBody(None, self._size, md5, self._crc, data=bytes(self._memory), sha256=sha256,
                           aws_chunked=aws_chunked)

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        remove_quietly(self.path)
        self.path = None


def remove_quietly(path: str | None) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _aws_chunked_error(exc: ChunkedFormatError) -> OssError:
    """The answer to an aws-chunked body that cannot be decoded (S3's codes: a body that ends early is
    IncompleteBody, anything else about its chunks InvalidRequest)."""
    if exc.incomplete:
        return OssError(400, "IncompleteBody", "The request body terminated unexpectedly")
    return OssError(400, "InvalidRequest", f"Malformed aws-chunked request body: {exc}.")


def _request_record(op: str, method: str, target: str, bucket: str | None, key: str | None, headers: dict[str, str],
                    status: int, sent: int, received: int, fault: str | None,
                    traffic_limit: int | None) -> RequestRecord:
    """The request log's record of one exchange (built when the log is read: most never are)."""
    logged, withheld = loggable_headers(headers)
    return RequestRecord(
        op=op, method=method, bucket=bucket, key=key, status=status, bytes=sent, request_bytes=received,
        user_agent=headers.get("user-agent"), range=headers.get("range"), fault=fault, headers=logged,
        withheld_headers=withheld, query=redact_query(target.partition("?")[2]), traffic_limit=traffic_limit)


def _split_admin_path(target: str) -> str | None:
    path = target.split("?", 1)[0]
    if path.startswith(ADMIN_PREFIX):
        return urllib.parse.unquote(path[len(ADMIN_PREFIX):])
    return None


ETAG_MODES = ("md5", "fast")


class HttpFront:
    """Serves `core` (a ServerCore) over HTTP/1.1; `admin` holds counters, faults and the request log.

    `etag="fast"` skips MD5 for bodies sent without Content-MD5, so their ETags derive from the CRC-64
    (oss-api.md §5.2: MD5 caps PUT throughput; ossfs `enable_content_md5` needs the default, "md5")."""

    def __init__(self, core: Any, admin: AdminApi, *, core_threads: int = CORE_THREADS,
                 clock: Callable[[], float] = time.monotonic, etag: str = "md5",
                 limits: FrontLimits = FrontLimits()):
        if etag not in ETAG_MODES:
            raise ValueError(f"etag must be one of {ETAG_MODES}, got {etag!r}")
        self.core = core
        self.admin = admin
        self.limits = limits
        self._etag = etag
        self._limiter = trio.CapacityLimiter(core_threads)
        self._clock = clock
        self._buffers = _BufferPool(SPOOL_BUFFER_SIZE, SPOOL_BUFFERS_KEPT)

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        """Accept connections on `listeners` until cancelled, serving at most `limits.max_connections` at once."""
        slots = trio.Semaphore(self.limits.max_connections)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, slots, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, slots: trio.Semaphore,
                           nursery: trio.Nursery) -> None:
        while True:
            await slots.acquire()  # at the limit, new connections wait in the listen backlog
            try:
                stream = await listener.accept()
            except OSError as exc:
                slots.release()
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.warning("accept: %s; waiting 100 ms", os.strerror(exc.errno))
                await trio.sleep(0.1)
                continue
            except BaseException:
                slots.release()
                raise
            nursery.start_soon(self._serve_connection, stream, slots)

    async def _serve_connection(self, stream: trio.SocketStream, slots: trio.Semaphore) -> None:
        try:
            await self.handle_connection(stream)
        finally:
            slots.release()

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """Run the request/response cycles of one keep-alive connection."""
        channel = _Channel(stream.socket, self.limits)
        try:
            while True:
                try:
                    head = await channel.next_request()
                except h11.RemoteProtocolError as exc:
                    await self._send_bad_request(channel, exc)
                    return
                except IdleTimeout:
                    log.debug("closing a connection idle for %g s", self.limits.idle_timeout)
                    return
                except HeadTimeout:
                    log.debug("a request head was incomplete after %g s", self.limits.header_timeout)
                    await channel.send_refusal(self.core.refuse(Request("GET", "/", {}), OssError(
                        408, "RequestTimeout", "Your socket connection to the server was not read from or written "
                        "to within the timeout period.")))
                    return
                if head is None or not await self._exchange(channel, head) or not channel.next_cycle():
                    return
        except (ClientGone, ConnectionAborted):
            pass
        except Exception:
            log.exception("internal error on an HTTP connection")
        finally:
            if channel.counted:
                self.admin.connections.closed()
            channel.sock.close()

    async def _send_bad_request(self, channel: _Channel, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint if 400 <= exc.error_status_hint < 600 else 400
        body = f"Bad request: {exc}\n".encode()
        log.debug("malformed request: %s", exc)
        try:
            await channel.send(h11.Response(status_code=status, headers=[
                ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                ("Connection", "close"), ("Server", "AliyunOSS")]))
            await channel.send(h11.Data(data=body))
            await channel.send(h11.EndOfMessage())
        except (h11.LocalProtocolError, ClientGone):
            pass

    async def _exchange(self, channel: _Channel, head: RequestHead) -> bool:
        """Serve one request; False when the connection must be dropped afterwards."""
        started = self._clock()
        method, target, headers = head.method, head.target, head.headers

        admin_path = _split_admin_path(target)
        if admin_path is not None:
            return await self._admin_exchange(channel, method, admin_path, headers)

        route = self.core.classify(Request(method, target, headers))
        op, bucket, key = route.op, route.bucket, route.key
        self.admin.counters.count(op)
        if not channel.counted:  # connections that carry OSS requests (not admin calls) are counted
            channel.counted = True
            self.admin.connections.opened()
        plan = self.admin.faults.decide(op)
        traffic_limit = traffic_limit_of(op, headers)
        if plan.delay_seconds:
            await trio.sleep(plan.delay_seconds)
        if plan.reset_before_response:
            self._record(op, method, target, bucket, key, headers, 0, 0, 0, "reset")
            log.debug("%s %s %s -> injected reset", method, bucket, key)
            channel.abort()
            raise ConnectionAborted()

        # OSS answers a GET/HEAD that declares a body it never sends (oss2's signed-URL tests do this): such a
        # body means nothing, so do not wait for it, and drop the connection afterwards since its framing is lost.
        ignore_body = method in ("GET", "HEAD") and (
            "transfer-encoding" in headers or headers.get("content-length", "0") != "0")
        upload_rate = traffic_limit // 8 if traffic_limit and op in UPLOAD_LIMITED_OPS else 0
        try:
            body = _EMPTY_BODY if ignore_body else await self._receive_body(channel, head, headers, upload_rate)
        except BodyTimeout:
            log.debug("%s %s %s: the body paused for %g s", method, bucket, key, self.limits.body_timeout)
            error = OssError(400, "RequestTimeout", "Your socket connection to the server was not read from or "
                             "written to within the timeout period.")
            await channel.send_refusal(self.core.refuse(Request(method, target, headers), error))
            self._record(op, method, target, bucket, key, headers, 400, 0, 0, None)
            return False
        except MalformedBody as malformed:
            log.debug("%s %s %s: malformed body: %s", method, bucket, key, malformed)
            refusal = self.core.refuse(Request(method, target, headers), malformed.error)
            self._record(op, method, target, bucket, key, headers, refusal.status, 0, 0, None)
            if malformed.framing_lost:
                await channel.send_refusal(refusal)
                return False
            await self._send_response(channel, method, refusal, FaultPlan())
            return True
        response: Response | None = None
        try:
            if plan.error is not None:
                status, response_headers, payload = injected_error_response(
                    plan.error, method=method, bucket=bucket, key=key)
                response = Response(status, response_headers, payload)
                fault = "error"
            else:
                hold = functools.partial(self.admin.faults.hold, plan.hold_seconds) if plan.hold_seconds else None
                request = Request(method, target, headers, body, hold=hold)
                if hold is None and runs_inline(route):
                    response = self._handle_in_core(request, route)
                else:
                    response = await trio.to_thread.run_sync(self._handle_in_core, request, route,
                                                             limiter=self._limiter)
                fault = "hold" if hold is not None else None
            download_rate = traffic_limit // 8 if traffic_limit and op in DOWNLOAD_LIMITED_OPS else 0
            try:
                sent = await self._send_response(channel, method, response, plan,
                                                 _slowest(plan.bytes_per_second, download_rate))
            except ClientGone as gone:
                self._record(op, method, target, bucket, key, headers, response.status, gone.sent, body.size,
                             "client-gone", traffic_limit)
                log.debug("%s %s %s %d: the client went away after %d body bytes (%s)", method, bucket or "-",
                          key or "-", response.status, gone.sent, gone)
                raise
        finally:
            if response is not None:
                response.close()  # a GET's blobs stay pinned until here
            if body.path is not None:
                remove_quietly(body.path)
        elapsed_ms = (self._clock() - started) * 1000
        self._record(op, method, target, bucket, key, headers, response.status, sent, body.size, fault,
                     traffic_limit)
        log.debug("%s %s %s %d %d %.1fms", method, bucket or "-", key or "-", response.status, sent, elapsed_ms)
        return not ignore_body

    def _handle_in_core(self, request: Request, route: Route | None = None) -> Response:
        """`core.handle` (given the `route` classify found for this request), which should never raise; if it does,
        the client still gets a 500 InternalError."""
        try:
            return self.core.handle(request, route)
        except Exception:
            log.exception("the server core raised on %s %s", request.method, request.target)
            route = self.core.classify(request)
            rule = FaultRule(action="error", status=500, code="InternalError",
                             message="We encountered an internal error. Please try again.")
            status, headers, payload = injected_error_response(
                rule, method=request.method, bucket=route.bucket, key=route.key)
            return Response(status, headers, payload)

    def _record(self, op: str, method: str, target: str, bucket: str | None, key: str | None,
                headers: dict[str, str], status: int, sent: int, received: int, fault: str | None,
                traffic_limit: int | None = None) -> None:
        self.admin.requests.add_lazily(functools.partial(
            _request_record, op, method, target, bucket, key, dict(headers), status, sent, received, fault,
            traffic_limit))

    async def _admin_exchange(self, channel: _Channel, method: str, path: str, headers: dict[str, str]) -> bool:
        chunks = []
        while True:
            event = await channel.next_event()
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise ClientGone("connection closed during an admin request")
        if path.strip("/").startswith("fsck"):  # holds the store's write lock for a while: not on the event loop
            reply = await trio.to_thread.run_sync(self.admin.handle, method, path, headers, b"".join(chunks))
        else:
            reply = self.admin.handle(method, path, headers, b"".join(chunks))
        payload = reply.body()
        await channel.send(h11.Response(status_code=reply.status, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]))
        await channel.send(h11.Data(data=payload))
        await channel.send(h11.EndOfMessage())
        return True

    # -- request bodies -------------------------------------------------------------------------------

    async def _receive_body(self, channel: _Channel, head: RequestHead, headers: dict[str, str],
                            rate: int = 0) -> SpooledBody:
        """Spool the request body, reading at most `rate` bytes per second (0: as fast as it comes)."""
        md5 = self._etag == "md5" or "content-md5" in headers
        # A hex x-oss-/x-amz-content-sha256 is checked against the body (payload.py); aws-chunked bodies are unframed.
        sha256 = declares_sha256(headers)
        if "content-length" not in headers and "transfer-encoding" not in headers and not is_aws_chunked(headers):
            # No body (RFC 9112 §6.3: neither header means length 0): its end is here already, no need to wait.
            channel.take_empty_body()
            if not sha256:  # what an empty spool would give, without building one (most GETs and HEADs)
                return _EMPTY_BODY if md5 else _EMPTY_BODY_NO_MD5
            return _BodySpool(self.core.tmp_dir, md5=md5, sha256=sha256).finish()
        spool = _BodySpool(self.core.tmp_dir, md5=md5, sha256=sha256)
        if channel.conn is not None and channel.conn.they_are_waiting_for_100_continue:
            await channel.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        decoder = AwsChunkedDecoder() if is_aws_chunked(headers) else None
        pacer = _Pacer(rate)
        try:
            length = headers.get("content-length")
            chunked = "transfer-encoding" in headers
            if (decoder is None and not chunked and length is not None and length.isdigit()
                    and int(length) >= FAST_BODY_MIN and head.event is not None):
                await self._receive_fixed_body(channel, head.event, int(length), spool, pacer)
                return spool.finish()
            await self._receive_framed_body(channel, spool, pacer, decoder)
            return spool.finish(decoder.finish() if decoder is not None else None)
        except ChunkedFormatError as exc:
            spool.discard()
            raise MalformedBody(_aws_chunked_error(exc), framing_lost=False) from None
        except BaseException:
            spool.discard()
            raise

    async def _receive_framed_body(self, channel: _Channel, spool: _BodySpool, pacer: _Pacer,
                                   decoder: AwsChunkedDecoder | None = None) -> None:
        """Spool h11's Data events (at the pacer's rate); through `decoder` when the body is aws-chunked. A
        ChunkedFormatError reads the rest of the body (so the connection stays usable) and is then re-raised."""
        error: ChunkedFormatError | None = None
        received = 0
        while True:
            try:
                event = await channel.next_event()
            except h11.RemoteProtocolError as exc:
                if channel.eof:
                    raise ClientGone(f"incomplete request body: {exc}") from None
                raise MalformedBody(OssError(400, "InvalidRequest", f"Malformed chunked request body: {exc}."),
                                    framing_lost=True) from None
            if isinstance(event, h11.Data):
                if decoder is None:
                    spool.write(event.data)
                elif error is None:
                    try:
                        for piece in decoder.feed(event.data):
                            spool.write(piece)
                    except ChunkedFormatError as exc:
                        error = exc
                received += len(event.data)
                await pacer.wait(received)
            elif isinstance(event, h11.EndOfMessage):
                if error is not None:
                    raise error
                return
            else:
                raise ClientGone("connection closed before the request body ended")

    async def _receive_fixed_body(self, channel: _Channel, head: h11.Request, length: int,
                                  spool: _BodySpool, pacer: _Pacer) -> None:
        buffered, _closed = channel.conn.trailing_data
        first, pipelined = buffered[:length], buffered[length:]
        spool.write(first)
        remaining = length - len(first)
        received = len(first)
        # Two buffers (from the pool): while worker threads hash and write one, the socket fills the other.
        buffers = [self._buffers.take() for _ in range(2 if remaining > SPOOL_BUFFER_SIZE else 1 if remaining else 0)]
        free_send, free_receive = trio.open_memory_channel[bytearray](2)
        for buffer in buffers:
            free_send.send_nowait(buffer)
        full_send, full_receive = trio.open_memory_channel[tuple[bytearray, int]](0)
        try:
            with _single_exception_unwrapped():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._spool_worker, full_receive, free_send, spool)
                    async with full_send:
                        while remaining:
                            buffer = await free_receive.receive()
                            view = memoryview(buffer)
                            want = min(len(buffer), remaining)
                            filled = 0
                            # Fill the whole buffer before handing it on, so the thread hops are amortised.
                            while filled < want:
                                count = await channel.recv_into(view[filled:filled + pacer.piece(want - filled)])
                                if not count:
                                    raise ClientGone(f"connection closed with {remaining - filled} body bytes missing")
                                filled += count
                                received += count
                                await pacer.wait(received)
                            remaining -= filled
                            await full_send.send((buffer, filled))
        finally:
            channel.end_body()
            # The nursery has waited for the worker threads (they cannot be abandoned), so no thread holds a buffer.
            for buffer in buffers:
                self._buffers.give(buffer)
        channel.conn = self._resynchronised_connection(head, pipelined)

    async def _spool_worker(self, full: trio.MemoryReceiveChannel, free: trio.MemorySendChannel,
                            spool: _BodySpool) -> None:
        async with full:
            async for buffer, filled in full:
                # One thread hop per buffer: MD5, CRC-64 and the write (all release the GIL) in one worker thread,
                # while the event loop fills the other buffer.
                await trio.to_thread.run_sync(spool.write, memoryview(buffer)[:filled])
                free.send_nowait(buffer)

    @staticmethod
    def _resynchronised_connection(head: h11.Request, pipelined: bytes) -> h11.Connection:
        """A fresh h11 connection that has 'received' this request with an empty body."""
        lines = [b"%s %s HTTP/%s" % (head.method, head.target, head.http_version)]
        for name, value in head.headers:
            if name.lower() not in (b"content-length", b"transfer-encoding", b"expect"):
                lines.append(name + b": " + value)
        lines.append(b"content-length: 0")
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        conn.receive_data(b"\r\n".join(lines) + b"\r\n\r\n")
        if pipelined:
            conn.receive_data(pipelined)
        request = conn.next_event()
        end = conn.next_event()
        assert isinstance(request, h11.Request) and isinstance(end, h11.EndOfMessage), (request, end)
        return conn

    # -- responses ------------------------------------------------------------------------------------

    async def _send_response(self, channel: _Channel, method: str, response: Response, plan: FaultPlan,
                             rate: int = 0) -> int:
        """Write `response` (its body at most `rate` bytes per second, 0: unlimited); returns the body bytes sent."""
        length = response.body_length()
        # Stored x-oss-meta-* values may be non-ASCII; OSS sends them as UTF-8 bytes (h11 would refuse str).
        headers = [(name, value.encode("utf-8")) for name, value in response.headers
                   if name.lower() != "content-length"]
        head = channel.response_head(response.status, headers, length)
        body_expected = method != "HEAD" and response.status not in (204, 304) and response.status >= 200
        if not (body_expected and length):
            await channel.send_bytes(head + channel.end_of_message())
            return 0
        if length <= COALESCE_MAX and not rate and plan.reset_after_bytes is None:
            # A small response goes out in one send: one syscall, and one segment for the client to wake up for.
            body = response.body if isinstance(response.body, bytes) else _read_extents(response.body)
            await channel.send_bytes(b"".join((head, *channel.body_pieces(body), channel.end_of_message())))
            return len(body)
        await channel.send_bytes(head)
        sender = _BodySender(channel, plan, rate)
        try:
            if isinstance(response.body, bytes):
                sent = await sender.send_bytes(response.body)
            else:
                sent = await sender.send_extents(response.body)
        except ClientGone as gone:
            gone.sent = sender.sent
            raise
        await channel.send_bytes(channel.end_of_message())
        return sent


def _read_extents(extents: list[FileExtent]) -> bytes:
    """The bytes of `extents` (their blobs are pinned and never change); ClientGone when a blob file is shorter than
    its extent, since the response can then not be framed."""
    pieces = []
    for extent in extents:
        if extent.length == 0:
            continue
        fd = os.open(extent.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            piece = os.pread(fd, extent.length, extent.offset)
            while len(piece) < extent.length:
                more = os.pread(fd, extent.length - len(piece), extent.offset + len(piece))
                if not more:
                    raise ClientGone("the blob file is shorter than its extent")
                piece += more
        finally:
            os.close(fd)
        pieces.append(piece)
    return b"".join(pieces)


class _BodySender:
    """Sends a response body at most `rate` bytes per second (0: unlimited), applying the mid-body-reset
    fault of `plan`."""

    def __init__(self, channel: _Channel, plan: FaultPlan, rate: int = 0):
        self._channel = channel
        self._pacer = _Pacer(rate)
        self._reset_after = plan.reset_after_bytes
        self.sent = 0

    def _budget(self, wanted: int) -> int:
        """How many bytes may go out in one piece."""
        if self._reset_after is not None:
            wanted = min(wanted, self._reset_after - self.sent)
        return self._pacer.piece(wanted)

    async def _pace(self) -> None:
        if self._reset_after is not None and self.sent >= self._reset_after:
            log.debug("injected reset after %d body bytes", self.sent)
            self._channel.abort()
            raise ConnectionAborted()
        await self._pacer.wait(self.sent)

    async def send_bytes(self, body: bytes) -> int:
        view = memoryview(body)
        for piece in self._channel.body_pieces(view):
            piece_view = memoryview(piece)
            while piece_view:
                await self._pace()
                count = self._budget(len(piece_view))
                await self._channel.send_bytes(piece_view[:count])
                piece_view = piece_view[count:]
                self.sent += count
            await self._pace()
        return self.sent

    async def send_extents(self, extents: list[FileExtent]) -> int:
        for extent in extents:
            if extent.length == 0:
                continue
            fd = os.open(extent.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                span = _FileSpan(fd, extent.offset, extent.length)
                for piece in self._channel.body_pieces(span):
                    if isinstance(piece, _FileSpan):
                        await self._sendfile(piece)
                    else:
                        await self._channel.send_bytes(piece)
            finally:
                os.close(fd)
        await self._pace()
        return self.sent

    async def _sendfile(self, span: _FileSpan) -> None:
        sock = self._channel.sock
        offset, remaining = span.offset, span.length
        while remaining:
            await self._pace()
            count = self._budget(min(remaining, SENDFILE_CHUNK))
            try:
                written = os.sendfile(sock.fileno(), span.fd, offset, count)
            except BlockingIOError:
                await self._channel.wait_writable()
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise ClientGone(str(exc)) from None
                raise
            if written == 0:
                raise ClientGone("the blob file is shorter than its extent")  # cannot frame the rest
            offset += written
            remaining -= written
            self.sent += written
            await trio.lowlevel.checkpoint()
