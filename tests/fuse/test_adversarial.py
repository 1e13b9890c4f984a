"""Adversarial checks of pipelined LIST pages, the plain-connection transport under faults and write-only handles
with direct_io, each through a real mount of the project's own server."""

from __future__ import annotations

import errno
import mmap
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ossmount.testing import wait_for

# Names that sort around '/' (0x2f) and need url-encoding in a listing: '%', '+', ' ', unicode, '-' '.' '0'.
ODD_NAMES = ["a", "a b", "a+b", "a%b", "a%2Fb", "a-b", "a.b", "a0", "a~", "é", "日本", "z z", "%", "+", "~x"]
ODD_DIRS = ["a-", "a+", "b%20c", "é+"]  # directories sorting among the files


@pytest.mark.parametrize("options", ["readdir_optimize,list_object_max_keys=2",
                                     "listobjectsv1,readdir_optimize,list_object_max_keys=2",
                                     "listobjectsv1,list_object_max_keys=3",
                                     "list_object_max_keys=1"])
def test_odd_names_list_completely_over_tiny_pages(make_mount, options):
    mount = make_mount(options)
    bucket = mount.server.oss2_bucket(mount.bucket)
    for name in ODD_NAMES:
        bucket.put_object(f"d/{name}", name.encode())
    for name in ODD_DIRS:
        bucket.put_object(f"d/{name}/inner", b"i")
    expected = sorted(set(ODD_NAMES) | set(ODD_DIRS))
    assert sorted(os.listdir(mount.path / "d")) == expected
    for name in ODD_NAMES:
        assert (mount.path / "d" / name).read_bytes() == name.encode()
    for name in ODD_DIRS:
        assert os.listdir(mount.path / "d" / name) == ["inner"]


PAGE = 5
PAGED = 4 * PAGE + 2


def paged(make_mount, options: str):
    mount = make_mount(f"{options},list_object_max_keys={PAGE}")
    bucket = mount.server.oss2_bucket(mount.bucket)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: bucket.put_object(f"d/f{i:04d}", b"x"), range(PAGED)))
    os.stat(mount.path / "d")
    return mount, bucket


def list_op(options: str) -> str:
    return "ListObjects" if "listobjectsv1" in options else "ListObjectsV2"


