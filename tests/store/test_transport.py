"""The store's HTTP transport (ossmount/store/transport.py): kept-alive connections, pool limits, abandoned bodies,
chunked and close-delimited answers, stale connections, timeouts and TLS with a private CA — against the local server
(its connection counters) and against scripted servers for answers the real one never gives."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable

import h11
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from ossmount.crc64 import crc64
from ossmount.credentials import Credentials
from ossmount.store import ObjectStore, RetryPolicy, types
from ossmount.store import transport as http
from ossmount.testing import LoopbackServer, TlsProxy

from .conftest import make_store

TIMEOUTS = http.Timeouts(connect=5, read=10)


class KeepAliveScript(LoopbackServer):
    """A loopback HTTP server that answers each request with the next of `answers` (raw response bytes, a tuple of
    pieces of them sent 50 ms apart, or a callable taking the request head and returning them, or None to close the
    connection without answering), on
    kept-alive connections, one thread per connection. `connections` counts accepted ones; `heads` and `bodies`
    record each request's head and body."""

    def __init__(self, answers: list[bytes | Callable[[bytes], bytes] | None]):
        super().__init__()
        self.answers = list(answers)
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []

    def _handle(self, client: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffered = b""
        with client:
            client.settimeout(10)
            while True:
                while b"\r\n\r\n" not in buffered:
                    try:
                        chunk = client.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffered) < length:
                    buffered += client.recv(65536)
                self.bodies.append(buffered[:length])
                buffered = buffered[length:]
                self.heads.append(head)
                answer = self.answers.pop(0) if self.answers else None
                if callable(answer):
                    answer = answer(head)
                if answer is None:
                    return
                pieces = answer if isinstance(answer, tuple) else (answer,)  # a tuple: sent piece by piece
                answer = b"".join(pieces)
                try:
                    for number, piece in enumerate(pieces):
                        if number:
                            time.sleep(0.05)
                        client.sendall(piece)
                except OSError:
                    return
                if b"connection: close" in answer.lower():
                    return


