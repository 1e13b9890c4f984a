"""Acceptance: oss2 (V1 and V4 signatures) performs each call of the server's API surface against
`ossmount serve` and gets the results and error codes real OSS gives (oss-api.md §2)."""

from __future__ import annotations

import os
import time

import oss2
import pytest
from oss2.models import PartInfo

from ossmount.crc64 import crc64


@pytest.fixture(params=["v1", "v4"])
def bucket(request, local_server, fresh_bucket_name) -> oss2.Bucket:
    return local_server.oss2_bucket(fresh_bucket_name, auth_version=request.param)


def expect_error(exc_type, status: int, code: str, call, *args, **kwargs):
    with pytest.raises(exc_type) as caught:
        call(*args, **kwargs)
    assert caught.value.status == status and caught.value.code == code, caught.value
    return caught.value


def test_put_get_head_meta_exists(bucket):
    result = bucket.put_object("hello", b"hello", headers={"x-oss-meta-Key2": "v2", "Content-Type": "text/plain"})
    assert result.etag == "5D41402ABC4B2A76B9719D911017C592" and result.crc == crc64(b"hello")
    assert len(result.request_id) == 24
    got = bucket.get_object("hello")
    assert got.read() == b"hello" and got.server_crc == crc64(b"hello")
    head = bucket.head_object("hello")
    assert head.content_length == 5 and head.object_type == "Normal" and head.content_type == "text/plain"
    assert head.headers["x-oss-meta-key2"] == "v2"
    meta = bucket.get_object_meta("hello")
    assert meta.etag == "5D41402ABC4B2A76B9719D911017C592" and meta.content_length == 5
    assert bucket.object_exists("hello") and not bucket.object_exists("missing")
    error = expect_error(oss2.exceptions.NoSuchKey, 404, "NoSuchKey", bucket.get_object, "missing")
    assert error.ec == "0026-00000001"
    expect_error(oss2.exceptions.NotFound, 404, "NoSuchKey", bucket.head_object, "missing")


def test_object_exists_on_missing_bucket_raises(local_server):
    missing = local_server.oss2_bucket("no-such-bucket-here")
    expect_error(oss2.exceptions.NoSuchBucket, 404, "NoSuchBucket", missing.object_exists, "k")


def test_ranges_and_conditionals(bucket):
    data = os.urandom(1000)
    etag = bucket.put_object("obj", data).etag
    assert bucket.get_object("obj", byte_range=(10, 19)).read() == data[10:20]
    assert bucket.get_object("obj", byte_range=(None, 100)).read() == data[-100:]
    assert bucket.get_object("obj", byte_range=(500, 2000)).read() == data
    standard = {"x-oss-range-behavior": "standard"}
    assert bucket.get_object("obj", byte_range=(500, 2000), headers=standard).read() == data[500:]
    expect_error(oss2.exceptions.ServerError, 416, "InvalidRange", bucket.get_object, "obj",
                 byte_range=(1000, 2000), headers=standard)
    assert bucket.get_object("obj", headers={"If-Match": etag}).read() == data
    expect_error(oss2.exceptions.PreconditionFailed, 412, "PreconditionFailed", bucket.get_object, "obj",
                 headers={"If-Match": "0" * 32})
    expect_error(oss2.exceptions.NotModified, 304, "", bucket.get_object, "obj",
                 headers={"If-None-Match": etag})


def test_put_errors(bucket):
    bucket.put_object("k", b"1")
    expect_error(oss2.exceptions.ServerError, 409, "FileAlreadyExists", bucket.put_object, "k", b"2",
                 headers={"x-oss-forbid-overwrite": "true"})
    expect_error(oss2.exceptions.ServerError, 400, "InvalidDigest", bucket.put_object, "k", b"2",
                 headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})


