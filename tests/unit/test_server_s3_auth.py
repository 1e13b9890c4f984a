"""S3 dialect, sans-IO: SigV2/SigV4 (header, presigned, aws-chunked) checked against the examples AWS publishes in
its S3 authentication docs, dialect detection, header mapping and the aws-chunked decoder."""

import calendar
import hashlib

import pytest

from ossmount.server.core.auth import Credential, CredentialStore
from ossmount.server.core.errors import OssError
from ossmount.server.core.model import Request, SpooledBody
from ossmount.server.core.routing import parse_target
from ossmount.server.core.s3 import xml as s3xml
from ossmount.server.core.s3.auth import (STREAMING_SIGNED, authenticate_s3, check_payload_hash, is_s3_signed,
                                          verify_chunk_signatures)
from ossmount.server.core.s3.chunked import AwsChunkedDecoder, ChunkedFormatError
from ossmount.server.core.s3.dialect import apply_s3_defaults, to_oss_headers, to_s3_headers

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = CredentialStore([Credential(AK, SK), Credential("STSKEY", "stssecret", "the-token")])
EXAMPLE_TIME = calendar.timegm((2013, 5, 24, 0, 0, 0))
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def auth(request: Request, *, now: float = EXAMPLE_TIME, region: str = "us-east-1"):
    target = parse_target(request.target, request.headers.get("host"), ("s3.amazonaws.com",))
    return authenticate_s3(request, target.query_items, bucket=target.bucket or None, key=target.key or None,
                           virtual_hosted=target.virtual_hosted, credentials=CREDS, region=region, now=now)


def v4_get_example(signature: str) -> Request:
    # AWS "Signature Calculations for the Authorization Header", example GET Object.
    return Request("GET", "/test.txt", {
        "host": "examplebucket.s3.amazonaws.com",
        "range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY,
        "x-amz-date": "20130524T000000Z",
        "authorization": f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
                         f"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}",
    })


def test_sigv4_header_matches_the_aws_example():
    good = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    assert auth(v4_get_example(good)).access_key_id == AK
    with pytest.raises(OssError) as excinfo:
        auth(v4_get_example(good[:-1] + "0"))
    assert excinfo.value.code == "SignatureDoesNotMatch"
    names = [name for name, _ in excinfo.value.extra]
    assert "StringToSign" in names and "CanonicalRequest" in names


