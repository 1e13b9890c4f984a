"""Service- and bucket-level operations: buckets, listings, versioning config (oss-api.md §2.4, §2.5)."""

from __future__ import annotations

import base64
import binascii
import functools
from urllib.parse import unquote

from . import xmlio
from .common import (Context, STORAGE_CLASSES, bucket_acl_from, invalid_argument, iso8601, quoted_etag,
                     restore_header, xml_response)
from .errors import OssError
from .listing import ListingPage, list_current
from .model import Response
from .routing import is_valid_bucket_name
from .store import ObjectRow, decode_key, encode_key
from .xmlio import element, leaf, leaf_xml, url_encode_if

_TOKEN_PREFIX = b"ossmount-v2:"


def _host(ctx: Context) -> str:
    return ctx.header("host") or "127.0.0.1"


def _location(ctx: Context) -> str:
    return f"oss-{ctx.core.region}"


def _owner(owner: str) -> xmlio.ET.Element:
    return element("Owner", leaf("ID", owner), leaf("DisplayName", owner))


def put_bucket(ctx: Context) -> Response:
    name = ctx.bucket_name
    if not is_valid_bucket_name(name):
        raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.", extra=[("BucketName", name)])
    storage_class = xmlio.parse_create_bucket(ctx.body_bytes()) or "Standard"
    if storage_class not in STORAGE_CLASSES:
        raise invalid_argument("Invalid storage class.", "StorageClass", storage_class)
    acl = bucket_acl_from(ctx)
    existing = ctx.store.get_bucket(name)
    if existing is not None:
        if ctx.principal is None or existing.owner == ctx.principal:
            if ctx.header("x-oss-acl"):
                ctx.store.set_bucket_acl(name, acl)
            return Response(200, [("Location", "/" + name)])
        raise OssError(409, "BucketAlreadyExists", "The requested bucket name is not available.",
                       ec="0015-00000104", extra=[("BucketName", name)])
    ctx.store.create_bucket(name, ctx.owner_id(), ctx.now, storage_class, acl)
    return Response(200, [("Location", "/" + name)])


def delete_bucket(ctx: Context) -> Response:
    ctx.bucket()
    if not ctx.store.delete_bucket(ctx.bucket_name):
        raise OssError(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.",
                       ec="0015-00000301", extra=[("BucketName", ctx.bucket_name)])
    return Response(204)


def _max_keys(ctx: Context, name: str = "max-keys", default: int = 100, limit: int = 1000) -> int:
    text = ctx.query.get(name) or ""
    if not text:
        return default
    # ASCII digits only: int() also takes other scripts' digits, '_' separators, '+' and surrounding whitespace
    digits = text[1:] if text.startswith("-") else text
    try:
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(text)
        value = int(text)
    except ValueError:
        raise invalid_argument(f"Argument {name} is invalid.", name, text) from None
    if value < 0 or value > limit:
        raise invalid_argument(f"Argument {name} must be between 0 and {limit}.", name, text)
    return value


def list_buckets(ctx: Context) -> Response:
    prefix = ctx.query.get("prefix") or ""
    marker = ctx.query.get("marker") or ""
    max_keys = _max_keys(ctx)
    buckets = [b for b in ctx.store.list_buckets()
               if b.name.startswith(prefix) and b.name > marker
               and (ctx.principal is None or b.owner == ctx.principal)]
    page, truncated = buckets[:max_keys], len(buckets) > max_keys
    owner = ctx.owner_id()
    items = [
        element("Bucket", leaf("CreationDate", iso8601(b.created)), leaf("ExtranetEndpoint", _host(ctx)),
                leaf("IntranetEndpoint", _host(ctx)), leaf("Location", _location(ctx)), leaf("Name", b.name),
                leaf("Region", ctx.core.region), leaf("StorageClass", b.storage_class))
        for b in page
    ]
    root = element("ListAllMyBucketsResult", _owner(owner))
    if prefix or marker or ctx.query.get("max-keys"):
        root.append(leaf("Prefix", prefix))
        root.append(leaf("Marker", marker))
        root.append(leaf("MaxKeys", max_keys))
        root.append(leaf("IsTruncated", truncated))
        if truncated:
            root.append(leaf("NextMarker", page[-1].name))
    root.append(element("Buckets", *items))
    return xml_response(xmlio.render(root))


