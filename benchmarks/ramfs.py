"""A trivial pyfuse3 filesystem holding everything in RAM: the FUSE ceiling the benchmark measures ossmount against.

    python benchmarks/ramfs.py MOUNTPOINT [--file NAME:SIZE]...

Files given with --file exist at start with pseudo-random contents; everything else (create, write, mkdir,
unlink, readdir) works in memory. Reads are served as memoryview slices, no thread hop, no network: what a Python
FUSE filesystem can do on this machine at best (with the glibc malloc settings ossmount uses). Runs in the foreground until unmounted.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
import time
from pathlib import Path

import pyfuse3
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ossmount.fs.buffers import tune_malloc  # noqa: E402  (the same glibc malloc settings as the mount)

TTL = 60.0


class Node:
    def __init__(self, inode: int, mode: int):
        self.inode = inode
        self.mode = mode
        self.data = bytearray()
        self.children: dict[bytes, int] = {}
        now = time.time_ns()
        self.mtime = now
        self.nlink = 2 if stat.S_ISDIR(mode) else 1


class RamFs(pyfuse3.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.nodes = {pyfuse3.ROOT_INODE: Node(pyfuse3.ROOT_INODE, stat.S_IFDIR | 0o755)}
        self.next_inode = pyfuse3.ROOT_INODE + 1

    def add_file(self, name: str, size: int) -> None:
        node = self._new(stat.S_IFREG | 0o644)
        block = os.urandom(1 << 20)
        node.data = bytearray(block * (size >> 20) + block[: size & ((1 << 20) - 1)])
        self.nodes[pyfuse3.ROOT_INODE].children[name.encode()] = node.inode

    def _new(self, mode: int) -> Node:
        node = Node(self.next_inode, mode)
        self.nodes[node.inode] = node
        self.next_inode += 1
        return node

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = node.inode
        attrs.st_mode = node.mode
        attrs.st_nlink = node.nlink
        attrs.st_size = len(node.data)
        attrs.st_blksize = 1 << 20
        attrs.st_blocks = (len(node.data) + 511) // 512
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = node.mtime
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        attrs.entry_timeout = attrs.attr_timeout = TTL
        return attrs

    async def getattr(self, inode, ctx=None):
        return self._attrs(self.nodes[inode])

    async def lookup(self, parent_inode, name, ctx=None):
        child = self.nodes[parent_inode].children.get(name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(self.nodes[child])

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start_id, token):
        entries = sorted(self.nodes[fh].children.items())
        for index, (name, inode) in enumerate(entries[start_id:], start=start_id):
            if not pyfuse3.readdir_reply(token, name, self._attrs(self.nodes[inode]), index + 1):
                return

    async def open(self, inode, flags, ctx):
        if flags & os.O_TRUNC:
            self.nodes[inode].data = bytearray()
        return pyfuse3.FileInfo(fh=inode, keep_cache=False)

    async def create(self, parent_inode, name, mode, flags, ctx):
        node = self._new(stat.S_IFREG | (mode & 0o7777))
        self.nodes[parent_inode].children[name] = node.inode
        return pyfuse3.FileInfo(fh=node.inode, keep_cache=False), self._attrs(node)

    async def mkdir(self, parent_inode, name, mode, ctx):
        node = self._new(stat.S_IFDIR | (mode & 0o7777))
        self.nodes[parent_inode].children[name] = node.inode
        return self._attrs(node)

    async def read(self, fh, off, size):
        return memoryview(self.nodes[fh].data)[off:off + size]

    async def write(self, fh, off, buf):
        data = self.nodes[fh].data
        if off > len(data):
            data.extend(bytes(off - len(data)))
        data[off:off + len(buf)] = buf
        return len(buf)

    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self.nodes[inode]
        if fields.update_size:
            del node.data[attr.st_size:]
            node.data.extend(bytes(attr.st_size - len(node.data)))
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | (attr.st_mode & 0o7777)
        return self._attrs(node)

    async def unlink(self, parent_inode, name, ctx):
        inode = self.nodes[parent_inode].children.pop(name, None)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        self.nodes.pop(inode, None)

    async def rmdir(self, parent_inode, name, ctx):
        await self.unlink(parent_inode, name, ctx)

    async def flush(self, fh):
        pass

    async def fsync(self, fh, datasync):
        pass

    async def release(self, fh):
        pass

    async def releasedir(self, fh):
        pass

    async def statfs(self, ctx):
        result = pyfuse3.StatvfsData()
        result.f_bsize = result.f_frsize = 4096
        result.f_blocks = result.f_bfree = result.f_bavail = 1 << 30
        result.f_files = result.f_ffree = result.f_favail = 1 << 20
        result.f_namemax = 255
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mountpoint")
    parser.add_argument("--file", action="append", default=[], metavar="NAME:SIZE")
    args = parser.parse_args()
    tune_malloc()  # as ossmount does: without it every 1 MiB FUSE write is a fresh mmap, faulted in page by page
    fs = RamFs()
    for spec in args.file:
        name, _, size = spec.rpartition(":")
        fs.add_file(name, int(size))
    pyfuse3.init(fs, args.mountpoint, {"fsname=ramfs", "subtype=ramfs", "default_permissions"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
