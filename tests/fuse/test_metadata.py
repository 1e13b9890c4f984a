"""Metadata through a real mount (issue 11) and cached paths during a stall (issue 12, item 5).

Everything is asserted with counters, never timings: the server's requests per OSS operation, and the mount's
own statistics from its status file (FUSE requests per operation, attribute builds, persistent-cache hits).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ossmount.fs import persistent
from ossmount.testing import wait_for

FILE_META = {"x-oss-meta-mode": str(stat.S_IFREG | 0o604), "x-oss-meta-uid": "123", "x-oss-meta-gid": "456",
             "x-oss-meta-mtime": "1700000000"}


def put_many(bucket, keys, body: bytes = b"", headers: dict | None = None) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: bucket.put_object(key, body, headers=headers), keys))


def requests(server) -> dict[str, int]:
    return {op: n for op, n in server.admin.counters().items() if n}


def status_mount(make_mount, tmp_path: Path, options: str = "", **kwargs):
    """A mount that writes its status file (filesystem statistics) every 0.1 s and at unmount."""
    status = tmp_path / f"status-{len(list(tmp_path.glob('status-*')))}.json"
    mount = make_mount(options, extra_args=("--status-file", str(status), "--status-interval", "0.1"), **kwargs)
    mount.status_path = status
    return mount


def fs_statistics(mount) -> dict:
    """The filesystem statistics of the mount's final status document (call after unmount)."""
    return json.loads(mount.status_path.read_text())["filesystem"]


def ls_l(path: Path) -> list[str]:
    out = subprocess.run(["ls", "-l", "--time-style=+%s", str(path)], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def wait_until_racy_second_passed() -> None:
    """HEAD answers are kept only when Last-Modified is RACY_SECONDS older than the answer (persistent.py rule 3)."""
    time.sleep(persistent.RACY_SECONDS + 0.2)


def test_ls_l_sends_no_lookup_and_no_xattr_request_per_entry(make_mount, tmp_path):
    """readdirplus gives `ls -l` every entry's attributes; the security/ACL xattrs ls asks for on each entry are
    answered EOPNOTSUPP, which coreutils remembers per filesystem: two getxattr requests per `ls -l`."""
    mount = status_mount(make_mount, tmp_path)
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"d/f{i:03d}" for i in range(300)], b"abc", FILE_META)
    bucket.put_object("d/sub/inner", b"x")
    bucket.put_object("tagged", b"x", headers={"x-oss-meta-xattr": "%7B%22user.k%22%3A%22dg%3D%3D%22%7D"})
    first = ls_l(mount.path / "d")
    second = ls_l(mount.path / "d")
    assert first == second and len(first) == 302  # "total" + 300 files + sub
    assert all(line.split()[:4] == ["-rw----r--", "1", "123", "456"] for line in first[1:-1])
    with pytest.raises(OSError) as info:
        os.getxattr(mount.path / "d" / "f000", "security.selinux")
    assert info.value.errno == errno.EOPNOTSUPP  # nothing stored: no labels, no ACLs here
    with pytest.raises(OSError) as info:
        os.getxattr(mount.path / "d" / "f000", "system.posix_acl_access")
    assert info.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as info:
        os.getxattr(mount.path / "tagged", "security.selinux")
    assert info.value.errno == errno.ENODATA  # it stores attributes, not this one
    assert os.getxattr(mount.path / "tagged", "user.k") == b"v"
    mount.unmount()
    fuse = fs_statistics(mount)["fuse_requests"]
    assert fuse.get("getxattr", 0) <= 2 * 2 + 4, fuse
    assert fuse.get("lookup", 0) <= 2 + 2, fuse  # d, tagged (and no entry of d)
    assert fuse.get("getattr", 0) <= 4, fuse


