"""The read side of ContentManager (issue 11): shared per-version chunks, random-read detection, pooled
buffers and the use_cache block cache, against the real local server (GETs counted by the server)."""

from __future__ import annotations

import os
import random

import trio

from ossmount.fs.blockcache import SUBDIR, BlockCache
from ossmount.fs.buffers import BufferPool, size_class
from ossmount.fs.reader import ReadaheadConfig, random_block

from .test_content import buffers_freed, etag_of, headers, manager_for, random_bytes, read_all

KiB = 1024
MiB = 1024 * KiB


def get_requests(admin) -> list[dict]:
    return [request for request in admin.requests() if request["op"] == "GetObject"]


def cache_files(root) -> dict[str, int]:
    """Block files under the cache directory: relative path -> size."""
    found = {}
    for directory, _, names in os.walk(os.path.join(root, SUBDIR)):
        for name in names:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


# -- pure pieces ------------------------------------------------------------------------------------------

def test_random_block_is_the_request_rounded_to_a_power_of_two_within_bounds():
    config = ReadaheadConfig()
    assert random_block(4 * KiB, config) == 16 * KiB
    assert random_block(20 * KiB, config) == 32 * KiB
    assert random_block(256 * KiB, config) == 256 * KiB
    assert random_block(3 * MiB, config) == 1 * MiB


def _vm_flags_of(address: int) -> set[str]:
    """The VmFlags of the mapping of this process that contains `address` (/proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(part, 16) for part in head.split("-"))
                inside = low <= address < high
            elif inside and head == "VmFlags:":
                return set(line.split()[1:])
    raise AssertionError("no mapping holds the buffer")


def test_large_buffers_ask_for_transparent_huge_pages():
    """Chunk buffers of 2 MiB and more are madvise(MADV_HUGEPAGE)d: the kernel fills them with 2 MiB pages, so a
    GET faults once per 2 MiB instead of once per 4 KiB page, and the reply to the kernel pins fewer pages."""
    import ctypes

    pool = BufferPool()
    big, small = pool.take(8 * MiB), pool.take(64 * KiB)
    try:
        for buffer, expected in ((big, True), (small, False)):
            address = ctypes.addressof(ctypes.c_char.from_buffer(buffer.view))
            assert ("hg" in _vm_flags_of(address)) is expected
    finally:
        pool.give(big)
        pool.give(small)


def test_buffer_pool_reuses_by_size_class_and_trims():
    pool = BufferPool(keep_free=4 * MiB)
    first = pool.take(5000)
    assert len(first.view) == 5000 and first.capacity == size_class(5000) == 8 * KiB
    pool.give(first)
    again = pool.take(6000)
    assert again is first and len(again.view) == 6000  # the same mapping, a view of the new size
    big = pool.take(3 * MiB + 1)
    assert big.capacity == 4 * MiB
    pool.give(again)
    pool.give(big)  # over keep_free: unmapped at once
    assert pool.free_bytes == 8 * KiB
    assert pool.trim(0) == 8 * KiB and pool.free_bytes == 0


# -- through the store ------------------------------------------------------------------------------------

async def fresh_content(store, oss_bucket, admin, nursery, tmp_path, key: str, data: bytes):
    """(manager, content) of a new object `key` holding `data`, with the server's request log reset."""
    oss_bucket.put_object(key, data)
    admin.reset_requests()
    manager = manager_for(store, nursery, tmp_path)
    return manager, await manager.open(key, size=len(data), etag=etag_of(oss_bucket, key), headers=headers())


