"""CSI request validation and the mapping of Alibaba's volume attributes onto the daemon's spec (sans-IO).

Everything here takes plain values (strings, dicts, the generated message objects) and returns frozen
dataclasses or raises `CsiError`; nothing touches the network, the disk or the daemon.

Rules:
  1. A missing REQUIRED field (volume_id, target_path, staging_target_path, volume_capability, name,
     volume_capabilities) is INVALID_ARGUMENT naming the field (CSI spec, each RPC's error table);
     NodePublishVolume without staging_target_path is FAILED_PRECONDITION, as we advertise
     STAGE_UNSTAGE_VOLUME (csi-daemon.md §4).
  2. Paths must be absolute, without NUL or `..` components.
  3. Access type `block` is INVALID_ARGUMENT (OSS volumes are filesystems); so is an UNKNOWN access mode.
  4. Volume attributes and StorageClass parameters use Alibaba's names, matched case-insensitively after
     trimming, empty values ignored (alibaba-cloud-csi-driver, csi-daemon.md §1.2). Keys the CO adds
     (`csi.storage.k8s.io/...`, `storage.kubernetes.io/...`) are ignored; Alibaba keys that mean nothing
     here are ignored and listed in `IGNORED_ATTRIBUTES`; Alibaba keys for features ossmount does not have
     (server-side encryption, RRSA, ...) and unknown keys are INVALID_ARGUMENT: a volume never mounts with
     a setting silently dropped.
  5. `otherOpts` is split like Alibaba's driver (`-o a -o b=c -oX,Y`; any other token is INVALID_ARGUMENT)
     and every option is checked by ossmount's own option parser (`ossmount.options.parse_options`), so a
     typo fails the RPC with the option's name instead of failing a mount later. Options the daemon owns
     (`passwd_file`, `logfile`) and those the attributes give (`url`, `bucket`) are refused.
  6. Secrets: `akId` + `akSecret` (case-sensitive, Alibaba's legacy form) or `AccessKeyId` +
     `AccessKeySecret` [+ `SecurityToken` (STS) + `Expiration`] (case-insensitive). Half a key pair is
     INVALID_ARGUMENT. Secret values never appear in messages.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import grpc

from ossmount.csi import csi_pb2 as pb
from ossmount.csi.errors import CsiError, invalid
from ossmount.errors import UsageError
from ossmount.options import (normalize_url, parse_bucket_spec, parse_options, split_option_string,
                              validate_bucket_name)

AccessMode = pb.VolumeCapability.AccessMode.Mode

READ_ONLY_MODES = frozenset({AccessMode.SINGLE_NODE_READER_ONLY, AccessMode.MULTI_NODE_READER_ONLY})
MULTI_NODE_MODES = frozenset({AccessMode.MULTI_NODE_READER_ONLY, AccessMode.MULTI_NODE_SINGLE_WRITER,
                              AccessMode.MULTI_NODE_MULTI_WRITER})
SUPPORTED_MODES = frozenset(AccessMode.values()) - {AccessMode.UNKNOWN}

# fs_type (csi.storage.k8s.io/fstype) and the fuseType attribute: what may name ossmount's client.
FS_TYPES = frozenset({"", "ossfs", "ossmount", "fuse.ossfs", "fuse.ossmount"})

# Options the daemon sets itself (csi-daemon.md §5.5) or that the attributes give: a user may not give them.
DAEMON_OWNED_OPTIONS = {
    "passwd_file": "credentials come from the node-publish secret",
    "logfile": "the daemon keeps each volume's log",
    "bucket": "give the bucket as the 'bucket' attribute",
    "url": "give the endpoint as the 'url' attribute",
}

# Prefixes of keys that Kubernetes adds to volume_context / parameters (podInfoOnMount,
# external-provisioner --extra-create-metadata, the provisioner identity).
CO_KEY_PREFIXES = ("csi.storage.k8s.io/", "storage.kubernetes.io/")

# Alibaba attributes that configure something ossmount has no counterpart for and that change no data:
# accepted so existing PVs mount, and ignored (README "Kubernetes" lists them).
IGNORED_ATTRIBUTES = {
    "usesharedpath": "ossmount always shares one FUSE process per volume per node",
    "metricstop": "ossmount exports its own metrics",
    "dnspolicy": "the daemon runs in the host network",
    "runtimeclass": "no sandbox runtimes",
    "directassigned": "no sandbox runtimes",
}

# Alibaba attributes for features ossmount lacks, and why mounting without them would be wrong.
UNSUPPORTED_ATTRIBUTES = {
    "encrypted": "server-side encryption is not implemented; objects would be stored unencrypted",
    "kmskeyid": "server-side encryption is not implemented; objects would be stored unencrypted",
    "rolename": "RAM-role credentials are not implemented; use a nodePublishSecretRef",
    "ramrole": "RAM-role credentials are not implemented; use a nodePublishSecretRef",
    "rolearn": "RRSA is not implemented; use a nodePublishSecretRef",
    "oidcproviderarn": "RRSA is not implemented; use a nodePublishSecretRef",
    "serviceaccountname": "RRSA is not implemented; use a nodePublishSecretRef",
    "assumerolearn": "RRSA is not implemented; use a nodePublishSecretRef",
    "externalid": "RRSA is not implemented; use a nodePublishSecretRef",
    "secretref": "use a nodePublishSecretRef instead",
    "secretproviderclass": "the secrets-store CSI driver is not supported; use a nodePublishSecretRef",
    "overlay": "overlay mounts are not supported",
}

# The attributes of a volume (PV volumeAttributes, and the volume_context the controller returns).
VOLUME_ATTRIBUTES = ("bucket", "url", "path", "otherOpts", "readOnly", "sigVersion", "region", "fuseType",
                     "authType")
# Deprecated: Alibaba still honours keys in volumeAttributes; so does ossmount (README: move them to a Secret).
ATTRIBUTE_SECRETS = ("akId", "akSecret")
# StorageClass parameters: the attributes plus what only provisioning uses.
PROVISION_PARAMETERS = VOLUME_ATTRIBUTES + ("volumeAs", "onDelete")

AUTH_TYPES = frozenset({"", "public"})
SIGNATURES = {"v1": "v1", "v4": "v4", "sigv1": "v1", "sigv4": "v4"}
VOLUME_AS = ("sharepath", "subpath")
ON_DELETE = ("retain", "delete")
_SECRET_KEY_RE = re.compile(r"^[A-Za-z0-9._-]+$")


# ---------------------------------------------------------------------------------------------------
# Fields and paths


def require(value: str, name: str, rpc: str) -> str:
    """`value` if non-empty, else INVALID_ARGUMENT '<rpc>: <name> is missing'."""
    if not value:
        raise invalid(f"{rpc}: {name} is missing")
    return value


def check_path(path: str, name: str, rpc: str) -> str:
    """An absolute, normalised path (no NUL, no `..` component); INVALID_ARGUMENT otherwise."""
    require(path, name, rpc)
    if "\0" in path or not path.startswith("/"):
        raise invalid(f"{rpc}: {name} {path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise invalid(f"{rpc}: {name} {path!r} must not contain '..'")
    return posixpath.normpath(path)


def check_volume_id(volume_id: str, rpc: str) -> str:
    require(volume_id, "volume_id", rpc)
    if "\0" in volume_id or len(volume_id.encode()) > 512:
        raise invalid(f"{rpc}: volume_id must be 1-512 bytes without NUL")
    return volume_id


# ---------------------------------------------------------------------------------------------------
# Capabilities


@dataclass(frozen=True)
class Access:
    """What a VolumeCapability asks for: a mount of ossmount's filesystem in `mode`."""

    mode: int  # VolumeCapability.AccessMode.Mode
    mount_flags: tuple[str, ...] = ()
    fs_type: str = ""

    @property
    def read_only(self) -> bool:
        """The `*_READER_ONLY` modes imply a read-only publish (CSI spec, NodePublishVolume)."""
        return self.mode in READ_ONLY_MODES

    @property
    def multi_node(self) -> bool:
        return self.mode in MULTI_NODE_MODES


