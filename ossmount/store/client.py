"""`ObjectStore`: the async object-store client, and the only module that imports oss2.

Theory of operation:
  * Every oss2 call is blocking; it runs in a worker thread via `trio.to_thread.run_sync` under one
    `CapacityLimiter` (`max_connections`). All requests share one `oss2.Session` whose urllib3 pool holds
    at least as many connections as the limiter has tokens, so no connection is ever discarded for lack
    of pool room.
  * oss2's own CRC adapter is off (`enable_crc=False`): it runs crcmod at ~400 MiB/s over every byte.
    Uploads compute CRC-64/XZ with fastcrc and compare it with `x-oss-hash-crc64ecma`; a multipart
    object's CRC is checked against the combination of its part CRCs.
  * GET bodies are read with `raw.readinto` straight into the caller's buffer (no 8 KiB iteration);
    a response abandoned before its end is drained when the rest is small, else closed, so the pooled
    connection is never left with unread bytes.
  * oss2, requests and urllib3 exceptions become `ossmount.store.types` errors in `_translate_errors`
    (the one mapping table); retries happen in `RetryPolicy.run` (the one retry loop).
  * Answers oss2 parses (listings, multipart, bucket info) are untrusted input: a body oss2 cannot parse
    (malformed or truncated XML, a missing or non-numeric field, an undecodable encoding) or one larger than
    `_MAX_PARSED_BODY` once decoded becomes a TransientError with code InvalidResponse (`_Bucket`), retried like a
    5xx and then EIO; expat's limits refuse entity-expansion bombs. A listing whose keys or common prefixes lie
    outside the requested prefix, or whose continuation token does not move, is refused the same way.
  * Statistics are updated only from the trio thread, so they need no lock.
  * Option-driven headers (ACL, storage class, SSE, request payer, traffic limits, ahbe_conf) and the copy
    strategy (nocopyapi, norenameapi, noshallowcopyapi) come from `RequestHeaders` and `CopyPolicy`
    (headers.py). Credentials are read at signing time from a provider, so rotated STS credentials (ram_role,
    a credentials directory) sign the next request without a remount; None signs nothing (public_bucket=1).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import socket
import ssl
import time
import urllib.parse
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, BinaryIO, Callable, Iterator, Mapping, NamedTuple, Protocol, TypeVar

import oss2
import oss2.exceptions
import requests
import trio
import urllib3.exceptions

from ossmount import USER_AGENT
from ossmount.errors import ConfigError
from ossmount.ops.accounting import RequestLedger
from ossmount.store import types
from ossmount.crc64 import crc64, crc64_concat
from ossmount.store.headers import CopyPolicy, RequestHeaders, merge_headers
from ossmount.store.retry import RetryPolicy
from ossmount.store.types import ListPage, ObjectInfo, PartInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONTENT_TYPE = "application/octet-stream"
META_PREFIX = "x-oss-meta-"
MAX_DELETE_BATCH = 1000
MAX_KEY_BYTES = 1023
# When an abandoned GET has at most this many unread bytes, reading them keeps the connection pooled.
_DRAIN_LIMIT = 256 * 1024
_READ_CHUNK = 1024 * 1024
# The largest answer body parsed as XML: a full listing page of 1,000 keys of 1,023 bytes, url-encoded, is < 4 MiB.
_MAX_PARSED_BODY = 64 * 1024 * 1024

# OSS error codes and what they become. Anything not listed falls back to the HTTP status (below).
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSecurityToken",
        "SecurityTokenExpired",
        "RequestTimeTooSkewed",
        "AccessForbidden",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "QpsLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "SlowDown",
        "TooManyRequests",
        "ConnectionReset",
    }
)
_CODE_TO_ERROR: Mapping[str, type[types.StoreError]] = {
    "NoSuchKey": types.NoSuchKey,
    "NoSuchBucket": types.NoSuchBucket,
    "PreconditionFailed": types.PreconditionFailed,
    "InvalidObjectState": types.InvalidObjectState,
    "FileAlreadyExists": types.AlreadyExists,
    "InvalidArgument": types.InvalidArgument,
    "InvalidObjectName": types.InvalidArgument,
    "InvalidRange": types.InvalidArgument,
    "EntityTooLarge": types.EntityTooLarge,
    "KeyTooLong": types.NameTooLong,
    **{code: types.AccessDenied for code in _AUTH_CODES},
    **{code: types.TransientError for code in _TRANSIENT_CODES},
}
_STATUS_TO_ERROR: Mapping[int, type[types.StoreError]] = {
    403: types.AccessDenied,
    404: types.NoSuchKey,
    412: types.PreconditionFailed,
    429: types.TransientError,
}


class Credentials(Protocol):
    """What the store signs with (`ossmount.credentials.Credentials`)."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None


class CredentialsProvider(Protocol):
    """Where each request's credentials come from: fixed `Credentials`, `FileCredentials` (a passwd file or
    credentials directory re-read when it changes) or `EcsRamRoleCredentials` (ram_role), all in
    `ossmount.credentials`. `current()` is called from a worker thread for every request signed, so rotated
    credentials sign the next request; it must be cheap while nothing changed and raises ConfigError when no
    credentials can be had (the request then fails with CredentialsUnavailable). `access_key_id` (for messages),
    `reloads` (how often new credentials were picked up) and `reload_error` (why the last attempt failed, the
    previous ones still in use) are read without I/O, except that a file provider may look at the file."""

    @property
    def access_key_id(self) -> str: ...

    reloads: int
    reload_error: str | None

    def current(self) -> Credentials: ...


@dataclass(frozen=True)
class StoreStatistics:
    """A snapshot of what an `ObjectStore` has done since it was created."""

    requests: Mapping[str, int] = field(default_factory=dict)  # attempts per OSS operation name
    bytes_in: int = 0  # body bytes received (GET)
    bytes_out: int = 0  # body bytes sent (PUT, UploadPart)
    retries: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)  # failed attempts per error code
    last_success_at: float | None = None  # wall clock of the last attempt that succeeded
    last_error: str | None = None  # code of the last attempt that failed, and when
    last_error_at: float | None = None


