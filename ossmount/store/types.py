"""Value types and typed errors of the object-store client (`ossmount.store`).

Every layer above the store sees only these: no oss2 or HTTP type leaks out of `ossmount/store/`.
OSS error codes become exceptions in exactly one place (`ossmount/store/client.py`); exceptions
become errno in exactly one place (`ossmount/fs/errors.py` via `StoreError.errno`).
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object.

    From HeadObject every field is filled. From a listing, `content_type` is None and `meta` is empty
    (`from_listing` is True): callers that need mode/uid/gid must HEAD.
    """

    key: str
    size: int
    etag: str
    mtime: float  # Last-Modified as epoch seconds
    content_type: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)  # x-oss-meta-* without the prefix, lowercase names
    object_type: str = "Normal"  # Normal | Multipart | Appendable | Symlink
    storage_class: str = "Standard"
    restore: str | None = None  # the x-oss-restore header, if any
    crc64: int | None = None
    from_listing: bool = False
    version_id: str | None = None  # x-oss-version-id, set only in a versioning-enabled (or suspended) bucket
    answered_at: float = 0.0  # the Date header of the answer that carried it (HEAD), epoch seconds; 0: unknown
    # The standard HTTP headers the object carries (CARRIED_HEADERS, lowercase names), from HeadObject: a
    # CopyObject with REPLACE (chmod, chown, utimens, xattrs, rename) sends them again so they are not lost.
    http_headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def listed(cls, key: str, size: int, etag: str, mtime: float, object_type: str, storage_class: str,
               restore: str | None) -> "ObjectInfo":
        """An entry of a LIST page (`from_listing`), built without the frozen dataclass's per-field setattr: a page
        of 1,000 entries is the most built at once (issue 11, `ls -l` of 10,000 objects), and this is a third of
        parsing it. The same value as `ObjectInfo(key, size, etag, mtime, object_type=..., storage_class=...,
        restore=..., from_listing=True)`."""
        info = object.__new__(cls)
        info.__dict__.update(key=key, size=size, etag=etag, mtime=mtime, content_type=None, meta={},
                             object_type=object_type, storage_class=storage_class, restore=restore, crc64=None,
                             from_listing=True, version_id=None, answered_at=0.0, http_headers={})
        return info


# Headers an object keeps until a write replaces them, and that CopyObject with `x-oss-metadata-directive:
# REPLACE` would drop unless sent again (OSS CopyObject doc; ossfs/s3fs send every header of the source's HEAD).
CARRIED_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires")


@dataclass(frozen=True)
class ListPage:
    """One page of ListObjects(V2): objects and common prefixes (directory names ending in the delimiter)."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    next_token: str | None  # continuation token (V2) or next marker (V1); None when complete


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    etag: str
    size: int
    crc64: int | None = None


class StoreError(Exception):
    """An OSS request failed. `code` is the OSS error code (or a local one such as 'ConnectionError')."""

    errno: int = _errno.EIO
    retryable: bool = False

    def __init__(self, message: str, *, code: str = "", status: int = 0, request_id: str = "", key: str = "",
                 retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.key = key
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it did
        self.made_progress = False  # a retry resumes where this attempt got to (store.retry rule 3)

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.code:
            parts.append(f"[{self.code}{' ' + str(self.status) if self.status else ''}]")
        if self.request_id:
            parts.append(f"request-id {self.request_id}")
        return " ".join(parts)


class NoSuchKey(StoreError):
    errno = _errno.ENOENT


class NoSuchBucket(StoreError):
    """The bucket is gone (deleted while mounted, or never existed). Every operation is EIO: a missing bucket
    must never look like an empty directory or a missing file."""

    errno = _errno.EIO


class PreconditionFailed(StoreError):
    """412: an If-Match (or x-oss-copy-source-if-match) condition failed: the object is no longer the version
    the caller opened. The filesystem reports EIO rather than mixing two versions."""

    errno = _errno.EIO


def version_gone(error: BaseException) -> bool:
    """True when a request pinned to one version of an object (If-Match, x-oss-copy-source-if-match,
    versionId) failed because that version no longer exists: it was replaced (412) or deleted (404)."""
    return isinstance(error, PreconditionFailed) or (
        isinstance(error, NoSuchKey) and error.code in ("NoSuchKey", "NoSuchVersion"))


class NoSuchUpload(StoreError):
    """The multipart upload does not exist (any more): completed, aborted, or never started (404 NoSuchUpload)."""


@dataclass(frozen=True)
class MultipartUpload:
    """One incomplete multipart upload as ListMultipartUploads shows it. `meta` holds the x-oss-meta-* (without the
    prefix) given at InitiateMultipartUpload when the listing carries them (`ossmount serve` does, as an extension;
    Alibaba Cloud OSS does not, so it is empty there)."""

    key: str
    upload_id: str
    initiated: float  # epoch seconds
    meta: dict[str, str] = field(default_factory=dict)


class AccessDenied(StoreError):
    """AccessDenied and every authentication refusal (InvalidAccessKeyId, SignatureDoesNotMatch, ...)."""

    errno = _errno.EACCES


class InvalidObjectState(StoreError):
    """Archive/ColdArchive object not restored: reads need RestoreObject first (ossfs maps this to EREMOTE)."""

    errno = _errno.EREMOTE


class AlreadyExists(StoreError):
    """FileAlreadyExists from x-oss-forbid-overwrite."""

    errno = _errno.EEXIST


class InvalidArgument(StoreError):
    errno = _errno.EINVAL


class EntityTooLarge(StoreError):
    errno = _errno.EFBIG


class NameTooLong(StoreError):
    errno = _errno.ENAMETOOLONG


class TransientError(StoreError):
    """5xx, throttling, connection resets and timeouts: worth retrying."""

    errno = _errno.EIO
    retryable = True


class Throttled(TransientError):
    """503 (ServiceUnavailable, SlowDown, QpsLimitExceeded) or 429: the service asks us to slow down. Retried until
    the deadline without using up an attempt (store.retry rule 3), honouring `retry_after`."""


class EndpointUnreachable(TransientError):
    """The endpoint refused the connection, did not resolve, or timed out."""


class ChecksumMismatch(TransientError):
    """The CRC-64 OSS computed for an upload differs from ours: the body was damaged in transit."""