@pytest.mark.parametrize("options", ["readdir_optimize", "listobjectsv1", ""])
def test_keys_changed_between_pages_never_duplicate_or_lose_a_steady_name(make_mount, options):
    """Page 2 is held while another client deletes a listed key, adds keys before and after the held point: the
    listing has every key that existed throughout, each once."""
    mount, bucket = paged(make_mount, options)
    admin = mount.server.admin
    admin.set_faults([{"op": list_op(options), "action": "hold", "delay_ms": 60_000, "skip": 1, "count": 1}])
    listed: list[list[str]] = []
    reader = threading.Thread(target=lambda: listed.append(os.listdir(mount.path / "d")))
    try:
        reader.start()
        wait_for(admin.held, lambda count: count == 1, timeout=60)
        bucket.delete_object("d/f0001")  # on page 1, already listed
        bucket.delete_object(f"d/f{PAGED - 1:04d}")  # on the last page, not yet listed
        bucket.put_object("d/e", b"")  # before everything listed
        bucket.put_object("d/g", b"")  # after everything
    finally:
        admin.clear_faults()
        reader.join(120)
    names = listed[0]
    assert len(names) == len(set(names)), names
    steady = {f"f{i:04d}" for i in range(PAGED)} - {"f0001", f"f{PAGED - 1:04d}"}
    assert steady <= set(names), sorted(steady - set(names))
    assert f"f{PAGED - 1:04d}" not in names  # listed after its deletion
    assert "g" in names


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("options", ["readdir_optimize", "listobjectsv1"])
def test_a_listing_interrupted_mid_pages_leaves_the_next_one_complete(make_mount, options, sig):
    """`ls` is stopped (Ctrl-C, kill) while page 2 is held in the server. pyfuse3 3.5 does not pass FUSE_INTERRUPT
    on, so the readdir goes on until the page arrives (the kernel waits for an answer once a request is in
    userspace, even for SIGKILL); released, `ls` ends, and the next listing is complete."""
    mount, bucket = paged(make_mount, options)
    admin = mount.server.admin
    op = list_op(options)
    admin.set_faults([{"op": op, "action": "hold", "delay_ms": 60_000, "skip": 1, "count": 1}])
    try:
        # SIGINT reaches ls at its default action even in a suite started in the background (tests/conftest.py).
        ls = subprocess.Popen(["ls", "-f", str(mount.path / "d")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(admin.held, lambda count: count == 1, timeout=60)
        time.sleep(0.2)
        ls.send_signal(sig)
        time.sleep(0.5)
    finally:
        admin.clear_faults()
    ls.wait(timeout=60)
    assert ls.returncode != 0
    assert sorted(os.listdir(mount.path / "d")) == [f"f{i:04d}" for i in range(PAGED)]
    assert mount.process.poll() is None


MiB = 1024 * 1024


@pytest.fixture(scope="module")
def mount(local_server, tmp_path_factory):
    from tests.fuse.conftest import running_mount

    with running_mount(local_server, tmp_path_factory.mktemp("adversarial")) as mount:
        yield mount


@pytest.fixture
def workdir(mount, request):
    path = mount.path / request.node.name.replace("[", "_").replace("]", "")[:80]
    path.mkdir()
    return path


@pytest.fixture
def bucket(mount, local_server):
    return local_server.oss2_bucket(mount.bucket)


def test_mmap_beside_a_write_only_writer(mount, workdir):
    """What a reader's MAP_SHARED mmap does beside a write-only handle writing past the page cache: ENODEV (the
    kernel refuses shared maps of direct_io handles; MAP_PRIVATE works) for a handle opened while the writer is
    open, for that handle's whole life; a handle opened after the writer closed maps normally. Pins the behaviour
    the direct_io writer brought (before it, such a reader could map)."""
    path = workdir / "mapped"
    path.write_bytes(b"o" * 8192)
    writer = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(writer, b"n" * 100, 0)
        reader = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(OSError) as raised:
                mmap.mmap(reader, 0, mmap.MAP_SHARED, mmap.PROT_READ)
            assert raised.value.errno == errno.ENODEV
            private = mmap.mmap(reader, 0, mmap.MAP_PRIVATE, mmap.PROT_READ)
            assert private[:101] == b"n" * 100 + b"o"
            private.close()
        finally:
            os.close(reader)
    finally:
        os.close(writer)
    writer = os.open(path, os.O_WRONLY)
    reader = os.open(path, os.O_RDONLY)  # opened beside the writer: its handle stays past the cache for its life
    os.close(writer)
    try:
        with pytest.raises(OSError) as raised:
            mmap.mmap(reader, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        assert raised.value.errno == errno.ENODEV
    finally:
        os.close(reader)
    reader = os.open(path, os.O_RDONLY)  # opened after the writer closed: mapping works again
    try:
        shared = mmap.mmap(reader, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        assert shared[:101] == b"n" * 100 + b"o" and len(shared) == 8192
        shared.close()
    finally:
        os.close(reader)


def test_reader_mapping_before_a_write_only_writer_sees_its_bytes(mount, workdir):
    """A reader maps the file, then a write-only writer opens (not alone: through the cache) and writes: the
    mapping shows the new bytes."""
    path = workdir / "premapped"
    path.write_bytes(b"o" * 8192)
    reader = os.open(path, os.O_RDONLY)
    try:
        shared = mmap.mmap(reader, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        assert shared[:4] == b"oooo"
        writer = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(writer, b"nnnn", 0)
            assert shared[:4] == b"nnnn"
        finally:
            os.close(writer)
        shared.close()
    finally:
        os.close(reader)
    assert path.read_bytes()[:5] == b"nnnno"


def test_stale_pages_of_a_closed_reader_are_not_served_after_a_direct_write(mount, workdir):
    """A reader fills the page cache and closes; a write-only writer (alone, past the cache) rewrites the middle
    and appends; every later read (read() and mmap) sees the writer's bytes and the new size."""
    path = workdir / "stale"
    old = os.urandom(3 * 4096 + 17)
    path.write_bytes(old)
    assert path.read_bytes() == old  # pages cached
    with open(path, "r+b", buffering=0) as f:  # read-write too, another way in
        assert f.read() == old
    writer = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(writer, b"tail")
        assert os.stat(path).st_size == len(old) + 4
    finally:
        os.close(writer)
    writer = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(writer, b"MID", 4096)
    finally:
        os.close(writer)
    expected = old[:4096] + b"MID" + old[4099:] + b"tail"
    assert os.stat(path).st_size == len(expected)
    assert path.read_bytes() == expected
    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as shared:
            assert shared[:] == expected
    finally:
        os.close(fd)


def test_truncate_while_a_write_only_writer_writes(mount, workdir, bucket):
    """dd-like writer at growing offsets; another process truncates the file to 10 bytes between its writes; the
    writer's next write past the end leaves a hole of zeros. Stat and the object agree with a local file."""
    path = workdir / "truncated"
    writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(writer, b"a" * 5000, 0)
        subprocess.run(["truncate", "-s", "10", str(path)], check=True)
        assert os.stat(path).st_size == 10
        os.pwrite(writer, b"b" * 100, 5000)
        assert os.stat(path).st_size == 5100
    finally:
        os.close(writer)
    expected = b"a" * 10 + b"\0" * 4990 + b"b" * 100
    assert os.stat(path).st_size == len(expected)
    assert path.read_bytes() == expected
    key = str(path.relative_to(mount.path))
    assert bucket.get_object(key).read() == expected


@pytest.mark.parametrize("how", ["rename", "unlink"])
def test_rename_or_unlink_while_a_write_only_writer_is_open(mount, workdir, bucket, how):
    path = workdir / "moving"
    writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(writer, b"x" * 70000)
        if how == "rename":
            os.rename(path, workdir / "moved")
        else:
            os.unlink(path)
        os.write(writer, b"y" * 100)
        reader_path = workdir / "moved"
        if how == "rename":
            with open(reader_path, "rb") as f:
                assert f.read() == b"x" * 70000 + b"y" * 100
    finally:
        os.close(writer)
    assert not path.exists()
    if how == "rename":
        assert (workdir / "moved").read_bytes() == b"x" * 70000 + b"y" * 100
    assert sorted(os.listdir(workdir)) == (["moved"] if how == "rename" else [])


def test_shell_redirections_and_dd_through_the_mount(mount, workdir):
    """`>` , `>>`, dd seek conv=notrunc, cp over an existing file, while a reader holds the file open."""
    path = workdir / "shell"
    subprocess.run(["sh", "-c", f"printf hello > '{path}'; printf ' world' >> '{path}'"], check=True)
    assert path.read_bytes() == b"hello world"
    with open(path, "rb") as held:
        subprocess.run(["dd", f"of={path}", "bs=1", "seek=6", "conv=notrunc", "status=none"], input=b"W", check=True)
        held.seek(0)
        assert held.read() == b"hello World"
    subprocess.run(["sh", "-c", f"printf '!!' >> '{path}'"], check=True)
    assert path.read_bytes() == b"hello World!!"
    source = workdir / "src"
    source.write_bytes(b"z" * 3)
    subprocess.run(["cp", str(source), str(path)], check=True)
    assert path.read_bytes() == b"zzz" and os.stat(path).st_size == 3


@pytest.mark.parametrize("fault", [
    {"op": "GetObject", "action": "reset", "after_bytes": 70_000, "probability": 0.5},
    {"op": "GetObject", "action": "reset", "after_bytes": 0, "probability": 0.5},
    {"op": "GetObject", "action": "hold", "delay_ms": 60_000, "probability": 0.3},
    {"op": "GetObject", "action": "bandwidth", "bytes_per_second": 200_000, "probability": 0.3},
])
def test_many_readers_through_resets_and_stalls_read_exact_bytes(make_mount, fault):
    """16 files read at once by 16 threads while the server resets, holds (past readwrite_timeout) or trickles
    answers: every read returns the exact bytes, nothing hangs, the connections stay bounded, and reads after
    the faults reuse the pool."""
    mount = make_mount("readwrite_timeout=3,parallel_count=4")
    bucket = mount.server.oss2_bucket(mount.bucket)
    blobs = {f"f{i:02d}": os.urandom(MiB + i * 4099) for i in range(16)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: bucket.put_object(item[0], item[1]), blobs.items()))
    bucket.put_object("after", b"q" * 5000)
    admin = mount.server.admin
    admin.reset_connections()
    admin.set_faults([{**fault, "count": 12}], seed=7)

    def read(name: str) -> bool | str:
        try:
            return (mount.path / name).read_bytes() == blobs[name]
        except OSError as exc:
            return f"{name}: {exc}"

    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(read, blobs))
    finally:
        admin.clear_faults()
    assert all(r is True for r in results), (results, mount.log[-3000:])
    assert admin.connections()["peak"] <= 64, admin.connections()
    assert (mount.path / "after").read_bytes() == b"q" * 5000
    assert mount.process.poll() is None


@pytest.mark.parametrize("options", ["readdir_optimize", "listobjectsv1,readdir_optimize", ""])
@pytest.mark.parametrize("fault", [
    {"action": "reset", "after_bytes": 400, "skip": 1, "count": 2},  # page 2 cut after its head, twice
    {"action": "reset", "after_bytes": 0, "skip": 2, "count": 1},  # page 3 reset before its answer
    {"action": "error", "status": 500, "code": "InternalError", "skip": 3, "count": 2},  # the last page, 500 twice
    {"action": "bandwidth", "bytes_per_second": 3000, "skip": 1, "count": 3},  # pages 2-4 trickle
])
def test_faults_on_any_page_leave_the_listing_complete(make_mount, options, fault):
    mount, bucket = paged(make_mount, options)
    for name in ODD_NAMES:
        bucket.put_object(f"d/{name}", b"")
    admin = mount.server.admin
    admin.set_faults([{"op": list_op(options), **fault}])
    try:
        names = os.listdir(mount.path / "d")
    finally:
        admin.clear_faults()
    assert len(names) == len(set(names))
    assert sorted(names) == sorted([f"f{i:04d}" for i in range(PAGED)] + ODD_NAMES)
