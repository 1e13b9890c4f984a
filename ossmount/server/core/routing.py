"""Request addressing and operation classification (oss-api.md §2.1), pure and cheap.

`parse_target` splits the raw request-target into bucket, key and query; `classify_operation` names
the OSS operation from method, key, sub-resources and a few headers. Neither raises: anything
unparseable is the operation "Unknown" so the front end can still count it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

ADMIN_PREFIX = "/_ossmount/admin/"

_BUCKET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Route:
    """What a request addresses: the OSS operation name, bucket ("" for service level) and key ("" for
    bucket level)."""

    op: str
    bucket: str
    key: str
    # The parsed target (ServerCore.classify), handed back to ServerCore.handle so it is parsed once per request.
    target: "Target | None" = field(default=None, compare=False, repr=False)


@dataclass
class Target:
    """A parsed request-target: bucket and decoded key, plus the decoded query in order and as a dict
    (first value wins; `k` and `k=` both give "")."""

    bucket: str
    key: str
    query: dict[str, str] = field(default_factory=dict)
    query_items: list[tuple[str, str]] = field(default_factory=list)
    virtual_hosted: bool = False


def is_valid_bucket_name(name: str) -> bool:
    """OSS bucket names: 3-63 chars of lowercase letters, digits and '-', not starting/ending with '-'."""
    return bool(_BUCKET_NAME_RE.match(name))


def parse_query(query: str) -> list[tuple[str, str]]:
    """Decode a query string into (name, value) pairs in order; `k` and `k=` both give ''.

    `+` decodes to a space: oss2 sends its query through requests, which form-encodes (a space becomes `+`,
    a plus `%2B`) and signs the unencoded value. Bytes that are not UTF-8 survive as surrogates, so
    re-encoding with surrogateescape gives them back for signature checks."""
    items = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        items.append((_decode_form_component(name), _decode_form_component(value)))
    return items


def _decode_form_component(raw: str) -> str:
    return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8", "surrogateescape")


def _host_without_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


@functools.lru_cache(maxsize=256)
def _is_ip(host: str) -> bool:
    """Cached: every request asks this of its Host, and clients send a handful of hosts."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def bucket_from_host(host: str | None, service_hosts: tuple[str, ...] = ()) -> str | None:
    """The bucket named by a virtual-hosted Host header, or None for path style."""
    if not host:
        return None
    name = _host_without_port(host)
    if _is_ip(name) or name == "localhost" or name in service_hosts:
        return None
    for suffix in ("localhost", *service_hosts):
        if name.endswith("." + suffix):
            label = name[: -len(suffix) - 1]
            if "." not in label:
                return label
    return None


def parse_target(target: str, host: str | None, service_hosts: tuple[str, ...] = ()) -> Target:
    """Split a raw request-target into bucket, decoded key and query (oss-api.md §2.1)."""
    raw_path, _, raw_query = target.partition("?")
    items = parse_query(raw_query)
    query: dict[str, str] = {}
    for name, value in items:
        query.setdefault(name, value)
    if raw_path.startswith("http://") or raw_path.startswith("https://"):
        raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
    virtual_bucket = bucket_from_host(host, service_hosts)
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    if virtual_bucket is not None:
        return Target(virtual_bucket, unquote(path), query, items, True)
    bucket_part, slash, key_part = path.partition("/")
    return Target(unquote(bucket_part), unquote(key_part) if slash else "", query, items, False)


_BUCKET_GET_SUBRESOURCES = {
    "versioning": "GetBucketVersioning",
    "versions": "ListObjectVersions",
    "uploads": "ListMultipartUploads",
    "bucketInfo": "GetBucketInfo",
    "stat": "GetBucketStat",
    "location": "GetBucketLocation",
    "live": "ListLiveChannel",
    "acl": "GetBucketAcl",
    "cors": "GetBucketCors",
    "lifecycle": "GetBucketLifecycle",
    "website": "GetBucketWebsite",
    "referer": "GetBucketReferer",
    "logging": "GetBucketLogging",
    "tagging": "GetBucketTags",
    "encryption": "GetBucketEncryption",
    "policy": "GetBucketPolicy",
}

_BUCKET_PUT_SUBRESOURCES = {
    "versioning": "PutBucketVersioning",
    "acl": "PutBucketAcl",
    "cors": "PutBucketCors",
    "lifecycle": "PutBucketLifecycle",
    "website": "PutBucketWebsite",
    "referer": "PutBucketReferer",
    "logging": "PutBucketLogging",
    "tagging": "PutBucketTags",
    "encryption": "PutBucketEncryption",
    "policy": "PutBucketPolicy",
}

# Object operations named by a subresource, checked in order (a request may carry several).
_OBJECT_GET_SUBRESOURCES = {
    "symlink": "GetSymlink",
    "uploadId": "ListParts",
    "acl": "GetObjectAcl",
    "tagging": "GetObjectTagging",
}

_OBJECT_DELETE_SUBRESOURCES = {
    "uploadId": "AbortMultipartUpload",
    "tagging": "DeleteObjectTagging",
}

_OBJECT_POST_SUBRESOURCES = {
    "uploads": "InitiateMultipartUpload",
    "uploadId": "CompleteMultipartUpload",
    "append": "AppendObject",
    "restore": "RestoreObject",
}


def _by_subresource(query: dict[str, str], table: dict[str, str], default: str) -> str:
    """The operation of the first subresource of `table` present in `query`, else `default`."""
    for name, op in table.items():
        if name in query:
            return op
    return default


def classify_operation(method: str, target: Target, headers: dict[str, str]) -> str:
    """The OSS operation name for a request (or "Unknown")."""
    q = target.query
    method = method.upper()
    if not target.bucket:
        return "ListBuckets" if method == "GET" else "Unknown"
    if not target.key:
        if method == "GET":
            listing = "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
            return _by_subresource(q, _BUCKET_GET_SUBRESOURCES, listing)
        if method == "PUT":
            return _by_subresource(q, _BUCKET_PUT_SUBRESOURCES, "PutBucket")
        if method == "DELETE":
            return "DeleteBucket" if not q else "Unknown"
        if method == "POST" and "delete" in q:
            return "DeleteMultipleObjects"
        if method == "HEAD":
            return "HeadBucket"
        return "Unknown"
    copy = "x-oss-copy-source" in headers
    if method == "PUT":
        if "symlink" in q:
            return "PutSymlink"
        if "partNumber" in q and "uploadId" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        if "acl" in q:
            return "PutObjectAcl"
        if "tagging" in q:
            return "PutObjectTagging"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return _by_subresource(q, _OBJECT_GET_SUBRESOURCES, "GetObject")
    if method == "HEAD":
        return "GetObjectMeta" if "objectMeta" in q else "HeadObject"
    if method == "DELETE":
        return _by_subresource(q, _OBJECT_DELETE_SUBRESOURCES, "DeleteObject")
    if method == "POST":
        return _by_subresource(q, _OBJECT_POST_SUBRESOURCES, "Unknown")
    return "Unknown"
