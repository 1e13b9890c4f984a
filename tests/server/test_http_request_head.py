"""Request heads `ossmount serve` reads without h11 (http.py `_plain_request_head`, `_Channel`): exactly what h11
reads from them, never a head h11 would refuse or read otherwise, and responses framed to the same bytes h11 writes
(sans-IO, no server)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ossmount.server.http import (
    MAX_HEAD_SIZE,
    FrontLimits,
    _BLANK_LINE,
    _Channel,
    _decode_header_value,
    _lowercase_headers,
    _plain_request_head,
)

SIGNED = (b"Host: 127.0.0.1:8080\r\nDate: Tue, 01 Dec 2026 00:40:00 GMT\r\n"
          b"Authorization: OSS ossmount-test-id:AbCdEfGhIjKlMnOpQrStUvWxYz0=\r\n")


def h11_reading(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, target, headers) as the front reads them from h11, when h11 reads `head` as a bodiless request that
    keeps the connection alive; None when h11 refuses it or reads anything else (a body, 100-continue, a close)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
    conn.receive_data(head)
    try:
        request, end = conn.next_event(), conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not (isinstance(request, h11.Request) and isinstance(end, h11.EndOfMessage)) or conn.trailing_data[0]:
        return None
    if conn.their_state is not h11.DONE or conn.they_are_waiting_for_100_continue:
        return None
    conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    conn.send(h11.EndOfMessage())
    if conn.our_state is not h11.DONE:  # h11 would close the connection
        return None
    return (request.method.decode("ascii"), _decode_header_value(request.target),
            _lowercase_headers(request.headers))


def ours(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    parsed = _plain_request_head(head)
    return None if parsed is None else (parsed.method, parsed.target, parsed.headers)


PLAIN = [
    b"HEAD /bucket/key HTTP/1.1\r\n" + SIGNED + b"\r\n",
    b"GET /bucket/k%20e?prefix=a/&max-keys=2 HTTP/1.1\r\n" + SIGNED + b"Range: bytes=0-4095\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /b/k HTTP/1.1\r\nhost:x\r\nX-Empty:\r\nX-Spaced: \t a \t b \t \r\n\r\n",  # OWS around, inner HTAB
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nx-oss-meta-a: caf\xc3\xa9\r\nX-Latin: \xe9\xff\r\n\r\n",  # UTF-8, obs-text
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\nConnection: keep-alive\r\n\r\n",  # repeated: joined
    b"PROPFIND /b HTTP/1.1\r\nHost: x\r\nX-Ctl: \x01\x7f\r\n\r\n",  # any token method; h11 allows these bytes
]


@pytest.mark.parametrize("head", PLAIN)
def test_a_plain_head_is_read_as_h11_reads_it(head):
    assert ours(head) is not None
    assert ours(head) == h11_reading(head)


H11_ONLY = [
    b"GET /b/k HTTP/1.0\r\nHost: x\r\n\r\n",  # HTTP/1.0: h11 closes after the response
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",  # obs-fold: h11 joins the lines
    b"GET /b/k HTTP/1.1\nHost: x\n\n",  # bare LF line ends: h11 accepts them
    b"GET /b/k HTTP/1.1\r\nHost: x\n\r\n",
    # refused by h11
    b"GET /b/k HTTP/1.1\r\n\r\n",  # no Host
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-A: v\x0bw\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-A: v\x0cw\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-A: v\x00w\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-A: v\rw\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-A: v\r\r\n\r\n",
    b"GET /b/\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET  /b/k HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /b/k  HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /b/k HTTP/1.1 \r\nHost: x\r\n\r\n",
    b"G(T /b/k HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /b/k HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
]


@pytest.mark.parametrize("head", H11_ONLY)
def test_a_head_that_is_not_plain_is_left_to_h11(head):
    assert ours(head) is None


HEAD_BYTES = st.sampled_from([b"\x00", b"\t", b"\x0b", b"\x0c", b"\r", b"\n", b" ", b":", b"a", b"Z", b"/", b",",
                              b"\x01", b"\x7f", b"\x80", b"\xff", b"(", b"close", b"Host", b"\r\n", b"HTTP/1.1"])


@given(st.data())
@settings(max_examples=3000, deadline=None)
def test_a_head_read_plainly_is_one_h11_reads_the_same(data):
    """The grammar never widens: mangle a plain head anywhere; whatever `_plain_request_head` still reads, h11
    reads with the same fields, as a bodiless request that keeps the connection."""
    head = bytearray(data.draw(st.sampled_from(PLAIN)))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(head)))
        cut = data.draw(st.integers(0, 2))
        head[at:at + cut] = data.draw(HEAD_BYTES)
    blank = _BLANK_LINE.search(head)
    if blank is None:
        return
    head = bytes(head[:blank.end()])  # what the channel hands over: up to where h11 sees the end of the head
    mine = ours(head)
    if mine is not None:
        assert mine == h11_reading(head)


# -- responses to plain requests --------------------------------------------------------------------------------

HEADERS = [
    ("Server", b"AliyunOSS"),
    ("x-oss-request-id", b"7FF76BF600000000B3EE1D2D"),
    ("ETag", b'"336311A016184326DDBDD61EDD4EEB52"'),
    ("x-oss-meta-note", "caf\u00e9 \t au lait".encode()),
    ("x-oss-meta-empty", b""),
]


def plain_channel(head: bytes) -> _Channel:
    """A channel (no socket) that has read `head` plainly, with the start of a pipelined request behind it."""
    channel = _Channel(None, FrontLimits())
    channel._received = head + b"GET /next"
    assert channel._plain_request() is not None and channel.conn is None
    assert channel._received == b"GET /next"
    return channel


def h11_exchange(head: bytes) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    conn.next_event()
    conn.next_event()
    return conn


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("status", [200, 204, 206, 304, 404, 599])
def test_a_plain_response_is_framed_as_h11_frames_it(method, status):
    head = method + b" /b/k HTTP/1.1\r\nHost: x\r\n\r\n"
    channel, conn = plain_channel(head), h11_exchange(head)
    length = 10
    expected = conn.send(h11.Response(status_code=status, headers=HEADERS + [("Content-Length", b"10")],
                                      reason=h11.Response(status_code=status, headers=[]).reason or b""))
    ours_head = channel.response_head(status, HEADERS, length)
    assert channel.conn is None  # framed here
    assert ours_head.split(b"\r\n")[1:] == expected.split(b"\r\n")[1:]
    assert ours_head.split(b" ", 2)[:2] == expected.split(b" ", 2)[:2]
    body = b"" if method == b"HEAD" or status in (204, 304) else b"0123456789"  # h11 frames no body for those
    assert channel.body_pieces(body[:4]) == (conn.send_with_data_passthrough(h11.Data(data=body[:4])) or [])
    assert channel.body_pieces(body[4:]) == (conn.send_with_data_passthrough(h11.Data(data=body[4:])) or [])
    assert channel.end_of_message() == (conn.send(h11.EndOfMessage()) or b"")
    assert channel.next_cycle()
    assert channel._received == b"GET /next"


@pytest.mark.parametrize("status, sent, error", [(200, b"0123456789!", "Too much data"),
                                                 (200, b"012345678", "Too little data"),
                                                 (204, b"0", "Too much data")])
def test_a_plain_response_body_off_its_length_is_refused_as_h11_refuses_it(status, sent, error):
    head = b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n"
    channel, conn = plain_channel(head), h11_exchange(head)
    conn.send(h11.Response(status_code=status, headers=[("Content-Length", b"10")]))
    channel.response_head(status, [], 10)
    for side in (lambda: (conn.send(h11.Data(data=sent)), conn.send(h11.EndOfMessage())),
                 lambda: (channel.body_pieces(sent), channel.end_of_message())):
        with pytest.raises(h11.LocalProtocolError, match=error):
            side()


@pytest.mark.parametrize("extra", [("Connection", b"close"), ("transfer-encoding", b"chunked"), ("Host", b"h"),
                                   ("x-oss-meta-a", b" leading space"), ("x-oss-meta-caf\u00e9", b"v")])
def test_an_unusual_response_head_is_left_to_h11(extra):
    """A header h11 writes first, frames by or refuses: h11 runs the rest of the exchange, with its own bytes and
    errors (the channel replays the plain head into it)."""
    head = b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n"
    channel, conn = plain_channel(head), h11_exchange(head)
    headers = HEADERS + [extra]
    try:
        expected = conn.send(h11.Response(status_code=200, headers=headers + [("Content-Length", b"0")],
                                          reason=b"OK"))
    except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
        with pytest.raises(type(exc)):
            channel.response_head(200, headers, 0)
        return
    assert channel.response_head(200, headers, 0) == expected
    assert channel.conn is not None
    channel.end_of_message()
    conn.send(h11.EndOfMessage())
    assert channel.next_cycle() == (conn.our_state is h11.DONE)
    if channel.conn is None:
        assert channel._received == b"GET /next"
