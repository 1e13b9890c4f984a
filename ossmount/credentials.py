"""Where the access key comes from: passwd file, environment, /etc/passwd-ossmount, a credentials directory, or
the ECS instance's RAM role; and how credentials that change while mounted reach the next request.

Rules (ossfs-compatible):
  1. Order: `-o passwd_file=FILE`, then OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET[/OSS_SESSION_TOKEN] (ossfs's
     OSSACCESSKEYID/OSSSECRETACCESSKEY[/OSSSESSIONTOKEN] too), then /etc/passwd-ossmount. The first source that
     exists decides; a passwd file given explicitly must work. `-o ram_role` replaces all of them, and
     `-o public_bucket=1` reads none (requests are not signed). `-o use_session_token` requires an STS token.
  2. A passwd file holds `BUCKET:AK:SK` or `AK:SK` lines; `#` comments and blank lines are skipped. A line
     for this bucket wins over a bare `AK:SK` line, which wins over lines for other buckets (never used).
     Files as editors save them are read alike: a UTF-8 byte-order mark (Notepad), UTF-16 with its mark, CRLF
     line ends, spaces or tabs around lines and fields. Keys are visible ASCII (they travel in HTTP headers): a
     stray character (a non-breaking space pasted with the key) is refused naming the file and line.
  3. A passwd file readable or writable beyond 0640 (`mode & 0o137`) is refused, as ossfs does.
  4. Secrets never appear in a repr, a log line or an error message: errors name the file and line only.

Credentials providers (the store's `CredentialsProvider` protocol, `ossmount.store.client`): an object whose
`current()` returns the `Credentials` to sign the next request with, and whose `access_key_id`, `reloads` and
`reload_error` describe it for messages and the status file. The store asks `current_nowait()` on its event loop
for every request it signs (and `current()` in a worker thread when that would need the network), so rotation
needs no remount. Three kinds:

  * `Credentials`: fixed keys (the environment, a request's keys); `current()` is the credentials themselves.
  * `FileCredentials`: a passwd file or credentials directory (`AccessKeyId`/`AccessKeySecret`/`SecurityToken`/
    `Expiration` files, also the legacy `akId`/`akSecret` names), re-read whenever the file, the directory or one
    of its entries changes (inode, size, mtime, following symlinks): an STS token swapped in on disk by the CSI
    daemon signs the very next request.
  * `EcsRamRoleCredentials` (`ram_role=NAME|auto`): the role's STS credentials from the instance metadata service
    (http://100.100.100.200 on ECS; $OSSMOUNT_ECS_METADATA_ENDPOINT points elsewhere), asked again before they
    expire.

The two that change share `RefreshingCredentials`: answers from memory until the source says to look again; if
looking fails, the previous credentials stay in use while they can (the reason in `reload_error`, logged once).
`resolve_provider` is `resolve_credentials` returning a provider.
"""

from __future__ import annotations

import calendar
import codecs
import json
import logging
import os
import stat
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Mapping

from ossmount.errors import ConfigError

DEFAULT_PASSWD_PATH = "/etc/passwd-ossmount"
ENV_ACCESS_KEY_ID = "OSS_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "OSS_ACCESS_KEY_SECRET"
ENV_SESSION_TOKEN = "OSS_SESSION_TOKEN"
# ossfs's names for the same three, read when ours are not set.
OSSFS_ENV_NAMES = {ENV_ACCESS_KEY_ID: "OSSACCESSKEYID", ENV_ACCESS_KEY_SECRET: "OSSSECRETACCESSKEY",
                   ENV_SESSION_TOKEN: "OSSSESSIONTOKEN"}
