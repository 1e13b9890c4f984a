"""Request authentication for `ossmount serve`: every OSS signature scheme, verified, sans-IO.

Schemes (oss-api.md §2.2), each recomputed from the request exactly as the client signer builds it:

* V1 header ``Authorization: OSS <ak>:<base64 HMAC-SHA1>`` and the V1 presigned URL
  (``OSSAccessKeyId``/``Expires``/``Signature``), mirroring oss2 ``ProviderAuth``;
* V2 header ``OSS2 AccessKeyId:…,AdditionalHeaders:…,Signature:…`` and its presigned URL
  (``x-oss-signature-version=OSS2``), mirroring oss2 ``ProviderAuthV2``;
* V4 header ``OSS4-HMAC-SHA256 Credential=…, Signature=…[, AdditionalHeaders=…]`` in any component order and
  with or without spaces after the commas (oss2 and Photon/ossfs2 differ), and the V4 presigned URL
  (``x-oss-signature-version=OSS4-HMAC-SHA256``), mirroring oss2 ``ProviderAuthV4``;
* STS: a configured (ak, secret, token) triple must present exactly its token, in the
  ``x-oss-security-token`` header or the ``security-token``/``x-oss-security-token`` query parameter.

Header values reach us as ``str`` (the HTTP front decodes UTF-8, else latin-1) and are signed as UTF-8, which is
what oss2 signs (``_header_bytes``).
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import functools
import hashlib
import hmac
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from ossmount.errors import ConfigError
from ossmount.server.core import routing
from ossmount.server.core.dates import iso8601
from ossmount.server.core.errors import OssError
from ossmount.server.core.model import Request
from ossmount.server.core.payload import check_oss_content_sha256_value

__all__ = [
    "Credential",
    "CredentialStore",
    "Principal",
    "SUBRESOURCE_KEYS",
    "authenticate",
    "parse_query",
]

# Copied verbatim from oss2 2.19.1 `ProviderAuth._subresource_key_set`: the V1 canonical resource signs exactly
# these query parameters, so the server must pick the same ones or every V1 request with one of them fails.
SUBRESOURCE_KEYS = frozenset(
    ['response-content-type', 'response-content-language',
     'response-cache-control', 'logging', 'response-content-encoding',
     'acl', 'uploadId', 'uploads', 'partNumber', 'group', 'link',
     'delete', 'website', 'location', 'objectInfo', 'objectMeta',
     'response-expires', 'response-content-disposition', 'cors', 'lifecycle',
     'restore', 'qos', 'referer', 'stat', 'bucketInfo', 'append', 'position', 'security-token',
     'live', 'comp', 'status', 'vod', 'startTime', 'endTime', 'x-oss-process',
     'symlink', 'callback', 'callback-var', 'tagging', 'encryption', 'versions',
     'versioning', 'versionId', 'policy', 'requestPayment', 'x-oss-traffic-limit', 'qosInfo', 'asyncFetch',
     'x-oss-request-payer', 'sequential', 'inventory', 'inventoryId', 'continuation-token', 'callback',
     'callback-var', 'worm', 'wormId', 'wormExtend', 'replication', 'replicationLocation',
     'replicationProgress', 'transferAcceleration', 'cname', 'metaQuery',
     'x-oss-ac-source-ip', 'x-oss-ac-subnet-mask', 'x-oss-ac-vpc-id', 'x-oss-ac-forward-allow',
     'resourceGroup', 'style', 'styleName', 'x-oss-async-process', 'regionList', 'x-oss-write-get-object-response',
     'bucketArchiveDirectRead', 'httpsConfig', 'redundancyTransition', 'x-oss-target-redundancy-type',
     'x-oss-redundancy-transition-taskid',
     'accessPoint', 'accessPointPolicy', 'publicAccessBlock', 'x-oss-access-point-name',
     'requesterQosInfo', 'qosRequester', 'resourcePoolInfo', 'resourcePool', 'resourcePoolBuckets']
)

V4_ALGORITHM = "OSS4-HMAC-SHA256"
V4_TERMINATOR = "aliyun_v4_request"
V4_PRODUCT = "oss"
V4_MAX_EXPIRES = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_V4_DEFAULT_SIGNED_HEADERS = frozenset(["content-type", "content-md5"])

EC_V1_SIGNATURE_MISMATCH = "0002-00000040"
EC_V4_SIGNATURE_MISMATCH = "0002-00000201"
EC_TIME_TOO_SKEWED = "0002-00000504"
EC_V4_BAD_REGION = "0002-00000226"
EC_ACCESS_DENIED = "0003-00000001"

_SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
_SKEW_MESSAGE = "The difference between the request time and the current time is too large."


# --------------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credential:
    """One configured key: a long-term AK/SK pair, or an STS triple when `security_token` is set."""

    access_key_id: str
    secret: str
    security_token: str | None = None


class CredentialStore:
    """The keys the server accepts, looked up by access key id.

    The first entry is the owner of buckets created with `--bucket`."""

    def __init__(self, entries: Iterable[Credential]):
        self._entries: list[Credential] = []
        self._by_id: dict[str, Credential] = {}
        for entry in entries:
            if not entry.access_key_id or not entry.secret:
                raise ValueError("a credential needs a non-empty access key id and secret")
            if entry.access_key_id in self._by_id:
                raise ValueError(f"duplicate access key id {entry.access_key_id!r}")
            self._entries.append(entry)
            self._by_id[entry.access_key_id] = entry

    @classmethod
    def from_file(cls, path: str) -> "CredentialStore":
        """Read `AK:SK` / `AK:SK:SECURITY_TOKEN` lines; `#` starts a comment line, blank lines are ignored.

        Raises ConfigError (one line, naming the file and line) for an unreadable file, a malformed line,
        a duplicate key id or a file with no credentials at all."""
        try:
            with open(path, encoding="utf-8-sig") as f:  # a byte-order mark (Notepad) is not part of the key
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read credentials file {path}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"credentials file {path} is not UTF-8 text") from e
        return cls.from_text(text, source=path)

    @classmethod
    def from_text(cls, text: str, *, source: str = "<credentials>") -> "CredentialStore":
        """Parse credentials-file content (see `from_file`)."""
        entries: list[Credential] = []
        seen: set[str] = set()
        for number, raw_line in enumerate(text.splitlines(), start=1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [field.strip() for field in line.split(":")]
            if len(fields) not in (2, 3) or not all(fields):
                raise ConfigError(
                    f"{source}:{number}: expected ACCESS_KEY_ID:ACCESS_KEY_SECRET[:SECURITY_TOKEN]"
                )
            if fields[0] in seen:
                raise ConfigError(f"{source}:{number}: duplicate access key id {fields[0]}")
            seen.add(fields[0])
            entries.append(Credential(fields[0], fields[1], fields[2] if len(fields) == 3 else None))
        if not entries:
            raise ConfigError(f"{source}: no credentials found")
        return cls(entries)

    def lookup(self, access_key_id: str) -> Credential | None:
        """The credential with this access key id, or None."""
        return self._by_id.get(access_key_id)

    def first(self) -> Credential:
        """The first configured credential (owner of the `--bucket` buckets)."""
        if not self._entries:
            raise LookupError("no credentials configured")
        return self._entries[0]

    def __iter__(self) -> Iterator[Credential]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Principal:
    """Who made an authenticated request. STS identities are their own owners, so `owner_id` is always the AK."""

    access_key_id: str
    owner_id: str


# --------------------------------------------------------------------------------------------------
# Parsing helpers


def _decode_component(raw: str) -> str:
    # Percent-decode once; bytes that are not UTF-8 survive as surrogates so re-encoding gives them back.
    return unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _header_bytes(value: str) -> bytes:
    """The bytes a header value is signed as: its UTF-8 encoding.

    Exact for every client that sends UTF-8 (ossfs, oss2 with bytes values) and also for oss2 with a latin-1 `str`
    value, which http.client sends as latin-1 but oss2 signs as UTF-8. Only a non-UTF-8 value that a client signs
    as its raw bytes cannot match: the front's UTF-8-else-latin-1 decoding does not say which it received."""
    return _utf8(value)


