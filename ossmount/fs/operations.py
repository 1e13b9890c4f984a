"""The pyfuse3 glue: unpack each request, make one `Filesystem` call, answer in pyfuse3 types.

Every handler goes through `_fuse_errors`, the one place an exception becomes `FUSEError`: pyfuse3
ends the whole filesystem if anything else escapes a handler. It also runs each handler as one operation whose
requests share the store's deadline (store/retry.py `operation_deadline`).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from typing import Any

import pyfuse3

from ossmount.fs import wtf8
from ossmount.fs.errors import FsError, errno_for
from ossmount.fs.filesystem import Entry, Filesystem
from ossmount.ops.accounting import FuseCalls
from ossmount.store.retry import operation_deadline

log = logging.getLogger(__name__)


def _fuse_errors(method):
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        with self.calls.serving(name, args, kwargs) as call:  # whom the OSS requests are charged to; timing
            try:
                with operation_deadline(self.deadline):  # the operation's failure budget (store/retry.py rule 6)
                    return call.result(await method(self, *args, **kwargs))
            except pyfuse3.FUSEError:
                raise
            except Exception as exc:  # noqa: BLE001 - the single conversion point
                code = errno_for(exc, operation=name)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s%r -> %s (%s)", name, args, errno.errorcode.get(code, code), exc)
                raise pyfuse3.FUSEError(code) from None

    return wrapper


def _attributes(inode: int, attrs: Any, timeout: float, entry_timeout: float | None = None) -> pyfuse3.EntryAttributes:
    """`timeout`: the attribute timeout; `entry_timeout` the lookup's (default: the same)."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = inode
    entry.generation = 0
    entry.entry_timeout = timeout if entry_timeout is None else entry_timeout
    entry.attr_timeout = timeout
    entry.st_mode = attrs.mode
    entry.st_nlink = 2 if (attrs.mode & 0o170000) == 0o040000 else 1
    entry.st_uid = attrs.uid
    entry.st_gid = attrs.gid
    entry.st_rdev = attrs.rdev
    entry.st_size = attrs.size
    entry.st_blksize = 4096
    entry.st_blocks = (attrs.size + 511) // 512
    entry.st_atime_ns = attrs.atime_ns
    entry.st_mtime_ns = attrs.mtime_ns
    entry.st_ctime_ns = attrs.ctime_ns
    return entry


