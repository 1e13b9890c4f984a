"""Shared pieces of the operation handlers: the per-request context, time formats, metadata headers,
conditionals and Range parsing (oss-api.md §2.3, §2.6, §2.7)."""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .dates import http_date, iso8601
from .errors import OssError
from .model import Request, Response
from .routing import Target
from .store import BucketRecord, ObjectRecord, ObjectRow, Store

if TYPE_CHECKING:
    from .core import ServerCore

STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
OBJECT_ACLS = ("default", "private", "public-read", "public-read-write")
BUCKET_ACLS = ("private", "public-read", "public-read-write")
SSE_ALGORITHMS = ("AES256", "KMS", "SM4")
SSE_HEADER = "x-oss-server-side-encryption"
SSE_KEY_ID_HEADER = "x-oss-server-side-encryption-key-id"
TRAFFIC_LIMIT_HEADER = "x-oss-traffic-limit"
TRAFFIC_LIMIT_MIN = 819200  # bit/s (100 KiB/s), OSS's documented range for x-oss-traffic-limit
TRAFFIC_LIMIT_MAX = 838860800  # bit/s (100 MiB/s)
REQUEST_PAYER_HEADER = "x-oss-request-payer"
ARCHIVE_CLASSES = ("Archive", "ColdArchive", "DeepColdArchive")
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires",
                  "x-oss-server-side-encryption", "x-oss-server-side-encryption-key-id",
                  "x-oss-server-side-data-encryption")
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
MAX_OBJECT_SIZE = 5 * 1024**3
HEADER_CASE = {
    "cache-control": "Cache-Control",
    "content-disposition": "Content-Disposition",
    "content-encoding": "Content-Encoding",
    "content-language": "Content-Language",
    "expires": "Expires",
}


@dataclass
class Context:
    """Everything a handler needs about one request."""

    core: "ServerCore"
    request: Request
    target: Target
    op: str
    principal: str | None  # access key id, or None for an anonymous (allowed) request
    now: float
    granted: bool = False  # the bucket/object ACLs grant this operation to everyone (access.py)
    # The addressed bucket as the owner check read it (ServerCore.dispatch): the first `bucket()` uses it instead of
    # reading it again, later calls read the store (a handler may have changed the bucket meanwhile).
    prefetched_bucket: BucketRecord | None = None

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def query(self) -> dict[str, str]:
        return self.target.query

    @property
    def bucket_name(self) -> str:
        return self.target.bucket

    @property
    def key(self) -> str:
        return self.target.key

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.request.headers.get(name, default)

    def body_bytes(self) -> bytes:
        return self.request.body.read_bytes() if self.request.body is not None else b""

    def owner_id(self) -> str:
        return self.principal or self.core.default_owner

    def bucket(self, name: str | None = None) -> BucketRecord:
        """The named (default: addressed) bucket, checking that the caller may use it."""
        name = self.bucket_name if name is None else name
        record, self.prefetched_bucket = self.prefetched_bucket, None
        if record is None or record.name != name:
            record = self.store.get_bucket(name)
        if record is None:
            raise no_such_bucket(name)
        if self.principal is not None and record.owner != self.principal and not self.granted:
            raise OssError(403, "AccessDenied", "You have no right to access this object because of bucket acl.",
                           ec="0003-00000001")
        return record


def parse_http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.timestamp()


def quoted_etag(etag: str) -> str:
    return f'"{etag}"'


def md5_etag(data: bytes) -> str:
    """The ETag OSS gives data it hashes whole: the MD5, in upper-case hex."""
    return hashlib.md5(data).hexdigest().upper()


def crc_etag(crc64: int, size: int) -> str:
    """The ETag of a body received without MD5 (`serve --etag fast`): CRC-64 and size as 32 upper-case hex
    digits, so that it still has an MD5's shape (UploadPart's Content-MD5 header, multipart ETags)."""
    return f"{crc64:016X}{size:016X}"


def no_such_bucket(name: str) -> OssError:
    return OssError(404, "NoSuchBucket", "The specified bucket does not exist.", ec="0015-00000101",
                    extra=[("BucketName", name)])


def no_such_key(key: str) -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.", ec="0026-00000001", extra=[("Key", key)])


def invalid_argument(message: str, name: str, value: str, ec: str | None = None) -> OssError:
    return OssError(400, "InvalidArgument", message, ec=ec, extra=[("ArgumentName", name), ("ArgumentValue", value)])


