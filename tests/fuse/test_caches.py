"""Stat, listing and negative caches through a real mount (issue 3, rule 9), asserted with request counters."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest


def total_requests(server) -> int:
    return sum(server.admin.counters().values())


def test_second_ls_l_sends_no_request(make_mount):
    """A second `ls -l` of an unchanged directory within stat_cache_expire sends no request."""
    mount = make_mount("stat_cache_expire=60")
    bucket = mount.server.oss2_bucket(mount.bucket)
    for i in range(30):
        bucket.put_object(f"dir/file{i:02d}", b"x" * i)
    bucket.put_object("dir/sub/inner", b"y")
    first = subprocess.run(["ls", "-l", str(mount.path / "dir")], check=True, capture_output=True, text=True)
    mount.server.admin.reset_counters()
    second = subprocess.run(["ls", "-l", str(mount.path / "dir")], check=True, capture_output=True, text=True)
    assert total_requests(mount.server) == 0, mount.server.admin.counters()
    assert first.stdout == second.stdout
    assert len(second.stdout.splitlines()) == 32  # "total" + 30 files + sub


def test_change_by_other_client_visible_after_expiry(make_mount):
    mount = make_mount("stat_cache_expire=1")
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("f", b"one")
    assert (mount.path / "f").read_bytes() == b"one"
    assert os.listdir(mount.path) == ["f"]
    bucket.put_object("f", b"two-two")
    bucket.put_object("g", b"new")
    time.sleep(1.5)
    assert os.stat(mount.path / "f").st_size == 7
    assert (mount.path / "f").read_bytes() == b"two-two"
    assert sorted(os.listdir(mount.path)) == ["f", "g"]
    assert os.stat(mount.path / "g").st_size == 3
    bucket.delete_object("g")
    bucket.put_object("d/inner", b"implicit directory")
    time.sleep(1.5)
    assert not (mount.path / "g").exists()
    assert sorted(os.listdir(mount.path)) == ["d", "f"]
    assert (mount.path / "d" / "inner").read_bytes() == b"implicit directory"


def test_cached_stat_hides_remote_change_until_expiry(make_mount):
    mount = make_mount("stat_cache_expire=60")
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("f", b"one")
    assert os.stat(mount.path / "f").st_size == 3
    bucket.put_object("f", b"longer")
    assert os.stat(mount.path / "f").st_size == 3


@pytest.mark.parametrize("negative_cache", [True, False])
def test_negative_cache(make_mount, negative_cache):
    """With enable_noobj_cache a missing path is remembered; without it every lookup asks again."""
    mount = make_mount("stat_cache_expire=60" + (",enable_noobj_cache" if negative_cache else ""))
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            os.stat(mount.path / "missing")
    mount.server.admin.reset_counters()
    with pytest.raises(OSError) as info:
        os.stat(mount.path / "missing")
    assert info.value.errno == errno.ENOENT
    if negative_cache:
        assert total_requests(mount.server) == 0
    else:
        assert mount.server.admin.counters().get("HeadObject", 0) >= 1


def test_stat_cache_disabled_with_size_zero(make_mount):
    mount = make_mount("max_stat_cache_size=0")
    mount.server.oss2_bucket(mount.bucket).put_object("f", b"abc")
    os.stat(mount.path / "f")
    mount.server.admin.reset_counters()
    os.stat(mount.path / "f")
    assert mount.server.admin.counters().get("HeadObject", 0) >= 1


def test_local_changes_update_the_cached_listing(make_mount):
    """This mount's own creates and deletes show at once without listing the directory again."""
    mount = make_mount("stat_cache_expire=60")
    (mount.path / "d").mkdir()
    (mount.path / "d" / "old").write_bytes(b"1")
    assert os.listdir(mount.path / "d") == ["old"]
    (mount.path / "d" / "new").write_bytes(b"2")
    (mount.path / "d" / "old").unlink()
    mount.server.admin.reset_counters()
    assert os.listdir(mount.path / "d") == ["new"]
    counters = mount.server.admin.counters()
    assert counters.get("ListObjectsV2", 0) == 0, counters
