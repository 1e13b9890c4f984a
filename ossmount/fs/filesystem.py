"""The kernel-free filesystem: one `Namespace` (names, inodes, listings, metadata, renames) and one
`OpenFiles` (handles and their versions) over a `ContentManager` (bytes) and an ObjectStore.

Each method is one FUSE operation. Most belong to one side and are passed through; the few that touch
both (setattr, xattr changes, unlink, rename) say here in which order: the namespace changes the bucket,
then the open files follow in the same synchronous stretch (trio), so no other task sees them disagree.
"""

from __future__ import annotations

import errno
import logging
import stat
from typing import Any, Iterator

from ossmount.fs import attrs as fsattrs
from ossmount.fs.cache import parent_of
from ossmount.fs.errors import FsError
from ossmount.fs.handles import OpenFiles
from ossmount.fs.model import (RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE, DirEntry, Entry,
                               FsConfig, FsStatistics, OpenedFile, StatFs)
from ossmount.fs.namespace import Namespace

__all__ = ["DirEntry", "Entry", "Filesystem", "FsConfig", "FsStatistics", "OpenedFile", "RENAME_EXCHANGE",
           "RENAME_NOREPLACE", "StatFs", "XATTR_CREATE", "XATTR_REPLACE"]

log = logging.getLogger(__name__)


