"""File contents: open/read/write/truncate of objects, write-back on flush, prefetching reads.

fs-core owns names, inodes and attributes and calls this module for bytes. One `FileContent` exists
per open key (opens of one key share it, refcounted by `ContentManager`).

Life of a content
-----------------
* Clean, no spool: reads go to an `ObjectReader` (reader.py) — ranged GETs into prefetch buffers,
  answered as memoryview slices. Nothing touches the disk.
* First write or truncate (or open with O_TRUNC / create): a sparse `SpoolFile` (spool.py) the length
  of the file is created and the prefetch buffers are dropped. The remote object is *not* downloaded
  then: bytes [0, base_size) of the remote object are fetched into the spool lazily, only for ranges
  that are read before being overwritten, and all remaining gaps at flush ("materialize"). `_valid`
  lists which ranges below base_size the spool already holds; at or past base_size the spool is
  authoritative (holes are zeros). Shrinking below base_size lowers base_size, so truncate-then-grow
  reads zeros, as POSIX requires.
* flush hands the spool to the `UploadStrategy` (writer.py) with the Content-Type/meta that
  `headers()` gives at that moment. The strategy downloads missing old bytes only for what it uploads
  from the spool (`ensure_local`); multipart parts that lie wholly below base_size and touch no
  written range (`_modified`) are copied on the server instead (UploadPartCopy), so appending to or
  patching a large object moves only the changed parts. On success the new object equals the
  contents: base_size and `_valid` stay true, `_modified` is emptied, the content is clean, and later
  reads come from the spool (fetching any still-missing range from the new object). On StoreError the
  content stays dirty, one line is logged, and the error propagates (fs-core answers EIO); the next
  flush/fsync/close, or `flush_all` at unmount, retries.
* release at zero references drops a clean content (spool closed, buffers freed) but keeps a dirty
  one in the table, so dirty data is never dropped silently: a later open shares it and retries.

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
* An upload whose base changed or went (`version_gone` while filling the spool or copying a part) is a
  write conflict: no object is produced (a multipart upload is aborted), the other client's object
  stays, and the spool is copied to `conflict_dir` as `<key, %-encoded>.<UTC time>` plus a `.json`
  sidecar naming the byte ranges this writer wrote and the old version's ranges it never had (zeros in
  the copy). The content is then detached: its flushes, writes and truncates fail with EIO.

Concurrency (everything runs in trio tasks on the one event-loop thread; synchronous code between two
awaits is atomic, and spool pread/pwrite are synchronous calls on that thread — cheaper than a
thread hop for ≤1 MiB page-cache I/O)
---------------------------------------------------------------------------------------------------
* `FileContent._lock` (a trio.Lock) protects the spool's contents and length, `size`, `base_size`,
  `_valid`, `_modified` and `dirty` against interleaving across awaits. write, truncate,
  materialize and flush hold it. flush holds it for the whole upload, so a write or truncate that
  races a flush waits until the upload ends and then makes the content dirty again: the uploaded
  object is always one consistent snapshot and the later write is uploaded by the next flush.
  (Streaming multipart while the file is open will replace this with a per-part snapshot; the
  strategy seam is `UploadStrategy` in writer.py.)
* Part uploads of one flush run concurrently under the flush's lock: each downloads (ensure_local)
  and reads only its own part's range, so they never touch the same bytes.
* Reads of a content with a spool take the lock only when a range below base_size must first be
  fetched; otherwise they pread without it (atomic, since pread is synchronous). Reads of a clean
  content without a spool never take it; a write that starts meanwhile invalidates the prefetch
  buffers, and a read already waiting on a buffer returns the pre-write bytes (the two calls were
  concurrent, so either order is correct).
* Prefetch GETs run as tasks in the manager's nursery (the mount's). A dropped buffer may still be
  filled by its in-flight GET; only the task's own reference keeps it alive until then.
* rename(old, new) moves the table entry and changes `key` at once. A flush already uploading keeps
  the key it started with; when it finishes and sees the key changed, the content stays dirty, so
  the next flush uploads to the new key.
* `unlinked(key)` (and a rename over an open key) detaches the old content: it keeps serving reads
  and writes to its open handles, but its flush uploads nothing, so closing an unlinked file never
  re-creates the deleted object.
* release never awaits an upload; flush_all at unmount flushes every dirty content one by one and
  logs (does not raise) failures.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import trio

from ossmount.fs.errors import FsError
from ossmount.fs.reader import IoCounters, ObjectReader, PrefetchBudget, ReadaheadConfig
from ossmount.fs.spool import CHUNK_LIMIT, RangeSet, SpoolFile, merge_close_ranges
from ossmount.fs.writer import SpoolUpload, UploadRequest, UploadStrategy, store_error_from_group
from ossmount.store.types import ObjectInfo, StoreError, version_gone

log = logging.getLogger(__name__)

UploadHeaders = tuple[str, dict[str, str]]  # (content_type, x-oss-meta-* without prefix)
HeadersFactory = Callable[[], UploadHeaders]

DEFAULT_PREFETCH_LIMIT = 256 * 1024 * 1024
# Where a writer's bytes go when its upload conflicts with another client's change: /var/tmp survives a
# reboot (FHS), one directory per uid keeps users apart.
DEFAULT_CONFLICT_DIR = f"/var/tmp/ossmount-conflicts-{os.getuid()}"


def conflict_dir_for(tmpdir: str | None) -> str:
    """The conflict directory of a mount: under `-o tmpdir=DIR` when given (where its spool files are too,
    so a conflict never needs more room than the spool had), else DEFAULT_CONFLICT_DIR."""
    return os.path.join(tmpdir, f"ossmount-conflicts-{os.getuid()}") if tmpdir else DEFAULT_CONFLICT_DIR

COPY_CHUNK = 1024 * 1024
MERGE_DISTANCE = 1024 * 1024  # fetching up to 1 MiB twice costs less than one more request


@contextlib.contextmanager
def _spool_io(key: str) -> Iterator[None]:
    """A failing spool (disk full, file size limit) is the writer's errno (ENOSPC, EFBIG), not a bug."""
    try:
        yield
    except OSError as exc:
        log.error("spool file of %s: %s", key, exc)
        raise FsError(exc.errno or errno.EIO, f"spool file of {key}: {exc.strerror}") from exc


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
    open_contents: int
    dirty_contents: int
    prefetch_buffered_bytes: int


