"""The server's socket path (server/http.py `_Channel`): pipelined requests on one connection, chunked uploads,
slow clients, clients that leave mid-request; raw sockets against the real server, signed URLs (oss2)."""

from __future__ import annotations

import os
import socket
import time
import urllib.parse

import pytest


def raw(local_server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", local_server.port), timeout=30)
    return sock


def target(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.path}?{parts.query}"


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One Content-Length-framed response from `sock` (bytes past it stay in `buffered`)."""
    while b"\r\n\r\n" not in buffered:
        data = sock.recv(65536)
        assert data, bytes(buffered)
        buffered += data
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(65536)
        assert data
        body += data
    buffered[:] = body[length:]
    return status, headers, bytes(body[:length])


@pytest.fixture
def bucket(oss_bucket):
    return oss_bucket


def test_pipelined_requests_on_one_connection_are_answered_in_order(local_server, bucket):
    blobs = {f"p{i}": os.urandom(1000 * i + 1) for i in range(1, 8)}
    for key, data in blobs.items():
        bucket.put_object(key, data)
    host = f"127.0.0.1:{local_server.port}"
    requests = b"".join(f"GET {target(bucket.sign_url('GET', key, 300))} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
                        for key in blobs)
    with raw(local_server) as sock:
        sock.sendall(requests)  # all at once: the server must frame each request out of one read
        buffered = bytearray()
        for key, data in blobs.items():
            status, _, body = read_response(sock, buffered)
            assert (status, body) == (200, data), key


def test_a_chunked_upload_sent_in_odd_pieces_arrives_whole(local_server, bucket):
    data = os.urandom(300_000)
    url = bucket.sign_url("PUT", "chunked", 300)
    host = f"127.0.0.1:{local_server.port}"
    with raw(local_server) as sock:
        sock.sendall(f"PUT {target(url)} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        at = 0
        for size in (1, 7, 65536, 3, 100_000, 65537):
            piece = data[at:at + size]
            at += size
            chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            for cut in range(0, len(chunk), 40_000):  # pieces split across sends
                sock.sendall(chunk[cut:cut + 40_000])
        rest = data[at:]
        sock.sendall(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status == 200, body
    assert bucket.get_object("chunked").read() == data


def test_a_slow_client_trickling_its_request_is_served(local_server, bucket):
    bucket.put_object("slow", b"answer")
    host = f"127.0.0.1:{local_server.port}"
    request = f"GET {target(bucket.sign_url('GET', 'slow', 300))} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with raw(local_server) as sock:
        for at in range(0, len(request), 37):
            sock.sendall(request[at:at + 37])
            time.sleep(0.02)
        status, _, body = read_response(sock, bytearray())
        assert (status, body) == (200, b"answer")


@pytest.mark.parametrize("leave", ["mid-head", "mid-body", "mid-chunk", "reset-mid-answer"])
def test_a_client_leaving_mid_request_leaves_the_server_serving(local_server, bucket, leave):
    big = os.urandom(8 * 1024 * 1024)
    bucket.put_object("big", big)
    host = f"127.0.0.1:{local_server.port}"
    before = local_server.admin.connections()["open"]
    for _ in range(5):
        sock = raw(local_server)
        if leave == "mid-head":
            sock.sendall(f"GET {target(bucket.sign_url('GET', 'big', 300))} HTTP/1.1\r\nHo".encode())
        elif leave == "mid-body":
            url = bucket.sign_url("PUT", "partial", 300)
            sock.sendall(f"PUT {target(url)} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n".encode()
                         + b"x" * 5000)
        elif leave == "mid-chunk":
            url = bucket.sign_url("PUT", "partial", 300)
            sock.sendall(f"PUT {target(url)} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "10000\r\n".encode() + b"y" * 100)
        else:
            sock.sendall(f"GET {target(bucket.sign_url('GET', 'big', 300))} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            sock.recv(1000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        time.sleep(0.05)
        sock.close()
    # the server still answers, whole, and drops the connections the clients left
    assert bucket.get_object("big").read() == big
    with pytest.raises(Exception):
        bucket.get_object("partial")
    deadline = time.monotonic() + 30
    while local_server.admin.connections()["open"] > before + 1:
        assert time.monotonic() < deadline, local_server.admin.connections()
        time.sleep(0.1)


def test_a_request_pipelined_behind_a_body_is_answered(local_server, bucket):
    """PUT with its body and a GET of the same key in one send: the GET sees the PUT's bytes."""
    data = os.urandom(70_000)
    host = f"127.0.0.1:{local_server.port}"
    put = (f"PUT {target(bucket.sign_url('PUT', 'piped', 300))} HTTP/1.1\r\nHost: {host}\r\n"
           f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    get = f"GET {target(bucket.sign_url('GET', 'piped', 300))} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with raw(local_server) as sock:
        sock.sendall(put + get)
        buffered = bytearray()
        assert read_response(sock, buffered)[0] == 200
        status, _, body = read_response(sock, buffered)
        assert (status, body) == (200, data)


def test_a_client_reading_slowly_does_not_stall_others(local_server, bucket):
    """A client that stops reading a 16 MiB answer (the server's socket fills); meanwhile 20 other requests are
    answered whole; then it reads the rest, whole."""
    big = os.urandom(16 * 1024 * 1024)
    bucket.put_object("slowread", big)
    bucket.put_object("small", b"s")
    host = f"127.0.0.1:{local_server.port}"
    with raw(local_server) as sock:
        sock.sendall(f"GET {target(bucket.sign_url('GET', 'slowread', 300))} HTTP/1.1\r\nHost: {host}\r\n\r\n"
                     .encode())
        got = bytearray(sock.recv(4096))
        for _ in range(20):
            assert bucket.get_object("small").read() == b"s"
            got += sock.recv(4096)
        buffered = bytearray(got)
        status, _, body = read_response(sock, buffered)
        assert status == 200 and body == big


# -- response-* overrides that are no HTTP field value ------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\rb", "a\nb", "a\x00b", "a\x0bb"])
def test_a_response_override_that_is_no_header_value_is_invalid_argument(local_server, fresh_bucket_name, value):
    """GetObject's response-* parameters become response headers: a value h11 cannot send (a line break, a NUL, other
    control whitespace) is a 400 InvalidArgument and the connection stays usable, not a connection closed without
    an answer (which clients retry) and never a second header."""
    import oss2

    bucket = local_server.oss2_bucket(fresh_bucket_name)
    bucket.put_object("k", b"body")
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        bucket.get_object("k", params={"response-content-disposition": value})
    assert (caught.value.status, caught.value.code) == (400, "InvalidArgument")
    assert "set-cookie" not in {name.lower() for name in caught.value.headers}
    assert bucket.get_object("k").read() == b"body"


def test_a_response_override_is_trimmed_of_surrounding_whitespace(local_server, fresh_bucket_name):
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    bucket.put_object("k", b"body")
    answer = bucket.get_object("k", params={"response-content-disposition": " \tattachment; filename=\"a b\"\t ",
                                            "response-content-type": "text/caf\u00e9"})
    assert answer.read() == b"body"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="a b"'
    assert answer.headers["Content-Type"].encode("latin-1").decode("utf-8") == "text/caf\u00e9"


@pytest.mark.parametrize("max_keys", ["9" * 5000, "0" * 5000 + "5"], ids=["huge", "zero-padded"])
def test_a_max_keys_of_thousands_of_digits_is_answered(local_server, fresh_bucket_name, max_keys):
    """Small listings run on the event loop (http.py `runs_inline`), which reads max-keys first: a value int()
    refuses (more than 4300 digits, even zero-padded) is answered by the core, InvalidArgument as before, instead of
    a connection closed without an answer (ValueError on the event loop)."""
    import oss2

    bucket = local_server.oss2_bucket(fresh_bucket_name)
    bucket.put_object("k", b"x")
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        bucket.list_objects(max_keys=max_keys)
    # oss2 parses only an error body's first 4 KiB, so the code is read from the body itself (the value echoes back)
    assert caught.value.status == 400 and b"<Code>InvalidArgument</Code>" in caught.value.body
    assert [entry.key for entry in bucket.list_objects(max_keys=5).object_list] == ["k"]


@pytest.mark.parametrize("max_keys", ["\u0665", "1_0", "+5", " 5"], ids=["arabic-indic", "underscore", "plus", "space"])
def test_a_max_keys_that_is_not_ascii_digits_is_invalid_argument(local_server, fresh_bucket_name, max_keys):
    """max-keys is a decimal number of ASCII digits (OSS ListObjects doc); Python's int() would take these too."""
    import oss2

    bucket = local_server.oss2_bucket(fresh_bucket_name)
    bucket.put_object("k", b"x")
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        bucket.list_objects(max_keys=max_keys)
    assert (caught.value.status, caught.value.code) == (400, "InvalidArgument")
