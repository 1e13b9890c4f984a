"""The HTTP front end of `ossmount serve`, exercised over loopback with oss2 and with raw sockets."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import socket
from pathlib import Path

import h11
import oss2
import pytest

from ossmount.crc64 import crc64
from ossmount.server.http import FAST_BODY_MIN, MAX_HEAD_SIZE, SPOOL_BUFFER_SIZE, SPOOL_BUFFERS_KEPT
from ossmount.testing import LocalServer, wait_for
from tests.server.rawhttp import RawConnection, request_head, v1_headers


def leftover_spool_files(server) -> list[Path]:
    return list(Path(server.data_dir).rglob("upload-*"))


def wait_for_no_spool_files(server, timeout: float = 5.0) -> list[Path]:
    return wait_for(lambda: leftover_spool_files(server), lambda files: not files, timeout=timeout)


@pytest.mark.parametrize("auth_version", ["v1", "v4"])
def test_oss2_put_get_head_list(local_server, fresh_bucket_name, auth_version):
    bucket = local_server.oss2_bucket(fresh_bucket_name, auth_version)
    bucket.put_object("dir/a.txt", b"hello", headers={"Content-Type": "text/plain"})
    bucket.put_object("dir/b.bin", b"")

    assert bucket.get_object("dir/a.txt").read() == b"hello"
    assert bucket.get_object("dir/b.bin").read() == b""
    head = bucket.head_object("dir/a.txt")
    assert head.content_length == 5
    assert head.etag == "5D41402ABC4B2A76B9719D911017C592"
    keys = [entry.key for entry in bucket.list_objects(prefix="dir/").object_list]
    assert keys == ["dir/a.txt", "dir/b.bin"]


def test_large_object_takes_the_fast_paths_and_keeps_crc(oss_bucket, local_server):
    payload = os.urandom(3 * FAST_BODY_MIN + 12345)
    result = oss_bucket.put_object("big", payload)  # oss2 checks the returned CRC64 (enable_crc)
    assert result.etag == hashlib.md5(payload).hexdigest().upper()

    assert oss_bucket.get_object("big").read() == payload
    assert oss_bucket.get_object("big", byte_range=(100, 199)).read() == payload[100:200]
    assert wait_for_no_spool_files(local_server) == []


def test_fast_etag_mode_derives_etags_from_the_crc_unless_content_md5_is_sent(tmp_path):
    with LocalServer(tmp_path / "oss", extra_args=("--etag", "fast")) as server:
        bucket = server.oss2_bucket("test-bucket")  # oss2 still checks every returned CRC64
        for key, payload in (("small", b"hello"), ("large", os.urandom(FAST_BODY_MIN + 1))):  # both body paths
            etag = bucket.put_object(key, payload).etag
            assert etag == f"{crc64(payload):016X}{len(payload):016X}"
            assert bucket.head_object(key).etag == etag
            assert bucket.get_object(key).read() == payload

        content_md5 = base64.b64encode(hashlib.md5(b"hello").digest()).decode()
        assert bucket.put_object("checked", b"hello", headers={"Content-MD5": content_md5}).etag == (
            "5D41402ABC4B2A76B9719D911017C592")
        with pytest.raises(oss2.exceptions.InvalidDigest):
            bucket.put_object("refused", b"hellO", headers={"Content-MD5": content_md5})

        upload_id = bucket.init_multipart_upload("multi").upload_id
        part = bucket.upload_part("multi", upload_id, 1, b"part one")
        assert part.etag == f"{crc64(b'part one'):016X}{8:016X}"
        bucket.complete_multipart_upload("multi", upload_id, [oss2.models.PartInfo(1, part.etag)])
        assert bucket.get_object("multi").read() == b"part one"


def test_oss2_chunked_put(oss_bucket):
    pieces = [os.urandom(70_000) for _ in range(5)]

    def generate():
        yield from pieces

    oss_bucket.put_object("chunked", generate())  # no length known: requests sends chunked

    assert oss_bucket.get_object("chunked").read() == b"".join(pieces)


def test_raw_chunked_put(local_server, fresh_bucket_name):
    headers = v1_headers(local_server, "PUT", fresh_bucket_name, "raw-chunked")
    headers["Transfer-Encoding"] = "chunked"
    with RawConnection(local_server) as connection:
        connection.send(request_head("PUT", fresh_bucket_name, "raw-chunked", headers))
        connection.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, _, _ = connection.read_response()
    assert status == 200
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("raw-chunked").read() == b"hello world"


@pytest.mark.parametrize("size", [11, FAST_BODY_MIN + 1])
def test_expect_100_continue(local_server, fresh_bucket_name, size):
    payload = os.urandom(size)
    headers = v1_headers(local_server, "PUT", fresh_bucket_name, "continued")
    headers.update({"Content-Length": str(size), "Expect": "100-continue"})
    with RawConnection(local_server) as connection:
        connection.send(request_head("PUT", fresh_bucket_name, "continued", headers))
        interim, _ = connection.read_head()
        assert interim == 100
        connection.send(payload)
        status, response_headers, _ = connection.read_response()
    assert status == 200
    assert response_headers["etag"].strip('"') == hashlib.md5(payload).hexdigest().upper()
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("continued").read() == payload


def test_keep_alive_head_and_pipelining_after_fast_body(local_server, oss_bucket, fresh_bucket_name):
    payload = os.urandom(FAST_BODY_MIN * 2)
    put_headers = v1_headers(local_server, "PUT", fresh_bucket_name, "pipelined")
    put_headers["Content-Length"] = str(len(payload))
    head_headers = v1_headers(local_server, "HEAD", fresh_bucket_name, "pipelined")
    get_headers = v1_headers(local_server, "GET", fresh_bucket_name, "pipelined")
    with RawConnection(local_server) as connection:
        # PUT body, HEAD and GET in one write: the bytes after the body must survive the fast path.
        connection.send(request_head("PUT", fresh_bucket_name, "pipelined", put_headers) + payload
                        + request_head("HEAD", fresh_bucket_name, "pipelined", head_headers)
                        + request_head("GET", fresh_bucket_name, "pipelined", get_headers))
        put_status, _, _ = connection.read_response()
        head_status, head_response, head_body = connection.read_response(head_request=True)
        get_status, _, body = connection.read_response()
    assert (put_status, head_status, get_status) == (200, 200, 200)
    assert head_response["content-length"] == str(len(payload))
    assert head_body == b""
    assert body == payload


def test_connection_close_is_honoured(local_server, fresh_bucket_name):
    headers = v1_headers(local_server, "GET", fresh_bucket_name, "missing")
    headers["Connection"] = "close"
    with RawConnection(local_server) as connection:
        connection.send(request_head("GET", fresh_bucket_name, "missing", headers))
        status, response_headers, body = connection.read_response()
        assert connection.at_eof()
    assert status == 404
    assert b"<Code>NoSuchKey</Code>" in body
    assert int(response_headers["content-length"]) == len(body)


def test_malformed_request_gets_400(local_server):
    with RawConnection(local_server) as connection:
        connection.send(b"THIS IS NOT HTTP\r\n\r\n")
        status, _, _ = connection.read_response()
        assert connection.at_eof()
    assert status == 400


def h11_refusal(data: bytes) -> h11.RemoteProtocolError:
    """The error h11 raises reading `data` as the first request of a connection."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
    conn.receive_data(data)
    with pytest.raises(h11.RemoteProtocolError) as refused:
        conn.next_event()
    return refused.value