def check_key(key: str) -> None:
    raw = key.encode("utf-8", "surrogatepass")
    if not raw or len(raw) > 1023 or key[0] in "/\\":
        raise OssError(400, "InvalidObjectName", "The specified object is not valid.", ec="0016-00000005")


def storage_class_from(ctx: Context, default: str) -> str:
    value = ctx.header("x-oss-storage-class")
    if value is None or value == "":
        return default
    for known in STORAGE_CLASSES:
        if value.lower() == known.lower():
            return known
    raise invalid_argument("Invalid storage class.", "x-oss-storage-class", value)


def object_acl_from(ctx: Context) -> str:
    """The x-oss-object-acl of a write (PutObject, CopyObject, InitiateMultipartUpload, AppendObject, PutSymlink,
    PutObjectAcl); "default" (the bucket's ACL applies) when absent. 400 InvalidArgument for another value."""
    value = ctx.header("x-oss-object-acl")
    if value is None or value == "":
        return "default"
    if value not in OBJECT_ACLS:
        raise invalid_argument("no such object access control exists", "x-oss-object-acl", value)
    return value


def bucket_acl_from(ctx: Context) -> str:
    """The x-oss-acl of PutBucket / PutBucketAcl ("private" when absent)."""
    value = ctx.header("x-oss-acl") or "private"
    if value not in BUCKET_ACLS:
        raise invalid_argument("no such bucket access control exists", "x-oss-acl", value)
    return value


def apply_encryption(ctx: Context, record: ObjectRecord) -> None:
    """Server-side encryption requested by a write (x-oss-server-side-encryption AES256|KMS|SM4, plus
    x-oss-server-side-encryption-key-id with KMS) is stored with the object and echoed on every read of it.
    Without the header the record keeps what it has (a copy keeps its source's encryption)."""
    algorithm = ctx.header(SSE_HEADER)
    key_id = ctx.header(SSE_KEY_ID_HEADER)
    if algorithm is None or algorithm == "":
        if key_id:
            raise invalid_argument("x-oss-server-side-encryption-key-id needs x-oss-server-side-encryption: KMS.",
                                   SSE_KEY_ID_HEADER, key_id)
        return
    if algorithm not in SSE_ALGORITHMS:
        raise invalid_argument("The encryption method specified is not supported.", SSE_HEADER, algorithm)
    if key_id and algorithm != "KMS":
        raise invalid_argument("x-oss-server-side-encryption-key-id is only valid with KMS.", SSE_KEY_ID_HEADER,
                               key_id)
    record.headers = {name: value for name, value in record.headers.items()
                      if name not in (SSE_HEADER, SSE_KEY_ID_HEADER)}
    record.headers[SSE_HEADER] = algorithm
    if key_id:
        record.headers[SSE_KEY_ID_HEADER] = key_id


def encryption_headers(record: ObjectRecord) -> list[tuple[str, str]]:
    """The SSE headers OSS answers a write with (PutObject, CopyObject, Initiate/Complete, UploadPart, Append)."""
    return [(name, record.headers[name]) for name in (SSE_HEADER, SSE_KEY_ID_HEADER) if name in record.headers]


