"""Streaming uploads (fs/stream.py) through ContentManager against the real local server: parts go up while a
file is written, out-of-order writes, reads and truncates give the right bytes (falling back to the spool when
they need bytes already uploaded), a flush does not hold the file while it uploads, memory stays bounded."""

from __future__ import annotations

import os
import random

import oss2
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossmount.fs.content import ContentManager
from ossmount.fs.journal import Session
from ossmount.store.types import StoreError
from tests.fs.conftest import store_for
from tests.fs.model import Append, Write, run_against_model

KiB = 1024
MiB = 1024 * KiB
PART = 128 * KiB  # OSS's smallest part is 100 KiB


def headers(content_type: str = "application/octet-stream", **meta: str):
    return lambda: (content_type, dict(meta))


def manager_for(store, nursery, tmp_path, *, session: bool = False, **overrides) -> ContentManager:
    """With `session`, a durable spool session under tmp_path/root (journal records), else an anonymous spool."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(exist_ok=True)
    settings_ = dict(spool_dir=str(spool_dir), multipart_size=PART, parallel_count=3, nursery=nursery,
                     retry_delays=(0.05, 0.2))
    if session:
        settings_["session"] = Session.create(str(tmp_path / "root"), "bucket", {})
    settings_.update(overrides)
    return ContentManager(store, **settings_)


def records(manager) -> list[dict]:
    return [record for _, record in manager._session.entries() if record]


def counts(admin, *names: str) -> dict[str, int]:
    counters = admin.counters()
    return {name: counters.get(name, 0) for name in names}


async def wait_until(predicate, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def new_file(manager, key: str):
    content = await manager.open(key, size=0, etag="", new=True, headers=headers())
    await content.flush()  # as create() does: the 0-byte object, then the writes stream
    return content


async def test_parts_go_up_while_written_and_part_one_stays_patchable(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "video.mp4")
    data = bytearray(random.Random(1).randbytes(10 * PART + 777))
    for offset in range(0, len(data), 64 * KiB):
        await content.write(offset, data[offset:offset + 64 * KiB])
    # Parts 1-10 go up while the file is open (part 1 with part 2: the commit need not send it), the last is filling.
    await wait_until(lambda: counts(admin, "UploadPart")["UploadPart"] >= 10)
    # The classic muxer pattern: the header at offset 0 is patched after the body. Part 1 is still in memory.
    await content.write(4, b"PATCHED")
    data[4:11] = b"PATCHED"
    assert counts(admin, "CompleteMultipartUpload", "PutObject") == {"CompleteMultipartUpload": 0, "PutObject": 1}
    await content.flush()
    # The patched part 1 went up again (replacing the first upload of it), with the last part: no download.
    assert counts(admin, "UploadPart", "CompleteMultipartUpload", "InitiateMultipartUpload", "GetObject") == {
        "UploadPart": 12, "CompleteMultipartUpload": 1, "InitiateMultipartUpload": 1, "GetObject": 0}
    assert oss_bucket.get_object("video.mp4").read() == bytes(data)
    assert os.listdir(tmp_path / "spool") == []
    assert manager.statistics().write_buffered_bytes == 0
    await manager.release(content)


async def test_small_file_is_one_put_at_close(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "small.txt")
    admin.reset_counters()
    for offset in range(0, 100_000, 1000):
        await content.write(offset, b"x" * 1000)
    assert counts(admin, "PutObject", "UploadPart", "InitiateMultipartUpload") == {
        "PutObject": 0, "UploadPart": 0, "InitiateMultipartUpload": 0}
    await content.flush()
    assert counts(admin, "PutObject", "UploadPart", "InitiateMultipartUpload") == {
        "PutObject": 1, "UploadPart": 0, "InitiateMultipartUpload": 0}
    assert oss_bucket.get_object("small.txt").read() == b"x" * 100_000
    await manager.release(content)


async def test_a_write_into_an_uploaded_part_publishes_then_goes_on_from_the_spool(store, oss_bucket, admin,
                                                                                   nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "log.bin")
    data = bytearray(random.Random(2).randbytes(6 * PART))
    await content.write(0, bytes(data))
    await wait_until(lambda: counts(admin, "UploadPart")["UploadPart"] >= 4)
    await content.write(2 * PART + 5, b"back")  # part 3 is on OSS already: not readable before it is complete
    data[2 * PART + 5:2 * PART + 9] = b"back"
    await content.write(len(data), b"tail")
    data += b"tail"
    assert bytes(await content.read(2 * PART, 16)) == bytes(data[2 * PART:2 * PART + 16])
    await content.flush()
    assert oss_bucket.get_object("log.bin").read() == bytes(data)
    # published once (the version the spool builds on), then the final upload copied its unchanged parts
    assert counts(admin, "CompleteMultipartUpload")["CompleteMultipartUpload"] == 2
    assert counts(admin, "UploadPartCopy")["UploadPartCopy"] >= 3
    await manager.release(content)


async def test_reading_back_a_streamed_file_before_close(store, oss_bucket, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "check.bin")
    data = random.Random(3).randbytes(5 * PART + 3)
    await content.write(0, data)
    # the window, part 1 and parts still in flight answer from memory; the rest after a publish, from OSS
    assert bytes(await content.read(len(data) - 100, 200)) == data[-100:]
    assert bytes(await content.read(0, 1000)) == data[:1000]
    assert bytes(await content.read(2 * PART - 10, 20)) == data[2 * PART - 10:2 * PART + 10]
    await content.flush()
    assert oss_bucket.get_object("check.bin").read() == data
    await manager.release(content)


async def test_holes_are_zero_parts_without_memory_or_disk(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path, write_budget=4 * PART)
    content = await new_file(manager, "sparse.img")
    expected = bytearray()
    for index in range(20):  # 1 KiB of data every 3 parts: a file of 60 parts, 20 KiB of it written
        offset = index * 3 * PART
        block = random.Random(index).randbytes(KiB)
        await content.write(offset, block)
        expected.extend(bytes(offset - len(expected)))
        expected.extend(block)
        assert manager.statistics().write_buffered_bytes <= 3 * KiB
    await content.truncate(len(expected) + 5 * PART)  # grown past the last write: more zeros
    expected.extend(bytes(5 * PART))
    assert os.listdir(tmp_path / "spool") == []
    await content.flush()
    head = oss_bucket.head_object("sparse.img")
    assert head.content_length == len(expected)
    assert oss_bucket.get_object("sparse.img").read() == bytes(expected)
    assert counts(admin, "UploadPart")["UploadPart"] == len(expected) // PART + 1
    await manager.release(content)


async def test_a_spent_write_budget_spills_parts_to_the_spool(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path, write_budget=PART, parallel_count=1)
    content = await new_file(manager, "big.bin")
    data = random.Random(4).randbytes(8 * PART + 5)
    for offset in range(0, len(data), 100 * KiB):
        await content.write(offset, data[offset:offset + 100 * KiB])
        assert manager.statistics().write_buffered_bytes <= PART
    await content.flush()
    assert oss_bucket.get_object("big.bin").read() == data
    await manager.release(content)


async def test_truncates_while_streaming(store, oss_bucket, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "t.bin")
    model = bytearray(random.Random(5).randbytes(4 * PART + 100))
    await content.write(0, bytes(model))
    await content.truncate(4 * PART + 50)  # inside the window
    del model[4 * PART + 50:]
    await content.truncate(PART // 2)  # inside part 1, held in memory
    del model[PART // 2:]
    await content.write(len(model) + 1000, b"after a hole")
    model.extend(bytes(1000))
    model += b"after a hole"
    await content.truncate(3 * PART)  # grow
    model.extend(bytes(3 * PART - len(model)))
    await content.write(3 * PART, b"end")
    model += b"end"
    await content.flush()
    assert oss_bucket.get_object("t.bin").read() == bytes(model)
    await manager.release(content)


async def test_a_header_patched_while_part_one_is_uploading_waits_for_it(local_server, fresh_bucket_name, oss_bucket,
                                                                        admin, nursery, tmp_path):
    """Part 1 goes up while the file is open; a write into it while that upload is in flight waits for the upload,
    then makes part 1 go up again at the commit: no publish (no second version, nothing downloaded)."""
    # The server holds both parts until the test releases them: with the store's 30 s read timeout, a slow, loaded
    # machine let the first held part time out and go up again (5 UploadParts). A hold is no fault here.
    store = store_for(local_server, fresh_bucket_name, timeout=300.0)
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "movie.mov")
    data = bytearray(random.Random(8).randbytes(2 * PART + 100))
    admin.set_faults([{"op": "UploadPart", "action": "hold", "delay_ms": 60_000, "count": 2}])
    patched = trio.Event()

    async def patch() -> None:
        await content.write(0, b"moov")
        patched.set()

    try:
        await content.write(0, bytes(data))  # past part 2: parts 1 and 2 go up, and the server holds both
        await wait_until(lambda: admin.faults()["rules"][0]["fired"] == 2 and content._stream.parts[1].uploading)
        async with trio.open_nursery() as race:
            race.start_soon(patch)
            await trio.sleep(0.2)
            assert not patched.is_set(), "the write into part 1 must wait for its upload"
            admin.release_held()
        data[0:4] = b"moov"
    finally:
        admin.clear_faults()
    await content.flush()
    assert counts(admin, "UploadPart", "CompleteMultipartUpload", "GetObject", "PutObject") == {
        "UploadPart": 4, "CompleteMultipartUpload": 1, "GetObject": 0, "PutObject": 1}
    assert oss_bucket.get_object("movie.mov").read() == bytes(data)
    await manager.release(content)


async def test_flush_does_not_hold_the_file_while_it_uploads(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "busy.bin")
    data = random.Random(6).randbytes(3 * PART + 1)
    await content.write(0, data)
    release = trio.Event()
    admin.set_faults([{"op": "CompleteMultipartUpload", "action": "hold", "delay_ms": 60_000, "count": 1}])
    flushed = trio.Event()

    async def flush() -> None:
        await content.flush()
        flushed.set()

    async with trio.open_nursery() as race:
        race.start_soon(flush)
        await wait_until(lambda: manager.dirty_files() and manager.dirty_files()[0].state == "uploading")
        # While the upload is held up by the server: writes, reads and the size answer at once.
        with trio.fail_after(10):
            await content.write(len(data), b"more")
            assert content.size == len(data) + 4
            assert bytes(await content.read(len(data) - 3, 7)) == data[-3:] + b"more"
        assert not flushed.is_set()
        admin.clear_faults()
        release.set()
    # clear_faults released the held request: the first flush completes now
    assert oss_bucket.get_object("busy.bin").read() == data
    await content.flush()
    assert oss_bucket.get_object("busy.bin").read() == data + b"more"
    await manager.release(content)


async def test_a_failed_part_is_kept_and_retried_in_the_background(store, oss_bucket, admin, nursery, tmp_path):
    # one part in flight at a time: the two parts that go up before the faults are parts 2 and 3
    manager = manager_for(store, nursery, tmp_path, session=True, parallel_count=1)
    content = await new_file(manager, "flaky.bin")
    admin.set_faults([{"op": "UploadPart", "action": "error", "status": 500, "code": "InternalError",
                       "skip": 2, "count": None}])
    data = random.Random(7).randbytes(6 * PART + 9)
    await content.write(0, data)  # two parts go up, the others fail: their bytes go to the spool
    with pytest.raises(StoreError):
        await content.flush()
    assert content.dirty
    [dirty] = manager.dirty_files()
    assert dirty.state == "failed" and dirty.spool_path is not None and os.path.getsize(dirty.spool_path) > 0
    [record] = records(manager)  # what a crash now would leave for the next mount
    assert record["state"] == "failed" and record["key"] == "flaky.bin" and record["size"] == len(data)
    assert record["upload"]["id"] == dirty.upload_id and len(record["upload"]["parts"]) == 2
    # What was not uploaded is still readable (memory and spool), and part 1, uploaded but kept in memory: parts 3 on
    # and part 1; part 2 only once the upload is complete.
    assert bytes(await content.read(0, PART)) == data[:PART]
    assert bytes(await content.read(3 * PART, len(data))) == data[3 * PART:]
    await manager.release(content)
    admin.clear_faults()
    await wait_until(lambda: not content.dirty)  # the background retry, without another flush
    assert oss_bucket.get_object("flaky.bin").read() == data
    assert list(oss2.MultipartUploadIterator(oss_bucket)) == []
    assert manager.get("flaky.bin") is None
    assert records(manager) == [] and sorted(os.listdir(manager._session.path)) == ["lock", "session.json"]


async def test_unlinked_while_streaming_aborts_its_upload_and_keeps_its_local_bytes(store, oss_bucket, admin,
                                                                                    nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "tmpfile")
    await content.write(0, random.Random(8).randbytes(4 * PART))
    await wait_until(lambda: counts(admin, "UploadPart")["UploadPart"] >= 2)
    admin.set_faults([{"op": "AbortMultipartUpload", "action": "error", "status": 500, "code": "InternalError",
                       "count": 3}])
    oss_bucket.delete_object("tmpfile")
    manager.unlinked("tmpfile")
    await content.write(4 * PART, b"still works")
    assert bytes(await content.read(4 * PART, 20)) == b"still works"
    assert await content.flush() is None
    # the abort failed three times and was retried in the background until it went through
    await wait_until(lambda: not list(oss2.MultipartUploadIterator(oss_bucket)))
    assert counts(admin, "AbortMultipartUpload")["AbortMultipartUpload"] >= 4
    assert not oss_bucket.object_exists("tmpfile")
    await manager.release(content)


async def test_rename_of_a_streaming_file_lands_its_data_first(store, oss_bucket, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await new_file(manager, "before")
    data = random.Random(9).randbytes(3 * PART)
    await content.write(0, data)
    await manager.settle("before", publish=True)  # what Filesystem.rename does first
    assert oss_bucket.get_object("before").read() == data
    copied = oss_bucket.copy_object(oss_bucket.bucket_name, "before", "after")
    oss_bucket.delete_object("before")
    manager.rename("before", "after", copied.etag.strip('"'))
    await content.write(len(data), b"+")
    await content.flush()
    assert oss_bucket.get_object("after").read() == data + b"+"
    assert not oss_bucket.object_exists("before")
    await manager.release(content)


operations = st.lists(st.one_of(
    st.builds(Append, st.integers(1, 300 * KiB).map(os.urandom)),
    st.builds(Append, st.integers(1, 300 * KiB).map(os.urandom)),
    st.builds(Write, st.integers(0, 1200 * KiB), st.integers(1, 100 * KiB).map(os.urandom)),
    st.tuples(st.just("truncate"), st.integers(0, 1200 * KiB)),
    st.tuples(st.just("read"), st.integers(0, 1200 * KiB), st.integers(0, 300 * KiB)),
    st.just("flush"),
), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=operations)
async def test_any_writes_into_a_streamed_file_match_a_bytearray(store, oss_bucket, tmp_path, operations):
    key = f"model-{os.urandom(6).hex()}"
    model = bytearray()
    async with trio.open_nursery() as nursery:
        manager = manager_for(store, nursery, tmp_path, parallel_count=2, write_budget=6 * PART)
        content = await new_file(manager, key)
        await run_against_model(content, model, operations, oss_bucket, key)
        await manager.release(content)
        assert manager.statistics().write_buffered_bytes == 0
        nursery.cancel_scope.cancel()
