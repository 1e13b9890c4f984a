"""File contents: open/read/write/truncate of objects, streaming and spooled uploads, prefetching reads.

fs-core owns names, inodes and attributes and calls this module for bytes. One `FileContent` exists
per open key (opens of one key share it, refcounted by `ContentManager`).

Life of a content
-----------------
* Clean, no spool: reads go to an `ObjectReader` (reader.py) — ranged GETs into prefetch buffers,
  answered as memoryview slices. Nothing touches the disk.
* Streaming (stream.py): a write at the end of a content whose new version depends on no old byte (a new file,
  one truncated to 0 or opened with O_TRUNC) starts a `StreamUpload`: parts go up while the file is written, and
  nothing reaches the disk unless an upload fails or the mount's write budget is spent. Out-of-order writes into
  the part being filled, or into part 1 (kept in memory until the commit), stay in the stream. A write, truncate or
  read that needs the bytes of a part already uploaded *publishes* the stream (commits it as the key's new
  version, as a flush would) and goes on with the spool over it.
* Spooled: any other first write or truncate (random writes into an existing object, appends to one) creates a
  sparse `SpoolFile` (spool.py) the length of the file. The remote object is *not* downloaded then: bytes
  [0, base_size) of the remote object are fetched into the spool lazily, only for ranges that are read
  before being overwritten, and all remaining gaps at flush ("materialize"). `_valid` lists which ranges
  below base_size the spool already holds; at or past base_size the spool is authoritative (holes are
  zeros). Shrinking below base_size lowers base_size, so truncate-then-grow reads zeros, as POSIX requires.
* flush (flush/fsync/close) *commits* the content. A stream is frozen and handed over as `_commit`, the version
  the content now builds on; its upload then runs without the content's lock (per-part snapshots: the parts are
  the stream's own, nothing later writes can change), so reads, writes and getattr of this file go on while it
  uploads: later writes start a new stream or the spool over it, and a read of bytes only the upload has waits for
  it. A spooled content is uploaded by the `UploadStrategy` (writer.py) under the lock, with the Content-Type/meta
  that `headers()` gives at that moment; multipart parts that lie wholly below base_size and touch no written
  range (`_modified`) are copied on the server (UploadPartCopy), so appending to or patching a large object moves
  only the changed parts. On StoreError the content keeps its data, one line is logged, the error propagates
  (fs-core answers EIO), and the manager retries it in the background with exponential backoff until it lands or
  the mount ends (and the next flush/fsync/close, or `flush_all` at unmount, tries again too).
* release at zero references drops a clean content (spool closed, buffers freed) but keeps a dirty
  one in the table, so dirty data is never dropped silently: a later open shares it and retries.

Durability (journal.py): spool files live in the mount's spool session directory, each with a journal record
("dirty", "streaming", "committing", "failed"). From the moment a commit starts every byte it needs is in the spool
file or already uploaded; a failed commit's spool file and record are fsync'ed before the writer hears EIO. After a
crash the next mount (recovery.py) uploads committing/failed data whose object is unchanged, keeps other data
aside in `conflict_dir`, and aborts the uploads the records name.

Versions (issue 6, A2/A3)
-------------------------
* A content is one *version* of its key: `etag` (and `version_id` in a versioned bucket) is the
  version it was opened on, or the one its last upload created. Every byte fetched from OSS is pinned
  to it (`If-Match`, or `?versionId=`), and so is every UploadPartCopy of unchanged ranges
  (`x-oss-copy-source-if-match`). A replaced or deleted object therefore fails the read
  (`store.types.version_gone`: the caller answers EIO) instead of mixing two versions.
* `ContentManager.open` of a clean key whose ETag differs from the shared content's starts a new
  content for the new version; the old one is *retired* (out of the table) and keeps serving the
  handles that opened it, until their last release.
* An upload whose base changed or went (`version_gone` while filling the spool or copying a part, or, for a
  retried commit, a HEAD showing another version) is a write conflict: no object is produced (a multipart upload
  is aborted), the other client's object stays, and the writer's bytes are copied to `conflict_dir` as
  `<key, %-encoded>.<UTC time>` plus a `.json` sidecar naming the byte ranges this writer wrote and the ranges
  it does not have (zeros in the copy: the old version's never fetched, or parts only an unfinished upload held).
  The content is then detached: its flushes, writes and truncates fail with EIO.

Concurrency (everything runs in trio tasks on the one event-loop thread; synchronous code between two
awaits is atomic, and spool pread/pwrite are synchronous calls on that thread — cheaper than a
thread hop for ≤1 MiB page-cache I/O)
---------------------------------------------------------------------------------------------------
* `FileContent._lock` (a trio.Lock) protects the stream, the spool's contents and length, `size`, `base_size`,
  `_valid`, `_modified` and `dirty` against interleaving across awaits. write, truncate, materialize and flush
  hold it. A spooled flush holds it for the whole upload, so a write or truncate that races it waits until the
  upload ends and then makes the content dirty again: the uploaded object is always one consistent snapshot and
  the later write is uploaded by the next flush. A streaming commit holds it only to freeze the stream.
* Commits of one key land in order: a commit (or a spooled flush) first waits for the commit it builds on
  (`_settle`); each commit's `finish` runs under its own lock, so a background retry and a flush never run it
  twice at once.
* Part uploads of one flush run concurrently under the flush's lock: each downloads (ensure_local)
  and reads only its own part's range, so they never touch the same bytes. Streaming part uploads are tasks in
  the manager's nursery.
* Reads of a content with a spool take the lock only when a range below base_size must first be
  fetched; otherwise they pread without it (atomic, since pread is synchronous). Reads of a clean
  content without a spool never take it; a write that starts meanwhile invalidates the prefetch
  buffers, and a read already waiting on a buffer returns the pre-write bytes (the two calls were
  concurrent, so either order is correct). Reads of a stream are answered from its memory and spool file
  without the lock when they can be.
* Prefetch GETs, part uploads, background retries and aborts run as tasks in the manager's nursery (the
  mount's). A dropped buffer may still be filled by its in-flight GET; only the task's own reference keeps it
  alive until then.
* rename(old, new) moves the table entry and changes `key` at once. A streaming or committing content is first
  settled (`settle`): its upload is bound to the old key. A spooled flush already uploading keeps the key it
  started with; when it finishes and sees the key changed, the content stays dirty, so the next flush uploads to
  the new key.
* `unlinked(key)` (and a rename over an open key) detaches the old content: it keeps serving reads
  and writes to its open handles, but its flush uploads nothing (a stream's upload is aborted), so closing an
  unlinked file never re-creates the deleted object.
* release never awaits an upload; flush_all at unmount flushes every dirty content one by one and
  logs (does not raise) failures.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import math
import os
import random
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any, Callable

import trio

from ossmount.fs.buffers import Buffer, release_heap
from ossmount.fs.errors import FsError
from ossmount.fs.journal import Entry, Session
from ossmount.fs.reader import IoCounters, ObjectReader, PrefetchBudget, Progress, ReadaheadConfig, ReadMemory
from ossmount.fs.spool import CHUNK_LIMIT, RangeSet, SpoolFile, merge_close_ranges, spool_errors
from ossmount.fs.stream import StreamUpload, UploadLost
from ossmount.fs.writer import ABORT_TIMEOUT, SpoolUpload, UploadRequest, UploadStrategy, store_error_from_group
from ossmount.store.types import (InvalidObjectState, NoSuchKey, NoSuchUpload, ObjectInfo, PreconditionFailed,
                                  StoreError, version_gone)

log = logging.getLogger(__name__)

UploadHeaders = tuple[str, dict[str, str]]  # (content_type, x-oss-meta-* without prefix)
HeadersFactory = Callable[[], UploadHeaders]

DEFAULT_PREFETCH_LIMIT = 64 * 1024 * 1024  # all prefetch buffers of a mount (reader.py: ReadMemory)
# Where a writer's bytes go when its upload conflicts with another client's change: /var/tmp survives a
# reboot (FHS), one directory per uid keeps users apart.
DEFAULT_CONFLICT_DIR = f"/var/tmp/ossmount-conflicts-{os.getuid()}"
RETRY_FIRST_DELAY = 1.0  # seconds before the first background retry of a failed upload; doubles up to the max
RETRY_MAX_DELAY = 60.0


def conflict_dir_for(tmpdir: str | None) -> str:
    """The conflict directory of a mount: under `-o tmpdir=DIR` when given (where its spool files are too,
    so a conflict never needs more room than the spool had), else DEFAULT_CONFLICT_DIR."""
    return os.path.join(tmpdir, f"ossmount-conflicts-{os.getuid()}") if tmpdir else DEFAULT_CONFLICT_DIR


def default_write_budget(multipart_size: int, parallel_count: int) -> int:
    """Bytes of written data all streams of a mount may hold in memory: two writers' worth of window, part 1 and
    `parallel_count` parts in flight, at least 64 MiB. Beyond it parts go to the spool files."""
    return max(64 * 1024 * 1024, 2 * (parallel_count + 2) * multipart_size)


COPY_CHUNK = 1024 * 1024
MERGE_DISTANCE = 1024 * 1024  # fetching up to 1 MiB twice costs less than one more request


@dataclass(frozen=True)
class ContentStatistics:
    bytes_read: int
    bytes_written: int
    bytes_fetched: int
    bytes_uploaded: int
    puts: int
    parts_uploaded: int
    parts_copied: int
    multipart_uploads: int
    upload_failures: int
    prefetch_hits: int
    prefetch_misses: int
    sequential_fetches: int
    random_fetches: int
    chunks_evicted: int
    open_contents: int
    dirty_contents: int
    prefetch_buffered_bytes: int
    write_buffered_bytes: int = 0  # written data held in memory by streaming uploads
    aborts_pending: int = 0  # AbortMultipartUpload that failed and is retried in the background
    block_cache_bytes: int = 0  # use_cache: bytes of blocks on disk
    block_cache_hits: int = 0  # blocks read from disk instead of OSS
    block_cache_stores: int = 0  # blocks written
    block_cache_evictions: int = 0  # blocks deleted for max_cache_size / ensure_diskfree


@dataclass
class StartFetch:
    """The first bytes of an object fetched at open, with its metadata (`ContentManager.fetch_start`)."""

    info: ObjectInfo
    buffer: Buffer | None  # holds the object's first len(buffer.view) bytes; None once adopted or dropped


@dataclass(frozen=True)
class DirtyFile:
    """A file whose bytes are not all on OSS yet (`ContentManager.dirty_files`); times are epoch seconds.

    `state`: "dirty" (changed, no commit asked; a file written from its start may have parts going up already),
    "uploading" (a flush/fsync/close is uploading it) or "failed" (the last upload failed with `error_code`; the
    bytes are kept and retried in the background, next in `next_retry_in` seconds). Of a streamed file: its
    multipart `upload_id`, parts uploaded and in flight, and the written bytes it holds in memory; `spool_path`:
    its spool file, if it has one."""

    key: str
    size: int
    dirty_bytes: int
    dirty_since: float | None
    state: str
    open_handles: int
    uploading_since: float | None = None
    error_code: str | None = None
    error_request_id: str | None = None
    failed_at: float | None = None
    error: str | None = None
    upload_id: str | None = None
    parts_uploaded: int = 0
    parts_in_flight: int = 0
    memory_bytes: int = 0
    spool_path: str | None = None
    attempts: int = 0
    next_retry_in: float | None = None


class FileContent:
    """The bytes of one open key (see the module docstring for states and locking)."""

    def __init__(self, manager: ContentManager, key: str, *, size: int, etag: str, headers: HeadersFactory,
                 version_id: str | None = None):
        self._manager = manager
        self.key = key
        self.size = size
        self.etag = etag
        self.version_id = version_id
        self._dirty = False
        self.detached = False
        self.conflict_path: str | None = None  # set when a conflicting upload kept this writer's bytes aside
        self.served = 0  # bytes returned by read(): nonzero means some reader has seen this version
        self.dirty_since: float | None = None  # epoch seconds of the first change not yet uploaded
        self.uploading_since: float | None = None  # epoch seconds the upload in flight started
        self.failure: StoreError | None = None  # why the last upload failed (until one succeeds)
        self.failed_at: float | None = None
        self._headers = headers
        self._refs = 0
        self._base_size = size
        self._valid = RangeSet()  # ranges below base_size the spool holds (written or downloaded)
        self._modified = RangeSet()  # ranges below base_size changed by writes (not copyable)
        self._spool: SpoolFile | None = None
        self._entry: Entry | None = None  # the spool's journal entry
        self._stream: StreamUpload | None = None  # the version being written, uploaded as it is written
        self._commit: StreamUpload | None = None  # the committed stream this content builds on, until it lands
        self._flush_failure: StoreError | None = None  # the last spooled flush failed with this
        self._attempts = 0
        self._retry_at: float | None = None  # trio time of the next background retry
        self._retry_delay = manager._retry_first
        self._lock = trio.Lock()
        self._reader = ObjectReader(
            fetch_into=self._fetch_for_reader,
            size=size,
            nursery=manager._nursery,
            memory=manager._memory,
            counters=manager._counters,
            config=manager._readahead,
        )

    def __repr__(self) -> str:
        return f"<FileContent {self.key!r} size={self.size} dirty={self.dirty} refs={self._refs}>"

    @property
    def dirty(self) -> bool:
        """Data not (yet) on OSS: uncommitted writes, or a commit that has not landed."""
        return self._dirty or self._commit is not None

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value

    # ---- reads ------------------------------------------------------------------------------------

    async def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to `length` bytes at `offset`; short only at end of file. StoreError propagates."""
        data = await self._read(offset, length)
        self.served += len(data)
        return data

    async def _read(self, offset: int, length: int) -> bytes | memoryview:
        if offset >= self.size or length <= 0:
            return b""
        while self._stream is not None or (self._commit is not None and self._spool is None):
            # Bytes of the stream (or of the commit this content is) come from its memory and spool file; a
            # read of bytes only its upload has publishes the stream, then waits for the upload to land.
            stream = self._stream or self._commit
            assert stream is not None
            data = stream.read_local(offset, length, self.size)
            if data is not None:
                self._manager._counters.bytes_read += len(data)
                return data
            if self.detached:
                raise FsError(errno.EIO, f"{self.key} was deleted while open: bytes of it that were already uploaded "
                                         "are gone")
            if stream is self._stream:
                async with self._lock:
                    if self._stream is stream:
                        await self._publish()
            else:
                await self._settle()
            if offset >= self.size:
                return b""
        if self._spool is None:
            return await self._reader.read(offset, length)
        end = min(offset + length, self.size)
        if self._valid.gaps(offset, min(end, self._base_size)):
            async with self._lock:
                await self._materialize(offset, end)
        if self._spool is None:  # reset meanwhile
            return await self._read(offset, length)
        end = min(offset + length, self.size)
        with spool_errors(self.key):
            data = self._spool.pread(offset, max(end - offset, 0))
        self._manager._counters.bytes_read += len(data)
        return data

    def check_usable(self) -> None:
        """EIO once a write conflict detached this content (its bytes were kept aside, see module docstring)."""
        if self.conflict_path is not None:
            raise FsError(errno.EIO, f"{self.key}: the object changed under this writer; its bytes are in "
                                     f"{self.conflict_path}")

    # ---- writes -----------------------------------------------------------------------------------

    async def write(self, offset: int, data) -> int:
        """Write `data` at `offset`: into the stream (uploaded as it fills) or the spool; returns its length."""
        self.check_usable()
        written = len(data)
        async with self._lock:
            end = offset + written
            if self._stream is None and self._may_stream(offset):
                self._stream = StreamUpload(self._manager, self.key, lambda: self._headers(),
                                            base_etag=self.etag or None, base_version_id=self.version_id)
                self._reader.invalidate(self.size)
            stream = self._stream
            if stream is not None and not stream.can_write(offset, end):
                if self.detached:
                    raise FsError(errno.EIO, f"{self.key} was deleted while open: this write needs bytes of it that "
                                             "were already uploaded and are gone")
                await self._publish()
                stream = None
            if stream is not None:
                await stream.write(offset, data)
            else:
                with spool_errors(self.key):
                    spool = self._ensure_spool()
                    spool.pwrite(offset, data)
                if offset < self._base_size:
                    self._valid.add(offset, min(end, self._base_size))
                    self._modified.add(offset, min(end, self._base_size))
            if end > self.size:
                self.size = end
            self._mark_dirty()
        self._manager._counters.bytes_written += written
        return written

    def _may_stream(self, offset: int) -> bool:
        """A write at the end of a content whose new version needs no byte of an old one starts a stream."""
        return (self._manager._streaming and self._spool is None and offset == self.size == 0
                and self._base_size == 0 and not self.detached)

    async def _publish(self) -> None:
        """The stream cannot take the next operation (it needs bytes only its upload has): commit it as the
        version this content builds on and go on with the spool over it. Caller holds the lock."""
        stream = self._stream
        if stream is None:
            return
        log.info("%s: a write, truncate or read needs bytes already uploaded while the file is written; its "
                 "upload is completed now (other clients see it) and the file goes on from the spool", self.key)
        commit = self._begin_commit()
        self._manager._nursery.start_soon(self._background_commit, commit)

    async def _background_commit(self, commit: StreamUpload) -> None:
        try:
            await self._run_commit(commit)
        except StoreError:
            pass  # kept, logged and retried (see _run_commit)

    async def truncate(self, size: int) -> None:
        """Set the length: shrinking drops bytes, growing adds zeros. The same length changes nothing."""
        self.check_usable()
        async with self._lock:
            if size == self.size:
                return
            if size == 0:  # the new version needs nothing of the old one (a stream may start again)
                self._reset_to_empty()
                self._mark_dirty()
                return
            if self._stream is not None:
                if self._stream.truncate(size):
                    self.size = size
                    self._mark_dirty()
                    return
                await self._publish()
            with spool_errors(self.key):
                spool = self._ensure_spool()
                spool.resize(size)
            if size < self._base_size:
                self._base_size = size
                self._valid.clip(size)
                self._modified.clip(size)
            self.size = size
            self._mark_dirty()

    def _reset_to_empty(self) -> None:
        """Truncate to 0: drop the stream (its upload is aborted) and the spool."""
        if self._stream is not None:
            self._stream.abandon()
            self._stream = None
        if self._spool is not None:
            self._drop_spool()
        self.size = 0
        self._base_size = 0
        self._valid.clear()
        self._modified.clear()
        self._reader.invalidate(0)

    # ---- commits ----------------------------------------------------------------------------------

    async def flush(self) -> ObjectInfo | None:
        """Upload if dirty and return the new object's info; None if there was nothing to upload."""
        if not self.dirty:
            return None
        async with self._lock:
            if self.detached:
                self._dirty = False
                return None
            if self._stream is not None:
                commit = self._begin_commit()
            elif self._dirty:
                return await self._flush_spool()
            else:
                commit = self._commit
                if commit is None:
                    return None
        return await self._run_commit(commit)

    def _begin_commit(self) -> StreamUpload:
        """Freeze the stream as this content's next version (caller holds the lock); `_run_commit` uploads it."""
        stream = self._stream
        assert stream is not None
        self._stream = None
        stream.freeze(self.size, self._headers())
        stream.after = self._commit
        self._commit = stream
        self._base_size = self.size
        self._valid.clear()
        self._modified.clear()
        self._dirty = False
        self._reader.invalidate(self.size)
        return stream

    async def _settle(self) -> None:
        """Wait until the commit this content builds on has landed (running it when it failed before); StoreError
        when it cannot."""
        commit = self._commit
        if commit is not None:
            await self._run_commit(commit)

    async def _run_commit(self, commit: StreamUpload) -> ObjectInfo:
        """Upload a frozen stream after the commits before it; on success it becomes this content's version."""
        if commit.after is not None and not commit.after.done.is_set():
            await self._run_commit(commit.after)
        async with commit.lock:
            if commit.done.is_set():
                if commit.abandoned:
                    raise StoreError(f"{self.key!r}: its upload was abandoned", key=self.key)
                return commit.result
            if commit.failed is not None:
                commit.headers = self._headers() if self._commit is commit and not self._dirty else commit.headers
            key = commit.key
            try:
                self.uploading_since = time.time()
                info = await commit.finish(check_base=commit.attempts > 0)
            except StoreError as exc:
                self._manager._counters.upload_failures += 1
                if version_gone(exc) or isinstance(exc, UploadLost):
                    await self._manager._keep_aside(self, commit=commit, error=exc)
                    raise
                self._failed(exc)
                log.error("upload of '%s' failed; its data is kept and retried in the background: %s", key, exc)
                raise
            finally:
                self.uploading_since = None
            commit.result = info
        if self._commit is commit:
            self._commit = None
            if self.key == key:
                self.etag = info.etag
                self.version_id = info.version_id
        self._succeeded()
        return info

    async def _flush_spool(self) -> ObjectInfo:
        """Upload the spooled content (caller holds the lock, for the whole upload)."""
        await self._settle()
        key = self.key
        content_type, meta = headers = self._headers()
        self._save_entry("committing")
        try:
            if self._spool is None:  # emptied (truncate to 0, or new): an empty object
                info = await self._manager._store.put(key, b"", content_type=content_type, meta=meta)
                self._manager._counters.puts += 1
            else:
                request = UploadRequest(
                    key=key,
                    spool=self._spool,
                    size=self.size,
                    content_type=content_type,
                    meta=meta,
                    ensure_local=self._materialize,
                    copyable=self._unchanged,
                    base_etag=self.etag or None,
                    base_version_id=self.version_id,
                )
                if self._flush_failure is not None and self.etag:
                    await self._check_unchanged()  # a retry must not replace another client's newer object
                self.uploading_since = time.time()
                info = await self._manager._strategy.upload(request)
        except StoreError as exc:
            self._manager._counters.upload_failures += 1
            if version_gone(exc):
                await self._manager._keep_aside(self, error=exc)
                raise
            self._flush_failure = exc
            self._save_entry("failed", durable=True)
            self._failed(exc)
            log.error("upload of '%s' failed; its data is kept and retried in the background: %s", key, exc)
            raise
        finally:
            self.uploading_since = None
        if self.key == key:
            # Otherwise a rename moved us meanwhile and pinned us to its copy (ContentManager.rename).
            self.etag = info.etag
            self.version_id = info.version_id
        # The new object equals the contents, so base_size and _valid stay true as they are: bytes
        # the spool lacks (parts copied on the server, never downloaded) are the same in the old
        # and the new object. When a rename moved us meanwhile, the object now under our key may be
        # either version; both agree outside _modified, so _modified is kept until an upload to
        # the current key succeeds.
        if self.key == key and not self.detached:
            self._dirty = False
            self._modified.clear()
            self._flush_failure = None
            if self._entry is not None:
                self._entry.forget()
            if self._headers() != headers and not self._dirty:
                await self._manager._store.update_meta(key, content_type=self._headers()[0],
                                                       meta=self._headers()[1], size=self.size)
        self._succeeded()
        return info

    async def _check_unchanged(self) -> None:
        """PreconditionFailed unless the key is still the version this content builds on."""
        try:
            current = await self._manager._store.head(self.key)
        except NoSuchKey:
            current = None
        if current is None or current.etag != self.etag:
            raise PreconditionFailed(f"{self.key!r} changed since it was opened", code="PreconditionFailed",
                                     status=412, key=self.key)

    def _failed(self, error: StoreError) -> None:
        self.failure, self.failed_at = error, time.time()
        self._attempts += 1
        self._retry_at = trio.current_time() + self._retry_delay * (0.5 + random.random() / 2)
        self._retry_delay = min(self._retry_delay * 2, self._manager._retry_max)
        self._manager._retry_wakeup()

    def _succeeded(self) -> None:
        if self._attempts and not self.dirty:
            log.info("%s: its kept data is on OSS now (after %d failed attempts)", self.key, self._attempts)
        if not self.dirty:
            self.failure = self.failed_at = self.dirty_since = None
            self._attempts = 0
            self._retry_at = None
            self._retry_delay = self._manager._retry_first

    @property
    def needs_retry(self) -> bool:
        return self._retry_at is not None and self.dirty and not self.detached

    async def retry(self) -> ObjectInfo | None:
        """The background retry of a failed commit or spooled flush."""
        commit = self._commit
        if commit is not None and commit.failed is not None:
            return await self._run_commit(commit)
        if self._flush_failure is not None:
            return await self.flush()
        self._retry_at = None
        return None

    async def _mark_new(self) -> None:
        """A file just created: empty and dirty, so the next flush uploads a 0-byte object."""
        async with self._lock:
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        if not self.dirty:
            self.dirty_since = time.time()
        if not self._dirty and self._spool is not None:
            self._dirty = True
            self._save_entry("dirty")
        self._dirty = True

    # ---- the spool ----------------------------------------------------------------------------------

    @property
    def dirty_bytes(self) -> int:
        """Bytes not yet on OSS: ranges rewritten below the old size, plus everything past it."""
        if not self.dirty:
            return 0
        committing = self._commit.size if self._commit is not None else 0  # a frozen stream not landed yet
        return committing + sum(end - start for start, end in self._modified) + max(0, self.size - self._base_size)

    def _ensure_spool(self) -> SpoolFile:
        if self._spool is None:
            self._entry = self._manager._new_entry()
            if self._entry is None:
                self._spool = SpoolFile(self._manager._spool_dir, self.size)
            else:
                self._spool = SpoolFile(self._entry.directory, self.size, name=self._entry.data_name)
            self._reader.invalidate()
            self._save_entry("dirty")
        return self._spool

    def _record(self, state: str) -> dict[str, Any]:
        content_type, meta = self._headers()
        valid = RangeSet()
        for start, end in self._valid:
            valid.add(start, end)
        if self.size > self._base_size:
            valid.add(self._base_size, self.size)
        return {
            "state": state, "key": self.key, "bucket": self._manager.bucket_name, "size": self.size,
            "content_type": content_type, "meta": meta,
            "base": {"etag": self.etag or None, "version_id": self.version_id, "size": self._base_size},
            "after": self._commit.entry.number if self._commit is not None and self._commit.entry else None,
            "valid": [list(r) for r in valid], "modified": [list(r) for r in self._modified], "upload": None,
        }

    def _save_entry(self, state: str, *, durable: bool = False) -> None:
        if self._entry is None or self._spool is None:
            return
        try:
            if durable:
                self._spool.sync()
            self._entry.save(self._record(state), durable=durable)
        except OSError as exc:
            log.error("cannot write the journal record of %s in %s: %s", self.key, self._entry.directory, exc)

    def _drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.remove()
            self._spool = None
        if self._entry is not None:
            self._entry.discard()
            self._entry = None

    def _unchanged(self, start: int, end: int) -> bool:
        """True if [start, end) is still the remote object's bytes (an upload may copy it on the server)."""
        return end <= self._base_size and not self._modified.intersects(start, end)

    async def _fetch_remote(self, offset: int, view: memoryview, progress: Progress | None = None) -> int:
        commit = self._commit
        if commit is not None and not commit.done.is_set():
            # The version being committed: its bytes are still in memory or the spool file until it lands.
            data = commit.read_local(offset, len(view), commit.size)
            if data is not None:
                view[: len(data)] = data
                return len(data)
        await self._settle()
        return await self._manager._store.get_into(self.key, offset, view, if_match=self.etag or None,
                                                   version_id=self.version_id, progress=progress)

    async def _fetch_for_reader(self, offset: int, view: memoryview, progress: Progress) -> int:
        """A fetch of the prefetcher: through the mount's block cache when there is one (blockcache.py)."""
        cache = self._manager._block_cache
        if cache is None or not self.etag:
            return await self._fetch_remote(offset, view, progress)
        return await cache.fetch(cache.object_id(self.key, self.etag, self.version_id, self.size),
                                 offset, view, progress, remote=self._fetch_remote)

    def _own_ranges(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(ranges this writer wrote, ranges of the base version never fetched) of [0, size)."""
        written = list(self._modified)
        if self.size > self._base_size:
            written.append((self._base_size, self.size))
        return written, self._valid.gaps(0, min(self._base_size, self.size))

    async def _materialize(self, start: int, end: int) -> None:
        """Download the parts of [start, end) below base_size that the spool lacks. Caller holds the lock.

        Gaps closer than MERGE_DISTANCE are fetched by one GET (the bytes between them are read and
        dropped, since they may be newer in the spool), so scattered small writes do not cost a
        request per hole.
        """
        end = min(end, self._base_size)
        spans = merge_close_ranges(self._valid.gaps(start, end), MERGE_DISTANCE, CHUNK_LIMIT)
        if not spans:
            return
        slots = trio.Semaphore(self._manager._parallel_count)

        async def fetch(span_start: int, span_end: int) -> None:
            try:
                buffer = bytearray(span_end - span_start)
                filled = await self._fetch_remote(span_start, memoryview(buffer))
                self._manager._counters.bytes_fetched += filled
                if filled < len(buffer):
                    log.warning("%s is shorter on the server than when opened; missing bytes read as zeros", self.key)
                if self._spool is None:
                    return
                view = memoryview(buffer)
                for gap_start, gap_end in self._valid.gaps(span_start, span_end):
                    piece = view[gap_start - span_start : min(gap_end, span_start + filled) - span_start]
                    if len(piece):
                        self._spool.pwrite(gap_start, piece)
                self._valid.add(span_start, span_end)
            finally:
                slots.release()

        try:
            async with trio.open_nursery() as nursery:
                for span in spans:
                    await slots.acquire()
                    nursery.start_soon(fetch, *span)
        except BaseExceptionGroup as group:
            store_error = store_error_from_group(group)
            if store_error is None:
                raise
            raise store_error from None

    def _discard(self, *, keep_files: bool = False) -> None:
        """Free everything; `keep_files` (unmount with data that could not be uploaded) leaves the spool file and
        its record for the next mount."""
        for stream in (self._stream, self._commit):
            if stream is not None and not keep_files:
                stream.abandon()
        if keep_files:
            if self._spool is not None:
                self._spool.close()
                self._spool = None
        else:
            self._drop_spool()
        self._reader.invalidate()

    def progress(self) -> DirtyFile:
        """This content as `ContentManager.dirty_files` shows it."""
        stream = self._stream or self._commit
        failure = self.failure
        if failure is not None and self.uploading_since is None:
            state = "failed"
        elif self.uploading_since is not None or self._commit is not None:
            state = "uploading"
        else:  # a file being streamed too: its parts in flight are not a commit
            state = "dirty"
        details = stream.progress() if stream is not None else {}
        spool = (stream.spool if stream is not None else None) or self._spool
        return DirtyFile(
            key=self.key, size=self.size, dirty_bytes=self.dirty_bytes, dirty_since=self.dirty_since, state=state,
            open_handles=max(self._refs, 0), uploading_since=self.uploading_since,
            error_code=failure.code if failure else None, error_request_id=failure.request_id if failure else None,
            failed_at=self.failed_at, error=str(failure) if failure else None,
            upload_id=details.get("upload_id"), parts_uploaded=details.get("parts_uploaded", 0),
            parts_in_flight=details.get("parts_in_flight", 0), memory_bytes=details.get("memory", 0),
            spool_path=spool.path if spool is not None else None, attempts=self._attempts,
            next_retry_in=None if self._retry_at is None else max(0.0, self._retry_at - trio.current_time()),
        )


class ContentManager:
    """Opens, shares, flushes and releases `FileContent`s; owns the spool session, the write and prefetch budgets,
    and the background work (retries of failed uploads, aborts of abandoned multipart uploads).

    `multipart_size` and `multipart_threshold` (default: multipart_size; math.inf: never multipart, and then no
    streaming either) are in bytes. `session` is the mount's spool session (journal.py); without one, spool files
    are unlinked temporary files in `spool_dir` (nothing survives the process). Background work runs in
    `nursery`, which must outlive the manager's use (the mount's nursery). `write_budget`: bytes of written data
    streams may hold in memory (default_write_budget). `retry_delays`: (first, max) seconds between background
    retries of a failed upload.
    """

    def __init__(
        self,
        store,
        *,
        spool_dir: str | None = None,
        multipart_size: int,
        parallel_count: int,
        nursery: trio.Nursery,
        upload_strategy: UploadStrategy | None = None,
        readahead: ReadaheadConfig = ReadaheadConfig(),
        prefetch_limit: int = DEFAULT_PREFETCH_LIMIT,
        multipart_threshold: float | None = None,
        conflict_dir: str = DEFAULT_CONFLICT_DIR,
        session: Session | None = None,
        write_budget: int | None = None,
        retry_delays: tuple[float, float] = (RETRY_FIRST_DELAY, RETRY_MAX_DELAY),
        block_cache=None,
    ):
        if session is None and spool_dir is None:
            raise ValueError("a spool session or a spool_dir is needed")
        self._store = store
        self._session = session
        self._spool_dir = session.path if session is not None else spool_dir
        self._parallel_count = parallel_count
        self._nursery = nursery
        self._counters = IoCounters()
        self._memory = ReadMemory(prefetch_limit)
        self._block_cache = block_cache  # blockcache.BlockCache (use_cache=DIR) or None
        self._write_budget = PrefetchBudget(write_budget or default_write_budget(multipart_size, parallel_count))
        self._readahead = readahead
        self._strategy = upload_strategy or SpoolUpload(
            store, multipart_size=multipart_size, parallel_count=parallel_count, counters=self._counters,
            multipart_threshold=multipart_threshold,
        )
        self._streaming = not math.isinf(self._strategy.multipart_threshold)
        self._contents: dict[str, FileContent] = {}
        self._retired: set[FileContent] = set()  # older versions still open, out of the table
        self._orphans: set[FileContent] = set()  # detached or released contents whose commit has not landed
        self.conflict_dir = conflict_dir
        self.bucket_name = getattr(store, "bucket_name", "")
        self._retry_first, self._retry_max = retry_delays
        self._retrier_running = False
        self._retry_event = trio.Event()
        self._aborts: list[tuple[str, str, Entry | None]] = []
        self._abort_event = trio.Event()
        self._aborter_running = False
        self._recovering: dict[str, trio.Event] = {}
        # Set by fs-core: a background upload (retry, recovery) changed `key` on OSS; cached attributes are stale.
        self.uploaded: Callable[[str], None] = lambda key: None

    # ---- opening and sharing ----------------------------------------------------------------------

    async def open(
        self,
        key: str,
        *,
        size: int,
        etag: str,
        version_id: str | None = None,
        truncate: bool = False,
        new: bool = False,
        headers: HeadersFactory,
    ) -> FileContent:
        """Open (or share) the content of `key` at version `etag`/`version_id` (see "Versions").
        new=True: empty and dirty; truncate=True: O_TRUNC. Waits while `key` is being recovered."""
        recovering = self._recovering.get(key)
        if recovering is not None:
            await recovering.wait()
        content = self._contents.get(key)
        if content is not None and not content.dirty and not new and etag and content.etag and (
                etag != content.etag or (version_id or content.version_id) != content.version_id):
            self._retire(content)
            content = None
        if content is None:
            content = FileContent(self, key, size=0 if new else size, etag=etag, headers=headers,
                                  version_id=None if new else version_id)
            self._contents[key] = content
        content._headers = headers
        content._refs += 1
        try:
            if new or truncate:
                await content.truncate(0)
            if new:
                await content._mark_new()
        except BaseException:
            await self.release(content)
            raise
        return content

    # ---- the first bytes fetched at open ----------------------------------------------------------

    async def fetch_start(self, key: str, length: int) -> StartFetch | None:
        """GET the first `length` bytes of `key` with its metadata (store `get_start`): for an open that must ask OSS
        whether the object changed anyway, one request answers that and its first read (handles.py). None where a
        HEAD must answer instead: an empty or archived object, or a mount with a block cache (which may hold the
        bytes already). NoSuchKey and other StoreErrors propagate. Hand the result to `adopt_start`."""
        if self._block_cache is not None or length <= 0:
            return None
        buffer = self._memory.allocate(length, force=True)
        assert buffer is not None
        try:
            answer = await self._store.get_start(key, buffer.view)
        except InvalidObjectState:
            answer = None
        except BaseException:
            self._memory.give_back(buffer)
            raise
        if answer is None:
            self._memory.give_back(buffer)
            return None
        info, filled = answer
        buffer.cut(filled)
        self._counters.bytes_fetched += filled
        return StartFetch(info, buffer)

    def adopt_start(self, fetched: StartFetch, content: FileContent | None) -> None:
        """`content` (None: the open failed) serves its first reads from `fetched` when it is the same version and
        clean; otherwise the bytes are dropped. Either way `fetched` is used up."""
        buffer, fetched.buffer = fetched.buffer, None
        if buffer is None:
            return
        if (content is not None and content.etag == fetched.info.etag and content.etag
                and (content.version_id or None) == (fetched.info.version_id or None) and not content.dirty
                and content._spool is None and content._stream is None and content.size == fetched.info.size
                and content._reader.adopt(0, buffer)):
            return
        self._memory.give_back(buffer)

    async def release(self, content: FileContent) -> None:
        """Drop one reference. Never uploads. At zero references a clean content is freed; a dirty one is kept."""
        content._refs -= 1
        if content._refs > 0:
            return
        if content.dirty and not content.detached:
            log.debug("keeping dirty content of %s after its last close", content.key)
            return
        self._forget(content)

    def _forget(self, content: FileContent) -> None:
        if self._contents.get(content.key) is content:
            del self._contents[content.key]
        self._retired.discard(content)
        self._orphans.discard(content)
        content._discard()

    def _retire(self, content: FileContent) -> None:
        """A newer version of the key is being opened: `content` keeps serving its own handles only."""
        del self._contents[content.key]
        if content._refs > 0:
            self._retired.add(content)
        else:
            content._discard()

    def _new_entry(self) -> Entry | None:
        return self._session.new_entry() if self._session is not None else None

    def recovering(self, key: str) -> trio.Event:
        """Mark `key` as being recovered (recovery.py): opens of it wait until the returned event is set."""
        event = self._recovering.setdefault(key, trio.Event())
        return event

    def recovered(self, key: str) -> None:
        event = self._recovering.pop(key, None)
        if event is not None:
            event.set()

    # ---- write conflicts ----------------------------------------------------------------------------

    async def _keep_aside(self, content: FileContent, *, commit: StreamUpload | None = None,
                          error: StoreError | None = None) -> None:
        """A write conflict (see "Versions"), or an upload that lost parts: copy the writer's bytes to
        conflict_dir, log where, abandon the upload, detach the content."""
        if commit is not None:
            spool, size = commit.spool, commit.size
            lost = commit.lost_ranges()
            written, missing = [(0, size)], lost
        else:
            spool, size = content._spool, content.size
            written, missing = content._own_ranges()
            lost = []
        description = {"bucket": self.bucket_name, "key": content.key, "size": size, "opened_etag": content.etag,
                       "opened_version_id": content.version_id, "written_ranges": written,
                       "unknown_ranges": missing}
        path = await keep_aside_copy(self.conflict_dir, self.bucket_name, content.key, spool.fd if spool else -1,
                                     size, description)
        if isinstance(error, UploadLost):
            reason = f"its multipart upload disappeared from OSS ({len(lost)} parts lost)"
        else:
            reason = f"the object was replaced or deleted by another client after it was opened (ETag {content.etag})"
        if path.startswith("("):
            log.error("upload of '%s' failed: %s; the other client's object is kept, and this writer's bytes could NOT "
                      "be saved %s", content.key, reason, path)
        else:
            log.error("upload of '%s' failed: %s; the other client's object is kept, and this writer's bytes are in "
                      "%s (%s.json lists the byte ranges it wrote)", content.key, reason, path, path)
        content.conflict_path = path
        if commit is not None:
            commit.abandon()
            if content._commit is commit:
                content._commit = None
        content._dirty = False
        content._flush_failure = None
        content._retry_at = None
        self._detach(content)

    # ---- namespace changes --------------------------------------------------------------------------

    def refs(self, content: FileContent) -> int:
        return content._refs

    def get(self, key: str) -> FileContent | None:
        return self._contents.get(key)

    def not_on_oss_under(self, dir_prefix: str) -> list[FileContent]:
        """The contents of the keys directly under `dir_prefix` ("" for the root, else ending in "/") whose bytes
        are not all on OSS yet (a create or a write whose upload is stalled, failed and retried, or in flight):
        a listing from OSS may not show them although they exist here."""
        return [content for key, content in self._contents.items()
                if content.dirty and not content.detached and key.startswith(dir_prefix)
                and key != dir_prefix and "/" not in key[len(dir_prefix):]]

    async def settle(self, key: str, *, publish: bool) -> None:
        """Before a rename (`publish`) or a delete of `key` or of keys under `key/`: the uploads bound to those keys
        land first — a pending commit is awaited, and with `publish` an open stream is committed (a rename copies
        the object; an unlinked stream is aborted instead). StoreError if one fails."""
        for content in self._all():
            if content.key == key or content.key.startswith(key + "/"):
                if publish and content._stream is not None:
                    await content.flush()
                try:
                    await content._settle()
                except StoreError:
                    if publish:
                        raise  # a delete goes on: the failed upload is abandoned with the file

    def rename(self, old_key: str, new_key: str, etag: str | None = None) -> None:
        """An open file follows a rename: its next upload goes to `new_key`, and its reads and copies are
        pinned to the copy (`etag`, the CopyObject's answer; the version id is the copy's own, unknown)."""
        moving = [c for c in [self._contents.get(old_key), *self._retired] if c is not None and c.key == old_key]
        if not moving:
            return
        self.unlinked(new_key)
        self._contents.pop(old_key, None)
        for content in moving:
            content.key = new_key
            if content._stream is not None and content._stream.upload_id is None:
                content._stream.key = new_key  # (one already initiated is bound to the old key; see settle)
            if etag and content.etag == moving[0].etag:
                content.etag = etag
            content.version_id = None
            if content._entry is not None and content._spool is not None and content._dirty:
                content._save_entry(content._entry.saved_state or "dirty")
        if moving[0] is not None and moving[0] not in self._retired:
            self._contents[new_key] = moving[0]

    def unlinked(self, key: str) -> None:
        """The object was deleted while open: its contents must not be uploaded again (see docstring)."""
        for content in [self._contents.get(key), *self._retired]:
            if content is not None and content.key == key:
                self._detach(content)

    def _detach(self, content: FileContent) -> None:
        content.detached = True
        if content._stream is not None:
            content._stream.give_up_upload()  # its bytes keep serving the open handles
        if content._commit is not None and not content._commit.done.is_set():
            content._commit.abandon()
        content._commit = None
        content._flush_failure = None
        content._retry_at = None
        if content._entry is not None:
            content._entry.forget()  # its spool still serves reads; nothing of it is to be uploaded
        if self._contents.get(content.key) is content:
            del self._contents[content.key]
        self._retired.discard(content)
        if content._refs <= 0:
            content._discard()

    # ---- background work ----------------------------------------------------------------------------

    def _all(self) -> list[FileContent]:
        return [*self._contents.values(), *self._retired]

    def _retry_wakeup(self) -> None:
        self._retry_event.set()
        if not self._retrier_running:
            self._retrier_running = True
            self._nursery.start_soon(self._retry_loop)

    async def _retry_loop(self) -> None:
        """Retry failed uploads with exponential backoff (each content's own delay) until they land or the mount
        ends; the retrier stops when nothing is left to retry."""
        try:
            while True:
                due = [c for c in self._all() if c.needs_retry]
                if not due:
                    return
                now = trio.current_time()
                ready = [c for c in due if c._retry_at <= now]
                if not ready:
                    self._retry_event = trio.Event()
                    with trio.move_on_at(min(c._retry_at for c in due)):
                        await self._retry_event.wait()
                    continue
                for content in ready:
                    try:
                        info = await content.retry()
                    except (StoreError, FsError):
                        continue  # logged; its delay has grown
                    if info is not None:
                        self.uploaded(content.key)
                    if not content.dirty and content._refs <= 0:
                        self._forget(content)
        finally:
            self._retrier_running = False

    def abort_later(self, key: str, upload_id: str, entry: Entry | None) -> None:
        """Abort a multipart upload in the background, retrying with backoff until it succeeds or the mount ends
        (its journal record says "aborting" meanwhile, so the next mount finishes the job)."""
        if entry is not None:
            try:
                entry.save({"state": "aborting", "key": key, "bucket": self.bucket_name,
                            "upload": {"id": upload_id, "part_size": 0, "parts": []}})
            except OSError as exc:
                log.error("cannot record the abort of upload %s of %s: %s", upload_id, key, exc)
        self._aborts.append((key, upload_id, entry))
        self._abort_event.set()
        if not self._aborter_running:
            self._aborter_running = True
            self._nursery.start_soon(self._abort_loop)

    async def _abort_loop(self) -> None:
        delay = self._retry_first
        try:
            while self._aborts:
                key, upload_id, entry = self._aborts[0]
                try:
                    with trio.fail_after(ABORT_TIMEOUT):
                        await self._store.abort_multipart(key, upload_id)
                except NoSuchUpload:
                    pass  # already gone: completed or aborted
                except (StoreError, trio.TooSlowError) as exc:
                    log.warning("could not abort multipart upload %s of %s (%s); retrying in %.0f s", upload_id, key,
                                exc, delay)
                    self._aborts.append(self._aborts.pop(0))
                    self._abort_event = trio.Event()
                    with trio.move_on_after(delay * (0.5 + random.random() / 2)):
                        await self._abort_event.wait()
                    delay = min(delay * 2, self._retry_max)
                    continue
                self._aborts.pop(0)
                delay = self._retry_first
                if entry is not None:
                    entry.discard()
        finally:
            self._aborter_running = False

    # ---- unmount ------------------------------------------------------------------------------------

    async def flush_all(self) -> None:
        """Upload every dirty content and finish pending aborts (at unmount); failures are logged, not raised:
        their data stays in the spool session for the next mount."""
        for content in self._all():
            if not content.dirty or content.detached:
                continue
            try:
                await content.flush()
            except (StoreError, FsError) as exc:
                if isinstance(exc, StoreError) and (version_gone(exc) or isinstance(exc, UploadLost)):
                    continue  # logged with where the bytes were kept
                where = self._session.path if self._session is not None else None
                if where:
                    log.error("unmount: %s could not be uploaded (%s); its data is kept in %s and the next mount of "
                              "this bucket (or `ossmount recover`) uploads it", content.key, exc, where)
                else:
                    log.error("unmount: %s could not be uploaded, its changes are lost: %s", content.key, exc)
        for key, upload_id, _entry in list(self._aborts):
            try:
                with trio.fail_after(ABORT_TIMEOUT):
                    await self._store.abort_multipart(key, upload_id)
            except NoSuchUpload:
                pass
            except (StoreError, trio.TooSlowError) as exc:
                log.warning("unmount: could not abort multipart upload %s of %s (%s); the next mount or "
                            "`ossmount cleanup` aborts it", upload_id, key, exc)
                continue
            self._aborts = [a for a in self._aborts if a[1] != upload_id]
            if _entry is not None:
                _entry.discard()

    def close(self) -> None:
        """Release every spool file (after flush_all, at unmount); data that could not be uploaded stays in the
        session directory with its journal record."""
        for content in self._all():
            content._discard(keep_files=content.dirty and not content.detached)
        self._contents.clear()
        self._retired.clear()

    def dirty_files(self) -> list[DirtyFile]:
        """Every content with bytes not yet on OSS or an upload in flight, oldest change first."""
        found = [content.progress() for content in self._all()
                 if content.dirty or content.uploading_since is not None]
        return sorted(found, key=lambda f: f.dirty_since or 0.0)

    async def maintain(self, interval: float = 1.0, idle_evict: float = 10.0) -> None:
        """Give idle memory back to the OS, until cancelled (the mount runs it): once no buffer was taken for
        `interval` seconds, free pooled buffers are unmapped and glibc's heap trimmed; after `idle_evict`
        seconds without reads, prefetched chunks nobody reads any more are dropped too."""
        pool = self._memory.pool
        seen = pool.takes
        idle_since = trio.current_time()
        trimmed = True
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            if pool.takes != seen:
                seen, idle_since, trimmed = pool.takes, now, False
                continue
            if now - idle_since >= idle_evict and self._memory.evict_idle():
                trimmed = False
            if not trimmed:
                pool.trim(0)
                release_heap()
                trimmed = True

    def statistics(self) -> ContentStatistics:
        contents = self._all()
        cache = self._block_cache
        return ContentStatistics(
            **asdict(self._counters),
            open_contents=len(contents),
            dirty_contents=sum(1 for content in contents if content.dirty),
            prefetch_buffered_bytes=self._memory.used,
            write_buffered_bytes=self._write_budget.used,
            aborts_pending=len(self._aborts),
            block_cache_bytes=cache.used if cache else 0,
            block_cache_hits=cache.hits if cache else 0,
            block_cache_stores=cache.stores if cache else 0,
            block_cache_evictions=cache.evictions if cache else 0,
        )


async def keep_aside_copy(conflict_dir: str, bucket: str, key: str, fd: int, size: int, description: dict) -> str:
    """Copy `size` bytes of the spool `fd` (-1: none) to conflict_dir as `<bucket/key %-encoded>.<UTC time>` with a
    `.json` sidecar; returns the path, or "(lost: REASON)" when it cannot be written."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    name = urllib.parse.quote(f"{bucket}/{key}" if bucket else key, safe="") + "." + stamp
    path = os.path.join(conflict_dir, name)
    try:
        await trio.to_thread.run_sync(_copy_spool, fd, size, path, description)
    except OSError as exc:
        return f"(lost: {exc.strerror})"
    return path


def _copy_spool(fd: int, size: int, path: str, description: dict) -> None:
    """Copy `size` bytes of the spool `fd` to a new file `path` (0600) and write `path`.json."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        offset = 0
        while fd >= 0 and offset < size:
            chunk = os.pread(fd, min(COPY_CHUNK, size - offset), offset)
            if not chunk:
                break
            os.pwrite(out, chunk, offset)
            offset += len(chunk)
        os.ftruncate(out, size)
    finally:
        os.close(out)
    with open(os.open(path + ".json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as sidecar:
        json.dump(description, sidecar, indent=1)
        sidecar.write("\n")