def parse_traffic_limit(value: str | None) -> int | None:
    """x-oss-traffic-limit in bit/s (None when absent). OSS accepts 819200..838860800; anything else is
    400 InvalidArgument. The HTTP front throttles the body of an accepted one to value/8 bytes per second."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not TRAFFIC_LIMIT_MIN <= int(text) <= TRAFFIC_LIMIT_MAX:
        raise invalid_argument(f"x-oss-traffic-limit must be an integer between {TRAFFIC_LIMIT_MIN} and "
                               f"{TRAFFIC_LIMIT_MAX} (bit/s).", TRAFFIC_LIMIT_HEADER, value)
    return int(text)


def check_traffic_limit(ctx: Context) -> None:
    """Refuse a malformed or out-of-range x-oss-traffic-limit (PutObject, UploadPart, AppendObject, GetObject)."""
    parse_traffic_limit(ctx.header(TRAFFIC_LIMIT_HEADER))


def forbid_overwrite(ctx: Context) -> bool:
    value = ctx.header("x-oss-forbid-overwrite")
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise invalid_argument("Invalid x-oss-forbid-overwrite header.", "x-oss-forbid-overwrite", value,
                               ec="0017-00000279")
    return value.lower() == "true"


def file_already_exists(ec: str = "0026-00000002") -> OssError:
    return OssError(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.", ec=ec)


# OSS limits the user metadata of an object to 8 KB: the x-oss-meta-* names and values together (doc "0011-00000002").
MAX_USER_METADATA = 8 * 1024


def user_metadata_size(meta: dict[str, str]) -> int:
    """Bytes of user metadata as OSS counts them: each full header name (`x-oss-meta-...`) plus its value, UTF-8."""
    return sum(len(name.encode("utf-8", "surrogateescape")) + len(value.encode("utf-8", "surrogateescape"))
               for name, value in meta.items())


def check_user_metadata(meta: dict[str, str]) -> None:
    """400 MetadataTooLarge (EC 0011-00000002) when the user metadata exceeds 8 KB. OSS documents the limit and the
    EC; the code is S3's name for the same refusal (the S3 dialect answers it unchanged)."""
    size = user_metadata_size(meta)
    if size > MAX_USER_METADATA:
        raise OssError(400, "MetadataTooLarge", f"Your metadata headers exceed the maximum allowed metadata size: "
                       f"{size} bytes of x-oss-meta-* names and values, at most {MAX_USER_METADATA}.",
                       ec="0011-00000002", extra=[("MaxSizeAllowed", str(MAX_USER_METADATA)), ("Size", str(size))])


def metadata_from_request(ctx: Context, record: ObjectRecord) -> None:
    """Copy Content-Type, x-oss-meta-* and the stored standard headers from the request into `record`
    (server-side encryption validated). Raises MetadataTooLarge past 8 KB of user metadata (every write that sets
    metadata comes through here: PutObject, CopyObject with REPLACE, InitiateMultipartUpload, AppendObject,
    PutSymlink, and their S3 forms)."""
    record.content_type = ctx.header("content-type") or "application/octet-stream"
    record.meta = {name: value for name, value in ctx.request.headers.items() if name.startswith("x-oss-meta-")}
    check_user_metadata(record.meta)
    record.headers = {name: ctx.request.headers[name] for name in STORED_HEADERS
                      if name in ctx.request.headers and name not in (SSE_HEADER, SSE_KEY_ID_HEADER)}
    apply_encryption(ctx, record)


def verify_content_md5(ctx: Context) -> None:
    """400 InvalidDigest unless a Content-MD5 header matches the body."""
    value = ctx.header("content-md5")
    if value is None:
        return
    try:
        expected = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        expected = b""
    body = ctx.request.body
    # The front computes MD5 whenever Content-MD5 is sent, even with `serve --etag fast`.
    actual = body.md5 if body is not None else hashlib.md5(b"").digest()
    if len(expected) != 16 or expected != actual:
        raise OssError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.", ec="0016-00000021")


def body_size(ctx: Context) -> int:
    size = ctx.request.body.size if ctx.request.body is not None else 0
    if size > MAX_OBJECT_SIZE:
        raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    return size


def body_etag(ctx: Context) -> str:
    body = ctx.request.body
    if body is None:
        return md5_etag(b"")
    if body.md5 is None:
        return crc_etag(body.crc64, body.size)
    return body.md5.hex().upper()


def content_md5_header(etag: str) -> tuple[str, str]:
    """The Content-MD5 response header of PutObject/UploadPart: the body's ETag, base64-encoded."""
    return "Content-MD5", base64.b64encode(bytes.fromhex(etag)).decode("ascii")


def restore_header(record: ObjectRecord, now: float, restore_delay: float) -> str | None:
    """The x-oss-restore value for an archive object, or None when no restore was requested."""
    if record.restore is None:
        return None
    requested = record.restore["requested"]
    if now < requested + restore_delay:
        return 'ongoing-request="true"'
    expiry = requested + restore_delay + record.restore.get("days", 1) * 86400
    return f'ongoing-request="false", expiry-date="{http_date(expiry)}"'


def is_readable(record: ObjectRecord, now: float, restore_delay: float) -> bool:
    """Archive-class objects can be read only once restored."""
    if record.storage_class not in ARCHIVE_CLASSES:
        return True
    if record.restore is None:
        return False
    return now >= record.restore["requested"] + restore_delay


def invalid_object_state() -> OssError:
    return OssError(403, "InvalidObjectState", "The operation is not valid for the object's state", ec="0016-00000401")


