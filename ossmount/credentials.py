"""Where the access key comes from: passwd file, environment, /etc/passwd-ossmount, or a credentials directory.

Rules (ossfs-compatible):
  1. Order: `-o passwd_file=FILE`, then OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET[/OSS_SESSION_TOKEN], then
     /etc/passwd-ossmount. The first source that exists decides; a passwd file given explicitly must work.
  2. A passwd file holds `BUCKET:AK:SK` or `AK:SK` lines; `#` comments and blank lines are skipped. A line
     for this bucket wins over a bare `AK:SK` line, which wins over lines for other buckets (never used).
  3. A passwd file readable or writable beyond 0640 (`mode & 0o137`) is refused, as ossfs does.
  4. Secrets never appear in a repr, a log line or an error message: errors name the file and line only.

`CredentialsSource` is the seam for rotation (CSI daemon): `load()` re-reads a passwd file or a directory
of `AccessKeyId`/`AccessKeySecret`/`SecurityToken` files (also the legacy `akId`/`akSecret` names) each time;
`current()` re-reads only when the file, the directory or one of its entries changed (inode, size, mtime,
following symlinks), so the store can ask before every request and an atomically swapped STS token is used
by the next request without a remount.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ossmount.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PASSWD_PATH = "/etc/passwd-ossmount"
ENV_ACCESS_KEY_ID = "OSS_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "OSS_ACCESS_KEY_SECRET"
ENV_SESSION_TOKEN = "OSS_SESSION_TOKEN"
FORBIDDEN_MODE_BITS = 0o137  # anything beyond rw-r-----

# Directory layouts, matched case-insensitively: (access key id, secret, token) file names.
_DIRECTORY_NAMES = (
    ("accesskeyid", "accesskeysecret", "securitytoken"),
    ("akid", "aksecret", "securitytoken"),
)


@dataclass(frozen=True)
class Credentials:
    """An access key pair, optionally with an STS token. `source` says where it was found (for logs)."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = ""
    expiration: str | None = None  # STS expiry as written next to the token (ISO 8601), if known

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.access_key_secret:
            raise ConfigError(f"credentials from {self.source or 'unknown source'}: empty access key id or secret")

    def __repr__(self) -> str:
        token = ", security_token=***" if self.security_token else ""
        expiry = f", expiration={self.expiration!r}" if self.expiration else ""
        return (f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret=***{token}, "
                f"source={self.source!r}{expiry})")

    __str__ = __repr__

    @property
    def is_sts(self) -> bool:
        return bool(self.security_token)


def check_file_mode(path: str | os.PathLike[str], mode: int) -> None:
    """Refuse a passwd file whose permission bits go beyond 0640."""
    bits = stat.S_IMODE(mode)
    if bits & FORBIDDEN_MODE_BITS:
        raise ConfigError(
            f"credentials file {os.fspath(path)} has mode {bits:04o}, which lets others read it; "
            f"run `chmod 600 {os.fspath(path)}`"
        )


def parse_passwd_text(text: str, bucket: str, *, source: str) -> Credentials | None:
    """Pick the credentials for `bucket` from passwd-file text; None if no line applies.

    A `BUCKET:AK:SK` line for this bucket wins over an `AK:SK` line. A `BUCKET:AK:SK:TOKEN` line is
    not ossfs syntax; STS tokens come from the environment or a credentials directory.
    """
    bucket_match: Credentials | None = None
    default_match: Credentials | None = None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields_ = line.split(":")
        if len(fields_) == 2:
            ak, sk = (f.strip() for f in fields_)
            if not ak or not sk:
                raise ConfigError(f"{where}: empty access key id or secret (expected AK:SK or BUCKET:AK:SK)")
            if default_match is None:
                default_match = Credentials(ak, sk, None, source)
        elif len(fields_) == 3:
            line_bucket, ak, sk = (f.strip() for f in fields_)
            if not line_bucket or not ak or not sk:
                raise ConfigError(f"{where}: empty field (expected AK:SK or BUCKET:AK:SK)")
            if line_bucket == bucket and bucket_match is None:
                bucket_match = Credentials(ak, sk, None, source)
        else:
            raise ConfigError(f"{where}: malformed line with {len(fields_)} fields (expected AK:SK or BUCKET:AK:SK)")
    return bucket_match or default_match


