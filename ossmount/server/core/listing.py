"""The ListObjects paging engine: prefix, delimiter roll-up, exclusive marker, max-keys counting
keys plus common prefixes (oss-api.md §2.5). Each common prefix costs one index seek past it, so
listing a directory of 10k+ keys with a delimiter stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field

from .store import ObjectRow, Store, prefix_successor

_BATCH = 256


@dataclass
class ListingPage:
    """One page: objects and common prefixes in key order (interleaved in `order`)."""

    objects: list[tuple[bytes, ObjectRow]] = field(default_factory=list)
    common_prefixes: list[bytes] = field(default_factory=list)
    truncated: bool = False
    last_item: bytes | None = None  # the last key or common prefix emitted (NextMarker)


def common_prefix_of(raw_key: bytes, prefix: bytes, delimiter: bytes) -> bytes | None:
    """`prefix + X + delimiter` when the key rolls up into a common prefix, else None."""
    if not delimiter:
        return None
    position = raw_key.find(delimiter, len(prefix))
    if position < 0:
        return None
    return raw_key[: position + len(delimiter)]


def list_current(store: Store, bucket: str, prefix: bytes, delimiter: bytes, after: bytes | None,
                 max_keys: int) -> ListingPage:
    """List current objects of `bucket` after the exclusive marker `after`."""
    page = ListingPage()
    upper = prefix_successor(prefix) if prefix else None
    lower, inclusive = prefix, True
    if after is not None and after >= prefix:
        lower, inclusive = after, False
        if after.startswith(prefix) and common_prefix_of(after, prefix, delimiter) == after:
            successor = prefix_successor(after)
            if successor is None:
                return page
            lower, inclusive = successor, True
    count = 0
    while True:
        # with a delimiter most of a batch may be skipped by the next seek, so fetch fewer rows
        batch = store.current_batch(bucket, lower, inclusive, upper, _BATCH // 8 if delimiter else _BATCH)
        if not batch:
            return page
        restarted = False
        for raw_key, raw_row in batch:
            if count >= max_keys:
                page.truncated = True
                return page
            rolled_up = common_prefix_of(raw_key, prefix, delimiter)
            if rolled_up is not None:
                page.common_prefixes.append(rolled_up)
                page.last_item = rolled_up
                count += 1
                successor = prefix_successor(rolled_up)
                if successor is None:
                    return page
                lower, inclusive = successor, True
                restarted = True
                break
            page.objects.append((raw_key, store.row_from(raw_row)))
            page.last_item = raw_key
            count += 1
            lower, inclusive = raw_key, False
        if not restarted and len(batch) < (_BATCH // 8 if delimiter else _BATCH):
            return page
