"""The CSI Controller service: dynamic provisioning of OSS volumes from a StorageClass.

Theory of operation:
  * A volume is a prefix of a bucket. `volumeAs: sharepath` (the default, as in Alibaba's driver) gives
    every PersistentVolume of the StorageClass the StorageClass's `path`; `volumeAs: subpath` gives each
    its own `path/<pv-name>/`, created as an ossfs directory object (`application/x-directory`, size 0,
    x-oss-meta-mode/uid/gid/mtime/ctime/atime: ossfs-options.md "What ossfs stores") when the volume is
    created.
  * The volume id is the CO's volume name (the PV name); the volume context is the StorageClass's volume
    attributes with `path` set to the volume's own prefix, so a provisioned PV looks like a static one
    and the Node service needs nothing from the controller.
  * What was created is remembered in `RecordStore` (records.py) before and after the bucket is touched:
    CreateVolume with a known name and the same parameters and a fitting capacity returns the same volume
    (finishing the bucket step if a crash interrupted it); with other parameters or a capacity outside
    the new range it is ALREADY_EXISTS (CSI spec, CreateVolume errors). ValidateVolumeCapabilities and
    ControllerGetVolume of an unknown id are NOT_FOUND, without needing secrets.
  * DeleteVolume of an unknown id succeeds (CSI spec). It keeps the data unless the StorageClass says
    `onDelete: delete` (only allowed with subpath), which deletes every object under `path/<pv-name>/`.
  * Bucket requests use the provisioner secret (`csi.storage.k8s.io/provisioner-secret-name`), or the
    controller's own OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET environment. With sharepath and no
    credentials, CreateVolume trusts the parameters (there is nothing to create).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import grpc
import trio

from ossmount.check import CheckError, check_target, explain
from ossmount.credentials import Credentials, credentials_from_environ
from ossmount.csi import csi_pb2 as pb
from ossmount.csi import csi_pb2_grpc as pb_grpc
from ossmount.csi import validation
from ossmount.csi.errors import CsiError, invalid, rpc_method, safe_map, status_for_store_error
from ossmount.csi.records import RecordStore, VolumeRecord
from ossmount.errors import ConfigError
from ossmount.fs import attrs as fsattrs
from ossmount.store import ObjectStore, RetryPolicy
from ossmount.store import types as store_types

log = logging.getLogger("ossmount.csi")

T = TypeVar("T")

DIRECTORY_CONTENT_TYPE = "application/x-directory"  # what ossfs 1.91 mkdir writes
DIRECTORY_MODE = 0o755
CONTROLLER_CAPABILITIES = (
    pb.ControllerServiceCapability.RPC.CREATE_DELETE_VOLUME,
    pb.ControllerServiceCapability.RPC.GET_VOLUME,
)


class Bucket:
    """The few bucket operations provisioning needs, with errors as CsiError (one line, OSS code)."""

    def __init__(self, spec: validation.VolumeSpec, credentials: Credentials):
        self.spec = spec
        self.credentials = credentials
        self.store = ObjectStore.create(
            endpoint=spec.endpoint, bucket=spec.bucket, credentials=credentials,
            region=spec.region or None, sigv4=spec.signature == "v4", max_connections=4, timeout=20.0,
            connect_timeout=3.0, retry=RetryPolicy())

    def _run(self, what: str, prefix: str, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return trio.run(work)
        except CheckError as error:  # already one line naming the OSS code and the fix
            raise CsiError(status_for_store_error(error), f"{what}: {error}") from None
        except store_types.StoreError as error:
            explained = explain(error, endpoint=self.spec.endpoint, bucket=self.spec.bucket,
                                prefix=prefix.lstrip("/"), access_key_id=self.credentials.access_key_id)
            raise CsiError(status_for_store_error(error), f"{what}: {explained}") from None

    def check(self, prefix: str) -> None:
        """The mount-time checks (`ossmount check`): endpoint, credentials, bucket, list permission."""
        key = _key_prefix(prefix)
        self._run("checking the bucket", prefix, lambda: check_target(
            self.store.with_retry(RetryPolicy.no_retries()), key, bucket_info=False))

    def ensure_directory(self, prefix: str) -> bool:
        """Create `prefix/` as an ossfs directory object unless it exists; True if it was created."""
        key = _key_prefix(prefix)

        async def work() -> bool:
            try:
                await self.store.head(key)
                return False
            except store_types.NoSuchKey:
                pass
            meta = fsattrs.meta_for_new_entry(fsattrs.EntryKind.DIR, DIRECTORY_MODE, 0, 0, now=time.time())
            await self.store.put(key, b"", content_type=DIRECTORY_CONTENT_TYPE, meta=meta)
            return True

        return self._run(f"creating {key} in bucket {self.spec.bucket}", prefix, work)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix/` (the directory object too); returns how many."""
        key = _key_prefix(prefix)

        async def work() -> int:
            objects, _ = await self.store.list_all(key, delimiter="")
            keys = sorted({info.key for info in objects} | {key})
            await self.store.delete_many(keys)
            return len(objects)

        return self._run(f"deleting {key} in bucket {self.spec.bucket}", prefix, work)


