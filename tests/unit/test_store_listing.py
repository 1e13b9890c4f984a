"""ossmount/store/listing.py: LIST answers parsed as oss2 parses them, without oss2's per-field searches."""

from __future__ import annotations

import calendar

import oss2.models
import oss2.utils
import oss2.xml_utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trio

from ossmount.store.client import http_seconds
from ossmount.store.listing import HEAD_LIMIT, ListingError, ListingHead, iso8601_seconds, parse_listing
from ossmount.store.pages import ListingPages, listing_pages
from ossmount.store.types import ListPage, ObjectInfo, TransientError


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


# -- ListingHead: the next page's token read from the head of a page ----------------------------------------------


def fed(body: bytes, piece: int, *, v2: bool = True) -> ListingHead:
    """`body` fed to a ListingHead in pieces of `piece` bytes, as far as it takes to decide."""
    head = ListingHead(v2=v2)
    for start in range(0, len(body), piece):
        if head.feed(body[start:start + piece]):
            break
    return head


@pytest.mark.parametrize("piece", [1, 7, 64, 1 << 20])
def test_the_head_tells_the_token_before_the_entries_arrive_in_any_pieces(piece):
    body = page(entry("d%2Fa") * 50, truncated="true", token="tok%2Fen")
    head = fed(body, piece)
    assert head.decided and head.known and head.next_token == "tok/en"
    entries_at = body.index(b"<Contents>")
    consumed = ListingHead(v2=True)
    assert not consumed.feed(body[:entries_at])  # the head alone is not yet known to be all of it
    assert consumed.feed(body[entries_at:entries_at + 10]) and consumed.next_token == "tok/en"


def test_the_head_of_a_last_page_says_there_is_no_next_one():
    head = fed(page(entry("a")), 5)
    assert head.known and head.next_token is None
    assert fed(page(""), 3).known  # an empty last page: decided at its end


def test_a_v1_head_gives_its_next_marker_decoded_only_with_url_encoding():
    assert fed(page(entry("a"), truncated="true", token="d%2Fb", v2=False), 9, v2=False).next_token == "d/b"
    assert fed(page(entry("a"), truncated="true", token="d%2Fb", encoded=False, v2=False), 9,
               v2=False).next_token == "d%2Fb"


@pytest.mark.parametrize("body", [
    # the token after the entries (as some S3 servers write V1 pages), or missing (V1 without a delimiter)
    b"<ListBucketResult><IsTruncated>true</IsTruncated>" + entry("a").encode()
    + b"<NextMarker>a</NextMarker></ListBucketResult>",
    b"<ListBucketResult>" + entry("a").encode() + b"<IsTruncated>true</IsTruncated></ListBucketResult>",
    b"<ListBucketResult><IsTruncated>maybe</IsTruncated>" + entry("a").encode() + b"</ListBucketResult>",
    b"<ListBucketResult><IsTruncated>true</Is>" + entry("a").encode(),  # not XML
    b"<ListBucketResult><Name>" + b"x" * (HEAD_LIMIT + 10),  # no entry within the head's limit
])
def test_a_head_that_does_not_tell_leaves_the_next_page_to_the_parse(body):
    head = fed(body, 4096, v2=False)
    assert head.decided and not head.known and head.next_token is None


# -- ListingPages: pages in order, asked for one ahead, dropped unless the parse confirms the early token ----------


class FakeServer:
    """Pages of `keys` (PAGE keys each) whose head tells `told(token)` (by default the true next token)."""

    def __init__(self, count: int, told=None, fail_at: set[str | None] = frozenset()):
        self.keys = [f"k{i:03d}" for i in range(count)]
        self.told = told or (lambda token, true_next: true_next)
        self.fail_at = fail_at
        self.asked: list[str | None] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def fetch(self, token, on_next_token):
        self.asked.append(token)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            start = 0 if token is None else self.keys.index(token) + 1
            keys = self.keys[start:start + 3]
            true_next = keys[-1] if start + 3 < len(self.keys) else None
            await trio.sleep(0.01)  # the head arrives
            on_next_token(self.told(token, true_next))
            await trio.sleep(0.01)  # the rest of the page
            if token in self.fail_at:
                raise TransientError(f"page after {token} failed", code="InternalError")
            objects = [ObjectInfo(key=key, size=0, etag="e", mtime=0.0, from_listing=True) for key in keys]
            return ListPage(objects=objects, prefixes=[], next_token=true_next)
        finally:
            self.in_flight -= 1


