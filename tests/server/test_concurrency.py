"""The server runs requests in parallel: what may wait for what (store.py "Concurrency", locking.py), proven with
requests held inside the core or mid-body, a seeded stress run checked version by version, and the store's fsck.
No timing is asserted: each test shows an order of events that a serialising server could not produce."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import oss2
import pytest

from ossmount.server.core.locking import LockTable, key_lock, lock_plan
from ossmount.server.core.model import Request, SpooledBody
from ossmount.server.core.ops_object import parse_copy_source
from ossmount.server.core.routing import parse_target
from ossmount.server.core.store import ObjectRecord, Store
from ossmount.server.core.xmlio import parse_delete
from ossmount.server.http import FAST_BODY_MIN
from ossmount.testing import LocalServer, wait_for
from tests.server.rawhttp import RawConnection, request_head, v1_headers

BUCKET = "parallel"
WAIT = 60.0  # generous bound for "eventually": these tests assert orders of events, never durations


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = LocalServer(tmp_path_factory.mktemp("parallel"), buckets=(BUCKET,))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def bucket(server):
    """oss2 on a new bucket of the module's server; faults cleared and the store fsck'd after each test."""
    server.admin.clear_faults()
    client = server.oss2_bucket(f"{BUCKET}-{uuid.uuid4().hex[:12]}", connect_timeout=WAIT)
    client.create_bucket()
    try:
        yield client
    finally:
        server.admin.clear_faults()
    assert server.admin.fsck() == []


def background(function, *args):
    """Run `function(*args)` in a thread; returns (thread, result dict with "value" or "error")."""
    result: dict = {}

    def target():
        try:
            result["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def wait_until_held(server: LocalServer, count: int = 1) -> None:
    held = wait_for(server.admin.held, lambda n: n >= count, timeout=WAIT)
    assert held >= count, f"{held} requests held, expected {count}"


# -- requests held inside the core ------------------------------------------------------------------------


def test_other_keys_are_read_and_written_while_a_put_is_held_in_the_core(server, bucket):
    """A PUT of B stalled after taking its locks (a slow metadata store) delays nothing but B's own writers."""
    bucket.put_object("a", b"content of a")
    bucket.put_object("b", b"old b")
    server.admin.set_faults([{"action": "hold", "op": "PutObject", "count": 1, "delay_ms": WAIT * 1000}])
    held_put, held_result = background(bucket.put_object, "b", b"new b")
    wait_until_held(server)

    assert bucket.get_object("a").read() == b"content of a"  # a read of another key
    assert bucket.get_object("b").read() == b"old b"  # a read of B itself: the last committed version
    bucket.put_object("c", b"written meanwhile")  # a write of another key
    assert [o.key for o in bucket.list_objects().object_list] == ["a", "b", "c"]
    second_put, second_result = background(bucket.put_object, "b", b"newest b")  # waits for B's lock
    bucket.head_object("c")  # the server went on serving while the second PUT of B waits
    assert held_put.is_alive() and second_put.is_alive()
    assert not held_result and not second_result

    server.admin.release_held()
    held_put.join(WAIT)
    second_put.join(WAIT)
    assert "error" not in held_result and "error" not in second_result
    assert bucket.get_object("b").read() == b"newest b"  # B's writes were applied in order


def test_writers_queued_on_one_key_do_not_hold_up_other_clients(server, bucket):
    """Eight writers wait for a held key's lock; each waits in a worker thread, and there are enough of them
    (serve --core-threads) that every other request still runs."""
    bucket.put_object("free", b"readable")
    server.admin.set_faults([{"action": "hold", "op": "PutObject", "count": 1, "delay_ms": WAIT * 1000}])
    held, _ = background(bucket.put_object, "busy", b"first")
    wait_until_held(server)
    queued = [background(bucket.put_object, "busy", f"queued {n}".encode()) for n in range(8)]
    assert bucket.get_object("free").read() == b"readable"
    bucket.put_object("other", b"still served")
    assert held.is_alive() and all(thread.is_alive() for thread, _ in queued)
    server.admin.release_held()
    for thread, result in [(held, {}), *queued]:
        thread.join(WAIT)
        assert "error" not in result
    assert bucket.get_object("busy").read().startswith(b"queued")


