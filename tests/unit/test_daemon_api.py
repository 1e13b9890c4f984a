"""ossmount.daemon.api: request validation, path rules, volume specs and routing (csi-daemon.md §5.2–§5.6)."""

from __future__ import annotations

import json

import pytest

from ossmount.daemon import api
from ossmount.daemon.api import CredentialsInput, VolumeSpec
from ossmount.daemon.errors import DaemonError

ALLOWED = ("/var/lib/kubelet", "/tmp/omd-x")
SPEC = {"bucket": "data", "prefix": "/train", "endpoint": "http://127.0.0.1:9000"}
KEYS = {"type": "access_key", "access_key_id": "AKID", "access_key_secret": "the-secret"}
TARGET = "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pv/mount"


def invalid(fn, *args) -> str:
    with pytest.raises(DaemonError) as raised:
        fn(*args)
    assert raised.value.code == "INVALID_ARGUMENT" and raised.value.http_status == 400
    assert "\n" not in raised.value.message
    return raised.value.message


@pytest.mark.parametrize("path, message", [
    (None, "missing field"),
    ("", "missing field"),
    (42, "must be a string"),
    ("relative/mount", "absolute"),
    ("/var/lib/kubelet/../../etc", "'..'"),
    ("/var/lib/kubelet/pods//x", "normalised"),
    ("/var/lib/kubelet/pods/./x", "normalised"),
    ("/var/lib/kubelet/pods/x/", "normalised"),
    ("/", "must not be /"),
    ("/proc/self", "under /proc"),
    ("/sys/fs", "under /sys"),
    ("/dev/shm/x", "under /dev"),
    ("/etc/passwd", "outside the allowed prefixes"),
    ("/var/lib/kubeletX/pods", "outside the allowed prefixes"),
    ("/var/lib/kubelet/pods\0x", "not a valid path"),
])
def test_bad_paths_are_refused(path, message):
    assert message in invalid(api.check_path, path, "target_path", ALLOWED)


@pytest.mark.parametrize("path", [TARGET, "/var/lib/kubelet", "/tmp/omd-x/kubelet/pods/a b/mount"])
def test_good_paths_pass(path):
    assert api.check_path(path, "target_path", ALLOWED) == path


def test_without_allowed_prefixes_any_safe_absolute_path_passes():
    assert api.check_path("/mnt/anywhere", "target_path") == "/mnt/anywhere"


@pytest.mark.parametrize("value, message", [
    (None, "missing field 'volume_id'"),
    ("", "missing field 'volume_id'"),
    (7, "must be a string"),
    ("x" * 513, "longer than 512 bytes"),
    ("pv\nx", "control characters"),
    ("pv\0x", "control characters"),
])
def test_bad_volume_ids(value, message):
    assert message in invalid(api.check_volume_id, value)


def test_volume_ids_are_opaque():
    assert api.check_volume_id("ns/pv:data é") == "ns/pv:data é"
    assert len(api.volume_hash("pv")) == 64


