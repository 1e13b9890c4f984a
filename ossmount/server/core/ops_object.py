"""Object operations: Put/Get/Head/Meta, Copy, Delete, DeleteMultiple, Append, Symlink, Restore
(oss-api.md §2.6-§2.8, §2.10-§2.12)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from urllib.parse import quote, unquote

from ossmount.crc64 import crc64_combine

from . import xmlio
from .common import (ARCHIVE_CLASSES, RESPONSE_OVERRIDES, Context, RangeNotSatisfiable, apply_encryption, body_etag,
                     body_size, check_conditions, check_key, check_traffic_limit, content_md5_header,
                     encryption_headers, file_already_exists, forbid_overwrite, http_date, invalid_argument,
                     invalid_object_state, is_readable, iso8601, md5_etag, metadata_from_request, no_such_key,
                     object_acl_from, object_headers, parse_range, quoted_etag, storage_class_from,
                     verify_content_md5, xml_response)
from .errors import OssError
from .model import FileExtent, Response
from .store import BucketRecord, Extent, ObjectRecord, ObjectRow
from .xmlio import element, leaf, url_encode_if


def version_headers(bucket: BucketRecord, version_id: str) -> list[tuple[str, str]]:
    return [("x-oss-version-id", version_id)] if bucket.versioning and version_id else []


def check_version_id(value: str) -> str:
    """OSS rejects version ids that are empty or not of its own shape with 400 InvalidArgument."""
    if value != "null" and not (value.startswith("CAEQ") and len(value) > 8 and value.isalnum()):
        raise invalid_argument("The version id is invalid.", "versionId", value)
    return value


def requested_version(query: dict[str, str]) -> str | None:
    """The versionId query parameter, validated."""
    if "versionId" not in query:
        return None
    return check_version_id(query["versionId"])


def resolve(ctx: Context, bucket: BucketRecord, key: str, version_id: str | None, *,
            shared: bool = False) -> ObjectRow:
    """The addressed version of `key` (latest unless `version_id`), never a delete marker. `shared`: the caller only
    reads the row's record (Store.get_latest)."""
    if version_id:
        row = ctx.store.get_version(bucket.name, key, "null" if version_id == "null" else version_id, shared=shared)
        if row is None:
            raise OssError(404, "NoSuchVersion", "The specified version does not exist.", extra=[("Key", key)])
        if row.delete_marker:
            raise OssError(405, "MethodNotAllowed", "The specified method is not allowed against this resource.",
                           headers=[("x-oss-delete-marker", "true"), ("x-oss-version-id", row.version_id)])
        return row
    row = ctx.store.get_latest(bucket.name, key, shared=shared)
    if row is None:
        raise no_such_key(key)
    if row.delete_marker:
        error = no_such_key(key)
        error.headers = [("x-oss-delete-marker", "true"), ("x-oss-version-id", row.version_id or "null")]
        raise error
    return row


def follow_symlink(ctx: Context, bucket: BucketRecord, row: ObjectRow, *, shared: bool = False) -> ObjectRow:
    if row.record.type != "Symlink" or row.record.symlink_target is None:
        return row
    target = ctx.store.get_latest(bucket.name, row.record.symlink_target, shared=shared)
    if target is None or target.delete_marker:
        raise OssError(404, "SymlinkTargetNotExist", "The symlink target object does not exist.",
                       extra=[("Key", row.key)])
    return target


def clip_extents(extents: list[Extent], first: int, last: int) -> Iterator[tuple[Extent, int, int]]:
    """(extent, offset in its blob, length) of each extent's part within bytes first..last (inclusive) of an object."""
    position = 0
    for extent in extents:
        start, end = position, position + extent.length - 1
        position += extent.length
        if end < first or start > last:
            continue
        lo, hi = max(first, start), min(last, end)
        yield extent, extent.offset + lo - start, hi - lo + 1


def _slice(ctx: Context, extents: list[Extent], first: int, last: int) -> list[FileExtent]:
    """The file extents covering bytes first..last (inclusive) of an object."""
    return [FileExtent(ctx.store.blob_path(extent.blob), offset, length)
            for extent, offset, length in clip_extents(extents, first, last)]


# An HTTP field value as h11 accepts it (h11._abnf field_value over the UTF-8 bytes sent): no NUL, CR, LF or other
# whitespace but inner SP/HTAB. A response-* override outside it cannot be sent (h11 refuses the whole head).
_FIELD_VALUE = re.compile(rb"[^\x00\s]+(?:[ \t]+[^\x00\s]+)*")


