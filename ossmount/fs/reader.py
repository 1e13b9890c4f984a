"""Prefetching reads of clean (not locally modified) objects, shared by every reader of one version.

Theory of operation (performance.md §3.1, §7.6)
----------------------------------------------
* One `ObjectReader` per content (one version of a key, see content.py): every handle that reads that
  version shares its *chunks* — byte ranges fetched by one ranged GET each into a pooled buffer
  (buffers.py), kept in one sorted, non-overlapping map. A byte some reader already fetched is served from
  memory to every other reader, so four readers of one file fetch each byte once.
* Streams are cursors over the map, not owners of data. A read that continues a stream (at its end, or
  ahead of it within what it asked for: the kernel skips pages it already holds) is sequential: its window
  doubles from `initial_window` up to `max_window`, and chunks of `chunk_size` (8 MiB ranged GETs) aligned
  on multiples of `chunk_size` are started so the window stays ahead of the reader; the window is refilled
  when less than half of it is left. A read that continues nothing starts a *candidate* stream with no
  window and fetches only the aligned block around it: `random_block(length)` bytes (the request rounded
  up to a power of two, 16 KiB..1 MiB, aligned to that size), so random 4 KiB reads fetch at most 16 KiB
  each. The next read at the candidate's end makes it sequential. A read at offset 0 is taken as the start
  of a sequential stream (whole small files in one GET; a sequential 64 MiB read in eight 8 MiB GETs).
* Readers are answered with `memoryview` slices of chunks (no copy, no thread hop per FUSE read). A reader
  waits only for the bytes it needs: the store reports progress while a GET is being read
  (`progress(filled)`), so the first bytes of an 8 MiB GET are answered before its end. Progress reported on the
  event loop's thread (the store's reads today) wakes the readers at once, with no trip through trio's entry queue.
* Memory (`ReadMemory`, one per mount): every chunk's buffer is reserved against one byte budget. Filled
  chunks sit in an LRU; when a new chunk needs room, the least recently used chunks that no live stream
  needs (behind every cursor by more than `keep_behind`, or belonging to a stream idle for
  `stream_idle` seconds) are evicted. A stream's window is capped at its fair share of the budget
  (budget / streams active in the last `stream_idle` seconds), so eight readers share it instead of the
  first one taking it all. Read-ahead that does not fit is skipped; the bytes a caller waits for are
  always fetched (then over budget by at most one request per reader).
* A chunk is freed (buffer back to the pool, budget released) only when it is out of the map, its GET has
  finished and no read holds it (`pins`): a read pins the chunks it serves from across its awaits, so a
  slice it returns is never of a recycled buffer.

All state is touched only from trio tasks on the event-loop thread (synchronous code between awaits is
atomic; no locks), except `_Chunk.progress`, which the store may call from any thread (today it reads on
the trio thread): it stores an int and runs `_wake` at once on the trio thread, or schedules it there from another.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

from ossmount.fs.buffers import PAGE, Buffer, BufferPool, size_class
from ossmount.store.types import StoreError

KiB = 1024
MiB = 1024 * KiB

Progress = Callable[[int], None]
FetchInto = Callable[[int, memoryview, Progress], Awaitable[int]]


@dataclass(frozen=True)
class ReadaheadConfig:
    initial_window: int = 8 * MiB  # a new sequential stream starts with one whole chunk
    max_window: int = 32 * MiB
    chunk_size: int = 8 * MiB  # ranged GET size (and alignment) of sequential streams
    keep_behind: int = 1 * MiB  # data behind a cursor kept for reordered kernel reads
    max_streams: int = 8  # cursors per object version
    random_block_min: int = 16 * KiB
    random_block_max: int = 1 * MiB
    stream_idle: float = 2.0  # seconds without a read after which a stream no longer holds memory


class PrefetchBudget:
    """A byte count capping memory held in buffers (the write side's stream buffers, content.py); reads use
    `ReadMemory` below."""

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


def random_block(length: int, config: ReadaheadConfig) -> int:
    """The alignment and minimum size of a random read's fetch: `length` rounded up to a power of two,
    within [random_block_min, random_block_max]."""
    size = 1 << max(length - 1, 1).bit_length()
    return max(config.random_block_min, min(size, config.random_block_max))


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
    prefetch_hits: int = 0  # reads answered from chunks already filled
    prefetch_misses: int = 0  # reads that had to wait for a fetch
    sequential_fetches: int = 0  # chunks fetched for sequential streams
    random_fetches: int = 0  # blocks fetched for random reads
    chunks_evicted: int = 0  # filled chunks dropped to make room (LRU)


class _Chunk:
    __slots__ = ("reader", "offset", "length", "buffer", "filled", "done", "error", "pins", "dropped",
                 "_hint", "_want", "_wake_pending", "_event", "_token", "_thread")

    def __init__(self, reader: "ObjectReader", offset: int, buffer: Buffer):
        self.reader = reader
        self.offset = offset
        self.length = len(buffer.view)
        self.buffer: Buffer | None = buffer
        self.filled = 0
        self.done = False
        self.error: BaseException | None = None
        self.pins = 0
        self.dropped = False
        self._hint = 0
        self._want = 0
        self._wake_pending = False
        self._event = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()  # the event loop's

    @property
    def end(self) -> int:
        return self.offset + self.length

    def progress(self, filled: int) -> None:
        """Called by the store (any thread) as the GET fills the buffer: wake readers waiting for it."""
        self._hint = filled
        want = self._want
        if want and filled >= want and not self._wake_pending:
            if threading.get_ident() == self._thread:  # a task of the event loop: wake the readers now
                self._wake()
                return
            self._wake_pending = True
            try:
                self._token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        self._wake_pending = False
        self.filled = max(self.filled, self._hint)
        self._want = 0
        event, self._event = self._event, trio.Event()
        event.set()

    def _finish(self, filled: int, error: BaseException | None) -> None:
        self.filled = filled if error is None else max(self.filled, self._hint)
        self.error = error
        self.done = True
        self._event.set()

    async def wait_for(self, count: int) -> None:
        """Until `count` bytes from `offset` are filled, or the fetch ended (short, or with an error)."""
        while not self.done:
            if self._hint > self.filled:
                self.filled = self._hint
            if self.filled >= count:
                return
            self._want = count if not self._want else min(self._want, count)
            if self._hint >= count:  # the worker passed before it could see _want
                continue
            await self._event.wait()


class _Stream:
    __slots__ = ("next_offset", "ahead_end", "window", "last_used")

    def __init__(self, offset: int, window: int, now: float):
        self.next_offset = offset  # where a continuing read starts
        self.ahead_end = offset  # end of what this stream asked to be fetched
        self.window = window  # 0: a candidate (one random read so far)
        self.last_used = now


class ReadMemory:
    """Prefetch memory of one mount: the byte budget, the buffer pool and the LRU of filled chunks."""

    def __init__(self, limit: int, pool: BufferPool | None = None, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.used = 0  # capacity of every chunk buffer not yet given back
        self.pool = pool or BufferPool()
        self.clock = clock
        self._lru: OrderedDict[_Chunk, None] = OrderedDict()  # filled chunks in the map, oldest first
        self._streams: dict[_Stream, "ObjectReader"] = {}

    # -- chunks ----------------------------------------------------------------------------------------
    def allocate(self, size: int, *, force: bool) -> Buffer | None:
        """A buffer of `size` bytes within the budget (evicting unneeded chunks), None if it does not fit
        unless `force` (the bytes a caller waits for)."""
        capacity = size_class(size)
        if self.used + capacity > self.limit and not self._make_room(capacity) and not force:
            return None
        self.used += capacity
        return self.pool.take(size)

    def _make_room(self, capacity: int) -> bool:
        """Evict least recently used chunks no stream needs until `capacity` more bytes fit."""
        now = self.clock()
        for chunk in list(self._lru):
            if self.used + capacity <= self.limit:
                break
            if chunk.pins or chunk.reader._needed(chunk, now):
                continue
            chunk.reader._remove(chunk)
            chunk.reader._counters.chunks_evicted += 1
        return self.used + capacity <= self.limit

    def filled(self, chunk: _Chunk) -> None:
        self._lru[chunk] = None

    def touch(self, chunk: _Chunk) -> None:
        if chunk in self._lru:
            self._lru.move_to_end(chunk)

    def forget(self, chunk: _Chunk) -> None:
        self._lru.pop(chunk, None)

    def evict_idle(self) -> int:
        """Drop every filled chunk no read holds and no active stream needs; returns how many."""
        now = self.clock()
        evicted = 0
        for chunk in list(self._lru):
            if not chunk.pins and not chunk.reader._needed(chunk, now):
                chunk.reader._remove(chunk)
                evicted += 1
        return evicted

    def free(self, chunk: _Chunk) -> None:
        buffer, chunk.buffer = chunk.buffer, None
        if buffer is not None:
            self.give_back(buffer)

    def give_back(self, buffer: Buffer) -> None:
        """A buffer from `allocate` that no chunk holds."""
        self.used -= buffer.capacity
        self.pool.give(buffer)

    # -- streams ---------------------------------------------------------------------------------------
    def register(self, stream: _Stream, reader: "ObjectReader") -> None:
        self._streams[stream] = reader

    def unregister(self, stream: _Stream) -> None:
        self._streams.pop(stream, None)

    def fair_share(self, now: float, idle: float) -> int:
        active = sum(1 for stream in self._streams if stream.window and now - stream.last_used < idle)
        return self.limit // max(active, 1)


class ObjectReader:
    """The shared, prefetching reader of one object version (see the module docstring)."""

    def __init__(
        self,
        *,
        fetch_into: FetchInto,
        size: int,
        nursery: trio.Nursery,
        memory: ReadMemory,
        counters: IoCounters,
        config: ReadaheadConfig = ReadaheadConfig(),
    ):
        self._fetch_into = fetch_into
        self.size = size
        self._nursery = nursery
        self._memory = memory
        self._counters = counters
        self._config = config
        self._starts: list[int] = []  # chunk offsets, sorted
        self._chunks: list[_Chunk] = []  # the chunk map, parallel to _starts
        self._streams: list[_Stream] = []  # least recently used first

    # -- reading -----------------------------------------------------------------------------------------
    async def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to `length` bytes at `offset`; short (or empty) only at the end of the object."""
        if offset >= self.size or length <= 0:
            return b""
        end = min(offset + length, self.size)
        config = self._config
        now = self._memory.clock()
        stream = self._match_stream(offset)
        if stream is not None:
            if offset >= stream.next_offset:
                stream.window = (config.initial_window if not stream.window
                                 else min(stream.window * 2, config.max_window))
            stream.last_used = now
            self._streams.remove(stream)
            self._streams.append(stream)
        elif not self._covered(offset, end):
            stream = self._new_stream(offset if offset == 0 else end, config.initial_window if offset == 0 else 0,
                                      now)
        sequential = stream is not None and stream.window > 0
        self._fetch_gaps(offset, end, sequential=sequential)
        if sequential:
            self._read_ahead(stream, end, now)
            stream.ahead_end = max(stream.ahead_end, self._contiguous_end(offset))
        data = await self._serve(offset, end, sequential)
        if stream is not None:
            stream.next_offset = max(stream.next_offset, offset + len(data))
            stream.ahead_end = max(stream.ahead_end, stream.next_offset)
        self._counters.bytes_read += len(data)
        return data

    def adopt(self, offset: int, buffer: Buffer) -> bool:
        """Take a buffer from this mount's ReadMemory that already holds the bytes at `offset` (a GET made at open,
        content.py `fetch_start`) as a filled chunk. False (the caller keeps the buffer) when it is empty or
        overlaps a chunk of the map."""
        end = min(offset + len(buffer.view), self.size)
        if end <= offset or self._gaps(offset, end) != [(offset, end)]:
            return False
        buffer.cut(end - offset)
        chunk = _Chunk(self, offset, buffer)
        chunk._finish(chunk.length, None)
        index = bisect.bisect_left(self._starts, offset)
        self._starts.insert(index, offset)
        self._chunks.insert(index, chunk)
        self._memory.filled(chunk)
        return True

    def invalidate(self, size: int | None = None) -> None:
        """Forget every chunk and stream (the object changed, became locally dirty, or was closed)."""
        for chunk in list(self._chunks):
            self._remove(chunk)
        for stream in self._streams:
            self._memory.unregister(stream)
        self._streams.clear()
        if size is not None:
            self.size = size

    # -- streams -----------------------------------------------------------------------------------------
    def _match_stream(self, offset: int) -> _Stream | None:
        best = None
        for stream in self._streams:
            if stream.window:
                if not stream.next_offset - self._config.keep_behind <= offset <= stream.ahead_end:
                    continue
            elif offset != stream.next_offset:
                continue
            if best is None or abs(offset - stream.next_offset) < abs(offset - best.next_offset):
                best = stream
        return best

    def _new_stream(self, offset: int, window: int, now: float) -> _Stream:
        while len(self._streams) >= self._config.max_streams:
            self._memory.unregister(self._streams.pop(0))
        stream = _Stream(offset, window, now)
        self._streams.append(stream)
        self._memory.register(stream, self)
        return stream

    def _needed(self, chunk: _Chunk, now: float) -> bool:
        """Whether a live stream still needs `chunk` (ahead of its cursor, or just behind it)."""
        idle = self._config.stream_idle
        for stream in self._streams:
            if (stream.window and now - stream.last_used < idle and chunk.offset < stream.ahead_end
                    and chunk.end > stream.next_offset - self._config.keep_behind):
                return True
        return False

    # -- the chunk map -------------------------------------------------------------------------------------
    def _index_at(self, offset: int) -> int:
        """Index of the chunk containing `offset`, or -1."""
        index = bisect.bisect_right(self._starts, offset) - 1
        if index >= 0 and offset < self._chunks[index].end:
            return index
        return -1

    def _covered(self, offset: int, end: int) -> bool:
        cursor = offset
        index = self._index_at(cursor)
        while index >= 0 and cursor < end:
            chunk = self._chunks[index]
            if chunk.offset > cursor:
                return False
            cursor = chunk.end
            index += 1
            if index >= len(self._chunks):
                break
        return cursor >= end

    def _gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """Ranges of [start, end) no chunk covers."""
        gaps = []
        cursor = start
        index = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while cursor < end and index < len(self._chunks):
            chunk = self._chunks[index]
            if chunk.end <= cursor:
                index += 1
                continue
            if chunk.offset >= end:
                break
            if chunk.offset > cursor:
                gaps.append((cursor, chunk.offset))
            cursor = chunk.end
            index += 1
        if cursor < end:
            gaps.append((cursor, end))
        return gaps

    def _next_start(self, offset: int) -> int:
        """Where the first chunk at or after `offset` starts (the object size if none)."""
        index = bisect.bisect_left(self._starts, offset)
        return self._starts[index] if index < len(self._starts) else self.size

    def _previous_end(self, offset: int) -> int:
        """Where the last chunk starting at or before `offset` ends (0 if none)."""
        index = bisect.bisect_right(self._starts, offset) - 1
        return self._chunks[index].end if index >= 0 else 0

    def _fetch_gaps(self, offset: int, end: int, *, sequential: bool) -> None:
        """Start fetches so that [offset, end) is covered: up to the next chunk boundary for a sequential
        stream, the aligned block around it for a random read (never overlapping the chunks around)."""
        step = self._config.chunk_size if sequential else random_block(end - offset, self._config)
        aligned_start = offset - offset % step
        aligned_end = min(-(-end // step) * step, self.size)
        for gap_start, gap_end in self._gaps(offset, end):
            high = max(min(aligned_end, self._next_start(gap_start)), gap_end)
            if sequential:
                self._start_sequential(gap_start, high, demand_end=gap_end)
            else:
                low = min(max(aligned_start, self._previous_end(gap_start)), gap_start)
                self._start(low, high, force=True, sequential=False, demand=(gap_start, gap_end))

    def _start_sequential(self, start: int, end: int, *, demand_end: int) -> None:
        step = self._config.chunk_size
        cursor = start
        while cursor < end:
            piece_end = min(cursor - cursor % step + step, end)
            chunk = self._start(cursor, piece_end, force=cursor < demand_end, sequential=True,
                                demand=(cursor, min(piece_end, demand_end)))
            if chunk is None:
                return
            cursor = chunk.end

    def _read_ahead(self, stream: _Stream, end: int, now: float) -> None:
        """Keep the stream's window (capped at its fair share of the budget) fetched ahead of `end`."""
        config = self._config
        window = min(stream.window, max(self._memory.fair_share(now, config.stream_idle), config.chunk_size))
        if end >= self.size or self._contiguous_end(end) - end >= window // 2:
            return
        step = config.chunk_size
        target = min(-(-(end + window) // step) * step, self.size)
        for gap_start, gap_end in self._gaps(end, target):
            cursor = gap_start
            while cursor < gap_end:
                chunk = self._start(cursor, min(cursor - cursor % step + step, gap_end), force=False,
                                    sequential=True, demand=None)
                if chunk is None:
                    return
                cursor = chunk.end

    def _contiguous_end(self, offset: int) -> int:
        """The end of the run of adjacent chunks that starts with the one containing `offset`."""
        cursor = offset
        index = self._index_at(cursor)
        while 0 <= index < len(self._chunks) and self._chunks[index].offset <= cursor:
            cursor = self._chunks[index].end
            index += 1
        return cursor

    def _start(self, start: int, end: int, *, force: bool, sequential: bool,
               demand: tuple[int, int] | None) -> _Chunk | None:
        """Allocate a chunk for [start, end) and start its fetch. Over budget: when `force`, shrink it to the
        page-aligned `demand` range and fetch that anyway; otherwise start nothing and return None."""
        buffer = self._memory.allocate(end - start, force=False)
        if buffer is None:
            if not force or demand is None:
                return None
            start = max(start, demand[0] - demand[0] % PAGE)
            end = min(end, -(-demand[1] // PAGE) * PAGE)
            buffer = self._memory.allocate(end - start, force=True)
        chunk = _Chunk(self, start, buffer)  # type: ignore[arg-type]
        index = bisect.bisect_left(self._starts, start)
        self._starts.insert(index, start)
        self._chunks.insert(index, chunk)
        if sequential:
            self._counters.sequential_fetches += 1
        else:
            self._counters.random_fetches += 1
        self._nursery.start_soon(self._fetch, chunk)
        return chunk

    async def _fetch(self, chunk: _Chunk) -> None:
        error: BaseException | None = None
        filled = 0
        try:
            filled = await self._fetch_into(chunk.offset, chunk.buffer.view, chunk.progress)  # type: ignore[union-attr]
            self._counters.bytes_fetched += filled
        except Exception as exc:  # handed to the readers waiting for this chunk
            error = exc
        except BaseException:
            error = StoreError("read-ahead cancelled", code="Cancelled")
            raise
        finally:
            chunk._finish(filled, error)
            if error is not None:
                self._remove(chunk)  # the next read fetches again
            elif chunk.dropped:
                self._release(chunk)
            else:
                self._memory.filled(chunk)

    def _remove(self, chunk: _Chunk) -> None:
        """Take `chunk` out of the map; its buffer is freed once its fetch ended and no read holds it."""
        if chunk.dropped:
            self._release(chunk)
            return
        chunk.dropped = True
        index = self._index_at(chunk.offset)
        if index >= 0 and self._chunks[index] is chunk:
            del self._starts[index]
            del self._chunks[index]
        self._memory.forget(chunk)
        self._release(chunk)

    def _release(self, chunk: _Chunk) -> None:
        if chunk.dropped and chunk.done and not chunk.pins:
            self._memory.free(chunk)

    async def _serve(self, offset: int, end: int, sequential: bool) -> bytes | memoryview:
        """The bytes of [offset, end) (short only at the object's real end), waiting for fetches as needed.
        Every chunk served from stays pinned until the slices are cut, so none is recycled meanwhile."""
        held: list[tuple[_Chunk, int, int]] = []  # (chunk, start, stop) in object offsets
        waited = False
        try:
            cursor = offset
            while cursor < end:
                index = self._index_at(cursor)
                if index < 0:  # dropped meanwhile (a failed fetch is raised below, so: invalidated)
                    self._fetch_gaps(cursor, end, sequential=sequential)
                    index = self._index_at(cursor)
                chunk = self._chunks[index]
                chunk.pins += 1
                held.append((chunk, cursor, cursor))
                need = min(end, chunk.end) - chunk.offset
                if chunk.filled < need and not chunk.done:
                    waited = True
                    await chunk.wait_for(need)
                if chunk.error is not None:
                    raise chunk.error
                available_end = min(end, chunk.offset + chunk.filled)
                held[-1] = (chunk, cursor, max(cursor, available_end))
                if available_end <= cursor or (chunk.done and chunk.offset + chunk.filled < chunk.end
                                               and available_end < end):
                    break  # the object is shorter than we were told: a short read
                cursor = available_end
            pieces = [chunk.buffer.view[start - chunk.offset: stop - chunk.offset]  # type: ignore[union-attr]
                      for chunk, start, stop in held if stop > start]
            for chunk, _, _ in held:
                self._memory.touch(chunk)
        finally:
            for chunk, _, _ in held:
                chunk.pins -= 1
                self._release(chunk)
        if waited:
            self._counters.prefetch_misses += 1
        else:
            self._counters.prefetch_hits += 1
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)
