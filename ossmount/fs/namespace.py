"""The namespace: paths, inodes, lookups, listings, metadata changes and renames over an ObjectStore.

Theory of operation
- A path (relative to the mount prefix, no slashes at either end) is a file when the object `PREFIX+path`
  exists, a directory when the marker object `PREFIX+path/` exists or any key starts with `PREFIX+path/`.
  `ossmount.fs.attrs.classify_object` decides what an object is (ossfs's rules: a stored mode names the
  type; a `dir/` object without one is a directory under complement_stat). `ossmount.fs.names` decides
  which keys of a listing can be shown (never '.', '..', empty or over-long names; a file shadows a
  directory of the same name, as in ossfs); every hidden key is logged once with the reason.
- lookup: stat cache -> negative cache -> the parent's cached listing (a name missing from it counts as
  missing with `enable_noobj_cache`, or when OSS returned that listing less than `open_check_window`
  seconds ago) -> the directory's sweep (sweep.py: lookups that keep missing in one directory list it page by
  page and find their HEADs sent ahead) -> HEAD path -> LIST `path/` max-keys 1 (covers a marker and an
  implicit prefix; the marker's metadata needs one more HEAD unless the persistent stat cache holds that very
  version, or readdir_optimize takes it as listed). A name likely to be a directory (readdir_optimize, or a
  marker the persistent stat cache saw under that name) is asked the other way round: one LIST of the keys
  starting with `path` (one key, no delimiter), whose first key proves a directory with no file of that name.
  When the parent's listing is cached but OSS does not answer within a short patience, the lookup is
  answered from that listing and the request finishes in the background (stalls.py: the kernel may
  hold the directory's lock for this lookup).
- Every cached node records when OSS last confirmed it (`Node.checked`); `revalidate` (one HEAD) is what
  an open uses to see another client's change (see handles.py).
- Local changes update the cached entry and the parent's cached listing in place (`put_local`,
  `remove_local`), so this mount's own creates and deletes never wait for the TTL.
- readdir lists with delimiter "/" (V2 unless listobjectsv1, pages of 1000) and gives each entry its full
  metadata (mode/uid/times live in `x-oss-meta-*`): from the stat cache or the persistent stat cache
  (persistent.py) when they hold the very version listed (same ETag, Last-Modified, size), else by HEAD
  (at most 16 at once) unless `readdir_optimize`. The listing and every entry go to the caches, so a
  second `ls -l` within `stat_cache_expire` sends no request, and after a remount an unchanged
  directory needs only its LISTs. Each entry's attributes are built once (memoized on its node) and a
  readdir call builds only the entries the kernel takes. A walk (`find`, `du`, `ls -R`) finds the directories it
  reads next listed ahead (dirsweep.TreeWalks).
- Metadata changes (chmod, chown, utimens, xattrs) rewrite `x-oss-meta-*` with CopyObject REPLACE and
  never re-upload data; ctime is set to now, as ossfs does. On a file with unflushed data they are only
  recorded for its upload (`change_meta(..., upload_pending=True)`).
- A directory never vanishes because this mount removed or moved out its last entry: when the last entry
  of a directory without a marker object goes, its `dir/` marker is written (ossfs's directory format).
- rename is copy then delete. A file's copy replaces its metadata: ctime now, Content-Type from the new
  name's extension (ossfs). A directory rename copies every key under it (its marker with a new ctime).
- The bucket disappearing (NoSuchBucket) drops every cache and makes each operation EIO (the store says
  so once per outage); nothing is ever shown as an empty directory or a missing file because of it.

Concurrency (trio: synchronous code between two awaits is atomic; every store call is an await)
- The inode table and the caches are changed only in synchronous stretches, so they are always
  self-consistent; an operation re-reads what it needs after each await instead of holding locks.
- Races between this mount's own operations on one name (e.g. two creates) are serialised by the kernel's
  directory locks; what remains is last-writer-wins on the object, as on OSS itself.
- readdir keeps the snapshot taken at offset 0; local creates and deletes update the cached listing in
  place, so the next opendir sees them without a LIST. A listing asked from OSS while this mount changes that
  directory (a chmod or a write never take the kernel's directory lock; a late upload of a create) may predate
  the change: it is shown to the readdir that asked but never cached (`MetadataCache.watching`).
- Other clients' changes are seen when the cache entry (and the kernel's entry/attr timeout, the same TTL)
  expires, or at the next open of a file (close-to-open).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import trio

from ossmount.fs import attrs as fsattrs
from ossmount.fs import dirsweep, names, stalls, sweep
from ossmount.fs.cache import Listing, MetadataCache, Node, parent_of
from ossmount.fs.errors import FsError
from ossmount.fs.inodes import InodeTable
from ossmount.fs.persistent import PersistentStatCache, same_version
from ossmount.fs.timeouts import KernelTimeouts
from ossmount.fs.model import RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE, DirEntry, Entry, \
    FsConfig, StatFs
from ossmount.store.transport import acquire_promptly
from ossmount.store.types import NoSuchKey, ObjectInfo, StoreError

log = logging.getLogger("ossmount.fs")

FILE_CONTENT_TYPE = "application/octet-stream"  # files and links with no known extension
READDIR_HEAD_CONCURRENCY = 16
RENAME_COPY_CONCURRENCY = 16
KERNEL_XATTR_PREFIXES = ("security.", "system.")
HIDDEN_NAMES_LOGGED = 10
MARKER_HINT_DIRECTORIES = 256  # directories whose stored markers are remembered as lookup hints
MARKER_HINT_SECONDS = 60.0  # how long such a hint is kept without a stat cache TTL (it is only a hint)
_UNSURE = object()  # `_fetch_directory_first` could not tell: ask in the ordinary order  # keys named in one "rmdir: not empty" line
# ossfs 1.91.10 statfs: 2^54 - 1 inodes, total and free (measured)
STATFS_INODES = 2**54 - 1
_FILE = fsattrs.EntryKind.FILE


@dataclass
class _DirHandle:
    path: str
    node: Node
    entries: list[tuple[str, Node]] | None = None  # the snapshot taken at offset 0
    built: list[DirEntry | None] = field(default_factory=list)  # by offset; `.` and `..` first


class Namespace:
    """Names, inodes and metadata of one mount (kernel-free; see the module docstring).

    `contents` (a ContentManager) is asked only for the size of files with unflushed data.
    """

    def __init__(
        self,
        store: Any,
        contents: Any,
        *,
        config: FsConfig,
        ownership: Any,
        mime: Any,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        persistent: PersistentStatCache | None = None,
        nursery: trio.Nursery | None = None,
    ):
        self.store = store
        self.contents = contents
        self.config = config
        self.ownership = ownership
        self.mime = mime
        self.clock = clock
        self.monotonic = monotonic
        self.persistent = persistent if config.stat_cache_size > 0 else None
        self.nursery = nursery  # the mount's: requests that outlive the operation waiting for them (stalls.py)
        self.patience = stalls.Patience()
        self.inodes = InodeTable()
        self.cache = MetadataCache(
            max_size=config.stat_cache_size, ttl=config.stat_cache_ttl, negative=config.negative_cache
        )
        self.kernel = KernelTimeouts.for_mount(
            self.cache.ttl if config.stat_cache_size > 0 else 0.0, entry=config.entry_timeout,
            attr=config.attr_timeout, negative=config.negative_timeout)
        self.timeout = self.kernel.attr
        self.mount_time = clock()
        self._dir_handles: dict[int, _DirHandle] = {}
        self._next_dh = 1
        self._warned: set[str] = set()
        self._orphans: dict[int, tuple[Any, Any]] = {}  # unlinked inodes the kernel still holds: (attrs, content)
        self._head_limiter = trio.CapacityLimiter(READDIR_HEAD_CONCURRENCY)
        self._marker_hints: OrderedDict[str, tuple[frozenset[str], float]] = OrderedDict()
        self._root = Node(fsattrs.EntryKind.DIR, None, None)
        self.sweeps = sweep.Sweeps(
            nursery=nursery, ttl=self.cache.ttl if config.stat_cache_size > 0 else 0.0,
            negative_window=lambda: float("inf") if config.negative_cache else config.open_check_window,
            head=self._head, dir_prefix=self.dir_prefix, monotonic=monotonic,
            list_page=lambda prefix, token: self.store.list_page(prefix, delimiter="/", token=token,
                                                                 v2=self.config.list_v2))
        self.walks = dirsweep.TreeWalks(
            nursery=nursery, enabled=config.stat_cache_size > 0, headed=not config.readdir_optimize,
            fetch=self._fetch_listing, keep=self._keep_listing, cached=self.cache.peek_listing, monotonic=monotonic)
        self.cache.on_change = self._changed
        self.attribute_builds = 0
        self.listing_negative_lookups = 0
        self.persistent_hits = 0
        self.persistent_misses = 0
        self.stalled_lookups = 0
        self.stalled_creates = 0
        watch = getattr(store, "watch_bucket", None)
        if watch is not None:
            watch(self._bucket_missing, self._bucket_back)

    # ---- keys, paths and nodes ------------------------------------------------------------------

    def key(self, path: str) -> str:
        return self.config.prefix + path

    def dir_prefix(self, path: str) -> str:
        return self.config.prefix + path + "/" if path else self.config.prefix

    def child(self, parent_inode: int, name: str) -> str:
        if not name or name in (".", "..") or "/" in name:
            raise FsError(errno.EINVAL)
        parent = self.path(parent_inode)
        return f"{parent}/{name}" if parent else name

    def path(self, inode: int) -> str:
        try:
            path = self.inodes.path(inode)
        except KeyError:
            raise FsError(errno.ESTALE) from None
        if path.startswith("\0"):
            raise FsError(errno.ENOENT)
        return path

    def path_of_key(self, key: str, fallback: str) -> str:
        prefix = self.config.prefix
        return key[len(prefix):] if key.startswith(prefix) else fallback

    def check_writable(self) -> None:
        if self.config.read_only:
            raise FsError(errno.EROFS)

    def warn_once(self, key: str, warning: str | None) -> None:
        if warning and key not in self._warned:
            self._warned.add(key)
            log.warning("%s", warning)

    def node_from_object(self, info: ObjectInfo, checked: float | None = None) -> Node:
        kind, warning = fsattrs.classify_object(
            info.key, info.size, info.content_type, info.meta, complement_stat=self.config.complement_stat
        )
        self.warn_once(info.key, warning)
        return Node(kind, info.key, info, self.monotonic() if checked is None else checked)

    def attrs(self, path: str, node: Node) -> Any:
        """What `stat` shows for `node` at `path`: built once per node (memoized on it, counted in
        `attribute_builds`); a file with unflushed data here shows its local size."""
        attrs = node.attrs
        if attrs is None:
            self.attribute_builds += 1
            if path == "":
                attrs = fsattrs.attrs_for_root(self.ownership, self.mount_time)
            elif node.info is None:
                attrs = fsattrs.attrs_for_implicit_dir(self.ownership, self.mount_time)
            else:
                attrs = fsattrs.attrs_for_object(node.info, node.kind, self.ownership)
            object.__setattr__(node, "attrs", attrs)  # frozen, except for this memo (see Node)
        if node.kind is _FILE:
            content = self.contents.get(node.key)
            if content is not None and content.size != attrs.size:
                attrs = dataclasses.replace(attrs, size=content.size)
        return attrs

    def entry(self, path: str, node: Node) -> Entry:
        inode = self.inodes.remember(path)
        return Entry(inode, self.attrs(path, node), self.timeout)

    def remember_object(
        self, path: str, kind: Any, key: str, size: int, content_type: str, meta: dict, stored: Any
    ) -> Node:
        """Cache what this mount just wrote (`stored`: the store's answer, for the ETag, the version id and the
        server's time of the write, which a later listing shows as Last-Modified)."""
        info = ObjectInfo(key=key, size=size, etag=getattr(stored, "etag", "") or "",
                          mtime=getattr(stored, "mtime", 0.0) or self.clock(), content_type=content_type, meta=meta,
                          version_id=getattr(stored, "version_id", None))
        node = Node(kind, key, info, self.monotonic())
        self.cache.put_local(path, node)
        return node

    def _changed(self, path: str | None) -> None:
        """A local change of `path` (None: of anything): what is fetched ahead forgets it (sweep.py); listings in
        flight are spoiled by the cache itself (`MetadataCache.watching`)."""
        self.sweeps.changed(path)

    # ---- the bucket disappearing ----------------------------------------------------------------

    def _bucket_missing(self, error: StoreError) -> None:
        self.cache.clear()
        log.error("bucket '%s' does not exist (NoSuchBucket answering %s, request-id %s): every operation fails "
                  "with EIO until it exists again", getattr(self.store, "bucket_name", "?"),
                  f"'{error.key}'" if error.key else "a bucket request", error.request_id or "-")

    def _bucket_back(self) -> None:
        self.cache.clear()
        log.warning("bucket '%s' exists again: operations resume", getattr(self.store, "bucket_name", "?"))

    # ---- resolving ------------------------------------------------------------------------------

    async def _head(self, key: str) -> ObjectInfo | None:
        try:
            info = await self.store.head(key)
        except NoSuchKey:
            info = None
        self._note_answer(key, info)
        return info

    def _note_answer(self, key: str, info: ObjectInfo | None) -> None:
        """What OSS just answered about `key` (None: NoSuchKey) goes to the persistent stat cache."""
        if self.persistent is not None:
            if info is None:
                self.persistent.forget(key)
            else:
                self.persistent.record(info)

    async def resolve(self, path: str) -> Node:
        """The node at `path` (ENOENT if nothing is there), from the caches when they know it."""
        if path == "":
            return self._root
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
            if self.checked_within(listing, self.config.open_check_window):
                self.listing_negative_lookups += 1
                raise FsError(errno.ENOENT)
            try:  # the kernel may hold the directory's lock for this lookup: see stalls.py
                node = await stalls.within(self.nursery, self.patience, self._fetch_and_cache, path)
            except stalls.StillWaiting:
                self.stalled_lookups += 1
                log.info("lookup of '%s': OSS did not answer within %.1f s; answered from the directory's "
                         "listing (no such name)", path, self.patience.wait)
                raise FsError(errno.ENOENT) from None
        else:
            found = await self.sweeps.lookup(path)  # answered ahead when lookups sweep the directory (sweep.py)
            if found is sweep.PASS:
                node = await self._fetch_and_cache(path)
            elif found is None:
                raise FsError(errno.ENOENT)
            else:
                info, answered = found
                node = self._keep_fetched(path, self.node_from_object(info, answered))
        if node is None:
            raise FsError(errno.ENOENT)
        return node

    async def _fetch_and_cache(self, path: str) -> Node | None:
        """Ask OSS what is at `path` and cache the answer (`_keep_fetched`)."""
        return self._keep_fetched(path, await self._fetch_node(path))

    def _keep_fetched(self, path: str, node: Node | None) -> Node | None:
        """Cache what OSS said is at `path`, unless this mount learned of `path` meanwhile (a create while the
        request was out): an answer fills a gap, it never overrides what is newer."""
        known = self.cache.get(path)
        if known is not None:
            return known
        if node is None:
            self.cache.put_missing(path)
        else:
            self.cache.put(path, node)
        return node

    async def _fetch_node(self, path: str) -> Node | None:
        """What OSS has at `path`: HEAD `path`, else a one-key LIST of `path/` (a marker or an implicit
        directory). A name likely to be a directory (readdir_optimize, or a marker the persistent stat cache
        saw under this very name) is asked the other way round, in one LIST (`_fetch_directory_first`)."""
        key = self.key(path)
        if await self._likely_directory(path, key):
            node = await self._fetch_directory_first(key)
            if node is not _UNSURE:
                return node
        info = await self._head(key)
        if info is not None:
            return self.node_from_object(info)
        marker = key + "/"
        checked = self.monotonic()
        page = await self.store.list_page(marker, delimiter="/", max_keys=1, v2=self.config.list_v2)
        if not page.objects and not page.prefixes:
            return None
        if page.objects and page.objects[0].key == marker:
            node = await self._marker_node(page.objects[0], checked)
            if node is not None:
                return node
        return Node(fsattrs.EntryKind.DIR, None, None, checked)

    async def _likely_directory(self, path: str, key: str) -> bool:
        if self.config.readdir_optimize:
            return True
        if self.persistent is None:
            return False
        parent = self.dir_prefix(parent_of(path))
        hint = self._marker_hints.get(parent)
        if hint is None or self.monotonic() - hint[1] >= (self.cache.ttl or MARKER_HINT_SECONDS):
            hint = self._marker_hints[parent] = (await self.persistent.lookup_markers(parent), self.monotonic())
            while len(self._marker_hints) > MARKER_HINT_DIRECTORIES:
                self._marker_hints.popitem(last=False)
        return key + "/" in hint[0]

    async def _fetch_directory_first(self, key: str) -> Node | None | object:
        """One LIST of the keys starting with `key` (no delimiter, one key): none at all is "no such name"; the
        marker `key/` or a key under `key/` first proves there is no object `key` (it would sort first), so the
        name is a directory. `_UNSURE` when the first key is `key` itself (a file: its HEAD follows) or another
        name sharing the beginning (`key-old`, `key.txt`): the ordinary order then decides."""
        checked = self.monotonic()
        page = await self.store.list_page(key, delimiter="", max_keys=1, v2=self.config.list_v2)
        if not page.objects:
            return None if not page.prefixes else _UNSURE
        first = page.objects[0]
        if first.key == key + "/":
            node = await self._marker_node(first, checked)
            return node if node is not None else _UNSURE
        if first.key.startswith(key + "/"):
            return Node(fsattrs.EntryKind.DIR, None, None, checked)
        return _UNSURE

    async def _marker_node(self, listed: ObjectInfo, checked: float) -> Node | None:
        """A directory's `dir/` marker as a LIST showed it: its full metadata from the persistent stat cache when
        it holds that very version, as listed with readdir_optimize (as readdir shows entries then), else by
        HEAD (None: it is gone)."""
        full = await self.persistent.lookup_key(listed.key) if self.persistent is not None else None
        if full is not None and same_version(listed, full):
            self.persistent_hits += 1
            return self.node_from_object(dataclasses.replace(full, restore=listed.restore), checked)
        if self.config.complement_stat:
            node = self.node_from_object(listed, checked)
            if node.kind is fsattrs.EntryKind.DIR and not _heads_on_readdir(node, self.config):
                return node
        info = await self._head(listed.key)
        return self.node_from_object(info) if info is not None else None

    async def full_node(self, path: str) -> Node:
        """The node with its complete metadata (a listing gives no Content-Type or x-oss-meta-*)."""
        node = await self.resolve(path)
        if node.info is not None and node.info.from_listing:
            node = await self.revalidate(path, node)
        return node

    async def revalidate(self, path: str, node: Node) -> Node:
        """HEAD the object of `node` again (one request): the node as OSS has it now, cached and returned.

        ENOENT when another client deleted it (the caches then forget it).
        """
        return self._revalidated(path, await self._head(node.key))

    def revalidated(self, path: str, key: str, info: ObjectInfo | None) -> Node:
        """`revalidate` with OSS's answer about `key` already in hand (the metadata of a GET made at open:
        handles.py); `info` None means NoSuchKey."""
        self._note_answer(key, info)
        return self._revalidated(path, info)

    def _revalidated(self, path: str, info: ObjectInfo | None) -> Node:
        if info is None:
            self.cache.remove_local(path)
            raise FsError(errno.ENOENT)
        fresh = self.node_from_object(info)
        self.cache.put_local(path, fresh)
        return fresh

    def checked_within(self, node: Node | Listing, window: float) -> bool:
        """True if OSS confirmed `node` (or a complete listing) less than `window` seconds ago."""
        return self.monotonic() - node.checked < window

    # ---- lookups and attributes -----------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: str) -> Entry:
        """Resolve `name` in a directory; success counts one kernel reference to the inode."""
        if name == ".":
            path = self.path(parent_inode)
        elif name == "..":
            path = parent_of(self.path(parent_inode))
        else:
            path = self.child(parent_inode, name)
        node = await self.resolve(path)
        return self.entry(path, node)

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
        path = self.path(inode)
        node = await self.resolve(path)
        return Entry(inode, self.attrs(path, node), self.timeout)

    # ---- metadata -------------------------------------------------------------------------------

    def stat_changes(self, current: Any, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                     atime_ns: int | None = None, mtime_ns: int | None = None) -> Callable[[dict], dict]:
        """chmod/chown/utimens as a change of the stored meta; ctime becomes now (exact nanoseconds)."""
        changes: dict[str, Any] = {"ctime_ns": fsattrs.seconds_to_ns(self.clock())}
        if mode is not None:
            changes["mode"] = stat.S_IFMT(current.mode) | stat.S_IMODE(mode)
        if uid is not None:
            changes["uid"] = uid
        if gid is not None:
            changes["gid"] = gid
        if atime_ns is not None:
            changes["atime_ns"] = atime_ns
        if mtime_ns is not None:
            changes["mtime_ns"] = mtime_ns
        return lambda meta: fsattrs.meta_with_changes(meta, **changes)

    async def change_meta(
        self, path: str, node: Node, current: Any, change: Callable[[dict[str, str]], dict[str, str]], *,
        upload_pending: bool = False,
    ) -> None:
        """Apply `change` to the stored metadata of `path` (creating an implicit directory's marker).

        With `upload_pending` the file's next upload carries the change (the open files have it already),
        so only the cache is updated.
        """
        if node.info is None:
            marker = self.key(path) + "/"
            base = fsattrs.meta_for_new_entry(fsattrs.EntryKind.DIR, current.mode, current.uid, current.gid,
                                              self.clock())
            meta = change(base)
            info = await self.store.put(marker, b"", content_type=fsattrs.DIR_CONTENT_TYPE, meta=meta)
            self.remember_object(path, node.kind, marker, 0, fsattrs.DIR_CONTENT_TYPE, meta, info)
            return
        meta = change(dict(node.info.meta))
        content_type = node.info.content_type or FILE_CONTENT_TYPE
        if not upload_pending:
            await self.store.update_meta(node.key, content_type=content_type, meta=meta,
                                         http_headers=node.info.http_headers)
        self.cache.put_local(path, dataclasses.replace(node, info=dataclasses.replace(node.info, meta=meta)))

    async def readlink(self, inode: int) -> str:
        path = self.path(inode)
        node = await self.full_node(path)
        if node.kind != fsattrs.EntryKind.SYMLINK:
            raise FsError(errno.EINVAL)
        info = node.info
        target = fsattrs.symlink_target_from(dict(info.meta))
        if target is None:
            body = await self.store.get_bytes(node.key, if_match=info.etag or None, version_id=info.version_id)
            target = fsattrs.symlink_target_from(dict(info.meta), body)
        return target

    # ---- directories ----------------------------------------------------------------------------

    async def opendir(self, inode: int) -> int:
        path = self.path(inode)
        node = await self.resolve(path)
        if node.kind != fsattrs.EntryKind.DIR:
            raise FsError(errno.ENOTDIR)
        handle = self._next_dh
        self._next_dh += 1
        self._dir_handles[handle] = _DirHandle(path, node)
        return handle

    async def readdir(self, fh: int, start_id: int) -> Iterator[DirEntry]:
        """`.`, `..`, then the entries, from position `start_id`, built as the caller takes them.

        The glue stops taking when the kernel's buffer is full (about 200 entries a call) and calls
        `remember` for each entry the kernel took, except `.` and `..` (pyfuse3: their lookup count must not
        change). Each entry is built once per directory handle, however many calls it takes to return it.
        """
        handle = self._dir_handles.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        if handle.entries is None or start_id == 0:
            handle.entries = (await self._listing(handle.path)).sorted()
            handle.built = [None] * (len(handle.entries) + 2)
        return self._dir_entries(handle, start_id)

    def _dir_entries(self, handle: _DirHandle, start_id: int) -> Iterator[DirEntry]:
        built = handle.built
        for index in range(start_id, len(built)):
            entry = built[index]
            if entry is None:
                entry = built[index] = self._dir_entry(handle, index)
            yield entry

    def _dir_entry(self, handle: _DirHandle, index: int) -> DirEntry:
        if index < 2:
            # `..` only needs the right inode and type (the kernel ignores the attributes of dot entries), so
            # it reuses this directory's attributes rather than costing a lookup; the root's `..` is itself.
            path = handle.path if index == 0 or not handle.path else parent_of(handle.path)
            return DirEntry("." if index == 0 else "..", path, self.attrs(handle.path, handle.node), index + 1,
                            dot_inode=self.inodes.inode_for(path))
        name, node = handle.entries[index - 2]
        path = f"{handle.path}/{name}" if handle.path else name
        return DirEntry(name, path, self.attrs(path, node), index + 1)

    def remember(self, entry: DirEntry) -> int:
        """The kernel accepted a readdirplus entry: it now holds a reference to its inode."""
        return self.inodes.remember(entry.path)

    def releasedir(self, fh: int) -> None:
        self._dir_handles.pop(fh, None)

    def _report_hidden(self, hidden: list[tuple[str, str]]) -> None:
        for key, reason in hidden:
            self.warn_once(key, f"key '{key}' is not shown: {reason}")

    async def _listing(self, path: str) -> Listing:
        listing = self.cache.get_listing(path)
        if listing is None:
            await self.walks.wait(path)  # a walk finds its next directories listed ahead (dirsweep.py)
            listing = self.cache.get_listing(path)
        self.walks.visit(path)
        if listing is None:
            listing = await self._fetch_listing(path)
            self._keep_listing(path, listing)
        self.walks.read(path)
        return listing

    async def _fetch_listing(self, path: str) -> Listing:
        """List the directory `path` and give its entries their full metadata (`_complete_entries`)."""
        dir_prefix = self.dir_prefix(path)
        with self.cache.watching(path) as watch:  # a local change meanwhile spoils the answer (never cached)
            checked = self.monotonic()
            objects, prefixes = await self.store.list_all(dir_prefix, delimiter="/", v2=self.config.list_v2)
            listed = names.split_listing(dir_prefix, ((info.key, info) for info in objects), prefixes)
            self._report_hidden(listed.hidden)
            entries: dict[str, Node] = {name: Node(fsattrs.EntryKind.DIR, None, None, checked)
                                        for name in listed.dirs}
            for name, info in listed.files.items():
                entries[name] = self.node_from_object(info, checked)
            await self._complete_entries(path, dir_prefix, entries, checked)
            self._add_files_not_on_oss(path, dir_prefix, entries)
        shadowed = {key[len(dir_prefix):-1] for key, _ in listed.hidden if key.endswith("/")} & set(listed.files)
        return Listing(entries, shadowed, checked, spoiled=watch.spoiled)

    def _add_files_not_on_oss(self, path: str, dir_prefix: str, entries: dict[str, Node]) -> None:
        """Files this mount holds whose upload has not landed (a create answered during a stalled PutObject, a
        write whose upload failed and is retried) exist though OSS does not list them yet: never hide them."""
        for content in self.contents.not_on_oss_under(dir_prefix):
            name = content.key[len(dir_prefix):]
            if name in entries and entries[name].kind is _FILE:
                continue
            child = f"{path}/{name}" if path else name
            node = self.cache.get(child)
            if node is None or node.kind is not _FILE or node.key != content.key:
                node = Node(_FILE, content.key, ObjectInfo(key=content.key, size=content.size, etag="",
                                                           mtime=self.clock()), self.monotonic())
            entries[name] = node

    def _keep_listing(self, path: str, listing: Listing) -> None:
        """Cache a listing and its entries, unless this mount changed the directory while it was asked for
        (`Listing.spoiled`): its entries could undo a chmod or a write, its names hide a create or show a delete."""
        if listing.spoiled:
            return
        for name, node in listing.entries.items():
            self.cache.put(f"{path}/{name}" if path else name, node)
        self.cache.put_listing(path, listing)

    async def _complete_entries(self, path: str, dir_prefix: str, entries: dict[str, Node], checked: float) -> None:
        """Give listed entries their full metadata (mode, owner, times live in x-oss-meta-*, which a listing
        lacks): from the stat cache or the persistent stat cache when they hold the very version listed
        (same ETag, Last-Modified, size, storage class), else by HEAD (at most READDIR_HEAD_CONCURRENCY at
        once) unless readdir_optimize leaves the entry as listed."""
        stored = await self.persistent.lookup_dir(dir_prefix) if self.persistent is not None else {}
        wanted = []
        for name, node in entries.items():
            child = f"{path}/{name}" if path else name
            cached = self.cache.get(child)
            if node.info is None:  # a common prefix: a directory whose marker (if any) the listing does not show
                if cached is not None and cached.kind is fsattrs.EntryKind.DIR and not (
                        cached.info is not None and cached.info.from_listing):
                    entries[name] = cached
                elif _heads_on_readdir(node, self.config):
                    wanted.append(name)
                continue
            listed = node.info
            if cached is not None and cached.info is not None and not cached.info.from_listing \
                    and cached.key == listed.key and same_version(listed, cached.info):
                entries[name] = dataclasses.replace(cached, checked=checked)
                continue
            full = stored.get(listed.key)
            if full is not None and same_version(listed, full):
                self.persistent_hits += 1
                entries[name] = self.node_from_object(dataclasses.replace(full, restore=listed.restore), checked)
            elif _heads_on_readdir(node, self.config):
                wanted.append(name)
        if not wanted:
            return
        if self.persistent is not None:
            self.persistent_misses += sum(entries[name].info is not None for name in wanted)

        # READDIR_HEAD_CONCURRENCY workers take the names in turn (a task per name costs a spawn and a wait for the
        # limiter each); the limiter bounds the HEADs of every listing of the mount together.
        names_left = iter(wanted)
        limiter = self._head_limiter

        async def complete() -> None:
            for name in names_left:
                node = entries[name]
                key = node.key if node.info is not None else dir_prefix + name + "/"
                await acquire_promptly(limiter)  # free capacity is taken without a trip through the scheduler
                try:
                    info = await self._head(key)
                finally:
                    limiter.release()
                if info is not None:
                    entries[name] = self.node_from_object(info)

        async with trio.open_nursery() as nursery:
            for _ in range(min(READDIR_HEAD_CONCURRENCY, len(wanted))):
                nursery.start_soon(complete)

    async def mkdir(self, parent_inode: int, name: str, mode: int, uid: int, gid: int, umask: int = 0) -> Entry:
        """`dir/` as ossfs 1.91.10 writes it: empty, application/x-directory, mode/uid/gid/times."""
        self.check_writable()
        path = self.child(parent_inode, name)
        full_mode = stat.S_IFDIR | (stat.S_IMODE(mode) & ~umask)
        meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.DIR, full_mode, uid, gid, self.clock())
        marker = self.key(path) + "/"
        stored = await self.store.put(marker, b"", content_type=fsattrs.DIR_CONTENT_TYPE, meta=meta)
        node = self.remember_object(path, fsattrs.EntryKind.DIR, marker, 0, fsattrs.DIR_CONTENT_TYPE, meta, stored)
        if self.config.negative_cache:
            self.cache.put_listing(path, Listing({}))  # the kernel's lookup found nothing under it
        return self.entry(path, node)

    async def rmdir(self, parent_inode: int, name: str) -> None:
        self.check_writable()
        path = self.child(parent_inode, name)
        node = await self.resolve(path)
        if node.kind != fsattrs.EntryKind.DIR:
            raise FsError(errno.ENOTDIR)
        await self._require_empty(path)
        # A directory known from a listing's common prefix (readdir_optimize sends no HEAD) may still have a
        # `dir/` marker object: delete it whether or not we know of it (DeleteObject of a missing key succeeds).
        await self.store.delete(node.key if node.key is not None else self.key(path) + "/")
        self.cache.remove_local(path)
        self.inodes.detach(path)
        await self.keep_directory(parent_of(path))

    async def _require_empty(self, path: str) -> None:
        """ENOTEMPTY if the directory shows an entry or holds keys it cannot show; those are named in the
        log (ossmount never deletes a key nobody could see). One LIST page unless it shows nothing yet."""
        dir_prefix = self.dir_prefix(path)
        objects, prefixes, token = [], [], None
        while True:
            page = await self.store.list_page(dir_prefix, delimiter="/", token=token, v2=self.config.list_v2)
            objects += page.objects
            prefixes += page.prefixes
            listed = names.split_listing(dir_prefix, ((o.key, o) for o in objects), prefixes)
            token = page.next_token
            if listed.names or token is None:
                break
        if listed.hidden:
            shown = listed.hidden[:HIDDEN_NAMES_LOGGED]
            more = len(listed.hidden) - len(shown)
            log.warning("rmdir '%s': not empty: it holds keys that cannot be shown: %s%s; remove them with another "
                        "OSS client (ossutil, the console)", path,
                        "; ".join(f"'{key}' ({reason})" for key, reason in shown),
                        f" and {more} more" if more else "")
        if listed.names or listed.hidden:
            raise FsError(errno.ENOTEMPTY)

    async def keep_directory(self, path: str) -> None:
        """This mount removed or moved out an entry of `path`: if that was its last entry and the directory
        has no marker object, write one, so the directory stays (ossfs's directory format)."""
        if path == "":
            return
        node = self.cache.get(path)
        if node is not None and node.info is not None:
            return
        listing = self.cache.get_listing(path)
        if listing is not None and listing.entries:
            return
        dir_prefix = self.dir_prefix(path)
        page = await self.store.list_page(dir_prefix, delimiter="/", max_keys=2, v2=self.config.list_v2)
        if page.objects or page.prefixes:
            return  # a marker (the first key) or another entry: the directory stays as it is
        attrs = fsattrs.attrs_for_implicit_dir(self.ownership, self.mount_time)
        meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.DIR, attrs.mode, attrs.uid, attrs.gid, self.clock())
        stored = await self.store.put(dir_prefix, b"", content_type=fsattrs.DIR_CONTENT_TYPE, meta=meta)
        self.remember_object(path, fsattrs.EntryKind.DIR, dir_prefix, 0, fsattrs.DIR_CONTENT_TYPE, meta, stored)
        if self.cache.get_listing(path) is None:
            self.cache.put_listing(path, Listing({}))

    # ---- entries without contents ---------------------------------------------------------------

    async def _put_entry(self, path: str, kind: Any, mode: int, uid: int, gid: int, body: bytes,
                         extra_meta: dict[str, str]) -> Entry:
        key = self.key(path)
        meta = fsattrs.meta_for_new_entry(kind, mode, uid, gid, self.clock())
        meta.update(extra_meta)
        content_type = self.mime.content_type_for(path.rpartition("/")[2])
        stored = await self.store.put(key, body, content_type=content_type, meta=meta)
        node = self.remember_object(path, kind, key, len(body), content_type, meta, stored)
        return self.entry(path, node)

    async def symlink(self, parent_inode: int, name: str, target: str, uid: int, gid: int) -> Entry:
        """A symlink as ossfs 1.91.10 stores it: the target in the body, or with `symlink_in_meta` in
        `x-oss-meta-symlink-target` (see attrs.symlink_object)."""
        self.check_writable()
        path = self.child(parent_inode, name)
        body, extra = fsattrs.symlink_object(target, in_meta=self.config.symlink_in_meta)
        return await self._put_entry(path, fsattrs.EntryKind.SYMLINK, stat.S_IFLNK | 0o777, uid, gid, body, extra)

    async def mknod_special(self, parent_inode: int, name: str, mode: int, rdev: int, uid: int, gid: int,
                            umask: int = 0) -> Entry:
        """A FIFO, socket or device node as ossfs 1.91.10 stores it: an empty object whose x-oss-meta-mode
        holds the full st_mode (plus x-oss-meta-rdev for devices, which ossfs ignores)."""
        self.check_writable()
        kind = fsattrs.EntryKind.from_mode(mode)
        if kind is None or not kind.special:
            raise FsError(errno.EINVAL)
        path = self.child(parent_inode, name)
        extra = {fsattrs.META_RDEV: str(rdev)} if kind in (fsattrs.EntryKind.CHAR_DEVICE,
                                                             fsattrs.EntryKind.BLOCK_DEVICE) else {}
        return await self._put_entry(path, kind, stat.S_IMODE(mode) & ~umask, uid, gid, b"", extra)

    async def unlink(self, parent_inode: int, name: str) -> tuple[str, Node]:
        """Delete a file, link or special file; returns (path, node) so open files can follow (then call
        `keep_directory` on its parent: this returns right after the delete, with no await in between)."""
        self.check_writable()
        path = self.child(parent_inode, name)
        node = await self.resolve(path)
        if node.kind == fsattrs.EntryKind.DIR:
            raise FsError(errno.EISDIR)
        await self.store.delete(node.key)
        inode = self.inodes.find(path)
        if inode is not None:
            # fstat of a file that is still open after unlink must keep working.
            self._orphans[inode] = (self.attrs(path, node), self.contents.get(node.key))
        self.cache.remove_local(path, shadowed=Node(fsattrs.EntryKind.DIR, None, None, self.monotonic()))
        self.inodes.detach(path)
        return path, node

    # ---- rename ---------------------------------------------------------------------------------

    async def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str,
                     flags: int) -> tuple[str, str, list[tuple[str, str, str]]]:
        """Copy then delete: one object for a file, every object under the prefix for a directory.

        Returns the old and new path and (old key, new key, the copy's ETag) of every object moved, for the
        open files to follow at once (then call `keep_directory` on the old parent).
        """
        self.check_writable()
        if flags & RENAME_EXCHANGE:
            log.warning("rename '%s': RENAME_EXCHANGE is not supported on object storage",
                        self.key(self.child(old_parent, old_name)))
            raise FsError(errno.EINVAL)
        old = self.child(old_parent, old_name)
        new = self.child(new_parent, new_name)
        if old == new:
            return old, new, []
        if new.startswith(old + "/"):
            raise FsError(errno.EINVAL)
        node = await self.resolve(old)
        try:
            target = await self.resolve(new)
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
                await self._require_empty(new)
                if target.key is not None:
                    await self.store.delete(target.key)
            moved = await self._rename_tree(old, new, node)
            self.cache.invalidate_tree(old)
            self.cache.invalidate_tree(new)
        else:
            if target is not None and target.kind == fsattrs.EntryKind.DIR:
                raise FsError(errno.EISDIR)
            moved = [await self._rename_object(old, new)]
        self.inodes.rename(old, new, tree=node.kind == fsattrs.EntryKind.DIR)
        return old, new, moved

    def _moved_meta(self, meta: dict[str, str]) -> dict[str, str]:
        return fsattrs.meta_with_changes(meta, ctime_ns=fsattrs.seconds_to_ns(self.clock()))

    async def _rename_object(self, old: str, new: str) -> tuple[str, str, str]:
        """Copy then delete one object; the copy gets ctime now and the new name's Content-Type (ossfs)."""
        node = await self.full_node(old)
        new_key = self.key(new)
        meta = self._moved_meta(dict(node.info.meta))
        content_type = self.mime.content_type_for(new.rpartition("/")[2])
        etag = await self.store.copy(node.key, new_key, content_type=content_type, meta=meta, size=node.info.size,
                                     http_headers=node.info.http_headers)
        await self.store.delete(node.key)
        # As a local delete plus create: both parents' cached listings stay valid (no LIST, no HEADs).
        info = dataclasses.replace(node.info, key=new_key, etag=etag or node.info.etag, mtime=self.clock(),
                                   content_type=content_type, meta=meta, version_id=None)
        self.cache.remove_local(old, shadowed=Node(fsattrs.EntryKind.DIR, None, None, self.monotonic()))
        self.cache.put_local(new, Node(node.kind, new_key, info, self.monotonic()))
        return node.key, new_key, etag

    async def _rename_tree(self, old: str, new: str, node: Node) -> list[tuple[str, str, str]]:
        old_prefix = self.key(old) + "/"
        new_prefix = self.key(new) + "/"
        objects, _ = await self.store.list_all(old_prefix, delimiter="", v2=self.config.list_v2)
        keys = [info.key for info in objects]
        marker_meta = None
        if old_prefix in keys:
            marker = node if node.info is not None and not node.info.from_listing else await self.full_node(old)
            if marker.info is not None:
                marker_meta = (marker.info.content_type or fsattrs.DIR_CONTENT_TYPE,
                               self._moved_meta(dict(marker.info.meta)))
        limiter = trio.CapacityLimiter(RENAME_COPY_CONCURRENCY)
        etags: dict[str, str] = {}

        async def copy(key: str) -> None:
            async with limiter:
                if key == old_prefix and marker_meta is not None:
                    etags[key] = await self.store.copy(key, new_prefix, content_type=marker_meta[0],
                                                       meta=marker_meta[1])
                else:
                    etags[key] = await self.store.copy(key, new_prefix + key[len(old_prefix):])

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(copy, key)
        if keys:
            await self.store.delete_many(keys)
        return [(key, new_prefix + key[len(old_prefix):], etags[key]) for key in keys]

    # ---- extended attributes --------------------------------------------------------------------

    async def xattrs(self, path: str) -> tuple[Node, dict[str, bytes]]:
        node = await self.full_node(path)
        encoded = node.info.meta.get(fsattrs.META_XATTR) if node.info is not None else None
        return node, (fsattrs.decode_xattrs(encoded) if encoded else {})

    async def getxattr(self, inode: int, name: str) -> bytes:
        """A stored extended attribute (ENODATA if the entry has no such name).

        `security.*` and `system.*` names of an entry that stores no extended attributes at all are
        EOPNOTSUPP, answered from the caches: ossmount keeps no security labels and no POSIX ACLs (setting
        `system.*` is refused the same way). `ls -l` asks for `security.selinux` and
        `system.posix_acl_access` on every entry, and coreutils remembers per device that a filesystem does
        not support them: so an `ls -l` costs two such FUSE requests, not two per entry (ENODATA would not
        stop it). The kernel itself caches nothing here: without FUSE_POSIX_ACL every ACL read is a request,
        and with it (pyfuse3 `enable_acl`) each inode still costs one, plus ACL reads in permission checks.
        """
        path = self.path(inode)
        if name.startswith(KERNEL_XATTR_PREFIXES):
            node = await self.resolve(path)
            if node.info is None or fsattrs.META_XATTR not in node.info.meta:
                raise FsError(errno.EOPNOTSUPP)
        _, values = await self.xattrs(path)
        if name not in values:
            raise FsError(errno.ENODATA)
        return values[name]

    async def listxattr(self, inode: int) -> list[str]:
        _, values = await self.xattrs(self.path(inode))
        return sorted(values)

    async def xattr_change(self, inode: int, name: str, value: bytes | None, flags: int = 0
                           ) -> tuple[str, Node, Callable[[dict], dict]]:
        """The change setxattr (`value`) or removexattr (None) makes: (path, node, meta change).
        The change also sets ctime to now (ossfs)."""
        self.check_writable()
        path = self.path(inode)
        if value is not None and (path == "" or name.startswith("system.")):
            # No POSIX ACLs: refusing them makes cp -a and tar fall back to chmod, which we store.
            raise FsError(errno.ENOTSUP)
        node, values = await self.xattrs(path)
        if value is None:
            if name not in values:
                raise FsError(errno.ENODATA)
            del values[name]
        else:
            if flags & XATTR_CREATE and name in values:
                raise FsError(errno.EEXIST)
            if flags & XATTR_REPLACE and name not in values:
                raise FsError(errno.ENODATA)
            values[name] = bytes(value)
        ctime_ns = fsattrs.seconds_to_ns(self.clock())
        return path, node, lambda meta: fsattrs.meta_with_changes(fsattrs.meta_with_xattrs(meta, values),
                                                                  ctime_ns=ctime_ns)

    # ---- whole filesystem -----------------------------------------------------------------------

    def statfs(self) -> StatFs:
        """Large free space and ossfs's inode counts, answered without a request."""
        block_size = 4096
        blocks = 2**50 // block_size
        return StatFs(
            block_size=block_size,
            blocks=blocks,
            blocks_free=blocks,
            files=STATFS_INODES,
            files_free=STATFS_INODES,
            name_max=names.NAME_MAX,
        )


def _heads_on_readdir(node: Node, config: FsConfig) -> bool:
    """Whether readdir HEADs an entry: always, unless readdir_optimize; then only objects of at most
    readdir_check_size bytes (ossfs: symlinks and small files keep their mode and owner)."""
    if not config.readdir_optimize:
        return True
    return (config.readdir_check_size is not None and node.info is not None
            and node.info.size <= config.readdir_check_size)
