"""The object-store client: `ObjectStore` (async, over oss2) and the value and error types it speaks."""

from ossmount.store.client import ObjectStore, StoreStatistics, error_from_oss
from ossmount.store.retry import RetryPolicy
from ossmount.store.types import (
    AccessDenied,
    AlreadyExists,
    ChecksumMismatch,
    EndpointUnreachable,
    EntityTooLarge,
    InvalidArgument,
    InvalidObjectState,
    ListPage,
    NameTooLong,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    PartInfo,
    PreconditionFailed,
    StoreError,
    Throttled,
    TransientError,
)

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "ChecksumMismatch",
    "EndpointUnreachable",
    "EntityTooLarge",
    "InvalidArgument",
    "InvalidObjectState",
    "ListPage",
    "NameTooLong",
    "NoSuchBucket",
    "NoSuchKey",
    "ObjectInfo",
    "ObjectStore",
    "PartInfo",
    "PreconditionFailed",
    "RetryPolicy",
    "StoreError",
    "StoreStatistics",
    "Throttled",
    "TransientError",
    "error_from_oss",
]
