"""Streaming uploads: a file written from its start goes up as multipart parts while it is still open.

Theory of operation
-------------------
A `StreamUpload` holds one new version of a key whose bytes depend on no earlier version (a new file, or one
truncated to 0 or opened with O_TRUNC): every byte of it was written through this mount. The file is cut into
parts of `part_size` (P) bytes, part n covering [(n-1)·P, n·P). Writes arrive mostly in order; the *window* is the
part being filled. When the writer moves past it, the window is handed to an upload task and a new window begins,
so at close only the last parts are left to send (performance.md §3.2; ossfs 2.0 and mountpoint-s3 do the same).

Where the bytes of a part are (`_Part`):
  * memory, a `_Run`: the buffers FUSE handed to write(), kept as they are (pyfuse3 gives a fresh `bytes` per
    request: keeping it costs no copy; writes under COALESCE bytes are copied into one bytearray). The window,
    part 1 (kept until the commit, so "write a header placeholder, stream the body, seek back and patch the
    header" — WAV, MP4, zip — needs nothing more), parts held while the file is below multipart_threshold, and
    parts being uploaded are in memory. Part 1 goes up with the first part the writer moves past, like the others,
    so the commit need not send it; its bytes stay in memory all the same, and a write into it afterwards (the
    patched header) waits for that upload to end if it is still under way and makes it go up again at the commit
    (an UploadPart of the same number replaces the earlier one);
  * the spool file (sparse, file offsets): parts whose upload failed, parts spilled when the mount's write budget
    is spent, and at commit everything not uploaded yet (crash safety, see Commit);
  * OSS: uploaded parts, which cannot be read back before the upload is complete;
  * nowhere: zero parts (holes), uploaded from one shared block of zeros.

Memory: per stream, the window, part 1 and at most `parallel_count` parts in flight (a writer that gets further
ahead waits for a slot: back-pressure); per mount, `budget` (a byte count shared by every stream): a part that does
not fit goes to the spool file instead. CRC-64 is computed as data arrives (per appended buffer) and recomputed
only for parts written out of order.

What a stream cannot do it reports (write/truncate return False, read_local returns None), and the content then
*publishes* it (content.py): it commits the stream as the key's new version and continues with the classic spool
over it. That happens for a write, truncate or read that needs the bytes of a part already uploaded.

Commit (flush/fsync/close): `freeze(size, headers)` (under the content's lock) ends the stream at `size`; then
`finish()` (without the lock) first writes every part still in memory to the spool file and journals the upload
("committing": from here a crash of the mount loses nothing, the next mount completes the upload), uploads what is
left and completes the upload — or, for a file below multipart_threshold that never started one, sends a single
PutObject. When the metadata changed after InitiateMultipartUpload (chmod, utimens, the mtime of the close), one
CopyObject onto itself stores the final metadata. A failure leaves the stream "failed": its data is in the spool
file and the upload (journal record fsync'ed before the writer hears EIO), and `finish()` may run again.

Concurrency: everything runs on the trio thread; write/truncate/freeze are called under the content's lock. Part
uploads are tasks in the manager's nursery (the mount's); each touches only its own `_Part`, the counters and the
budget, between awaits.
"""

from __future__ import annotations

import bisect
import logging
from typing import TYPE_CHECKING, Any, Callable

import trio

from ossmount.crc64 import crc64
from ossmount.fs.buffers import release_heap
from ossmount.fs.journal import Entry
from ossmount.fs.spool import SpoolFile, spool_errors
from ossmount.store.types import NoSuchKey, NoSuchUpload, ObjectInfo, PartInfo, PreconditionFailed, StoreError

if TYPE_CHECKING:
    from ossmount.fs.content import ContentManager

log = logging.getLogger(__name__)

KiB = 1024
ZERO_BLOCK = bytes(1024 * KiB)
COALESCE = 128 * KiB  # writes smaller than this are copied into one growing bytearray rather than kept apart

Headers = tuple[str, dict[str, str]]