def test_reads_are_answered_while_every_worker_thread_is_busy(tmp_path):
    """HeadObject, GetObject and listings of a few keys take no lock and run on the event loop, not in a worker thread
    (http.INLINE_OPS, INLINE_LIST_MAX_KEYS): with one worker (serve --core-threads 1) stalled in a held PUT, reads of
    any key, the held one included, still complete, while a second write queues behind the held one."""
    with LocalServer(tmp_path, buckets=(BUCKET,), extra_args=("--core-threads", "1")) as single:
        client = single.oss2_bucket(BUCKET, connect_timeout=WAIT)
        client.put_object("a", b"content of a")
        client.put_object("b", b"old b")
        single.admin.set_faults([{"action": "hold", "op": "PutObject", "count": 1, "delay_ms": WAIT * 1000}])
        held_put, held_result = background(client.put_object, "b", b"new b")
        try:
            wait_until_held(single)
            queued_put, queued_result = background(client.put_object, "c", b"waits for the worker")
            assert client.head_object("a").content_length == len(b"content of a")
            assert client.get_object("a", byte_range=(0, 6)).read() == b"content"
            assert client.get_object("b").read() == b"old b"
            assert client.get_object_meta("b").content_length == len(b"old b")
            # as are the small listings a mount's lookups ask for (http.INLINE_LIST_MAX_KEYS)
            assert [o.key for o in client.list_objects(delimiter="/", max_keys=2).object_list] == ["a", "b"]
            assert [o.key for o in client.list_objects_v2(prefix="b", max_keys=1).object_list] == ["b"]
            assert held_put.is_alive() and queued_put.is_alive() and not held_result and not queued_result
        finally:
            single.admin.release_held()
        held_put.join(WAIT)
        queued_put.join(WAIT)
        assert "error" not in held_result and "error" not in queued_result
        assert client.get_object("b").read() == b"new b" and client.get_object("c").read() == b"waits for the worker"
        assert single.admin.fsck() == []


def test_copy_holds_its_source_while_a_delete_of_the_source_waits(server, bucket):
    """A CopyObject references the source's blobs: deleting the source must wait for the copy's commit."""
    bucket.put_object("source", b"shared data" * 1000)
    server.admin.set_faults([{"action": "hold", "op": "CopyObject", "count": 1, "delay_ms": WAIT * 1000}])
    copy, copy_result = background(bucket.copy_object, bucket.bucket_name, "source", "target")
    wait_until_held(server)
    delete, delete_result = background(bucket.delete_object, "source")
    bucket.put_object("unrelated", b"x")
    assert copy.is_alive() and delete.is_alive()
    server.admin.release_held()
    copy.join(WAIT)
    delete.join(WAIT)
    assert "error" not in copy_result and "error" not in delete_result
    assert bucket.get_object("target").read() == b"shared data" * 1000
    assert not bucket.object_exists("source")


def test_a_get_keeps_sending_an_object_that_is_deleted_meanwhile(server, bucket):
    """The blobs of a GET stay in place while it sends them, although a DELETE committed in between."""
    payload = os.urandom(2 * 1024 * 1024)
    bucket.put_object("streamed", payload)
    server.admin.set_faults([{"action": "bandwidth", "op": "GetObject", "bytes_per_second": 4 * 1024 * 1024}])
    stream = bucket.get_object("streamed")
    first = stream.read(64 * 1024)
    bucket.delete_object("streamed")
    assert not bucket.object_exists("streamed")
    assert first + stream.read() == payload


# -- requests stalled mid-body ----------------------------------------------------------------------------