def _negative_entry(timeout: float) -> pyfuse3.EntryAttributes:
    """A lookup answer that makes the kernel remember for `timeout` seconds that the name does not exist."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = 0
    entry.entry_timeout = timeout
    return entry


def _forget_cached_attributes(inode: int) -> None:
    """The kernel drops the attributes (size) it cached for `inode`; its next read past the old size asks
    getattr again. Attributes only, with writeback caching off: this never blocks, so an open handler may
    call it (pyfuse3 `invalidate_inode` docs)."""
    try:
        pyfuse3.invalidate_inode(inode, attr_only=True)
    except OSError as exc:  # ENOENT: the kernel no longer knows the inode; nothing to drop
        if exc.errno != errno.ENOENT:
            log.info("could not invalidate the cached attributes of inode %d: %s", inode, exc)


class Operations(pyfuse3.Operations):
    """pyfuse3 request handlers over a kernel-free `Filesystem`."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem, calls: FuseCalls | None = None):
        super().__init__()
        self.fs = fs
        self.calls = calls or FuseCalls()
        self.deadline = getattr(fs.store, "operation_deadline", None)
        use_wtf8 = fs.config.use_wtf8
        self._name_in = wtf8.name_from_kernel if use_wtf8 else os.fsdecode
        self._name_out = wtf8.name_to_kernel if use_wtf8 else os.fsencode
        fs.files.attrs_stale = _forget_cached_attributes

    def _name(self, name: bytes) -> str:
        return self._name_in(name)

    def _entry(self, entry: Entry) -> pyfuse3.EntryAttributes:
        # An entry answered with no caching (an unlinked file's) is not cached as a name either.
        entry_timeout = self.fs.kernel.entry if entry.timeout else 0.0
        return _attributes(entry.inode, entry.attrs, entry.timeout, entry_timeout)

    @_fuse_errors
    async def lookup(self, parent_inode, name, ctx=None):
        try:
            return self._entry(await self.fs.lookup(parent_inode, self._name(name)))
        except FsError as exc:
            if exc.errno == errno.ENOENT and self.fs.kernel.negative:
                return _negative_entry(self.fs.kernel.negative)
            raise

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.fs.forget(inode, count)

    @_fuse_errors
    async def getattr(self, inode, ctx=None):
        return self._entry(await self.fs.getattr(inode))

    @_fuse_errors
    async def setattr(self, inode, attr, fields, fh, ctx):
        entry = await self.fs.setattr(
            inode,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            fh=fh,
        )
        return self._entry(entry)

    @_fuse_errors
    async def readlink(self, inode, ctx):
        return os.fsencode(await self.fs.readlink(inode))

    @_fuse_errors
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        return self._entry(await self.fs.mknod(parent_inode, self._name(name), mode, rdev, ctx.uid, ctx.gid, ctx.umask))

    @_fuse_errors
    async def mkdir(self, parent_inode, name, mode, ctx):
        return self._entry(await self.fs.mkdir(parent_inode, self._name(name), mode, ctx.uid, ctx.gid, ctx.umask))

    @_fuse_errors
    async def unlink(self, parent_inode, name, ctx):
        await self.fs.unlink(parent_inode, self._name(name))

    @_fuse_errors
    async def rmdir(self, parent_inode, name, ctx):
        await self.fs.rmdir(parent_inode, self._name(name))

    @_fuse_errors
    async def symlink(self, parent_inode, name, target, ctx):
        return self._entry(await self.fs.symlink(parent_inode, self._name(name), os.fsdecode(target), ctx.uid, ctx.gid))

    @_fuse_errors
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        await self.fs.rename(parent_inode_old, self._name(name_old), parent_inode_new, self._name(name_new), flags)

    @_fuse_errors
    async def link(self, inode, new_parent_inode, new_name, ctx):
        return self._entry(await self.fs.link(inode, new_parent_inode, self._name(new_name)))

    @_fuse_errors
    async def open(self, inode, flags, ctx):
        opened = await self.fs.open(inode, flags)
        if opened.attrs_changed:
            _forget_cached_attributes(inode)
        return pyfuse3.FileInfo(fh=opened.fh, keep_cache=opened.keep_cache, direct_io=opened.direct_io)

    @_fuse_errors
    async def create(self, parent_inode, name, mode, flags, ctx):
        fh, entry = await self.fs.create(parent_inode, self._name(name), mode, flags, ctx.uid, ctx.gid, ctx.umask)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False, direct_io=self.fs.direct_io(fh)), self._entry(entry)

    @_fuse_errors
    async def read(self, fh, off, size):
        return await self.fs.read(fh, off, size)

    @_fuse_errors
    async def write(self, fh, off, buf):
        return await self.fs.write(fh, off, buf)

    @_fuse_errors
    async def flush(self, fh):
        await self.fs.flush(fh)

    @_fuse_errors
    async def fsync(self, fh, datasync):
        await self.fs.fsync(fh)

    @_fuse_errors
    async def release(self, fh):
        await self.fs.release(fh)

    @_fuse_errors
    async def opendir(self, inode, ctx):
        return await self.fs.opendir(inode)

    @_fuse_errors
    async def readdir(self, fh, start_id, token):
        fs = self.fs
        inodes = fs.inodes
        attr_timeout, entry_timeout = fs.timeout, fs.kernel.entry
        for entry in await fs.readdir(fh, start_id):
            if entry.dot_inode is not None:
                attributes = _attributes(entry.dot_inode, entry.attrs, attr_timeout)
                if not pyfuse3.readdir_reply(token, self._name_out(entry.name), attributes, entry.next_id):
                    break
                continue
            known = inodes.find(entry.path)
            inode = inodes.inode_for(entry.path) if known is None else known
            attributes = _attributes(inode, entry.attrs, attr_timeout, entry_timeout)
            if not pyfuse3.readdir_reply(token, self._name_out(entry.name), attributes, entry.next_id):
                if known is None:
                    fs.forget(inode, 0)
                break
            fs.remember(entry)

    @_fuse_errors
    async def releasedir(self, fh):
        self.fs.releasedir(fh)

    @_fuse_errors
    async def fsyncdir(self, fh, datasync):
        return None

    @_fuse_errors
    async def statfs(self, ctx):
        info = self.fs.statfs()
        result = pyfuse3.StatvfsData()
        result.f_bsize = info.block_size
        result.f_frsize = info.block_size
        result.f_blocks = info.blocks
        result.f_bfree = info.blocks_free
        result.f_bavail = info.blocks_free
        result.f_files = info.files
        result.f_ffree = info.files_free
        result.f_favail = info.files_free
        result.f_namemax = info.name_max
        return result

    @_fuse_errors
    async def setxattr(self, inode, name, value, ctx):
        await self.fs.setxattr(inode, os.fsdecode(name), value)

    @_fuse_errors
    async def getxattr(self, inode, name, ctx):
        return await self.fs.getxattr(inode, os.fsdecode(name))

    @_fuse_errors
    async def listxattr(self, inode, ctx):
        return [os.fsencode(n) for n in await self.fs.listxattr(inode)]

    @_fuse_errors
    async def removexattr(self, inode, name, ctx):
        await self.fs.removexattr(inode, os.fsdecode(name))
