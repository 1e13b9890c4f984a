"""The server as a product facing hostile or broken clients (issue 12, item 7): slow and silent connections are
dropped after the configured timeouts and do not stop others being served, broken chunked bodies get a 400 with an
error document, a V4 payload hash must match the body, and user metadata is capped at 8 KB.

Timeouts are set short for these servers; every wait in a test is a generous upper bound, never a measurement."""

from __future__ import annotations

import hashlib
import os
import resource
import select
import socket
import time
import uuid

import oss2
import pytest

from ossmount.server.http import FAST_BODY_MIN
from ossmount.testing import LocalServer, wait_for
from tests.server.rawhttp import RawConnection, request_head, v1_headers, v4_headers

BUCKET = "hardened"
SHORT = 2.0  # seconds: the idle, header and body timeouts of the `short_timeouts` server
BOUND = 60.0  # seconds: how long a test waits for something that must happen


@pytest.fixture(scope="module")
def short_timeouts(tmp_path_factory):
    server = LocalServer(tmp_path_factory.mktemp("short"), buckets=(BUCKET,), extra_args=(
        "--idle-timeout", str(SHORT), "--header-timeout", str(SHORT), "--body-timeout", str(SHORT)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def read_until_eof(sock: socket.socket, bound: float = BOUND) -> bytes:
    """Everything the server sends until it closes the connection (fails if it has not closed within `bound`)."""
    sock.settimeout(bound)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError(f"the server kept the connection open for {bound:.0f} s") from None
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (its FIN or RST arrived), without waiting; drains what was sent."""
    while select.select([sock], [], [], 0)[0]:
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BlockingIOError):
            return True
    return False


def connect(server: LocalServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# -- timeouts ---------------------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(short_timeouts):
    with connect(short_timeouts) as sock:
        assert read_until_eof(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(short_timeouts):
    bucket = short_timeouts.oss2_bucket(BUCKET)
    bucket.put_object("kept", b"x")
    with RawConnection(short_timeouts, timeout=BOUND) as connection:
        connection.send(request_head("GET", BUCKET, "kept", v1_headers(short_timeouts, "GET", BUCKET, "kept")))
        assert connection.read_response()[0] == 200
        assert read_until_eof(connection.sock) == b""


def test_a_trickled_request_head_is_refused_with_408(short_timeouts):
    """A slowloris client keeps sending header bytes, but the head must be complete SHORT seconds after its first."""
    with connect(short_timeouts) as sock:
        sock.sendall(b"GET /hardened/k HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + BOUND
        while not closed_now(sock) and time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: a\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        sock.settimeout(BOUND)
        try:
            rest = sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        assert time.monotonic() < deadline, "the trickling client was never cut off"
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408")


def test_a_partial_request_head_gets_408_then_close(short_timeouts):
    with connect(short_timeouts) as sock:
        sock.sendall(b"PUT /hardened/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        response = read_until_eof(sock)
    assert status_of(response) == 408 and b"<Code>RequestTimeout</Code>" in response


@pytest.mark.parametrize("size", [1000, 4 * FAST_BODY_MIN], ids=["framed-body", "fast-body"])
def test_a_body_that_never_finishes_gets_400_request_timeout(short_timeouts, size):
    key = f"unfinished-{size}"
    headers = v1_headers(short_timeouts, "PUT", BUCKET, key)
    headers["Content-Length"] = str(size)
    with connect(short_timeouts) as sock:
        sock.sendall(request_head("PUT", BUCKET, key, headers) + b"x" * (size // 4))
        response = read_until_eof(sock)
    assert status_of(response) == 400 and b"<Code>RequestTimeout</Code>" in response
    assert not short_timeouts.oss2_bucket(BUCKET).object_exists(key)
    assert short_timeouts.admin.fsck() == []


def test_a_large_body_trickled_faster_than_the_body_timeout_is_received(short_timeouts):
    """The fast body path waits for many bytes per wakeup (SO_RCVLOWAT); a client sending small pieces, each within
    the body timeout, still never pauses for SHORT seconds, so its body is stored whole; the same connection then
    serves its next (small) request."""
    key = "trickled-body"
    data = os.urandom(2 * FAST_BODY_MIN)
    piece = len(data) // 8
    headers = v1_headers(short_timeouts, "PUT", BUCKET, key)
    headers["Content-Length"] = str(len(data))
    with RawConnection(short_timeouts, timeout=BOUND) as connection:
        connection.send(request_head("PUT", BUCKET, key, headers))
        for at in range(0, len(data), piece):
            connection.send(data[at:at + piece])
            time.sleep(SHORT / 4)  # 8 pieces: twice SHORT in all, far less than SHORT between two
        status, response_headers, body = connection.read_response()
        assert status == 200, body
        assert response_headers["etag"].strip('"').lower() == hashlib.md5(data).hexdigest()
        connection.send(request_head("GET", BUCKET, key, v1_headers(short_timeouts, "GET", BUCKET, key)))
        assert connection.read_response()[::2] == (200, data)


def test_a_chunked_body_that_stops_gets_400_request_timeout(short_timeouts):
    headers = v1_headers(short_timeouts, "PUT", BUCKET, "chunked-stall")
    headers["Transfer-Encoding"] = "chunked"
    with connect(short_timeouts) as sock:
        sock.sendall(request_head("PUT", BUCKET, "chunked-stall", headers) + b"10\r\n0123456789")
        response = read_until_eof(sock)
    assert status_of(response) == 400 and b"<Code>RequestTimeout</Code>" in response


def test_a_client_that_stops_reading_a_response_is_dropped(short_timeouts):
    bucket = short_timeouts.oss2_bucket(BUCKET)
    size = 64 * 1024 * 1024
    bucket.put_object("big", os.urandom(size))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with sock:
        sock.connect(("127.0.0.1", short_timeouts.port))
        sock.sendall(request_head("GET", BUCKET, "big", v1_headers(short_timeouts, "GET", BUCKET, "big")))
        # Read nothing until the server gives up on us (a send blocked for longer than SHORT): its request log says so.
        gave_up = wait_for(lambda: [r for r in short_timeouts.admin.requests()
                                    if r["key"] == "big" and r["op"] == "GetObject"], bool, timeout=BOUND)
        received = len(read_until_eof(sock))
    assert gave_up and gave_up[-1]["fault"] == "client-gone" and gave_up[-1]["bytes"] < size
    assert received < size  # what the server had sent before it gave up, then EOF


def test_idle_connections_do_not_stop_oss2_and_come_back_when_used(short_timeouts):
    """oss2's pool keeps connections the server has closed meanwhile: the next request still succeeds."""
    bucket = short_timeouts.oss2_bucket(BUCKET)
    bucket.put_object("pooled", b"one")
    time.sleep(SHORT * 2)  # the pooled connection is closed by the server meanwhile
    assert bucket.get_object("pooled").read() == b"one"


# -- many stalled connections -----------------------------------------------------------------------------


@pytest.fixture
def many_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_server_keeps_serving_while_1000_connections_stall(tmp_path, many_files):
    stall = 20.0
    with LocalServer(tmp_path / "oss", buckets=(BUCKET,), extra_args=(
            "--idle-timeout", str(stall), "--header-timeout", str(stall), "--body-timeout", str(stall))) as server:
        bucket = server.oss2_bucket(BUCKET, connect_timeout=BOUND)
        stalled: list[socket.socket] = []
        try:
            for number in range(1000):
                sock = connect(server)
                stalled.append(sock)
                if number % 2:  # half stop inside the head, half inside the body
                    sock.sendall(b"GET /hardened/x HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: by")
                else:
                    headers = v1_headers(server, "PUT", BUCKET, f"s{number}")
                    headers["Content-Length"] = "100"
                    sock.sendall(request_head("PUT", BUCKET, f"s{number}", headers) + b"partial")
            bucket.put_object("served", b"while 1000 connections stall")
            assert bucket.get_object("served").read() == b"while 1000 connections stall"
            assert not closed_now(stalled[-1]), "the last stalled connection was closed before the request ran"
            for sock in stalled:
                read_until_eof(sock)
        finally:
            for sock in stalled:
                sock.close()
        assert server.admin.fsck() == []


def test_connections_beyond_the_limit_wait_for_a_free_slot(tmp_path):
    with LocalServer(tmp_path / "oss", buckets=(BUCKET,), extra_args=(
            "--max-connections", "5", "--header-timeout", "3", "--idle-timeout", "3")) as server:
        stalled = [connect(server) for _ in range(5)]
        try:
            for sock in stalled:
                sock.sendall(b"GET /hardened/x HTTP/1.1\r\n")
            with RawConnection(server, timeout=BOUND) as waiting:
                waiting.send(request_head("GET", BUCKET, "", v1_headers(server, "GET", BUCKET, "")))
                status, _, _ = waiting.read_response()
                assert status == 200
                assert any(closed_now(sock) for sock in stalled), "served before any stalled connection was closed"
        finally:
            for sock in stalled:
                sock.close()


# -- broken chunked bodies --------------------------------------------------------------------------------


@pytest.fixture
def fresh_bucket(local_server):
    name = f"h-{uuid.uuid4().hex[:12]}"
    local_server.oss2_bucket(name).create_bucket()
    return name


@pytest.mark.parametrize("body", [
    b"zz\r\nhello\r\n0\r\n\r\n",  # a size that is not hex
    b"5\r\nhello world\r\n0\r\n\r\n",  # more data than the chunk declares
    b"5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",  # a trailer line without a colon
], ids=["bad-size", "overlong-chunk", "bad-trailer"])
def test_malformed_transfer_encoding_chunked_gets_400(local_server, fresh_bucket, body):
    headers = v1_headers(local_server, "PUT", fresh_bucket, "chunked")
    headers["Transfer-Encoding"] = "chunked"
    with connect(local_server) as sock:
        sock.sendall(request_head("PUT", fresh_bucket, "chunked", headers) + body)
        response = read_until_eof(sock)
    assert status_of(response) == 400
    assert b"<Code>InvalidRequest</Code>" in response and b"Malformed chunked request body" in response
    assert b"Connection: close" in response
    assert not local_server.oss2_bucket(fresh_bucket).object_exists("chunked")


AWS_CHUNKED_HEADERS = {
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "Content-Encoding": "aws-chunked",
}


@pytest.mark.parametrize("body,code", [
    (b"zz;chunk-signature=" + b"0" * 64 + b"\r\nhello\r\n", b"InvalidRequest"),
    (b"5;chunk-signature=" + b"0" * 64 + b"\r\nhello\r\n", b"IncompleteBody"),  # no final chunk
], ids=["bad-size", "no-final-chunk"])
def test_malformed_aws_chunked_body_of_an_s3_request_gets_400_and_the_connection_goes_on(
        local_server, fresh_bucket, body, code):
    """The body is Content-Length framed, so after the 400 the same connection serves the next request."""
    headers = {"Host": f"127.0.0.1:{local_server.port}", "x-amz-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
               "Authorization": "AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/s3/aws4_request, "
                                "SignedHeaders=host, Signature=" + "0" * 64,
               "Content-Length": str(len(body)), **AWS_CHUNKED_HEADERS}
    with RawConnection(local_server, timeout=BOUND) as connection:
        connection.send(request_head("PUT", fresh_bucket, "aws", headers) + body)
        status, response_headers, document = connection.read_response()
        assert status == 400 and b"<Code>" + code + b"</Code>" in document
        assert "x-amz-request-id" in response_headers  # answered in the S3 dialect
        connection.send(request_head("GET", fresh_bucket, "", v1_headers(local_server, "GET", fresh_bucket, "")))
        assert connection.read_response()[0] == 200


def test_malformed_aws_chunked_body_of_an_oss_request_is_refused_not_stored_empty(local_server, fresh_bucket):
    body = b"zz\r\nhello\r\n0\r\n\r\n"
    headers = v1_headers(local_server, "PUT", fresh_bucket, "oss-aws", extra=AWS_CHUNKED_HEADERS)
    headers["Content-Length"] = str(len(body))
    with RawConnection(local_server, timeout=BOUND) as connection:
        connection.send(request_head("PUT", fresh_bucket, "oss-aws", headers) + body)
        status, response_headers, document = connection.read_response()
    assert status == 400 and b"<Code>InvalidRequest</Code>" in document and "x-oss-request-id" in response_headers
    assert not local_server.oss2_bucket(fresh_bucket).object_exists("oss-aws")


# -- V4 payload hash --------------------------------------------------------------------------------------


def v4_put(server: LocalServer, bucket: str, key: str, body: bytes, content_sha256: str) -> tuple[int, bytes]:
    headers = v4_headers(server, "PUT", bucket, key, content_sha256=content_sha256)
    headers["Content-Length"] = str(len(body))
    with RawConnection(server, timeout=BOUND) as connection:
        connection.send(request_head("PUT", bucket, key, headers) + body)
        status, _, document = connection.read_response()
    return status, document


@pytest.mark.parametrize("size", [100, 2 * FAST_BODY_MIN], ids=["small", "fast-path"])
def test_v4_payload_hash_must_match_the_body(local_server, fresh_bucket, size):
    body = os.urandom(size)
    assert v4_put(local_server, fresh_bucket, "hashed", body, hashlib.sha256(body).hexdigest())[0] == 200
    assert local_server.oss2_bucket(fresh_bucket).get_object("hashed").read() == body

    other = hashlib.sha256(body + b"!").hexdigest()
    status, document = v4_put(local_server, fresh_bucket, "mismatch", body, other)
    assert status == 400 and b"<Code>InvalidArgument</Code>" in document and b"<EC>0002-00000214</EC>" in document
    assert not local_server.oss2_bucket(fresh_bucket).object_exists("mismatch")


def test_v4_payload_hash_unsigned_or_garbage(local_server, fresh_bucket):
    assert v4_put(local_server, fresh_bucket, "unsigned", b"data", "UNSIGNED-PAYLOAD")[0] == 200
    status, document = v4_put(local_server, fresh_bucket, "garbage", b"data", "e3b0c44298fc1c149afbf4c8996fb924")
    assert status == 400 and b"<EC>0002-00000214</EC>" in document
    assert not local_server.oss2_bucket(fresh_bucket).object_exists("garbage")


# -- 8 KB of user metadata --------------------------------------------------------------------------------


def metadata_of_size(total: int) -> dict[str, str]:
    """x-oss-meta-* headers whose names and values add up to exactly `total` bytes."""
    headers = {}
    remaining = total
    index = 0
    while remaining:
        name = f"x-oss-meta-m{index:03d}"
        value_size = min(1000, remaining - len(name))
        headers[name] = "v" * value_size
        remaining -= len(name) + value_size
        index += 1
    return headers


def too_large(call) -> oss2.exceptions.OssError:
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        call()
    error = refused.value
    assert (error.status, error.code, error.ec) == (400, "MetadataTooLarge", "0011-00000002"), error
    return error


def test_user_metadata_is_capped_at_8_kb_on_every_write_that_sets_it(oss_bucket):
    limit, over = metadata_of_size(8192), metadata_of_size(8193)
    oss_bucket.put_object("at-limit", b"x", headers=limit)
    assert oss_bucket.head_object("at-limit").headers["x-oss-meta-m000"] == limit["x-oss-meta-m000"]
    too_large(lambda: oss_bucket.put_object("over", b"x", headers=over))
    too_large(lambda: oss_bucket.copy_object(oss_bucket.bucket_name, "at-limit", "copied",
                                             headers={"x-oss-metadata-directive": "REPLACE", **over}))
    oss_bucket.copy_object(oss_bucket.bucket_name, "at-limit", "copied")  # COPY keeps the (allowed) metadata
    too_large(lambda: oss_bucket.update_object_meta("at-limit", over))
    too_large(lambda: oss_bucket.init_multipart_upload("mp", headers=over))
    too_large(lambda: oss_bucket.append_object("appended", 0, b"x", headers=over))
    too_large(lambda: oss_bucket.put_symlink("at-limit", "link", headers=over))
    for key in ("over", "appended", "link"):
        assert not oss_bucket.object_exists(key)
    assert not list(oss2.MultipartUploadIterator(oss_bucket))


def test_user_metadata_cap_in_the_s3_dialect(local_server, fresh_bucket):
    from botocore.exceptions import ClientError

    s3 = local_server.boto3_client()
    over = {name[len("x-oss-meta-"):]: value for name, value in metadata_of_size(8193).items()}
    limit = {name[len("x-oss-meta-"):]: value for name, value in metadata_of_size(8192).items()}
    s3.put_object(Bucket=fresh_bucket, Key="at-limit", Body=b"x", Metadata=limit)
    calls = [
        lambda: s3.put_object(Bucket=fresh_bucket, Key="over", Body=b"x", Metadata=over),
        lambda: s3.copy_object(Bucket=fresh_bucket, Key="copied", CopySource={"Bucket": fresh_bucket,
                               "Key": "at-limit"}, MetadataDirective="REPLACE", Metadata=over),
        lambda: s3.create_multipart_upload(Bucket=fresh_bucket, Key="mp", Metadata=over),
    ]
    for call in calls:
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "MetadataTooLarge"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
