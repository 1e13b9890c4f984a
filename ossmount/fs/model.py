"""Value types shared by the filesystem layers (namespace, open files) and the FUSE glue. No I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ossmount.options import MountOptions

_OPTION_DEFAULTS = MountOptions()

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2


@dataclass(frozen=True)
class FsConfig:
    """The mount options the filesystem layer needs, under names independent of the option parser; the
    defaults are MountOptions' own, so the two can never disagree."""

    prefix: str = ""
    read_only: bool = _OPTION_DEFAULTS.read_only
    list_v2: bool = _OPTION_DEFAULTS.list_objects_v2
    readdir_optimize: bool = _OPTION_DEFAULTS.readdir_optimize
    stat_cache_size: int = _OPTION_DEFAULTS.max_stat_cache_size
    stat_cache_ttl: float = _OPTION_DEFAULTS.stat_cache_expire
    negative_cache: bool = _OPTION_DEFAULTS.enable_noobj_cache
    complement_stat: bool = _OPTION_DEFAULTS.complement_stat
    readdir_check_size: int | None = _OPTION_DEFAULTS.readdir_check_size  # with readdir_optimize: HEAD up to this size
    entry_timeout: float | None = _OPTION_DEFAULTS.entry_timeout  # kernel timeouts (fs/timeouts.py)
    attr_timeout: float | None = _OPTION_DEFAULTS.attr_timeout
    negative_timeout: float = _OPTION_DEFAULTS.negative_timeout
    use_wtf8: bool = _OPTION_DEFAULTS.use_wtf8  # names: fs/wtf8.py (applied by the FUSE glue)
    symlink_in_meta: bool = _OPTION_DEFAULTS.symlink_in_meta
    open_check_window: float = _OPTION_DEFAULTS.open_check_window  # seconds; see handles.py

    @classmethod
    def from_options(cls, opts: MountOptions, prefix: str = "") -> "FsConfig":
        return cls(
            prefix=prefix,
            read_only=opts.read_only,
            list_v2=opts.list_objects_v2,
            readdir_optimize=opts.readdir_optimize,
            stat_cache_size=opts.max_stat_cache_size,
            stat_cache_ttl=opts.stat_cache_expire,
            negative_cache=opts.enable_noobj_cache,
            complement_stat=opts.complement_stat,
            readdir_check_size=opts.readdir_check_size,
            entry_timeout=opts.entry_timeout,
            attr_timeout=opts.attr_timeout,
            negative_timeout=opts.negative_timeout,
            use_wtf8=opts.use_wtf8,
            symlink_in_meta=opts.symlink_in_meta,
            open_check_window=opts.open_check_window,
        )


@dataclass(frozen=True)
class Entry:
    """A looked-up inode with its attributes and how long the kernel may cache them."""

    inode: int
    attrs: Any  # ossmount.fs.attrs.Attrs
    timeout: float


@dataclass(frozen=True)
class DirEntry:
    """One readdir entry. `dot_inode` is set only for `.` and `..`: the kernel takes no reference to those."""

    name: str
    path: str
    attrs: Any
    next_id: int
    dot_inode: int | None = None


@dataclass(frozen=True)
class OpenedFile:
    """The answer to an open: the handle, and what the kernel must do with what it cached of the inode.

    `keep_cache`: the kernel's pages are of the version this handle reads (keep them).
    `attrs_changed`: the object changed since the kernel last saw it: its cached attributes (size!) must go.
    `direct_io`: another handle of the inode reads an older version, so this one must bypass the shared
    page cache (otherwise each could be served the other's pages); or this handle is write-only and alone on
    its inode, or another such writer is open (handles.py rules).
    """

    fh: int
    keep_cache: bool = False
    attrs_changed: bool = False
    direct_io: bool = False


@dataclass(frozen=True)
class FsStatistics:
    """What the filesystem layer has done since the mount (a snapshot; `Filesystem.statistics()`).

    `attribute_builds`: stat attributes built from object metadata (readdir builds each entry once).
    `listing_negative_lookups`: lookups answered "no such name" from a fresh, complete listing (no request).
    `persistent_hits` / `persistent_misses`: listed objects whose full metadata came from the persistent
    metadata cache (same key, ETag, Last-Modified and size) / that needed a HEAD although that cache was on.
    `stalled_lookups` / `stalled_creates`: lookups and creates answered from local state because OSS did not
    answer within the stall patience (ossmount.fs.stalls).
    `heads_ahead` / `sweep_negative_lookups`: HEADs started ahead of the lookups sweeping a directory, and
    lookups answered "no such name" from such a sweep's fresh listing pages (ossmount.fs.sweep).
    `sweep_pages_ahead` / `sweep_page_waits`: listing pages a sequential sweep asked for ahead of its lookups, and
    lookups that waited for a page to cover their name (ossmount.fs.sweep rule 1).
    `listings_ahead`: directories listed ahead of a walk such as `find` (ossmount.fs.dirsweep).
    """

    attribute_builds: int = 0
    listing_negative_lookups: int = 0
    persistent_hits: int = 0
    persistent_misses: int = 0
    stalled_lookups: int = 0
    stalled_creates: int = 0
    heads_ahead: int = 0
    sweep_negative_lookups: int = 0
    sweep_pages_ahead: int = 0
    sweep_page_waits: int = 0
    listings_ahead: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    files: int
    files_free: int
    name_max: int