@dataclass(frozen=True)
class DirtyFile:
    """A file whose bytes are not all on OSS yet (`ContentManager.dirty_files`); times are epoch seconds.

    `state`: "dirty" (changed, not uploading), "uploading" (an upload in flight) or "failed" (the last upload
    failed with `error_code`; the bytes are kept for the next flush)."""

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


class FileContent:
    """The bytes of one open key (see the module docstring for states and locking)."""

    def __init__(self, manager: ContentManager, key: str, *, size: int, etag: str, headers: HeadersFactory,
                 version_id: str | None = None):
        self._manager = manager
        self.key = key
        self.size = size
        self.etag = etag
        self.version_id = version_id
        self.dirty = False
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
        self._lock = trio.Lock()
        self._reader = ObjectReader(
            fetch_into=self._fetch_remote,
            size=size,
            nursery=manager._nursery,
            budget=manager._budget,
            counters=manager._counters,
            config=manager._readahead,
        )

    def __repr__(self) -> str:
        return f"<FileContent {self.key!r} size={self.size} dirty={self.dirty} refs={self._refs}>"

    async def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to `length` bytes at `offset`; short only at end of file. StoreError propagates."""
        data = await self._read(offset, length)
        self.served += len(data)
        return data

    async def _read(self, offset: int, length: int) -> bytes | memoryview:
        if self._spool is None:
            return await self._reader.read(offset, length)
        if offset >= self.size or length <= 0:
            return b""
        end = min(offset + length, self.size)
        if self._valid.gaps(offset, min(end, self._base_size)):
            async with self._lock:
                await self._materialize(offset, end)
        if self._spool is None:  # reset to the remote object while we waited
            return await self._reader.read(offset, length)
        end = min(offset + length, self.size)
        with _spool_io(self.key):
            data = self._spool.pread(offset, max(end - offset, 0))
        self._manager._counters.bytes_read += len(data)
        return data

    def check_usable(self) -> None:
        """EIO once a write conflict detached this content (its bytes were kept aside, see module docstring)."""
        if self.conflict_path is not None:
            raise FsError(errno.EIO, f"{self.key}: the object changed under this writer; its bytes are in "
                                     f"{self.conflict_path}")

    async def write(self, offset: int, data) -> int:
        """Write `data` at `offset` into the spool (nothing is uploaded before flush); returns its length."""
        self.check_usable()
        async with self._lock:
            with _spool_io(self.key):
                spool = self._ensure_spool()
                written = spool.pwrite(offset, data)
            end = offset + written
            if offset < self._base_size:
                self._valid.add(offset, min(end, self._base_size))
                self._modified.add(offset, min(end, self._base_size))
            if end > self.size:
                self.size = end
            self._mark_dirty()
        self._manager._counters.bytes_written += written
        return written

    async def truncate(self, size: int) -> None:
        """Set the length: shrinking drops bytes, growing adds zeros. The same length changes nothing."""
        self.check_usable()
        async with self._lock:
            if size == self.size:
                return
            with _spool_io(self.key):
                spool = self._ensure_spool()
                spool.resize(size)
            if size < self._base_size:
                self._base_size = size
                self._valid.clip(size)
                self._modified.clip(size)
            self.size = size
            self._mark_dirty()

    async def flush(self) -> ObjectInfo | None:
        """Upload if dirty and return the new object's info; None if there was nothing to upload."""
        if not self.dirty:
            return None
        async with self._lock:
            if not self.dirty:
                return None
            if self.detached:
                self.dirty = False
                return None
            key = self.key
            try:
                content_type, meta = self._headers()
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
                self.uploading_since = time.time()
                info = await self._manager._strategy.upload(request)
            except StoreError as exc:
                self._manager._counters.upload_failures += 1
                self.failure, self.failed_at = exc, time.time()
                if version_gone(exc):
                    await self._manager._keep_aside(self)
                    raise
                log.error("upload of '%s' failed; its data is kept for a later flush: %s", key, exc)
                raise
            finally:
                self.uploading_since = None
            self.failure = self.failed_at = None
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
                self.dirty = False
                self.dirty_since = None
                self._modified.clear()
            return info

    async def _mark_new(self) -> None:
        """A file just created: empty and dirty, so the next flush uploads a 0-byte object."""
        async with self._lock:
            with _spool_io(self.key):
                self._ensure_spool()
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        if not self.dirty:
            self.dirty_since = time.time()
        self.dirty = True

    @property
    def dirty_bytes(self) -> int:
        """Bytes not yet on OSS: ranges rewritten below the old size, plus everything past it."""
        if not self.dirty:
            return 0
        return sum(end - start for start, end in self._modified) + max(0, self.size - self._base_size)

    def _ensure_spool(self) -> SpoolFile:
        if self._spool is None:
            self._spool = SpoolFile(self._manager._spool_dir, self.size)
            self._reader.invalidate()
        return self._spool

    def _unchanged(self, start: int, end: int) -> bool:
        """True if [start, end) is still the remote object's bytes (an upload may copy it on the server)."""
        return end <= self._base_size and not self._modified.intersects(start, end)

    async def _fetch_remote(self, offset: int, view: memoryview) -> int:
        return await self._manager._store.get_into(self.key, offset, view, if_match=self.etag or None,
                                                   version_id=self.version_id)

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

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _discard(self) -> None:
        self._close_spool()
        self._reader.invalidate()


