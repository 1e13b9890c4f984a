"""ContentManager/FileContent against the real local OSS server: every write pattern checked against a
local reference, uploads observed through the server's request counters, failures through its fault
injector."""

from __future__ import annotations

import errno
import os
import random
import resource
import signal
import tracemalloc

import oss2
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossmount.fs.content import ContentManager
from ossmount.fs.errors import FsError
from ossmount.fs.reader import ReadaheadConfig
from ossmount.store.types import InvalidObjectState, StoreError
from tests.fs.model import Write, run_against_model

KiB = 1024
MiB = 1024 * KiB


def headers(content_type: str = "text/plain", **meta: str):
    return lambda: (content_type, dict(meta))


def etag_of(bucket, key: str) -> str:
    """The ETag a content is opened on (reads and copies are pinned to it)."""
    return bucket.head_object(key).etag


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def manager_for(store, nursery, tmp_path, **overrides) -> ContentManager:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(exist_ok=True)
    settings_ = dict(spool_dir=str(spool_dir), multipart_size=1 * MiB, parallel_count=3, nursery=nursery)
    settings_.update(overrides)
    return ContentManager(store, **settings_)


def ops_since_reset(admin, *names: str) -> dict[str, int]:
    counters = admin.counters()
    return {name: counters.get(name, 0) for name in names}


async def read_all(content, block: int = 128 * KiB) -> bytes:
    pieces, offset = [], 0
    while True:
        piece = await content.read(offset, block)
        if not piece:
            return b"".join(pieces)
        pieces.append(bytes(piece))
        offset += len(piece)


async def buffers_freed(manager, timeout: float = 30.0) -> None:
    """Until every prefetch buffer is given back: a GET whose bytes were all delivered through `progress`
    may still be finishing in its worker thread when the last reader releases."""
    with trio.fail_after(timeout):
        while manager.statistics().prefetch_buffered_bytes:
            await trio.sleep(0.01)


# -- reads of clean objects -------------------------------------------------------------------------