def test_reads_and_lists_complete_while_a_large_put_is_spooling(server, bucket):
    bucket.put_object("small", b"readable")
    size = 32 * 1024 * 1024
    payload = os.urandom(size)
    headers = v1_headers(server, "PUT", bucket.bucket_name, "large")
    headers["Content-Length"] = str(size)
    with RawConnection(server, timeout=WAIT) as connection:
        connection.send(request_head("PUT", bucket.bucket_name, "large", headers) + payload[: size // 2])
        spooled = wait_for(lambda: max((p.stat().st_size for p in Path(server.data_dir).rglob("upload-*")),
                                       default=0), lambda n: n > 0, timeout=WAIT)
        assert spooled > 0
        assert bucket.get_object("small").read() == b"readable"
        assert [o.key for o in bucket.list_objects().object_list] == ["small"]
        bucket.put_object("other", b"written while the large PUT spools")
        connection.send(payload[size // 2:])
        status, _, _ = connection.read_response()
    assert status == 200
    assert hashlib.md5(bucket.get_object("large").read()).digest() == hashlib.md5(payload).digest()


# -- a seeded stress run ----------------------------------------------------------------------------------


SIZES = (0, 1, 1000, 70_000, FAST_BODY_MIN + 4096)
SHARED_KEYS = ("s0", "s1", "s2", "s3")


class History:
    """What the clients wrote and read, checked at the end: every read is one whole version some write made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written: dict[str, set[bytes]] = {}  # key -> digests of every payload a write could have left
        self.copies: list[tuple[str, str]] = []  # (source, target)
        self.reads: list[tuple[str, bytes]] = []  # (key, digest read)
        self.appends: list[bytes] = []  # the data of every successful append to "log", in commit order

    def wrote(self, key: str, payload: bytes) -> None:
        with self.lock:
            self.written.setdefault(key, set()).add(hashlib.md5(payload).digest())

    def allowed(self) -> dict[str, set[bytes]]:
        allowed = {key: set(digests) for key, digests in self.written.items()}
        changed = True
        while changed:  # a copy's target may hold anything its source held (transitively)
            changed = False
            for source, target in self.copies:
                before = len(allowed.setdefault(target, set()))
                allowed[target] |= allowed.get(source, set())
                changed |= len(allowed[target]) != before
        return allowed


def client_run(server: LocalServer, name: str, number: int, seed: int, operations: int, history: History) -> None:
    rng = random.Random(seed * 1000 + number)
    bucket = server.oss2_bucket(name, connect_timeout=WAIT)
    own = [f"c{number}-{i}" for i in range(3)]
    for _ in range(operations):
        key = rng.choice(SHARED_KEYS + tuple(own))
        action = rng.choice(["put", "put", "get", "get", "copy", "delete", "multipart", "append", "get_log"])
        if action == "put":
            payload = rng.randbytes(rng.choice(SIZES))
            history.wrote(key, payload)
            bucket.put_object(key, payload)
        elif action == "get":
            try:
                data = bucket.get_object(key).read()  # oss2 also checks the whole-object CRC-64
            except oss2.exceptions.NoSuchKey:
                continue
            with history.lock:
                history.reads.append((key, hashlib.md5(data).digest()))
        elif action == "copy":
            target = rng.choice(SHARED_KEYS + tuple(own))
            with history.lock:
                history.copies.append((key, target))
            try:
                bucket.copy_object(name, key, target)
            except oss2.exceptions.NoSuchKey:
                pass
        elif action == "delete":
            bucket.delete_object(key)
        elif action == "multipart":
            first, last = rng.randbytes(100 * 1024), rng.randbytes(rng.choice(SIZES[:4]))
            history.wrote(key, first + last)
            upload_id = bucket.init_multipart_upload(key).upload_id
            if rng.random() < 0.2:
                bucket.abort_multipart_upload(key, upload_id)
                continue
            parts = [oss2.models.PartInfo(n, bucket.upload_part(key, upload_id, n, data).etag)
                     for n, data in ((1, first), (2, last))]
            bucket.complete_multipart_upload(key, upload_id, parts)
        elif action == "append":
            data = f"<{number}:{rng.random()}>".encode()
            try:
                position = bucket.head_object("log").content_length
            except oss2.exceptions.NotFound:
                position = 0
            try:
                bucket.append_object("log", position, data)
            except oss2.exceptions.PositionNotEqualToLength:
                continue  # another client appended first
            with history.lock:
                history.appends.append(data)
        else:
            try:
                data = bucket.get_object("log").read()
            except oss2.exceptions.NoSuchKey:
                continue
            with history.lock:
                history.reads.append(("log", data))


def test_concurrent_clients_on_shared_and_own_keys_leave_a_consistent_store(server, bucket):
    history = History()
    clients, operations = 8, 60
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client_run, server, bucket.bucket_name, n, 11, operations, history) for n in range(clients)]:
            future.result()

    allowed = history.allowed()
    for key, digest in history.reads:
        if key == "log":
            continue
        assert digest in allowed.get(key, set()), f"GET {key} returned bytes no write produced"
    log = bucket.get_object("log").read() if history.appends else b""
    assert sorted(history.appends) == sorted(  # every acknowledged append is in the log exactly once ...
        chunk + b">" for chunk in log.split(b">") if chunk)
    boundaries = {0}
    for position in range(len(log)):
        if log[position:position + 1] == b">":
            boundaries.add(position + 1)
    for key, data in history.reads:  # ... and every read of it was a whole earlier state of it
        if key == "log":
            assert len(data) in boundaries and log.startswith(data)
    for key in SHARED_KEYS:
        try:
            final = hashlib.md5(bucket.get_object(key).read()).digest()
        except oss2.exceptions.NoSuchKey:
            continue
        assert final in allowed[key]
    assert server.admin.fsck(data=True) == []


# -- the pieces, in-process -------------------------------------------------------------------------------


def body(data: bytes) -> SpooledBody:
    return SpooledBody(None, len(data), hashlib.md5(data).digest(), 0, data=data)


def test_fsck_reports_each_kind_of_damage(tmp_path):
    from ossmount.crc64 import crc64

    store = Store(str(tmp_path))
    store.create_bucket("b", "owner", 0.0, "Standard")
    data = b"some object data"
    extents = store.adopt_body(SpooledBody(None, len(data), None, crc64(data), data=data))
    store.put_object("b", "k", ObjectRecord(size=len(data), crc64=crc64(data), extents=extents), "")
    shared = store.adopt_body(SpooledBody(None, 4, None, crc64(b"four"), data=b"four"))
    store.put_object("b", "k2", ObjectRecord(size=4, crc64=crc64(b"four"), extents=shared), "")
    assert store.check_consistency(data=True) == []

    db = sqlite3.connect(store._path)  # noqa: SLF001 - damage it behind the store's back
    db.execute("UPDATE blobs SET refs = 5 WHERE id = ?", (extents[0].blob,))
    db.commit()
    db.close()
    Path(store.blob_path(shared[0].blob)).write_bytes(b"fou")  # truncated
    Path(store.blob_dir, "stray").write_bytes(b"orphan")
    problems = store.check_consistency(data=True)
    store.close()
    assert any(extents[0].blob in p and "refs 5" in p for p in problems), problems
    assert any(shared[0].blob in p and "3 bytes" in p for p in problems), problems
    assert any("stray" in p and "not referenced" in p for p in problems), problems


def test_pinned_blobs_outlive_the_delete_of_their_object(tmp_path):
    store = Store(str(tmp_path))
    store.create_bucket("b", "owner", 0.0, "Standard")
    extents = store.adopt_body(body(b"pinned"))
    store.put_object("b", "k", ObjectRecord(size=6, extents=extents), "")
    path = Path(store.blob_path(extents[0].blob))
    pins = store.pin_blobs([extents[0].blob])
    assert pins is not None
    store.delete_unversioned("b", "k")
    assert path.exists() and store.check_consistency() == []  # kept for the reader, not an orphan
    pins.release()
    assert not path.exists()
    assert store.pin_blobs([extents[0].blob]) is None  # a reader coming after the unlink must re-read the row
    store.close()


def test_writes_to_a_deleted_bucket_fail_in_their_transaction(tmp_path):
    from ossmount.server.core.store import BucketGone

    store = Store(str(tmp_path))
    store.create_bucket("b", "owner", 0.0, "Standard")
    assert store.delete_bucket("b")
    extents = store.adopt_body(body(b"late"))
    with pytest.raises(BucketGone):
        store.put_object("b", "k", ObjectRecord(size=4, extents=extents), "")
    with pytest.raises(BucketGone):
        store.create_upload("b", "k", 0.0, ObjectRecord(), False)
    store.unlink_blob(extents[0].blob)
    assert store.check_consistency() == []
    store.close()


def test_a_bucket_with_objects_is_not_deleted(tmp_path):
    store = Store(str(tmp_path))
    store.create_bucket("b", "owner", 0.0, "Standard")
    store.put_object("b", "k", ObjectRecord(), "")
    assert not store.delete_bucket("b")
    assert store.get_bucket("b") is not None
    store.close()


def test_lock_table_orders_and_forgets_its_locks():
    table = LockTable()
    order: list[str] = []
    entered = threading.Event()
    with table.hold([("key", "b", "y"), ("key", "b", "x"), ("key", "b", "x")]):
        def other():
            with table.hold([("key", "b", "x")]):
                order.append("other")
            entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        with table.hold([("key", "b", "z")]):  # a different name does not wait
            order.append("z")
        order.append("first")
    assert entered.wait(WAIT)
    thread.join()
    assert order == ["z", "first", "other"]
    assert len(table) == 0


def plan(method: str, target: str, headers: dict[str, str] | None = None, data: bytes | None = None,
         op: str = "") -> list:
    parsed = parse_target(target, "127.0.0.1")
    request = Request(method, target, headers or {}, body(data) if data is not None else None)
    return lock_plan(op, parsed, request, parse_copy_source,
                     lambda raw: [entry.key for entry in parse_delete(raw)[1]])


def test_lock_plan_names_what_each_operation_reads_then_writes():
    assert plan("GET", "/b/k", op="GetObject") == []
    assert plan("GET", "/b/?list-type=2", op="ListObjectsV2") == []
    assert plan("PUT", "/b/k", op="PutObject") == [key_lock("b", "k")]
    assert sorted(plan("PUT", "/b/k", {"x-oss-copy-source": "/src/a%2Fb"}, op="CopyObject")) == [
        key_lock("b", "k"), key_lock("src", "a/b")]
    assert plan("PUT", "/b/k?partNumber=1&uploadId=U", op="UploadPart") == [("upload", "U")]
    assert sorted(plan("PUT", "/b/k?partNumber=1&uploadId=U", {"x-oss-copy-source": "/b/s"},
                       op="UploadPartCopy")) == [key_lock("b", "s"), ("upload", "U")]
    assert sorted(plan("POST", "/b/k?uploadId=U", op="CompleteMultipartUpload")) == [
        key_lock("b", "k"), ("upload", "U")]
    document = b"<Delete><Object><Key>x</Key></Object><Object><Key>y</Key></Object></Delete>"
    assert plan("POST", "/b/?delete", data=document, op="DeleteMultipleObjects") == [
        key_lock("b", "x"), key_lock("b", "y")]
    assert plan("POST", "/b/?delete", data=b"<not xml", op="DeleteMultipleObjects") == []
    assert plan("PUT", "/b/k", {"x-oss-copy-source": "nonsense"}, op="CopyObject") == [key_lock("b", "k")]
    assert plan("PUT", "/b/", op="PutBucket") == [("bucket", "b")]


def test_store_reads_see_each_commit_from_every_thread(tmp_path):
    """Reader connections are pooled across threads; none may keep reading an old snapshot."""
    store = Store(str(tmp_path))
    store.create_bucket("b", "owner", 0.0, "Standard")

    def writer_then_readers(n: int) -> None:
        store.put_object("b", f"k{n}", ObjectRecord(etag=str(n)), "")
        with ThreadPoolExecutor(4) as pool:
            seen = list(pool.map(lambda _: store.get_latest("b", f"k{n}"), range(8)))
        assert all(row is not None and row.record.etag == str(n) for row in seen)

    for n in range(20):
        writer_then_readers(n)
    assert store.check_consistency() == []
    store.close()
