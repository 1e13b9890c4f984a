"""The response head `ossmount serve` writes (http.py `_response_event`): the same bytes h11 writes with its own
header checks, and the same refusal of a header h11 would refuse (sans-IO, no server)."""

from __future__ import annotations

import h11
import pytest

from ossmount.server.http import _response_event

HEADERS = [
    ("Server", b"AliyunOSS"),
    ("Date", b"Mon, 30 Nov 2026 22:06:27 GMT"),
    ("x-oss-request-id", b"7FF76BF600000000B3EE1D2D"),
    ("ETag", b'"336311A016184326DDBDD61EDD4EEB52"'),
    ("x-oss-meta-note", "caf\u00e9 \t au lait".encode()),  # UTF-8 bytes and an inner HTAB are legal
    ("x-oss-meta-empty", b""),
    ("Content-Length", b"10"),
]


def written(event: h11.Response, method: bytes = b"HEAD") -> bytes:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"%s / HTTP/1.1\r\nHost: x\r\n\r\n" % method)
    connection.next_event()
    return connection.send(event)


@pytest.mark.parametrize("status", [200, 206, 304, 404])
def test_a_valid_head_is_written_as_h11_writes_it(status):
    expected = written(h11.Response(status_code=status, headers=HEADERS,
                                    reason=h11.Response(status_code=status, headers=[]).reason or b""))
    ours = _response_event(status, HEADERS)
    assert written(ours) == written(h11.Response(status_code=status, headers=HEADERS, reason=ours.reason))
    assert written(ours).split(b"\r\n")[1:] == expected.split(b"\r\n")[1:]


@pytest.mark.parametrize("name, value", [
    ("x-oss-meta-a", b"split\r\nSet-Cookie: x=1"),  # header injection
    ("x-oss-meta-a", b"bare\nline feed"),
    ("x-oss-meta-a", b"nul\x00byte"),
    ("x-oss-meta-a", b" leading space"),
    ("x-oss-meta-a", b"trailing space "),
    ("bad name", b"v"),
    ("bad:name", b"v"),
    ("Content-Length", b"12x"),
])
def test_an_invalid_header_is_refused_as_h11_refuses_it(name, value):
    headers = HEADERS[:3] + [(name, value)]
    with pytest.raises(h11.LocalProtocolError):
        h11.Response(status_code=200, headers=headers)
    with pytest.raises(h11.LocalProtocolError):
        _response_event(200, headers)


def test_a_non_ascii_header_name_is_refused_as_h11_refuses_it():
    headers = [("x-oss-meta-caf\u00e9", b"v")]
    with pytest.raises(UnicodeEncodeError):
        h11.Response(status_code=200, headers=headers)
    with pytest.raises(UnicodeEncodeError):
        _response_event(200, headers)
