"""Prefetching reads of clean (not locally modified) objects.

Shape (performance.md §3.1 and §7.6): each reader keeps a few *streams* (cursors). A read that
continues a stream exactly (offset == where the last one ended) doubles that stream's read-ahead
window, from `initial_window` up to `max_window`; a read that no stream covers starts a fresh stream
with the initial window (a random read resets). Data arrives by ranged GETs of at most `chunk_size`
bytes into preallocated buffers, started in the mount's nursery so several are in flight, and FUSE
reads are answered with `memoryview` slices of those buffers: no thread hop and no copy per READ.

The window is refilled only when less than half of it remains ahead of the reader, so each GET is
at least half a window large rather than one small GET per FUSE READ.

Memory is bounded by one `PrefetchBudget` shared by every reader of the mount: read-ahead beyond the
bytes a caller is waiting for is skipped when the budget is spent. The bytes a caller actually asked
for are always fetched (at most one FUSE request, ≤1 MiB, over the budget per reader).

All state here is touched only from trio tasks on the one event-loop thread, so the synchronous
sections between awaits are atomic; no locks are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

from ossmount.store.types import StoreError

MiB = 1024 * 1024

FetchInto = Callable[[int, memoryview], Awaitable[int]]


@dataclass(frozen=True)
class ReadaheadConfig:
    initial_window: int = 1 * MiB + 128 * 1024  # the extra 128 KiB absorbs Linux's own readahead
    max_window: int = 32 * MiB
    chunk_size: int = 8 * MiB
    keep_behind: int = 1 * MiB  # already-read data kept for reordered kernel reads
    max_streams: int = 4


class PrefetchBudget:
    """A byte count shared by all readers of a mount, capping memory held in prefetch buffers."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def try_reserve(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def force_reserve(self, size: int) -> None:
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


@dataclass
class IoCounters:
    """Mutable counters shared by a ContentManager and everything it creates."""

    bytes_read: int = 0  # returned to callers
    bytes_written: int = 0  # accepted from callers
    bytes_fetched: int = 0  # downloaded from the store
    bytes_uploaded: int = 0
    puts: int = 0
    parts_uploaded: int = 0
    parts_copied: int = 0  # UploadPartCopy of unchanged parts of the old object
    multipart_uploads: int = 0
    upload_failures: int = 0
    prefetch_hits: int = 0  # reads answered from buffers already filled
    prefetch_misses: int = 0  # reads that had to wait for a GET


class _Chunk:
    __slots__ = ("offset", "buffer", "filled", "done", "error")

    def __init__(self, offset: int, length: int):
        self.offset = offset
        self.buffer = bytearray(length)
        self.filled = 0
        self.done = trio.Event()
        self.error: BaseException | None = None

    @property
    def end(self) -> int:
        return self.offset + len(self.buffer)


class _Stream:
    __slots__ = ("chunks", "next_offset", "window", "start")

    def __init__(self, offset: int, window: int):
        self.chunks: list[_Chunk] = []
        self.start = offset
        self.next_offset = offset
        self.window = window

    @property
    def fetched_end(self) -> int:
        return self.chunks[-1].end if self.chunks else self.next_offset

    def covers(self, offset: int) -> bool:
        first = self.chunks[0].offset if self.chunks else self.next_offset
        return first <= offset < self.fetched_end or offset == self.next_offset