def test_readdir_builds_each_entry_once(make_mount, tmp_path):
    """The kernel takes about 200 entries per readdir call: each is built once, not once per remaining call."""
    mount = status_mount(make_mount, tmp_path, "readdir_optimize")
    count = 2500
    put_many(mount.server.oss2_bucket(mount.bucket), [f"big/f{i:05d}" for i in range(count)])
    assert len(os.listdir(mount.path / "big")) == count
    assert len(ls_l(mount.path / "big")) == count + 1
    mount.unmount()
    statistics = fs_statistics(mount)
    assert statistics["fuse_requests"]["readdir"] >= 2 * (count // 400), statistics  # many calls per listing
    assert statistics["attribute_builds"] <= count + 10, statistics


def test_readdir_optimize_ls_l_and_find_send_no_head_per_entry(make_mount):
    """With readdir_optimize attributes come from the listing: `ls -l` of 1,000 objects costs 2 LISTs (the
    directory's lookup and its one page) and no HEAD per entry; `find` over a tree one LIST per directory."""
    mount = make_mount("readdir_optimize")
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"d/f{i:04d}" for i in range(1000)], b"12345")
    tree = ["tree/"] + [f"tree/a{i}/" for i in range(3)] + [f"tree/a{i}/b{j}/" for i in range(3) for j in range(3)]
    put_many(bucket, tree, headers={"x-oss-meta-mode": str(stat.S_IFDIR | 0o755)})
    put_many(bucket, [f"tree/a{i}/b{j}/f{k}" for i in range(3) for j in range(3) for k in range(20)])
    mount.server.admin.reset_counters()
    lines = ls_l(mount.path / "d")
    assert len(lines) == 1001 and all(line.split()[4] == "5" for line in lines[1:])
    counters = requests(mount.server)
    assert counters.get("ListObjectsV2", 0) <= 2 and counters.get("HeadObject", 0) <= 1, counters
    mount.server.admin.reset_counters()
    found = subprocess.run(["find", str(mount.path / "tree")], check=True, capture_output=True, text=True)
    assert len(found.stdout.splitlines()) == 1 + 3 + 9 + 180
    counters = requests(mount.server)
    assert counters.get("HeadObject", 0) <= 2, counters  # `tree` itself (its name, its marker)
    assert counters.get("ListObjectsV2", 0) <= 1 + 13, counters


def test_remount_ls_l_of_an_unchanged_directory_sends_no_head(make_mount, tmp_path):
    """The persistent stat cache (stat_cache_dir=DIR) keeps each HEAD answer: after a remount, the listing's ETag
    and Last-Modified prove the objects unchanged, so `ls -l` needs its LIST and no HEAD."""
    mount = status_mount(make_mount, tmp_path, f"stat_cache_dir={tmp_path / 'cache'}")
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"f{i:03d}" for i in range(200)], b"abc", FILE_META)
    bucket.put_object("d/", b"", headers={"x-oss-meta-mode": str(stat.S_IFDIR | 0o711)})
    put_many(bucket, [f"d/g{i:03d}" for i in range(100)], b"ab", FILE_META)
    wait_until_racy_second_passed()
    mount.server.admin.reset_counters()
    root, sub = ls_l(mount.path), ls_l(mount.path / "d")
    assert requests(mount.server).get("HeadObject", 0) >= 300
    mount.remount()
    mount.server.admin.reset_counters()
    assert ls_l(mount.path) == root
    # One HEAD: the marker of the subdirectory `d`, which a listing names without its ETag; none per object.
    assert requests(mount.server) == {"ListObjectsV2": 1, "HeadObject": 1}
    mount.server.admin.reset_counters()
    assert ls_l(mount.path / "d") == sub  # its entry came with the root's listing: no lookup
    assert requests(mount.server) == {"ListObjectsV2": 1}
    mount.remount()
    mount.server.admin.reset_counters()
    assert ls_l(mount.path / "d") == sub
    # The lookup of `d` (the persistent cache saw its marker): a one-key LIST of the keys starting with `d` shows
    # the marker unchanged and no object `d` before it; then its listing. No HEAD at all.
    assert requests(mount.server) == {"ListObjectsV2": 2}
    assert (tmp_path / "cache" / persistent.FILE_NAME).exists()
    mount.unmount()
    statistics = fs_statistics(mount)
    assert statistics["persistent_hits"] == 101 and statistics["persistent_misses"] == 0, statistics


