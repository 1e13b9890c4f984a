"""Command line and `-o` option parsing for `ossmount [mount]` and `ossmount check` (sans-IO).

Rules:
  1. Options use ossfs names and meanings; defaults are ossfs's unless the product contract says otherwise.
  2. `-o a,b=c` and `-oa,b=c` are the same; repeated `-o` merge; for a repeated option the last one wins.
  3. An unknown option, a flag given a value, a value option without one, or a malformed value is a
     `UsageError` naming the option and the accepted form or range (exit 2). Every ossfs 1.91.10 option is
     known: those that mean nothing to ossmount are validated like the others and listed in `NOOP_OPTIONS`
     with the reason; the generic mount(8)/fstab options are in `MOUNT_GENERIC_OPTIONS`.
  4. Secrets never pass through here: `passwd_file=` is a path; the credentials module reads it.
  5. Files named by options (ahbe_conf, mime, tmpdir) are read or checked when mounting, not here.

`describe_options()` is the single table the README and `--help` are generated from.
"""

from __future__ import annotations

import logging
import math
import re
import urllib.parse
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable

from ossmount.errors import UsageError, one_line

DEFAULT_URL = "https://oss-cn-hangzhou.aliyuncs.com"
DEFAULT_MIME_PATH = "/etc/mime.types"
DEBUG_LEVELS = ("crit", "err", "warn", "info", "debug")
_DEBUG_LEVEL_ALIASES = {
    "critical": "crit",
    "error": "err",
    "warning": "warn",
    "information": "info",
    "dbg": "debug",
    "silent": "crit",
    "wan": "warn",
    "inf": "info",
}
_LOG_LEVELS = {"crit": logging.CRITICAL, "err": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
               "debug": logging.DEBUG}
ATIME_MODES = ("noatime", "atime", "relatime", "strictatime")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown, so it can never be an owner
MULTIPART_SIZE_MIN_MIB = 1  # OSS accepts parts from 100 KiB; ossfs insists on 5 MiB without a reason
MULTIPART_SIZE_MAX_MIB = 5 * 1024  # the OSS part size limit
MULTIPART_THRESHOLD_MIN_MIB = 5  # ossfs's floor for multipart_threshold and multipart_copy_size
PARALLEL_COUNT_MAX = 1000
MiB = 1024 * 1024
STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
TRAFFIC_LIMIT_MIN = 819200  # bit/s (100 KiB/s): OSS's range for x-oss-traffic-limit
TRAFFIC_LIMIT_MAX = 838860800  # bit/s (100 MiB/s)
SSE_OSS = "AES256"
SSE_KMS = "KMS"
SSE_KEY_FROM_ENV = "$OSSSSEKMSID"  # use_sse=kmsid: the key id comes from this environment variable
_RAM_ROLE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_REGION_FROM_HOST_RE = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

HELP_HINT = "see `ossmount --help` for the list of options"


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