def object_headers(ctx: Context, row: ObjectRow, versioned: bool) -> list[tuple[str, str]]:
    """The metadata headers of HeadObject/GetObject for a stored version."""
    record = row.record
    headers = [
        ("Content-Type", record.content_type),
        ("ETag", quoted_etag(record.etag)),
        ("Last-Modified", http_date(record.mtime)),
        ("Accept-Ranges", "bytes"),
        ("x-oss-object-type", record.type),
        ("x-oss-storage-class", record.storage_class),
        ("x-oss-hash-crc64ecma", str(record.crc64)),
    ]
    for name, value in record.headers.items():
        headers.append((HEADER_CASE.get(name, name), value))
    for name, value in sorted(record.meta.items()):
        headers.append((name, value))
    if record.type == "Appendable":
        headers.append(("x-oss-next-append-position", str(record.size)))
    restore = restore_header(record, ctx.now, ctx.core.restore_delay)
    if restore is not None:
        headers.append(("x-oss-restore", restore))
    if versioned and row.version_id:
        headers.append(("x-oss-version-id", row.version_id))
    return headers


def check_conditions(
    etag: str,
    mtime: float,
    get_header: Callable[[str], str | None],
    prefix: str = "",
    not_modified_status: int = 304,
) -> None:
    """Evaluate If-Match/If-None-Match/If-(Un)Modified-Since (ETags compared without quotes).

    `prefix` selects the x-oss-copy-source-if-* family; for copies a failed none-match or
    modified-since is 412 too (not 304).
    """

    def strip(value: str) -> str:
        return value.strip().strip('"').upper()

    if_match = get_header(prefix + "if-match")
    if if_match is not None:
        tags = {strip(t) for t in if_match.split(",")}
        if "*" not in tags and etag.upper() not in tags:
            raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.",
                           extra=[("Condition", "If-Match")])
    if_unmodified = get_header(prefix + "if-unmodified-since")
    if if_unmodified is not None and if_match is None:
        when = parse_http_date(if_unmodified)
        if when is not None and int(mtime) > when:
            raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.",
                           extra=[("Condition", "If-Unmodified-Since")])
    if_none_match = get_header(prefix + "if-none-match")
    if if_none_match is not None:
        tags = {strip(t) for t in if_none_match.split(",")}
        if "*" in tags or etag.upper() in tags:
            raise _not_modified(not_modified_status, "If-None-Match", etag, mtime)
    if_modified = get_header(prefix + "if-modified-since")
    if if_modified is not None and if_none_match is None:
        when = parse_http_date(if_modified)
        if when is not None and int(mtime) <= when:
            raise _not_modified(not_modified_status, "If-Modified-Since", etag, mtime)


def _not_modified(status: int, condition: str, etag: str, mtime: float) -> OssError:
    if status == 304:
        return OssError(304, "NotModified", "The object was not modified.",
                        headers=[("ETag", quoted_etag(etag)), ("Last-Modified", http_date(mtime))])
    return OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.",
                    extra=[("Condition", condition)])


class RangeNotSatisfiable(Exception):
    pass


def parse_range(value: str | None, size: int, standard: bool) -> tuple[int, int] | None:
    """Resolve a Range header to an inclusive (first, last) byte span, or None for the whole object.

    Implements oss-api.md §2.6: without `x-oss-range-behavior: standard` an unsatisfiable or
    malformed range serves the whole object; with it, RFC 7233 semantics and 416 otherwise.
    """
    if value is None:
        return None
    value = value.strip()
    if not value.startswith("bytes="):
        return None
    spec = value[len("bytes="):].strip()
    if "," in spec:
        if standard:
            raise RangeNotSatisfiable()
        spec = spec.split(",", 1)[0].strip()
    first_text, dash, last_text = spec.partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or (first_text and not first_text.isdigit()) or (last_text and not last_text.isdigit()):
        return None
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            if standard:
                raise RangeNotSatisfiable()
            return None
        if suffix > size:
            return (0, size - 1) if standard else None
        return size - suffix, size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        if standard:
            raise RangeNotSatisfiable()
        return None
    if first >= size:
        if standard:
            raise RangeNotSatisfiable()
        return None
    if last >= size:
        if not standard and last_text:
            return None
        last = size - 1
    return first, last


def xml_response(body: bytes, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("Content-Type", "application/xml"), *(headers or [])], body)
