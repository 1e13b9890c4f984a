"""ossfs 1.91.10's on-bucket format, read and written through a real mount (issue 6, A7 and B1-B6).

`../shared/docs/ossfs-options.md` (measured on a real ossfs build) is the reference: objects written here by
oss2 are what ossfs writes, and what the mount writes is checked against what ossfs would store.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time

import oss2
import pytest

from ossmount.fs.attrs import parse_time_ns


def bucket_of(mount) -> oss2.Bucket:
    return mount.server.oss2_bucket(mount.bucket)


def head(mount, key: str):
    return bucket_of(mount).head_object(mount.prefix + key)


@pytest.fixture(params=["", "p/"], ids=["bucket-root", "prefixed"])
def mount(request, make_mount):
    return make_mount(prefix=request.param)


# ---- A7: times ----------------------------------------------------------------------------------------

def test_touch_with_nanoseconds_is_exact_and_stored_as_ossfs_reads_it(mount):
    f = mount.path / "f"
    f.write_bytes(b"x")
    subprocess.run(["touch", "-d", "2024-01-02 03:04:05.123456789", str(f)], check=True,
                   env={**os.environ, "TZ": "UTC"})
    shown = subprocess.run(["stat", "-c", "%y", str(f)], capture_output=True, text=True, check=True,
                           env={**os.environ, "TZ": "UTC"}).stdout
    assert ".123456789" in shown, shown
    stored = head(mount, "f").headers["x-oss-meta-mtime"]
    assert stored == "1704164645.123456789"  # epoch seconds with the fraction ossfs reads
    mount.remount()
    assert os.stat(mount.path / "f").st_mtime_ns == 1704164645_123456789


@pytest.mark.parametrize("tool", ["cp -p", "rsync -a"])
def test_cp_p_and_rsync_a_keep_identical_mtimes(mount, tmp_path, tool):
    if tool.startswith("rsync") and shutil.which("rsync") is None:
        pytest.fail("rsync is not installed: .ci/setup installs it")
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(100_000))
    os.utime(source, ns=(1_600_000_000_111_222_333, 1_650_000_000_987_654_321))
    subprocess.run([*tool.split(), str(source), str(mount.path / "copy.bin")], check=True)
    assert os.stat(mount.path / "copy.bin").st_mtime_ns == os.stat(source).st_mtime_ns
    # and back out of the mount, and within it
    subprocess.run([*tool.split(), str(mount.path / "copy.bin"), str(tmp_path / "back.bin")], check=True)
    subprocess.run([*tool.split(), str(mount.path / "copy.bin"), str(mount.path / "again.bin")], check=True)
    assert os.stat(tmp_path / "back.bin").st_mtime_ns == os.stat(source).st_mtime_ns
    mount.remount()
    for name in ("copy.bin", "again.bin"):
        assert os.stat(mount.path / name).st_mtime_ns == 1_650_000_000_987_654_321


def stored_ctime(mount, key: str) -> int:
    return parse_time_ns(head(mount, key).headers["x-oss-meta-ctime"])


def test_ctime_changes_on_rename_setxattr_chmod_chown_and_writes(mount):
    (mount.path / "f").write_bytes(b"x")
    os.mkdir(mount.path / "d")
    steps = [
        ("f", lambda: os.rename(mount.path / "f", mount.path / "g"), "g"),
        ("g", lambda: os.setxattr(mount.path / "g", "user.k", b"v"), "g"),
        ("d/", lambda: os.setxattr(mount.path / "d", "user.k", b"v"), "d/"),
        ("d/", lambda: os.rename(mount.path / "d", mount.path / "e"), "e/"),
        ("g", lambda: os.chmod(mount.path / "g", 0o600), "g"),
        ("g", lambda: os.chown(mount.path / "g", 123, 456), "g"),
        ("g", lambda: (mount.path / "g").write_bytes(b"new"), "g"),
        ("e/", lambda: os.removexattr(mount.path / "e", "user.k"), "e/"),
    ]
    for before_key, step, after_key in steps:
        before = stored_ctime(mount, before_key)
        time.sleep(0.01)
        step()
        assert stored_ctime(mount, after_key) > before, (before_key, after_key)
    mount.remount()
    assert os.stat(mount.path / "g").st_ctime_ns == stored_ctime(mount, "g")


# ---- B1/B2: directory objects ---------------------------------------------------------------------------

def test_mkdir_writes_what_ossfs_writes(mount):
    os.mkdir(mount.path / "made", 0o751)
    headers = head(mount, "made/").headers
    assert headers["Content-Type"] == "application/x-directory"
    assert int(headers["Content-Length"]) == 0
    assert int(headers["x-oss-meta-mode"]) == stat.S_IFDIR | (0o751 & ~os.umask(os.umask(0)))
    assert {"x-oss-meta-uid", "x-oss-meta-gid", "x-oss-meta-mtime"} <= set(headers)


def test_dir_objects_of_any_content_type_are_directories_with_reachable_children(mount):
    bucket = bucket_of(mount)
    bucket.put_object(mount.prefix + "html/", b"", headers={"Content-Type": "text/html"})
    bucket.put_object(mount.prefix + "html/child.txt", b"child")
    bucket.put_object(mount.prefix + "sized/", b"0123", headers={"Content-Type": "testtype"})
    bucket.put_object(mount.prefix + "sized/sub/leaf", b"leaf")
    bucket.put_object(mount.prefix + "regular/", b"a file", headers={"x-oss-meta-mode": str(stat.S_IFREG | 0o644)})
    assert sorted(os.listdir(mount.path)) == ["html", "regular", "sized"]
    assert stat.S_ISDIR(os.stat(mount.path / "html").st_mode)
    assert stat.S_ISDIR(os.stat(mount.path / "sized").st_mode)
    assert (mount.path / "html" / "child.txt").read_bytes() == b"child"
    assert (mount.path / "sized" / "sub" / "leaf").read_bytes() == b"leaf"
    assert stat.S_ISREG(os.stat(mount.path / "regular").st_mode)
    assert (mount.path / "regular").read_bytes() == b"a file"


def test_nocomplement_stat_keeps_the_content_type_rule_and_warns(make_mount):
    mount = make_mount("nocomplement_stat")
    bucket = bucket_of(mount)
    bucket.put_object("typed/", b"", headers={"Content-Type": "text/html", "x-oss-meta-mode": "493"})
    bucket.put_object("plain/", b"", headers={"Content-Type": "application/x-directory", "x-oss-meta-mode": "493"})
    assert stat.S_ISREG(os.stat(mount.path / "typed").st_mode)
    assert stat.S_ISDIR(os.stat(mount.path / "plain").st_mode)
    warnings = [line for line in mount.log.splitlines() if "'typed/'" in line]
    assert len(warnings) == 1 and "complement_stat" in warnings[0]


# ---- B3: rename sets the new name's Content-Type ------------------------------------------------------

def test_rename_sets_the_content_type_of_the_new_extension(mount):
    (mount.path / "x.txt").write_bytes(b"<p>hi</p>")
    before = head(mount, "x.txt").headers
    assert before["Content-Type"] == "text/plain"
    os.rename(mount.path / "x.txt", mount.path / "x.html")
    headers = head(mount, "x.html").headers
    assert headers["Content-Type"] == "text/html"
    for kept in ("x-oss-meta-mode", "x-oss-meta-uid", "x-oss-meta-gid", "x-oss-meta-mtime"):
        assert headers[kept] == before[kept]
    os.rename(mount.path / "x.html", mount.path / "noext")
    assert head(mount, "noext").headers["Content-Type"] == "application/octet-stream"
    assert (mount.path / "noext").read_bytes() == b"<p>hi</p>"


# ---- B4: symlinks -------------------------------------------------------------------------------------

LINK_MODE = str(stat.S_IFLNK | 0o777)


def test_every_symlink_form_ossfs_writes_is_read(mount):
    bucket = bucket_of(mount)
    bucket.put_object(mount.prefix + "in-body", b"target.txt", headers={"x-oss-meta-mode": LINK_MODE})
    bucket.put_object(mount.prefix + "in-meta", b"", headers={
        "x-oss-meta-mode": LINK_MODE, "x-oss-meta-symlink-target": "header:10:target.txt"})
    bucket.put_object(mount.prefix + "encoded", b"", headers={
        "x-oss-meta-mode": LINK_MODE, "x-oss-meta-symlink-target": "header:13:dir%20x/t%C3%A9"})
    bucket.put_object(mount.prefix + "body-marker", b"target.txt", headers={
        "x-oss-meta-mode": LINK_MODE, "x-oss-meta-symlink-target": "body:0:"})
    bucket.put_object(mount.prefix + "ossmount-0.1", b"old/target", headers={
        "x-oss-meta-mode": LINK_MODE, "x-oss-meta-symlink-target": "old/target"})
    bucket.put_object(mount.prefix + "target.txt", b"pointed at")
    for name in ("in-body", "in-meta", "body-marker"):
        assert os.readlink(mount.path / name) == "target.txt", name
        assert (mount.path / name).read_bytes() == b"pointed at"
        assert os.lstat(mount.path / name).st_size == len("target.txt")
    assert os.readlink(mount.path / "encoded") == "dir x/té"
    assert os.readlink(mount.path / "ossmount-0.1") == "old/target"


def test_symlink_in_meta_writes_the_header_form_and_both_read_both(make_mount):
    default = make_mount()
    in_meta = make_mount("symlink_in_meta", bucket=default.bucket)
    os.symlink("../a b/target", in_meta.path / "meta-link")
    os.symlink("../a b/target", default.path / "body-link")
    bucket = bucket_of(default)
    meta_head = bucket.head_object("meta-link")
    assert meta_head.headers["x-oss-meta-symlink-target"] == "header:13:../a%20b/target"
    assert int(meta_head.headers["Content-Length"]) == 0
    body_head = bucket.head_object("body-link")
    assert "x-oss-meta-symlink-target" not in body_head.headers
    assert bucket.get_object("body-link").read() == b"../a b/target"
    for mount in (default, in_meta):
        for name in ("meta-link", "body-link"):
            assert os.readlink(mount.path / name) == "../a b/target"
            assert stat.S_ISLNK(os.lstat(mount.path / name).st_mode)


# ---- B5: special files --------------------------------------------------------------------------------

def test_mkfifo_is_stored_as_ossfs_does_and_works_between_processes(mount):
    fifo = mount.path / "pipe"
    os.mkfifo(fifo, 0o640)
    st = os.stat(fifo)
    assert stat.S_ISFIFO(st.st_mode)
    headers = head(mount, "pipe").headers
    assert int(headers["Content-Length"]) == 0
    assert int(headers["x-oss-meta-mode"]) == stat.S_IFIFO | (0o640 & ~os.umask(os.umask(0)))
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    writer = subprocess.run(["sh", "-c", f"printf 'through the pipe' > '{fifo}'"], timeout=30)
    reader.join(30)
    assert writer.returncode == 0 and received == [b"through the pipe"]
    mount.remount()
    assert stat.S_ISFIFO(os.stat(mount.path / "pipe").st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root (CI runs as root)")
def test_device_nodes_keep_type_and_rdev(mount):
    os.mknod(mount.path / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(mount.path / "loop", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mknod(mount.path / "sock", stat.S_IFSOCK | 0o600)
    mount.remount()
    st = os.stat(mount.path / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    st = os.stat(mount.path / "loop")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 0)
    assert stat.S_ISSOCK(os.stat(mount.path / "sock").st_mode)
    headers = head(mount, "null").headers
    assert int(headers["x-oss-meta-mode"]) == stat.S_IFCHR | 0o600 and headers["x-oss-meta-rdev"] == str(
        os.makedev(1, 3))
    os.unlink(mount.path / "null")
    assert not bucket_of(mount).object_exists(mount.prefix + "null")


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root (CI runs as root)")
def test_tar_x_of_fifos_and_device_nodes_succeeds_as_root(mount, tmp_path):
    archive = tmp_path / "special.tar"
    with tarfile.open(archive, "w") as tar:
        for name, kind, major, minor in (("dev/fifo", tarfile.FIFOTYPE, 0, 0), ("dev/zero", tarfile.CHRTYPE, 1, 5),
                                         ("dev/sda9", tarfile.BLKTYPE, 8, 9)):
            info = tarfile.TarInfo(name)
            info.type, info.devmajor, info.devminor, info.mode, info.mtime = kind, major, minor, 0o640, 1_600_000_000
            tar.addfile(info)
        data = tarfile.TarInfo("dev/plain.txt")
        data.size, data.mtime = 5, 1_600_000_000
        tar.addfile(data, io.BytesIO(b"plain"))
    result = subprocess.run(["tar", "xf", str(archive), "-C", str(mount.path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    mount.remount()
    assert stat.S_ISFIFO(os.stat(mount.path / "dev" / "fifo").st_mode)
    zero = os.stat(mount.path / "dev" / "zero")
    assert stat.S_ISCHR(zero.st_mode) and zero.st_rdev == os.makedev(1, 5) and int(zero.st_mtime) == 1_600_000_000
    assert os.stat(mount.path / "dev" / "sda9").st_rdev == os.makedev(8, 9)
    assert (mount.path / "dev" / "plain.txt").read_bytes() == b"plain"


# ---- B6: statfs --------------------------------------------------------------------------------------

def test_statfs_inode_counts_are_ossfs_ones(mount):
    st = os.statvfs(mount.path)
    assert st.f_files == st.f_ffree == st.f_favail == 2**54 - 1
    assert st.f_namemax == 255


# ---- standard headers survive metadata changes ----------------------------------------------------------

CARRIED = {"Cache-Control": "max-age=600, public", "Content-Disposition": 'attachment; filename="report.csv"',
           "Content-Encoding": "gzip", "Content-Language": "de-DE", "Expires": "Wed, 21 Oct 2037 07:28:00 GMT"}


@pytest.mark.parametrize("options", ["", "nocopyapi"], ids=["CopyObject", "nocopyapi"])
@pytest.mark.parametrize("change", ["chmod", "chown", "touch", "setfattr", "mv"])
def test_metadata_changes_keep_the_objects_standard_headers(make_mount, change, options):
    """A CopyObject with REPLACE drops every header it is not sent; ossfs sends the source's HEAD headers back,
    so a chmod (or chown, utimens, xattr, rename) of an object a web app uploaded keeps its Cache-Control,
    Content-Disposition, Content-Encoding, Content-Language and Expires; with nocopyapi too (download and upload)."""
    mount = make_mount(*([options] if options else []), prefix="h/")
    body = gzip.compress(b"a,b\n1,2\n")
    bucket_of(mount).put_object("h/asset.csv", body, headers=CARRIED)
    path = mount.path / "asset.csv"
    commands = {"chmod": ["chmod", "600", str(path)], "chown": ["chown", "1234:1234", str(path)],
                "touch": ["touch", "-d", "2024-01-02", str(path)],
                "setfattr": ["setfattr", "-n", "user.owner", "-v", "ops", str(path)],
                "mv": ["mv", str(path), str(mount.path / "moved.csv")]}
    subprocess.run(commands[change], check=True)
    key = "moved.csv" if change == "mv" else "asset.csv"
    headers = head(mount, key).headers
    assert {name: headers.get(name) for name in CARRIED} == CARRIED
    assert (mount.path / key).read_bytes() == body  # the stored bytes, not decoded
