"""A directory of 10,000 objects lists completely with ListObjectsV2 (default) and V1 (issue 3, rule 3)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

COUNT = 10_000


@pytest.fixture(scope="module")
def big_bucket(local_server):
    from tests.fuse.conftest import new_bucket

    name = new_bucket(local_server)
    bucket = local_server.oss2_bucket(name)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: bucket.put_object(f"big/f{i:05d}", b""), range(COUNT)))
    return name


@pytest.mark.parametrize(
    "options, list_op",
    [("readdir_optimize", "ListObjectsV2"), ("listobjectsv1,readdir_optimize", "ListObjects"),
     ("", "ListObjectsV2")],
)
def test_ten_thousand_entries_list_completely(make_mount, big_bucket, options, list_op):
    mount = make_mount(options, bucket=big_bucket)
    mount.server.admin.reset_counters()
    names = os.listdir(mount.path / "big")
    assert sorted(names) == [f"f{i:05d}" for i in range(COUNT)]
    counters = mount.server.admin.counters()
    # pages of 1000 keys, through the selected API only
    other_op = "ListObjects" if list_op == "ListObjectsV2" else "ListObjectsV2"
    assert COUNT // 1000 <= counters.get(list_op, 0) <= COUNT // 1000 + 3
    assert counters.get(other_op, 0) == 0
    if "readdir_optimize" in options:
        assert counters.get("HeadObject", 0) <= 3
