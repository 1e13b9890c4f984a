"""Multipart uploads (oss-api.md §2.9). Parts are stored as extents; Complete stitches them without
copying data and combines their CRCs."""

from __future__ import annotations

import copy
import hashlib
import re

from ossmount.crc64 import crc64, crc64_concat

from . import xmlio
from .common import (Context, RangeNotSatisfiable, body_etag, body_size, check_key, check_traffic_limit,
                     content_md5_header, encryption_headers, file_already_exists, forbid_overwrite, invalid_argument,
                     iso8601, md5_etag, metadata_from_request, object_acl_from, parse_range, quoted_etag,
                     storage_class_from, verify_content_md5, xml_response)
from .errors import OssError
from .model import Response
from .ops_object import clip_extents, copy_source_row, discard_blobs, existing_object, version_headers
from .store import Extent, ObjectRecord, PartRecord, UploadRecord, decode_key, encode_key
from .xmlio import element, leaf, url_encode_if

MIN_PART_SIZE = 100 * 1024
MAX_PART_NUMBER = 10000
_HEX_MD5 = re.compile(r"^[0-9A-F]{32}$")


def _encoding(ctx: Context) -> bool:
    return (ctx.query.get("encoding-type") or "") == "url"


def _no_such_upload(upload_id: str) -> OssError:
    return OssError(404, "NoSuchUpload",
                    "The specified upload does not exist. The upload ID may be invalid, or the upload may have "
                    "been aborted or completed.", ec="0042-00000002", extra=[("UploadId", upload_id)])


def _upload(ctx: Context) -> UploadRecord:
    upload_id = ctx.query.get("uploadId") or ""
    upload = ctx.store.get_upload(upload_id)
    if upload is None or upload.bucket != ctx.bucket_name or upload.key != ctx.key:
        raise _no_such_upload(upload_id)
    return upload


def _part_number(ctx: Context) -> int:
    text = ctx.query.get("partNumber") or ""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PART_NUMBER:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive.", "partNumber", text)
    return int(text)


def initiate_multipart_upload(ctx: Context) -> Response:
    bucket = ctx.bucket()
    check_key(ctx.key)
    forbid = forbid_overwrite(ctx)
    template = ObjectRecord(type="Multipart", storage_class=storage_class_from(ctx, bucket.storage_class),
                            owner=ctx.owner_id(), acl=object_acl_from(ctx))
    metadata_from_request(ctx, template)
    upload_id = ctx.store.create_upload(bucket.name, ctx.key, ctx.now, template, forbid)
    encode = _encoding(ctx)
    root = element("InitiateMultipartUploadResult", leaf("Bucket", bucket.name),
                   leaf("Key", url_encode_if(ctx.key, encode)), leaf("UploadId", upload_id))
    if encode:
        root.append(leaf("EncodingType", "url"))
    return xml_response(xmlio.render(root), headers=encryption_headers(template))


def upload_part(ctx: Context) -> Response:
    ctx.bucket()
    upload = _upload(ctx)
    number = _part_number(ctx)
    verify_content_md5(ctx)
    check_traffic_limit(ctx)
    size = body_size(ctx)
    body = ctx.request.body
    extents = ctx.store.adopt_body(body)
    part = PartRecord(number, size, body_etag(ctx), body.crc64 if body else 0, ctx.now, extents)
    try:
        stored = ctx.store.put_part(upload.upload_id, part)
    except BaseException:
        discard_blobs(ctx, extents)
        raise
    if not stored:
        discard_blobs(ctx, extents)
        raise _no_such_upload(upload.upload_id)
    headers = [("ETag", quoted_etag(part.etag)), ("x-oss-hash-crc64ecma", str(part.crc64)),
               content_md5_header(part.etag), *encryption_headers(upload.template)]
    return Response(200, headers)


def _copy_range(ctx: Context, extents: list[Extent], first: int, last: int) -> tuple[list[Extent], str]:
    """The extents covering bytes first..last of an object and the MD5 ETag of those bytes.

    Each byte is read once: the MD5 and the CRCs of partially covered extents come from the same pass."""
    digest = hashlib.md5()
    result = []
    for extent, offset, length in clip_extents(extents, first, last):
        partial = length != extent.length
        crc = 0
        with open(ctx.store.blob_path(extent.blob), "rb") as f:
            f.seek(offset)
            remaining = length
            while remaining:
                chunk = f.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                if partial:
                    crc = crc64(chunk, crc)
                remaining -= len(chunk)
        result.append(Extent(extent.blob, offset, length, crc) if partial else extent)
    return result, digest.hexdigest().upper()