async def test_sequential_read_is_prefetched_in_few_large_gets(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(20 * MiB + 12345)
    oss_bucket.put_object("big.bin", data)
    admin.reset_counters()
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("big.bin", size=len(data), etag=etag_of(oss_bucket, "big.bin"), headers=headers())
    assert await read_all(content) == data
    gets = ops_since_reset(admin, "GetObject")["GetObject"]
    reads = len(data) // (128 * KiB) + 1
    assert gets <= 12, f"{gets} GETs for {reads} reads: the window did not grow"
    stats = manager.statistics()
    assert stats.prefetch_hits > stats.prefetch_misses
    assert stats.bytes_read == len(data)
    await manager.release(content)
    await buffers_freed(manager)
    assert os.listdir(tmp_path / "spool") == []


async def test_reads_correct_at_every_offset_and_size(store, oss_bucket, nursery, tmp_path):
    data = random_bytes(3 * MiB + 17, seed=1)
    oss_bucket.put_object("obj", data)
    small_windows = ReadaheadConfig(initial_window=64 * KiB, max_window=512 * KiB, chunk_size=200 * KiB,
                                    keep_behind=32 * KiB, max_streams=2)
    manager = manager_for(store, nursery, tmp_path, readahead=small_windows)
    content = await manager.open("obj", size=len(data), etag=etag_of(oss_bucket, "obj"), headers=headers())
    rng = random.Random(2)
    for _ in range(150):
        offset = rng.choice([rng.randrange(len(data) + 100), len(data) - rng.randrange(1, 300)])
        length = rng.choice([1, 4096, 128 * KiB, rng.randrange(1, 700 * KiB)])
        assert bytes(await content.read(offset, length)) == data[offset : offset + length]
    # interleaved sequential streams (two readers of one file) stay correct too
    cursors = [0, len(data) // 2]
    for step in range(40):
        which = step % 2
        piece = await content.read(cursors[which], 64 * KiB)
        assert bytes(piece) == data[cursors[which] : cursors[which] + 64 * KiB]
        cursors[which] += len(piece)
    assert await content.read(len(data), 10) == b""
    assert bytes(await content.read(len(data) - 5, 100)) == data[-5:]
    await manager.release(content)


async def test_prefetch_serves_memoryviews_and_stays_within_budget(store, oss_bucket, nursery, tmp_path):
    data = random_bytes(6 * MiB, seed=3)
    oss_bucket.put_object("obj", data)
    manager = manager_for(store, nursery, tmp_path, prefetch_limit=2 * MiB)
    content = await manager.open("obj", size=len(data), etag=etag_of(oss_bucket, "obj"), headers=headers())
    offset, peak = 0, 0
    while offset < len(data):
        piece = await content.read(offset, 128 * KiB)
        assert isinstance(piece, memoryview)  # a slice of a prefetch buffer: no copy per read
        assert bytes(piece) == data[offset : offset + len(piece)]
        offset += len(piece)
        peak = max(peak, manager.statistics().prefetch_buffered_bytes)
    assert peak <= 2 * MiB + 128 * KiB  # the budget, plus at most the bytes a caller is waiting for
    await manager.release(content)


async def test_unrestored_archive_object_raises_invalid_object_state(store, oss_bucket, nursery, tmp_path):
    oss_bucket.put_object("cold.bin", b"frozen", headers={"x-oss-storage-class": "Archive"})
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("cold.bin", size=6, etag=etag_of(oss_bucket, "cold.bin"), headers=headers())
    with pytest.raises(InvalidObjectState):
        await content.read(0, 6)
    with pytest.raises(InvalidObjectState):  # a failed stream is not cached: the next read asks again
        await content.read(0, 6)
    await manager.release(content)


# -- writes ---------------------------------------------------------------------------------------


async def test_small_file_is_one_put_only_on_flush(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("notes.txt", size=0, etag="", new=True,
                                 headers=headers("text/plain", mode="33188", uid="0"))
    await content.write(0, b"hello ")
    await content.write(6, b"world")
    assert bytes(await content.read(0, 100)) == b"hello world"
    assert ops_since_reset(admin, "PutObject", "UploadPart") == {"PutObject": 0, "UploadPart": 0}
    assert not oss_bucket.object_exists("notes.txt")
    info = await content.flush()
    assert info is not None and info.size == 11
    assert not content.dirty
    assert await content.flush() is None  # clean: nothing to do
    assert ops_since_reset(admin, "PutObject", "InitiateMultipartUpload") == {
        "PutObject": 1, "InitiateMultipartUpload": 0}
    result = oss_bucket.get_object("notes.txt")
    assert result.read() == b"hello world"
    assert result.headers["Content-Type"] == "text/plain"
    assert result.headers["x-oss-meta-mode"] == "33188"
    await manager.release(content)
    assert manager.get("notes.txt") is None


async def test_new_empty_file_uploads_a_zero_byte_object(store, oss_bucket, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("empty", size=0, etag="", new=True, headers=headers())
    assert content.dirty
    await content.flush()
    assert oss_bucket.get_object("empty").read() == b""
    await manager.release(content)


async def test_large_file_streams_its_parts_while_written(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(5 * MiB + 512 * KiB, seed=4)
    manager = manager_for(store, nursery, tmp_path, multipart_size=1 * MiB, parallel_count=3)
    content = await manager.open("big/file.bin", size=0, etag="", new=True,
                                 headers=headers("application/x-test", mode="33188"))
    for offset in range(0, len(data), 128 * KiB):
        await content.write(offset, data[offset : offset + 128 * KiB])
    # Parts 1-5 went up while the file was written (part 1 with part 2, its bytes kept for a header patch); the last
    # part is still being filled.
    with trio.fail_after(30):
        while ops_since_reset(admin, "UploadPart")["UploadPart"] < 5:
            await trio.sleep(0.01)
    assert ops_since_reset(admin, "PutObject", "UploadPart", "CompleteMultipartUpload") == {
        "PutObject": 0, "UploadPart": 5, "CompleteMultipartUpload": 0}
    assert os.listdir(tmp_path / "spool") == []  # nothing of it touched the disk
    await content.flush()
    assert ops_since_reset(
        admin, "InitiateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject", "AbortMultipartUpload"
    ) == {"InitiateMultipartUpload": 1, "UploadPart": 6, "CompleteMultipartUpload": 1, "PutObject": 0,
          "AbortMultipartUpload": 0}
    assert oss_bucket.get_object("big/file.bin").read() == data
    meta = oss_bucket.head_object("big/file.bin").headers
    assert meta["Content-Type"] == "application/x-test"
    assert meta["x-oss-meta-mode"] == "33188"
    stats = manager.statistics()
    assert (stats.parts_uploaded, stats.multipart_uploads) == (6, 1)
    await manager.release(content)


async def test_large_files_never_sit_in_memory(store, oss_bucket, nursery, tmp_path):
    """Writing, uploading and reading back 48 MiB keeps Python allocations far below the file size."""
    block = random_bytes(1 * MiB, seed=11)
    size = 48 * MiB
    manager = manager_for(store, nursery, tmp_path, multipart_size=4 * MiB, parallel_count=2,
                          prefetch_limit=8 * MiB)
    content = await manager.open("huge.bin", size=0, etag="", new=True, headers=headers())
    tracemalloc.start()
    try:
        for offset in range(0, size, len(block)):
            await content.write(offset, block)
        await content.flush()
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        await manager.release(content)
        reader = await manager.open("huge.bin", size=size, etag=etag_of(oss_bucket, "huge.bin"), headers=headers())
        offset = 0
        while offset < size:
            piece = await reader.read(offset, 1 * MiB)
            assert piece[:16] == block[:16]
            offset += len(piece)
            del piece  # as pyfuse3 does once the reply is in the kernel; a held view pins its buffer
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    await manager.release(reader)
    assert write_peak < 8 * MiB, f"upload peaked at {write_peak / MiB:.1f} MiB"
    # The 8 MiB budget, plus (today) urllib3's readinto, which reads a temporary copy of each GET.
    assert read_peak < 20 * MiB, f"prefetch peaked at {read_peak / MiB:.1f} MiB"
    assert oss_bucket.head_object("huge.bin").content_length == size


async def test_write_into_existing_object_fetches_only_at_flush(store, oss_bucket, admin, nursery, tmp_path):
    original = random_bytes(3 * MiB, seed=5)
    oss_bucket.put_object("existing", original)
    admin.reset_counters()
    manager = manager_for(store, nursery, tmp_path, multipart_size=8 * MiB)
    content = await manager.open("existing", size=len(original), etag=etag_of(oss_bucket, "existing"), headers=headers())
    await content.write(1 * MiB + 3, b"MIDDLE")
    await content.write(len(original), b"APPENDED")  # append
    assert ops_since_reset(admin, "GetObject")["GetObject"] == 0  # writes download nothing
    expected = bytearray(original)
    expected[1 * MiB + 3 : 1 * MiB + 9] = b"MIDDLE"
    expected += b"APPENDED"
    # reading around the write fetches just that neighbourhood into the spool
    assert bytes(await content.read(1 * MiB, 16)) == bytes(expected[1 * MiB : 1 * MiB + 16])
    await content.flush()
    assert oss_bucket.get_object("existing").read() == bytes(expected)
    await manager.release(content)


async def test_unchanged_parts_are_copied_on_the_server(store, oss_bucket, admin, nursery, tmp_path):
    original = random_bytes(5 * MiB, seed=9)
    oss_bucket.put_object("log.bin", original)
    admin.reset_counters()
    manager = manager_for(store, nursery, tmp_path, multipart_size=1 * MiB)
    content = await manager.open("log.bin", size=len(original), etag=etag_of(oss_bucket, "log.bin"), headers=headers())
    await content.write(len(original), b"appended line\n")
    await content.write(2 * MiB + 10, b"patch")
    await content.flush()
    # Parts 1, 2, 4, 5 are untouched: copied. Part 3 holds the patch: downloaded and uploaded, as is the
    # 14-byte part 6. Nothing else of the 5 MiB object travels.
    assert ops_since_reset(admin, "UploadPartCopy", "UploadPart", "GetObject", "CompleteMultipartUpload") == {
        "UploadPartCopy": 4, "UploadPart": 2, "GetObject": 1, "CompleteMultipartUpload": 1}
    expected = bytearray(original + b"appended line\n")
    expected[2 * MiB + 10 : 2 * MiB + 15] = b"patch"
    assert oss_bucket.get_object("log.bin").read() == bytes(expected)
    # The copied ranges were never downloaded; reading them now fetches from the new object.
    assert bytes(await content.read(MiB - 4, 8)) == bytes(expected[MiB - 4 : MiB + 4])
    await content.write(0, b"again")
    await content.flush()
    expected[:5] = b"again"
    assert oss_bucket.get_object("log.bin").read() == bytes(expected)
    assert manager.statistics().parts_copied == 4 + 4
    await manager.release(content)


async def test_truncate_shrink_grow_and_sparse_writes(store, oss_bucket, nursery, tmp_path):
    original = random_bytes(2 * MiB, seed=6)
    oss_bucket.put_object("f", original)
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("f", size=len(original), etag=etag_of(oss_bucket, "f"), headers=headers())
    await content.truncate(1000)  # shrink
    await content.truncate(5000)  # grow: the dropped bytes must come back as zeros, not old data
    await content.write(3 * MiB, b"tail")  # sparse: a hole from 5000 to 3 MiB
    expected = original[:1000] + b"\0" * 4000 + b"\0" * (3 * MiB - 5000) + b"tail"
    assert content.size == len(expected)
    assert bytes(await content.read(0, 6000)) == expected[:6000]
    await content.flush()
    assert oss_bucket.get_object("f").read() == expected
    await manager.release(content)


async def test_open_with_truncate_discards_old_bytes(store, oss_bucket, nursery, tmp_path):
    oss_bucket.put_object("t", b"old contents")
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("t", size=12, etag=etag_of(oss_bucket, "t"), truncate=True, headers=headers())
    assert content.size == 0 and content.dirty
    await content.write(0, b"new")
    await content.flush()
    assert oss_bucket.get_object("t").read() == b"new"
    await manager.release(content)


operation = st.one_of(
    st.builds(Write, st.integers(0, 900 * KiB), st.integers(1, 300 * KiB).map(lambda n: os.urandom(n))),
    st.tuples(st.just("truncate"), st.integers(0, 900 * KiB)),
    st.tuples(st.just("read"), st.integers(0, 900 * KiB), st.integers(0, 400 * KiB)),
    st.just("flush"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial_size=st.integers(0, 700 * KiB), operations=st.lists(operation, max_size=8))
async def test_any_sequence_of_operations_matches_a_bytearray(store, oss_bucket, tmp_path, initial_size, operations):
    key = f"model-{os.urandom(6).hex()}"
    model = bytearray(os.urandom(initial_size))
    oss_bucket.put_object(key, bytes(model))
    async with trio.open_nursery() as nursery:
        manager = manager_for(store, nursery, tmp_path, multipart_size=256 * KiB, parallel_count=2)
        content = await manager.open(key, size=initial_size, etag=etag_of(oss_bucket, key), headers=headers())
        await run_against_model(content, model, operations, oss_bucket, key)
        await manager.release(content)
        nursery.cancel_scope.cancel()


# -- sharing, rename, unlink ----------------------------------------------------------------------


async def test_two_opens_share_one_content(store, oss_bucket, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    first = await manager.open("shared", size=0, etag="", new=True, headers=headers())
    second = await manager.open("shared", size=0, etag="", headers=headers())
    assert first is second and manager.get("shared") is first
    await first.write(0, b"abc")
    await manager.release(first)
    assert manager.get("shared") is second  # still open once
    await second.flush()
    await manager.release(second)
    assert manager.get("shared") is None
    assert oss_bucket.get_object("shared").read() == b"abc"


async def test_open_file_follows_rename(store, oss_bucket, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("before", size=0, etag="", new=True, headers=headers())
    await content.write(0, b"renamed while open")
    manager.rename("before", "after")
    assert manager.get("before") is None and manager.get("after") is content
    await content.flush()
    assert oss_bucket.get_object("after").read() == b"renamed while open"
    assert not oss_bucket.object_exists("before")
    await manager.release(content)


async def test_rename_during_an_upload_uploads_again_under_the_new_key(store, oss_bucket, admin, nursery, tmp_path):
    original = random_bytes(3 * MiB, seed=10)
    oss_bucket.put_object("moving", original)
    manager = manager_for(store, nursery, tmp_path, multipart_size=1 * MiB)
    content = await manager.open("moving", size=len(original), etag=etag_of(oss_bucket, "moving"), headers=headers())
    await content.write(len(original), b"tail")
    await content.write(MiB + 5, b"middle")  # part 2 differs from the object the rename copies
    admin.set_faults([{"op": "CompleteMultipartUpload", "action": "delay", "delay_ms": 300, "probability": 1.0}])
    async with trio.open_nursery() as race:
        race.start_soon(content.flush)
        await trio.sleep(0.1)  # parts are copied/uploaded; Complete is held up by the server
        assert content.dirty
        # what fs-core does for a rename: copy the object, delete the old key, move the open content
        copied = oss_bucket.copy_object(oss_bucket.bucket_name, "moving", "moved")
        oss_bucket.delete_object("moving")
        manager.rename("moving", "moved", copied.etag)
    admin.clear_faults()
    assert content.dirty  # the finished upload went to the old key: not the one we now have
    await content.flush()
    assert not content.dirty
    expected = bytearray(original + b"tail")
    expected[MiB + 5 : MiB + 11] = b"middle"
    assert oss_bucket.get_object("moved").read() == bytes(expected)
    await manager.release(content)


async def test_unlinked_open_file_is_not_uploaded_again(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("gone", size=0, etag="", new=True, headers=headers())
    await content.write(0, b"scratch")
    manager.unlinked("gone")
    assert bytes(await content.read(0, 7)) == b"scratch"  # open handles keep working
    assert await content.flush() is None
    await manager.release(content)
    assert ops_since_reset(admin, "PutObject")["PutObject"] == 0
    assert not oss_bucket.object_exists("gone")


async def test_write_racing_flush_is_never_lost(store, oss_bucket, nursery, tmp_path):
    data = random_bytes(3 * MiB, seed=7)
    manager = manager_for(store, nursery, tmp_path, multipart_size=1 * MiB)
    content = await manager.open("race", size=0, etag="", new=True, headers=headers())
    await content.write(0, data)
    async with trio.open_nursery() as race:
        race.start_soon(content.flush)
        await trio.sleep(0)  # let the flush take the lock and start uploading
        race.start_soon(content.write, len(data), b"late")
    uploaded = oss_bucket.get_object("race").read()
    assert uploaded in (data, data + b"late")  # one consistent snapshot, never a mix
    assert content.dirty == (uploaded == data)
    await content.flush()
    assert oss_bucket.get_object("race").read() == data + b"late"
    await manager.release(content)


# -- failures -------------------------------------------------------------------------------------


async def test_failed_put_keeps_dirty_data_for_a_later_flush(store, oss_bucket, admin, nursery, tmp_path):
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("precious", size=0, etag="", new=True, headers=headers())
    await content.write(0, b"do not lose me")
    admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError",
                       "probability": 1.0, "count": None}])
    with pytest.raises(StoreError):
        await content.flush()
    assert content.dirty
    await manager.release(content)  # the last close: the dirty content must survive it
    assert manager.get("precious") is content
    assert manager.statistics().upload_failures == 1
    admin.clear_faults()
    reopened = await manager.open("precious", size=0, etag="", headers=headers())
    assert reopened is content
    await reopened.flush()
    assert oss_bucket.get_object("precious").read() == b"do not lose me"
    await manager.release(reopened)
    assert manager.get("precious") is None


async def test_failed_streamed_upload_is_kept_open_and_lands_later(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(2 * MiB + 5, seed=8)
    manager = manager_for(store, nursery, tmp_path, multipart_size=1 * MiB)
    content = await manager.open("parts", size=0, etag="", new=True, headers=headers())
    admin.set_faults([{"op": "UploadPart", "action": "error", "status": 500, "code": "InternalError",
                       "probability": 1.0, "count": None}])
    await content.write(0, data)
    with pytest.raises(StoreError):
        await content.flush()
    # The upload stays open (what it holds is part of the kept data); every byte not in it is in the spool.
    assert ops_since_reset(admin, "AbortMultipartUpload", "CompleteMultipartUpload") == {
        "AbortMultipartUpload": 0, "CompleteMultipartUpload": 0}
    [dirty] = manager.dirty_files()
    assert dirty.state == "failed" and dirty.key == "parts" and dirty.attempts == 1
    await manager.release(content)
    assert manager.get("parts") is content
    admin.clear_faults()
    await manager.flush_all()  # what unmount does
    assert not content.dirty
    assert oss_bucket.get_object("parts").read() == data
    assert list(oss2.MultipartUploadIterator(oss_bucket)) == []
    assert manager.statistics().write_buffered_bytes == 0
    manager.close()


async def test_failed_spooled_multipart_is_aborted_and_flush_all_retries(store, oss_bucket, admin, nursery,
                                                                          tmp_path):
    original = random_bytes(2 * MiB + 5, seed=8)
    oss_bucket.put_object("parts", original)
    manager = manager_for(store, nursery, tmp_path, multipart_size=1 * MiB)
    content = await manager.open("parts", size=len(original), etag=etag_of(oss_bucket, "parts"), headers=headers())
    await content.write(5, b"patch")  # a write into an existing object: spooled, uploaded at flush
    admin.set_faults([{"op": "UploadPart", "action": "error", "status": 500, "code": "InternalError",
                       "probability": 1.0, "count": None}])
    with pytest.raises(StoreError):
        await content.flush()
    assert ops_since_reset(admin, "AbortMultipartUpload", "CompleteMultipartUpload") == {
        "AbortMultipartUpload": 1, "CompleteMultipartUpload": 0}
    assert list(oss2.MultipartUploadIterator(oss_bucket)) == []
    await manager.release(content)
    admin.clear_faults()
    await manager.flush_all()  # what unmount does
    assert not content.dirty
    assert oss_bucket.get_object("parts").read() == original[:5] + b"patch" + original[10:]
    manager.close()


async def test_a_failing_spool_is_the_writers_errno_not_eio(store, oss_bucket, nursery, tmp_path):
    """A spool write past RLIMIT_FSIZE fails with EFBIG (as ENOSPC would with ENOSPC), data before it kept."""
    oss_bucket.put_object("limited", b"kept")
    manager = manager_for(store, nursery, tmp_path)
    content = await manager.open("limited", size=4, etag=etag_of(oss_bucket, "limited"), headers=headers())
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 * MiB, hard))
    try:
        with pytest.raises(FsError) as refused:
            await content.write(2 * MiB, b"too far")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert refused.value.errno == errno.EFBIG
    assert content.size == 4 and bytes(await content.read(0, 10)) == b"kept"
    await content.flush()
    await manager.release(content)


async def test_flush_all_logs_failures_and_keeps_going(store, oss_bucket, admin, nursery, tmp_path, caplog):
    manager = manager_for(store, nursery, tmp_path)
    doomed = await manager.open("doomed", size=0, etag="", new=True, headers=headers())
    fine = await manager.open("fine.txt", size=0, etag="", new=True, headers=headers())
    await doomed.write(0, b"x")
    await fine.write(0, b"y")
    admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError",
                       "probability": 1.0, "count": None}])
    await manager.flush_all()  # never raises: unmount must go on
    admin.clear_faults()
    assert doomed.dirty and fine.dirty
    assert any("doomed" in record.getMessage() and record.levelname == "ERROR" for record in caplog.records)
    await manager.flush_all()
    assert oss_bucket.get_object("doomed").read() == b"x"
    assert oss_bucket.get_object("fine.txt").read() == b"y"
    for content in (doomed, fine):
        await manager.release(content)
