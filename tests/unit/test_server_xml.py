"""XML rendering and parsing of OSS bodies, and the listing/range helpers built on them."""

import base64
import xml.etree.ElementTree as ET

import pytest

from ossmount.server.core import xmlio
from ossmount.server.core.common import RangeNotSatisfiable, check_conditions, iso8601, parse_range
from ossmount.server.core.errors import OssError
from ossmount.server.core.listing import common_prefix_of
from ossmount.server.core.store import prefix_successor


def test_error_document_has_no_namespace_and_carries_extras():
    error = OssError(404, "NoSuchKey", "missing", ec="0026-00000001", extra=[("Key", "a&b")])
    document = xmlio.error_document(error, "REQ", "bkt.host")
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(document)
    assert root.tag == "Error" and "xmlns" not in document.decode()
    assert [c.tag for c in root][:4] == ["Code", "Message", "RequestId", "HostId"]
    assert root.findtext("Key") == "a&b" and root.findtext("EC") == "0026-00000001"
    assert base64.b64decode(xmlio.error_header_value(document)) == document


def test_parse_delete_keeps_request_keys_raw():
    quiet, entries = xmlio.parse_delete(
        b"<Delete><Quiet>true</Quiet><Object><Key>a%20b</Key><VersionId>v</VersionId></Object></Delete>")
    assert quiet and entries[0].key == "a%20b" and entries[0].version_id == "v"


def test_parse_tolerates_control_characters_in_keys():
    body = "<Delete><Object><Key>\u4e2d\x0c-2.txt</Key></Object></Delete>".encode()
    _, entries = xmlio.parse_delete(body)
    assert entries[0].key == "\u4e2d\x0c-2.txt"


@pytest.mark.parametrize("body", [b"", b"<Delete>", b"<Other/>", b"<Delete><Object/></Delete>"])
def test_parse_delete_malformed(body):
    with pytest.raises(OssError) as caught:
        xmlio.parse_delete(body)
    assert caught.value.code == "MalformedXML"


def test_parse_complete_strips_quotes_and_namespace():
    parts = xmlio.parse_complete(
        b'<CompleteMultipartUpload xmlns="http://x"><Part><PartNumber>2</PartNumber><ETag>"ab"</ETag></Part>'
        b"</CompleteMultipartUpload>")
    assert parts == [xmlio.CompletePart(2, "AB")]


def test_parse_restore_and_versioning():
    request = xmlio.parse_restore(b"<RestoreRequest><Days>3</Days><JobParameters><Tier>Bulk</Tier>"
                                  b"</JobParameters></RestoreRequest>")
    assert (request.days, request.tier, request.has_job_parameters) == (3, "Bulk", True)
    assert xmlio.parse_restore(b"") == xmlio.RestoreRequest(None, None, False)
    assert xmlio.parse_versioning(b"<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>") == "Suspended"
    with pytest.raises(OssError):
        xmlio.parse_versioning(b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>")
    assert xmlio.parse_create_bucket(b"<CreateBucketConfiguration><StorageClass>IA</StorageClass>"
                                     b"</CreateBucketConfiguration>") == "IA"


def test_url_encoding_uses_percent_20():
    assert xmlio.url_encode_if("a b+/\u00e9", True) == "a%20b%2B%2F%C3%A9"
    assert xmlio.url_encode_if("a b", False) == "a b"


def test_iso8601_has_literal_milliseconds():
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"


def test_prefix_successor_and_common_prefix():
    assert prefix_successor(b"ab") == b"ac"
    assert prefix_successor(b"a\xff") == b"b"
    assert prefix_successor(b"\xff\xff") is None
    assert common_prefix_of(b"dir/sub/x", b"dir/", b"/") == b"dir/sub/"
    assert common_prefix_of(b"dir/x", b"dir/", b"/") is None
    assert common_prefix_of(b"dir/x", b"", b"") is None


def test_parse_range_edges():
    assert parse_range("bytes=0-0", 1, False) == (0, 0)
    assert parse_range(None, 10, True) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 10, True)
    assert parse_range("bytes=-0", 10, False) is None


def test_conditions_compare_etags_without_quotes():
    headers = {"if-match": "abc"}
    check_conditions("ABC", 0.0, headers.get)
    with pytest.raises(OssError) as caught:
        check_conditions("ABD", 0.0, headers.get)
    assert caught.value.status == 412
    with pytest.raises(OssError) as caught:
        check_conditions("ABC", 0.0, {"x-oss-copy-source-if-none-match": '"abc"'}.get,
                         prefix="x-oss-copy-source-", not_modified_status=412)
    assert caught.value.status == 412
