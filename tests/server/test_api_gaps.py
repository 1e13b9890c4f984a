"""Issue 2 items exercised over real HTTP that the other server tests reach only in-process: virtual-hosted
addressing, an unrestored ColdArchive object, `--anonymous`, and the one debug line per request."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import oss2
import pytest

from ossmount.testing import LocalServer
from tests.server.rawhttp import RawConnection, v1_headers


def test_virtual_hosted_request_over_http(local_server, oss_bucket, fresh_bucket_name):
    """Host `<bucket>.localhost` selects the bucket; the path holds only the key (signature still /bucket/key)."""
    oss_bucket.put_object("dir/vh.txt", b"virtual")
    headers = v1_headers(local_server, "GET", fresh_bucket_name, "dir/vh.txt")
    headers["Host"] = f"{fresh_bucket_name}.localhost:{local_server.port}"
    head = "GET /dir/vh.txt HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with RawConnection(local_server) as connection:
        connection.send(head.encode())
        status, _, body = connection.read_response()
    assert (status, body) == (200, b"virtual")


def test_unrestored_cold_archive_is_refused_until_restored(oss_bucket):
    oss_bucket.put_object("colder", b"x", headers={"x-oss-storage-class": "ColdArchive"})
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        oss_bucket.get_object("colder")
    assert (refused.value.status, refused.value.code) == (403, "InvalidObjectState")
    assert oss_bucket.head_object("colder").headers["x-oss-storage-class"] == "ColdArchive"


@pytest.fixture(scope="module")
def anonymous_debug_server(tmp_path_factory):
    server = LocalServer(tmp_path_factory.mktemp("anon"), buckets=("open-bucket",), anonymous=True,
                         extra_args=("-d",))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_anonymous_server_accepts_unsigned_requests_and_logs_one_line_each(anonymous_debug_server):
    server = anonymous_debug_server
    server.oss2_bucket("open-bucket").put_object("public.txt", b"no signature needed")
    with urllib.request.urlopen(f"{server.endpoint}/open-bucket/public.txt", timeout=10) as response:
        assert response.status == 200 and response.read() == b"no signature needed"
    # The server logs a request after its last byte is sent: the line may land just after the client has it all.
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.stderr_text().splitlines() if "public.txt" in line and "GET" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1, lines
    # method, bucket, key, status, bytes, ms
    assert re.search(r"GET open-bucket public\.txt 200 19 [\d.]+ms", lines[0]), lines[0]


def test_signed_only_server_refuses_unsigned_requests(local_server, oss_bucket, fresh_bucket_name):
    oss_bucket.put_object("private.txt", b"secret data")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{local_server.endpoint}/{fresh_bucket_name}/private.txt", timeout=10)
    assert refused.value.code == 403 and b"<Code>AccessDenied</Code>" in refused.value.read()
