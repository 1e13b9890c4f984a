"""S3 request authentication for `ossmount serve`, sans-IO: AWS Signature V2 and V4, header and presigned, and the
chunk signatures of `aws-chunked` (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) bodies.

Each scheme recomputes the signature the way the client signer builds it:

* V2 header ``Authorization: AWS <ak>:<base64 HMAC-SHA1>`` and the V2 presigned URL (``AWSAccessKeyId``,
  ``Expires``, ``Signature``): AWS "Signing and authenticating REST requests", as botocore ``HmacV1Auth`` and
  s3fs sign. The canonical resource is the path *as sent* (still percent-encoded), prefixed with ``/bucket`` for
  virtual-hosted requests, plus the S3 sub-resources with decoded values. With an ``x-amz-date`` header the Date
  line is empty (the AWS rule); botocore sends only ``Date``.
* V4 header ``AWS4-HMAC-SHA256 Credential=<ak>/<date>/<region>/s3/aws4_request, SignedHeaders=..., Signature=...``
  and the V4 presigned URL (``X-Amz-Algorithm`` ... ``X-Amz-Signature``): AWS "Signature Version 4". S3 does not
  normalise the path, so the canonical URI is the path as sent; every query parameter is signed as ``k=v`` (an
  empty value still has its ``=``), names and values RFC 3986-encoded; the payload line is the
  ``x-amz-content-sha256`` header (required on header-signed requests) or ``UNSIGNED-PAYLOAD`` for presigned URLs.
* The region of a V4 scope must be the server's region, its OSS S3-compatible form ``oss-<region>``, or
  ``us-east-1`` (the default of aws-cli, boto3, s3fs and rclone when none is configured); another region gets 400
  AuthorizationHeaderMalformed naming the expected one, as S3 answers.
* STS: a configured (ak, secret, token) triple must present its token in ``x-amz-security-token`` (header or
  presigned query parameter).

Refusals are `OssError`s carrying the S3 code; the S3 dialect renders them as S3 error XML.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from ossmount.server.core.auth import (
    Credential,
    CredentialStore,
    _check_presigned_expires,
    _check_security_token,
    _check_skew,
    _V4Scope,
    _compare,
    _lookup,
    _parse_http_date,
    _parse_v4_date,
    _signature_mismatch,
    _uri_encode,
    _utf8,
)
from ossmount.server.core.dates import iso8601
from ossmount.server.core.errors import OssError
from ossmount.server.core.model import Request
from ossmount.server.core.payload import S3_HEADER, check_payload_sha256

V2_PREFIX = "AWS "
V4_ALGORITHM = "AWS4-HMAC-SHA256"
V4_TERMINATOR = "aws4_request"
V4_SERVICE = "s3"
V4_MAX_EXPIRES = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_S3_REGION = "us-east-1"

# The query parameters a V2 canonical resource signs (AWS "Constructing the CanonicalizedResource element",
# botocore HmacV1Auth.QSAOfInterest).
V2_SUBRESOURCES = frozenset([
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory", "lifecycle", "location",
    "logging", "metrics", "notification", "object-lock", "partNumber", "policy", "replication", "requestPayment",
    "restore", "select", "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId",
    "versioning", "versions", "website", "response-content-type", "response-content-language", "response-expires",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
])

_SPACES = re.compile(r"\s+")


def is_s3_signed(request: Request, query: list[tuple[str, str]]) -> bool:
    """Whether the request carries an AWS signature (header or presigned query)."""
    authorization = (request.header("authorization") or "").lstrip()
    if authorization.startswith(V2_PREFIX) or authorization.startswith(V4_ALGORITHM + " "):
        return True
    names = {name for name, _ in query}
    return "X-Amz-Algorithm" in names or "AWSAccessKeyId" in names


@dataclass(frozen=True)
class StreamingContext:
    """What verifying an `aws-chunked` body's chunk signatures needs: the seed (header) signature and its key."""

    seed_signature: str
    signing_key: bytes
    date_time: str
    scope: str


