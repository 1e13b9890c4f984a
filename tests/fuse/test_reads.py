"""Reads through a real mount (issue 11): request counts of sequential and random reads, the use_cache block
cache across remounts, and the mount process's memory with eight concurrent readers."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ossmount.fs.blockcache import SUBDIR
from ossmount.testing import wait_for

KiB = 1024
MiB = 1024 * KiB


def gets(mount) -> list[dict]:
    return [request for request in mount.server.admin.requests() if request["op"] == "GetObject"]


def put(mount, name: str, data: bytes) -> None:
    mount.server.oss2_bucket(mount.bucket).put_object(mount.prefix + name, data)


def read_file(path: Path, block: int = MiB) -> bytes:
    with open(path, "rb", buffering=0) as file:
        pieces = []
        while piece := file.read(block):
            pieces.append(piece)
    return b"".join(pieces)


def cached_bytes(directory: Path) -> int:
    total = 0
    for root, _, names in os.walk(directory / SUBDIR):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in names)
    return total


def drop_page_cache(path: Path) -> None:
    """Make the kernel forget the file's pages, so the next read reaches the mount."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_a_sequential_read_of_64_mib_is_at_most_8_gets_of_at_least_8_mib(make_mount):
    mount = make_mount()
    data = os.urandom(64 * MiB)
    put(mount, "big", data)
    mount.server.admin.reset_requests()
    assert read_file(mount.path / "big", 128 * KiB) == data
    requests = gets(mount)
    assert 1 <= len(requests) <= 8, [request["range"] for request in requests]
    assert all(request["bytes"] >= 8 * MiB for request in requests), [request["bytes"] for request in requests]