def parse_query(target: str) -> list[tuple[str, str]]:
    """The query of a raw request-target as decoded (name, value) pairs in order (see routing.parse_query)."""
    _, sep, query = target.partition("?")
    return routing.parse_query(query) if sep else []


def _first(pairs: list[tuple[str, str]], name: str) -> str | None:
    for key, value in pairs:
        if key == name:
            return value
    return None


@functools.lru_cache(maxsize=256)
def _parse_http_date(value: str) -> float | None:
    """RFC 1123 dates (what every client sends) and, for x-oss-date, the ISO 8601 basic form. Cached: a client's
    requests within one second carry the same date, and parsing one costs more than checking its signature."""
    value = value.strip()
    if not value:
        return None
    v4_time = _parse_v4_date(value)
    if v4_time is not None:
        return v4_time
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError):
        return None


@functools.lru_cache(maxsize=256)
def _parse_v4_date(value: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except (ValueError, OverflowError):
        return None


def _string_to_sign_bytes_hex(data: bytes) -> str:
    # Real OSS prints upper-case hex pairs separated (and terminated) by a space.
    return "".join(f"{byte:02X} " for byte in data)


def _printable(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------
# Refusals


def _access_denied(message: str, extra: list[tuple[str, str]] | None = None) -> OssError:
    return OssError(403, "AccessDenied", message, ec=EC_ACCESS_DENIED, extra=extra)


def _invalid_authorization(message: str = "Authorization header is invalid.") -> OssError:
    return OssError(400, "InvalidArgument", message)


def _check_skew(request_time: float, now: float, max_skew: float) -> None:
    if abs(now - request_time) > max_skew:
        raise OssError(
            403,
            "RequestTimeTooSkewed",
            _SKEW_MESSAGE,
            ec=EC_TIME_TOO_SKEWED,
            extra=[("RequestTime", iso8601(request_time)), ("ServerTime", iso8601(now))],
        )


def _lookup(credentials: CredentialStore, access_key_id: str) -> Credential:
    credential = credentials.lookup(access_key_id)
    if credential is None:
        raise OssError(
            403,
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
            extra=[("OSSAccessKeyId", access_key_id)],
        )
    return credential


def _check_security_token(credential: Credential, presented: str | None) -> None:
    """An STS key must come with exactly its token; a long-term key must come without one."""
    if credential.security_token is None:
        if presented:
            raise OssError(
                403,
                "InvalidSecurityToken",
                "The security token you provided is invalid.",
                extra=[("OSSAccessKeyId", credential.access_key_id)],
            )
        return
    if not presented:
        raise OssError(
            403,
            "InvalidSecurityToken",
            "The security token you provided is invalid: a temporary access key needs its security token.",
            extra=[("OSSAccessKeyId", credential.access_key_id)],
        )
    if not hmac.compare_digest(_utf8(presented), _utf8(credential.security_token)):
        raise OssError(
            403,
            "InvalidSecurityToken",
            "The security token you provided is invalid.",
            extra=[("OSSAccessKeyId", credential.access_key_id)],
        )


def _signature_mismatch(
    *,
    access_key_id: str,
    provided: str,
    string_to_sign: bytes,
    ec: str,
    canonical_request: bytes | None = None,
) -> OssError:
    extra = [
        ("OSSAccessKeyId", access_key_id),
        ("SignatureProvided", provided),
        ("StringToSign", _printable(string_to_sign)),
        ("StringToSignBytes", _string_to_sign_bytes_hex(string_to_sign)),
    ]
    if canonical_request is not None:
        extra.append(("CanonicalRequest", _printable(canonical_request)))
    return OssError(403, "SignatureDoesNotMatch", _SIGNATURE_MISMATCH_MESSAGE, ec=ec, extra=extra)


def _compare(provided: str, expected: str) -> bool:
    return hmac.compare_digest(_utf8(provided), expected.encode("ascii"))


def _credential(
    credentials: CredentialStore, access_key_id: str, request: Request, query: list[tuple[str, str]]
) -> Credential:
    """The credential of `access_key_id`, if it exists and the request presents exactly its STS token."""
    credential = _lookup(credentials, access_key_id)
    _check_security_token(credential, _presented_token(request, query))
    return credential


def _presented_token(request: Request, query: list[tuple[str, str]]) -> str | None:
    return (
        request.header("x-oss-security-token")
        or _first(query, "security-token")
        or _first(query, "x-oss-security-token")
    )


def _check_request_time(date: str, now: float, max_skew: float) -> None:
    """The V1/V2 header schemes: the request's date must parse and lie within `max_skew` of `now`."""
    request_time = _parse_http_date(date)
    if request_time is None:
        raise _access_denied("Missing or invalid Date header." if date else "Missing Date header.")
    _check_skew(request_time, now, max_skew)


def _check_presigned_expires(expires: str, parameter: str, now: float) -> None:
    """The V1/V2 presigned URLs: `expires` is an absolute epoch second that must not have passed."""
    try:
        expires_at = int(expires)
    except ValueError:
        raise _access_denied(f"Invalid {parameter} in presigned URL.") from None
    if now > expires_at:
        raise _access_denied(
            "Request has expired.", extra=[("Expires", iso8601(expires_at)), ("ServerTime", iso8601(now))]
        )


def _check_hmac_signature(access_key_id: str, provided: str, expected: str, string_to_sign: bytes) -> None:
    """The V1/V2 schemes: compare a base64 HMAC; both report a mismatch with the V1 error code, as OSS does."""
    if not _compare(provided, expected):
        raise _signature_mismatch(
            access_key_id=access_key_id, provided=provided, string_to_sign=string_to_sign, ec=EC_V1_SIGNATURE_MISMATCH
        )


# --------------------------------------------------------------------------------------------------
# V1 (oss2 ProviderAuth)


def v1_string_to_sign(
    method: str,
    headers: dict[str, str],
    date: str,
    bucket: str | None,
    key: str | None,
    query: list[tuple[str, str]],
) -> bytes:
    """The V1 StringToSign: verb, Content-MD5, Content-Type, date, x-oss-* headers, canonical resource."""
    oss_headers = sorted(
        (name.lower(), value.strip()) for name, value in headers.items() if name.lower().startswith("x-oss-")
    )
    header_block = b"".join(_utf8(name) + b":" + _header_bytes(value) + b"\n" for name, value in oss_headers)
    if bucket:
        resource = f"/{bucket}/{key or ''}"
    else:
        resource = "/"
    subresources = sorted(((k, v) for k, v in query if k in SUBRESOURCE_KEYS), key=lambda item: item[0])
    if subresources:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
    return b"\n".join(
        [
            _utf8(method),
            _header_bytes(headers.get("content-md5", "")),
            _header_bytes(headers.get("content-type", "")),
            _header_bytes(date),
            header_block + _utf8(resource),
        ]
    )


def _v1_signature(secret: str, string_to_sign: bytes) -> str:
    digest = hmac.digest(_utf8(secret), string_to_sign, "sha1")  # one C call (hmac.new builds two hash objects)
    return base64.b64encode(digest).decode("ascii")


def _verify_v1_header(request, authorization, query, *, bucket, key, credentials, now, max_skew):
    access_key_id, sep, provided = authorization[len("OSS ") :].strip().partition(":")
    if not sep or not access_key_id or not provided:
        raise _invalid_authorization()
    credential = _credential(credentials, access_key_id, request, query)
    date = request.header("x-oss-date") or request.header("date") or ""
    _check_request_time(date, now, max_skew)
    string_to_sign = v1_string_to_sign(request.method, request.headers, date, bucket, key, query)
    _check_hmac_signature(access_key_id, provided, _v1_signature(credential.secret, string_to_sign), string_to_sign)
    return credential


def _verify_v1_presigned(request, query, *, bucket, key, credentials, now):
    access_key_id = _first(query, "OSSAccessKeyId")
    expires = _first(query, "Expires")
    provided = _first(query, "Signature")
    if not access_key_id or not expires or not provided:
        raise _access_denied("Invalid presigned URL: OSSAccessKeyId, Expires and Signature are all required.")
    credential = _credential(credentials, access_key_id, request, query)
    _check_presigned_expires(expires, "Expires", now)
    string_to_sign = v1_string_to_sign(request.method, request.headers, expires, bucket, key, query)
    _check_hmac_signature(access_key_id, provided, _v1_signature(credential.secret, string_to_sign), string_to_sign)
    return credential


# --------------------------------------------------------------------------------------------------
# V2 (oss2 ProviderAuthV2)


def _uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encode all but unreserved characters (and `/` when asked), as the V2 and V4 signers do."""
    safe = "_-~./" if keep_slash else "_-~."
    return "".join(
        chr(byte) if chr(byte).isascii() and (chr(byte).isalnum() or chr(byte) in safe) else f"%{byte:02X}"
        for byte in _utf8(text)
    )


def v2_string_to_sign(
    method: str,
    headers: dict[str, str],
    date: str,
    bucket: str | None,
    key: str | None,
    query: list[tuple[str, str]],
    additional_headers: list[str],
) -> bytes:
    """The V2 StringToSign: like V1, plus listed additional headers, and every query parameter URI-encoded."""
    additional = {name.lower() for name in additional_headers}
    signed = sorted(
        (name.lower(), value)
        for name, value in headers.items()
        if name.lower().startswith("x-oss-") or name.lower() in additional
    )
    header_block = b"".join(_utf8(name) + b":" + _header_bytes(value) + b"\n" for name, value in signed)
    resource = _uri_encode(f"/{bucket}/{key or ''}" if bucket else "/")
    encoded = sorted((_uri_encode(k), _uri_encode(v)) for k, v in query)
    if encoded:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in encoded)
    return (
        _utf8(method) + b"\n"
        + _header_bytes(headers.get("content-md5", "")) + b"\n"
        + _header_bytes(headers.get("content-type", "")) + b"\n"
        + _header_bytes(date) + b"\n"
        + header_block
        + _utf8(";".join(sorted(additional))) + b"\n"
        + _utf8(resource)
    )


def _v2_signature(secret: str, string_to_sign: bytes) -> str:
    digest = hmac.new(_utf8(secret), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _split_additional(value: str | None) -> list[str]:
    return [name.strip().lower() for name in (value or "").split(";") if name.strip()]


def _verify_v2_header(request, authorization, query, *, bucket, key, credentials, now, max_skew):
    fields: dict[str, str] = {}
    for component in authorization[len("OSS2 ") :].split(","):
        name, sep, value = component.strip().partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    access_key_id = fields.get("AccessKeyId")
    provided = fields.get("Signature")
    if not access_key_id or not provided:
        raise _invalid_authorization()
    credential = _credential(credentials, access_key_id, request, query)
    date = request.header("date") or ""
    _check_request_time(request.header("x-oss-date") or date, now, max_skew)
    string_to_sign = v2_string_to_sign(
        request.method, request.headers, date, bucket, key, query, _split_additional(fields.get("AdditionalHeaders"))
    )
    _check_hmac_signature(access_key_id, provided, _v2_signature(credential.secret, string_to_sign), string_to_sign)
    return credential


def _verify_v2_presigned(request, query, *, bucket, key, credentials, now):
    access_key_id = _first(query, "x-oss-access-key-id")
    expires = _first(query, "x-oss-expires")
    provided = _first(query, "x-oss-signature")
    if not access_key_id or not expires or not provided:
        raise _access_denied(
            "Invalid presigned URL: x-oss-access-key-id, x-oss-expires and x-oss-signature are all required."
        )
    credential = _credential(credentials, access_key_id, request, query)
    _check_presigned_expires(expires, "x-oss-expires", now)
    signed_query = [(k, v) for k, v in query if k != "x-oss-signature"]
    string_to_sign = v2_string_to_sign(
        request.method,
        request.headers,
        expires,
        bucket,
        key,
        signed_query,
        _split_additional(_first(query, "x-oss-additional-headers")),
    )
    _check_hmac_signature(access_key_id, provided, _v2_signature(credential.secret, string_to_sign), string_to_sign)
    return credential


# --------------------------------------------------------------------------------------------------
# V4 (oss2 ProviderAuthV4, Photon sign_v4)


def v4_canonical_request(
    method: str,
    headers: dict[str, str],
    bucket: str | None,
    key: str | None,
    query: list[tuple[str, str]],
    additional_headers: list[str],
) -> bytes:
    """The V4 CanonicalRequest. `query` must already exclude `x-oss-signature` for presigned URLs."""
    uri = _uri_encode(f"/{bucket}/{key or ''}" if bucket else "/", keep_slash=True)
    encoded_query = sorted(
        (_uri_encode(k), _uri_encode(v)) for k, v in query
    )
    canonical_query = "&".join(f"{k}={v}" if v else k for k, v in encoded_query)
    additional = sorted({name.lower() for name in additional_headers})
    signed = sorted(
        (name.lower(), value.strip())
        for name, value in headers.items()
        if name.lower().startswith("x-oss-")
        or name.lower() in _V4_DEFAULT_SIGNED_HEADERS
        or name.lower() in additional
    )
    header_block = b"".join(_utf8(name) + b":" + _header_bytes(value) + b"\n" for name, value in signed)
    payload_hash = headers.get("x-oss-content-sha256", UNSIGNED_PAYLOAD)
    return (
        _utf8(method) + b"\n"
        + _utf8(uri) + b"\n"
        + _utf8(canonical_query) + b"\n"
        + header_block + b"\n"
        + _utf8(";".join(additional)) + b"\n"
        + _header_bytes(payload_hash)
    )


def v4_string_to_sign(date_time: str, scope: str, canonical_request: bytes) -> bytes:
    """The V4 StringToSign over an already built CanonicalRequest."""
    digest = hashlib.sha256(canonical_request).hexdigest()
    return f"{V4_ALGORITHM}\n{date_time}\n{scope}\n{digest}".encode("ascii", "surrogateescape")


@functools.lru_cache(maxsize=64)
def v4_signing_key(secret: str, date: str, region: str, product: str = V4_PRODUCT) -> bytes:
    """HMAC chain aliyun_v4+secret → date → region → product → aliyun_v4_request (the same for a whole day, so the
    last few are kept: four HMACs per request saved)."""
    key = hmac.new(_utf8("aliyun_v4" + secret), _utf8(date), hashlib.sha256).digest()
    key = hmac.new(key, _utf8(region), hashlib.sha256).digest()
    key = hmac.new(key, _utf8(product), hashlib.sha256).digest()
    return hmac.new(key, V4_TERMINATOR.encode("ascii"), hashlib.sha256).digest()


@dataclass(frozen=True)
class _V4Scope:
    """A V4 credential scope; the S3 dialect's scopes end in aws4_request instead."""

    access_key_id: str
    date: str
    region: str
    product: str
    terminator: str = V4_TERMINATOR

    @property
    def text(self) -> str:
        return f"{self.date}/{self.region}/{self.product}/{self.terminator}"


def _parse_v4_credential(value: str, error_message: str) -> _V4Scope:
    parts = value.split("/")
    if len(parts) < 5 or parts[-1] != V4_TERMINATOR or not parts[0]:
        raise _invalid_authorization(error_message)
    # An access key id never holds '/', but split from the right so the scope stays well defined anyway.
    return _V4Scope("/".join(parts[:-4]), parts[-4], parts[-3], parts[-2])


def _check_v4_scope(scope: _V4Scope, region: str, region_message: str, error_message: str) -> None:
    if scope.product != V4_PRODUCT or len(scope.date) != 8 or not scope.date.isdigit():
        raise _invalid_authorization(error_message)
    if scope.region != region:
        raise OssError(
            400,
            "InvalidArgument",
            region_message,
            ec=EC_V4_BAD_REGION,
            extra=[("ArgumentName", "Region"), ("ArgumentValue", scope.region)],
        )


def _parse_v4_authorization(authorization: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for component in authorization[len(V4_ALGORITHM) :].split(","):
        name, sep, value = component.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _verify_v4_signature(request, query, scope, date_time, additional, provided, credential, *, bucket, key):
    canonical_request = v4_canonical_request(request.method, request.headers, bucket, key, query, additional)
    string_to_sign = v4_string_to_sign(date_time, scope.text, canonical_request)
    signing_key = v4_signing_key(credential.secret, scope.date, scope.region, scope.product)
    expected = hmac.new(signing_key, string_to_sign, hashlib.sha256).hexdigest()
    if not _compare(provided, expected):
        raise _signature_mismatch(
            access_key_id=scope.access_key_id,
            provided=provided,
            string_to_sign=string_to_sign,
            ec=EC_V4_SIGNATURE_MISMATCH,
            canonical_request=canonical_request,
        )


def _verify_v4_header(request, authorization, query, *, bucket, key, credentials, region, now, max_skew):
    bad_credential = "Invalid credential in Authorization header."
    fields = _parse_v4_authorization(authorization)
    credential_field = fields.get("Credential")
    provided = fields.get("Signature")
    if not credential_field or not provided:
        raise _invalid_authorization(bad_credential)
    scope = _parse_v4_credential(credential_field, bad_credential)
    _check_v4_scope(scope, region, "Invalid signing region in Authorization header.", bad_credential)
    credential = _credential(credentials, scope.access_key_id, request, query)
    # UNSIGNED-PAYLOAD or a hex SHA-256 (which the core compares with the body, payload.py); else 0002-00000214.
    check_oss_content_sha256_value(request)
    date_time = request.header("x-oss-date") or ""
    request_time = _parse_v4_date(date_time)
    if request_time is None:
        raise _access_denied(
            "Invalid x-oss-date header: expected yyyymmddTHHMMSSZ." if date_time else "Missing x-oss-date header."
        )
    if date_time[:8] != scope.date:
        raise _invalid_authorization("The date in the credential scope does not match x-oss-date.")
    _check_skew(request_time, now, max_skew)
    _verify_v4_signature(
        request,
        query,
        scope,
        date_time,
        _split_additional(fields.get("AdditionalHeaders")),
        provided,
        credential,
        bucket=bucket,
        key=key,
    )
    return credential


def _verify_v4_presigned(request, query, *, bucket, key, credentials, region, now, max_skew):
    bad_credential = "Invalid credential in x-oss-credential."
    credential_field = _first(query, "x-oss-credential")
    date_time = _first(query, "x-oss-date")
    expires = _first(query, "x-oss-expires")
    provided = _first(query, "x-oss-signature")
    if not credential_field or not date_time or not expires or not provided:
        raise _access_denied(
            "Invalid presigned URL: x-oss-credential, x-oss-date, x-oss-expires and x-oss-signature are all required."
        )
    scope = _parse_v4_credential(credential_field, bad_credential)
    _check_v4_scope(scope, region, "The signing region in credential is invalid.", bad_credential)
    credential = _credential(credentials, scope.access_key_id, request, query)
    request_time = _parse_v4_date(date_time)
    if request_time is None:
        raise _invalid_authorization("Invalid x-oss-date: expected yyyymmddTHHMMSSZ.")
    if date_time[:8] != scope.date:
        raise _invalid_authorization("The date in x-oss-credential does not match x-oss-date.")
    try:
        lifetime = int(expires)
    except ValueError:
        lifetime = -1
    if not 0 < lifetime <= V4_MAX_EXPIRES:
        raise OssError(
            400,
            "InvalidArgument",
            f"x-oss-expires must be between 1 and {V4_MAX_EXPIRES} seconds.",
            extra=[("ArgumentName", "x-oss-expires"), ("ArgumentValue", expires)],
        )
    if request_time > now + max_skew:
        raise _access_denied("Request is not valid yet: x-oss-date is in the future.")
    if now > request_time + lifetime:
        raise _access_denied(
            "Request has expired.",
            extra=[("Expires", iso8601(request_time + lifetime)), ("ServerTime", iso8601(now))],
        )
    signed_query = [(k, v) for k, v in query if k != "x-oss-signature"]
    _verify_v4_signature(
        request,
        signed_query,
        scope,
        date_time,
        _split_additional(_first(query, "x-oss-additional-headers")),
        provided,
        credential,
        bucket=bucket,
        key=key,
    )
    return credential


# --------------------------------------------------------------------------------------------------
# Entry point


def authenticate(
    request: Request,
    *,
    bucket: str | None,
    key: str | None,
    credentials: CredentialStore,
    region: str,
    now: float,
    allow_anonymous: bool,
    max_skew: float = 900.0,
    query: list[tuple[str, str]] | None = None,
) -> Principal | None:
    """Verify the request's signature and return who sent it, or None for an allowed anonymous request.

    `bucket` and `key` are the decoded names the router extracted (None for service- or bucket-level requests).
    Raises OssError for every refusal: 403 InvalidAccessKeyId, SignatureDoesNotMatch (with the StringToSign
    echoed), RequestTimeTooSkewed, InvalidSecurityToken, AccessDenied (no or bad date, expired URL,
    anonymous when not allowed); 400 InvalidArgument for a malformed Authorization or a wrong V4 region.
    `query` is the request's decoded query pairs when the caller has already parsed them (`Target.query_items`)."""
    if query is None:
        query = parse_query(request.target)
    authorization = (request.header("authorization") or "").strip()
    common = dict(bucket=bucket, key=key, credentials=credentials, now=now)
    if authorization:
        if authorization.startswith(V4_ALGORITHM + " "):
            credential = _verify_v4_header(
                request, authorization, query, region=region, max_skew=max_skew, **common
            )
        elif authorization.startswith("OSS2 "):
            credential = _verify_v2_header(request, authorization, query, max_skew=max_skew, **common)
        elif authorization.startswith("OSS "):
            credential = _verify_v1_header(request, authorization, query, max_skew=max_skew, **common)
        else:
            raise _invalid_authorization()
    else:
        version = _first(query, "x-oss-signature-version")
        if version == V4_ALGORITHM:
            credential = _verify_v4_presigned(request, query, region=region, max_skew=max_skew, **common)
        elif version == "OSS2":
            credential = _verify_v2_presigned(request, query, **common)
        elif version is not None:
            raise OssError(
                400,
                "InvalidArgument",
                "Unsupported x-oss-signature-version.",
                extra=[("ArgumentName", "x-oss-signature-version"), ("ArgumentValue", version)],
            )
        elif _first(query, "OSSAccessKeyId") is not None or _first(query, "Signature") is not None:
            credential = _verify_v1_presigned(request, query, **common)
        elif allow_anonymous:
            return None
        else:
            raise _access_denied("You have no right to access this object because of bucket acl.")
    return Principal(access_key_id=credential.access_key_id, owner_id=credential.access_key_id)