def upload_part_copy(ctx: Context) -> Response:
    ctx.bucket()
    upload = _upload(ctx)
    number = _part_number(ctx)
    _, source = copy_source_row(ctx)
    record = source.record
    range_header = ctx.header("x-oss-copy-source-range")
    try:
        span = parse_range(range_header, record.size, True) if range_header else None
    except RangeNotSatisfiable:
        raise OssError(416, "InvalidRange", "The requested range cannot be satisfied") from None
    if span is None or span == (0, record.size - 1):
        extents, size, etag, crc = list(record.extents), record.size, record.etag, record.crc64
    else:
        first, last = span
        extents, etag = _copy_range(ctx, record.extents, first, last)
        size = last - first + 1
        crc = crc64_concat([(e.crc, e.length) for e in extents])
    if not ctx.store.put_part(upload.upload_id, PartRecord(number, size, etag, crc, ctx.now, extents)):
        raise _no_such_upload(upload.upload_id)
    body = xmlio.render(element("CopyPartResult", leaf("LastModified", iso8601(ctx.now)),
                                leaf("ETag", quoted_etag(etag))))
    return xml_response(body, headers=[("ETag", quoted_etag(etag)), ("x-oss-hash-crc64ecma", str(crc))])


def _invalid_part(message: str = "One or more of the specified parts could not be found or the specified entity "
                  "tag might not have matched the part's entity tag.") -> OssError:
    return OssError(400, "InvalidPart", message, ec="0042-00000004")


def _multipart_etag(parts: list[PartRecord]) -> str:
    digest = b"".join(bytes.fromhex(p.etag) if _HEX_MD5.match(p.etag) else hashlib.md5(p.etag.encode()).digest()
                      for p in parts)
    return f"{md5_etag(digest)}-{len(parts)}"


def complete_multipart_upload(ctx: Context) -> Response:
    bucket = ctx.bucket()
    upload = _upload(ctx)
    stored = {part.part_number: part for part in ctx.store.list_parts(upload.upload_id)}
    complete_all = (ctx.header("x-oss-complete-all") or "").lower() == "yes"
    body = ctx.body_bytes()
    if complete_all:
        if body.strip():
            raise invalid_argument("Should not specify both complete all header and body.", "x-oss-complete-all", "yes")
        chosen = [stored[n] for n in sorted(stored)]
    else:
        requested = xmlio.parse_complete(body)
        if not requested:
            raise xmlio.malformed()
        chosen = []
        previous = 0
        for item in requested:
            if item.part_number <= previous:
                raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts list "
                               "must be specified in order by part number.", ec="0042-00000005")
            previous = item.part_number
            part = stored.get(item.part_number)
            if part is None or part.etag.upper() != item.etag:
                raise _invalid_part()
            chosen.append(part)
    if not chosen:
        raise _invalid_part()
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.",
                           ec="0042-00000006", extra=[("MinSizeAllowed", str(MIN_PART_SIZE)),
                                                      ("PartNumber", str(part.part_number))])
    forbid = upload.forbid_overwrite or forbid_overwrite(ctx)
    if forbid and existing_object(ctx, bucket, upload.key) is not None:
        raise file_already_exists(ec="0042-00000214")
    record = copy.deepcopy(upload.template)
    record.type = "Multipart"
    record.extents = [extent for part in chosen for extent in part.extents]
    record.size = sum(part.size for part in chosen)
    record.crc64 = crc64_concat([(part.crc64, part.size) for part in chosen])
    record.etag = _multipart_etag(chosen)
    record.mtime = ctx.now
    version_id = ctx.store.complete_upload(upload, record, bucket.versioning)
    encode = _encoding(ctx)
    root = element("CompleteMultipartUploadResult")
    if encode:
        root.append(leaf("EncodingType", "url"))
    host = ctx.header("host") or "127.0.0.1"
    root.append(leaf("Location", f"http://{host}/{bucket.name}/{url_encode_if(upload.key, True)}"))
    root.append(leaf("Bucket", bucket.name))
    root.append(leaf("Key", url_encode_if(upload.key, encode)))
    root.append(leaf("ETag", quoted_etag(record.etag)))
    headers = [("ETag", quoted_etag(record.etag)), ("x-oss-hash-crc64ecma", str(record.crc64)),
               *encryption_headers(record), *version_headers(bucket, version_id)]
    return xml_response(xmlio.render(root), headers=headers)


def abort_multipart_upload(ctx: Context) -> Response:
    ctx.bucket()
    upload = _upload(ctx)
    ctx.store.abort_upload(upload.upload_id)
    return Response(204)


def _int_param(ctx: Context, name: str, default: int, limit: int) -> int:
    text = ctx.query.get(name) or ""
    if not text:
        return default
    if not text.isdigit() or int(text) > limit:
        raise invalid_argument(f"Argument {name} is invalid.", name, text)
    return int(text)


