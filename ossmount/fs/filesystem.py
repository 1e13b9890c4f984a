"""The kernel-free filesystem: inodes, lookups, directories and metadata operations over an ObjectStore.

Theory of operation
- A path (relative to the mount prefix, no slashes at either end) is a file when the object `PREFIX+path`
  exists, a directory when the marker object `PREFIX+path/` exists or any key starts with `PREFIX+path/`.
  `ossmount.fs.attrs.classify_object` decides what an object is (a `dir/` key with another Content-Type
  or a size > 0 is a file; a warning naming the key is logged once).
- lookup: stat cache -> negative cache -> the parent's cached listing (a name missing from it counts as
  missing only with `enable_noobj_cache`) -> HEAD path -> LIST `path/` max-keys 1 (covers a marker and
  an implicit prefix; the marker's metadata needs one more HEAD).
- Local changes update the cached entry and the parent's cached listing in place (`put_local`,
  `remove_local`), so this mount's own creates and deletes never wait for the TTL.
- readdir lists with delimiter "/" (V2 unless listobjectsv1, pages of 1000) and HEADs the entries whose
  mode/uid/times live in `x-oss-meta-*` (at most 16 at once) unless `readdir_optimize`. The listing and
  every entry go to the caches, so a second `ls -l` within `stat_cache_expire` sends no request.
- File contents belong to `ContentManager` (fs-data). A created file is uploaded as a 0-byte object at
  once (as ossfs: that is what other clients see while it is open); data reaches OSS on flush/fsync/close.
- Metadata changes (chmod, chown, utimens, xattrs) rewrite `x-oss-meta-*` with CopyObject REPLACE and
  never re-upload data; on a file with unflushed data they are only recorded for its upload.

Concurrency (trio: synchronous code between two awaits is atomic; every store call is an await)
- The inode table, the handle table and the caches are changed only in synchronous stretches, so they are
  always self-consistent; an operation re-reads what it needs after each await instead of holding locks.
- Races between this mount's own operations on one name (e.g. two creates) are serialised by the kernel's
  directory locks; what remains is last-writer-wins on the object, as on OSS itself.
- flush vs write/truncate/rename of the same file: ContentManager's per-content lock (fs-data, content.py).
  A rename while a flush uploads moves the content; the next flush uploads to the new key.
- unlink of an open file: the content is detached (its later flushes upload nothing) and the inode becomes
  an orphan whose attributes fstat still answers until the kernel forgets it.
- readdir keeps the snapshot taken at offset 0; local creates and deletes update the cached listing in
  place, so the next opendir sees them without a LIST.
- Other clients' changes are seen when the cache entry (and the kernel's entry/attr timeout, the same TTL)
  expires: at most `stat_cache_expire` seconds late.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
import time
from dataclasses import dataclass
from typing import Any, Callable

import trio

from ossmount.fs import attrs as fsattrs
from ossmount.fs.cache import Listing, MetadataCache, Node, parent_of
from ossmount.fs.errors import FsError
from ossmount.fs.inodes import InodeTable
from ossmount.fs.timeouts import KernelTimeouts
from ossmount.options import MountOptions
from ossmount.store.types import InvalidObjectState, NoSuchKey, ObjectInfo, StoreError

log = logging.getLogger(__name__)

DIR_CONTENT_TYPE = "application/octet-stream"
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2
READDIR_HEAD_CONCURRENCY = 16
RENAME_COPY_CONCURRENCY = 16
KERNEL_XATTR_PREFIXES = ("security.", "system.")
ARCHIVE_HINT = "needs RestoreObject (ossutil restore / oss2 restore_object) before it can be read"


_OPTION_DEFAULTS = MountOptions()


@dataclass(frozen=True)
class FsConfig:
    """The mount options the filesystem layer needs, under names independent of the option parser; the
    defaults are MountOptions' own, so the two can never disagree."""

    prefix: str = ""
    read_only: bool = _OPTION_DEFAULTS.read_only
    list_v2: bool = _OPTION_DEFAULTS.list_objects_v2
    readdir_optimize: bool = _OPTION_DEFAULTS.readdir_optimize
    stat_cache_size: int = _OPTION_DEFAULTS.max_stat_cache_size
    stat_cache_ttl: float = _OPTION_DEFAULTS.stat_cache_expire
    negative_cache: bool = _OPTION_DEFAULTS.enable_noobj_cache
    complement_stat: bool = _OPTION_DEFAULTS.complement_stat
    readdir_check_size: int | None = _OPTION_DEFAULTS.readdir_check_size  # with readdir_optimize: HEAD up to this size
    entry_timeout: float | None = _OPTION_DEFAULTS.entry_timeout  # kernel timeouts (fs/timeouts.py)
    attr_timeout: float | None = _OPTION_DEFAULTS.attr_timeout
    negative_timeout: float = _OPTION_DEFAULTS.negative_timeout
    use_wtf8: bool = _OPTION_DEFAULTS.use_wtf8  # names: fs/wtf8.py (applied by the FUSE glue)