async def all_keys(server: FakeServer, *, slow_caller: bool = False) -> tuple[list[str], ListingPages]:
    keys: list[str] = []
    async with listing_pages(server.fetch, op="ListObjectsV2", prefix="", v2=True) as pages:
        async for page in pages:
            keys += [info.key for info in page.objects]
            if slow_caller:
                await trio.sleep(0.1)
    return keys, pages


async def test_pages_come_in_order_each_asked_once_at_most_two_in_flight():
    server = FakeServer(20)
    for slow in (False, True):
        server.asked.clear()
        keys, pages = await all_keys(server, slow_caller=slow)
        assert keys == server.keys
        assert server.asked == [None] + [f"k{i:03d}" for i in range(2, 20, 3)]  # each page once, in order
        assert server.most_in_flight <= 2 and pages.asked_ahead == 6 and pages.dropped == 0


async def test_a_page_asked_for_with_a_token_the_parse_does_not_confirm_is_dropped_and_asked_again():
    server = FakeServer(10, told=lambda token, true_next: None if true_next is None else true_next + "-guess")
    keys, pages = await all_keys(server)
    assert keys == server.keys
    assert pages.dropped == 3  # every page after the first was first asked for with the wrong token
    assert [t for t in server.asked if t is None or not t.endswith("-guess")] == [None, "k002", "k005", "k008"]


async def test_a_page_failure_comes_out_as_itself_when_the_caller_reaches_it():
    server = FakeServer(10, fail_at={"k005"})
    keys: list[str] = []
    with pytest.raises(TransientError, match="page after k005"):
        async with listing_pages(server.fetch, op="ListObjectsV2", prefix="", v2=True) as pages:
            async for page in pages:
                keys += [info.key for info in page.objects]
    assert keys == server.keys[:6]


async def test_a_listing_that_does_not_advance_is_refused():
    async def same_page(token, on_next_token):
        on_next_token("again")
        return ListPage(objects=[], prefixes=[], next_token="again")

    with pytest.raises(TransientError, match="does not advance"):
        async with listing_pages(same_page, op="ListObjects", prefix="p/", v2=False) as pages:
            async for _ in pages:
                pass


def test_a_listed_object_info_is_the_same_value_as_one_built_field_by_field():
    import dataclasses

    fast = ObjectInfo.listed("d/a", 3, "e", 5.0, "Normal", "IA", None)
    slow = ObjectInfo(key="d/a", size=3, etag="e", mtime=5.0, storage_class="IA", from_listing=True)
    assert fast == slow and repr(fast) == repr(slow)
    assert dataclasses.replace(fast, restore="x") == dataclasses.replace(slow, restore="x")
    assert fast.meta == {} and fast.meta is not ObjectInfo.listed("d/b", 0, "", 0.0, "Normal", "IA", None).meta
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.size = 4  # type: ignore[misc]


@pytest.mark.parametrize("key", ["d%2Fa", "d%2Fa%20b", "%2F%2F", "d%2fa", "100%25%2F", "plain"])
def test_keys_decode_as_urllib_does(key):
    import urllib.parse

    body = page(entry(key))
    assert parse_listing(body, v2=True).objects[0].key == urllib.parse.unquote(key)


def test_http_dates_read_as_oss2_reads_them_and_remembered():
    """Date and Last-Modified headers (RFC 9110 §5.6.7) give oss2's epoch seconds; a repeated one is not parsed again;
    a malformed one is still a ValueError (never a remembered guess)."""
    text = "Mon, 30 Nov 2026 18:00:00 GMT"
    assert http_seconds(text) == float(oss2.utils.http_to_unixtime(text)) == 1796061600.0
    hits = http_seconds.cache_info().hits
    assert http_seconds(text) == 1796061600.0
    assert http_seconds.cache_info().hits == hits + 1
    for _ in range(2):
        with pytest.raises(ValueError):
            http_seconds("30 Nov 2026")