def test_random_4k_reads_fetch_at_most_4x_the_bytes_returned(make_mount):
    mount = make_mount()
    data = os.urandom(64 * MiB)
    put(mount, "random", data)
    rng = random.Random(11)
    fd = os.open(mount.path / "random", os.O_RDONLY)
    try:
        mount.server.admin.reset_requests()
        returned = 0
        for _ in range(300):
            offset = rng.randrange(len(data) // (4 * KiB)) * 4 * KiB
            piece = os.pread(fd, 4 * KiB, offset)
            assert piece == data[offset: offset + 4 * KiB]
            returned += len(piece)
    finally:
        os.close(fd)
    fetched = sum(request["bytes"] for request in gets(mount))
    assert fetched <= 4 * returned, (fetched, returned)


def test_a_small_file_is_read_with_one_get_and_no_head(make_mount):
    """An open that must check the object (here always: open_check_window=0) GETs a file of up to 1 MiB whole, and
    that answer is the check: one request per small file, each byte fetched once. Larger files keep the HEAD."""
    mount = make_mount("open_check_window=0")
    sizes = {"a": 1, "b": 64 * KiB, "c": 1 * MiB, "d": 1 * MiB + 1}
    contents = {name: os.urandom(size) for name, size in sizes.items()}
    for name, data in contents.items():
        put(mount, name, data)
    for name in contents:
        os.stat(mount.path / name)
    mount.server.admin.reset_counters()
    mount.server.admin.reset_requests()
    for name in "abc":
        assert read_file(mount.path / name, 16 * KiB) == contents[name]
    assert mount.server.admin.counters() == {"GetObject": 3}
    assert sorted(request["bytes"] for request in gets(mount)) == sorted(sizes[name] for name in "abc")
    mount.server.admin.reset_counters()
    assert read_file(mount.path / "d") == contents["d"]
    assert mount.server.admin.counters() == {"HeadObject": 1, "GetObject": 1}


def test_a_small_file_changed_between_opens_is_read_whole_at_its_new_version(make_mount):
    """The GET at open replaces the HEAD of close-to-open: a file replaced by another client (shorter, longer,
    past the size fetched at open) is read whole at its new version and size, never the old bytes; a deleted one
    is gone."""
    mount = make_mount("open_check_window=0")
    path = mount.path / "f"
    put(mount, "f", b"old " * 1000)
    assert read_file(path) == b"old " * 1000
    for new in (b"short", os.urandom(300 * KiB), os.urandom(3 * MiB + 5)):
        put(mount, "f", new)
        assert read_file(path, 128 * KiB) == new
        assert os.stat(path).st_size == len(new)
        put(mount, "f", b"small again")
        assert read_file(path) == b"small again"
    mount.server.oss2_bucket(mount.bucket).delete_object(mount.prefix + "f")
    try:
        open(path, "rb").close()
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a deleted object was opened")


def test_an_open_handle_keeps_its_version_while_a_later_open_reads_the_new_one(make_mount):
    """One open reads one whole version: a handle opened before a small file was replaced keeps reading the old
    version (or fails), while an open after it gets the new one from its GET at open."""
    mount = make_mount("open_check_window=0")
    path = mount.path / "f"
    old, new = os.urandom(200 * KiB), os.urandom(150 * KiB)
    put(mount, "f", old)
    with open(path, "rb", buffering=0) as first:
        assert first.read(4 * KiB) == old[:4 * KiB]
        put(mount, "f", new)
        with open(path, "rb", buffering=0) as second:
            assert second.read() == new
        try:
            rest = first.read()
        except OSError:
            rest = None  # EIO: its version is gone; never bytes of another
        # The kernel keeps one size per inode: the second open told it the new one, which may cut the first
        # handle's read short; its bytes are still all of the old version.
        assert rest is None or (len(rest) >= len(new) - 4 * KiB and old[4 * KiB:].startswith(rest))


def test_use_cache_serves_a_second_epoch_after_a_remount_with_no_get(make_mount, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    mount = make_mount(f"use_cache={cache}")
    data = os.urandom(20 * MiB + 333)
    put(mount, "epoch", data)
    assert read_file(mount.path / "epoch") == data
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mount.remount(f"use_cache={cache},metrics_listen=127.0.0.1:{port}")
    assert cached_bytes(cache) == len(data)
    mount.server.admin.reset_requests()
    assert read_file(mount.path / "epoch") == data
    assert gets(mount) == []
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    samples = {sample.name: sample.value for family in text_string_to_metric_families(metrics)
               for sample in family.samples}
    assert samples["ossmount_block_cache_hits_total"] >= 21  # 20 whole 1 MiB blocks and the short last one
    assert samples["ossmount_block_cache_bytes"] == len(data)
    mount.remount(f"use_cache={cache}")
    # another client replaces the object (same size): the remounted mount reads the new version, never old blocks
    new = os.urandom(len(data))
    put(mount, "epoch", new)
    mount.remount()
    assert read_file(mount.path / "epoch") == new
    # and within one mount, once the open sees the new ETag
    newer = os.urandom(len(data))
    mount.remount(f"use_cache={cache},open_check_window=0")
    assert read_file(mount.path / "epoch") == new
    put(mount, "epoch", newer)
    drop_page_cache(mount.path / "epoch")
    assert read_file(mount.path / "epoch") == newer


def test_use_cache_is_bounded_by_max_cache_size(make_mount, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    mount = make_mount(f"use_cache={cache},max_cache_size=4")
    files = {f"f{index}": os.urandom(3 * MiB) for index in range(3)}
    for name, data in files.items():
        put(mount, name, data)
    for name, data in files.items():
        assert read_file(mount.path / name) == data
        assert cached_bytes(cache) <= 4 * MiB
    mount.remount()
    mount.server.admin.reset_requests()
    assert read_file(mount.path / "f2") == files["f2"]  # the most recently read file is the one kept
    assert gets(mount) == []


def test_del_cache_empties_the_cache_at_mount_and_unmount(make_mount, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mine.txt").write_text("not the cache's")
    mount = make_mount(f"use_cache={cache}")
    data = os.urandom(2 * MiB)
    put(mount, "f", data)
    assert read_file(mount.path / "f") == data
    mount.remount(f"use_cache={cache},del_cache")
    assert cached_bytes(cache) == 0  # emptied at mount
    mount.server.admin.reset_requests()
    assert read_file(mount.path / "f") == data
    assert len(gets(mount)) >= 1
    # the blocks are written once the GET ended, which may be just after the reader got its bytes
    assert wait_for(lambda: cached_bytes(cache), lambda size: size == len(data), timeout=30) == len(data)
    mount.unmount()
    assert cached_bytes(cache) == 0  # and at unmount
    assert (cache / "mine.txt").read_text() == "not the cache's"  # only the blocks are the cache's


def test_use_cache_keeps_ensure_diskfree_free(make_mount, tmp_path):
    cache = tmp_path / "small"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(cache)], check=True)
    try:
        mount = make_mount(f"use_cache={cache},free_space_mb=16")
        data = os.urandom(12 * MiB)
        put(mount, "f", data)
        assert read_file(mount.path / "f") == data
        stat = os.statvfs(cache)
        assert stat.f_bavail * stat.f_frsize >= 16 * MiB
        assert 0 < cached_bytes(cache) <= 8 * MiB
        mount.unmount()
    finally:
        subprocess.run(["umount", "-l", str(cache)], capture_output=True)


def rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_memory_of_eight_concurrent_readers_is_bounded_and_given_back(make_mount):
    """Peak RSS of the mount process < 200 MiB while 8 readers stream 8 files, < 100 MiB again once they stop
    (polled for up to two minutes: no timing is asserted)."""
    mount = make_mount()
    size = 96 * MiB
    chunk = os.urandom(MiB)
    for index in range(8):
        put(mount, f"stream{index}", chunk * (size // MiB))
    pid = mount.process.pid
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        try:
            with open(mount.path / f"stream{index}", "rb", buffering=0) as file:
                total = 0
                while piece := file.read(MiB):
                    total += len(piece)
            assert total == size
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    peak = rss_kib(pid, "VmHWM")
    assert peak < 200 * 1024, f"peak RSS {peak // 1024} MiB"
    settled = wait_for(lambda: rss_kib(pid, "VmRSS"), lambda rss: rss < 100 * 1024, timeout=120, interval=1)
    assert settled < 100 * 1024, f"RSS {settled // 1024} MiB two minutes after the readers stopped"
