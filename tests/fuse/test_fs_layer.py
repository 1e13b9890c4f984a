"""The kernel-free `Filesystem` in-process against the local server: request counts per operation.

Each test ends with the invariant check: no open handles and the bucket holds exactly the expected keys.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time

import pytest
import trio

from ossmount.credentials import Credentials
from ossmount.fs.attrs import EntryKind, Ownership
from ossmount.fs.content import ContentManager
from ossmount.fs.errors import FsError
from ossmount.fs.filesystem import RENAME_NOREPLACE, Filesystem, FsConfig
from ossmount.fs.inodes import ROOT_INODE
from ossmount.fs.mime import MimeTypes
from ossmount.store import ObjectStore


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def filesystem(server, bucket: str, tmp_path, monotonic=time.monotonic, **config):
    store = ObjectStore.create(endpoint=server.endpoint, bucket=bucket,
                               credentials=Credentials(server.access_key_id, server.access_key_secret))
    async with trio.open_nursery() as nursery:
        contents = ContentManager(store, spool_dir=str(tmp_path), multipart_size=8 << 20, parallel_count=2,
                                  nursery=nursery, conflict_dir=str(tmp_path / "conflicts"))
        fs = Filesystem(store, contents, config=FsConfig(**config), ownership=Ownership(0, 0),
                        mime=MimeTypes.load(), monotonic=monotonic)
        yield fs
        assert fs.open_handle_count() == 0
        nursery.cancel_scope.cancel()


def requests(server) -> dict[str, int]:
    return {op: n for op, n in server.admin.counters().items() if n}


def keys(bucket) -> set[str]:
    import oss2

    return {o.key for o in oss2.ObjectIterator(bucket)}


async def test_cold_lookup_costs(local_server, oss_bucket, fresh_bucket_name, tmp_path):
    """file: 1 HEAD; implicit dir: HEAD + LIST; dir object: HEAD + LIST + HEAD of the marker; cached: 0."""
    oss_bucket.put_object("file", b"abc")
    oss_bucket.put_object("implicit/child", b"x")
    oss_bucket.put_object("marked/", b"", headers={"x-oss-meta-mode": str(stat.S_IFDIR | 0o711)})
    async with filesystem(local_server, fresh_bucket_name, tmp_path) as fs:
        local_server.admin.reset_counters()
        entry = await fs.lookup(ROOT_INODE, "file")
        assert entry.attrs.size == 3 and requests(local_server) == {"HeadObject": 1}
        local_server.admin.reset_counters()
        entry = await fs.lookup(ROOT_INODE, "implicit")
        assert entry.attrs.kind == EntryKind.DIR
        assert requests(local_server) == {"HeadObject": 1, "ListObjectsV2": 1}
        local_server.admin.reset_counters()
        entry = await fs.lookup(ROOT_INODE, "marked")
        assert stat.S_IMODE(entry.attrs.mode) == 0o711
        assert requests(local_server) == {"HeadObject": 2, "ListObjectsV2": 1}
        local_server.admin.reset_counters()
        for name in ("file", "implicit", "marked"):
            await fs.lookup(ROOT_INODE, name)
        assert requests(local_server) == {}
        with pytest.raises(FsError) as info:
            await fs.lookup(ROOT_INODE, "absent")
        assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("optimize", [True, False])
async def test_readdir_costs_and_fills_caches(local_server, oss_bucket, fresh_bucket_name, tmp_path, optimize):
    """readdir: one LIST per 1000 keys, plus one HEAD per entry unless readdir_optimize; then lookups are free."""
    for i in range(40):
        oss_bucket.put_object(f"d/f{i:02d}", b"x")
    oss_bucket.put_object("d/sub/x", b"x")
    async with filesystem(local_server, fresh_bucket_name, tmp_path, readdir_optimize=optimize) as fs:
        d = await fs.lookup(ROOT_INODE, "d")
        local_server.admin.reset_counters()
        fh = await fs.opendir(d.inode)
        entries = list(await fs.readdir(fh, 0))
        fs.releasedir(fh)
        assert [e.name for e in entries] == [".", ".."] + [f"f{i:02d}" for i in range(40)] + ["sub"]
        assert (entries[0].dot_inode, entries[1].dot_inode) == (d.inode, ROOT_INODE)
        expected_heads = 0 if optimize else 41
        assert requests(local_server) == {"ListObjectsV2": 1, **({"HeadObject": expected_heads} if expected_heads else {})}
        local_server.admin.reset_counters()
        for entry in entries:
            await fs.lookup(d.inode, entry.name)
        assert requests(local_server) == {}


async def test_create_write_flush_rename_unlink(local_server, oss_bucket, fresh_bucket_name, tmp_path):
    async with filesystem(local_server, fresh_bucket_name, tmp_path) as fs:
        d = await fs.mkdir(ROOT_INODE, "dir", 0o755, 0, 0, 0o022)
        fh, entry = await fs.create(d.inode, "new.txt", 0o666, os.O_WRONLY, 0, 0, 0o022)
        assert stat.S_IMODE(entry.attrs.mode) == 0o644
        assert oss_bucket.get_object("dir/new.txt").read() == b""  # what others see while it is open
        await fs.write(fh, 0, b"hello world")
        await fs.flush(fh)
        await fs.release(fh)
        assert oss_bucket.get_object("dir/new.txt").read() == b"hello world"
        assert oss_bucket.head_object("dir/new.txt").headers["Content-Type"] == "text/plain"
        await fs.rename(ROOT_INODE, "dir", ROOT_INODE, "moved", 0)
        assert keys(oss_bucket) == {"moved/", "moved/new.txt"}
        fh2, _ = await fs.create(ROOT_INODE, "other", 0o644, os.O_WRONLY, 0, 0, 0)
        await fs.release(fh2)
        moved = await fs.lookup(ROOT_INODE, "moved")
        with pytest.raises(FsError) as info:
            await fs.rename(ROOT_INODE, "other", moved.inode, "new.txt", RENAME_NOREPLACE)
        assert info.value.errno == errno.EEXIST
        await fs.unlink(moved.inode, "new.txt")
        await fs.rmdir(ROOT_INODE, "moved")
        assert keys(oss_bucket) == {"other"}


async def test_open_file_follows_directory_rename(local_server, oss_bucket, fresh_bucket_name, tmp_path):
    async with filesystem(local_server, fresh_bucket_name, tmp_path) as fs:
        d = await fs.mkdir(ROOT_INODE, "a", 0o755, 0, 0, 0)
        fh, _ = await fs.create(d.inode, "f", 0o644, os.O_WRONLY, 0, 0, 0)
        await fs.write(fh, 0, b"late data")
        await fs.rename(ROOT_INODE, "a", ROOT_INODE, "b", 0)
        await fs.flush(fh)
        await fs.release(fh)
        assert keys(oss_bucket) == {"b/", "b/f"}
        assert oss_bucket.get_object("b/f").read() == b"late data"


async def test_file_rename_keeps_cached_listings(local_server, oss_bucket, fresh_bucket_name, tmp_path):
    """After a file rename, the directory's listing and lookups of both names need no request."""
    oss_bucket.put_object("d/a", b"abc")
    oss_bucket.put_object("d/b", b"x")
    async with filesystem(local_server, fresh_bucket_name, tmp_path) as fs:
        d = await fs.lookup(ROOT_INODE, "d")
        fh = await fs.opendir(d.inode)
        await fs.readdir(fh, 0)
        fs.releasedir(fh)
        await fs.rename(d.inode, "a", d.inode, "c", 0)
        local_server.admin.reset_counters()
        fh = await fs.opendir(d.inode)
        entries = list(await fs.readdir(fh, 0))
        fs.releasedir(fh)
        assert [e.name for e in entries] == [".", "..", "b", "c"]
        assert (await fs.lookup(d.inode, "c")).attrs.size == 3
        assert requests(local_server) == {}
        with pytest.raises(FsError) as info:
            await fs.lookup(d.inode, "a")
        assert info.value.errno == errno.ENOENT
        assert keys(oss_bucket) == {"d/b", "d/c"}


