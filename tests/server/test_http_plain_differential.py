"""Differential test of the plain-request path (server/http.py `_Channel._plain_request`, issue 11): the same bytes
sent to a normal server and to one whose `_plain_request_head` reads nothing (so h11 reads every head and frames
every response, as before the plain path existed) must get the same bytes back, modulo per-request values (Date,
request ids, server time, Last-Modified), and the connection must end the same way.

The streams mix plain requests (GET, HEAD of a large object, Range, conditional GET answered 304, response-*
overrides, listings, the admin API) with heads only h11 reads (bodies, chunked, 100-continue, obs-fold, bare LF,
Connection: close, HTTP/1.0, malformed heads), pipelined in one send, split at every byte position, and with the
peer's half-close right after. Every stream ends with a request after which the server closes, so the answer is
read to the end of the stream (no timing involved)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from ossmount.testing import LocalServer

# Imported by the reference server at startup (PYTHONPATH): no head is plain there, h11 reads them all.
H11_ONLY_SITECUSTOMIZE = """
import pathlib
import ossmount.server.http as http
http._plain_request_head = lambda head: None
pathlib.Path(__file__).with_name("active").write_text("h11 only")
"""

VARYING = [
    (re.compile(rb"(?im)^(date|last-modified|x-oss-request-id|x-oss-server-time|x-oss-err): [^\r\n]*"), rb"\1: X"),
    (re.compile(rb"<(RequestId|LastModified)>[^<]*</\1>"), rb"<\1>X</\1>"),
]
BIG = bytes(range(256)) * 4096  # 1 MiB: beyond the coalesced size, goes out with sendfile


def start(data_dir: Path, pythonpath: str | None) -> LocalServer:
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        server = LocalServer(data_dir, anonymous=True).start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    bucket = server.oss2_bucket("test-bucket")
    bucket.put_object("small", b"s" * 4096)
    bucket.put_object("big", BIG)
    bucket.put_object("empty", b"")
    bucket.put_object("meta", b"m" * 100, headers={"x-oss-meta-name": "caf\u00e9", "Content-Type": "text/x"})
    for i in range(3):
        bucket.put_object(f"dir/k{i}", b"d")
    return server


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(normal server, h11-only reference server), each with the same objects."""
    site = tmp_path_factory.mktemp("h11-only-site")
    (site / "sitecustomize.py").write_text(H11_ONLY_SITECUSTOMIZE)
    assert not (site / "active").exists()
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    plain = start(tmp_path_factory.mktemp("plain-oss"), None)
    try:
        reference = start(tmp_path_factory.mktemp("h11-oss"), pythonpath)
    except BaseException:
        plain.stop()
        raise
    if not (site / "active").exists():  # the reference must really be h11 only, or the test compares nothing
        plain.stop()
        reference.stop()
        pytest.fail("the reference server did not load the h11-only patch")
    try:
        yield plain, reference
    finally:
        plain.stop()
        reference.stop()