def test_listing_v1_v2_and_unicode(bucket):
    keys = ["a", "dir/", "dir/x", "dir/y/z", "\u4e2d\u6587/\u6587\u4ef6", "sp ace", "plus+key"]
    for key in keys:
        bucket.put_object(key, b"1")
    assert [o.key for o in oss2.ObjectIterator(bucket, max_keys=2)] == sorted(keys, key=str.encode)
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=3)] == sorted(keys, key=str.encode)
    page = bucket.list_objects(delimiter="/")
    assert page.prefix_list == ["dir/", "\u4e2d\u6587/"]
    assert page.object_list[0].owner is not None and page.object_list[0].type == "Normal"
    page = bucket.list_objects_v2(prefix="dir/", delimiter="/")
    assert [o.key for o in page.object_list] == ["dir/", "dir/x"] and page.prefix_list == ["dir/y/"]
    assert page.object_list[0].owner is None
    assert bucket.list_objects_v2(start_after="plus+key").object_list[0].key == "sp ace"
    expect_error(oss2.exceptions.ServerError, 400, "InvalidArgument", bucket.list_objects_v2,
                 continuation_token="bogus")
    # requests sends a space in the query as '+': a prefix with a space must still match its keys.
    bucket.put_object("my dir/f 1", b"1")
    assert [o.key for o in bucket.list_objects_v2(prefix="my dir/").object_list] == ["my dir/f 1"]
    assert [o.key for o in bucket.list_objects(prefix="my dir/").object_list] == ["my dir/f 1"]
    assert [o.key for o in bucket.list_objects_v2(prefix="plus+").object_list] == ["plus+key"]



def test_listing_and_head_show_each_change_of_an_object(bucket):
    """Listing entries and HEAD answers are rendered from decoded records kept for versions already seen (ops_bucket
    `_contents_fragment`, store `_listed_record`): every change of the object must show on the next request."""
    bucket.put_object("d/k", b"1", headers={"Content-Type": "text/plain"})
    seen = []
    for body, archive in ((b"1", False), (b"two", False), (b"two", True)):
        if body != b"1" and not archive:
            bucket.put_object("d/k", body)
        if archive:
            bucket.copy_object(bucket.bucket_name, "d/k", "d/k",
                               headers={"x-oss-storage-class": "Archive", "x-oss-metadata-directive": "REPLACE"})
        for _ in range(2):  # the second listing and HEAD of the same version
            [entry] = bucket.list_objects_v2(prefix="d/", delimiter="/").object_list
            head = bucket.head_object("d/k")
            assert (entry.size, entry.etag, entry.storage_class) == (len(body), head.etag,
                                                                     "Archive" if archive else "Standard")
            assert head.content_length == len(body)
        seen.append((entry.etag, entry.storage_class))
    assert len(set(seen)) == 3


def test_copy_and_update_meta(bucket):
    source_key = "\u963f\u91cc\u4e91/\u52a0\u6cb9/:?;@&=+$, /<>{}[]|/"
    bucket.put_object(source_key, b"payload", headers={"x-oss-meta-a": "1"})
    result = bucket.copy_object(bucket.bucket_name, source_key, "copy")
    assert result.etag == bucket.head_object(source_key).etag
    assert bucket.get_object("copy").read() == b"payload"
    bucket.update_object_meta("copy", {"x-oss-meta-b": "2", "Content-Type": "text/x-test"})
    head = bucket.head_object("copy")
    assert head.headers.get("x-oss-meta-b") == "2" and "x-oss-meta-a" not in head.headers
    assert head.content_type == "text/x-test"


def test_delete_and_batch_delete(bucket):
    bucket.delete_object("never-existed")
    for key in ("a", "b c", "\u4e2d"):
        bucket.put_object(key, b"1")
    result = bucket.batch_delete_objects(["a", "b c", "\u4e2d", "missing"])
    assert sorted(result.deleted_keys) == sorted(["a", "b c", "\u4e2d", "missing"])
    assert list(oss2.ObjectIterator(bucket)) == []