def get_bucket_info(ctx: Context) -> Response:
    bucket = ctx.bucket()
    info = element(
        "Bucket",
        leaf("AccessMonitor", "Disabled"),
        leaf("CreationDate", iso8601(bucket.created)),
        leaf("ExtranetEndpoint", _host(ctx)),
        leaf("IntranetEndpoint", _host(ctx)),
        leaf("Location", _location(ctx)),
        leaf("StorageClass", bucket.storage_class),
        leaf("TransferAcceleration", "Disabled"),
        leaf("CrossRegionReplication", "Disabled"),
        leaf("DataRedundancyType", "LRS"),
        leaf("Name", bucket.name),
        leaf("ResourceGroupId", "rg-default"),
        _owner(bucket.owner),
        element("AccessControlList", leaf("Grant", bucket.acl)),
        leaf("Comment", ""),
        element("ServerSideEncryptionRule", leaf("SSEAlgorithm", "None")),
        element("BucketPolicy", leaf("LogBucket", ""), leaf("LogPrefix", "")),
    )
    if bucket.versioning:
        info.append(leaf("Versioning", bucket.versioning))
    return xml_response(xmlio.render(element("BucketInfo", info)))


def get_bucket_stat(ctx: Context) -> Response:
    ctx.bucket()
    stat = ctx.store.bucket_stat(ctx.bucket_name)
    root = element(
        "BucketStat",
        leaf("Storage", stat["storage"]),
        leaf("ObjectCount", stat["count"]),
        leaf("MultipartUploadCount", stat["uploads"]),
        leaf("LiveChannelCount", 0),
        leaf("LastModifiedTime", int(stat["last_modified"])),
    )
    names = {"Standard": "Standard", "IA": "InfrequentAccess", "Archive": "Archive", "ColdArchive": "ColdArchive",
             "DeepColdArchive": "DeepColdArchive"}
    for storage_class, prefix in names.items():
        size, count = stat["by_class"].get(storage_class, (0, 0))
        root.append(leaf(f"{prefix}Storage", size))
        root.append(leaf(f"{prefix}RealStorage", size))
        root.append(leaf(f"{prefix}ObjectCount", count))
    root.append(leaf("DeleteMarkerCount", stat["delete_markers"]))
    return xml_response(xmlio.render(root))


def get_bucket_location(ctx: Context) -> Response:
    ctx.bucket()
    return xml_response(xmlio.render(leaf("LocationConstraint", _location(ctx))))


def head_bucket(ctx: Context) -> Response:
    """HEAD on a bucket: 200 if it exists and the caller may use it (S3 HeadBucket; s3fs and rclone probe with it)."""
    ctx.bucket()
    return Response(200, [("x-oss-bucket-region", ctx.core.region)])


def list_live_channel(ctx: Context) -> Response:
    ctx.bucket()
    root = element("ListLiveChannelResult", leaf("Prefix", ""), leaf("Marker", ""), leaf("MaxKeys", 100),
                   leaf("IsTruncated", False))
    return xml_response(xmlio.render(root))


def put_bucket_versioning(ctx: Context) -> Response:
    ctx.bucket()
    status = xmlio.parse_versioning(ctx.body_bytes())
    ctx.store.set_versioning(ctx.bucket_name, status)
    return Response(200)


def get_bucket_versioning(ctx: Context) -> Response:
    bucket = ctx.bucket()
    root = element("VersioningConfiguration")
    if bucket.versioning:
        root.append(leaf("Status", bucket.versioning))
    return xml_response(xmlio.render(root))


def _encoding(ctx: Context) -> bool:
    value = ctx.query.get("encoding-type") or ""
    if value and value != "url":
        raise invalid_argument("Invalid encoding type.", "encoding-type", value)
    return value == "url"


def contents_xml(ctx: Context, row: ObjectRow, encode: bool, with_owner: bool) -> str:
    """A listing entry for a current object (a <Contents> element, rendered: see xmlio.render's fragments)."""
    record = row.record
    restore = restore_header(record, ctx.now, ctx.core.restore_delay)
    if restore is None:  # the entry depends on nothing but these values: rendered once for repeated listings
        return _contents_fragment(row.key, encode, with_owner, record.mtime, record.etag, record.type, record.size,
                                  record.storage_class, record.owner)
    return _contents_fragment.__wrapped__(row.key, encode, with_owner, record.mtime, record.etag, record.type,
                                          record.size, record.storage_class, record.owner, restore)


