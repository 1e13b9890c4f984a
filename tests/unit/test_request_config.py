"""Pure pieces behind ossfs's request options (issue 7): ahbe_conf files, the header and copy policies, the mapping
from MountOptions to the store, the log line format, and what canned ACLs grant."""

from __future__ import annotations

import math

import pytest

from ossmount import USER_AGENT
from ossmount.ahbe import headers_for, key_headers, load_ahbe_file, parse_ahbe
from ossmount.errors import ConfigError
from ossmount.logsafety import log_format
from ossmount.options import parse_options
from ossmount.server.core.access import anonymous_allowed, effective_acl
from ossmount.store.headers import CopyPolicy, RequestHeaders, merge_headers
from ossmount.storeconfig import store_copy_policy, store_credentials, store_headers, user_agent

# The sample file ossfs ships (test/sample_ahbe.conf), in its own format.
SAMPLE = """\
# ossfs: Sample ahbe_conf parameter file.
.gz\t\t\tContent-Encoding\tgzip
.Z\t\t\tContent-Encoding\tcompress
.tar.gz\t\t\tContent-Encoding\tgzip
gz.js\t\t\tContent-Encoding\tgzip

# regex type(test)
reg:^/MYDIR/(.*)[.]t2$\tContent-Encoding\ttext2
 Cache-Control  max-age=3600, public
"""


@pytest.mark.parametrize("path, expected", [
    ("/a/file.gz", {"Content-Encoding": "gzip", "Cache-Control": "max-age=3600, public"}),
    ("/file.Z", {"Content-Encoding": "compress", "Cache-Control": "max-age=3600, public"}),
    ("/x.tar.gz", {"Content-Encoding": "gzip", "Cache-Control": "max-age=3600, public"}),
    ("/MYDIR/sub/report.t2", {"Content-Encoding": "text2", "Cache-Control": "max-age=3600, public"}),
    ("/OTHER/report.t2", {"Cache-Control": "max-age=3600, public"}),
    ("/plain.txt", {"Cache-Control": "max-age=3600, public"}),
])
def test_ahbe_rules_match_as_ossfs_does(path, expected):
    assert headers_for(parse_ahbe(SAMPLE), path) == expected


def test_ahbe_suffix_must_be_shorter_than_the_path_and_later_rules_win():
    rules = parse_ahbe(".gz X-A one\n.gz x-a two\n")
    assert headers_for(rules, ".gz") == {}  # the whole path is the suffix: no match (ossfs)
    assert headers_for(rules, "/f.gz") == {"x-a": "two"}


def test_ahbe_paths_are_relative_to_the_mount_prefix():
    extra = key_headers(parse_ahbe("reg:^/logs/ Cache-Control no-store\n"), "team/")
    assert extra("team/logs/today") == {"Cache-Control": "no-store"}
    assert extra("team/data/logs/today") == {}


@pytest.mark.parametrize("text, message", [
    (".gz\n", "names no HTTP header"),
    (".gz Bad:Header x\n", "not an HTTP header name"),
    ("reg:( X-A v\n", "bad regular expression"),
    ("reg: X-A v\n", "no regular expression"),
    (".gz X-A caf\u00e9\n", "printable ASCII"),
])
def test_ahbe_bad_lines_name_file_and_line(text, message):
    with pytest.raises(ConfigError, match=rf"conf:1: .*{message}"):
        parse_ahbe(text, source="conf")


def test_ahbe_file_that_cannot_be_read(tmp_path):
    with pytest.raises(ConfigError, match="cannot read ahbe_conf file"):
        load_ahbe_file(str(tmp_path / "missing"))
    path = tmp_path / "ahbe"
    path.write_text(SAMPLE)
    assert len(load_ahbe_file(str(path))) == 6


# -- the header and copy policies -----------------------------------------------------------------------------


def test_request_headers_by_kind_of_request():
    headers = RequestHeaders(object_acl="private", storage_class="Archive", server_side_encryption="AES256",
                             request_payer=True, upload_traffic_limit=819200,
                             extra_headers=lambda key: {"x-oss-object-acl": "public-read"} if key.endswith(".pub")
                             else {})
    assert headers.every_request() == {"x-oss-request-payer": "requester"}
    assert headers.for_write("k") == {"x-oss-object-acl": "private", "x-oss-storage-class": "Archive",
                                      "x-oss-server-side-encryption": "AES256"}
    assert headers.for_write("k.pub")["x-oss-object-acl"] == "public-read"  # ahbe_conf comes last
    assert headers.for_upload() == {"x-oss-traffic-limit": "819200"} and headers.for_download() == {}
    assert RequestHeaders().for_write("k") == {} and RequestHeaders().every_request() == {}


@pytest.mark.parametrize("kwargs", [dict(object_acl="everyone"), dict(server_side_encryption="SM9"),
                                    dict(sse_key_id="k"), dict(upload_traffic_limit=1)])
def test_request_headers_refuse_impossible_values(kwargs):
    with pytest.raises(ValueError):
        RequestHeaders(**kwargs)