class ObjectReader:
    """Sequential-detecting, prefetching reader of one object's bytes (see module docstring)."""

    def __init__(
        self,
        *,
        fetch_into: FetchInto,
        size: int,
        nursery: trio.Nursery,
        budget: PrefetchBudget,
        counters: IoCounters,
        config: ReadaheadConfig = ReadaheadConfig(),
    ):
        self._fetch_into = fetch_into
        self.size = size
        self._nursery = nursery
        self._budget = budget
        self._counters = counters
        self._config = config
        self._streams: list[_Stream] = []  # least recently used first

    async def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to `length` bytes at `offset`; short (or empty) only at the end of the object."""
        if offset >= self.size or length <= 0:
            return b""
        end = min(offset + length, self.size)
        stream = self._find_stream(offset)
        if stream is None:
            stream = self._new_stream(offset)
        elif offset == stream.next_offset and offset > stream.start:
            stream.window = min(stream.window * 2, self._config.max_window)
        self._extend(stream, demand_end=end)
        try:
            data = await self._serve(stream, offset, end)
        except BaseException:
            self._drop_stream(stream)
            raise
        stream.next_offset = max(stream.next_offset, offset + len(data))
        self._trim(stream)
        self._counters.bytes_read += len(data)
        return data

    def invalidate(self, size: int | None = None) -> None:
        """Forget every buffer (the object changed or became locally dirty)."""
        for stream in list(self._streams):
            self._drop_stream(stream)
        if size is not None:
            self.size = size

    def _find_stream(self, offset: int) -> _Stream | None:
        for index in range(len(self._streams) - 1, -1, -1):
            stream = self._streams[index]
            if stream.covers(offset):
                del self._streams[index]
                self._streams.append(stream)
                return stream
        return None

    def _new_stream(self, offset: int) -> _Stream:
        while len(self._streams) >= self._config.max_streams:
            self._drop_stream(self._streams[0])
        stream = _Stream(offset, self._config.initial_window)
        self._streams.append(stream)
        return stream

    def _drop_stream(self, stream: _Stream) -> None:
        for chunk in stream.chunks:
            self._budget.release(len(chunk.buffer))
        stream.chunks.clear()
        if stream in self._streams:
            self._streams.remove(stream)

    def _extend(self, stream: _Stream, demand_end: int) -> None:
        """Start GETs so [.., demand_end) is covered, plus read-ahead when less than half a window is left."""
        fetched_end = stream.fetched_end
        target_end = fetched_end
        if fetched_end < demand_end:
            target_end = demand_end
        if target_end - demand_end < stream.window // 2:
            target_end = demand_end + stream.window
        target_end = min(target_end, self.size)
        offset = fetched_end
        while offset < target_end:
            chunk_end = min(offset + self._config.chunk_size, target_end)
            length = chunk_end - offset
            if not self._budget.try_reserve(length):
                if offset >= demand_end:
                    break
                # Over budget: fetch only what the caller waits for, no read-ahead in the same GET.
                chunk_end = min(chunk_end, demand_end)
                length = chunk_end - offset
                self._budget.force_reserve(length)
            chunk = _Chunk(offset, length)
            stream.chunks.append(chunk)
            self._nursery.start_soon(self._fetch, chunk)
            offset = chunk_end

    async def _fetch(self, chunk: _Chunk) -> None:
        try:
            chunk.filled = await self._fetch_into(chunk.offset, memoryview(chunk.buffer))
            self._counters.bytes_fetched += chunk.filled
        except Exception as exc:  # handed to the reader that waits for this chunk
            chunk.error = exc
        except BaseException:
            chunk.error = StoreError("read-ahead cancelled", code="Cancelled")
            raise
        finally:
            chunk.done.set()

    async def _serve(self, stream: _Stream, offset: int, end: int) -> bytes | memoryview:
        pieces: list[memoryview] = []
        waited = False
        cursor = offset
        for chunk in list(stream.chunks):
            if chunk.end <= cursor:
                continue
            if chunk.offset >= end:
                break
            if not chunk.done.is_set():
                waited = True
                await chunk.done.wait()
            if chunk.error is not None:
                raise chunk.error
            available_end = chunk.offset + chunk.filled
            piece_end = min(end, available_end)
            if piece_end > cursor:
                pieces.append(memoryview(chunk.buffer)[cursor - chunk.offset : piece_end - chunk.offset])
                cursor = piece_end
            if available_end < chunk.end or cursor >= end:
                break  # the object is shorter than we were told: a short read
        if waited:
            self._counters.prefetch_misses += 1
        else:
            self._counters.prefetch_hits += 1
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def _trim(self, stream: _Stream) -> None:
        keep_from = stream.next_offset - self._config.keep_behind
        while stream.chunks and stream.chunks[0].end <= keep_from and stream.chunks[0].done.is_set():
            chunk = stream.chunks.pop(0)
            self._budget.release(len(chunk.buffer))
