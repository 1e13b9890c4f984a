"""The S3 wire dialect of `ossmount serve`: the same store and the same object operations as OSS, reached with AWS
signatures, `x-amz-*` headers and S3 XML on the same port.

One exchange, `handle_s3`:
1. `is_s3_request` picks the dialect from the signature (``AWS``/``AWS4-HMAC-SHA256`` Authorization, or the
   ``AWSAccessKeyId``/``X-Amz-Algorithm`` presigned parameters);
2. `ossmount.server.core.s3.auth` verifies it, and the body's ``x-amz-content-sha256`` and aws-chunked signatures;
3. `to_oss_request` renames the request's S3 headers to the OSS ones the operations read (``x-amz-meta-*`` →
   ``x-oss-meta-*``, copy source, metadata directive, storage class, ...) and sets S3's defaults (ListObjects
   returns up to 1000 keys, Range follows RFC 7233);
4. the operation runs exactly as for an OSS request (`ServerCore.dispatch`);
5. `to_s3_response` renames the response headers back (``x-oss-meta-*`` → ``x-amz-meta-*``, request id, version
   id, ...), drops the OSS-only ones and rewrites XML bodies and errors as S3's (`ossmount.server.core.s3.xml`).

User metadata is stored once: ``x-amz-meta-mode`` written through S3 is ``x-oss-meta-mode`` read through OSS.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING

from ossmount.server.core.errors import OssError
from ossmount.server.core.model import Request, Response
from ossmount.server.core.routing import Target, classify_operation

from . import xml as s3xml
from .auth import S3Principal, authenticate_s3, check_payload_hash, is_s3_signed, verify_chunk_signatures
from .chunked import is_aws_chunked

if TYPE_CHECKING:
    from ossmount.server.core.core import ServerCore

log = logging.getLogger(__name__)

DEFAULT_MAX_KEYS = 1000
_OSS_ACLS = ("private", "public-read", "public-read-write")

# S3 request header -> OSS request header, value unchanged.
_REQUEST_HEADERS = {
    "x-amz-copy-source": "x-oss-copy-source",
    "x-amz-copy-source-range": "x-oss-copy-source-range",
    "x-amz-copy-source-if-match": "x-oss-copy-source-if-match",
    "x-amz-copy-source-if-none-match": "x-oss-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since": "x-oss-copy-source-if-modified-since",
    "x-amz-copy-source-if-unmodified-since": "x-oss-copy-source-if-unmodified-since",
    "x-amz-metadata-directive": "x-oss-metadata-directive",
    "x-amz-server-side-encryption": "x-oss-server-side-encryption",
    "x-amz-tagging": "x-oss-tagging",
}

# OSS response header -> S3 response header; other x-oss-* headers are dropped.
_RESPONSE_HEADERS = {
    "x-oss-request-id": "x-amz-request-id",
    "x-oss-version-id": "x-amz-version-id",
    "x-oss-delete-marker": "x-amz-delete-marker",
    "x-oss-copy-source-version-id": "x-amz-copy-source-version-id",
    "x-oss-server-side-encryption": "x-amz-server-side-encryption",
    "x-oss-restore": "x-amz-restore",
    "x-oss-bucket-region": "x-amz-bucket-region",
}


def is_s3_request(request: Request, query: list[tuple[str, str]]) -> bool:
    """Whether `request` speaks the S3 dialect (it is AWS-signed)."""
    return is_s3_signed(request, query)


def to_oss_headers(headers: dict[str, str], method: str) -> dict[str, str]:
    """The request headers with S3 names replaced by the OSS names the operations read."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith("x-amz-meta-"):
            out["x-oss-meta-" + name[len("x-amz-meta-"):]] = value
        elif name in _REQUEST_HEADERS:
            out[_REQUEST_HEADERS[name]] = value
        elif name == "x-amz-storage-class":
            out["x-oss-storage-class"] = s3xml.STORAGE_CLASS_FROM_S3.get(value.strip().upper(), value)
        elif name == "x-amz-acl":
            if value.strip() in _OSS_ACLS:  # S3-only canned ACLs have no OSS meaning; ACLs are not enforced here
                out["x-oss-object-acl"] = value.strip()
        elif name.startswith("x-amz-") or name.startswith("x-oss-"):
            continue  # signature, checksum and other S3-only headers; OSS headers mean nothing in S3 requests
        else:
            out[name] = value
    if method == "PUT" and headers.get("if-none-match", "").strip() == "*":
        out.pop("if-none-match")
        out["x-oss-forbid-overwrite"] = "true"  # S3 conditional write: fail if the key exists
    if "range" in out:
        out["x-oss-range-behavior"] = "standard"  # S3 ranges follow RFC 7233: clipped, or 416
    return out


def to_oss_request(request: Request) -> Request:
    return dataclasses.replace(request, headers=to_oss_headers(request.headers, request.method.upper()))