def test_multipart_with_crc_copy_and_listings(bucket):
    key = "big"
    upload_id = bucket.init_multipart_upload(key, headers={"x-oss-meta-m": "v"}).upload_id
    first, second = os.urandom(100 * 1024), os.urandom(1000)
    p1 = bucket.upload_part(key, upload_id, 1, first)
    p2 = bucket.upload_part(key, upload_id, 2, second)
    assert p1.crc == crc64(first)
    assert [u.upload_id for u in oss2.MultipartUploadIterator(bucket)] == [upload_id]
    assert [p.part_number for p in oss2.PartIterator(bucket, key, upload_id, max_parts=1)] == [1, 2]
    parts = [PartInfo(1, p1.etag, size=len(first), part_crc=p1.crc),
             PartInfo(2, p2.etag, size=len(second), part_crc=p2.crc)]
    result = bucket.complete_multipart_upload(key, upload_id, parts)
    assert result.crc == crc64(first + second)
    assert bucket.get_object(key).read() == first + second
    assert bucket.head_object(key).object_type == "Multipart"

    copy_id = bucket.init_multipart_upload("copied").upload_id
    part = bucket.upload_part_copy(bucket.bucket_name, key, (100, 100 * 1024 + 99), "copied", copy_id, 1)
    bucket.complete_multipart_upload("copied", copy_id, [PartInfo(1, part.etag)])
    assert bucket.get_object("copied").read() == (first + second)[100:100 * 1024 + 100]

    aborted = bucket.init_multipart_upload("aborted").upload_id
    bucket.abort_multipart_upload("aborted", aborted)
    expect_error(oss2.exceptions.NoSuchUpload, 404, "NoSuchUpload", bucket.abort_multipart_upload, "aborted", aborted)


def test_complete_validation_errors(bucket):
    upload_id = bucket.init_multipart_upload("k").upload_id
    p1 = bucket.upload_part("k", upload_id, 1, b"small")
    p2 = bucket.upload_part("k", upload_id, 2, b"small")
    # oss2 sorts the parts itself, so InvalidPartOrder is covered in test_core_inprocess.py
    expect_error(oss2.exceptions.ServerError, 400, "InvalidPart", bucket.complete_multipart_upload, "k",
                 upload_id, [PartInfo(1, "0" * 32)])
    expect_error(oss2.exceptions.ServerError, 400, "EntityTooSmall", bucket.complete_multipart_upload, "k",
                 upload_id, [PartInfo(1, p1.etag), PartInfo(2, p2.etag)])
    big = b"b" * (100 * 1024)
    bucket.upload_part("k", upload_id, 1, big)  # re-uploading a part number replaces it
    result = bucket.complete_multipart_upload("k", upload_id, None, headers={"x-oss-complete-all": "yes"})
    assert result.status == 200 and bucket.get_object("k").read() == big + b"small"


def test_resumable_upload_and_download(bucket, tmp_path):
    data = os.urandom(300 * 1024 + 7)
    source = tmp_path / "source"
    source.write_bytes(data)
    oss2.resumable_upload(bucket, "resumable", str(source), multipart_threshold=100 * 1024, part_size=100 * 1024,
                          store=oss2.ResumableStore(root=str(tmp_path)))
    assert bucket.head_object("resumable").object_type == "Multipart"
    target = tmp_path / "target"
    oss2.resumable_download(bucket, "resumable", str(target), multiget_threshold=100 * 1024,
                            part_size=64 * 1024, store=oss2.ResumableDownloadStore(root=str(tmp_path)))
    assert target.read_bytes() == data


def test_append(bucket):
    first = bucket.append_object("log", 0, b"abc")
    assert first.next_position == 3
    second = bucket.append_object("log", 3, b"def", init_crc=first.crc)
    assert second.crc == crc64(b"abcdef")
    error = expect_error(oss2.exceptions.PositionNotEqualToLength, 409, "PositionNotEqualToLength",
                         bucket.append_object, "log", 1, b"x")
    assert error.next_position == 6
    bucket.put_object("normal", b"x")
    expect_error(oss2.exceptions.ObjectNotAppendable, 409, "ObjectNotAppendable", bucket.append_object,
                 "normal", 1, b"y")


def test_symlink(bucket):
    bucket.put_object("\u76ee\u6807", b"target-data")
    bucket.put_symlink("\u76ee\u6807", "link")
    assert bucket.get_symlink("link").target_key == "\u76ee\u6807"
    assert bucket.get_object("link").read() == b"target-data"
    assert bucket.head_object("link").content_length == len(b"target-data")
    expect_error(oss2.exceptions.NoSuchKey, 404, "NoSuchKey", bucket.get_symlink, "no-link")


