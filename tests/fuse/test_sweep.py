"""Lookups sweeping a directory get their HEADs sent ahead (issue 11, `stat` of every entry; ossmount.fs.sweep).

Asserted with counters only: the server's requests per OSS operation and the mount's own statistics.
"""

from __future__ import annotations

import os
import subprocess
import stat

import pytest

from ossmount.fs import sweep
from tests.fuse.test_metadata import FILE_META, fs_statistics, put_many, requests, status_mount

COUNT = 300


def mount_with_files(make_mount, tmp_path):
    """A mount (writing its status file) of a bucket with COUNT files in `d`, `d` looked up, counters reset."""
    mount = status_mount(make_mount, tmp_path)
    put_many(mount.server.oss2_bucket(mount.bucket), [f"d/f{i:04d}" for i in range(COUNT)], b"abc", FILE_META)
    os.stat(mount.path / "d")
    mount.server.admin.reset_counters()
    return mount


def test_a_sequential_stat_sweep_heads_ahead_and_no_more_than_it_stats(make_mount, tmp_path):
    """Every entry is HEADed once (plus the listing pages): the answers are fetched ahead, in parallel."""
    mount = mount_with_files(make_mount, tmp_path)
    modes = [os.stat(mount.path / "d" / f"f{i:04d}").st_mode for i in range(COUNT)]
    assert modes == [stat.S_IFREG | 0o604] * COUNT  # the full metadata of each HEAD, not the listing's
    counters = requests(mount.server)
    assert counters == {"HeadObject": COUNT, "ListObjectsV2": 1}, counters
    mount.unmount()
    statistics = fs_statistics(mount)
    assert statistics["heads_ahead"] >= COUNT - 2 * sweep.TRIGGER - sweep.WINDOW, statistics


def test_a_sweep_that_stops_sends_at_most_a_window_of_heads_nobody_asked_for(make_mount, tmp_path):
    mount = mount_with_files(make_mount, tmp_path)
    for i in range(50):
        os.stat(mount.path / "d" / f"f{i:04d}")
    for i in range(0, COUNT, 37):  # random-looking lookups get no look-ahead
        os.stat(mount.path / "d" / f"f{(i * 7) % COUNT:04d}")
    mount.unmount()
    counters = requests(mount.server)
    stated = len({*range(50), *((i * 7) % COUNT for i in range(0, COUNT, 37))})
    assert stated <= counters["HeadObject"] <= stated + sweep.WINDOW, counters
    assert counters["ListObjectsV2"] == 1, counters


def test_a_sequential_sweep_finds_each_next_listing_page_listed_ahead(make_mount, tmp_path):
    """Rule 1: the next page is listed while the lookups are still in the last one, so only the lookup that
    started the sweep waits for a page (without listing ahead, each of the 6 pages was waited for in turn)."""
    mount = status_mount(make_mount, tmp_path, "list_object_max_keys=50")
    put_many(mount.server.oss2_bucket(mount.bucket), [f"d/f{i:04d}" for i in range(COUNT)], b"abc", FILE_META)
    os.stat(mount.path / "d")
    mount.server.admin.reset_counters()
    for i in range(COUNT):
        os.stat(mount.path / "d" / f"f{i:04d}")
    mount.unmount()
    counters = requests(mount.server)
    assert counters == {"HeadObject": COUNT, "ListObjectsV2": COUNT // 50}, counters  # each page listed once
    statistics = fs_statistics(mount)
    assert statistics["sweep_pages_ahead"] == COUNT // 50 - 1, statistics
    # The first page is waited for; a page ahead still in flight when the lookups get there (a loaded machine) is
    # waited for too, but not most of them.
    assert statistics["sweep_page_waits"] <= 3, statistics


def test_a_sweep_that_stops_lists_at_most_one_page_nobody_asked_for(make_mount, tmp_path):
    mount = status_mount(make_mount, tmp_path, "list_object_max_keys=50")
    put_many(mount.server.oss2_bucket(mount.bucket), [f"d/f{i:04d}" for i in range(COUNT)], b"abc", FILE_META)
    os.stat(mount.path / "d")
    mount.server.admin.reset_counters()
    for i in range(60):  # pages 1 and 2
        os.stat(mount.path / "d" / f"f{i:04d}")
    mount.unmount()
    assert requests(mount.server)["ListObjectsV2"] <= 3


def test_names_a_fresh_sweep_page_does_not_show_are_answered_without_a_request(make_mount, tmp_path):
    mount = status_mount(make_mount, tmp_path, "open_check_window=60")
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"d/f{i:04d}" for i in range(0, 100, 2)], b"abc", FILE_META)
    bucket.put_object("d/sub/inner", b"x")
    os.stat(mount.path / "d")
    mount.server.admin.reset_counters()
    for i in range(100):
        if i % 2:
            with pytest.raises(FileNotFoundError):
                os.stat(mount.path / "d" / f"f{i:04d}")
        else:
            assert os.stat(mount.path / "d" / f"f{i:04d}").st_size == 3
    assert stat.S_ISDIR(os.stat(mount.path / "d" / "sub").st_mode)  # a directory takes the ordinary path
    counters = requests(mount.server)
    # Before the sweep lists `d`: HEAD + LIST per absent name; after it none for the absent names.
    assert counters["HeadObject"] <= 50 + sweep.TRIGGER + 1 + 1, counters
    assert counters["ListObjectsV2"] <= sweep.TRIGGER + 1 + 1, counters
    mount.unmount()
    assert fs_statistics(mount)["sweep_negative_lookups"] >= 50 - sweep.TRIGGER, fs_statistics(mount)


