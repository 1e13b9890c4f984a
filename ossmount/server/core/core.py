"""`ServerCore`: the sans-IO OSS server. It classifies requests, authenticates them, dispatches to the
operation handlers and renders every outcome, including errors, as a `Response`."""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from typing import Callable

from . import ops_bucket, ops_multipart, ops_object, xmlio
from .access import anonymous_allowed, may_read
from .auth import V4_ALGORITHM, authenticate
from .common import REQUEST_PAYER_HEADER, Context, http_date, invalid_argument, no_such_bucket
from .errors import OssError
from .locking import LockTable, lock_plan
from .model import Request, Response
from .payload import check_oss_payload
from .routing import Route, Target, classify_operation, is_valid_bucket_name, parse_target
from .s3.dialect import classify_s3, handle_s3, is_s3_request, refuse_s3
from .store import BucketGone, BucketRecord, Store

log = logging.getLogger(__name__)

_HANDLERS: dict[str, Callable[[Context], Response]] = {
    "ListBuckets": ops_bucket.list_buckets,
    "PutBucket": ops_bucket.put_bucket,
    "DeleteBucket": ops_bucket.delete_bucket,
    "GetBucketInfo": ops_bucket.get_bucket_info,
    "GetBucketStat": ops_bucket.get_bucket_stat,
    "GetBucketLocation": ops_bucket.get_bucket_location,
    "HeadBucket": ops_bucket.head_bucket,
    "ListObjects": ops_bucket.list_objects,
    "ListObjectsV2": ops_bucket.list_objects_v2,
    "ListObjectVersions": ops_bucket.list_object_versions,
    "PutBucketVersioning": ops_bucket.put_bucket_versioning,
    "GetBucketVersioning": ops_bucket.get_bucket_versioning,
    "ListLiveChannel": ops_bucket.list_live_channel,
    "ListMultipartUploads": ops_multipart.list_multipart_uploads,
    "DeleteMultipleObjects": ops_object.delete_multiple_objects,
    "HeadObject": ops_object.head_object,
    "GetObjectMeta": ops_object.get_object_meta,
    "GetObject": ops_object.get_object,
    "PutObject": ops_object.put_object,
    "CopyObject": ops_object.copy_object,
    "DeleteObject": ops_object.delete_object,
    "AppendObject": ops_object.append_object,
    "PutSymlink": ops_object.put_symlink,
    "GetSymlink": ops_object.get_symlink,
    "RestoreObject": ops_object.restore_object,
    "InitiateMultipartUpload": ops_multipart.initiate_multipart_upload,
    "UploadPart": ops_multipart.upload_part,
    "UploadPartCopy": ops_multipart.upload_part_copy,
    "CompleteMultipartUpload": ops_multipart.complete_multipart_upload,
    "AbortMultipartUpload": ops_multipart.abort_multipart_upload,
    "ListParts": ops_multipart.list_parts,
    "GetBucketAcl": ops_bucket.get_bucket_acl,
    "PutBucketAcl": ops_bucket.put_bucket_acl,
    "GetObjectAcl": ops_object.get_object_acl,
    "PutObjectAcl": ops_object.put_object_acl,
}


def _check_request_payer(request: Request) -> None:
    """x-oss-request-payer (ossfs `requester_pays`) may only say "requester"; it is echoed on the response."""
    value = request.headers.get(REQUEST_PAYER_HEADER)
    if value is not None and value.strip().lower() != "requester":
        raise invalid_argument("x-oss-request-payer must be requester.", REQUEST_PAYER_HEADER, value)


_REQUEST_ID_PREFIX = secrets.token_hex(4).upper()
_request_numbers = itertools.count(secrets.randbelow(1 << 32))