@dataclass(frozen=True)
class Entry:
    """A looked-up inode with its attributes and how long the kernel may cache them."""

    inode: int
    attrs: Any  # ossmount.fs.attrs.Attrs
    timeout: float


@dataclass(frozen=True)
class DirEntry:
    """One readdir entry. `dot_inode` is set only for `.` and `..`: the kernel takes no reference to those."""

    name: str
    path: str
    attrs: Any
    next_id: int
    dot_inode: int | None = None


@dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    files: int
    files_free: int
    name_max: int


@dataclass
class _UploadMeta:
    """Content-Type and x-oss-meta-* that the next upload of an open file carries."""

    content_type: str
    meta: dict[str, str]


@dataclass
class _FileHandle:
    path: str
    content: Any  # ossmount.fs.content.FileContent
    upload_meta: _UploadMeta
    writable: bool
    data_changed: bool = False  # written since the last flush or explicit utimens: mtime is "now" at upload


@dataclass
class _DirHandle:
    path: str
    node: Node
    entries: list[tuple[str, Node]] | None = None


class Filesystem:
    """Kernel-free filesystem over an ObjectStore; the FUSE glue makes one call per request."""

    def __init__(
        self,
        store: Any,
        contents: Any,
        *,
        config: FsConfig,
        ownership: Any,
        mime: Any,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.contents = contents
        self.config = config
        self.ownership = ownership
        self.mime = mime
        self.clock = clock
        self.inodes = InodeTable()
        self.cache = MetadataCache(
            max_size=config.stat_cache_size, ttl=config.stat_cache_ttl, negative=config.negative_cache
        )
        self.kernel = KernelTimeouts.for_mount(
            self.cache.ttl if config.stat_cache_size > 0 else 0.0, entry=config.entry_timeout,
            attr=config.attr_timeout, negative=config.negative_timeout)
        self.timeout = self.kernel.attr
        self.mount_time = clock()
        self._handles: dict[int, _FileHandle | _DirHandle] = {}
        self._next_fh = 1
        self._warned: set[str] = set()
        self._archive_warned: set[str] = set()
        self._orphans: dict[int, tuple[Any, Any]] = {}  # unlinked inodes the kernel still holds: (attrs, content)
        self._head_limiter = trio.CapacityLimiter(READDIR_HEAD_CONCURRENCY)

    # ---- keys and nodes -------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return self.config.prefix + path

    def _dir_prefix(self, path: str) -> str:
        return self.config.prefix + path + "/" if path else self.config.prefix

    def _child(self, parent_inode: int, name: str) -> str:
        if not name or name in (".", "..") or "/" in name:
            raise FsError(errno.EINVAL)
        parent = self._path(parent_inode)
        return f"{parent}/{name}" if parent else name

    def _path(self, inode: int) -> str:
        try:
            path = self.inodes.path(inode)
        except KeyError:
            raise FsError(errno.ESTALE) from None
        if path.startswith("\0"):
            raise FsError(errno.ENOENT)
        return path

    def _warn_once(self, key: str, warning: str | None) -> None:
        if warning and key not in self._warned:
            self._warned.add(key)
            log.warning("%s", warning)

    def _node_from_object(self, info: ObjectInfo) -> Node:
        kind, warning = fsattrs.classify_object(
            info.key, info.size, info.content_type, dict(info.meta), complement_stat=self.config.complement_stat
        )
        self._warn_once(info.key, warning)
        return Node(kind, info.key, info)

    def _attrs(self, path: str, node: Node) -> Any:
        if path == "":
            return fsattrs.attrs_for_root(self.ownership, self.mount_time)
        if node.info is None:
            return fsattrs.attrs_for_implicit_dir(self.ownership, self.mount_time)
        attrs = fsattrs.attrs_for_object(node.info, node.kind, self.ownership)
        if node.kind == fsattrs.EntryKind.FILE:
            content = self.contents.get(node.key)
            if content is not None and content.size != attrs.size:
                attrs = dataclasses.replace(attrs, size=content.size)
        return attrs

    def _check_writable(self) -> None:
        if self.config.read_only:
            raise FsError(errno.EROFS)

    async def _head(self, key: str) -> ObjectInfo | None:
        try:
            return await self.store.head(key)
        except NoSuchKey:
            return None

    async def _resolve(self, path: str) -> Node:
        """The node at `path` (ENOENT if nothing is there), from the caches when they know it."""
        if path == "":
            return Node(fsattrs.EntryKind.DIR, None, None)
        node = self.cache.get(path)
        if node is not None:
            return node
        if self.cache.is_known_missing(path):
            raise FsError(errno.ENOENT)
        listing = self.cache.get_listing(parent_of(path))
        if listing is not None:
            node = listing.entries.get(path.rpartition("/")[2])
            if node is not None:
                self.cache.put(path, node)
                return node
            if self.config.negative_cache:
                raise FsError(errno.ENOENT)
        node = await self._fetch_node(path)
        if node is None:
            self.cache.put_missing(path)
            raise FsError(errno.ENOENT)
        self.cache.put(path, node)
        return node

    async def _fetch_node(self, path: str) -> Node | None:
        key = self._key(path)
        info = await self._head(key)
        if info is not None:
            return self._node_from_object(info)
        marker = key + "/"
        page = await self.store.list_page(marker, delimiter="/", max_keys=1, v2=self.config.list_v2)
        if not page.objects and not page.prefixes:
            return None
        if page.objects and page.objects[0].key == marker:
            info = await self._head(marker)
            if info is not None:
                return self._node_from_object(info)
        return Node(fsattrs.EntryKind.DIR, None, None)

    async def _full_node(self, path: str) -> Node:
        """The node with its complete metadata (a listing gives no Content-Type or x-oss-meta-*)."""
        node = await self._resolve(path)
        if node.info is not None and node.info.from_listing:
            info = await self._head(node.key)
            if info is None:
                self.cache.invalidate(path)
                raise FsError(errno.ENOENT)
            node = self._node_from_object(info)
            self.cache.put_local(path, node)
        return node

    def _entry(self, path: str, node: Node) -> Entry:
        inode = self.inodes.remember(path)
        return Entry(inode, self._attrs(path, node), self.timeout)

    # ---- lookups and attributes -----------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: str) -> Entry:
        """Resolve `name` in a directory; success counts one kernel reference to the inode."""
        if name == ".":
            path = self._path(parent_inode)
        elif name == "..":
            path = parent_of(self._path(parent_inode))
        else:
            path = self._child(parent_inode, name)
        node = await self._resolve(path)
        return self._entry(path, node)

    def forget(self, inode: int, count: int) -> None:
        self.inodes.forget(inode, count)
        if inode in self._orphans and not self.inodes.known(inode):
            del self._orphans[inode]

    async def getattr(self, inode: int) -> Entry:
        orphan = self._orphans.get(inode)
        if orphan is not None:
            attrs, content = orphan
            if content is not None:
                attrs = dataclasses.replace(attrs, size=content.size)
            return Entry(inode, attrs, 0.0)
        path = self._path(inode)
        node = await self._resolve(path)
        return Entry(inode, self._attrs(path, node), self.timeout)

    async def setattr(
        self,
        inode: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        fh: int | None = None,
    ) -> Entry:
        """chmod/chown/utimens persist in x-oss-meta-* (CopyObject REPLACE); a size change truncates."""
        self._check_writable()
        path = self._path(inode)
        if size is not None:
            await self._truncate(path, size, fh)
        if any(v is not None for v in (mode, uid, gid, atime_ns, mtime_ns)) and path != "":
            node = await self._full_node(path)
            current = self._attrs(path, node)
            changes: dict[str, Any] = {"ctime": self.clock()}
            if mode is not None:
                changes["mode"] = stat.S_IFMT(current.mode) | stat.S_IMODE(mode)
            if uid is not None:
                changes["uid"] = uid
            if gid is not None:
                changes["gid"] = gid
            if atime_ns is not None:
                changes["atime"] = atime_ns / 1e9
            if mtime_ns is not None:
                changes["mtime"] = mtime_ns / 1e9
            await self._change_meta(
                path,
                node,
                current,
                lambda meta: fsattrs.meta_with_changes(meta, **changes),
                explicit_mtime=mtime_ns is not None,
            )
        return await self.getattr(inode)

    async def _change_meta(
        self,
        path: str,
        node: Node,
        current: Any,
        change: Callable[[dict[str, str]], dict[str, str]],
        *,
        explicit_mtime: bool = False,
    ) -> None:
        """Apply `change` to the stored metadata of `path` (creating an implicit directory's marker)."""
        if node.info is None:
            marker = self._key(path) + "/"
            base = fsattrs.meta_for_new_entry(
                fsattrs.EntryKind.DIR, current.mode, current.uid, current.gid, self.clock()
            )
            meta = change(base)
            info = await self.store.put(marker, b"", content_type=DIR_CONTENT_TYPE, meta=meta)
            self._remember_object(path, node.kind, marker, 0, DIR_CONTENT_TYPE, meta, info)
            return
        for handle in self._handles.values():
            if isinstance(handle, _FileHandle) and handle.content.key == node.key:
                handle.upload_meta.meta = change(handle.upload_meta.meta)
                if explicit_mtime:
                    handle.data_changed = False
        content = self.contents.get(node.key) if node.kind == fsattrs.EntryKind.FILE else None
        meta = change(dict(node.info.meta))
        content_type = node.info.content_type or DIR_CONTENT_TYPE
        if content is None or not content.dirty:
            await self.store.update_meta(node.key, content_type=content_type, meta=meta)
        self.cache.put_local(path, Node(node.kind, node.key, dataclasses.replace(node.info, meta=meta)))

    def _remember_object(
        self, path: str, kind: Any, key: str, size: int, content_type: str, meta: dict, stored: Any
    ) -> Node:
        etag = getattr(stored, "etag", "") or ""
        info = ObjectInfo(key=key, size=size, etag=etag, mtime=self.clock(), content_type=content_type, meta=meta)
        node = Node(kind, key, info)
        self.cache.put_local(path, node)
        return node

    async def _truncate(self, path: str, size: int, fh: int | None) -> None:
        node = await self._resolve(path)
        if node.kind != fsattrs.EntryKind.FILE:
            raise FsError(errno.EISDIR if node.kind == fsattrs.EntryKind.DIR else errno.EINVAL)
        handle = self._handles.get(fh) if fh is not None else None
        content = handle.content if isinstance(handle, _FileHandle) else self.contents.get(node.key)
        if content is not None:
            await content.truncate(size)
            for other in self._handles.values():
                if isinstance(other, _FileHandle) and other.content is content:
                    other.data_changed = True
            return
        node = await self._full_node(path)  # the upload below carries the object's Content-Type and meta
        upload_meta = _UploadMeta(node.info.content_type or DIR_CONTENT_TYPE, dict(node.info.meta))
        content = await self.contents.open(
            node.key, size=node.info.size, etag=node.info.etag, headers=self._headers_for(upload_meta)
        )
        try:
            await content.truncate(size)
            await self._flush_content(path, content, upload_meta)
        finally:
            await self.contents.release(content)

    async def readlink(self, inode: int) -> str:
        path = self._path(inode)
        node = await self._full_node(path)
        if node.kind != fsattrs.EntryKind.SYMLINK:
            raise FsError(errno.EINVAL)
        return await _symlink_target(node.info, lambda: self.store.get_bytes(node.key))

    # ---- directories ----------------------------------------------------------------------------

    async def opendir(self, inode: int) -> int:
        path = self._path(inode)
        node = await self._resolve(path)
        if node.kind != fsattrs.EntryKind.DIR:
            raise FsError(errno.ENOTDIR)
        return self._new_handle(_DirHandle(path, node))

    async def readdir(self, fh: int, start_id: int) -> list[DirEntry]:
        """`.`, `..`, then the entries, from position `start_id`; the glue calls `remember` for each entry
        the kernel takes, except `.` and `..` (pyfuse3: their lookup count must not change)."""
        handle = self._handles.get(fh)
        if not isinstance(handle, _DirHandle):
            raise FsError(errno.EBADF)
        if handle.entries is None or start_id == 0:
            handle.entries = (await self._listing(handle.path)).sorted()
        result = []
        # `..` only needs the right inode and type (the kernel ignores the attributes of dot entries), so it
        # reuses this directory's attributes rather than costing a lookup; the root's `..` is itself.
        dir_attrs = self._attrs(handle.path, handle.node)
        dots = [(".", handle.path), ("..", parent_of(handle.path) if handle.path else "")]
        for index in range(start_id, len(dots)):
            name, path = dots[index]
            result.append(DirEntry(name, path, dir_attrs, index + 1, dot_inode=self.inodes.inode_for(path)))
        for index in range(max(start_id - len(dots), 0), len(handle.entries)):
            name, node = handle.entries[index]
            path = f"{handle.path}/{name}" if handle.path else name
            result.append(DirEntry(name, path, self._attrs(path, node), len(dots) + index + 1))
        return result

    def remember(self, entry: DirEntry) -> int:
        """The kernel accepted a readdirplus entry: it now holds a reference to its inode."""
        return self.inodes.remember(entry.path)

    def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    async def _listing(self, path: str) -> Listing:
        listing = self.cache.get_listing(path)
        if listing is not None:
            return listing
        dir_prefix = self._dir_prefix(path)
        objects, prefixes = await self.store.list_all(dir_prefix, delimiter="/", v2=self.config.list_v2)
        entries: dict[str, Node] = {}
        for prefix in prefixes:
            name = prefix[len(dir_prefix):].rstrip("/")
            if name and "/" not in name:
                entries[name] = Node(fsattrs.EntryKind.DIR, None, None)
        for info in objects:
            name = info.key[len(dir_prefix):]
            if not name or "/" in name.rstrip("/"):
                continue
            if name.endswith("/"):
                name = name.rstrip("/")
                entries.setdefault(name, Node(fsattrs.EntryKind.DIR, None, None))
                continue
            entries[name] = self._node_from_object(info)
        wanted = [name for name, node in entries.items() if _heads_on_readdir(node, self.config)]
        if wanted:
            await self._complete_entries(path, entries, wanted)
        listing = Listing(entries)
        for name, node in entries.items():
            self.cache.put(f"{path}/{name}" if path else name, node)
        self.cache.put_listing(path, listing)
        return listing

    async def _complete_entries(self, path: str, entries: dict[str, Node], names: list[str]) -> None:
        """HEAD the entries `names` (their metadata only the object's headers hold), at most 16 at once."""

        async def complete(name: str, node: Node) -> None:
            child = f"{path}/{name}" if path else name
            cached = self.cache.get(child)
            if cached is not None and not (cached.info is not None and cached.info.from_listing):
                entries[name] = cached
                return
            key = node.key if node.info is not None else self._key(child) + "/"
            async with self._head_limiter:
                info = await self._head(key)
            if info is not None:
                entries[name] = self._node_from_object(info)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(complete, name, entries[name])

    async def mkdir(self, parent_inode: int, name: str, mode: int, uid: int, gid: int, umask: int = 0) -> Entry:
        self._check_writable()
        path = self._child(parent_inode, name)
        full_mode = stat.S_IFDIR | (stat.S_IMODE(mode) & ~umask)
        meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.DIR, full_mode, uid, gid, self.clock())
        marker = self._key(path) + "/"
        stored = await self.store.put(marker, b"", content_type=DIR_CONTENT_TYPE, meta=meta)
        node = self._remember_object(path, fsattrs.EntryKind.DIR, marker, 0, DIR_CONTENT_TYPE, meta, stored)
        if self.config.negative_cache:
            self.cache.put_listing(path, Listing({}))  # the kernel's lookup found nothing under it
        return self._entry(path, node)

    async def rmdir(self, parent_inode: int, name: str) -> None:
        self._check_writable()
        path = self._child(parent_inode, name)
        node = await self._resolve(path)
        if node.kind != fsattrs.EntryKind.DIR:
            raise FsError(errno.ENOTDIR)
        await self._require_empty(path, node)
        # A directory known from a listing's common prefix (readdir_optimize sends no HEAD) may still have a
        # `dir/` marker object: delete it whether or not we know of it (DeleteObject of a missing key succeeds).
        await self.store.delete(node.key if node.key is not None else self._key(path) + "/")
        self.cache.remove_local(path)
        self.inodes.detach(path)

    async def _require_empty(self, path: str, node: Node) -> None:
        dir_prefix = self._dir_prefix(path)
        page = await self.store.list_page(dir_prefix, delimiter="/", max_keys=2, v2=self.config.list_v2)
        if page.prefixes or any(info.key != dir_prefix for info in page.objects):
            raise FsError(errno.ENOTEMPTY)

    # ---- files ----------------------------------------------------------------------------------

    def _headers_for(self, upload_meta: _UploadMeta) -> Callable[[], tuple[str, dict[str, str]]]:
        return lambda: (upload_meta.content_type, dict(upload_meta.meta))

    def _new_handle(self, handle: _FileHandle | _DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _file_handle(self, fh: int) -> _FileHandle:
        handle = self._handles.get(fh)
        if not isinstance(handle, _FileHandle):
            raise FsError(errno.EBADF)
        return handle

    async def create(
        self, parent_inode: int, name: str, mode: int, flags: int, uid: int, gid: int, umask: int = 0
    ) -> tuple[int, Entry]:
        """A new regular file, uploaded at once as a 0-byte object carrying its mode and owner."""
        self._check_writable()
        path = self._child(parent_inode, name)
        key = self._key(path)
        full_mode = stat.S_IFREG | (stat.S_IMODE(mode) & ~umask)
        meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.FILE, full_mode, uid, gid, self.clock())
        upload_meta = _UploadMeta(self.mime.content_type_for(name), meta)
        content = await self.contents.open(key, size=0, etag="", new=True, headers=self._headers_for(upload_meta))
        try:
            stored = await content.flush()
        except BaseException:
            self.contents.unlinked(key)  # never upload a file whose creation failed, not even at unmount
            await self.contents.release(content)
            raise
        node = self._remember_object(
            path, fsattrs.EntryKind.FILE, key, 0, upload_meta.content_type, dict(meta), stored
        )
        fh = self._new_handle(_FileHandle(path, content, upload_meta, writable=True))
        return fh, self._entry(path, node)

    async def mknod(
        self, parent_inode: int, name: str, mode: int, rdev: int, uid: int, gid: int, umask: int = 0
    ) -> Entry:
        if not stat.S_ISREG(mode):
            log.warning("mknod %s refused: ossmount cannot store special files (FIFO, socket, device)", name)
            raise FsError(errno.EPERM)
        fh, entry = await self.create(parent_inode, name, mode, os.O_WRONLY, uid, gid, umask)
        await self.release(fh)
        return entry

    async def open(self, inode: int, flags: int) -> int:
        path = self._path(inode)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if writable:
            self._check_writable()
        node = await (self._full_node(path) if writable else self._resolve(path))
        if node.kind == fsattrs.EntryKind.DIR:
            raise FsError(errno.EISDIR)
        info = node.info
        upload_meta = _UploadMeta(info.content_type or DIR_CONTENT_TYPE, dict(info.meta))
        for handle in self._handles.values():
            if isinstance(handle, _FileHandle) and handle.content.key == node.key:
                upload_meta = handle.upload_meta
                break
        content = await self.contents.open(
            node.key,
            size=info.size,
            etag=info.etag,
            truncate=bool(flags & os.O_TRUNC),
            headers=self._headers_for(upload_meta),
        )
        handle = _FileHandle(path, content, upload_meta, writable, data_changed=bool(flags & os.O_TRUNC))
        return self._new_handle(handle)

    async def read(self, fh: int, offset: int, length: int) -> bytes | memoryview:
        handle = self._file_handle(fh)
        try:
            return await handle.content.read(offset, length)
        except InvalidObjectState as exc:
            key = handle.content.key
            if key not in self._archive_warned:
                self._archive_warned.add(key)
                log.warning("cannot read %s: the object is archived and %s", key, ARCHIVE_HINT)
            raise FsError(exc.errno) from exc

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self._file_handle(fh)
        if not handle.writable:
            raise FsError(errno.EBADF)
        handle.data_changed = True
        return await handle.content.write(offset, data)

    async def flush(self, fh: int) -> None:
        """flush/fsync/close: upload the file if it has unflushed data; an upload failure is EIO."""
        handle = self._file_handle(fh)
        touched = handle.data_changed
        handle.data_changed = False
        try:
            await self._flush_content(handle.path, handle.content, handle.upload_meta, touch=touched)
        except BaseException:
            handle.data_changed = touched
            raise

    async def _flush_content(self, path: str, content: Any, upload_meta: _UploadMeta, *, touch: bool = True) -> None:
        if not content.dirty:
            return
        if touch:
            now = self.clock()
            upload_meta.meta = fsattrs.meta_with_changes(upload_meta.meta, mtime=now, ctime=now)
        try:
            stored = await content.flush()
        except StoreError as exc:  # content.flush has logged it
            raise FsError(errno.EIO) from exc
        if stored is not None:
            path = self._path_of_key(content.key, path)
            self._remember_object(
                path,
                fsattrs.EntryKind.FILE,
                content.key,
                content.size,
                upload_meta.content_type,
                dict(upload_meta.meta),
                stored,
            )

    def _path_of_key(self, key: str, fallback: str) -> str:
        prefix = self.config.prefix
        return key[len(prefix):] if key.startswith(prefix) else fallback

    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if isinstance(handle, _FileHandle):
            await self.contents.release(handle.content)

    async def unlink(self, parent_inode: int, name: str) -> None:
        self._check_writable()
        path = self._child(parent_inode, name)
        node = await self._resolve(path)
        if node.kind == fsattrs.EntryKind.DIR:
            raise FsError(errno.EISDIR)
        await self.store.delete(node.key)
        inode = self.inodes.find(path)
        if inode is not None:
            # fstat of a file that is still open after unlink must keep working.
            self._orphans[inode] = (self._attrs(path, node), self.contents.get(node.key))
        self.contents.unlinked(node.key)
        self.cache.remove_local(path)
        self.inodes.detach(path)

    async def symlink(self, parent_inode: int, name: str, target: str, uid: int, gid: int) -> Entry:
        """A symlink as ossfs 1.91 stores it: target in x-oss-meta-symlink-target (and, for older readers, the body)."""
        self._check_writable()
        path = self._child(parent_inode, name)
        meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.SYMLINK, stat.S_IFLNK | 0o777, uid, gid, self.clock())
        meta.update(fsattrs.symlink_meta(target))
        body = fsattrs.symlink_body(target)
        key = self._key(path)
        stored = await self.store.put(key, body, content_type=DIR_CONTENT_TYPE, meta=meta)
        node = self._remember_object(path, fsattrs.EntryKind.SYMLINK, key, len(body), DIR_CONTENT_TYPE, meta, stored)
        return self._entry(path, node)

    async def link(self, inode: int, parent_inode: int, name: str) -> Entry:
        raise FsError(errno.ENOTSUP)

    # ---- rename ---------------------------------------------------------------------------------

    async def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str, flags: int) -> None:
        """Copy then delete: one object for a file, every object under the prefix for a directory."""
        self._check_writable()
        if flags & RENAME_EXCHANGE:
            log.warning("rename %s: RENAME_EXCHANGE is not supported on object storage", old_name)
            raise FsError(errno.EINVAL)
        old = self._child(old_parent, old_name)
        new = self._child(new_parent, new_name)
        if old == new:
            return
        if new.startswith(old + "/"):
            raise FsError(errno.EINVAL)
        node = await self._resolve(old)
        try:
            target = await self._resolve(new)
        except FsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            target = None
        if target is not None and flags & RENAME_NOREPLACE:
            raise FsError(errno.EEXIST)
        if node.kind == fsattrs.EntryKind.DIR:
            if target is not None:
                if target.kind != fsattrs.EntryKind.DIR:
                    raise FsError(errno.ENOTDIR)
                await self._require_empty(new, target)
                if target.key is not None:
                    await self.store.delete(target.key)
            await self._rename_tree(old, new)
            self.cache.invalidate_tree(old)
            self.cache.invalidate_tree(new)
        else:
            if target is not None and target.kind == fsattrs.EntryKind.DIR:
                raise FsError(errno.EISDIR)
            new_key = self._key(new)
            etag = await self._rename_object(node.key, new_key)
            # As a local delete plus create: both parents' cached listings stay valid (no LIST, no HEADs).
            info = dataclasses.replace(node.info, key=new_key, etag=etag or node.info.etag, mtime=self.clock())
            self.cache.remove_local(old)
            self.cache.put_local(new, Node(node.kind, new_key, info))
        self.inodes.rename(old, new, tree=node.kind == fsattrs.EntryKind.DIR)
        for handle in self._handles.values():
            if handle.path == old or handle.path.startswith(old + "/"):
                handle.path = new + handle.path[len(old):]

    async def _rename_object(self, old_key: str, new_key: str) -> str:
        """Copy then delete one object; returns the new object's ETag."""
        etag = await self.store.copy(old_key, new_key)
        await self.store.delete(old_key)
        self.contents.rename(old_key, new_key)
        return etag

    async def _rename_tree(self, old: str, new: str) -> None:
        old_prefix = self._key(old) + "/"
        new_prefix = self._key(new) + "/"
        objects, _ = await self.store.list_all(old_prefix, delimiter="", v2=self.config.list_v2)
        keys = [info.key for info in objects]
        limiter = trio.CapacityLimiter(RENAME_COPY_CONCURRENCY)

        async def copy(key: str) -> None:
            async with limiter:
                await self.store.copy(key, new_prefix + key[len(old_prefix):])

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(copy, key)
        if keys:
            await self.store.delete_many(keys)
        for key in keys:
            self.contents.rename(key, new_prefix + key[len(old_prefix):])

    # ---- extended attributes --------------------------------------------------------------------

    async def _xattrs(self, path: str) -> tuple[Node, dict[str, bytes]]:
        node = await self._full_node(path)
        encoded = node.info.meta.get(fsattrs.META_XATTR) if node.info is not None else None
        return node, (fsattrs.decode_xattrs(encoded) if encoded else {})

    async def getxattr(self, inode: int, name: str) -> bytes:
        path = self._path(inode)
        if name.startswith(KERNEL_XATTR_PREFIXES):
            node = await self._resolve(path)
            if node.info is None or fsattrs.META_XATTR not in node.info.meta:
                # ls -l asks for ACLs and security labels on every entry: answer without a HEAD.
                raise FsError(errno.ENODATA)
        _, values = await self._xattrs(path)
        if name not in values:
            raise FsError(errno.ENODATA)
        return values[name]

    async def listxattr(self, inode: int) -> list[str]:
        _, values = await self._xattrs(self._path(inode))
        return sorted(values)

    async def setxattr(self, inode: int, name: str, value: bytes, flags: int = 0) -> None:
        self._check_writable()
        path = self._path(inode)
        if path == "" or name.startswith("system."):
            # No POSIX ACLs: refusing them makes cp -a and tar fall back to chmod, which we store.
            raise FsError(errno.ENOTSUP)
        node, values = await self._xattrs(path)
        if flags & XATTR_CREATE and name in values:
            raise FsError(errno.EEXIST)
        if flags & XATTR_REPLACE and name not in values:
            raise FsError(errno.ENODATA)
        values[name] = bytes(value)
        await self._store_xattrs(path, node, values)

    async def removexattr(self, inode: int, name: str) -> None:
        self._check_writable()
        path = self._path(inode)
        node, values = await self._xattrs(path)
        if name not in values:
            raise FsError(errno.ENODATA)
        del values[name]
        await self._store_xattrs(path, node, values)

    async def _store_xattrs(self, path: str, node: Node, values: dict[str, bytes]) -> None:
        await self._change_meta(
            path, node, self._attrs(path, node), lambda meta: fsattrs.meta_with_xattrs(meta, values)
        )

    # ---- whole filesystem -----------------------------------------------------------------------

    def statfs(self) -> StatFs:
        """Large free space, answered without a request (object storage has no capacity limit)."""
        block_size = 4096
        blocks = 2**50 // block_size
        return StatFs(
            block_size=block_size,
            blocks=blocks,
            blocks_free=blocks,
            files=2**32,
            files_free=2**32,
            name_max=255,
        )

    def open_handle_count(self) -> int:
        return sum(1 for h in self._handles.values() if isinstance(h, _FileHandle))


def _heads_on_readdir(node: Node, config: FsConfig) -> bool:
    """Whether readdir HEADs an entry: always, unless readdir_optimize; then only objects of at most
    readdir_check_size bytes (ossfs: symlinks and small files keep their mode and owner)."""
    if not config.readdir_optimize:
        return True
    return (config.readdir_check_size is not None and node.info is not None
            and node.info.size <= config.readdir_check_size)


async def _symlink_target(info: ObjectInfo, read_body: Callable[[], Any]) -> str:
    """The symlink target: x-oss-meta-symlink-target (ossfs 1.91) or, for older objects, the body."""
    target = fsattrs.symlink_target_from(dict(info.meta), None)
    if target is not None:
        return target
    body = await read_body()
    return fsattrs.symlink_target_from({}, bytes(body))
