"""Walks find their directories listed ahead (issue 11, `find` over a tree; ossmount.fs.dirsweep).

Asserted with counters only: the server's requests per OSS operation and the mount's own statistics
(`listings_ahead`: directories whose listing was started ahead of the readdir that reads it).
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from urllib.parse import parse_qs

import pytest

from ossmount.testing import wait_for
from tests.fuse.test_metadata import FILE_META, fs_statistics, put_many, requests, status_mount

# 1 + 4 + 4 * 10 directories: ten subdirectories each, more than one window of listings ahead (dirsweep.WINDOW)
TOP, SUB, FILES = 4, 10, 3
DIRECTORIES = 1 + TOP + TOP * SUB
# Read before a walk shows itself: `tree`, `a0`, `a0/b0`, `a0/b1` (the second in a row: `a0` is walked), `a1`
# (the second of `tree`: `tree` is walked). Every other directory is listed ahead.
SERIAL = 5


def tree_mount(make_mount, tmp_path, options: str):
    mount = status_mount(make_mount, tmp_path, options)
    dirs = [f"tree/a{i}/b{j}" for i in range(TOP) for j in range(SUB)]
    put_many(mount.server.oss2_bucket(mount.bucket), [f"{d}/f{k}" for d in dirs for k in range(FILES)], b"12345",
             FILE_META)
    os.stat(mount.path / "tree")
    mount.server.admin.reset_counters()
    return mount


@pytest.mark.parametrize("options", ["readdir_optimize", ""])
def test_a_find_walk_finds_its_directories_listed_ahead_each_listed_once(make_mount, tmp_path, options):
    mount = tree_mount(make_mount, tmp_path, options)
    found = subprocess.run(["find", str(mount.path / "tree")], check=True, capture_output=True, text=True)
    assert len(found.stdout.splitlines()) == DIRECTORIES + TOP * SUB * FILES
    counters = requests(mount.server)
    expected = {"ListObjectsV2": DIRECTORIES}
    if not options:  # a listing HEADs each file and each implicit directory's marker key (none exists)
        expected["HeadObject"] = TOP * SUB * FILES + DIRECTORIES - 1
    assert counters == expected, counters
    mount.unmount()
    # without readdir_optimize only the following siblings go ahead: the first subdirectory of each `a<i>` is read first
    serial = SERIAL if options else SERIAL + TOP - 1
    assert fs_statistics(mount)["listings_ahead"] >= DIRECTORIES - serial - 2, fs_statistics(mount)


def test_ls_of_single_directories_lists_nothing_ahead(make_mount, tmp_path):
    """`ls tree`, then `ls` of some of its subdirectories that do not follow each other: one LIST each, nothing
    listed ahead, however much readdir_optimize makes a listing cheap."""
    mount = tree_mount(make_mount, tmp_path, "readdir_optimize")
    mount.server.admin.reset_requests()
    directories = ["tree", "tree/a0", "tree/a2", "tree/a2/b5", "tree/a0/b3", "tree/a3/b9"]
    for directory in directories:
        subprocess.run(["ls", "-l", str(mount.path / directory)], check=True, capture_output=True)
    listed = [parse_qs(r["query"])["prefix"][0] for r in mount.server.admin.requests()
              if r["op"] == "ListObjectsV2" and parse_qs(r["query"]).get("delimiter") == ["/"]]
    assert listed == [f"{directory}/" for directory in directories]
    assert set(requests(mount.server)) == {"ListObjectsV2"}  # and a lookup's one-key LIST
    mount.unmount()
    assert fs_statistics(mount)["listings_ahead"] == 0, fs_statistics(mount)


def test_a_directory_changed_through_the_mount_while_listed_ahead_shows_the_change(make_mount, tmp_path):
    """The walk's listing of `a3` is held by the server while this mount changes `a3`: that listing predates the
    changes and is never used; the walk lists `a3` again and shows the chmod, the unlink and the mkdir."""
    mount = tree_mount(make_mount, tmp_path, "readdir_optimize")
    tree = mount.path / "tree"
    put_many(mount.server.oss2_bucket(mount.bucket), ["tree/a3/g0", "tree/a3/g1"], b"abc", FILE_META)
    for name in ("g0", "g1"):  # their lookups are cached: the changes below send no LIST
        os.stat(tree / "a3" / name)
    os.listdir(tree)
    os.listdir(tree / "a0")
    # Reading `a1` (the second of `tree`) starts the walk: its own LIST and `a2`, `a3` listed ahead are held.
    held = 1 + (TOP - 2)
    mount.server.admin.reset_counters()
    mount.server.admin.set_faults([{"action": "hold", "op": "ListObjectsV2", "count": held,
                                    "delay_ms": 120_000}])
    result: dict[str, list[str]] = {}
    thread = threading.Thread(target=lambda: result.setdefault("names", sorted(os.listdir(tree / "a1"))))
    thread.start()
    try:
        assert wait_for(mount.server.admin.held, lambda n: n >= held, timeout=60) >= held
        os.chmod(tree / "a3" / "g0", 0o640)
        os.unlink(tree / "a3" / "g1")
        (tree / "a3" / "new").mkdir()
    finally:
        mount.server.admin.clear_faults()
        mount.server.admin.release_held()
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert result["names"] == [f"b{j}" for j in range(SUB)]
    names = sorted(os.listdir(tree / "a3"))
    assert names == sorted([f"b{j}" for j in range(SUB)] + ["g0", "new"]), names
    modes = {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in os.scandir(tree / "a3")}
    assert modes["g0"] == 0o640, modes
    found = subprocess.run(["find", str(tree)], check=True, capture_output=True, text=True).stdout.splitlines()
    assert str(tree / "a3" / "new") in found and str(tree / "a3" / "g1") not in found