# Sized like store._listed_record (the directories the benchmark lists again and again); ~300 bytes an entry.
@functools.lru_cache(maxsize=32768)
def _contents_fragment(key: str, encode: bool, with_owner: bool, mtime: float, etag: str, object_type: str,
                       size: int, storage_class: str, owner: str, restore: str | None = None) -> str:
    parts = ["<Contents>", leaf_xml("Key", url_encode_if(key, encode)),
             leaf_xml("LastModified", iso8601(mtime)), leaf_xml("ETag", quoted_etag(etag)),
             leaf_xml("Type", object_type), leaf_xml("Size", size), leaf_xml("StorageClass", storage_class)]
    if with_owner:
        parts += ["<Owner>", leaf_xml("ID", owner), leaf_xml("DisplayName", owner), "</Owner>"]
    if restore is not None:
        parts.append(leaf_xml("RestoreInfo", restore))
    parts.append("</Contents>")
    return "".join(parts)


def _listing_response(ctx: Context, root: xmlio.ET.Element, page: ListingPage, encode: bool, *,
                      with_owner: bool) -> Response:
    """Finish a ListObjects/ListObjectsV2 result: the page's objects, then its common prefixes (rendered as strings:
    a page of 1000 entries as ElementTree elements cost ~20 ms)."""
    fragments = [contents_xml(ctx, row, encode, with_owner) for _raw_key, row in page.objects]
    fragments += [f"<CommonPrefixes>{leaf_xml('Prefix', url_encode_if(decode_key(common), encode))}</CommonPrefixes>"
                  for common in page.common_prefixes]
    return xml_response(xmlio.render(root, fragments))


def list_objects(ctx: Context) -> Response:
    bucket = ctx.bucket()
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix") or ""
    delimiter = ctx.query.get("delimiter") or ""
    marker = ctx.query.get("marker") or ""
    max_keys = _max_keys(ctx)
    page = list_current(ctx.store, bucket.name, encode_key(prefix), encode_key(delimiter),
                        encode_key(marker) if marker else None, max_keys)
    root = element(
        "ListBucketResult",
        leaf("Name", bucket.name),
        leaf("Prefix", url_encode_if(prefix, encode)),
        leaf("Marker", url_encode_if(marker, encode)),
        leaf("MaxKeys", max_keys),
        leaf("Delimiter", url_encode_if(delimiter, encode)),
    )
    if encode:
        root.append(leaf("EncodingType", "url"))
    root.append(leaf("IsTruncated", page.truncated))
    if page.truncated and page.last_item is not None:
        root.append(leaf("NextMarker", url_encode_if(decode_key(page.last_item), encode)))
    return _listing_response(ctx, root, page, encode, with_owner=True)


def encode_token(raw_key: bytes) -> str:
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + raw_key).decode("ascii")


