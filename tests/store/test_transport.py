"""The store's HTTP transport (ossmount/store/transport.py): kept-alive connections, pool limits, abandoned bodies,
chunked and close-delimited answers, stale connections, timeouts and TLS with a private CA — against the local server
(its connection counters) and against scripted servers for answers the real one never gives."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable

import pytest
import trio
import trio.testing

from ossmount.crc64 import crc64
from ossmount.credentials import Credentials
from ossmount.store import ObjectStore, RetryPolicy, types
from ossmount.store import transport as http
from ossmount.testing import LoopbackServer, TlsProxy

from .conftest import make_store

TIMEOUTS = http.Timeouts(connect=5, read=10)


class KeepAliveScript(LoopbackServer):
    """A loopback HTTP server that answers each request with the next of `answers` (raw response bytes, or a
    callable taking the request head and returning them, or None to close the connection without answering), on
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
                try:
                    client.sendall(answer)
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