@dataclass(frozen=True)
class S3Principal:
    """Who signed an S3 request, and for V4 header-signed streaming bodies the context to check its chunks."""

    access_key_id: str
    streaming: StreamingContext | None = None


def _malformed(message: str) -> OssError:
    return OssError(400, "AuthorizationHeaderMalformed", message)


def _access_denied(message: str) -> OssError:
    return OssError(403, "AccessDenied", message)


def _credential(credentials: CredentialStore, access_key_id: str, token: str | None) -> Credential:
    credential = _lookup(credentials, access_key_id)
    _check_security_token(credential, token)
    return credential


def _first(query: list[tuple[str, str]], name: str) -> str | None:
    for key, value in query:
        if key == name:
            return value
    return None


def _raw_path(target: str) -> str:
    path = target.partition("?")[0]
    if path.startswith("http://") or path.startswith("https://"):
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path or "/"


# --------------------------------------------------------------------------------------------------
# V2


def v2_string_to_sign(method: str, headers: dict[str, str], date: str, resource_path: str,
                      query: list[tuple[str, str]]) -> bytes:
    """The S3 V2 StringToSign; `resource_path` is the percent-encoded path including the bucket."""
    amz = sorted((name, value.strip()) for name, value in headers.items() if name.startswith("x-amz-"))
    resource = resource_path
    subresources = sorted(((k, v) for k, v in query if k in V2_SUBRESOURCES), key=lambda item: item[0])
    if subresources:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
    lines = [method, headers.get("content-md5", "").strip(), headers.get("content-type", "").strip(), date]
    lines += [f"{name}:{value}" for name, value in amz]
    lines.append(resource)
    return _utf8("\n".join(lines))


def _v2_signature(secret: str, string_to_sign: bytes) -> str:
    return base64.b64encode(hmac.new(_utf8(secret), string_to_sign, hashlib.sha1).digest()).decode("ascii")


def _v2_resource_path(request: Request, bucket: str | None, key: str | None, virtual_hosted: bool) -> str:
    """The path of the V2 canonical resource: `/bucket/` for a bucket, else the object path as sent (with the
    bucket in front for a virtual-hosted request)."""
    if bucket and not key:
        return f"/{bucket}/"
    path = _raw_path(request.target)
    return f"/{bucket}{path}" if virtual_hosted and bucket else path


def _check_v2(access_key_id: str, provided: str, secret: str, string_to_sign: bytes) -> None:
    if not _compare(provided, _v2_signature(secret, string_to_sign)):
        raise _signature_mismatch(access_key_id=access_key_id, provided=provided, string_to_sign=string_to_sign,
                                  ec="")


