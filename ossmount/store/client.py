"""`ObjectStore`: the async object-store client for one bucket.

Theory of operation:
  * Requests go over `store/transport.py` (the one module that puts them on the wire): kept-alive HTTP/1.1
    connections on trio sockets, at most `max_connections` at once, no worker thread per request. Each request is
    built here (`wire.OssRequest`: addressing, option-driven headers), signed with oss2's own V1/V4 signer with the
    credentials current at that moment (`wire.Signer`), and its answer parsed here (oss2's XML parsers for
    listings and multipart answers, bounded in size).
  * `ObjectStore._attempt` is the one place where every request attempt starts and ends: request counters,
    statistics, the request ledger (`ossmount.ops.accounting`), the bucket-outage watch and the translation of
    failures into `ossmount.store.types` errors (`error_from_oss`, the one mapping table) all happen there.
    Retries happen in `RetryPolicy.run` (retry.py, the one policy), which also sets each attempt's time budget.
  * CRC-64/XZ (fastcrc) of every upload is compared with OSS's `x-oss-hash-crc64ecma`; a multipart object's CRC
    is checked against the combination of its part CRCs.
  * GET bodies are received straight into the caller's buffer (`recv_into` on plain connections). A GET that fails
    in the middle of its body resumes from the byte it reached, pinned to the version it started on (`If-Match`
    its ETag, or the caller's pin), instead of starting over; such a failure does not use up an attempt.
  * Large PUT/UploadPart bodies stream from the caller's buffer or from a file (`transport.FileBody`: pread, one
    reused buffer, CRC as it goes) without whole-body copies.
  * A retry after an answer was lost can meet the effect of the first attempt: CompleteMultipartUpload then gets
    NoSuchUpload and AbortMultipartUpload NoSuchUpload; the first is accepted when the object now has the size and
    CRC-64 the parts make, the second always (the upload is gone either way).
  * Statistics are updated only on the trio thread, so they need no lock.
  * Option-driven headers (ACL, storage class, SSE, request payer, traffic limits, ahbe_conf, User-Agent/noua)
    and the copy strategy (nocopyapi, norenameapi, noshallowcopyapi) come from `RequestHeaders` and `CopyPolicy`
    (headers.py). Credentials are read from a provider for every request, so rotated STS credentials (ram_role, a
    credentials directory) sign the next request without a remount; None signs nothing (public_bucket=1).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import functools
import logging
import socket
import ssl
import time
import urllib.parse
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, BinaryIO, Callable, Iterator, Mapping, Protocol, TypeVar
from xml.etree import ElementTree

import oss2
import oss2.exceptions
import oss2.models
import oss2.utils
import oss2.xml_utils
import requests
import trio
import urllib3.exceptions

from ossmount.crc64 import crc64, crc64_concat
from ossmount.errors import ConfigError
from ossmount.ops.accounting import RequestLedger
from ossmount.store import transport as http
from ossmount.store import types
from ossmount.store.headers import CopyPolicy, RequestHeaders, merge_headers
from ossmount.store.listing import Listing, ListingError, ListingHead, parse_listing
from ossmount.store.pages import ListingPages, listing_pages
from ossmount.store.retry import DeadlineExceeded, RetryPolicy, attempt_time_left, note_success
from ossmount.store.types import ListPage, ObjectInfo, PartInfo
from ossmount.store.wire import Addressing, OssRequest, Signer

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONTENT_TYPE = "application/octet-stream"
META_PREFIX = "x-oss-meta-"
# x-oss-meta-ossmount-upload: set at every InitiateMultipartUpload (see `init_multipart`), so that `ossmount cleanup`
# can tell the incomplete uploads ossmount started from other tools'. It stays on the completed object (OSS keeps the
# Initiate's metadata) until the next metadata change, and is never shown: `_object_info_from_headers` drops it.
UPLOAD_MARKER = "ossmount-upload"
_UPLOAD_MARKER_HEADER = META_PREFIX + UPLOAD_MARKER
_META_PREFIX_LENGTH = len(META_PREFIX)
MAX_DELETE_BATCH = 1000
MAX_KEY_BYTES = 1023
# The largest answer body parsed as XML (a full listing page of 1,000 keys of 1,023 bytes, url-encoded, is < 4 MiB),
# and the largest error document read.
_MAX_PARSED_BODY = 64 * 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024
_SKIP_CHUNK = 1024 * 1024

# The operations whose bodies are object data: the ledger's bytes sent and received (metrics, `ossmount stats`) count
# these, not the XML of listings and multipart calls (README "Prometheus metrics").
_DATA_SENT = frozenset({"PutObject", "UploadPart"})
_DATA_RECEIVED = frozenset({"GetObject"})

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
_THROTTLING_CODES = frozenset({"QpsLimitExceeded", "ServiceUnavailable", "SlowDown", "TooManyRequests"})
_TRANSIENT_CODES = frozenset({"InternalError", "RequestTimeout", "ConnectionReset"})
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
    "NoSuchUpload": types.NoSuchUpload,
    **{code: types.AccessDenied for code in _AUTH_CODES},
    **{code: types.Throttled for code in _THROTTLING_CODES},
    **{code: types.TransientError for code in _TRANSIENT_CODES},
}
_STATUS_TO_ERROR: Mapping[int, type[types.StoreError]] = {
    403: types.AccessDenied,
    404: types.NoSuchKey,
    412: types.PreconditionFailed,
    429: types.Throttled,
    503: types.Throttled,
}


class Credentials(Protocol):
    """What the store signs with (`ossmount.credentials.Credentials`)."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None


class CredentialsProvider(Protocol):
    """Where each request's credentials come from: fixed `Credentials`, `FileCredentials` (a passwd file or
    credentials directory re-read when it changes) or `EcsRamRoleCredentials` (ram_role), all in
    `ossmount.credentials`. For every request it signs, the store asks `current_nowait()` on its event loop: the
    credentials, or None when getting them needs the network (then `current()` runs in a worker thread). A provider
    without `current_nowait` is always asked `current()` in a worker thread. Either must be cheap while nothing
    changed and raises ConfigError when no credentials can be had (the request then fails with
    CredentialsUnavailable). `access_key_id` (for messages), `reloads` (how often new credentials were picked up)
    and `reload_error` (why the last attempt failed, the previous ones still in use) are read without I/O, except
    that a file provider may look at the file."""

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
    connections_opened: int = 0  # TCP (TLS) connections opened; the rest of the requests reused one
    resumed_reads: int = 0  # GETs that resumed after a failure mid-body instead of starting over


def error_from_oss(exc: BaseException, *, op: str = "", key: str = "") -> types.StoreError | None:
    """The `StoreError` for an OSS error answer (as oss2 exceptions), a transport failure (ossmount's transport,
    requests, urllib3, socket) or a credentials failure; None if it is none of those.

    This is the one table from OSS error codes and transport failures to ossmount's exceptions. Messages carry the
    OSS code and message but never the request headers or the string-to-sign.
    """
    where = f"{op} {key!r}" if key else op
    if isinstance(exc, types.StoreError):
        return exc
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
            error_class = _STATUS_TO_ERROR.get(status) or (types.TransientError if status >= 500 else types.StoreError)
        if error_class is types.NoSuchKey and code == "" and not key:
            error_class = types.NoSuchBucket
        if code == "InvalidObjectName" and len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
            error_class = types.NameTooLong  # OSS's answer to a key over 1023 bytes
        message = exc.message or (code if code else f"HTTP {status}")
        return error_class(
            f"{where}: {message}", code=code or _code_for_status(status), status=status,
            request_id=exc.request_id, key=key, retry_after=_retry_after(exc.headers),
        )
    if isinstance(exc, http.BodyTooLarge) or isinstance(exc, _InvalidResponse):
        return types.TransientError(f"{where}: the server's answer is not usable ({exc})", code="InvalidResponse",
                                    request_id=getattr(exc, "request_id", ""), key=key)
    if isinstance(exc, (http.TransportError, requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                        trio.BrokenResourceError)):
        return _transport_error(exc, where=where, key=key)
    if isinstance(exc, ConfigError):  # the credentials provider could not produce credentials (ram_role)
        return types.TransientError(f"{where}: no credentials to sign with: {exc}", code="CredentialsUnavailable",
                                    key=key)
    return None