def test_sigv4_presigned_matches_the_aws_example():
    # AWS "Authenticating Requests: Using Query Parameters", example GET with X-Amz-Expires=86400.
    target = ("/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
              "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
              "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    request = Request("GET", target, {"host": "examplebucket.s3.amazonaws.com"})
    assert auth(request, now=EXAMPLE_TIME + 3600).access_key_id == AK
    with pytest.raises(OssError) as excinfo:
        auth(request, now=EXAMPLE_TIME + 86401)
    assert (excinfo.value.status, excinfo.value.code) == (403, "AccessDenied")


def test_sigv2_header_matches_the_aws_example():
    # AWS "Signing and Authenticating REST Requests", example Object GET.
    headers = {"host": "johnsmith.s3.amazonaws.com", "date": "Tue, 27 Mar 2007 19:36:42 +0000",
               "authorization": f"AWS {AK}:bWq2s1WEIj+Ydj0vQ697zp+IXMU="}
    now = calendar.timegm((2007, 3, 27, 19, 36, 42))
    assert auth(Request("GET", "/photos/puppy.jpg", headers), now=now).access_key_id == AK
    headers["authorization"] = f"AWS {AK}:bWq2s1WEIj+Ydj0vQ697zp+IXMV="
    with pytest.raises(OssError) as excinfo:
        auth(Request("GET", "/photos/puppy.jpg", headers), now=now)
    assert excinfo.value.code == "SignatureDoesNotMatch"
    with pytest.raises(OssError) as excinfo:
        auth(Request("GET", "/photos/puppy.jpg", dict(headers, authorization=f"AWS {AK}:x")), now=now + 3600)
    assert excinfo.value.code == "RequestTimeTooSkewed"


def test_sigv2_presigned_matches_the_aws_example():
    # AWS "Query String Request Authentication Alternative", example (Expires 1175139620).
    target = (f"/photos/puppy.jpg?AWSAccessKeyId={AK}&Expires=1175139620"
              "&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D")
    request = Request("GET", target, {"host": "johnsmith.s3.amazonaws.com"})
    assert auth(request, now=1175139620 - 10).access_key_id == AK
    with pytest.raises(OssError) as excinfo:
        auth(request, now=1175139620 + 10)
    assert excinfo.value.code == "AccessDenied"


def test_region_must_be_the_servers_or_a_default():
    good = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    # us-east-1 is accepted on a cn-hangzhou server (every S3 tool's default), another region is refused by name
    assert auth(v4_get_example(good), region="cn-hangzhou").access_key_id == AK
    request = v4_get_example(good)
    request.headers["authorization"] = request.headers["authorization"].replace("us-east-1", "eu-west-1")
    with pytest.raises(OssError) as excinfo:
        auth(request, region="cn-hangzhou")
    assert excinfo.value.code == "AuthorizationHeaderMalformed"
    assert ("Region", "cn-hangzhou") in excinfo.value.extra


def test_unknown_key_and_sts_token():
    request = v4_get_example("0" * 64)
    request.headers["authorization"] = request.headers["authorization"].replace(AK, "NOSUCHKEY")
    with pytest.raises(OssError) as excinfo:
        auth(request)
    assert excinfo.value.code == "InvalidAccessKeyId"
    request.headers["authorization"] = request.headers["authorization"].replace("NOSUCHKEY", "STSKEY")
    with pytest.raises(OssError) as excinfo:
        auth(request)  # an STS key without its x-amz-security-token
    assert s3xml.s3_error(excinfo.value, None).code == "InvalidToken"


def chunked_example_body() -> bytes:
    # AWS "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks".
    return (b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
            + b"a" * 65536 + b"\r\n"
            + b"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
            + b"a" * 1024 + b"\r\n"
            + b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n")


def chunked_example_request() -> Request:
    return Request("PUT", "/examplebucket/chunkObject.txt", {
        "host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "authorization": f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders="
                         "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                         "x-amz-decoded-content-length;x-amz-storage-class,Signature="
                         "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        "x-amz-content-sha256": STREAMING_SIGNED,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "content-length": "66824",
    })


@pytest.mark.parametrize("split", [None, 1, 7, 4096])
def test_aws_chunked_example_decodes_and_its_chain_verifies(split):
    body = chunked_example_body()
    assert len(body) == 66824
    decoder = AwsChunkedDecoder()
    pieces = []
    step = split or len(body)
    for offset in range(0, len(body), step):
        pieces += decoder.feed(body[offset:offset + step])
    decoded = decoder.finish()
    assert b"".join(pieces) == b"a" * 66560 and decoded.decoded_size == 66560
    principal = auth(chunked_example_request())
    assert principal.streaming is not None
    verify_chunk_signatures(principal.streaming, decoded.chunk_signatures)
    tampered = list(decoded.chunk_signatures)
    tampered[1] = (tampered[1][0], hashlib.sha256(b"b" * 1024).hexdigest())
    with pytest.raises(OssError) as excinfo:
        verify_chunk_signatures(principal.streaming, tampered)
    assert excinfo.value.code == "SignatureDoesNotMatch"
    with pytest.raises(OssError):
        verify_chunk_signatures(principal.streaming, decoded.chunk_signatures[:-1])  # truncated: no final chunk


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcd\r\n0\r\n\r\n", b"3\r\nabc\r\n"])
def test_aws_chunked_rejects_bad_framing(body):
    decoder = AwsChunkedDecoder()
    with pytest.raises(ChunkedFormatError):
        decoder.feed(body)
        decoder.finish()


def test_unsigned_trailer_variant_keeps_trailers():
    decoder = AwsChunkedDecoder()
    data = decoder.feed(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n")
    result = decoder.finish()
    assert data == [b"hello"] and result.trailers == {"x-amz-checksum-crc32": "NhCmhg=="}
    assert result.chunk_signatures == []


def test_payload_hash_is_checked():
    request = Request("PUT", "/b/k", {"x-amz-content-sha256": hashlib.sha256(b"data").hexdigest()},
                      SpooledBody(None, 4, None, 0, data=b"data", sha256=hashlib.sha256(b"data").digest()))
    check_payload_hash(request)
    request.body = SpooledBody(None, 4, None, 0, data=b"date", sha256=hashlib.sha256(b"date").digest())
    with pytest.raises(OssError) as excinfo:
        check_payload_hash(request)
    assert excinfo.value.code == "XAmzContentSHA256Mismatch"


def test_dialect_detection():
    assert is_s3_signed(Request("GET", "/", {"authorization": "AWS4-HMAC-SHA256 Credential=x"}), [])
    assert is_s3_signed(Request("GET", "/", {"authorization": "AWS ak:sig"}), [])
    assert is_s3_signed(Request("GET", "/", {}), [("X-Amz-Algorithm", "AWS4-HMAC-SHA256")])
    assert is_s3_signed(Request("GET", "/", {}), [("AWSAccessKeyId", "ak")])
    assert not is_s3_signed(Request("GET", "/", {"authorization": "OSS ak:sig"}), [])
    assert not is_s3_signed(Request("GET", "/", {"authorization": "OSS4-HMAC-SHA256 Credential=x"}), [])
    assert not is_s3_signed(Request("GET", "/", {}), [("OSSAccessKeyId", "ak")])


def test_request_headers_map_onto_oss_names():
    mapped = to_oss_headers({
        "x-amz-meta-mode": "33188", "x-amz-copy-source": "/b/k", "x-amz-metadata-directive": "REPLACE",
        "x-amz-storage-class": "STANDARD_IA", "x-amz-acl": "bucket-owner-full-control", "x-amz-date": "x",
        "x-oss-meta-smuggled": "1", "content-type": "text/plain", "range": "bytes=0-1", "if-none-match": "*",
    }, "PUT")
    assert mapped == {"x-oss-meta-mode": "33188", "x-oss-copy-source": "/b/k", "x-oss-metadata-directive": "REPLACE",
                      "x-oss-storage-class": "IA", "content-type": "text/plain", "range": "bytes=0-1",
                      "x-oss-range-behavior": "standard", "x-oss-forbid-overwrite": "true"}


def test_response_headers_map_onto_s3_names():
    headers = dict(to_s3_headers([("ETag", '"ABC"'), ("x-oss-meta-mode", "1"), ("x-oss-request-id", "R"),
                                  ("x-oss-hash-crc64ecma", "5"), ("x-oss-storage-class", "Standard"),
                                  ("x-oss-version-id", "v")]))
    assert headers["ETag"] == '"abc"' and headers["x-amz-meta-mode"] == "1" and headers["x-amz-request-id"] == "R"
    assert headers["x-amz-version-id"] == "v" and "x-amz-id-2" in headers
    assert not any(name.startswith("x-oss-") for name in headers) and "x-amz-storage-class" not in headers


def test_listing_document_becomes_s3s():
    oss = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name><Contents><Key>k</Key>'
           b'<ETag>"AB"</ETag><Type>Normal</Type><Size>1</Size><StorageClass>IA</StorageClass></Contents>'
           b'</ListBucketResult>')
    s3 = s3xml.to_s3_document(oss, "cn-hangzhou").decode()
    assert 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in s3
    assert "<Type>" not in s3 and "<StorageClass>STANDARD_IA</StorageClass>" in s3 and '"ab"' in s3


def test_listing_defaults_to_1000_keys():
    target = parse_target("/b?list-type=2", "127.0.0.1")
    apply_s3_defaults("ListObjectsV2", target)
    assert target.query["max-keys"] == "1000"
    target = parse_target("/b?max-keys=5000", "127.0.0.1")
    apply_s3_defaults("ListObjects", target)
    assert target.query["max-keys"] == "1000"