def test_merge_headers_is_case_insensitive():
    assert merge_headers({"Content-Type": "a", "X": "1"}, {"content-type": "b"}) == {"X": "1", "content-type": "b"}


@pytest.mark.parametrize("policy, rewrite_same, rewrite_other, part_copy", [
    (CopyPolicy(), False, False, True),
    (CopyPolicy(copy_api=False), True, True, False),
    (CopyPolicy(rename_api=False), False, True, False),
    (CopyPolicy(mix_upload=False), False, False, False),
])
def test_copy_policy(policy, rewrite_same, rewrite_other, part_copy):
    assert policy.copies_by_rewrite("k", "k") is rewrite_same
    assert policy.copies_by_rewrite("k", "other") is rewrite_other
    assert policy.part_copy is part_copy


def test_shallow_copy_limit():
    policy = CopyPolicy(shallow_copy=False, singlepart_copy_limit=10)
    assert not policy.copies_in_parts(10) and policy.copies_in_parts(11)
    assert not CopyPolicy(singlepart_copy_limit=10).copies_in_parts(11)


# -- from options to the store --------------------------------------------------------------------------------


def test_options_become_request_headers(tmp_path):
    conf = tmp_path / "ahbe.conf"
    conf.write_text(".gz Content-Encoding gzip\n")
    options = parse_options(["default_acl=public-read", "storage_class=coldarchive", "use_sse=kmsid:key-9",
                             "requester_pays", "upload_traffic_limit=819200", "download_traffic_limit=1638400",
                             f"ahbe_conf={conf}", "instance_name=web-1"])
    headers = store_headers(options, prefix="p/", environ={})
    assert headers.for_write("p/a.gz") == {"x-oss-object-acl": "public-read", "x-oss-storage-class": "ColdArchive",
                                           "x-oss-server-side-encryption": "KMS",
                                           "x-oss-server-side-encryption-key-id": "key-9",
                                           "Content-Encoding": "gzip"}
    assert headers.every_request() == {"x-oss-request-payer": "requester"}
    assert (headers.upload_traffic_limit, headers.download_traffic_limit) == (819200, 1638400)
    assert headers.user_agent == f"{USER_AGENT} [web-1]"
    assert user_agent(parse_options(["noua", "instance_name=x"])) is None
    assert store_headers(parse_options(["use_sse"]), environ={}).for_write("k") == {
        "x-oss-server-side-encryption": "AES256"}


def test_use_sse_kmsid_takes_the_key_from_the_environment():
    options = parse_options(["use_sse=kmsid"])
    assert store_headers(options, environ={"OSSSSEKMSID": "env-key"}).sse_key_id == "env-key"
    with pytest.raises(ConfigError, match="OSSSSEKMSID"):
        store_headers(options, environ={})
    assert store_headers(parse_options(["use_sse=kms"]), environ={}).sse_key_id is None


def test_options_become_the_copy_policy():
    assert store_copy_policy(parse_options([])) == CopyPolicy()
    public = store_copy_policy(parse_options(["public_bucket=1"]))
    assert not public.copy_api  # OSS refuses anonymous copies (ossfs sets nocopyapi)
    policy = store_copy_policy(parse_options(["norenameapi", "noshallowcopyapi", "nomixupload",
                                              "singlepart_copy_limit=10", "multipart_copy_size=64",
                                              "multipart_size=8"]))
    assert (policy.rename_api, policy.shallow_copy, policy.mix_upload) == (False, False, False)
    assert (policy.singlepart_copy_limit, policy.multipart_copy_size, policy.rewrite_part_size) == (
        10 << 20, 64 << 20, 8 << 20)