def _apply_overrides(ctx: Context, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` with the response-* query parameters' values in place of their headers (OSS GetObject doc). A value
    is trimmed of surrounding SP/HTAB (optional whitespace, RFC 9110 §5.5); one holding a line break, NUL or other
    control whitespace is InvalidArgument (400) rather than a connection closed without an answer."""
    for param, name in RESPONSE_OVERRIDES.items():
        value = ctx.query.get(param)
        if value is not None:
            value = value.strip(" \t")
        if value is not None and value != "":
            if not _FIELD_VALUE.fullmatch(value.encode("utf-8", "surrogateescape")):
                raise invalid_argument(f"The value of {param} is not a valid HTTP header value.", param,
                                       value.encode("unicode_escape").decode("ascii"))
            headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
            headers.append((name, value))
    return headers


def _served_row(ctx: Context) -> tuple[BucketRecord, ObjectRow, ObjectRow]:
    """The bucket, the addressed row and the row it serves (a symlink's target). Their records are shared with other
    readers (Store.get_latest `shared`): HeadObject and GetObject only read them."""
    bucket = ctx.bucket()
    row = resolve(ctx, bucket, ctx.key, requested_version(ctx.query), shared=True)
    return bucket, row, follow_symlink(ctx, bucket, row, shared=True)


def _headers_for(ctx: Context, bucket: BucketRecord, link: ObjectRow, served: ObjectRow) -> list[tuple[str, str]]:
    headers = object_headers(ctx, served, bool(bucket.versioning))
    if link is not served:
        # OSS answers with the target's data headers but the link's own user metadata.
        headers = [(n, "Symlink") if n == "x-oss-object-type" else (n, v) for n, v in headers
                   if n != "x-oss-version-id" and not n.startswith("x-oss-meta-")]
        headers += sorted(link.record.meta.items())
        headers += version_headers(bucket, link.version_id)
    return headers


def head_object(ctx: Context) -> Response:
    bucket, link, served = _served_row(ctx)
    record = served.record
    check_conditions(record.etag, record.mtime, ctx.header)
    headers = _headers_for(ctx, bucket, link, served)
    return Response(200, headers, b"", content_length=record.size)


def get_object_meta(ctx: Context) -> Response:
    bucket = ctx.bucket()
    row = resolve(ctx, bucket, ctx.key, requested_version(ctx.query))
    record = row.record
    headers = [
        ("ETag", quoted_etag(record.etag)),
        ("Last-Modified", http_date(record.mtime)),
        ("x-oss-last-access-time", http_date(record.mtime)),
        ("x-oss-hash-crc64ecma", str(record.crc64)),
        *version_headers(bucket, row.version_id),
    ]
    return Response(200, headers, b"", content_length=record.size)


# How often a GET re-reads an object whose blobs vanished before it could pin them (it was rewritten each time).
PIN_ATTEMPTS = 100


def get_object(ctx: Context) -> Response:
    """GetObject. The blobs of the version served stay pinned until the front has sent them (Response.close),
    so a concurrent overwrite or delete cannot unlink them mid-body (store.py, "Concurrency")."""
    check_traffic_limit(ctx)
    for _ in range(PIN_ATTEMPTS):
        bucket, link, served = _served_row(ctx)
        pins = ctx.store.pin_blobs(extent.blob for extent in served.record.extents)
        if pins is not None:
            break
    else:
        raise OssError(503, "ServiceUnavailable", "The object was rewritten on every attempt to read it; "
                       "please retry.")
    try:
        response = _object_response(ctx, bucket, link, served)
    except BaseException:
        pins.release()
        raise
    response.on_close = pins.release
    return response


def _object_response(ctx: Context, bucket: BucketRecord, link: ObjectRow, served: ObjectRow) -> Response:
    record = served.record
    if not is_readable(record, ctx.now, ctx.core.restore_delay):
        raise invalid_object_state()
    check_conditions(record.etag, record.mtime, ctx.header)
    headers = _apply_overrides(ctx, _headers_for(ctx, bucket, link, served))
    standard = (ctx.header("x-oss-range-behavior") or "").lower() == "standard"
    try:
        span = parse_range(ctx.header("range"), record.size, standard)
    except RangeNotSatisfiable:
        raise OssError(416, "InvalidRange", "The requested range cannot be satisfied",
                       headers=[("Content-Range", f"bytes */{record.size}")]) from None
    if span is None:
        return Response(200, headers, _slice(ctx, record.extents, 0, record.size - 1) if record.size else b"")
    first, last = span
    headers.append(("Content-Range", f"bytes {first}-{last}/{record.size}"))
    return Response(206, headers, _slice(ctx, record.extents, first, last))


def existing_object(ctx: Context, bucket: BucketRecord, key: str) -> ObjectRow | None:
    row = ctx.store.get_latest(bucket.name, key)
    return None if row is None or row.delete_marker else row


def _publish(ctx: Context, bucket: BucketRecord, key: str, record: ObjectRecord) -> str:
    """Store `record` as the new latest version of `key` under the bucket's versioning mode."""
    return ctx.store.put_object(bucket.name, key, record, bucket.versioning)


def discard_blobs(ctx: Context, extents: list[Extent]) -> None:
    for extent in extents:
        ctx.store.unlink_blob(extent.blob)


def put_object(ctx: Context) -> Response:
    bucket = ctx.bucket()
    check_key(ctx.key)
    verify_content_md5(ctx)
    check_traffic_limit(ctx)
    size = body_size(ctx)
    forbid = forbid_overwrite(ctx)
    storage_class = storage_class_from(ctx, bucket.storage_class)
    if forbid and existing_object(ctx, bucket, ctx.key) is not None:
        raise file_already_exists()
    body = ctx.request.body
    record = ObjectRecord(type="Normal", size=size, etag=body_etag(ctx), crc64=body.crc64 if body else 0,
                          mtime=ctx.now, storage_class=storage_class, owner=ctx.owner_id(),
                          acl=object_acl_from(ctx))
    metadata_from_request(ctx, record)
    record.extents = ctx.store.adopt_body(body)
    try:
        version_id = _publish(ctx, bucket, ctx.key, record)
    except BaseException:
        discard_blobs(ctx, record.extents)
        raise
    headers = [("ETag", quoted_etag(record.etag)), ("x-oss-hash-crc64ecma", str(record.crc64)),
               content_md5_header(record.etag), *encryption_headers(record), *version_headers(bucket, version_id)]
    return Response(200, headers)


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """(bucket, key, versionId) of an x-oss-copy-source header (`/bucket/urlencoded-key[?versionId=v]`)."""
    raw, _, query = value.partition("?")
    raw = raw.lstrip("/")
    bucket, slash, key = raw.partition("/")
    if not slash or not key:
        raise invalid_argument("Copy Source must mention the source bucket and key: /sourcebucket/sourcekey.",
                               "x-oss-copy-source", value)
    version_id = None
    for item in query.split("&"):
        name, _, item_value = item.partition("=")
        if name == "versionId":
            version_id = check_version_id(unquote(item_value))
    return unquote(bucket), unquote(key), version_id


def copy_source_row(ctx: Context) -> tuple[BucketRecord, ObjectRow]:
    """The readable source version of a CopyObject/UploadPartCopy, with its conditionals checked."""
    source_bucket_name, source_key, source_version = parse_copy_source(ctx.header("x-oss-copy-source") or "")
    source_bucket = ctx.bucket(source_bucket_name)
    row = resolve(ctx, source_bucket, source_key, source_version)
    if not is_readable(row.record, ctx.now, ctx.core.restore_delay):
        raise invalid_object_state()
    check_conditions(row.record.etag, row.record.mtime, ctx.header, prefix="x-oss-copy-source-",
                     not_modified_status=412)
    return source_bucket, row


def copy_object(ctx: Context) -> Response:
    bucket = ctx.bucket()
    check_key(ctx.key)
    source_bucket, source = copy_source_row(ctx)
    directive = (ctx.header("x-oss-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Invalid metadata directive.", "x-oss-metadata-directive", directive)
    same_object = source_bucket.name == bucket.name and source.key == ctx.key
    if forbid_overwrite(ctx) and not same_object and existing_object(ctx, bucket, ctx.key) is not None:
        raise file_already_exists()
    record = copy.deepcopy(source.record)
    record.mtime = ctx.now
    record.owner = ctx.owner_id()
    record.restore = None
    record.acl = object_acl_from(ctx)
    if record.type == "Appendable":
        record.type = "Normal"
    record.storage_class = storage_class_from(ctx, source.record.storage_class)
    if directive == "REPLACE":
        metadata_from_request(ctx, record)
    else:
        apply_encryption(ctx, record)  # the target's encryption may differ from the source's
    version_id = _publish(ctx, bucket, ctx.key, record)
    body = xmlio.render(element("CopyObjectResult", leaf("LastModified", iso8601(record.mtime)),
                                leaf("ETag", quoted_etag(record.etag))))
    headers = [("ETag", quoted_etag(record.etag)), ("x-oss-hash-crc64ecma", str(record.crc64)),
               *encryption_headers(record), *version_headers(bucket, version_id)]
    if source_bucket.versioning and source.version_id:
        headers.append(("x-oss-copy-source-version-id", source.version_id))
    return xml_response(body, headers=headers)


def _delete_one(ctx: Context, bucket: BucketRecord, key: str, version_id: str | None) -> list[tuple[str, str]]:
    """Delete a key or version; returns the response headers describing what happened."""
    if version_id:
        removed = ctx.store.delete_version(bucket.name, key, version_id)
        headers = [("x-oss-version-id", version_id)]
        if removed is not None and removed.delete_marker:
            headers.append(("x-oss-delete-marker", "true"))
        return headers
    if bucket.versioning:
        marker_id = ctx.store.add_delete_marker(bucket.name, key, bucket.versioning, ctx.now, ctx.owner_id())
        return [("x-oss-delete-marker", "true"), ("x-oss-version-id", marker_id)]
    ctx.store.delete_unversioned(bucket.name, key)
    return []


def delete_object(ctx: Context) -> Response:
    bucket = ctx.bucket()
    return Response(204, _delete_one(ctx, bucket, ctx.key, requested_version(ctx.query)))


def delete_multiple_objects(ctx: Context) -> Response:
    bucket = ctx.bucket()
    verify_content_md5(ctx)
    encode = (ctx.query.get("encoding-type") or "") == "url"
    quiet, entries = xmlio.parse_delete(ctx.body_bytes())
    for entry in entries:
        if entry.version_id is not None:
            check_version_id(entry.version_id)
    root = element("DeleteResult")
    if encode:
        root.append(leaf("EncodingType", "url"))
    for entry in entries:
        headers = dict(_delete_one(ctx, bucket, entry.key, entry.version_id))
        if quiet:
            continue
        deleted = element("Deleted", leaf("Key", url_encode_if(entry.key, encode)))
        if entry.version_id:
            deleted.append(leaf("VersionId", entry.version_id))
        if headers.get("x-oss-delete-marker"):
            deleted.append(leaf("DeleteMarker", True))
            deleted.append(leaf("DeleteMarkerVersionId", headers.get("x-oss-version-id", "")))
        root.append(deleted)
    return xml_response(xmlio.render(root))


def append_object(ctx: Context) -> Response:
    bucket = ctx.bucket()
    check_key(ctx.key)
    position_text = ctx.query.get("position")
    if position_text is None or not position_text.isdigit():
        raise invalid_argument("Invalid append position.", "position", position_text or "")
    position = int(position_text)
    verify_content_md5(ctx)
    check_traffic_limit(ctx)
    size = body_size(ctx)
    body = ctx.request.body
    body_crc = body.crc64 if body is not None else 0
    existing = existing_object(ctx, bucket, ctx.key)
    current_size = existing.record.size if existing is not None else 0
    if existing is not None and existing.record.type != "Appendable":
        raise OssError(409, "ObjectNotAppendable", "The object is not appendable", ec="0026-00000101")
    if position != current_size:
        raise OssError(409, "PositionNotEqualToLength", "Position is not equal to file length",
                       ec="0026-00000102", headers=[("x-oss-next-append-position", str(current_size))])
    if current_size + size > 5 * 1024**3:
        raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    new_extents = ctx.store.adopt_body(body)
    try:
        if existing is None:
            record = ObjectRecord(type="Appendable", size=size, crc64=body_crc, mtime=ctx.now,
                                  storage_class=storage_class_from(ctx, bucket.storage_class), owner=ctx.owner_id(),
                                  extents=new_extents, acl=object_acl_from(ctx))
            metadata_from_request(ctx, record)
            record.etag = md5_etag(body_etag(ctx).encode())
            version_id = _publish(ctx, bucket, ctx.key, record)
        else:
            record = copy.deepcopy(existing.record)
            record.extents = record.extents + new_extents
            record.crc64 = crc64_combine(record.crc64, body_crc, size)
            record.size += size
            record.mtime = ctx.now
            record.etag = md5_etag((record.etag + body_etag(ctx)).encode())
            ctx.store.replace_latest_record(existing, record)
            version_id = existing.version_id
    except BaseException:
        discard_blobs(ctx, new_extents)
        raise
    headers = [("ETag", quoted_etag(record.etag)), ("x-oss-next-append-position", str(record.size)),
               ("x-oss-hash-crc64ecma", str(record.crc64)), *encryption_headers(record),
               *version_headers(bucket, version_id)]
    return Response(200, headers)


def put_symlink(ctx: Context) -> Response:
    bucket = ctx.bucket()
    check_key(ctx.key)
    target_header = ctx.header("x-oss-symlink-target")
    if not target_header:
        raise invalid_argument("x-oss-symlink-target is missing.", "x-oss-symlink-target", "")
    target = unquote(target_header)
    check_key(target)
    if forbid_overwrite(ctx) and existing_object(ctx, bucket, ctx.key) is not None:
        raise file_already_exists()
    record = ObjectRecord(type="Symlink", size=0, etag=md5_etag(target.encode("utf-8", "surrogatepass")),
                          crc64=0, mtime=ctx.now, storage_class=storage_class_from(ctx, bucket.storage_class),
                          symlink_target=target, owner=ctx.owner_id(), acl=object_acl_from(ctx))
    metadata_from_request(ctx, record)
    version_id = _publish(ctx, bucket, ctx.key, record)
    return Response(200, [("ETag", quoted_etag(record.etag)), *version_headers(bucket, version_id)])


def get_symlink(ctx: Context) -> Response:
    bucket = ctx.bucket()
    row = resolve(ctx, bucket, ctx.key, requested_version(ctx.query))
    if row.record.type != "Symlink":
        raise OssError(400, "NotSymlink", "The specified object is not a symlink.", extra=[("Key", ctx.key)])
    headers = [("x-oss-symlink-target", quote(row.record.symlink_target or "", safe="/")),
               ("ETag", quoted_etag(row.record.etag)), ("Last-Modified", http_date(row.record.mtime)),
               *sorted(row.record.meta.items()), *version_headers(bucket, row.version_id)]
    return Response(200, headers)


_TIERS = ("Expedited", "Standard", "Bulk")


def restore_object(ctx: Context) -> Response:
    bucket = ctx.bucket()
    row = resolve(ctx, bucket, ctx.key, requested_version(ctx.query))
    record = row.record
    if record.storage_class not in ARCHIVE_CLASSES:
        raise OssError(400, "OperationNotSupported", "The operation is not supported for this resource",
                       ec="0016-00000702")
    request = xmlio.parse_restore(ctx.body_bytes())
    if request.has_job_parameters and record.storage_class == "Archive":
        raise xmlio.malformed()
    if request.tier is not None and request.tier not in _TIERS:
        raise invalid_argument("Invalid restore tier.", "Tier", request.tier)
    days = request.days or 1
    if days < 1 or days > 365:
        raise invalid_argument("Invalid restore days.", "Days", str(days))
    delay = ctx.core.restore_delay
    headers = version_headers(bucket, row.version_id)
    state = record.restore
    if state is not None:
        ready_at = state["requested"] + delay
        expires_at = ready_at + state.get("days", 1) * 86400
        if ctx.now < ready_at:
            raise OssError(409, "RestoreAlreadyInProgress",
                           "The restore operation is in progress.", ec="0016-00000701")
        if ctx.now < expires_at:
            updated = copy.deepcopy(record)
            updated.restore = dict(state, days=state.get("days", 1) + days)
            ctx.store.replace_latest_record(row, updated)
            return Response(200, headers)
    updated = copy.deepcopy(record)
    updated.restore = {"requested": ctx.now, "days": days, "tier": request.tier}
    ctx.store.replace_latest_record(row, updated)
    if record.storage_class != "Archive":
        headers.append(("x-oss-object-restore-priority", request.tier or "Standard"))
    return Response(202, headers)


def get_object_acl(ctx: Context) -> Response:
    bucket = ctx.bucket()
    row = resolve(ctx, bucket, ctx.key, requested_version(ctx.query))
    root = element("AccessControlPolicy", element("Owner", leaf("ID", row.record.owner),
                                                  leaf("DisplayName", row.record.owner)),
                   element("AccessControlList", leaf("Grant", row.record.acl)))
    return xml_response(xmlio.render(root), headers=version_headers(bucket, row.version_id))


def put_object_acl(ctx: Context) -> Response:
    """Set the object's ACL ("default" hands access back to the bucket ACL); see access.py for what it grants."""
    bucket = ctx.bucket()
    row = resolve(ctx, bucket, ctx.key, requested_version(ctx.query))
    if ctx.header("x-oss-object-acl") is None:
        raise invalid_argument("x-oss-object-acl is missing.", "x-oss-object-acl", "")
    updated = copy.deepcopy(row.record)
    updated.acl = object_acl_from(ctx)
    ctx.store.replace_latest_record(row, updated)
    return Response(200, version_headers(bucket, row.version_id))
