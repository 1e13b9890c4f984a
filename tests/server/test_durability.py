"""Acceptance: objects survive `kill -9` of the server, and uploads cut by the kill are never visible."""

from __future__ import annotations

import os
import random
from pathlib import Path

import oss2
import pytest

from ossmount.testing import LocalServer, wait_for
from tests.server.rawhttp import RawConnection, request_head, v1_headers

BUCKET = "durable"


@pytest.fixture
def server(tmp_path):
    """A server of this test's own (it gets killed); always stopped, after an fsck of what the kills left."""
    instance = LocalServer(tmp_path / "oss", buckets=(BUCKET,))
    instance.start()
    try:
        yield instance
        if instance.running:
            assert instance.admin.fsck() == []
    finally:
        instance.stop()


def wait_for_spooled_bytes(server: LocalServer, at_least: int, timeout: float = 10.0) -> None:
    """Block until the server has written `at_least` bytes of some request body to its spool."""
    def largest_spool() -> int:
        return max((path.stat().st_size for path in Path(server.data_dir).rglob("upload-*") if path.is_file()),
                   default=0)

    if wait_for(largest_spool, lambda size: size >= at_least, timeout=timeout, interval=0.02) < at_least:
        raise AssertionError(f"the server never spooled {at_least} bytes")


def start_half_put(server: LocalServer, key: str, size: int, query: str = "") -> RawConnection:
    """Open a PUT of `size` declared bytes, send only half of them, and wait until the server has
    spooled some (it writes in buffers of up to 4 MiB, so `size` should be well above 8 MiB)."""
    headers = v1_headers(server, "PUT", BUCKET, key, query=query)
    headers["Content-Length"] = str(size)
    connection = RawConnection(server)
    connection.send(request_head("PUT", BUCKET, key, headers, query=query) + os.urandom(size // 2))
    wait_for_spooled_bytes(server, 1024 * 1024)
    return connection


def test_hundred_objects_survive_kill_9(server):
    rng = random.Random(100)
    objects = {}
    for index in range(100):
        size = rng.choice([0, 1, 100, 5000, 70_000, 300_000])
        objects[f"obj/{index:03d}"] = rng.randbytes(size)
    bucket = server.oss2_bucket(BUCKET)
    for key, payload in objects.items():
        bucket.put_object(key, payload)

    server.kill()
    server.start()

    bucket = server.oss2_bucket(BUCKET)
    for key, payload in objects.items():
        assert bucket.get_object(key).read() == payload, key
    listed = [entry.key for entry in oss2.ObjectIterator(bucket, prefix="obj/")]
    assert listed == sorted(objects)


def test_put_cut_by_kill_9_is_not_visible(server):
    bucket = server.oss2_bucket(BUCKET)
    bucket.put_object("overwritten", b"old content")

    fresh = start_half_put(server, "fresh", 16 * 1024 * 1024)
    server.kill()
    fresh.close()
    server.start()

    bucket = server.oss2_bucket(BUCKET)
    assert not bucket.object_exists("fresh")

    overwrite = start_half_put(server, "overwritten", 16 * 1024 * 1024)
    server.kill()
    overwrite.close()
    server.start()

    bucket = server.oss2_bucket(BUCKET)
    assert bucket.get_object("overwritten").read() == b"old content"
    assert [entry.key for entry in oss2.ObjectIterator(bucket)] == ["overwritten"]


def test_multipart_upload_in_progress_survives_kill_9(server):
    bucket = server.oss2_bucket(BUCKET)
    part_size = 256 * 1024
    first = os.urandom(part_size)
    second = os.urandom(part_size)
    upload_id = bucket.init_multipart_upload("assembled").upload_id
    first_etag = bucket.upload_part("assembled", upload_id, 1, first).etag

    cut = start_half_put(server, "assembled", 16 * 1024 * 1024, query=f"partNumber=2&uploadId={upload_id}")
    server.kill()
    cut.close()
    server.start()

    bucket = server.oss2_bucket(BUCKET)
    assert not bucket.object_exists("assembled")
    uploads = [upload.upload_id for upload in oss2.MultipartUploadIterator(bucket)]
    assert uploads == [upload_id]
    parts = list(oss2.PartIterator(bucket, "assembled", upload_id))
    assert [(part.part_number, part.etag, part.size) for part in parts] == [(1, first_etag, part_size)]

    second_etag = bucket.upload_part("assembled", upload_id, 2, second).etag
    bucket.complete_multipart_upload("assembled", upload_id, [oss2.models.PartInfo(1, first_etag),
                                                              oss2.models.PartInfo(2, second_etag)])
    assert bucket.get_object("assembled").read() == first + second