@pytest.mark.parametrize("body, message", [
    (b"{", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    (b"{" + b" " * api.MAX_BODY_BYTES + b"}", "larger than"),
])
def test_bad_bodies(body, message):
    assert message in invalid(api.decode_body, body)


def test_empty_body_is_an_empty_object():
    assert api.decode_body(b"") == {} and api.decode_body(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("options, expected, read_only", [
    (None, ["allow_other", "listobjectsv2", "dbglevel=info"], False),
    ("-o umask=022 -o allow_other", ["umask=022", "allow_other", "listobjectsv2", "dbglevel=info"], False),
    (["-oumask=022,uid=1000", "gid=1000"], ["umask=022", "uid=1000", "gid=1000", "allow_other", "listobjectsv2",
                                             "dbglevel=info"], False),
    (["listobjectsv1"], ["listobjectsv1", "allow_other", "dbglevel=info"], False),  # same field: the user's wins
    (["umask=022", "umask=077"], ["umask=022", "allow_other", "listobjectsv2", "dbglevel=info"], False),  # first wins
    ("-o ro", ["allow_other", "listobjectsv2", "dbglevel=info"], True),
    (["rw", "ro"], ["allow_other", "listobjectsv2", "dbglevel=info"], False),
    (["dbglevel=warn", "use_cache=/tmp"], ["dbglevel=warn", "use_cache=/tmp", "allow_other", "listobjectsv2"], False),
])
def test_options_are_normalised(options, expected, read_only):
    spec = VolumeSpec.from_json({**SPEC, "options": options})
    assert list(spec.options) == expected and spec.read_only is read_only


@pytest.mark.parametrize("options, message", [
    ("-o passwd_file=/etc/passwd-ossfs", "set by the daemon"),
    ("-o url=http://x", "set by the daemon"),
    (["logfile=/tmp/x"], "set by the daemon"),
    ("-f", "only -o OPTIONS"),
    ("-o", "needs an argument"),
    ("-o no_such_option", "unknown option 'no_such_option'"),
    ("-o uid=abc", "invalid value 'abc' for option 'uid'"),
    ([1], "must be a string or a list"),
])
def test_bad_options_are_refused(options, message):
    assert message in invalid(VolumeSpec.from_json, {**SPEC, "options": options})


@pytest.mark.parametrize("changes, message", [
    ({"bucket": None}, "missing field 'bucket'"),
    ({"bucket": "Bad_Bucket"}, "invalid bucket name"),
    ({"endpoint": None}, "missing field 'endpoint'"),
    ({"endpoint": "ftp://x"}, "http:// or https://"),
    ({"endpoint": "bucket.oss-cn-hangzhou.aliyuncs.com"}, "bucket domain"),
    ({"prefix": "/a/../b"}, "not allowed"),
    ({"signature": "v2"}, "'v1' or 'v4'"),
    ({"signature": "v4"}, "needs a region"),
    ({"read_only": "yes"}, "true or false"),
    ({"colour": "blue"}, "unknown field 'colour' in spec"),
])
def test_bad_specs_are_refused(changes, message):
    document = {key: value for key, value in {**SPEC, **changes}.items() if value is not None}
    assert message in invalid(VolumeSpec.from_json, document)


def test_spec_signature_follows_alibaba():
    """v4 when a region is known (given or in the endpoint), else v1; no scheme: https, http for -internal."""
    public = VolumeSpec.from_json({"bucket": "data", "endpoint": "oss-cn-hangzhou.aliyuncs.com"})
    assert (public.endpoint, public.signature, public.region) == (
        "https://oss-cn-hangzhou.aliyuncs.com", "v4", "cn-hangzhou")
    internal = VolumeSpec.from_json({"bucket": "data", "endpoint": "oss-cn-beijing-internal.aliyuncs.com"})
    assert internal.endpoint == "http://oss-cn-beijing-internal.aliyuncs.com" and internal.region == "cn-beijing"
    local = VolumeSpec.from_json(SPEC)
    assert (local.signature, local.region) == ("v1", None)
    pinned = VolumeSpec.from_json({**SPEC, "region": "cn-shanghai"})
    assert (pinned.signature, pinned.region) == ("v4", "cn-shanghai")
    assert VolumeSpec.from_json({**SPEC, "region": "cn-shanghai", "signature": "v1"}).signature == "v1"


def test_spec_hash_and_round_trip():
    spec = VolumeSpec.from_json({**SPEC, "options": "-o umask=022"})
    assert spec.to_json()["prefix"] == "/train" and spec.prefix == "train/"
    assert VolumeSpec.from_canonical(spec.to_json()) == spec
    assert spec.spec_hash == VolumeSpec.from_json({**SPEC, "options": ["umask=022"]}).spec_hash
    other = VolumeSpec.from_json({**SPEC, "prefix": "/other", "options": "-o umask=022"})
    assert other.spec_hash != spec.spec_hash and spec.differences(other) == ["prefix"]
    assert VolumeSpec.from_json({**SPEC, "prefix": ""}).to_json()["prefix"] == "/"


def test_mount_option_items_put_driver_options_after_the_users():
    spec = VolumeSpec.from_json({**SPEC, "region": "cn-shanghai", "read_only": True, "options": "-o umask=022"})
    items = spec.mount_option_items("/run/ossmount/volumes/vh/creds/keys")
    assert items == ["umask=022", "allow_other", "listobjectsv2", "dbglevel=info", "url=http://127.0.0.1:9000",
                     "ro", "sigv4", "region=cn-shanghai", "passwd_file=/run/ossmount/volumes/vh/creds/keys"]
    assert spec.mount_options().read_only and spec.mount_options().sigv4


@pytest.mark.parametrize("document, message", [
    ({}, "missing field 'type'"),
    ({"type": "password"}, "must be one of"),
    ({"type": "rrsa", "role_arn": "x"}, "not supported by this ossmount yet"),
    ({"type": "anonymous"}, "not supported by this ossmount yet"),
    ({"type": "access_key", "access_key_id": "AK"}, "missing field 'access_key_secret'"),
    ({"type": "access_key", "access_key_id": "AK", "access_key_secret": "S", "security_token": "T"},
     "unknown field 'security_token'"),
    ({"type": "sts", "access_key_id": "AK", "access_key_secret": "S"}, "missing field 'security_token'"),
    ({"type": "sts", "access_key_id": "AK", "access_key_secret": "S", "security_token": "T",
      "expiration": "tomorrow"}, "not an RFC 3339 time"),
    ({"type": "access_key", "access_key_id": "AK", "access_key_secret": "with space"}, "spaces or control"),
    ({"type": "none", "access_key_id": "AK"}, "unknown field"),
])
def test_bad_credentials_are_refused_without_echoing_secrets(document, message):
    text = invalid(CredentialsInput.from_json, document)
    assert message in text and "with space" not in text


def test_credentials_never_show_their_secrets():
    sts = CredentialsInput.from_json({"type": "sts", "access_key_id": "STS.AbCdEfGh1234", "access_key_secret": "S3",
                                      "security_token": "T0KEN", "expiration": "2030-01-01T00:00:00Z"})
    assert "S3" not in repr(sts) and "T0KEN" not in repr(sts)
    assert sts.describe() == {"type": "sts", "access_key_id": "STS.****1234", "expires_at": "2030-01-01T00:00:00Z"}
    assert sts.files() == {"AccessKeyId": "STS.AbCdEfGh1234", "AccessKeySecret": "S3", "SecurityToken": "T0KEN",
                           "Expiration": "2030-01-01T00:00:00Z"}


def test_parse_stage_and_publish():
    stage = api.parse_stage({"volume_id": "pv", "spec": SPEC, "credentials": KEYS, "timeout_s": 12}, ALLOWED)
    assert stage.spec.bucket == "data" and stage.timeout_s == 12 and stage.global_path is None
    publish = api.parse_publish({"volume_id": "pv", "target_path": TARGET, "read_only": True,
                                 "pod": {"uid": "u", "name": "p"}}, ALLOWED)
    assert publish.read_only and publish.spec is None and publish.pod == {"uid": "u", "name": "p"}
    assert publish.stage_request() is None
    implicit = api.parse_publish({"volume_id": "pv", "target_path": TARGET, "spec": SPEC, "credentials": KEYS},
                                 ALLOWED).stage_request()
    assert implicit is not None and implicit.credentials.access_key_id == "AKID"


@pytest.mark.parametrize("parse, document, message", [
    (api.parse_stage, {"spec": SPEC, "credentials": KEYS}, "missing field 'volume_id'"),
    (api.parse_stage, {"volume_id": "pv", "credentials": KEYS}, "missing field 'spec'"),
    (api.parse_stage, {"volume_id": "pv", "spec": SPEC}, "missing field 'credentials'"),
    (api.parse_stage, {"volume_id": "pv", "spec": SPEC, "credentials": {"type": "none"}}, "needs credentials"),
    (api.parse_stage, {"volume_id": "pv", "spec": SPEC, "credentials": KEYS, "timeout_s": 500}, "timeout_s"),
    (api.parse_stage, {"volume_id": "pv", "spec": SPEC, "credentials": KEYS, "timeout_s": True}, "timeout_s"),
    (api.parse_stage, {"volume_id": "pv", "spec": SPEC, "credentials": KEYS, "global_path": "x"}, "absolute"),
    (api.parse_publish, {"volume_id": "pv"}, "missing field 'target_path'"),
    (api.parse_publish, {"volume_id": "pv", "target_path": TARGET, "readonly": True}, "unknown field 'readonly'"),
    (api.parse_publish, {"volume_id": "pv", "target_path": TARGET, "read_only": 1}, "true or false"),
    (api.parse_publish, {"volume_id": "pv", "target_path": TARGET + "/sub", "global_path": TARGET}, "inside it"),
    (api.parse_publish, {"volume_id": "pv", "target_path": TARGET, "pod": {"ip": "x"}}, "unknown field 'ip'"),
    (api.parse_unpublish, {"volume_id": "pv", "target_path": "/etc"}, "outside the allowed prefixes"),
    (api.parse_unstage, {"volume_id": "pv", "force": "yes"}, "true or false"),
    (api.parse_unstage, {"volume_id": "pv", "drain_timeout_s": -1}, "drain_timeout_s"),
    (api.parse_rotate, {"volume_id": "pv"}, "missing field 'credentials'"),
    (api.parse_rotate, {"volume_id": "pv", "credentials": "AK:SK"}, "must be a JSON object"),
])
def test_bad_requests(parse, document, message):
    assert message in invalid(parse, document, ALLOWED)


def test_implicit_stage_needs_credentials():
    request = api.parse_publish({"volume_id": "pv", "target_path": TARGET, "spec": SPEC}, ALLOWED)
    assert "needs credentials" in invalid(request.stage_request)


@pytest.mark.parametrize("method, target, name, volume_id", [
    ("POST", "/v1/stage", "stage", None),
    ("POST", "/v1/rotate-credentials", "rotate-credentials", None),
    ("GET", "/v1/volumes", "volumes", None),
    ("GET", "/v1/volumes/ns%2Fpv%20x", "volume", "ns/pv x"),
    ("GET", "/v1/health", "health", None),
    ("GET", "/metrics", "metrics", None),
    ("GET", "/v1/health?verbose=1", "health", None),
])
def test_routes(method, target, name, volume_id):
    assert api.route(method, target) == api.Route(name, volume_id)


def test_unknown_routes_and_methods():
    with pytest.raises(DaemonError) as raised:
        api.route("POST", "/v1/mount")
    assert raised.value.code == "NOT_FOUND" and raised.value.http_status == 404
    assert "expects POST" in invalid(api.route, "GET", "/v1/publish")
    assert "expects GET" in invalid(api.route, "DELETE", "/v1/volumes/pv")
    assert "percent-encoded" in invalid(api.route, "GET", "/v1/volumes/%ff")


def test_error_documents_follow_the_contract():
    error = DaemonError("ABORTED", "busy", volume_id="pv", retry_after=6, log_tail="x" * 10000)
    document = error.to_json()["error"]
    assert document["code"] == "ABORTED" and document["retryable"] is True and len(document["log_tail"]) == 8192
    assert error.http_status == 409
    assert json.loads(json.dumps(error.to_json())) == error.to_json()
    assert DaemonError("UNAUTHENTICATED", "x", reason="SignatureDoesNotMatch").to_json()["error"]["retryable"] is False
    with pytest.raises(ValueError):
        DaemonError("TEAPOT", "x")
