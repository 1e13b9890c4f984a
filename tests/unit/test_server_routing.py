"""Host/path addressing and operation classification (oss-api.md §2.1)."""

import pytest

from ossmount.server.core.routing import (bucket_from_host, classify_operation, is_valid_bucket_name,
                                          parse_query, parse_target)


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1:8080", None),
    ("[::1]:8080", None),
    ("localhost", None),
    ("bkt.localhost:9000", "bkt"),
    ("bkt.oss-emu.test", "bkt"),
    ("oss-emu.test", None),
    ("a.b.oss-emu.test", None),
    ("example.com", None),
    (None, None),
])
def test_bucket_from_host(host, expected):
    assert bucket_from_host(host, ("oss-emu.test",)) == expected


def test_path_style_key_is_decoded_once():
    target = parse_target("/bkt/dir%2Fa%2520b?uploads=&prefix=x%2By", "127.0.0.1:1")
    assert (target.bucket, target.key) == ("bkt", "dir/a%20b")
    assert target.query == {"uploads": "", "prefix": "x+y"}
    assert not target.virtual_hosted


def test_literal_slashes_and_bucket_level():
    assert parse_target("/bkt/a/b/c", "localhost").key == "a/b/c"
    assert (parse_target("/bkt/", "localhost").bucket, parse_target("/bkt/", "localhost").key) == ("bkt", "")
    assert parse_target("/bkt", "localhost").key == ""
    assert parse_target("/", "localhost").bucket == ""


def test_virtual_hosted():
    target = parse_target("/a%20b?versionId=v1", "bkt.localhost:80")
    assert (target.bucket, target.key, target.query["versionId"]) == ("bkt", "a b", "v1")
    assert target.virtual_hosted


def test_query_decodes_plus_as_space_and_keeps_bare_names():
    # requests (under oss2) form-encodes the query: a space is sent as '+', a plus as '%2B'.
    assert parse_query("a&b=&c=1+2&d=%2B") == [("a", ""), ("b", ""), ("c", "1 2"), ("d", "+")]


@pytest.mark.parametrize("method, target, headers, op", [
    ("GET", "/", {}, "ListBuckets"),
    ("PUT", "/bkt/", {}, "PutBucket"),
    ("DELETE", "/bkt/", {}, "DeleteBucket"),
    ("GET", "/bkt/?prefix=&delimiter=&marker=&max-keys=100&encoding-type=url", {}, "ListObjects"),
    ("GET", "/bkt/?list-type=2&continuation-token=", {}, "ListObjectsV2"),
    ("GET", "/bkt/?bucketInfo=", {}, "GetBucketInfo"),
    ("GET", "/bkt/?stat", {}, "GetBucketStat"),
    ("GET", "/bkt/?location", {}, "GetBucketLocation"),
    ("GET", "/bkt/?uploads", {}, "ListMultipartUploads"),
    ("GET", "/bkt/?versions", {}, "ListObjectVersions"),
    ("PUT", "/bkt/?versioning", {}, "PutBucketVersioning"),
    ("GET", "/bkt/?versioning", {}, "GetBucketVersioning"),
    ("GET", "/bkt/?live=", {}, "ListLiveChannel"),
    ("POST", "/bkt/?delete=", {}, "DeleteMultipleObjects"),
    ("GET", "/bkt/k", {}, "GetObject"),
    ("HEAD", "/bkt/k", {}, "HeadObject"),
    ("HEAD", "/bkt/k?objectMeta=", {}, "GetObjectMeta"),
    ("PUT", "/bkt/k", {}, "PutObject"),
    ("PUT", "/bkt/k", {"x-oss-copy-source": "/b/s"}, "CopyObject"),
    ("DELETE", "/bkt/k", {}, "DeleteObject"),
    ("POST", "/bkt/k?uploads=", {}, "InitiateMultipartUpload"),
    ("PUT", "/bkt/k?partNumber=1&uploadId=U", {}, "UploadPart"),
    ("PUT", "/bkt/k?partNumber=1&uploadId=U", {"x-oss-copy-source": "/b/s"}, "UploadPartCopy"),
    ("POST", "/bkt/k?uploadId=U", {}, "CompleteMultipartUpload"),
    ("DELETE", "/bkt/k?uploadId=U", {}, "AbortMultipartUpload"),
    ("GET", "/bkt/k?uploadId=U", {}, "ListParts"),
    ("POST", "/bkt/k?append=&position=0", {}, "AppendObject"),
    ("PUT", "/bkt/k?symlink=", {}, "PutSymlink"),
    ("GET", "/bkt/k?symlink=", {}, "GetSymlink"),
    ("POST", "/bkt/k?restore", {}, "RestoreObject"),
    ("PATCH", "/bkt/k", {}, "Unknown"),
    ("POST", "/", {}, "Unknown"),
])
def test_classify(method, target, headers, op):
    parsed = parse_target(target, "127.0.0.1")
    assert classify_operation(method, parsed, headers) == op


@pytest.mark.parametrize("name, valid", [("abc", True), ("a-b-1", True), ("ab", False), ("-ab", False),
                                         ("Abc", False), ("a_b", False), ("a" * 63, True), ("a" * 64, False)])
def test_bucket_names(name, valid):
    assert is_valid_bucket_name(name) is valid
