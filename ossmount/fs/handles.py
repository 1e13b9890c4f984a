"""Open files: create/open/read/write/flush/release, and the version each handle reads and writes.

Rules (issue 6, A1-A3)
- Close-to-open: an open of an existing file sends one HEAD to see whether another client replaced it,
  unless OSS confirmed the entry (a HEAD, a listing, or this mount's own upload) less than
  `open_check_window` seconds ago (default 1 s). A changed object refreshes the caches, and the kernel
  is told to drop the attributes (size) it cached, so `cat` shows the whole new version, never new bytes
  cut to an old size. Opening a file whose unflushed data lives here sends nothing: the local data wins.
- One version per handle: a handle reads the version it opened. Its contents (ContentManager) pin that
  version: ranged GETs carry `If-Match: ETAG`, or `?versionId=` in a versioned bucket (where the old
  bytes stay readable). When the object was replaced, a read fails with EIO and one log line naming the
  key, rather than splicing two versions. Opens of a new version get a new content; older handles keep
  theirs. The kernel page cache is shared per inode, so an open keeps it only when it holds this
  version (`keep_cache`) and bypasses it (`direct_io`) while another handle reads an older version.
- A write-only handle (O_WRONLY: cp, dd, shell redirections, tar, rsync) alone on its inode bypasses the page
  cache too: the writer's bytes then go from its buffer to the FUSE request without being copied into page
  cache pages first (about 0.3 CPU-s per GiB written of the writer's kernel time, and no GiB of cache filled with
  data nobody read). It cannot mmap (that needs read access), so nothing is lost. While any writable handle
  that bypasses the cache is open, every handle opened on the inode bypasses it as well: its pages would not see
  that writer's bytes (the page holding the end of the file, read before an append, would keep its zeros). A
  write-only handle that finds other handles open goes through the cache as before.
- One exception, which keeps the window from ever costing an EIO: a read-only handle that has not
  returned a byte yet, alone on its inode and opened without the kernel's old pages, moves to the new
  version at its first read (one HEAD) and tells the kernel to drop the cached size: the reader still
  sees one whole version, the newest.
- A writer's partial update lands on the version it opened: every byte taken from the old object (a GET
  to fill the spool, an UploadPartCopy) is conditioned on that version. When it changed, close/fsync
  report EIO, the other client's object stays as it is, and the writer's bytes are kept aside (see
  content.py, `conflict_dir`); the log line names the key and the file.

Concurrency: as in namespace.py (trio: synchronous stretches are atomic); the byte-level locking is
content.py's.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from typing import Any, Callable

from ossmount.fs import attrs as fsattrs
from ossmount.fs import stalls
from ossmount.fs.errors import FsError
from ossmount.fs.model import Entry, OpenedFile
from ossmount.fs.namespace import FILE_CONTENT_TYPE, Namespace
from ossmount.store.types import InvalidObjectState, NoSuchKey, StoreError, version_gone

log = logging.getLogger("ossmount.fs")

# A read-only open that must ask OSS whether the object changed GETs objects up to this size whole instead of sending
# a HEAD: one request answers both the check and the reads (small files, ML datasets), and costs at most this many
# bytes when nothing is read.
OPEN_FETCH_LIMIT = 1024 * 1024
OPEN_FETCH_MIN = 64 * 1024  # asked for at least, so a small file that grew since it was listed is still one GET
ARCHIVE_HINT = "needs RestoreObject (ossutil restore / oss2 restore_object) before it can be read"


@dataclass
class UploadMeta:
    """Content-Type and x-oss-meta-* that the next upload of an open file carries (shared by its handles)."""

    content_type: str
    meta: dict[str, str]


@dataclass
class FileHandle:
    inode: int
    path: str
    content: Any  # ossmount.fs.content.FileContent: the version this handle reads and writes
    upload_meta: UploadMeta
    writable: bool
    data_changed: bool = False  # written since the last flush or explicit utimens: mtime is "now" at upload
    kernel_pages: bool = True  # opened with keep_cache: the kernel may serve pages of an earlier open
    direct_writer: bool = False  # a writable handle opened with direct_io: its writes bypass the page cache


class OpenFiles:
    """The handle table of one mount over its Namespace and ContentManager."""

    def __init__(self, namespace: Namespace, contents: Any):
        self.ns = namespace
        self.contents = contents
        self.window = namespace.config.open_check_window
        self._handles: dict[int, FileHandle] = {}
        self._next_fh = 1
        self._kernel_pages: dict[int, str] = {}  # inode -> the version (ETag) whose pages the kernel may hold
        self._read_failures_logged: set[int] = set()  # id() of contents whose failed read was logged
        # Set by the FUSE glue: tell the kernel to drop the attributes it cached for an inode.
        self.attrs_stale: Callable[[int], None] = lambda inode: None
        contents.uploaded = self._uploaded_in_background

    # ---- the handle table -----------------------------------------------------------------------

    def _new_handle(self, handle: FileHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def handle(self, fh: int) -> FileHandle:
        handle = self._handles.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        return handle

    def count(self) -> int:
        return len(self._handles)

    def _headers_for(self, upload_meta: UploadMeta) -> Callable[[], tuple[str, dict[str, str]]]:
        return lambda: (upload_meta.content_type, dict(upload_meta.meta))

    def _upload_meta_of(self, content: Any) -> UploadMeta | None:
        """The upload meta the handles sharing `content` share (one per version of a key)."""
        for handle in self._handles.values():
            if handle.content is content:
                return handle.upload_meta
        return None

    # ---- create and open ------------------------------------------------------------------------

    async def create(
        self, parent_inode: int, name: str, mode: int, flags: int, uid: int, gid: int, umask: int = 0, *,
        wait: bool = True,
    ) -> tuple[int, Entry]:
        """A new regular file, uploaded at once as a 0-byte object carrying its mode and owner.

        The kernel holds the directory's lock meanwhile, so with `wait` the upload is waited for only as long
        as the namespace's patience says; then the file is answered from local state and its flush/close waits
        for the upload and reports its failure (stalls.py). Without `wait`, until the upload ends.
        """
        ns = self.ns
        ns.check_writable()
        path = ns.child(parent_inode, name)
        key = ns.key(path)
        full_mode = stat.S_IFREG | (stat.S_IMODE(mode) & ~umask)
        meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.FILE, full_mode, uid, gid, ns.clock())
        upload_meta = UploadMeta(ns.mime.content_type_for(name), meta)
        content = await self.contents.open(key, size=0, etag="", new=True, headers=self._headers_for(upload_meta))
        late: list[int] = []  # the handle, once the upload outlives this call
        try:
            stored = await stalls.within(ns.nursery if wait else None, ns.patience, content.flush,
                                         late=lambda error: self._created_late(late[0], error))
        except stalls.StillWaiting:
            ns.stalled_creates += 1
            log.info("create of '%s': OSS did not answer within %.1f s; the file is created here and its upload "
                     "completes in the background (close waits for it)", path, ns.patience.wait)
            stored = None
        except BaseException:
            self.contents.unlinked(key)  # never upload a file whose creation failed, not even at unmount
            await self.contents.release(content)
            raise
        node = ns.remember_object(path, fsattrs.EntryKind.FILE, key, 0, upload_meta.content_type, dict(meta), stored)
        entry = ns.entry(path, node)
        direct_writer = self._alone_write_only(entry.inode, flags)
        if direct_writer:
            self._kernel_pages.pop(entry.inode, None)
        else:
            self._kernel_pages[entry.inode] = content.etag
        fh = self._new_handle(FileHandle(entry.inode, path, content, upload_meta, writable=True,
                                         direct_writer=direct_writer))
        late.append(fh)
        return fh, entry

    def _alone_write_only(self, inode: int, flags: int) -> bool:
        """Whether a handle opened with `flags` writes past the page cache because it is write-only and no other
        handle of the inode is open (module rules)."""
        return (flags & os.O_ACCMODE) == os.O_WRONLY and all(h.inode != inode for h in self._handles.values())

    def direct_io(self, fh: int) -> bool:
        """Whether the kernel must bypass its page cache for handle `fh` (what `create` answered)."""
        return self.handle(fh).direct_writer

    def _created_late(self, fh: int, error: BaseException | None) -> None:
        """The 0-byte upload of a file answered before it ended (`create`) has ended."""
        handle = self._handles.get(fh)
        if error is not None or handle is None or handle.content.dirty:
            return  # its flush uploads (again) and reports; a failure was logged by the content
        content = handle.content
        path = self.ns.path_of_key(content.key, handle.path)
        self.ns.remember_object(path, fsattrs.EntryKind.FILE, content.key, content.size,
                                handle.upload_meta.content_type, dict(handle.upload_meta.meta), content)
        if self._kernel_pages.get(handle.inode) is not None:
            self._kernel_pages[handle.inode] = content.etag

    async def open(self, inode: int, flags: int) -> OpenedFile:
        ns = self.ns
        path = ns.path(inode)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if writable:
            ns.check_writable()
        node = await ns.resolve(path)
        if node.kind == fsattrs.EntryKind.DIR:
            raise FsError(errno.EISDIR)
        local = self.contents.get(node.key)
        changed = False
        fetched = None  # the first bytes, fetched with the metadata instead of a HEAD
        if local is None or not local.dirty:
            stale = not ns.checked_within(node, self.window)
            if stale or (writable and node.info.from_listing):
                previous = node.info.etag
                if (stale and not writable and node.kind == fsattrs.EntryKind.FILE
                        and 0 < node.info.size <= OPEN_FETCH_LIMIT and "Archive" not in node.info.storage_class):
                    try:
                        fetched = await self.contents.fetch_start(
                            node.key, min(max(node.info.size, OPEN_FETCH_MIN), OPEN_FETCH_LIMIT))
                    except NoSuchKey:
                        ns.revalidated(path, node.key, None)  # raises ENOENT
                if fetched is not None:
                    node = ns.revalidated(path, node.key, fetched.info)
                else:
                    node = await ns.revalidate(path, node)
                changed = node.info.etag != previous
        try:
            return await self._open_version(inode, path, node, flags, writable, changed, fetched)
        finally:
            if fetched is not None:
                self.contents.adopt_start(fetched, None)  # not adopted: dropped

    async def _open_version(self, inode: int, path: str, node: Any, flags: int, writable: bool, changed: bool,
                            fetched: Any) -> OpenedFile:
        info = node.info
        current = self.contents.get(node.key)
        shared = current is not None and (current.dirty or current.etag == info.etag)  # else a new version
        upload_meta = (self._upload_meta_of(current) if shared else None) or UploadMeta(
            info.content_type or FILE_CONTENT_TYPE, dict(info.meta))
        content = await self.contents.open(
            node.key,
            size=info.size,
            etag=info.etag,
            version_id=info.version_id,
            truncate=bool(flags & os.O_TRUNC),
            headers=self._headers_for(upload_meta),
        )
        if fetched is not None:
            self.contents.adopt_start(fetched, content)
        cached = self._kernel_pages.get(inode)
        alone = self._alone_write_only(inode, flags)
        direct_io = alone or any(other.inode == inode and (other.content is not content or other.direct_writer)
                                 for other in self._handles.values())
        direct_writer = writable and direct_io
        keep_cache = bool(content.etag) and cached == content.etag and not direct_io and not flags & os.O_TRUNC
        attrs_changed = changed or (cached is not None and cached != content.etag)
        if alone:
            self._kernel_pages.pop(inode, None)  # this open (no keep_cache) empties the cache; writes bypass it
        elif not direct_io:
            self._kernel_pages[inode] = content.etag
        handle = FileHandle(inode, path, content, upload_meta, writable, data_changed=bool(flags & os.O_TRUNC),
                            kernel_pages=keep_cache or direct_io, direct_writer=direct_writer)
        return OpenedFile(self._new_handle(handle), keep_cache=keep_cache, attrs_changed=attrs_changed,
                          direct_io=direct_io)

    def _may_move_to_the_new_version(self, handle: FileHandle) -> bool:
        """See the module rules: nobody has seen a byte of this version through this inode."""
        content = handle.content
        return (not handle.writable and not handle.kernel_pages and content.served == 0 and not content.dirty
                and self.contents.refs(content) == 1
                and all(other is handle or other.inode != handle.inode for other in self._handles.values()))

    async def _move_to_the_new_version(self, handle: FileHandle) -> Any:
        old = handle.content
        path = self.ns.path_of_key(old.key, handle.path)
        node = self.ns.cache.get(path)
        try:
            node = await self.ns.revalidate(path, node if node is not None and node.key == old.key
                                            else await self.ns.resolve(path))
        except FsError as exc:  # deleted meanwhile: the read fails, not the lookup
            raise FsError(errno.EIO) from exc
        if node.kind != fsattrs.EntryKind.FILE:
            raise FsError(errno.EIO)
        info = node.info
        handle.content = await self.contents.open(node.key, size=info.size, etag=info.etag,
                                                  version_id=info.version_id,
                                                  headers=self._headers_for(handle.upload_meta))
        kernel_size = old.size  # what the kernel was told: it issued this read believing it
        await self.contents.release(old)
        self._kernel_pages[handle.inode] = handle.content.etag
        if info.size >= kernel_size:
            # The kernel cuts this read at the old size: its attributes must go, so that the reader's next read
            # past the old size asks getattr and gets the rest of the new version.
            self.attrs_stale(handle.inode)
        # A shorter version: no invalidation now. The kernel shrinks its size to the end of this short read only
        # when no attribute change arrived while the read was in flight (fuse_read_update_size compares
        # attr_version); an invalidation now would leave the old size, and zeros past the new end for the reader.
        return handle.content

    def _stale(self, path: str, content: Any) -> None:
        """OSS answered that `content`'s version is gone: what the caches say about the key is stale too,
        so the next open looks it up again."""
        path = self.ns.path_of_key(content.key, path)
        node = self.ns.cache.get(path)
        if node is not None and node.key == content.key:
            self.ns.cache.invalidate(path)

    def forget(self, inode: int) -> None:
        """The kernel forgot the inode, and with it every page it cached."""
        self._kernel_pages.pop(inode, None)

    # ---- data -----------------------------------------------------------------------------------

    async def read(self, fh: int, offset: int, length: int) -> bytes | memoryview:
        handle = self.handle(fh)
        content = handle.content
        try:
            try:
                return await content.read(offset, length)
            except StoreError as exc:
                if not (version_gone(exc) and self._may_move_to_the_new_version(handle)):
                    raise
            content = await self._move_to_the_new_version(handle)
            return await content.read(offset, length)
        except InvalidObjectState as exc:
            self.ns.warn_once(f"archive:{content.key}",
                              f"cannot read {content.key}: the object is archived and {ARCHIVE_HINT}")
            raise FsError(exc.errno) from exc
        except StoreError as exc:
            if not version_gone(exc):
                raise
            self._stale(handle.path, content)
            if id(content) not in self._read_failures_logged:
                self._read_failures_logged.add(id(content))
                log.error("read of '%s' failed: the object was replaced or deleted after it was opened (opened ETag "
                          "%s); close and reopen the file to read the new version", content.key, content.etag)
            raise FsError(errno.EIO) from exc

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.handle(fh)
        if not handle.writable:
            raise FsError(errno.EBADF)
        handle.data_changed = True
        return await handle.content.write(offset, data)

    def _uploaded_in_background(self, key: str) -> None:
        """A background retry (or recovery) put a new version of `key` on OSS: what the caches say is stale."""
        prefix = self.ns.config.prefix
        if key.startswith(prefix):
            self.ns.cache.invalidate(key[len(prefix):])

    async def flush(self, fh: int, *, sync: bool = False) -> None:
        """flush/fsync/close: upload the file if it has unflushed data; an upload failure is EIO. The close of a
        read-only handle while another handle has the file open for writing only retries an upload that failed
        before: the writer's own close commits its data (a reader must not cut a streaming upload short)."""
        handle = self.handle(fh)
        if not (sync or handle.writable) and any(other.writable and other.content is handle.content
                                                 for other in self._handles.values()):
            content = handle.content
            if content.needs_retry:
                try:
                    await content.retry()
                except StoreError as exc:
                    raise FsError(errno.EIO) from exc
            return
        touched = handle.data_changed
        handle.data_changed = False
        try:
            await self._flush_content(handle.path, handle.content, handle.upload_meta, touch=touched)
        except BaseException:
            handle.data_changed = touched
            raise
        if handle.content.etag and self._kernel_pages.get(handle.inode) is not None:
            # The kernel's pages were written through this handle: they are the version just uploaded.
            self._kernel_pages[handle.inode] = handle.content.etag

    async def _flush_content(self, path: str, content: Any, upload_meta: UploadMeta, *, touch: bool = True) -> None:
        content.check_usable()
        if not content.dirty:
            return
        if touch:
            now_ns = fsattrs.seconds_to_ns(self.ns.clock())
            upload_meta.meta = fsattrs.meta_with_changes(upload_meta.meta, mtime_ns=now_ns, ctime_ns=now_ns)
        try:
            stored = await content.flush()
        except StoreError as exc:  # content.flush has logged it
            if version_gone(exc):
                self._stale(path, content)
            raise FsError(errno.EIO) from exc
        if stored is not None:
            path = self.ns.path_of_key(content.key, path)
            self.ns.remember_object(path, fsattrs.EntryKind.FILE, content.key, content.size,
                                    upload_meta.content_type, dict(upload_meta.meta), stored)

    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is not None:
            await self.contents.release(handle.content)

    async def truncate(self, path: str, size: int, fh: int | None) -> None:
        """truncate(2)/ftruncate(2): through the open content if there is one, else a one-off upload."""
        ns = self.ns
        node = await ns.resolve(path)
        if node.kind != fsattrs.EntryKind.FILE:
            raise FsError(errno.EISDIR if node.kind == fsattrs.EntryKind.DIR else errno.EINVAL)
        handle = self._handles.get(fh) if fh is not None else None
        content = handle.content if handle is not None else self.contents.get(node.key)
        if content is not None:
            await content.truncate(size)
            for other in self._handles.values():
                if other.content is content:
                    other.data_changed = True
            return
        node = await ns.full_node(path)  # the upload below carries the object's Content-Type and meta
        upload_meta = UploadMeta(node.info.content_type or FILE_CONTENT_TYPE, dict(node.info.meta))
        content = await self.contents.open(node.key, size=node.info.size, etag=node.info.etag,
                                           version_id=node.info.version_id, headers=self._headers_for(upload_meta))
        try:
            await content.truncate(size)
            await self._flush_content(path, content, upload_meta)
        finally:
            await self.contents.release(content)

    # ---- following namespace changes ------------------------------------------------------------

    def meta_changing(self, key: str | None, change: Callable[[dict], dict], *, explicit_mtime: bool) -> bool:
        """A metadata change of `key`: every open handle's next upload carries it. Returns True when the
        file has unflushed data (that upload then stores the change; no CopyObject needed)."""
        if key is None:
            return False
        changed: set[int] = set()
        for handle in self._handles.values():
            if handle.content.key == key:
                if id(handle.upload_meta) not in changed:
                    changed.add(id(handle.upload_meta))
                    handle.upload_meta.meta = change(handle.upload_meta.meta)
                if explicit_mtime:
                    handle.data_changed = False
        content = self.contents.get(key)
        return content is not None and content.dirty

    def moved(self, old_path: str, new_path: str, keys: list[tuple[str, str, str]]) -> None:
        """A rename moved `old_path` to `new_path` and these (old key, new key, ETag) objects: open files
        follow."""
        for old_key, new_key, etag in keys:
            self.contents.rename(old_key, new_key, etag)
        for handle in self._handles.values():
            if handle.path == old_path or handle.path.startswith(old_path + "/"):
                handle.path = new_path + handle.path[len(old_path):]

    def unlinked(self, key: str) -> None:
        self.contents.unlinked(key)