@pytest.mark.parametrize("malformed", [
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-A: v\x0bw\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n",
    b"GET /b/k HTTP/1.1\r\n\r\n",
    b"GET /b/\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\nGET /b/k HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
], ids=["no-colon", "space-before-colon", "vertical-tab", "two-hosts", "no-host", "non-ascii-target",
        "empty-first-line", "conflicting-lengths"])
def test_a_malformed_head_behind_a_plain_request_gets_h11s_400_and_close(local_server, oss_bucket,
                                                                        fresh_bucket_name, malformed):
    """A head outside h11's grammar, pipelined behind a plain request: the plain one is answered, then the
    malformed one gets the answer h11's error makes (status hint, message) and the connection closes."""
    oss_bucket.put_object("first", b"1")
    headers = v1_headers(local_server, "GET", fresh_bucket_name, "first")
    refusal = h11_refusal(malformed)
    with RawConnection(local_server) as connection:
        connection.send(request_head("GET", fresh_bucket_name, "first", headers) + malformed)
        assert connection.read_response()[::2] == (200, b"1")
        status, response_headers, body = connection.read_response()
        assert connection.at_eof()
    assert (status, body) == (refusal.error_status_hint, f"Bad request: {refusal}\n".encode())
    assert response_headers["connection"] == "close"


