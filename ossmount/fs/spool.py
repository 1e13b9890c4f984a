"""Local staging of dirty file contents: a sparse spool file plus the set of byte ranges it holds.

`RangeSet` is pure (no I/O) and property-tested. `SpoolFile` is one sparse file per dirty key in the
mount's spool session directory (journal.py), named so that it survives a crash of the mount (its journal
record says what it holds), written with `os.pwrite` and read with `os.pread`, so a file larger than memory
never needs more than one request's worth of RAM. Without a name it is an unlinked temporary file.

The spool's length always equals the file's logical size (`ftruncate` on create, grow and shrink), so
holes read back as zeros. Which bytes of the spool are authoritative is tracked by the owner
(`FileContent`): everything at or past the remote object's `base_size`, plus the `RangeSet` of
ranges below it that were written or downloaded.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import tempfile
from typing import Iterator

log = logging.getLogger(__name__)

CHUNK_LIMIT = 8 * 1024 * 1024


@contextlib.contextmanager
def spool_errors(key: str) -> Iterator[None]:
    """A failing spool file (disk full, file size limit) is the writer's errno (ENOSPC, EFBIG), not a bug: FsError."""
    try:
        yield
    except OSError as exc:
        from ossmount.fs.errors import FsError

        log.error("spool file of %s: %s", key, exc)
        raise FsError(exc.errno or errno.EIO, f"spool file of {key}: {exc.strerror}") from exc


class RangeSet:
    """A set of disjoint, non-adjacent half-open byte ranges [start, end), kept sorted."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(zip(self._starts, self._ends)))

    def __len__(self) -> int:
        return len(self._starts)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    def add(self, start: int, end: int) -> None:
        """Add [start, end), merging with overlapping or touching ranges."""
        if end <= start:
            return
        # First range whose end >= start (touching merges), last range whose start <= end.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def clip(self, limit: int) -> None:
        """Drop everything at or past `limit`."""
        index = bisect.bisect_left(self._starts, limit)
        del self._starts[index:]
        del self._ends[index:]
        if self._ends and self._ends[-1] > limit:
            self._ends[-1] = limit

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not covered by the set, in order."""
        result: list[tuple[int, int]] = []
        if end <= start:
            return result
        cursor = start
        index = bisect.bisect_right(self._ends, start)
        while cursor < end and index < len(self._starts):
            range_start, range_end = self._starts[index], self._ends[index]
            if range_start >= end:
                break
            if range_start > cursor:
                result.append((cursor, range_start))
            cursor = max(cursor, range_end)
            index += 1
        if cursor < end:
            result.append((cursor, end))
        return result

    def covers(self, start: int, end: int) -> bool:
        return not self.gaps(start, end)

    def intersects(self, start: int, end: int) -> bool:
        """True if any offset of [start, end) is in the set."""
        index = bisect.bisect_right(self._ends, start)
        return end > start and index < len(self._starts) and self._starts[index] < end


def split_range(start: int, end: int, chunk: int = CHUNK_LIMIT) -> list[tuple[int, int]]:
    """Cut [start, end) into consecutive pieces of at most `chunk` bytes."""
    return [(offset, min(offset + chunk, end)) for offset in range(start, end, chunk)]


def merge_close_ranges(ranges: list[tuple[int, int]], distance: int, limit: int) -> list[tuple[int, int]]:
    """Cover sorted disjoint `ranges` with spans: ranges less than `distance` apart share a span, and no
    span exceeds `limit` bytes (a longer range is cut into `limit`-sized pieces)."""
    spans: list[tuple[int, int]] = []
    for start, end in ranges:
        if spans and start - spans[-1][1] < distance and end - spans[-1][0] <= limit:
            spans[-1] = (spans[-1][0], end)
            continue
        spans.extend(split_range(start, end, limit))
    return spans


class SpoolFile:
    """A sparse file (mode 0600) whose offsets are the object's; its owner keeps its length equal to the content's
    logical size. `name`: created as `spool_dir/name` and kept until `remove()` (crash recovery reads it); without
    a name, an unlinked temporary file."""

    def __init__(self, spool_dir: str, size: int, *, name: str | None = None):
        if name is None:
            fd, path = tempfile.mkstemp(prefix="ossmount-spool-", dir=spool_dir)
        else:
            path = os.path.join(spool_dir, name)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            if name is None:
                os.unlink(path)
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.path: str | None = None if name is None else path

    @classmethod
    def reopen(cls, path: str) -> "SpoolFile":
        """An existing named spool file (crash recovery); OSError if it is gone."""
        spool = cls.__new__(cls)
        spool._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        spool.path = path
        return spool

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def sync(self) -> None:
        """fsync: the bytes survive a crash of the machine, not only of the process."""
        os.fsync(self._fd)

    def remove(self) -> None:
        """Close the spool file and delete it if it is named (its data is on OSS or kept elsewhere); an unnamed one
        is gone once closed."""
        self.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def pwrite(self, offset: int, data) -> int:
        """Write all of `data` at `offset` (loops over short writes)."""
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += os.pwrite(self._fd, view[written:], offset + written)
        return written

    def pread(self, offset: int, length: int) -> bytes:
        """Read up to `length` bytes at `offset`; short only at the end of the file."""
        chunks = []
        remaining = length
        while remaining > 0:
            data = os.pread(self._fd, remaining, offset)
            if not data:
                break
            chunks.append(data)
            offset += len(data)
            remaining -= len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def resize(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def zero(self, start: int, end: int) -> None:
        """Make [start, end) read as zeros (a hole where the filesystem can punch one)."""
        if end <= start:
            return
        try:
            _punch_hole(self._fd, start, end - start)
            return
        except OSError:
            pass
        block = bytes(min(end - start, 1024 * 1024))
        for offset in range(start, end, len(block)):
            self.pwrite(offset, memoryview(block)[: min(len(block), end - offset)])

    def open_reader(self):
        """A fresh binary file object positioned at 0, for streaming the whole spool to an upload.

        It is a dup of the descriptor: its file offset is shared with ours, which is harmless because
        the spool itself only ever uses pread/pwrite.
        """
        reader = os.fdopen(os.dup(self._fd), "rb", buffering=0)
        reader.seek(0)
        return reader

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_libc = None


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE): [offset, offset+length) reads as zeros and takes no disk; OSError where the
    filesystem does not support it."""
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    keep_size, punch_hole = 0x01, 0x02
    if _libc.fallocate(fd, keep_size | punch_hole, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
