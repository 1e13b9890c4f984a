"""The Controller service over gRPC, as the external-provisioner drives it, against the local OSS server.

Each test plays the provisioner: CreateVolume from a StorageClass's parameters with the provisioner
secret, DeleteVolume with the volume id only (plus the secret), and the csi-sanity controller cases of
csi-daemon.md §6.1 (same name + different capacity → ALREADY_EXISTS; unknown id → NOT_FOUND).
"""

from __future__ import annotations

import grpc
import oss2
import pytest

from ossmount.csi import csi_pb2 as pb
from tests.csi.conftest import CsiDriver, block_capability, mount_capability, rpc_error

GiB = 1024**3


def storage_class(server, bucket: str, **extra: str) -> dict[str, str]:
    """StorageClass parameters as the external-provisioner passes them (its own csi.storage.k8s.io/ keys
    stripped; --extra-create-metadata keys added)."""
    return {"bucket": bucket, "url": server.endpoint, "path": "/volumes", "volumeAs": "subpath",
            "otherOpts": "-o allow_other -o umask=022", "csi.storage.k8s.io/pvc/name": "data",
            "csi.storage.k8s.io/pvc/namespace": "default", **extra}


def create(driver: CsiDriver, name: str, parameters: dict[str, str], secrets: dict[str, str] | None = None,
           *, required: int = 5 * GiB, limit: int = 0, capabilities=None):
    return driver.ctrl.CreateVolume(pb.CreateVolumeRequest(
        name=name, capacity_range=pb.CapacityRange(required_bytes=required, limit_bytes=limit),
        volume_capabilities=capabilities or [mount_capability()], parameters=parameters,
        secrets=secrets or {}))


def keys(bucket: oss2.Bucket, prefix: str = "") -> list[str]:
    return sorted(o.key for o in oss2.ObjectIteratorV2(bucket, prefix=prefix))


def test_capabilities(csi_driver):
    response = csi_driver.ctrl.ControllerGetCapabilities(pb.ControllerGetCapabilitiesRequest())
    kinds = {c.rpc.type for c in response.capabilities}
    assert kinds == {pb.ControllerServiceCapability.RPC.CREATE_DELETE_VOLUME,
                     pb.ControllerServiceCapability.RPC.GET_VOLUME}
    plugin = csi_driver.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest())
    assert [c.service.type for c in plugin.capabilities] == [pb.PluginCapability.Service.CONTROLLER_SERVICE]


def test_subpath_creates_an_ossfs_directory_object(csi_driver, local_server, oss_bucket, provisioner_secrets):
    name = "pvc-0b1c2d3e-subpath"
    response = create(csi_driver, name, storage_class(local_server, oss_bucket.bucket_name), provisioner_secrets)
    volume = response.volume
    assert volume.volume_id == name
    assert volume.capacity_bytes == 5 * GiB
    assert dict(volume.volume_context) == {
        "bucket": oss_bucket.bucket_name, "url": local_server.endpoint, "path": f"/volumes/{name}",
        "otherOpts": "-o allow_other -o umask=022"}
    head = oss_bucket.head_object(f"volumes/{name}/")
    assert head.headers["Content-Type"] == "application/x-directory"
    assert head.content_length == 0
    assert head.headers["x-oss-meta-mode"] == str(0o040755)
    assert head.headers["x-oss-meta-uid"] == "0" and "x-oss-meta-mtime" in head.headers


def test_create_is_idempotent_and_keeps_the_directory(csi_driver, local_server, oss_bucket, provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name)
    first = create(csi_driver, "pvc-idem", parameters, provisioner_secrets)
    oss_bucket.put_object("volumes/pvc-idem/data.txt", b"written by a pod")
    etag = oss_bucket.head_object("volumes/pvc-idem/").etag
    local_server.admin.reset_counters()
    second = create(csi_driver, "pvc-idem", parameters, provisioner_secrets)
    assert second.volume == first.volume
    assert local_server.admin.counters().get("PutObject", 0) == 0  # the directory object is not rewritten
    assert oss_bucket.head_object("volumes/pvc-idem/").etag == etag
    assert keys(oss_bucket, "volumes/") == ["volumes/pvc-idem/", "volumes/pvc-idem/data.txt"]


def test_same_name_different_capacity_or_parameters_is_already_exists(csi_driver, local_server, oss_bucket,
                                                                     provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name)
    create(csi_driver, "pvc-taken", parameters, provisioner_secrets, required=10 * GiB)
    # A fitting range (the existing 10 GiB is within [1 GiB, 10 GiB]) is the same volume.
    assert create(csi_driver, "pvc-taken", parameters, provisioner_secrets, required=GiB,
                  limit=10 * GiB).volume.capacity_bytes == 10 * GiB
    error = rpc_error(create, csi_driver, "pvc-taken", parameters, provisioner_secrets, required=20 * GiB)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "capacity" in error.details()
    for changed in ({"path": "/other"}, {"volumeAs": "sharepath"}, {"otherOpts": "-o ro"}, {"onDelete": "delete"}):
        error = rpc_error(create, csi_driver, "pvc-taken", {**parameters, **changed}, provisioner_secrets,
                          required=10 * GiB)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, changed
        assert next(iter(changed)) in error.details()
    # Equivalent spellings are the same parameters: key case, whitespace, path and url forms.
    same = {"Bucket": oss_bucket.bucket_name, "URL": local_server.endpoint + "/", "path": "volumes/",
            "volumeas": " subpath ", "otherOpts": "-o allow_other -o umask=022"}
    assert create(csi_driver, "pvc-taken", same, provisioner_secrets, required=10 * GiB).volume.volume_id == "pvc-taken"