def test_credentials_for_public_buckets_ram_roles_and_session_tokens(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("bkt:AK:SK\n")
    passwd.chmod(0o600)
    assert store_credentials("bkt", parse_options(["public_bucket=1", f"passwd_file={passwd}"]), environ={}) is None
    role = store_credentials("bkt", parse_options(["ram_role=EcsRole"]),
                             environ={"OSSMOUNT_ECS_METADATA_ENDPOINT": "http://127.0.0.1:1/"})
    assert (role.role, role.endpoint) == ("EcsRole", "http://127.0.0.1:1")
    assert store_credentials("bkt", parse_options(["ram_role"]), environ={}).role is None
    with pytest.raises(ConfigError, match="use_session_token"):
        store_credentials("bkt", parse_options([f"passwd_file={passwd}", "use_session_token"]), environ={})
    sts = store_credentials("bkt", parse_options(["use_session_token"]),
                            environ={"OSS_ACCESS_KEY_ID": "STS.a", "OSS_ACCESS_KEY_SECRET": "s",
                                     "OSS_SESSION_TOKEN": "t"})
    assert sts.security_token == "t"


def test_one_provider_per_source_and_the_daemon_s_keys_replace_passwd_file_only(tmp_path):
    """store_credentials returns one credentials provider (ossmount.credentials) whatever the source: a passwd file
    is re-read when it changes, `source=` (the daemon's keys) replaces passwd_file and the environment, and
    public_bucket / ram_role still decide first, as in the mount the daemon starts."""
    from ossmount.credentials import Credentials, EcsRamRoleCredentials, FileCredentials

    passwd = tmp_path / "passwd"
    passwd.write_text("bkt:AK1:SK\n")
    passwd.chmod(0o600)
    from_file = store_credentials("bkt", parse_options([f"passwd_file={passwd}"]), environ={})
    assert isinstance(from_file, FileCredentials) and from_file.current().access_key_id == "AK1"
    replacement = tmp_path / "passwd.new"
    replacement.write_text("bkt:AK2:SK\n")
    replacement.chmod(0o600)
    replacement.replace(passwd)
    assert from_file.current().access_key_id == "AK2" and from_file.reloads == 1
    keys = Credentials("REQUEST-AK", "secret", None, "request")
    assert store_credentials("bkt", parse_options([f"passwd_file={passwd}"]), environ={}, source=keys) is keys
    assert store_credentials("bkt", parse_options(["public_bucket=1"]), environ={}, source=keys) is None
    assert isinstance(store_credentials("bkt", parse_options(["ram_role=R"]), environ={}, source=keys),
                      EcsRamRoleCredentials)
    with pytest.raises(ConfigError, match="use_session_token"):
        store_credentials("bkt", parse_options(["use_session_token"]), environ={}, source=keys)


def test_timeouts_retries_and_never_expiring_caches_come_from_options():
    options = parse_options([])
    assert (options.connect_timeout, options.readwrite_timeout, options.retries) == (300, 120, 5)  # ossfs's
    assert parse_options(["stat_cache_expire=-1"]).stat_cache_never_expires
    assert parse_options(["nomultipart"]).multipart_threshold_bytes == math.inf
    assert parse_options(["multipart_threshold=25"]).multipart_threshold_bytes == 25 << 20
    assert parse_options(["multipart_size=12"]).multipart_threshold_bytes == 12 << 20


# -- log lines ----------------------------------------------------------------------------------------------


def test_log_format_follows_no_time_stamp_msg_and_instance_name():
    assert log_format() == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    assert log_format(timestamps=False, instance="web-1") == "[web-1] %(levelname)s %(name)s: %(message)s"
    assert log_format(instance="50%") == "%(asctime)s [50%%] %(levelname)s %(name)s: %(message)s"


# -- canned ACLs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, bucket_acl, object_acl, allowed", [
    ("GetObject", "private", None, False),
    ("GetObject", "public-read", None, True),
    ("GetObject", "public-read", "private", False),
    ("GetObject", "private", "public-read", True),
    ("ListObjectsV2", "public-read", None, True),
    ("PutObject", "public-read", None, False),
    ("PutObject", "public-read-write", None, True),
    ("PutObject", "private", "public-read-write", True),
    ("DeleteMultipleObjects", "public-read-write", None, True),
    ("PutBucketAcl", "public-read-write", None, False),
    ("GetBucketInfo", "public-read-write", None, False),
])
def test_what_canned_acls_grant_to_everyone(op, bucket_acl, object_acl, allowed):
    assert anonymous_allowed(op, bucket_acl, lambda key: object_acl, "k") is allowed


def test_default_object_acl_defers_to_the_bucket():
    assert effective_acl("public-read", "default") == "public-read"
    assert effective_acl("public-read", "private") == "private"


def test_open_store_maps_timeouts_retries_and_transport(tmp_path):
    from ossmount.storeconfig import open_store

    passwd = tmp_path / "passwd"
    passwd.write_text("AK:SK\n")
    passwd.chmod(0o600)
    options = parse_options([f"passwd_file={passwd}", "url=http://127.0.0.1:9", "connect_timeout=7",
                             "readwrite_timeout=9.5", "retries=4", "list_object_max_keys=50",
                             "servicepath=/oss", "nocopyapi"])
    store = open_store("bkt", options, environ={})
    assert (store.timeouts.connect, store.timeouts.read) == (7.0, 9.5)
    assert store.retry.max_attempts == 5 and store.list_max_keys == 50  # retries are retries: 4 + the first attempt
    assert store.retry.deadline == store.operation_deadline == 5 * 9.5
    assert not store.copy_policy.copy_api
    default = open_store("bkt", parse_options([f"passwd_file={passwd}", "url=http://127.0.0.1:9"]), environ={})
    assert (default.timeouts.connect, default.timeouts.read) == (300.0, 120.0)
    assert default.retry.max_attempts == 6 and default.retry.deadline == 720.0
    quick = open_store("bkt", options, environ={}, connect_timeout=3.0, timeout=8.0)  # ossmount check's
    assert (quick.timeouts.connect, quick.timeouts.read) == (3.0, 8.0)
    once = open_store("bkt", parse_options([f"passwd_file={passwd}", "url=http://127.0.0.1:9", "retries=0"]),
                      environ={})
    assert once.retry.max_attempts == 1