def test_changed_objects_are_never_served_from_the_persistent_cache(make_mount, tmp_path):
    """Another client's PUT (even of the same bytes, which keeps the ETag) or metadata CopyObject moves
    Last-Modified: those objects are HEADed again after a remount; the unchanged ones are not."""
    mount = make_mount(f"stat_cache_dir={tmp_path / 'cache'}")
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"f{i}" for i in range(10)], b"same", FILE_META)
    wait_until_racy_second_passed()
    before = {line.split()[-1]: line.split() for line in ls_l(mount.path)[1:]}
    mount.unmount()
    bucket.copy_object(mount.bucket, "f1", "f1", headers={**FILE_META, "x-oss-meta-mode": str(stat.S_IFREG | 0o600),
                                                           "x-oss-metadata-directive": "REPLACE"})
    bucket.put_object("f2", b"same", headers={**FILE_META, "x-oss-meta-uid": "999"})
    bucket.put_object("f3", b"longer body", headers=FILE_META)
    bucket.delete_object("f4")
    assert bucket.head_object("f1").etag == bucket.head_object("f2").etag == bucket.head_object("f0").etag
    mount.start()
    mount.server.admin.reset_counters()
    after = {line.split()[-1]: line.split() for line in ls_l(mount.path)[1:]}
    assert requests(mount.server) == {"ListObjectsV2": 1, "HeadObject": 3}
    assert after["f1"][0] == "-rw-------" and before["f1"][0] == "-rw----r--"
    assert after["f2"][2] == "999" and before["f2"][2] == "123"
    assert after["f3"][4] == "11"
    assert "f4" not in after
    assert {name: after[name] for name in after if name not in ("f1", "f2", "f3")} == \
        {name: before[name] for name in before if name not in ("f1", "f2", "f3", "f4")}


@pytest.mark.parametrize("window", [60, 0])
def test_a_name_missing_from_a_fresh_listing_is_answered_without_a_request(make_mount, window):
    """A name that a listing OSS returned less than open_check_window seconds ago does not show does not exist;
    after that window the lookup asks OSS (HEAD, and LIST for a directory of that name)."""
    mount = make_mount(f"open_check_window={window}")
    mount.server.oss2_bucket(mount.bucket).put_object("d/present", b"x")
    assert os.listdir(mount.path / "d") == ["present"]
    mount.server.admin.reset_counters()
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "d" / "absent")
    if window:
        assert requests(mount.server) == {}
    else:
        assert requests(mount.server) == {"HeadObject": 1, "ListObjectsV2": 1}