def test_plain_and_h11_requests_pipelined_in_one_send_are_each_answered_in_order(local_server, oss_bucket,
                                                                                 fresh_bucket_name):
    """Requests the front reads itself (HEAD, GET) and ones h11 reads (a PUT with a body, HTTP/1.0) in one send:
    each answered in order, the HTTP/1.0 one last, after which the connection closes."""
    oss_bucket.put_object("kept", b"0123456789")
    bucket, payload = fresh_bucket_name, os.urandom(3000)
    put_headers = v1_headers(local_server, "PUT", bucket, "put")
    put_headers["Content-Length"] = str(len(payload))
    requests = (request_head("HEAD", bucket, "kept", v1_headers(local_server, "HEAD", bucket, "kept"))
                + request_head("PUT", bucket, "put", put_headers) + payload
                + request_head("GET", bucket, "put", v1_headers(local_server, "GET", bucket, "put"))
                + request_head("GET", bucket, "missing", v1_headers(local_server, "GET", bucket, "missing"))
                + request_head("GET", bucket, "kept", v1_headers(local_server, "GET", bucket, "kept"))
                .replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    with RawConnection(local_server) as connection:
        connection.send(requests)
        head_status, head_headers, _ = connection.read_response(head_request=True)
        put_status, _, _ = connection.read_response()
        get_status, _, got = connection.read_response()
        missing_status, _, missing = connection.read_response()
        old_status, old_headers, old = connection.read_response()
        assert connection.at_eof()
    assert (head_status, head_headers["content-length"]) == (200, "10")
    assert (put_status, get_status, got) == (200, 200, payload)
    assert missing_status == 404 and b"<Code>NoSuchKey</Code>" in missing
    assert (old_status, old, old_headers["connection"]) == (200, b"0123456789", "close")


def test_http_1_0_request_is_answered_and_closed(local_server, oss_bucket, fresh_bucket_name):
    oss_bucket.put_object("old", b"x")
    head = request_head("GET", fresh_bucket_name, "old", v1_headers(local_server, "GET", fresh_bucket_name, "old"))
    with RawConnection(local_server) as connection:
        connection.send(head.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, headers, body = connection.read_response()
        assert connection.at_eof()
    assert (status, body, headers["connection"]) == (200, b"x", "close")


def test_a_request_head_beyond_max_head_size_gets_431_and_close(local_server):
    head = b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * MAX_HEAD_SIZE  # never ends
    head = head[:MAX_HEAD_SIZE + 1]  # one byte over: the server reads all of it, so its close is orderly
    with RawConnection(local_server) as connection:
        connection.send(head)
        status, headers, body = connection.read_response()
        assert connection.at_eof()
    refusal = h11_refusal(head)
    assert (status, body) == (refusal.error_status_hint, f"Bad request: {refusal}\n".encode()) and status == 431
    assert headers["connection"] == "close"


@pytest.mark.parametrize("trickle", [1, 5000], ids=["one-byte-sends", "5000-byte-sends"])
def test_heads_arriving_in_pieces_are_answered(local_server, oss_bucket, fresh_bucket_name, trickle):
    """Two heads, each split across sends (the second with a 150 KiB header, several receives long)."""
    oss_bucket.put_object("piecewise", b"abc")
    first = request_head("GET", fresh_bucket_name, "piecewise",
                         v1_headers(local_server, "GET", fresh_bucket_name, "piecewise"))
    second = request_head("HEAD", fresh_bucket_name, "piecewise", v1_headers(
        local_server, "HEAD", fresh_bucket_name, "piecewise", extra={"X-Padding": "p" * 150_000}))
    with RawConnection(local_server) as connection:
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _send_in_pieces(connection, first, [trickle])
        assert connection.read_response()[::2] == (200, b"abc")
        _send_in_pieces(connection, second, [trickle if trickle > 1 else 40_000])
        status, headers, _ = connection.read_response(head_request=True)
    assert (status, headers["content-length"]) == (200, "3")


@pytest.mark.parametrize("size", [40_000, 4 * FAST_BODY_MIN])
def test_client_disconnecting_mid_put_leaves_no_object(local_server, oss_bucket, fresh_bucket_name, size):
    tracebacks_before = local_server.stderr_text().count("Traceback")
    headers = v1_headers(local_server, "PUT", fresh_bucket_name, "cut")
    headers["Content-Length"] = str(size)
    with RawConnection(local_server) as connection:
        connection.send(request_head("PUT", fresh_bucket_name, "cut", headers) + os.urandom(size // 2))
    # The server sees EOF mid-body; give it a moment, then the key must not exist and no spool is left.
    assert wait_for_no_spool_files(local_server) == []
    with pytest.raises(oss2.exceptions.NoSuchKey):
        oss_bucket.get_object("cut")
    assert not oss_bucket.object_exists("cut")
    assert local_server.stderr_text().count("Traceback") == tracebacks_before  # an expected event, no bug


def test_admin_request_log_sees_user_agent_and_range(local_server, oss_bucket):
    oss_bucket.put_object("logged", b"0123456789")
    local_server.admin.reset_requests()
    oss_bucket.get_object("logged", byte_range=(2, 5)).read()
    records = [r for r in local_server.admin.requests() if r["key"] == "logged"]
    assert len(records) == 1
    record = records[0]
    assert (record["op"], record["method"], record["status"], record["bytes"]) == ("GetObject", "GET", 206, 4)
    assert record["range"] == "bytes=2-5"
    assert record["user_agent"].startswith("aliyun-sdk-python")


def test_non_ascii_user_meta_round_trips_as_utf8(oss_bucket):
    """A stored x-oss-meta value like 测试 comes back on HEAD and GET instead of dropping the connection."""
    oss_bucket.put_object("unicode-meta", b"x", headers={"x-oss-meta-note": "测试".encode()})  # as oss2's own test
    head = oss_bucket.head_object("unicode-meta")
    assert head.headers["x-oss-meta-note"].encode("latin-1").decode("utf-8") == "测试"
    assert oss_bucket.get_object("unicode-meta").read() == b"x"


def test_get_declaring_a_body_it_never_sends_is_answered(local_server, oss_bucket, fresh_bucket_name):
    """oss2's signed-URL tests send GET with Content-Length but no body; OSS answers instead of waiting."""
    oss_bucket.put_object("plain", b"payload")
    headers = v1_headers(local_server, "GET", fresh_bucket_name, "plain")
    headers["Content-Length"] = "9"
    with RawConnection(local_server, timeout=5.0) as connection:
        connection.send(request_head("GET", fresh_bucket_name, "plain", headers))
        status, _, body = connection.read_response()
        assert connection.at_eof()  # framing is lost, so the server closes the connection
    assert (status, body) == (200, b"payload")


def _send_in_pieces(connection: RawConnection, data: bytes, sizes: list[int]) -> None:
    """Send `data` in pieces of the given sizes, cycling through them (each piece its own send)."""
    offset = index = 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        connection.send(data[offset:offset + size])
        offset += size
        index += 1


@pytest.mark.parametrize("pieces", [[1, 7, 65537], [SPOOL_BUFFER_SIZE - 3, 5, 4096], [1 << 20]],
                         ids=["tiny-odd", "around-buffer-edge", "1MiB"])
def test_large_bodies_in_odd_chunkings_on_one_connection_are_stored_byte_exact(local_server, oss_bucket,
                                                                                 fresh_bucket_name, pieces):
    """The fast body path reuses its spool buffers across requests: each body is stored byte-exact with its own
    MD5 ETag and CRC64, whatever the sizes of the pieces it arrives in, and a shorter body after a longer one keeps
    nothing of the earlier one's bytes (a stale buffer tail), nor does a body split across the two buffers."""
    payloads = {"long": os.urandom(2 * SPOOL_BUFFER_SIZE + 4097), "short": os.urandom(FAST_BODY_MIN + 1),
                "edge": os.urandom(SPOOL_BUFFER_SIZE + 1)}
    with RawConnection(local_server, timeout=30) as connection:
        for key, payload in payloads.items():
            headers = v1_headers(local_server, "PUT", fresh_bucket_name, key)
            headers["Content-Length"] = str(len(payload))
            # The head and the body's first bytes in one send, as clients do (h11 buffers them with the head).
            connection.send(request_head("PUT", fresh_bucket_name, key, headers) + payload[:pieces[0]])
            _send_in_pieces(connection, payload[pieces[0]:], pieces[1:] or pieces)
            status, response_headers, body = connection.read_response()
            assert status == 200, body
            assert response_headers["etag"] == f'"{hashlib.md5(payload).hexdigest().upper()}"'
            assert response_headers["x-oss-hash-crc64ecma"] == str(crc64(payload))
    for key, payload in payloads.items():
        assert oss_bucket.get_object(key).read() == payload, key
    assert wait_for_no_spool_files(local_server) == []


def test_concurrent_large_uploads_share_the_buffer_pool_without_mixing_bytes(local_server, oss_bucket):
    """More large bodies at once than the server keeps spool buffers for: every one stored byte-exact (oss2
    checks each returned CRC64)."""
    payloads = {f"part-{n}": os.urandom(SPOOL_BUFFER_SIZE + 1000 * n + 1) for n in range(SPOOL_BUFFERS_KEPT)}
    with concurrent.futures.ThreadPoolExecutor(len(payloads)) as pool:
        etags = dict(zip(payloads, pool.map(lambda item: oss_bucket.put_object(*item).etag, payloads.items())))
    for key, payload in payloads.items():
        assert etags[key] == hashlib.md5(payload).hexdigest().upper()
        assert oss_bucket.get_object(key).read() == payload