def test_a_local_change_during_a_sweep_is_never_hidden_by_an_answer_fetched_ahead(make_mount, tmp_path):
    mount = status_mount(make_mount, tmp_path, "open_check_window=60")
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"d/f{i:04d}" for i in range(60)], b"abc", FILE_META)
    for i in range(10):  # HEADs of f0010.. are ahead now
        os.stat(mount.path / "d" / f"f{i:04d}")
    os.unlink(mount.path / "d" / "f0012")
    os.chmod(mount.path / "d" / "f0013", 0o640)
    (mount.path / "d" / "f0011x").write_bytes(b"new")  # a name the sweep's page does not show
    for i in range(10, 20):
        if i == 12:
            with pytest.raises(FileNotFoundError):
                os.stat(mount.path / "d" / f"f{i:04d}")
            continue
        expected = 0o640 if i == 13 else 0o604
        assert stat.S_IMODE(os.stat(mount.path / "d" / f"f{i:04d}").st_mode) == expected
    assert os.stat(mount.path / "d" / "f0011x").st_size == 3
    assert "f0012" not in os.listdir(mount.path / "d")


def test_a_readdir_optimize_traversal_lists_the_following_directories_ahead_and_no_more(make_mount, tmp_path):
    """`find` with readdir_optimize: one LIST per directory, the following siblings listed ahead in parallel."""
    mount = status_mount(make_mount, tmp_path, "readdir_optimize")
    bucket = mount.server.oss2_bucket(mount.bucket)
    dirs = [f"tree/a{i}/b{j}" for i in range(4) for j in range(4)]
    put_many(bucket, [f"{d}/f{k}" for d in dirs for k in range(5)], b"12345")
    os.stat(mount.path / "tree")
    mount.server.admin.reset_counters()
    found = {str(p) for p in (mount.path / "tree").rglob("*")}
    assert len(found) == 4 + 16 + 80
    counters = requests(mount.server)
    assert counters == {"ListObjectsV2": 1 + 4 + 16}, counters  # each directory listed once, ahead or not
    mount.unmount()
    assert fs_statistics(mount)["listings_ahead"] >= 3 + 4 * 3, fs_statistics(mount)


@pytest.mark.parametrize("layout", ["marker", "implicit"])
def test_readdir_optimize_ls_l_of_a_directory_sends_no_head_at_all(make_mount, layout):
    """The directory's own lookup is one LIST of the keys starting with its name: its marker (or a key under it)
    first proves there is no file of that name; with readdir_optimize the marker is taken as listed."""
    mount = make_mount("readdir_optimize")
    bucket = mount.server.oss2_bucket(mount.bucket)
    if layout == "marker":
        bucket.put_object("e/", b"", headers={"x-oss-meta-mode": str(stat.S_IFDIR | 0o755)})
    put_many(bucket, [f"e/f{i:04d}" for i in range(50)], b"12345")
    bucket.put_object("d/", b"")
    bucket.put_object("d-other", b"x")  # '-' sorts before '/': the first key starting with "d" is this file
    mount.server.admin.reset_counters()
    lines = subprocess.run(["ls", "-l", str(mount.path / "e")], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    assert len(lines) == 51
    assert requests(mount.server) == {"ListObjectsV2": 2}  # the lookup of `e` and its listing
    mount.server.admin.reset_counters()
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "absent")
    assert requests(mount.server) == {"ListObjectsV2": 1}
    mount.server.admin.reset_counters()
    assert stat.S_ISDIR(os.stat(mount.path / "d").st_mode)  # the one LIST cannot tell: HEAD d, LIST d/
    assert requests(mount.server) == {"ListObjectsV2": 2, "HeadObject": 1}
    mount.server.admin.reset_counters()
    assert os.stat(mount.path / "d-other").st_size == 1  # a file: its HEAD follows
    assert requests(mount.server) == {"ListObjectsV2": 1, "HeadObject": 1}