class UploadLost(StoreError):
    """The multipart upload disappeared from OSS (aborted by another tool or a lifecycle rule) while parts only it
    held were not kept locally: those bytes are gone. Not retryable."""


def _zero_pieces(length: int) -> list[memoryview]:
    block = memoryview(ZERO_BLOCK)
    return [block[: min(len(block), length - offset)] for offset in range(0, length, len(block))]


def _is_zero(piece: Any) -> bool:
    return isinstance(piece, memoryview) and piece.obj is ZERO_BLOCK


_zero_crcs: dict[int, int] = {}


def zero_crc(length: int) -> int:
    """CRC-64 of `length` zero bytes (cached: parts of holes come in few lengths)."""
    crc = _zero_crcs.get(length)
    if crc is None:
        crc = 0
        for piece in _zero_pieces(length):
            crc = crc64(piece, crc)
        if len(_zero_crcs) < 64:
            _zero_crcs[length] = crc
    return crc


class _Run:
    """Bytes [start, start + length) of the file in memory, as a list of buffers (see the module docstring).
    `memory` counts the bytes the run holds itself (zeros come from ZERO_BLOCK and cost nothing)."""

    __slots__ = ("start", "pieces", "ends", "length", "memory", "crc", "crc_valid", "growable")

    def __init__(self, start: int):
        self.start = start
        self.pieces: list[Any] = []
        self.ends: list[int] = []  # where each piece ends, relative to start
        self.length = 0
        self.memory = 0
        self.crc = 0
        self.crc_valid = True
        self.growable = False  # the last piece is our own bytearray, which small writes extend

    def append(self, data: Any) -> None:
        size = len(data)
        if self.crc_valid:
            self.crc = crc64(data, self.crc)
        if size < COALESCE:
            if not self.growable:
                self.pieces.append(bytearray())
                self.ends.append(self.length)
                self.growable = True
            self.pieces[-1] += data
            self.ends[-1] += size
        else:
            self.pieces.append(data)
            self.ends.append(self.length + size)
            self.growable = False
        self.length += size
        self.memory += size

    def append_zeros(self, size: int) -> None:
        for piece in _zero_pieces(size):
            if self.crc_valid:
                self.crc = crc64(piece, self.crc)
            self.pieces.append(piece)
            self.length += len(piece)
            self.ends.append(self.length)
            self.growable = False

    def write_at(self, offset: int, data: Any) -> None:
        """Write `data` at `offset` (relative, <= length). Writing over bytes the run holds makes it one bytearray."""
        if offset == self.length:
            self.append(data)
            return
        if len(self.pieces) == 1 and isinstance(self.pieces[0], bytearray):
            dense = self.pieces[0]
        else:
            dense = bytearray(self.length)
            view = memoryview(dense)
            for piece, end in zip(self.pieces, self.ends):
                view[end - len(piece) : end] = piece
            del view
        end = offset + len(data)
        if end > len(dense):
            dense.extend(bytes(end - len(dense)))
        dense[offset:end] = data
        self.pieces, self.ends = [dense], [len(dense)]
        self.length = self.memory = len(dense)
        self.crc_valid = False
        self.growable = True

    def truncate(self, size: int) -> None:
        """Keep the first `size` bytes."""
        if size >= self.length:
            return
        pieces, ends = [], []
        for piece, end in zip(self.pieces, self.ends):
            begin = end - len(piece)
            if begin >= size:
                break
            if end > size:
                if isinstance(piece, bytearray):
                    del piece[size - begin :]
                else:
                    piece = memoryview(piece)[: size - begin]
                end = size
            pieces.append(piece)
            ends.append(end)
        self.pieces, self.ends, self.length = pieces, ends, size
        self.memory = sum(len(p) for p in pieces if not _is_zero(p))
        self.crc_valid = False
        self.growable = bool(pieces) and isinstance(pieces[-1], bytearray)

    def read(self, offset: int, size: int) -> bytes:
        """A copy of bytes [offset, offset+size) (relative), clipped to the run."""
        end = min(offset + size, self.length)
        out = []
        index = bisect.bisect_right(self.ends, offset)
        while offset < end:
            piece, piece_end = self.pieces[index], self.ends[index]
            begin = piece_end - len(piece)
            take = min(end, piece_end) - offset
            out.append(bytes(memoryview(piece)[offset - begin : offset - begin + take]))
            offset += take
            index += 1
        return b"".join(out)

    def checksum(self) -> int:
        if not self.crc_valid:
            crc = 0
            for piece in self.pieces:
                crc = crc64(piece, crc)
            self.crc, self.crc_valid = crc, True
        return self.crc

    def to_spool(self, spool: SpoolFile) -> None:
        for piece, end in zip(self.pieces, self.ends):
            if not _is_zero(piece):
                spool.pwrite(self.start + end - len(piece), piece)