def _verify_v2_header(request, authorization, query, *, bucket, key, virtual_hosted, credentials, now, max_skew):
    access_key_id, sep, provided = authorization[len(V2_PREFIX):].strip().rpartition(":")
    if not sep or not access_key_id or not provided:
        raise OssError(400, "InvalidArgument", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature")
    credential = _credential(credentials, access_key_id, request.header("x-amz-security-token"))
    amz_date = request.header("x-amz-date")
    date = request.header("date") or ""
    request_time = _parse_http_date(amz_date or date)
    if request_time is None:
        raise _access_denied("AWS authentication requires a valid Date or x-amz-date header")
    _check_skew(request_time, now, max_skew)
    string_to_sign = v2_string_to_sign(request.method, request.headers, "" if amz_date else date,
                                       _v2_resource_path(request, bucket, key, virtual_hosted), query)
    _check_v2(access_key_id, provided, credential.secret, string_to_sign)
    return S3Principal(credential.access_key_id)


def _verify_v2_presigned(request, query, *, bucket, key, virtual_hosted, credentials, now):
    access_key_id = _first(query, "AWSAccessKeyId")
    expires = _first(query, "Expires")
    provided = _first(query, "Signature")
    if not access_key_id or not expires or not provided:
        raise _access_denied("Query-string authentication requires the Signature, Expires and AWSAccessKeyId "
                             "parameters")
    token = _first(query, "x-amz-security-token") or request.header("x-amz-security-token")
    credential = _credential(credentials, access_key_id, token)
    _check_presigned_expires(expires, "Expires", now)
    signed_query = [(k, v) for k, v in query if k not in ("AWSAccessKeyId", "Expires", "Signature")]
    string_to_sign = v2_string_to_sign(request.method, request.headers, expires,
                                       _v2_resource_path(request, bucket, key, virtual_hosted), signed_query)
    _check_v2(access_key_id, provided, credential.secret, string_to_sign)
    return S3Principal(credential.access_key_id)


# --------------------------------------------------------------------------------------------------
# V4


def _aws_encode(text: str) -> str:
    return _uri_encode(text)


def v4_canonical_request(method: str, raw_path: str, query: list[tuple[str, str]], headers: dict[str, str],
                         signed_headers: list[str], payload_hash: str) -> bytes:
    """The S3 V4 CanonicalRequest. `query` must already exclude X-Amz-Signature for presigned URLs."""
    encoded = sorted((_aws_encode(k), _aws_encode(v)) for k, v in query)
    canonical_query = "&".join(f"{k}={v}" for k, v in encoded)
    header_lines = "".join(f"{name}:{_SPACES.sub(' ', headers.get(name, '').strip())}\n" for name in signed_headers)
    return _utf8("\n".join([method, raw_path, canonical_query, header_lines, ";".join(signed_headers),
                            payload_hash]))


def v4_string_to_sign(date_time: str, scope: str, canonical_request: bytes) -> bytes:
    return _utf8(f"{V4_ALGORITHM}\n{date_time}\n{scope}\n{hashlib.sha256(canonical_request).hexdigest()}")


def v4_signing_key(secret: str, date: str, region: str, service: str = V4_SERVICE) -> bytes:
    """HMAC chain "AWS4"+secret → date → region → service → aws4_request."""
    key = hmac.new(_utf8("AWS4" + secret), _utf8(date), hashlib.sha256).digest()
    key = hmac.new(key, _utf8(region), hashlib.sha256).digest()
    key = hmac.new(key, _utf8(service), hashlib.sha256).digest()
    return hmac.new(key, V4_TERMINATOR.encode("ascii"), hashlib.sha256).digest()


def accepted_regions(region: str) -> tuple[str, ...]:
    """The V4 scope regions the server accepts for its `--region`."""
    return tuple(dict.fromkeys((region, f"oss-{region}", DEFAULT_S3_REGION)))


def _parse_scope(value: str, region: str) -> _V4Scope:
    parts = value.split("/")
    if len(parts) < 5 or parts[-1] != V4_TERMINATOR or not parts[0]:
        raise _malformed(f"the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/"
                         f"{V4_TERMINATOR}\".")
    scope = _V4Scope("/".join(parts[:-4]), parts[-4], parts[-3], parts[-2], V4_TERMINATOR)
    if len(scope.date) != 8 or not scope.date.isdigit():
        raise _malformed(f"Invalid credential date \"{scope.date}\". This date is not the same as X-Amz-Date.")
    if scope.product != V4_SERVICE:
        raise _malformed(f"The authorization header is malformed; incorrect service \"{scope.product}\". "
                         f"This endpoint belongs to \"{V4_SERVICE}\".")
    if scope.region not in accepted_regions(region):
        raise OssError(400, "AuthorizationHeaderMalformed",
                       f"The authorization header is malformed; the region '{scope.region}' is wrong; "
                       f"expecting '{region}'", extra=[("Region", region)])
    return scope


def _parse_v4_fields(authorization: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for component in authorization[len(V4_ALGORITHM):].split(","):
        name, sep, value = component.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _signed_header_names(value: str) -> list[str]:
    return [name.strip().lower() for name in value.split(";") if name.strip()]


def _check_v4(request, query, scope, date_time, signed_headers, payload_hash, provided, credential) -> bytes:
    """Verify one V4 signature; returns the signing key."""
    if "host" not in signed_headers:
        raise _malformed("The authorization header is malformed; the host header must be signed.")
    canonical = v4_canonical_request(request.method, _raw_path(request.target), query, request.headers,
                                     signed_headers, payload_hash)
    string_to_sign = v4_string_to_sign(date_time, scope.text, canonical)
    key = v4_signing_key(credential.secret, scope.date, scope.region, scope.product)
    expected = hmac.new(key, string_to_sign, hashlib.sha256).hexdigest()
    if not _compare(provided, expected):
        raise _signature_mismatch(access_key_id=scope.access_key_id, provided=provided,
                                  string_to_sign=string_to_sign, ec="", canonical_request=canonical)
    return key


def _verify_v4_header(request, authorization, query, *, credentials, region, now, max_skew):
    fields = _parse_v4_fields(authorization)
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise _malformed(f"The authorization header is malformed; missing {required}.")
    scope = _parse_scope(fields["Credential"], region)
    credential = _credential(credentials, scope.access_key_id, request.header("x-amz-security-token"))
    date_time = request.header("x-amz-date") or ""
    request_time = _parse_v4_date(date_time)
    if request_time is None:
        raise _access_denied("AWS authentication requires a valid Date or x-amz-date header")
    if date_time[:8] != scope.date:
        raise _malformed(f"Invalid credential date \"{scope.date}\". This date is not the same as X-Amz-Date: "
                         f"\"{date_time[:8]}\".")
    _check_skew(request_time, now, max_skew)
    payload_hash = request.header("x-amz-content-sha256")
    if not payload_hash:
        raise OssError(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    signed_headers = _signed_header_names(fields["SignedHeaders"])
    key = _check_v4(request, query, scope, date_time, signed_headers, payload_hash, fields["Signature"], credential)
    streaming = None
    if payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        streaming = StreamingContext(fields["Signature"], key, date_time, scope.text)
    return S3Principal(credential.access_key_id, streaming)


def _verify_v4_presigned(request, query, *, credentials, region, now, max_skew):
    algorithm = _first(query, "X-Amz-Algorithm")
    if algorithm != V4_ALGORITHM:
        raise OssError(400, "AuthorizationQueryParametersError",
                       f"X-Amz-Algorithm only supports \"{V4_ALGORITHM}\"")
    values = {name: _first(query, name) for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                                                     "X-Amz-SignedHeaders", "X-Amz-Signature")}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise OssError(400, "AuthorizationQueryParametersError",
                       f"Query-string authentication version 4 requires the {', '.join(missing)} parameters")
    scope = _parse_scope(values["X-Amz-Credential"], region)
    token = _first(query, "X-Amz-Security-Token") or request.header("x-amz-security-token")
    credential = _credential(credentials, scope.access_key_id, token)
    date_time = values["X-Amz-Date"]
    request_time = _parse_v4_date(date_time)
    if request_time is None or date_time[:8] != scope.date:
        raise OssError(400, "AuthorizationQueryParametersError",
                       "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\" and match the "
                       "credential date")
    try:
        lifetime = int(values["X-Amz-Expires"])
    except ValueError:
        lifetime = -1
    if not 0 <= lifetime <= V4_MAX_EXPIRES:
        raise OssError(400, "AuthorizationQueryParametersError",
                       f"X-Amz-Expires must be between 0 and {V4_MAX_EXPIRES} seconds")
    if request_time > now + max_skew:
        raise _access_denied("Request is not valid yet")
    if now > request_time + lifetime:
        raise OssError(403, "AccessDenied", "Request has expired",
                       extra=[("X-Amz-Expires", str(lifetime)), ("Expires", iso8601(request_time + lifetime)),
                              ("ServerTime", iso8601(now))])
    signed_query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    payload_hash = _first(query, "X-Amz-Content-Sha256") or UNSIGNED_PAYLOAD
    _check_v4(request, signed_query, scope, date_time, _signed_header_names(values["X-Amz-SignedHeaders"]),
              payload_hash, values["X-Amz-Signature"], credential)
    return S3Principal(credential.access_key_id)


# --------------------------------------------------------------------------------------------------
# Payload checks


def check_payload_hash(request: Request) -> None:
    """A hex `x-amz-content-sha256` must be the SHA-256 of the body as received (400 XAmzContentSHA256Mismatch)."""
    check_payload_sha256(request, S3_HEADER, lambda declared, computed: OssError(
        400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.",
        extra=[("ClientComputedContentSHA256", declared), ("S3ComputedContentSHA256", computed)]))


def chunk_string_to_sign(context: StreamingContext, previous_signature: str, chunk_sha256: str) -> bytes:
    """The StringToSign of one aws-chunked chunk (AWS "Signature calculations for the Authorization header:
    transferring payload in multiple chunks")."""
    return _utf8("\n".join(["AWS4-HMAC-SHA256-PAYLOAD", context.date_time, context.scope, previous_signature,
                            EMPTY_SHA256, chunk_sha256]))


def verify_chunk_signatures(context: StreamingContext, chunks: list[tuple[str, str]]) -> None:
    """Check the signature chain of a decoded aws-chunked body: `chunks` is (declared signature, hex SHA-256 of
    the chunk data) in order, the final zero-length chunk included. 403 SignatureDoesNotMatch on any break."""
    previous = context.seed_signature
    if not chunks or chunks[-1][1] != EMPTY_SHA256:
        raise OssError(400, "IncompleteBody", "The request body terminated unexpectedly")
    for declared, digest in chunks:
        string_to_sign = chunk_string_to_sign(context, previous, digest)
        expected = hmac.new(context.signing_key, string_to_sign, hashlib.sha256).hexdigest()
        if not _compare(declared, expected):
            raise _signature_mismatch(access_key_id="", provided=declared, string_to_sign=string_to_sign, ec="")
        previous = expected


# --------------------------------------------------------------------------------------------------
# Entry point


def authenticate_s3(request: Request, query: list[tuple[str, str]], *, bucket: str | None, key: str | None,
                    virtual_hosted: bool,
                    credentials: CredentialStore, region: str, now: float, max_skew: float = 900.0) -> S3Principal:
    """Verify an AWS-signed request (see the module docstring) and return who signed it. Raises OssError with the
    S3 code for every refusal: 403 InvalidAccessKeyId, SignatureDoesNotMatch (StringToSign and, for V4, the
    CanonicalRequest echoed), RequestTimeTooSkewed, InvalidToken, AccessDenied (bad date, expired URL);
    400 AuthorizationHeaderMalformed, AuthorizationQueryParametersError, InvalidRequest."""
    authorization = (request.header("authorization") or "").strip()
    if authorization.startswith(V4_ALGORITHM + " "):
        return _verify_v4_header(request, authorization, query, credentials=credentials, region=region, now=now,
                                 max_skew=max_skew)
    if authorization.startswith(V2_PREFIX):
        return _verify_v2_header(request, authorization, query, bucket=bucket, key=key, virtual_hosted=virtual_hosted,
                                 credentials=credentials, now=now, max_skew=max_skew)
    if _first(query, "X-Amz-Algorithm") is not None:
        return _verify_v4_presigned(request, query, credentials=credentials, region=region, now=now,
                                    max_skew=max_skew)
    return _verify_v2_presigned(request, query, bucket=bucket, key=key, virtual_hosted=virtual_hosted,
                                credentials=credentials, now=now)