def _code_for_status(status: int) -> str:
    return {403: "AccessDenied", 404: "NotFound", 429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
        status, f"HTTP{status}")


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(when - time.time(), 0.0)


def _transport_error(exc: BaseException, *, where: str, key: str) -> types.StoreError:
    """Connection-level failures: refused/unresolvable/connect-timeout is unreachable, the rest transient."""
    chain = list(_exception_chain(exc))
    if any(isinstance(e, (ssl.SSLError, http.TlsFailure, requests.exceptions.SSLError, urllib3.exceptions.SSLError))
           for e in chain):
        return types.EndpointUnreachable(f"{where}: TLS failed: {_describe(chain)}", code="TLSError", status=-2,
                                         key=key)
    if any(
        isinstance(e, (http.ConnectFailed, http.ConnectTimeout, requests.exceptions.ConnectTimeout,
                       urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                       ConnectionRefusedError, socket.gaierror))
        for e in chain
    ):
        reason = _describe(chain)
        return types.EndpointUnreachable(f"{where}: endpoint unreachable: {reason}", code="ConnectionError",
                                         status=-2, key=key)
    if any(isinstance(e, (http.ReadTimeout, requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError,
                          TimeoutError, socket.timeout)) for e in chain):
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
    if isinstance(chain[0], http.TransportError):
        return str(chain[0])
    innermost = chain[-1]
    text = str(innermost) or type(innermost).__name__
    return text.split(": ", 1)[-1] if "Connection" in type(innermost).__name__ else text


class _InvalidResponse(Exception):
    """The server's answer could not be parsed (mapped by `error_from_oss` to InvalidResponse)."""

    def __init__(self, reason: str, request_id: str = ""):
        super().__init__(reason)
        self.request_id = request_id


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


@functools.lru_cache(maxsize=4096)
def http_seconds(text: str) -> float:
    """Epoch seconds of an HTTP date (RFC 9110 §5.6.7, `Mon, 30 Nov 2026 18:00:00 GMT`) as oss2 reads it; ValueError
    if it is not one. Remembered: every answer carries a Date of the current second and objects written together
    share their Last-Modified, and oss2's strptime costs ~9 µs per call (two per HEAD or open)."""
    return float(oss2.utils.http_to_unixtime(text))


def _response_time(headers: Mapping[str, str]) -> float:
    """The server's Date header as epoch seconds: an upload's Last-Modified, without another HEAD."""
    date = headers.get("date")
    try:
        return http_seconds(date) if date else 0.0
    except ValueError:
        return 0.0


