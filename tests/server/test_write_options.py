"""What ossfs's write options send, as the server honours it (issue 7): object ACLs, storage classes,
server-side encryption, x-oss-traffic-limit, x-oss-request-payer, bucket ACLs with anonymous access, the V4
payload hash, the request log's headers without credentials, and serving under a path prefix."""

from __future__ import annotations

import oss2
import pytest
import requests
import trio
import trio.testing

from ossmount.server.faults import REDACTED
from ossmount.server.http import _Pacer
from ossmount.testing import LocalServer

LIMIT = 819200  # bit/s: the smallest x-oss-traffic-limit OSS accepts (100 KiB/s)


def records_for(server: LocalServer, bucket: str, key: str | None = None) -> list[dict]:
    return [r for r in server.admin.requests() if r["bucket"] == bucket and (key is None or r["key"] == key)]


def multipart_put(bucket: oss2.Bucket, key: str, headers: dict[str, str]) -> tuple:
    """A one-part multipart upload whose Initiate carries `headers`: (initiate, upload part, complete) results."""
    upload = bucket.init_multipart_upload(key, headers=headers)
    part = bucket.upload_part(key, upload.upload_id, 1, b"abc")
    return upload, part, bucket.complete_multipart_upload(key, upload.upload_id, [oss2.models.PartInfo(1, part.etag)])


# -- object ACL and storage class ------------------------------------------------------------------------


def test_object_acl_is_stored_by_every_write_and_read_back(oss_bucket):
    oss_bucket.put_object("put", b"x", headers={"x-oss-object-acl": "public-read"})
    oss_bucket.copy_object(oss_bucket.bucket_name, "put", "copied", headers={"x-oss-object-acl": "private"})
    multipart_put(oss_bucket, "multi", {"x-oss-object-acl": "public-read-write"})
    oss_bucket.append_object("appended", 0, b"a", headers={"x-oss-object-acl": "private"})
    oss_bucket.put_symlink("put", "link", headers={"x-oss-object-acl": "public-read"})
    oss_bucket.put_object("plain", b"x")
    acls = {key: oss_bucket.get_object_acl(key).acl for key in ("put", "copied", "multi", "appended", "link", "plain")}
    assert acls == {"put": "public-read", "copied": "private", "multi": "public-read-write", "appended": "private",
                    "link": "public-read", "plain": "default"}
    oss_bucket.put_object_acl("plain", oss2.OBJECT_ACL_PUBLIC_READ)
    assert oss_bucket.get_object_acl("plain").acl == "public-read"


def test_copy_without_acl_header_gets_the_default_acl(oss_bucket):
    oss_bucket.put_object("src", b"x", headers={"x-oss-object-acl": "public-read"})
    oss_bucket.copy_object(oss_bucket.bucket_name, "src", "dst")
    assert oss_bucket.get_object_acl("dst").acl == "default"


@pytest.mark.parametrize("header, value", [("x-oss-object-acl", "world-writable"),
                                           ("x-oss-storage-class", "Glacier")])
def test_unknown_acl_or_storage_class_is_refused(oss_bucket, header, value):
    with pytest.raises(oss2.exceptions.ServerError) as info:
        oss_bucket.put_object("bad", b"x", headers={header: value})
    assert (info.value.status, info.value.code) == (400, "InvalidArgument")
    assert not oss_bucket.object_exists("bad")


def test_storage_class_is_stored_by_put_copy_and_initiate(oss_bucket):
    oss_bucket.put_object("ia", b"x", headers={"x-oss-storage-class": "IA"})
    oss_bucket.copy_object(oss_bucket.bucket_name, "ia", "cold", headers={"x-oss-storage-class": "ColdArchive"})
    multipart_put(oss_bucket, "archive", {"x-oss-storage-class": "Archive"})
    classes = {key: oss_bucket.head_object(key).headers["x-oss-storage-class"] for key in ("ia", "cold", "archive")}
    assert classes == {"ia": "IA", "cold": "ColdArchive", "archive": "Archive"}


