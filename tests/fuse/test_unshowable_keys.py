"""Keys that cannot be shown are never silent, never duplicated, never deleted unseen (issue 6, A6).

The rule (ossmount.fs.names, README "Keys that cannot be shown"): '.', '..', empty and over-long names are
hidden; a file shadows the directory of the same name, as ossfs shows it. Each hidden key is logged once
with its reason; rmdir of a directory that only looks empty fails with ENOTEMPTY and a log line naming
what it still holds.
"""

from __future__ import annotations

import errno
import os
import subprocess

import oss2
import pytest


def bucket_of(mount) -> oss2.Bucket:
    return mount.server.oss2_bucket(mount.bucket)


def keys(mount) -> set[str]:
    return {o.key[len(mount.prefix):] for o in oss2.ObjectIterator(bucket_of(mount), prefix=mount.prefix)}


def ls_a(path) -> list[str]:
    return subprocess.run(["ls", "-a1", str(path)], capture_output=True, text=True, check=True).stdout.split()


def hidden_lines(mount, key: str) -> list[str]:
    return [line for line in mount.log.splitlines() if f"key '{mount.prefix}{key}' is not shown" in line]


@pytest.fixture(params=["", "some/prefix/"], ids=["bucket-root", "prefixed"])
def prefix(request):
    return request.param


def test_dot_dotdot_and_empty_components_are_hidden_and_logged_once(make_mount, prefix):
    mount = make_mount(prefix=prefix)
    bucket = bucket_of(mount)
    for key in ("d/.", "d/..", "d/./x", "d/a/../x", "d/a//b", "d//", "d/ok"):
        bucket.put_object(prefix + key, key.encode())
    for _ in range(2):
        assert ls_a(mount.path / "d") == [".", "..", "a", "ok"]  # one '.' and one '..', never a key's
        assert ls_a(mount.path / "d" / "a") == [".", ".."]
    assert (mount.path / "d" / "ok").read_bytes() == b"d/ok"
    for key, reason in (("d/.", "'.' and '..'"), ("d/..", "'.' and '..'"), ("d/./", "'.' and '..'"),
                        ("d//", "empty path component"), ("d/a/../", "'.' and '..'"), ("d/a//", "empty path")):
        lines = hidden_lines(mount, key)
        assert len(lines) == 1 and reason in lines[0], (key, lines)


def test_rm_rf_of_the_parent_fails_naming_the_hidden_keys_and_deletes_nothing_unseen(make_mount, prefix):
    """rm -rf lists every directory (each hidden key is logged there with its reason) and its rmdir of a
    directory holding hidden keys fails with ENOTEMPTY and a line naming them: nothing unseen is deleted."""
    mount = make_mount(prefix=prefix)
    bucket = bucket_of(mount)
    hidden = ("d/.", "d/..", "d/./x", "d/a/../x", "d//", "e/..", "e//y")
    for key in (*hidden, "d/ok", "d/a/visible", "e/ok"):
        bucket.put_object(prefix + key, b"1")
    for top in ("d", "e"):
        result = subprocess.run(["rm", "-rf", str(mount.path / top)], capture_output=True, text=True)
        assert result.returncode != 0 and "Directory not empty" in result.stderr
    assert keys(mount) == set(hidden)  # what could be seen is gone; nothing unseen was deleted
    for listed in ("d/.", "d/..", "d/./", "d/a/../", "d//", "e/..", "e//"):  # as the listings show them
        assert len(hidden_lines(mount, listed)) == 1, listed
    rmdir_lines = [line for line in mount.log.splitlines() if "not empty: it holds keys that cannot be shown" in line]
    assert any("rmdir 'e'" in line and f"'{prefix}e/..'" in line
               and f"'{prefix}e//'" in line for line in rmdir_lines), rmdir_lines
    assert any(f"'{prefix}d/a/../'" in line for line in rmdir_lines), rmdir_lines
    assert all("remove them with another OSS client" in line for line in rmdir_lines)


def test_a_file_shadows_a_directory_of_the_same_name_like_ossfs(make_mount, prefix):
    """`foo` next to `foo/bar`: foo is the file, foo/bar appears once the file is removed; rm -rf of the parent
    names the shadowed keys the first time and removes everything the second time."""
    mount = make_mount(prefix=prefix)
    bucket = bucket_of(mount)
    bucket.put_object(prefix + "p/foo", b"the file")
    bucket.put_object(prefix + "p/foo/bar", b"below")
    assert os.listdir(mount.path / "p") == ["foo"]
    assert (mount.path / "p" / "foo").read_bytes() == b"the file"
    with pytest.raises(OSError) as info:
        os.stat(mount.path / "p" / "foo" / "bar")
    assert info.value.errno == errno.ENOTDIR
    os.listdir(mount.path / "p")
    [line] = hidden_lines(mount, "p/foo/")
    assert f"the file '{prefix}p/foo'" in line
    first = subprocess.run(["rm", "-rf", str(mount.path / "p")], capture_output=True, text=True)
    assert first.returncode != 0
    assert f"'{prefix}p/foo/'" in mount.log.split("not empty: it holds keys that cannot be shown")[-1]
    assert keys(mount) == {"p/foo/bar"}
    assert os.listdir(mount.path / "p" / "foo") == ["bar"]  # the shadow is gone
    second = subprocess.run(["rm", "-rf", str(mount.path / "p")], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert keys(mount) == set()


def test_names_longer_than_name_max_are_hidden(make_mount):
    mount = make_mount()
    long_name = "x" * 256
    bucket_of(mount).put_object("dir/" + long_name, b"1")
    bucket_of(mount).put_object("dir/short", b"1")
    assert os.listdir(mount.path / "dir") == ["short"]
    assert "longer than 255 bytes" in hidden_lines(mount, "dir/" + long_name)[0]
