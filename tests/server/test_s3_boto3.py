"""Acceptance: boto3 drives every S3 operation s3fs, rclone and aws-cli use against `ossmount serve`'s S3 dialect,
signed with SigV2 and SigV4, in headers and presigned URLs, on the same objects oss2 sees through OSS."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.awsrequest import AWSRequest
from botocore.auth import S3SigV4Auth
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

PART = 5 * 1024 * 1024


@pytest.fixture(params=["s3v4", "s3"], ids=["sigv4", "sigv2"])
def s3(request, local_server):
    return local_server.boto3_client(request.param)


def error_of(call, *args, **kwargs) -> dict:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response


def test_put_get_head_delete_with_metadata(s3, fresh_bucket_name, local_server):
    bucket = fresh_bucket_name
    put = s3.put_object(Bucket=bucket, Key="dir/a b+c.txt", Body=b"hello", ContentType="text/plain",
                        Metadata={"mode": "33188", "uid": "1000"})
    assert put["ETag"] == '"5d41402abc4b2a76b9719d911017c592"'
    head = s3.head_object(Bucket=bucket, Key="dir/a b+c.txt")
    assert head["ContentLength"] == 5 and head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"mode": "33188", "uid": "1000"}
    # one set of user metadata: what S3 wrote as x-amz-meta-* is x-oss-meta-* through OSS, and back
    oss = local_server.oss2_bucket(bucket)
    assert oss.head_object("dir/a b+c.txt").headers["x-oss-meta-mode"] == "33188"
    oss.put_object("from-oss", b"x", headers={"x-oss-meta-mtime": "1700000000"})
    assert s3.head_object(Bucket=bucket, Key="from-oss")["Metadata"] == {"mtime": "1700000000"}
    assert s3.get_object(Bucket=bucket, Key="dir/a b+c.txt")["Body"].read() == b"hello"
    ranged = s3.get_object(Bucket=bucket, Key="dir/a b+c.txt", Range="bytes=1-100")
    assert ranged["Body"].read() == b"ello" and ranged["ContentRange"] == "bytes 1-4/5"
    assert error_of(s3.get_object, Bucket=bucket, Key="dir/a b+c.txt", Range="bytes=10-20")["Error"]["Code"] == \
        "InvalidRange"
    not_modified = error_of(s3.get_object, Bucket=bucket, Key="dir/a b+c.txt", IfNoneMatch=put["ETag"])
    assert not_modified["ResponseMetadata"]["HTTPStatusCode"] == 304
    s3.delete_object(Bucket=bucket, Key="dir/a b+c.txt")
    missing = error_of(s3.head_object, Bucket=bucket, Key="dir/a b+c.txt")
    assert missing["ResponseMetadata"]["HTTPStatusCode"] == 404
    error = error_of(s3.get_object, Bucket=bucket, Key="dir/a b+c.txt")["Error"]
    assert error["Code"] == "NoSuchKey" and error["Key"] == "dir/a b+c.txt"


def test_conditional_create_and_checksums(s3, fresh_bucket_name):
    s3.put_object(Bucket=fresh_bucket_name, Key="once", Body=b"1")
    error = error_of(s3.put_object, Bucket=fresh_bucket_name, Key="once", Body=b"2", IfNoneMatch="*")
    assert error["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=fresh_bucket_name, Key="once")["Body"].read() == b"1"


def test_listings_v1_and_v2(s3, fresh_bucket_name):
    bucket = fresh_bucket_name
    keys = [f"d/{i:04d}" for i in range(1203)] + ["d/sub/x", "d/sub/y", "top", "spaced key+plus"]
    oss_body = b"z"
    for key in keys[1190:] + keys[:5]:
        s3.put_object(Bucket=bucket, Key=key, Body=oss_body)
    written = sorted(keys[1190:] + keys[:5])
    v2 = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={
        "PageSize": 4}) for o in page.get("Contents", [])]
    assert v2 == written
    v1 = [o["Key"] for page in s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={
        "PageSize": 3}) for o in page.get("Contents", [])]
    assert v1 == written
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="d/", Delimiter="/", StartAfter="d/1195")
    assert [o["Key"] for o in listed["Contents"]] == [f"d/{i:04d}" for i in range(1196, 1203)]
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["d/sub/"]
    assert listed["KeyCount"] == 8 and listed["Contents"][0]["StorageClass"] == "STANDARD"
    assert listed["Contents"][0]["ETag"] == '"' + hashlib.md5(b"z").hexdigest() + '"'
    v1_page = s3.list_objects(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in v1_page["Contents"]] == ["spaced key+plus", "top"]
    assert "Owner" in v1_page["Contents"][0]
    bad = error_of(s3.list_objects_v2, Bucket=bucket, ContinuationToken="not-a-token")
    assert bad["Error"]["Code"] == "InvalidArgument"


def test_listing_defaults_to_1000_keys(local_server, fresh_bucket_name):
    oss = local_server.oss2_bucket(fresh_bucket_name)
    for i in range(1001):
        oss.put_object(f"k{i:04d}", b"")
    s3 = local_server.boto3_client()
    page = s3.list_objects_v2(Bucket=fresh_bucket_name)
    assert page["KeyCount"] == 1000 and page["IsTruncated"]
    assert s3.list_objects(Bucket=fresh_bucket_name, MaxKeys=5000)["MaxKeys"] == 1000


def test_list_buckets_returns_every_bucket(tmp_path):
    """S3's ListBuckets has no 100-bucket page (OSS's GetService does): boto3 sees all of them."""
    from ossmount.testing import LocalServer

    names = tuple(f"many-{number:03d}" for number in range(105))
    with LocalServer(tmp_path, buckets=names) as server:
        listed = [b["Name"] for b in server.boto3_client().list_buckets()["Buckets"]]
    assert listed == list(names)


def test_buckets(s3, local_server, fresh_bucket_name):
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert fresh_bucket_name in names
    s3.head_bucket(Bucket=fresh_bucket_name)
    assert s3.get_bucket_location(Bucket=fresh_bucket_name)["LocationConstraint"] == local_server.region
    assert error_of(s3.head_bucket, Bucket="no-such-bucket-here")["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error_of(s3.list_objects_v2, Bucket="no-such-bucket-here")["Error"]["Code"] == "NoSuchBucket"
    new = fresh_bucket_name + "-s3"
    s3.create_bucket(Bucket=new)
    s3.put_object(Bucket=new, Key="k", Body=b"")
    assert error_of(s3.delete_bucket, Bucket=new)["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket=new, Key="k")
    s3.delete_bucket(Bucket=new)
    assert new not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_copy_object_with_metadata_directive(s3, fresh_bucket_name, local_server):
    bucket = fresh_bucket_name
    s3.put_object(Bucket=bucket, Key="src key", Body=b"data", ContentType="text/plain", Metadata={"mode": "33188"})
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src key"})
    assert copied["CopyObjectResult"]["ETag"] == '"' + hashlib.md5(b"data").hexdigest() + '"'
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"mode": "33188"}
    s3.copy_object(Bucket=bucket, Key="src key", CopySource={"Bucket": bucket, "Key": "src key"},
                   MetadataDirective="REPLACE", Metadata={"mode": "33261"}, ContentType="text/x-sh")
    head = s3.head_object(Bucket=bucket, Key="src key")
    assert head["Metadata"] == {"mode": "33261"} and head["ContentType"] == "text/x-sh"
    assert local_server.oss2_bucket(bucket).head_object("src key").headers["x-oss-meta-mode"] == "33261"
    assert s3.get_object(Bucket=bucket, Key="src key")["Body"].read() == b"data"
    error = error_of(s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error["Error"]["Code"] == "NoSuchKey"
    error = error_of(s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "dst"},
                     CopySourceIfMatch='"0000"')
    assert error["Error"]["Code"] == "PreconditionFailed"


def test_delete_objects(s3, fresh_bucket_name):
    for key in ("a", "b", "c d"):
        s3.put_object(Bucket=fresh_bucket_name, Key=key, Body=b"")
    result = s3.delete_objects(Bucket=fresh_bucket_name, Delete={"Objects": [{"Key": k} for k in ("a", "c d", "zz")]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "c d", "zz"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=fresh_bucket_name)["Contents"]] == ["b"]
    quiet = s3.delete_objects(Bucket=fresh_bucket_name, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in quiet and "Contents" not in s3.list_objects_v2(Bucket=fresh_bucket_name)


def test_multipart_with_upload_part_copy(s3, fresh_bucket_name, local_server):
    bucket = fresh_bucket_name
    first = bytes(range(256)) * (PART // 256)
    s3.put_object(Bucket=bucket, Key="source", Body=b"0123456789" * 1000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big", Metadata={"mode": "33152"},
                                        ContentType="application/x-test")
    upload_id = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("big", upload_id)]
    p1 = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=1, Body=first)
    assert p1["ETag"] == '"' + hashlib.md5(first).hexdigest() + '"'
    p2 = s3.upload_part_copy(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange="bytes=10-29")
    parts = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, PART), (2, 20)]
    wrong = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="big", UploadId=upload_id,
                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]})
    assert wrong["Error"]["Code"] == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert done["ETag"].endswith('-2"') and done["Key"] == "big"
    body = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
    assert body == first + b"0123456789" * 2
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["Metadata"] == {"mode": "33152"} and head["ContentType"] == "application/x-test"
    assert local_server.oss2_bucket(bucket).get_object("big").read() == body
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=aborted)
    assert error_of(s3.list_parts, Bucket=bucket, Key="gone", UploadId=aborted)["Error"]["Code"] == "NoSuchUpload"


def test_presigned_get_and_put(s3, fresh_bucket_name):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": fresh_bucket_name, "Key": "pre signed"},
                                        ExpiresIn=300)
    # http.client, not urllib: urllib would add a Content-Type, which a SigV2 URL signs as empty
    url = urllib.parse.urlsplit(put_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request("PUT", f"{url.path}?{url.query}", body=b"via url")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": fresh_bucket_name, "Key": "pre signed"},
                                        ExpiresIn=300)
    with urllib.request.urlopen(get_url) as response:
        assert response.read() == b"via url"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(get_url.replace("pre%20signed", "other"))
    assert caught.value.code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in caught.value.read()


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_bad_credentials_get_s3_errors(local_server, fresh_bucket_name, signature_version):
    wrong_secret = local_server.boto3_client(signature_version, credentials=(local_server.access_key_id, "wrong"))
    error = error_of(wrong_secret.list_objects_v2, Bucket=fresh_bucket_name)["Error"]
    assert error["Code"] == "SignatureDoesNotMatch" and error["AWSAccessKeyId"] == local_server.access_key_id
    assert "StringToSign" in error
    unknown = local_server.boto3_client(signature_version, credentials=("nobody", "x"))
    assert error_of(unknown.list_objects_v2, Bucket=fresh_bucket_name)["Error"]["Code"] == "InvalidAccessKeyId"


def test_wrong_region_is_named(local_server, fresh_bucket_name):
    status, body = signed_raw_request(local_server, "GET", f"/{fresh_bucket_name}/?list-type=2",
                                      f"{local_server.host}:{local_server.port}", region="eu-west-3")
    assert status == 400 and b"<Code>AuthorizationHeaderMalformed</Code>" in body
    assert f"<Region>{local_server.region}</Region>".encode() in body
    # botocore reads <Region>, re-signs for it and succeeds, as it does with S3
    local_server.boto3_client(region="eu-west-3").list_objects_v2(Bucket=fresh_bucket_name)
    for region in ("us-east-1", "oss-" + local_server.region):
        local_server.boto3_client(region=region).list_objects_v2(Bucket=fresh_bucket_name)


def test_sts_session_token(local_server, fresh_bucket_name):
    ak, sk, token = local_server.sts[0]
    local_server.oss2_bucket(fresh_bucket_name).put_object("k", b"v")  # STS keys own their own buckets here
    client = local_server.boto3_client(credentials=(ak, sk), session_token=token)
    client.create_bucket(Bucket=fresh_bucket_name + "-sts")
    client.put_object(Bucket=fresh_bucket_name + "-sts", Key="k", Body=b"v")
    bad = local_server.boto3_client(credentials=(ak, sk), session_token="wrong")
    assert error_of(bad.list_objects_v2, Bucket=fresh_bucket_name + "-sts")["Error"]["Code"] == "InvalidToken"


def signed_raw_request(local_server, method: str, path: str, host: str, body: bytes = b"",
                       headers: dict | None = None, region: str | None = None,
                       sent_body: bytes | None = None) -> tuple[int, bytes]:
    """A SigV4 request signed by botocore for `host` and `body`, sent to the server's socket as it is (with
    `sent_body` instead of `body` if given)."""
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body, headers={"Host": host, **(headers or {})})
    S3SigV4Auth(Credentials(local_server.access_key_id, local_server.access_key_secret), "s3",
                region or local_server.region).add_auth(request)
    connection = http.client.HTTPConnection(local_server.host, local_server.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        body = body if sent_body is None else sent_body
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_virtual_hosted_addressing(local_server, fresh_bucket_name):
    host = f"{fresh_bucket_name}.localhost:{local_server.port}"
    status, _ = signed_raw_request(local_server, "PUT", "/v%20key", host, b"virtual")
    assert status == 200
    status, body = signed_raw_request(local_server, "GET", "/v%20key", host)
    assert (status, body) == (200, b"virtual")
    status, body = signed_raw_request(local_server, "GET", "/?list-type=2", host)
    assert status == 200 and b"<Key>v key</Key>" in body


def test_payload_hash_mismatch_is_refused(local_server, fresh_bucket_name):
    host = f"{local_server.host}:{local_server.port}"
    path = f"/{fresh_bucket_name}/tampered"
    status, body = signed_raw_request(local_server, "PUT", path, host, b"payload", sent_body=b"tampere")
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    assert signed_raw_request(local_server, "GET", path, host)[0] == 404


def test_counters_name_s3_requests_by_operation(local_server, fresh_bucket_name):
    s3 = local_server.boto3_client()
    local_server.admin.reset_counters()
    s3.put_object(Bucket=fresh_bucket_name, Key="k", Body=b"v")
    s3.copy_object(Bucket=fresh_bucket_name, Key="k2", CopySource={"Bucket": fresh_bucket_name, "Key": "k"})
    s3.head_object(Bucket=fresh_bucket_name, Key="k2")
    s3.list_objects_v2(Bucket=fresh_bucket_name)
    assert local_server.admin.counters() == {"PutObject": 1, "CopyObject": 1, "HeadObject": 1, "ListObjectsV2": 1}


def aws_chunked_put(local_server, path: str, chunks: list[bytes], *, tamper: bool = False) -> tuple[int, bytes]:
    """PUT `chunks` as an aws-chunked STREAMING-AWS4-HMAC-SHA256-PAYLOAD body (what the AWS Java SDK and minio-go
    send over plain HTTP); the signer is the one the unit tests check against AWS's published example."""
    import hmac
    import time

    from ossmount.server.core.s3.auth import (STREAMING_SIGNED, StreamingContext, chunk_string_to_sign,
                                              v4_canonical_request, v4_signing_key, v4_string_to_sign)

    date_time = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scope = f"{date_time[:8]}/{local_server.region}/s3/aws4_request"
    key = v4_signing_key(local_server.access_key_secret, date_time[:8], local_server.region)
    framed_length = sum(len(f"{len(c):x};chunk-signature=") + 64 + 4 + len(c) for c in chunks + [b""]) + 2
    headers = {"host": f"{local_server.host}:{local_server.port}", "x-amz-date": date_time,
               "x-amz-content-sha256": STREAMING_SIGNED, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(sum(map(len, chunks))), "content-length": str(framed_length)}
    signed = sorted(headers)
    seed = hmac.new(key, v4_string_to_sign(date_time, scope, v4_canonical_request(
        "PUT", path, [], headers, signed, STREAMING_SIGNED)), hashlib.sha256).hexdigest()
    context = StreamingContext(seed, key, date_time, scope)
    body, previous = b"", seed
    for chunk in chunks + [b""]:
        signature = hmac.new(key, chunk_string_to_sign(context, previous, hashlib.sha256(chunk).hexdigest()),
                             hashlib.sha256).hexdigest()
        sent = chunk.upper() if tamper and chunk else chunk
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + sent + b"\r\n"
        previous = signature
    body += b"\r\n"
    assert len(body) == framed_length
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={local_server.access_key_id}/{scope},"
                                f"SignedHeaders={';'.join(signed)},Signature={seed}")
    connection = http.client.HTTPConnection(local_server.host, local_server.port, timeout=30)
    try:
        connection.request("PUT", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_aws_chunked_upload(local_server, fresh_bucket_name):
    chunks = [b"a" * 70000, b"b" * 1000]
    status, body = aws_chunked_put(local_server, f"/{fresh_bucket_name}/streamed", chunks)
    assert status == 200, body
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("streamed").read() == b"".join(chunks)
    status, body = aws_chunked_put(local_server, f"/{fresh_bucket_name}/tampered", chunks, tamper=True)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert not local_server.oss2_bucket(fresh_bucket_name).object_exists("tampered")