def error_from_oss(exc: BaseException, *, op: str = "", key: str = "") -> types.StoreError | None:
    """The `StoreError` for an oss2 / requests / urllib3 / socket exception, or None if it is none of those.

    This is the one table from OSS error codes and transport failures to ossmount's exceptions. Messages
    carry the OSS code and message but never the request headers or the string-to-sign.
    """
    where = f"{op} {key!r}" if key else op
    if isinstance(exc, oss2.exceptions.RequestError):
        return _transport_error(exc.exception, where=where, key=key)
    if isinstance(exc, oss2.exceptions.ClientError):
        return types.InvalidArgument(f"{where}: {exc.body}", code="ClientError", key=key)
    if isinstance(exc, oss2.exceptions.InconsistentError):
        return types.ChecksumMismatch(f"{where}: {exc.body}", code="InconsistentError", key=key)
    if isinstance(exc, oss2.exceptions.OssError):
        code = exc.code or ""
        status = exc.status
        error_class = _CODE_TO_ERROR.get(code)
        if error_class is None:
            if status >= 500:
                error_class = types.TransientError
            else:
                error_class = _STATUS_TO_ERROR.get(status, types.StoreError)
        if error_class is types.NoSuchKey and code == "" and not key:
            error_class = types.NoSuchBucket
        if code == "InvalidObjectName" and len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
            error_class = types.NameTooLong  # OSS's answer to a key over 1023 bytes
        message = exc.message or (code if code else f"HTTP {status}")
        return error_class(
            f"{where}: {message}", code=code or _code_for_status(status), status=status,
            request_id=exc.request_id, key=key,
        )
    if isinstance(exc, (requests.RequestException, urllib3.exceptions.HTTPError, OSError)):
        return _transport_error(exc, where=where, key=key)
    if isinstance(exc, _InvalidResponse):
        return types.TransientError(f"{where}: the server's answer is not usable ({exc})", code="InvalidResponse",
                                    request_id=exc.request_id, key=key)
    if isinstance(exc, ConfigError):  # the credentials provider could not produce credentials (ram_role)
        return types.TransientError(f"{where}: no credentials to sign with: {exc}", code="CredentialsUnavailable",
                                    key=key)
    return None


class _InvalidResponse(Exception):
    """The server's answer could not be parsed (raised by `_Bucket`, mapped by `error_from_oss`)."""

    def __init__(self, reason: str, request_id: str = ""):
        super().__init__(reason)
        self.request_id = request_id


class _Bucket(oss2.Bucket):
    """oss2.Bucket whose parsing of answers fails with `_InvalidResponse` rather than whatever the parser met."""

    @staticmethod
    def _parse_result(resp: Any, parse_func: Callable[[Any, bytes], Any], klass: Any) -> Any:
        result = klass(resp)
        body = _read_bounded(resp, _MAX_PARSED_BODY)
        try:
            parse_func(result, body)
        except Exception as exc:  # noqa: BLE001 - any parser failure means the same: an unusable answer
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise _InvalidResponse(f"{type(exc).__name__}: {detail}", resp.request_id) from exc
        return result


