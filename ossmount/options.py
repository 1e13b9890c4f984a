"""Command line and `-o` option parsing for `ossmount [mount]` and `ossmount check` (sans-IO).

Rules:
  1. Options use ossfs names and meanings; defaults are ossfs's unless the product contract says otherwise.
  2. `-o a,b=c` and `-oa,b=c` are the same; repeated `-o` merge; for a repeated option the last one wins.
  3. An unknown option, a flag given a value, a value option without one, or a malformed value is a
     `UsageError` naming the option and the expected form. Nothing is silently ignored except the
     options listed in `NOOP_OPTIONS` (ossfs options that mean nothing to ossmount, each with the reason)
     and the generic mount(8)/fstab options in `MOUNT_GENERIC_OPTIONS`.
  4. Secrets never pass through here: `passwd_file=` is a path; the credentials module reads it.

`describe_options()` is the single table the README and `--help` are generated from.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable

from ossmount.errors import UsageError

DEFAULT_URL = "https://oss-cn-hangzhou.aliyuncs.com"
DEFAULT_MIME_PATH = "/etc/mime.types"
DEBUG_LEVELS = ("crit", "err", "warn", "info", "debug")
_DEBUG_LEVEL_ALIASES = {
    "critical": "crit",
    "error": "err",
    "warning": "warn",
    "information": "info",
    "dbg": "debug",
}
_LOG_LEVELS = {"crit": logging.CRITICAL, "err": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
               "debug": logging.DEBUG}
ATIME_MODES = ("noatime", "atime", "relatime", "strictatime")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown, so it can never be an owner
MULTIPART_SIZE_MIN_MIB = 1  # OSS accepts parts from 100 KiB; ossfs insists on 5 MiB without a reason
MULTIPART_SIZE_MAX_MIB = 5 * 1024  # the OSS part size limit
PARALLEL_COUNT_MAX = 1000
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_REGION_FROM_HOST_RE = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

HELP_HINT = "see `ossmount --help` for the list of options"


# --------------------------------------------------------------------------------------------------
# Options accepted without effect


NOOP_OPTIONS: dict[str, str] = {
    "use_cache": "ossmount spools dirty data in its own temp directory and reads straight from OSS",
    "del_cache": "there is no persistent ossfs disk cache to delete",
    "check_cache_dir_exist": "there is no persistent ossfs disk cache directory",
    "max_dirty_data": "dirty data is uploaded on flush/close, never earlier",
    "ensure_diskfree": "the write spool is bounded by the temp directory, not by this reserve",
    "free_space_mb": "the write spool is bounded by the temp directory, not by this reserve",
    "enable_content_md5": "every upload is already integrity-checked with CRC64",
    "use_path_request_style": "the addressing style follows from the endpoint (IP or host)",
    "noxmlns": "the XML namespace is handled automatically",
    "connect_timeout": "timeouts are fixed and retried by the client",
    "readwrite_timeout": "timeouts are fixed and retried by the client",
    "retries": "retries are fixed by the client",
    "multireq_max": "readdir lists only; parallelism is parallel_count",
    "curldbg": "there is no curl; use dbglevel=debug",
    "notsup_compat_dir": "all directory styles (dir/ objects and implicit prefixes) are always supported",
    "use_xattr": "extended attributes are always supported",
    "stat_cache_interval_expire": "stat_cache_expire is the one expiry rule",
    "big_writes": "always on in FUSE 3",
    "kernel_cache": "the kernel page cache is managed by ossmount",
    "auto_cache": "the kernel page cache is managed by ossmount",
    "allow_root": "use allow_other; the kernel checks the mode bits",
    "instance_name": "log lines already name the mountpoint",
    "singlepart_copy_limit": "the client picks CopyObject or UploadPartCopy by object size",
    "multipart_copy_size": "the client picks the part size of UploadPartCopy",
    "nomixupload": "partial rewrites are uploaded whole or as multipart from the spool",
    "direct_read": "ossmount always reads straight from OSS (there is no disk cache)",
    "max_background": "FUSE queue tuning is fixed",
    "congestion_threshold": "FUSE queue tuning is fixed",
    "default_permissions": "always on: the kernel checks the mode bits",
    "dev": "FUSE mounts are always nodev for unprivileged users; accepted for fstab",
    "suid": "FUSE mounts are always nosuid for unprivileged users; accepted for fstab",
}

# Options meaningful only to mount(8)/systemd; they reach a mount helper but mean nothing to the FS.
MOUNT_GENERIC_OPTIONS: dict[str, str] = {
    "_netdev": "mount(8)/systemd: wait for the network before mounting",
    "nofail": "mount(8): do not report a failure if the mount fails at boot",
    "noauto": "mount(8): not mounted by `mount -a`",
    "auto": "mount(8): mounted by `mount -a`",
    "defaults": "mount(8): the default set (rw, ...)",
    "user": "mount(8): ordinary users may mount",
    "users": "mount(8): any user may mount and unmount",
    "nouser": "mount(8): only root may mount",
    "owner": "mount(8): the device owner may mount",
    "group": "mount(8): the device group may mount",
    "async": "the only mode FUSE offers here",
    "comment": "fstab comment (comment=...)",
}

# Prefixes of generic options (`x-systemd.requires=...`, `x-mount.mkdir`, ...).
MOUNT_GENERIC_PREFIXES = ("x-systemd.", "x-mount.", "x-", "comment=")


# --------------------------------------------------------------------------------------------------
# Value parsers: each takes the option name and the raw text, returns the typed value or raises UsageError


def _is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def _bad(name: str, value: str, expected: str) -> UsageError:
    return UsageError(f"invalid value {value!r} for option '{name}': expected {expected}")


def _parse_id(name: str, value: str) -> int:
    if not _is_decimal(value) or int(value) > MAX_ID:
        raise _bad(name, value, f"a numeric {name} (0..{MAX_ID})")
    return int(value)


def _parse_octal_mask(name: str, value: str) -> int:
    if not value or not all(c in "01234567" for c in value) or int(value, 8) > 0o777:
        raise _bad(name, value, "an octal mask such as 022 (0..777)")
    return int(value, 8)


def _int_parser(low: int, high: int | None) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        if not _is_decimal(value) or int(value) < low or (high is not None and int(value) > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise _bad(name, value, f"an integer {bound}")
        return int(value)

    return parse


def _parse_seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise _bad(name, value, "a number of seconds >= 0") from None
    if not (seconds >= 0) or seconds == float("inf"):
        raise _bad(name, value, "a number of seconds >= 0")
    return seconds


def _parse_path(name: str, value: str) -> str:
    if not value or "\0" in value:
        raise _bad(name, value, "a file path")
    return value


def _parse_dbglevel(name: str, value: str) -> str:
    level = _DEBUG_LEVEL_ALIASES.get(value.lower(), value.lower())
    if level not in DEBUG_LEVELS:
        raise _bad(name, value, "one of " + "|".join(DEBUG_LEVELS))
    return level


def _parse_region(name: str, value: str) -> str:
    if not _REGION_RE.match(value):
        raise _bad(name, value, "a region id such as cn-hangzhou")
    return value


def normalize_url(value: str) -> str:
    """Validate an endpoint and return it as `scheme://host[:port]`.

    Without a scheme, `http://` is added for `*-internal.aliyuncs.com` (VPC endpoints) and `https://`
    otherwise, as Alibaba's CSI driver does. A bucket domain (`bucket.oss-...`) is refused: OSS wants
    the endpoint, the bucket is the first argument.
    """
    text = value.strip().rstrip("/")
    scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", text)
    if scheme_match:
        scheme, rest = scheme_match.group(1).lower(), scheme_match.group(2)
        if scheme not in ("http", "https"):
            raise _bad("url", value, "an http:// or https:// endpoint")
    else:
        rest = text
        scheme = "http" if rest.split(":")[0].endswith("-internal.aliyuncs.com") else "https"
    if not rest or "/" in rest or "?" in rest or "#" in rest or "@" in rest:
        raise _bad("url", value, "scheme://host[:port] with no path, e.g. https://oss-cn-hangzhou.aliyuncs.com")
    host, port = rest, None
    if rest.startswith("["):
        end = rest.find("]")
        host, tail = rest[: end + 1], rest[end + 1 :]
        if end < 0 or not _IPV6_RE.match(host) or (tail and not tail.startswith(":")):
            raise _bad("url", value, "a host name or IP address")
        port = tail[1:] if tail else None
    elif ":" in rest:
        host, port = rest.rsplit(":", 1)
    if port is not None and (not _is_decimal(port) or not 1 <= int(port) <= 65535):
        raise _bad("url", value, "a port number 1..65535")
    if not host.startswith("[") and not _HOST_RE.match(host):
        raise _bad("url", value, "a host name or IP address")
    labels = host.lower().split(".")
    if len(labels) > 3 and labels[-2:] == ["aliyuncs", "com"] and labels[1].startswith("oss-"):
        raise UsageError(
            f"invalid value {value!r} for option 'url': that is a bucket domain; use the endpoint "
            f"(url={scheme}://{'.'.join(labels[1:])}) and give the bucket as the first argument"
        )
    return f"{scheme}://{host.lower()}" + (f":{port}" if port is not None else "")


def _parse_url(name: str, value: str) -> str:
    return normalize_url(value)


# --------------------------------------------------------------------------------------------------
# The option table


@dataclass(frozen=True)
class OptionSpec:
    """One `-o` option: its name, the MountOptions field it sets, and how."""

    name: str
    field: str
    meaning: str
    parse: Callable[[str, str], object] | None = None  # None: a flag
    flag_value: object = True  # what a flag sets its field to
    default_text: str = ""


OPTION_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("url", "url", "OSS endpoint, http:// or https://, host name or IP[:port]; no scheme: https "
               "(http for *-internal.aliyuncs.com)", _parse_url, default_text=DEFAULT_URL),
    OptionSpec("uid", "uid", "owner of every entry (numeric uid)", _parse_id, default_text="stored or mounting user"),
    OptionSpec("gid", "gid", "group of every entry (numeric gid)", _parse_id, default_text="stored or mounting group"),
    OptionSpec("umask", "umask", "permission bits of every entry below the root become 0777 & ~umask "
               "(octal), whatever is stored", _parse_octal_mask, default_text="unset (stored modes)"),
    OptionSpec("mp_umask", "mp_umask", "with allow_other, the mount root is 0777 & ~mp_umask (octal)",
               _parse_octal_mask, default_text="000"),
    OptionSpec("allow_other", "allow_other", "let other users use the mount (the kernel checks modes)",
               default_text="off"),
    OptionSpec("ro", "read_only", "read-only mount", default_text="off"),
    OptionSpec("rw", "read_only", "read-write mount", flag_value=False, default_text="on"),
    OptionSpec("listobjectsv2", "list_objects_v2", "list with ListObjectsV2", default_text="on"),
    OptionSpec("listobjectsv1", "list_objects_v2", "list with ListObjects (V1) instead of V2",
               flag_value=False, default_text="off"),
    OptionSpec("complement_stat", "complement_stat", "a dir/ object without x-oss-meta-mode gets a "
               "directory mode", default_text="on"),
    OptionSpec("nocomplement_stat", "complement_stat", "turn complement_stat off", flag_value=False,
               default_text="off"),
    OptionSpec("max_stat_cache_size", "max_stat_cache_size", "entries in the stat cache; 0 disables it",
               _int_parser(0, None), default_text="100000"),
    OptionSpec("stat_cache_expire", "stat_cache_expire", "seconds a stat cache entry stays valid",
               _parse_seconds, default_text="900"),
    OptionSpec("enable_noobj_cache", "enable_noobj_cache", "also cache that an object does not exist",
               default_text="off"),
    OptionSpec("readdir_optimize", "readdir_optimize", "readdir takes attributes from the listing (no HEAD "
               "per entry): modes and owners are the defaults until an entry is looked up", default_text="off"),
    OptionSpec("mime", "mime", "mime.types file for the Content-Type of uploads (built-in table if absent)",
               _parse_path, default_text=DEFAULT_MIME_PATH),
    OptionSpec("multipart_size", "multipart_size", f"part size in MiB for multipart uploads "
               f"({MULTIPART_SIZE_MIN_MIB}..{MULTIPART_SIZE_MAX_MIB})",
               _int_parser(MULTIPART_SIZE_MIN_MIB, MULTIPART_SIZE_MAX_MIB), default_text="10"),
    OptionSpec("parallel_count", "parallel_count", "parts uploaded in parallel",
               _int_parser(1, PARALLEL_COUNT_MAX), default_text="5"),
    OptionSpec("sigv4", "sigv4", "sign requests with OSS Signature V4 (needs a region)", default_text="off"),
    OptionSpec("region", "region", "region id for sigv4, e.g. cn-hangzhou", _parse_region,
               default_text="from the url"),
    OptionSpec("nonempty", "nonempty", "allow mounting over a non-empty directory", default_text="off"),
    OptionSpec("dbglevel", "dbglevel", "log level: " + "|".join(DEBUG_LEVELS), _parse_dbglevel,
               default_text="crit"),
    OptionSpec("logfile", "log_file", "write the log to this file, rotated by size (same as --log-file)",
               _parse_path, default_text="stderr"),
    OptionSpec("passwd_file", "passwd_file", "credentials file (BUCKET:AK:SK or AK:SK lines, mode 0600/0640)",
               _parse_path, default_text="env, then /etc/passwd-ossmount"),
    OptionSpec("noatime", "atime", "do not update access times (default)", flag_value="noatime",
               default_text="on"),
    OptionSpec("atime", "atime", "kernel access-time mode", flag_value="atime", default_text="off"),
    OptionSpec("relatime", "atime", "kernel access-time mode", flag_value="relatime", default_text="off"),
    OptionSpec("strictatime", "atime", "kernel access-time mode", flag_value="strictatime", default_text="off"),
    OptionSpec("noexec", "noexec", "do not allow executing files", default_text="off"),
    OptionSpec("exec", "noexec", "allow executing files", flag_value=False, default_text="on"),
    OptionSpec("nosuid", "nosuid", "ignore set-user-id bits", default_text="off"),
    OptionSpec("nodev", "nodev", "do not interpret device files", default_text="off"),
)
_SPECS_BY_NAME = {spec.name: spec for spec in OPTION_SPECS}


def describe_options() -> list[tuple[str, str, str]]:
    """Every accepted `-o` option as (name, default, meaning), including documented no-ops."""
    rows = [(spec.name + ("=" if spec.parse else ""), spec.default_text, spec.meaning) for spec in OPTION_SPECS]
    rows += [(name, "-", f"accepted, no effect: {why}") for name, why in NOOP_OPTIONS.items()]
    rows += [(name, "-", f"accepted, no effect: {why}") for name, why in MOUNT_GENERIC_OPTIONS.items()]
    rows.append(("x-*", "-", "accepted, no effect: mount(8)/systemd options such as x-systemd.automount"))
    return rows


# --------------------------------------------------------------------------------------------------
# MountOptions


@dataclass(frozen=True)
class MountOptions:
    """Validated `-o` options of one mount. Construct directly or with `parse_options`."""

    url: str = DEFAULT_URL
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    mp_umask: int = 0
    allow_other: bool = False
    read_only: bool = False
    list_objects_v2: bool = True
    complement_stat: bool = True
    max_stat_cache_size: int = 100_000
    stat_cache_expire: float = 900.0
    enable_noobj_cache: bool = False
    readdir_optimize: bool = False
    mime: str = DEFAULT_MIME_PATH
    mime_explicit: bool = False  # mime= was given: a missing file is then the user's mistake
    multipart_size: int = 10  # MiB
    parallel_count: int = 5
    sigv4: bool = False
    region: str | None = None
    nonempty: bool = False
    dbglevel: str = "crit"
    passwd_file: str | None = None
    log_file: str | None = None
    atime: str = "noatime"
    noexec: bool = False
    nosuid: bool = False
    nodev: bool = False
    ignored: tuple[str, ...] = field(default=(), compare=False)  # no-op options given, for one info log

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", normalize_url(self.url))
        for name in ("uid", "gid"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value <= MAX_ID):
                raise _bad(name, str(value), f"a numeric {name} (0..{MAX_ID})")
        for name in ("umask", "mp_umask"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value <= 0o777):
                raise _bad(name, oct(value) if isinstance(value, int) else str(value), "an octal mask (0..777)")
        if not (isinstance(self.max_stat_cache_size, int) and self.max_stat_cache_size >= 0):
            raise _bad("max_stat_cache_size", str(self.max_stat_cache_size), "an integer >= 0")
        if not self.stat_cache_expire >= 0:
            raise _bad("stat_cache_expire", str(self.stat_cache_expire), "a number of seconds >= 0")
        if not MULTIPART_SIZE_MIN_MIB <= self.multipart_size <= MULTIPART_SIZE_MAX_MIB:
            raise _bad("multipart_size", str(self.multipart_size),
                       f"an integer {MULTIPART_SIZE_MIN_MIB}..{MULTIPART_SIZE_MAX_MIB}")
        if not 1 <= self.parallel_count <= PARALLEL_COUNT_MAX:
            raise _bad("parallel_count", str(self.parallel_count), f"an integer 1..{PARALLEL_COUNT_MAX}")
        if self.dbglevel not in DEBUG_LEVELS:
            raise _bad("dbglevel", self.dbglevel, "one of " + "|".join(DEBUG_LEVELS))
        if self.atime not in ATIME_MODES:
            raise _bad("atime", self.atime, "one of " + "|".join(ATIME_MODES))
        if self.region is not None:
            _parse_region("region", self.region)
        if self.sigv4 and self.effective_region is None:
            raise UsageError(
                f"option 'sigv4' needs a region: add -o region=REGION (the url {self.url} names none)"
            )

    @property
    def effective_region(self) -> str | None:
        """`region=` if given, else the region in an `oss-<region>[-internal].aliyuncs.com` url."""
        if self.region:
            return self.region
        host = self.url.split("://", 1)[1].rsplit(":", 1)[0] if "]" not in self.url else ""
        match = _REGION_FROM_HOST_RE.match(host)
        # global acceleration endpoints name no region
        if not match or match.group(1).startswith("accelerate"):
            return None
        return match.group(1)

    @property
    def log_level(self) -> int:
        """The `logging` level dbglevel= names (crit → CRITICAL ... debug → DEBUG)."""
        return _LOG_LEVELS[self.dbglevel]

    @property
    def auth_version(self) -> str:
        """'v4' with sigv4, else 'v1' (ossfs's default signature)."""
        return "v4" if self.sigv4 else "v1"

    @property
    def multipart_size_bytes(self) -> int:
        return self.multipart_size * 1024 * 1024

    @property
    def fuse_options(self) -> frozenset[str]:
        """Options for `pyfuse3.init` (without fsname: see `MountArgs.fuse_options`)."""
        opts = {"subtype=ossmount", "default_permissions", self.atime}
        if self.allow_other:
            opts.add("allow_other")
        opts.add("ro" if self.read_only else "rw")
        for flag in ("noexec", "nosuid", "nodev"):
            if getattr(self, flag):
                opts.add(flag)
        return frozenset(opts)

    def with_changes(self, **changes: object) -> "MountOptions":
        """A copy with some fields replaced (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return MountOptions(**values)  # type: ignore[arg-type]


def split_option_string(text: str) -> list[str]:
    """Split one `-o` argument on commas, dropping empty items (`-o ro,,uid=1` is `ro`, `uid=1`)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_options(items: Iterable[str]) -> MountOptions:
    """Turn `-o` items (already split on commas) into MountOptions; the last occurrence of an option wins."""
    values: dict[str, object] = {}
    ignored: list[str] = []
    for item in items:
        name, has_value, raw = item.partition("=")
        spec = _SPECS_BY_NAME.get(name)
        if spec is None:
            if name in NOOP_OPTIONS or name in MOUNT_GENERIC_OPTIONS or item.startswith(MOUNT_GENERIC_PREFIXES):
                ignored.append(name)
                continue
            raise UsageError(f"unknown option '{name}' ({HELP_HINT})")
        if spec.parse is None:
            if has_value:
                raise UsageError(f"option '{name}' takes no value (got '{item}'); write just '{name}'")
            values[spec.field] = spec.flag_value
        else:
            if not has_value or raw == "":
                raise UsageError(f"option '{name}' needs a value: {name}=VALUE ({spec.meaning})")
            values[spec.field] = spec.parse(name, raw)
            if name == "mime":
                values["mime_explicit"] = True
    return MountOptions(**values, ignored=tuple(dict.fromkeys(ignored)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Bucket spec and argv


def validate_bucket_name(bucket: str) -> str:
    """Return `bucket` if it is a valid OSS bucket name (3-63 of a-z 0-9 -, no leading/trailing -)."""
    if not _BUCKET_RE.match(bucket):
        raise UsageError(
            f"invalid bucket name {bucket!r}: 3-63 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return bucket


def parse_bucket_spec(spec: str) -> tuple[str, str]:
    """Split `BUCKET[:/PREFIX]` into (bucket, prefix); the prefix is "" or ends with '/' and has no leading '/'.

    `bkt:/a/b` → ("bkt", "a/b/"); `bkt`, `bkt:`, `bkt:/` → ("bkt", "").
    """
    bucket, _, path = spec.partition(":")
    validate_bucket_name(bucket)
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise UsageError(f"invalid prefix in {spec!r}: '.' and '..' are not allowed")
    if "\0" in path:
        raise UsageError(f"invalid prefix in {spec!r}")
    prefix = "/".join(parts) + "/" if parts else ""
    if len(prefix.encode()) > 1023:
        raise UsageError(f"invalid prefix in {spec!r}: longer than 1023 bytes")
    return bucket, prefix


@dataclass(frozen=True)
class MountArgs:
    """`ossmount [mount] BUCKET[:/PREFIX] MOUNTPOINT [-o ...] [-f] [-d]`, parsed."""

    bucket: str
    prefix: str
    mountpoint: str
    options: MountOptions
    foreground: bool = False
    debug: bool = False
    show_help: bool = False
    ready_fd: int | None = None  # --ready-fd N: write one JSON readiness line there (CSI daemon)

    @property
    def fsname(self) -> str:
        """What `mount` and /proc/mounts show as the source: `bucket:/prefix`.

        libfuse splits options on commas and pyfuse3 passes them as ASCII, so a comma or a non-ASCII character
        of the prefix is percent-encoded here (the prefix itself is used unchanged)."""
        source = f"{self.bucket}:/{self.prefix.rstrip('/')}"
        return urllib.parse.quote(source, safe="".join(chr(c) for c in range(32, 127) if chr(c) not in ",%"))

    @property
    def fuse_options(self) -> frozenset[str]:
        """The full `pyfuse3.init` option set, including `fsname=`."""
        return self.options.fuse_options | {f"fsname={self.fsname}"}


@dataclass(frozen=True)
class CheckArgs:
    """`ossmount check BUCKET[:/PREFIX] [-o ...] [-d]`, parsed."""

    bucket: str
    prefix: str
    options: MountOptions
    debug: bool = False
    show_help: bool = False


@dataclass
class _RawArgs:
    positionals: list[str] = field(default_factory=list)
    option_items: list[str] = field(default_factory=list)
    foreground: bool = False
    debug: bool = False
    show_help: bool = False
    ready_fd: int | None = None


def _scan_argv(argv: list[str], *, allow_foreground: bool) -> _RawArgs:
    raw = _RawArgs()
    args = list(argv)
    i = 0
    only_positionals = False
    while i < len(args):
        arg = args[i]
        i += 1
        if only_positionals or not arg.startswith("-") or arg == "-":
            raw.positionals.append(arg)
        elif arg == "--":
            only_positionals = True
        elif arg in ("-o", "--options"):
            if i >= len(args):
                raise UsageError(f"'{arg}' needs an argument: -o OPT[,OPT...]")
            raw.option_items += split_option_string(args[i])
            i += 1
        elif arg.startswith("-o"):
            raw.option_items += split_option_string(arg[2:])
        elif arg.startswith("--options="):
            raw.option_items += split_option_string(arg.partition("=")[2])
        elif arg in ("-f", "--foreground") and allow_foreground:
            raw.foreground = True
        elif arg in ("-d", "--debug"):
            raw.debug = True
        elif arg in ("-h", "--help"):
            raw.show_help = True
        elif allow_foreground and (arg == "--ready-fd" or arg.startswith("--ready-fd=")):
            value = arg.partition("=")[2] if "=" in arg else (args[i] if i < len(args) else "")
            if "=" not in arg:
                i += 1
            if not _is_decimal(value):
                raise UsageError(f"--ready-fd needs a file descriptor number, got {value!r}")
            raw.ready_fd = int(value)
        else:
            raise UsageError(f"unknown flag '{arg}' ({HELP_HINT})")
    return raw


def parse_mount_args(argv: list[str]) -> MountArgs:
    """Parse `BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d] [-h]` (flags anywhere).

    With `-h` the positionals may be missing (bucket/mountpoint are then "") and `show_help` is set.
    """
    raw = _scan_argv(argv, allow_foreground=True)
    if raw.show_help and len(raw.positionals) < 2:
        return MountArgs("", "", "", parse_options(raw.option_items), raw.foreground, raw.debug, True, raw.ready_fd)
    if len(raw.positionals) != 2:
        got = "nothing" if not raw.positionals else " ".join(repr(p) for p in raw.positionals)
        raise UsageError(f"expected BUCKET[:/PREFIX] MOUNTPOINT, got {got} (usage: ossmount BUCKET[:/PREFIX] "
                         "MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d])")
    bucket, prefix = parse_bucket_spec(raw.positionals[0])
    options = parse_options(raw.option_items)
    return MountArgs(bucket, prefix, raw.positionals[1], options, raw.foreground, raw.debug,
                     raw.show_help, raw.ready_fd)


def parse_check_args(argv: list[str]) -> CheckArgs:
    """Parse `BUCKET[:/PREFIX] [-o OPT[,OPT...]]... [-d] [-h]` for `ossmount check`."""
    raw = _scan_argv(argv, allow_foreground=False)
    if raw.show_help and not raw.positionals:
        return CheckArgs("", "", parse_options(raw.option_items), raw.debug, True)
    if len(raw.positionals) != 1:
        got = "nothing" if not raw.positionals else " ".join(repr(p) for p in raw.positionals)
        raise UsageError(f"expected BUCKET[:/PREFIX], got {got} (usage: ossmount check BUCKET[:/PREFIX] "
                         "-o url=... [-o ...])")
    bucket, prefix = parse_bucket_spec(raw.positionals[0])
    return CheckArgs(bucket, prefix, parse_options(raw.option_items), raw.debug, raw.show_help)


def format_options_help() -> str:
    """The option table as plain text for `--help`."""
    rows = describe_options()
    width = max(len(name) for name, _, _ in rows)
    lines = ["Options (-o NAME[=VALUE], comma-separated, repeatable):"]
    for name, default, meaning in rows:
        suffix = f" [default: {default}]" if default not in ("", "-") else ""
        lines.append(f"  {name.ljust(width)}  {meaning}{suffix}")
    return "\n".join(lines)


def format_options_markdown() -> str:
    """The option table as Markdown, for the README (generated, so docs and parser never disagree)."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for name, default, meaning in describe_options():
        lines.append(f"| `{name}` | {default.replace('|', '&#124;')} | {meaning.replace('|', '&#124;')} |")
    return "\n".join(lines)