# Every variable that can carry a secret: the mount process removes them from its environment once read.
SECRET_ENV_NAMES = (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SESSION_TOKEN, *OSSFS_ENV_NAMES.values())
FORBIDDEN_MODE_BITS = 0o137  # anything beyond rw-r-----
ENV_ECS_METADATA_ENDPOINT = "OSSMOUNT_ECS_METADATA_ENDPOINT"
DEFAULT_ECS_METADATA_ENDPOINT = "http://100.100.100.200"
ECS_ROLE_PATH = "/latest/meta-data/ram/security-credentials/"
ECS_TOKEN_PATH = "/latest/api/token"  # hardened mode (IMDSv2-style): a session token for the metadata requests
ECS_TOKEN_TTL = 21600
ECS_REQUEST_TIMEOUT = 5.0
ECS_DEFAULT_LIFETIME = 6 * 3600  # seconds, when the answer has no LastUpdated
ECS_REFRESH_SHARE = 0.15  # ask again when less than this share of the credentials' lifetime is left
ECS_MIN_REFRESH_MARGIN = 60.0

log = logging.getLogger(__name__)

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
        problem = unsendable_field(self.access_key_id, self.access_key_secret, self.security_token)
        if problem is not None:
            raise ConfigError(f"credentials from {self.source or 'unknown source'}: {problem}")

    def __repr__(self) -> str:
        token = ", security_token=***" if self.security_token else ""
        expiry = f", expiration={self.expiration!r}" if self.expiration else ""
        return (f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret=***{token}, "
                f"source={self.source!r}{expiry})")

    __str__ = __repr__

    # What a provider reports (see the module docstring); fixed credentials never change.
    reloads: ClassVar[int] = 0
    reload_error: ClassVar[str | None] = None

    @property
    def is_sts(self) -> bool:
        return bool(self.security_token)

    def current(self) -> "Credentials":
        """Fixed credentials are their own provider."""
        return self

    def current_nowait(self) -> "Credentials":
        return self


_FIELD_NAMES = ("access key id", "access key secret", "security token")


def unsendable_field(access_key_id: str, secret: str, token: str | None = None) -> str | None:
    """Why these credentials cannot be sent (a field holds something other than visible ASCII: it would not fit
    an HTTP header or a signature), or None. Never quotes a value."""
    for name, value in zip(_FIELD_NAMES, (access_key_id, secret, token or "")):
        bad = next((char for char in value if not "!" <= char <= "~"), None)
        if bad is not None:
            return (f"the {name} contains {_describe_char(bad)}; keys are visible ASCII (a character pasted along "
                    "with the key?)")
    return None


