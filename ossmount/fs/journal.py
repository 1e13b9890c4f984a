"""The durable spool: where dirty file data and a small journal about it live, so that a crash of the mount
loses nothing a writer was promised (README "Reliability" → "Spool and crash recovery").

Layout (every directory 0700, every file 0600)::

    SPOOL_ROOT/                    spool_root(): tmpdir=DIR → DIR/ossmount-spool-UID; root → /var/lib/ossmount/spool;
                                   other users → $XDG_STATE_HOME/ossmount/spool (~/.local/state/ossmount/spool)
      MOUNT_ID/                    mount_id(bucket, prefix): one directory per bucket[:/prefix]
        SESSION/                   one per mount process (UTC time, pid, random), see `Session`
          lock                     flock(LOCK_EX) held by the mount process for its whole life (released by the
                                   kernel when it dies, however it dies: a free lock means a dead session)
          session.json             bucket, prefix, endpoint, pid and start time of the process
          000001.data              a spool file (spool.SpoolFile): sparse, offsets are the object's
          000001.json              its journal record (`Entry.save`: written to a temporary name and renamed, so a
                                   reader sees the old or the new record, never half of one)

A journal record (JSON object, "version": 1) names one dirty version of one key:

    key, bucket            the object
    state                  "dirty"      written, no commit (flush/fsync/close) asked since the last upload
                           "committing" a flush/fsync/close is uploading it
                           "failed"     the last commit failed and the writer was told (EIO); retried with backoff
                           "streaming"  a multipart upload is open while the file is written (no commit asked yet)
                           "aborting"   nothing is kept; only the upload's AbortMultipartUpload is left to do
    base                   {"etag", "version_id", "size"}: the version this one builds on (the one opened, or this
                           mount's last upload of it); `after`: the number of the entry whose upload it waits for
    size, content_type, meta   the new version's length, Content-Type and x-oss-meta-* (without the prefix)
    valid                  [[start, end), ...] of the spool file that hold this version's bytes
    modified               ranges below base.size that differ from the base (everything else there may be
                           copied from the base on the server, pinned to base.etag)
    upload                 {"id", "part_size", "parts": [[number, etag, size, crc64], ...]} of an open multipart
                           upload, or null

When records are written, and how durably: "streaming" when a streaming upload is initiated (so that a crash
leaves no upload behind: the next mount aborts it), "dirty" when a spool file is created, "committing" when a
commit starts (the data it needs is in the spool file or already uploaded by then), "failed" with fsync of the
spool file, the record and the directory before the writer is told EIO. A clean content's record is removed.
Recovery (recovery.py) reads the records of dead sessions.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import urllib.parse
from typing import Any, Iterator, Mapping

log = logging.getLogger(__name__)

RECORD_VERSION = 1
ROOT_SPOOL_ROOT = "/var/lib/ossmount/spool"
LOCK_NAME = "lock"
SESSION_NAME = "session.json"
MAX_ID_LENGTH = 200

STATES = ("dirty", "committing", "failed", "streaming", "aborting")


def spool_root(tmpdir: str | None, *, uid: int | None = None, environ: Mapping[str, str] = os.environ,
               home: str | None = None) -> str:
    """Where a mount's spool lives: under `-o tmpdir=DIR` when given (DIR/ossmount-spool-UID, so users sharing /tmp
    stay apart), else /var/lib/ossmount/spool for root (FHS: state that survives a reboot), else the user's XDG
    state directory ($XDG_STATE_HOME, default HOME/.local/state, HOME from the password database: $HOME may still
    name another user's home) /ossmount/spool, or /var/tmp/ossmount-spool-UID for a user without a home of their
    own. `home` overrides the password database (tests)."""
    uid = os.getuid() if uid is None else uid
    if tmpdir:
        return os.path.join(tmpdir, f"ossmount-spool-{uid}")
    if uid == 0:
        return ROOT_SPOOL_ROOT
    state = environ.get("XDG_STATE_HOME")
    if state:
        return os.path.join(state, "ossmount", "spool")
    home = _own_home(uid) if home is None else home
    if home:
        return os.path.join(home, ".local", "state", "ossmount", "spool")
    return f"/var/tmp/ossmount-spool-{uid}"


def _own_home(uid: int) -> str | None:
    """The home directory of `uid` from the password database, if it exists and belongs to `uid`."""
    try:
        home = pwd.getpwuid(uid).pw_dir
        owner = os.stat(home).st_uid
    except (KeyError, OSError):
        return None
    return home if owner == uid else None


def mount_id(bucket: str, prefix: str = "") -> str:
    """The directory name of a bucket[:/prefix] under the spool root: readable (url-quoted) when short, else the
    bucket and a hash of the prefix. The next mount of the same bucket and prefix finds its predecessors' data."""
    spec = f"{bucket}:/{prefix}" if prefix else bucket
    name = urllib.parse.quote(spec, safe="")
    if len(name) <= MAX_ID_LENGTH:
        return name
    return f"{bucket}~{hashlib.sha256(prefix.encode('utf-8', 'surrogateescape')).hexdigest()[:24]}"


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomically(path: str, document: Any, *, durable: bool) -> None:
    """Replace `path` with `document` (temporary file + rename); with `durable`, fsync the file and the directory."""
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, "." + os.path.basename(path) + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(document, separators=(",", ":")).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if durable:
        _fsync_directory(directory)


def now_text() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Entry:
    """One journal record and its spool file in a session directory (see the module docstring)."""

    def __init__(self, directory: str, number: int):
        self.directory = directory
        self.number = number
        self.data_name = f"{number:06d}.data"
        self.data_path = os.path.join(directory, self.data_name)
        self.json_path = os.path.join(directory, f"{number:06d}.json")
        self.saved_state: str | None = None

    def __repr__(self) -> str:
        return f"<Entry {self.json_path} {self.saved_state}>"

    def save(self, record: dict[str, Any], *, durable: bool = False) -> None:
        """Write the record (atomically; `durable`: fsync'ed with its directory). OSError propagates."""
        document = {"version": RECORD_VERSION, **record, "updated": now_text()}
        write_json_atomically(self.json_path, document, durable=durable)
        self.saved_state = record.get("state")

    def load(self) -> dict[str, Any] | None:
        """The record, or None if it is missing or unreadable (a crash before its first save)."""
        try:
            with open(self.json_path, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, ValueError):
            return None
        return document if isinstance(document, dict) else None

    def forget(self) -> None:
        """Remove the record (the data file stays: its content is clean but still read from)."""
        try:
            os.unlink(self.json_path)
        except FileNotFoundError:
            pass
        self.saved_state = None

    def discard(self) -> None:
        """Remove the record, then the data file (a crash in between leaves a data file without a record, which
        recovery deletes)."""
        self.forget()
        try:
            os.unlink(self.data_path)
        except FileNotFoundError:
            pass


class Session:
    """The spool directory of one mount process: a lock held for the process's life, and journal entries.

    `Session.create` makes a new one (the mount); `Session.dead` finds the sessions of a mount id whose process is
    gone (their lock is free) and takes their locks, so two recoveries never work on the same session."""

    def __init__(self, path: str, lock_fd: int):
        self.path = path
        self.name = os.path.basename(path)
        self._lock_fd = lock_fd
        self._next = 1 + max((number for number in self._numbers()), default=0)

    @classmethod
    def create(cls, root: str, mount: str, describe: Mapping[str, Any]) -> "Session":
        """A new session directory under root/mount, locked; `describe` goes to session.json. OSError if the
        directory cannot be made (the caller says which option to change)."""
        parent = os.path.join(root, mount)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = os.path.join(parent, f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}")
        for attempt in range(3):
            os.makedirs(parent, mode=0o700, exist_ok=True)
            if os.lstat(root).st_uid != os.getuid():
                raise PermissionError(errno.EPERM, "the spool directory belongs to another user", root)
            try:
                os.mkdir(path, 0o700)
                break
            except FileNotFoundError:  # another mount's unmount removed the empty directories meanwhile
                if attempt == 2:
                    raise
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        session = cls(path, fd)
        write_json_atomically(os.path.join(path, SESSION_NAME),
                              {"version": RECORD_VERSION, **describe, "pid": os.getpid(), "started": now_text()},
                              durable=True)
        return session

    @classmethod
    def dead(cls, root: str, mount: str) -> list["Session"]:
        """The sessions under root/mount whose process is gone, oldest first, each now locked by the caller."""
        parent = os.path.join(root, mount)
        try:
            names = sorted(os.listdir(parent))
        except FileNotFoundError:
            return []
        sessions = []
        for name in names:
            path = os.path.join(parent, name)
            if not os.path.isdir(path) or os.path.islink(path):
                continue
            try:
                fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                log.warning("cannot open the lock of spool session %s: %s", path, exc)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    log.warning("cannot lock spool session %s: %s", path, exc)
                continue  # its process is alive
            sessions.append(cls(path, fd))
        return sessions

    @staticmethod
    def mount_ids(root: str) -> list[str]:
        """Every mount id that has a directory under `root`."""
        try:
            return sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
        except FileNotFoundError:
            return []

    def describe(self) -> dict[str, Any]:
        """session.json (empty if unreadable)."""
        try:
            with open(os.path.join(self.path, SESSION_NAME), encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def _numbers(self) -> Iterator[int]:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        for name in names:
            stem, _, suffix = name.partition(".")
            if suffix in ("json", "data") and stem.isdigit():
                yield int(stem)

    def new_entry(self) -> Entry:
        entry = Entry(self.path, self._next)
        self._next += 1
        return entry

    def entries(self) -> list[tuple[Entry, dict[str, Any] | None]]:
        """Every entry with its record (None: a data file without a record), in creation order."""
        return [(entry, entry.load()) for entry in (Entry(self.path, n) for n in sorted(set(self._numbers())))]

    def has_records(self) -> bool:
        return any(name.endswith(".json") and name[:1].isdigit() for name in os.listdir(self.path))

    def release(self) -> None:
        """Give up the lock (the directory stays)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> bool:
        """At unmount: remove the directory when no record is left (True), else keep it for the next mount (False);
        the lock is released either way."""
        try:
            kept = self.has_records()
        except OSError:
            kept = True
        if not kept:
            self.remove()
        self.release()
        return not kept

    def remove(self) -> None:
        """Delete the session directory and, if they are then empty, its mount id directory and the spool root (a
        clean unmount leaves nothing behind)."""
        shutil.rmtree(self.path, ignore_errors=True)
        parent = os.path.dirname(self.path)
        for directory in (parent, os.path.dirname(parent)):
            try:
                os.rmdir(directory)
            except OSError:
                return