def _read_secret_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"credentials file {path} is not UTF-8 text") from None


def read_passwd_file(path: str | os.PathLike[str], bucket: str) -> Credentials | None:
    """Read and check a passwd file; None if it has no line for `bucket` (nor a default line)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"credentials file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return read_credentials_dir(path)
    check_file_mode(path, st.st_mode)
    return parse_passwd_text(_read_secret_file(path), bucket, source=str(path))


def read_credentials_dir(path: str | os.PathLike[str]) -> Credentials:
    """Read `AccessKeyId`/`AccessKeySecret`[/`SecurityToken`/`Expiration`] (or `akId`/`akSecret`) files.

    This is how Kubernetes secrets and the CSI daemon's rotating STS directory present credentials;
    names are matched case-insensitively. Symlinks (atomic-swap directories) are followed.
    """
    path = Path(path)
    try:
        entries = {entry.name.lower(): entry for entry in path.iterdir() if not entry.name.startswith(".")}
    except OSError as exc:
        raise ConfigError(f"cannot read credentials directory {path}: {exc.strerror}") from None
    for id_name, secret_name, token_name in _DIRECTORY_NAMES:
        if id_name in entries and secret_name in entries:
            access_key_id = _read_secret_file(entries[id_name])
            secret = _read_secret_file(entries[secret_name])
            token = _read_secret_file(entries[token_name]) if token_name in entries else ""
            expiration = _read_secret_file(entries["expiration"]) if "expiration" in entries else ""
            if not access_key_id or not secret:
                raise ConfigError(f"credentials directory {path}: empty {entries[id_name].name} or "
                                  f"{entries[secret_name].name}")
            return Credentials(access_key_id, secret, token or None, str(path), expiration or None)
    raise ConfigError(
        f"credentials directory {path} has no AccessKeyId and AccessKeySecret files (nor akId and akSecret)"
    )


def credentials_from_environ(environ: Mapping[str, str]) -> Credentials | None:
    """OSS_ACCESS_KEY_ID + OSS_ACCESS_KEY_SECRET (+ OSS_SESSION_TOKEN); None unless both keys are set."""
    access_key_id = environ.get(ENV_ACCESS_KEY_ID, "").strip()
    secret = environ.get(ENV_ACCESS_KEY_SECRET, "").strip()
    if not access_key_id and not secret:
        return None
    if not access_key_id or not secret:
        missing = ENV_ACCESS_KEY_ID if not access_key_id else ENV_ACCESS_KEY_SECRET
        raise ConfigError(f"environment has only half an access key: {missing} is not set")
    token = environ.get(ENV_SESSION_TOKEN, "").strip() or None
    return Credentials(access_key_id, secret, token, "environment")


def resolve_credentials(
    bucket: str,
    *,
    passwd_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    default_path: str | os.PathLike[str] = DEFAULT_PASSWD_PATH,
) -> Credentials:
    """Find the credentials for `bucket`: passwd_file, then the environment, then `default_path`."""
    if passwd_file is not None:
        found = read_passwd_file(passwd_file, bucket)
        if found is None:
            raise ConfigError(f"credentials file {os.fspath(passwd_file)} has no line for bucket "
                              f"'{bucket}' (expected {bucket}:AK:SK or AK:SK)")
        return found
    found = credentials_from_environ(environ)
    if found is not None:
        return found
    if os.path.lexists(default_path):
        found = read_passwd_file(default_path, bucket)
        if found is not None:
            return found
        raise ConfigError(f"credentials file {os.fspath(default_path)} has no line for bucket '{bucket}' "
                          f"(expected {bucket}:AK:SK or AK:SK)")
    raise ConfigError(
        f"no credentials for bucket '{bucket}': use -o passwd_file=FILE, or set {ENV_ACCESS_KEY_ID} and "
        f"{ENV_ACCESS_KEY_SECRET}, or create {os.fspath(default_path)} (mode 600) with a line {bucket}:AK:SK"
    )


class CredentialsSource:
    """Credentials that can be re-read: the seam for rotation without remount.

    Built from what the mount resolved (a passwd file or directory path re-reads on each `load()`;
    environment credentials are fixed). `load()` raises ConfigError if the source became unreadable.
    """

    def __init__(self, bucket: str, *, path: str | os.PathLike[str] | None = None,
                 fixed: Credentials | None = None) -> None:
        if (path is None) == (fixed is None):
            raise ValueError("give exactly one of path= or fixed=")
        self.bucket = bucket
        self.path = Path(path) if path is not None else None
        self._fixed = fixed
        self._lock = threading.Lock()
        self._cached: Credentials | None = fixed
        self._signature: tuple | None = None
        self.reloads = 0  # how often changed credentials were picked up after the first read
        self.reload_error: str | None = None  # why the last change could not be read (the old keys stay)

    @classmethod
    def resolve(
        cls,
        bucket: str,
        *,
        passwd_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] = os.environ,
        default_path: str | os.PathLike[str] = DEFAULT_PASSWD_PATH,
    ) -> "CredentialsSource":
        """Resolve as `resolve_credentials` does, remembering the file or directory for later reloads."""
        first = resolve_credentials(bucket, passwd_file=passwd_file, environ=environ, default_path=default_path)
        if first.source == "environment":
            return cls(bucket, fixed=first)
        return cls(bucket, path=first.source)

    def load(self) -> Credentials:
        """The current credentials (re-read from disk when the source is a file or directory)."""
        if self._fixed is not None:
            return self._fixed
        assert self.path is not None
        found = read_passwd_file(self.path, self.bucket)
        if found is None:
            raise ConfigError(f"credentials file {self.path} has no line for bucket '{self.bucket}'")
        return found

    def current(self) -> Credentials:
        """The credentials to sign the next request with: re-read when the source changed on disk.

        Thread-safe (called from the store's worker threads). If a changed source cannot be read (a half-
        written file, a swap in progress), the previous credentials stay in use and `reload_error` says why;
        the next change is tried again. Raises ConfigError only when nothing was ever read."""
        if self._fixed is not None:
            return self._fixed
        signature = self._stat_signature()
        with self._lock:
            if self._cached is not None and signature == self._signature:
                return self._cached
            try:
                fresh = self.load()
            except ConfigError as exc:
                if self._cached is None:
                    raise
                if self.reload_error != str(exc):
                    log.warning("credentials changed but cannot be read, keeping the previous ones: %s", exc)
                self.reload_error = str(exc)
                self._signature = signature
                return self._cached
            if self._cached is not None and fresh != self._cached:
                self.reloads += 1
                log.info("credentials reloaded from %s (AccessKey ID %s)", self.path, fresh.access_key_id)
            self._cached, self._signature, self.reload_error = fresh, signature, None
            return fresh

    def _stat_signature(self) -> tuple:
        assert self.path is not None
        try:
            top = os.stat(self.path)
        except OSError as exc:
            return ("error", exc.errno)
        entries: list[tuple] = [(top.st_ino, top.st_dev, top.st_size, top.st_mtime_ns)]
        if stat.S_ISDIR(top.st_mode):
            try:
                with os.scandir(self.path) as scan:
                    for entry in scan:
                        try:
                            info = entry.stat()
                        except OSError:
                            continue
                        entries.append((entry.name, info.st_ino, info.st_size, info.st_mtime_ns))
            except OSError as exc:
                entries.append(("error", exc.errno))
        return tuple(sorted(entries, key=repr))

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "fixed"
        return f"CredentialsSource(bucket={self.bucket!r}, source={where!r})"