# -- server-side encryption -------------------------------------------------------------------------------


def test_sse_is_stored_and_echoed_on_writes_and_reads(oss_bucket):
    result = oss_bucket.put_object("aes", b"x", headers={"x-oss-server-side-encryption": "AES256"})
    assert result.headers["x-oss-server-side-encryption"] == "AES256"
    kms = {"x-oss-server-side-encryption": "KMS", "x-oss-server-side-encryption-key-id": "key-1"}
    result = oss_bucket.put_object("kms", b"x", headers=kms)
    assert result.headers["x-oss-server-side-encryption-key-id"] == "key-1"
    for key, expected in (("aes", ("AES256", None)), ("kms", ("KMS", "key-1"))):
        for headers in (oss_bucket.head_object(key).headers, oss_bucket.get_object(key).headers):
            assert (headers.get("x-oss-server-side-encryption"),
                    headers.get("x-oss-server-side-encryption-key-id")) == expected


def test_sse_of_multipart_comes_from_initiate_and_copy_can_change_it(oss_bucket):
    for result in multipart_put(oss_bucket, "multi", {"x-oss-server-side-encryption": "KMS"}):
        assert result.headers["x-oss-server-side-encryption"] == "KMS"  # Initiate, UploadPart, Complete
    # COPY keeps the source's encryption unless the request names another
    oss_bucket.copy_object(oss_bucket.bucket_name, "multi", "kept")
    oss_bucket.copy_object(oss_bucket.bucket_name, "multi", "changed",
                           headers={"x-oss-server-side-encryption": "AES256"})
    assert oss_bucket.head_object("kept").headers["x-oss-server-side-encryption"] == "KMS"
    assert oss_bucket.head_object("changed").headers["x-oss-server-side-encryption"] == "AES256"


@pytest.mark.parametrize("headers", [
    {"x-oss-server-side-encryption": "ROT13"},
    {"x-oss-server-side-encryption": "AES256", "x-oss-server-side-encryption-key-id": "key-1"},
    {"x-oss-server-side-encryption-key-id": "key-1"},
])
def test_malformed_sse_is_refused(oss_bucket, headers):
    with pytest.raises(oss2.exceptions.ServerError) as info:
        oss_bucket.put_object("bad", b"x", headers=headers)
    assert (info.value.status, info.value.code) == (400, "InvalidArgument")


# -- x-oss-traffic-limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["819199", "838860801", "fast", "-1"])
def test_traffic_limit_out_of_range_is_refused(oss_bucket, value):
    oss_bucket.put_object("k", b"x")
    for call in (lambda: oss_bucket.put_object("k", b"x", headers={"x-oss-traffic-limit": value}),
                 lambda: oss_bucket.get_object("k", headers={"x-oss-traffic-limit": value}).read()):
        with pytest.raises(oss2.exceptions.ServerError) as info:
            call()
        assert (info.value.status, info.value.code) == (400, "InvalidArgument")


def test_traffic_limit_throttles_uploads_and_downloads_without_losing_bytes(local_server, oss_bucket):
    data = bytes(range(256)) * 160  # 40 KiB: about 0.4 s each way at the smallest limit
    local_server.admin.reset_requests()
    oss_bucket.put_object("limited", data, headers={"x-oss-traffic-limit": str(LIMIT)})
    assert oss_bucket.get_object("limited", headers={"x-oss-traffic-limit": str(LIMIT)}).read() == data
    assert oss_bucket.get_object("limited").read() == data
    put, limited_get, plain_get = records_for(local_server, oss_bucket.bucket_name, "limited")
    assert (put["op"], put["request_bytes"], put["traffic_limit"]) == ("PutObject", len(data), LIMIT)
    assert (limited_get["op"], limited_get["bytes"], limited_get["traffic_limit"]) == ("GetObject", len(data), LIMIT)
    assert plain_get["traffic_limit"] is None
    assert put["headers"]["x-oss-traffic-limit"] == str(LIMIT)


