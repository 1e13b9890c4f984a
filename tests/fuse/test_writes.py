"""Writes through a real mount (issue 3, rule 4): every pattern compared with a local reference file
and with what oss2 reads back; uploads observed through the server's counters; upload failures through
its fault injector."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import random
import subprocess

import oss2
import pytest

from tests.fs.conftest import admin  # noqa: F401 - the fixture, shared with the content tests
from tests.fuse.conftest import running_mount

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture(scope="module")
def mount(local_server, tmp_path_factory):
    """One mount with 1 MiB multipart parts, 3 in flight, shared by this module."""
    with running_mount(local_server, tmp_path_factory.mktemp("writes"),
                       options="multipart_size=1,parallel_count=3") as mount:
        yield mount


@pytest.fixture
def workdir(mount, request):
    path = mount.path / request.node.name[:80]
    path.mkdir()
    return path


@pytest.fixture
def bucket(mount, local_server):
    return local_server.oss2_bucket(mount.bucket)


def key_of(mount, path) -> str:
    return str(path.relative_to(mount.path))


def counts(admin, *names):
    counters = admin.counters()
    return {name: counters.get(name, 0) for name in names}


def test_sequential_write_goes_up_as_multipart_on_close(mount, workdir, bucket, admin, tmp_path):
    data = random.Random(1).randbytes(5 * MiB + 512 * KiB)
    reference = tmp_path / "reference"
    reference.write_bytes(data)
    target = workdir / "big.bin"
    subprocess.run(["dd", f"if={reference}", f"of={target}", "bs=128k", "status=none"], check=True)
    assert counts(admin, "UploadPart", "CompleteMultipartUpload") == {"UploadPart": 6, "CompleteMultipartUpload": 1}
    assert bucket.get_object(key_of(mount, target)).read() == data
    assert subprocess.run(["cmp", str(reference), str(target)]).returncode == 0
    assert os.stat(target).st_size == len(data)


def test_data_reaches_oss_only_on_close(mount, workdir, bucket, admin):
    target = workdir / "late.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"written but not closed")
        # While open, others see the 0-byte object that create made (as with ossfs).
        assert bucket.get_object(key_of(mount, target)).read() == b""
        puts_while_open = counts(admin, "PutObject")["PutObject"]
    finally:
        os.close(fd)
    assert counts(admin, "PutObject")["PutObject"] == puts_while_open + 1
    assert bucket.get_object(key_of(mount, target)).read() == b"written but not closed"


def test_random_writes_truncates_and_holes_match_a_reference_file(mount, workdir, bucket, tmp_path):
    rng = random.Random(7)
    initial = rng.randbytes(3 * MiB)
    target = workdir / "random.bin"
    bucket.put_object(key_of(mount, target), initial)  # written by another client
    reference = tmp_path / "reference"
    reference.write_bytes(initial)
    fd = os.open(target, os.O_RDWR)
    ref = os.open(reference, os.O_RDWR)
    try:
        for step in range(60):
            choice = rng.random()
            size = os.fstat(ref).st_size
            if choice < 0.55:
                offset = rng.randrange(0, size + 2 * MiB)  # past the end leaves a hole
                data = rng.randbytes(rng.randrange(1, 300 * KiB))
                assert os.pwrite(fd, data, offset) == len(data)
                os.pwrite(ref, data, offset)
            elif choice < 0.75:
                length = rng.choice([0, rng.randrange(size + 1), size + rng.randrange(1, MiB)])
                os.ftruncate(fd, length)
                os.ftruncate(ref, length)
            elif choice < 0.95:
                offset, length = rng.randrange(0, size + 10), rng.randrange(0, 512 * KiB)
                assert os.pread(fd, length, offset) == os.pread(ref, length, offset), f"step {step}"
            else:
                os.fsync(fd)
                assert bucket.get_object(key_of(mount, target)).read() == reference.read_bytes()
            assert os.fstat(fd).st_size == os.fstat(ref).st_size
    finally:
        os.close(fd)
        os.close(ref)
    expected = reference.read_bytes()
    assert bucket.get_object(key_of(mount, target)).read() == expected
    assert target.read_bytes() == expected


def test_overwrite_in_the_middle_of_an_existing_object(mount, workdir, bucket):
    original = random.Random(2).randbytes(2 * MiB + 100)
    target = workdir / "existing.bin"
    bucket.put_object(key_of(mount, target), original)
    with open(target, "r+b") as handle:
        handle.seek(MiB - 3)
        handle.write(b"PATCH")
    expected = original[: MiB - 3] + b"PATCH" + original[MiB + 2 :]
    assert bucket.get_object(key_of(mount, target)).read() == expected
    assert target.read_bytes() == expected


def test_append_and_truncate_by_path(mount, workdir, bucket):
    target = workdir / "log.txt"
    target.write_bytes(b"line 1\n")
    with open(target, "ab") as handle:
        handle.write(b"line 2\n")
    with open(target, "ab") as handle:
        handle.write(b"line 3\n")
    assert bucket.get_object(key_of(mount, target)).read() == b"line 1\nline 2\nline 3\n"
    os.truncate(target, 4)  # shrink, no open handle
    assert bucket.get_object(key_of(mount, target)).read() == b"line"
    os.truncate(target, 10)  # grow: zeros
    assert bucket.get_object(key_of(mount, target)).read() == b"line" + b"\0" * 6
    assert target.read_bytes() == b"line" + b"\0" * 6


def test_sparse_file_reads_zeros_in_holes(mount, workdir, bucket):
    target = workdir / "sparse.img"
    with open(target, "wb") as handle:
        handle.seek(4 * MiB)
        handle.write(b"end")
    expected = b"\0" * (4 * MiB) + b"end"
    assert target.read_bytes() == expected
    assert bucket.get_object(key_of(mount, target)).read() == expected


def test_two_handles_share_the_same_bytes(mount, workdir, bucket):
    target = workdir / "shared.txt"
    target.write_bytes(b"0123456789")
    writer = os.open(target, os.O_WRONLY)
    reader = os.open(target, os.O_RDONLY)
    try:
        os.pwrite(writer, b"abc", 3)
        assert os.pread(reader, 100, 0) == b"012abc6789"
    finally:
        os.close(reader)
        os.close(writer)
    assert bucket.get_object(key_of(mount, target)).read() == b"012abc6789"


def test_failed_upload_is_eio_at_close_and_the_data_survives(mount, workdir, bucket, admin):
    target = workdir / "precious.txt"
    target.write_bytes(b"")  # created (and its 0-byte object uploaded) before the failures start
    admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError",
                       "probability": 1.0, "count": None}])
    fd = os.open(target, os.O_WRONLY)
    os.write(fd, b"must not be lost")
    with pytest.raises(OSError) as fsync_error:
        os.fsync(fd)
    assert fsync_error.value.errno == errno.EIO
    with pytest.raises(OSError) as close_error:
        os.close(fd)
    assert close_error.value.errno == errno.EIO
    assert bucket.get_object(key_of(mount, target)).read() == b""
    assert "must not be lost" not in mount.log and key_of(mount, target) in mount.log  # logged by key
    admin.clear_faults()
    # The dirty data was kept after the failed close: the next open + close uploads it.
    fd = os.open(target, os.O_RDONLY)
    assert os.read(fd, 100) == b"must not be lost"
    os.close(fd)
    assert bucket.get_object(key_of(mount, target)).read() == b"must not be lost"


def test_failed_multipart_is_eio_and_retried_at_unmount(local_server, make_mount, admin):
    mount = make_mount("multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    data = random.Random(3).randbytes(2 * MiB + 7)
    target = mount.path / "parts.bin"
    target.write_bytes(b"")
    admin.set_faults([{"op": "UploadPart", "action": "error", "status": 500, "code": "InternalError",
                       "probability": 1.0, "count": None}])
    fd = os.open(target, os.O_WRONLY)
    os.write(fd, data)
    with pytest.raises(OSError) as close_error:
        os.close(fd)
    assert close_error.value.errno == errno.EIO
    # The upload is kept open (the parts it holds are part of the kept data), not aborted.
    assert counts(admin, "AbortMultipartUpload", "CompleteMultipartUpload") == {
        "AbortMultipartUpload": 0, "CompleteMultipartUpload": 0}
    admin.clear_faults()
    mount.unmount()  # unmount flushes every dirty file (unless the background retry was first)
    assert bucket.get_object("parts.bin").read() == data
    assert list(oss2.MultipartUploadIterator(bucket)) == []


def test_appending_to_a_large_object_copies_its_unchanged_parts(mount, workdir, bucket, admin):
    original = random.Random(4).randbytes(4 * MiB)
    target = workdir / "journal.bin"
    bucket.put_object(key_of(mount, target), original)
    admin.reset_counters()
    with open(target, "ab") as handle:
        handle.write(b"one more record\n")
    # The 4 MiB already on OSS are copied server-side part by part, not downloaded and re-uploaded.
    assert counts(admin, "UploadPartCopy", "UploadPart", "GetObject") == {
        "UploadPartCopy": 4, "UploadPart": 1, "GetObject": 0}
    assert bucket.get_object(key_of(mount, target)).read() == original + b"one more record\n"


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KiB
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_file_larger_than_every_memory_buffer_round_trips_in_bounded_memory(make_mount, tmp_path):
    """A 300 MiB file (larger than the 256 MiB prefetch budget, 30 default 10 MiB parts) written with dd and
    read back: right bytes on both paths, and the mount process never holds a large part of it in memory."""
    size = 300 * MiB
    mount = make_mount()  # default multipart_size and parallel_count
    reference = tmp_path / "reference"
    written = hashlib.sha256()
    generator = random.Random(300)
    with open(reference, "wb") as out:
        for _ in range(size // (4 * MiB)):
            chunk = generator.randbytes(4 * MiB)
            written.update(chunk)
            out.write(chunk)
    target = mount.path / "huge.bin"
    subprocess.run(["dd", f"if={reference}", f"of={target}", "bs=1M", "status=none"], check=True)
    reference.unlink()
    head = mount.server.oss2_bucket(mount.bucket).head_object("huge.bin")
    assert head.content_length == size
    assert head.headers.get("x-oss-object-type") == "Multipart"
    read_back = subprocess.run(f"dd if='{target}' bs=1M status=none | sha256sum", shell=True, check=True,
                               capture_output=True, text=True)
    assert read_back.stdout.split()[0] == written.hexdigest()
    assert peak_rss(mount.process.pid) < 160 * MiB, f"VmHWM {peak_rss(mount.process.pid) / MiB:.0f} MiB"


class _CacheStat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def cached_pages(fd: int) -> int:
    """Pages of the file behind `fd` in the kernel's page cache: cachestat(2) (Linux 6.5, x86-64 syscall 451),
    which, unlike mincore, needs neither a mapping nor an open for reading (an open would drop the pages)."""
    if platform.machine() != "x86_64":
        pytest.skip("cachestat(2) is called by its x86-64 number")
    libc = ctypes.CDLL(None, use_errno=True)
    whole = (ctypes.c_uint64 * 2)(0, 0)  # offset 0, length 0: to the end of the file
    stat = _CacheStat()
    if libc.syscall(451, fd, ctypes.byref(whole), ctypes.byref(stat), 0) != 0:
        number = ctypes.get_errno()
        if number == errno.ENOSYS:
            pytest.skip("this kernel has no cachestat(2)")
        raise OSError(number, os.strerror(number))
    return stat.nr_cache


def test_write_only_handle_writes_past_the_page_cache(mount, workdir, bucket):
    """A write-only handle alone on its file (cp, dd, `>`) writes past the kernel's page cache (direct_io): no
    page of what it wrote is cached, while the same writes through a read-write handle fill the cache. Both
    files read back whole, through the mount and from OSS."""
    data = os.urandom(3 * MiB + 123)
    for name, flags, cached in (("wronly", os.O_WRONLY, False), ("rdwr", os.O_RDWR, True)):
        fd = os.open(workdir / name, flags | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for offset in range(0, len(data), MiB):
                os.write(fd, data[offset:offset + MiB])
            assert (cached_pages(fd) > 0) == cached, name
        finally:
            os.close(fd)
        assert (workdir / name).read_bytes() == data
        assert bucket.get_object(f"{workdir.name}/{name}").read() == data
    fd = os.open(workdir / "wronly", os.O_WRONLY)  # an existing file opened write-only: the same
    try:
        os.pwrite(fd, b"patched", 1000)
        assert cached_pages(fd) == 0
    finally:
        os.close(fd)
    assert (workdir / "wronly").read_bytes() == data[:1000] + b"patched" + data[1007:]


def test_readers_beside_a_write_only_writer_see_its_bytes(mount, workdir):
    """While a write-only handle writes past the page cache, a reader opened beside it reads past the cache too
    (no page of it is cached), so what it reads is never a page cached before the writer's last write (Linux
    6.6+ also drops the written range itself, but a read racing the write could cache the old bytes again). A
    writer that finds a reader already open goes through the cache (coherent with it) as before."""
    path = workdir / "appended"
    writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(writer, b"a" * 100)
        reader = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(reader, 8192, 0) == b"a" * 100
            os.write(writer, b"b" * 100)
            assert os.pread(reader, 8192, 0) == b"a" * 100 + b"b" * 100
            assert cached_pages(reader) == 0
        finally:
            os.close(reader)
    finally:
        os.close(writer)
    reader = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(reader, 8192, 0) == b"a" * 100 + b"b" * 100
        writer = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            assert cached_pages(writer) > 0  # the reader's pages: this writer goes through them
            os.write(writer, b"c" * 100)
            assert os.pread(reader, 8192, 0) == b"a" * 100 + b"b" * 100 + b"c" * 100
        finally:
            os.close(writer)
    finally:
        os.close(reader)
    assert path.read_bytes() == b"a" * 100 + b"b" * 100 + b"c" * 100