async def test_truncate_of_open_file_sends_no_head(local_server, oss_bucket, fresh_bucket_name, tmp_path):
    """truncate(path) of a file another process has open changes the shared content: no HEAD needed."""
    oss_bucket.put_object("f", b"0123456789")
    async with filesystem(local_server, fresh_bucket_name, tmp_path, readdir_optimize=True) as fs:
        fh = await fs.opendir(ROOT_INODE)
        await fs.readdir(fh, 0)  # the entry now comes from a listing (no x-oss-meta-*)
        fs.releasedir(fh)
        entry = await fs.lookup(ROOT_INODE, "f")
        fh = (await fs.open(entry.inode, os.O_RDONLY)).fh
        local_server.admin.reset_counters()
        assert (await fs.setattr(entry.inode, size=4)).attrs.size == 4
        assert requests(local_server) == {}
        await fs.flush(fh)
        await fs.release(fh)
        assert oss_bucket.get_object("f").read() == b"0123"


async def test_read_only_refuses_changes(local_server, oss_bucket, fresh_bucket_name, tmp_path):
    oss_bucket.put_object("f", b"x")
    async with filesystem(local_server, fresh_bucket_name, tmp_path, read_only=True) as fs:
        f = await fs.lookup(ROOT_INODE, "f")
        for call in (fs.mkdir(ROOT_INODE, "d", 0o755, 0, 0), fs.unlink(ROOT_INODE, "f"),
                     fs.setattr(f.inode, mode=0o600), fs.open(f.inode, os.O_WRONLY)):
            with pytest.raises(FsError) as info:
                await call
            assert info.value.errno == errno.EROFS
        assert keys(oss_bucket) == {"f"}