def test_records_survive_a_controller_crash(csi_driver, local_server, oss_bucket, provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name)
    first = create(csi_driver, "pvc-durable", parameters, provisioner_secrets, required=10 * GiB)
    csi_driver.restart_after_crash()
    error = rpc_error(create, csi_driver, "pvc-durable", parameters, provisioner_secrets, required=20 * GiB)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    again = create(csi_driver, "pvc-durable", parameters, provisioner_secrets, required=10 * GiB)
    assert again.volume == first.volume
    got = csi_driver.ctrl.ControllerGetVolume(pb.ControllerGetVolumeRequest(volume_id="pvc-durable"))
    assert got.volume == first.volume
    records = list((csi_driver.state_dir / "volumes").iterdir())
    assert len(records) == 1 and records[0].suffix == ".json"
    text = records[0].read_text()
    assert local_server.access_key_secret not in text and local_server.access_key_id not in text


def test_a_create_interrupted_at_the_bucket_is_finished_by_the_retry(csi_driver, local_server, oss_bucket,
                                                                      provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name)
    # A 500 is retried a few times (about 3 s); a 503 would be throttling, retried until the 60 s deadline.
    local_server.admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError",
                                    "probability": 1.0}])
    try:
        error = rpc_error(create, csi_driver, "pvc-retry", parameters, provisioner_secrets)
    finally:
        local_server.admin.clear_faults()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert keys(oss_bucket, "volumes/") == []
    csi_driver.restart_after_crash()
    response = create(csi_driver, "pvc-retry", parameters, provisioner_secrets)
    assert response.volume.volume_id == "pvc-retry"
    assert keys(oss_bucket, "volumes/") == ["volumes/pvc-retry/"]


def test_sharepath_shares_the_path_and_creates_nothing(csi_driver, local_server, oss_bucket, provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name, volumeAs="sharepath", path="/shared")
    one = create(csi_driver, "pvc-share-1", parameters, provisioner_secrets)
    two = create(csi_driver, "pvc-share-2", parameters, provisioner_secrets)
    assert one.volume.volume_context["path"] == two.volume.volume_context["path"] == "/shared"
    assert keys(oss_bucket) == []
    # Without a provisioner secret there is nothing to create, so the controller trusts the parameters.
    three = create(csi_driver, "pvc-share-3", parameters)
    assert three.volume.volume_context["path"] == "/shared"