def test_a_traversal_lists_directories_ahead_with_their_heads_and_no_more(make_mount, tmp_path):
    """Without readdir_optimize a listing HEADs its entries: directories are listed ahead once a traversal shows
    (the second subdirectory in a row), and every object is still HEADed exactly once."""
    mount = status_mount(make_mount, tmp_path)
    bucket = mount.server.oss2_bucket(mount.bucket)
    dirs = [f"tree/a{i}/b{j}" for i in range(3) for j in range(5)]
    put_many(bucket, [f"{d}/f{k}" for d in dirs for k in range(4)], b"12345", FILE_META)
    os.stat(mount.path / "tree")
    mount.server.admin.reset_counters()
    found = subprocess.run(["find", str(mount.path / "tree")], check=True, capture_output=True, text=True)
    assert len(found.stdout.splitlines()) == 1 + 3 + 15 + 60
    counters = requests(mount.server)
    # one LIST per directory; a HEAD per file and per implicit directory's marker key (none exists)
    assert counters == {"ListObjectsV2": 1 + 3 + 15, "HeadObject": 60 + 3 + 15}, counters
    mount.unmount()
    assert fs_statistics(mount)["listings_ahead"] >= 3 * 2, fs_statistics(mount)
    # `ls` of one subdirectory, then another that does not follow it, lists nothing ahead
    mount.start()
    mount.server.admin.reset_counters()
    os.listdir(mount.path / "tree")
    os.listdir(mount.path / "tree" / "a0")
    os.listdir(mount.path / "tree" / "a2")
    assert requests(mount.server)["ListObjectsV2"] == 3 + 1  # and the lookup of `tree`


@pytest.mark.parametrize("sibling", ["a-b", "a.b", "a!", "a b"])
def test_a_directory_listed_on_the_page_after_a_sibling_sorting_before_slash_is_not_answered_missing(
        make_mount, tmp_path, sibling):
    """Keys `a-b`, `a.b`, `a!` sort before `a/` (bytes '-' '.' '!' ' ' < '/'), so a page ending at such a sibling
    shows neither a file `a` nor the directory `a/` (on the next page): `a` is not covered by that page."""
    mount = status_mount(make_mount, tmp_path, "open_check_window=60,list_object_max_keys=10")
    bucket = mount.server.oss2_bucket(mount.bucket)
    siblings = [f"d/{sibling}{i}" for i in range(10)]  # page 1 is exactly these ten keys
    put_many(bucket, siblings, b"abc", FILE_META)
    bucket.put_object("d/a/inner", b"x")
    os.stat(mount.path / "d")
    for key in siblings[:sweep.TRIGGER + 1]:  # lookups that miss the caches: the sweep lists page 1 of `d`
        assert os.stat(mount.path / key).st_size == 3
    assert stat.S_ISDIR(os.stat(mount.path / "d" / "a").st_mode)
    assert (mount.path / "d" / "a" / "inner").read_bytes() == b"x"


def test_an_answer_fetched_ahead_is_not_served_longer_than_stat_cache_expire_after_its_head(make_mount, tmp_path):
    """A HEAD sent ahead answered at t; a lookup taking it at t + 2 s must not make it last until t + 2 + TTL:
    another client's overwrite shows once TTL seconds passed since that HEAD (stat_cache_expire)."""
    import time
    ttl = 4.0
    mount = status_mount(make_mount, tmp_path, f"stat_cache_expire={ttl:g}")
    bucket = mount.server.oss2_bucket(mount.bucket)
    put_many(bucket, [f"d/f{i:04d}" for i in range(60)], b"abc", FILE_META)
    os.stat(mount.path / "d")
    for i in range(10):  # a sequential sweep: the HEADs of f0010.. are sent ahead now
        os.stat(mount.path / "d" / f"f{i:04d}")
    ahead_sent = time.monotonic()
    bucket.put_object("d/f0020", b"abcdef", headers=FILE_META)  # another client overwrites it
    time.sleep(ttl / 2)
    os.stat(mount.path / "d" / "f0020")  # the answer fetched ahead is younger than the TTL: it may be taken
    time.sleep(max(0.0, ahead_sent + ttl + 0.5 - time.monotonic()))
    assert os.stat(mount.path / "d" / "f0020").st_size == 6  # that HEAD is older than the TTL now
