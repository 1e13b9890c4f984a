"""Object metadata ↔ stat, compatible with ossfs (and s3fs, which ossfs is built from). Sans-IO.

Metadata (`x-oss-meta-*`, names here without the prefix, lowercase as oss2 returns them):
  mode   decimal st_mode including the type bits (33188 = S_IFREG|0644)
  uid    decimal; gid decimal
  mtime  epoch seconds, `SEC` or `SEC.NNNNNNNNN`: exact nanoseconds when there is a fraction (ossfs
         writes whole seconds and reads a fraction, so both clients read either form); ctime, atime alike
  rdev   decimal st_rdev of a device node (ossmount writes it; ossfs ignores it)
  symlink-target   ossfs 1.91.10 with `symlink_in_meta`: `header:<byte length>:<url-encoded target>`
         (the body is empty); `body:<n>:` means "the target is in the body". ossmount before 0.2 wrote
         the bare url-encoded target (never containing ':'), which is still read.
  xattr  percent-encoded JSON object of name → base64(value) (ossfs/s3fs `build_xattrs`; empty → removed)

What an object is (`classify_object`; ossfs 1.91.10 measured), first rule that matches:
  1. a stored mode with type bits → that type (S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK,
     S_IFSOCK), whatever the key, Content-Type or size: `name/` with a regular-file mode is a file
  2. key ending '/':
     a. complement_stat (the default, as in ossfs, where it cannot be turned off) → DIR, whatever its
        Content-Type or size
     b. without it: no mode → FILE; size 0 and a directory Content-Type (or unknown: a listing) → DIR;
        otherwise FILE. Each FILE here comes with a warning naming the key and the fix
  3. a `symlink-target` meta → SYMLINK
  4. → FILE

Permission bits (`attrs_for_object`), first rule that matches:
  1. `umask=` option: 0777 & ~umask, whatever is stored (libfuse high-level rule)
  2. the stored mode's permission bits
  3. defaults: files 0640, directories 0750, symlinks 0777
Owner: `uid=`/`gid=` option, else stored uid/gid, else the mounting user. The mount root is 0700 and
owned by the mounting user, or 0777 & ~mp_umask with allow_other.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import stat
import time
from decimal import Decimal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from ossmount.options import MountOptions
    from ossmount.store.types import ObjectInfo

DEFAULT_FILE_PERM = 0o640
DEFAULT_DIR_PERM = 0o750
SYMLINK_PERM = 0o777
ROOT_PERM = 0o700
DIR_CONTENT_TYPE = "application/x-directory"  # what ossfs 1.91.10 mkdir writes
# Content-Types other tools give directory objects; all mean "directory" on a size-0 'dir/' key.
DIRECTORY_CONTENT_TYPES = frozenset(
    {"application/octet-stream", "application/x-directory", "httpd/unix-directory", "binary/octet-stream"}
)

META_MODE = "mode"
META_UID = "uid"
META_GID = "gid"
META_MTIME = "mtime"
META_CTIME = "ctime"
META_ATIME = "atime"
META_SYMLINK_TARGET = "symlink-target"
META_XATTR = "xattr"
META_RDEV = "rdev"
MAX_ID = 2**32 - 2


class EntryKind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"
    CHAR_DEVICE = "char-device"
    BLOCK_DEVICE = "block-device"
    SOCKET = "socket"

    @classmethod
    def from_mode(cls, mode: int) -> "EntryKind | None":
        """The kind a full st_mode names, or None when it has no (known) type bits."""
        return _KIND_OF_TYPE.get(stat.S_IFMT(mode))

    @property
    def special(self) -> bool:
        """FIFOs, sockets and device nodes: empty objects whose mode names the type (ossfs mknod)."""
        return self in _SPECIAL_KINDS

    @property
    def type_bits(self) -> int:
        return _TYPE_BITS[self]

    @property
    def default_perm(self) -> int:
        return _DEFAULT_PERM[self]


_TYPE_BITS = {EntryKind.FILE: stat.S_IFREG, EntryKind.DIR: stat.S_IFDIR, EntryKind.SYMLINK: stat.S_IFLNK,
              EntryKind.FIFO: stat.S_IFIFO, EntryKind.CHAR_DEVICE: stat.S_IFCHR,
              EntryKind.BLOCK_DEVICE: stat.S_IFBLK, EntryKind.SOCKET: stat.S_IFSOCK}
_KIND_OF_TYPE = {bits: kind for kind, bits in _TYPE_BITS.items()}
_SPECIAL_KINDS = frozenset({EntryKind.FIFO, EntryKind.CHAR_DEVICE, EntryKind.BLOCK_DEVICE, EntryKind.SOCKET})
_DEFAULT_PERM = {kind: DEFAULT_FILE_PERM for kind in EntryKind}
_DEFAULT_PERM.update({EntryKind.DIR: DEFAULT_DIR_PERM, EntryKind.SYMLINK: SYMLINK_PERM})


@dataclass(frozen=True)
class Ownership:
    """The mount-wide ownership and mode rules (from the uid/gid/umask/mp_umask/allow_other options)."""

    mount_uid: int
    mount_gid: int
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    mp_umask: int | None = None
    allow_other: bool = False
    complement_stat: bool = True

    def __post_init__(self) -> None:
        for name in ("umask", "mp_umask"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 0o777:
                raise ValueError(f"{name} must be within 0..0o777, got {value!r}")

    @classmethod
    def from_options(cls, opts: "MountOptions", mount_uid: int, mount_gid: int) -> "Ownership":
        """The rules a mount with `opts` applies, for a filesystem mounted by mount_uid:mount_gid."""
        return cls(
            mount_uid=mount_uid,
            mount_gid=mount_gid,
            uid=opts.uid,
            gid=opts.gid,
            umask=opts.umask,
            mp_umask=opts.mp_umask,
            allow_other=opts.allow_other,
            complement_stat=opts.complement_stat,
        )

    @property
    def owner_uid(self) -> int:
        """Owner of entries with no stored uid (and of the root)."""
        return self.mount_uid if self.uid is None else self.uid

    @property
    def owner_gid(self) -> int:
        return self.mount_gid if self.gid is None else self.gid

    def permission_bits(self, kind: EntryKind, stored_mode: int | None) -> int:
        """Permission bits (incl. setuid/setgid/sticky from a stored mode) of an entry below the root."""
        if kind is EntryKind.SYMLINK:
            return SYMLINK_PERM
        if self.umask is not None:
            return 0o777 & ~self.umask
        if stored_mode is not None:
            return stat.S_IMODE(stored_mode)
        return kind.default_perm


@dataclass(frozen=True)
class Attrs:
    """What `stat` shows for one entry; `mode` is the full st_mode including the type bits."""

    kind: EntryKind
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    atime_ns: int
    rdev: int = 0

    @property
    def nlink(self) -> int:
        return 2 if self.kind is EntryKind.DIR else 1

    @property
    def blocks(self) -> int:
        """512-byte blocks, as du and ls -s expect."""
        return (self.size + 511) // 512


# --------------------------------------------------------------------------------------------------
# Parsing stored metadata (tolerant: a malformed value counts as absent, as in s3fs)


def _is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def parse_mode(meta: Mapping[str, str]) -> int | None:
    """The stored st_mode (decimal), or None if absent or malformed."""
    raw = meta.get(META_MODE)
    if raw is None:
        return None
    raw = raw.strip()
    if not _is_decimal(raw):
        return None
    value = int(raw)
    return value if value <= 0o177777 else None


def parse_id(meta: Mapping[str, str], name: str) -> int | None:
    """A stored uid or gid, or None if absent or malformed."""
    raw = (meta.get(name) or "").strip()
    if not _is_decimal(raw) or int(raw) > MAX_ID:
        return None
    return int(raw)


def parse_time_ns(raw: str | None) -> int | None:
    """Epoch seconds as ossfs/s3fs store them (`SEC` or `SEC.FRACTION`) → nanoseconds; None if malformed."""
    if raw is None:
        return None
    text = raw.strip()
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, dot, frac = text.partition(".")
    if not _is_decimal(whole) or (dot and frac and not _is_decimal(frac)):
        return None
    nanos = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    return -nanos if negative else nanos


def format_time_ns(nanos: int) -> str:
    """Epoch nanoseconds as s3fs 1.91 writes times: `SEC`, or `SEC.NNNNNNNNN` when there is a fraction."""
    sign = "-" if nanos < 0 else ""
    seconds, fraction = divmod(abs(int(nanos)), 1_000_000_000)
    return f"{sign}{seconds}" if fraction == 0 else f"{sign}{seconds}.{fraction:09d}"


def seconds_to_ns(value: float | int) -> int:
    """Epoch seconds (int, or float such as `time.time()`) → nanoseconds, without binary-float noise."""
    if isinstance(value, int):
        return value * 1_000_000_000
    # Decimal of the shortest repr: 1700000000.25 must not become ...249999872
    return int(Decimal(repr(value)) * 1_000_000_000)


def format_time(seconds: float | int) -> str:
    """Epoch seconds (int or float) in the s3fs 1.91 format; see `format_time_ns` for exact times."""
    return format_time_ns(seconds_to_ns(seconds))


# --------------------------------------------------------------------------------------------------
# Classification


def _directory_fix(key: str) -> str:
    return (f"without complement_stat a directory object must be empty with Content-Type {DIR_CONTENT_TYPE}: "
            f"delete '{key}' and recreate it, e.g. with mkdir through the mount, or mount with complement_stat "
            f"(the default)")


def classify_object(
    key: str,
    size: int,
    content_type: str | None,
    meta: Mapping[str, str],
    *,
    complement_stat: bool = True,
) -> tuple[EntryKind, str | None]:
    """Decide what an object is (see the module rules); the warning, if any, names the key and the fix.

    `content_type` None means "unknown" (the object came from a listing).
    """
    mode = parse_mode(meta)
    stored_kind = EntryKind.from_mode(mode) if mode is not None else None
    if stored_kind is not None:
        return stored_kind, None
    if key.endswith("/"):
        if complement_stat:
            return EntryKind.DIR, None
        if mode is None:
            return EntryKind.FILE, (
                f"object '{key}' has no x-oss-meta-mode, so without complement_stat it shows as a file; "
                f"mount with -o complement_stat (the default) to see it as a directory"
            )
        normalized_type = (content_type or "").split(";")[0].strip().lower()
        directory_type = content_type is None or normalized_type in DIRECTORY_CONTENT_TYPES
        if size == 0 and directory_type:
            return EntryKind.DIR, None
        reason = f"size {size}" if size != 0 else f"Content-Type {content_type}"
        return EntryKind.FILE, f"object '{key}' ends in '/' but has {reason}, so it shows as a file; " + _directory_fix(key)
    if META_SYMLINK_TARGET in meta:
        return EntryKind.SYMLINK, None
    return EntryKind.FILE, None


# --------------------------------------------------------------------------------------------------
# stat


def attrs_for_object(info: "ObjectInfo", kind: EntryKind, own: Ownership) -> Attrs:
    """The stat of an object classified as `kind` (times from meta, else Last-Modified)."""
    meta = info.meta
    if not meta:  # a listed entry (readdir_optimize): nothing stored to parse, the mount's defaults
        nanos = round(info.mtime * 1_000_000_000)
        return _listed_attrs(kind, kind.type_bits | own.permission_bits(kind, None),
                             own.mount_uid if own.uid is None else own.uid,
                             own.mount_gid if own.gid is None else own.gid,
                             0 if kind is EntryKind.DIR or kind.special else info.size, nanos)
    stored_mode = parse_mode(meta)
    uid = own.uid if own.uid is not None else parse_id(meta, META_UID)
    gid = own.gid if own.gid is not None else parse_id(meta, META_GID)
    last_modified_ns = round(info.mtime * 1_000_000_000)
    mtime_ns = parse_time_ns(meta.get(META_MTIME))
    if mtime_ns is None:
        mtime_ns = last_modified_ns
    ctime_ns = parse_time_ns(meta.get(META_CTIME))
    atime_ns = parse_time_ns(meta.get(META_ATIME))
    rdev = 0
    if kind is EntryKind.DIR or kind.special:
        size = 0
        if kind in (EntryKind.CHAR_DEVICE, EntryKind.BLOCK_DEVICE):
            rdev = parse_id(meta, META_RDEV) or 0
    elif kind is EntryKind.SYMLINK:
        target = symlink_target_from(meta)
        size = info.size if target is None else len(target.encode("utf-8", "surrogateescape"))
    else:
        size = info.size
    return Attrs(
        kind=kind,
        mode=kind.type_bits | own.permission_bits(kind, stored_mode),
        uid=own.mount_uid if uid is None else uid,
        gid=own.mount_gid if gid is None else gid,
        size=size,
        mtime_ns=mtime_ns,
        ctime_ns=mtime_ns if ctime_ns is None else ctime_ns,
        atime_ns=mtime_ns if atime_ns is None else atime_ns,
        rdev=rdev,
    )


def _listed_attrs(kind: EntryKind, mode: int, uid: int, gid: int, size: int, nanos: int) -> Attrs:
    """`Attrs(kind, mode, uid, gid, size, nanos, nanos, nanos)` without the frozen dataclass's per-field setattr:
    `ls -l` / `find` with readdir_optimize build one per listed entry (issue 11), and this is half the cost."""
    attrs = object.__new__(Attrs)
    attrs.__dict__.update(kind=kind, mode=mode, uid=uid, gid=gid, size=size, mtime_ns=nanos, ctime_ns=nanos,
                          atime_ns=nanos, rdev=0)
    return attrs


def attrs_for_implicit_dir(own: Ownership, mtime: float) -> Attrs:
    """A directory that exists only as a prefix of other keys (no `dir/` object)."""
    nanos = round(mtime * 1_000_000_000)
    return Attrs(EntryKind.DIR, stat.S_IFDIR | own.permission_bits(EntryKind.DIR, None), own.owner_uid,
                 own.owner_gid, 0, nanos, nanos, nanos)


def root_permission_bits(own: Ownership) -> int:
    """0700, or with allow_other 0777 & ~mp_umask (mp_umask defaults to 0)."""
    if own.allow_other:
        return 0o777 & ~(own.mp_umask or 0)
    return ROOT_PERM


def attrs_for_root(own: Ownership, mtime: float | None = None) -> Attrs:
    """The mount root: 0700 for the mounting user, or 0777 & ~mp_umask with allow_other; uid=/gid= apply."""
    nanos = round((time.time() if mtime is None else mtime) * 1_000_000_000)
    return Attrs(EntryKind.DIR, stat.S_IFDIR | root_permission_bits(own), own.owner_uid, own.owner_gid,
                 0, nanos, nanos, nanos)


# --------------------------------------------------------------------------------------------------
# Writing metadata


def meta_for_new_entry(
    kind: EntryKind, mode: int, uid: int, gid: int, now: float | int | None = None, *, now_ns: int | None = None
) -> dict[str, str]:
    """The x-oss-meta-* of a new entry as ossfs writes them (names without the prefix).

    `mode` may carry the type bits or only permission bits; the kind's type bits are set either way.
    The time is `now` in epoch seconds or `now_ns` in nanoseconds (exactly one of them).
    """
    if (now is None) == (now_ns is None):
        raise TypeError("give exactly one of now or now_ns")
    timestamp = format_time_ns(now_ns) if now_ns is not None else format_time(now)
    return {
        META_MODE: str(kind.type_bits | stat.S_IMODE(mode)),
        META_UID: str(uid),
        META_GID: str(gid),
        META_MTIME: timestamp,
        META_CTIME: timestamp,
        META_ATIME: timestamp,
    }


def meta_with_changes(
    meta: Mapping[str, str],
    *,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    atime: float | int | None = None,
    mtime: float | int | None = None,
    ctime: float | int | None = None,
    atime_ns: int | None = None,
    mtime_ns: int | None = None,
    ctime_ns: int | None = None,
) -> dict[str, str]:
    """A copy of `meta` with the given stat fields replaced (for CopyObject REPLACE); others are kept.

    Times are epoch seconds (`atime=`...) or exact nanoseconds (`atime_ns=`..., as utimens gives them;
    these win). A `mode` without type bits keeps the stored type bits (chmod passes only permission bits).
    """
    updated = dict(meta)
    if mode is not None:
        if stat.S_IFMT(mode) == 0:
            stored = parse_mode(meta)
            mode |= stat.S_IFMT(stored) if stored is not None else 0
        updated[META_MODE] = str(mode)
    if uid is not None:
        updated[META_UID] = str(uid)
    if gid is not None:
        updated[META_GID] = str(gid)
    for name, value, value_ns in ((META_ATIME, atime, atime_ns), (META_MTIME, mtime, mtime_ns),
                                  (META_CTIME, ctime, ctime_ns)):
        if value_ns is not None:
            updated[name] = format_time_ns(value_ns)
        elif value is not None:
            updated[name] = format_time(value)
    return updated


# --------------------------------------------------------------------------------------------------
# Symlinks
#
# ossfs 1.91.10 writes a link's target into the body (mode S_IFLNK), or with `symlink_in_meta` into
# `x-oss-meta-symlink-target: header:<byte length>:<url-encoded target>` with an empty body; it reads
# `body:<n>:` in that header as "the target is in the body". ossmount before this format was settled
# wrote the bare url-encoded target there (`quote(target, safe="/")`, so never a ':') plus the body.

SYMLINK_HEADER_FORM = "header"
SYMLINK_BODY_FORM = "body"


def _encode_target(target: str) -> str:
    return quote(target.encode("utf-8", "surrogateescape"), safe="/")


def _decode_target(value: str) -> str:
    return unquote(value, encoding="utf-8", errors="surrogateescape")


def symlink_object(target: str, *, in_meta: bool = False) -> tuple[bytes, dict[str, str]]:
    """(body, extra meta) of a symlink object as ossfs 1.91.10 writes it: the target in the body, or with
    `in_meta` (ossfs `symlink_in_meta`) an empty body and the `header:` form. The mode comes from
    `meta_for_new_entry`."""
    if not target:
        raise ValueError("a symlink target cannot be empty")
    raw = target.encode("utf-8", "surrogateescape")
    if in_meta:
        return b"", {META_SYMLINK_TARGET: f"{SYMLINK_HEADER_FORM}:{len(raw)}:{_encode_target(target)}"}
    return raw, {}


def symlink_target_from(
    meta: Mapping[str, str], body_reader: bytes | Callable[[], bytes] | None = None
) -> str | None:
    """The target of a symlink object, from whichever form it was written in (see above).

    `body_reader` is the body or a callable returning it; it is used only when the target is in the body.
    Returns None when the target is in the body and no body reader was given (the caller then reads the
    body, possibly asynchronously, and calls again).
    """
    value = meta.get(META_SYMLINK_TARGET)
    if value is not None:
        form, colon, rest = value.partition(":")
        if colon and form == SYMLINK_HEADER_FORM:
            _length, _, encoded = rest.partition(":")
            return _decode_target(encoded)
        if not (colon and form == SYMLINK_BODY_FORM):
            return _decode_target(value)  # ossmount's earlier bare form
    if body_reader is None:
        return None
    body = body_reader() if callable(body_reader) else body_reader
    # ossfs trims the body when it reads a link, and writes it trimmed
    return bytes(body).decode("utf-8", "surrogateescape").strip()


# --------------------------------------------------------------------------------------------------
# Extended attributes


class XattrFormatError(ValueError):
    """A stored x-oss-meta-xattr value that is not percent-encoded JSON of name → base64."""


def encode_xattrs(values: Mapping[str, bytes]) -> str:
    """Extended attributes as s3fs/ossfs store them: percent-encoded JSON of name → base64(value).

    An empty mapping encodes to "" (the caller then removes the meta entry, as s3fs does).
    """
    if not values:
        return ""
    document = {name: base64.b64encode(bytes(value)).decode("ascii") for name, value in sorted(values.items())}
    return quote(json.dumps(document, separators=(",", ":"), ensure_ascii=False), safe="/")


def decode_xattrs(encoded: str, *, strict: bool = False) -> dict[str, bytes]:
    """Parse an `x-oss-meta-xattr` value.

    JSON first (what ossmount writes); otherwise ossfs's own lenient reading (`parse_xattrs`: split the
    text between the braces on ',' and each pair on the first ':', strip the quotes), skipping pairs it
    cannot read, as ossfs does. With `strict`, anything unreadable raises XattrFormatError instead.
    """
    if not encoded or not encoded.strip():
        return {}
    text = unquote(encoded.strip())
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if strict:
            raise XattrFormatError(f"x-oss-meta-xattr is not JSON: {exc.msg}") from None
        return _decode_xattrs_like_ossfs(text)
    if not isinstance(document, dict):
        if strict:
            raise XattrFormatError("x-oss-meta-xattr is not a JSON object")
        return {}
    values: dict[str, bytes] = {}
    for name, value in document.items():
        decoded = _b64(value)
        if decoded is None:
            if strict:
                raise XattrFormatError(f"x-oss-meta-xattr value of {name!r} is not base64 text")
            continue
        values[name] = decoded
    return values


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_xattrs_like_ossfs(text: str) -> dict[str, bytes]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return {}
    values: dict[str, bytes] = {}
    for pair in text[start + 1 : end].split(","):
        name, colon, raw = pair.partition(":")
        name, raw = name.strip(), raw.strip()
        if not colon or len(name) < 2 or len(raw) < 2 or name[0] != '"' or name[-1] != '"' \
                or raw[0] != '"' or raw[-1] != '"':
            continue
        decoded = _b64(raw[1:-1])
        if decoded is not None:
            values[name[1:-1]] = decoded
    return values


def meta_with_xattrs(meta: Mapping[str, str], values: Mapping[str, bytes]) -> dict[str, str]:
    """A copy of `meta` carrying `values` as x-oss-meta-xattr (removed when there are none)."""
    updated = dict(meta)
    encoded = encode_xattrs(values)
    if encoded:
        updated[META_XATTR] = encoded
    else:
        updated.pop(META_XATTR, None)
    return updated
