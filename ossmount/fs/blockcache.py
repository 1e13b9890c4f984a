"""The on-disk block cache of `use_cache=DIR` (ossfs option names; issue 11 "A local read cache").

Theory of operation
-------------------
* Objects are cut into blocks of `block_size` bytes (1 MiB) on a fixed grid; the last block of an object is
  shorter. A block is one file, `DIR/.ossmount-blocks/<id[:2]>/<id>/<index>`, where `id` is the SHA-256 of
  (bucket, key, ETag, version id, size): a changed object (new ETag) has a new id, so it never serves
  blocks of an older version; the old version's blocks age out of the LRU.
* `fetch(object_id, offset, view, progress, remote)` is the prefetcher's fetch function (reader.py):
  [offset, offset+len(view)) is served block by block, in order, from disk where the block is cached and
  through `remote` (one ranged GET per run of missing blocks) where not. Only whole blocks (or an object's
  whole last block) are stored: a read of part of a block (a small random read) is fetched as asked and not
  cached, so the cache never makes a random read fetch more than it needs.
* A block is written to a temporary name and renamed into place, and read back only if its length is the
  one expected, so a crash or a second mount on the same directory never serves a torn block.
* The cache is bounded by `max_size` bytes (`max_cache_size=`, MiB) and keeps `min_free` bytes of its
  filesystem free (`ensure_diskfree=` / `free_space_mb=`, MiB): after each store the least recently used
  blocks are deleted until both hold. The LRU order lives in memory; at mount it is rebuilt from the block
  files' mtimes (a hit does not touch the disk to record its use).
* `del_cache` empties the cache directory when the mount starts and when it ends (`clear`).

Disk I/O runs in worker threads (`trio.to_thread`), one hop per run of blocks, never per FUSE read. All
bookkeeping runs on the trio thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections import OrderedDict
from typing import Awaitable, Callable

import trio

log = logging.getLogger(__name__)

MiB = 1024 * 1024
BLOCK_SIZE = 1 * MiB
SUBDIR = ".ossmount-blocks"

Progress = Callable[[int], None]
RemoteFetch = Callable[[int, memoryview, Progress], Awaitable[int]]
_BlockId = tuple[str, int]  # (object id, block index)


class BlockCache:
    """One mount's block cache in `root/.ossmount-blocks` (see the module docstring)."""

    def __init__(self, root: str, *, bucket: str = "", max_size: int | None = None, min_free: int = 0,
                 block_size: int = BLOCK_SIZE):
        self.root = os.path.join(root, SUBDIR)
        self.bucket = bucket
        self.max_size = max_size  # bytes; None: bounded by min_free only
        self.min_free = min_free  # bytes
        self.block_size = block_size
        self._lru: OrderedDict[_BlockId, int] = OrderedDict()  # block -> its length, oldest first
        self.used = 0  # bytes in blocks the LRU knows
        self.hits = 0  # blocks served from disk
        self.stores = 0  # blocks written
        self.evictions = 0  # blocks deleted to keep the bounds
        self._fits = True  # whether the last _evict made room for what was coming
        self._pending = 0  # bytes being written (counted in `used`, not yet on disk, not in the LRU)

    # -- lifetime ------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Create the directory and rebuild the LRU from the blocks already there (blocking; at mount)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)  # object data: for the mounting user only
        found: list[tuple[float, _BlockId, int]] = []
        for prefix in os.scandir(self.root):
            if not prefix.is_dir(follow_symlinks=False):
                continue
            for obj in os.scandir(prefix.path):
                if not obj.is_dir(follow_symlinks=False):
                    continue
                for block in os.scandir(obj.path):
                    if not block.name.isdigit():  # a temporary file left by a crash
                        _unlink(block.path)
                        continue
                    stat = block.stat(follow_symlinks=False)
                    found.append((stat.st_mtime, (obj.name, int(block.name)), stat.st_size))
        found.sort()
        for _, block_id, length in found:
            self._lru[block_id] = length
            self.used += length
        _unlink_all(self._evict())

    def clear(self) -> None:
        """Delete every cached block (`del_cache`, at mount and unmount; blocking)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._lru.clear()
        self.used = 0

    # -- reading ---------------------------------------------------------------------------------------------
    def object_id(self, key: str, etag: str, version_id: str | None, size: int) -> tuple[str, int]:
        """The cache identity of one object version: (hex id, size)."""
        name = "\0".join([self.bucket, key, etag, version_id or "", str(size)])
        return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest(), size

    async def fetch(self, object_id: tuple[str, int], offset: int, view: memoryview, progress: Progress,
                    *, remote: RemoteFetch) -> int:
        """Fill `view` with the object's bytes from `offset` (short only at the object's end), from cached
        blocks and `remote` for the rest; stores the whole blocks fetched. Returns the bytes filled."""
        ident, size = object_id
        end = min(offset + len(view), size)
        filled = 0
        for run_start, run_end, cached in self._runs(ident, offset, end):
            piece = view[run_start - offset: run_end - offset]
            if cached:
                count = await trio.to_thread.run_sync(self._read_blocks, ident, size, run_start, piece)
                if count < len(piece):  # evicted or damaged under us: the rest of the run from the server
                    self._forget_from(ident, run_start + count, run_end)
                    count += await remote(run_start + count, piece[count:],
                                          lambda n, base=filled + count: progress(base + n))
                else:
                    self.hits += -(-len(piece) // self.block_size)
            else:
                count = await remote(run_start, piece, lambda n, base=filled: progress(base + n))
                await self._store(ident, size, run_start, piece[:count])
            filled += count
            progress(filled)
            if count < len(piece):
                break
        return filled

    def _block_length(self, index: int, size: int) -> int:
        return min(self.block_size, size - index * self.block_size)

    def _runs(self, ident: str, start: int, end: int) -> list[tuple[int, int, bool]]:
        """[start, end) as (start, end, cached) runs, block by block (marks the cached blocks as just used)."""
        runs: list[tuple[int, int, bool]] = []
        step = self.block_size
        cursor = start
        while cursor < end:
            index = cursor // step
            piece_end = min((index + 1) * step, end)
            cached = (ident, index) in self._lru
            if cached:
                self._lru.move_to_end((ident, index))
            if runs and runs[-1][2] == cached:
                runs[-1] = (runs[-1][0], piece_end, cached)
            else:
                runs.append((cursor, piece_end, cached))
            cursor = piece_end
        return runs

    def _path(self, ident: str, index: int | None = None) -> str:
        directory = os.path.join(self.root, ident[:2], ident)
        return directory if index is None else os.path.join(directory, str(index))

    def _read_blocks(self, ident: str, size: int, start: int, piece: memoryview) -> int:
        """Copy cached bytes into `piece` (worker thread); stops at the first block missing or of the wrong
        length. Returns the bytes copied."""
        step = self.block_size
        done = 0
        while done < len(piece):
            offset = start + done
            index, within = divmod(offset, step)
            length = self._block_length(index, size)
            want = min(len(piece) - done, step - within)
            try:
                with open(self._path(ident, index), "rb", buffering=0) as file:
                    if os.fstat(file.fileno()).st_size != length:
                        return done
                    got = os.preadv(file.fileno(), [piece[done: done + want]], within)
            except OSError:
                return done
            if got < want:
                return done + got
            done += want
        return done

    def _forget_from(self, ident: str, start: int, end: int) -> None:
        for index in range(start // self.block_size, -(-end // self.block_size)):
            length = self._lru.pop((ident, index), None)
            if length is not None:
                self.used -= length

    # -- storing and evicting --------------------------------------------------------------------------------
    async def _store(self, ident: str, size: int, start: int, data: memoryview) -> None:
        """Write the whole blocks of [start, start+len(data)) that are not cached yet, then keep the bounds."""
        step = self.block_size
        blocks = []
        first = -(-start // step)
        index = first
        while True:
            length = self._block_length(index, size)
            block_start = index * step
            if length <= 0 or block_start + length > start + len(data):
                break
            if (ident, index) not in self._lru:
                blocks.append((index, data[block_start - start: block_start - start + length]))
            index += 1
        if self.max_size is not None:  # a run larger than the whole cache: its first blocks only
            room = self.max_size
            blocks = [block for block in blocks if (room := room - len(block[1])) >= 0]
        if not blocks:
            return
        incoming = sum(len(data) for _, data in blocks)
        # Room first (the bounds hold at every moment), then the new blocks.
        self.used += incoming
        doomed = self._evict(self._pending + incoming)
        if not self._fits:  # the disk is short of ensure_diskfree even with the cache empty: store nothing
            blocks = []
        self._pending += incoming
        try:
            stored = await trio.to_thread.run_sync(self._write_and_unlink, ident, blocks, doomed)
        except OSError as exc:  # a full or failing cache disk costs speed, never a read
            log.warning("use_cache: cannot store blocks in %s: %s", self.root, exc)
            stored = []
        finally:
            self._pending -= incoming
            self.used -= incoming
        for index, length in stored:
            if (ident, index) not in self._lru:
                self._lru[(ident, index)] = length
                self.used += length
                self.stores += 1

    def _write_and_unlink(self, ident: str, blocks: list[tuple[int, memoryview]],
                          doomed: list[str]) -> list[tuple[int, int]]:
        _unlink_all(doomed)
        return self._write_blocks(ident, blocks)

    def _write_blocks(self, ident: str, blocks: list[tuple[int, memoryview]]) -> list[tuple[int, int]]:
        if not blocks:
            return []
        directory = self._path(ident)
        os.makedirs(directory, exist_ok=True)
        stored = []
        for index, data in blocks:
            path = os.path.join(directory, str(index))
            temporary = f"{path}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(temporary, path)
            stored.append((index, len(data)))
        return stored

    def _evict(self, incoming: int = 0) -> list[str]:
        """Drop least recently used blocks from the LRU until the bounds hold with `incoming` more bytes about
        to be written (counted in `used` already, but not yet on the disk statvfs sees); returns their files,
        for the caller to delete."""
        doomed: list[str] = []
        shortfall = self._free_shortfall() + incoming if self.min_free else 0
        while self._lru and ((self.max_size is not None and self.used > self.max_size) or shortfall > 0):
            (ident, index), length = self._lru.popitem(last=False)
            self.used -= length
            shortfall -= length
            self.evictions += 1
            doomed.append(self._path(ident, index))
        self._fits = shortfall <= 0
        return doomed

    def _free_shortfall(self) -> int:
        if not self.min_free:
            return 0
        try:
            stat = os.statvfs(self.root)
        except OSError:
            return 0
        return self.min_free - stat.f_bavail * stat.f_frsize


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        _unlink(path)
        try:
            os.rmdir(os.path.dirname(path))  # the object's last block: its directory goes too
        except OSError:
            pass
