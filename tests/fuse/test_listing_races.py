"""A listing in flight while this mount changes the directory never becomes the directory's cached listing.

A readdir's listing is a LIST plus a HEAD per entry whose metadata is not cached: while those requests are out,
this mount may change a name of that directory (a chmod or a write + close never take the directory's lock in the
kernel; a create, unlink or rename do, so through a mount they wait for the readdir, while the kernel-free layer
lets them run meanwhile). The answer was taken before the change: caching it would hide the change (or bring
back a deleted name) for up to the stat cache's TTL. Made deterministic with the server's "hold" fault: the
readdir's first HEAD (of an entry whose metadata is not cached) stalls until the change is done.
"""

from __future__ import annotations

import os
import stat
import threading

import trio

from ossmount.fs.inodes import ROOT_INODE
from ossmount.testing import wait_for
from tests.fuse.test_fs_layer import filesystem
from tests.fuse.test_metadata import FILE_META

HOLD = {"action": "hold", "op": "HeadObject", "count": 1, "delay_ms": 120_000}


def _listing_in_flight(mount, directory):
    """Start `os.listdir(directory)` in a thread and return (thread, result) once its first HEAD is held."""
    result: dict[str, list[str]] = {}
    mount.server.admin.set_faults([HOLD])
    thread = threading.Thread(target=lambda: result.setdefault("names", sorted(os.listdir(directory))))
    thread.start()
    assert wait_for(mount.server.admin.held, bool, timeout=60), "the readdir's HEAD never reached the server"
    return thread, result


def _finish(mount, thread) -> None:
    mount.server.admin.clear_faults()
    mount.server.admin.release_held()
    thread.join(timeout=120)
    assert not thread.is_alive()


def _mount_with(make_mount, files: dict[str, bytes]):
    """A mount (the kernel asks for attributes every time) of a bucket holding `files` under `d/`, each written by
    another client; `d/f` is stat'ed through the mount (its metadata cached), `d/old` is not (a readdir HEADs it)."""
    mount = make_mount("attr_timeout=0")
    bucket = mount.server.oss2_bucket(mount.bucket)
    for name, body in files.items():
        bucket.put_object(f"d/{name}", body, headers=FILE_META)
    os.stat(mount.path / "d" / "f")
    return mount


def test_a_chmod_during_a_readdir_is_not_undone_by_its_listing(make_mount):
    mount = _mount_with(make_mount, {"f": b"abc", "old": b"x"})
    d = mount.path / "d"
    thread, result = _listing_in_flight(mount, d)
    try:
        os.chmod(d / "f", 0o640)
    finally:
        _finish(mount, thread)
    assert result["names"] == ["f", "old"]
    assert stat.S_IMODE(os.stat(d / "f").st_mode) == 0o640
    assert {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in os.scandir(d)} == {"f": 0o640, "old": 0o604}


def test_a_write_during_a_readdir_is_not_undone_by_its_listing(make_mount):
    mount = _mount_with(make_mount, {"f": b"abc", "old": b"x"})
    d = mount.path / "d"
    thread, result = _listing_in_flight(mount, d)
    try:
        with open(d / "f", "ab") as f:
            f.write(b"defgh")
    finally:
        _finish(mount, thread)
    assert result["names"] == ["f", "old"]
    assert os.stat(d / "f").st_size == 8
    assert (d / "f").read_bytes() == b"abcdefgh"


def test_names_changed_while_a_readdir_lists_are_shown_as_changed(make_mount):
    """create, unlink and rename (into and out of the directory) started while a readdir of it is in flight: the
    kernel may make them wait for the readdir, but once everything is done `ls` shows every change."""
    mount = _mount_with(make_mount, {"f": b"abc", "old": b"x", "gone": b"1", "leaving": b"2"})
    os.mkdir(mount.path / "e")
    (mount.path / "e" / "coming").write_bytes(b"3")
    d = mount.path / "d"
    thread, result = _listing_in_flight(mount, d)
    changes = threading.Thread(target=lambda: (
        (d / "new").write_bytes(b"new"), os.unlink(d / "gone"), os.rename(d / "leaving", mount.path / "e" / "left"),
        os.rename(mount.path / "e" / "coming", d / "came")))
    changes.start()
    try:
        changes.join(timeout=5)  # the kernel may hold them until the readdir answers: released below either way
    finally:
        _finish(mount, thread)
        changes.join(timeout=120)
    assert not changes.is_alive()
    assert sorted(os.listdir(d)) == ["came", "f", "new", "old"]
    assert sorted(os.listdir(mount.path / "e")) == ["left"]
    assert os.stat(d / "came").st_size == 1 and os.stat(d / "new").st_size == 3


async def test_local_changes_while_a_listing_is_in_flight_are_never_hidden_by_it(local_server, oss_bucket,
                                                                                fresh_bucket_name, tmp_path):
    """Kernel-free (no directory lock): a create, an unlink and renames both ways between `d` and `e` run while a
    readdir of each waits for its HEAD; those listings may miss the changes, but the next readdirs show them all."""
    for key in ("d/old", "d/gone", "d/leaving", "e/stay", "e/coming"):
        oss_bucket.put_object(key, b"x", headers=FILE_META)
    async with filesystem(local_server, fresh_bucket_name, tmp_path) as fs:
        d = await fs.lookup(ROOT_INODE, "d")
        e = await fs.lookup(ROOT_INODE, "e")
        for parent, name in ((d, "gone"), (d, "leaving"), (e, "coming")):
            await fs.lookup(parent.inode, name)  # cached: each readdir HEADs only `old` or `stay`

        async def names(inode: int) -> list[str]:
            fh = await fs.opendir(inode)
            try:
                return [entry.name for entry in await fs.readdir(fh, 0)][2:]
            finally:
                fs.releasedir(fh)

        local_server.admin.set_faults([{**HOLD, "count": 2}])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(names, d.inode)
                nursery.start_soon(names, e.inode)
                while await trio.to_thread.run_sync(local_server.admin.held) < 2:
                    await trio.sleep(0.05)
                fh, _ = await fs.create(d.inode, "new", 0o644, os.O_WRONLY, 0, 0, 0)
                await fs.release(fh)
                await fs.unlink(d.inode, "gone")
                await fs.rename(d.inode, "leaving", e.inode, "left", 0)
                await fs.rename(e.inode, "coming", d.inode, "came", 0)
                await trio.to_thread.run_sync(local_server.admin.release_held)
        finally:
            local_server.admin.clear_faults()
            local_server.admin.release_held()
        assert await names(d.inode) == ["came", "new", "old"]
        assert await names(e.inode) == ["left", "stay"]