async def test_open_checks_once_outside_the_window_and_never_inside(local_server, oss_bucket, fresh_bucket_name,
                                                                    tmp_path):
    """Close-to-open: one request per open unless OSS confirmed the entry within open_check_window seconds (for
    a small read-only file the GET of its bytes, which the reads then use; handles.py OPEN_FETCH_LIMIT)."""
    clock = FakeMonotonic()
    oss_bucket.put_object("f", b"v1")
    async with filesystem(local_server, fresh_bucket_name, tmp_path, monotonic=clock, open_check_window=1.0) as fs:
        entry = await fs.lookup(ROOT_INODE, "f")
        local_server.admin.reset_counters()
        opened = await fs.open(entry.inode, os.O_RDONLY)  # just looked up: within the window
        assert requests(local_server) == {} and not opened.attrs_changed
        assert bytes(await fs.read(opened.fh, 0, 10)) == b"v1"
        await fs.release(opened.fh)
        clock.now += 1.5
        oss_bucket.put_object("f", b"version 2")
        local_server.admin.reset_counters()
        opened = await fs.open(entry.inode, os.O_RDONLY)
        assert requests(local_server) == {"GetObject": 1}
        assert opened.attrs_changed and not opened.keep_cache  # the kernel must drop the old size and pages
        assert (await fs.getattr(entry.inode)).attrs.size == 9
        assert bytes(await fs.read(opened.fh, 0, 20)) == b"version 2"
        assert requests(local_server) == {"GetObject": 1}  # the read was answered from the open's GET
        await fs.release(opened.fh)
        clock.now += 0.5  # the GET at open counts as a check
        local_server.admin.reset_counters()
        opened = await fs.open(entry.inode, os.O_RDONLY)
        assert requests(local_server) == {} and opened.keep_cache and not opened.attrs_changed
        await fs.release(opened.fh)


async def test_a_conflicting_partial_write_keeps_the_writers_bytes(local_server, oss_bucket, fresh_bucket_name,
                                                                   tmp_path):
    oss_bucket.put_object("doc", b"0123456789" * 10)
    async with filesystem(local_server, fresh_bucket_name, tmp_path) as fs:
        entry = await fs.lookup(ROOT_INODE, "doc")
        opened = await fs.open(entry.inode, os.O_WRONLY)
        await fs.write(opened.fh, 10, b"mine")
        oss_bucket.put_object("doc", b"theirs")
        with pytest.raises(FsError) as info:
            await fs.flush(opened.fh)
        assert info.value.errno == errno.EIO
        with pytest.raises(FsError):
            await fs.write(opened.fh, 0, b"more")  # the handle is done: its bytes are kept aside
        await fs.release(opened.fh)
        [kept] = [p for p in (tmp_path / "conflicts").iterdir() if not p.name.endswith(".json")]
        assert kept.read_bytes() == bytes(10) + b"mine" + bytes(86)  # unknown old bytes are zeros
        description = json.loads((tmp_path / "conflicts" / (kept.name + ".json")).read_text())
        assert description["written_ranges"] == [[10, 14]] and description["unknown_ranges"] == [[0, 10], [14, 100]]
        assert oss_bucket.get_object("doc").read() == b"theirs"
        opened = await fs.open((await fs.lookup(ROOT_INODE, "doc")).inode, os.O_RDONLY)
        assert bytes(await fs.read(opened.fh, 0, 100)) == b"theirs"
        await fs.release(opened.fh)
