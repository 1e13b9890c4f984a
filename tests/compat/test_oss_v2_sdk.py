"""A second, independent oracle: Alibaba Cloud's new Python SDK (alibabacloud-oss-v2, V4 by default) against
`ossmount serve` (oss-api.md §4 "A second oracle"). It shares no code with oss2: its own V4 signer, presigner,
XML (de)serialiser and CRC-64 checks, so agreement here is evidence the server follows OSS and not just oss2.
"""

from __future__ import annotations

import datetime

import alibabacloud_oss_v2 as oss
import pytest
import requests


def make_client(server, signature_version, *, secret=None, region=None, token=None):
    config = oss.config.load_default()
    config.credentials_provider = oss.credentials.StaticCredentialsProvider(
        server.access_key_id if token is None else server.sts[0][0],
        secret or (server.access_key_secret if token is None else server.sts[0][1]),
        token,
    )
    config.region = region or server.region
    config.endpoint = server.endpoint
    config.use_path_style = True
    config.signature_version = signature_version
    config.retry_max_attempts = 1
    return oss.Client(config)


def service_error(info: pytest.ExceptionInfo) -> oss.exceptions.ServiceError:
    error = info.value.unwrap()
    assert isinstance(error, oss.exceptions.ServiceError), error
    return error


@pytest.mark.parametrize("signature_version", ["v4", "v1"])
def test_object_lifecycle(local_server, fresh_bucket_name, signature_version):
    client = make_client(local_server, signature_version)
    bucket = fresh_bucket_name
    key = "dir/ünï cödé+%?#.txt"

    put = client.put_object(oss.PutObjectRequest(bucket=bucket, key=key, body=b"hello world",
                                                 content_type="text/x-test", metadata={"owner": "v2-sdk"}))
    assert put.status_code == 200 and put.hash_crc64

    head = client.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
    assert (head.content_length, head.content_type, head.metadata) == (11, "text/x-test", {"owner": "v2-sdk"})

    ranged = client.get_object(oss.GetObjectRequest(bucket=bucket, key=key, range_header="bytes=6-10"))
    assert ranged.body.read() == b"world"

    copy = client.copy_object(oss.CopyObjectRequest(bucket=bucket, key="copy", source_bucket=bucket, source_key=key))
    assert copy.status_code == 200

    first = client.append_object(oss.AppendObjectRequest(bucket=bucket, key="log", position=0, body=b"one,"))
    client.append_object(oss.AppendObjectRequest(bucket=bucket, key="log", position=first.next_position, body=b"two"))
    assert client.get_object(oss.GetObjectRequest(bucket=bucket, key="log")).body.read() == b"one,two"

    listing = client.list_objects_v2(oss.ListObjectsV2Request(bucket=bucket, delimiter="/"))
    assert sorted(o.key for o in listing.contents) == ["copy", "log"]
    assert [p.prefix for p in listing.common_prefixes] == ["dir/"]

    deleted = client.delete_multiple_objects(oss.DeleteMultipleObjectsRequest(
        bucket=bucket, objects=[oss.DeleteObject(key=k) for k in ("copy", "log", key)]))
    assert sorted(d.key for d in deleted.deleted_objects) == sorted(["copy", "log", key])
    with pytest.raises(oss.exceptions.OperationError) as info:
        client.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
    assert service_error(info).status_code == 404


@pytest.mark.parametrize("signature_version", ["v4", "v1"])
def test_multipart_upload(local_server, fresh_bucket_name, signature_version):
    client = make_client(local_server, signature_version)
    bucket, key = fresh_bucket_name, "big object"
    parts = [b"a" * (100 * 1024), b"b" * 1000]
    upload = client.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=bucket, key=key))
    uploaded = []
    for number, data in enumerate(parts, start=1):
        result = client.upload_part(oss.UploadPartRequest(bucket=bucket, key=key, upload_id=upload.upload_id,
                                                          part_number=number, body=data))
        uploaded.append(oss.UploadPart(part_number=number, etag=result.etag))
    client.complete_multipart_upload(oss.CompleteMultipartUploadRequest(
        bucket=bucket, key=key, upload_id=upload.upload_id,
        complete_multipart_upload=oss.CompleteMultipartUpload(parts=uploaded)))
    assert client.get_object(oss.GetObjectRequest(bucket=bucket, key=key)).body.read() == b"".join(parts)


@pytest.mark.parametrize("signature_version", ["v4", "v1"])
def test_presigned_get_and_put(local_server, fresh_bucket_name, signature_version):
    client = make_client(local_server, signature_version)
    expires = datetime.timedelta(seconds=120)
    put = client.presign(oss.PutObjectRequest(bucket=fresh_bucket_name, key="p q", content_type="text/plain"),
                         expires=expires)
    response = requests.put(put.url, data=b"presigned", headers=put.signed_headers, timeout=10)
    assert response.status_code == 200, response.text
    get = client.presign(oss.GetObjectRequest(bucket=fresh_bucket_name, key="p q"), expires=expires)
    response = requests.get(get.url, headers=get.signed_headers, timeout=10)
    assert (response.status_code, response.content) == (200, b"presigned")


@pytest.mark.parametrize("signature_version,ec", [("v4", "0002-00000201"), ("v1", "0002-00000040")])
def test_wrong_secret(local_server, fresh_bucket_name, signature_version, ec):
    client = make_client(local_server, signature_version, secret="wrong-secret")
    with pytest.raises(oss.exceptions.OperationError) as info:
        client.put_object(oss.PutObjectRequest(bucket=fresh_bucket_name, key="k", body=b"x"))
    error = service_error(info)
    assert (error.status_code, error.code, error.ec) == (403, "SignatureDoesNotMatch", ec)


def test_v4_wrong_region(local_server, fresh_bucket_name):
    client = make_client(local_server, "v4", region="eu-central-1")
    with pytest.raises(oss.exceptions.OperationError) as info:
        client.get_object(oss.GetObjectRequest(bucket=fresh_bucket_name, key="k"))
    error = service_error(info)
    assert (error.status_code, error.code, error.ec) == (400, "InvalidArgument", "0002-00000226")


def test_sts_credentials(local_server):
    client = make_client(local_server, "v4", token=local_server.sts[0][2])
    name = f"sts-v2sdk-{datetime.datetime.now().strftime('%H%M%S%f')}"
    client.put_bucket(oss.PutBucketRequest(bucket=name))
    client.put_object(oss.PutObjectRequest(bucket=name, key="k", body=b"sts"))
    assert client.get_object(oss.GetObjectRequest(bucket=name, key="k")).body.read() == b"sts"
    bad = make_client(local_server, "v4", token="not-the-token")
    with pytest.raises(oss.exceptions.OperationError) as info:
        bad.get_object(oss.GetObjectRequest(bucket=name, key="k"))
    assert service_error(info).code == "InvalidSecurityToken"
    client.delete_object(oss.DeleteObjectRequest(bucket=name, key="k"))
    client.delete_bucket(oss.DeleteBucketRequest(bucket=name))