def _describe_char(char: str) -> str:
    if char in " \t":
        return "a space" if char == " " else "a tab"
    return f"the character U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def decode_text(data: bytes, source: str) -> str:
    """Text of a credentials file as editors save it: UTF-8 with or without a byte-order mark, or UTF-16 with its
    mark (Notepad's "Unicode"). ConfigError naming `source` (and no content) otherwise."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"credentials file {source} is not UTF-8 text") from None


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
        line = raw_line.strip().lstrip("\ufeff").strip()  # a mark left mid-file by concatenating files
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields_ = [f.strip() for f in line.split(":")]
        if len(fields_) == 2:
            ak, sk = fields_
            if not ak or not sk:
                raise ConfigError(f"{where}: empty access key id or secret (expected AK:SK or BUCKET:AK:SK)")
        elif len(fields_) == 3:
            line_bucket, ak, sk = fields_
            if not line_bucket or not ak or not sk:
                raise ConfigError(f"{where}: empty field (expected AK:SK or BUCKET:AK:SK)")
        else:
            raise ConfigError(f"{where}: malformed line with {len(fields_)} fields (expected AK:SK or BUCKET:AK:SK)")
        problem = unsendable_field(ak, sk)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        if len(fields_) == 2 and default_match is None:
            default_match = Credentials(ak, sk, None, source)
        elif len(fields_) == 3 and fields_[0] == bucket and bucket_match is None:
            bucket_match = Credentials(ak, sk, None, source)
    return bucket_match or default_match


def _read_secret_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    return decode_text(data, str(path)).strip()


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
    """OSS_ACCESS_KEY_ID + OSS_ACCESS_KEY_SECRET (+ OSS_SESSION_TOKEN), else ossfs's OSSACCESSKEYID +
    OSSSECRETACCESSKEY (+ OSSSESSIONTOKEN); None unless both keys of one naming are set."""
    for names in ((ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SESSION_TOKEN),
                  tuple(OSSFS_ENV_NAMES[n] for n in (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SESSION_TOKEN))):
        id_name, secret_name, token_name = names
        access_key_id = environ.get(id_name, "").strip()
        secret = environ.get(secret_name, "").strip()
        if not access_key_id and not secret:
            continue
        if not access_key_id or not secret:
            missing = id_name if not access_key_id else secret_name
            raise ConfigError(f"environment has only half an access key: {missing} is not set")
        token = environ.get(token_name, "").strip() or None
        return Credentials(access_key_id, secret, token, "environment")
    return None


def take_environment_credentials() -> dict[str, str]:
    """The credential variables (SECRET_ENV_NAMES) of this process's environment, removed from it for good:
    from os.environ, libc's environ (so no child inherits them) and the block /proc/PID/environ shows
    (`ossmount.procenv`). Resolve credentials from the returned mapping (merged over os.environ)."""
    from ossmount import procenv

    taken = {name: os.environ[name] for name in SECRET_ENV_NAMES if name in os.environ}
    procenv.forget(SECRET_ENV_NAMES)
    return taken


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


class RefreshingCredentials:
    """A provider whose credentials may change (the base of `FileCredentials` and `EcsRamRoleCredentials`).

    `current()` is thread-safe. It answers from memory until `_due()` says to look again, then `_fetch()`es. When
    fetching fails with ConfigError: the first time, the error is raised; later, the previous credentials are
    kept as long as `_keep_after(exc)` allows, `reload_error` says why (logged once per distinct reason) and the
    error is raised once they may no longer be used. `reloads` counts how often different credentials were
    picked up after the first ones."""

    def __init__(self, first: Credentials | None = None) -> None:
        self._lock = threading.Lock()
        self._credentials = first
        self.reloads = 0
        self.reload_error: str | None = None

    @property
    def last(self) -> Credentials | None:
        """The credentials handed out last (no I/O); None before the first `current()`."""
        return self._credentials

    def current(self) -> Credentials:
        with self._lock:
            if not self._due() and self._credentials is not None:
                return self._credentials
            try:
                fresh = self._fetch()
            except ConfigError as exc:
                if self._credentials is None or not self._keep_after(exc):
                    raise
                if self.reload_error != str(exc):
                    log.warning("%s; still signing with the previous credentials (AccessKey ID %s)", exc,
                                self._credentials.access_key_id)
                self.reload_error = str(exc)
                return self._credentials
            if self._credentials is not None and fresh != self._credentials:
                self.reloads += 1
                log.info("credentials renewed from %s (AccessKey ID %s)", fresh.source, fresh.access_key_id)
            self._credentials, self.reload_error = fresh, None
            return fresh

    def current_nowait(self) -> Credentials | None:
        """What `current()` returns when that needs no network request now, else None: the store signs on its event
        loop and runs `current()` in a worker thread only then. Local files count as no network (a stat per call,
        a read when they changed)."""
        if self.fetches_over_network and (self._credentials is None or self._due()):
            return None
        return self.current()

    fetches_over_network: ClassVar[bool] = False

    def _due(self) -> bool:
        """Whether to fetch again (called under the lock before every answer)."""
        raise NotImplementedError

    def _fetch(self) -> Credentials:
        """The credentials now; ConfigError (naming the source, never a secret) when they cannot be had."""
        raise NotImplementedError

    def _keep_after(self, error: ConfigError) -> bool:
        """Whether the previous credentials may still be used after `error` (default: yes)."""
        return True


class FileCredentials(RefreshingCredentials):
    """The credentials of `bucket` in a passwd file or credentials directory, re-read when it changes on disk.

    A change that cannot be read (a half-written file, a swap in progress) keeps the previous credentials; the
    next change is tried again. `first`, if given, are the credentials already read from `path` (no second read
    until the first `current()`)."""

    def __init__(self, path: str | os.PathLike[str], bucket: str, *, first: Credentials | None = None) -> None:
        super().__init__(first)
        self.path = Path(path)
        self.bucket = bucket
        self._signature: tuple | None = None
        self._seen: tuple | None = None

    @property
    def access_key_id(self) -> str:
        return self.current().access_key_id

    def load(self) -> Credentials:
        """Read the file or directory now (ConfigError if it is unreadable or has no line for the bucket)."""
        found = read_passwd_file(self.path, self.bucket)
        if found is None:
            raise ConfigError(f"credentials file {self.path} has no line for bucket '{self.bucket}'")
        return found

    def _due(self) -> bool:
        self._seen = self._stat_signature()
        return self._seen != self._signature

    def _fetch(self) -> Credentials:
        self._signature = self._seen  # a change that cannot be read is not read again until the next change
        return self.load()

    def _stat_signature(self) -> tuple:
        try:
            top = os.stat(self.path)
        except OSError as exc:
            return ("error", exc.errno)
        signature = (top.st_ino, top.st_dev, top.st_size, top.st_mtime_ns)
        if not stat.S_ISDIR(top.st_mode):
            return signature  # a passwd file (checked before every request: one stat, nothing else)
        entries: list[tuple] = [signature]
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
        return f"FileCredentials(path={str(self.path)!r}, bucket={self.bucket!r})"


def resolve_provider(
    bucket: str,
    *,
    passwd_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    default_path: str | os.PathLike[str] = DEFAULT_PASSWD_PATH,
) -> Credentials | FileCredentials:
    """Resolve as `resolve_credentials` does (same order, same errors): credentials found in a file or directory
    come as a `FileCredentials` that re-reads it when it changes, environment credentials as fixed ones."""
    first = resolve_credentials(bucket, passwd_file=passwd_file, environ=environ, default_path=default_path)
    if first.source == "environment":
        return first
    return FileCredentials(first.source, bucket, first=first)


def require_session_token(credentials: Credentials) -> Credentials:
    """`-o use_session_token`: the credentials must be temporary (STS) ones, with a session token (ossfs rule)."""
    if not credentials.security_token:
        raise ConfigError(
            f"use_session_token: the credentials from {credentials.source or 'the environment'} have no session "
            f"token; set {ENV_SESSION_TOKEN} (or put a SecurityToken file in the credentials directory)"
        )
    return credentials


# --------------------------------------------------------------------------------------------------
# ECS RAM role (ram_role=)


def parse_ecs_role_list(text: str) -> str:
    """The role name the metadata service lists for this instance (`ram_role=auto`); ConfigError if none."""
    roles = [line.strip() for line in text.splitlines() if line.strip()]
    if not roles:
        raise ConfigError("ram_role=auto: this instance has no RAM role attached (the metadata service lists none)")
    return roles[0]


def _parse_iso8601(value: str) -> float:
    return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))


def parse_ecs_credentials(text: str, role: str) -> tuple[Credentials, float, float]:
    """(credentials, expires_at, lifetime) from the metadata service's JSON answer for `role`:
    {"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration", "LastUpdated"}.
    Raises ConfigError naming the role (never a secret) when the answer is not usable."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"ram_role {role}: the metadata service answered something that is not JSON") from None
    if not isinstance(document, dict) or document.get("Code") != "Success":
        code = document.get("Code") if isinstance(document, dict) else None
        raise ConfigError(f"ram_role {role}: the metadata service refused to give credentials (Code {code!r})")
    try:
        expires_at = _parse_iso8601(document["Expiration"])
        updated = document.get("LastUpdated")
        lifetime = expires_at - _parse_iso8601(updated) if updated else ECS_DEFAULT_LIFETIME
        credentials = Credentials(str(document["AccessKeyId"]), str(document["AccessKeySecret"]),
                                  str(document["SecurityToken"]), f"ram role {role}", document["Expiration"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"ram_role {role}: the metadata service's answer lacks AccessKeyId, AccessKeySecret, "
                          "SecurityToken or Expiration") from None
    return credentials, expires_at, max(lifetime, 0.0)


def ecs_metadata_endpoint(environ: Mapping[str, str] = os.environ) -> str:
    """The instance metadata service: OSSMOUNT_ECS_METADATA_ENDPOINT, else http://100.100.100.200."""
    return (environ.get(ENV_ECS_METADATA_ENDPOINT) or DEFAULT_ECS_METADATA_ENDPOINT).rstrip("/")


class EcsRamRoleCredentials(RefreshingCredentials):
    """The STS credentials of the instance's RAM role (`role`, or None to use the one the instance has).

    `current()` answers from memory and asks the metadata service again once less than 15% of the credentials'
    lifetime (at least 60 s) is left. If asking fails while the old credentials are still valid they are kept, a
    warning is logged and the service is asked again 15 s later; once they have expired the failure is raised
    (ConfigError, naming the role and the cause). Metadata requests use a hardened-mode session token when the
    service hands one out, and go without otherwise.
    """

    fetches_over_network = True

    def __init__(self, role: str | None, *, endpoint: str | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = ECS_REQUEST_TIMEOUT):
        super().__init__()
        self.role = role
        self.endpoint = (endpoint or ecs_metadata_endpoint()).rstrip("/")
        self._clock = clock
        self._timeout = timeout
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._token: str | None = None
        self._token_expires_at = 0.0

    @property
    def access_key_id(self) -> str:
        """The key id last handed out (for messages); the role before the first request."""
        if self._credentials is not None:
            return self._credentials.access_key_id
        return f"(RAM role {self.role or 'of this instance'})"

    def _due(self) -> bool:
        return self._clock() >= self._refresh_at

    def _keep_after(self, error: ConfigError) -> bool:
        now = self._clock()
        if now >= self._expires_at:
            return False
        self._refresh_at = now + ECS_MIN_REFRESH_MARGIN / 4  # try again soon, not on every request
        return True

    def _fetch(self) -> Credentials:
        now = self._clock()
        role = self.role or parse_ecs_role_list(self._get(ECS_ROLE_PATH))
        credentials, expires_at, lifetime = parse_ecs_credentials(self._get(ECS_ROLE_PATH + role), role)
        if expires_at <= now:
            raise ConfigError(f"ram_role {role}: the metadata service handed out credentials that already expired "
                              f"({credentials.expiration}); check the instance's clock")
        self._expires_at = expires_at
        self._refresh_at = expires_at - max(ECS_MIN_REFRESH_MARGIN, ECS_REFRESH_SHARE * lifetime)
        log.info("ram_role %s: credentials %s valid until %s", role, credentials.access_key_id,
                 credentials.expiration)
        return credentials

    def _session_token(self) -> str | None:
        now = self._clock()
        if self._token is not None and now < self._token_expires_at:
            return self._token
        request = urllib.request.Request(self.endpoint + ECS_TOKEN_PATH, method="PUT",
                                         headers={"X-aliyun-ecs-metadata-token-ttl-seconds": str(ECS_TOKEN_TTL)})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                self._token = response.read().decode("utf-8").strip() or None
        except (urllib.error.URLError, OSError, UnicodeDecodeError):
            self._token = None  # normal mode: the service does not require (or offer) a token
        self._token_expires_at = now + ECS_TOKEN_TTL / 2
        return self._token

    def _get(self, path: str) -> str:
        token = self._session_token()
        headers = {"X-aliyun-ecs-metadata-token": token} if token else {}
        request = urllib.request.Request(self.endpoint + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            what = "role" if path.rstrip("/") != ECS_ROLE_PATH.rstrip("/") else "role list"
            raise ConfigError(f"ram_role {self.role or 'auto'}: the metadata service at {self.endpoint} answered "
                              f"{exc.code} for the {what} (is the RAM role attached to this instance?)") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"ram_role {self.role or 'auto'}: cannot reach the instance metadata service at "
                              f"{self.endpoint} ({reason}); ram_role works on ECS instances only") from None
        except UnicodeDecodeError:
            raise ConfigError(f"ram_role {self.role or 'auto'}: the metadata service's answer is not text") from None

    def __repr__(self) -> str:
        return f"EcsRamRoleCredentials(role={self.role!r}, endpoint={self.endpoint!r})"