def req(method: bytes, target: bytes, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"%s %s %s\r\nHost: h\r\n%s\r\n" % (method, target, version, extra)


ADMIN_TOKEN = b"x-ossmount-admin-token: ossmount-admin-token\r\n"
PLAIN = {
    "get": req(b"GET", b"/test-bucket/small"),
    "head_big": req(b"HEAD", b"/test-bucket/big"),
    "get_big": req(b"GET", b"/test-bucket/big"),
    "get_empty": req(b"GET", b"/test-bucket/empty"),
    "range": req(b"GET", b"/test-bucket/big", b"Range: bytes=10-20\r\n"),
    "range_big": req(b"GET", b"/test-bucket/big", b"Range: bytes=1-900000\r\n"),
    "range_dup": req(b"GET", b"/test-bucket/big", b"Range: bytes=10-20\r\nRange: bytes=30-40\r\n"),
    "range_unsatisfiable": req(b"GET", b"/test-bucket/small", b"Range: bytes=99999-\r\n"),
    "not_modified": req(b"GET", b"/test-bucket/small", b"If-None-Match: *\r\n"),
    "missing": req(b"HEAD", b"/test-bucket/nope"),
    "meta": req(b"GET", b"/test-bucket/meta"),
    "override": req(b"GET", b"/test-bucket/small?response-content-type=caf%C3%A9&response-cache-control=%20a%20"),
    "override_bad": req(b"GET", b"/test-bucket/small?response-content-type=a%0d%0ab"),
    "list": req(b"GET", b"/test-bucket/?prefix=dir/&max-keys=2"),
    "admin": req(b"GET", b"/_ossmount/admin/counters", ADMIN_TOKEN),
    "admin_refused": req(b"GET", b"/_ossmount/admin/counters"),
    "odd_values": req(b"GET", b"/test-bucket/small", b"X-A:\t a \t\r\nX-B: \x80\xff caf\xc3\xa9\r\nX-C:\r\nX-D: \x01\x7f\r\n"),
    "keep_alive": req(b"GET", b"/test-bucket/small", b"Connection: keep-alive\r\n"),
}
H11 = {
    "put": req(b"PUT", b"/test-bucket/w1", b"Content-Length: 5\r\n") + b"hello",
    "put_chunked": req(b"PUT", b"/test-bucket/w2", b"Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n",
    "put_expect": req(b"PUT", b"/test-bucket/w3", b"Content-Length: 3\r\nExpect: 100-continue\r\n") + b"xyz",
    "get_length_0": req(b"GET", b"/test-bucket/small", b"Content-Length: 0\r\n"),
    "obs_fold": req(b"GET", b"/test-bucket/small", b"X-A: a\r\n  b\r\n"),
    "bare_lf": b"GET /test-bucket/small HTTP/1.1\nHost: h\n\n",
    "mixed_eol": b"GET /test-bucket/small HTTP/1.1\r\nHost: h\n\r\n",
    "upgrade": req(b"GET", b"/test-bucket/small", b"Upgrade: websocket\r\nConnection: upgrade\r\n"),
}
# After these the server closes the connection: each ends a stream.
CLOSING = {
    "close": req(b"GET", b"/test-bucket/small", b"Connection: keep-alive, Close\r\n"),
    "http10": req(b"GET", b"/test-bucket/small", b"Connection: keep-alive\r\n", version=b"HTTP/1.0"),
    "two_hosts": b"GET /test-bucket/small HTTP/1.1\r\nHost: h\r\nHOST: h\r\n\r\n",
    "no_host": b"GET /test-bucket/small HTTP/1.1\r\n\r\n",
    "leading_crlf": b"\r\n" + PLAIN["get"],
    "vt_in_value": req(b"GET", b"/test-bucket/small", b"X-A: a\x0bb\r\n"),
    "head_body": req(b"HEAD", b"/test-bucket/small", b"Content-Length: 2\r\n") + b"ab",
}


def normalized(data: bytes) -> bytes:
    for pattern, replacement in VARYING:
        data = pattern.sub(replacement, data)
    return data


def exchange(server: LocalServer, pieces: list[bytes], *, half_close: bool = False) -> bytes:
    """Send `pieces` (one send each, Nagle off), optionally shut our side, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return bytes(received)
            received += data


def assert_same_answers(servers, pieces: list[bytes], *, half_close: bool = False) -> bytes:
    plain, reference = servers
    ours = exchange(plain, pieces, half_close=half_close)
    expected = exchange(reference, pieces, half_close=half_close)
    assert normalized(ours) == normalized(expected)
    return ours


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_a_plain_request_is_answered_as_h11_answers_it(servers, name):
    answer = assert_same_answers(servers, [PLAIN[name] + PLAIN[name] + CLOSING["close"]])
    assert answer.count(b"HTTP/1.1 ") == 3


@pytest.mark.parametrize("name", sorted(CLOSING))
@pytest.mark.parametrize("half_close", [False, True])
def test_a_closing_request_behind_plain_ones_ends_the_connection_as_h11_does(servers, name, half_close):
    assert_same_answers(servers, [PLAIN["head_big"] + PLAIN["get"] + CLOSING[name]], half_close=half_close)


def test_pipelined_plain_and_h11_requests_in_one_send(servers):
    pairs = list(zip(sorted(PLAIN), sorted(H11) * 3))
    stream = b"".join(PLAIN[name] + H11[other] for name, other in pairs)
    answer = assert_same_answers(servers, [stream + CLOSING["close"]])
    continues = sum(other == "put_expect" for _, other in pairs)
    assert answer.count(b"HTTP/1.1 100 Continue") == continues
    assert answer.count(b"HTTP/1.1 ") == 2 * len(pairs) + 1 + continues


@pytest.mark.parametrize("half_close", [False, True])
def test_a_pipelined_stream_split_at_every_position(servers, half_close):
    """Heads split anywhere, across CR LF CR LF too, a plain one right after an h11 exchange's body and the reverse,
    and a peer that half-closes after its last byte."""
    stream = PLAIN["head_big"] + H11["put"] + PLAIN["range"] + H11["obs_fold"] + PLAIN["missing"] + CLOSING["close"]
    for cut in range(1, len(stream)):
        assert_same_answers(servers, [stream[:cut], stream[cut:]], half_close=half_close)


def test_a_stream_cut_short_and_half_closed(servers):
    """The peer closes its side in the middle of the next head: h11's 400 ("peer unexpectedly closed") after the
    answers to the complete requests, however much of the head arrived."""
    stream = PLAIN["get"] + PLAIN["admin"] + H11["put_chunked"] + PLAIN["get"]
    for cut in range(len(stream) - len(PLAIN["get"]) - len(H11["put_chunked"]), len(stream)):
        assert_same_answers(servers, [stream[:cut]], half_close=True)
