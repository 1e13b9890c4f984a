"""Which operations must not interleave, and the named locks that keep them apart.

The store (store.py) makes each write transaction atomic and keeps the refcounts right; what it cannot see is an
operation that reads state in one step and writes in a later one. These rules cover those, and nothing else:

1. Reads (GetObject, HeadObject, listings, bucket info, ...) take no lock: they see the last committed state,
   and a GET pins the blobs it sends (store.pin_blobs).
2. An operation that reads a key and then writes it holds `("key", bucket, key)` from its first read to its
   commit: PutObject (forbid-overwrite), CopyObject (onto itself, forbid-overwrite), AppendObject (position),
   DeleteObject, PutSymlink, RestoreObject, PutObjectAcl, CompleteMultipartUpload, and each key a
   DeleteMultipleObjects names.
3. An operation that references another key's extents holds that source key's lock too (CopyObject,
   UploadPartCopy): the source cannot be rewritten or deleted, nor its blobs unlinked, in between.
4. Operations on one multipart upload hold `("upload", upload_id)`: UploadPart, UploadPartCopy,
   CompleteMultipartUpload, AbortMultipartUpload. A part cannot change while Complete stitches the parts, nor be
   added to an upload that is being aborted.
5. PutBucket and DeleteBucket hold `("bucket", name)`. Object writes do not: a write whose bucket was deleted
   meanwhile fails in its own transaction (store.BucketGone, answered NoSuchBucket), and a bucket is deleted
   only if its deleting transaction finds it empty.
6. An operation takes all its locks at once, in sorted order (so no two operations wait for each other), after
   its body was received and before its handler runs; it releases them when the response is built. Bodies are
   spooled before and sent after, outside every lock.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterable, Iterator

from .model import Request
from .routing import Target

LockName = tuple[str, ...]

KEY_WRITE_OPS = frozenset({
    "PutObject", "CopyObject", "AppendObject", "DeleteObject", "PutSymlink", "RestoreObject", "PutObjectAcl",
    "CompleteMultipartUpload",
})
UPLOAD_OPS = frozenset({"UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload"})
COPY_OPS = frozenset({"CopyObject", "UploadPartCopy"})
BUCKET_OPS = frozenset({"PutBucket", "DeleteBucket"})


def key_lock(bucket: str, key: str) -> LockName:
    return ("key", bucket, key)


def lock_plan(op: str, target: Target, request: Request,
              copy_source: Callable[[str], tuple[str, str, str | None]],
              deleted_keys: Callable[[bytes], list[str]]) -> list[LockName]:
    """The locks operation `op` on `target` holds (rules 2-5). `copy_source` parses an x-oss-copy-source header and
    `deleted_keys` a DeleteMultipleObjects body; either may raise: the request is then invalid, its handler will say
    so, and it needs no lock for the part that did not parse."""
    locks: list[LockName] = []
    if op in KEY_WRITE_OPS:
        locks.append(key_lock(target.bucket, target.key))
    if op in UPLOAD_OPS:
        locks.append(("upload", target.query.get("uploadId") or ""))
    if op in COPY_OPS:
        try:
            source_bucket, source_key, _ = copy_source(request.headers.get("x-oss-copy-source") or "")
        except Exception:  # noqa: BLE001 - the handler reports the malformed header
            pass
        else:
            locks.append(key_lock(source_bucket, source_key))
    if op in BUCKET_OPS:
        locks.append(("bucket", target.bucket))
    if op == "DeleteMultipleObjects":
        try:
            keys = deleted_keys(request.body.read_bytes() if request.body is not None else b"")
        except Exception:  # noqa: BLE001 - the handler reports the malformed document
            keys = []
        locks.extend(key_lock(target.bucket, key) for key in keys)
    return locks


class LockTable:
    """Mutexes named by tuples, created on first use and dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._entries: dict[LockName, list] = {}  # name -> [threading.Lock, holders and waiters]

    def _enter(self, name: LockName) -> threading.Lock:
        with self._mutex:
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = [threading.Lock(), 0]
            entry[1] += 1
            return entry[0]

    def _leave(self, name: LockName) -> None:
        with self._mutex:
            entry = self._entries[name]
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[name]

    @contextlib.contextmanager
    def hold(self, names: Iterable[LockName]) -> Iterator[None]:
        """Hold every named lock (each once, taken in sorted order) for the body of the `with`."""
        held: list[tuple[LockName, threading.Lock]] = []
        try:
            for name in sorted(set(names)):
                lock = self._enter(name)
                try:
                    lock.acquire()
                except BaseException:
                    self._leave(name)
                    raise
                held.append((name, lock))
            yield
        finally:
            for name, lock in reversed(held):
                lock.release()
                self._leave(name)

    def __len__(self) -> int:
        """How many names are held or waited for now."""
        with self._mutex:
            return len(self._entries)
