"""The store's retries against the local server's fault injection (issue 12, item 1): reads resumed mid-body,
answers lost after the server acted, final errors with their errno at once, a server that answers nothing, and a
seeded mix of faults that never reaches the caller."""

from __future__ import annotations

import errno
import os
import random
import socket

import pytest
import trio

from ossmount.crc64 import crc64
from ossmount.credentials import Credentials
from ossmount.store import ObjectStore, RetryPolicy, types
from ossmount.store.retry import operation_deadline
from ossmount.testing import LoopbackServer

from .conftest import make_store

MiB = 1024 * 1024


@pytest.fixture
def faults(local_server):
    """The server's fault rules, cleared after the test; the request log reset before it."""
    local_server.admin.clear_faults()
    local_server.admin.reset_requests()
    try:
        yield local_server.admin
    finally:
        local_server.admin.clear_faults()


def records(admin, op: str, key: str | None = None) -> list[dict]:
    return [r for r in admin.requests() if r["op"] == op and (key is None or r["key"] == key)]


async def test_a_get_cut_off_mid_body_resumes_from_the_byte_it_reached(store, faults):
    data = os.urandom(4 * MiB)
    info = await store.put("big", data)
    faults.reset_requests()
    before = faults.counters().get("GetObject", 0)
    faults.set_faults([{"op": "GetObject", "action": "reset", "after_bytes": 1_500_000, "count": 2}])
    buf = bytearray(len(data))
    assert await store.get_into("big", 0, memoryview(buf)) == len(data)
    assert bytes(buf) == data
    assert faults.counters()["GetObject"] - before == 3  # two cut off, one that finished
    [last] = records(faults, "GetObject", "big")  # the log keeps the one that finished
    start, end = last["range"].split("=")[1].split("-")
    assert 1_500_000 < int(start) <= 3_000_000 and int(end) == len(data) - 1
    assert last["bytes"] == len(data) - int(start)
    # the resumed request is pinned to the version the first answer came from
    assert last["headers"].get("if-match") == f'"{info.etag}"'
    stats = store.statistics()
    assert stats.resumed_reads == 2 and stats.retries == 2 and stats.bytes_in == len(data)


async def test_the_rest_of_an_object_resumes_too(store, faults):
    data = os.urandom(3 * MiB)
    await store.put("rest", data)
    faults.set_faults([{"op": "GetObject", "action": "reset", "after_bytes": 1_000_000, "count": 1}])
    assert await store.get_bytes("rest", 100) == data[100:]
    [last] = records(faults, "GetObject", "rest")
    assert last["range"].startswith("bytes=") and last["range"].endswith("-")
    assert int(last["range"][6:-1]) > 100 and store.statistics().resumed_reads == 1


async def test_a_read_resumed_after_the_object_changed_fails_rather_than_mixing_versions(store, faults,
                                                                                        local_server):
    await store.put("moving", os.urandom(2 * MiB))
    faults.set_faults([{"op": "GetObject", "action": "reset", "after_bytes": 500_000, "count": 1}])
    bucket = local_server.oss2_bucket(store.bucket_name)
    original = store._note_retry

    def replace_then_retry(error, failures, delay):  # another client writes while we wait to retry
        bucket.put_object("moving", b"new contents")
        original(error, failures, delay)

    store._note_retry = replace_then_retry
    with pytest.raises(types.PreconditionFailed) as changed:
        await store.get_bytes("moving", 0, 2 * MiB)
    assert changed.value.errno == errno.EIO


async def test_a_lost_answer_to_complete_multipart_is_a_success(store, faults, local_server):
    part = os.urandom(200_000)
    upload_id = await store.init_multipart("assembled")
    parts = [await store.upload_part("assembled", upload_id, n, part) for n in (1, 2)]
    faults.set_faults([{"op": "CompleteMultipartUpload", "action": "reset", "after_bytes": 10, "count": 1}])
    before = faults.counters().get("CompleteMultipartUpload", 0)
    info = await store.complete_multipart("assembled", upload_id, parts)
    assert info.size == 2 * len(part) and info.crc64 == crc64(part * 2)
    assert faults.counters()["CompleteMultipartUpload"] - before == 2  # the first completed, its answer was lost
    assert local_server.oss2_bucket(store.bucket_name).get_object("assembled").read() == part * 2


async def test_a_lost_answer_to_abort_multipart_is_a_success(store, faults):
    """An abort answers 204 with no body, so the server's faults cannot lose it after the fact: the first attempt
    here is carried out and then reported lost, as a connection dropped after the server acted would be."""
    upload_id = await store.init_multipart("aborted")
    real_attempt = store._attempt
    lost = []

    async def attempt_losing_the_first_answer(op, key, request, handle, accept=()):
        result = await real_attempt(op, key, request, handle, accept)
        if op == "AbortMultipartUpload" and not lost:
            lost.append(op)
            raise types.TransientError("connection lost after the server acted", code="ConnectionReset")
        return result

    store._attempt = attempt_losing_the_first_answer
    await store.abort_multipart("aborted", upload_id)
    assert len(records(faults, "AbortMultipartUpload")) == 2
    with pytest.raises(types.StoreError) as gone:  # a first attempt that meets NoSuchUpload is an error
        await store.with_retry(RetryPolicy.no_retries()).abort_multipart("aborted", upload_id)
    assert gone.value.code == "NoSuchUpload"


