"""Names with special characters through a real mount: every name must reach OSS as exactly that key and
come back from listings unchanged (the server once decoded `+` in a list prefix as a space, so a directory
whose name held a space or a `+` listed nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import oss2
import pytest

NAMES = {
    "space": "with space",
    "spaces-around": " two  spaces ",
    "plus": "plus+sign",
    "plus-space": "a+b c",
    "percent": "per%cent",
    "percent-encoded": "looks%20encoded%2B",
    "hash": "hash#tag",
    "question": "what?",
    "ampersand": "fish&chips",
    "equals": "key=value",
    "quote": "it's",
    "chinese": "中文文件名",
    "emoji": "smile😀",
    "leading-dash": "-rf",
    "long-ascii": "L" * 255,
    "long-utf8": "名" * 85,  # 255 bytes in UTF-8
}
assert all(len(name.encode()) <= 255 for name in NAMES.values())


def oss_keys(mount, under: Path) -> set[str]:
    """Every key oss2 lists below the directory `under` of the mount (not its own marker)."""
    bucket = mount.server.oss2_bucket(mount.bucket)
    prefix = mount.prefix + str(under.relative_to(mount.path)) + "/"
    return {info.key for info in oss2.ObjectIterator(bucket, prefix=prefix) if info.key != prefix}


def key(mount, path: Path) -> str:
    return mount.prefix + str(path.relative_to(mount.path))


@pytest.fixture(params=list(NAMES.values()), ids=list(NAMES))
def name(request) -> str:
    return request.param


def test_file_create_list_stat_read_rename_remove(module_mount, workdir, name):
    data = f"contents of {name}\n".encode() * 100
    path = workdir / name
    path.write_bytes(data)
    assert os.listdir(workdir) == [name]
    assert os.stat(path).st_size == len(data)
    assert path.read_bytes() == data
    assert oss_keys(module_mount, workdir) == {key(module_mount, path)}
    assert module_mount.server.oss2_bucket(module_mount.bucket).get_object(key(module_mount, path)).read() == data

    listing = subprocess.run(["ls", "-l", "--quoting-style=literal", "--", str(workdir)],
                             check=True, capture_output=True)
    assert listing.stdout.decode().splitlines()[1].endswith(" " + name)

    (workdir / "moved").mkdir()
    renamed = workdir / "moved" / name
    path.rename(renamed)
    assert sorted(os.listdir(workdir)) == ["moved"]
    assert os.listdir(workdir / "moved") == [name]
    assert renamed.read_bytes() == data
    assert oss_keys(module_mount, workdir) == {key(module_mount, workdir / "moved") + "/", key(module_mount, renamed)}

    subprocess.run(["rm", "--", str(renamed)], check=True)
    assert os.listdir(workdir / "moved") == []
    assert oss_keys(module_mount, workdir) == {key(module_mount, workdir / "moved") + "/"}


def test_nested_directories_create_list_rename_remove(module_mount, workdir, name):
    """A tree whose every level carries the name: listed, renamed (every object moves) and rm -r'd."""
    top = workdir / name
    inner = top / name
    inner.mkdir(parents=True)
    (inner / name).write_bytes(b"deep")
    (top / "plain").write_bytes(b"shallow")
    assert os.listdir(workdir) == [name]
    assert sorted(os.listdir(top)) == sorted([name, "plain"])
    assert os.listdir(inner) == [name]
    assert (inner / name).read_bytes() == b"deep"
    assert os.path.isdir(inner) and os.stat(inner / name).st_size == 4
    assert oss_keys(module_mount, workdir) == {
        key(module_mount, top) + "/", key(module_mount, inner) + "/", key(module_mount, inner / name),
        key(module_mount, top / "plain"),
    }
    listing = subprocess.run(["ls", "-lR", "--quoting-style=literal", "--", str(top)], check=True, capture_output=True)
    assert listing.stdout.decode().count(name) >= 3

    (workdir / "to").mkdir()
    moved = workdir / "to" / name
    top.rename(moved)
    assert os.listdir(workdir) == ["to"]
    assert (moved / name / name).read_bytes() == b"deep"
    assert oss_keys(module_mount, workdir) == {
        key(module_mount, workdir / "to") + "/", key(module_mount, moved) + "/", key(module_mount, moved / name) + "/",
        key(module_mount, moved / name / name), key(module_mount, moved / "plain"),
    }

    subprocess.run(["rm", "-r", "--", str(moved)], check=True)
    assert os.listdir(workdir / "to") == []
    assert oss_keys(module_mount, workdir) == {key(module_mount, workdir / "to") + "/"}


def test_objects_written_by_oss2_appear_under_their_names(module_mount, workdir):
    """Keys written by another client (implicit directories, no markers) list and read under the same names."""
    bucket = module_mount.server.oss2_bucket(module_mount.bucket)
    base = workdir / "foreign"
    for label, name in NAMES.items():
        bucket.put_object(key(module_mount, base / name / name), label.encode())
        bucket.put_object(key(module_mount, base / f"file-{label}" / name), label.encode())
    assert sorted(os.listdir(base)) == sorted(list(NAMES.values()) + [f"file-{label}" for label in NAMES])
    for label, name in NAMES.items():
        assert os.listdir(base / name) == [name]
        assert (base / name / name).read_bytes() == label.encode()
        assert (base / f"file-{label}" / name).read_bytes() == label.encode()
    shutil.rmtree(base)
    assert oss_keys(module_mount, workdir) == set()


@pytest.mark.parametrize("prefix", [
    "my dir+1%2B#&=?'/",
    "中文 dir/",
], ids=["ascii-specials", "unicode"])
def test_mount_prefix_with_special_characters(make_mount, prefix):
    """BUCKET:/PREFIX where the prefix itself holds a space, `+`, `%`, `#`, `&`, `=`, `?`, `'` or unicode."""
    mount = make_mount(prefix=prefix)
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object(prefix + "foreign file", b"from oss2")
    bucket.put_object(prefix.rstrip("/") + "-sibling/outside", b"not under the prefix")
    (mount.path / "sub dir").mkdir()
    (mount.path / "sub dir" / "a+b").write_bytes(b"through the mount")
    assert sorted(os.listdir(mount.path)) == ["foreign file", "sub dir"]
    assert (mount.path / "foreign file").read_bytes() == b"from oss2"
    assert {info.key for info in oss2.ObjectIterator(bucket)} == {
        prefix + "foreign file", prefix + "sub dir/", prefix + "sub dir/a+b", prefix.rstrip("/") + "-sibling/outside",
    }
    shutil.rmtree(mount.path / "sub dir")
    assert os.listdir(mount.path) == ["foreign file"]