class ContentManager:
    """Opens, shares, flushes and releases `FileContent`s; owns the spool directory and prefetch budget.

    `multipart_size` and `multipart_threshold` (default: multipart_size; math.inf: never multipart) are in bytes.
    Background work (read-ahead GETs) runs in `nursery`, which must outlive the manager's use (the mount's nursery).
    """

    def __init__(
        self,
        store,
        *,
        spool_dir: str,
        multipart_size: int,
        parallel_count: int,
        nursery: trio.Nursery,
        upload_strategy: UploadStrategy | None = None,
        readahead: ReadaheadConfig = ReadaheadConfig(),
        prefetch_limit: int = DEFAULT_PREFETCH_LIMIT,
        multipart_threshold: float | None = None,
        conflict_dir: str = DEFAULT_CONFLICT_DIR,
    ):
        self._store = store
        self._spool_dir = spool_dir
        self._parallel_count = parallel_count
        self._nursery = nursery
        self._counters = IoCounters()
        self._budget = PrefetchBudget(prefetch_limit)
        self._readahead = readahead
        self._strategy = upload_strategy or SpoolUpload(
            store, multipart_size=multipart_size, parallel_count=parallel_count, counters=self._counters,
            multipart_threshold=multipart_threshold,
        )
        self._contents: dict[str, FileContent] = {}
        self._retired: set[FileContent] = set()  # older versions still open, out of the table
        self.conflict_dir = conflict_dir

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
        new=True: empty and dirty; truncate=True: O_TRUNC."""
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

    async def release(self, content: FileContent) -> None:
        """Drop one reference. Never uploads. At zero references a clean content is freed; a dirty one is kept."""
        content._refs -= 1
        if content._refs > 0:
            return
        if content.dirty and not content.detached:
            log.debug("keeping dirty content of %s after its last close", content.key)
            return
        if self._contents.get(content.key) is content:
            del self._contents[content.key]
        self._retired.discard(content)
        content._discard()

    def _retire(self, content: FileContent) -> None:
        """A newer version of the key is being opened: `content` keeps serving its own handles only."""
        del self._contents[content.key]
        if content._refs > 0:
            self._retired.add(content)
        else:
            content._discard()

    async def _keep_aside(self, content: FileContent) -> None:
        """A write conflict (see "Versions"): copy the spool to conflict_dir, log where, detach the content."""
        written, missing = content._own_ranges()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        bucket = getattr(self._store, "bucket_name", "")
        name = urllib.parse.quote(f"{bucket}/{content.key}" if bucket else content.key, safe="") + "." + stamp
        path = os.path.join(self.conflict_dir, name)
        spool = content._spool
        try:
            await trio.to_thread.run_sync(_copy_spool, spool.fd if spool else -1, content.size, path, {
                "bucket": bucket, "key": content.key, "size": content.size, "opened_etag": content.etag,
                "opened_version_id": content.version_id, "written_ranges": written, "unknown_ranges": missing,
            })
        except OSError as exc:
            log.error("upload of '%s' failed: the object was replaced or deleted by another client after it was "
                      "opened (ETag %s); the other client's object is kept, and this writer's bytes could NOT be saved "
                      "to %s: %s", content.key, content.etag, path, exc)
            path = f"(lost: {exc.strerror})"
        else:
            log.error("upload of '%s' failed: the object was replaced or deleted by another client after it was "
                      "opened (ETag %s); the other client's object is kept, and this writer's bytes are in %s (%s.json "
                      "lists the byte ranges it wrote)", content.key, content.etag, path, path)
        content.conflict_path = path
        content.dirty = False
        self._detach(content)

    def refs(self, content: FileContent) -> int:
        return content._refs

    def get(self, key: str) -> FileContent | None:
        return self._contents.get(key)

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
            if etag and content.etag == moving[0].etag:
                content.etag = etag
            content.version_id = None
        if moving[0] is not None and moving[0] not in self._retired:
            self._contents[new_key] = moving[0]

    def unlinked(self, key: str) -> None:
        """The object was deleted while open: its contents must not be uploaded again (see docstring)."""
        for content in [self._contents.get(key), *self._retired]:
            if content is not None and content.key == key:
                self._detach(content)

    def _detach(self, content: FileContent) -> None:
        content.detached = True
        if self._contents.get(content.key) is content:
            del self._contents[content.key]
        self._retired.discard(content)
        if content._refs <= 0:
            content._discard()

    async def flush_all(self) -> None:
        """Upload every dirty content (at unmount); failures are logged, not raised."""
        for content in [*self._contents.values(), *self._retired]:
            if not content.dirty:
                continue
            try:
                await content.flush()
            except StoreError as exc:
                if version_gone(exc):
                    continue  # logged with where the bytes were kept
                log.error("unmount: %s could not be uploaded, its changes are lost: %s", content.key, exc)

    def close(self) -> None:
        """Release every spool file (after flush_all, at unmount)."""
        for content in [*self._contents.values(), *self._retired]:
            content._discard()
        self._contents.clear()
        self._retired.clear()

    def dirty_files(self) -> list[DirtyFile]:
        """Every content with bytes not yet on OSS or an upload in flight, oldest change first."""
        found = []
        for content in [*self._contents.values(), *self._retired]:
            if not (content.dirty or content.uploading_since is not None):
                continue
            failure = content.failure
            state = "uploading" if content.uploading_since is not None else "failed" if failure else "dirty"
            found.append(DirtyFile(
                key=content.key, size=content.size, dirty_bytes=content.dirty_bytes,
                dirty_since=content.dirty_since, state=state, open_handles=max(content._refs, 0),
                uploading_since=content.uploading_since, error_code=failure.code if failure else None,
                error_request_id=failure.request_id if failure else None, failed_at=content.failed_at,
                error=str(failure) if failure else None))
        return sorted(found, key=lambda f: f.dirty_since or 0.0)

    def statistics(self) -> ContentStatistics:
        return ContentStatistics(
            **asdict(self._counters),
            open_contents=len(self._contents) + len(self._retired),
            dirty_contents=sum(1 for content in self._contents.values() if content.dirty),
            prefetch_buffered_bytes=self._budget.used,
        )


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