def _strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def _object_info_from_headers(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    """The ObjectInfo of a HeadObject (or GetObject) answer; `headers` with lowercase names (transport.Response)."""
    meta = {}
    for name, value in headers.items():
        if name.startswith(META_PREFIX) and name != _UPLOAD_MARKER_HEADER:
            meta[name[_META_PREFIX_LENGTH:]] = value if value.isascii() else _decode_header_value(value)
    get = headers.get
    crc = get("x-oss-hash-crc64ecma")
    last_modified = get("last-modified")
    return ObjectInfo(
        key=key,
        size=int(get("content-length", 0)),
        etag=_strip_etag(get("etag")),
        mtime=http_seconds(last_modified) if last_modified else 0.0,
        content_type=get("content-type"),
        meta=meta,
        object_type=get("x-oss-object-type", "Normal"),
        storage_class=get("x-oss-storage-class", "Standard"),
        restore=get("x-oss-restore"),
        crc64=int(crc) if crc else None,
        version_id=get("x-oss-version-id"),
        http_headers={name: headers[name] for name in types.CARRIED_HEADERS if get(name)},
        answered_at=_response_time(headers),
    )


def _content_range_total(value: str | None) -> int | None:
    """The complete length of `Content-Range: bytes FIRST-LAST/TOTAL` (RFC 9110 §14.4), None if absent or unknown."""
    total = (value or "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _pinned(headers: dict[str, str], if_match: str | None, version_id: str | None
            ) -> tuple[dict[str, str], dict[str, str] | None]:
    """`headers` and the query parameters that pin a GET to one version: `?versionId=` when the bucket keeps
    versions (the old bytes stay readable), else `If-Match: "ETAG"` (a replaced object answers 412)."""
    if version_id:
        return headers, {"versionId": version_id}
    if if_match:
        headers = {**headers, "if-match": f'"{if_match}"'}
    return headers, None


class _Answer:
    """A finished answer as oss2's result classes and error parser read it."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, request_id: str):
        self.status = status
        self.headers = _Headers(headers)
        self.request_id = request_id
        self._body = body

    def read(self, amount: int | None = None) -> bytes:
        body = self._body if amount is None else self._body[:amount]
        self._body = self._body[len(body):]
        return body


class _Headers(dict):
    """Response headers (stored with lower-case names) looked up case-insensitively, as oss2 expects."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


def _decoded(body: bytes, encoding: str | None, limit: int, request_id: str) -> bytes:
    """`body` undone of its Content-Encoding (gzip, deflate), at most `limit` bytes once decoded."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _InvalidResponse(f"unknown Content-Encoding {encoding!r}", request_id)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32 if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        decoded = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _InvalidResponse(f"the {encoding} body does not decompress: {exc}", request_id) from None
    if len(decoded) > limit or inflater.unconsumed_tail:
        raise _InvalidResponse(f"the answer is larger than {limit} bytes", request_id)
    return decoded


class ObjectStore:
    """Async client of one OSS bucket (see the module docstring for the rules).

    Build it with `ObjectStore.create(...)`. Every method is a trio checkpoint and raises only
    `ossmount.store.types.StoreError` subclasses for OSS or network failures.
    """

    def __init__(self, transport: http.Transport, addressing: Addressing, *, endpoint: str, bucket_name: str,
                 region: str | None, sigv4: bool, credentials: CredentialsProvider | None, retry: RetryPolicy,
                 headers: RequestHeaders = RequestHeaders(), copy_policy: CopyPolicy = CopyPolicy(),
                 list_max_keys: int = 1000, timeouts: http.Timeouts = http.Timeouts(5.0, 30.0),
                 ledger: RequestLedger | None = None):
        self._transport = transport
        # Every attempt, charged to the FUSE caller that caused it (shared by `with_retry` copies).
        self.ledger = ledger if ledger is not None else RequestLedger()
        self._addressing = addressing
        self.endpoint = endpoint
        self.bucket_name = bucket_name
        self.region = region
        self.sigv4 = sigv4
        self._credentials = credentials
        self._signer = Signer(bucket_name, sigv4=sigv4, region=region)
        self.retry = retry
        self.headers = headers
        self.copy_policy = copy_policy
        self.list_max_keys = list_max_keys
        self.timeouts = timeouts
        self._every_request = {name.lower(): value for name, value in headers.every_request().items()}
        if headers.user_agent is not None:
            self._every_request["user-agent"] = headers.user_agent
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._bytes_in = 0
        self._bytes_out = 0
        self._retries = 0
        self._resumed_reads = 0
        self._last_success_at: float | None = None
        self._last_error: tuple[str, float] | None = None
        self._bucket_missing = False
        self.upload_marker = "ossmount"  # the value of x-oss-meta-ossmount-upload (a mount sets its session id)
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

        `credentials`: a `CredentialsProvider` asked for every request signed (fixed `Credentials` are one; a
        `security_token` selects STS; rotation needs no new store), or None for unsigned requests (a public
        bucket). Signatures are V1, or V4 with `sigv4` (oss2's signers, wire.py). `timeout` bounds each wait for
        data on a connection (readwrite_timeout), `connect_timeout` each TCP connect and TLS handshake (seconds).
        With `sigv4`, `region` (e.g. "cn-hangzhou") is required. `max_connections` bounds the connections (and so
        the requests) in flight. `headers` and `copy_policy`: what the mount options add to requests and how copies
        are made (headers.py). `list_max_keys` (1..1000) is each LIST page's max-keys. `verify_tls=False` accepts
        any certificate and `verify_hostname=False` any host name in a trusted one (both insecure); `ca_bundle`
        (a PEM file or hashed directory) replaces the trusted authorities (`transport.tls_context`, the one place
        TLS is configured; the environment is the caller's business). `service_path` is put in front of every URL
        path (a reverse proxy's prefix); an IP or localhost endpoint, or `path_style`, addresses the bucket in the
        path instead of the host name. InvalidArgument for an unusable endpoint or bucket name, ConfigError for an
        unreadable CA bundle.
        """
        if sigv4 and not region:
            raise ValueError("sigv4 needs a region")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not 1 <= list_max_keys <= 1000:
            raise ValueError("list_max_keys must be 1..1000")
        if not oss2.utils.is_valid_bucket_name(bucket):
            raise types.InvalidArgument(f"create {bucket!r}: the bucket name is invalid", code="ClientError",
                                        key=bucket)
        try:
            addressing = Addressing(endpoint, bucket, path_style=path_style, service_path=service_path)
        except ValueError as exc:
            raise types.InvalidArgument(f"create {bucket!r}: {exc}", code="ClientError", key=bucket) from None
        context = None
        if addressing.tls:
            try:
                context = http.tls_context(verify=verify_tls, verify_hostname=verify_hostname, ca_bundle=ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA bundle {ca_bundle} is not usable: {getattr(exc, 'strerror', None) or exc}"
                                  ) from None
        if addressing.tls and (not verify_tls or not verify_hostname):
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS %s of %s are not verified: anyone on the path can read and change the data",
                        "certificates" if not verify_tls else "host names", endpoint)
        transport = http.Transport(addressing.host, addressing.port, tls=context, max_connections=max_connections)
        return cls(transport, addressing, endpoint=endpoint, bucket_name=bucket, region=region, sigv4=sigv4,
                   credentials=credentials, retry=retry or RetryPolicy(), headers=headers, copy_policy=copy_policy,
                   list_max_keys=list_max_keys, timeouts=http.Timeouts(connect=connect_timeout, read=timeout))

    @property
    def credentials(self) -> CredentialsProvider | None:
        """Where the requests' credentials come from (None: unsigned requests)."""
        return self._credentials

    @property
    def access_key_id(self) -> str:
        """The AccessKey ID requests are signed with ("anonymous" for unsigned requests); for messages."""
        return "anonymous" if self._credentials is None else self._credentials.access_key_id

    @property
    def operation_deadline(self) -> float | None:
        """Seconds an operation (a FUSE request) may spend failing without one successful request before it fails
        (retry.py rule 6): the retry policy's deadline."""
        return self.retry.deadline

    def with_retry(self, retry: RetryPolicy, *, connect_timeout: float | None = None,
                   timeout: float | None = None) -> "ObjectStore":
        """A store sharing this one's connections but retrying per `retry` (own statistics), and with other
        timeouts (seconds) if given: mount-time checks must fail fast whatever connect_timeout says."""
        timeouts = http.Timeouts(connect=connect_timeout or self.timeouts.connect, read=timeout or self.timeouts.read)
        return ObjectStore(self._transport, self._addressing, endpoint=self.endpoint, bucket_name=self.bucket_name,
                           region=self.region, sigv4=self.sigv4, credentials=self._credentials, retry=retry,
                           headers=self.headers, copy_policy=self.copy_policy, list_max_keys=self.list_max_keys,
                           timeouts=timeouts, ledger=self.ledger)

    def update_credentials(self, credentials: CredentialsProvider | None) -> None:
        """Sign later requests with other credentials or another provider; requests in flight keep the old ones.
        (Rotation needs no call: a provider is asked for every request.)"""
        self._credentials = credentials

    def url(self, key: str) -> str:
        """The URL a request for `key` goes to (addressing and service path applied)."""
        return self._addressing.url(key)

    def close(self) -> None:
        """Close the idle connections (a store stays usable: later requests open new ones)."""
        self._transport.close()

    # -- the one place each request attempt starts and ends -------------------------------------------

    async def _credentials_now(self) -> Any:
        provider = self._credentials
        if provider is None:
            return None
        nowait = getattr(provider, "current_nowait", None)
        found = nowait() if nowait is not None else None
        if found is None:
            found = await trio.to_thread.run_sync(provider.current)
        return found

    def _attempt_timeouts(self, op: str, key: str) -> tuple[http.Timeouts, bool, bool]:
        """This attempt's timeouts, cut to what the call's and the operation's deadlines leave (retry.py rule 5),
        and which timeouts were cut: a ReadTimeout (ConnectTimeout) means the deadline ran out only when the read
        (connect) timeout was the one cut. connect_timeout (300 s) is often longer than the whole deadline
        ((retries + 1) x readwrite_timeout), and a read timeout of the full readwrite_timeout is then retried."""
        left = attempt_time_left()
        if left is None or (left >= self.timeouts.connect and left >= self.timeouts.read):
            return self.timeouts, False, False
        if left <= 0:
            raise DeadlineExceeded(f"{op} {key!r}: the operation's deadline ran out" if key
                                   else f"{op}: the operation's deadline ran out", code="RequestTimeout", key=key)
        return (http.Timeouts(connect=min(self.timeouts.connect, left), read=min(self.timeouts.read, left)),
                left < self.timeouts.connect, left < self.timeouts.read)

    async def _attempt(self, op: str, key: str, request: OssRequest,
                       handle: Callable[[http.Response], Awaitable[T]], accept: tuple[int, ...] = ()) -> T:
        """Send `request` once and return `handle(response)` for a 2xx answer (or one of the `accept` statuses);
        raise the StoreError of anything else. Every request attempt of the store starts and ends here (statistics,
        and the ledger that charges it to the FUSE caller, `ossmount.ops.accounting`)."""
        self._requests[op] += 1
        status = 0
        response: http.Response | None = None
        body_out = _body_length(request.body)
        with self.ledger.attempt(op, key, sent=body_out if op in _DATA_SENT else 0) as attempt:
            try:
                try:
                    timeouts, connect_cut, read_cut = self._attempt_timeouts(op, key)
                    request.headers.update(self._every_request)
                    self._signer.sign(request, await self._credentials_now())
                    head = self._head(request, body_out)
                    response = await self._transport.request(request.method.encode(), head[0], head[1],
                                                             request.body, timeouts)
                    status = response.status
                    if log.isEnabledFor(logging.DEBUG):  # secrets in the headers are redacted by the log handler
                        log.debug("%s %s %s -> %d (request id %s); request headers: %s", op, request.method,
                                  head[0].decode(), status, response.request_id, request.headers)
                    if not 200 <= status < 300 and status not in accept:
                        raise await self._error_answer(op, key, response)
                    result = await handle(response)
                except (http.ReadTimeout, http.ConnectTimeout) as exc:
                    if read_cut if isinstance(exc, http.ReadTimeout) else connect_cut:
                        raise DeadlineExceeded(f"{op} {key!r}: the operation's deadline ran out ({exc})" if key else
                                               f"{op}: the operation's deadline ran out ({exc})",
                                               code="RequestTimeout", status=-2, key=key) from exc
                    raise
                finally:
                    if response is not None:
                        response.release()
            except Exception as exc:
                error = error_from_oss(exc, op=op, key=key)
                if error is None:
                    raise
                self._note_failure(error)
                if error is exc:
                    raise
                raise error from exc
            attempt.done(status=status, received=response.received if response is not None and op in _DATA_RECEIVED
                         else 0,
                         request_id=response.request_id if response is not None else "")
        self._last_success_at = time.time()
        note_success()
        if self._bucket_missing:
            self._bucket_missing = False
            for _, on_back in self._bucket_watchers:
                on_back()
        return result

    def _note_failure(self, error: types.StoreError) -> None:
        code = error.code or type(error).__name__
        self._errors[code] += 1
        self._last_error = (code, time.time())
        if isinstance(error, types.NoSuchBucket):
            self._note_bucket_missing(error)

    def _head(self, request: OssRequest, body_length: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The request-target and the header list of `request`, as the transport takes them."""
        fields = [(b"host", self._addressing.host_header.encode("ascii"))]
        try:
            for name, value in request.headers.items():
                fields.append((name.encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError as exc:
            raise types.InvalidArgument(f"header values must be Latin-1 text: {exc.object!r}",
                                        code="InvalidArgument") from None
        if request.body is not None or request.method in ("PUT", "POST"):
            fields.append((b"content-length", str(body_length).encode()))
        return self._addressing.target(request).encode("ascii"), fields

    async def _error_answer(self, op: str, key: str, response: http.Response) -> types.StoreError:
        """The StoreError of a non-2xx answer (its error document read, bounded, as oss2 parses it)."""
        try:
            body = await response.read(_MAX_ERROR_BODY)
        except http.BodyTooLarge:
            body = b""
        answer = _Answer(response.status, response.headers, body, response.request_id)
        error = error_from_oss(oss2.exceptions.make_exception(answer), op=op, key=key)
        assert error is not None
        return error

    async def _call(self, op: str, key: str, make_request: Callable[[], OssRequest],
                    handle: Callable[[http.Response], Awaitable[T]], *, idempotent: bool = True,
                    accept: tuple[int, ...] = ()) -> T:
        return await self.retry.run(lambda: self._attempt(op, key, make_request(), handle, accept),
                                    idempotent=idempotent, on_retry=self._note_retry)

    def _note_retry(self, error: types.TransientError, failures: int, delay: float) -> None:
        self._retries += 1
        log.info("retrying after %s (failure %d, sleeping %.2fs)", error, failures, delay)

    def statistics(self) -> StoreStatistics:
        """Requests, bytes, retries, errors and connections so far (a frozen snapshot)."""
        last_error, last_error_at = self._last_error or (None, None)
        return StoreStatistics(requests=dict(self._requests), bytes_in=self._bytes_in,
                               bytes_out=self._bytes_out, retries=self._retries, errors=dict(self._errors),
                               last_success_at=self._last_success_at, last_error=last_error,
                               last_error_at=last_error_at,
                               connections_opened=self._transport.statistics.connections_opened,
                               resumed_reads=self._resumed_reads)

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

    # -- answers ----------------------------------------------------------------------------------

    @staticmethod
    async def _body(response: http.Response, on_data: Callable[[bytes], None] | None = None) -> bytes:
        """The whole body of an answer to be parsed, which is untrusted: more than `_MAX_PARSED_BODY` bytes (after
        any Content-Encoding) is _InvalidResponse (TransientError InvalidResponse). `on_data(piece)` sees the body
        as it arrives, unless it is encoded (gzip, deflate)."""
        if response.headers.get("content-encoding", "").strip().lower() not in ("", "identity"):
            on_data = None
        try:
            body = await response.read(_MAX_PARSED_BODY, on_data)
        except http.BodyTooLarge:
            raise _InvalidResponse(f"the answer is larger than {_MAX_PARSED_BODY} bytes",
                                   response.request_id) from None
        return _decoded(body, response.headers.get("content-encoding"), _MAX_PARSED_BODY, response.request_id)

    @classmethod
    async def _parsed(cls, response: http.Response, parse: Callable[[Any, bytes], Any], klass: Any) -> Any:
        """An oss2 result `klass` filled by oss2's XML parser `parse` from the answer's body (`_body`); anything the
        parser cannot take is _InvalidResponse."""
        body = await cls._body(response)
        result = klass(_Answer(response.status, response.headers, b"", response.request_id))
        try:
            parse(result, body)
        except Exception as exc:  # noqa: BLE001 - any parser failure means the same: an unusable answer
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise _InvalidResponse(f"{type(exc).__name__}: {detail}", response.request_id) from exc
        return result

    @staticmethod
    async def _headers_only(response: http.Response) -> http.Response:
        """For answers whose body means nothing to us (read and dropped, bounded, so the connection is reused)."""
        await response.read(_MAX_PARSED_BODY)
        return response

    # -- metadata ---------------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        """HeadObject: size, etag, mtime, content type, user metadata, version id. NoSuchKey if absent."""
        async def handle(response: http.Response) -> ObjectInfo:
            return _object_info_from_headers(key, response.headers)

        return await self._call("HeadObject", key, lambda: OssRequest("HEAD", key), handle)

    async def list_page(self, prefix: str, *, delimiter: str = "/", token: str | None = None,
                        max_keys: int | None = None, v2: bool = True,
                        on_next_token: Callable[[str | None], None] | None = None) -> ListPage:
        """One page of ListObjectsV2 (or V1 with `v2=False`) of at most `max_keys` entries (default: the store's
        `list_max_keys`, ossfs list_object_max_keys); pass `next_token` back to continue. `on_next_token(token)` is
        called as soon as the head of the answer tells the next page's token (None: no next page), before the rest
        of the page has arrived (listing.ListingHead; pages.py pipelines with it), at most once per attempt."""
        if max_keys is None:
            max_keys = self.list_max_keys
        if v2:
            op = "ListObjectsV2"
            params = {"list-type": "2", "prefix": prefix, "delimiter": delimiter, "continuation-token": token or "",
                      "max-keys": str(max_keys), "encoding-type": "url"}
        else:
            op = "ListObjects"
            params = {"prefix": prefix, "delimiter": delimiter, "marker": token or "", "max-keys": str(max_keys),
                      "encoding-type": "url"}

        async def handle(response: http.Response) -> Listing:
            on_data = None
            if on_next_token is not None:
                head = ListingHead(v2=v2)

                def on_data(piece: bytes) -> None:
                    if not head.decided and head.feed(piece) and head.known:
                        on_next_token(head.next_token)
            body = await self._body(response, on_data=on_data)
            if on_data is not None and head.known and head.next_token is not None:
                await trio.lowlevel.checkpoint()  # the next page's request goes out before this one is parsed
            try:
                listing = parse_listing(body, v2=v2)
            except ListingError as exc:
                raise _InvalidResponse(str(exc), response.request_id) from None
            stray = next((k for k in [o.key for o in listing.objects] + listing.prefixes
                          if not k.startswith(prefix)), None)
            if stray is not None:
                raise _InvalidResponse(f"it lists {stray!r}, outside the prefix", response.request_id)
            return listing

        listing = await self._call(op, prefix, lambda: OssRequest("GET", params=params), handle)
        next_token = listing.next_token
        if listing.truncated and not next_token and not v2:
            # Without a delimiter OSS may omit NextMarker; the last key returned is the marker then.
            next_token = max([o.key for o in listing.objects] + listing.prefixes, default="") or None
        return ListPage(objects=listing.objects, prefixes=listing.prefixes, next_token=next_token or None)

    def list_pages(self, prefix: str, *, delimiter: str = "/", v2: bool = True
                   ) -> contextlib.AbstractAsyncContextManager[ListingPages]:
        """Every page of the listing of `prefix`, in order, each page asked for as soon as the head of the one
        before it has arrived: `async with store.list_pages(p) as pages: async for page in pages: ...`
        (pages.py: the same pages and failures as `list_page` one after the other)."""
        async def fetch(token: str | None, on_next_token: Callable[[str | None], None]) -> ListPage:
            return await self.list_page(prefix, delimiter=delimiter, token=token, v2=v2, on_next_token=on_next_token)

        return listing_pages(fetch, op="ListObjectsV2" if v2 else "ListObjects", prefix=prefix, v2=v2)

    async def list_all(self, prefix: str, *, delimiter: str = "/", v2: bool = True
                       ) -> tuple[list[ObjectInfo], list[str]]:
        """Every object and common prefix under `prefix`, following continuation tokens (pipelined, `list_pages`)."""
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        async with self.list_pages(prefix, delimiter=delimiter, v2=v2) as pages:
            async for page in pages:
                objects.extend(page.objects)
                prefixes.extend(page.prefixes)
        return objects, prefixes

    async def bucket_info(self) -> dict:
        """GetBucketInfo as a plain dict (name, location, storage class, creation date, ACL, ...)."""
        async def handle(response: http.Response) -> Any:
            return await self._parsed(response, oss2.xml_utils.parse_get_bucket_info,
                                      oss2.models.GetBucketInfoResult)

        result = await self._call("GetBucketInfo", "", lambda: OssRequest("GET", params={"bucketInfo": ""}), handle)
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
        async def handle(response: http.Response) -> Any:
            return await self._parsed(response, oss2.xml_utils.parse_get_bucket_stat,
                                      oss2.models.GetBucketStatResult)

        result = await self._call("GetBucketStat", "", lambda: OssRequest("GET", params={"stat": ""}), handle)
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
        return {"x-oss-range-behavior": "standard", "accept-encoding": "identity", **self.headers.for_download()}

    def _get_request(self, key: str, first: int, last: int | None, if_match: str | None,
                     version_id: str | None) -> OssRequest:
        headers, params = _pinned(self._download_headers(), if_match, version_id)
        if first or last is not None:
            headers["range"] = f"bytes={first}-{'' if last is None else last}"
        return OssRequest("GET", key, params=params, headers=headers)

    async def get_into(self, key: str, offset: int, buf: memoryview, *, if_match: str | None = None,
                       version_id: str | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Ranged GET of [offset, offset+len(buf)) into `buf`; returns bytes read (short at EOF, 0 past it).

        `version_id` reads that version (versioned buckets); otherwise `if_match` (an ETag) makes the GET fail
        with PreconditionFailed when the object is no longer that version. A GET cut off mid-body resumes from the
        byte it reached, pinned to the version its first answer came from. `progress(filled)` is called (on the
        trio thread) each time more of `buf` is filled, with the bytes filled from its start, so a caller can use
        the first bytes before the GET ends (the prefetcher, fs/reader.py).
        """
        if len(buf) == 0:
            return 0
        read = _RangedRead(self, key, offset, memoryview(buf).cast("B"), if_match, version_id, progress)
        count = await self._call("GetObject", key, read.request, read.handle, accept=(416,))
        self._bytes_in += count
        return count

    async def get_start(self, key: str, buf: memoryview) -> tuple[ObjectInfo, int] | None:
        """GetObject of the first len(buf) bytes of `key` into `buf`, with the object's metadata as HeadObject gives
        it: one request where an open would send a HEAD and its first read a GET (fs/handles.py). Not pinned to a
        version: `info.etag` (or `info.version_id`) says which one the bytes are of, and `info.size` is the whole
        object's (from Content-Range). Returns (info, bytes filled); None for an empty object (416: a range GET
        carries no metadata then). NoSuchKey if absent, InvalidObjectState for an archived object."""
        if len(buf) == 0:
            return None
        read = _RangedRead(self, key, 0, memoryview(buf).cast("B"), None, None)
        count = await self._call("GetObject", key, read.request, read.handle, accept=(416,))
        self._bytes_in += count
        if read.first_answer is None or read.first_answer[0] == 416:
            return None
        status, headers = read.first_answer
        info = _object_info_from_headers(key, headers)
        total = _content_range_total(headers.get("content-range")) if status == 206 else info.size
        if total is None:
            raise types.TransientError(f"GetObject {key!r}: a range answer without a usable Content-Range",
                                       code="InvalidResponse", key=key)
        return replace(info, size=total), count

    async def get_bytes(self, key: str, offset: int = 0, length: int | None = None, *, if_match: str | None = None,
                        version_id: str | None = None) -> bytes:
        """The object's bytes from `offset`: `length` of them, or all the rest in one GET when None.
        `if_match`/`version_id` pin the version as in `get_into`."""
        if length is not None:
            buf = bytearray(length)
            count = await self.get_into(key, offset, memoryview(buf), if_match=if_match, version_id=version_id)
            del buf[count:]
            return bytes(buf)
        read = _RangedRead(self, key, offset, None, if_match, version_id)
        await self._call("GetObject", key, read.request, read.handle, accept=(416,))
        data = bytes(read.buffer or b"")
        self._bytes_in += len(data)
        return data

    # -- writes -----------------------------------------------------------------------------------

    async def _put_body(self, key: str, make_body: Callable[[], Any], size: int,
                        request_headers: dict[str, str], meta: Mapping[str, str] | None,
                        known_crc: int | None = None) -> ObjectInfo:
        """PutObject of a body made afresh for each attempt (bytes, `BufferList`, or a FileBody that CRCs as it is
        read); `known_crc` is the body's CRC-64 when the caller computed it already."""
        request_headers = {**request_headers, **self.headers.for_upload()}

        async def attempt() -> ObjectInfo:
            body = make_body()
            expected_crc = _expected_crc(body, known_crc)
            answer: dict[str, str] = {}
            await self._attempt("PutObject", key, OssRequest("PUT", key, headers=request_headers, body=body),
                                functools.partial(_keep_headers, answer))
            self._bytes_out += size
            expected = body.crc if expected_crc is None else expected_crc
            crc = self._verify_crc("PutObject", key, expected, answer, answer.get("x-oss-request-id", ""))
            return ObjectInfo(key=key, size=size, etag=_strip_etag(answer.get("etag")), mtime=_response_time(answer),
                              content_type=_content_type(request_headers), meta=dict(meta or {}), crc64=crc,
                              version_id=answer.get("x-oss-version-id"))

        return await self.retry.run(attempt, on_retry=self._note_retry)

    async def put(self, key: str, data: Any, *, content_type: str | None = None,
                  meta: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                  forbid_overwrite: bool = False, crc64: int | None = None) -> ObjectInfo:
        """PutObject of an in-memory body: one buffer, or a list of buffers sent one after the other without being
        joined; CRC-64 verified (`crc64`: the body's, when the caller computed it as the data arrived).
        AlreadyExists with `forbid_overwrite`."""
        request_headers = self._write_headers(key, content_type, meta)
        request_headers.update(headers or {})
        if forbid_overwrite:
            request_headers["x-oss-forbid-overwrite"] = "true"
        return await self._put_body(key, lambda: _memory_body(data), _memory_length(data), request_headers, meta,
                                    crc64)

    async def put_file(self, key: str, fileobj: BinaryIO, size: int, *, content_type: str | None = None,
                       meta: Mapping[str, str] | None = None, offset: int = 0) -> ObjectInfo:
        """PutObject streamed from `size` bytes of `fileobj` starting at `offset`; CRC-64 verified."""
        return await self._put_body(key, lambda: http.FileBody(fileobj, offset, size), size,
                                    self._write_headers(key, content_type, meta), meta)

    def _copy_source(self, src_key: str, version_id: str | None = None) -> str:
        source = f"/{self.bucket_name}/{urllib.parse.quote(src_key, safe='')}"
        return f"{source}?versionId={version_id}" if version_id else source

    async def copy(self, src_key: str, dst_key: str, *, content_type: str | None = None,
                   meta: Mapping[str, str] | None = None, size: int | None = None,
                   http_headers: Mapping[str, str] | None = None) -> str:
        """Copy an object within the bucket; returns the new ETag. `meta=None` keeps the source metadata.
        With `meta`, `http_headers` (the source's ObjectInfo.http_headers: Cache-Control, Content-Encoding, ...)
        are sent with it, as ossfs does, so replacing the metadata does not drop them.

        CopyObject, unless the copy policy says otherwise (headers.py rule 4): part by part for a large object
        with noshallowcopyapi, by download and upload without the copy API. `size` (the source's, if known)
        saves a HEAD when the strategy depends on it."""
        policy = self.copy_policy
        if policy.copies_by_rewrite(src_key, dst_key):
            return await self._copy_by_rewrite(src_key, dst_key, content_type=content_type, meta=meta, size=size,
                                               http_headers=http_headers)
        if not policy.shallow_copy:
            content_type, meta, size = await self._copy_source_info(src_key, content_type, meta, size)
            if policy.copies_in_parts(size):
                return await self._assemble(
                    dst_key, content_type, meta, size, policy.multipart_copy_size,
                    lambda upload_id, number, first, last: self.upload_part_copy(src_key, (first, last), dst_key,
                                                                                 upload_id, number),
                    http_headers)
        if meta is None:
            headers = {"x-oss-metadata-directive": "COPY", **self.headers.for_write(dst_key)}
        else:
            headers = merge_headers(http_headers or {}, self._write_headers(dst_key, content_type, meta))
            headers["x-oss-metadata-directive"] = "REPLACE"
        headers["x-oss-copy-source"] = self._copy_source(src_key)
        response = await self._call("CopyObject", dst_key, lambda: OssRequest("PUT", dst_key, headers=headers),
                                    self._headers_only)
        return _strip_etag(response.headers.get("etag"))

    async def _copy_source_info(self, src_key: str, content_type: str | None, meta: Mapping[str, str] | None,
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
                        part_size: int, make_part: Callable[[str, int, int, int], Awaitable[PartInfo]],
                        http_headers: Mapping[str, str] | None = None) -> str:
        """One multipart upload of `size` bytes in `part_size` parts, `make_part(upload_id, number, first, last)`
        each (inclusive byte range), one at a time; aborted on any failure. Returns the new ETag."""
        upload_id = await self.init_multipart(key, content_type=content_type, meta=meta, http_headers=http_headers)
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
                               meta: Mapping[str, str] | None, size: int | None,
                               http_headers: Mapping[str, str] | None) -> str:
        """A copy without the copy API: download the source and upload it (multipart above `rewrite_part_size`,
        one part in memory at a time). `meta=None` carries the source's Content-Type and metadata over."""
        content_type, meta, size = await self._copy_source_info(src_key, content_type, meta, size)
        part_size = self.copy_policy.rewrite_part_size
        if size <= part_size:
            data = await self.get_bytes(src_key, 0, size) if size else b""
            # the carried headers first, the destination's own write headers (ahbe_conf, ...) over them, as CopyObject
            carried = merge_headers(http_headers or {}, self.headers.for_write(dst_key))
            return (await self.put(dst_key, data, content_type=content_type, meta=meta, headers=carried)).etag

        async def part(upload_id: str, number: int, first: int, last: int) -> PartInfo:
            data = await self.get_bytes(src_key, first, last - first + 1)
            return await self.upload_part(dst_key, upload_id, number, data)

        return await self._assemble(dst_key, content_type, meta, size, part_size, part, http_headers)

    async def update_meta(self, key: str, *, content_type: str | None, meta: Mapping[str, str],
                          size: int | None = None, http_headers: Mapping[str, str] | None = None) -> None:
        """Replace the object's Content-Type and user metadata: CopyObject onto itself, so no data moves (unless
        the copy policy forbids the copy API: then the object is downloaded and uploaded again)."""
        await self.copy(key, key, content_type=content_type, meta=meta, size=size, http_headers=http_headers)

    async def delete(self, key: str) -> None:
        """DeleteObject (succeeds if the key is already gone, as OSS does)."""
        await self._call("DeleteObject", key, lambda: OssRequest("DELETE", key), self._headers_only)

    async def delete_many(self, keys: list[str]) -> None:
        """DeleteMultipleObjects in batches of 1000."""
        for start in range(0, len(keys), MAX_DELETE_BATCH):
            batch = keys[start:start + MAX_DELETE_BATCH]
            body = oss2.xml_utils.to_batch_delete_objects_request(batch, False)
            headers = {"content-md5": oss2.utils.content_md5(body)}
            await self._call("DeleteMultipleObjects", batch[0],
                             lambda: OssRequest("POST", params={"delete": "", "encoding-type": "url"},
                                                headers=headers, body=body),
                             self._headers_only)

    # -- multipart --------------------------------------------------------------------------------

    async def init_multipart(self, key: str, *, content_type: str | None = None,
                             meta: Mapping[str, str] | None = None,
                             http_headers: Mapping[str, str] | None = None) -> str:
        """InitiateMultipartUpload; returns the upload id. `http_headers` as for `copy`. The upload carries
        x-oss-meta-ossmount-upload: `upload_marker` (UPLOAD_MARKER), by which `list_multipart_uploads` recognises
        it."""
        marked = {**(meta or {}), UPLOAD_MARKER: self.upload_marker}
        headers = merge_headers(http_headers or {}, self._write_headers(key, content_type, marked))

        async def handle(response: http.Response) -> Any:
            return await self._parsed(response, oss2.xml_utils.parse_init_multipart_upload,
                                      oss2.models.InitMultipartUploadResult)

        result = await self._call("InitiateMultipartUpload", key,
                                  lambda: OssRequest("POST", key, params={"uploads": ""}, headers=headers), handle)
        if not result.upload_id:
            raise types.TransientError(f"InitiateMultipartUpload {key!r}: the server's answer is not usable (no "
                                       "UploadId)", code="InvalidResponse", request_id=result.request_id, key=key)
        return result.upload_id

    async def _upload_part_body(self, key: str, upload_id: str, part_number: int,
                                make_body: Callable[[], Any], size: int, known_crc: int | None = None) -> PartInfo:
        params = {"uploadId": upload_id, "partNumber": str(part_number)}
        headers = self.headers.for_upload()

        async def attempt() -> PartInfo:
            body = make_body()
            expected_crc = _expected_crc(body, known_crc)
            answer: dict[str, str] = {}
            await self._attempt("UploadPart", key, OssRequest("PUT", key, params=params, headers=headers, body=body),
                                functools.partial(_keep_headers, answer))
            self._bytes_out += size
            expected = body.crc if expected_crc is None else expected_crc
            crc = self._verify_crc("UploadPart", key, expected, answer, answer.get("x-oss-request-id", ""))
            return PartInfo(part_number=part_number, etag=_strip_etag(answer.get("etag")), size=size,
                            crc64=crc if crc is not None else expected)

        return await self.retry.run(attempt, on_retry=self._note_retry)

    async def upload_part(self, key: str, upload_id: str, part_number: int, data: Any, *,
                          crc64: int | None = None) -> PartInfo:
        """UploadPart from memory: one buffer, or a list of buffers sent without being joined; CRC-64 verified
        (`crc64`: the body's, when the caller computed it as the data arrived)."""
        return await self._upload_part_body(key, upload_id, part_number, lambda: _memory_body(data),
                                            _memory_length(data), crc64)

    async def list_multipart_uploads(self, prefix: str = "") -> list[types.MultipartUpload]:
        """Every incomplete multipart upload of keys under `prefix` (ListMultipartUploads, following its pages),
        with the metadata given at Initiate where the listing carries it (`MultipartUpload.meta`)."""
        uploads: list[types.MultipartUpload] = []
        key_marker = upload_id_marker = ""
        while True:
            params = {"uploads": "", "prefix": prefix, "key-marker": key_marker,
                      "upload-id-marker": upload_id_marker, "max-uploads": "1000", "encoding-type": "url"}

            async def handle(response: http.Response) -> Any:
                body = await self._body(response)
                try:
                    return _parse_uploads(body)
                except Exception as exc:  # noqa: BLE001 - any parser failure means an unusable answer
                    raise _InvalidResponse(f"{type(exc).__name__}: {exc}"[:200], response.request_id) from exc

            page, next_key, next_id = await self._call(
                "ListMultipartUploads", prefix, lambda: OssRequest("GET", params=dict(params)), handle)
            uploads.extend(page)
            if next_key is None:
                return uploads
            key_marker, upload_id_marker = next_key, next_id or ""

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """The parts uploaded so far to `upload_id` (ListParts, every page), in part-number order."""
        parts: list[PartInfo] = []
        marker = ""
        while True:
            params = {"uploadId": upload_id, "part-number-marker": marker}

            async def handle(response: http.Response) -> Any:
                return await self._parsed(response, oss2.xml_utils.parse_list_parts, oss2.models.ListPartsResult)

            result = await self._call("ListParts", key, lambda: OssRequest("GET", key, params=dict(params)), handle)
            parts.extend(PartInfo(part_number=p.part_number, etag=_strip_etag(p.etag), size=int(p.size or 0))
                         for p in result.parts)
            if not result.is_truncated or not result.next_marker:
                return parts
            marker = str(result.next_marker)

    async def upload_part_from_file(self, key: str, upload_id: str, part_number: int, fileobj: BinaryIO,
                                    offset: int, size: int) -> PartInfo:
        """UploadPart streamed from `size` bytes of `fileobj` at `offset` (pread: safe to run in parallel)."""
        return await self._upload_part_body(key, upload_id, part_number,
                                            lambda: http.FileBody(fileobj, offset, size), size)

    async def upload_part_copy(self, src_key: str, byte_range: tuple[int, int], key: str, upload_id: str,
                               part_number: int, *, source_if_match: str | None = None,
                               source_version_id: str | None = None) -> PartInfo:
        """UploadPartCopy of the inclusive `byte_range` (first, last) of `src_key` (download + UploadPart when the
        copy policy forbids server-side copies).

        `source_version_id` copies from that version; otherwise `source_if_match` (an ETag) sends
        `x-oss-copy-source-if-match`, so a replaced source fails with PreconditionFailed instead of copying
        bytes of a version the caller never saw (the download of a forbidden copy is pinned alike).
        """
        first, last = byte_range
        if not self.copy_policy.part_copy:
            data = await self.get_bytes(src_key, first, last - first + 1, if_match=source_if_match,
                                        version_id=source_version_id)
            return await self.upload_part(key, upload_id, part_number, data)
        headers = {"x-oss-copy-source": self._copy_source(src_key, source_version_id),
                   "x-oss-copy-source-range": f"bytes={first}-{last}"}
        if source_if_match and not source_version_id:
            headers["x-oss-copy-source-if-match"] = f'"{source_if_match}"'
        params = {"uploadId": upload_id, "partNumber": str(part_number)}
        response = await self._call("UploadPartCopy", key,
                                    lambda: OssRequest("PUT", key, params=params, headers=headers),
                                    self._headers_only)
        crc = response.headers.get("x-oss-hash-crc64ecma")
        return PartInfo(part_number=part_number, etag=_strip_etag(response.headers.get("etag")),
                        size=last - first + 1, crc64=int(crc) if crc else None)

    async def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> ObjectInfo:
        """CompleteMultipartUpload; the object CRC is checked against the combined part CRCs when known.

        A retry that finds the upload gone (NoSuchUpload: an earlier attempt completed it and its answer was lost)
        is a success when the object has the size and CRC-64 of the parts."""
        ordered = sorted(parts, key=lambda p: p.part_number)
        body = oss2.xml_utils.to_complete_upload_request([oss2.models.PartInfo(p.part_number, p.etag)
                                                          for p in ordered])
        size = sum(p.size for p in ordered)
        expected = None
        if all(p.crc64 is not None for p in ordered):
            expected = crc64_concat([(p.crc64, p.size) for p in ordered])  # type: ignore[misc]
        attempts = 0

        async def attempt() -> http.Response:
            nonlocal attempts
            attempts += 1
            try:
                return await self._attempt("CompleteMultipartUpload", key,
                                           OssRequest("POST", key, params={"uploadId": upload_id}, body=body),
                                           self._headers_only)
            except types.StoreError as error:
                if attempts > 1 and error.code == "NoSuchUpload" and expected is not None:
                    done = await self._completed_earlier(key, size, expected)
                    if done is not None:
                        return done
                raise

        response = await self.retry.run(attempt, on_retry=self._note_retry)
        headers = response.headers
        crc = None
        if expected is not None:
            crc = self._verify_crc("CompleteMultipartUpload", key, expected, headers, headers.get(
                "x-oss-request-id", ""))
        return ObjectInfo(key=key, size=size, etag=_strip_etag(headers.get("etag")), mtime=_response_time(headers),
                          crc64=crc, object_type="Multipart", version_id=headers.get("x-oss-version-id"))

    async def _completed_earlier(self, key: str, size: int, crc: int) -> Any:
        """The object's headers (as an answer) if it is the one the parts make, else None."""
        info = await self.head(key)
        if info.size != size or info.crc64 != crc:
            return None
        return _Completed(info)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload (an upload already gone — NoSuchUpload on a retry — counts as aborted)."""
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            try:
                await self._attempt("AbortMultipartUpload", key,
                                    OssRequest("DELETE", key, params={"uploadId": upload_id}), self._headers_only)
            except types.StoreError as error:
                if not (attempts > 1 and error.code == "NoSuchUpload"):
                    raise

        await self.retry.run(attempt, on_retry=self._note_retry)


async def _keep_headers(into: dict[str, str], response: http.Response) -> None:
    """An answer whose headers are all that matters: kept in `into`, the (small) body read and dropped."""
    await response.read(_MAX_PARSED_BODY)
    into.update(response.headers)


def _memory_body(data: Any) -> Any:
    """A list/tuple of buffers as a `BufferList`; one buffer as it is (bytes) or as a flat memoryview."""
    if isinstance(data, (list, tuple)):
        return http.BufferList(data)
    return data if isinstance(data, bytes) else memoryview(data).cast("B")


def _memory_length(data: Any) -> int:
    if isinstance(data, (list, tuple)):
        return sum(memoryview(buffer).nbytes for buffer in data)
    return memoryview(data).nbytes


def _expected_crc(body: Any, known: int | None) -> int | None:
    """The CRC-64 the server must report: `known`, else computed now (None for a FileBody: it sums as it is
    read)."""
    if known is not None:
        return known
    if isinstance(body, http.FileBody):
        return None
    if isinstance(body, http.BufferList):
        return body.crc()
    return crc64(body)


def _parse_uploads(body: bytes) -> tuple[list[types.MultipartUpload], str | None, str | None]:
    """A ListMultipartUploads page: the uploads, and (next key marker, next upload id marker) or (None, None)."""
    root = ElementTree.fromstring(body)
    encoded = (root.findtext("EncodingType") or "") == "url"

    def text(node: Any, tag: str) -> str:
        value = node.findtext(tag) or ""
        return urllib.parse.unquote(value) if encoded else value

    uploads = []
    for node in root.findall("Upload"):
        initiated = node.findtext("Initiated") or ""
        meta = {text(item, "Name").lower().removeprefix(META_PREFIX): text(item, "Value")
                for item in node.findall("UserMeta")}
        uploads.append(types.MultipartUpload(key=text(node, "Key"), upload_id=node.findtext("UploadId") or "",
                                             initiated=float(oss2.utils.iso8601_to_unixtime(initiated))
                                             if initiated else 0.0, meta=meta))
    if (root.findtext("IsTruncated") or "").lower() != "true":
        return uploads, None, None
    return uploads, text(root, "NextKeyMarker"), root.findtext("NextUploadIdMarker") or ""


def _body_length(body: Any) -> int:
    if body is None:
        return 0
    if isinstance(body, (http.FileBody, http.BufferList)):
        return body.length
    return len(body)


class _Completed:
    """What complete_multipart reads of an answer, for an upload an earlier attempt completed."""

    def __init__(self, info: ObjectInfo):
        self.headers = {"etag": info.etag, "x-oss-hash-crc64ecma": str(info.crc64),
                        **({"x-oss-version-id": info.version_id} if info.version_id else {})}
        if info.mtime:
            self.headers["date"] = email.utils.formatdate(info.mtime, usegmt=True)


class _RangedRead:
    """One GetObject of `buf`'s length from `offset` (or, with `buf` None, everything from `offset` to the end),
    over as many attempts as it takes: each attempt asks for the bytes not yet received, pinned to the version
    the first answer came from, and a failure after some progress is marked `made_progress` (retry.py rule 3)."""

    def __init__(self, store: ObjectStore, key: str, offset: int, buf: memoryview | None, if_match: str | None,
                 version_id: str | None, progress: Callable[[int], None] | None = None):
        self.store = store
        self.progress = progress
        self.key = key
        self.offset = offset
        self.view = buf
        self.buffer: bytearray | None = None
        self.if_match = if_match
        self.version_id = version_id
        self.filled = 0
        self.total: int | None = None if buf is None else len(buf)  # bytes wanted in all (None: not known yet)
        self.attempts = 0
        self.first_answer: tuple[int, Mapping[str, str]] | None = None  # (status, headers) of the first answer

    def request(self) -> OssRequest:
        self.attempts += 1
        if self.attempts > 1 and self.filled:
            self.store._resumed_reads += 1
        first = self.offset + self.filled
        last = None if self.view is None else self.offset + len(self.view) - 1
        return self.store._get_request(self.key, first, last, self.if_match, self.version_id)

    async def handle(self, response: http.Response) -> int:
        if self.first_answer is None:
            self.first_answer = (response.status, response.headers)
        if response.status == 416:  # the range starts at or past the end: nothing (more) to read
            await response.read(_MAX_ERROR_BODY)
            if self.view is None and self.buffer is None:
                self.buffer = bytearray()
            return self.filled
        if self.if_match is None and self.version_id is None:
            self.if_match = _strip_etag(response.headers.get("etag")) or None  # resume this version, no other
        skip = 0
        if response.status == 200 and (self.offset + self.filled):
            skip = self.offset + self.filled  # a server that ignored Range sent it all
        before = self.filled
        try:
            await self._skip(response, skip)
            if self.view is None:
                self._grow(response)
            view = self.view if self.view is not None else memoryview(self.buffer)  # type: ignore[arg-type]
            end = len(view)
            while self.filled < end:
                count = await response.read_into(view[self.filled:])
                if not count:
                    break
                self.filled += count
                if self.progress is not None:
                    self.progress(self.filled)
        except Exception as exc:
            if self.filled > before:
                error = error_from_oss(exc, op="GetObject", key=self.key)
                if error is not None and error.retryable:
                    error.made_progress = True
                    raise error from exc
            raise
        if self.view is None and self.buffer is not None and self.filled < len(self.buffer):
            raise types.TransientError(f"GetObject {self.key!r}: the body ended {len(self.buffer) - self.filled} "
                                       "bytes early", code="ConnectionReset", status=-2, key=self.key)
        return self.filled

    def _grow(self, response: http.Response) -> None:
        """With no caller buffer: the first answer says how much there is (Content-Length of the rest)."""
        length = response.content_length
        if length is None:
            raise types.TransientError(f"GetObject {self.key!r}: the answer has no Content-Length",
                                       code="InvalidResponse", key=self.key)
        if response.status == 200:
            length -= self.offset + self.filled
        if self.buffer is None:
            self.buffer = bytearray(self.filled + max(length, 0))
        elif len(self.buffer) != self.filled + length:
            raise types.TransientError(f"GetObject {self.key!r}: the object changed size while it was read",
                                       code="InvalidResponse", key=self.key)

    @staticmethod
    async def _skip(response: http.Response, count: int) -> None:
        if not count:
            return
        scratch = memoryview(bytearray(min(count, _SKIP_CHUNK)))
        while count:
            got = await response.read_into(scratch[:min(count, len(scratch))])
            if not got:
                return
            count -= got