async def test_a_sequential_read_of_64_mib_is_at_most_8_gets_of_8_mib(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(64 * MiB, seed=21)
    manager, content = await fresh_content(store, oss_bucket, admin, nursery, tmp_path, "big", data)
    assert await read_all(content, 128 * KiB) == data
    gets = get_requests(admin)
    assert len(gets) <= 8, [request["range"] for request in gets]
    assert all(request["bytes"] >= 8 * MiB for request in gets), [request["bytes"] for request in gets]
    await manager.release(content)


async def test_four_readers_of_one_version_fetch_each_byte_once(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(40 * MiB + 4321, seed=22)
    oss_bucket.put_object("shared", data)
    etag = etag_of(oss_bucket, "shared")
    admin.reset_requests()
    manager = manager_for(store, nursery, tmp_path)
    contents = [await manager.open("shared", size=len(data), etag=etag, headers=headers()) for _ in range(4)]
    assert len({id(content) for content in contents}) == 1  # one content per version, shared by its handles
    results: list[bytes] = [b""] * 4

    async def reader(index: int) -> None:
        await trio.sleep(index * 0.01)
        results[index] = await read_all(contents[index], 128 * KiB)

    async with trio.open_nursery() as readers:
        for index in range(4):
            readers.start_soon(reader, index)
    assert all(result == data for result in results)
    assert sum(request["bytes"] for request in get_requests(admin)) == len(data)
    for content in contents:
        await manager.release(content)


async def test_random_4k_reads_fetch_at_most_4x_what_they_return(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(32 * MiB, seed=23)
    manager, content = await fresh_content(store, oss_bucket, admin, nursery, tmp_path, "random", data)
    rng = random.Random(5)
    returned = 0
    for _ in range(300):
        offset = rng.randrange(len(data) // (4 * KiB)) * 4 * KiB
        piece = await content.read(offset, 4 * KiB)
        assert bytes(piece) == data[offset: offset + 4 * KiB]
        returned += len(piece)
    fetched = sum(request["bytes"] for request in get_requests(admin))
    assert fetched <= 4 * returned, (fetched, returned)
    assert manager.statistics().random_fetches >= 250
    await manager.release(content)
    await buffers_freed(manager)


async def test_prefetch_memory_is_shared_fairly_and_given_back(store, oss_bucket, nursery, tmp_path):
    """Eight readers of eight files under a 32 MiB budget: never more than the budget plus one waited-for
    request per reader, and nothing held once they are closed."""
    files = {f"f{index}": random_bytes(12 * MiB, seed=30 + index) for index in range(8)}
    for key, data in files.items():
        oss_bucket.put_object(key, data)
    manager = manager_for(store, nursery, tmp_path, prefetch_limit=32 * MiB)
    peak = 0

    async def reader(key: str) -> None:
        nonlocal peak
        content = await manager.open(key, size=len(files[key]), etag=etag_of(oss_bucket, key), headers=headers())
        offset = 0
        while offset < len(files[key]):
            piece = await content.read(offset, 1 * MiB)
            assert bytes(piece) == files[key][offset: offset + len(piece)]
            offset += len(piece)
            peak = max(peak, manager.statistics().prefetch_buffered_bytes)
        await manager.release(content)

    async with trio.open_nursery() as readers:
        for key in files:
            readers.start_soon(reader, key)
    assert peak <= 32 * MiB + 8 * 8 * MiB
    await buffers_freed(manager)


# -- the block cache ----------------------------------------------------------------------------------------

def block_cache(tmp_path, **kwargs) -> BlockCache:
    cache = BlockCache(str(tmp_path / "cache"), bucket="b", block_size=256 * KiB, **kwargs)
    cache.load()
    return cache


async def test_block_cache_serves_a_second_reader_without_a_get(store, oss_bucket, admin, nursery, tmp_path):
    data = random_bytes(3 * MiB + 100, seed=24)
    oss_bucket.put_object("cached", data)
    etag = etag_of(oss_bucket, "cached")
    cache = block_cache(tmp_path)
    manager = manager_for(store, nursery, tmp_path, block_cache=cache)
    content = await manager.open("cached", size=len(data), etag=etag, headers=headers())
    assert await read_all(content) == data
    await manager.release(content)
    await buffers_freed(manager)
    assert sum(cache_files(tmp_path / "cache").values()) == len(data)  # whole blocks, the last one short
    # a new manager (a remount) over the same directory: no GET at all
    again = block_cache(tmp_path)
    assert again.used == len(data)
    admin.reset_requests()
    manager2 = manager_for(store, nursery, tmp_path, block_cache=again)
    content = await manager2.open("cached", size=len(data), etag=etag, headers=headers())
    assert await read_all(content) == data
    rng = random.Random(1)
    for _ in range(50):  # random reads are served from the blocks too
        offset = rng.randrange(len(data))
        assert bytes(await content.read(offset, 5000)) == data[offset: offset + 5000]
    assert get_requests(admin) == []
    assert again.hits > 0
    await manager2.release(content)


async def test_block_cache_never_serves_blocks_of_an_older_version(store, oss_bucket, admin, nursery, tmp_path):
    old, new = random_bytes(MiB, seed=25), random_bytes(MiB, seed=26)
    oss_bucket.put_object("changing", old)
    cache = block_cache(tmp_path)
    manager = manager_for(store, nursery, tmp_path, block_cache=cache)
    content = await manager.open("changing", size=MiB, etag=etag_of(oss_bucket, "changing"), headers=headers())
    assert await read_all(content) == old
    await manager.release(content)
    oss_bucket.put_object("changing", new)  # same key, same size, new ETag
    content = await manager.open("changing", size=MiB, etag=etag_of(oss_bucket, "changing"), headers=headers())
    assert await read_all(content) == new
    await manager.release(content)


async def test_block_cache_stays_within_max_size_evicting_least_recently_used(store, oss_bucket, nursery,
                                                                              tmp_path):
    first, second = random_bytes(MiB, seed=27), random_bytes(MiB, seed=28)
    oss_bucket.put_object("first", first)
    oss_bucket.put_object("second", second)
    cache = block_cache(tmp_path, max_size=MiB + 512 * KiB)
    manager = manager_for(store, nursery, tmp_path, block_cache=cache)
    for key, data in (("first", first), ("second", second)):
        content = await manager.open(key, size=MiB, etag=etag_of(oss_bucket, key), headers=headers())
        assert await read_all(content) == data
        await manager.release(content)
        await buffers_freed(manager)
        assert sum(cache_files(tmp_path / "cache").values()) <= MiB + 512 * KiB
    assert cache.evictions >= 2
    names = cache_files(tmp_path / "cache")
    second_id = cache.object_id("second", etag_of(oss_bucket, "second"), None, MiB)[0]
    assert sum(1 for name in names if second_id in name) == 4  # the newest object's blocks are all kept
    assert block_cache(tmp_path, max_size=512 * KiB).used <= 512 * KiB  # a smaller bound applies at load


def test_block_cache_clear_empties_the_directory(tmp_path):
    cache = block_cache(tmp_path)
    block = tmp_path / "cache" / SUBDIR / "ab" / ("ab" + "0" * 62)
    block.mkdir(parents=True)
    (block / "0").write_bytes(b"x" * 10)
    (block / "1.123.tmp").write_bytes(b"torn")
    cache = block_cache(tmp_path)
    assert cache.used == 10 and not (block / "1.123.tmp").exists()  # a crash's temporary file is removed
    cache.clear()
    assert cache.used == 0 and cache_files(tmp_path / "cache") == {}
