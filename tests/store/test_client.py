"""ObjectStore against the real local server over loopback (real signatures, real HTTP)."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from ossmount import USER_AGENT
from ossmount.credentials import Credentials
from ossmount.store import ObjectStore, RetryPolicy, types
from ossmount.crc64 import crc64

from .conftest import OTHER_KEY, make_store


def counters_delta(before: dict, after: dict) -> dict:
    return {op: after.get(op, 0) - before.get(op, 0) for op in after if after.get(op, 0) != before.get(op, 0)}


# -- objects ---------------------------------------------------------------------------------------------


async def test_put_then_head_round_trips_metadata(store, local_server):
    info = await store.put("dir/file.txt", b"hello world", content_type="text/plain",
                           meta={"mode": "33188", "Uid": "1000", "note": "a b%C3%BC"})
    assert info.size == 11
    assert info.crc64 == crc64(b"hello world")
    assert info.etag

    head = await store.head("dir/file.txt")
    assert head.size == 11
    assert head.etag == info.etag
    assert head.content_type == "text/plain"
    assert head.meta == {"mode": "33188", "uid": "1000", "note": "a b%C3%BC"}
    assert head.crc64 == crc64(b"hello world")
    assert head.object_type == "Normal"
    assert head.mtime > 0 and not head.from_listing

    raw = local_server.oss2_bucket(store.bucket_name).head_object("dir/file.txt")
    assert raw.headers["x-oss-meta-mode"] == "33188"


async def test_non_ascii_metadata_is_refused_before_sending(store):
    with pytest.raises(types.InvalidArgument):
        await store.put("k", b"", meta={"note": "grüße"})
    assert store.statistics().requests == {}


async def test_put_without_content_type_is_octet_stream(store):
    await store.put("dir/", b"")
    head = await store.head("dir/")
    assert head.content_type == "application/octet-stream"
    assert head.size == 0


async def test_put_accepts_memoryview_and_bytearray(store):
    data = bytearray(os.urandom(100_000))
    await store.put("mv", memoryview(data)[10:])
    assert await store.get_bytes("mv") == bytes(data[10:])


async def test_head_of_missing_key_is_no_such_key(store):
    with pytest.raises(types.NoSuchKey) as info:
        await store.head("missing")
    assert info.value.code == "NoSuchKey"
    assert info.value.errno == 2


async def test_forbid_overwrite_is_already_exists(store):
    await store.put("once", b"1")
    with pytest.raises(types.AlreadyExists):
        await store.put("once", b"2", forbid_overwrite=True)
    assert await store.get_bytes("once") == b"1"


async def test_put_file_streams_a_slice_of_a_file(store, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "src"
    path.write_bytes(data)
    with open(path, "rb") as f:
        info = await store.put_file("from-file", f, len(data) - 100, offset=100, content_type="image/png",
                                    meta={"mode": "33261"})
    assert info.crc64 == crc64(data[100:])
    assert await store.get_bytes("from-file") == data[100:]
    head = await store.head("from-file")
    assert (head.content_type, head.meta["mode"]) == ("image/png", "33261")


# -- reads ------------------------------------------------------------------------------------------------


async def test_ranged_reads_including_eof(store, local_server):
    data = os.urandom(1_000_000)
    await store.put("blob", data)

    buf = bytearray(4096)
    assert await store.get_into("blob", 12345, memoryview(buf)) == 4096
    assert bytes(buf) == data[12345:12345 + 4096]

    assert await store.get_into("blob", len(data) - 100, memoryview(buf)) == 100  # short at EOF
    assert bytes(buf[:100]) == data[-100:]

    assert await store.get_into("blob", len(data), memoryview(buf)) == 0  # 416 past EOF
    assert await store.get_into("blob", len(data) + 5000, memoryview(buf)) == 0

    big = bytearray(len(data))
    assert await store.get_into("blob", 0, memoryview(big)) == len(data)
    assert bytes(big) == data

    assert await store.get_bytes("blob", 999_990) == data[999_990:]
    assert await store.get_bytes("blob", 10, 20) == data[10:30]

    await store.put("empty", b"")
    assert await store.get_into("empty", 0, memoryview(buf)) == 0
    assert await store.get_bytes("empty") == b""

    seen = [r for r in local_server.admin.requests() if r.get("op") == "GetObject" and r.get("key") == "blob"]
    assert seen and all(r.get("range") for r in seen)


async def test_get_of_missing_key(store):
    with pytest.raises(types.NoSuchKey):
        await store.get_into("nope", 0, memoryview(bytearray(10)))


async def test_connections_survive_many_abandoned_and_short_reads(store):
    """Short reads and 416s must leave the pooled connections usable (drained or closed, never stuck)."""
    await store.put("small", b"x" * 1000)
    buf = memoryview(bytearray(10_000))
    async with trio.open_nursery() as nursery:
        for i in range(64):
            nursery.start_soon(store.get_into, "small", (i * 37) % 1200, buf[i * 100:(i + 1) * 100])
    assert await store.get_bytes("small") == b"x" * 1000


# -- copy, metadata, delete -------------------------------------------------------------------------------


async def test_copy_keeps_or_replaces_metadata(store):
    await store.put("src", b"payload", content_type="text/plain", meta={"mode": "33188"})
    await store.copy("src", "kept")
    kept = await store.head("kept")
    assert (kept.content_type, kept.meta) == ("text/plain", {"mode": "33188"})

    await store.copy("src", "replaced", content_type="application/json", meta={"mode": "33261", "uid": "7"})
    replaced = await store.head("replaced")
    assert (replaced.content_type, replaced.meta) == ("application/json", {"mode": "33261", "uid": "7"})
    assert await store.get_bytes("replaced") == b"payload"


async def test_update_meta_does_not_reupload(store, local_server):
    await store.put("f", b"data" * 1000, meta={"mode": "33188"})
    before = local_server.admin.counters()
    await store.update_meta("f", content_type="text/plain", meta={"mode": "33279", "mtime": "1700000000"})
    delta = counters_delta(before, local_server.admin.counters())
    assert delta == {"CopyObject": 1}
    head = await store.head("f")
    assert head.meta == {"mode": "33279", "mtime": "1700000000"}
    assert await store.get_bytes("f") == b"data" * 1000


async def test_delete_and_delete_many(store, local_server):
    await store.put("one", b"1")
    await store.delete("one")
    await store.delete("one")  # deleting a missing key succeeds, as on OSS
    with pytest.raises(types.NoSuchKey):
        await store.head("one")
    await store.delete_many([])


# -- listing ----------------------------------------------------------------------------------------------


async def put_many(store: ObjectStore, keys: list[str]) -> None:
    limiter = trio.CapacityLimiter(16)

    async def put_one(key: str) -> None:
        async with limiter:
            await store.put(key, b"")

    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(put_one, key)


async def test_listing_pages_through_2500_keys_and_delete_many_batches(store, local_server):
    keys = [f"big/{i:05d}" for i in range(2500)] + ["big/sub/a", "big/sub/b", "big/other/c", "top"]
    await put_many(store, keys)

    for v2, op in ((True, "ListObjectsV2"), (False, "ListObjects")):
        before = local_server.admin.counters()
        objects, prefixes = await store.list_all("big/", v2=v2)
        delta = counters_delta(before, local_server.admin.counters())
        assert delta == {op: 3}
        assert [o.key for o in objects] == [f"big/{i:05d}" for i in range(2500)]
        assert prefixes == ["big/other/", "big/sub/"]
        assert all(o.from_listing and o.size == 0 and o.etag for o in objects)

    page = await store.list_page("", max_keys=1000)
    assert ([o.key for o in page.objects], page.prefixes, page.next_token) == (["top"], ["big/"], None)

    everything, _ = await store.list_all("big/", delimiter="")
    assert len(everything) == 2503

    before = local_server.admin.counters()
    await store.delete_many([o.key for o in everything])
    assert counters_delta(before, local_server.admin.counters()) == {"DeleteMultipleObjects": 3}
    assert await store.list_all("big/") == ([], [])


async def test_listing_handles_keys_that_need_url_encoding(store):
    awkward = ["enc/a b+c", "enc/ümlaut", "enc/tab\there", "enc/amp&lt;"]
    await put_many(store, awkward)
    objects, _ = await store.list_all("enc/")
    assert sorted(o.key for o in objects) == sorted(awkward)
    objects, _ = await store.list_all("enc/", v2=False)
    assert sorted(o.key for o in objects) == sorted(awkward)


# -- multipart --------------------------------------------------------------------------------------------


async def test_multipart_round_trip(store, tmp_path, local_server):
    part1 = os.urandom(5 * 1024 * 1024)
    part2 = os.urandom(5 * 1024 * 1024 + 3)
    source = os.urandom(6 * 1024 * 1024)
    await store.put("copy-source", source)
    path = tmp_path / "part2"
    path.write_bytes(b"junk" + part2)

    upload_id = await store.init_multipart("mp/object", content_type="video/mp4", meta={"mode": "33188"})
    parts = []
    async with trio.open_nursery() as nursery:
        async def first():
            parts.append(await store.upload_part("mp/object", upload_id, 1, memoryview(part1)))

        async def second():
            with open(path, "rb") as f:
                parts.append(await store.upload_part_from_file("mp/object", upload_id, 2, f, 4, len(part2)))

        nursery.start_soon(first)
        nursery.start_soon(second)
    parts.append(await store.upload_part_copy("copy-source", (1000, 1000 + 5 * 1024 * 1024 - 1), "mp/object",
                                              upload_id, 3))
    parts.append(await store.upload_part("mp/object", upload_id, 4, b"tail"))
    assert {p.part_number: p.crc64 for p in parts}[1] == crc64(part1)

    info = await store.complete_multipart("mp/object", upload_id, parts)
    expected = part1 + part2 + source[1000:1000 + 5 * 1024 * 1024] + b"tail"
    assert info.size == len(expected)
    assert info.crc64 == crc64(expected)  # verified against the combined part CRCs
    head = await store.head("mp/object")
    assert (head.size, head.object_type, head.content_type, head.meta) == (
        len(expected), "Multipart", "video/mp4", {"mode": "33188"})
    assert await store.get_bytes("mp/object") == expected


async def test_abort_multipart(store):
    upload_id = await store.init_multipart("mp/aborted")
    await store.upload_part("mp/aborted", upload_id, 1, b"x" * 100)
    await store.abort_multipart("mp/aborted", upload_id)
    with pytest.raises(types.StoreError) as info:
        await store.upload_part("mp/aborted", upload_id, 2, b"y")
    assert info.value.code == "NoSuchUpload"
    with pytest.raises(types.NoSuchKey):
        await store.head("mp/aborted")


async def test_bodies_of_several_buffers_are_sent_without_joining_them(store):
    pieces = [os.urandom(200 * 1024), bytearray(os.urandom(1000)), memoryview(os.urandom(300 * 1024))[10:]]
    whole = b"".join(bytes(p) for p in pieces)
    info = await store.put("joined", pieces, crc64=crc64(whole))
    assert info.size == len(whole) and info.crc64 == crc64(whole)
    assert await store.get_bytes("joined") == whole
    upload_id = await store.init_multipart("parts")
    part = await store.upload_part("parts", upload_id, 1, pieces)
    assert part.size == len(whole) and part.crc64 == crc64(whole)
    with pytest.raises(types.ChecksumMismatch):  # a wrong precomputed CRC is caught by OSS's answer
        await store.upload_part("parts", upload_id, 2, pieces, crc64=crc64(whole) ^ 1)
    await store.complete_multipart("parts", upload_id, [part])
    assert await store.get_bytes("parts") == whole


async def test_uploads_carry_ossmount_marker_and_are_listed_with_it(store, local_server, fresh_bucket_name):
    store.upload_marker = "20260101T000000-42-abcdef"
    ours = await store.init_multipart("dir/ours", meta={"mode": "33188"})
    other_tools = local_server.oss2_bucket(fresh_bucket_name).init_multipart_upload("dir/theirs").upload_id
    elsewhere = await store.init_multipart("outside")
    listed = {u.upload_id: u for u in await store.list_multipart_uploads("dir/")}
    assert set(listed) == {ours, other_tools}
    assert listed[ours].key == "dir/ours" and listed[ours].initiated > 0
    assert listed[ours].meta == {"mode": "33188", "ossmount-upload": "20260101T000000-42-abcdef"}
    assert listed[other_tools].meta == {}
    assert [p.part_number for p in await store.list_parts("dir/ours", ours)] == []
    part = await store.upload_part("dir/ours", ours, 1, b"z" * 1000)
    assert await store.list_parts("dir/ours", ours) == [types.PartInfo(1, part.etag, 1000)]
    await store.complete_multipart("dir/ours", ours, [part])
    assert (await store.head("dir/ours")).meta == {"mode": "33188"}  # the marker is never shown
    with pytest.raises(types.NoSuchUpload):
        await store.list_parts("dir/ours", ours)
    for key, upload_id in (("dir/theirs", other_tools), ("outside", elsewhere)):
        await store.abort_multipart(key, upload_id)
    assert await store.list_multipart_uploads("") == []


def test_listing_pages_of_uploads_are_followed():
    from ossmount.store.client import _parse_uploads

    page = (b"<ListMultipartUploadsResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
            b"<NextKeyMarker>a%2Fb%20c</NextKeyMarker><NextUploadIdMarker>U2</NextUploadIdMarker>"
            b"<Upload><Key>a%2Fb%20c</Key><UploadId>U2</UploadId><Initiated>2026-01-01T00:00:00.000Z</Initiated>"
            b"<UserMeta><Name>x-oss-meta-ossmount-upload</Name><Value>s%201</Value></UserMeta></Upload>"
            b"</ListMultipartUploadsResult>")
    uploads, next_key, next_id = _parse_uploads(page)
    assert (next_key, next_id) == ("a/b c", "U2")
    assert uploads == [types.MultipartUpload("a/b c", "U2", 1767225600.0, {"ossmount-upload": "s 1"})]
    last = b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"
    assert _parse_uploads(last) == ([], None, None)


# -- bucket, identity, statistics -------------------------------------------------------------------------


async def test_bucket_info_and_stat(store):
    await store.put("a", b"12345")
    await store.put("b", b"678")
    info = await store.bucket_info()
    assert info["name"] == store.bucket_name
    assert info["location"]
    stat = await store.bucket_stat()
    assert stat["object_count"] == 2
    assert stat["storage_bytes"] == 8


async def test_server_sees_the_ossmount_user_agent(store, local_server):
    await store.put("ua", b"")
    await store.head("ua")
    mine = [r for r in local_server.admin.requests() if r.get("bucket") == store.bucket_name and r.get("key") == "ua"]
    assert [r["op"] for r in mine] == ["PutObject", "HeadObject"]
    assert all(USER_AGENT in r["user_agent"] for r in mine)


async def test_statistics_count_requests_bytes_and_errors(store):
    await store.put("s", b"x" * 1000)
    await store.get_bytes("s", 0, 1000)
    with pytest.raises(types.NoSuchKey):
        await store.head("absent")
    stats = store.statistics()
    assert stats.requests == {"PutObject": 1, "GetObject": 1, "HeadObject": 1}
    assert (stats.bytes_out, stats.bytes_in, stats.retries) == (1000, 1000, 0)
    assert stats.errors == {"NoSuchKey": 1}


async def test_sigv4_and_sts_credentials_work(local_server, fresh_bucket_name):
    v4 = make_store(local_server, fresh_bucket_name, sigv4=True, region=local_server.region)
    await v4.put("v4", b"signed with v4")
    assert await v4.get_bytes("v4") == b"signed with v4"

    sts_id, sts_secret, sts_token = local_server.sts[0]
    for sigv4 in (False, True):
        sts = ObjectStore.create(endpoint=local_server.endpoint, bucket=fresh_bucket_name,
                                 credentials=Credentials(sts_id, sts_secret, sts_token), sigv4=sigv4,
                                 region=local_server.region)
        # The STS key is a different principal: the bucket belongs to the first key.
        try:
            assert (await sts.head("v4")).size == 14
        except types.AccessDenied as denied:
            assert denied.code == "AccessDenied"

    bad_token = ObjectStore.create(endpoint=local_server.endpoint, bucket=fresh_bucket_name,
                                   credentials=Credentials(sts_id, sts_secret, "wrong-token"))
    with pytest.raises(types.AccessDenied) as info:
        await bad_token.list_page("")
    assert info.value.code == "InvalidSecurityToken"


# -- errors and retries -----------------------------------------------------------------------------------


async def test_authentication_failures_keep_their_codes(local_server, fresh_bucket_name):
    unknown = make_store(local_server, fresh_bucket_name, key=("no-such-key-id", "whatever"))
    with pytest.raises(types.AccessDenied) as info:
        await unknown.list_page("")
    assert info.value.code == "InvalidAccessKeyId"

    wrong_secret = make_store(local_server, fresh_bucket_name, key=(local_server.access_key_id, "wrong"))
    with pytest.raises(types.AccessDenied) as info:
        await wrong_secret.list_page("")
    assert info.value.code == "SignatureDoesNotMatch"
    with pytest.raises(types.AccessDenied):
        await wrong_secret.head("anything")  # HEAD: the code comes from x-oss-err or the status


async def test_missing_bucket_and_foreign_bucket(two_key_server):
    missing = make_store(two_key_server, "no-such-bucket-here")
    with pytest.raises(types.NoSuchBucket) as info:
        await missing.list_page("")
    assert info.value.code == "NoSuchBucket"

    foreign = make_store(two_key_server, "other-owned")
    with pytest.raises(types.AccessDenied) as info:
        await foreign.list_page("")
    assert info.value.code == "AccessDenied"
    with pytest.raises(types.AccessDenied):
        await foreign.put("k", b"v")

    owner = make_store(two_key_server, "other-owned", key=OTHER_KEY)
    await owner.put("k", b"v")
    assert (await owner.head("k")).size == 1


async def test_unreachable_endpoint_is_reported_quickly():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(types.InvalidArgument):
        ObjectStore.create(endpoint=f"http://127.0.0.1:{port}", bucket="b", credentials=Credentials("id", "secret"))
    store = ObjectStore.create(endpoint=f"http://127.0.0.1:{port}", bucket="bucket",
                               credentials=Credentials("id", "secret"),
                               retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01))
    with pytest.raises(types.EndpointUnreachable):
        await store.head("k")
    stats = store.statistics()
    assert stats.requests == {"HeadObject": 3}
    assert stats.retries == 2


async def test_retries_through_two_503s(store, local_server):
    await store.put("r", b"retry me")
    local_server.admin.set_faults([{"op": "GetObject", "action": "error", "status": 503,
                                    "code": "ServiceUnavailable", "count": 2}])
    try:
        before = local_server.admin.counters()
        assert await store.get_bytes("r", 0, 8) == b"retry me"
        assert counters_delta(before, local_server.admin.counters()).get("GetObject") == 3
    finally:
        local_server.admin.clear_faults()
    stats = store.statistics()
    assert stats.retries == 2
    assert stats.errors == {"ServiceUnavailable": 2}


async def test_retries_after_a_reset_mid_body(store, local_server):
    data = os.urandom(2 * 1024 * 1024)
    await store.put("reset", data)
    local_server.admin.set_faults([{"op": "GetObject", "action": "reset", "after_bytes": 100_000, "count": 1}])
    try:
        buf = bytearray(len(data))
        assert await store.get_into("reset", 0, memoryview(buf)) == len(data)
    finally:
        local_server.admin.clear_faults()
    assert bytes(buf) == data
    assert store.statistics().retries == 1


async def test_gives_up_after_max_attempts_of_500(store, local_server):
    await store.put("broken", b"x")
    local_server.admin.set_faults([{"op": "HeadObject", "action": "error", "status": 500,
                                    "code": "InternalError", "count": None}])
    try:
        with pytest.raises(types.TransientError) as info:
            await store.head("broken")
    finally:
        local_server.admin.clear_faults()
    assert info.value.code == "InternalError"
    assert store.statistics().requests["HeadObject"] == 3


async def test_throttling_is_retried_until_the_deadline_not_the_attempt_count(local_server, fresh_bucket_name):
    """503/429 use up no attempt (real OSS throttles in bursts): retried past max_attempts, bounded by the deadline."""
    store = make_store(local_server, fresh_bucket_name,
                       retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=1.0))
    await store.put("busy", b"x")
    local_server.admin.set_faults([{"op": "HeadObject", "action": "error", "status": 503,
                                    "code": "QpsLimitExceeded", "count": None}])
    try:
        with pytest.raises(types.Throttled) as info:
            await store.head("busy")
    finally:
        local_server.admin.clear_faults()
    assert info.value.code == "QpsLimitExceeded"
    assert store.statistics().requests["HeadObject"] > 3
    # The deadline, not the attempt count, bounds throttling: 5 throttles pass with max_attempts=3. A long deadline
    # here, so that a loaded machine cannot turn this half into the first one.
    patient = make_store(local_server, fresh_bucket_name,
                         retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=60.0))
    local_server.admin.set_faults([{"op": "HeadObject", "action": "error", "status": 429, "code": "TooManyRequests",
                                    "count": 5}])
    try:
        assert (await patient.head("busy")).size == 1
    finally:
        local_server.admin.clear_faults()


async def test_crc_mismatch_is_detected_and_retried(store, monkeypatch):
    import ossmount.store.client as client

    monkeypatch.setattr(client, "crc64", lambda data, initial=None: 12345)
    with pytest.raises(types.ChecksumMismatch):
        await store.put("damaged", b"payload")
    assert store.statistics().requests == {"PutObject": 3}


async def test_get_bytes_of_the_rest_is_one_request(store, local_server):
    data = os.urandom(300_000)
    await store.put("rest", data)
    before = local_server.admin.counters()
    assert await store.get_bytes("rest") == data
    assert await store.get_bytes("rest", 123_456) == data[123_456:]
    assert await store.get_bytes("rest", len(data)) == b""
    assert counters_delta(before, local_server.admin.counters()) == {"GetObject": 3}
    with pytest.raises(types.NoSuchKey):
        await store.get_bytes("no-such")


async def test_get_start_is_one_get_with_the_metadata_a_head_gives(store, local_server):
    """store.get_start (an open's check and first read in one request): the bytes asked for, and the object's
    metadata with its whole size from Content-Range; None for an empty object; NoSuchKey for a missing one."""
    data = os.urandom(100_000)
    await store.put("start", data, content_type="text/plain", meta={"mode": "33188"})
    head = await store.head("start")
    before = local_server.admin.counters()
    buf = bytearray(64 * 1024)
    info, filled = await store.get_start("start", memoryview(buf))
    assert filled == len(buf) and bytes(buf) == data[:len(buf)]
    assert (info.size, info.etag, info.content_type, info.meta, info.mtime) == (
        len(data), head.etag, "text/plain", {"mode": "33188"}, head.mtime)
    whole = bytearray(1 << 20)
    info, filled = await store.get_start("start", memoryview(whole))
    assert (filled, info.size) == (len(data), len(data)) and bytes(whole[:filled]) == data
    assert counters_delta(before, local_server.admin.counters()) == {"GetObject": 2}
    await store.put("empty", b"")
    assert await store.get_start("empty", memoryview(bytearray(10))) is None
    with pytest.raises(types.NoSuchKey):
        await store.get_start("no-such", memoryview(bytearray(10)))


async def test_overlong_key_is_name_too_long(store):
    with pytest.raises(types.NameTooLong):
        await store.put("d/" + "x" * 1100, b"")


async def test_reading_an_unrestored_archive_object_is_invalid_object_state(store):
    await store.put("cold", b"frozen", headers={"x-oss-storage-class": "Archive"})
    head = await store.head("cold")
    assert head.storage_class == "Archive"
    with pytest.raises(types.InvalidObjectState) as info:
        await store.get_bytes("cold", 0, 6)
    assert info.value.code == "InvalidObjectState"
    objects, _ = await store.list_all("")
    assert [(o.key, o.storage_class) for o in objects] == [("cold", "Archive")]


# -- versions: reads and copies pinned to the version a caller opened (issue 6, A2/A3) -------------------


async def test_reads_pinned_by_etag_fail_once_the_object_is_replaced(store, oss_bucket):
    first = await store.put("pinned", b"0123456789")
    buf = bytearray(4)
    assert await store.get_into("pinned", 2, memoryview(buf), if_match=first.etag) == 4 and buf == b"2345"
    assert await store.get_bytes("pinned", if_match=first.etag) == b"0123456789"
    oss_bucket.put_object("pinned", b"replaced!!")
    for read in (store.get_into("pinned", 0, memoryview(buf), if_match=first.etag),
                 store.get_bytes("pinned", if_match=first.etag), store.get_bytes("pinned", 0, 3, if_match=first.etag)):
        with pytest.raises(types.PreconditionFailed) as info:
            await read
        assert info.value.errno == errno.EIO and info.value.status == 412
    assert await store.get_bytes("pinned") == b"replaced!!"


async def test_reads_by_version_id_keep_the_old_bytes(store, oss_bucket):
    import oss2

    oss_bucket.put_bucket_versioning(oss2.models.BucketVersioningConfig("Enabled"))
    first = await store.put("versioned", b"old bytes")
    assert first.version_id and (await store.head("versioned")).version_id == first.version_id
    second = await store.put("versioned", b"new bytes!")
    assert second.version_id != first.version_id
    assert await store.get_bytes("versioned", version_id=first.version_id) == b"old bytes"
    assert await store.get_bytes("versioned", 4, 5, version_id=first.version_id) == b"bytes"
    assert await store.get_bytes("versioned") == b"new bytes!"


async def test_part_copies_are_conditioned_on_the_source_version(store, oss_bucket, local_server):
    import oss2

    part = os.urandom(100 * 1024)
    base = await store.put("source", part)
    upload = await store.init_multipart("target")
    local_server.admin.reset_requests()
    copied = await store.upload_part_copy("source", (0, len(part) - 1), "target", upload, 1,
                                          source_if_match=base.etag)
    [record] = [r for r in local_server.admin.requests() if r["op"] == "UploadPartCopy"]
    assert record["headers"]["x-oss-copy-source-if-match"] == f'"{base.etag}"'
    assert "authorization" not in record["headers"]  # the request log never keeps credentials
    oss_bucket.put_object("source", b"someone else's")
    with pytest.raises(types.PreconditionFailed):
        await store.upload_part_copy("source", (0, 9), "target", upload, 2, source_if_match=base.etag)
    info = await store.complete_multipart("target", upload, [copied])
    assert info.size == len(part) and oss_bucket.get_object("target").read() == part
    # with versioning, the part comes from the version asked for even after a replacement
    oss_bucket.put_bucket_versioning(oss2.models.BucketVersioningConfig("Enabled"))
    old = await store.put("source", part)
    oss_bucket.put_object("source", b"newer")
    upload = await store.init_multipart("target2")
    copied = await store.upload_part_copy("source", (0, len(part) - 1), "target2", upload, 1,
                                          source_version_id=old.version_id)
    await store.complete_multipart("target2", upload, [copied])
    assert oss_bucket.get_object("target2").read() == part


async def test_bucket_outages_are_reported_once_each_way(local_server, fresh_bucket_name):

    store = make_store(local_server, fresh_bucket_name)
    events = []
    store.watch_bucket(lambda error: events.append(("missing", error.code)), lambda: events.append(("back",)))
    await store.put("k", b"v")
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    bucket.delete_object("k")
    bucket.delete_bucket()
    for call in (store.head("k"), store.list_page(""), store.put("k", b"v"), store.get_bytes("k")):
        with pytest.raises(types.NoSuchBucket) as info:
            await call
        assert info.value.errno == errno.EIO  # never ENOENT: a missing bucket is not a missing file
    assert events == [("missing", "NoSuchBucket")]
    assert store.bucket_missing
    bucket.create_bucket()
    await store.list_page("")
    await store.list_page("")
    assert events == [("missing", "NoSuchBucket"), ("back",)] and not store.bucket_missing