def capability_problem(capability: Any) -> str | None:
    """Why `capability` (a VolumeCapability) cannot be served, or None if it can."""
    kind = capability.WhichOneof("access_type")
    if kind == "block":
        return "block access is not supported: OSS volumes are filesystems (use volumeMode: Filesystem)"
    if kind != "mount":
        return "volume_capability needs an access type (mount)"
    if not capability.HasField("access_mode") or capability.access_mode.mode not in SUPPORTED_MODES:
        return "volume_capability needs an access mode"
    fs_type = capability.mount.fs_type.strip().lower()
    if fs_type not in FS_TYPES:
        return (f"fs_type {capability.mount.fs_type!r} is not supported: ossmount is an ossfs-compatible "
                "client (use ossfs or leave it empty)")
    return None


def parse_capability(capability: Any, rpc: str, *, present: bool) -> Access:
    """The Access of a required VolumeCapability field; INVALID_ARGUMENT if missing or unsupported."""
    if not present:
        raise invalid(f"{rpc}: volume_capability is missing")
    problem = capability_problem(capability)
    if problem:
        raise invalid(f"{rpc}: {problem}")
    flags: list[str] = []
    for flag in capability.mount.mount_flags:
        flags += split_option_string(flag)
    return Access(mode=capability.access_mode.mode, mount_flags=tuple(flags),
                  fs_type=capability.mount.fs_type.strip().lower())


