"""The persistent stat cache (ossmount/fs/persistent.py): which answers may be kept, which listed objects a row
stands for, where the file lives, and the sqlite round trip."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import stat

import pytest
import trio

from ossmount.fs import persistent
from ossmount.fs.persistent import PersistentStatCache, directory_of, location, same_version, storable
from ossmount.store.types import ObjectInfo

LM = 1_700_000_000.0
HEADED = ObjectInfo(key="d/f", size=3, etag="E1", mtime=LM, content_type="text/plain",
                    meta={"mode": "33188", "uid": "7"}, answered_at=LM + 5, version_id="v1", crc64=2**64 - 1,
                    http_headers={"cache-control": "no-cache", "content-disposition": "attachment"})
LISTED = ObjectInfo(key="d/f", size=3, etag="E1", mtime=LM, from_listing=True)


def test_a_listed_object_is_the_stored_version_only_if_etag_last_modified_size_and_class_agree():
    assert same_version(LISTED, HEADED)
    for change in ({"etag": "E2"}, {"mtime": LM + 1}, {"size": 4}, {"storage_class": "IA"}):
        assert not same_version(dataclasses.replace(LISTED, **change), HEADED), change
    assert same_version(dataclasses.replace(LISTED, mtime=LM + 0.9), HEADED)  # whole seconds, as OSS lists them
    assert same_version(dataclasses.replace(LISTED, storage_class="STANDARD"), HEADED)


def test_racy_and_unverifiable_answers_are_not_kept():
    assert storable(HEADED)
    assert storable(dataclasses.replace(HEADED, answered_at=LM + persistent.RACY_SECONDS))
    # a change within the same Last-Modified second could not be told apart from this answer
    assert not storable(dataclasses.replace(HEADED, answered_at=LM + persistent.RACY_SECONDS - 1))
    assert not storable(dataclasses.replace(HEADED, answered_at=0.0))  # no Date header
    assert not storable(LISTED)  # a listing has no x-oss-meta-*
    assert not storable(dataclasses.replace(HEADED, etag=""))
    assert not storable(dataclasses.replace(HEADED, storage_class="ColdArchive"))
    assert storable(dataclasses.replace(HEADED, key="d/sub/"))  # markers: validated by a directory lookup


def test_rows_are_grouped_by_the_listing_prefix_they_appear_under():
    assert directory_of("f") == ""
    assert directory_of("a/b/f") == "a/b/"
    assert directory_of("a/b/") == "a/"
    assert directory_of("a/") == ""


def test_location_follows_the_option_then_the_user():
    assert location("none") is None
    assert location("/s") == persistent.Path("/s/metadata.sqlite")
    assert location(None, uid=0) == persistent.Path("/var/cache/ossmount/metadata.sqlite")
    assert location("", uid=1000, environ={"XDG_CACHE_HOME": "/x"}) == persistent.Path("/x/ossmount/metadata.sqlite")
    assert location(None, uid=1000, environ={"HOME": "/home/u"}) == persistent.Path(
        "/home/u/.cache/ossmount/metadata.sqlite")


async def test_round_trip_through_sqlite_keeps_everything_a_stat_needs(tmp_path):
    path = tmp_path / "cache" / "metadata.sqlite"
    cache = PersistentStatCache.open(path, "http://e/b", clock=lambda: LM + 10)
    assert cache is not None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    cache.record(HEADED)
    cache.record(dataclasses.replace(HEADED, key="d/racy", answered_at=LM))  # not kept
    cache.record(dataclasses.replace(HEADED, key="d/gone"))
    cache.record(dataclasses.replace(HEADED, key="d/sub/"))
    cache.record(dataclasses.replace(HEADED, key="d/deeper/x"))
    await cache.flush()
    cache.forget("d/gone")
    await cache.flush()
    rows = await cache.lookup_dir("d/")
    assert set(rows) == {"d/f", "d/sub/"}
    assert rows["d/f"] == dataclasses.replace(HEADED, answered_at=0.0)
    assert await cache.lookup_key("d/deeper/x") is not None
    other = PersistentStatCache.open(path, "http://e/other-bucket", clock=lambda: LM + 10)
    assert await other.lookup_dir("d/") == {}  # rows belong to one endpoint and bucket
    cache.close()
    other.close()
    reopened = PersistentStatCache.open(path, "http://e/b", clock=lambda: LM + 10)
    assert set(await reopened.lookup_dir("d/")) == {"d/f", "d/sub/"}
    reopened.close()
    expired = PersistentStatCache.open(path, "http://e/b",
                                       clock=lambda: LM + 10 + 86400 * (persistent.RETENTION_DAYS + 2))
    assert await expired.lookup_dir("d/") == {}  # unused for longer than the retention: dropped at open
    expired.close()


def test_a_database_that_cannot_be_used_is_one_warning_and_no_cache(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="ossmount.fs"):
        assert PersistentStatCache.open(blocker / "metadata.sqlite", "s") is None
    assert "stat_cache_dir" in caplog.text



async def test_a_damaged_database_is_replaced(tmp_path, caplog):
    damaged = tmp_path / "metadata.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="ossmount.fs"):
        cache = PersistentStatCache.open(damaged, "s", clock=lambda: LM + 10)
    assert [r.message for r in caplog.records if "damaged" in r.message]
    cache.record(HEADED)
    await cache.flush()
    assert set(await cache.lookup_dir("d/")) == {"d/f"}
    cache.close()


async def test_writes_happen_in_the_background_in_batches(tmp_path):
    cache = PersistentStatCache.open(tmp_path / "m.sqlite", "s", clock=lambda: LM + 10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.run)
        for i in range(persistent.BATCH):
            cache.record(dataclasses.replace(HEADED, key=f"d/{i}"))
        with trio.fail_after(30):
            while len(await cache.lookup_dir("d/")) < persistent.BATCH:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    cache.close()


def test_a_key_that_is_not_utf8_is_skipped(tmp_path):
    cache = PersistentStatCache.open(tmp_path / "m.sqlite", "s", clock=lambda: LM + 10)
    cache.write([("d/\udcff", dataclasses.replace(HEADED, key="d/\udcff")), ("d/ok", HEADED)], [])
    assert set(cache.load_dir("d/")) == {"d/ok"}
    assert cache.load_dir("\udcff/") == {}
    assert cache.enabled
    cache.close()


async def test_a_file_of_another_schema_version_is_emptied(tmp_path):
    path = tmp_path / "metadata.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE objects (store TEXT, key TEXT, dir TEXT, etag TEXT)")  # an older layout
    old.execute("INSERT INTO objects VALUES ('http://e/b', 'd/f', 'd/', 'E1')")
    old.commit()
    old.close()
    cache = PersistentStatCache.open(path, "http://e/b", clock=lambda: LM + 10)
    assert cache is not None and cache.enabled
    assert await cache.lookup_dir("d/") == {}
    cache.record(HEADED)
    await cache.flush()
    assert (await cache.lookup_dir("d/"))["d/f"].http_headers == HEADED.http_headers
    cache.close()


async def test_a_directory_without_rows_is_answered_without_a_worker_thread(tmp_path, monkeypatch):
    """A first walk lists directories the cache never saw: their lookup is one index probe in the trio thread. Rows
    written by another mount sharing the file are found at once; a busy connection takes the worker thread."""
    path = tmp_path / "metadata.sqlite"
    cache = PersistentStatCache.open(path, "http://e/b", clock=lambda: LM + 10)
    other = PersistentStatCache.open(path, "http://e/b", clock=lambda: LM + 10)
    hops: list[str] = []
    run_sync = trio.to_thread.run_sync

    async def counted(function, *args, **kwargs):
        hops.append(args[0] if args else "")
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(persistent.trio.to_thread, "run_sync", counted)
    assert await cache.lookup_dir("d/") == {} and await cache.lookup_dir("e/") == {}
    assert hops == []
    other.write([("d/f", HEADED)], [])  # another mount of the same bucket
    assert set(await cache.lookup_dir("d/")) == {"d/f"}
    assert hops == ["d/"]
    cache._lock.acquire()  # a write in progress: the probe does not wait for it, the lookup takes the thread
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.lookup_dir, "e/")
        await trio.sleep(0.05)
        seen = list(hops)
        cache._lock.release()
    assert seen == ["d/", "e/"]
    cache.close()
    other.close()