def list_parts(ctx: Context) -> Response:
    bucket = ctx.bucket()
    upload = _upload(ctx)
    max_parts = _int_param(ctx, "max-parts", 1000, 1000)
    marker = _int_param(ctx, "part-number-marker", 0, MAX_PART_NUMBER)
    parts = [p for p in ctx.store.list_parts(upload.upload_id) if p.part_number > marker]
    page, truncated = parts[:max_parts], len(parts) > max_parts
    encode = _encoding(ctx)
    root = element("ListPartsResult", leaf("Bucket", bucket.name), leaf("Key", url_encode_if(upload.key, encode)),
                   leaf("UploadId", upload.upload_id), leaf("StorageClass", upload.template.storage_class),
                   leaf("PartNumberMarker", marker),
                   leaf("NextPartNumberMarker", page[-1].part_number if page else marker),
                   leaf("MaxParts", max_parts), leaf("IsTruncated", truncated))
    if encode:
        root.append(leaf("EncodingType", "url"))
    for part in page:
        root.append(element("Part", leaf("PartNumber", part.part_number), leaf("LastModified", iso8601(part.mtime)),
                            leaf("ETag", quoted_etag(part.etag)), leaf("HashCrc64ecma", part.crc64),
                            leaf("Size", part.size)))
    return xml_response(xmlio.render(root))


def list_multipart_uploads(ctx: Context) -> Response:
    bucket = ctx.bucket()
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix") or ""
    delimiter = ctx.query.get("delimiter") or ""
    key_marker = ctx.query.get("key-marker") or ""
    upload_id_marker = ctx.query.get("upload-id-marker") or ""
    max_uploads = _int_param(ctx, "max-uploads", 1000, 1000)
    raw_prefix, raw_delimiter, raw_marker = encode_key(prefix), encode_key(delimiter), encode_key(key_marker)
    uploads = sorted(ctx.store.list_uploads(bucket.name, raw_prefix), key=lambda u: (encode_key(u.key), u.upload_id))
    entries: list[tuple[bytes, UploadRecord | None]] = []
    seen: set[bytes] = set()
    truncated = False
    for upload in uploads:
        raw_key = encode_key(upload.key)
        if key_marker:
            if upload_id_marker:
                if raw_key < raw_marker or (raw_key == raw_marker and upload.upload_id <= upload_id_marker):
                    continue
            elif raw_key <= raw_marker:
                continue
        position = raw_key.find(raw_delimiter, len(raw_prefix)) if raw_delimiter else -1
        if position >= 0:
            common = raw_key[: position + len(raw_delimiter)]
            if common in seen or (key_marker and common <= raw_marker):
                continue  # emitted on an earlier page
            if len(entries) >= max_uploads:
                truncated = True
                break
            seen.add(common)
            entries.append((common, None))
            continue
        if len(entries) >= max_uploads:
            truncated = True
            break
        entries.append((raw_key, upload))
    next_key, next_id = "", ""
    if truncated and entries:
        last_key, last_upload = entries[-1]
        next_key = decode_key(last_key)
        next_id = last_upload.upload_id if last_upload else ""
    root = element("ListMultipartUploadsResult", leaf("Bucket", bucket.name))
    if encode:
        root.append(leaf("EncodingType", "url"))
    for tag, value in (("KeyMarker", url_encode_if(key_marker, encode)), ("UploadIdMarker", upload_id_marker),
                       ("NextKeyMarker", url_encode_if(next_key, encode)), ("NextUploadIdMarker", next_id),
                       ("Delimiter", url_encode_if(delimiter, encode)), ("Prefix", url_encode_if(prefix, encode)),
                       ("MaxUploads", max_uploads), ("IsTruncated", truncated)):
        root.append(leaf(tag, value))
    for raw_key, upload in entries:
        if upload is not None:
            item = element("Upload", leaf("Key", url_encode_if(upload.key, encode)),
                           leaf("UploadId", upload.upload_id),
                           leaf("StorageClass", upload.template.storage_class),
                           leaf("Initiated", iso8601(upload.initiated)))
            # Extension (not in OSS): the x-oss-meta-* given at Initiate, so a client can recognise the uploads
            # it started by a marker header (ossmount cleanup). SDKs ignore elements they do not know.
            for name, value in sorted(upload.template.meta.items()):
                item.append(element("UserMeta", leaf("Name", url_encode_if(name, encode)),
                                    leaf("Value", url_encode_if(value, encode))))
            root.append(item)
    for raw_key, upload in entries:
        if upload is None:
            root.append(element("CommonPrefixes", leaf("Prefix", url_encode_if(decode_key(raw_key), encode))))
    return xml_response(xmlio.render(root))