def check_capabilities(capabilities: Iterable[Any], rpc: str) -> list[Access]:
    """Each of a required repeated volume_capabilities field; INVALID_ARGUMENT if empty or unsupported."""
    items = list(capabilities)
    if not items:
        raise invalid(f"{rpc}: volume_capabilities is missing")
    return [parse_capability(item, rpc, present=True) for item in items]


# ---------------------------------------------------------------------------------------------------
# Attributes


def normalize_keys(values: Mapping[str, str], known: Iterable[str], what: str, rpc: str,
                   *, extra: Iterable[str] = ()) -> dict[str, str]:
    """`values` keyed by the canonical spelling of `known` names (matched case-insensitively, trimmed);
    empty values dropped; CO keys and `IGNORED_ATTRIBUTES` skipped; anything else INVALID_ARGUMENT."""
    canonical = {name.lower(): name for name in list(known) + list(extra)}
    result: dict[str, str] = {}
    unknown: list[str] = []
    for raw_key, raw_value in values.items():
        key = raw_key.strip()
        value = raw_value.strip()
        if key.startswith(CO_KEY_PREFIXES) or not value:
            continue
        lowered = key.lower()
        if lowered in canonical:
            result[canonical[lowered]] = value
        elif lowered in UNSUPPORTED_ATTRIBUTES:
            raise invalid(f"{rpc}: {what} '{key}' is not supported: {UNSUPPORTED_ATTRIBUTES[lowered]}")
        elif lowered not in IGNORED_ATTRIBUTES:
            unknown.append(key)
    if unknown:
        raise invalid(f"{rpc}: unknown {what} {', '.join(repr(k) for k in sorted(unknown))} (known: "
                      f"{', '.join(known)})")
    return result


