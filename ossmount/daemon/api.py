"""The daemon's API as values: routing, request bodies → validated requests, volume specs (sans-IO).

Contract: csi-daemon.md §5.2–§5.6. Every malformed request becomes one `DaemonError("INVALID_ARGUMENT")`
naming the field and what is expected, before anything changes. Rules:

  * Bodies are JSON objects of at most `MAX_BODY_BYTES`; unknown fields are refused (a typo such as
    `readonly` for `read_only` must not be silently ignored).
  * `volume_id`: 1–512 bytes of UTF-8 without NUL or control characters.
  * Paths (`target_path`, `global_path`): absolute, normalised (no `.`/`..`, no `//`, no trailing `/`), not
    `/` and not under `/proc`, `/sys` or `/dev`, and under one of the allowed prefixes when the daemon has
    any. The IO layer resolves symlinks and checks the resolved path again with `check_path`.
  * `spec.options`: Alibaba `otherOpts` strings (`"-o a -o b=c -oX,Y"`) or bare `key[=value]` items, a
    string or a list of them. They are validated by the mount's own option parser; options the daemon
    owns (`passwd_file`, `logfile`, `url`, `bucket`) are refused, `ro` folds into `read_only`.
    The canonical list keeps the first occurrence per option (as Alibaba merges), then adds the defaults
    `allow_other`, `listobjectsv2` and `dbglevel=info` where the user set nothing for them.
  * `spec.signature`: `v1` or `v4`; empty means `v4` when a region is known (given or in the endpoint), as
    Alibaba's driver decides, else `v1`.
  * Credentials types: `access_key`, `sts`, and `none` (keep what the volume has). `rrsa`, `ecs_ram_role`
    and `anonymous` are part of the contract but refused with a message saying so: the mount has `ram_role` and
    `public_bucket=1` for the latter two, which the daemon does not map them onto yet.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ossmount.daemon.errors import DaemonError, invalid
from ossmount.errors import UsageError
from ossmount.options import (
    MOUNT_GENERIC_PREFIXES,
    OPTION_SPECS,
    MountOptions,
    normalize_url,
    parse_bucket_spec,
    parse_options,
    split_option_string,
)
from ossmount.status import mask_access_key_id

MAX_BODY_BYTES = 1024 * 1024
MAX_VOLUME_ID_BYTES = 512
MAX_PATH_BYTES = 4096
MAX_SECRET_BYTES = 16 * 1024
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 110.0  # kubelet's csiTimeout is 2 min: answer well inside it
DEFAULT_DRAIN_TIMEOUT_S = 60.0
FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")

DAEMON_OWNED_OPTIONS = {
    "passwd_file": "the daemon writes the credentials itself; send them in `credentials`",
    "logfile": "the daemon sets the log file (volumes/<vh>/ossmount.log)",
    "url": "give the endpoint in spec.endpoint",
    "bucket": "give the bucket in spec.bucket",
}
DEFAULT_OPTIONS = ("allow_other", "listobjectsv2", "dbglevel=info")
SUPPORTED_CREDENTIALS = ("access_key", "sts", "none")
UNSUPPORTED_CREDENTIALS = ("rrsa", "ecs_ram_role", "anonymous")
_OPTION_FIELDS = {spec.name: spec.field for spec in OPTION_SPECS}


# --------------------------------------------------------------------------------------------------
# Field readers


def decode_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object (an empty body is `{}`)."""
    if len(body) > MAX_BODY_BYTES:
        raise invalid(f"request body of {len(body)} bytes is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise invalid("request body must be a JSON object")
    return document


def _reject_unknown(document: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise invalid(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} in "
                      f"{where} (expected {', '.join(sorted(allowed))})")


def _string(document: Mapping[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = document.get(name)
    if value is None:
        if required:
            raise invalid(f"missing field '{name}'")
        return default
    if not isinstance(value, str):
        raise invalid(f"field '{name}' must be a string")
    if required and not value:
        raise invalid(f"field '{name}' must not be empty")
    return value


def _bool(document: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = document.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"field '{name}' must be true or false")
    return value


def _seconds(document: Mapping[str, Any], name: str, default: float, maximum: float) -> float:
    value = document.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
        raise invalid(f"field '{name}' must be a number of seconds in (0, {maximum:g}]")
    return float(value)


def _object(document: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"field '{name}' must be a JSON object")
    return value


def check_volume_id(value: Any) -> str:
    if value is None or value == "":
        raise invalid("missing field 'volume_id'")
    if not isinstance(value, str):
        raise invalid("field 'volume_id' must be a string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VOLUME_ID_BYTES:
        raise invalid(f"volume_id is longer than {MAX_VOLUME_ID_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise invalid("volume_id must not contain NUL or control characters")
    return value


def volume_hash(volume_id: str) -> str:
    """`vh`: the hex SHA-256 of the volume id, which names everything of the volume on disk."""
    return hashlib.sha256(volume_id.encode("utf-8", "surrogatepass")).hexdigest()


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_path(value: Any, name: str, allowed_prefixes: Iterable[str] = ()) -> str:
    """`value` if it is an acceptable absolute path for field `name`; INVALID_ARGUMENT otherwise."""
    if value is None or value == "":
        raise invalid(f"missing field '{name}'")
    if not isinstance(value, str):
        raise invalid(f"field '{name}' must be a string")
    if "\0" in value or len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise invalid(f"{name} {value!r} is not a valid path")
    if not value.startswith("/"):
        raise invalid(f"{name} {value!r} must be an absolute path")
    if ".." in value.split("/"):
        raise invalid(f"{name} {value!r} must not contain '..'")
    if posixpath.normpath(value) != value or value.startswith("//"):
        raise invalid(f"{name} {value!r} is not normalised (write {posixpath.normpath(value)!r})")
    if value == "/":
        raise invalid(f"{name} must not be /")
    for root in FORBIDDEN_ROOTS:
        if _is_under(value, root):
            raise invalid(f"{name} {value!r} is under {root}, which the daemon never mounts on")
    prefixes = list(allowed_prefixes)
    if prefixes and not any(_is_under(value, prefix) for prefix in prefixes):
        raise invalid(f"{name} {value!r} is outside the allowed prefixes ({', '.join(prefixes)}); "
                      "start the daemon with --allowed-target-prefix to allow it")
    return value


# --------------------------------------------------------------------------------------------------
# Volume spec


def split_user_options(value: Any) -> list[str]:
    """`spec.options` (a string or a list of strings, Alibaba `otherOpts` style or bare items) → items."""
    if value is None:
        return []
    strings = [value] if isinstance(value, str) else value
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise invalid("field 'spec.options' must be a string or a list of strings")
    items: list[str] = []
    for text in strings:
        tokens = iter(text.split())
        for token in tokens:
            if token == "-o":
                following = next(tokens, None)
                if following is None:
                    raise invalid(f"invalid otherOpts {text!r}: '-o' needs an argument")
                items += split_option_string(following)
            elif token.startswith("-o"):
                items += split_option_string(token[2:])
            elif token.startswith("-"):
                raise invalid(f"invalid otherOpts {text!r}: only -o OPTIONS is allowed, not {token!r}")
            else:
                items += split_option_string(token)
    return items


def _option_key(item: str) -> str:
    """What two items must share to be "the same option": the MountOptions field they set, else the name."""
    name = item.partition("=")[0]
    if item.startswith(MOUNT_GENERIC_PREFIXES):
        return item
    return _OPTION_FIELDS.get(name, name)


def canonical_options(items: Iterable[str]) -> tuple[list[str], bool]:
    """(options, read_only): daemon-owned options refused, `ro`/`rw` taken out, first occurrence per option
    kept, defaults added where the user set nothing for them."""
    kept: dict[str, str] = {}
    ro_or_rw = None
    for item in items:
        name = item.partition("=")[0]
        if name in DAEMON_OWNED_OPTIONS:
            raise invalid(f"option '{name}' is set by the daemon: {DAEMON_OWNED_OPTIONS[name]}")
        if name in ("ro", "rw"):
            ro_or_rw = ro_or_rw or name
        else:
            kept.setdefault(_option_key(item), item)
    for item in DEFAULT_OPTIONS:
        kept.setdefault(_option_key(item), item)
    return list(kept.values()), ro_or_rw == "ro"


@dataclass(frozen=True)
class VolumeSpec:
    """What a volume mounts; never holds secrets. `prefix` is "" or "a/b/" (the mount's own form)."""

    bucket: str
    prefix: str
    endpoint: str
    region: str | None
    signature: str
    options: tuple[str, ...]
    read_only: bool

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "VolumeSpec":
        _reject_unknown(document, ("bucket", "prefix", "endpoint", "region", "signature", "options", "read_only"),
                        "spec")
        bucket = _string(document, "bucket", required=True)
        prefix_text = _string(document, "prefix", default="/")
        try:
            bucket, prefix = parse_bucket_spec(f"{bucket}:{prefix_text or '/'}")
            endpoint = normalize_url(_string(document, "endpoint", required=True))
        except UsageError as exc:
            raise invalid(f"spec: {exc}") from None
        options, ro_option = canonical_options(split_user_options(document.get("options")))
        read_only = _bool(document, "read_only") or ro_option
        region = _string(document, "region") or None
        signature = _string(document, "signature").lower()
        if signature not in ("", "v1", "v4"):
            raise invalid(f"spec.signature must be 'v1' or 'v4', not {signature!r}")
        try:
            probe = parse_options([*options, f"url={endpoint}", *([f"region={region}"] if region else [])])
        except UsageError as exc:
            raise invalid(f"spec.options: {exc}") from None
        if probe.sigv4:
            signature = signature or "v4"
        if not signature:
            signature = "v4" if probe.effective_region else "v1"
        if signature == "v4" and not probe.effective_region:
            raise invalid(f"signature v4 needs a region: set spec.region (the endpoint {endpoint} names none)")
        return cls(bucket, prefix, endpoint, probe.effective_region if signature == "v4" else region,
                   signature, tuple(options), read_only)

    @classmethod
    def from_canonical(cls, document: Mapping[str, Any]) -> "VolumeSpec":
        """The inverse of `to_json` for a spec that was validated when it was recorded."""
        prefix = document["prefix"].strip("/")
        return cls(document["bucket"], prefix + "/" if prefix else "", document["endpoint"],
                   document.get("region") or None, document["signature"], tuple(document["options"]),
                   bool(document["read_only"]))

    def to_json(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "prefix": "/" + self.prefix.rstrip("/"), "endpoint": self.endpoint,
                "region": self.region or "", "signature": self.signature, "options": list(self.options),
                "read_only": self.read_only}

    @property
    def spec_hash(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def source(self) -> str:
        """`BUCKET:/PREFIX`, the mount's first argument."""
        return f"{self.bucket}:/{self.prefix}"

    def mount_option_items(self, passwd_file: str) -> list[str]:
        """The `-o` items of the mount: user options, then the driver's (`url`, `ro`, signature, credentials)."""
        items = list(self.options) + [f"url={self.endpoint}"]
        if self.read_only:
            items.append("ro")
        if self.signature == "v4":
            items += ["sigv4", f"region={self.region}"]
        elif self.region:
            items.append(f"region={self.region}")
        items.append(f"passwd_file={passwd_file}")
        return items

    def mount_options(self, passwd_file: str | None = None) -> MountOptions:
        items = self.mount_option_items(passwd_file or "/nonexistent")
        if passwd_file is None:
            items = items[:-1]
        return parse_options(items)

    def differences(self, other: "VolumeSpec") -> list[str]:
        mine, theirs = self.to_json(), other.to_json()
        return [name for name in mine if mine[name] != theirs[name]]


# --------------------------------------------------------------------------------------------------
# Credentials


def _check_secret(value: str, name: str) -> str:
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise invalid(f"credentials.{name} is longer than {MAX_SECRET_BYTES} bytes")
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise invalid(f"credentials.{name} must not contain spaces or control characters")
    return value


@dataclass(frozen=True)
class CredentialsInput:
    """Credentials as a request carries them; `repr` never shows secrets."""

    type: str
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)
    expiration: str | None = None

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "CredentialsInput":
        kind = _string(document, "type", required=True)
        if kind in UNSUPPORTED_CREDENTIALS:
            raise invalid(f"credentials type {kind!r} is not supported by this ossmount yet; use access_key or sts")
        if kind not in SUPPORTED_CREDENTIALS:
            raise invalid(f"credentials.type must be one of {', '.join(SUPPORTED_CREDENTIALS)}, not {kind!r}")
        if kind == "none":
            _reject_unknown(document, ("type",), "credentials")
            return cls("none")
        fields_ = ["type", "access_key_id", "access_key_secret"]
        if kind == "sts":
            fields_ += ["security_token", "expiration"]
        _reject_unknown(document, fields_, f"credentials of type {kind}")
        access_key_id = _check_secret(_string(document, "access_key_id", required=True), "access_key_id")
        secret = _check_secret(_string(document, "access_key_secret", required=True), "access_key_secret")
        token = _check_secret(_string(document, "security_token", required=kind == "sts"), "security_token")
        expiration = _string(document, "expiration") or None
        if expiration is not None:
            try:
                datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
            except ValueError:
                raise invalid(f"credentials.expiration {expiration!r} is not an RFC 3339 time") from None
        return cls(kind, access_key_id, secret, token, expiration)

    @property
    def is_none(self) -> bool:
        return self.type == "none"

    def files(self) -> dict[str, str]:
        """The credentials directory's files (the layout `ossmount.credentials.read_credentials_dir` reads)."""
        files = {"AccessKeyId": self.access_key_id, "AccessKeySecret": self.access_key_secret}
        if self.security_token:
            files["SecurityToken"] = self.security_token
        if self.expiration:
            files["Expiration"] = self.expiration
        return files

    def describe(self) -> dict[str, Any]:
        """What `/v1/volumes` may show: the type and a masked key id."""
        return {"type": self.type, "access_key_id": mask_access_key_id(self.access_key_id),
                "expires_at": self.expiration}


def _nested(document: Mapping[str, Any], name: str, parse: Any, *, required: bool) -> Any:
    """`parse(document[name])` for an object field; None when absent and not required."""
    value = _object(document, name)
    if value is None:
        if required:
            raise invalid(f"missing field '{name}'")
        return None
    return parse(value)


def _credentials(document: Mapping[str, Any], *, required: bool) -> CredentialsInput | None:
    return _nested(document, "credentials", CredentialsInput.from_json, required=required)


# --------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class StageRequest:
    volume_id: str
    spec: VolumeSpec
    credentials: CredentialsInput
    global_path: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class PublishRequest:
    volume_id: str
    target_path: str
    read_only: bool = False
    spec: VolumeSpec | None = None
    credentials: CredentialsInput | None = None
    global_path: str | None = None
    pod: Mapping[str, str] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def stage_request(self) -> StageRequest | None:
        """The implicit stage of a publish that carries a spec."""
        if self.spec is None:
            return None
        if self.credentials is None or self.credentials.is_none:
            raise invalid("publish with a spec of a volume that is not staged needs credentials")
        return StageRequest(self.volume_id, self.spec, self.credentials, self.global_path, self.timeout_s)


@dataclass(frozen=True)
class UnpublishRequest:
    volume_id: str
    target_path: str


@dataclass(frozen=True)
class UnstageRequest:
    volume_id: str
    force: bool = False
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    global_path: str | None = None


@dataclass(frozen=True)
class RotateRequest:
    volume_id: str
    credentials: CredentialsInput
    timeout_s: float = DEFAULT_TIMEOUT_S


def _spec(document: Mapping[str, Any], *, required: bool) -> VolumeSpec | None:
    return _nested(document, "spec", VolumeSpec.from_json, required=required)


def _optional_path(document: Mapping[str, Any], name: str, allowed: Iterable[str]) -> str | None:
    return None if document.get(name) in (None, "") else check_path(document[name], name, allowed)


def parse_stage(document: Mapping[str, Any], allowed: Iterable[str] = ()) -> StageRequest:
    _reject_unknown(document, ("volume_id", "spec", "credentials", "global_path", "timeout_s"), "stage")
    credentials = _credentials(document, required=True)
    assert credentials is not None
    if credentials.is_none:
        raise invalid("stage needs credentials of type access_key or sts ('none' only reuses a volume's keys)")
    return StageRequest(check_volume_id(document.get("volume_id")), _spec(document, required=True), credentials,
                        _optional_path(document, "global_path", allowed),
                        _seconds(document, "timeout_s", DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S))


def _pod(document: Mapping[str, Any]) -> Mapping[str, str] | None:
    pod = _object(document, "pod")
    if pod is None:
        return None
    _reject_unknown(pod, ("uid", "namespace", "name"), "pod")
    return {name: _string(pod, name) for name in ("uid", "namespace", "name") if pod.get(name)}


def parse_publish(document: Mapping[str, Any], allowed: Iterable[str] = ()) -> PublishRequest:
    _reject_unknown(document, ("volume_id", "target_path", "read_only", "spec", "credentials", "global_path",
                               "pod", "timeout_s"), "publish")
    allowed = list(allowed)
    request = PublishRequest(
        check_volume_id(document.get("volume_id")), check_path(document.get("target_path"), "target_path", allowed),
        _bool(document, "read_only"), _spec(document, required=False), _credentials(document, required=False),
        _optional_path(document, "global_path", allowed), _pod(document),
        _seconds(document, "timeout_s", DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S))
    if request.global_path is not None and _is_under(request.target_path, request.global_path):
        raise invalid("target_path must not be the global path or lie inside it")
    return request


def parse_unpublish(document: Mapping[str, Any], allowed: Iterable[str] = ()) -> UnpublishRequest:
    _reject_unknown(document, ("volume_id", "target_path"), "unpublish")
    return UnpublishRequest(check_volume_id(document.get("volume_id")),
                            check_path(document.get("target_path"), "target_path", allowed))


def parse_unstage(document: Mapping[str, Any], allowed: Iterable[str] = ()) -> UnstageRequest:
    _reject_unknown(document, ("volume_id", "force", "drain_timeout_s", "global_path"), "unstage")
    return UnstageRequest(check_volume_id(document.get("volume_id")), _bool(document, "force"),
                          _seconds(document, "drain_timeout_s", DEFAULT_DRAIN_TIMEOUT_S, MAX_TIMEOUT_S),
                          _optional_path(document, "global_path", allowed))


def parse_rotate(document: Mapping[str, Any], allowed: Iterable[str] = ()) -> RotateRequest:
    _reject_unknown(document, ("volume_id", "credentials", "timeout_s"), "rotate-credentials")
    credentials = _credentials(document, required=True)
    assert credentials is not None
    if credentials.is_none:
        raise invalid("rotate-credentials needs credentials of type access_key or sts")
    return RotateRequest(check_volume_id(document.get("volume_id")), credentials,
                         _seconds(document, "timeout_s", DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S))


PARSERS = {"stage": parse_stage, "publish": parse_publish, "unpublish": parse_unpublish,
           "unstage": parse_unstage, "rotate-credentials": parse_rotate}
OPERATIONS = tuple(PARSERS)


# --------------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class Route:
    """What an HTTP request asks for: `name` is an operation, "volumes", "volume", "health" or "metrics"."""

    name: str
    volume_id: str | None = None


def route(method: str, target: str) -> Route:
    """Map method and request target to a Route; NOT_FOUND for unknown paths, INVALID_ARGUMENT for wrong methods."""
    path = target.split("?", 1)[0]
    expected = None
    if path.startswith("/v1/") and path[4:] in PARSERS:
        found, expected = Route(path[4:]), "POST"
    elif path in ("/v1/volumes", "/v1/volumes/"):
        found, expected = Route("volumes"), "GET"
    elif path.startswith("/v1/volumes/"):
        try:
            volume_id = urllib.parse.unquote(path[len("/v1/volumes/"):], errors="strict")
        except UnicodeDecodeError:
            raise invalid("the volume id in the path is not percent-encoded UTF-8") from None
        found, expected = Route("volume", check_volume_id(volume_id)), "GET"
    elif path == "/v1/health":
        found, expected = Route("health"), "GET"
    elif path == "/metrics":
        found, expected = Route("metrics"), "GET"
    else:
        raise DaemonError("NOT_FOUND", f"no such endpoint {path!r}: see the API reference (POST /v1/stage, "
                                       "/v1/publish, ...; GET /v1/volumes, /v1/health, /metrics)")
    if method != expected:
        raise invalid(f"{path} expects {expected}, not {method}")
    return found
