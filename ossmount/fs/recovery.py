"""After a crash: what the next mount (and `ossmount recover`, `ossmount cleanup`) does with the spool sessions and
the incomplete multipart uploads a dead mount process left behind (README "Reliability").

Rules
-----
* The records of dead sessions (journal.py; a session is dead when its lock is free) are handled oldest session
  first, in entry order:
  - "committing" / "failed" (the writer asked for a commit: flush, fsync or close): the data is uploaded if the
    key is still the version it builds on (a HEAD compares the ETag: OSS has no conditional PUT, so a change in
    the instant between the HEAD and the upload is not seen; ranges copied from the old version are pinned to it
    with x-oss-copy-source-if-match anyway). Parts its multipart upload already holds are not sent again. If the
    key changed, or the upload lost parts nothing else holds, the bytes there are are kept aside in conflict_dir
    (the log line names the file; the `.json` sidecar names the key, the ranges written and the ranges missing).
  - "dirty" / "streaming" (written, never committed): never uploaded — the writer was not told it was stored;
    what the spool file holds is kept aside in conflict_dir, and an open upload is aborted.
  - "aborting": the upload is aborted.
  A record is removed (with its spool file) once handled; one that could not be handled (OSS unreachable) stays,
  and so does its session, for the next attempt.
* Stale uploads (`abort_stale_uploads`): every incomplete upload under the prefix whose marker
  (x-oss-meta-ossmount-upload, set at Initiate) shows that ossmount started it, that is older than the age, and
  that no session on this machine still owns (a live one, or a record kept for a retry), is aborted. Alibaba Cloud
  OSS does not list an upload's metadata: there only the records of this machine recognise ossmount's uploads,
  and `ossmount cleanup --all` aborts every upload under the prefix older than the age, whoever started it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from ossmount.fs.journal import Entry, Session
from ossmount.fs.reader import IoCounters
from ossmount.fs.spool import CHUNK_LIMIT, RangeSet, SpoolFile, merge_close_ranges, split_range
from ossmount.fs.writer import SpoolUpload, UploadRequest, store_error_from_group
from ossmount.store.client import UPLOAD_MARKER
from ossmount.store.types import MultipartUpload, NoSuchKey, NoSuchUpload, PartInfo, StoreError, version_gone

log = logging.getLogger(__name__)

HOUR = 3600.0


@dataclass
class RecoveryReport:
    """What a recovery did: keys uploaded, kept aside (key → path), dropped uploads, failures kept for later."""

    uploaded: list[str] = field(default_factory=list)
    kept_aside: dict[str, str] = field(default_factory=dict)
    aborted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"uploaded   {key}" for key in self.uploaded]
        out += [f"kept aside {key} -> {path}" for key, path in self.kept_aside.items()]
        out += [f"aborted    upload {upload}" for upload in self.aborted]
        out += [f"FAILED     {key}: {reason} (kept for the next attempt)" for key, reason in self.failed.items()]
        return out


class Recovery:
    """Recovers dead sessions with `store` (a store of the sessions' bucket). `part_size`, `parallel_count` and
    `threshold` shape the uploads of spooled data as the mount's options do. `gate(key)` is called before a key is
    handled and `done(key)` after (the mount's ContentManager makes opens of that key wait meanwhile)."""

    def __init__(self, store: Any, *, conflict_dir: str, part_size: int, parallel_count: int,
                 threshold: float, gate: Callable[[str], Any] | None = None,
                 done: Callable[[str], None] | None = None):
        self.store = store
        self.conflict_dir = conflict_dir
        self.strategy = SpoolUpload(store, multipart_size=part_size, parallel_count=parallel_count,
                                    counters=IoCounters(), multipart_threshold=threshold)
        self.parallel_count = parallel_count
        self._gate = gate or (lambda key: None)
        self._done = done or (lambda key: None)
        self.report = RecoveryReport()

    @staticmethod
    def records(sessions: list[Session]) -> list[tuple[Session, Entry, dict[str, Any] | None]]:
        return [(session, entry, record) for session in sessions for entry, record in session.entries()]

    def keys(self, sessions: list[Session]) -> set[str]:
        """The keys the records of `sessions` name (to gate before recovering)."""
        return {record["key"] for _, _, record in self.records(sessions)
                if record and isinstance(record.get("key"), str)}

    async def run(self, sessions: list[Session]) -> RecoveryReport:
        """Handle every record of `sessions` (each locked by the caller), then remove the sessions left empty."""
        results: dict[tuple[str, int], str | None] = {}  # (session, entry number) -> the ETag its upload made
        for session, entry, record in self.records(sessions):
            if record is None:
                log.debug("recovery: %s has no record; removing it", entry.data_path)
                entry.discard()
                continue
            if record.get("bucket") not in (None, "", self.store.bucket_name):
                log.warning("recovery: %s names bucket %s, not %s; left alone", entry.json_path, record.get("bucket"),
                            self.store.bucket_name)
                continue
            key = record.get("key", "")
            self._gate(key)
            try:
                results[(session.path, entry.number)] = await self._recover(session, entry, record, results)
            except (StoreError, OSError) as exc:
                self.report.failed[key] = str(exc)
                log.error("recovery of %s (from %s) failed: %s; it is kept there for the next mount or `ossmount "
                          "recover`", key, entry.json_path, exc)
            finally:
                self._done(key)
        for session in sessions:
            if not session.has_records():
                session.remove()
            session.release()
        return self.report

    async def _recover(self, session: Session, entry: Entry, record: dict[str, Any],
                       results: dict[tuple[str, int], str | None]) -> str | None:
        state = record.get("state")
        key = record["key"]
        upload = record.get("upload") or None
        if state == "aborting" or state in ("dirty", "streaming"):
            if state != "aborting":
                await self._keep_aside(entry, record, "it was written but never committed (no close or fsync "
                                                      "returned) when the mount stopped; it was not uploaded")
            if upload:
                await self._abort(key, upload["id"])
            entry.discard()
            return None
        after = record.get("after")
        base_etag = (record.get("base") or {}).get("etag")
        if after is not None:
            previous = results.get((session.path, int(after)), "missing")
            if previous == "missing" or previous is None:
                await self._keep_aside(entry, record, "the upload it builds on could not be completed")
                if upload:
                    await self._abort(key, upload["id"])
                entry.discard()
                return None
            base_etag = previous
        if not await self._unchanged(key, base_etag):
            await self._keep_aside(entry, record, "the object was changed or deleted by another client since")
            if upload:
                await self._abort(key, upload["id"])
            entry.discard()
            return None
        try:
            if upload:
                etag = await self._complete(entry, record)
            else:
                etag = await self._upload_spooled(entry, record, base_etag)
        except StoreError as exc:
            if not (version_gone(exc) or getattr(exc, "lost", False)):
                raise
            await self._keep_aside(entry, record, f"it could not be uploaded as it was: {exc}")
            if upload:
                await self._abort(key, upload["id"])
            entry.discard()
            return None
        log.warning("recovery: %s, committed by a mount that stopped before it was stored, is on OSS now", key)
        self.report.uploaded.append(key)
        entry.discard()
        return etag

    async def _unchanged(self, key: str, base_etag: str | None) -> bool:
        try:
            current = await self.store.head(key)
        except NoSuchKey:
            return base_etag is None
        return base_etag is not None and current.etag == base_etag

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self.store.abort_multipart(key, upload_id)
        except NoSuchUpload:
            return
        self.report.aborted.append(f"{upload_id} of {key}")
        log.info("recovery: aborted the incomplete multipart upload %s of %s", upload_id, key)

    async def _keep_aside(self, entry: Entry, record: dict[str, Any], why: str) -> None:
        from ossmount.fs.content import keep_aside_copy

        key, size = record["key"], int(record.get("size") or 0)
        valid = [tuple(r) for r in record.get("valid") or []]
        try:
            fd = os.open(entry.data_path, os.O_RDONLY)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0 and record.get("state") in ("dirty", "streaming"):
                size = max(size, os.fstat(fd).st_size)
                if not valid:
                    valid = [(0, size)] if size else []
            if fd < 0 or size == 0 or not valid:
                log.warning("recovery: %s: %s; nothing of it was kept locally", key, why)
                return
            description = {"bucket": self.store.bucket_name, "key": key, "size": size,
                           "opened_etag": (record.get("base") or {}).get("etag"), "state": record.get("state"),
                           "written_ranges": [list(r) for r in valid],
                           "unknown_ranges": [list(g) for g in _gaps(valid, size)], "reason": why}
            path = await keep_aside_copy(self.conflict_dir, self.store.bucket_name, key, fd, size, description)
        finally:
            if fd >= 0:
                os.close(fd)
        self.report.kept_aside[key] = path
        log.error("recovery: %s: %s; the bytes kept locally are in %s (%s.json lists which)", key, why, path, path)

    async def _upload_spooled(self, entry: Entry, record: dict[str, Any], base_etag: str | None) -> str:
        """A spooled content: copy what is unchanged from the base (pinned to it), the rest from the spool file."""
        key, size = record["key"], int(record["size"])
        base = record.get("base") or {}
        base_size = int(base.get("size") or 0)
        version_id = base.get("version_id")
        valid = RangeSet()
        for start, end in record.get("valid") or []:
            valid.add(int(start), int(end))
        modified = RangeSet()
        for start, end in record.get("modified") or []:
            modified.add(int(start), int(end))
        spool = SpoolFile.reopen(entry.data_path) if size else None
        try:
            if spool is not None:
                spool.resize(size)

            async def ensure_local(start: int, end: int) -> None:
                await self._fetch_gaps(key, spool, valid, start, min(end, base_size), base_etag, version_id)

            request = UploadRequest(
                key=key, spool=spool, size=size, content_type=record.get("content_type") or "",
                meta=dict(record.get("meta") or {}), ensure_local=ensure_local,
                copyable=lambda start, end: end <= base_size and not modified.intersects(start, end),
                base_etag=base_etag, base_version_id=version_id,
            )
            if spool is None:
                info = await self.store.put(key, b"", content_type=request.content_type, meta=request.meta)
            else:
                info = await self.strategy.upload(request)
        finally:
            if spool is not None:
                spool.close()
        return info.etag

    async def _fetch_gaps(self, key: str, spool: SpoolFile, valid: RangeSet, start: int, end: int,
                          etag: str | None, version_id: str | None) -> None:
        spans = merge_close_ranges(valid.gaps(start, end), 1024 * 1024, CHUNK_LIMIT)
        for span_start, span_end in spans:
            buffer = bytearray(span_end - span_start)
            filled = await self.store.get_into(key, span_start, memoryview(buffer), if_match=etag,
                                               version_id=version_id)
            view = memoryview(buffer)
            for gap_start, gap_end in valid.gaps(span_start, span_end):
                piece = view[gap_start - span_start : min(gap_end, span_start + filled) - span_start]
                if len(piece):
                    spool.pwrite(gap_start, piece)
            valid.add(span_start, span_end)

    async def _complete(self, entry: Entry, record: dict[str, Any]) -> str:
        """A streamed commit: the parts its upload holds, the rest from the spool file (holes are zeros)."""
        key, size = record["key"], int(record["size"])
        upload = record["upload"]
        upload_id, part_size = upload["id"], int(upload["part_size"])
        recorded = {int(p[0]) for p in upload.get("parts") or []}
        spooled = RangeSet()
        for start, end in record.get("valid") or []:
            spooled.add(int(start), int(end))
        ranges = split_range(0, size, part_size) or [(0, 0)]
        try:
            listed = {p.part_number: p for p in await self.store.list_parts(key, upload_id)}
        except NoSuchUpload:
            listed = None
        if listed is None:
            lost = [r for n, r in enumerate(ranges, 1) if n in recorded and not spooled.covers(*r)]
            if lost:
                error = StoreError(f"the multipart upload {upload_id} of {key!r} is gone, and with it "
                                   f"{sum(e - s for s, e in lost)} bytes", code="NoSuchUpload", key=key)
                error.lost = True  # type: ignore[attr-defined]
                raise error
            upload_id = await self.store.init_multipart(key, content_type=record.get("content_type") or None,
                                                        meta=record.get("meta") or {})
            listed = {}
        spool = SpoolFile.reopen(entry.data_path) if os.path.exists(entry.data_path) else None
        if spool is not None and spool.size < size:
            spool.resize(size)  # the parts past its end are holes: zeros
        parts: list[PartInfo | None] = [None] * len(ranges)
        try:
            reader = spool.open_reader() if spool is not None else None
            slots = trio.Semaphore(self.parallel_count)

            async def send(index: int, start: int, end: int) -> None:
                try:
                    if reader is None:
                        data = bytes(end - start)
                        parts[index] = await self.store.upload_part(key, upload_id, index + 1, data)
                    else:
                        parts[index] = await self.store.upload_part_from_file(key, upload_id, index + 1, reader,
                                                                              start, end - start)
                finally:
                    slots.release()

            try:
                async with trio.open_nursery() as nursery:
                    for index, (start, end) in enumerate(ranges):
                        have = listed.get(index + 1)
                        if have is not None and have.size == end - start:
                            parts[index] = have
                            continue
                        if index + 1 in recorded and not spooled.covers(start, end):
                            error = StoreError(f"part {index + 1} of {key!r} is neither in its upload nor kept",
                                               key=key)
                            error.lost = True  # type: ignore[attr-defined]
                            raise error
                        await slots.acquire()
                        nursery.start_soon(send, index, start, end)
            except BaseExceptionGroup as group:
                store_error = store_error_from_group(group)
                if store_error is None:
                    raise
                raise store_error from None
            finally:
                if reader is not None:
                    reader.close()
        finally:
            if spool is not None:
                spool.close()
        await self.store.complete_multipart(key, upload_id, [p for p in parts if p is not None])
        # The Initiate's metadata may be older than the commit's: store the commit's (CopyObject, no data moved).
        await self.store.update_meta(key, content_type=record.get("content_type") or None,
                                     meta=record.get("meta") or {}, size=size)
        return (await self.store.head(key)).etag


def _gaps(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    covered = RangeSet()
    for start, end in ranges:
        covered.add(int(start), int(end))
    return covered.gaps(0, size)


def owned_uploads(root: str, mount: str, *, own: Session | None = None) -> tuple[set[str], set[str]]:
    """(session names, upload ids) this machine still owns under root/mount: every live session's name (its
    uploads carry it as their marker) and every upload a record names. `own`: the caller's session (live)."""
    names: set[str] = set()
    upload_ids: set[str] = set()
    parent = os.path.join(root, mount)
    try:
        entries = sorted(os.listdir(parent))
    except FileNotFoundError:
        entries = []
    for name in entries:
        path = os.path.join(parent, name)
        if not os.path.isdir(path):
            continue
        names.add(name)
        session = Session.__new__(Session)
        session.path, session.name, session._lock_fd = path, name, -1
        for _, record in session.entries():
            upload = (record or {}).get("upload") or {}
            if upload.get("id"):
                upload_ids.add(upload["id"])
    if own is not None:
        names.add(own.name)
    return names, upload_ids


@dataclass
class CleanupReport:
    """What `abort_stale_uploads` found: uploads aborted (or, dry run, to abort), skipped, and not ossmount's."""

    stale: list[MultipartUpload] = field(default_factory=list)
    owned: list[MultipartUpload] = field(default_factory=list)
    young: list[MultipartUpload] = field(default_factory=list)
    foreign: list[MultipartUpload] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def abort_stale_uploads(store: Any, prefix: str, *, older_than: float, owned_names: set[str] = frozenset(),
                              owned_ids: set[str] = frozenset(), dry_run: bool = False, everyone: bool = False,
                              now: float | None = None) -> CleanupReport:
    """Abort the incomplete multipart uploads under `prefix` that ossmount started (their marker), initiated more
    than `older_than` seconds ago, and owned by no session in `owned_names` / `owned_ids` (see the module
    docstring). `everyone`: uploads without the marker too. `dry_run`: only report. Never raises for one upload's
    failure (it is in `failed`); StoreError if the listing fails."""
    now = time.time() if now is None else now
    report = CleanupReport()
    for upload in await store.list_multipart_uploads(prefix):
        marker = upload.meta.get(UPLOAD_MARKER)
        if upload.upload_id in owned_ids or (marker is not None and marker in owned_names):
            report.owned.append(upload)
        elif marker is None and not everyone:
            report.foreign.append(upload)
        elif upload.initiated > now - older_than:
            report.young.append(upload)
        else:
            report.stale.append(upload)
    if dry_run:
        return report
    for upload in report.stale:
        try:
            await store.abort_multipart(upload.key, upload.upload_id)
        except NoSuchUpload:
            continue
        except StoreError as exc:
            report.failed[upload.upload_id] = str(exc)
    return report