class _Part:
    """Part `number` ([start, start + length)): in memory (`run`), in the spool file (`spooled`), all zeros
    (`zero`), or uploaded (`info`; an uploaded zero part still reads as zeros). Exactly what the module docstring
    lists; `uploading` parts must not change, `dropped` ones were truncated away while their upload was in flight."""

    __slots__ = ("number", "start", "run", "spooled", "zero", "size", "info", "uploading", "dropped")

    def __init__(self, number: int, start: int, run: _Run | None = None, *, zero: bool = False, size: int = 0):
        self.number = number
        self.start = start
        self.run = run
        self.spooled = False
        self.zero = zero
        self.size = size  # the length when not in memory
        self.info: PartInfo | None = None
        self.uploading = False
        self.dropped = False

    @property
    def length(self) -> int:
        return self.run.length if self.run is not None else self.size

    @property
    def readable(self) -> bool:
        """False when its bytes are only on OSS."""
        return self.run is not None or self.spooled or self.zero

    @property
    def changeable(self) -> bool:
        return self.readable and not self.uploading

    @property
    def kept(self) -> bool:
        """Part 1 keeps its bytes in memory after its upload, for a header rewritten at the end (module docstring)."""
        return self.number == 1 and self.run is not None

    @property
    def writable(self) -> bool:
        """Changeable, or will be once its upload in flight ends (a kept part: the write waits for it)."""
        return self.changeable or (self.kept and self.uploading)


