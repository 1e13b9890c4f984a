"""The durable state of the server: metadata in one sqlite database (WAL), data in immutable blob files.

Layout under the data directory:
  meta.sqlite3   buckets, object versions, multipart uploads and parts, blob refcounts
  blobs/<id>     object data, named by a random id (never by key); shared between objects by refcount
  tmp/           request bodies being spooled by the front end

Crash safety: a body file is renamed into blobs/ *before* the transaction that references it commits;
blob files are unlinked only *after* the transaction that drops their last reference commits. A kill
at any point therefore leaves either the old or the new state visible, plus possibly unreferenced blob
files, which `collect_garbage()` (run at startup) removes together with stale tmp files.

Keys are stored as UTF-8 BLOBs so sqlite orders them by bytes, as OSS lists them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from typing import Iterator

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
        data = asdict(self)
        data["crc64"] = str(self.crc64)
        data["extents"] = _extent_rows(self.extents)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ObjectRecord":
        data = json.loads(text)
        data["crc64"] = int(data["crc64"])
        data["extents"] = _extents_from_rows(data["extents"])
        return cls(**data)


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


class Store:
    """sqlite + blob-file storage. Thread-safe: every public method holds one lock."""

    def __init__(self, data_dir: str):
        self.data_dir = os.path.abspath(data_dir)
        self.blob_dir = os.path.join(self.data_dir, "blobs")
        self.tmp_dir = os.path.join(self.data_dir, "tmp")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            os.path.join(self.data_dir, "meta.sqlite3"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._pending_unlinks: list[str] = []
        self.collect_garbage()

    def _migrate(self) -> None:
        """Bring a data directory written by an older server up to the current schema."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(buckets)")}
        if "acl" not in columns:
            self._db.execute("ALTER TABLE buckets ADD COLUMN acl TEXT NOT NULL DEFAULT 'private'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def blob_path(self, blob_id: str) -> str:
        return os.path.join(self.blob_dir, blob_id)

    def unlink_blob(self, blob_id: str) -> None:
        """Delete a blob file if it is still there."""
        try:
            os.unlink(self.blob_path(blob_id))
        except FileNotFoundError:
            pass

    # -- transactions and blobs ------------------------------------------------------------------

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._pending_unlinks = []

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        for blob_id in self._pending_unlinks:
            self.unlink_blob(blob_id)
        self._pending_unlinks = []

    def _rollback(self) -> None:
        self._db.execute("ROLLBACK")
        self._pending_unlinks = []

    def transaction(self):
        """Context manager: hold the lock and run the body in one sqlite transaction."""
        store = self

        class _Tx:
            def __enter__(self_inner):
                store._lock.acquire()
                try:
                    store._begin()
                except BaseException:
                    store._lock.release()
                    raise
                return store

            def __exit__(self_inner, exc_type, exc, tb):
                try:
                    if exc_type is None:
                        store._commit()
                    else:
                        store._rollback()
                finally:
                    store._lock.release()
                return False

        return _Tx()

    def adopt_body(self, body: SpooledBody | None) -> list[Extent]:
        """Move a request body into the blob store; returns its extents (none for an empty body).

        The blob row (with refs 0) is inserted by `_add_refs` inside the caller's transaction; until
        then the file is an orphan that garbage collection would remove.
        """
        if body is None or body.size == 0:
            return []
        blob_id = _new_id()
        path = self.blob_path(blob_id)
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

    def _add_refs(self, extents: list[Extent], delta: int) -> None:
        for extent in extents:
            if delta > 0:
                self._db.execute(
                    "INSERT INTO blobs(id, size, refs) VALUES(?, ?, ?) ON CONFLICT(id) DO UPDATE SET refs = refs + ?",
                    (extent.blob, extent.offset + extent.length, delta, delta),
                )
                continue
            self._db.execute("UPDATE blobs SET refs = refs + ? WHERE id = ?", (delta, extent.blob))
            row = self._db.execute("SELECT refs FROM blobs WHERE id = ?", (extent.blob,)).fetchone()
            if row is not None and row[0] <= 0:
                self._db.execute("DELETE FROM blobs WHERE id = ?", (extent.blob,))
                self._pending_unlinks.append(extent.blob)

    def collect_garbage(self) -> None:
        """Remove blob files no row references and leftover tmp files (after a crash)."""
        with self._lock:
            known = {row[0] for row in self._db.execute("SELECT id FROM blobs WHERE refs > 0")}
            self._db.execute("DELETE FROM blobs WHERE refs <= 0")
            for name in os.listdir(self.blob_dir):
                if name not in known:
                    try:
                        os.unlink(os.path.join(self.blob_dir, name))
                    except OSError:
                        pass
            for name in os.listdir(self.tmp_dir):
                try:
                    os.unlink(os.path.join(self.tmp_dir, name))
                except OSError:
                    pass

    # -- buckets ---------------------------------------------------------------------------------

    def get_bucket(self, name: str) -> BucketRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, owner, created, storage_class, versioning, acl FROM buckets WHERE name = ?", (name,)
            ).fetchone()
        return BucketRecord(*row) if row else None

    def create_bucket(self, name: str, owner: str, created: float, storage_class: str, acl: str = "private") -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO buckets(name, owner, created, storage_class, acl) VALUES(?, ?, ?, ?, ?)",
                (name, owner, created, storage_class, acl),
            )

    def set_bucket_acl(self, name: str, acl: str) -> None:
        with self.transaction():
            self._db.execute("UPDATE buckets SET acl = ? WHERE name = ?", (acl, name))

    def list_buckets(self) -> list[BucketRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, owner, created, storage_class, versioning, acl FROM buckets ORDER BY name"
            ).fetchall()
        return [BucketRecord(*row) for row in rows]

    def bucket_is_empty(self, name: str) -> bool:
        with self._lock:
            has_object = self._db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone()
            has_upload = self._db.execute("SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1", (name,)).fetchone()
        return not has_object and not has_upload

    def delete_bucket(self, name: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM buckets WHERE name = ?", (name,))

    def set_versioning(self, name: str, status: str) -> None:
        with self.transaction():
            self._db.execute("UPDATE buckets SET versioning = ? WHERE name = ?", (status, name))

    def bucket_stat(self, name: str) -> dict:
        """Totals for GetBucketStat: storage bytes, object and upload counts, per class (one SQL pass)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT json_extract(record, '$.storage_class'), COUNT(*), TOTAL(json_extract(record, '$.size')),"
                " MAX(json_extract(record, '$.mtime')) FROM objects"
                " WHERE bucket = ? AND is_latest = 1 AND delete_marker = 0 GROUP BY 1", (name,)
            ).fetchall()
            uploads = self._db.execute("SELECT COUNT(*) FROM uploads WHERE bucket = ?", (name,)).fetchone()[0]
            markers = self._db.execute(
                "SELECT COUNT(*) FROM objects WHERE bucket = ? AND delete_marker = 1", (name,)
            ).fetchone()[0]
        stat = {"storage": 0, "count": 0, "uploads": uploads, "delete_markers": markers, "by_class": {},
                "last_modified": 0}
        for storage_class, count, size, last_modified in rows:
            stat["storage"] += int(size)
            stat["count"] += count
            stat["by_class"][storage_class] = [int(size), count]
            stat["last_modified"] = max(stat["last_modified"], last_modified or 0)
        return stat

    # -- objects ---------------------------------------------------------------------------------

    def _row(self, row) -> ObjectRow:
        seq, bucket, key, version_id, is_latest, delete_marker, record = row
        return ObjectRow(seq, bucket, decode_key(key), version_id, bool(is_latest), bool(delete_marker),
                         ObjectRecord.from_json(record))

    _COLUMNS = "seq, bucket, key, version_id, is_latest, delete_marker, record"

    def get_latest(self, bucket: str, key: str) -> ObjectRow | None:
        """The latest version of a key (possibly a delete marker), or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                (bucket, encode_key(key)),
            ).fetchone()
        return self._row(row) if row else None

    def get_version(self, bucket: str, key: str, version_id: str) -> ObjectRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                (bucket, encode_key(key), version_id),
            ).fetchone()
        return self._row(row) if row else None

    def _insert_version(self, bucket: str, key: str, record: ObjectRecord, versioning: str,
                        delete_marker: bool = False) -> str:
        """Insert a new latest version under the bucket's versioning mode; returns its version id.

        Must run inside a transaction. Unversioned buckets keep one row per key; suspended buckets
        replace the "null" version; enabled buckets keep every version.
        """
        raw_key = encode_key(key)
        if versioning == "Enabled":
            version_id, replaced = "CAEQ" + _new_id(), []
        elif versioning == "Suspended":
            version_id = "null"
            replaced = self._db.execute(
                "SELECT seq, record FROM objects WHERE bucket = ? AND key = ? AND version_id = 'null'",
                (bucket, raw_key),
            ).fetchall()
        else:
            version_id = ""
            replaced = self._db.execute(
                "SELECT seq, record FROM objects WHERE bucket = ? AND key = ?", (bucket, raw_key)
            ).fetchall()
        # Reference the new extents first: a copy onto itself shares the blobs it replaces.
        self._add_refs(record.extents, +1)
        for seq, text in replaced:
            self._add_refs(ObjectRecord.from_json(text).extents, -1)
            self._db.execute("DELETE FROM objects WHERE seq = ?", (seq,))
        if versioning:  # an unversioned key's rows were all deleted just above
            self._db.execute("UPDATE objects SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1",
                             (bucket, raw_key))
        self._db.execute(
            "INSERT INTO objects(bucket, key, version_id, is_latest, delete_marker, record) VALUES(?, ?, ?, 1, ?, ?)",
            (bucket, raw_key, version_id, int(delete_marker), record.to_json()),
        )
        return version_id

    def put_object(self, bucket: str, key: str, record: ObjectRecord, versioning: str) -> str:
        """Make `record` the latest version of `key` (its extents must already be in blobs/)."""
        with self.transaction():
            return self._insert_version(bucket, key, record, versioning)

    def replace_latest_record(self, row: ObjectRow, record: ObjectRecord) -> None:
        """Rewrite a version's record in place (metadata-only changes, appends, restore state)."""
        with self.transaction():
            self._add_refs(record.extents, +1)
            self._add_refs(row.record.extents, -1)
            self._db.execute("UPDATE objects SET record = ? WHERE seq = ?", (record.to_json(), row.seq))

    def add_delete_marker(self, bucket: str, key: str, versioning: str, mtime: float, owner: str) -> str:
        with self.transaction():
            return self._insert_version(bucket, key, ObjectRecord(mtime=mtime, owner=owner), versioning, True)

    def delete_unversioned(self, bucket: str, key: str) -> bool:
        """Remove every row of `key` (unversioned bucket); returns whether anything existed."""
        with self.transaction():
            rows = self._db.execute(
                "SELECT seq, record FROM objects WHERE bucket = ? AND key = ?", (bucket, encode_key(key))
            ).fetchall()
            for seq, text in rows:
                self._add_refs(ObjectRecord.from_json(text).extents, -1)
                self._db.execute("DELETE FROM objects WHERE seq = ?", (seq,))
        return bool(rows)

    def delete_version(self, bucket: str, key: str, version_id: str) -> ObjectRow | None:
        """Permanently remove one version; the newest remaining one becomes latest."""
        with self.transaction():
            removed = self.get_version(bucket, key, version_id)
            if removed is None:
                return None
            self._add_refs(removed.record.extents, -1)
            self._db.execute("DELETE FROM objects WHERE seq = ?", (removed.seq,))
            if removed.is_latest:
                self._db.execute(
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
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [(bytes(row[2]), row) for row in rows]

    def row_from(self, raw_row: tuple) -> ObjectRow:
        return self._row(raw_row)

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
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM objects WHERE {' AND '.join(clauses)} ORDER BY key, seq DESC", params
            ).fetchall()
        for row in rows:
            yield bytes(row[2]), self._row(row)

    # -- multipart -------------------------------------------------------------------------------

    def create_upload(self, bucket: str, key: str, initiated: float, template: ObjectRecord,
                      forbid_overwrite: bool) -> str:
        upload_id = _new_id().upper()
        with self.transaction():
            self._db.execute(
                "INSERT INTO uploads(upload_id, bucket, key, initiated, record, forbid_overwrite) VALUES(?, ?, ?, ?, ?, ?)",
                (upload_id, bucket, encode_key(key), initiated, template.to_json(), int(forbid_overwrite)),
            )
        return upload_id

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?", (upload_id,)
            ).fetchone()
        return _upload_from_row(row) if row is not None else None

    def put_part(self, upload_id: str, part: PartRecord) -> None:
        with self.transaction():
            old = self._db.execute(
                "SELECT extents FROM parts WHERE upload_id = ? AND part_number = ?", (upload_id, part.part_number)
            ).fetchone()
            if old:
                self._add_refs(_extents_from_json(old[0]), -1)
            self._add_refs(part.extents, +1)
            self._db.execute(
                "INSERT OR REPLACE INTO parts(upload_id, part_number, size, etag, crc64, mtime, extents) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (upload_id, part.part_number, part.size, part.etag, str(part.crc64), part.mtime, _extents_json(part.extents)),
            )

    def list_parts(self, upload_id: str) -> list[PartRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT part_number, size, etag, crc64, mtime, extents FROM parts WHERE upload_id = ? ORDER BY part_number",
                (upload_id,),
            ).fetchall()
        return [PartRecord(n, s, e, int(c), m, _extents_from_json(x)) for n, s, e, c, m, x in rows]

    def _drop_upload(self, upload_id: str) -> None:
        for (text,) in self._db.execute("SELECT extents FROM parts WHERE upload_id = ?", (upload_id,)).fetchall():
            self._add_refs(_extents_from_json(text), -1)
        self._db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        self._db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

    def abort_upload(self, upload_id: str) -> None:
        with self.transaction():
            self._drop_upload(upload_id)

    def complete_upload(self, upload: UploadRecord, record: ObjectRecord, versioning: str) -> str:
        """Atomically publish the stitched object and drop the upload and its parts."""
        with self.transaction():
            version_id = self._insert_version(upload.bucket, upload.key, record, versioning)
            self._drop_upload(upload.upload_id)
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
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_upload_from_row(row) for row in rows]
