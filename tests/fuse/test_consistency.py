"""Correctness when another client changes the bucket under a mount (issue 6, A1-A5).

The other client is oss2 on the same bucket of the session's server; every read, write and listing goes
through a real mount.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path

import oss2
import pytest

from ossmount.testing import wait_for

MiB = 1024 * 1024


def bucket_of(mount) -> oss2.Bucket:
    return mount.server.oss2_bucket(mount.bucket)


def cat(path: Path) -> bytes:
    """What `cat` prints (a fresh open, as a user would)."""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True, timeout=60).stdout


def eventually_reads(path: Path, new: bytes, old: bytes) -> None:
    """Fresh opens of `path` read `new` within the close-to-open window, and only ever a whole version."""
    seen = []
    last = wait_for(lambda: seen.append(cat(path)) or seen[-1], lambda data: data == new, timeout=15)
    assert last == new and set(seen) <= {old, new}, [data[:20] for data in seen]


def counts(mount) -> dict[str, int]:
    return {op: n for op, n in mount.server.admin.counters().items() if n}


# ---- A1: close-to-open ---------------------------------------------------------------------------------

@pytest.mark.parametrize("new", [b"second-version-is-longer", b"short"], ids=["longer", "shorter"])
def test_an_open_sees_another_clients_whole_new_version(make_mount, new):
    """The issue's input: the second `cat` must print one whole version, and the new one once an open can
    see it (never `second-versio`: new bytes cut to the cached size)."""
    mount = make_mount()
    f = mount.path / "f"
    f.write_bytes(b"first-version")
    assert cat(f) == b"first-version"
    os.stat(f)  # the kernel now caches the old size
    bucket_of(mount).put_object(mount.prefix + "f", new)
    eventually_reads(f, new, b"first-version")
    assert os.stat(f).st_size == len(new)
    with open(f, "rb") as reader:
        assert reader.read() == new


@pytest.mark.parametrize("new", [b"second-version-is-longer", b"short", b"same-length!!", b"x" * (3 * MiB)],
                         ids=["longer", "shorter", "same-length", "pages-longer"])
def test_an_open_within_the_window_reads_one_whole_version(make_mount, new):
    """An open within the check window sends no HEAD, so its first read finds the version gone (412) and moves
    to the new one: the reader must get the new version whole. The kernel still believes the old size: a
    shorter version must end at its own length (never padded with zeros to the old one), a longer one must
    not be cut to it."""
    mount = make_mount("open_check_window=30")
    bucket = bucket_of(mount)
    bucket.put_object(mount.prefix + "f", b"first-version")
    assert os.stat(mount.path / "f").st_size == len(b"first-version")  # looked up: checked, no data read
    bucket.put_object(mount.prefix + "f", new)
    mount.server.admin.reset_counters()
    assert cat(mount.path / "f") == new
    assert "HeadObject" in counts(mount)  # the move to the new version, not a HEAD at open, found it
    assert os.stat(mount.path / "f").st_size == len(new)
    assert cat(mount.path / "f") == new


def test_an_open_costs_one_request_at_most_and_none_within_the_window(make_mount):
    """At most one request per open, skipped when the entry was listed or checked within the window. For a small
    file that request is the GET of its bytes, whose answer is the check (no HEAD)."""
    mount = make_mount("open_check_window=0")
    bucket = bucket_of(mount)
    bucket.put_object(mount.prefix + "f", b"payload")
    os.stat(mount.path / "f")
    mount.server.admin.reset_counters()
    assert cat(mount.path / "f") == b"payload"
    assert counts(mount) == {"GetObject": 1}
    big = os.urandom(2 * MiB)  # above the size fetched at open: one HEAD, then the reads' GET
    bucket.put_object(mount.prefix + "big", big)
    os.stat(mount.path / "big")
    mount.server.admin.reset_counters()
    assert cat(mount.path / "big") == big
    assert counts(mount) == {"HeadObject": 1, "GetObject": 1}
    # within the window (30 s here, so a loaded machine cannot make this flaky): no HEAD at open
    lazy = make_mount("open_check_window=30", bucket=mount.bucket, prefix=mount.prefix)
    os.listdir(lazy.path)
    mount.server.admin.reset_counters()
    for _ in range(3):
        assert cat(lazy.path / "f") == b"payload"
    assert "HeadObject" not in counts(mount)


def test_the_kernel_keeps_its_page_cache_only_for_the_same_version(make_mount):
    """An unchanged file is served from the kernel's page cache on the next open (no GET); a changed one is
    fetched again."""
    mount = make_mount("open_check_window=0")
    bucket = bucket_of(mount)
    data = os.urandom(3 * MiB)
    bucket.put_object(mount.prefix + "f", data)
    assert cat(mount.path / "f") == data
    mount.server.admin.reset_counters()
    assert cat(mount.path / "f") == data
    assert counts(mount) == {"HeadObject": 1}
    bucket.put_object(mount.prefix + "f", data[::-1])
    assert cat(mount.path / "f") == data[::-1]


# ---- A2: one version per open handle --------------------------------------------------------------------

def read_until_error(fd: int, chunk: int = 128 * 1024) -> tuple[bytes, OSError | None]:
    got = bytearray()
    try:
        while True:
            data = os.read(fd, chunk)
            if not data:
                return bytes(got), None
            got += data
    except OSError as exc:
        return bytes(got), exc


@pytest.mark.parametrize("how", ["other-client-put", "rename-through-the-mount", "other-client-delete"])
def test_a_reader_never_gets_a_splice_of_two_versions(make_mount, how):
    """A reader has 48 MiB open and read 1 MiB when the object is replaced: its later reads are the old
    bytes or EIO (one log line naming the key), never new bytes. (48 MiB: more than the read-ahead window,
    32 MiB, can have fetched when the object changes.)"""
    mount = make_mount()
    bucket = bucket_of(mount)
    old, new = os.urandom(48 * MiB), os.urandom(48 * MiB)
    bucket.put_object(mount.prefix + "big", old)
    fd = os.open(mount.path / "big", os.O_RDONLY)
    try:
        first = os.read(fd, MiB)
        assert first == old[:MiB]
        if how == "other-client-put":
            bucket.put_object(mount.prefix + "big", new)
        elif how == "other-client-delete":
            bucket.delete_object(mount.prefix + "big")
        else:
            (mount.path / "big.tmp").write_bytes(new)
            os.rename(mount.path / "big.tmp", mount.path / "big")
        rest, error = read_until_error(fd)
        assert error is not None and error.errno == errno.EIO, "a replaced object must not read to its end"
        assert first + rest == old[: len(first) + len(rest)], "bytes of the new version were returned"
        for _ in range(3):
            _, again = read_until_error(fd)
            assert again is not None and again.errno == errno.EIO
    finally:
        os.close(fd)
    lines = [line for line in mount.log.splitlines() if f"read of '{mount.prefix}big' failed" in line]
    assert len(lines) == 1, lines
    assert "replaced or deleted after it was opened" in lines[0]
    if how != "other-client-delete":
        assert cat(mount.path / "big") == new  # a new open reads the new version whole


def test_in_a_versioned_bucket_a_reader_keeps_reading_its_version(make_mount):
    """With bucket versioning the reader reads the version it opened by its version id, to the end."""
    mount = make_mount(start=False)
    bucket = bucket_of(mount)
    bucket.put_bucket_versioning(oss2.models.BucketVersioningConfig("Enabled"))
    mount.start()
    old, new = os.urandom(16 * MiB), os.urandom(8 * MiB)
    bucket.put_object(mount.prefix + "v", old)
    with open(mount.path / "v", "rb", buffering=0) as reader:
        head = reader.read(MiB)
        bucket.put_object(mount.prefix + "v", new)
        rest = reader.read()
    assert head + rest == old
    eventually_reads(mount.path / "v", new, old)


# ---- A3: a writer's partial update lands on the version it opened ----------------------------------------

def conflict_files(log: str) -> list[Path]:
    return [Path(match) for match in re.findall(r"this writer's bytes are in (\S+) \(", log)]


@pytest.mark.parametrize("size, how", [(24 * MiB, "replaced"), (64 * 1024, "replaced"), (64 * 1024, "deleted")],
                         ids=["multipart-24MiB", "single-put-64KiB", "deleted-64KiB"])
def test_a_patch_of_a_replaced_object_is_eio_and_keeps_both(make_mount, tmp_path, size, how):
    """5 bytes patched at offset 0, the object replaced before close: close is EIO, the other client's object
    is intact (no merge), and the writer's bytes are kept in the file the log names (in tmpdir= here)."""
    mount = make_mount(f"tmpdir={tmp_path}")
    bucket = bucket_of(mount)
    key = mount.prefix + "patched.bin"
    original, theirs = os.urandom(size), os.urandom(size)
    bucket.put_object(key, original)
    fd = os.open(mount.path / "patched.bin", os.O_WRONLY)
    try:
        assert os.pwrite(fd, b"HELLO", 0) == 5
        if how == "replaced":
            bucket.put_object(key, theirs)
        else:
            bucket.delete_object(key)
        with pytest.raises(OSError) as info:
            os.fsync(fd)
        assert info.value.errno == errno.EIO
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            assert exc.errno == errno.EIO
    if how == "replaced":
        assert bucket.get_object(key).read() == theirs
    else:
        assert not bucket.object_exists(key)  # not re-created from half the bytes
    assert not list(oss2.MultipartUploadIterator(bucket))  # the half-built upload was aborted
    [kept] = conflict_files(mount.log)
    try:
        assert kept.parent == tmp_path / f"ossmount-conflicts-{os.getuid()}"
        assert key.replace("/", "%2F") in kept.name
        with open(kept, "rb") as f:
            assert f.read(5) == b"HELLO"
        description = json.loads(Path(str(kept) + ".json").read_text())
        assert description["key"] == key and description["written_ranges"] == [[0, 5]]
        assert description["size"] == size
        assert f"upload of '{key}' failed: the object was replaced or deleted" in mount.log
    finally:
        kept.unlink()
        Path(str(kept) + ".json").unlink()
    if how == "replaced":
        assert cat(mount.path / "patched.bin") == theirs


