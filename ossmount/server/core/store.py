"""The durable state of the server: metadata in one sqlite database (WAL), data in immutable blob files.

Layout under the data directory:
  meta.sqlite3   buckets, object versions, multipart uploads and parts, blob refcounts
  blobs/<id>     object data, named by a random id (never by key, never reused); shared between objects by
                 refcount; a blob file's bytes never change once it is in blobs/
  tmp/           request bodies being spooled by the front end

Crash safety: a body file is renamed into blobs/ *before* the transaction that references it commits;
blob files are unlinked only *after* the transaction that drops their last reference commits. A kill
at any point therefore leaves either the old or the new state visible, plus possibly unreferenced blob
files, which `collect_garbage()` (run at startup) removes together with stale tmp files.

Keys are stored as UTF-8 BLOBs so sqlite orders them by bytes, as OSS lists them.

Concurrency (requests run in parallel worker threads; nothing here serialises them as a whole):
  * Reads take no lock. Each thread reads through a connection of its own (sqlite WAL: readers see the last
    committed state and never wait for the writer). A read that needs several statements to agree runs them in
    one read transaction (`_snapshot`).
  * `_write_lock` guards the writer connection: one write transaction at a time, each short (metadata only: no
    body is spooled, hashed or copied while it is held). What it protects are the cross-object invariants: a
    blob's `refs` equals the number of extents (of object versions and of parts) that name it; every object
    version and upload belongs to an existing bucket; each key has exactly one latest row. Every refcount change
    happens inside a write transaction, together with the rows that cause it.
  * Read-check-then-write sequences of one key (forbid-overwrite, append position, copy onto itself, the
    record a metadata change replaces) are made atomic one level up: the core holds a per-key lock around the
    whole operation (`ossmount.server.core.locking`), so a row read at the start is still current when its
    transaction commits. Transactions re-check what would corrupt the store if a caller got that wrong (the
    bucket still exists; a replaced record is still the stored one).
  * Blob files leave blobs/ only after their last reference is committed away, and only when no reader has
    them pinned: a GET pins its blobs (`pin_blobs`) for as long as it sends them, and an unlink that finds a
    pin is deferred to the last `release()`. A pin taken after the unlink sees the file gone, and the reader
    re-reads the object row (the object changed meanwhile; blob ids are never reused).
  * `_pin_lock` guards only the pin counts and the deferred unlinks; `_adopted_lock` only the set of blobs
    renamed into blobs/ whose transaction has not finished (so that `check_consistency` does not call them
    orphans).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import secrets
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Iterable, Iterator

from ossmount.crc64 import crc64_concat, crc64_file

from .model import SpooledBody


def encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def decode_key(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: no bound)."""
    trimmed = bytearray(prefix)
    while trimmed and trimmed[-1] == 0xFF:
        trimmed.pop()
    if not trimmed:
        return None
    trimmed[-1] += 1
    return bytes(trimmed)


@dataclass
class Extent:
    """`length` bytes of blob `blob` from `offset`, whose CRC-64 is `crc`."""

    blob: str
    offset: int
    length: int
    crc: int


@dataclass
class ObjectRecord:
    """Everything stored about one object version (or delete marker)."""

    type: str = "Normal"  # Normal | Multipart | Appendable | Symlink
    size: int = 0
    etag: str = ""  # without quotes
    crc64: int = 0
    mtime: float = 0.0
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)  # cache-control, content-disposition, ...
    meta: dict[str, str] = field(default_factory=dict)  # x-oss-meta-* with lowercase full names
    storage_class: str = "Standard"
    extents: list[Extent] = field(default_factory=list)
    symlink_target: str | None = None
    restore: dict | None = None  # {"requested": t, "days": n, "tier": str|None}
    owner: str = ""
    acl: str = "default"  # x-oss-object-acl: default (the bucket's) | private | public-read | public-read-write

    def to_json(self) -> str:
        # A shallow dict of the fields (in field order, as dataclasses.asdict gives them, which deep-copies
        # everything: a third of a small PUT's time in the core); only `extents` holds dataclasses.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["crc64"] = str(self.crc64)
        data["extents"] = _extent_rows(self.extents)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ObjectRecord":
        data = json.loads(text)
        data["crc64"] = int(data["crc64"])
        data["extents"] = _extents_from_rows(data["extents"])
        return cls(**data)


