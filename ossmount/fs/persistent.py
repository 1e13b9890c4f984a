"""The persistent stat cache: full object metadata (what HEAD answered) kept in sqlite across mounts, so a
remount's `ls -l` of an unchanged directory needs its LISTs and no HEAD.

Rules
  1. A row is one object as a HEAD answered it: key, ETag, Last-Modified (whole seconds), size, storage class,
     Content-Type, x-oss-meta-*, the carried HTTP headers (Cache-Control and friends, which a metadata change
     sends again: ossmount.store.types.CARRIED_HEADERS), object type, version id, CRC-64. Rows are keyed by the store (endpoint +
     bucket) and the key, and grouped by the listing prefix they appear under (`dir`).
  2. A row stands for a listed object only if the listing shows the same ETag, Last-Modified, size and
     storage class (`same_version`). Every change of an object moves its Last-Modified: a new body (PUT, append,
     multipart) and a metadata change (CopyObject onto itself, which keeps the ETag) alike. So a row is never
     used for an object another client changed.
  3. Racy seconds: Last-Modified has whole seconds, so a change in the same second as the version a HEAD saw
     could not be told apart from it. An answer is stored only when its Last-Modified is at least
     RACY_SECONDS older than the answer's own Date header (the server's clock on both sides): any later
     change then has a later Last-Modified. Answers without a Date are not stored.
  4. Archive-class objects are not stored: their restore state changes without a new Last-Modified.
     A `dir/` marker's row is validated by the one-key LIST a directory lookup sends (which returns the
     marker with its ETag); a parent's listing shows it only as a common prefix, which validates nothing.
  5. Best effort: a database that cannot be opened or written turns the cache off for this mount with one
     log line; it never fails a filesystem operation.
  6. Bounded: rows not used for RETENTION_DAYS are dropped when a mount opens the file, and beyond MAX_ROWS
     the least recently used go.

Where (`location`): `stat_cache_dir=DIR` (`none`: no persistent cache), else
/var/cache/ossmount for root and $XDG_CACHE_HOME/ossmount (~/.cache/ossmount) for other users; the file is
`metadata.sqlite` there (directory 0700, file 0600: it names every key it holds). One file serves every
mount of the machine (sqlite WAL: readers never wait for a writer; mounts share rows of the same bucket).

Concurrency: lookups (`load_dir`) and writes (`write`) run in worker threads over one connection under a
lock (a directory's lookup first probes the index for any row in the trio thread when the lock is free: no thread
for a directory with no rows; WAL readers do not wait for writers); `record`/`forget` only queue, in the trio thread, and `run` writes the queue every WRITE_INTERVAL
seconds (or at BATCH rows), so a HEAD never waits for the disk.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import trio

from ossmount.store.types import ObjectInfo

log = logging.getLogger("ossmount.fs")

FILE_NAME = "metadata.sqlite"
RACY_SECONDS = 2
RETENTION_DAYS = 30
MAX_ROWS = 2_000_000
WRITE_INTERVAL = 1.0
BATCH = 2000
BUSY_TIMEOUT_MS = 2000
ARCHIVE_CLASSES = frozenset({"archive", "coldarchive", "deepcoldarchive"})
DISABLED = "none"
SCHEMA_VERSION = 2  # PRAGMA user_version; a file of another version is emptied (it is only a cache)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    store TEXT NOT NULL, key TEXT NOT NULL, dir TEXT NOT NULL,
    etag TEXT NOT NULL, mtime INTEGER NOT NULL, size INTEGER NOT NULL, storage_class TEXT NOT NULL,
    content_type TEXT, meta TEXT NOT NULL, object_type TEXT NOT NULL, version_id TEXT, crc64 TEXT,
    headers TEXT NOT NULL, used INTEGER NOT NULL,
    PRIMARY KEY (store, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_dir ON objects (store, dir);
"""
_COLUMNS = "key, etag, mtime, size, storage_class, content_type, meta, object_type, version_id, crc64, headers"
_INSERT = ("INSERT OR REPLACE INTO objects (store, key, dir, etag, mtime, size, storage_class, content_type, meta, "
           "object_type, version_id, crc64, headers, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def location(stat_cache_dir: str | None, *, uid: int | None = None,
             environ: dict[str, str] | None = None) -> Path | None:
    """The database file for these options (see the module docstring), or None for no persistent cache."""
    if stat_cache_dir == DISABLED:
        return None
    directory = stat_cache_dir
    if not directory:
        env = os.environ if environ is None else environ
        if (os.geteuid() if uid is None else uid) == 0:
            directory = "/var/cache/ossmount"
        else:
            base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
            directory = os.path.join(base, "ossmount")
    return Path(directory) / FILE_NAME


def directory_of(key: str) -> str:
    """The listing prefix `key` appears under: everything up to its last '/' (a `dir/` marker's parent)."""
    return key[: key.rstrip("/").rfind("/") + 1]