class StreamUpload:
    """One streaming version of `key` (see the module docstring).

    `headers()` gives the Content-Type and metadata at InitiateMultipartUpload (`freeze` fixes the final ones);
    `base_etag`/`base_version_id` name the version this one replaces, which a retried upload checks is still there
    (`finish(check_base=True)`): a kept write never overwrites another client's newer object."""

    def __init__(self, manager: "ContentManager", key: str, headers: Callable[[], Headers], *,
                 base_etag: str | None, base_version_id: str | None = None):
        self._manager = manager
        self._store = manager._store
        self.key = key
        self._headers_now = headers
        self.part_size: int = manager._strategy.multipart_size
        self.threshold: float = manager._strategy.multipart_threshold
        self.base_etag = base_etag
        self.base_version_id = base_version_id
        self.parts: dict[int, _Part] = {1: _Part(1, 0, _Run(0))}
        self.window = 1
        self.upload_id: str | None = None
        self.initiated_headers: Headers | None = None
        self.spool: SpoolFile | None = None
        self.entry: Entry | None = None
        self.degraded: StoreError | None = None  # a part (or the initiate) failed: parts go to the spool until close
        self.frozen = False
        self.size = 0  # set by freeze
        self.headers: Headers = ("application/octet-stream", {})
        self.failed: StoreError | None = None  # what the last finish() failed with
        self.attempts = 0
        self.done = trio.Event()  # finish() succeeded, or the stream was abandoned
        self.abandoned = False
        self.result: ObjectInfo | None = None  # what finish() returned
        self.after: StreamUpload | None = None  # a commit of the same content that must land first
        self.lock = trio.Lock()  # held by whoever runs finish() (a flush, a background retry)
        self.local_only = False  # the upload was given up (file unlinked): parts go to the spool file
        self._slots = trio.Semaphore(manager._parallel_count)
        self._sending: dict[int, trio.Event] = {}  # part number -> set when its upload in flight ends
        self._in_flight = 0
        self._idle = trio.Event()
        self._idle.set()
        self._memory = 0

    def __repr__(self) -> str:
        return f"<StreamUpload {self.key!r} window={self.window} upload={self.upload_id} frozen={self.frozen}>"

    # ---- memory -----------------------------------------------------------------------------------

    @property
    def memory(self) -> int:
        """Bytes of written data this stream holds in memory (its share of the mount's write budget)."""
        return self._memory

    def _take(self, amount: int) -> bool:
        if amount <= 0:
            return True
        if not self._manager._write_budget.try_reserve(amount):
            return False
        self._memory += amount
        return True

    def _give(self, amount: int) -> None:
        amount = min(amount, self._memory)
        if amount > 0:
            self._memory -= amount
            self._manager._write_budget.release(amount)

    # ---- the spool file and the journal -----------------------------------------------------------

    def _ensure_spool(self) -> SpoolFile:
        if self.spool is None:
            if self.entry is None:
                self.entry = self._manager._new_entry()
            with spool_errors(self.key):
                if self.entry is None:
                    self.spool = SpoolFile(self._manager._spool_dir, 0)
                else:
                    self.spool = SpoolFile(self.entry.directory, 0, name=self.entry.data_name)
        return self.spool

    def _spill(self, part: _Part) -> None:
        """Move a part's bytes from memory to the spool file."""
        run = part.run
        if run is None:
            return
        with spool_errors(self.key):
            run.to_spool(self._ensure_spool())
        self._give(run.memory)
        part.size, part.run, part.spooled = run.length, None, True

    def _spill_copy(self, part: _Part) -> None:
        """Write a part's bytes to the spool file and keep them in memory too (an upload may be sending them)."""
        assert part.run is not None
        with spool_errors(self.key):
            part.run.to_spool(self._ensure_spool())
        part.spooled = True

    def record(self, state: str) -> dict[str, Any]:
        """This stream's journal record (journal.py): the spool file holds every part not uploaded."""
        ordered = sorted(self.parts.values(), key=lambda p: p.number)
        content_type, meta = self.headers if self.frozen else self._headers_now()
        return {
            "state": state, "key": self.key, "bucket": self._manager.bucket_name, "size": self.size,
            "content_type": content_type, "meta": meta,
            "base": {"etag": self.base_etag, "version_id": self.base_version_id, "size": 0},
            "valid": [[p.start, p.start + p.length] for p in ordered if p.spooled and p.info is None],
            "modified": [],
            "upload": None if self.upload_id is None else {
                "id": self.upload_id, "part_size": self.part_size,
                "parts": [[p.number, p.info.etag, p.info.size, p.info.crc64] for p in ordered if p.info is not None]},
        }

    def _save(self, state: str, *, durable: bool = False) -> None:
        if self.entry is None:
            self.entry = self._manager._new_entry()
        if self.entry is None:
            return
        try:
            if durable and self.spool is not None:
                self.spool.sync()
            self.entry.save(self.record(state), durable=durable)
        except OSError as exc:
            log.error("cannot write the journal record of %s in %s: %s", self.key, self.entry.directory, exc)

    # ---- writes -----------------------------------------------------------------------------------

    def _number(self, offset: int) -> int:
        return offset // self.part_size + 1

    def _window_part(self) -> _Part:
        return self.parts[self.window]

    def can_write(self, offset: int, end: int) -> bool:
        """Whether [offset, end) can be written without the bytes of an uploaded part (else: publish)."""
        window_start = self._window_part().start
        if offset >= window_start:
            return True
        for number in range(self._number(offset), self._number(min(end, window_start) - 1) + 1):
            part = self.parts.get(number)
            if part is None or not part.writable:
                return False
        return True

    async def write(self, offset: int, data: Any) -> None:
        """Write `data` at `offset` (`can_write` must be true). Waits for an upload slot when the writer is
        `parallel_count` parts ahead of the uploads (back-pressure)."""
        view = data if isinstance(data, bytes) else memoryview(data).cast("B")
        position = offset
        while len(view):
            window = self._window_part()
            if position >= window.start + self.part_size:
                await self._advance(position)
                continue
            part = window if position >= window.start else self.parts[self._number(position)]
            if part.uploading and part.kept:
                await self._sending[part.number].wait()  # then the write makes it go up again at the commit
                continue
            take = min(len(view), part.start + self.part_size - position)
            self._write_into(part, position - part.start, view[:take] if take < len(view) else view)
            position += take
            view = view[take:]
            if part is window and position == window.start + self.part_size:
                await self._advance(position)

    def _write_into(self, part: _Part, offset: int, data: Any) -> None:
        if part.run is None and not part.spooled:
            self._materialize_zeros(part)
        part.info = None
        if part.run is not None:
            run = part.run
            end = offset + len(data)
            needed = len(data) if offset >= run.length else max(run.length, end) - run.memory
            if self._take(needed):
                if offset > run.length:
                    run.append_zeros(offset - run.length)
                before = run.memory
                run.write_at(offset, data)
                self._give(needed - (run.memory - before))
                return
            self._spill(part)
        with spool_errors(self.key):
            self._ensure_spool().pwrite(part.start + offset, data)
        part.size = max(part.size, offset + len(data))

    def _materialize_zeros(self, part: _Part) -> None:
        """A zero part about to be written: memory that holds its zeros (they cost nothing)."""
        run = _Run(part.start)
        run.append_zeros(part.size)
        part.run, part.zero, part.size = run, False, 0

    async def _advance(self, position: int) -> None:
        """The writer reached `position`, at or past the window's end: the window is complete (holes in it are
        zeros), parts between are zero parts, and the part holding `position` becomes the window."""
        window = self._window_part()
        self._pad(window, self.part_size)
        number = self._number(position)
        await self._submit(window)
        for between in range(window.number + 1, number):
            part = _Part(between, (between - 1) * self.part_size, zero=True, size=self.part_size)
            self.parts[between] = part
            await self._submit(part)
        start = (number - 1) * self.part_size
        self.parts[number] = _Part(number, start, _Run(start))
        self.window = number

    def _pad(self, part: _Part, length: int) -> None:
        if part.length < length:
            if part.run is not None:
                part.run.append_zeros(length - part.run.length)
            else:
                part.size = length  # spool holes and zero parts read as zeros

    async def _submit(self, part: _Part) -> None:
        """A part the writer has moved past: uploaded now (part 1 with the first other part, its bytes kept), or
        held while the file is below multipart_threshold."""
        if part.number == 1 or part.start + part.length < self.threshold:
            return
        for held in sorted(self.parts.values(), key=lambda p: p.number):
            if held.number < part.number and held.info is None and not held.uploading:
                await self._upload(held)
        await self._upload(part)

    async def _upload(self, part: _Part) -> None:
        if (self.degraded is not None and not self.frozen) or self.local_only:
            self._spill(part)
            return
        if self.upload_id is None:
            try:
                await self._initiate()
            except StoreError as exc:
                self._degrade(exc)
                self._spill(part)
                return
        earlier = self._sending.get(part.number)
        if earlier is not None:
            await earlier.wait()  # an upload of a dropped part of this number must not land after this one
        await self._slots.acquire()
        part.uploading = True
        if self._in_flight == 0:
            self._idle = trio.Event()
        self._in_flight += 1
        self._sending[part.number] = trio.Event()
        self._manager._nursery.start_soon(self._upload_task, part, self.upload_id)

    async def _initiate(self) -> None:
        headers = self.headers if self.frozen else self._headers_now()
        content_type, meta = headers
        self.upload_id = await self._store.init_multipart(self.key, content_type=content_type, meta=meta)
        self.initiated_headers = (content_type, dict(meta))
        self._save("committing" if self.frozen else "streaming")

    async def _upload_task(self, part: _Part, upload_id: str) -> None:
        counters = self._manager._counters
        length = part.length
        try:
            if part.zero:
                info = await self._store.upload_part(self.key, upload_id, part.number, _zero_pieces(length),
                                                     crc64=zero_crc(length))
            elif part.run is not None:
                run = part.run
                info = await self._store.upload_part(self.key, upload_id, part.number, list(run.pieces),
                                                     crc64=run.checksum())
            else:
                with spool_errors(self.key):
                    reader = self._ensure_spool().open_reader()
                try:
                    info = await self._store.upload_part_from_file(self.key, upload_id, part.number, reader,
                                                                   part.start, length)
                finally:
                    reader.close()
        except Exception as exc:  # noqa: BLE001 - a failed part must not end the mount's nursery
            if not isinstance(exc, StoreError):
                log.exception("uploading part %d of %s failed", part.number, self.key)
                exc = StoreError(f"part {part.number} of {self.key!r}: {exc}", key=self.key)
            if not part.dropped and not self.local_only:
                self._degrade(exc)
                try:
                    self._spill(part)
                except Exception as spool_error:  # noqa: BLE001 - the bytes then stay in memory
                    log.error("%s", spool_error)
        else:
            counters.parts_uploaded += 1
            counters.bytes_uploaded += length
            if not part.dropped and upload_id == self.upload_id:
                part.info = info
                if part.run is not None and not part.kept:
                    self._give(part.run.memory)
                    part.size, part.run = part.run.length, None
                # (a copy in the spool file, made at the commit, stays readable until the upload is complete)
        finally:
            part.uploading = False
            self._in_flight -= 1
            self._slots.release()
            self._sending.pop(part.number).set()
            if self._in_flight == 0:
                self._idle.set()

    def _degrade(self, error: StoreError) -> None:
        if self.degraded is None:
            log.warning("uploading a part of %s failed (%s): its bytes and the rest of the file go to the spool "
                        "until close", self.key, error)
        self.degraded = error
        self._manager._counters.upload_failures += 1

    # ---- truncate and read ------------------------------------------------------------------------

    def truncate(self, size: int) -> bool:
        """Set the length to `size` (> 0); False when that needs the bytes of an uploaded part."""
        window = self._window_part()
        if size >= window.start:
            if size < window.start + window.length:
                self._truncate_part(window, size - window.start)
            return True
        number = self._number(size - 1) if size % self.part_size else self._number(size)
        keep = size - (number - 1) * self.part_size  # bytes of the new window (0 at a part boundary)
        if keep and not (number in self.parts and self.parts[number].changeable):
            return False
        for other in [p for p in self.parts.values() if p.number > number or (p.number == number and not keep)]:
            self._drop(other)
        if keep:
            self._truncate_part(self.parts[number], keep)
        else:
            start = (number - 1) * self.part_size
            self.parts[number] = _Part(number, start, _Run(start))
        self.window = number
        return True

    def _truncate_part(self, part: _Part, length: int) -> None:
        part.info = None
        if part.run is not None:
            before = part.run.memory
            part.run.truncate(length)
            self._give(before - part.run.memory)
            return
        if part.spooled and self.spool is not None:
            with spool_errors(self.key):
                self.spool.zero(part.start + length, part.start + part.size)
        part.size = min(part.size, length)

    def _drop(self, part: _Part) -> None:
        del self.parts[part.number]
        part.dropped = True
        if part.run is not None:
            self._give(part.run.memory)
            if not part.uploading:
                part.run = None
        if part.spooled and self.spool is not None:
            with spool_errors(self.key):
                self.spool.zero(part.start, part.start + part.size)  # a later part here must not see these bytes
            part.spooled = False

    def read_local(self, offset: int, length: int, size: int) -> bytes | None:
        """Bytes [offset, offset+length) clipped to `size`; None when some are only on OSS."""
        end = min(offset + length, size)
        out = []
        position = offset
        while position < end:
            number = self._number(position)
            start = (number - 1) * self.part_size
            take = min(end, start + self.part_size) - position
            part = self.parts.get(number)
            if part is None or part.zero:
                piece = b""
            elif part.run is not None:
                piece = part.run.read(position - start, take)
            elif part.spooled:
                with spool_errors(self.key):
                    piece = self._ensure_spool().pread(position, min(take, max(part.size - (position - start), 0)))
            else:
                return None
            out.append(piece + bytes(take - len(piece)))
            position += take
        return b"".join(out)

    # ---- the commit ---------------------------------------------------------------------------------

    def freeze(self, size: int, headers: Headers) -> None:
        """End the stream at `size` with these final headers (under the content's lock); then `finish()`."""
        self.frozen = True
        self.size = size
        self.headers = (headers[0], dict(headers[1]))
        last = self._number(size - 1) if size else 1
        window = self._window_part()
        if window.number < last:
            self._pad(window, self.part_size)
            for number in range(window.number + 1, last + 1):
                start = (number - 1) * self.part_size
                self.parts[number] = _Part(number, start, zero=True, size=min(self.part_size, size - start))
        for number in [n for n in self.parts if n > last]:
            self._drop(self.parts[number])
        part = self.parts[last]
        self._pad(part, size - part.start)

    async def finish(self, *, check_base: bool = False) -> ObjectInfo:
        """Upload the frozen stream (see the module docstring); may run again after a failure. With `check_base`
        the key must still be the version this one replaces: PreconditionFailed otherwise."""
        self.attempts += 1
        try:
            info = await self._finish(check_base)
        except BaseException as exc:
            if isinstance(exc, StoreError):
                self.failed = exc
            with trio.CancelScope(shield=True):
                self._save("failed", durable=True)
            raise
        self.failed = None
        self.result = info
        if self.entry is not None:
            self.entry.forget()  # the record first: a crash before the data file goes leaves only garbage
        self._release_everything()
        if self.entry is not None:
            self.entry.discard()
        self.done.set()
        return info

    async def _finish(self, check_base: bool) -> ObjectInfo:
        if check_base:
            await self._check_base()
        if isinstance(self.degraded, NoSuchUpload):
            self._lost_upload()
        if self.upload_id is None and self.size < self.threshold:
            return await self._put_whole()
        # Crash safety: from here on every byte not uploaded is in the spool file, and the record says so.
        for part in self.parts.values():
            if part.run is not None and part.info is None:
                self._spill_copy(part)
        if self.upload_id is None:
            await self._initiate()
        self._save("committing")
        for part in sorted(self.parts.values(), key=lambda p: p.number):
            if part.info is None and not part.uploading:
                await self._upload(part)
        await self._idle.wait()
        if isinstance(self.degraded, NoSuchUpload):
            self._lost_upload()
        missing = [p.number for p in self.parts.values() if p.info is None]
        if missing:
            raise self.degraded or StoreError(f"parts {missing} of {self.key!r} were not uploaded", key=self.key)
        self.degraded = None
        parts = [p.info for p in sorted(self.parts.values(), key=lambda p: p.number) if p.info is not None]
        try:
            info = await self._store.complete_multipart(self.key, self.upload_id, parts)
        except NoSuchUpload:
            self._lost_upload()
            raise
        self._manager._counters.multipart_uploads += 1
        if self.initiated_headers != self.headers:
            # The object carries the Initiate's metadata: store the final one (CopyObject onto itself, no data moved).
            content_type, meta = self.headers
            await self._store.update_meta(self.key, content_type=content_type, meta=meta, size=self.size)
            info = await self._store.head(self.key)
        return info

    async def _put_whole(self) -> ObjectInfo:
        """Below multipart_threshold with no upload started: one PutObject of every part (memory, spool, zeros)."""
        buffers: list[Any] = []
        crc = 0
        for part in sorted(self.parts.values(), key=lambda p: p.number):
            if part.run is not None:
                pieces = list(part.run.pieces)
            elif part.spooled:
                with spool_errors(self.key):
                    data = self._ensure_spool().pread(part.start, part.size)
                pieces = [data, *_zero_pieces(part.size - len(data))]
            else:
                pieces = _zero_pieces(part.size)
            for piece in pieces:
                crc = crc64(piece, crc)
            buffers.extend(pieces)
        if self.size:
            for part in self.parts.values():
                if part.run is not None:
                    self._spill_copy(part)
            self._save("committing")
        content_type, meta = self.headers
        info = await self._store.put(self.key, buffers, content_type=content_type, meta=meta, crc64=crc)
        self._manager._counters.puts += 1
        self._manager._counters.bytes_uploaded += self.size
        return info

    async def _check_base(self) -> None:
        try:
            current = await self._store.head(self.key)
        except NoSuchKey:
            current = None
        if self.base_etag and (current is None or current.etag != self.base_etag):
            raise PreconditionFailed(f"{self.key!r} changed since this version of it was begun (ETag "
                                     f"{self.base_etag}, now {current.etag if current else 'deleted'})",
                                     code="PreconditionFailed", status=412, key=self.key)

    def _lost_upload(self) -> None:
        """The upload is gone. Parts kept locally start over in a new one; parts only it held are lost."""
        lost = [p for p in self.parts.values() if not p.readable]
        self.upload_id = None
        self.degraded = None
        for part in self.parts.values():
            if part.readable:
                part.info = None
        if lost:
            raise UploadLost(f"the multipart upload of {self.key!r} disappeared from OSS (aborted by another tool "
                             f"or a lifecycle rule?): {sum(p.length for p in lost)} bytes only it held are lost",
                             code="NoSuchUpload", key=self.key)

    def lost_ranges(self) -> list[tuple[int, int]]:
        """Ranges whose bytes are only in the unfinished upload (what keeping the file aside cannot save)."""
        return [(p.start, p.start + p.length) for p in sorted(self.parts.values(), key=lambda p: p.number)
                if not p.readable]

    def _release_everything(self) -> None:
        for part in self.parts.values():
            if part.run is not None:
                self._give(part.run.memory)
                part.run = None
        if self.spool is not None:
            self.spool.remove()
            self.spool = None
        if len(self.parts) > 1 and self._manager._write_budget.used == 0:
            release_heap()  # the heap kept the space of uploaded parts for the next writes (buffers.py)

    def abandon(self) -> None:
        """Drop the stream (its file was unlinked, truncated to 0, or kept aside): free its memory and spool, and
        abort its upload in the background (retried until it succeeds or the mount ends)."""
        if self.abandoned:
            return
        self.abandoned = True
        for part in self.parts.values():
            part.dropped = True
        self._release_everything()
        if self.upload_id is not None:
            self._manager.abort_later(self.key, self.upload_id, self.entry)
        elif self.entry is not None:
            self.entry.discard()
        self.upload_id = None
        self.done.set()

    def give_up_upload(self) -> None:
        """The file was unlinked while open: abort the upload (in the background) but keep every byte held locally
        for the handles still open; bytes only the upload had can no longer be read."""
        self.local_only = True
        if self.upload_id is not None:
            self._manager.abort_later(self.key, self.upload_id, None)
            self.upload_id = None
        if self.entry is not None:
            self.entry.forget()

    def progress(self) -> dict[str, Any]:
        """What `ContentManager.statistics()` reports about this stream."""
        parts = list(self.parts.values())
        return {"upload_id": self.upload_id, "parts_uploaded": sum(1 for p in parts if p.info is not None),
                "parts_in_flight": sum(1 for p in parts if p.uploading), "memory": self._memory,
                "spooled": sum(p.length for p in parts if p.spooled and p.info is None)}
