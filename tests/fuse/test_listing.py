"""A directory of 10,000 objects lists completely with ListObjectsV2 (default) and V1 (issue 3, rule 3); a listing's
pages are pipelined (issue 11, ossmount.store.pages) and stay complete when a page fails."""

from __future__ import annotations

import os
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from ossmount.testing import wait_for

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


# -- pipelined pages (issue 11) ---------------------------------------------------------------------------------

PAGE = 30  # keys per page (list_object_max_keys)
PAGED = 3 * PAGE + 7  # four pages


def paged_mount(make_mount, options: str = "readdir_optimize"):
    """A mount listing PAGE keys per page, of a bucket with PAGED objects in `d/`, `d` looked up."""
    mount = make_mount(f"{options},list_object_max_keys={PAGE}")
    bucket = mount.server.oss2_bucket(mount.bucket)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: bucket.put_object(f"d/f{i:04d}", b"x"), range(PAGED)))
    os.stat(mount.path / "d")
    return mount


def list_records(mount) -> list[dict]:
    return [r for r in mount.server.admin.requests()
            if r["bucket"] == mount.bucket and r["op"] in ("ListObjectsV2", "ListObjects")]


@pytest.mark.parametrize("options", ["readdir_optimize", "listobjectsv1,readdir_optimize", ""])
def test_the_next_page_is_asked_for_while_a_page_is_still_arriving(make_mount, options):
    """The first page trickles (a bandwidth fault) and every later page is held in the server: the second page's
    request reaches the server while the first page is still being sent (no LIST has finished), because its token
    is read from the head of the first page. Released, the listing is complete, one request per page."""
    mount = paged_mount(make_mount, options)
    op = "ListObjects" if "listobjectsv1" in options else "ListObjectsV2"
    admin = mount.server.admin
    before = len(list_records(mount))
    admin.set_faults([{"op": op, "action": "bandwidth", "bytes_per_second": 1500, "count": 1},
                      {"op": op, "action": "hold", "delay_ms": 60_000, "skip": 1, "count": 1}])
    listed: list[list[str]] = []
    reader = threading.Thread(target=lambda: listed.append(sorted(os.listdir(mount.path / "d"))))
    try:
        reader.start()
        held = wait_for(admin.held, lambda count: count == 1, timeout=60)
        finished = len(list_records(mount)) - before
        assert held == 1 and finished == 0, (held, finished)
    finally:
        admin.clear_faults()  # releases the held page
        reader.join(120)
    assert listed == [[f"f{i:04d}" for i in range(PAGED)]]
    pages = list_records(mount)[before:]
    assert len(pages) == 4 and all(r["status"] == 200 for r in pages), pages


def test_a_page_cut_off_after_its_head_is_asked_again_and_the_listing_stays_complete(make_mount):
    """The connection of the first page is reset after its head (its token read, the second page asked for): the
    page is retried, the page asked for early is kept (the retry confirms its token), every name is listed once."""
    mount = paged_mount(make_mount)
    admin = mount.server.admin
    before = len(list_records(mount))
    admin.set_faults([{"op": "ListObjectsV2", "action": "reset", "after_bytes": 600, "count": 1}])
    try:
        names = os.listdir(mount.path / "d")
        fired = admin.faults()["rules"][0]["fired"]
    finally:
        admin.clear_faults()
    assert fired == 1
    assert sorted(names) == [f"f{i:04d}" for i in range(PAGED)] and len(names) == PAGED
    # the request log keeps answered requests: each page once (the reset attempt is not among them)
    tokens = [urllib.parse.parse_qs(r["query"]).get("continuation-token", [""])[0] for r in list_records(mount)[before:]]
    assert len(tokens) == 4 and len(set(tokens)) == 4 and "" in tokens, tokens


def test_a_page_failing_for_good_fails_the_listing_and_leaves_nothing_cached(make_mount):
    """The third page is refused (AccessDenied, not retried) while the fourth may already be asked for: readdir fails
    with EACCES, and the next readdir lists the whole directory again (no partial listing was kept)."""
    mount = paged_mount(make_mount)
    admin = mount.server.admin
    admin.set_faults([{"op": "ListObjectsV2", "action": "error", "status": 403, "code": "AccessDenied",
                       "skip": 2, "count": 1}])
    try:
        with pytest.raises(PermissionError):
            os.listdir(mount.path / "d")
    finally:
        admin.clear_faults()
    before = len(list_records(mount))
    assert sorted(os.listdir(mount.path / "d")) == [f"f{i:04d}" for i in range(PAGED)]
    assert len(list_records(mount)) - before == 4
