"""What the canned ACLs grant to everyone (unsigned requests, and keys that do not own the bucket), sans-IO.

Rules (OSS "Bucket ACL" and "Object ACL" docs):
  1. The bucket owner's signed requests may do everything (common.Context.bucket).
  2. Anyone else is judged by ACLs. The object's ACL decides for that object unless it is "default",
     in which case the bucket's ACL does: "public-read" lets anyone read, "public-read-write" read and write,
     "private" nothing.
  3. Reading covers GetObject, HeadObject, GetObjectMeta and GetSymlink of an object, and listing the bucket
     (ListObjects V1/V2, which follows the bucket ACL). Writing covers every object write and delete,
     multipart calls and RestoreObject; CopyObject also needs the source to be readable.
  4. Bucket configuration (ACL, versioning, info, stat, location, deleting the bucket) is the owner's alone.

`ossmount serve --anonymous` skips these rules: unsigned requests then act as the owner (local use, tests).
"""

from __future__ import annotations

from typing import Callable

OBJECT_READ_OPS = frozenset({"GetObject", "HeadObject", "GetObjectMeta", "GetSymlink"})
BUCKET_READ_OPS = frozenset({"ListObjects", "ListObjectsV2"})
OBJECT_WRITE_OPS = frozenset({
    "PutObject", "CopyObject", "DeleteObject", "AppendObject", "PutSymlink", "RestoreObject",
    "InitiateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
    "AbortMultipartUpload", "ListParts",
})
BUCKET_WRITE_OPS = frozenset({"DeleteMultipleObjects", "ListMultipartUploads"})

_READERS = ("public-read", "public-read-write")
_WRITERS = ("public-read-write",)


def effective_acl(bucket_acl: str, object_acl: str | None) -> str:
    """The canned ACL that governs an object: its own unless "default" (or unknown: no object yet)."""
    return bucket_acl if object_acl in (None, "", "default") else object_acl


def may_read(bucket_acl: str, object_acl: str | None = None) -> bool:
    return effective_acl(bucket_acl, object_acl) in _READERS


def may_write(bucket_acl: str, object_acl: str | None = None) -> bool:
    return effective_acl(bucket_acl, object_acl) in _WRITERS


def anonymous_allowed(op: str, bucket_acl: str, object_acl: Callable[[str], str | None], key: str) -> bool:
    """Whether a request of operation `op` on `key` from anyone passes the ACLs (rules 2-4; the caller checks a
    copy's source with `may_read`). `object_acl(key)` gives the stored ACL of an existing object, or None."""
    if op in OBJECT_READ_OPS:
        return may_read(bucket_acl, object_acl(key))
    if op in BUCKET_READ_OPS:
        return may_read(bucket_acl)
    if op in OBJECT_WRITE_OPS:
        return may_write(bucket_acl, object_acl(key))
    if op in BUCKET_WRITE_OPS:
        return may_write(bucket_acl)
    return False