def test_unchanged_parts_are_copied_only_from_the_opened_version(make_mount):
    """Every UploadPartCopy of a partial rewrite carries x-oss-copy-source-if-match with the opened ETag."""
    mount = make_mount()
    bucket = bucket_of(mount)
    key = mount.prefix + "append.bin"
    etag = bucket.put_object(key, os.urandom(24 * MiB)).etag
    mount.server.admin.reset_requests()
    with open(mount.path / "append.bin", "ab") as f:
        f.write(b"tail")
    copies = [r for r in mount.server.admin.requests() if r["op"] == "UploadPartCopy"]
    assert len(copies) == 2
    assert all(r["headers"].get("x-oss-copy-source-if-match", "").strip('"') == etag for r in copies), copies
    assert bucket.get_object(key, byte_range=(24 * MiB, None)).read() == b"tail"


# ---- A4: a bucket that disappears ------------------------------------------------------------------------

def expect_eio(fn, *args):
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == errno.EIO, (fn, args, info.value)


@pytest.mark.parametrize("options", ["", "max_stat_cache_size=0"], ids=["caches-on", "caches-off"])
def test_a_deleted_bucket_is_eio_everywhere_logged_once_and_recovers(make_mount, options):
    # open_check_window=0: a listing less than that old answers a missing name itself, without asking OSS
    mount = make_mount(",".join(filter(None, [options, "open_check_window=0"])))
    bucket = bucket_of(mount)
    (mount.path / "f").write_bytes(b"data")
    assert os.listdir(mount.path) == ["f"]
    for info in oss2.ObjectIterator(bucket):
        bucket.delete_object(info.key)
    bucket.delete_bucket()
    expect_eio(os.stat, mount.path / "not-there")  # never ENOENT: the bucket, not the file, is missing
    for _ in range(3):
        expect_eio(os.listdir, mount.path)  # never an empty directory
        expect_eio(os.stat, mount.path / "other")
        expect_eio((mount.path / "new").write_bytes, b"x")
        expect_eio(os.mkdir, mount.path / "dir")
    lines = [line for line in mount.log.splitlines() if "NoSuchBucket" in line]
    assert len(lines) == 1 and "every operation fails with EIO" in lines[0], lines
    bucket.create_bucket()
    assert wait_for(lambda: _listdir_or_none(mount.path), lambda names: names == [], timeout=10) == []
    (mount.path / "again").write_bytes(b"back")
    assert bucket.get_object(mount.prefix + "again").read() == b"back"
    assert len([line for line in mount.log.splitlines() if "exists again: operations resume" in line]) == 1


