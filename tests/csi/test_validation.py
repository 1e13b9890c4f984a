"""Sans-IO: CSI request checks, Alibaba attributes and secrets → the daemon's calls, error mapping, scrubbing."""

from __future__ import annotations

import grpc
import pytest

from ossmount.csi import csi_pb2 as pb
from ossmount.csi import validation as v
from ossmount.csi.errors import CsiError, Scrubber, status_for_daemon_code
from tests.csi.conftest import AccessMode, block_capability, mount_capability

ATTRS = {"bucket": "data-bucket", "url": "oss-cn-hangzhou-internal.aliyuncs.com", "path": "/train"}
SECRETS = {"akId": "LTAI5tExampleKeyId", "akSecret": "ExampleSecretValue0123456789"}


def publish(**kwargs):
    request = dict(volume_id="pv-data", target_path="/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv-data/mount",
                   staging_target_path="/var/lib/kubelet/plugins/kubernetes.io/csi/csi.ossmount.io/h/globalmount",
                   volume_capability=mount_capability(), volume_context=ATTRS, secrets=SECRETS)
    request.update(kwargs)
    return pb.NodePublishVolumeRequest(**{k: val for k, val in request.items() if val is not None})


def code_of(fn, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(CsiError) as caught:
        fn(*args, **kwargs)
    return caught.value.code, caught.value.message


def test_publish_maps_alibaba_attributes_and_secrets_onto_the_daemon():
    call = v.publish_call(publish(volume_context={**ATTRS, "otherOpts": "-o allow_other -o umask=022 -omax_stat_cache_size=0,readdir_optimize",
                                                  "csi.storage.k8s.io/pod.name": "web-0",
                                                  "csi.storage.k8s.io/pod.uid": "u-1",
                                                  "storage.kubernetes.io/csiProvisionerIdentity": "x"}))
    assert (call.volume_id, call.target_path, call.read_only, call.global_path) == (
        "pv-data", publish().target_path, False, publish().staging_target_path)
    assert call.spec.to_daemon() == {
        "bucket": "data-bucket", "prefix": "/train", "endpoint": "http://oss-cn-hangzhou-internal.aliyuncs.com",
        "region": "", "signature": "", "read_only": False,
        "options": ["allow_other", "umask=022", "max_stat_cache_size=0", "readdir_optimize"]}
    assert call.credentials == {"type": "access_key", "access_key_id": SECRETS["akId"],
                                "access_key_secret": SECRETS["akSecret"]}
    assert call.pod == {"uid": "u-1", "name": "web-0"}
    assert SECRETS["akSecret"] not in repr(call)


@pytest.mark.parametrize("keys", [
    {"AccessKeyId": "id", "AccessKeySecret": "secret-1"},
    {"accesskeyid": "id", "ACCESSKEYSECRET": "secret-1"},
])
def test_secret_forms(keys):
    assert v.parse_credentials(keys, "X") == {"type": "access_key", "access_key_id": "id",
                                               "access_key_secret": "secret-1"}


def test_sts_secret_and_attribute_keys():
    sts = v.parse_credentials({"AccessKeyId": "STS.id", "AccessKeySecret": "s", "SecurityToken": "tok",
                               "Expiration": "2030-01-01T00:00:00Z"}, "X")
    assert sts == {"type": "sts", "access_key_id": "STS.id", "access_key_secret": "s", "security_token": "tok",
                   "expiration": "2030-01-01T00:00:00Z"}
    assert v.parse_credentials({}, "X") is None
    # Alibaba's deprecated akId/akSecret in volumeAttributes still work.
    legacy = v.parse_credentials({}, "X", attributes={"akId": "id", "akSecret": "s"})
    assert legacy["access_key_id"] == "id"
    code, message = code_of(v.parse_credentials, {"akId": "id"}, "X")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "akSecret" in message


def test_read_only_comes_from_readonly_reader_modes_and_attributes():
    assert v.publish_call(publish(readonly=True)).read_only
    assert v.publish_call(publish(volume_capability=mount_capability(AccessMode.MULTI_NODE_READER_ONLY))).read_only
    ro_volume = v.publish_call(publish(volume_context={**ATTRS, "readOnly": "true"}))
    assert ro_volume.spec.read_only and not ro_volume.read_only
    assert v.publish_call(publish(volume_context={**ATTRS, "otherOpts": "-o ro"})).spec.read_only
    assert not v.publish_call(publish()).spec.read_only


def test_signature_and_region():
    spec = v.publish_call(publish(volume_context={**ATTRS, "sigVersion": "v4"})).spec
    assert (spec.signature, spec.region) == ("v4", "cn-hangzhou")
    spec = v.publish_call(publish(volume_context={**ATTRS, "url": "http://127.0.0.1:9000", "sigVersion": "V4",
                                                  "region": "cn-beijing"})).spec
    assert (spec.signature, spec.region, spec.endpoint) == ("v4", "cn-beijing", "http://127.0.0.1:9000")
    code, message = code_of(v.publish_call, publish(volume_context={**ATTRS, "url": "http://127.0.0.1:9000",
                                                                      "sigVersion": "v4"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "region" in message


def test_mount_flags_join_other_opts_and_public_buckets_are_anonymous():
    call = v.publish_call(publish(volume_capability=mount_capability(flags=["allow_other,uid=1000", "gid=1000"])))
    assert call.spec.options == ("allow_other", "uid=1000", "gid=1000")
    anonymous = v.publish_call(publish(volume_context={**ATTRS, "authType": "public"}, secrets={}))
    assert anonymous.credentials == {"type": "anonymous"}
    assert v.publish_call(publish(secrets={})).credentials == {"type": "none"}


def test_stage_without_secrets_defers_to_publish():
    request = pb.NodeStageVolumeRequest(volume_id="pv", staging_target_path="/k/globalmount",
                                        volume_capability=mount_capability(), volume_context=ATTRS)
    assert v.stage_call(request) is None
    request.secrets.update(SECRETS)
    call = v.stage_call(request)
    assert call.global_path == "/k/globalmount" and call.credentials["type"] == "access_key"


@pytest.mark.parametrize("change, code, words", [
    (dict(volume_id=""), grpc.StatusCode.INVALID_ARGUMENT, "volume_id is missing"),
    (dict(target_path=""), grpc.StatusCode.INVALID_ARGUMENT, "target_path is missing"),
    (dict(target_path="relative/mount"), grpc.StatusCode.INVALID_ARGUMENT, "absolute"),
    (dict(target_path="/var/lib/kubelet/../../etc"), grpc.StatusCode.INVALID_ARGUMENT, ".."),
    (dict(volume_capability=None), grpc.StatusCode.INVALID_ARGUMENT, "volume_capability is missing"),
    (dict(volume_capability=block_capability()), grpc.StatusCode.INVALID_ARGUMENT, "block"),
    (dict(volume_capability=mount_capability(AccessMode.UNKNOWN)), grpc.StatusCode.INVALID_ARGUMENT, "access mode"),
    (dict(volume_capability=mount_capability(fs_type="ext4")), grpc.StatusCode.INVALID_ARGUMENT, "ext4"),
    (dict(staging_target_path=""), grpc.StatusCode.FAILED_PRECONDITION, "staging_target_path"),
    (dict(volume_context={"url": "x.example.com"}), grpc.StatusCode.INVALID_ARGUMENT, "'bucket' is missing"),
    (dict(volume_context={"bucket": "b-1"}), grpc.StatusCode.INVALID_ARGUMENT, "'url' is missing"),
    (dict(volume_context={**ATTRS, "bucket": "Bad_Bucket"}), grpc.StatusCode.INVALID_ARGUMENT, "bucket"),
    (dict(volume_context={**ATTRS, "url": "ftp://x"}), grpc.StatusCode.INVALID_ARGUMENT, "url"),
    (dict(volume_context={**ATTRS, "url": "data-bucket.oss-cn-hangzhou.aliyuncs.com"}),
     grpc.StatusCode.INVALID_ARGUMENT, "bucket domain"),
    (dict(volume_context={**ATTRS, "path": "/a/../b"}), grpc.StatusCode.INVALID_ARGUMENT, "path"),
    (dict(volume_context={**ATTRS, "otherOpts": "allow_other"}), grpc.StatusCode.INVALID_ARGUMENT, "otherOpts"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o"}), grpc.StatusCode.INVALID_ARGUMENT, "otherOpts"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o umask=999"}), grpc.StatusCode.INVALID_ARGUMENT, "umask"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o bogus_opt"}), grpc.StatusCode.INVALID_ARGUMENT, "bogus_opt"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o passwd_file=/etc/x"}), grpc.StatusCode.INVALID_ARGUMENT, "passwd_file"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o url=http://x"}), grpc.StatusCode.INVALID_ARGUMENT, "url"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o bucket=other"}), grpc.StatusCode.INVALID_ARGUMENT, "bucket"),
    (dict(volume_context={**ATTRS, "otherOpts": "-o logfile=/tmp/x"}), grpc.StatusCode.INVALID_ARGUMENT, "logfile"),
    (dict(volume_context={**ATTRS, "readOnly": "maybe"}), grpc.StatusCode.INVALID_ARGUMENT, "readOnly"),
    (dict(volume_context={**ATTRS, "sigVersion": "v3"}), grpc.StatusCode.INVALID_ARGUMENT, "sigVersion"),
    (dict(volume_context={**ATTRS, "fuseType": "ossfs2"}), grpc.StatusCode.INVALID_ARGUMENT, "ossfs2"),
    (dict(volume_context={**ATTRS, "authType": "rrsa"}), grpc.StatusCode.INVALID_ARGUMENT, "authType"),
    (dict(volume_context={**ATTRS, "encrypted": "kms"}), grpc.StatusCode.INVALID_ARGUMENT, "encryption"),
    (dict(volume_context={**ATTRS, "buckett": "x"}), grpc.StatusCode.INVALID_ARGUMENT, "buckett"),
    (dict(volume_capability=mount_capability(flags=["no_such_flag"])), grpc.StatusCode.INVALID_ARGUMENT, "no_such_flag"),
    (dict(secrets={"akId": "only-the-id"}), grpc.StatusCode.INVALID_ARGUMENT, "akSecret"),
])
def test_malformed_publish(change, code, words):
    got, message = code_of(v.publish_call, publish(**change))
    assert got == code
    assert words in message
    assert message.startswith("NodePublishVolume: ")


def test_accepted_alibaba_spellings():
    call = v.publish_call(publish(volume_context={" Bucket ": "data-bucket", "URL": "https://oss-cn-beijing.aliyuncs.com",
                                                  "Path": "train/", "fuseType": "ossfs", "useSharedPath": "true",
                                                  "metricsTop": "10", "otheropts": ""}))
    assert (call.spec.bucket, call.spec.prefix, call.spec.endpoint) == ("data-bucket", "/train",
                                                                        "https://oss-cn-beijing.aliyuncs.com")
    assert v.publish_call(publish(volume_context={**ATTRS, "path": ""})).spec.prefix == "/"


@pytest.mark.parametrize("rpc, request_, words", [
    (v.unpublish_args, pb.NodeUnpublishVolumeRequest(target_path="/t"), "volume_id"),
    (v.unpublish_args, pb.NodeUnpublishVolumeRequest(volume_id="v"), "target_path"),
    (v.unstage_args, pb.NodeUnstageVolumeRequest(staging_target_path="/s"), "volume_id"),
    (v.unstage_args, pb.NodeUnstageVolumeRequest(volume_id="v"), "staging_target_path"),
    (v.volume_stats_args, pb.NodeGetVolumeStatsRequest(volume_path="/p"), "volume_id"),
    (v.volume_stats_args, pb.NodeGetVolumeStatsRequest(volume_id="v"), "volume_path"),
    (v.stage_call, pb.NodeStageVolumeRequest(staging_target_path="/s", volume_capability=mount_capability()),
     "volume_id"),
    (v.stage_call, pb.NodeStageVolumeRequest(volume_id="v", volume_capability=mount_capability()),
     "staging_target_path"),
    (v.stage_call, pb.NodeStageVolumeRequest(volume_id="v", staging_target_path="/s"), "volume_capability"),
])
def test_missing_fields_of_other_node_rpcs(rpc, request_, words):
    code, message = code_of(rpc, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"{words} is missing" in message


def test_provision_parameters():
    parameters = v.parse_provision_parameters({"bucket": "b-1", "url": "http://127.0.0.1:9000", "path": "/vols/",
                                               "volumeAs": "subpath", "csi.storage.k8s.io/pv/name": "pvc-1"})
    assert parameters.prefix_for("pvc-1") == "/vols/pvc-1"
    assert parameters.volume_context("pvc-1") == {"bucket": "b-1", "url": "http://127.0.0.1:9000", "path": "/vols/pvc-1"}
    assert parameters.canonical() == {"bucket": "b-1", "onDelete": "retain", "path": "/vols",
                                      "url": "http://127.0.0.1:9000", "volumeAs": "subpath"}
    share = v.parse_provision_parameters({"bucket": "b-1", "url": "http://127.0.0.1:9000"})
    assert share.volume_as == "sharepath" and share.prefix_for("pvc-1") == "/"
    code, message = code_of(v.parse_provision_parameters, {"bucket": "b-1", "url": "u.example.com", "akSecret": "x"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "provisioner-secret-name" in message


def test_capacity():
    assert v.capacity_bytes(10, 0) == 10 and v.capacity_bytes(0, 20) == 20 and v.capacity_bytes(0, 0) == 0
    assert code_of(v.capacity_bytes, 30, 20)[0] == grpc.StatusCode.OUT_OF_RANGE
    assert code_of(v.capacity_bytes, -1, 0)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert v.capacity_fits(10, 5, 10) and v.capacity_fits(10, 0, 0)
    assert not v.capacity_fits(10, 20, 0) and not v.capacity_fits(10, 0, 5)


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND",
                                  "ALREADY_EXISTS", "FAILED_PRECONDITION", "ABORTED", "UNAVAILABLE",
                                  "DEADLINE_EXCEEDED", "INTERNAL"])
def test_daemon_codes_map_one_to_one(code):
    """csi-daemon.md §5.6: every daemon error code is the gRPC status of the same name."""
    assert status_for_daemon_code(code).name == code


def test_unknown_daemon_codes_are_unknown():
    assert status_for_daemon_code("SOMETHING_NEW") == grpc.StatusCode.UNKNOWN
    assert status_for_daemon_code("OK") == grpc.StatusCode.UNKNOWN


def test_scrubber_removes_secret_values_and_headers():
    request = pb.NodePublishVolumeRequest(secrets={"akSecret": "s3cr3t-value", "akId": "LTAIid"},
                                          volume_context={"akSecret": "attr-secret", "bucket": "b"})
    scrub = Scrubber.for_request(request)
    text = "otherOpts '-o x=s3cr3t-value' for LTAIid with attr-secret; {'authorization': 'OSS LTAIid:sig'}"
    cleaned = scrub(text)
    for secret in ("s3cr3t-value", "LTAIid", "attr-secret", "sig"):
        assert secret not in cleaned


def test_statvfs_prober_keeps_one_probe_per_path(tmp_path):
    """A hung statvfs is not stacked up: while one probe of a path is in flight, the next answers None at once."""
    import os
    import threading

    from ossmount.csi.node import StatvfsProber

    prober = StatvfsProber(timeout=5)
    assert isinstance(prober.probe(str(tmp_path)), os.statvfs_result)
    assert isinstance(prober.probe(str(tmp_path / "missing")), FileNotFoundError)
    # A thread blocked on an event stands in for a probe hung in statvfs on a wedged FUSE server.
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, daemon=True)
    prober._in_flight[str(tmp_path)] = stuck
    try:
        assert prober.probe(str(tmp_path)) is None
        assert isinstance(prober.probe(str(tmp_path / "missing")), FileNotFoundError)
    finally:
        release.set()