class Filesystem:
    """Kernel-free filesystem over an ObjectStore; the FUSE glue makes one call per request."""

    def __init__(self, store: Any, contents: Any, **options: Any):
        """`options` are Namespace's: config (FsConfig), ownership, mime, and optionally clock/monotonic,
        persistent (a PersistentStatCache) and nursery (the mount's, for requests that outlive a stalled
        operation: stalls.py)."""
        self.ns = Namespace(store, contents, **options)
        self.files = OpenFiles(self.ns, contents)
        self.store = store
        self.contents = contents
        self.config = self.ns.config
        self.inodes = self.ns.inodes
        self.kernel = self.ns.kernel
        self.timeout = self.ns.timeout

    def statistics(self) -> FsStatistics:
        """The namespace's counters so far (a snapshot)."""
        ns = self.ns
        return FsStatistics(attribute_builds=ns.attribute_builds,
                            listing_negative_lookups=ns.listing_negative_lookups, persistent_hits=ns.persistent_hits,
                            persistent_misses=ns.persistent_misses, stalled_lookups=ns.stalled_lookups,
                            stalled_creates=ns.stalled_creates, heads_ahead=ns.sweeps.heads_ahead,
                            sweep_negative_lookups=ns.sweeps.negative_answers,
                            sweep_pages_ahead=ns.sweeps.pages_ahead, sweep_page_waits=ns.sweeps.page_waits,
                            listings_ahead=ns.walks.started)

    # ---- names ----------------------------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: str) -> Entry:
        return await self.ns.lookup(parent_inode, name)

    def forget(self, inode: int, count: int) -> None:
        self.ns.forget(inode, count)
        if not self.ns.inodes.known(inode):
            self.files.forget(inode)

    async def getattr(self, inode: int) -> Entry:
        return await self.ns.getattr(inode)

    async def readlink(self, inode: int) -> str:
        return await self.ns.readlink(inode)

    async def opendir(self, inode: int) -> int:
        return await self.ns.opendir(inode)

    async def readdir(self, fh: int, start_id: int) -> Iterator[DirEntry]:
        return await self.ns.readdir(fh, start_id)

    def remember(self, entry: DirEntry) -> int:
        return self.ns.remember(entry)

    def releasedir(self, fh: int) -> None:
        self.ns.releasedir(fh)

    async def mkdir(self, parent_inode: int, name: str, mode: int, uid: int, gid: int, umask: int = 0) -> Entry:
        return await self.ns.mkdir(parent_inode, name, mode, uid, gid, umask)

    async def rmdir(self, parent_inode: int, name: str) -> None:
        await self.ns.rmdir(parent_inode, name)

    async def symlink(self, parent_inode: int, name: str, target: str, uid: int, gid: int) -> Entry:
        return await self.ns.symlink(parent_inode, name, target, uid, gid)

    async def mknod(self, parent_inode: int, name: str, mode: int, rdev: int, uid: int, gid: int,
                    umask: int = 0) -> Entry:
        """Regular files as an empty created file; FIFOs, sockets and devices as ossfs stores them."""
        if stat.S_ISREG(mode):
            fh, entry = await self.files.create(parent_inode, name, mode, 0, uid, gid, umask, wait=False)
            await self.files.release(fh)
            return entry
        return await self.ns.mknod_special(parent_inode, name, mode, rdev, uid, gid, umask)

    async def link(self, inode: int, parent_inode: int, name: str) -> Entry:
        raise FsError(errno.ENOTSUP)

    async def unlink(self, parent_inode: int, name: str) -> None:
        await self.contents.settle(self.ns.key(self.ns.child(parent_inode, name)), publish=False)
        path, node = await self.ns.unlink(parent_inode, name)
        self.files.unlinked(node.key)
        await self.ns.keep_directory(parent_of(path))

    async def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str, flags: int) -> None:
        # An upload is bound to its key: what is streaming or committing to the old name lands before the copy.
        await self.contents.settle(self.ns.key(self.ns.child(old_parent, old_name)), publish=True)
        old, new, moved = await self.ns.rename(old_parent, old_name, new_parent, new_name, flags)
        self.files.moved(old, new, moved)
        if old != new:
            await self.ns.keep_directory(parent_of(old))

    def statfs(self) -> StatFs:
        return self.ns.statfs()

    # ---- attributes -----------------------------------------------------------------------------

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
        """chmod/chown/utimens persist in x-oss-meta-* (CopyObject REPLACE, exact nanoseconds, ctime now);
        a size change truncates."""
        self.ns.check_writable()
        path = self.ns.path(inode)
        if size is not None:
            await self.files.truncate(path, size, fh)
        if any(v is not None for v in (mode, uid, gid, atime_ns, mtime_ns)) and path != "":
            node = await self.ns.full_node(path)
            current = self.ns.attrs(path, node)
            change = self.ns.stat_changes(current, mode=mode, uid=uid, gid=gid, atime_ns=atime_ns,
                                          mtime_ns=mtime_ns)
            pending = self.files.meta_changing(node.key if node.kind == fsattrs.EntryKind.FILE else None, change,
                                               explicit_mtime=mtime_ns is not None)
            await self.ns.change_meta(path, node, current, change, upload_pending=pending)
        return await self.ns.getattr(inode)

    async def getxattr(self, inode: int, name: str) -> bytes:
        return await self.ns.getxattr(inode, name)

    async def listxattr(self, inode: int) -> list[str]:
        return await self.ns.listxattr(inode)

    async def setxattr(self, inode: int, name: str, value: bytes, flags: int = 0) -> None:
        await self._change_xattrs(inode, name, value, flags)

    async def removexattr(self, inode: int, name: str) -> None:
        await self._change_xattrs(inode, name, None)

    async def _change_xattrs(self, inode: int, name: str, value: bytes | None, flags: int = 0) -> None:
        path, node, change = await self.ns.xattr_change(inode, name, value, flags)
        pending = self.files.meta_changing(node.key if node.kind == fsattrs.EntryKind.FILE else None, change,
                                           explicit_mtime=False)
        await self.ns.change_meta(path, node, self.ns.attrs(path, node), change, upload_pending=pending)

    # ---- open files -----------------------------------------------------------------------------

    async def create(
        self, parent_inode: int, name: str, mode: int, flags: int, uid: int, gid: int, umask: int = 0
    ) -> tuple[int, Entry]:
        return await self.files.create(parent_inode, name, mode, flags, uid, gid, umask)

    def direct_io(self, fh: int) -> bool:
        return self.files.direct_io(fh)

    async def open(self, inode: int, flags: int) -> OpenedFile:
        return await self.files.open(inode, flags)

    async def read(self, fh: int, offset: int, length: int) -> bytes | memoryview:
        return await self.files.read(fh, offset, length)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        return await self.files.write(fh, offset, data)

    async def flush(self, fh: int) -> None:
        await self.files.flush(fh)

    async def fsync(self, fh: int) -> None:
        await self.files.flush(fh, sync=True)

    async def release(self, fh: int) -> None:
        await self.files.release(fh)

    def open_handle_count(self) -> int:
        return self.files.count()