def same_version(listed: ObjectInfo, full: ObjectInfo) -> bool:
    """Rule 2: a listed object and a stored (or cached) full answer are the same version."""
    return (listed.etag == full.etag and int(listed.mtime) == int(full.mtime) and listed.size == full.size
            and (listed.storage_class or "").lower() == (full.storage_class or "").lower())


def storable(info: ObjectInfo) -> bool:
    """Rules 3 and 4: whether a HEAD answer may be kept."""
    return (not info.from_listing and info.answered_at > 0 and info.etag != ""
            and int(info.mtime) + RACY_SECONDS <= int(info.answered_at)
            and (info.storage_class or "").lower() not in ARCHIVE_CLASSES)


class PersistentStatCache:
    """One mount's view of the shared database: rows of `store_id` only (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, path: Path, store_id: str, *,
                 clock: Callable[[], float] = time.time):
        self._db = connection
        self.path = path
        self.store_id = store_id
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, ObjectInfo | None] = {}  # key -> row to write, or None: delete it
        self._touched: set[str] = set()  # dirs whose rows were used (their `used` day moves on)
        self._wake = trio.Event()
        self.enabled = True

    # ---- opening --------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | None, store_id: str, *, clock: Callable[[], float] = time.time
             ) -> "PersistentStatCache | None":
        """Open (creating) the database, drop expired rows; None (one log line) when that is not possible."""
        if path is None:
            return None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(descriptor)
            try:
                connection = cls._connect(path, clock)
            except sqlite3.DatabaseError as exc:  # damaged (a crash, a full disk): it is only a cache
                log.warning("persistent stat cache %s is damaged (%s): starting a new one", path, exc)
                for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    stale.unlink(missing_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.close(descriptor)
                connection = cls._connect(path, clock)
        except (OSError, sqlite3.Error) as exc:
            log.warning("persistent stat cache %s cannot be used (%s): remounts HEAD every listed object again; "
                        "set stat_cache_dir= to a writable directory or stat_cache_dir=none", path, exc)
            return None
        return cls(connection, path, store_id, clock=clock)

    @staticmethod
    def _connect(path: Path, clock: Callable[[], float]) -> sqlite3.Connection:
        connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                     isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version != SCHEMA_VERSION:
                connection.execute("DROP TABLE IF EXISTS objects")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.executescript(_SCHEMA)
            today = int(clock() // 86400)
            connection.execute("DELETE FROM objects WHERE used < ?", (today - RETENTION_DAYS,))
            (count,) = connection.execute("SELECT count(*) FROM objects").fetchone()
            if count > MAX_ROWS:
                connection.execute("DELETE FROM objects WHERE (store, key) IN (SELECT store, key FROM objects "
                                   "ORDER BY used LIMIT ?)", (count - MAX_ROWS,))
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        with self._lock:
            self.enabled = False
            self._db.close()

    def _disable(self, exc: BaseException) -> None:
        if self.enabled:
            self.enabled = False
            log.warning("persistent stat cache %s failed (%s): it is off until the next mount", self.path, exc)

    # ---- reading (worker thread) ----------------------------------------------------------------

    def load_dir(self, dir_prefix: str) -> dict[str, ObjectInfo]:
        """Every stored object directly under `dir_prefix` (blocking: call it in a worker thread)."""
        return self._load("dir = ?", dir_prefix)

    def load_key(self, key: str) -> dict[str, ObjectInfo]:
        """The stored object `key`, if any, as {key: info} (blocking: call it in a worker thread)."""
        return self._load("key = ?", key)

    def load_markers(self, dir_prefix: str) -> frozenset[str]:
        """The keys of the `dir/` markers stored directly under `dir_prefix` (blocking: a worker thread)."""
        if not self.enabled:
            return frozenset()
        try:
            with self._lock:
                if not self.enabled:
                    return frozenset()
                rows = self._db.execute("SELECT key FROM objects WHERE store = ? AND dir = ? AND substr(key, -1) = '/'",
                                        (self.store_id, dir_prefix)).fetchall()
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            if isinstance(exc, sqlite3.Error):
                self._disable(exc)
            return frozenset()
        return frozenset(key for (key,) in rows)

    def _load(self, condition: str, value: str) -> dict[str, ObjectInfo]:
        if not self.enabled:
            return {}
        try:
            with self._lock:
                if not self.enabled:
                    return {}
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM objects WHERE store = ? AND {condition}",
                                        (self.store_id, value)).fetchall()
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            if isinstance(exc, sqlite3.Error):
                self._disable(exc)
            return {}
        found = {}
        for key, etag, mtime, size, storage_class, content_type, meta, object_type, version_id, crc64, headers in rows:
            try:
                meta_map, header_map = json.loads(meta), json.loads(headers)
            except ValueError:
                continue
            found[key] = ObjectInfo(key=key, size=size, etag=etag, mtime=float(mtime), content_type=content_type,
                                    meta=meta_map, object_type=object_type, storage_class=storage_class,
                                    crc64=int(crc64) if crc64 else None, version_id=version_id,
                                    http_headers=header_map)
        return found

    def _holds_nothing_under(self, dir_prefix: str) -> bool:
        """True when the index shows no row under `dir_prefix`, probed in the calling thread if the connection is
        free (one index lookup, no row read: microseconds, where a worker thread costs ~75 µs of CPU); False when
        there are rows or it cannot tell without waiting."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if not self.enabled:
                return True
            return self._db.execute("SELECT 1 FROM objects WHERE store = ? AND dir = ? LIMIT 1",
                                    (self.store_id, dir_prefix)).fetchone() is None
        except (sqlite3.Error, UnicodeEncodeError):
            return False  # the worker thread's load reports (and turns the cache off)
        finally:
            self._lock.release()

    async def lookup_dir(self, dir_prefix: str) -> dict[str, ObjectInfo]:
        """`load_dir` in a worker thread (none when the index shows no row: a directory never seen, a first walk);
        marks the directory's rows as used."""
        if not self.enabled or self._holds_nothing_under(dir_prefix):
            return {}
        found = await trio.to_thread.run_sync(self.load_dir, dir_prefix)
        if found:
            self._touched.add(dir_prefix)
        return found

    async def lookup_markers(self, dir_prefix: str) -> frozenset[str]:
        """`load_markers` in a worker thread: which names of a directory were directories with a marker (a hint
        for the order of a lookup's requests; it proves nothing about the bucket now)."""
        if not self.enabled:
            return frozenset()
        return await trio.to_thread.run_sync(self.load_markers, dir_prefix)

    async def lookup_key(self, key: str) -> ObjectInfo | None:
        """`load_key` in a worker thread."""
        if not self.enabled:
            return None
        return (await trio.to_thread.run_sync(self.load_key, key)).get(key)

    # ---- writing --------------------------------------------------------------------------------

    def record(self, info: ObjectInfo) -> None:
        """Keep a HEAD answer (if `storable`); written by `run` soon after."""
        if self.enabled and storable(info):
            self._queue(info.key, info)

    def forget(self, key: str) -> None:
        """This mount deleted or replaced `key`: drop its row (rule 2 would refuse it anyway)."""
        if self.enabled:
            self._queue(key, None)

    def _queue(self, key: str, info: ObjectInfo | None) -> None:
        self._pending[key] = info
        if len(self._pending) >= BATCH:
            self._wake.set()

    def write(self, batch: Iterable[tuple[str, ObjectInfo | None]], touched: Iterable[str]) -> None:
        """Write queued rows in one transaction (blocking: call it in a worker thread)."""
        if not self.enabled:
            return
        today = int(self._clock() // 86400)
        rows, gone = [], []
        for key, info in batch:
            if info is None:
                gone.append((self.store_id, key))
                continue
            try:
                key.encode("utf-8")
                rows.append((self.store_id, key, directory_of(key), info.etag, int(info.mtime), info.size,
                             info.storage_class or "", info.content_type, json.dumps(dict(info.meta)),
                             info.object_type or "Normal", info.version_id,
                             None if info.crc64 is None else str(info.crc64), json.dumps(dict(info.http_headers)),
                             today))
            except UnicodeEncodeError:
                continue  # a key that is not valid UTF-8 (use_wtf8 off): not kept
        try:
            with self._lock:
                if not self.enabled:
                    return
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if gone:
                        self._db.executemany("DELETE FROM objects WHERE store = ? AND key = ?", gone)
                    if rows:
                        self._db.executemany(_INSERT, rows)
                    for dir_prefix in touched:
                        self._db.execute("UPDATE objects SET used = ? WHERE store = ? AND dir = ? AND used < ?",
                                         (today, self.store_id, dir_prefix, today))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self._disable(exc)

    async def flush(self) -> None:
        """Write what is queued now."""
        if not (self._pending or self._touched) or not self.enabled:
            return
        batch, self._pending = list(self._pending.items()), {}
        touched, self._touched = list(self._touched), set()
        await trio.to_thread.run_sync(self.write, batch, touched)

    async def run(self) -> None:
        """Write the queue every WRITE_INTERVAL seconds, or at once when BATCH rows wait, until cancelled."""
        while self.enabled:
            with trio.move_on_after(WRITE_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.flush()


def store_identity(store: Any) -> str:
    """Rows are shared by mounts of the same bucket at the same endpoint (whatever their prefix)."""
    return f"{getattr(store, 'endpoint', '')}/{getattr(store, 'bucket_name', '')}"