_RECORD_FIELDS = tuple(f.name for f in fields(ObjectRecord))


@functools.lru_cache(maxsize=32768)
def _listed_record(text: str) -> ObjectRecord:
    """The record stored as `text`, decoded once for all the listings that show it: a record's JSON is all there is
    of it, so a rewritten or changed object (new text) never meets an old entry. Decoding was ~40 % of a 1000-key
    ListObjects page. Callers only read it (`Store.row_from`). Sized above the largest directory the benchmark lists
    again and again (10,000 keys, plus a 5,010-entry tree): an LRU smaller than a listing that is repeated hits
    nothing (8,192 entries decoded 10,000 records for every `ls -l`); ~2 KiB a record, so at most ~64 MiB."""
    return ObjectRecord.from_json(text)


@dataclass
class ObjectRow:
    """One stored version of a key."""

    seq: int
    bucket: str
    key: str
    version_id: str  # "" when the bucket has never had versioning
    is_latest: bool
    delete_marker: bool
    record: ObjectRecord


@dataclass
class BucketRecord:
    name: str
    owner: str
    created: float
    storage_class: str
    versioning: str  # "" | Enabled | Suspended
    acl: str = "private"  # x-oss-acl: private | public-read | public-read-write


@dataclass
class UploadRecord:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    template: ObjectRecord  # metadata for the completed object
    forbid_overwrite: bool = False


@dataclass
class PartRecord:
    part_number: int
    size: int
    etag: str
    crc64: int
    mtime: float
    extents: list[Extent]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets(
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL,
    storage_class TEXT NOT NULL, versioning TEXT NOT NULL DEFAULT '', acl TEXT NOT NULL DEFAULT 'private');
CREATE TABLE IF NOT EXISTS blobs(id TEXT PRIMARY KEY, size INTEGER NOT NULL, refs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, bucket TEXT NOT NULL, key BLOB NOT NULL,
    version_id TEXT NOT NULL, is_latest INTEGER NOT NULL, delete_marker INTEGER NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS objects_by_key ON objects(bucket, key, seq);
CREATE INDEX IF NOT EXISTS objects_current ON objects(bucket, key) WHERE is_latest = 1 AND delete_marker = 0;
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key BLOB NOT NULL, initiated REAL NOT NULL,
    record TEXT NOT NULL, forbid_overwrite INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    crc64 TEXT NOT NULL, mtime REAL NOT NULL, extents TEXT NOT NULL,
    PRIMARY KEY(upload_id, part_number));
"""


def _extent_rows(extents: list[Extent]) -> list[list]:
    """Extents as JSON-ready rows; the CRC goes as a string because it may exceed 2**53."""
    return [[e.blob, e.offset, e.length, str(e.crc)] for e in extents]


def _extents_from_rows(rows: list[list]) -> list[Extent]:
    return [Extent(b, o, n, int(c)) for b, o, n, c in rows]


def _extents_json(extents: list[Extent]) -> str:
    return json.dumps(_extent_rows(extents))


def _extents_from_json(text: str) -> list[Extent]:
    return _extents_from_rows(json.loads(text))


_UPLOAD_COLUMNS = "upload_id, bucket, key, initiated, record, forbid_overwrite"


def _upload_from_row(row: tuple) -> UploadRecord:
    upload_id, bucket, key, initiated, record, forbid_overwrite = row
    return UploadRecord(upload_id, bucket, decode_key(key), initiated, ObjectRecord.from_json(record),
                        bool(forbid_overwrite))


def _new_id() -> str:
    return secrets.token_hex(16)


class BucketGone(Exception):
    """A write addressed a bucket that no longer exists (it was deleted while the request ran)."""


class StaleRecord(Exception):
    """A record to replace is no longer the stored one: the caller did not hold the key's lock (a bug)."""


class BlobPins:
    """Blob files a reader is sending; they stay in blobs/ until `release()` (idempotent)."""

    def __init__(self, store: "Store", blob_ids: list[str]):
        self._store = store
        self._blob_ids: list[str] | None = blob_ids

    def release(self) -> None:
        if self._blob_ids is not None:
            blob_ids, self._blob_ids = self._blob_ids, None
            self._store._unpin(blob_ids)