def test_pacer_keeps_a_stream_at_its_rate():
    """The throttle sleeps until each piece is within the rate (virtual time: no timing in the test)."""

    async def stream(total: int, rate: int) -> tuple[float, int]:
        pacer = _Pacer(rate)
        done = pieces = 0
        while done < total:
            done += pacer.piece(total - done)
            pieces += 1
            await pacer.wait(done)
        return trio.current_time(), pieces

    clock = trio.testing.MockClock(autojump_threshold=0)
    elapsed, pieces = trio.run(stream, LIMIT // 8 * 3, LIMIT // 8, clock=clock)
    assert elapsed == pytest.approx(3.0) and pieces == 60
    assert trio.run(stream, 10**6, 0, clock=trio.testing.MockClock(autojump_threshold=0)) == (0.0, 1)


# -- x-oss-request-payer ----------------------------------------------------------------------------------


def test_request_payer_is_accepted_and_echoed(oss_bucket):
    result = oss_bucket.put_object("paid", b"x", headers={"x-oss-request-payer": "requester"})
    assert result.headers["x-oss-request-payer"] == "requester"
    assert oss_bucket.get_object("paid", headers={"x-oss-request-payer": "requester"}).read() == b"x"
    with pytest.raises(oss2.exceptions.ServerError) as info:
        oss_bucket.put_object("paid", b"x", headers={"x-oss-request-payer": "owner"})
    assert (info.value.status, info.value.code) == (400, "InvalidArgument")


# -- bucket ACLs and anonymous access ---------------------------------------------------------------------


def test_anonymous_access_follows_bucket_and_object_acls(local_server, oss_bucket):
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), local_server.endpoint, oss_bucket.bucket_name)
    oss_bucket.put_object("k", b"owner's")
    assert oss_bucket.get_bucket_acl().acl == "private"
    for call in (lambda: anonymous.get_object("k"), lambda: anonymous.put_object("new", b"x"),
                 lambda: anonymous.list_objects()):
        with pytest.raises(oss2.exceptions.AccessDenied):
            call()

    oss_bucket.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    assert oss_bucket.get_bucket_acl().acl == "public-read"
    assert anonymous.get_object("k").read() == b"owner's"
    assert [o.key for o in anonymous.list_objects().object_list] == ["k"]
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.put_object("new", b"x")
    oss_bucket.put_object_acl("k", oss2.OBJECT_ACL_PRIVATE)  # the object's own ACL wins over the bucket's
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.get_object("k")

    oss_bucket.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    anonymous.put_object("new", b"anyone's")
    anonymous.copy_object(oss_bucket.bucket_name, "new", "copy")
    assert oss_bucket.get_object("copy").read() == b"anyone's"
    with pytest.raises(oss2.exceptions.AccessDenied):  # the private source may not be read, so not copied
        anonymous.copy_object(oss_bucket.bucket_name, "k", "stolen")
    anonymous.delete_object("new")
    with pytest.raises(oss2.exceptions.AccessDenied):  # bucket configuration stays the owner's
        anonymous.put_bucket_acl(oss2.BUCKET_ACL_PRIVATE)

    oss_bucket.put_bucket_acl(oss2.BUCKET_ACL_PRIVATE)
    oss_bucket.put_object_acl("copy", oss2.OBJECT_ACL_PUBLIC_READ)  # a public object in a private bucket
    assert anonymous.get_object("copy").read() == b"anyone's"
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.get_object("k")


def test_bucket_acl_can_be_given_at_creation(local_server, fresh_bucket_name):
    bucket = local_server.oss2_bucket(fresh_bucket_name + "-pub")
    bucket.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    try:
        assert bucket.get_bucket_acl().acl == "public-read-write"
        assert bucket.get_bucket_info().acl.grant == "public-read-write"
    finally:
        bucket.delete_bucket()


# -- V4 payload hash --------------------------------------------------------------------------------------