def apply_s3_defaults(op: str, target: Target) -> None:
    """S3's listing defaults: up to 1000 keys per page, and a larger max-keys is capped rather than refused;
    ListBuckets lists every bucket (OSS's GetService stops at 100 unless asked for more)."""
    if op == "ListBuckets":
        target.query.setdefault("max-keys", str(DEFAULT_MAX_KEYS))
        return
    if op not in ("ListObjects", "ListObjectsV2"):
        return
    text = target.query.get("max-keys") or ""
    if not text or (text.isdigit() and int(text) > DEFAULT_MAX_KEYS):
        target.query["max-keys"] = str(DEFAULT_MAX_KEYS)


def classify_s3(method: str, target: Target, headers: dict[str, str]) -> str:
    """The operation of an S3 request, named as the OSS operation it runs."""
    return classify_operation(method, target, to_oss_headers(headers, method.upper()))


def to_s3_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Response headers in S3 names; OSS-only headers dropped, ETags as S3 writes them."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower.startswith("x-oss-meta-"):
            out.append(("x-amz-meta-" + name[len("x-oss-meta-"):], value))
        elif lower in _RESPONSE_HEADERS:
            out.append((_RESPONSE_HEADERS[lower], value))
        elif lower == "x-oss-storage-class":
            s3_class = s3xml.STORAGE_CLASS_TO_S3.get(value, value)
            if s3_class != "STANDARD":  # S3 omits the header for STANDARD objects
                out.append(("x-amz-storage-class", s3_class))
        elif lower.startswith("x-oss-"):
            continue
        elif lower == "etag":
            out.append((name, s3xml.s3_etag(value)))
        else:
            out.append((name, value))
    out.append(("x-amz-id-2", base64.b64encode(secrets.token_bytes(24)).decode("ascii")))
    return out


def to_s3_body(response: Response, region: str) -> Response:
    """`response` with an XML body rewritten as S3's document (headers are renamed once, in `handle_s3`)."""
    if isinstance(response.body, bytes) and response.body and any(
            n.lower() == "content-type" and "xml" in v for n, v in response.headers):
        response.body = s3xml.to_s3_document(response.body, region)
    return response


def _check_body(request: Request, principal: S3Principal) -> None:
    """The body the front received matches what the signature and headers promised."""
    body = request.body
    if is_aws_chunked(request.headers):
        chunked = body.aws_chunked if body is not None else None
        if chunked is None:
            raise OssError(400, "IncompleteBody", "The request body terminated unexpectedly")
        if request.header("x-amz-content-sha256") == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER":
            raise OssError(501, "NotImplemented", "Signed trailers of aws-chunked bodies are not supported.")
        if principal.streaming is not None:
            verify_chunk_signatures(principal.streaming, chunked.chunk_signatures)
        declared = request.header("x-amz-decoded-content-length")
        if declared is not None and (not declared.isdigit() or int(declared) != chunked.decoded_size):
            raise OssError(400, "IncompleteBody", "You did not provide the number of bytes specified by the "
                           "x-amz-decoded-content-length header.")
    else:
        check_payload_hash(request)


def handle_s3(core: "ServerCore", request: Request, request_id: str, now: float) -> Response:
    """Execute one S3 request against `core` (see the module docstring). Never raises."""
    target: Target | None = None
    try:
        target = core.parse_target(request)
        principal = authenticate_s3(request, target.query_items, bucket=target.bucket or None, key=target.key or None,
                                    virtual_hosted=target.virtual_hosted, credentials=core.credentials,
                                    region=core.region, now=now, max_skew=core.max_skew)
        _check_body(request, principal)
        oss_request = to_oss_request(request)
        op = classify_operation(oss_request.method, target, oss_request.headers)
        apply_s3_defaults(op, target)
        response = to_s3_body(core.dispatch(oss_request, target, op, principal.access_key_id, now), core.region)
    except OssError as error:
        response = _error_response(request, target, s3xml.s3_error(error, target.key if target else None),
                                   request_id)
    except Exception as exc:  # noqa: BLE001 - any bug must still answer the client
        log.warning("internal error handling S3 %s %s", request.method, request.target, exc_info=True)
        error = OssError(500, "InternalError", f"We encountered an internal error: {type(exc).__name__}.")
        response = _error_response(request, target, error, request_id)
    return _finish(core, response, request_id, now)


def refuse_s3(core: "ServerCore", request: Request, target: Target | None, error: OssError, request_id: str,
              now: float) -> Response:
    """The S3 error response for a request the front refuses before it runs (ServerCore.refuse)."""
    response = _error_response(request, target, s3xml.s3_error(error, target.key if target else None), request_id)
    return _finish(core, response, request_id, now)


def _finish(core: "ServerCore", response: Response, request_id: str, now: float) -> Response:
    response = core.finish(response, request_id, now)
    response.headers = to_s3_headers(response.headers)
    return response


def _error_response(request: Request, target: Target | None, error: OssError, request_id: str) -> Response:
    if error.status == 304:
        return Response(304, list(error.headers))
    headers = [("Content-Type", "application/xml"), *error.headers]
    if request.method.upper() == "HEAD":
        return Response(error.status, headers, b"", content_length=0)
    extra = list(error.extra)
    if target is not None and target.key and not any(name == "Key" for name, _ in extra):
        extra.append(("Key", target.key))
    error = OssError(error.status, error.code, error.message, extra=extra, headers=error.headers)
    return Response(error.status, headers, s3xml.error_document(error, request_id, secrets.token_hex(16)))