def decode_token(token: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if not raw.startswith(_TOKEN_PREFIX):
        raise invalid_argument("The continuation token provided is incorrect", "continuation-token", token)
    return raw[len(_TOKEN_PREFIX):]


def list_objects_v2(ctx: Context) -> Response:
    bucket = ctx.bucket()
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix") or ""
    delimiter = ctx.query.get("delimiter") or ""
    start_after = ctx.query.get("start-after") or ""
    token = ctx.query.get("continuation-token") or ""
    fetch_owner = (ctx.query.get("fetch-owner") or "").lower() == "true"
    max_keys = _max_keys(ctx)
    after: bytes | None = encode_key(start_after) if start_after else None
    if token:
        token_key = decode_token(unquote(token) if "%" in token else token)
        after = max(after, token_key) if after is not None else token_key
    page = list_current(ctx.store, bucket.name, encode_key(prefix), encode_key(delimiter), after, max_keys)
    root = element(
        "ListBucketResult",
        leaf("Name", bucket.name),
        leaf("Prefix", url_encode_if(prefix, encode)),
    )
    if start_after:
        root.append(leaf("StartAfter", url_encode_if(start_after, encode)))
    if token:
        root.append(leaf("ContinuationToken", token))
    root.append(leaf("MaxKeys", max_keys))
    root.append(leaf("Delimiter", url_encode_if(delimiter, encode)))
    if encode:
        root.append(leaf("EncodingType", "url"))
    root.append(leaf("IsTruncated", page.truncated))
    if page.truncated and page.last_item is not None:
        root.append(leaf("NextContinuationToken", encode_token(page.last_item)))
    root.append(leaf("KeyCount", len(page.objects) + len(page.common_prefixes)))
    return _listing_response(ctx, root, page, encode, with_owner=fetch_owner)


def list_object_versions(ctx: Context) -> Response:
    bucket = ctx.bucket()
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix") or ""
    delimiter = ctx.query.get("delimiter") or ""
    key_marker = ctx.query.get("key-marker") or ""
    version_marker = ctx.query.get("version-id-marker") or ""
    max_keys = _max_keys(ctx)
    raw_prefix, raw_delimiter = encode_key(prefix), encode_key(delimiter)
    raw_marker = encode_key(key_marker) if key_marker else None

    entries: list[tuple[bytes, ObjectRow | None, bytes | None]] = []  # (key, row, common prefix)
    seen_prefixes: set[bytes] = set()
    passed_version_marker = False
    truncated = False
    for raw_key, row in ctx.store.iter_versions(bucket.name, raw_marker, raw_prefix):
        if raw_marker is not None and raw_key == raw_marker:
            # key-marker alone excludes the whole key; with version-id-marker, resume after that version
            if not version_marker:
                continue
            if not passed_version_marker:
                passed_version_marker = (row.version_id or "null") == version_marker
                continue
        position = raw_key.find(raw_delimiter, len(raw_prefix)) if raw_delimiter else -1
        if position >= 0:
            common = raw_key[: position + len(raw_delimiter)]
            if common in seen_prefixes or (raw_marker is not None and common == raw_marker):
                continue
            if len(entries) >= max_keys:
                truncated = True
                break
            seen_prefixes.add(common)
            entries.append((common, None, common))
            continue
        if len(entries) >= max_keys:
            truncated = True
            break
        entries.append((raw_key, row, None))

    root = element(
        "ListVersionsResult",
        leaf("Name", bucket.name),
        leaf("Prefix", url_encode_if(prefix, encode)),
        leaf("KeyMarker", url_encode_if(key_marker, encode)),
        leaf("VersionIdMarker", version_marker),
        leaf("MaxKeys", max_keys),
        leaf("Delimiter", url_encode_if(delimiter, encode)),
    )
    if encode:
        root.append(leaf("EncodingType", "url"))
    root.append(leaf("IsTruncated", truncated))
    if truncated and entries:
        last_key, last_row, _ = entries[-1]
        root.append(leaf("NextKeyMarker", url_encode_if(decode_key(last_key), encode)))
        root.append(leaf("NextVersionIdMarker", (last_row.version_id or "null") if last_row else ""))
    for raw_key, row, common in entries:
        if row is None:
            continue
        key_text = url_encode_if(decode_key(raw_key), encode)
        version_id = row.version_id or "null"
        if row.delete_marker:
            root.append(element("DeleteMarker", leaf("Key", key_text), leaf("VersionId", version_id),
                                leaf("IsLatest", row.is_latest), leaf("LastModified", iso8601(row.record.mtime)),
                                _owner(row.record.owner)))
        else:
            record = row.record
            node = element("Version", leaf("Key", key_text), leaf("VersionId", version_id),
                           leaf("IsLatest", row.is_latest), leaf("LastModified", iso8601(record.mtime)),
                           leaf("ETag", quoted_etag(record.etag)), leaf("Type", record.type),
                           leaf("Size", record.size), leaf("StorageClass", record.storage_class),
                           _owner(record.owner))
            restore = restore_header(record, ctx.now, ctx.core.restore_delay)
            if restore is not None:
                node.append(leaf("RestoreInfo", restore))
            root.append(node)
    for _, row, common in entries:
        if common is not None:
            root.append(_common_prefix_element(common, encode))
    return xml_response(xmlio.render(root))


def get_bucket_acl(ctx: Context) -> Response:
    """The bucket's canned ACL; access.py says what it grants to unsigned requests."""
    bucket = ctx.bucket()
    root = element("AccessControlPolicy", _owner(bucket.owner), element("AccessControlList", leaf("Grant", bucket.acl)))
    return xml_response(xmlio.render(root))


def put_bucket_acl(ctx: Context) -> Response:
    ctx.bucket()
    ctx.store.set_bucket_acl(ctx.bucket_name, bucket_acl_from(ctx))
    return Response(200)