def _key_prefix(prefix: str) -> str:
    """"/a/b" → "a/b/"; "/" → ""."""
    stripped = prefix.strip("/")
    return stripped + "/" if stripped else ""


def controller_credentials(secrets: Mapping[str, str], rpc: str,
                           environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """Credentials for bucket requests: the provisioner secret, else the controller's environment."""
    found = validation.parse_credentials(secrets, rpc)
    if found is not None:
        return Credentials(found["access_key_id"], found["access_key_secret"], found.get("security_token"),
                           source="provisioner secret")
    try:
        return credentials_from_environ(environ)
    except ConfigError as error:
        raise invalid(f"{rpc}: {error}") from None


def _differences(record: VolumeRecord, parameters: Mapping[str, str]) -> list[str]:
    keys = sorted(set(record.parameters) | set(parameters))
    return [key for key in keys if record.parameters.get(key) != parameters.get(key)]


class ControllerService(pb_grpc.ControllerServicer):
    """CreateVolume, DeleteVolume, ValidateVolumeCapabilities, ControllerGetVolume over `records`."""

    def __init__(self, records: RecordStore, environ: Mapping[str, str] = os.environ):
        self.records = records
        self.environ = environ

    @rpc_method
    def ControllerGetCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ControllerGetCapabilitiesResponse(capabilities=[
            pb.ControllerServiceCapability(rpc=pb.ControllerServiceCapability.RPC(type=kind))
            for kind in CONTROLLER_CAPABILITIES])

    @staticmethod
    def _volume(record: VolumeRecord) -> Any:
        return pb.Volume(volume_id=record.volume_id, capacity_bytes=record.capacity_bytes,
                         volume_context=dict(record.volume_context))

    @rpc_method
    def CreateVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc = "CreateVolume"
        name = validation.check_volume_name(request.name, rpc)
        validation.check_capabilities(request.volume_capabilities, rpc)
        parameters = validation.parse_provision_parameters(request.parameters, rpc)
        required, limit = request.capacity_range.required_bytes, request.capacity_range.limit_bytes
        capacity = validation.capacity_bytes(required, limit, rpc)
        canonical = parameters.canonical()
        with self.records.lock(name):
            record = self.records.get(name)
            if record is not None:
                differing = _differences(record, canonical)
                if differing:
                    raise CsiError(grpc.StatusCode.ALREADY_EXISTS,
                                   f"{rpc}: volume {name} already exists with different parameters "
                                   f"({', '.join(differing)})")
                if not validation.capacity_fits(record.capacity_bytes, required, limit):
                    raise CsiError(grpc.StatusCode.ALREADY_EXISTS,
                                   f"{rpc}: volume {name} already exists with capacity {record.capacity_bytes} "
                                   f"bytes, outside the requested range (required {required}, limit {limit})")
            else:
                record = VolumeRecord(name=name, volume_id=name, parameters=canonical, capacity_bytes=capacity,
                                      volume_context=parameters.volume_context(name))
                self.records.put(record)
            if record.state != "created":
                self._provision(parameters, name, request.secrets)
                record = replace(record, state="created")
                self.records.put(record)
        return pb.CreateVolumeResponse(volume=self._volume(record))

    def _provision(self, parameters: validation.ProvisionParameters, name: str, secrets: Mapping[str, str]) -> None:
        rpc = "CreateVolume"
        prefix = parameters.prefix_for(name)
        credentials = controller_credentials(secrets, rpc, self.environ)
        if credentials is None:
            if parameters.volume_as == "subpath":
                raise invalid(f"{rpc}: volumeAs subpath creates oss://{parameters.spec.bucket}{prefix}/ and needs "
                              "credentials: set csi.storage.k8s.io/provisioner-secret-name/-namespace in the "
                              "StorageClass (a Secret with akId and akSecret)")
            log.info("%s %s: sharepath oss://%s%s (no provisioner secret: bucket not checked)", rpc, name,
                     parameters.spec.bucket, prefix)
            return
        bucket = Bucket(parameters.spec, credentials)
        bucket.check(parameters.spec.prefix)
        if parameters.volume_as == "subpath":
            created = bucket.ensure_directory(prefix)
            log.info("%s %s: %s oss://%s%s/ (parameters %s)", rpc, name, "created" if created else "reused",
                     parameters.spec.bucket, prefix, safe_map(parameters.canonical()))
        else:
            log.info("%s %s: sharepath oss://%s%s", rpc, name, parameters.spec.bucket, prefix)

    @rpc_method
    def DeleteVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc = "DeleteVolume"
        volume_id = validation.check_volume_id(request.volume_id, rpc)
        with self.records.lock(volume_id):
            record = self.records.get(volume_id)
            if record is None:
                log.info("%s %s: not a volume this controller created; nothing to do", rpc, volume_id)
                return pb.DeleteVolumeResponse()
            parameters = validation.parse_provision_parameters(record.parameters, rpc)
            prefix = parameters.prefix_for(record.name)
            if parameters.on_delete == "delete":
                credentials = controller_credentials(request.secrets, rpc, self.environ)
                if credentials is None:
                    raise invalid(f"{rpc}: onDelete: delete removes oss://{parameters.spec.bucket}{prefix}/ and "
                                  "needs the provisioner secret (csi.storage.k8s.io/provisioner-secret-name)")
                count = Bucket(parameters.spec, credentials).delete_prefix(prefix)
                log.info("%s %s: deleted %d objects under oss://%s%s/", rpc, volume_id, count,
                         parameters.spec.bucket, prefix)
            else:
                log.info("%s %s: kept the data at oss://%s%s (onDelete: retain)", rpc, volume_id,
                         parameters.spec.bucket, prefix)
            self.records.delete(volume_id)
        return pb.DeleteVolumeResponse()

    def _known(self, volume_id: str, rpc: str) -> VolumeRecord:
        record = self.records.get(validation.check_volume_id(volume_id, rpc))
        if record is None:
            raise CsiError(grpc.StatusCode.NOT_FOUND, f"{rpc}: volume {volume_id} does not exist (this controller "
                           "did not create it, or it was deleted)")
        return record

    @rpc_method
    def ValidateVolumeCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc = "ValidateVolumeCapabilities"
        validation.check_volume_id(request.volume_id, rpc)
        if not request.volume_capabilities:
            raise invalid(f"{rpc}: volume_capabilities is missing")
        record = self._known(request.volume_id, rpc)
        for capability in request.volume_capabilities:
            problem = validation.capability_problem(capability)
            if problem:
                return pb.ValidateVolumeCapabilitiesResponse(message=problem)
        if request.volume_context and dict(request.volume_context) != dict(record.volume_context):
            return pb.ValidateVolumeCapabilitiesResponse(
                message=f"volume_context differs from the context volume {record.name} was created with")
        if request.parameters:
            try:
                asked = validation.parse_provision_parameters(request.parameters, rpc).canonical()
            except CsiError as error:
                return pb.ValidateVolumeCapabilitiesResponse(message=error.message)
            if _differences(record, asked):
                return pb.ValidateVolumeCapabilitiesResponse(
                    message=f"parameters differ from those volume {record.name} was created with "
                            f"({', '.join(_differences(record, asked))})")
        return pb.ValidateVolumeCapabilitiesResponse(confirmed=pb.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context), volume_capabilities=list(request.volume_capabilities),
            parameters=dict(request.parameters)))

    @rpc_method
    def ControllerGetVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        record = self._known(request.volume_id, "ControllerGetVolume")
        return pb.ControllerGetVolumeResponse(volume=self._volume(record),
                                              status=pb.ControllerGetVolumeResponse.VolumeStatus())