def test_archive_restore(bucket):
    bucket.put_object("cold", b"frozen", headers={"x-oss-storage-class": "Archive"})
    expect_error(oss2.exceptions.ServerError, 403, "InvalidObjectState", bucket.get_object, "cold")
    assert bucket.head_object("cold").headers["x-oss-storage-class"] == "Archive"
    job = oss2.models.RestoreConfiguration(days=1, job_parameters=oss2.models.RestoreJobParameters("Standard"))
    expect_error(oss2.exceptions.ServerError, 400, "MalformedXML", bucket.restore_object, "cold", input=job)
    assert bucket.restore_object("cold").status == 202
    # the session server restores immediately (restore_delay 0), so the next call finds it done
    assert bucket.restore_object("cold").status == 200
    assert bucket.get_object("cold").read() == b"frozen"
    assert 'ongoing-request="false"' in bucket.head_object("cold").headers["x-oss-restore"]

    bucket.put_object("colder", b"x", headers={"x-oss-storage-class": "ColdArchive"})
    result = bucket.restore_object("colder", input=oss2.models.RestoreConfiguration(
        days=1, job_parameters=oss2.models.RestoreJobParameters("Expedited")))
    assert result.status == 202 and result.headers["x-oss-object-restore-priority"] == "Expedited"


def test_versioning(bucket):
    config = oss2.models.BucketVersioningConfig()
    config.status = oss2.BUCKET_VERSIONING_ENABLE
    bucket.put_bucket_versioning(config)
    assert bucket.get_bucket_versioning().status == "Enabled"
    v1 = bucket.put_object("k", b"one").versionid
    v2 = bucket.put_object("k", b"two").versionid
    deleted = bucket.delete_object("k")
    assert deleted.delete_marker and deleted.versionid
    expect_error(oss2.exceptions.NoSuchKey, 404, "NoSuchKey", bucket.get_object, "k")
    assert bucket.get_object("k", params={"versionId": v1}).read() == b"one"
    listing = bucket.list_object_versions()
    assert [v.versionid for v in listing.versions] == [v2, v1]
    assert listing.delete_marker[0].is_latest
    bucket.delete_object("k", params={"versionId": deleted.versionid})
    assert bucket.get_object("k").read() == b"two"
    for version in (v1, v2):
        bucket.delete_object("k", params={"versionId": version})


def test_bucket_operations(local_server, bucket):
    bucket.put_object("k", b"12345")
    info = bucket.get_bucket_info()
    assert info.name == bucket.bucket_name and info.extranet_endpoint == f"127.0.0.1:{local_server.port}"
    stat = bucket.get_bucket_stat()
    assert stat.storage_size_in_bytes == 5 and stat.object_count == 1
    assert bucket.get_bucket_location().location == "oss-cn-hangzhou"
    names = [b.name for b in oss2.BucketIterator(local_server.oss2_service(), prefix=bucket.bucket_name)]
    assert names == [bucket.bucket_name]
    expect_error(oss2.exceptions.BucketNotEmpty, 409, "BucketNotEmpty", bucket.delete_bucket)
    bucket.create_bucket()  # re-creating your own bucket is fine
    bucket.delete_object("k")
    bucket.delete_bucket()
    expect_error(oss2.exceptions.NoSuchBucket, 404, "NoSuchBucket", bucket.get_bucket_info)


def test_other_principals_are_denied(local_server, fresh_bucket_name):
    access_key, secret, token = local_server.sts[0]
    sts_bucket = oss2.Bucket(oss2.StsAuth(access_key, secret, token), local_server.endpoint, fresh_bucket_name)
    expect_error(oss2.exceptions.AccessDenied, 403, "AccessDenied", sts_bucket.put_object, "k", b"x")
    expect_error(oss2.exceptions.AccessDenied, 403, "AccessDenied", sts_bucket.list_objects)
    expect_error(oss2.exceptions.ServerError, 409, "BucketAlreadyExists", sts_bucket.create_bucket)
    own = oss2.Bucket(oss2.StsAuth(access_key, secret, token), local_server.endpoint,
                      f"sts-own-{int(time.time() * 1000) % 10**9}")
    own.create_bucket()
    try:
        own.put_object("k", b"mine")
        assert own.get_object("k").read() == b"mine"
    finally:
        own.delete_object("k")
        own.delete_bucket()