def test_delete_keeps_data_by_default_and_unknown_ids_succeed(csi_driver, local_server, oss_bucket,
                                                             provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name)
    create(csi_driver, "pvc-keep", parameters, provisioner_secrets)
    oss_bucket.put_object("volumes/pvc-keep/result.csv", b"1,2,3")
    csi_driver.ctrl.DeleteVolume(pb.DeleteVolumeRequest(volume_id="pvc-keep", secrets=provisioner_secrets))
    assert keys(oss_bucket, "volumes/") == ["volumes/pvc-keep/", "volumes/pvc-keep/result.csv"]
    # Deleted: the id is unknown now, and unknown ids are success (CSI spec), with or without secrets.
    csi_driver.ctrl.DeleteVolume(pb.DeleteVolumeRequest(volume_id="pvc-keep"))
    csi_driver.ctrl.DeleteVolume(pb.DeleteVolumeRequest(volume_id="never-created"))
    error = rpc_error(csi_driver.ctrl.ControllerGetVolume, pb.ControllerGetVolumeRequest(volume_id="pvc-keep"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # The name is free again: a new volume of that name may have other parameters.
    create(csi_driver, "pvc-keep", {**parameters, "otherOpts": "-o ro"}, provisioner_secrets)


def test_on_delete_delete_removes_the_volume_prefix_only(csi_driver, local_server, oss_bucket, provisioner_secrets):
    parameters = storage_class(local_server, oss_bucket.bucket_name, onDelete="delete")
    create(csi_driver, "pvc-gone", parameters, provisioner_secrets)
    create(csi_driver, "pvc-gone-not", parameters, provisioner_secrets)
    for key in ("volumes/pvc-gone/a", "volumes/pvc-gone/sub/b", "volumes/pvc-gone-not/c"):
        oss_bucket.put_object(key, b"x")
    error = rpc_error(csi_driver.ctrl.DeleteVolume, pb.DeleteVolumeRequest(volume_id="pvc-gone"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "provisioner secret" in error.details()
    csi_driver.ctrl.DeleteVolume(pb.DeleteVolumeRequest(volume_id="pvc-gone", secrets=provisioner_secrets))
    assert keys(oss_bucket, "volumes/") == ["volumes/pvc-gone-not/", "volumes/pvc-gone-not/c"]
    csi_driver.ctrl.DeleteVolume(pb.DeleteVolumeRequest(volume_id="pvc-gone", secrets=provisioner_secrets))


def test_validate_and_get_of_unknown_ids_are_not_found_without_secrets(csi_driver, local_server, oss_bucket,
                                                                       provisioner_secrets):
    for call, request in (
        (csi_driver.ctrl.ValidateVolumeCapabilities, pb.ValidateVolumeCapabilitiesRequest(
            volume_id="no-such-volume", volume_capabilities=[mount_capability()])),
        (csi_driver.ctrl.ControllerGetVolume, pb.ControllerGetVolumeRequest(volume_id="no-such-volume")),
    ):
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-volume" in error.details()
    created = create(csi_driver, "pvc-valid", storage_class(local_server, oss_bucket.bucket_name),
                     provisioner_secrets).volume
    confirmed = csi_driver.ctrl.ValidateVolumeCapabilities(pb.ValidateVolumeCapabilitiesRequest(
        volume_id="pvc-valid", volume_context=created.volume_context, volume_capabilities=[mount_capability()]))
    assert confirmed.HasField("confirmed")
    assert list(confirmed.confirmed.volume_capabilities) == [mount_capability()]
    refused = csi_driver.ctrl.ValidateVolumeCapabilities(pb.ValidateVolumeCapabilitiesRequest(
        volume_id="pvc-valid", volume_capabilities=[block_capability()]))
    assert not refused.HasField("confirmed") and "block" in refused.message


@pytest.mark.parametrize("request_kwargs, field", [
    (dict(name=""), "name"),
    (dict(volume_capabilities=[]), "volume_capabilities"),
    (dict(volume_capabilities=[block_capability()]), "block"),
    (dict(volume_capabilities=[pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume())]), "access mode"),
    (dict(parameters={"url": "http://127.0.0.1:1"}), "bucket"),
    (dict(parameters={"bucket": "b-1", "url": "http://127.0.0.1:1", "volumeAs": "lvm"}), "volumeAs"),
    (dict(parameters={"bucket": "b-1", "url": "http://127.0.0.1:1", "otherOpts": "-o no_such_option"}),
     "no_such_option"),
    (dict(parameters={"bucket": "b-1", "url": "http://127.0.0.1:1", "otherOpts": "allow_other"}), "otherOpts"),
    (dict(parameters={"bucket": "b-1", "url": "http://127.0.0.1:1", "onDelete": "delete"}), "subpath"),
    (dict(parameters={"bucket": "b-1", "url": "http://127.0.0.1:1", "encrypted": "kms"}), "encryption"),
    (dict(parameters={"bucket": "b-1", "url": "http://127.0.0.1:1", "pathh": "/x"}), "pathh"),
    (dict(name="a/b"), "name"),
])
def test_malformed_create_is_invalid_argument(csi_driver, request_kwargs, field):
    request = dict(name="pvc-bad", volume_capabilities=[mount_capability()],
                   parameters={"bucket": "b-1", "url": "http://127.0.0.1:1"})
    request.update(request_kwargs)
    error = rpc_error(csi_driver.ctrl.CreateVolume, pb.CreateVolumeRequest(**request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()
    assert not (csi_driver.state_dir / "volumes").exists() or not list((csi_driver.state_dir / "volumes").iterdir())


def test_subpath_without_credentials_is_refused(csi_driver, local_server, oss_bucket):
    error = rpc_error(create, csi_driver, "pvc-nocreds", storage_class(local_server, oss_bucket.bucket_name))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "provisioner-secret-name" in error.details()


def test_bad_credentials_and_missing_bucket_name_the_oss_error_and_never_the_secret(csi_driver, local_server,
                                                                                     oss_bucket):
    secret = "a-wrong-secret-value-0123456789"
    bad = {"akId": local_server.access_key_id, "akSecret": secret}
    error = rpc_error(create, csi_driver, "pvc-badkey", storage_class(local_server, oss_bucket.bucket_name), bad)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "SignatureDoesNotMatch" in error.details()
    unknown = {"AccessKeyId": "LTAI-no-such-key-id", "AccessKeySecret": secret, "SecurityToken": "tok-" + secret}
    error = rpc_error(create, csi_driver, "pvc-badid", storage_class(local_server, oss_bucket.bucket_name), unknown)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "LTAI-no-such-key-id" not in error.details()
    good = {"akId": local_server.access_key_id, "akSecret": local_server.access_key_secret}
    error = rpc_error(create, csi_driver, "pvc-nobucket", storage_class(local_server, "no-such-bucket-here"), good)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "NoSuchBucket" in error.details()
    unreachable = storage_class(local_server, oss_bucket.bucket_name, url="http://127.0.0.1:1")
    error = rpc_error(create, csi_driver, "pvc-unreachable", unreachable, good)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    log = csi_driver.log()
    for value in (secret, local_server.access_key_secret, "LTAI-no-such-key-id"):
        assert value not in log
        assert value not in error.details()