def new_request_id() -> str:
    """A 24-hex-digit request id like OSS's x-oss-request-id: a random prefix per server process and a counter, so
    ids never repeat within a process (unlike random ids, which would also cost a getrandom call per request)."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) & 0xFFFF_FFFF_FFFF_FFFF:016X}"


class ServerCore:
    """The OSS semantics of `ossmount serve`, over a durable store in `data_dir`.

    `credentials` is an `ossmount.server.core.auth.CredentialStore`. With `anonymous`, unsigned requests
    are allowed and act as the owner of everything; without it they get what the bucket and object ACLs grant
    (access.py). `restore_delay` is how long a RestoreObject takes. `service_path` ("/oss/") serves the API
    under a path prefix, as a reverse proxy that forwards `/oss/...` would. `handle` is thread-safe and runs
    requests in parallel: reads take no lock, writes hold only the locks of what they touch (locking.py), and the
    store serialises only its short metadata transactions (store.py).
    """

    def __init__(self, data_dir: str, *, credentials, region: str = "cn-hangzhou", anonymous: bool = False,
                 service_hosts: tuple[str, ...] = (), max_skew: float = 900.0,
                 clock: Callable[[], float] = time.time, restore_delay: float = 0.0, service_path: str = ""):
        self.store = Store(data_dir)
        self.credentials = credentials
        self.region = region
        self.anonymous = anonymous
        self.service_hosts = tuple(h.lower() for h in service_hosts)
        self.max_skew = max_skew
        self.clock = clock
        self.restore_delay = restore_delay
        self.service_path = "/" + service_path.strip("/") if service_path.strip("/") else ""
        self.locks = LockTable()
        try:
            self.default_owner = credentials.first().access_key_id
        except (AttributeError, LookupError):
            self.default_owner = "anonymous"

    @property
    def tmp_dir(self) -> str:
        """Where the front end spools request bodies (same filesystem as the blob store)."""
        return self.store.tmp_dir

    def close(self) -> None:
        self.store.close()

    def ensure_bucket(self, name: str, owner: str) -> None:
        """Create bucket `name` owned by access key `owner` unless it exists."""
        if not is_valid_bucket_name(name):
            raise ValueError(f"invalid bucket name {name!r}")
        self.store.create_bucket(name, owner, self.clock(), "Standard")

    def check_consistency(self, *, data: bool = False) -> list[str]:
        """The store's fsck (store.Store.check_consistency): one line per broken invariant, [] when sound."""
        return self.store.check_consistency(data=data)

    def parse_target(self, request: Request) -> Target:
        """The bucket, key and query a request addresses (path-style or virtual-hosted), below `service_path`."""
        target = request.target
        if self.service_path:
            if not (target == self.service_path or target.startswith((self.service_path + "/",
                                                                       self.service_path + "?"))):
                raise OssError(404, "NoSuchService", f"This server serves OSS under {self.service_path}/.")
            target = target[len(self.service_path):] or "/"
        return parse_target(target, request.headers.get("host"), self.service_hosts)

    _target = parse_target

    def classify(self, request: Request) -> Route:
        """Name the operation of a request (OSS or S3 dialect) without authenticating it. Never raises."""
        try:
            target = self._target(request)
            classify = classify_s3 if is_s3_request(request, target.query_items) else classify_operation
            return Route(classify(request.method, target, request.headers), target.bucket, target.key, target)
        except Exception:  # noqa: BLE001 - classification must never fail the front end
            return Route("Unknown", "", "")

    def handle(self, request: Request, route: Route | None = None) -> Response:
        """Execute one request. Never raises: failures become OSS error responses. `route` is what `classify` said of
        this very request (its target is then not parsed again)."""
        request_id = new_request_id()
        now = self.clock()
        target: Target | None = None
        try:
            target = route.target if route is not None and route.target is not None else self._target(request)
            if is_s3_request(request, target.query_items):
                return handle_s3(self, request, request_id, now)
            # classify named the operation of this very target already (same method and headers)
            op = route.op if route is not None and route.target is target else classify_operation(
                request.method, target, request.headers)
            principal = self._authenticate(request, target, now)
            if (request.header("authorization") or "").startswith(V4_ALGORITHM + " "):
                check_oss_payload(request)
            response = self.dispatch(request, target, op, principal, now)
        except OssError as error:
            response = self._error_response(request, target, error, request_id)
        except Exception as exc:  # noqa: BLE001 - any bug must still answer the client
            log.warning("internal error handling %s %s", request.method, request.target, exc_info=True)
            error = OssError(500, "InternalError", f"We encountered an internal error: {type(exc).__name__}.")
            response = self._error_response(request, target, error, request_id)
        if request.headers.get(REQUEST_PAYER_HEADER, "").strip().lower() == "requester":
            response.headers.append((REQUEST_PAYER_HEADER, "requester"))
        return self.finish(response, request_id, now)

    def refuse(self, request: Request, error: OssError) -> Response:
        """The answer to a request the front refuses before it can run (its body timed out or is malformed): `error`
        in the request's dialect (OSS or S3 XML), with the headers every response carries. Never raises."""
        request_id = new_request_id()
        now = self.clock()
        try:
            target: Target | None = self._target(request)
        except Exception:  # noqa: BLE001 - an unparseable target still gets its error document
            target = None
        if target is not None and is_s3_request(request, target.query_items):
            return refuse_s3(self, request, target, error, request_id, now)
        return self.finish(self._error_response(request, target, error, request_id), request_id, now)

    def dispatch(self, request: Request, target: Target, op: str, principal: str | None, now: float) -> Response:
        """Run operation `op` for an authenticated request (either dialect: OSS header names): the ACLs decide for
        unsigned requests and keys that do not own the bucket (access.py). Raises OssError."""
        granted = False
        bucket: BucketRecord | None = None
        if principal is None and not self.anonymous:
            if not self._acl_grants(request, target, op):
                raise OssError(403, "AccessDenied", "You have no right to access this object because of bucket acl.",
                               ec="0003-00000001")
        elif principal is not None:
            bucket = self.store.get_bucket(target.bucket) if target.bucket else None
            if bucket is not None and bucket.owner != principal:
                granted = self._acl_grants(request, target, op)
        _check_request_payer(request)
        handler = _HANDLERS.get(op)
        if handler is None:
            raise OssError(501 if op != "Unknown" else 400,
                           "NotImplemented" if op != "Unknown" else "InvalidRequest",
                           f"{op} is not supported by ossmount serve.")
        ctx = Context(self, request, target, op, principal, now, granted, prefetched_bucket=bucket)
        locks = lock_plan(op, target, request, ops_object.parse_copy_source, lambda body: [
            entry.key for entry in xmlio.parse_delete(body)[1]])
        with self.locks.hold(locks):
            if request.hold is not None:
                request.hold()
            try:
                return handler(ctx)
            except BucketGone as gone:
                raise no_such_bucket(str(gone)) from None

    def _authenticate(self, request: Request, target: Target, now: float) -> str | None:
        """The signer's access key id; None for an unsigned request (judged by the ACLs unless `anonymous`)."""
        principal = authenticate(request, bucket=target.bucket or None, key=target.key or None,
                                 credentials=self.credentials, region=self.region, now=now,
                                 allow_anonymous=True, max_skew=self.max_skew,
                                 query=target.query_items)
        return None if principal is None else principal.owner_id

    def _acl_grants(self, request: Request, target: Target, op: str) -> bool:
        """Whether the bucket/object ACLs grant `op` to everyone (access.py): so to an unsigned request, and to a
        signed one from a key that does not own the bucket. A missing bucket passes (the handler answers
        NoSuchBucket, as OSS does for anyone), except for creating it."""
        bucket = self.store.get_bucket(target.bucket) if target.bucket else None
        if bucket is None:
            return bool(target.bucket) and op != "PutBucket"

        def object_acl(bucket_name: str, key: str) -> str | None:
            row = self.store.get_latest(bucket_name, key)
            return None if row is None or row.delete_marker else row.record.acl

        source = request.headers.get("x-oss-copy-source") if op in ("CopyObject", "UploadPartCopy") else None
        if source:
            source_bucket_name, source_key, _ = ops_object.parse_copy_source(source)
            source_bucket = bucket if source_bucket_name == bucket.name else self.store.get_bucket(source_bucket_name)
            if source_bucket is None or not may_read(source_bucket.acl, object_acl(source_bucket.name, source_key)):
                return False
        return anonymous_allowed(op, bucket.acl, lambda key: object_acl(bucket.name, key), target.key)

    def _error_response(self, request: Request, target: Target | None, error: OssError, request_id: str) -> Response:
        if error.status == 304:
            return Response(304, list(error.headers))
        host = request.headers.get("host") or "127.0.0.1"
        if target is not None and target.bucket and not target.virtual_hosted:
            host = f"{target.bucket}.{host}"
        document = xmlio.error_document(error, request_id, host)
        headers = [("Content-Type", "application/xml"), *error.headers]
        if error.ec:
            headers.append(("x-oss-ec", error.ec))
        if request.method.upper() == "HEAD":
            headers.append(("x-oss-err", xmlio.error_header_value(document)))
            return Response(error.status, headers, b"", content_length=0)
        return Response(error.status, headers, document)

    def finish(self, response: Response, request_id: str, now: float) -> Response:
        """Add the headers every response carries (Server, Date, request id, server time)."""
        response.headers = [
            ("Server", "AliyunOSS"),
            ("Date", http_date(now)),
            ("x-oss-request-id", request_id),
            ("x-oss-server-time", str(max(0, int((self.clock() - now) * 1000)))),
            *response.headers,
        ]
        return response