def parse_other_opts(text: str, rpc: str, *, what: str = "otherOpts") -> list[str]:
    """Split Alibaba's `otherOpts` ("-o a -o b=c -oX,Y") into option items, each checked by ossmount's
    option parser; INVALID_ARGUMENT names the bad token or option."""
    items: list[str] = []
    tokens = text.split()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-o":
            if i + 1 >= len(tokens):
                raise invalid(f"{rpc}: invalid {what} {text!r}: '-o' at the end needs an option")
            items += split_option_string(tokens[i + 1])
            i += 2
        elif token.startswith("-o"):
            items += split_option_string(token[2:])
            i += 1
        else:
            raise invalid(f"{rpc}: invalid {what} {text!r}: {token!r} is not '-o OPTION' "
                          "(write options as -o a -o b=c or -o a,b=c)")
    check_option_items(items, rpc, what=what)
    return items


def check_option_items(items: Iterable[str], rpc: str, *, what: str) -> None:
    """INVALID_ARGUMENT if an option is unknown or malformed (ossmount.options), owned by the daemon, or
    the endpoint (which is the `url` attribute)."""
    items = list(items)
    for item in items:
        name = item.partition("=")[0]
        if name in DAEMON_OWNED_OPTIONS:
            raise invalid(f"{rpc}: {what}: option '{name}' is not allowed here: {DAEMON_OWNED_OPTIONS[name]}")
    try:
        parse_options(items)
    except UsageError as error:
        raise invalid(f"{rpc}: {what}: {error}") from None