class Store:
    """sqlite + blob-file storage, safe to call from many threads at once (see the module docstring)."""

    def __init__(self, data_dir: str):
        self.data_dir = os.path.abspath(data_dir)
        self.blob_dir = os.path.join(self.data_dir, "blobs")
        self.tmp_dir = os.path.join(self.data_dir, "tmp")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        self._path = os.path.join(self.data_dir, "meta.sqlite3")
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=NORMAL")
        self._writer.executescript(_SCHEMA)
        self._migrate()
        self._thread = threading.local()  # .writing: this thread is inside a write transaction
        self._unlinks: list[str] = []  # blobs whose last reference the open write transaction dropped
        self._referenced: list[str] = []  # blobs the open write transaction references
        self._readers: list[sqlite3.Connection] = []  # idle reader connections
        self._readers_lock = threading.Lock()
        self._closed = False
        self._pins: Counter[str] = Counter()
        self._deferred: set[str] = set()  # unreferenced blobs kept for their pins
        self._pin_lock = threading.Lock()
        self._adopted: set[str] = set()  # in blobs/, not yet referenced by a committed transaction
        self._adopted_lock = threading.Lock()
        # Bucket rows by name, read on every request and changed only by the bucket operations below: each of those
        # bumps `_buckets_generation` after its commit, and a row read under an older generation is not kept.
        self._buckets: dict[str, tuple] = {}
        self._buckets_generation = 0
        self._buckets_lock = threading.Lock()
        self.collect_garbage()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=60)
        connection.execute("PRAGMA busy_timeout=60000")
        return connection

    def _migrate(self) -> None:
        """Bring a data directory written by an older server up to the current schema."""
        columns = {row[1] for row in self._writer.execute("PRAGMA table_info(buckets)").fetchall()}
        if "acl" not in columns:
            self._writer.execute("ALTER TABLE buckets ADD COLUMN acl TEXT NOT NULL DEFAULT 'private'")

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            self._closed = True
            for connection in self._readers:
                connection.close()
            self._readers.clear()
            self._writer.close()

    def blob_path(self, blob_id: str) -> str:
        return os.path.join(self.blob_dir, blob_id)

    def unlink_blob(self, blob_id: str) -> None:
        """Delete a blob file no committed row references (a body adopted for a write that failed)."""
        with self._adopted_lock:
            self._adopted.discard(blob_id)
        self._remove_file(blob_id)

    def _remove_file(self, blob_id: str) -> None:
        try:
            os.unlink(self.blob_path(blob_id))
        except FileNotFoundError:
            pass

    # -- connections and transactions ------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading: inside a write transaction its writer, else an idle reader (or a new one)."""
        if getattr(self._thread, "writing", False):
            yield self._writer
            return
        with self._readers_lock:
            connection = self._readers.pop() if self._readers else None
        if connection is None:
            connection = self._connect()
        try:
            yield connection
        finally:
            with self._readers_lock:
                if self._closed:
                    connection.close()
                else:
                    self._readers.append(connection)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A reader in one read transaction: several statements see the same committed state."""
        with self._read() as db:
            if db is self._writer:
                yield db
                return
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection, under `_write_lock`. Blob files whose last reference
        it drops are unlinked after it commits (unless pinned); blobs it references stop being 'adopted'."""
        if getattr(self._thread, "writing", False):
            raise RuntimeError("nested write transaction")
        with self._write_lock:
            self._thread.writing = True
            self._unlinks, self._referenced = [], []
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise
                self._writer.execute("COMMIT")
                unlinks, referenced = self._unlinks, self._referenced
            finally:
                self._thread.writing = False
                self._unlinks, self._referenced = [], []
        if referenced:
            with self._adopted_lock:
                self._adopted.difference_update(referenced)
        self._unlink_unpinned(unlinks)

    def _require_bucket(self, db: sqlite3.Connection, bucket: str) -> None:
        if not db.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchall():
            raise BucketGone(bucket)

    # -- blobs -----------------------------------------------------------------------------------

    def adopt_body(self, body: SpooledBody | None) -> list[Extent]:
        """Move a request body into the blob store; returns its extents (none for an empty body).

        The blob row (with refs 0) is inserted by `_add_refs` inside the caller's transaction; until
        then the file is 'adopted' (an orphan for garbage collection after a crash, not for `check_consistency`).
        A caller whose transaction fails gives it back with `unlink_blob`.
        """
        if body is None or body.size == 0:
            return []
        blob_id = _new_id()
        path = self.blob_path(blob_id)
        with self._adopted_lock:
            self._adopted.add(blob_id)
        if body.data is not None:
            with open(path, "wb") as f:
                f.write(body.data)
        elif body.path is not None:
            try:
                os.rename(body.path, path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.copyfile(body.path, path)  # spooled on another filesystem: copy instead
                os.unlink(body.path)
        else:
            return []
        return [Extent(blob_id, 0, body.size, body.crc64)]

    def _add_refs(self, db: sqlite3.Connection, extents: list[Extent], delta: int) -> None:
        """Change the refcounts of the blobs of `extents` (once per extent) inside the open write transaction."""
        for extent in extents:
            if delta > 0:
                db.execute(
                    "INSERT INTO blobs(id, size, refs) VALUES(?, ?, ?) ON CONFLICT(id) DO UPDATE SET refs = refs + ?",
                    (extent.blob, extent.offset + extent.length, delta, delta),
                )
                self._referenced.append(extent.blob)
                continue
            row = db.execute("UPDATE blobs SET refs = refs + ? WHERE id = ? RETURNING refs",
                             (delta, extent.blob)).fetchall()
            if row and row[0][0] <= 0:
                db.execute("DELETE FROM blobs WHERE id = ?", (extent.blob,))
                self._unlinks.append(extent.blob)

    def pin_blobs(self, blob_ids: Iterable[str]) -> BlobPins | None:
        """Keep these blob files in blobs/ until the returned pins are released; None when one of them is already
        gone (the object that named it was replaced: re-read the row and pin again)."""
        ids = sorted(set(blob_ids))
        with self._pin_lock:
            self._pins.update(ids)
        pins = BlobPins(self, ids)
        if all(os.path.exists(self.blob_path(blob_id)) for blob_id in ids):
            return pins
        pins.release()
        return None

    def _unpin(self, blob_ids: list[str]) -> None:
        with self._pin_lock:
            self._pins.subtract(blob_ids)
            for blob_id in blob_ids:
                if self._pins[blob_id] <= 0:
                    del self._pins[blob_id]
                    if blob_id in self._deferred:
                        self._deferred.discard(blob_id)
                        self._remove_file(blob_id)

    def _unlink_unpinned(self, blob_ids: list[str]) -> None:
        with self._pin_lock:
            for blob_id in blob_ids:
                if self._pins[blob_id] > 0:
                    self._deferred.add(blob_id)
                else:
                    self._pins.pop(blob_id, None)
                    self._remove_file(blob_id)

    def collect_garbage(self) -> None:
        """Remove blob files no row references and leftover tmp files (at startup, after a crash)."""
        with self._write() as db:
            known = {row[0] for row in db.execute("SELECT id FROM blobs WHERE refs > 0").fetchall()}
            db.execute("DELETE FROM blobs WHERE refs <= 0")
            for name in os.listdir(self.blob_dir):
                if name not in known:
                    self._remove_file(name)
            for name in os.listdir(self.tmp_dir):
                try:
                    os.unlink(os.path.join(self.tmp_dir, name))
                except OSError:
                    pass

    def check_consistency(self, *, data: bool = False) -> list[str]:
        """fsck: every invariant of the module docstring, checked at one instant (no write commits meanwhile).

        Returns one line per problem (empty: consistent): refcounts that differ from the extents naming the blob;
        referenced blobs without a file or shorter than their extents; blob files nothing references (other than
        bodies being adopted and pinned files awaiting their unlink); keys with no or several latest rows;
        object sizes and CRC-64s that do not add up from their extents; rows of missing buckets and uploads.
        With `data`, each extent's CRC-64 is recomputed from the blob file."""
        problems: list[str] = []
        with self._write_lock:
            db = self._writer
            expected: Counter[str] = Counter()
            needed: dict[str, int] = {}
            extents_to_check: list[tuple[str, Extent]] = []

            def note(where: str, extents: list[Extent]) -> None:
                for extent in extents:
                    expected[extent.blob] += 1
                    needed[extent.blob] = max(needed.get(extent.blob, 0), extent.offset + extent.length)
                    if data:
                        extents_to_check.append((where, extent))

            buckets = {row[0] for row in db.execute("SELECT name FROM buckets").fetchall()}
            latest: Counter[tuple[str, bytes]] = Counter()
            keys: set[tuple[str, bytes]] = set()
            for bucket, key, version_id, is_latest, delete_marker, text in db.execute(
                    "SELECT bucket, key, version_id, is_latest, delete_marker, record FROM objects").fetchall():
                where = f"{bucket}/{decode_key(key)}" + (f"?versionId={version_id}" if version_id else "")
                keys.add((bucket, bytes(key)))
                latest[(bucket, bytes(key))] += is_latest
                if bucket not in buckets:
                    problems.append(f"{where}: bucket {bucket} does not exist")
                record = ObjectRecord.from_json(text)
                note(where, record.extents)
                if delete_marker:
                    continue
                if sum(e.length for e in record.extents) != record.size:
                    problems.append(f"{where}: extents hold {sum(e.length for e in record.extents)} bytes, "
                                    f"the record says {record.size}")
                elif crc64_concat([(e.crc, e.length) for e in record.extents]) != record.crc64:
                    problems.append(f"{where}: the extents' CRC-64s do not combine to the record's")
            for bucket, key in sorted(keys):
                if latest[(bucket, key)] != 1:
                    problems.append(f"{bucket}/{decode_key(key)}: {latest[(bucket, key)]} latest versions")
            uploads = {row[0]: row[1] for row in db.execute("SELECT upload_id, bucket FROM uploads").fetchall()}
            for upload_id, bucket in uploads.items():
                if bucket not in buckets:
                    problems.append(f"upload {upload_id}: bucket {bucket} does not exist")
            for upload_id, number, size, text in db.execute(
                    "SELECT upload_id, part_number, size, extents FROM parts").fetchall():
                where = f"upload {upload_id} part {number}"
                if upload_id not in uploads:
                    problems.append(f"{where}: the upload does not exist")
                extents = _extents_from_json(text)
                note(where, extents)
                if sum(e.length for e in extents) != size:
                    problems.append(f"{where}: extents hold {sum(e.length for e in extents)} bytes, not {size}")
            rows = {blob_id: refs for blob_id, refs in db.execute("SELECT id, refs FROM blobs").fetchall()}
            for blob_id in sorted(set(rows) | set(expected)):
                if rows.get(blob_id, 0) != expected[blob_id]:
                    problems.append(f"blob {blob_id}: refs {rows.get(blob_id)}, named by {expected[blob_id]} extents")
                if expected[blob_id]:
                    try:
                        size = os.stat(self.blob_path(blob_id)).st_size
                    except FileNotFoundError:
                        problems.append(f"blob {blob_id}: referenced, but its file is missing")
                        continue
                    if size < needed[blob_id]:
                        problems.append(f"blob {blob_id}: {size} bytes, extents need {needed[blob_id]}")
            with self._adopted_lock, self._pin_lock:
                in_flight = self._adopted | self._deferred
            for name in sorted(os.listdir(self.blob_dir)):
                if name not in rows and name not in in_flight:
                    problems.append(f"blob {name}: file not referenced by any row")
        for where, extent in extents_to_check:
            try:
                if crc64_file(self.blob_path(extent.blob), extent.offset, extent.length) != extent.crc:
                    problems.append(f"{where}: blob {extent.blob} bytes {extent.offset}+{extent.length} "
                                    f"do not match their CRC-64")
            except OSError as exc:
                problems.append(f"{where}: blob {extent.blob} unreadable: {exc.strerror}")
        return problems

    # -- buckets ---------------------------------------------------------------------------------

    def get_bucket(self, name: str) -> BucketRecord | None:
        """The bucket's row (a record of its own: callers may change it), from a cache of rows that the bucket writes
        below invalidate."""
        writing = getattr(self._thread, "writing", False)
        cached = None if writing else self._buckets.get(name)
        if cached is not None:
            return BucketRecord(*cached)
        generation = self._buckets_generation
        with self._read() as db:
            rows = db.execute(
                "SELECT name, owner, created, storage_class, versioning, acl FROM buckets WHERE name = ?", (name,)
            ).fetchall()
        if not rows:
            return None
        if not writing:
            with self._buckets_lock:
                if generation == self._buckets_generation:
                    self._buckets[name] = tuple(rows[0])
        return BucketRecord(*rows[0])

    @contextlib.contextmanager
    def _bucket_write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that changes bucket rows: the cached rows are dropped once it has committed (or
        failed), and rows read before then are not cached."""
        try:
            with self._write() as db:
                yield db
        finally:
            with self._buckets_lock:
                self._buckets_generation += 1
                self._buckets.clear()

    def create_bucket(self, name: str, owner: str, created: float, storage_class: str, acl: str = "private") -> bool:
        """Create a bucket unless one of that name exists; returns whether it was created."""
        with self._bucket_write() as db:
            cursor = db.execute(
                "INSERT INTO buckets(name, owner, created, storage_class, acl) VALUES(?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (name, owner, created, storage_class, acl),
            )
            return cursor.rowcount == 1

    def set_bucket_acl(self, name: str, acl: str) -> None:
        with self._bucket_write() as db:
            db.execute("UPDATE buckets SET acl = ? WHERE name = ?", (acl, name))

    def list_buckets(self) -> list[BucketRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT name, owner, created, storage_class, versioning, acl FROM buckets ORDER BY name"
            ).fetchall()
        return [BucketRecord(*row) for row in rows]

    def delete_bucket(self, name: str) -> bool:
        """Delete a bucket that holds no object version and no upload; returns False (and keeps it) otherwise."""
        with self._bucket_write() as db:
            if (db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchall()
                    or db.execute("SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1", (name,)).fetchall()):
                return False
            db.execute("DELETE FROM buckets WHERE name = ?", (name,))
            return True

    def set_versioning(self, name: str, status: str) -> None:
        with self._bucket_write() as db:
            db.execute("UPDATE buckets SET versioning = ? WHERE name = ?", (status, name))

    def bucket_stat(self, name: str) -> dict:
        """Totals for GetBucketStat: storage bytes, object and upload counts, per class (one SQL pass)."""
        with self._snapshot() as db:
            rows = db.execute(
                "SELECT json_extract(record, '$.storage_class'), COUNT(*), TOTAL(json_extract(record, '$.size')),"
                " MAX(json_extract(record, '$.mtime')) FROM objects"
                " WHERE bucket = ? AND is_latest = 1 AND delete_marker = 0 GROUP BY 1", (name,)
            ).fetchall()
            uploads = db.execute("SELECT COUNT(*) FROM uploads WHERE bucket = ?", (name,)).fetchall()[0][0]
            markers = db.execute(
                "SELECT COUNT(*) FROM objects WHERE bucket = ? AND delete_marker = 1", (name,)
            ).fetchall()[0][0]
        stat = {"storage": 0, "count": 0, "uploads": uploads, "delete_markers": markers, "by_class": {},
                "last_modified": 0}
        for storage_class, count, size, last_modified in rows:
            stat["storage"] += int(size)
            stat["count"] += count
            stat["by_class"][storage_class] = [int(size), count]
            stat["last_modified"] = max(stat["last_modified"], last_modified or 0)
        return stat

    # -- objects ---------------------------------------------------------------------------------

    def _row(self, row, shared: bool = False) -> ObjectRow:
        seq, bucket, key, version_id, is_latest, delete_marker, record = row
        return ObjectRow(seq, bucket, decode_key(key), version_id, bool(is_latest), bool(delete_marker),
                         _listed_record(record) if shared else ObjectRecord.from_json(record))

    _COLUMNS = "seq, bucket, key, version_id, is_latest, delete_marker, record"

    def get_latest(self, bucket: str, key: str, *, shared: bool = False) -> ObjectRow | None:
        """The latest version of a key (possibly a delete marker), or None. `shared`: the caller only reads the
        record, which may then be the decoded record other readers of the same version share (`_listed_record`:
        HeadObject and GetObject decode no JSON for a version already seen)."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                (bucket, encode_key(key)),
            ).fetchall()
        return self._row(rows[0], shared) if rows else None

    def get_version(self, bucket: str, key: str, version_id: str, *, shared: bool = False) -> ObjectRow | None:
        """One version of a key, or None; `shared` as for `get_latest`."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                (bucket, encode_key(key), version_id),
            ).fetchall()
        return self._row(rows[0], shared) if rows else None

    def _insert_version(self, db: sqlite3.Connection, bucket: str, key: str, record: ObjectRecord,
                        versioning: str, delete_marker: bool = False) -> str:
        """Insert a new latest version under the bucket's versioning mode; returns its version id.

        Runs inside a write transaction. Unversioned buckets keep one row per key; suspended buckets
        replace the "null" version; enabled buckets keep every version.
        """
        self._require_bucket(db, bucket)
        raw_key = encode_key(key)
        if versioning == "Enabled":
            version_id, replaced = "CAEQ" + _new_id(), []
        elif versioning == "Suspended":
            version_id = "null"
            replaced = db.execute(
                "SELECT seq, record FROM objects WHERE bucket = ? AND key = ? AND version_id = 'null'",
                (bucket, raw_key),
            ).fetchall()
        else:
            version_id = ""
            replaced = db.execute(
                "SELECT seq, record FROM objects WHERE bucket = ? AND key = ?", (bucket, raw_key)
            ).fetchall()
        # Reference the new extents first: a copy onto itself shares the blobs it replaces.
        self._add_refs(db, record.extents, +1)
        for seq, text in replaced:
            self._add_refs(db, ObjectRecord.from_json(text).extents, -1)
            db.execute("DELETE FROM objects WHERE seq = ?", (seq,))
        if versioning:  # an unversioned key's rows were all deleted just above
            db.execute("UPDATE objects SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1",
                       (bucket, raw_key))
        db.execute(
            "INSERT INTO objects(bucket, key, version_id, is_latest, delete_marker, record) VALUES(?, ?, ?, 1, ?, ?)",
            (bucket, raw_key, version_id, int(delete_marker), record.to_json()),
        )
        return version_id

    def put_object(self, bucket: str, key: str, record: ObjectRecord, versioning: str) -> str:
        """Make `record` the latest version of `key` (its extents must already be in blobs/). Raises BucketGone."""
        with self._write() as db:
            return self._insert_version(db, bucket, key, record, versioning)

    def replace_latest_record(self, row: ObjectRow, record: ObjectRecord) -> None:
        """Rewrite a version's record in place (metadata-only changes, appends, restore state). Raises
        StaleRecord when `row` is no longer what is stored (the caller must hold the key's lock)."""
        with self._write() as db:
            current = db.execute("SELECT record FROM objects WHERE seq = ?", (row.seq,)).fetchall()
            if not current or ObjectRecord.from_json(current[0][0]) != row.record:
                raise StaleRecord(f"{row.bucket}/{row.key} changed while it was being updated")
            self._add_refs(db, record.extents, +1)
            self._add_refs(db, row.record.extents, -1)
            db.execute("UPDATE objects SET record = ? WHERE seq = ?", (record.to_json(), row.seq))

    def add_delete_marker(self, bucket: str, key: str, versioning: str, mtime: float, owner: str) -> str:
        with self._write() as db:
            return self._insert_version(db, bucket, key, ObjectRecord(mtime=mtime, owner=owner), versioning, True)

    def delete_unversioned(self, bucket: str, key: str) -> bool:
        """Remove every row of `key` (unversioned bucket); returns whether anything existed."""
        with self._write() as db:
            rows = db.execute(
                "SELECT seq, record FROM objects WHERE bucket = ? AND key = ?", (bucket, encode_key(key))
            ).fetchall()
            for seq, text in rows:
                self._add_refs(db, ObjectRecord.from_json(text).extents, -1)
                db.execute("DELETE FROM objects WHERE seq = ?", (seq,))
        return bool(rows)

    def delete_version(self, bucket: str, key: str, version_id: str) -> ObjectRow | None:
        """Permanently remove one version; the newest remaining one becomes latest."""
        with self._write() as db:
            removed = self.get_version(bucket, key, version_id)
            if removed is None:
                return None
            self._add_refs(db, removed.record.extents, -1)
            db.execute("DELETE FROM objects WHERE seq = ?", (removed.seq,))
            if removed.is_latest:
                db.execute(
                    "UPDATE objects SET is_latest = 1 WHERE seq = (SELECT MAX(seq) FROM objects WHERE bucket = ? AND key = ?)",
                    (bucket, encode_key(key)),
                )
        return removed

    def current_batch(self, bucket: str, lower: bytes, inclusive: bool, upper: bytes | None,
                      limit: int) -> list[tuple[bytes, tuple]]:
        """Up to `limit` current (non-deleted) objects with lower <(=) key < upper, by key bytes.

        Rows come unparsed (turn them into ObjectRow with `row_from`) so that keys rolled up into a
        common prefix cost no JSON decoding."""
        clauses = ["bucket = ?", "is_latest = 1", "delete_marker = 0", "key >= ?" if inclusive else "key > ?"]
        params: list = [bucket, lower]
        if upper is not None:
            clauses.append("key < ?")
            params.append(upper)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [(bytes(row[2]), row) for row in rows]

    def row_from(self, raw_row: tuple) -> ObjectRow:
        """A `current_batch` row as an ObjectRow for a listing entry. Its record is shared with other listings of the
        same version (`_listed_record`): read it, never modify it."""
        seq, bucket, key, version_id, is_latest, delete_marker, record = raw_row
        return ObjectRow(seq, bucket, decode_key(key), version_id, bool(is_latest), bool(delete_marker),
                         _listed_record(record))

    def iter_versions(self, bucket: str, after_key: bytes | None, prefix: bytes) -> Iterator[tuple[bytes, ObjectRow]]:
        """Every version and delete marker, by key bytes then newest first."""
        upper = prefix_successor(prefix) if prefix else None
        clauses = ["bucket = ?", "key >= ?"]
        params: list = [bucket, prefix]
        if after_key is not None:
            clauses.append("key >= ?")
            params.append(after_key)
        if upper is not None:
            clauses.append("key < ?")
            params.append(upper)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE {' AND '.join(clauses)} ORDER BY key, seq DESC", params
            ).fetchall()
        for row in rows:
            yield bytes(row[2]), self._row(row)

    # -- multipart -------------------------------------------------------------------------------

    def create_upload(self, bucket: str, key: str, initiated: float, template: ObjectRecord,
                      forbid_overwrite: bool) -> str:
        """Register a multipart upload; returns its id. Raises BucketGone."""
        upload_id = _new_id().upper()
        with self._write() as db:
            self._require_bucket(db, bucket)
            db.execute(
                "INSERT INTO uploads(upload_id, bucket, key, initiated, record, forbid_overwrite) VALUES(?, ?, ?, ?, ?, ?)",
                (upload_id, bucket, encode_key(key), initiated, template.to_json(), int(forbid_overwrite)),
            )
        return upload_id

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        with self._read() as db:
            rows = db.execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?", (upload_id,)).fetchall()
        return _upload_from_row(rows[0]) if rows else None

    def put_part(self, upload_id: str, part: PartRecord) -> bool:
        """Store (or replace) one part; False when the upload no longer exists (nothing is stored)."""
        with self._write() as db:
            if not db.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchall():
                return False
            old = db.execute(
                "SELECT extents FROM parts WHERE upload_id = ? AND part_number = ?", (upload_id, part.part_number)
            ).fetchall()
            if old:
                self._add_refs(db, _extents_from_json(old[0][0]), -1)
            self._add_refs(db, part.extents, +1)
            db.execute(
                "INSERT OR REPLACE INTO parts(upload_id, part_number, size, etag, crc64, mtime, extents) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (upload_id, part.part_number, part.size, part.etag, str(part.crc64), part.mtime, _extents_json(part.extents)),
            )
        return True

    def list_parts(self, upload_id: str) -> list[PartRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT part_number, size, etag, crc64, mtime, extents FROM parts WHERE upload_id = ? ORDER BY part_number",
                (upload_id,),
            ).fetchall()
        return [PartRecord(n, s, e, int(c), m, _extents_from_json(x)) for n, s, e, c, m, x in rows]

    def _drop_upload(self, db: sqlite3.Connection, upload_id: str) -> None:
        for (text,) in db.execute("SELECT extents FROM parts WHERE upload_id = ?", (upload_id,)).fetchall():
            self._add_refs(db, _extents_from_json(text), -1)
        db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

    def abort_upload(self, upload_id: str) -> None:
        with self._write() as db:
            self._drop_upload(db, upload_id)

    def complete_upload(self, upload: UploadRecord, record: ObjectRecord, versioning: str) -> str:
        """Atomically publish the stitched object and drop the upload and its parts. Raises BucketGone."""
        with self._write() as db:
            version_id = self._insert_version(db, upload.bucket, upload.key, record, versioning)
            self._drop_upload(db, upload.upload_id)
        return version_id

    def list_uploads(self, bucket: str, prefix: bytes) -> list[UploadRecord]:
        """All uploads of a bucket under `prefix`, ordered by key bytes, then initiation, then id."""
        upper = prefix_successor(prefix) if prefix else None
        sql = f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE bucket = ? AND key >= ?"
        params: list = [bucket, prefix]
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        sql += " ORDER BY key, initiated, upload_id"
        with self._read() as db:
            rows = db.execute(sql, params).fetchall()
        return [_upload_from_row(row) for row in rows]