def _int_parser(low: int, high: int | None, unit: str = "") -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        if not _is_decimal(value) or int(value) < low or (high is not None and int(value) > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise _bad(name, value, f"an integer {bound}{unit}")
        return int(value)

    return parse


def _choice_parser(*choices: str, case_insensitive: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        for choice in choices:
            if value == choice or (case_insensitive and value.lower() == choice.lower()):
                return choice
        raise _bad(name, value, "one of " + "|".join(choices))

    return parse


def _seconds_parser(*, positive: bool = False, never: bool = False) -> Callable[[str, str], float]:
    """Seconds as a number (>= 0, or > 0 with `positive`); with `never`, -1 means forever (math.inf)."""
    expected = ("a number of seconds > 0" if positive else "a number of seconds >= 0") + (", or -1 (never)"
                                                                                           if never else "")

    def parse(name: str, value: str) -> float:
        if never and value.strip() == "-1":
            return math.inf
        try:
            seconds = float(value)
        except ValueError:
            raise _bad(name, value, expected) from None
        if not (seconds > 0 if positive else seconds >= 0) or seconds == math.inf:
            raise _bad(name, value, expected)
        return seconds

    return parse


def _hours_parser(name: str, value: str) -> float:
    """Hours as a number >= 0, or -1 (never: math.inf)."""
    if value.strip() == "-1":
        return math.inf
    try:
        hours = float(value)
    except ValueError:
        raise _bad(name, value, "a number of hours >= 0, or -1 (never)") from None
    if not 0 <= hours < math.inf:
        raise _bad(name, value, "a number of hours >= 0, or -1 (never)")
    return hours


def _parse_path(name: str, value: str) -> str:
    if not value or "\0" in value:
        raise _bad(name, value, "a file path")
    return value


def _parse_optional_path(name: str, value: str) -> str:
    if "\0" in value:
        raise _bad(name, value, "a path")
    return value


def _parse_text(name: str, value: str) -> str:
    if not value.isprintable():
        raise _bad(name, value, "printable text")
    return value


def _parse_dbglevel(name: str, value: str) -> str:
    level = _DEBUG_LEVEL_ALIASES.get(value.lower(), value.lower())
    if level not in DEBUG_LEVELS:
        raise _bad(name, value, "one of " + "|".join(DEBUG_LEVELS))
    return level


def parse_listen(name: str, value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` → (host, port); UsageError otherwise."""
    host, separator, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not separator or not host or not _is_decimal(port) or not 0 < int(port) < 65536:
        raise _bad(name, value, "HOST:PORT, e.g. 127.0.0.1:9810")
    return host, int(port)


def _parse_metrics_listen(name: str, value: str) -> str:
    parse_listen(name, value)
    return value


def _parse_region(name: str, value: str) -> str:
    if not _REGION_RE.match(value):
        raise _bad(name, value, "a region id such as cn-hangzhou")
    return value


def _parse_endpoint(name: str, value: str) -> str:
    """ossfs `endpoint=`: the V4 region, given as a region id or as an OSS endpoint host name."""
    match = _REGION_FROM_HOST_RE.match(value.lower().split("://", 1)[-1].split(":", 1)[0].rstrip("/"))
    if match:
        return match.group(1)
    if not _REGION_RE.match(value):
        raise _bad(name, value, "a region id such as cn-hangzhou (or oss-cn-hangzhou.aliyuncs.com)")
    return value


def _parse_public_bucket(name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise _bad(name, value, "1 (anonymous access, no credentials) or 0")
    return value == "1"


def _parse_traffic_limit(name: str, value: str) -> int:
    if not _is_decimal(value) or not (int(value) == 0 or TRAFFIC_LIMIT_MIN <= int(value) <= TRAFFIC_LIMIT_MAX):
        raise _bad(name, value, f"0 (no limit) or {TRAFFIC_LIMIT_MIN}..{TRAFFIC_LIMIT_MAX} (bit/s)")
    return int(value)


def _parse_use_sse(name: str, value: str) -> str:
    """`use_sse` / `=1` -> AES256 (OSS-managed keys); `=kms` -> KMS with OSS's default key; `=kmsid:ID` / `=k:ID`
    -> KMS with that key; `=kmsid` / `=k` -> KMS with the key id from $OSSSSEKMSID (ossfs forms)."""
    if value == "1":
        return SSE_OSS
    if value == "kms":
        return SSE_KMS
    if value in ("kmsid", "k"):
        return SSE_KMS + ":" + SSE_KEY_FROM_ENV
    for prefix in ("kmsid:", "k:"):
        if value.startswith(prefix) and value[len(prefix):] and value[len(prefix):].isprintable():
            return SSE_KMS + ":" + value[len(prefix):]
    raise _bad(name, value, "use_sse, use_sse=1, use_sse=kms, use_sse=kmsid:KEY_ID or use_sse=kmsid "
                            "(key id in $OSSSSEKMSID)")


def _parse_ram_role(name: str, value: str) -> str:
    if value != "auto" and not _RAM_ROLE_RE.match(value):
        raise _bad(name, value, "a RAM role name (letters, digits, '.', '-', '_') or auto")
    return value


def _parse_servicepath(name: str, value: str) -> str:
    path = value.strip()
    if not path.startswith("/") or any(c in path for c in "?#\\ ") or not path.isprintable():
        raise _bad(name, value, "a URL path starting with '/', e.g. /oss")
    return "/" + path.strip("/") if path.strip("/") else ""


def _parse_bucket_option(name: str, value: str) -> str:
    try:
        parse_bucket_spec(value)
    except UsageError as exc:
        raise _bad(name, value, "BUCKET[:/PREFIX] with a valid bucket name (" + str(exc).split(": ", 1)[-1] + ")") \
            from None
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
        raise _bad("url", value, "scheme://host[:port] with no path, e.g. https://oss-cn-hangzhou.aliyuncs.com "
                                 "(a path prefix goes in servicepath=)")
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
    try:
        return normalize_url(value)
    except UsageError as exc:
        if name == "url":
            raise
        raise UsageError(str(exc).replace("option 'url'", f"option '{name}'")) from None


# --------------------------------------------------------------------------------------------------
# The option table


FLAG, VALUE, EITHER = "flag", "value", "either"  # how an option is written: bare, NAME=VALUE, or both


@dataclass(frozen=True)
class OptionSpec:
    """One `-o` option: its name, the MountOptions field it sets (None: accepted without effect) and how.

    `form`: FLAG (`name`), VALUE (`name=VALUE`) or EITHER; a bare EITHER option is parsed as `name=<bare>`.
    `extra` sets further fields to fixed values whenever the option is given (e.g. mime= marks the file as
    explicit)."""

    name: str
    field: str | None
    meaning: str
    parse: Callable[[str, str], object] | None = None  # None: a flag
    flag_value: object = True  # what a flag sets its field to
    default_text: str = ""
    form: str = ""
    bare: str = ""
    display: str = ""
    extra: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if not self.form:
            object.__setattr__(self, "form", FLAG if self.parse is None else VALUE)

    @property
    def shown_name(self) -> str:
        return self.display or self.name + ("=" if self.form == VALUE else "")


def _noop(name: str, why: str, parse: Callable[[str, str], object] | None = None, *, form: str = "",
          bare: str = "", display: str = "") -> OptionSpec:
    return OptionSpec(name, None, f"accepted, no effect: {why}", parse, default_text="-", form=form, bare=bare,
                      display=display)


_MIB = " MiB"
_DISK_CACHE = "the disk cache is use_cache= (writes are spooled in tmpdir)"

OPTION_SPECS: tuple[OptionSpec, ...] = (
    # -- where and who ------------------------------------------------------------------------------------
    OptionSpec("url", "url", "OSS endpoint, http:// or https://, host name or IP[:port]; no scheme: https "
               "(http for *-internal.aliyuncs.com)", _parse_url, default_text=DEFAULT_URL),
    OptionSpec("host", "url", "the endpoint, as url= (older ossfs name)", _parse_url, default_text="url"),
    OptionSpec("servicepath", "servicepath", "path prefix put in front of every request path, for an endpoint "
               "behind a reverse proxy (e.g. /oss); signatures cover /bucket/key as OSS sees it",
               _parse_servicepath, default_text="/"),
    OptionSpec("bucket", "bucket", "BUCKET[:/PREFIX] as an option; the command line then names only the "
               "mountpoint", _parse_bucket_option, default_text="first argument"),
    OptionSpec("use_path_request_style", "path_style", "address the bucket in the URL path, not the host name "
               "(IP and localhost endpoints always are)", default_text="off"),
    OptionSpec("passwd_file", "passwd_file", "credentials file (BUCKET:AK:SK or AK:SK lines, mode 0600/0640) or "
               "directory (AccessKeyId, AccessKeySecret, SecurityToken files)", _parse_path,
               default_text="env, then /etc/passwd-ossmount"),
    OptionSpec("ram_role", "ram_role", "credentials of the ECS instance's RAM role from the instance metadata "
               "service (auto: the role attached to the instance), renewed before they expire without a remount; "
               "$OSSMOUNT_ECS_METADATA_ENDPOINT overrides http://100.100.100.200", _parse_ram_role,
               default_text="off", form=EITHER, bare="auto", display="ram_role[=NAME|auto]"),
    OptionSpec("use_session_token", "use_session_token", "require temporary (STS) credentials: fail unless they "
               "come with a session token (OSS_SESSION_TOKEN or a SecurityToken file)", default_text="off"),
    OptionSpec("public_bucket", "public_bucket", "1: anonymous access to a public-read(-write) bucket, no "
               "credentials read and no request signed; OSS refuses anonymous copies, so it implies nocopyapi",
               _parse_public_bucket, default_text="0"),
    OptionSpec("sigv1", "sigv4", "sign requests with OSS Signature V1 (the default, as in ossfs)", flag_value=False,
               default_text="on"),
    OptionSpec("sigv4", "sigv4", "sign requests with OSS Signature V4 (needs a region)", default_text="off"),
    OptionSpec("region", "region", "region id for sigv4, e.g. cn-hangzhou", _parse_region,
               default_text="from the url"),
    OptionSpec("endpoint", "region", "the sigv4 region, as region= (older ossfs name; an OSS host name is "
               "accepted)", _parse_endpoint, default_text="region"),
    OptionSpec("enable_unsigned_payload", "enable_unsigned_payload", "sigv4: do not hash bodies; V4 requests "
               "always carry x-oss-content-sha256: UNSIGNED-PAYLOAD, the only value OSS accepts, so this is the "
               "behaviour anyway (ignored with sigv1, as ossfs does)", default_text="on with sigv4"),
    OptionSpec("ca_bundle", "ca_bundle", "trust only the certificate authorities in this PEM file (or c_rehash "
               "directory) for the https endpoint, e.g. a private CA; else $REQUESTS_CA_BUNDLE or $CURL_CA_BUNDLE",
               _parse_path, default_text="system store + certifi"),
    OptionSpec("no_check_certificate", "no_check_certificate", "INSECURE: accept any TLS certificate of the "
               "endpoint", default_text="off"),
    OptionSpec("ssl_verify_hostname", "ssl_verify_hostname", "0: INSECURE, accept a trusted TLS certificate "
               "issued for another host name; 2: check the name", _choice_parser("0", "2"), default_text="2"),
    OptionSpec("connect_timeout", "connect_timeout", "seconds to wait for a TCP connection (and TLS handshake)",
               _seconds_parser(positive=True), default_text="300"),
    OptionSpec("readwrite_timeout", "readwrite_timeout", "seconds to wait for data on a connection (a request that "
               "makes no progress for that long fails and is retried)", _seconds_parser(positive=True),
               default_text="120"),
    OptionSpec("retries", "retries", "retries of a failed request after its first attempt (5xx, connection failures, "
               "timeouts; throttling and reads resumed mid-body are retried until the deadline); an operation fails "
               "with EIO after (retries + 1) x readwrite_timeout seconds without a successful request",
               _int_parser(0, 100), default_text="5"),
    OptionSpec("requester_pays", "requester_pays", "send x-oss-request-payer: requester (Requester Pays buckets)",
               default_text="off"),
    OptionSpec("noua", "user_agent", "send no User-Agent header", flag_value=False, default_text="off"),
    OptionSpec("instance_name", "instance_name", "name added to log lines and to the User-Agent", _parse_text,
               default_text="none"),
    # -- ownership and modes --------------------------------------------------------------------------------
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
    # -- listing and caches ---------------------------------------------------------------------------------
    OptionSpec("listobjectsv2", "list_objects_v2", "list with ListObjectsV2", default_text="on"),
    OptionSpec("listobjectsv1", "list_objects_v2", "list with ListObjects (V1) instead of V2",
               flag_value=False, default_text="off"),
    OptionSpec("list_object_max_keys", "list_object_max_keys", "max-keys of each list request (1..1000; OSS "
               "returns at most 1000)", _int_parser(1, 1000), default_text="1000"),
    OptionSpec("complement_stat", "complement_stat", "a dir/ object without x-oss-meta-mode gets a "
               "directory mode", default_text="on"),
    OptionSpec("nocomplement_stat", "complement_stat", "turn complement_stat off", flag_value=False,
               default_text="off"),
    OptionSpec("max_stat_cache_size", "max_stat_cache_size", "entries in the stat cache; 0 disables it",
               _int_parser(0, None), default_text="100000"),
    OptionSpec("stat_cache_expire", "stat_cache_expire", "seconds a stat cache entry stays valid; -1: entries "
               "never expire (other clients' changes are seen after a remount or cache eviction)",
               _seconds_parser(never=True), default_text="900"),
    OptionSpec("enable_noobj_cache", "enable_noobj_cache", "also cache that an object does not exist",
               default_text="off"),
    OptionSpec("disable_noobj_cache", "enable_noobj_cache", "never cache that an object does not exist",
               flag_value=False, default_text="on"),
    OptionSpec("attr_timeout", "attr_timeout", "seconds the kernel caches attributes",
               _seconds_parser(), default_text="stat_cache_expire"),
    OptionSpec("entry_timeout", "entry_timeout", "seconds the kernel caches a name lookup",
               _seconds_parser(), default_text="stat_cache_expire"),
    OptionSpec("negative_timeout", "negative_timeout", "seconds the kernel caches that a name does not exist",
               _seconds_parser(), default_text="0"),
    OptionSpec("open_check_window", "open_check_window", "an open sends one HEAD (a read-only open of a file ≤ "
               "1 MiB: one GET of it) to see another client's change (close-to-open), unless the entry was listed or "
               "checked within this many seconds; a value of stat_cache_expire or more never checks",
               _seconds_parser(), default_text="1"),
    OptionSpec("stat_cache_dir", "stat_cache_dir", "where the persistent stat cache lives (object metadata kept "
               "across remounts, checked against each listing's ETag and Last-Modified); none: no persistent "
               "cache", _parse_optional_path, default_text="/var/cache/ossmount (root), else "
               "~/.cache/ossmount"),
    OptionSpec("readdir_optimize", "readdir_optimize", "readdir takes attributes from the listing (no HEAD "
               "per entry): modes and owners are the defaults until an entry is looked up", default_text="off"),
    OptionSpec("readdir_check_size", "readdir_check_size", "with readdir_optimize, objects of at most this many "
               "bytes (symlinks, small files) are still HEADed for their mode and owner", _int_parser(0, None),
               default_text="none HEADed"),
    OptionSpec("symlink_in_meta", "symlink_in_meta", "write symlink targets into x-oss-meta-symlink-target "
               "(ossfs `header:<len>:<url-encoded target>` form, empty body) instead of the body; both forms are "
               "always read", default_text="off"),
    OptionSpec("use_wtf8", "use_wtf8", "names that are not valid UTF-8 are stored as valid UTF-8 (each bad byte "
               "as a private-use code point, as ossfs/s3fs do) and shown with their original bytes",
               default_text="off"),
    # -- uploads ------------------------------------------------------------------------------------------
    OptionSpec("mime", "mime", "mime.types file for the Content-Type of uploads (built-in table if absent)",
               _parse_path, default_text=DEFAULT_MIME_PATH, extra=(("mime_explicit", True),)),
    OptionSpec("multipart_size", "multipart_size", f"part size in MiB for multipart uploads "
               f"({MULTIPART_SIZE_MIN_MIB}..{MULTIPART_SIZE_MAX_MIB})",
               _int_parser(MULTIPART_SIZE_MIN_MIB, MULTIPART_SIZE_MAX_MIB), default_text="10"),
    OptionSpec("multipart_threshold", "multipart_threshold", f"files of at least this many MiB are uploaded "
               f"in parts ({MULTIPART_THRESHOLD_MIN_MIB}..{MULTIPART_SIZE_MAX_MIB})",
               _int_parser(MULTIPART_THRESHOLD_MIN_MIB, MULTIPART_SIZE_MAX_MIB, _MIB),
               default_text="multipart_size"),
    OptionSpec("nomultipart", "nomultipart", "never upload in parts: one PutObject per file (at most 5 GiB; a "
               "larger file fails with EFBIG)", default_text="off"),
    OptionSpec("parallel_count", "parallel_count", "parts uploaded in parallel", _int_parser(1, PARALLEL_COUNT_MAX),
               default_text="5"),
    OptionSpec("parallel_upload", "parallel_count", "parallel_count, as older ossfs names it",
               _int_parser(1, PARALLEL_COUNT_MAX), default_text="5"),
    OptionSpec("tmpdir", "tmpdir", "directory (must exist) for the spool (DIR/ossmount-spool-UID: dirty data and its "
               "journal, kept across a crash for the next mount) and for a writer's bytes kept aside "
               "(DIR/ossmount-conflicts-UID)", _parse_path,
               default_text="/var/lib/ossmount/spool (root), ~/.local/state/ossmount/spool"),
    OptionSpec("stale_upload_hours", "stale_upload_hours", "at mount, incomplete multipart uploads under the prefix "
               "that ossmount started, initiated more than this many hours ago and owned by no live mount of this "
               "machine, are aborted (0: all of them; -1: none)", _hours_parser, default_text="24"),
    OptionSpec("default_acl", "default_acl", "x-oss-object-acl of every object written (default: the bucket's)",
               _choice_parser("private", "public-read", "public-read-write", "default"), default_text="not sent"),
    OptionSpec("storage_class", "storage_class", "x-oss-storage-class of every object written",
               _choice_parser(*STORAGE_CLASSES, case_insensitive=True), default_text="the bucket's"),
    OptionSpec("use_sse", "use_sse", "server-side encryption of every object written: use_sse or =1 OSS-managed "
               "keys (AES256); =kms KMS with OSS's default key; =kmsid:KEY_ID (=k:KEY_ID) that KMS key; =kmsid "
               "the key in $OSSSSEKMSID", _parse_use_sse, default_text="off", form=EITHER, bare="1",
               display="use_sse[=1|kms|kmsid:ID]"),
    OptionSpec("ahbe_conf", "ahbe_conf", "file of extra headers for written objects: lines `SUFFIX HEADER "
               "VALUE` or `reg:REGEX HEADER VALUE` matched against the path in the mount (ossfs format)",
               _parse_path, default_text="none"),
    OptionSpec("upload_traffic_limit", "upload_traffic_limit", f"x-oss-traffic-limit of uploads, bit/s: 0 or "
               f"{TRAFFIC_LIMIT_MIN}..{TRAFFIC_LIMIT_MAX}", _parse_traffic_limit, default_text="0 (none)"),
    OptionSpec("download_traffic_limit", "download_traffic_limit", f"x-oss-traffic-limit of downloads, bit/s: 0 "
               f"or {TRAFFIC_LIMIT_MIN}..{TRAFFIC_LIMIT_MAX}", _parse_traffic_limit, default_text="0 (none)"),
    OptionSpec("nocopyapi", "nocopyapi", "never use CopyObject/UploadPartCopy: chmod, chown, utimens, xattrs and "
               "rename download and re-upload the object", default_text="off"),
    OptionSpec("norenameapi", "norenameapi", "rename downloads and re-uploads instead of CopyObject (metadata "
               "changes still copy on the server)", default_text="off"),
    OptionSpec("noshallowcopyapi", "noshallowcopyapi", "copy objects above singlepart_copy_limit part by part "
               "(UploadPartCopy) instead of one CopyObject", default_text="off"),
    OptionSpec("nomixupload", "nomixupload", "rewriting part of a large file uploads every part instead of copying "
               "unchanged ones on the server (UploadPartCopy)", default_text="off"),
    OptionSpec("singlepart_copy_limit", "singlepart_copy_limit", "with noshallowcopyapi, MiB above which a copy "
               "goes part by part", _int_parser(1, None, _MIB), default_text="512"),
    OptionSpec("multipart_copy_size", "multipart_copy_size", "with noshallowcopyapi, MiB per copied part "
               f"({MULTIPART_THRESHOLD_MIN_MIB}..{MULTIPART_SIZE_MAX_MIB})",
               _int_parser(MULTIPART_THRESHOLD_MIN_MIB, MULTIPART_SIZE_MAX_MIB, _MIB), default_text="512"),
    # -- the process ---------------------------------------------------------------------------------------
    OptionSpec("nonempty", "nonempty", "allow mounting over a non-empty directory", default_text="off"),
    OptionSpec("dead_mount", "dead_mount", "mounting where a FUSE mount died (its process was killed: "
               "'Transport endpoint is not connected'): remount unmounts the dead mount lazily (logged) and mounts "
               "again, as fstab and automount retries expect; fail refuses with exit 7 naming fusermount3 -u",
               _choice_parser("remount", "fail"), default_text="remount"),
    OptionSpec("dbglevel", "dbglevel", "log level: " + "|".join(DEBUG_LEVELS), _parse_dbglevel,
               default_text="crit"),
    OptionSpec("logfile", "log_file", "write the log to this file instead of stderr, rotated when it reaches "
               "--log-max-size (10M) keeping --log-backups (2) old files; the same as --log-file",
               _parse_path, default_text="stderr"),
    OptionSpec("no_time_stamp_msg", "no_time_stamp_msg", "log lines without a time stamp (for journald and "
               "log collectors that add their own)", default_text="off"),
    OptionSpec("metrics_listen", "metrics_listen", "serve this mount's Prometheus metrics at "
               "http://HOST:PORT/metrics (e.g. 127.0.0.1:9810; README: Operating ossmount)", _parse_metrics_listen,
               default_text="off"),
    OptionSpec("noatime", "atime", "do not update access times (default)", flag_value="noatime",
               default_text="on"),
    OptionSpec("atime", "atime", "kernel access-time mode", flag_value="atime", default_text="off"),
    OptionSpec("relatime", "atime", "kernel access-time mode", flag_value="relatime", default_text="off"),
    OptionSpec("strictatime", "atime", "kernel access-time mode", flag_value="strictatime", default_text="off"),
    OptionSpec("noexec", "noexec", "do not allow executing files", default_text="off"),
    OptionSpec("exec", "noexec", "allow executing files", flag_value=False, default_text="on"),
    OptionSpec("nosuid", "nosuid", "ignore set-user-id bits", default_text="off"),
    OptionSpec("nodev", "nodev", "do not interpret device files", default_text="off"),
    # -- accepted without effect -----------------------------------------------------------------------------
    OptionSpec("use_cache", "use_cache", "directory of an on-disk block cache of object data (1 MiB blocks "
               "keyed by key and ETag, shared by all readers, kept across remounts; a changed object never serves "
               "old blocks); empty: no cache", _parse_optional_path, default_text="none", display="use_cache=DIR"),
    OptionSpec("del_cache", "del_cache", "empty the use_cache directory's blocks at mount and at unmount",
               default_text="off"),
    _noop("check_cache_dir_exist", _DISK_CACHE),
    OptionSpec("ensure_diskfree", "ensure_diskfree", "keep at least this much of use_cache's filesystem free, "
               "deleting least recently used blocks", _int_parser(0, None, _MIB), default_text="0"),
    OptionSpec("free_space_mb", "ensure_diskfree", "ensure_diskfree, as ossfs also names it",
               _int_parser(0, None, _MIB), default_text="0"),
    OptionSpec("max_cache_size", "max_cache_size", "at most this much data in use_cache, least recently used "
               "blocks deleted first (0: no bound but ensure_diskfree)", _int_parser(0, None, _MIB),
               default_text="0"),
    _noop("free_space_ratio", _DISK_CACHE, _int_parser(0, 100, " (percent)")),
    _noop("fake_diskfree", _DISK_CACHE, _int_parser(0, None, _MIB)),
    _noop("max_dirty_data", "files written from their start are uploaded part by part as they are written; "
          "other dirty data is spooled to disk and uploaded on flush/close",
          lambda name, value: -1 if value.strip() == "-1" else _int_parser(50, None, _MIB)(name, value)),
    _noop("direct_read", "ossmount always reads straight from OSS with its own prefetching"),
    _noop("direct_read_chunk_size", "reads are sized by ossmount's prefetch window", _int_parser(1, 32, _MIB)),
    _noop("direct_read_prefetch_chunks", "reads are sized by ossmount's prefetch window", _int_parser(0, None)),
    _noop("direct_read_prefetch_limit", "prefetch memory is bounded by ossmount (64 MiB)",
          _int_parser(128, None, _MIB)),
    _noop("direct_read_prefetch_thread", "prefetch requests run in the mount's own task pool", _int_parser(1, None)),
    _noop("direct_read_backward_chunks", "reads are sized by ossmount's prefetch window", _int_parser(0, None)),
    _noop("direct_read_local_file_cache_size_mb", _DISK_CACHE, _int_parser(0, None, _MIB)),
    _noop("enable_content_md5", "every upload is already integrity-checked with CRC64"),
    _noop("noxmlns", "the XML namespace is handled automatically"),
    _noop("multireq_max", "readdir HEADs at most 16 entries at once", _int_parser(1, None)),
    _noop("curldbg", "there is no curl; use dbglevel=debug (or -d)", _choice_parser("normal", "body"),
          form=EITHER, bare="normal", display="curldbg[=normal|body]"),
    _noop("notsup_compat_dir", "only dir/ objects and implicit prefixes are directories (no dir_$folder$)"),
    _noop("use_xattr", "extended attributes are always supported", _choice_parser("0", "1"), form=EITHER,
          bare="1", display="use_xattr[=0|1]"),
    _noop("stat_cache_interval_expire", "stat_cache_expire is the one expiry rule", _seconds_parser()),
    _noop("nosscache", "TLS sessions are managed by the HTTP client"),
    _noop("nodnscache", "name resolution is the system's"),
    _noop("cipher_suites", "TLS cipher suites are the system's (OpenSSL defaults)", _parse_text),
    _noop("cloudbox_id", "OSS on CloudBox is not supported; requests are signed for the region's OSS",
          _parse_text),
    _noop("credlib", "ossfs credential libraries cannot be loaded; use passwd_file, ram_role or the environment",
          _parse_optional_path),
    _noop("credlib_opts", "options of credlib, which is not supported", _parse_text),
    _noop("set_check_cache_sigusr1", _DISK_CACHE, _parse_optional_path, form=EITHER,
          display="set_check_cache_sigusr1[=FILE]"),
    _noop("skip_clean_statcache_on_ro_flush", "a flush of a file opened read-only never touches the caches"),
    _noop("simulate_mtime_ns_with_crc64", "mtimes are stored and shown as ossfs stores them"),
    _noop("fd_page_size", "no longer used by ossfs either", _int_parser(0, None)),
    _noop("use_rrs", "OSS has no reduced-redundancy class; use storage_class=", _choice_parser("0", "1"),
          form=EITHER, bare="1", display="use_rrs[=0|1]"),
    _noop("load_sse_c", "customer-provided keys (SSE-C) are not supported by OSS; use use_sse", _parse_path),
    _noop("big_writes", "always on in FUSE 3"),
    _noop("kernel_cache", "the kernel page cache is managed by ossmount"),
    _noop("auto_cache", "the kernel page cache is managed by ossmount"),
    _noop("allow_root", "use allow_other; the kernel checks the mode bits"),
    _noop("max_background", "FUSE queue tuning is fixed", _int_parser(1, None)),
    _noop("congestion_threshold", "FUSE queue tuning is fixed", _int_parser(1, None)),
    _noop("default_permissions", "always on: the kernel checks the mode bits"),
    _noop("dev", "FUSE mounts are always nodev for unprivileged users; accepted for fstab"),
    _noop("suid", "FUSE mounts are always nosuid for unprivileged users; accepted for fstab"),
)
_SPECS_BY_NAME = {spec.name: spec for spec in OPTION_SPECS}

# ossfs options accepted without effect, with the reason (a view of OPTION_SPECS).
NOOP_OPTIONS: dict[str, str] = {spec.name: spec.meaning.split(": ", 1)[1] for spec in OPTION_SPECS
                                if spec.field is None}

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


def describe_options() -> list[tuple[str, str, str]]:
    """Every accepted `-o` option as (name, default, meaning), including documented no-ops."""
    rows = [(spec.shown_name, spec.default_text, spec.meaning) for spec in OPTION_SPECS]
    rows += [(name, "-", f"accepted, no effect: {why}") for name, why in MOUNT_GENERIC_OPTIONS.items()]
    rows.append(("x-*", "-", "accepted, no effect: mount(8)/systemd options such as x-systemd.automount"))
    return rows


# --------------------------------------------------------------------------------------------------
# MountOptions


@dataclass(frozen=True)
class MountOptions:
    """Validated `-o` options of one mount. Construct directly or with `parse_options`.

    Sizes named *_mib are MiB, times are seconds (math.inf: never expires), traffic limits bit/s."""

    url: str = DEFAULT_URL
    servicepath: str = ""
    bucket: str | None = None  # bucket= (BUCKET[:/PREFIX])
    path_style: bool = False
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    mp_umask: int = 0
    allow_other: bool = False
    read_only: bool = False
    list_objects_v2: bool = True
    list_object_max_keys: int = 1000
    complement_stat: bool = True
    max_stat_cache_size: int = 100_000
    stat_cache_expire: float = 900.0
    enable_noobj_cache: bool = False
    attr_timeout: float | None = None  # None: stat_cache_expire
    entry_timeout: float | None = None  # None: stat_cache_expire
    negative_timeout: float = 0.0
    stat_cache_dir: str | None = None  # the persistent stat cache's directory; "none": off
    readdir_optimize: bool = False
    readdir_check_size: int | None = None  # bytes; None: no entry HEADed with readdir_optimize
    use_wtf8: bool = False
    mime: str = DEFAULT_MIME_PATH
    mime_explicit: bool = False  # mime= was given: a missing file is then the user's mistake
    multipart_size: int = 10  # MiB
    multipart_threshold: int | None = None  # MiB; None: multipart_size
    nomultipart: bool = False
    parallel_count: int = 5
    tmpdir: str | None = None
    stale_upload_hours: float = 24.0  # math.inf: never abort at mount
    use_cache: str | None = None  # block cache directory (blockcache.py); None or "": none
    del_cache: bool = False
    ensure_diskfree: int = 0  # MiB
    max_cache_size: int = 0  # MiB; 0: no bound
    default_acl: str | None = None
    storage_class: str | None = None
    use_sse: str | None = None  # "AES256", "KMS", "KMS:<key id>" or "KMS:$OSSSSEKMSID"
    ahbe_conf: str | None = None
    upload_traffic_limit: int = 0  # bit/s
    download_traffic_limit: int = 0  # bit/s
    nocopyapi: bool = False
    norenameapi: bool = False
    noshallowcopyapi: bool = False
    nomixupload: bool = False
    singlepart_copy_limit: int = 512  # MiB
    multipart_copy_size: int = 512  # MiB
    sigv4: bool = False
    region: str | None = None
    enable_unsigned_payload: bool = False
    ca_bundle: str | None = None
    no_check_certificate: bool = False
    ssl_verify_hostname: str = "2"
    connect_timeout: float = 300.0
    readwrite_timeout: float = 120.0
    retries: int = 5
    requester_pays: bool = False
    user_agent: bool = True  # False: noua
    instance_name: str | None = None
    passwd_file: str | None = None
    ram_role: str | None = None  # a role name, or "auto"
    use_session_token: bool = False
    public_bucket: bool = False
    nonempty: bool = False
    dead_mount: str = "remount"  # or "fail"
    dbglevel: str = "crit"
    log_file: str | None = None
    no_time_stamp_msg: bool = False
    metrics_listen: str | None = None  # HOST:PORT
    atime: str = "noatime"
    noexec: bool = False
    nosuid: bool = False
    nodev: bool = False
    symlink_in_meta: bool = False
    open_check_window: float = 1.0
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
            raise _bad("stat_cache_expire", str(self.stat_cache_expire), "a number of seconds >= 0, or -1 (never)")
        if not MULTIPART_SIZE_MIN_MIB <= self.multipart_size <= MULTIPART_SIZE_MAX_MIB:
            raise _bad("multipart_size", str(self.multipart_size),
                       f"an integer {MULTIPART_SIZE_MIN_MIB}..{MULTIPART_SIZE_MAX_MIB}")
        if not 1 <= self.parallel_count <= PARALLEL_COUNT_MAX:
            raise _bad("parallel_count", str(self.parallel_count), f"an integer 1..{PARALLEL_COUNT_MAX}")
        if not 1 <= self.list_object_max_keys <= 1000:
            raise _bad("list_object_max_keys", str(self.list_object_max_keys), "an integer 1..1000")
        if self.dbglevel not in DEBUG_LEVELS:
            raise _bad("dbglevel", self.dbglevel, "one of " + "|".join(DEBUG_LEVELS))
        if self.atime not in ATIME_MODES:
            raise _bad("atime", self.atime, "one of " + "|".join(ATIME_MODES))
        if self.region is not None:
            _parse_region("region", self.region)
        if self.bucket is not None:
            parse_bucket_spec(self.bucket)
        if self.sigv4 and self.effective_region is None:
            raise UsageError(
                f"option 'sigv4' needs a region: add -o region=REGION (the url {self.url} names none)"
            )
        if self.ram_role is not None and self.passwd_file is not None:
            raise UsageError("options 'ram_role' and 'passwd_file' exclude each other: the credentials come either "
                             "from the instance's RAM role or from the file")

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
        return self.multipart_size * MiB

    @property
    def multipart_threshold_bytes(self) -> float:
        """Size from which a file is uploaded in parts (math.inf with nomultipart)."""
        if self.nomultipart:
            return math.inf
        return (self.multipart_threshold or self.multipart_size) * MiB

    @property
    def sse_algorithm(self) -> str | None:
        """AES256 or KMS (use_sse), None without server-side encryption."""
        return self.use_sse.split(":", 1)[0] if self.use_sse else None

    @property
    def sse_key_id(self) -> str | None:
        """The KMS key id of use_sse=kmsid:ID; SSE_KEY_FROM_ENV for use_sse=kmsid (resolved from $OSSSSEKMSID)."""
        if not self.use_sse or ":" not in self.use_sse:
            return None
        return self.use_sse.split(":", 1)[1]

    @property
    def stat_cache_never_expires(self) -> bool:
        return self.stat_cache_expire == math.inf

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
            if name in MOUNT_GENERIC_OPTIONS or item.startswith(MOUNT_GENERIC_PREFIXES):
                ignored.append(name)
                continue
            raise UsageError(f"unknown option '{one_line(name)}' ({HELP_HINT})")
        if spec.form == FLAG:
            if has_value:
                raise UsageError(f"option '{name}' takes no value (got '{one_line(item)}'); write just '{name}'")
            value: object = spec.flag_value
        elif not has_value and spec.form == EITHER:
            value = spec.parse(name, spec.bare) if spec.parse is not None else spec.flag_value
        elif not has_value or (raw == "" and spec.parse is not _parse_optional_path):
            raise UsageError(f"option '{name}' needs a value: {name}=VALUE ({spec.meaning})")
        else:
            assert spec.parse is not None
            value = spec.parse(name, raw)
        if spec.field is None:
            ignored.append(name)
            continue
        values[spec.field] = value
        values.update(spec.extra)
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
                raise UsageError(f"'{one_line(arg)}' needs an argument: -o OPT[,OPT...]")
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
            raise UsageError(f"unknown flag '{one_line(arg)}' ({HELP_HINT})")
    return raw


# Sources fstab lines give when the bucket is in `bucket=` (ossfs ignores a source named "ossfs").
PLACEHOLDER_SOURCES = ("ossfs", "ossmount", "none")


def _bucket_from(positionals: list[str], options: MountOptions, count: int, usage: str) -> tuple[str, str, list[str]]:
    """(bucket, prefix, remaining positionals): the bucket comes from the first positional or from `bucket=`.

    With `bucket=` the positional may be left out, or be the same spec or a placeholder (fstab needs a source)."""
    if options.bucket is not None:
        if len(positionals) == count:
            return (*parse_bucket_spec(options.bucket), positionals)
        if len(positionals) == count + 1:
            source = positionals[0]
            if source in PLACEHOLDER_SOURCES or parse_bucket_spec(source) == parse_bucket_spec(options.bucket):
                return (*parse_bucket_spec(options.bucket), positionals[1:])
            raise UsageError(f"the bucket is given twice, as {source!r} and as bucket={options.bucket!r}: "
                             "keep one")
    elif len(positionals) == count + 1:
        return (*parse_bucket_spec(positionals[0]), positionals[1:])
    got = "nothing" if not positionals else " ".join(repr(p) for p in positionals)
    raise UsageError(f"expected {usage}, got {got}")


def parse_mount_args(argv: list[str]) -> MountArgs:
    """Parse `BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d] [-h]` (flags anywhere), or
    `MOUNTPOINT -o bucket=BUCKET[:/PREFIX] ...` as ossfs accepts.

    With `-h` the positionals may be missing (bucket/mountpoint are then "") and `show_help` is set.
    """
    raw = _scan_argv(argv, allow_foreground=True)
    options = parse_options(raw.option_items)
    if raw.show_help and len(raw.positionals) < (1 if options.bucket is not None else 2):
        return MountArgs("", "", "", options, raw.foreground, raw.debug, True, raw.ready_fd)
    bucket, prefix, rest = _bucket_from(
        raw.positionals, options, 1,
        "BUCKET[:/PREFIX] MOUNTPOINT (usage: ossmount BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d], "
        "or ossmount MOUNTPOINT -o bucket=BUCKET[:/PREFIX] ...)")
    return MountArgs(bucket, prefix, rest[0], options, raw.foreground, raw.debug, raw.show_help, raw.ready_fd)


def parse_check_args(argv: list[str]) -> CheckArgs:
    """Parse `BUCKET[:/PREFIX] [-o OPT[,OPT...]]... [-d] [-h]` (or `-o bucket=...`) for `ossmount check`."""
    raw = _scan_argv(argv, allow_foreground=False)
    options = parse_options(raw.option_items)
    if raw.show_help and not raw.positionals and options.bucket is None:
        return CheckArgs("", "", options, raw.debug, True)
    bucket, prefix, _ = _bucket_from(raw.positionals, options, 0,
                                     "BUCKET[:/PREFIX] (usage: ossmount check BUCKET[:/PREFIX] -o url=... [-o ...])")
    return CheckArgs(bucket, prefix, options, raw.debug, raw.show_help)


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
        # GitHub tables split cells at '|' even inside code spans unless it is escaped as '\|'.
        shown = name.replace("|", "\\|")
        lines.append(f"| `{shown}` | {default.replace('|', '&#124;')} | {meaning.replace('|', '&#124;')} |")
    return "\n".join(lines)