def ok(body: bytes = b"hello", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunked(*pieces: bytes, trailer: str = "") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer.encode() + b"\r\n"


async def fetch(transport: http.Transport, target: bytes = b"/b/k", method: bytes = b"GET",
                timeouts: http.Timeouts = TIMEOUTS) -> tuple[int, bytes]:
    async with await transport.request(method, target, [(b"host", b"127.0.0.1")], None, timeouts) as response:
        return response.status, await response.read(1 << 20)


# -- connection reuse and pool limits against the local server ----------------------------------------------------


async def test_small_requests_share_one_kept_alive_connection(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name)
    await store.put("k", b"x" * 100)
    local_server.admin.reset_connections()
    for _ in range(20):
        await store.head("k")
        assert await store.get_bytes("k", 0, 10) == b"x" * 10
        await store.list_page("")
        await store.put("k", b"x" * 100)
    assert local_server.admin.connections()["accepted"] == 0  # the put before the reset opened the only one
    assert store.statistics().connections_opened == 1


async def test_concurrent_requests_never_exceed_max_connections(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, max_connections=3)
    data = os.urandom(256 * 1024)
    await store.put("big", data)
    local_server.admin.reset_connections()
    open_before = local_server.admin.connections()["open"]  # the session's server: other tests' idle connections too
    local_server.admin.set_faults([{"op": "GetObject", "action": "delay", "delay_ms": 50}])
    try:
        results = []

        async def reader() -> None:
            results.append(await store.get_bytes("big", 0, len(data)))

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(reader)
    finally:
        local_server.admin.clear_faults()
    assert results == [data] * 12
    seen = local_server.admin.connections()
    assert seen["peak"] - open_before <= 2 and seen["accepted"] <= 2  # one was open from the put; at most 3 in all
    assert store.statistics().connections_opened == 3


async def test_a_response_abandoned_mid_body_never_poisons_the_pool(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, max_connections=1)
    data = os.urandom(2 * 1024 * 1024)
    await store.put("big", data)
    transport = store._transport
    target = store._addressing.path("big").encode()
    request = store._get_request("big", 0, None, None, None)
    store._signer.sign(request, store.credentials.current())
    _, headers = store._head(request, 0)
    response = await transport.request(b"GET", target, headers, None, TIMEOUTS)
    first = bytearray(1000)
    assert await response.read_into(memoryview(first)) == 1000
    response.release()  # 2 MiB - 1000 bytes never read: the connection must not go back to the pool
    assert transport.idle_connections == 0 and transport.busy_connections == 0
    assert await store.get_bytes("big") == data  # a fresh connection, the right bytes
    assert await store.get_bytes("big", 5, 10) == data[5:15]
    assert transport.idle_connections == 1
    assert store.statistics().connections_opened == 2


async def test_cancelled_request_releases_its_slot(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, max_connections=1)
    await store.put("k", b"v")
    local_server.admin.set_faults([{"op": "HeadObject", "action": "delay", "delay_ms": 2000, "count": 1}])
    try:
        with trio.move_on_after(0.3):
            await store.head("k")
        assert store._transport.busy_connections == 0
        assert (await store.head("k")).size == 1
    finally:
        local_server.admin.clear_faults()


# -- answers the local server never gives ---------------------------------------------------------------------------


async def test_chunked_answers_are_read_and_their_connection_reused():
    with KeepAliveScript([chunked(b"hel", b"lo"), chunked(b"wor", b"ld", trailer="x-trailer: 1\r\n"),
                          ok(b"third")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=2)
        assert await fetch(transport) == (200, b"hello")
        assert await fetch(transport) == (200, b"world")
        assert await fetch(transport) == (200, b"third")
    assert server.connections == 1 and transport.statistics.connections_opened == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",  # the server says close
    b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",  # HTTP/1.0: no keep-alive
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",  # the body ends at the close
])
async def test_answers_that_end_the_connection_are_not_reused(answer):
    with KeepAliveScript([answer, ok(b"again")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=2)
        assert await fetch(transport) == (200, b"hello")
        assert transport.idle_connections == 0
        assert await fetch(transport) == (200, b"again")
    assert server.connections == 2


def h11_reading(answer: bytes, method: bytes = b"GET") -> tuple[int, dict[str, str], bytes] | None:
    """What h11 alone makes of `answer` to one request: (status, headers as Response keeps them, body), or None
    if it refuses it."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=b"/b/k", headers=[(b"host", b"127.0.0.1")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(answer)
    status, headers, body = 0, {}, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers.raw_items():
                    key, text = name.lower().decode("latin-1"), value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            elif event is h11.NEED_DATA:
                return None
    except h11.RemoteProtocolError:
        return None


# Answer heads read by httptools on the fast path and heads it leaves to h11 (module docstring, "Framing"): the
# transport must read each exactly as h11 alone does, and keep the connection whenever the answer allows it.
FRAMING_CASES = {
    "plain": ok(b"hello", "ETag: \"abc\"\r\nx-oss-meta-a: 1\r\n"),
    "trailing whitespace and repeated fields": ok(b"hello", "x-a: one  \t\r\nX-A:two\r\nx-b:\r\n"),
    "100-continue first": b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"hello"),
    "a value h11 takes and llhttp refuses": ok(b"hello", "x-odd: a\x01b\r\n"),
    "bare LF line endings": b"HTTP/1.1 200 OK\nContent-Length: 5\nx-a: 1\n\nhello",
    "a repeated equal Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    "a no-body status": b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n",
    "a head in pieces": (b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\nx-a: 1\r\n", b"\r\nhello"),
    # The end of a head split across reads: each read is searched from where the last one stopped.
    "a blank line split after CR": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r", b"\nhello"),
    "a blank line split after LF CR": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", b"\r", b"\nhello"),
    "a bare-LF blank line split": (b"HTTP/1.1 200 OK\nContent-Length: 5\n", b"\n", b"hello"),
    "a head byte by byte": tuple(bytes([c]) for c in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n") + (b"hello",),
    "chunked in pieces": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n",
                          b"2\r\nlo\r\n0\r\n\r\n"),
    "a status line without a reason": b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello",
}


@pytest.mark.parametrize("answer", FRAMING_CASES.values(), ids=FRAMING_CASES.keys())
async def test_answers_are_read_as_h11_reads_them_and_their_connection_kept(answer):
    expected = h11_reading(b"".join(answer) if isinstance(answer, tuple) else answer)
    assert expected is not None
    with KeepAliveScript([answer, ok(b"again")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        async with await transport.request(b"GET", b"/b/k", [(b"host", b"127.0.0.1")], None, TIMEOUTS) as response:
            assert (response.status, response.headers, await response.read(1 << 20)) == expected
        assert await fetch(transport) == (200, b"again")
    assert server.connections == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",  # conflicting lengths
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nhello",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello",  # not a status line
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS where HTTP was expected
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
])
async def test_answers_h11_refuses_are_protocol_errors(answer):
    assert h11_reading(answer) is None
    with KeepAliveScript([answer]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        with pytest.raises(http.ProtocolError, match="malformed answer"):
            await fetch(transport)
        assert transport.busy_connections == 0 and transport.idle_connections == 0


async def test_a_head_answer_with_a_content_length_has_no_body_and_keeps_its_connection():
    with KeepAliveScript([b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nETag: \"e\"\r\n\r\n", ok(b"again")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        async with await transport.request(b"HEAD", b"/b/k", [(b"host", b"127.0.0.1")], None, TIMEOUTS) as response:
            assert response.status == 200 and response.headers["content-length"] == "4096"
            assert response.complete and await response.read(1 << 20) == b""
        assert await fetch(transport) == (200, b"again")
    assert server.connections == 1


_TOKEN = st.from_regex(rb"\A[-!#$%&'*+.^_`|~0-9A-Za-z]{1,12}\Z")
_VALUE = st.one_of(st.from_regex(rb"\A[\x21-\x7e]([ \x21-\x7e]{0,20}[\x21-\x7e])?\Z"), st.binary(max_size=12),
                   st.sampled_from([b"v\r\nx-b: 1", b"v\r\n", b"v\n", b" v", b"v ", b"", b"\xe9t\xe9"]))


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(st.tuples(st.one_of(_TOKEN, st.sampled_from([b"Host", b"content-length", b"a b", b""])),
                                 _VALUE), max_size=6),
       body=st.one_of(st.none(), st.binary(max_size=8)),
       target=st.sampled_from([b"/b/k", b"/b/k?list-type=2&prefix=", b"/b/a b", b"", b"/b HTTP/1.1\r\nx-a: 1"]))
def test_request_heads_are_written_as_h11_writes_them(fields, body, target):
    """The head written without h11 is byte for byte h11's; whatever it declines goes to h11, which frames or
    refuses it as it always did."""
    headers = [(b"host", b"127.0.0.1")] + fields
    if body is not None:
        headers.append((b"content-length", b"%d" % len(body)))
    fast = http._request_head(b"PUT", target, headers, body)
    conn = h11.Connection(h11.CLIENT)
    try:
        expected = conn.send(h11.Request(method=b"PUT", target=target, headers=headers))
        if body is not None:
            conn.send_with_data_passthrough(h11.Data(data=body))
        conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        expected = None
    if fast is not None:
        assert fast == expected
    else:
        special = {b"host", b"content-length", b"transfer-encoding"}
        assert expected is None or any(name.lower() in special for name, _ in fields)


async def test_a_request_head_h11_refuses_is_a_protocol_error_before_anything_is_sent():
    with KeepAliveScript([ok()]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        with pytest.raises(http.ProtocolError) as caught:
            await transport.request(b"GET", b"/b/k", [(b"host", b"127.0.0.1"), (b"x-a", b"bad\r\nx-b: 1")], None,
                                    TIMEOUTS)
        assert not caught.value.sent and transport.busy_connections == 0
    assert server.heads == []


async def test_bytes_beyond_the_answer_close_the_connection():
    with KeepAliveScript([ok(b"hello") + b"garbage", ok(b"again")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        assert await fetch(transport) == (200, b"hello")
        assert await fetch(transport) == (200, b"again")
    assert server.connections == 2


async def test_a_body_cut_short_is_connection_lost():
    with KeepAliveScript([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort"]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        with pytest.raises(http.ConnectionLost):
            await fetch(transport)
        assert transport.busy_connections == 0 and transport.idle_connections == 0


async def test_an_idle_connection_the_server_closed_is_replaced():
    """The server closes a kept-alive connection without saying so (an idle timeout): noticed before reuse."""
    with KeepAliveScript([ok(b"one"), None, ok(b"two")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        assert await fetch(transport) == (200, b"one")
        # the second request's answer is None: the server closes; GET is replayed once on a new connection
        assert await fetch(transport) == (200, b"two")
    assert server.connections == 2


async def test_a_file_body_replayed_on_a_new_connection_is_sent_whole(tmp_path):
    """A PUT from a file whose reused connection is closed under it goes again, from the body's first byte (a replay
    that resumed at the file's end once sent nothing forever)."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "body"
    path.write_bytes(data)
    with KeepAliveScript([ok(b"one"), None, ok(b"")]) as server, open(path, "rb") as fileobj:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        assert await fetch(transport) == (200, b"one")
        body = http.FileBody(fileobj, 0, len(data))
        headers = [(b"host", b"127.0.0.1"), (b"content-length", str(len(data)).encode())]
        with trio.fail_after(60):  # a bound, not a speed assertion: without the restart it never ends
            async with await transport.request(b"PUT", b"/b/k", headers, body, TIMEOUTS) as response:
                assert response.status == 200
    assert server.connections == 2
    assert server.bodies[1:] == [data, data]  # the one the server dropped, then the replay
    assert body.crc == crc64(data)


async def test_a_buffer_list_body_is_sent_from_its_buffers_and_replayed_whole():
    """An upload part's pieces (the writer's buffers) go out one after the other straight from those buffers (the
    views share their memory: no send-buffer copy), whole again on a replay."""
    pieces = [os.urandom(1024 * 1024), bytearray(os.urandom(70 * 1024)), memoryview(os.urandom(300 * 1024))[5:]]
    data = b"".join(bytes(piece) for piece in pieces)
    body = http.BufferList(pieces)
    assert body.length == len(data) and body.crc() == crc64(data)
    assert all(view.obj is (piece.obj if isinstance(piece, memoryview) else piece)
               for view, piece in zip(body.views, pieces))
    with KeepAliveScript([ok(b"one"), None, ok(b"")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        assert await fetch(transport) == (200, b"one")
        headers = [(b"host", b"127.0.0.1"), (b"content-length", str(len(data)).encode())]
        with trio.fail_after(60):
            async with await transport.request(b"PUT", b"/b/k", headers, body, TIMEOUTS) as response:
                assert response.status == 200
    assert server.bodies[1:] == [data, data]


async def test_a_post_on_a_connection_closed_under_it_is_not_replayed():
    with KeepAliveScript([ok(b"one"), None, ok(b"two")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        assert await fetch(transport) == (200, b"one")
        with pytest.raises(http.ConnectionLost):
            await fetch(transport, method=b"POST")
        assert await fetch(transport) == (200, b"two")


async def test_a_server_that_never_answers_is_a_read_timeout():
    with KeepAliveScript([lambda head: (time.sleep(3), ok())[1]]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        with pytest.raises(http.ReadTimeout):
            await fetch(transport, timeouts=http.Timeouts(connect=5, read=0.5))
        assert transport.busy_connections == 0


class NeverReads(LoopbackServer):
    """Accepts connections and holds them without reading a byte (a server stalled on a large upload)."""

    def __init__(self):
        super().__init__()
        self.held: list[socket.socket] = []

    def _handle(self, client: socket.socket) -> None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.held.append(client)

    def __exit__(self, *exc_info):
        for client in self.held:
            client.close()
        return super().__exit__(*exc_info)


async def test_a_body_nobody_reads_is_a_read_timeout_and_the_connection_is_dropped():
    """The send waits for the socket to take more (the body is far larger than the socket buffers) and gives up
    after `read` seconds without progress: the request fails, its connection is closed and its slot is free."""
    data = bytes(32 * 1024 * 1024)
    with NeverReads() as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        headers = [(b"host", b"127.0.0.1"), (b"content-length", str(len(data)).encode())]
        with trio.fail_after(30), pytest.raises(http.ReadTimeout):
            await transport.request(b"PUT", b"/b/k", headers, data, http.Timeouts(connect=5, read=0.5))
        assert transport.busy_connections == 0 and transport.idle_connections == 0


async def test_a_connection_closed_while_a_task_waits_on_it_is_connection_lost():
    """A plain connection closed by another task while a receive waits on it fails that receive as ConnectionLost
    (one TransportError like any other loss), not with trio's ClosedResourceError."""
    with NeverReads() as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        channel = http._Channel(stream, tls=False)
        failures: list[BaseException] = []

        async def receive() -> None:
            try:
                await channel.recv(30)
            except BaseException as exc:  # noqa: BLE001 - the test looks at what came out
                failures.append(exc)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                channel.close()
        assert len(failures) == 1 and isinstance(failures[0], http.ConnectionLost), failures


async def test_a_body_larger_than_the_socket_buffers_arrives_whole():
    """A body the socket takes in many pieces (each send takes what fits, then waits) is sent from where each send
    stopped, byte-exact."""
    data = os.urandom(8 * 1024 * 1024)
    with KeepAliveScript([ok(b"done")]) as server:
        transport = http.Transport("127.0.0.1", server.port, tls=None, max_connections=1)
        headers = [(b"host", b"127.0.0.1"), (b"content-length", str(len(data)).encode())]
        with trio.fail_after(60):
            async with await transport.request(b"PUT", b"/b/k", headers, data, TIMEOUTS) as response:
                assert response.status == 200 and await response.read(100) == b"done"
    assert server.bodies == [data]


async def test_a_tls_handshake_that_never_completes_is_a_connect_timeout():
    with KeepAliveScript([]) as server:  # accepts, reads, never answers the ClientHello
        transport = http.Transport("127.0.0.1", server.port, tls=http.tls_context(), max_connections=1)
        with pytest.raises(http.ConnectTimeout):
            await fetch(transport, timeouts=http.Timeouts(connect=0.5, read=10))


async def test_refused_connection_is_connect_failed():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = http.Transport("127.0.0.1", port, tls=None, max_connections=1)
    with pytest.raises(http.ConnectFailed) as refused:
        await fetch(transport)
    assert "refused" in str(refused.value)


async def test_listing_through_a_chunked_keep_alive_answer():
    body = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bkt</Name><EncodingType>url</EncodingType>'
            b"<IsTruncated>false</IsTruncated><Contents><Key>a%2Fb</Key><LastModified>2026-01-02T03:04:05.000Z"
            b"</LastModified><ETag>\"e\"</ETag><Size>3</Size></Contents></ListBucketResult>")
    with KeepAliveScript([chunked(body[:50], body[50:]), chunked(body)]) as server:
        store = ObjectStore.create(endpoint=f"http://127.0.0.1:{server.port}", bucket="bkt",
                                   credentials=Credentials("AK", "SK"), retry=RetryPolicy.no_retries())
        for _ in range(2):
            page = await store.list_page("")
            assert [(o.key, o.size, o.etag) for o in page.objects] == [("a/b", 3, "e")]
    assert server.connections == 1


# -- TLS -------------------------------------------------------------------------------------------------------------


async def test_https_with_a_private_ca_keeps_its_connection(local_server, fresh_bucket_name, tmp_path):
    await make_store(local_server, fresh_bucket_name).put("tls", b"over tls")
    with TlsProxy(("127.0.0.1", local_server.port), tmp_path / "tls", host_name="localhost") as proxy:
        endpoint = f"https://localhost:{proxy.port}"
        store = ObjectStore.create(endpoint=endpoint, bucket=fresh_bucket_name, ca_bundle=str(proxy.cert_path),
                                   credentials=Credentials(local_server.access_key_id, local_server.access_key_secret),
                                   retry=RetryPolicy.no_retries())
        local_server.admin.reset_connections()
        for _ in range(5):
            assert await store.get_bytes("tls") == b"over tls"
            await store.put("tls-written", os.urandom(200_000))
        assert store.statistics().connections_opened == 1
        assert local_server.admin.connections()["accepted"] == 1  # the proxy's one backend connection
        untrusted = ObjectStore.create(endpoint=endpoint, bucket=fresh_bucket_name,
                                       credentials=Credentials(local_server.access_key_id,
                                                               local_server.access_key_secret),
                                       retry=RetryPolicy.no_retries())
        with pytest.raises(types.EndpointUnreachable) as refused:
            await untrusted.head("tls")
        assert refused.value.code == "TLSError" and "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


def test_an_unreadable_ca_bundle_is_a_config_error(tmp_path):
    from ossmount.errors import ConfigError

    with pytest.raises(ConfigError):
        ObjectStore.create(endpoint="https://127.0.0.1:9", bucket="bkt", credentials=Credentials("AK", "SK"),
                           ca_bundle=str(tmp_path / "missing.pem"))


def test_idle_connections_close_outside_the_event_loop(local_server, fresh_bucket_name):
    """A store closed after its trio.run ended (a CLI tool's teardown) closes its idle plain connections."""
    store = make_store(local_server, fresh_bucket_name)

    async def one_request():
        await store.put("k", b"x")
        assert await store.get_bytes("k") == b"x"

    trio.run(one_request)
    channels = list(store._transport._idle)
    assert channels
    store.close()
    assert all(channel.closed and channel.sock.fileno() == -1 for channel in channels)
