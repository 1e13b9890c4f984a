"""Metadata caches: stat cache, negative cache and directory-listing cache (all cachetools TTLCaches).

Rules (ossfs names): `max_stat_cache_size` bounds the stat and listing caches (0 disables every cache),
`stat_cache_expire` is the time-to-live of every entry, so a change made by another client becomes
visible at most that many seconds later. The negative cache ("this path does not exist") is only used
with `enable_noobj_cache`. Local changes invalidate the affected entries and their parent listings.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from cachetools import TTLCache

from ossmount.store.types import ObjectInfo


@dataclass(eq=False)
class ListingWatch:
    """A directory being listed from OSS (`MetadataCache.watching`): `spoiled` once this mount changes it."""

    path: str
    spoiled: bool = False


@dataclass(frozen=True)
class Node:
    """What a path is: its kind (an `attrs.EntryKind`), the object holding its metadata, and that object.

    `key` is the file's object key, a directory's `dir/` marker key, or None for an implicit directory
    (a prefix with no marker object). `info` is None when no object exists (implicit directory).
    `checked` is when (time.monotonic()) OSS last confirmed `info`: a HEAD, a listing, or this mount's own
    upload; an open re-checks an older one (close-to-open consistency, see handles.py).
    `attrs` memoizes the stat built from `info` (Namespace.attrs): a node never changes, so its attributes
    are built once however often the kernel asks (readdir, lookup, getattr).
    """

    kind: Any
    key: str | None
    info: ObjectInfo | None
    checked: float = 0.0
    attrs: Any = field(default=None, init=False, repr=False, compare=False)


class Listing:
    """A directory's entries by name. While cached it is kept coherent with this mount's own changes.

    `shadowed` names the directories hidden behind a file of the same name (ossmount.fs.names): removing
    that file makes the directory appear.
    `checked` is when (time.monotonic()) OSS returned it complete: a name missing from a listing confirmed
    within the open-check window does not exist (Namespace.resolve), with no request.
    `spoiled`: this mount changed the directory while OSS was asked for it (`MetadataCache.watching`), so the
    answer may miss that change: it is shown to the readdir that asked, never cached.
    """

    def __init__(self, entries: dict[str, Node], shadowed: set[str] | None = None, checked: float = 0.0,
                 spoiled: bool = False):
        self.entries = entries
        self.shadowed = shadowed or set()
        self.checked = checked
        self.spoiled = spoiled

    def sorted(self) -> list[tuple[str, Node]]:
        return sorted(self.entries.items())


class _Off(dict):
    """A cache that keeps nothing (size 0)."""

    def __setitem__(self, key, value) -> None:
        return None


class MetadataCache:
    """Path-keyed stat, negative and listing caches with one size bound and one TTL."""

    def __init__(self, *, max_size: int, ttl: float, negative: bool, timer: Callable[[], float] = time.monotonic):
        self.ttl = float(ttl)
        enabled = max_size > 0 and ttl > 0
        self._stat = TTLCache(maxsize=max_size, ttl=ttl, timer=timer) if enabled else _Off()
        self._listing = TTLCache(maxsize=max(1, max_size // 100), ttl=ttl, timer=timer) if enabled else _Off()
        self._negative = TTLCache(maxsize=max_size, ttl=ttl, timer=timer) if enabled and negative else _Off()
        # Hits and misses of `get`, `get_listing` and `is_known_missing`, for `ossmount stats` and metrics.
        self.stat_hits = self.stat_misses = self.listing_hits = self.listing_misses = self.negative_hits = 0
        # Told of every local change: a path, or None for "anything may have changed" (a tree, the bucket).
        self.on_change: Callable[[str | None], None] = lambda path: None
        self._watches: list[ListingWatch] = []  # directories being listed from OSS now

    def get(self, path: str) -> Node | None:
        node = self._stat.get(path)
        if node is None:
            self.stat_misses += 1
        else:
            self.stat_hits += 1
        return node

    def put(self, path: str, node: Node) -> None:
        self._negative.pop(path, None)
        self._stat[path] = node

    def is_known_missing(self, path: str) -> bool:
        if path in self._negative:
            self.negative_hits += 1
            return True
        return False

    def put_missing(self, path: str) -> None:
        self._stat.pop(path, None)
        self._negative[path] = True

    def get_listing(self, path: str) -> Listing | None:
        listing = self._listing.get(path)
        if listing is None:
            self.listing_misses += 1
        else:
            self.listing_hits += 1
        return listing

    def peek_listing(self, path: str) -> Listing | None:
        """`get_listing` without counting a hit or a miss (look-ahead bookkeeping, not an answer)."""
        return self._listing.get(path)

    def put_listing(self, path: str, listing: Listing) -> None:
        self._listing[path] = listing

    @contextlib.contextmanager
    def watching(self, path: str) -> Iterator[ListingWatch]:
        """Watch the directory `path` while its listing is asked from OSS: a local change meanwhile spoils the
        watch (an entry of `path` created, deleted, renamed or changed, `path` itself, a tree holding it, or
        everything), and a listing answered under a spoiled watch is not cached (it may predate the change:
        caching it would hide a name this mount created, or show one it deleted, for up to the TTL)."""
        watch = ListingWatch(path)
        self._watches.append(watch)
        try:
            yield watch
        finally:
            self._watches.remove(watch)

    def _changed(self, path: str | None) -> None:
        for watch in self._watches:
            if path is None or watch.path == path or parent_of(path) == watch.path or \
                    watch.path.startswith(path + "/"):
                watch.spoiled = True
        self.on_change(path)

    def put_local(self, path: str, node: Node) -> None:
        """This mount created or changed `path`: cache it and update the parent's cached listing."""
        self._changed(path)
        self.put(path, node)
        listing = self._listing.get(parent_of(path))
        if listing is not None:
            listing.entries[path.rpartition("/")[2]] = node

    def remove_local(self, path: str, *, shadowed: Node | None = None) -> None:
        """This mount deleted `path`: forget it and drop it from the parent's cached listing (where the
        directory it shadowed, if any, takes its place as `shadowed`)."""
        self._changed(path)
        self._stat.pop(path, None)
        self._listing.pop(path, None)
        name = path.rpartition("/")[2]
        listing = self._listing.get(parent_of(path))
        if listing is not None:
            listing.entries.pop(name, None)
            if name in listing.shadowed and shadowed is not None:
                listing.shadowed.discard(name)
                listing.entries[name] = shadowed
                self._stat[path] = shadowed
                return
        self._negative[path] = True

    def invalidate(self, path: str) -> None:
        """Forget `path` and its parent's listing (a local create, delete or change)."""
        self._changed(path)
        self._stat.pop(path, None)
        self._negative.pop(path, None)
        self._listing.pop(path, None)
        self._listing.pop(parent_of(path), None)

    def clear(self) -> None:
        """Forget everything (the bucket disappeared: nothing cached about it is true any more)."""
        self._changed(None)
        for cache in (self._stat, self._negative, self._listing):
            cache.clear()

    def invalidate_tree(self, path: str) -> None:
        """Forget `path` and everything cached below it (directory rename or removal)."""
        self._changed(None)
        self.invalidate(path)
        below = path + "/" if path else ""
        for cache in (self._stat, self._negative, self._listing):
            for key in [k for k in list(cache.keys()) if k.startswith(below)]:
                cache.pop(key, None)


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]
