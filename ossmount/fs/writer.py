"""Uploading a spooled file: the replaceable "upload strategy" seam.

`FileContent.flush` hands an `UploadRequest` (key, the spool, its size, Content-Type and metadata) to
an `UploadStrategy` and gets the new object's `ObjectInfo` back, or a `StoreError`. The default,
`SpoolUpload`, does what ossfs 1.x does on close: below `multipart_threshold` (default: `multipart_size`; never
with nomultipart) one PutObject streamed from the spool, otherwise a multipart upload of `multipart_size` parts with at most `parallel_count` parts
in flight; a part lying wholly in the unchanged old object is copied on the server (UploadPartCopy)
instead of downloaded and re-uploaded, so appending to a large object moves only the new tail; each streamed from the spool with pread (no whole-part buffers in memory), aborted on any
failure.

Later strategies (streaming multipart while the file is still being written) implement the same one-method protocol and are passed to `ContentManager`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

import trio

from ossmount.fs.reader import IoCounters
from ossmount.fs.spool import SpoolFile, split_range
from ossmount.store.types import ObjectInfo, PartInfo, StoreError

log = logging.getLogger(__name__)

ABORT_TIMEOUT = 30.0  # seconds an abort may take on the failure path before the upload id is left behind


async def _already_local(start: int, end: int) -> None:
    return None


def _nothing_copyable(start: int, end: int) -> bool:
    return False


@dataclass(frozen=True)
class UploadRequest:
    """What to upload. The spool may still lack bytes of the old object: a strategy must call
    `ensure_local(start, end)` before reading [start, end) from the spool, or upload a range for which
    `copyable(start, end)` is true with UploadPartCopy from `key` (the unchanged old object), conditioned
    on the version the writer opened (`base_etag`, or `base_version_id` in a versioned bucket): bytes of
    another version must never be pasted into this upload."""

    key: str
    spool: SpoolFile
    size: int
    content_type: str
    meta: dict[str, str] = field(default_factory=dict)
    ensure_local: Callable[[int, int], Awaitable[None]] = _already_local
    copyable: Callable[[int, int], bool] = _nothing_copyable
    base_etag: str | None = None
    base_version_id: str | None = None


class UploadStrategy(Protocol):
    async def upload(self, request: UploadRequest) -> ObjectInfo:
        """Store the first `request.size` bytes of the spool as `request.key`; raise StoreError on failure."""
        ...


def store_error_from_group(group: BaseExceptionGroup) -> StoreError | None:
    """The first StoreError of a nursery's exception group when every leaf is a StoreError, else None."""
    matched, rest = group.split(StoreError)
    if matched is None or rest is not None:
        return None
    while isinstance(matched, BaseExceptionGroup):
        matched = matched.exceptions[0]
    return matched


class SpoolUpload:
    """PutObject below `multipart_threshold` bytes (math.inf: always), else parallel multipart from the spool
    (see module docstring)."""

    def __init__(self, store, *, multipart_size: int, parallel_count: int, counters: IoCounters,
                 multipart_threshold: float | None = None):
        if multipart_size <= 0 or parallel_count <= 0:
            raise ValueError("multipart_size and parallel_count must be positive")
        self._store = store
        self.multipart_size = multipart_size
        self.multipart_threshold = multipart_size if multipart_threshold is None else multipart_threshold
        self.parallel_count = parallel_count
        self._counters = counters

    async def upload(self, request: UploadRequest) -> ObjectInfo:
        if request.size < self.multipart_threshold:
            return await self._put(request)
        try:
            return await self._multipart(request)
        except BaseExceptionGroup as group:
            store_error = store_error_from_group(group)
            if store_error is None:
                raise
            raise store_error from None

    async def _put(self, request: UploadRequest) -> ObjectInfo:
        await request.ensure_local(0, request.size)
        if request.size == 0:
            info = await self._store.put(request.key, b"", content_type=request.content_type, meta=request.meta)
        else:
            reader = request.spool.open_reader()
            try:
                info = await self._store.put_file(
                    request.key, reader, request.size, content_type=request.content_type, meta=request.meta
                )
            finally:
                reader.close()
        self._counters.puts += 1
        self._counters.bytes_uploaded += request.size
        return info

    async def _multipart(self, request: UploadRequest) -> ObjectInfo:
        store = self._store
        upload_id = await store.init_multipart(request.key, content_type=request.content_type, meta=request.meta)
        ranges = split_range(0, request.size, self.multipart_size)
        parts: list[PartInfo | None] = [None] * len(ranges)
        reader = request.spool.open_reader()  # parts stream from it with pread: safe to share
        try:
            # A slot is taken before a part starts and given back when it ends, so however large the
            # file only parallel_count part tasks (and requests) exist at once.
            slots = trio.Semaphore(self.parallel_count)
            async with trio.open_nursery() as nursery:
                for index, (start, end) in enumerate(ranges):
                    await slots.acquire()
                    nursery.start_soon(self._upload_part, request, reader, upload_id, index, start, end, parts, slots)
            info = await store.complete_multipart(request.key, upload_id, [part for part in parts if part])
        except BaseException:
            with trio.CancelScope(shield=True) as abort_scope:
                abort_scope.deadline = trio.current_time() + ABORT_TIMEOUT
                try:
                    await store.abort_multipart(request.key, upload_id)
                except StoreError as abort_error:
                    log.warning("could not abort multipart upload %s of %s: %s", upload_id, request.key, abort_error)
            raise
        finally:
            reader.close()
        self._counters.multipart_uploads += 1
        return info

    async def _upload_part(
        self,
        request: UploadRequest,
        reader,
        upload_id: str,
        index: int,
        start: int,
        end: int,
        parts: list[PartInfo | None],
        slots: trio.Semaphore,
    ) -> None:
        try:
            if request.copyable(start, end):
                parts[index] = await self._store.upload_part_copy(
                    request.key, (start, end - 1), request.key, upload_id, index + 1,
                    source_if_match=request.base_etag, source_version_id=request.base_version_id,
                )
                self._counters.parts_copied += 1
                return
            await request.ensure_local(start, end)
            parts[index] = await self._store.upload_part_from_file(
                request.key, upload_id, index + 1, reader, start, end - start
            )
            self._counters.parts_uploaded += 1
            self._counters.bytes_uploaded += end - start
        finally:
            slots.release()
