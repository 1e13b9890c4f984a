"""Files, directories, renames, links and metadata through one real mount (issue 3, rules 1, 2, 5, 6)."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import subprocess
import urllib.parse
import tarfile
from pathlib import Path

import oss2
import pytest

from ossmount.fs.attrs import decode_xattrs

AT_FDCWD = -100
RENAME_NOREPLACE = 1


def bucket_of(mount) -> oss2.Bucket:
    return mount.server.oss2_bucket(mount.bucket)


def key_of(mount, path: Path) -> str:
    return mount.prefix + str(path.relative_to(mount.path))


def test_file_round_trip_visible_to_oss2(module_mount, workdir):
    """A bucket written through the mount is read correctly by oss2: key, bytes, Content-Type, metadata."""
    data = os.urandom(300_000)
    (workdir / "data.txt").write_bytes(data)
    assert (workdir / "data.txt").read_bytes() == data
    head = bucket_of(module_mount).head_object(key_of(module_mount, workdir / "data.txt"))
    assert head.headers["Content-Type"] == "text/plain"
    assert bucket_of(module_mount).get_object(key_of(module_mount, workdir / "data.txt")).read() == data
    mode = int(head.headers["x-oss-meta-mode"])
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o644
    assert int(head.headers["x-oss-meta-uid"]) == os.getuid()
    assert abs(int(float(head.headers["x-oss-meta-mtime"])) - os.stat(workdir / "data.txt").st_mtime) < 2


def test_content_type_by_extension_case_insensitive(module_mount, workdir):
    (workdir / "PICTURE.PNG").write_bytes(b"x")
    (workdir / "noext").write_bytes(b"x")
    bucket = bucket_of(module_mount)
    assert bucket.head_object(key_of(module_mount, workdir / "PICTURE.PNG")).headers["Content-Type"] == "image/png"
    assert bucket.head_object(key_of(module_mount, workdir / "noext")).headers["Content-Type"] == \
        "application/octet-stream"


def test_mkdir_creates_marker_and_rmdir_refuses_non_empty(module_mount, workdir):
    """mkdir creates `dir/` with mode metadata; rmdir of a non-empty directory is ENOTEMPTY."""
    (workdir / "d").mkdir(mode=0o755)
    head = bucket_of(module_mount).head_object(key_of(module_mount, workdir / "d") + "/")
    assert head.content_length == 0
    assert head.headers["Content-Type"] == "application/x-directory"  # as ossfs 1.91.10 mkdir
    assert stat.S_ISDIR(int(head.headers["x-oss-meta-mode"]))
    (workdir / "d" / "f").write_bytes(b"1")
    with pytest.raises(OSError) as info:
        (workdir / "d").rmdir()
    assert info.value.errno == errno.ENOTEMPTY
    (workdir / "d" / "f").unlink()
    (workdir / "d").rmdir()
    assert not (workdir / "d").exists()
    assert not bucket_of(module_mount).object_exists(key_of(module_mount, workdir / "d") + "/")


def test_unlink(module_mount, workdir):
    (workdir / "gone").write_bytes(b"1")
    (workdir / "gone").unlink()
    assert not (workdir / "gone").exists()
    assert not bucket_of(module_mount).object_exists(key_of(module_mount, workdir / "gone"))
    with pytest.raises(FileNotFoundError):
        (workdir / "gone").unlink()


def test_rename_file_and_directory(module_mount, workdir):
    """rename copies and deletes; a directory rename moves every object under it."""
    (workdir / "a.txt").write_bytes(b"alpha")
    os.rename(workdir / "a.txt", workdir / "b.txt")
    assert (workdir / "b.txt").read_bytes() == b"alpha"
    assert not (workdir / "a.txt").exists()
    (workdir / "src" / "sub").mkdir(parents=True)
    (workdir / "src" / "sub" / "f").write_bytes(b"deep")
    (workdir / "src" / "top").write_bytes(b"top")
    os.rename(workdir / "src", workdir / "dst")
    assert sorted(os.listdir(workdir / "dst")) == ["sub", "top"]
    assert (workdir / "dst" / "sub" / "f").read_bytes() == b"deep"
    assert not (workdir / "src").exists()
    keys = {o.key for o in oss2.ObjectIterator(bucket_of(module_mount), prefix=key_of(module_mount, workdir) + "/")}
    base = key_of(module_mount, workdir) + "/"
    assert keys == {base + k for k in ("", "b.txt", "dst/", "dst/sub/", "dst/sub/f", "dst/top")}


def test_rename_over_non_empty_directory_is_enotempty(module_mount, workdir):
    (workdir / "x").mkdir()
    (workdir / "y").mkdir()
    (workdir / "y" / "f").write_bytes(b"1")
    with pytest.raises(OSError) as info:
        os.rename(workdir / "x", workdir / "y")
    assert info.value.errno == errno.ENOTEMPTY


def test_rename_noreplace(module_mount, workdir):
    libc = ctypes.CDLL(None, use_errno=True)
    (workdir / "one").write_bytes(b"1")
    (workdir / "two").write_bytes(b"2")
    result = libc.renameat2(AT_FDCWD, os.fsencode(workdir / "one"), AT_FDCWD, os.fsencode(workdir / "two"),
                            RENAME_NOREPLACE)
    assert result == -1 and ctypes.get_errno() == errno.EEXIST
    assert (workdir / "two").read_bytes() == b"2"
    result = libc.renameat2(AT_FDCWD, os.fsencode(workdir / "one"), AT_FDCWD, os.fsencode(workdir / "three"),
                            RENAME_NOREPLACE)
    assert result == 0
    assert (workdir / "three").read_bytes() == b"1"


def test_hard_link_is_not_supported(module_mount, workdir):
    (workdir / "f").write_bytes(b"1")
    with pytest.raises(OSError) as info:
        os.link(workdir / "f", workdir / "g")
    assert info.value.errno == errno.ENOTSUP
    assert "Operation not supported" in os.strerror(info.value.errno)


def test_symlink_round_trip_in_ossfs_format(module_mount, workdir):
    """Symlinks are stored as ossfs 1.91.10 does by default: the target in the body, S_IFLNK in the mode."""
    os.symlink("../some/target.txt", workdir / "link")
    assert os.readlink(workdir / "link") == "../some/target.txt"
    assert stat.S_ISLNK(os.lstat(workdir / "link").st_mode)
    assert os.lstat(workdir / "link").st_size == len("../some/target.txt")
    head = bucket_of(module_mount).head_object(key_of(module_mount, workdir / "link"))
    assert stat.S_ISLNK(int(head.headers["x-oss-meta-mode"]))
    assert "x-oss-meta-symlink-target" not in head.headers
    assert bucket_of(module_mount).get_object(key_of(module_mount, workdir / "link")).read() == b"../some/target.txt"


def test_symlink_in_old_body_form_is_read(module_mount, workdir):
    key = key_of(module_mount, workdir) + "/oldlink"
    bucket_of(module_mount).put_object(key, b"old/target", headers={"x-oss-meta-mode": str(stat.S_IFLNK | 0o777)})
    assert os.readlink(workdir / "oldlink") == "old/target"


def test_statfs_reports_large_free_space(module_mount):
    st = os.statvfs(module_mount.path)
    assert st.f_bavail * st.f_frsize >= 2**49
    assert st.f_bsize == 4096


def test_chmod_chown_utime_persist_without_reupload(module_mount, workdir):
    """chmod/chown/utimens persist in x-oss-meta-* via CopyObject, not a new upload."""
    (workdir / "m").write_bytes(b"payload")
    counters_before = module_mount.server.admin.counters()
    os.chmod(workdir / "m", 0o600)
    os.chown(workdir / "m", 1234, 5678)
    os.utime(workdir / "m", (1_600_000_000, 1_600_000_000))
    counters_after = module_mount.server.admin.counters()
    assert counters_after.get("PutObject", 0) == counters_before.get("PutObject", 0)
    assert counters_after.get("CopyObject", 0) > counters_before.get("CopyObject", 0)
    head = bucket_of(module_mount).head_object(key_of(module_mount, workdir / "m"))
    assert int(head.headers["x-oss-meta-mode"]) == stat.S_IFREG | 0o600
    assert (int(head.headers["x-oss-meta-uid"]), int(head.headers["x-oss-meta-gid"])) == (1234, 5678)
    # ossfs formats: decimal st_mode (above); times as epoch seconds, `SEC.NNNNNNNNN` when there is a fraction
    assert head.headers["x-oss-meta-mtime"] == "1600000000"
    assert head.headers["x-oss-meta-atime"] == "1600000000"
    assert re.fullmatch(r"\d+(\.\d{9})?", head.headers["x-oss-meta-ctime"])
    assert head.headers["Content-Type"] == "application/octet-stream"
    st = os.stat(workdir / "m")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o600, 1234, 5678, 1_600_000_000)
    assert (workdir / "m").read_bytes() == b"payload"


def test_xattrs_persist(module_mount, workdir):
    (workdir / "x").write_bytes(b"1")
    os.setxattr(workdir / "x", "user.color", b"blue")
    assert os.getxattr(workdir / "x", "user.color") == b"blue"
    assert "user.color" in os.listxattr(workdir / "x")
    head = bucket_of(module_mount).head_object(key_of(module_mount, workdir / "x"))
    assert decode_xattrs(head.headers["x-oss-meta-xattr"]) == {"user.color": b"blue"}
    # the literal ossfs form: URL-encoded JSON of name -> base64 value
    assert head.headers["x-oss-meta-xattr"] == "%7B%22user.color%22%3A%22Ymx1ZQ%3D%3D%22%7D"
    os.removexattr(workdir / "x", "user.color")
    with pytest.raises(OSError) as info:
        os.getxattr(workdir / "x", "user.color")
    assert info.value.errno == errno.ENODATA


def test_foreign_objects_show_default_modes(module_mount, workdir):
    """Objects without x-oss-meta-mode are 0640 files; `dir/` objects and implicit prefixes 0750 dirs."""
    base = key_of(module_mount, workdir) + "/"
    bucket = bucket_of(module_mount)
    bucket.put_object(base + "plain", b"abc")
    bucket.put_object(base + "marker/", b"", headers={"Content-Type": "application/octet-stream"})
    bucket.put_object(base + "implicit/child", b"x")
    bucket.put_object(base + "ossfs-file", b"x", headers={"x-oss-meta-mode": str(stat.S_IFREG | 0o604),
                                                           "x-oss-meta-uid": "77", "x-oss-meta-gid": "88"})
    st = os.stat(workdir / "plain")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_size == 3
    for name in ("marker", "implicit"):
        st = os.stat(workdir / name)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750, name
    st = os.stat(workdir / "ossfs-file")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o604, 77, 88)
    assert sorted(os.listdir(workdir)) == ["implicit", "marker", "ossfs-file", "plain"]


def test_dir_object_with_any_content_type_is_a_directory(module_mount, workdir):
    """ossfs 1.91.10 (complement_stat): a `dir/` key without x-oss-meta-mode is a directory whatever its
    Content-Type or size, and the keys below it are reachable; one with a regular-file mode is a file."""
    base = key_of(module_mount, workdir) + "/"
    bucket = bucket_of(module_mount)
    bucket.put_object(base + "odd/", b"", headers={"Content-Type": "text/html"})
    bucket.put_object(base + "odd/inside.txt", b"reachable")
    bucket.put_object(base + "big/", b"data", headers={"Content-Type": "testtype"})
    bucket.put_object(base + "filelike/", b"body", headers={"x-oss-meta-mode": str(stat.S_IFREG | 0o644)})
    assert stat.S_ISDIR(os.stat(workdir / "odd").st_mode)
    assert stat.S_ISDIR(os.stat(workdir / "big").st_mode)
    assert (workdir / "odd" / "inside.txt").read_bytes() == b"reachable"
    assert os.listdir(workdir / "odd") == ["inside.txt"]
    assert stat.S_ISREG(os.stat(workdir / "filelike").st_mode)
    assert (workdir / "filelike").read_bytes() == b"body"
    assert sorted(os.listdir(workdir)) == ["big", "filelike", "odd"]
    assert "shows as a file" not in module_mount.log


def test_posix_workload(module_mount, workdir, tmp_path):
    """untar a tree with symlinks, cp -a it, diff -r against the original, rm -rf: all clean."""
    original = tmp_path / "tree"
    for d in range(3):
        for s in range(2):
            sub = original / f"dir{d}" / f"sub{s}"
            sub.mkdir(parents=True)
            for f in range(3):
                (sub / f"file{f}.c").write_bytes(os.urandom(1000 * (f + 1)))
    (original / "dir0" / "link").symlink_to("sub0/file0.c")
    (original / "dir2" / "to-dir").symlink_to("../dir1")
    (original / "dangling").symlink_to("nowhere/at all")
    (original / ".hidden").write_bytes(b"dot file")
    (original / "empty").mkdir()
    (original / "dir1" / "sub1" / "file0.c").chmod(0o755)
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(original, arcname="tree")
    subprocess.run(["tar", "-xf", str(archive), "-C", str(workdir)], check=True)
    subprocess.run(["diff", "-r", "--no-dereference", str(original), str(workdir / "tree")], check=True)
    subprocess.run(["cp", "-a", str(workdir / "tree"), str(workdir / "copy")], check=True)
    subprocess.run(["diff", "-r", "--no-dereference", str(original), str(workdir / "copy")], check=True)
    assert stat.S_IMODE(os.stat(workdir / "copy" / "dir1" / "sub1" / "file0.c").st_mode) == 0o755
    assert os.readlink(workdir / "copy" / "dir2" / "to-dir") == "../dir1"
    assert (workdir / "copy" / "dir2" / "to-dir" / "sub0" / "file1.c").read_bytes() == \
        (original / "dir1" / "sub0" / "file1.c").read_bytes()
    subprocess.run(["rm", "-rf", str(workdir / "tree"), str(workdir / "copy")], check=True)
    assert os.listdir(workdir) == []
    workdir_key = key_of(module_mount, workdir) + "/"
    assert [info.key for info in oss2.ObjectIterator(bucket_of(module_mount), prefix=workdir_key)] == [workdir_key]


def test_open_file_survives_unlink(module_mount, workdir):
    """fstat, write and read keep working on a file descriptor whose name was unlinked (temp-file idiom)."""
    with open(workdir / "tmp", "w+b") as f:
        f.write(b"before")
        f.flush()
        (workdir / "tmp").unlink()
        f.write(b" after")
        f.flush()
        assert os.fstat(f.fileno()).st_size == len(b"before after")
        f.seek(0)
        assert f.read() == b"before after"
    assert not (workdir / "tmp").exists()
    assert not bucket_of(module_mount).object_exists(key_of(module_mount, workdir / "tmp"))


def test_chmod_of_implicit_directory_creates_its_marker(module_mount, workdir):
    """Metadata of a prefix-only directory is stored by creating its `dir/` object."""
    base = key_of(module_mount, workdir) + "/"
    bucket_of(module_mount).put_object(base + "implicit/child", b"x")
    os.chmod(workdir / "implicit", 0o701)
    os.setxattr(workdir / "implicit", "user.tag", b"v")
    head = bucket_of(module_mount).head_object(base + "implicit/")
    assert int(head.headers["x-oss-meta-mode"]) == stat.S_IFDIR | 0o701
    assert decode_xattrs(head.headers["x-oss-meta-xattr"]) == {"user.tag": b"v"}
    assert stat.S_IMODE(os.stat(workdir / "implicit").st_mode) == 0o701
    assert (workdir / "implicit" / "child").read_bytes() == b"x"


class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


def raw_directory_entries(path: Path) -> dict[str, int]:
    """name -> d_ino exactly as readdir(3) returns them (`ls -i` stats `..` of a mount root instead)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.restype = ctypes.POINTER(_Dirent)
    libc.readdir.argtypes = libc.closedir.argtypes = [ctypes.c_void_p]
    handle = libc.opendir(os.fsencode(path))
    assert handle, os.strerror(ctypes.get_errno())
    entries = {}
    try:
        while True:
            entry = libc.readdir(handle)
            if not entry:
                break
            entries[os.fsdecode(entry.contents.d_name)] = entry.contents.d_ino
    finally:
        libc.closedir(handle)
    return entries


def test_readdir_lists_dot_and_dotdot_with_their_inodes(module_mount, workdir):
    """`ls -a` shows `.` and `..`: `.` is the directory itself, `..` its parent, and the mount root's `..` is
    the root itself."""
    (workdir / "sub" / "leaf").mkdir(parents=True)
    (workdir / "sub" / "file").write_bytes(b"x")
    assert raw_directory_entries(workdir / "sub") == {
        ".": os.stat(workdir / "sub").st_ino, "..": os.stat(workdir).st_ino,
        "leaf": os.stat(workdir / "sub" / "leaf").st_ino, "file": os.stat(workdir / "sub" / "file").st_ino,
    }
    assert subprocess.run(["ls", "-a", str(workdir / "sub" / "leaf")], check=True, capture_output=True,
                          text=True).stdout.split() == [".", ".."]
    root = raw_directory_entries(module_mount.path)
    assert root["."] == root[".."] == os.stat(module_mount.path).st_ino
    assert sorted(os.listdir(workdir / "sub")) == ["file", "leaf"]  # listdir callers still see no dot entries