def parse_bool(value: str, name: str, rpc: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise invalid(f"{rpc}: attribute '{name}' must be true or false, not {value!r}")


@dataclass(frozen=True)
class VolumeSpec:
    """The daemon's `spec` (csi-daemon.md §5.5) for one volume; never holds secrets."""

    bucket: str
    prefix: str  # "/" or "/a/b"
    endpoint: str  # normalised: scheme://host[:port]
    region: str = ""
    signature: str = ""  # "", "v1" or "v4"
    options: tuple[str, ...] = ()
    read_only: bool = False
    anonymous: bool = False

    def to_daemon(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "prefix": self.prefix, "endpoint": self.endpoint, "region": self.region,
                "signature": self.signature, "options": list(self.options), "read_only": self.read_only}


def normalize_prefix(bucket: str, path: str, rpc: str) -> str:
    """Alibaba's `path` ("/", "/a/b", "a/b/") as the daemon's prefix ("/" or "/a/b")."""
    try:
        _, prefix = parse_bucket_spec(f"{bucket}:/{path.lstrip('/')}")
    except UsageError as error:
        raise invalid(f"{rpc}: attribute 'path': {error}") from None
    return "/" + prefix.rstrip("/")


def check_bucket(bucket: str, rpc: str, what: str = "attribute") -> str:
    try:
        return validate_bucket_name(bucket)
    except UsageError as error:
        raise invalid(f"{rpc}: {what} 'bucket': {error}") from None


def check_endpoint(url: str, rpc: str, what: str = "attribute") -> str:
    try:
        return normalize_url(url)
    except UsageError as error:
        raise invalid(f"{rpc}: {what} 'url': {error}") from None


def parse_volume_attributes(attributes: Mapping[str, str], rpc: str, *, access: Access | None = None,
                            what: str = "volume attribute") -> VolumeSpec:
    """The VolumeSpec of a PV's volumeAttributes (the request's volume_context), plus the PV's
    mountOptions and access mode from `access`."""
    values = normalize_keys(attributes, VOLUME_ATTRIBUTES, what, rpc, extra=ATTRIBUTE_SECRETS)
    bucket = check_bucket(values.get("bucket", ""), rpc, what) if values.get("bucket") else None
    if bucket is None:
        raise invalid(f"{rpc}: {what} 'bucket' is missing (the OSS bucket to mount)")
    if not values.get("url"):
        raise invalid(f"{rpc}: {what} 'url' is missing (the OSS endpoint, e.g. "
                      "oss-cn-hangzhou-internal.aliyuncs.com)")
    endpoint = check_endpoint(values["url"], rpc, what)
    prefix = normalize_prefix(bucket, values.get("path", "/"), rpc)
    fuse_type = values.get("fuseType", "").lower()
    if fuse_type not in FS_TYPES:
        raise invalid(f"{rpc}: {what} 'fuseType' {values['fuseType']!r} is not supported: ossmount is an "
                      "ossfs-compatible client (use ossfs or leave it out)")
    auth_type = values.get("authType", "").lower()
    if auth_type not in AUTH_TYPES:
        raise invalid(f"{rpc}: {what} 'authType' {values['authType']!r} is not supported (use a "
                      "nodePublishSecretRef, or authType: public for a public bucket)")
    options = parse_other_opts(values.get("otherOpts", ""), rpc)
    if access is not None and access.mount_flags:
        check_option_items(access.mount_flags, rpc, what="mountOptions")
        options += list(access.mount_flags)
    signature = ""
    if values.get("sigVersion"):
        signature = SIGNATURES.get(values["sigVersion"].lower(), "")
        if not signature:
            raise invalid(f"{rpc}: {what} 'sigVersion' must be v1 or v4, not {values['sigVersion']!r}")
    region = values.get("region", "")
    extra = [f"url={endpoint}"] + ([f"region={region}"] if region else []) + (["sigv4"] if signature == "v4" else [])
    try:
        parsed = parse_options(options + extra)
    except UsageError as error:
        raise invalid(f"{rpc}: {what} 'region' / 'sigVersion': {error}") from None
    if signature == "v4" and not region:
        region = parsed.effective_region or ""
    read_only = parse_bool(values.get("readOnly", ""), "readOnly", rpc) or parsed.read_only
    if access is not None and access.read_only:
        read_only = True
    return VolumeSpec(bucket=bucket, prefix=prefix, endpoint=endpoint, region=region, signature=signature,
                      options=tuple(options), read_only=read_only, anonymous=auth_type == "public")


# ---------------------------------------------------------------------------------------------------
# Secrets


def parse_credentials(secrets: Mapping[str, str], rpc: str, *,
                      attributes: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The daemon's `credentials` object (csi-daemon.md §5.5) from a request's secrets; None if there
    are none. `akId`/`akSecret` in `attributes` (deprecated volumeAttributes) count when secrets have none."""
    values = {key: value.strip() for key, value in secrets.items() if _SECRET_KEY_RE.match(key) and value.strip()}
    if "akId" in values or "akSecret" in values:
        return _key_pair(values.get("akId", ""), values.get("akSecret", ""), "akId", "akSecret", rpc)
    folded = {key.lower(): value for key, value in values.items()}
    if "accesskeyid" in folded or "accesskeysecret" in folded:
        credentials = _key_pair(folded.get("accesskeyid", ""), folded.get("accesskeysecret", ""),
                                "AccessKeyId", "AccessKeySecret", rpc)
        if folded.get("securitytoken"):
            credentials["type"] = "sts"
            credentials["security_token"] = folded["securitytoken"]
            if folded.get("expiration"):
                credentials["expiration"] = folded["expiration"]
        return credentials
    if attributes:
        legacy = {key.strip().lower(): value.strip() for key, value in attributes.items()}
        if legacy.get("akid") or legacy.get("aksecret"):
            return _key_pair(legacy.get("akid", ""), legacy.get("aksecret", ""), "akId", "akSecret", rpc)
    return None


def _key_pair(key_id: str, secret: str, id_name: str, secret_name: str, rpc: str) -> dict[str, str]:
    if not key_id or not secret:
        missing = id_name if not key_id else secret_name
        raise invalid(f"{rpc}: the secret has only half an access key: '{missing}' is missing")
    return {"type": "access_key", "access_key_id": key_id, "access_key_secret": secret}


# ---------------------------------------------------------------------------------------------------
# Node RPCs → daemon calls


@dataclass(frozen=True)
class StageCall:
    """`POST /v1/stage` (csi-daemon.md §5.5)."""

    volume_id: str
    spec: VolumeSpec
    credentials: dict[str, str] = field(repr=False)
    global_path: str



@dataclass(frozen=True)
class PublishCall:
    """`POST /v1/publish` (csi-daemon.md §5.5)."""

    volume_id: str
    target_path: str
    read_only: bool
    spec: VolumeSpec
    credentials: dict[str, str] = field(repr=False)
    global_path: str
    pod: dict[str, str] = field(default_factory=dict)


def _credentials_for(spec: VolumeSpec, secrets: Mapping[str, str], attributes: Mapping[str, str],
                     rpc: str) -> dict[str, str] | None:
    if spec.anonymous:
        return {"type": "anonymous"}
    return parse_credentials(secrets, rpc, attributes=attributes)


def stage_call(request: Any) -> StageCall | None:
    """The daemon call for a NodeStageVolumeRequest, or None when the request carries no credentials
    (the mount then happens on the first NodePublishVolume, with the node-publish secret: §5.13)."""
    rpc = "NodeStageVolume"
    volume_id = check_volume_id(request.volume_id, rpc)
    staging = check_path(request.staging_target_path, "staging_target_path", rpc)
    access = parse_capability(request.volume_capability, rpc, present=request.HasField("volume_capability"))
    spec = parse_volume_attributes(request.volume_context, rpc, access=access)
    credentials = _credentials_for(spec, request.secrets, request.volume_context, rpc)
    if credentials is None:
        return None
    return StageCall(volume_id=volume_id, spec=spec, credentials=credentials, global_path=staging)


def publish_call(request: Any) -> PublishCall:
    """The daemon call for a NodePublishVolumeRequest (§5.13): read-only if `readonly` or a reader-only
    mode; credentials type `none` (reuse the staged volume's) when the request carries none."""
    rpc = "NodePublishVolume"
    volume_id = check_volume_id(request.volume_id, rpc)
    target = check_path(request.target_path, "target_path", rpc)
    access = parse_capability(request.volume_capability, rpc, present=request.HasField("volume_capability"))
    if not request.staging_target_path:
        raise CsiError(grpc.StatusCode.FAILED_PRECONDITION,
                       f"{rpc}: staging_target_path is missing: the volume must be staged first "
                       "(this driver has STAGE_UNSTAGE_VOLUME)")
    staging = check_path(request.staging_target_path, "staging_target_path", rpc)
    if target == staging:
        raise invalid(f"{rpc}: target_path and staging_target_path are the same path {target!r}")
    spec = parse_volume_attributes(request.volume_context, rpc, access=access)
    credentials = _credentials_for(spec, request.secrets, request.volume_context, rpc) or {"type": "none"}
    context = request.volume_context
    pod = {key: context[f"csi.storage.k8s.io/pod.{key}"] for key in ("uid", "namespace", "name")
           if context.get(f"csi.storage.k8s.io/pod.{key}")}
    return PublishCall(volume_id=volume_id, target_path=target, read_only=request.readonly or access.read_only,
                       spec=spec, credentials=credentials, global_path=staging, pod=pod)


def unpublish_args(request: Any) -> tuple[str, str]:
    rpc = "NodeUnpublishVolume"
    return check_volume_id(request.volume_id, rpc), check_path(request.target_path, "target_path", rpc)


def unstage_args(request: Any) -> tuple[str, str]:
    rpc = "NodeUnstageVolume"
    return (check_volume_id(request.volume_id, rpc),
            check_path(request.staging_target_path, "staging_target_path", rpc))


def volume_stats_args(request: Any) -> tuple[str, str]:
    rpc = "NodeGetVolumeStats"
    return check_volume_id(request.volume_id, rpc), check_path(request.volume_path, "volume_path", rpc)


# ---------------------------------------------------------------------------------------------------
# Controller: StorageClass parameters


@dataclass(frozen=True)
class ProvisionParameters:
    """A StorageClass's parameters, validated (README "Kubernetes": every parameter)."""

    attributes: Mapping[str, str]  # canonical VOLUME_ATTRIBUTES given, as written (path unnormalised)
    spec: VolumeSpec  # what the attributes mean (path = the StorageClass's path)
    volume_as: str = "sharepath"
    on_delete: str = "retain"

    def canonical(self) -> dict[str, str]:
        """The parameters as remembered and compared (CreateVolume idempotency): canonical key names,
        trimmed values, defaults filled in."""
        values = dict(self.attributes)
        values["path"] = self.spec.prefix
        values["url"] = self.spec.endpoint
        values["volumeAs"] = self.volume_as
        values["onDelete"] = self.on_delete
        return dict(sorted(values.items()))

    def prefix_for(self, name: str) -> str:
        """The bucket prefix of the volume `name` ("/" or "/a/b"): `path/<name>` for subpath, else path."""
        if self.volume_as == "subpath":
            return posixpath.join(self.spec.prefix, name)
        return self.spec.prefix

    def volume_context(self, name: str) -> dict[str, str]:
        """The PV's volumeAttributes: the StorageClass's attributes with `path` made the volume's own."""
        context = {key: value for key, value in self.attributes.items()}
        context["url"] = self.spec.endpoint
        context["path"] = self.prefix_for(name)
        return context


def parse_provision_parameters(parameters: Mapping[str, str], rpc: str = "CreateVolume") -> ProvisionParameters:
    """Validate a StorageClass's parameters; INVALID_ARGUMENT names the bad one."""
    for key in parameters:
        if key.strip().lower() in ("akid", "aksecret"):
            raise invalid(f"{rpc}: parameter '{key.strip()}' would put a secret in every PV; use "
                          "csi.storage.k8s.io/provisioner-secret-name and node-publish-secret-name")
    values = normalize_keys(parameters, PROVISION_PARAMETERS, "parameter", rpc)
    volume_as = values.pop("volumeAs", "sharepath").lower()
    if volume_as not in VOLUME_AS:
        raise invalid(f"{rpc}: parameter 'volumeAs' must be one of {', '.join(VOLUME_AS)}, not {volume_as!r}")
    on_delete = values.pop("onDelete", "retain").lower()
    if on_delete not in ON_DELETE:
        raise invalid(f"{rpc}: parameter 'onDelete' must be one of {', '.join(ON_DELETE)}, not {on_delete!r}")
    if on_delete == "delete" and volume_as != "subpath":
        raise invalid(f"{rpc}: parameter 'onDelete: delete' needs 'volumeAs: subpath': with sharepath every "
                      "volume shares the same data")
    spec = parse_volume_attributes(values, rpc, what="parameter")
    return ProvisionParameters(attributes=values, spec=spec, volume_as=volume_as, on_delete=on_delete)


def check_volume_name(name: str, rpc: str = "CreateVolume") -> str:
    """The CO's volume name as a single path component (it becomes `path/<name>/` with subpath)."""
    require(name, "name", rpc)
    if "/" in name or name in (".", "..") or "\0" in name or len(name.encode()) > 255:
        raise invalid(f"{rpc}: name {name!r} must be one path component (1-255 bytes, no '/')")
    return name


def capacity_bytes(required: int, limit: int, rpc: str = "CreateVolume") -> int:
    """The capacity to report for a CapacityRange: OSS has no quota, so the volume is as large as asked
    (required_bytes, else limit_bytes, else 0 = unknown)."""
    if required < 0 or limit < 0:
        raise invalid(f"{rpc}: capacity_range must not be negative")
    if limit and required > limit:
        raise CsiError(grpc.StatusCode.OUT_OF_RANGE,
                       f"{rpc}: capacity_range required_bytes {required} exceeds limit_bytes {limit}")
    return required or limit


def capacity_fits(capacity: int, required: int, limit: int) -> bool:
    """Whether an existing volume of `capacity` bytes satisfies a CapacityRange (CSI spec, CreateVolume)."""
    if required and capacity < required:
        return False
    if limit and capacity > limit:
        return False
    return True
