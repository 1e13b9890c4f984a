"""ServerCore driven in-process with hand-built requests (anonymous mode): the OSS edge cases of
oss-api.md §2 that are awkward to reach through oss2."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ossmount.server.core import ServerCore
from ossmount.server.core.auth import Credential, CredentialStore
from ossmount.crc64 import crc64
from ossmount.server.core.model import Request, Response, SpooledBody

OWNER = "owner-ak"


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def spooled(data: bytes) -> SpooledBody:
    return SpooledBody(None, len(data), hashlib.md5(data).digest(), crc64(data), data=data)


class Client:
    """Builds Requests for a ServerCore and reads Response bodies (bytes or file extents)."""

    def __init__(self, core: ServerCore):
        self.core = core

    def call(self, method: str, bucket: str = "", key: str = "", query: str = "",
             headers: dict[str, str] | None = None, data: bytes | None = None) -> Response:
        path = "/"
        if bucket:
            path += bucket + "/" + quote(key, safe="")
        target = path + ("?" + query if query else "")
        all_headers = {"host": "127.0.0.1:9000", **{k.lower(): v for k, v in (headers or {}).items()}}
        body = spooled(data) if data is not None else None
        response = self.core.handle(Request(method, target, all_headers, body))
        self.body(response)  # as the HTTP front does: read the extents while the blobs are pinned, then release
        return response

    @staticmethod
    def read_extents(extents) -> bytes:
        chunks = []
        for extent in extents:
            with open(extent.path, "rb") as f:
                f.seek(extent.offset)
                chunks.append(f.read(extent.length))
        return b"".join(chunks)

    @staticmethod
    def body(response: Response) -> bytes:
        """The body bytes (read, and the blobs released, by `call`; read here for responses from core.handle)."""
        if not hasattr(response, "data"):
            try:
                response.data = (response.body if isinstance(response.body, bytes)
                                 else Client.read_extents(response.body))
            finally:
                response.close()
        return response.data

    def xml(self, response: Response) -> ET.Element:
        return ET.fromstring(self.body(response))

    def put(self, bucket: str, key: str, data: bytes, **headers: str) -> Response:
        response = self.call("PUT", bucket, key, headers=headers, data=data)
        assert response.status == 200, self.body(response)
        return response

    def get(self, bucket: str, key: str, query: str = "", **headers: str) -> Response:
        return self.call("GET", bucket, key, query=query, headers=headers)


def header(response: Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.lower() == name.lower():
            return value
    return None


def error_code(client: Client, response: Response) -> str:
    return client.xml(response).findtext("Code")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(tmp_path, clock):
    credentials = CredentialStore([Credential(OWNER, "secret")])
    server = ServerCore(str(tmp_path / "data"), credentials=credentials, anonymous=True, clock=clock,
                        restore_delay=60.0)
    server.ensure_bucket("bkt", OWNER)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client(core) -> Client:
    return Client(core)


# -- basics ---------------------------------------------------------------------------------------


def test_put_get_head_and_common_headers(client):
    put = client.put("bkt", "hello", b"hello", **{"Content-Type": "text/plain", "x-oss-meta-Color": "blue",
                                                  "Cache-Control": "no-cache"})
    assert header(put, "ETag") == '"5D41402ABC4B2A76B9719D911017C592"'
    assert header(put, "x-oss-hash-crc64ecma") == str(crc64(b"hello"))
    assert header(put, "Server") == "AliyunOSS"
    assert re.fullmatch(r"[0-9A-F]{24}", header(put, "x-oss-request-id"))
    assert header(put, "Date").endswith("GMT") and header(put, "x-oss-server-time") is not None

    got = client.get("bkt", "hello")
    assert got.status == 200 and client.body(got) == b"hello"
    assert header(got, "Content-Type") == "text/plain"
    assert header(got, "x-oss-meta-color") == "blue"
    assert header(got, "Cache-Control") == "no-cache"
    assert header(got, "x-oss-object-type") == "Normal"
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", header(got, "Last-Modified"))

    head = client.call("HEAD", "bkt", "hello")
    assert head.status == 200 and head.body == b"" and head.content_length == 5
    meta = client.call("HEAD", "bkt", "hello", query="objectMeta")
    assert meta.status == 200 and header(meta, "ETag") == header(put, "ETag") and meta.content_length == 5


def test_empty_object(client):
    client.put("bkt", "empty", b"")
    got = client.get("bkt", "empty")
    assert got.status == 200 and client.body(got) == b"" and header(got, "x-oss-hash-crc64ecma") == "0"
    assert header(got, "ETag") == '"D41D8CD98F00B204E9800998ECF8427E"'


def test_head_errors_have_no_body_but_x_oss_err(client):
    missing = client.call("HEAD", "bkt", "nope")
    assert missing.status == 404 and missing.body == b""
    document = ET.fromstring(base64.b64decode(header(missing, "x-oss-err")))
    assert document.tag == "Error" and document.findtext("Code") == "NoSuchKey"
    assert header(missing, "x-oss-ec") == "0026-00000001"
    no_bucket = client.call("HEAD", "nobucket", "k", query="objectMeta")
    assert no_bucket.status == 404
    assert ET.fromstring(base64.b64decode(header(no_bucket, "x-oss-err"))).findtext("Code") == "NoSuchBucket"


def test_get_error_document_has_no_namespace(client):
    response = client.get("bkt", "nope")
    root = client.xml(response)
    assert response.status == 404 and root.tag == "Error"
    assert root.findtext("Key") == "nope" and root.findtext("EC") == "0026-00000001"
    assert len(root.findtext("RequestId")) == 24


@pytest.mark.parametrize("key", ["/lead", "\\lead", "x" * 1024])
def test_invalid_object_names(client, key):
    response = client.call("PUT", "bkt", key, data=b"x")
    assert response.status == 400 and error_code(client, response) == "InvalidObjectName"


def test_content_md5_checked(client):
    good = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    assert client.call("PUT", "bkt", "k", headers={"Content-MD5": good}, data=b"data").status == 200
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    response = client.call("PUT", "bkt", "k", headers={"Content-MD5": bad}, data=b"data")
    assert response.status == 400 and error_code(client, response) == "InvalidDigest"
    response = client.call("PUT", "bkt", "k", headers={"Content-MD5": "garbage!"}, data=b"data")
    assert error_code(client, response) == "InvalidDigest"


def test_forbid_overwrite(client):
    client.put("bkt", "k", b"one")
    response = client.call("PUT", "bkt", "k", headers={"x-oss-forbid-overwrite": "true"}, data=b"two")
    assert response.status == 409 and error_code(client, response) == "FileAlreadyExists"
    response = client.call("PUT", "bkt", "k", headers={"x-oss-forbid-overwrite": "maybe"}, data=b"two")
    assert response.status == 400 and error_code(client, response) == "InvalidArgument"
    assert client.call("PUT", "bkt", "new", headers={"x-oss-forbid-overwrite": "true"}, data=b"x").status == 200
    assert client.call("PUT", "bkt", "k", headers={"x-oss-forbid-overwrite": "false"}, data=b"3").status == 200
    assert client.body(client.get("bkt", "k")) == b"3"


# -- ranges (oss-api.md §2.6 table, 1000-byte object) ---------------------------------------------

DATA = bytes(range(256)) * 3 + bytes(232)

RANGE_CASES = [
    ("bytes=0-499", 206, (0, 499), 206, (0, 499)),
    ("bytes=500-", 206, (500, 999), 206, (500, 999)),
    ("bytes=-500", 206, (500, 999), 206, (500, 999)),
    ("bytes=500-2000", 200, None, 206, (500, 999)),
    ("bytes=1000-2000", 200, None, 416, None),
    ("bytes=1000-", 200, None, 416, None),
    ("bytes=-2000", 200, None, 206, (0, 999)),
    ("byte=0-1", 200, None, 200, None),
    ("bytes=0-1,5-6", 206, (0, 1), 416, None),
    ("bytes=5-2", 200, None, 416, None),
]


@pytest.mark.parametrize("range_value, status, span, std_status, std_span", RANGE_CASES)
def test_range_table(client, range_value, status, span, std_status, std_span):
    assert len(DATA) == 1000
    client.put("bkt", "obj", DATA)
    for standard, want_status, want_span in ((False, status, span), (True, std_status, std_span)):
        headers = {"Range": range_value}
        if standard:
            headers["x-oss-range-behavior"] = "standard"
        response = client.get("bkt", "obj", **headers)
        assert response.status == want_status, (range_value, standard)
        if want_status == 416:
            assert error_code(client, response) == "InvalidRange"
        elif want_span is None:
            assert client.body(response) == DATA and header(response, "Content-Range") is None
        else:
            first, last = want_span
            assert client.body(response) == DATA[first:last + 1]
            assert header(response, "Content-Range") == f"bytes {first}-{last}/1000"
        assert header(response, "x-oss-hash-crc64ecma") in (None, str(crc64(DATA)))


def test_range_on_empty_object(client):
    client.put("bkt", "empty", b"")
    assert client.get("bkt", "empty", Range="bytes=0-10").status == 200
    response = client.get("bkt", "empty", Range="bytes=0-10", **{"x-oss-range-behavior": "standard"})
    assert response.status == 416


def test_range_spanning_appended_extents(client):
    client.call("POST", "bkt", "app", query="append&position=0", data=b"abc")
    client.call("POST", "bkt", "app", query="append&position=3", data=b"defgh")
    response = client.get("bkt", "app", Range="bytes=2-5")
    assert response.status == 206 and client.body(response) == b"cdef" and len(response.body) == 2


# -- conditionals and overrides -------------------------------------------------------------------


def test_conditionals(client, clock):
    etag = header(client.put("bkt", "k", b"body"), "ETag")
    bare = etag.strip('"')
    assert client.get("bkt", "k", **{"If-Match": bare}).status == 200
    assert client.get("bkt", "k", **{"If-Match": etag}).status == 200
    failed = client.get("bkt", "k", **{"If-Match": '"0000"'})
    assert failed.status == 412 and error_code(client, failed) == "PreconditionFailed"
    not_modified = client.get("bkt", "k", **{"If-None-Match": bare})
    assert not_modified.status == 304 and not_modified.body == b""
    assert header(not_modified, "ETag") == etag and header(not_modified, "Last-Modified") is not None
    assert client.get("bkt", "k", **{"If-None-Match": '"0000"'}).status == 200
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock.now + 3600))
    earlier = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock.now - 3600))
    assert client.get("bkt", "k", **{"If-Modified-Since": later}).status == 304
    assert client.get("bkt", "k", **{"If-Modified-Since": earlier}).status == 200
    assert client.get("bkt", "k", **{"If-Unmodified-Since": earlier}).status == 412
    assert client.get("bkt", "k", **{"If-Unmodified-Since": later}).status == 200
    assert client.call("HEAD", "bkt", "k", headers={"If-Match": '"0000"'}).status == 412


def test_response_overrides(client):
    client.put("bkt", "k", b"body", **{"Content-Type": "text/plain"})
    response = client.get("bkt", "k", query="response-content-type=image%2Fpng&response-content-disposition=attachment")
    assert header(response, "Content-Type") == "image/png"
    assert header(response, "Content-Disposition") == "attachment"


# -- listing --------------------------------------------------------------------------------------


def list_v1(client, **params) -> ET.Element:
    query = "&".join(f"{k.replace('_', '-')}={quote(str(v), safe='')}" for k, v in params.items())
    response = client.call("GET", "bkt", query=query)
    assert response.status == 200, client.body(response)
    return client.xml(response)


def keys_of(root) -> list[str]:
    return [c.findtext("Key") for c in root.findall("Contents")]


def prefixes_of(root) -> list[str]:
    return [c.findtext("Prefix") for c in root.findall("CommonPrefixes")]


def test_list_delimiter_and_paging(client):
    for key in ["a", "dir/", "dir/x", "dir/y/z", "dir2/q", "e", "f/g"]:
        client.put("bkt", key, b"1")
    root = list_v1(client, delimiter="/")
    assert keys_of(root) == ["a", "e"] and prefixes_of(root) == ["dir/", "dir2/", "f/"]
    root = list_v1(client, prefix="dir/", delimiter="/")
    assert keys_of(root) == ["dir/", "dir/x"] and prefixes_of(root) == ["dir/y/"]

    seen, marker = [], ""
    while True:
        root = list_v1(client, delimiter="/", max_keys=2, marker=marker)
        page = keys_of(root) + prefixes_of(root)
        assert len(page) <= 2
        seen += sorted(page)
        if root.findtext("IsTruncated") == "false":
            assert root.find("NextMarker") is None
            break
        marker = root.findtext("NextMarker")
    assert seen == ["a", "dir/", "dir2/", "e", "f/"]

    contents = list_v1(client, prefix="a").find("Contents")
    for tag in ("Key", "LastModified", "ETag", "Type", "Size", "StorageClass", "Owner"):
        assert contents.find(tag) is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", contents.findtext("LastModified"))


def test_list_orders_by_utf8_bytes_and_url_encodes(client):
    keys = ["z", "\u00e9", "\U0001f600", "A b", "a+b", "\uff5e"]
    for key in keys:
        client.put("bkt", key, b"1")
    root = list_v1(client, encoding_type="url")
    from urllib.parse import unquote
    listed = [unquote(k) for k in keys_of(root)]
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))
    assert "A%20b" in keys_of(root) and "a%2Bb" in keys_of(root)
    assert root.findtext("EncodingType") == "url"


def test_list_v2_tokens_and_owner(client):
    for i in range(5):
        client.put("bkt", f"k{i}", b"1")
    response = client.call("GET", "bkt", query="list-type=2&max-keys=2&fetch-owner=false")
    root = client.xml(response)
    assert keys_of(root) == ["k0", "k1"] and root.findtext("KeyCount") == "2"
    assert root.find("Contents/Owner") is None
    token = root.findtext("NextContinuationToken")
    root = client.xml(client.call("GET", "bkt", query=f"list-type=2&max-keys=10&fetch-owner=true&continuation-token={quote(token)}"))
    assert keys_of(root) == ["k2", "k3", "k4"] and root.find("NextContinuationToken") is None
    assert root.find("Contents/Owner/ID") is not None
    root = client.xml(client.call("GET", "bkt", query="list-type=2&start-after=k2"))
    assert keys_of(root) == ["k3", "k4"] and root.findtext("StartAfter") == "k2"
    bad = client.call("GET", "bkt", query="list-type=2&continuation-token=not-a-token")
    assert bad.status == 400 and error_code(client, bad) == "InvalidArgument"


def test_list_many_keys_with_delimiter_is_fast(client, core):
    from ossmount.server.core.store import ObjectRecord

    for i in range(10_000):
        core.store.put_object("bkt", f"dir{i % 40:02d}/file{i:05d}", ObjectRecord(etag="E", mtime=1.0), "")
    started = time.monotonic()
    root = list_v1(client, delimiter="/", max_keys=1000)
    assert len(prefixes_of(root)) == 40 and root.findtext("IsTruncated") == "false"
    root = list_v1(client, prefix="dir07/", max_keys=1000)
    assert len(keys_of(root)) == 250
    listed, token = 0, ""
    while True:
        query = "list-type=2&max-keys=1000" + (f"&continuation-token={quote(token)}" if token else "")
        root = client.xml(client.call("GET", "bkt", query=query))
        listed += len(keys_of(root))
        token = root.findtext("NextContinuationToken")
        if root.findtext("IsTruncated") == "false":
            break
    assert listed == 10_000
    assert time.monotonic() - started < 3.0


# -- copy and delete ------------------------------------------------------------------------------


def blob_count(core) -> int:
    return len(os.listdir(core.store.blob_dir))


def test_copy_object_shares_data_and_replaces_metadata(client, core):
    client.put("bkt", "src", b"payload", **{"x-oss-meta-a": "1", "Content-Type": "text/plain"})
    blobs = blob_count(core)
    response = client.call("PUT", "bkt", "dst", headers={"x-oss-copy-source": "/bkt/src"})
    assert response.status == 200 and client.xml(response).tag == "CopyObjectResult"
    assert header(response, "ETag") == header(client.get("bkt", "src"), "ETag")
    assert blob_count(core) == blobs
    assert header(client.get("bkt", "dst"), "x-oss-meta-a") == "1"

    client.call("PUT", "bkt", "src", headers={"x-oss-copy-source": "/bkt/src", "x-oss-metadata-directive": "REPLACE",
                                              "x-oss-meta-b": "2", "Content-Type": "image/png"})
    got = client.get("bkt", "src")
    assert header(got, "x-oss-meta-a") is None and header(got, "x-oss-meta-b") == "2"
    assert header(got, "Content-Type") == "image/png" and client.body(got) == b"payload"

    assert client.call("DELETE", "bkt", "src").status == 204
    assert client.body(client.get("bkt", "dst")) == b"payload"
    assert client.call("DELETE", "bkt", "dst").status == 204
    assert blob_count(core) == blobs - 1


def test_copy_decoded_source_cross_bucket_and_conditions(client, core):
    core.ensure_bucket("other", OWNER)
    key = "\u963f\u91cc\u4e91/:?;@&=+$, /<>{}[]|/"
    client.put("bkt", key, b"x")
    source = "/bkt/" + quote(key, safe="")
    assert client.call("PUT", "other", "copy", headers={"x-oss-copy-source": source}).status == 200
    failed = client.call("PUT", "other", "copy2", headers={"x-oss-copy-source": source,
                                                           "x-oss-copy-source-if-match": '"00"'})
    assert failed.status == 412
    failed = client.call("PUT", "other", "copy2", headers={"x-oss-copy-source": source,
                                                           "x-oss-copy-source-if-none-match": header(client.get("bkt", key), "ETag")})
    assert failed.status == 412
    missing = client.call("PUT", "other", "copy2", headers={"x-oss-copy-source": "/bkt/none"})
    assert missing.status == 404 and error_code(client, missing) == "NoSuchKey"


def test_delete_missing_is_204_and_delete_multiple(client):
    assert client.call("DELETE", "bkt", "never").status == 204
    for key in ("a", "b c"):
        client.put("bkt", key, b"1")
    body = b"<Delete><Quiet>false</Quiet><Object><Key>a</Key></Object><Object><Key>b c</Key></Object>" \
           b"<Object><Key>missing</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    response = client.call("POST", "bkt", query="delete&encoding-type=url", headers={"Content-MD5": md5}, data=body)
    root = client.xml(response)
    assert [d.findtext("Key") for d in root.findall("Deleted")] == ["a", "b%20c", "missing"]
    assert client.get("bkt", "b c").status == 404
    quiet = b"<Delete><Quiet>true</Quiet><Object><Key>x</Key></Object></Delete>"
    root = client.xml(client.call("POST", "bkt", query="delete", data=quiet))
    assert root.findall("Deleted") == []
    bad = client.call("POST", "bkt", query="delete", data=b"<Delete><Object>")
    assert bad.status == 400 and error_code(client, bad) == "MalformedXML"


# -- multipart ------------------------------------------------------------------------------------

PART = 100 * 1024


def initiate(client, key="mp", **headers) -> str:
    response = client.call("POST", "bkt", key, query="uploads", headers=headers)
    return client.xml(response).findtext("UploadId")


def upload(client, upload_id, number, data, key="mp") -> str:
    response = client.call("PUT", "bkt", key, query=f"partNumber={number}&uploadId={upload_id}", data=data)
    assert response.status == 200
    assert header(response, "x-oss-hash-crc64ecma") == str(crc64(data))
    return header(response, "ETag")


def complete_body(parts) -> bytes:
    inner = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts)
    return f"<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>".encode()


def test_multipart_complete_and_validation(client):
    upload_id = initiate(client, **{"x-oss-meta-m": "v", "Content-Type": "text/csv"})
    data1, data2, data3 = os.urandom(PART), os.urandom(PART - 1), os.urandom(10)
    e1, e2, e3 = upload(client, upload_id, 1, data1), upload(client, upload_id, 2, data2), upload(client, upload_id, 3, data3)

    def complete(parts, **headers):
        return client.call("POST", "bkt", "mp", query=f"uploadId={upload_id}", headers=headers,
                           data=complete_body(parts))

    assert error_code(client, complete([(2, e2), (1, e1)])) == "InvalidPartOrder"
    assert error_code(client, complete([(1, e1), (4, e3)])) == "InvalidPart"
    assert error_code(client, complete([(1, e1), (2, '"00000000000000000000000000000000"')])) == "InvalidPart"
    too_small = complete([(1, e1), (2, e2), (3, e3)])
    assert too_small.status == 400 and error_code(client, too_small) == "EntityTooSmall"

    listing = client.xml(client.call("GET", "bkt", query="uploads"))
    for tag in ("IsTruncated", "NextKeyMarker", "NextUploadIdMarker"):
        assert listing.find(tag) is not None
    assert [u.findtext("UploadId") for u in listing.findall("Upload")] == [upload_id]

    parts = client.xml(client.call("GET", "bkt", "mp", query=f"uploadId={upload_id}&max-parts=2"))
    assert [p.findtext("PartNumber") for p in parts.findall("Part")] == ["1", "2"]
    assert parts.findtext("IsTruncated") == "true" and parts.findtext("NextPartNumberMarker") == "2"

    done = complete([(1, e1), (3, e3)])
    assert done.status == 200, client.body(done)
    assert header(done, "x-oss-hash-crc64ecma") == str(crc64(data1 + data3))
    assert re.fullmatch(r'"[0-9A-F]{32}-2"', header(done, "ETag"))
    got = client.get("bkt", "mp")
    assert client.body(got) == data1 + data3
    assert header(got, "x-oss-object-type") == "Multipart" and header(got, "x-oss-meta-m") == "v"
    assert header(got, "Content-Type") == "text/csv"
    gone = client.call("GET", "bkt", "mp", query=f"uploadId={upload_id}")
    assert gone.status == 404 and error_code(client, gone) == "NoSuchUpload"


def test_multipart_complete_all_abort_and_part_copy(client, core):
    source = os.urandom(3 * PART)
    client.put("bkt", "source", source)
    upload_id = initiate(client)
    response = client.call("PUT", "bkt", "mp", query=f"partNumber=1&uploadId={upload_id}",
                           headers={"x-oss-copy-source": "/bkt/source", "x-oss-copy-source-range": f"bytes=0-{PART * 2 - 1}"})
    assert response.status == 200 and client.xml(response).tag == "CopyPartResult"
    assert header(response, "ETag") == '"' + hashlib.md5(source[:2 * PART]).hexdigest().upper() + '"'
    upload(client, upload_id, 2, b"tail")
    done = client.call("POST", "bkt", "mp", query=f"uploadId={upload_id}", headers={"x-oss-complete-all": "yes"})
    assert done.status == 200
    assert client.body(client.get("bkt", "mp")) == source[:2 * PART] + b"tail"
    assert header(done, "x-oss-hash-crc64ecma") == str(crc64(source[:2 * PART] + b"tail"))

    upload_id = initiate(client, key="aborted")
    upload(client, upload_id, 1, b"x", key="aborted")
    before = blob_count(core)
    assert client.call("DELETE", "bkt", "aborted", query=f"uploadId={upload_id}").status == 204
    assert blob_count(core) == before - 1
    assert client.call("DELETE", "bkt", "aborted", query=f"uploadId={upload_id}").status == 404


def test_part_copy_range_spanning_several_extents(client):
    pieces = [os.urandom(PART), os.urandom(PART), os.urandom(PART)]
    source_upload = initiate(client, key="source")
    for number, piece in enumerate(pieces, 1):
        upload(client, source_upload, number, piece, key="source")
    done = client.call("POST", "bkt", "source", query=f"uploadId={source_upload}", headers={"x-oss-complete-all": "yes"})
    assert done.status == 200
    source = b"".join(pieces)
    first, last = PART // 2, 2 * PART + PART // 3  # partial first extent, whole middle one, partial last
    upload_id = initiate(client)
    response = client.call("PUT", "bkt", "mp", query=f"partNumber=1&uploadId={upload_id}",
                           headers={"x-oss-copy-source": "/bkt/source", "x-oss-copy-source-range": f"bytes={first}-{last}"})
    assert response.status == 200
    copied = source[first:last + 1]
    assert header(response, "ETag") == '"' + hashlib.md5(copied).hexdigest().upper() + '"'
    assert header(response, "x-oss-hash-crc64ecma") == str(crc64(copied))
    done = client.call("POST", "bkt", "mp", query=f"uploadId={upload_id}", headers={"x-oss-complete-all": "yes"})
    assert header(done, "x-oss-hash-crc64ecma") == str(crc64(copied))
    assert client.body(client.get("bkt", "mp")) == copied


def test_multipart_forbid_overwrite_on_complete(client):
    client.put("bkt", "mp", b"exists")
    upload_id = initiate(client, **{"x-oss-forbid-overwrite": "true"})
    etag = upload(client, upload_id, 1, b"x")
    response = client.call("POST", "bkt", "mp", query=f"uploadId={upload_id}", data=complete_body([(1, etag)]))
    assert response.status == 409 and error_code(client, response) == "FileAlreadyExists"
    assert header(response, "x-oss-ec") == "0042-00000214"


# -- append and symlink ---------------------------------------------------------------------------


def test_append(client):
    first = client.call("POST", "bkt", "log", query="append&position=0", data=b"abc")
    assert first.status == 200 and header(first, "x-oss-next-append-position") == "3"
    wrong = client.call("POST", "bkt", "log", query="append&position=1", data=b"d")
    assert wrong.status == 409 and error_code(client, wrong) == "PositionNotEqualToLength"
    assert header(wrong, "x-oss-next-append-position") == "3"
    second = client.call("POST", "bkt", "log", query="append&position=3", data=b"def")
    assert header(second, "x-oss-hash-crc64ecma") == str(crc64(b"abcdef"))
    head = client.call("HEAD", "bkt", "log")
    assert header(head, "x-oss-object-type") == "Appendable" and header(head, "x-oss-next-append-position") == "6"
    client.put("bkt", "normal", b"x")
    refused = client.call("POST", "bkt", "normal", query="append&position=1", data=b"y")
    assert refused.status == 409 and error_code(client, refused) == "ObjectNotAppendable"


def test_symlink(client):
    client.put("bkt", "target", b"pointed-at")
    assert client.call("PUT", "bkt", "link", query="symlink", headers={"x-oss-symlink-target": "target"}).status == 200
    link = client.call("GET", "bkt", "link", query="symlink")
    assert header(link, "x-oss-symlink-target") == "target"
    assert client.body(client.get("bkt", "link")) == b"pointed-at"
    assert client.call("HEAD", "bkt", "link").content_length == len(b"pointed-at")
    assert client.call("GET", "bkt", "target", query="symlink").status == 400
    assert client.call("GET", "bkt", "nolink", query="symlink").status == 404
    client.call("PUT", "bkt", "dangling", query="symlink", headers={"x-oss-symlink-target": "gone"})
    assert client.get("bkt", "dangling").status == 404


# -- archive and restore --------------------------------------------------------------------------


def test_archive_restore_cycle(client, clock):
    client.put("bkt", "cold", b"frozen", **{"x-oss-storage-class": "Archive"})
    blocked = client.get("bkt", "cold")
    assert blocked.status == 403 and error_code(client, blocked) == "InvalidObjectState"
    assert client.call("HEAD", "bkt", "cold").status == 200
    with_job = b"<RestoreRequest><Days>2</Days><JobParameters><Tier>Standard</Tier></JobParameters></RestoreRequest>"
    assert error_code(client, client.call("POST", "bkt", "cold", query="restore", data=with_job)) == "MalformedXML"
    assert client.call("POST", "bkt", "cold", query="restore").status == 202
    busy = client.call("POST", "bkt", "cold", query="restore")
    assert busy.status == 409 and error_code(client, busy) == "RestoreAlreadyInProgress"
    assert header(client.call("HEAD", "bkt", "cold"), "x-oss-restore") == 'ongoing-request="true"'
    listed = list_v1(client).find("Contents/RestoreInfo")
    assert listed is not None and listed.text == 'ongoing-request="true"'
    assert client.get("bkt", "cold").status == 403
    clock.now += 61
    assert client.body(client.get("bkt", "cold")) == b"frozen"
    assert header(client.call("HEAD", "bkt", "cold"), "x-oss-restore").startswith('ongoing-request="false", expiry-date=')
    assert client.call("POST", "bkt", "cold", query="restore").status == 200


def test_cold_archive_tier_echo(client):
    client.put("bkt", "colder", b"x", **{"x-oss-storage-class": "ColdArchive"})
    body = b"<RestoreRequest><Days>1</Days><JobParameters><Tier>Expedited</Tier></JobParameters></RestoreRequest>"
    response = client.call("POST", "bkt", "colder", query="restore", data=body)
    assert response.status == 202 and header(response, "x-oss-object-restore-priority") == "Expedited"
    bad = b"<RestoreRequest><Days>1</Days><JobParameters><Tier>Fast</Tier></JobParameters></RestoreRequest>"
    client.put("bkt", "colder2", b"x", **{"x-oss-storage-class": "ColdArchive"})
    assert error_code(client, client.call("POST", "bkt", "colder2", query="restore", data=bad)) == "InvalidArgument"
    client.put("bkt", "warm", b"x")
    assert client.call("POST", "bkt", "warm", query="restore").status == 400


# -- versioning -----------------------------------------------------------------------------------


def test_versioning(client):
    body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    assert client.call("PUT", "bkt", query="versioning", data=body).status == 200
    assert client.xml(client.call("GET", "bkt", query="versioning")).findtext("Status") == "Enabled"
    v1 = header(client.put("bkt", "k", b"one"), "x-oss-version-id")
    v2 = header(client.put("bkt", "k", b"two"), "x-oss-version-id")
    assert v1 and v2 and v1 != v2
    deleted = client.call("DELETE", "bkt", "k")
    assert deleted.status == 204 and header(deleted, "x-oss-delete-marker") == "true"
    marker = header(deleted, "x-oss-version-id")
    gone = client.get("bkt", "k")
    assert gone.status == 404 and header(gone, "x-oss-delete-marker") == "true"
    assert client.body(client.get("bkt", "k", query=f"versionId={v1}")) == b"one"
    versions = client.xml(client.call("GET", "bkt", query="versions"))
    assert [v.findtext("VersionId") for v in versions.findall("Version")] == [v2, v1]
    assert versions.find("DeleteMarker/IsLatest").text == "true"
    assert keys_of(list_v1(client)) == []
    assert client.call("DELETE", "bkt", "k", query=f"versionId={marker}").status == 204
    assert client.body(client.get("bkt", "k")) == b"two"
    assert client.call("DELETE", "bkt", "k", query=f"versionId={v2}").status == 204
    assert client.body(client.get("bkt", "k")) == b"one"
    info = client.xml(client.call("GET", "bkt", query="bucketInfo"))
    assert info.findtext("Bucket/Versioning") == "Enabled"


# -- buckets, routing, durability -----------------------------------------------------------------


def test_bucket_lifecycle_and_info(client):
    assert client.call("PUT", "newbkt").status == 200
    assert client.call("PUT", "newbkt").status == 200
    assert client.call("PUT", "Bad_Name").status == 400
    client.put("newbkt", "k", b"12345")
    refused = client.call("DELETE", "newbkt")
    assert refused.status == 409 and error_code(client, refused) == "BucketNotEmpty"
    stat = client.xml(client.call("GET", "newbkt", query="stat"))
    assert stat.findtext("Storage") == "5" and stat.findtext("ObjectCount") == "1"
    info = client.xml(client.call("GET", "newbkt", query="bucketInfo"))
    assert info.findtext("Bucket/Name") == "newbkt" and info.findtext("Bucket/ExtranetEndpoint") == "127.0.0.1:9000"
    location = client.xml(client.call("GET", "newbkt", query="location"))
    assert location.text == "oss-cn-hangzhou"
    live = client.xml(client.call("GET", "newbkt", query="live"))
    assert live.tag == "ListLiveChannelResult" and live.findtext("IsTruncated") == "false"
    names = [b.findtext("Name") for b in client.xml(client.call("GET")).findall("Buckets/Bucket")]
    assert names == ["bkt", "newbkt"]
    client.call("DELETE", "newbkt", "k")
    assert client.call("DELETE", "newbkt").status == 204
    assert error_code(client, client.get("newbkt", "k")) == "NoSuchBucket"


def test_virtual_hosted_addressing(core):
    put = core.handle(Request("PUT", "/dir/file", {"host": "bkt.localhost:9000"}, spooled(b"v")))
    assert put.status == 200
    got = core.handle(Request("GET", "/bkt/dir%2Ffile", {"host": "127.0.0.1:9000"}))
    assert Client.body(got) == b"v"
    assert core.classify(Request("GET", "/?list-type=2", {"host": "bkt.localhost"})).op == "ListObjectsV2"
    assert core.classify(Request("PATCH", "/bkt/k", {})).op == "Unknown"


def test_unknown_operation_is_an_error_not_a_crash(client):
    response = client.call("PATCH", "bkt", "k")
    assert response.status >= 400 and client.xml(response).tag == "Error"


def test_state_survives_restart_and_orphans_are_collected(tmp_path, clock):
    data_dir = str(tmp_path / "persist")
    credentials = CredentialStore([Credential(OWNER, "secret")])
    first = ServerCore(data_dir, credentials=credentials, anonymous=True, clock=clock)
    first.ensure_bucket("bkt", OWNER)
    client = Client(first)
    client.put("bkt", "kept", b"durable")
    upload_id = initiate(client, key="pending")
    upload(client, upload_id, 1, b"part", key="pending")
    first.close()
    with open(os.path.join(data_dir, "blobs", "orphan"), "wb") as f:
        f.write(b"junk")
    with open(os.path.join(data_dir, "tmp", "upload-left"), "wb") as f:
        f.write(b"junk")

    second = ServerCore(data_dir, credentials=credentials, anonymous=True, clock=clock)
    try:
        client = Client(second)
        assert client.body(client.get("bkt", "kept")) == b"durable"
        assert not os.path.exists(os.path.join(data_dir, "blobs", "orphan"))
        assert os.listdir(os.path.join(data_dir, "tmp")) == []
        parts = client.xml(client.call("GET", "bkt", "pending", query=f"uploadId={upload_id}"))
        assert [p.findtext("Size") for p in parts.findall("Part")] == ["4"]
    finally:
        second.close()


def test_body_from_spooled_file_is_adopted(core, tmp_path):
    data = os.urandom(5000)
    path = os.path.join(core.tmp_dir, "upload-test")
    with open(path, "wb") as f:
        f.write(data)
    body = SpooledBody(path, len(data), hashlib.md5(data).digest(), crc64(data))
    response = core.handle(Request("PUT", "/bkt/file", {"host": "127.0.0.1"}, body))
    assert response.status == 200 and not os.path.exists(path)
    got = core.handle(Request("GET", "/bkt/file", {"host": "127.0.0.1"}))
    assert Client.body(got) == data and isinstance(got.body, list)


def test_head_through_symlink_shows_target_data_and_link_metadata(client):
    client.put("bkt", "target", b"hello", **{"x-oss-meta-own": "target"})
    client.call("PUT", "bkt", "link", query="symlink", headers={"x-oss-symlink-target": "target",
                                                                "x-oss-meta-key1": "value1"})
    head = client.call("HEAD", "bkt", "link")
    assert head.content_length == 5 and header(head, "ETag") == '"5D41402ABC4B2A76B9719D911017C592"'
    assert header(head, "x-oss-meta-key1") == "value1" and header(head, "x-oss-meta-own") is None


def test_empty_version_id_is_invalid(client):
    client.put("bkt", "k", b"1")
    for method in ("GET", "HEAD", "DELETE"):
        response = client.call(method, "bkt", "k", query="versionId")
        assert response.status == 400, method
    copy = client.call("PUT", "bkt", "c", headers={"x-oss-copy-source": "/bkt/k?versionId="})
    assert copy.status == 400 and error_code(client, copy) == "InvalidArgument"
    assert client.get("bkt", "k", query="versionId=nope").status == 400
    assert client.get("bkt", "k", query="versionId=CAEQ0000000000").status == 404
    bad = b"<Delete><Object><Key>k</Key><VersionId>234</VersionId></Object></Delete>"
    assert error_code(client, client.call("POST", "bkt", query="delete", data=bad)) == "InvalidArgument"


def test_multipart_upload_listing_pages_over_common_prefixes(client):
    ids = sorted(initiate(client, key="p/file") for _ in range(3))
    for name in ("p/d1/x", "p/d2/y", "p/d2/z"):
        initiate(client, key=name)
    uploads, prefixes, key_marker, id_marker = [], [], "", ""
    for _ in range(10):
        root = client.xml(client.call("GET", "bkt", query=f"uploads&prefix=p%2F&delimiter=%2F&max-uploads=2"
                                      f"&key-marker={quote(key_marker, safe='')}&upload-id-marker={id_marker}"))
        uploads += [u.findtext("UploadId") for u in root.findall("Upload")]
        prefixes += [c.findtext("Prefix") for c in root.findall("CommonPrefixes")]
        if root.findtext("IsTruncated") == "false":
            break
        key_marker, id_marker = root.findtext("NextKeyMarker"), root.findtext("NextUploadIdMarker")
    assert prefixes == ["p/d1/", "p/d2/"] and uploads == ids


def test_acl_calls_are_answered(client):
    client.put("bkt", "k", b"1")
    assert client.xml(client.call("GET", "bkt", query="acl")).findtext("AccessControlList/Grant") == "private"
    assert client.call("PUT", "bkt", query="acl", headers={"x-oss-acl": "private"}).status == 200
    assert client.call("PUT", "bkt", query="acl", headers={"x-oss-acl": "bogus"}).status == 400
    assert client.xml(client.call("GET", "bkt", "k", query="acl")).findtext("AccessControlList/Grant") == "default"
    assert client.call("PUT", "bkt", "missing", query="acl", headers={"x-oss-object-acl": "private"}).status == 404


def test_batch_delete_with_control_characters(client):
    key = "\u4e2d\x0c-2.txt"
    client.put("bkt", key, b"1")
    body = f"<Delete><Quiet>false</Quiet><Object><Key>{key}</Key></Object></Delete>".encode()
    root = client.xml(client.call("POST", "bkt", query="delete&encoding-type=url", data=body))
    assert root.findtext("Deleted/Key") == quote(key, safe="")
    assert client.get("bkt", key).status == 404


def test_internal_errors_become_500_with_error_document(client, monkeypatch, caplog):
    from ossmount.server.core import core as core_module

    def broken(ctx):
        raise RuntimeError("bug")

    monkeypatch.setitem(core_module._HANDLERS, "GetObject", broken)
    response = client.get("bkt", "k")
    assert response.status == 500 and error_code(client, response) == "InternalError"
    assert "internal error" in caplog.text


def test_list_object_versions_paging(client):
    client.call("PUT", "bkt", query="versioning",
                data=b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>")
    written = []
    for key in ("a", "b"):
        for _ in range(3):
            written.append((key, header(client.put("bkt", key, b"x"), "x-oss-version-id")))
    expected = [(k, v) for key in ("a", "b") for k, v in reversed([w for w in written if w[0] == key])]
    seen, key_marker, version_marker = [], "", ""
    for _ in range(10):
        root = client.xml(client.call("GET", "bkt", query=f"versions&max-keys=4&key-marker={key_marker}"
                                                          f"&version-id-marker={version_marker}"))
        seen += [(v.findtext("Key"), v.findtext("VersionId")) for v in root.findall("Version")]
        if root.findtext("IsTruncated") == "false":
            break
        key_marker, version_marker = root.findtext("NextKeyMarker"), root.findtext("NextVersionIdMarker")
    assert seen == expected


def test_failed_commit_leaves_no_object_and_no_blob(client, core, monkeypatch):
    from ossmount.server.core.store import Store

    before = blob_count(core)

    def failing_insert(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Store, "_insert_version", failing_insert)
    response = client.call("PUT", "bkt", "k", data=b"data")
    assert response.status == 500
    monkeypatch.undo()
    assert client.get("bkt", "k").status == 404
    assert blob_count(core) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"]),
       path=st.text(alphabet="/%?&=abk-+.\u00e9\x00 ", max_size=30),
       host=st.sampled_from(["127.0.0.1", "bkt.localhost", "", "x.y.z"]))
def test_classify_and_handle_never_raise(core, method, path, host):
    request = Request(method, "/" + path, {"host": host} if host else {}, spooled(b"<x/>"))
    assert isinstance(core.classify(request).op, str)
    response = core.handle(request)
    assert 200 <= response.status < 600 and response.status != 500  # 500 would be a bug in the core
    assert ("Server", "AliyunOSS") in response.headers