def _read_bounded(resp: Any, limit: int) -> bytes:
    """The whole (decoded) body of an oss2 response, or _InvalidResponse once it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := resp.read(256 * 1024):
        size += len(chunk)
        if size > limit:
            resp.response.close()
            raise _InvalidResponse(f"the answer is larger than {limit} bytes", resp.request_id)
        chunks.append(chunk)
    return b"".join(chunks)


def _code_for_status(status: int) -> str:
    return {403: "AccessDenied", 404: "NotFound", 429: "TooManyRequests"}.get(status, f"HTTP{status}")


def _transport_error(exc: BaseException, *, where: str, key: str) -> types.StoreError:
    """Connection-level failures: refused/unresolvable/connect-timeout is unreachable, the rest transient."""
    chain = list(_exception_chain(exc))
    if any(isinstance(e, (ssl.SSLError, requests.exceptions.SSLError, urllib3.exceptions.SSLError)) for e in chain):
        return types.EndpointUnreachable(f"{where}: TLS failed: {_describe(chain)}", code="TLSError", status=-2,
                                         key=key)
    if any(
        isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.NewConnectionError,
                       urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError, socket.gaierror))
        for e in chain
    ):
        reason = _describe(chain)
        return types.EndpointUnreachable(f"{where}: endpoint unreachable: {reason}", code="ConnectionError",
                                         status=-2, key=key)
    if any(isinstance(e, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError,
                          socket.timeout)) for e in chain):
        return types.TransientError(f"{where}: read timed out", code="RequestTimeout", status=-2, key=key)
    return types.TransientError(f"{where}: connection failed: {_describe(chain)}", code="ConnectionReset",
                                status=-2, key=key)


def _exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        reason = getattr(exc, "reason", None)
        nested = reason if isinstance(reason, BaseException) else None
        if nested is None and exc.args and isinstance(exc.args[0], BaseException):
            nested = exc.args[0]
        if nested is None and len(exc.args) > 1 and isinstance(exc.args[1], BaseException):
            nested = exc.args[1]
        exc = nested or exc.__cause__ or exc.__context__


def _describe(chain: list[BaseException]) -> str:
    innermost = chain[-1]
    text = str(innermost) or type(innermost).__name__
    return text.split(": ", 1)[-1] if "Connection" in type(innermost).__name__ else text


@contextlib.contextmanager
def _translate_errors(op: str, key: str = "") -> Iterator[None]:
    try:
        yield
    except types.StoreError:
        raise
    except Exception as exc:
        store_error = error_from_oss(exc, op=op, key=key)
        if store_error is None:
            raise
        raise store_error from exc


def _decode_header_value(value: str) -> str:
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _metadata_headers(content_type: str | None, meta: Mapping[str, str] | None) -> dict[str, str]:
    """Content-Type and x-oss-meta-* headers. OSS (and oss2's signer) only handle ASCII metadata values:
    callers store anything else encoded (ossfs url-encodes xattrs), so non-ASCII is refused here."""
    headers = {"Content-Type": content_type or DEFAULT_CONTENT_TYPE}
    for name, value in (meta or {}).items():
        text = str(value)
        if not (text.isascii() and name.isascii()) or "\n" in text or "\r" in text:
            raise types.InvalidArgument(f"metadata {name!r} must be ASCII without line breaks; encode it first",
                                        code="InvalidArgument")
        headers[META_PREFIX + name.lower()] = text
    return headers


def _content_type(headers: Mapping[str, str]) -> str:
    """The Content-Type among request headers whatever its spelling (ahbe_conf may set it)."""
    return next((v for n, v in headers.items() if n.lower() == "content-type"), DEFAULT_CONTENT_TYPE)


def _response_time(headers: Mapping[str, str]) -> float:
    """The server's Date header as epoch seconds: an upload's Last-Modified, without another HEAD."""
    date = headers.get("date")
    try:
        return float(oss2.utils.http_to_unixtime(date)) if date else 0.0
    except ValueError:
        return 0.0


def _strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def _object_info_from_headers(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    meta = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(META_PREFIX):
            meta[lowered[len(META_PREFIX):]] = _decode_header_value(value)
    crc = headers.get("x-oss-hash-crc64ecma")
    last_modified = headers.get("last-modified")
    return ObjectInfo(
        key=key,
        size=int(headers.get("content-length", 0)),
        etag=_strip_etag(headers.get("etag")),
        mtime=float(oss2.utils.http_to_unixtime(last_modified)) if last_modified else 0.0,
        content_type=headers.get("content-type"),
        meta=meta,
        object_type=headers.get("x-oss-object-type", "Normal"),
        storage_class=headers.get("x-oss-storage-class", "Standard"),
        restore=headers.get("x-oss-restore"),
        crc64=int(crc) if crc else None,
        version_id=headers.get("x-oss-version-id"),
    )


class _ProviderAdapter(oss2.credentials.CredentialsProvider):
    """oss2's view of our credentials: asked at every signing, so a rotated key is used at once."""

    def __init__(self, current: Callable[[], Credentials]):
        self._current = current

    def get_credentials(self) -> oss2.credentials.Credentials:
        credentials = self._current()
        return oss2.credentials.Credentials(credentials.access_key_id, credentials.access_key_secret,
                                            credentials.security_token or "")


class _Signer:
    """The `auth` of every oss2 request: adds the headers every request carries (headers.py rule 1), removes the
    User-Agent when there is none to send, then signs with the credentials current at that moment (V1 or V4),
    or not at all for anonymous access."""

    def __init__(self, current: Callable[[], Credentials] | None, sigv4: bool, headers: RequestHeaders):
        self._anonymous = current is None
        provider = _ProviderAdapter(current) if current is not None else None
        self._auth = (oss2.ProviderAuthV4(provider) if sigv4 else oss2.ProviderAuth(provider)) if provider else None
        self._sigv4 = sigv4
        self._every_request = headers.every_request()
        self._no_user_agent = headers.user_agent is None

    def auth_version(self) -> str:
        return oss2.AUTH_VERSION_4 if self._sigv4 else oss2.AUTH_VERSION_1

    def _prepare(self, req: Any) -> None:
        req.headers.update(self._every_request)
        if self._no_user_agent:
            req.headers["User-Agent"] = urllib3.util.SKIP_HEADER  # requests would add python-requests/x.y

    def _sign_request(self, req: Any, bucket_name: str, key: str) -> None:
        self._prepare(req)
        if self._auth is not None:
            self._auth._sign_request(req, bucket_name, key)

    def _sign_url(self, req: Any, bucket_name: str, key: str, expires: int, *args: Any, **kwargs: Any) -> str:
        self._prepare(req)
        if self._auth is None:
            return oss2.AnonymousAuth()._sign_url(req, bucket_name, key, expires)
        return self._auth._sign_url(req, bucket_name, key, expires, *args, **kwargs)


def _current(provider: CredentialsProvider | None) -> Callable[[], Credentials] | None:
    return None if provider is None else provider.current


class _Transport(requests.adapters.HTTPAdapter):
    """The connection pool: TLS verification as configured (trusted CAs, no_check_certificate,
    ssl_verify_hostname=0) and an optional service path (servicepath=) put in front of every URL path, after
    signing (a reverse proxy strips it before OSS sees the request, so the signature covers /bucket/key).

    Trust: `ca_bundle` (a PEM file or hashed directory) alone when given; otherwise the system's store (an
    `ssl.create_default_context()`, so $SSL_CERT_FILE/$SSL_CERT_DIR apply) plus certifi's bundle, which requests
    adds to every connection. The environment's REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE are not consulted here: the
    caller decides (ossmount.storeconfig.tls_trust)."""

    def __init__(self, pool_size: int, *, verify_tls: bool, verify_hostname: bool, service_path: str,
                 ca_bundle: str | None = None):
        self._verify: bool | str = (ca_bundle or True) if verify_tls else False
        self._verify_hostname = verify_hostname
        self._service_path = "/" + service_path.strip("/") if service_path.strip("/") else ""
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if not self._verify_hostname:
            kwargs["assert_hostname"] = False
        if self._verify is True:
            kwargs["ssl_context"] = ssl.create_default_context()
        super().init_poolmanager(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = self._verify  # requests would put REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE there
        if self._service_path and request.url:
            parts = urllib.parse.urlsplit(request.url)
            request.url = urllib.parse.urlunsplit(parts._replace(path=self._service_path + parts.path))
        return super().send(request, **kwargs)


def _pinned(headers: dict[str, str], if_match: str | None, version_id: str | None
            ) -> tuple[dict[str, str], dict[str, str] | None]:
    """`headers` and the query parameters that pin a GET to one version: `?versionId=` when the bucket keeps
    versions (the old bytes stay readable), else `If-Match: "ETAG"` (a replaced object answers 412)."""
    if version_id:
        return headers, {"versionId": version_id}
    if if_match:
        headers = {**headers, "If-Match": f'"{if_match}"'}
    return headers, None


class _Received(NamedTuple):
    """A GET's answer as `_attempt` accounts it: the value for the caller, body bytes, HTTP status, request id."""

    value: Any
    size: int
    status: int
    request_id: str


class _FileSlice:
    """A read-only view of `size` bytes of a file from `offset`, computing CRC-64 as requests streams it.

    `__len__` gives requests the Content-Length; reads use `os.pread` when the file has a descriptor, so
    several parts of one file can upload concurrently without sharing a file position.
    """

    def __init__(self, fileobj: BinaryIO, offset: int, size: int):
        self._file = fileobj
        self._offset = offset
        self._size = size
        self._position = 0
        self.crc = 0
        try:
            self._fd: int | None = fileobj.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def __len__(self) -> int:
        return self._size - self._position

    def read(self, amount: int = -1) -> bytes:
        remaining = self._size - self._position
        if amount is None or amount < 0 or amount > remaining:
            amount = remaining
        amount = min(amount, _READ_CHUNK)
        if amount <= 0:
            return b""
        if self._fd is not None:
            chunk = os.pread(self._fd, amount, self._offset + self._position)
        else:
            self._file.seek(self._offset + self._position)
            chunk = self._file.read(amount)
        if not chunk:
            raise OSError(f"file ended {remaining} bytes before the announced size")
        self._position += len(chunk)
        self.crc = crc64(chunk, self.crc)
        return chunk


class ObjectStore:
    """Async facade over one OSS bucket (see the module docstring for the threading and error rules).

    Build it with `ObjectStore.create(...)`. Every method is a trio checkpoint and raises only
    `ossmount.store.types.StoreError` subclasses for OSS or network failures.
    """

    def __init__(self, bucket: oss2.Bucket, *, endpoint: str, bucket_name: str, region: str | None,
                 sigv4: bool, credentials: CredentialsProvider | None, retry: RetryPolicy,
                 net_limiter: trio.CapacityLimiter, headers: RequestHeaders = RequestHeaders(),
                 copy_policy: CopyPolicy = CopyPolicy(), list_max_keys: int = 1000,
                 ledger: RequestLedger | None = None):
        self._bucket = bucket
        # Every attempt, charged to the FUSE caller that caused it (shared by `with_retry` copies).
        self.ledger = ledger if ledger is not None else RequestLedger()
        self.endpoint = endpoint
        self.bucket_name = bucket_name
        self.region = region
        self.sigv4 = sigv4
        self._credentials = credentials
        self.retry = retry
        self.headers = headers
        self.copy_policy = copy_policy
        self.list_max_keys = list_max_keys
        self._net_limiter = net_limiter
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._bytes_in = 0
        self._bytes_out = 0
        self._retries = 0
        self._last_success_at: float | None = None
        self._last_error: tuple[str, float] | None = None
        self._bucket_missing = False
        self._bucket_watchers: list[tuple[Callable[[types.StoreError], None], Callable[[], None]]] = []

    @classmethod
    def create(
        cls,
        *,
        endpoint: str,
        bucket: str,
        credentials: CredentialsProvider | None,
        region: str | None = None,
        sigv4: bool = False,
        max_connections: int = 16,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        headers: RequestHeaders = RequestHeaders(),
        copy_policy: CopyPolicy = CopyPolicy(),
        list_max_keys: int = 1000,
        verify_tls: bool = True,
        verify_hostname: bool = True,
        service_path: str = "",
        path_style: bool = False,
        ca_bundle: str | None = None,
    ) -> "ObjectStore":
        """A store for `bucket` at `endpoint` ("http[s]://host[:port]").

        `credentials`: a `CredentialsProvider` asked at every signing (fixed `Credentials` are one; a
        `security_token` selects STS; rotation needs no new store), or None for unsigned requests (a public
        bucket). Signatures are V1, or V4 with `sigv4`, in `_Signer` (the one place). `timeout` bounds
        each read on the socket, `connect_timeout` each TCP connect (seconds). With `sigv4`, `region` (e.g.
        "cn-hangzhou") is required. `headers` and `copy_policy`: what the mount options add to requests and how
        copies are made (headers.py). `list_max_keys` (1..1000) is each LIST page's max-keys. `verify_tls=False`
        accepts any certificate and `verify_hostname=False` any host name in a trusted one (both insecure);
        `ca_bundle` (a PEM file or hashed directory) replaces the trusted authorities (see `_Transport`).
        `service_path` is put in front of every URL path (a reverse proxy's prefix); an IP or localhost endpoint,
        or `path_style`, addresses the bucket in the path instead of the host name.
        """
        if sigv4 and not region:
            raise ValueError("sigv4 needs a region")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not 1 <= list_max_keys <= 1000:
            raise ValueError("list_max_keys must be 1..1000")
        pool_size = max_connections + 2
        transport = _Transport(pool_size, verify_tls=verify_tls, verify_hostname=verify_hostname,
                               service_path=service_path, ca_bundle=ca_bundle)
        session = oss2.Session(pool_size=pool_size, adapter=transport)
        if not verify_tls or not verify_hostname:
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS %s of %s are not verified: anyone on the path can read and change the data",
                        "certificates" if not verify_tls else "host names", endpoint)
        with _translate_errors("create", bucket):  # an invalid endpoint or bucket name: InvalidArgument
            oss_bucket = _Bucket(
                _Signer(_current(credentials), sigv4, headers), endpoint, bucket, session=session,
                connect_timeout=(connect_timeout, timeout), app_name=headers.user_agent or USER_AGENT,
                enable_crc=False, region=region, is_path_style=path_style,
            )
        return cls(oss_bucket, endpoint=endpoint, bucket_name=bucket, region=region, sigv4=sigv4,
                   credentials=credentials, retry=retry or RetryPolicy(),
                   net_limiter=trio.CapacityLimiter(max_connections), headers=headers, copy_policy=copy_policy,
                   list_max_keys=list_max_keys)

    @property
    def credentials(self) -> CredentialsProvider | None:
        """Where the requests' credentials come from (None: unsigned requests)."""
        return self._credentials

    @property
    def access_key_id(self) -> str:
        """The AccessKey ID requests are signed with ("anonymous" for unsigned requests); for messages."""
        return "anonymous" if self._credentials is None else self._credentials.access_key_id

    def with_retry(self, retry: RetryPolicy, *, connect_timeout: float | None = None,
                   timeout: float | None = None) -> "ObjectStore":
        """A store sharing this one's connections and limiter but retrying per `retry` (own statistics), and
        with other timeouts (seconds) if given: mount-time checks must fail fast whatever connect_timeout says."""
        bucket = self._bucket
        if connect_timeout is not None or timeout is not None:
            current_connect, current_read = bucket.timeout if isinstance(bucket.timeout, tuple) else (bucket.timeout,) * 2
            bucket = copy.copy(bucket)
            bucket.timeout = (connect_timeout or current_connect, timeout or current_read)
        return ObjectStore(bucket, endpoint=self.endpoint, bucket_name=self.bucket_name, region=self.region,
                           sigv4=self.sigv4, credentials=self._credentials, retry=retry,
                           net_limiter=self._net_limiter, headers=self.headers, copy_policy=self.copy_policy,
                           list_max_keys=self.list_max_keys, ledger=self.ledger)

    def update_credentials(self, credentials: CredentialsProvider | None) -> None:
        """Sign later requests with other credentials or another provider; requests in flight keep the old ones.
        (Rotation needs no call: a provider's `current()` is asked for every request.)"""
        self._bucket.auth = _Signer(_current(credentials), self.sigv4, self.headers)
        self._credentials = credentials

    # -- plumbing ---------------------------------------------------------------------------------

    async def _attempt(self, op: str, key: str, fn: Callable[[], T], *, sent: int = 0) -> T:
        """One request attempt: the only place a request starts (statistics, and the ledger that charges it to
        the FUSE caller, `ossmount.ops.accounting`). `sent`: body bytes it uploads."""
        self._requests[op] += 1
        with self.ledger.attempt(op, key, sent=sent) as attempt:
            try:
                with _translate_errors(op, key):
                    result = await trio.to_thread.run_sync(fn, limiter=self._net_limiter)
            except types.StoreError as error:
                self._errors[error.code or type(error).__name__] += 1
                self._last_error = (error.code or type(error).__name__, time.time())
                if isinstance(error, types.NoSuchBucket):
                    self._note_bucket_missing(error)
                raise
            received = result.size if isinstance(result, _Received) else 0
            attempt.done(status=getattr(result, "status", 200), received=received,
                         request_id=getattr(result, "request_id", "") or "")
        self._bytes_in += received
        self._bytes_out += sent
        self._last_success_at = time.time()
        if self._bucket_missing:
            self._bucket_missing = False
            for _, on_back in self._bucket_watchers:
                on_back()
        return result

    # -- bucket outages ---------------------------------------------------------------------------

    @property
    def bucket_missing(self) -> bool:
        """True from a NoSuchBucket answer until the next request that succeeds."""
        return self._bucket_missing

    def watch_bucket(self, on_missing: Callable[[types.StoreError], None], on_back: Callable[[], None]) -> None:
        """Call `on_missing(error)` once when an outage starts (the first NoSuchBucket answer) and `on_back()`
        once when it ends (the first request that succeeds again); both on the trio thread, synchronously.
        A mount logs one line for each, however many requests fail in between."""
        self._bucket_watchers.append((on_missing, on_back))

    def _note_bucket_missing(self, error: types.StoreError) -> None:
        if self._bucket_missing:
            return
        self._bucket_missing = True
        for on_missing, _ in self._bucket_watchers:
            on_missing(error)

    async def _call(self, op: str, key: str, fn: Callable[..., T], *args: Any, idempotent: bool = True,
                    **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await self.retry.run(lambda: self._attempt(op, key, call), idempotent=idempotent,
                                    on_retry=self._note_retry)

    def _note_retry(self, error: types.TransientError, failed_attempts: int, delay: float) -> None:
        self._retries += 1
        log.info("retrying after %s (attempt %d failed, sleeping %.2fs)", error, failed_attempts, delay)

    def statistics(self) -> StoreStatistics:
        """Requests, bytes, retries and errors so far (a frozen snapshot)."""
        last_error, last_error_at = self._last_error or (None, None)
        return StoreStatistics(requests=dict(self._requests), bytes_in=self._bytes_in,
                               bytes_out=self._bytes_out, retries=self._retries, errors=dict(self._errors),
                               last_success_at=self._last_success_at, last_error=last_error,
                               last_error_at=last_error_at)

    def _verify_crc(self, op: str, key: str, expected: int, headers: Mapping[str, str], request_id: str) -> int | None:
        reported = headers.get("x-oss-hash-crc64ecma")
        if reported is None:
            return None
        if int(reported) != expected:
            raise types.ChecksumMismatch(
                f"{op} {key!r}: CRC-64 mismatch (sent {expected}, OSS computed {reported})",
                code="InvalidDigest", request_id=request_id, key=key,
            )
        return expected

    # -- metadata ---------------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        """HeadObject: size, etag, mtime, content type, user metadata, version id. NoSuchKey if absent."""
        result = await self._call("HeadObject", key, self._bucket.head_object, key)
        return _object_info_from_headers(key, result.headers)

    async def list_page(self, prefix: str, *, delimiter: str = "/", token: str | None = None,
                        max_keys: int | None = None, v2: bool = True) -> ListPage:
        """One page of ListObjectsV2 (or V1 with `v2=False`) of at most `max_keys` entries (default: the store's
        `list_max_keys`, ossfs list_object_max_keys); pass `next_token` back to continue."""
        if max_keys is None:
            max_keys = self.list_max_keys
        if v2:
            result = await self._call(
                "ListObjectsV2", prefix, self._bucket.list_objects_v2, prefix=prefix, delimiter=delimiter,
                continuation_token=token or "", max_keys=max_keys, encoding_type="url",
            )
            next_token = result.next_continuation_token if result.is_truncated else None
        else:
            result = await self._call(
                "ListObjects", prefix, self._bucket.list_objects, prefix=prefix, delimiter=delimiter,
                marker=token or "", max_keys=max_keys,
            )
            next_token = None
            if result.is_truncated:
                # Without a delimiter OSS may omit NextMarker; the last key returned is the marker then.
                last = max([o.key for o in result.object_list] + list(result.prefix_list), default="")
                next_token = result.next_marker or last or None
        stray = next((k for k in [o.key for o in result.object_list] + list(result.prefix_list)
                      if not k.startswith(prefix)), None)
        if stray is not None:
            raise types.TransientError(f"{'ListObjectsV2' if v2 else 'ListObjects'} {prefix!r}: the server's answer "
                                       f"is not usable (it lists {stray!r}, outside the prefix)",
                                       code="InvalidResponse", request_id=result.request_id, key=prefix)
        objects = [
            ObjectInfo(
                key=o.key, size=int(o.size), etag=_strip_etag(o.etag), mtime=float(o.last_modified),
                object_type=o.type or "Normal", storage_class=o.storage_class or "Standard",
                restore=o.restore_info, from_listing=True,
            )
            for o in result.object_list
        ]
        return ListPage(objects=objects, prefixes=list(result.prefix_list), next_token=next_token or None)

    async def list_all(self, prefix: str, *, delimiter: str = "/", v2: bool = True
                       ) -> tuple[list[ObjectInfo], list[str]]:
        """Every object and common prefix under `prefix`, following continuation tokens."""
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        token: str | None = None
        while True:
            page = await self.list_page(prefix, delimiter=delimiter, token=token, v2=v2)
            objects.extend(page.objects)
            prefixes.extend(page.prefixes)
            if page.next_token is None:
                return objects, prefixes
            if token is not None and (page.next_token == token or (not v2 and page.next_token < token)):
                # V2 tokens are opaque but must change; V1 markers are keys and must grow (OSS lists in order)
                raise types.TransientError(f"{'ListObjectsV2' if v2 else 'ListObjects'} {prefix!r}: the server's "
                                           f"answer is not usable (the listing does not advance past {token!r})",
                                           code="InvalidResponse", key=prefix)
            token = page.next_token

    async def bucket_info(self) -> dict:
        """GetBucketInfo as a plain dict (name, location, storage class, creation date, ACL, ...)."""
        result = await self._call("GetBucketInfo", "", self._bucket.get_bucket_info)
        return {
            "name": result.name,
            "location": result.location,
            "storage_class": result.storage_class,
            "creation_date": result.creation_date,
            "acl": getattr(result.acl, "grant", None),
            "intranet_endpoint": result.intranet_endpoint,
            "extranet_endpoint": result.extranet_endpoint,
            "versioning_status": result.versioning_status,
        }

    async def bucket_stat(self) -> dict:
        """GetBucketStat: `storage_bytes`, `object_count`, `multipart_upload_count` (for statfs)."""
        result = await self._call("GetBucketStat", "", self._bucket.get_bucket_stat)
        return {
            "storage_bytes": int(result.storage_size_in_bytes or 0),
            "object_count": int(result.object_count or 0),
            "multipart_upload_count": int(result.multi_part_upload_count or 0),
        }

    # -- reads ------------------------------------------------------------------------------------

    def _write_headers(self, key: str, content_type: str | None, meta: Mapping[str, str] | None) -> dict[str, str]:
        """Content-Type and x-oss-meta-* of a write, plus the option-driven write headers (headers.py rule 2)."""
        return merge_headers(_metadata_headers(content_type, meta), self.headers.for_write(key))

    def _download_headers(self) -> dict[str, str]:
        return {"x-oss-range-behavior": "standard", "Accept-Encoding": "identity", **self.headers.for_download()}

    def _get_into_blocking(self, key: str, offset: int, buf: memoryview, if_match: str | None,
                           version_id: str | None) -> _Received:
        headers, params = _pinned(self._download_headers(), if_match, version_id)
        try:
            result = self._bucket.get_object(key, byte_range=(offset, offset + len(buf) - 1), headers=headers,
                                             params=params)
        except oss2.exceptions.ServerError as exc:
            if exc.status == 416:
                return _Received(0, 0, 416, exc.request_id)
            raise
        raw = result.resp.response.raw
        try:
            to_skip = offset if result.status == 200 else 0  # a server that ignored Range sent it all
            while to_skip:
                skipped = raw.read(min(to_skip, _READ_CHUNK))
                if not skipped:
                    return _Received(0, offset - to_skip, result.status, result.request_id)
                to_skip -= len(skipped)
            filled = 0
            while filled < len(buf):
                count = raw.readinto(buf[filled:])
                if not count:
                    break
                filled += count
            if filled < len(buf) or result.status == 200:
                self._release(result.resp.response)
            skipped = offset if result.status == 200 else 0
            return _Received(filled, filled + skipped, result.status, result.request_id)
        except BaseException:
            result.resp.response.close()
            raise

    @staticmethod
    def _release(response: requests.Response) -> None:
        """Drain a short unread tail (the connection goes back to the pool) or close the connection."""
        raw = response.raw
        remaining = None
        length = response.headers.get("content-length")
        if length is not None:
            remaining = int(length) - raw.tell()
        if remaining is not None and 0 <= remaining <= _DRAIN_LIMIT:
            try:
                while raw.read(65536):
                    pass
                return
            except Exception:  # noqa: BLE001 - draining is an optimisation; closing is always correct
                pass
        response.close()

    async def get_into(self, key: str, offset: int, buf: memoryview, *, if_match: str | None = None,
                       version_id: str | None = None) -> int:
        """Ranged GET of [offset, offset+len(buf)) into `buf`; returns bytes read (short at EOF, 0 past it).

        `version_id` reads that version (versioned buckets); otherwise `if_match` (an ETag) makes the GET fail
        with PreconditionFailed when the object is no longer that version.
        """
        if len(buf) == 0:
            return 0
        view = memoryview(buf).cast("B")
        received = await self._call("GetObject", key, self._get_into_blocking, key, offset, view, if_match,
                                    version_id)
        return received.value

    def _get_rest_blocking(self, key: str, offset: int, if_match: str | None, version_id: str | None) -> _Received:
        headers, params = _pinned(self._download_headers(), if_match, version_id)
        byte_range = (offset, None) if offset else None
        try:
            result = self._bucket.get_object(key, byte_range=byte_range, headers=headers, params=params)
        except oss2.exceptions.ServerError as exc:
            if exc.status == 416:
                return _Received(b"", 0, 416, exc.request_id)
            raise
        response = result.resp.response
        try:
            length = int(response.headers["content-length"])
            buf = bytearray(length)
            view = memoryview(buf)
            filled = 0
            while filled < length:
                count = response.raw.readinto(view[filled:])
                if not count:
                    break
                filled += count
            if filled < length:
                raise urllib3.exceptions.IncompleteRead(filled, length - filled)
            skip = offset if result.status == 200 else 0  # a server that ignored Range sent it all
            return _Received(bytes(buf[skip:]) if skip else bytes(buf), length, result.status, result.request_id)
        except BaseException:
            response.close()
            raise

    async def get_bytes(self, key: str, offset: int = 0, length: int | None = None, *, if_match: str | None = None,
                        version_id: str | None = None) -> bytes:
        """The object's bytes from `offset`: `length` of them, or all the rest in one GET when None.
        `if_match`/`version_id` pin the version as in `get_into`."""
        if length is not None:
            buf = bytearray(length)
            count = await self.get_into(key, offset, memoryview(buf), if_match=if_match, version_id=version_id)
            del buf[count:]
            return bytes(buf)
        received = await self._call("GetObject", key, self._get_rest_blocking, key, offset, if_match, version_id)
        return received.value

    # -- writes -----------------------------------------------------------------------------------

    async def _put_body(self, key: str, make_body: Callable[[], Any], size: int,
                        request_headers: dict[str, str], meta: Mapping[str, str] | None) -> ObjectInfo:
        """PutObject of a body made afresh for each attempt (bytes, or a `_FileSlice` that CRCs as it is read)."""
        request_headers = {**request_headers, **self.headers.for_upload()}

        async def attempt() -> ObjectInfo:
            body = make_body()
            result = await self._attempt("PutObject", key, functools.partial(
                self._bucket.put_object, key, body, headers=request_headers), sent=size)
            expected = body.crc if isinstance(body, _FileSlice) else crc64(body)
            crc = self._verify_crc("PutObject", key, expected, result.headers, result.request_id)
            return ObjectInfo(key=key, size=size, etag=_strip_etag(result.etag),
                              mtime=_response_time(result.headers), content_type=_content_type(request_headers),
                              meta=dict(meta or {}), crc64=crc, version_id=result.headers.get("x-oss-version-id"))

        return await self.retry.run(attempt, on_retry=self._note_retry)

    async def put(self, key: str, data: bytes | bytearray | memoryview, *, content_type: str | None = None,
                  meta: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                  forbid_overwrite: bool = False) -> ObjectInfo:
        """PutObject of an in-memory body; CRC-64 verified. AlreadyExists with `forbid_overwrite`."""
        body = bytes(data) if not isinstance(data, bytes) else data
        request_headers = self._write_headers(key, content_type, meta)
        request_headers.update(headers or {})
        if forbid_overwrite:
            request_headers["x-oss-forbid-overwrite"] = "true"
        return await self._put_body(key, lambda: body, len(body), request_headers, meta)

    async def put_file(self, key: str, fileobj: BinaryIO, size: int, *, content_type: str | None = None,
                       meta: Mapping[str, str] | None = None, offset: int = 0) -> ObjectInfo:
        """PutObject streamed from `size` bytes of `fileobj` starting at `offset`; CRC-64 verified."""
        return await self._put_body(key, lambda: _FileSlice(fileobj, offset, size), size,
                                    self._write_headers(key, content_type, meta), meta)

    async def copy(self, src_key: str, dst_key: str, *, content_type: str | None = None,
                   meta: Mapping[str, str] | None = None, size: int | None = None) -> str:
        """Copy an object within the bucket; returns the new ETag. `meta=None` keeps the source metadata.

        CopyObject, unless the copy policy says otherwise (headers.py rule 4): part by part for a large object
        with noshallowcopyapi, by download and upload without the copy API. `size` (the source's, if known)
        saves a HEAD when the strategy depends on it."""
        policy = self.copy_policy
        if policy.copies_by_rewrite(src_key, dst_key):
            return await self._copy_by_rewrite(src_key, dst_key, content_type=content_type, meta=meta, size=size)
        if not policy.shallow_copy:
            content_type, meta, size = await self._copy_source(src_key, content_type, meta, size)
            if policy.copies_in_parts(size):
                return await self._assemble(
                    dst_key, content_type, meta, size, policy.multipart_copy_size,
                    lambda upload_id, number, first, last: self.upload_part_copy(src_key, (first, last), dst_key,
                                                                                 upload_id, number))
        if meta is None:
            headers = {"x-oss-metadata-directive": "COPY", **self.headers.for_write(dst_key)}
        else:
            headers = self._write_headers(dst_key, content_type, meta)
            headers["x-oss-metadata-directive"] = "REPLACE"
        result = await self._call("CopyObject", dst_key, self._bucket.copy_object, self.bucket_name, src_key,
                                  dst_key, headers=headers)
        return _strip_etag(result.etag)

    async def _copy_source(self, src_key: str, content_type: str | None, meta: Mapping[str, str] | None,
                           size: int | None) -> tuple[str | None, Mapping[str, str], int]:
        """What a copy made by parts needs of its source: the size and, when `meta` is None (keep the source's),
        its Content-Type and metadata; one HEAD when the caller did not know them."""
        if size is None or meta is None:
            source = await self.head(src_key)
            size = source.size
            if meta is None:
                content_type, meta = source.content_type, dict(source.meta)
        return content_type, meta, size

    async def _assemble(self, key: str, content_type: str | None, meta: Mapping[str, str], size: int,
                        part_size: int, make_part: Callable[[str, int, int, int], Awaitable[PartInfo]]) -> str:
        """One multipart upload of `size` bytes in `part_size` parts, `make_part(upload_id, number, first, last)`
        each (inclusive byte range), one at a time; aborted on any failure. Returns the new ETag."""
        upload_id = await self.init_multipart(key, content_type=content_type, meta=meta)
        try:
            parts = [await make_part(upload_id, number, start, min(start + part_size, size) - 1)
                     for number, start in enumerate(range(0, size, part_size), start=1)]
            info = await self.complete_multipart(key, upload_id, parts)
        except BaseException:
            with trio.CancelScope(shield=True):
                with contextlib.suppress(types.StoreError):
                    await self.abort_multipart(key, upload_id)
            raise
        return info.etag

    async def _copy_by_rewrite(self, src_key: str, dst_key: str, *, content_type: str | None,
                               meta: Mapping[str, str] | None, size: int | None) -> str:
        """A copy without the copy API: download the source and upload it (multipart above `rewrite_part_size`,
        one part in memory at a time). `meta=None` carries the source's Content-Type and metadata over."""
        content_type, meta, size = await self._copy_source(src_key, content_type, meta, size)
        part_size = self.copy_policy.rewrite_part_size
        if size <= part_size:
            data = await self.get_bytes(src_key, 0, size) if size else b""
            return (await self.put(dst_key, data, content_type=content_type, meta=meta)).etag

        async def part(upload_id: str, number: int, first: int, last: int) -> PartInfo:
            data = await self.get_bytes(src_key, first, last - first + 1)
            return await self.upload_part(dst_key, upload_id, number, data)

        return await self._assemble(dst_key, content_type, meta, size, part_size, part)

    async def update_meta(self, key: str, *, content_type: str | None, meta: Mapping[str, str],
                          size: int | None = None) -> None:
        """Replace the object's Content-Type and user metadata: CopyObject onto itself, so no data moves (unless
        the copy policy forbids the copy API: then the object is downloaded and uploaded again)."""
        await self.copy(key, key, content_type=content_type, meta=meta, size=size)

    async def delete(self, key: str) -> None:
        """DeleteObject (succeeds if the key is already gone, as OSS does)."""
        await self._call("DeleteObject", key, self._bucket.delete_object, key)

    async def delete_many(self, keys: list[str]) -> None:
        """DeleteMultipleObjects in batches of 1000."""
        for start in range(0, len(keys), MAX_DELETE_BATCH):
            batch = keys[start:start + MAX_DELETE_BATCH]
            await self._call("DeleteMultipleObjects", batch[0], self._bucket.batch_delete_objects, batch)

    # -- multipart --------------------------------------------------------------------------------

    async def init_multipart(self, key: str, *, content_type: str | None = None,
                             meta: Mapping[str, str] | None = None) -> str:
        """InitiateMultipartUpload; returns the upload id."""
        result = await self._call("InitiateMultipartUpload", key, self._bucket.init_multipart_upload, key,
                                  headers=self._write_headers(key, content_type, meta))
        return result.upload_id

    async def _upload_part_body(self, key: str, upload_id: str, part_number: int,
                                make_body: Callable[[], Any], size: int) -> PartInfo:
        async def attempt() -> PartInfo:
            body = make_body()
            result = await self._attempt("UploadPart", key, functools.partial(
                self._bucket.upload_part, key, upload_id, part_number, body, headers=self.headers.for_upload()),
                sent=size)
            expected = body.crc if isinstance(body, _FileSlice) else crc64(body)
            crc = self._verify_crc("UploadPart", key, expected, result.headers, result.request_id)
            return PartInfo(part_number=part_number, etag=_strip_etag(result.etag), size=size,
                            crc64=crc if crc is not None else expected)

        return await self.retry.run(attempt, on_retry=self._note_retry)

    async def upload_part(self, key: str, upload_id: str, part_number: int,
                          data: bytes | bytearray | memoryview) -> PartInfo:
        """UploadPart from memory; CRC-64 verified."""
        body = bytes(data) if not isinstance(data, bytes) else data
        return await self._upload_part_body(key, upload_id, part_number, lambda: body, len(body))

    async def upload_part_from_file(self, key: str, upload_id: str, part_number: int, fileobj: BinaryIO,
                                    offset: int, size: int) -> PartInfo:
        """UploadPart streamed from `size` bytes of `fileobj` at `offset` (pread: safe to run in parallel)."""
        return await self._upload_part_body(key, upload_id, part_number,
                                            lambda: _FileSlice(fileobj, offset, size), size)

    async def upload_part_copy(self, src_key: str, byte_range: tuple[int, int], key: str, upload_id: str,
                               part_number: int, *, source_if_match: str | None = None,
                               source_version_id: str | None = None) -> PartInfo:
        """UploadPartCopy of the inclusive `byte_range` (first, last) of `src_key` (download + UploadPart when the
        copy policy forbids server-side copies).

        `source_version_id` copies from that version; otherwise `source_if_match` (an ETag) sends
        `x-oss-copy-source-if-match`, so a replaced source fails with PreconditionFailed instead of copying
        bytes of a version the caller never saw (the download of a forbidden copy is pinned alike).
        """
        if not self.copy_policy.part_copy:
            first, last = byte_range
            data = await self.get_bytes(src_key, first, last - first + 1, if_match=source_if_match,
                                        version_id=source_version_id)
            return await self.upload_part(key, upload_id, part_number, data)
        headers = {"x-oss-copy-source-if-match": f'"{source_if_match}"'} if source_if_match and not source_version_id \
            else None
        params = {"versionId": source_version_id} if source_version_id else None
        result = await self._call("UploadPartCopy", key, self._bucket.upload_part_copy, self.bucket_name,
                                  src_key, byte_range, key, upload_id, part_number, headers=headers, params=params)
        first, last = byte_range
        crc = result.headers.get("x-oss-hash-crc64ecma")
        return PartInfo(part_number=part_number, etag=_strip_etag(result.etag), size=last - first + 1,
                        crc64=int(crc) if crc else None)

    async def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> ObjectInfo:
        """CompleteMultipartUpload; the object CRC is checked against the combined part CRCs when known."""
        ordered = sorted(parts, key=lambda p: p.part_number)
        oss_parts = [oss2.models.PartInfo(p.part_number, p.etag) for p in ordered]
        result = await self._call("CompleteMultipartUpload", key, self._bucket.complete_multipart_upload, key,
                                  upload_id, oss_parts)
        size = sum(p.size for p in ordered)
        crc = None
        if all(p.crc64 is not None for p in ordered):
            expected = crc64_concat([(p.crc64, p.size) for p in ordered])  # type: ignore[misc]
            crc = self._verify_crc("CompleteMultipartUpload", key, expected, result.headers, result.request_id)
        return ObjectInfo(key=key, size=size, etag=_strip_etag(result.etag),
                          mtime=_response_time(result.headers), crc64=crc,
                          object_type="Multipart", version_id=result.headers.get("x-oss-version-id"))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload."""
        await self._call("AbortMultipartUpload", key, self._bucket.abort_multipart_upload, key, upload_id)