@contextlib.contextmanager
def stalled_creator(mount, path):
    """A process that creates `path` (mode 0640), prints "created", writes b'written during a stall' and closes
    it, started while the test holds the server's requests. When the block ends its close must still be waiting
    for the upload; the server then answers again and the process must succeed. Always stopped."""
    creator = subprocess.Popen([sys.executable, "-c", (
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o640)\n"
        "print('created', flush=True)\n"
        "os.write(fd, b'written during a stall')\n"
        "os.close(fd)\n"), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        yield creator
        assert creator.poll() is None  # its close still waits for the upload
        mount.server.admin.clear_faults()  # the server answers again (held requests go on)
        assert creator.wait(timeout=120) == 0
    finally:
        mount.server.admin.clear_faults()
        if creator.poll() is None:
            creator.kill()
        creator.wait()


def test_a_cached_stat_answers_while_a_create_waits_on_a_stalled_server(make_mount, tmp_path):
    """Issue 12, item 5. The kernel holds a directory's lock for a whole create, and a lookup of a name it has
    no dentry for (dropped under memory pressure) waits for that lock. With a stalled server the create's
    lookup and upload therefore answer from local state after a short wait and the upload completes at
    close: a `stat` of a cached file returns while the creator is still waiting for OSS."""
    if not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        pytest.skip("needs root to drop the kernel's dentries")
    mount = make_mount("open_check_window=0")  # the create's lookup must ask OSS (listing not fresh)
    bucket = mount.server.oss2_bucket(mount.bucket)
    for i in range(3):
        bucket.put_object(f"d/f{i}", b"hello %d" % i)
    assert os.stat(mount.path / "d" / "f1").st_size == 7  # stat, cat, ls: everything about d is cached
    assert (mount.path / "d" / "f1").read_bytes() == b"hello 1"
    assert sorted(os.listdir(mount.path / "d")) == ["f0", "f1", "f2"]
    mount.server.admin.reset_requests()  # the request log records answered requests
    with open("/proc/sys/vm/drop_caches", "w") as control:
        control.write("2")  # the kernel forgets its dentries, as under memory pressure
    # The server stops answering: every request is held inside it until released (or 120 s pass).
    mount.server.admin.set_faults([{"action": "hold", "op": "PutObject", "delay_ms": 120_000},
                                   {"action": "hold", "op": "*", "delay_ms": 120_000}])
    with stalled_creator(mount, mount.path / "d" / "new") as creator:
        def put_held() -> int:
            return mount.server.admin.faults()["rules"][0]["fired"]

        assert wait_for(mount.server.admin.held, bool, timeout=60), "the creator never reached the server"
        # The creator now waits on OSS while the kernel holds the directory's lock. Without the fix this stat
        # blocks until the server answers (120 s) and the bounded wait fails.
        checked = subprocess.run(["stat", "-c", "%s", str(mount.path / "d" / "f1")], capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode == 0 and checked.stdout.strip() == "7"
        assert wait_for(put_held, bool, timeout=60), "the create's upload never reached the server"
        # Ordering, not speed: the stat came back before the server answered any request of the create.
        assert mount.server.admin.held() >= 1
        assert [r for r in mount.server.admin.requests() if r["op"] == "PutObject"] == []  # none answered yet
        assert creator.stdout.readline().strip() == "created"  # the create itself did not wait for OSS
    assert bucket.get_object("d/new").read() == b"written during a stall"
    assert int(bucket.head_object("d/new").headers["x-oss-meta-mode"]) == stat.S_IFREG | 0o640
    assert sorted(os.listdir(mount.path / "d")) == ["f0", "f1", "f2", "new"]


def test_a_file_created_during_a_stalled_upload_is_listed_before_oss_has_it(make_mount):
    """A create answered from local state while its PutObject is stalled (stalls.py) makes a file that exists
    here and not yet on OSS: a listing fetched meanwhile (the directory's first) must show it, not hide it until
    the upload lands; and after the upload the listing shows it as OSS has it."""
    mount = make_mount("open_check_window=0")
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("d/old", b"on OSS")
    mount.server.admin.reset_requests()  # the request log records answered requests, of every bucket
    mount.server.admin.set_faults([{"action": "hold", "op": "PutObject", "delay_ms": 120_000}])
    with stalled_creator(mount, mount.path / "d" / "new") as creator:
        assert creator.stdout.readline().strip() == "created"  # answered here while its upload is held
        assert mount.server.admin.held() == 1  # the create's PutObject
        assert [r for r in mount.server.admin.requests() if r["key"] == "d/new" and r["op"] == "PutObject"] == []
        assert sorted(os.listdir(mount.path / "d")) == ["new", "old"]
    assert bucket.get_object("d/new").read() == b"written during a stall"
    assert sorted(os.listdir(mount.path / "d")) == ["new", "old"]
    assert os.stat(mount.path / "d" / "new").st_size == len(b"written during a stall")


def test_a_chmod_after_a_remount_keeps_the_headers_of_an_entry_from_the_persistent_cache(make_mount, tmp_path):
    """An entry served from the persistent stat cache carries what its HEAD said, Cache-Control and friends
    included, so a metadata change (CopyObject REPLACE) sends them again although no HEAD was made."""
    mount = make_mount(f"stat_cache_dir={tmp_path / 'cache'}")
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("page.html", b"<p>", headers={**FILE_META, "Cache-Control": "max-age=60",
                                                     "Content-Disposition": "inline"})
    wait_until_racy_second_passed()
    ls_l(mount.path)
    mount.remount()
    mount.server.admin.reset_counters()
    ls_l(mount.path)
    assert requests(mount.server) == {"ListObjectsV2": 1}  # from the persistent cache
    os.chmod(mount.path / "page.html", 0o640)
    headers = bucket.head_object("page.html").headers
    assert int(headers["x-oss-meta-mode"]) == stat.S_IFREG | 0o640
    assert headers["Cache-Control"] == "max-age=60" and headers["Content-Disposition"] == "inline"