@pytest.mark.parametrize("status, code, expected", [
    (403, "AccessDenied", errno.EACCES),
    (404, "NoSuchKey", errno.ENOENT),
    (400, "InvalidArgument", errno.EINVAL),
    (409, "FileAlreadyExists", errno.EEXIST),
    (412, "PreconditionFailed", errno.EIO),
])
async def test_final_errors_fail_at_once_with_their_errno(store, faults, status, code, expected):
    await store.put("k", b"v")
    faults.reset_requests()
    faults.set_faults([{"op": "HeadObject", "action": "error", "status": status, "code": code}])
    with pytest.raises(types.StoreError) as refused:
        await store.head("k")
    assert not refused.value.retryable and refused.value.errno == expected
    assert len(records(faults, "HeadObject")) == 1 and store.statistics().retries == 0


@pytest.mark.parametrize("rule", [
    {"action": "error", "status": 500, "code": "InternalError"},
    {"action": "error", "status": 502, "code": "BadGateway"},
    {"action": "error", "status": 503, "code": "SlowDown"},
    {"action": "error", "status": 429, "code": "TooManyRequests"},
    {"action": "reset"},
    {"action": "reset", "after_bytes": 1000},
], ids=["500", "502", "503", "429", "reset-before", "reset-mid-body"])
async def test_transient_failures_of_every_kind_are_retried(store, faults, rule):
    data = os.urandom(100_000)
    await store.put("k", data)
    faults.set_faults([{**rule, "op": "*", "count": 2}])
    assert await store.get_bytes("k") == data
    await store.put("k2", data)
    assert (await store.head("k2")).size == len(data)
    assert [o.key for o in (await store.list_page("")).objects] == ["k", "k2"]


async def test_seeded_fault_mix_never_reaches_the_caller(local_server, fresh_bucket_name, faults):
    """20% of requests fail (500, 503, resets before and in the middle of answers), some answers are slow: every
    call of a mixed workload still succeeds, with the right bytes."""
    store = make_store(local_server, fresh_bucket_name, retry=RetryPolicy(max_attempts=6, base_delay=0.005,
                                                                          max_delay=0.05, deadline=60))
    faults.set_faults([
        {"action": "error", "status": 500, "code": "InternalError", "probability": 0.055},
        {"action": "error", "status": 503, "code": "ServiceUnavailable", "probability": 0.055},
        {"action": "reset", "probability": 0.055},
        {"action": "reset", "after_bytes": 2000, "probability": 0.055},
        {"action": "bandwidth", "bytes_per_second": 4 * MiB, "probability": 0.05},
    ], seed=1234)
    rng = random.Random(99)
    blobs = {f"d/{i:03d}": rng.randbytes(rng.choice([0, 10, 5000, 300_000])) for i in range(60)}
    async with trio.open_nursery() as nursery:
        for key, data in blobs.items():
            nursery.start_soon(store.put, key, data)
    for key, data in blobs.items():
        assert await store.get_bytes(key) == data
        assert (await store.head(key)).size == len(data)
    objects, _ = await store.list_all("d/")
    assert sorted(o.key for o in objects) == sorted(blobs)
    fired = sum(rule["fired"] for rule in faults.faults()["rules"][:4])
    assert fired > 20 and store.statistics().retries >= 10


# -- a server that answers nothing ------------------------------------------------------------------------------------


class SilentServer(LoopbackServer):
    """Accepts TCP connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[socket.socket] = []

    def _handle(self, client: socket.socket) -> None:
        self.held.append(client)

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        for sock in self.held:
            sock.close()


async def test_a_silent_server_fails_each_call_after_its_attempts():
    with SilentServer() as silent:
        store = ObjectStore.create(endpoint=silent.endpoint, bucket="bkt", credentials=Credentials("AK", "SK"),
                                   timeout=0.3, connect_timeout=0.3,
                                   retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, deadline=30))
        with pytest.raises(types.TransientError) as timed_out:
            await store.head("k")
        assert timed_out.value.code == "RequestTimeout" and timed_out.value.errno == errno.EIO
        assert store.statistics().requests == {"HeadObject": 2}


async def test_a_silent_server_fails_a_whole_operation_within_its_deadline():
    """Several calls in one operation share one deadline: each attempt's timeout is cut to what is left."""
    with SilentServer() as silent:
        store = ObjectStore.create(endpoint=silent.endpoint, bucket="bkt", credentials=Credentials("AK", "SK"),
                                   timeout=60, connect_timeout=60,
                                   retry=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.01, deadline=60))
        started = trio.current_time()
        with operation_deadline(1.0):
            for call in (lambda: store.head("k"), lambda: store.list_page(""), lambda: store.put("k", b"v")):
                with pytest.raises(types.TransientError) as failed:
                    await call()
                assert failed.value.errno == errno.EIO
        assert trio.current_time() - started < 30  # bounded by the operation, not by 3 x 10 x 60 s
