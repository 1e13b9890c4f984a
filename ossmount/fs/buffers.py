"""Reusable read buffers, and giving memory back to the OS.

Theory of operation
-------------------
* Prefetch chunks and random-read blocks need buffers from 4 KiB to a few MiB, allocated and freed at the
  rate of GETs. `bytearray(n)` zero-fills and comes from the glibc heap, where freed megabytes stay resident
  (fragmentation, one arena per worker thread): the mount held 335 MiB after eight readers stopped.
  `BufferPool` hands out anonymous `mmap` buffers instead: the kernel zero-fills them lazily (nothing is
  touched before a GET writes into it), a buffer given back is reused by the next `take` of its size class,
  and `trim` unmaps free buffers, which returns their pages to the OS at once.
* Buffers of 2 MiB and more (sequential chunks) ask for transparent huge pages (`MADV_HUGEPAGE`): a GET into a
  fresh 8 MiB buffer then takes 4 page faults instead of 2,048, and the kernel pins 4 pages instead of 256 per 1 MiB
  reply to a FUSE read; this cut the FUSE process's CPU per sequentially read MiB by about a fifth (kernel time of
  page faults, munmap and get_user_pages). Where THP is off the advice is ignored.
* Size classes: powers of two from 4 KiB to 1 MiB, then whole MiB. A class is what a buffer *holds*; the
  view handed out is exactly the size asked for.
* A buffer must not be reused while a memoryview of it is still being answered to the kernel. Every user
  here runs on the trio thread and pyfuse3 sends a read's reply synchronously after the handler returns, so a
  buffer given back after the last `await` that served from it is safe to reuse. Unmapping a buffer that
  still has exported views raises BufferError in `mmap.close`; such a buffer is dropped and freed by the
  garbage collector once the views are gone.
* `tune_malloc` (once per process, before worker threads start) caps glibc at two arenas and fixes the mmap
  threshold just above 1 MiB, so large temporary objects (HTTP bodies, listings) are unmapped when freed instead
  of being kept in a per-thread heap; `release_heap` calls `malloc_trim(0)` to return free heap pages after a
  burst of activity (the prefetch trimmer when reads stop, a streaming upload when it ends).
* Writes: pyfuse3 hands every FUSE WRITE request (1 MiB of data for a sequential writer) over as a new `bytes`,
  which a streaming upload keeps as it is until its part is uploaded. Were those 1 MiB + header allocations above
  the mmap threshold, each would be a fresh mapping the kernel zero-fills page by page (one page fault per 4 KiB
  written) and unmaps again when freed: a quarter of the mount's CPU in a sequential write. Below it they come
  from the heap, and a heap that is not trimmed while a stream runs (`TRIM_THRESHOLD`: the free space at its top
  may reach a few parts) reuses the space of uploaded parts for the next writes without a fault.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
PAGE = mmap.PAGESIZE
HUGE_PAGE = 2 * MiB  # x86-64/arm64 transparent huge page (PMD) size
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def size_class(size: int) -> int:
    """The capacity of the buffer that holds `size` bytes: a power of two (4 KiB..1 MiB) or whole MiB."""
    if size <= PAGE:
        return PAGE
    if size <= MiB:
        return 1 << (size - 1).bit_length()
    return -(-size // MiB) * MiB


class Buffer:
    """One pooled buffer: `view` is a writable memoryview of exactly the size asked for."""

    __slots__ = ("_map", "capacity", "view")

    def __init__(self, capacity: int):
        self._map = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE)
        if capacity >= HUGE_PAGE and _MADV_HUGEPAGE is not None:
            try:
                self._map.madvise(_MADV_HUGEPAGE)
            except OSError:
                pass
        self.capacity = capacity
        self.view = memoryview(self._map)

    def _resize_view(self, size: int) -> None:
        self.view = memoryview(self._map)[:size]

    def cut(self, size: int) -> None:
        """Shorten the view to its first `size` bytes (a GET filled less than asked: the object's end)."""
        self._resize_view(min(size, len(self.view)))

    def _unmap(self) -> None:
        self.view = None  # type: ignore[assignment]
        try:
            self._map.close()
        except BufferError:  # a slice is still alive somewhere; the GC unmaps it when it goes
            pass


class BufferPool:
    """Buffers by size class, reused after `give`; `trim` unmaps the free ones (see the module docstring).

    At most `keep_free` bytes of free buffers are kept for reuse; a buffer given back beyond that is unmapped
    at once."""

    def __init__(self, keep_free: int = 16 * MiB) -> None:
        self.keep_free = keep_free
        self._free: dict[int, list[Buffer]] = {}
        self.free_bytes = 0  # capacity of the buffers waiting in free lists
        self.taken_bytes = 0  # capacity of the buffers handed out
        self.takes = 0  # every take(), for the idle test of the trimmer

    def take(self, size: int) -> Buffer:
        capacity = size_class(size)
        free = self._free.get(capacity)
        if free:
            buffer = free.pop()
            self.free_bytes -= capacity
        else:
            buffer = Buffer(capacity)
        buffer._resize_view(size)
        self.taken_bytes += capacity
        self.takes += 1
        return buffer

    def give(self, buffer: Buffer) -> None:
        self.taken_bytes -= buffer.capacity
        if self.free_bytes + buffer.capacity > self.keep_free:
            buffer._unmap()
            return
        self._free.setdefault(buffer.capacity, []).append(buffer)
        self.free_bytes += buffer.capacity

    def trim(self, keep: int = 0) -> int:
        """Unmap free buffers until at most `keep` bytes of them are left; returns the bytes released."""
        released = 0
        for capacity in sorted(self._free, reverse=True):
            free = self._free[capacity]
            while free and self.free_bytes > keep:
                free.pop()._unmap()
                self.free_bytes -= capacity
                released += capacity
        return released


_libc = None


def _c_library():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    return _libc or None


MMAP_THRESHOLD = MiB + 64 * KiB  # just above a 1 MiB FUSE write request's `bytes` (see the module docstring)
TRIM_THRESHOLD = 64 * MiB  # free heap top kept while streams run; release_heap() returns it when they end


def tune_malloc(*, arenas: int = 2, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Cap glibc's arenas and fix its mmap and trim thresholds (bytes; see the module docstring); False where not
    glibc."""
    libc = _c_library()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and ok
    ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and ok
    return ok


def release_heap() -> None:
    """Return free glibc heap pages to the OS (`malloc_trim(0)`); a no-op where not glibc."""
    libc = _c_library()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