def test_v4_payload_must_be_unsigned(oss_bucket_v4, local_server):
    """OSS answers 0002-00000214 to an x-oss-content-sha256 that is neither UNSIGNED-PAYLOAD (what oss2 always
    sends) nor a SHA-256 (which must then be the body's: tests/server/test_hardening.py)."""
    oss_bucket_v4.put_object("v4", b"x")
    record = records_for(local_server, oss_bucket_v4.bucket_name, "v4")[-1]
    assert record["headers"]["x-oss-content-sha256"] == "UNSIGNED-PAYLOAD"
    from ossmount.server.core.auth import Credential, CredentialStore, authenticate
    from ossmount.server.core.errors import OssError
    from ossmount.server.core.model import Request

    request = Request("PUT", "/b/k", {"authorization": "OSS4-HMAC-SHA256 Credential=ak/20240101/cn-hangzhou/oss/"
                                                        "aliyun_v4_request, Signature=00",
                                      "x-oss-content-sha256": "e3b0c44298fc1c149afbf4c8996fb924",
                                      "x-oss-date": "20240101T000000Z"})
    with pytest.raises(OssError) as info:
        authenticate(request, bucket="b", key="k", credentials=CredentialStore([Credential("ak", "sk")]),
                     region="cn-hangzhou", now=1704067200.0, allow_anonymous=False)
    assert (info.value.status, info.value.ec) == (400, "0002-00000214")


# -- the request log --------------------------------------------------------------------------------------


def test_request_log_shows_headers_without_credentials(local_server, fresh_bucket_name):
    sts_id, sts_secret, sts_token = local_server.sts[0]
    bucket = oss2.Bucket(oss2.StsAuth(sts_id, sts_secret, sts_token), local_server.endpoint, fresh_bucket_name)
    local_server.oss2_bucket(fresh_bucket_name).put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)  # STS key may write
    bucket.put_object("logged", b"x", headers={"x-oss-meta-note": "visible", "Cache-Control": "no-cache"})
    url = local_server.oss2_bucket(fresh_bucket_name).sign_url("GET", "logged", 60)
    assert requests.get(url, timeout=10).content == b"x"
    put, presigned = records_for(local_server, fresh_bucket_name, "logged")[-2:]
    assert put["headers"]["x-oss-meta-note"] == "visible" and put["headers"]["cache-control"] == "no-cache"
    assert "authorization" not in put["headers"] and "x-oss-security-token" not in put["headers"]
    assert put["withheld_headers"] == ["authorization", "x-oss-security-token"]
    assert sts_token not in str(put) and sts_secret not in str(put)
    assert f"Signature={REDACTED}" in presigned["query"] and "OSSAccessKeyId=" in presigned["query"]
    assert url.split("Signature=")[1].split("&")[0] not in str(presigned)


# -- a path prefix ----------------------------------------------------------------------------------------


def test_server_can_serve_under_a_path_prefix(tmp_path):
    with LocalServer(tmp_path / "oss", extra_args=("--service-path", "/oss")) as server:
        response = requests.get(f"{server.endpoint}/test-bucket/k", timeout=10)
        assert (response.status_code, "NoSuchService" in response.text) == (404, True)
        signed = server.oss2_bucket("test-bucket").sign_url("GET", "k", 60)
        prefixed = signed.replace(server.endpoint, server.endpoint + "/oss", 1)
        response = requests.get(prefixed, timeout=10)
        assert (response.status_code, "NoSuchKey" in response.text) == (404, True)


def test_redaction_covers_both_dialects():
    from ossmount.server.faults import loggable_headers, redact_query

    headers = loggable_headers({"authorization": "OSS a:b", "x-oss-security-token": "t", "x-amz-security-token": "t",
                                "x-oss-meta-k": "v"})
    assert headers == ({"x-oss-meta-k": "v"}, ["authorization", "x-amz-security-token", "x-oss-security-token"])
    assert redact_query("OSSAccessKeyId=ak&Expires=1&Signature=s%2B&security-token=t&X-Amz-Signature=x&prefix=p") == (
        f"OSSAccessKeyId=ak&Expires=1&Signature={REDACTED}&security-token={REDACTED}&X-Amz-Signature={REDACTED}"
        "&prefix=p")
