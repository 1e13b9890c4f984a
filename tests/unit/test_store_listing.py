"""ossmount/store/listing.py: LIST answers parsed as oss2 parses them, without oss2's per-field searches."""

from __future__ import annotations

import calendar

import oss2.models
import oss2.xml_utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ossmount.store.listing import ListingError, iso8601_seconds, parse_listing


def page(contents: str, *, prefixes: tuple[str, ...] = (), truncated: str = "false", token: str | None = None,
         encoded: bool = True, v2: bool = True) -> bytes:
    token_tag = "NextContinuationToken" if v2 else "NextMarker"
    return ("<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>b</Name>"
            + ("<EncodingType>url</EncodingType>" if encoded else "")
            + f"<IsTruncated>{truncated}</IsTruncated>"
            + (f"<{token_tag}>{token}</{token_tag}>" if token is not None else "")
            + contents + "".join(f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in prefixes)
            + "</ListBucketResult>").encode()


def entry(key: str, *, size: str = "3", modified: str = "2026-01-02T03:04:05.000Z", extra: str = "") -> str:
    return (f"<Contents><Key>{key}</Key><LastModified>{modified}</LastModified><ETag>\"abc\"</ETag>"
            f"<Type>Normal</Type><Size>{size}</Size><StorageClass>IA</StorageClass>{extra}</Contents>")


def test_a_page_with_objects_prefixes_and_a_token():
    body = page(entry("d%2Fa%20b") + entry("d%2Fc", extra="<RestoreInfo>ongoing-request=\"true\"</RestoreInfo>"),
                prefixes=("d%2Fsub%2F",), truncated="true", token="tok%2F1")
    listing = parse_listing(body, v2=True)
    assert [(o.key, o.size, o.etag, o.storage_class) for o in listing.objects] == [
        ("d/a b", 3, "abc", "IA"), ("d/c", 3, "abc", "IA")]
    assert listing.objects[0].mtime == calendar.timegm((2026, 1, 2, 3, 4, 5)) and listing.objects[0].from_listing
    assert listing.objects[1].restore == 'ongoing-request="true"' and listing.objects[0].restore is None
    assert listing.prefixes == ["d/sub/"] and listing.truncated and listing.next_token == "tok/1"


def test_keys_are_decoded_only_with_url_encoding():
    assert parse_listing(page(entry("a%2Fb"), encoded=False), v2=True).objects[0].key == "a%2Fb"


def test_v1_marker_and_a_missing_one():
    assert parse_listing(page(entry("a"), truncated="true", token="a", v2=False), v2=False).next_token == "a"
    listing = parse_listing(page(entry("a"), truncated="true", v2=False), v2=False)
    assert listing.truncated and listing.next_token is None  # the store continues from the last key


def test_a_page_that_is_not_truncated_has_no_token():
    assert parse_listing(page("", truncated="false", token="stale"), v2=True).next_token is None


def test_missing_type_and_storage_class_default_like_s3_servers_send_them():
    body = page("<Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified><ETag>e</ETag>"
                "<Size>0</Size></Contents>")
    [info] = parse_listing(body, v2=True).objects
    assert (info.object_type, info.storage_class, info.etag) == ("Normal", "Standard", "e")


@pytest.mark.parametrize("body", [
    b"", b"not xml", b"<ListBucketResult>", page(entry("k"), truncated="yes"), page(entry("k"), truncated=""),
    page(entry("k", size="-1")), page(entry("k", size="1e3")), page(entry("k", size="")),
    page(entry("k", modified="yesterday")), page(entry("k", modified="2026-13-45T99:99:99.000Z")),
    page("<Contents><Key>k</Key></Contents>"), page("", truncated="true"),
    page("<CommonPrefixes></CommonPrefixes>"),
])
def test_broken_answers_are_listing_errors(body):
    with pytest.raises(ListingError):
        parse_listing(body, v2=True)


def test_iso8601_drops_fractions_as_oss2_does():
    assert iso8601_seconds("2012-02-24T06:07:48.999Z") == oss2.utils.iso8601_to_unixtime("2012-02-24T06:07:48.000Z")


_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(_names, max_size=6), prefixes=st.lists(_names, max_size=3), truncated=st.booleans(),
       sizes=st.lists(st.integers(0, 2**50), min_size=6, max_size=6), encoded=st.booleans())
def test_same_result_as_oss2(keys, prefixes, truncated, sizes, encoded):
    """Differential: whatever oss2's parser makes of a well-formed page, this parser makes too."""
    quote = (lambda text: oss2.compat.urlquote(text, safe="")) if encoded else (
        lambda text: text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    contents = "".join(entry(quote(k), size=str(s)) for k, s in zip(keys, sizes))
    body = page(contents, prefixes=tuple(quote(p) for p in prefixes), truncated=str(truncated).lower(),
                token=quote("next token") if truncated else None, encoded=encoded)
    try:
        expected = oss2.models.ListObjectsV2Result.__new__(oss2.models.ListObjectsV2Result)
        expected.is_truncated, expected.next_continuation_token = False, ""
        expected.object_list, expected.prefix_list = [], []
        oss2.xml_utils.parse_list_objects_v2(expected, body)
    except Exception:  # noqa: BLE001 - a page oss2 refuses (e.g. a control character) need not parse here either
        return
    listing = parse_listing(body, v2=True)
    assert [(o.key, o.size, o.etag, o.mtime) for o in listing.objects] == [
        (o.key, o.size, o.etag, float(o.last_modified)) for o in expected.object_list]
    assert listing.prefixes == expected.prefix_list
    assert listing.truncated == expected.is_truncated
    assert listing.next_token == (expected.next_continuation_token if truncated else None)