def _listdir_or_none(path: Path):
    try:
        return os.listdir(path)
    except OSError:
        return None


# ---- A5: directories emptied through the mount stay ------------------------------------------------------

def test_removing_the_last_entries_of_an_implied_directory_keeps_it(make_mount):
    mount = make_mount()
    bucket = bucket_of(mount)
    for name in ("a/x", "a/y", "b/only", "c/sub/deep"):
        bucket.put_object(mount.prefix + name, b"1")
    os.unlink(mount.path / "a" / "x")
    os.unlink(mount.path / "a" / "y")
    os.rename(mount.path / "b" / "only", mount.path / "moved")
    (mount.path / "c" / "sub" / "deep").unlink()
    os.rmdir(mount.path / "c" / "sub")
    for directory in ("a/", "b/", "c/"):
        head = bucket.head_object(mount.prefix + directory)
        assert head.headers["Content-Type"] == "application/x-directory"  # ossfs's directory format
        assert int(head.headers["x-oss-meta-mode"]) & 0o170000 == 0o040000
    mount.remount()  # no cache remembers anything
    assert sorted(os.listdir(mount.path)) == ["a", "b", "c", "moved"]
    assert os.listdir(mount.path / "a") == [] and os.listdir(mount.path / "c") == []
    (mount.path / "a" / "z").write_bytes(b"fine")
    assert bucket.get_object(mount.prefix + "a/z").read() == b"fine"


def test_removing_an_entry_that_is_not_the_last_writes_no_marker(make_mount):
    mount = make_mount()
    bucket = bucket_of(mount)
    for name in ("a/x", "a/y"):
        bucket.put_object(mount.prefix + name, b"1")
    os.unlink(mount.path / "a" / "x")
    assert not bucket.object_exists(mount.prefix + "a/")
    assert os.listdir(mount.path / "a") == ["y"]
