"""ossmount.options: argv and -o parsing, validation, defaults, fuse options."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ossmount.errors import EXIT_USAGE, UsageError
from ossmount.options import (
    DEFAULT_URL,
    MOUNT_GENERIC_OPTIONS,
    NOOP_OPTIONS,
    OPTION_SPECS,
    MountOptions,
    describe_options,
    format_options_help,
    normalize_url,
    parse_bucket_spec,
    parse_check_args,
    parse_mount_args,
    parse_options,
    split_option_string,
)


def test_defaults_are_ossfs_defaults():
    opts = parse_options([])
    assert opts == MountOptions()
    assert opts.url == DEFAULT_URL
    assert (opts.uid, opts.gid, opts.umask, opts.mp_umask) == (None, None, None, 0)
    assert opts.list_objects_v2 and opts.complement_stat
    assert not (opts.allow_other or opts.read_only or opts.enable_noobj_cache or opts.nonempty or opts.sigv4)
    assert opts.max_stat_cache_size == 100_000
    assert opts.stat_cache_expire == 900
    assert opts.mime == "/etc/mime.types" and not opts.mime_explicit
    assert opts.multipart_size == 10 and opts.multipart_size_bytes == 10 * 1024 * 1024
    assert opts.parallel_count == 5
    assert opts.dbglevel == "crit"
    assert opts.passwd_file is None


OPTION_CASES = [
    ("use_cache=/var/cache/oss", "use_cache", "/var/cache/oss"),
    ("del_cache", "del_cache", True),
    ("ensure_diskfree=10", "ensure_diskfree", 10),
    ("free_space_mb=100", "ensure_diskfree", 100),
    ("max_cache_size=1024", "max_cache_size", 1024),
    ("url=http://127.0.0.1:9000", "url", "http://127.0.0.1:9000"),
    ("url=https://oss-cn-beijing.aliyuncs.com/", "url", "https://oss-cn-beijing.aliyuncs.com"),
    ("url=oss-cn-beijing-internal.aliyuncs.com", "url", "http://oss-cn-beijing-internal.aliyuncs.com"),
    ("url=oss-cn-beijing.aliyuncs.com", "url", "https://oss-cn-beijing.aliyuncs.com"),
    ("url=HTTP://LocalHost:80", "url", "http://localhost:80"),
    ("url=http://[::1]:9000", "url", "http://[::1]:9000"),
    ("uid=1000", "uid", 1000),
    ("gid=0", "gid", 0),
    ("umask=022", "umask", 0o022),
    ("umask=0133", "umask", 0o133),
    ("umask=0", "umask", 0),
    ("mp_umask=007", "mp_umask", 0o007),
    ("allow_other", "allow_other", True),
    ("ro", "read_only", True),
    ("rw", "read_only", False),
    ("listobjectsv1", "list_objects_v2", False),
    ("listobjectsv2", "list_objects_v2", True),
    ("complement_stat", "complement_stat", True),
    ("nocomplement_stat", "complement_stat", False),
    ("max_stat_cache_size=0", "max_stat_cache_size", 0),
    ("max_stat_cache_size=5000", "max_stat_cache_size", 5000),
    ("stat_cache_expire=60", "stat_cache_expire", 60.0),
    ("stat_cache_expire=0.5", "stat_cache_expire", 0.5),
    ("enable_noobj_cache", "enable_noobj_cache", True),
    ("readdir_optimize", "readdir_optimize", True),
    ("mime=/tmp/m.types", "mime", "/tmp/m.types"),
    ("multipart_size=1", "multipart_size", 1),
    ("multipart_size=5120", "multipart_size", 5120),
    ("parallel_count=16", "parallel_count", 16),
    ("region=cn-shanghai", "region", "cn-shanghai"),
    ("nonempty", "nonempty", True),
    ("dead_mount=fail", "dead_mount", "fail"),
    ("dead_mount=remount", "dead_mount", "remount"),
    ("dbglevel=info", "dbglevel", "info"),
    ("dbglevel=DEBUG", "dbglevel", "debug"),
    ("dbglevel=warning", "dbglevel", "warn"),
    ("passwd_file=/etc/passwd-ossfs", "passwd_file", "/etc/passwd-ossfs"),
    ("logfile=/var/log/ossmount.log", "log_file", "/var/log/ossmount.log"),
    ("relatime", "atime", "relatime"),
    ("noexec", "noexec", True),
    ("nosuid", "nosuid", True),
    ("nodev", "nodev", True),
    # ossfs 1.91.10 options with a meaning (issue 7)
    ("host=http://127.0.0.1:9000", "url", "http://127.0.0.1:9000"),
    ("servicepath=/oss/", "servicepath", "/oss"),
    ("servicepath=/", "servicepath", ""),
    ("bucket=bkt:/a/b", "bucket", "bkt:/a/b"),
    ("use_path_request_style", "path_style", True),
    ("ram_role=EcsRole-1", "ram_role", "EcsRole-1"),
    ("ram_role", "ram_role", "auto"),
    ("use_session_token", "use_session_token", True),
    ("public_bucket=1", "public_bucket", True),
    ("public_bucket=0", "public_bucket", False),
    ("sigv1", "sigv4", False),
    ("endpoint=cn-beijing", "region", "cn-beijing"),
    ("endpoint=oss-cn-shanghai-internal.aliyuncs.com", "region", "cn-shanghai"),
    ("enable_unsigned_payload", "enable_unsigned_payload", True),
    ("no_check_certificate", "no_check_certificate", True),
    ("ca_bundle=/etc/ssl/private-ca.pem", "ca_bundle", "/etc/ssl/private-ca.pem"),
    ("ssl_verify_hostname=0", "ssl_verify_hostname", "0"),
    ("connect_timeout=300", "connect_timeout", 300.0),
    ("readwrite_timeout=2.5", "readwrite_timeout", 2.5),
    ("retries=3", "retries", 3),
    ("requester_pays", "requester_pays", True),
    ("noua", "user_agent", False),
    ("instance_name=web-1", "instance_name", "web-1"),
    ("list_object_max_keys=1000", "list_object_max_keys", 1000),
    ("list_object_max_keys=2", "list_object_max_keys", 2),
    ("stat_cache_expire=-1", "stat_cache_expire", float("inf")),
    ("disable_noobj_cache", "enable_noobj_cache", False),
    ("attr_timeout=0", "attr_timeout", 0.0),
    ("entry_timeout=1.5", "entry_timeout", 1.5),
    ("negative_timeout=30", "negative_timeout", 30.0),
    ("readdir_check_size=48", "readdir_check_size", 48),
    ("stat_cache_dir=/srv/cache", "stat_cache_dir", "/srv/cache"),
    ("stat_cache_dir=none", "stat_cache_dir", "none"),
    ("use_wtf8", "use_wtf8", True),
    ("multipart_threshold=25", "multipart_threshold", 25),
    ("nomultipart", "nomultipart", True),
    ("parallel_upload=8", "parallel_count", 8),
    ("tmpdir=/var/tmp", "tmpdir", "/var/tmp"),
    ("default_acl=private", "default_acl", "private"),
    ("default_acl=public-read-write", "default_acl", "public-read-write"),
    ("storage_class=ia", "storage_class", "IA"),
    ("storage_class=DeepColdArchive", "storage_class", "DeepColdArchive"),
    ("use_sse", "use_sse", "AES256"),
    ("use_sse=1", "use_sse", "AES256"),
    ("use_sse=kms", "use_sse", "KMS"),
    ("use_sse=kmsid:key-1", "use_sse", "KMS:key-1"),
    ("use_sse=k:key-2", "use_sse", "KMS:key-2"),
    ("use_sse=kmsid", "use_sse", "KMS:$OSSSSEKMSID"),
    ("ahbe_conf=/etc/ahbe.conf", "ahbe_conf", "/etc/ahbe.conf"),
    ("upload_traffic_limit=819200", "upload_traffic_limit", 819200),
    ("download_traffic_limit=838860800", "download_traffic_limit", 838860800),
    ("upload_traffic_limit=0", "upload_traffic_limit", 0),
    ("nocopyapi", "nocopyapi", True),
    ("norenameapi", "norenameapi", True),
    ("noshallowcopyapi", "noshallowcopyapi", True),
    ("nomixupload", "nomixupload", True),
    ("singlepart_copy_limit=10", "singlepart_copy_limit", 10),
    ("multipart_copy_size=64", "multipart_copy_size", 64),
    ("no_time_stamp_msg", "no_time_stamp_msg", True),
    ("dbglevel=silent", "dbglevel", "crit"),
    ("symlink_in_meta", "symlink_in_meta", True),
    ("open_check_window=0", "open_check_window", 0.0),
    ("open_check_window=2.5", "open_check_window", 2.5),
    ("metrics_listen=127.0.0.1:9810", "metrics_listen", "127.0.0.1:9810"),
    ("metrics_listen=[::1]:9810", "metrics_listen", "[::1]:9810"),
    ("stale_upload_hours=0", "stale_upload_hours", 0.0),
    ("stale_upload_hours=1.5", "stale_upload_hours", 1.5),
    ("stale_upload_hours=-1", "stale_upload_hours", float("inf")),
]


@pytest.mark.parametrize("item, field, expected", OPTION_CASES)
def test_each_option_sets_its_field(item, field, expected):
    assert getattr(parse_options([item]), field) == expected


def test_every_spec_is_covered_by_a_case():
    covered = {item.partition("=")[0] for item, _, _ in OPTION_CASES} | {item.partition("=")[0] for item in
                                                                          NOOP_SAMPLES}
    missing = {spec.name for spec in OPTION_SPECS} - covered - {"sigv4", "noatime", "atime", "strictatime", "exec"}
    assert not missing


def test_every_ossfs_option_of_the_reference_is_accepted():
    """Each option named in ossfs-options.md (ossfs 1.91.10) parses: the issue's first acceptance item."""
    reference = ["sigv1", "sigv4", "region=cn-hangzhou", "public_bucket=1", "default_acl=private",
                 "storage_class=IA", "use_sse", "use_sse=kmsid:ID", "requester_pays", "ahbe_conf=/f",
                 "upload_traffic_limit=819200", "download_traffic_limit=819200", "multipart_threshold=5",
                 "nomultipart", "list_object_max_keys=1000", "readdir_check_size=0", "symlink_in_meta",
                 "disable_noobj_cache", "stat_cache_expire=-1", "attr_timeout=1", "entry_timeout=1",
                 "negative_timeout=1", "tmpdir=/tmp", "noua", "no_check_certificate", "ssl_verify_hostname=0",
                 "enable_unsigned_payload", "use_session_token", "ram_role=auto", "ram_role=Role", "nocopyapi",
                 "norenameapi", "noshallowcopyapi", "use_wtf8", "host=https://h.example", "servicepath=/p",
                 "endpoint=cn-hangzhou", "bucket=bkt", "logfile=/tmp/l", "no_time_stamp_msg",
                 "instance_name=i", "free_space_ratio=10", "ensure_diskfree=10", "fake_diskfree=200",
                 "use_cache=/tmp/c", "del_cache", "check_cache_dir_exist", "max_dirty_data=50", "nosscache",
                 "nodnscache", "cipher_suites=ECDHE-RSA-AES128-GCM-SHA256", "cloudbox_id=cb-1", "credlib=/lib.so",
                 "credlib_opts=x", "curldbg", "curldbg=body", "direct_read", "direct_read_chunk_size=4",
                 "direct_read_prefetch_chunks=32", "direct_read_prefetch_limit=1024",
                 "direct_read_prefetch_thread=64", "direct_read_backward_chunks=1",
                 "direct_read_local_file_cache_size_mb=2048", "set_check_cache_sigusr1",
                 "set_check_cache_sigusr1=/tmp/c", "skip_clean_statcache_on_ro_flush", "simulate_mtime_ns_with_crc64",
                 "fd_page_size=4096", "parallel_upload=5", "use_rrs", "load_sse_c=/k", "multireq_max=20",
                 "singlepart_copy_limit=512", "multipart_copy_size=512", "nomixupload", "notsup_compat_dir",
                 "noxmlns", "enable_content_md5", "stat_cache_interval_expire=900", "connect_timeout=300",
                 "readwrite_timeout=120", "retries=5"]
    unknown = []
    for item in reference:
        if item == "symlink_in_meta":
            continue  # issue 6's option (consistency branch)
        try:
            parse_options([item])
        except UsageError as exc:
            unknown.append(f"{item}: {exc}")
    assert not unknown


MALFORMED = [
    ("uid=abc", "uid"),
    ("uid=-1", "uid"),
    ("metrics_listen=9810", "metrics_listen"),
    ("metrics_listen=localhost:0", "metrics_listen"),
    ("metrics_listen=:80", "metrics_listen"),
    ("uid=4294967295", "uid"),
    ("gid=1.5", "gid"),
    ("umask=999", "umask"),
    ("umask=0o22", "umask"),
    ("umask=1000", "umask"),
    ("mp_umask=x", "mp_umask"),
    ("max_stat_cache_size=-1", "max_stat_cache_size"),
    ("stat_cache_expire=soon", "stat_cache_expire"),
    ("stat_cache_expire=-5", "stat_cache_expire"),
    ("stat_cache_expire=nan", "stat_cache_expire"),
    ("multipart_size=0", "multipart_size"),
    ("multipart_size=5121", "multipart_size"),
    ("parallel_count=0", "parallel_count"),
    ("dbglevel=loud", "dbglevel"),
    ("url=ftp://example.com", "url"),
    ("url=http://example.com/path", "url"),
    ("url=http://host:0", "url"),
    ("url=http://host:99999", "url"),
    ("url=http://bad_host", "url"),
    ("url=http://user@host", "url"),
    ("region=CN Hangzhou", "region"),
    ("host=ftp://x", "host"),
    ("servicepath=oss", "servicepath"),
    ("bucket=Bad_Bucket", "bucket"),
    ("ram_role=bad role", "ram_role"),
    ("public_bucket=yes", "public_bucket"),
    ("endpoint=Mars", "endpoint"),
    ("ssl_verify_hostname=1", "ssl_verify_hostname"),
    ("connect_timeout=0", "connect_timeout"),
    ("readwrite_timeout=-3", "readwrite_timeout"),
    ("retries=-1", "retries"),
    ("retries=101", "retries"),
    ("instance_name=a\tb", "instance_name"),
    ("list_object_max_keys=0", "list_object_max_keys"),
    ("list_object_max_keys=1001", "list_object_max_keys"),
    ("stat_cache_expire=-2", "stat_cache_expire"),
    ("attr_timeout=-1", "attr_timeout"),
    ("negative_timeout=x", "negative_timeout"),
    ("readdir_check_size=-1", "readdir_check_size"),
    ("multipart_threshold=4", "multipart_threshold"),
    ("multipart_threshold=5121", "multipart_threshold"),
    ("default_acl=authenticated-read", "default_acl"),
    ("storage_class=Glacier", "storage_class"),
    ("use_sse=custom:/k", "use_sse"),
    ("use_sse=kmsid:", "use_sse"),
    ("use_sse=0", "use_sse"),
    ("upload_traffic_limit=819199", "upload_traffic_limit"),
    ("download_traffic_limit=838860801", "download_traffic_limit"),
    ("upload_traffic_limit=1M", "upload_traffic_limit"),
    ("singlepart_copy_limit=0", "singlepart_copy_limit"),
    ("multipart_copy_size=4", "multipart_copy_size"),
    ("parallel_upload=0", "parallel_upload"),
    ("free_space_ratio=101", "free_space_ratio"),
    ("ensure_diskfree=lots", "ensure_diskfree"),
    ("fake_diskfree=-1", "fake_diskfree"),
    ("max_dirty_data=49", "max_dirty_data"),
    ("curldbg=verbose", "curldbg"),
    ("use_xattr=2", "use_xattr"),
    ("direct_read_chunk_size=33", "direct_read_chunk_size"),
    ("direct_read_prefetch_limit=127", "direct_read_prefetch_limit"),
    ("multireq_max=0", "multireq_max"),
    ("stat_cache_interval_expire=soon", "stat_cache_interval_expire"),
    ("use_rrs=2", "use_rrs"),
    ("stale_upload_hours=-2", "stale_upload_hours"),
    ("stale_upload_hours=a day", "stale_upload_hours"),
]


@pytest.mark.parametrize("item, name", MALFORMED)
def test_malformed_value_names_option_and_value(item, name):
    with pytest.raises(UsageError) as info:
        parse_options([item])
    message = str(info.value)
    assert f"'{name}'" in message
    assert repr(item.partition("=")[2]) in message
    assert "expected" in message
    assert info.value.exit_code == EXIT_USAGE


def test_bucket_domain_as_url_is_refused_with_the_endpoint_to_use():
    with pytest.raises(UsageError, match=r"url=https://oss-cn-hangzhou.aliyuncs.com"):
        parse_options(["url=mybucket.oss-cn-hangzhou.aliyuncs.com"])


@pytest.mark.parametrize("item", ["foo", "foo=bar", "allowother", "umask_dir=1"])
def test_unknown_option_is_an_error_naming_it(item):
    with pytest.raises(UsageError, match=rf"unknown option '{item.partition('=')[0]}' \(see `ossmount --help`"):
        parse_options([item])


@pytest.mark.parametrize("item", ["allow_other=1", "ro=yes", "nonempty=true"])
def test_flag_with_a_value_is_an_error(item):
    with pytest.raises(UsageError, match="takes no value"):
        parse_options([item])


@pytest.mark.parametrize("item", ["uid", "umask=", "url", "passwd_file="])
def test_value_option_without_value_is_an_error(item):
    with pytest.raises(UsageError, match="needs a value"):
        parse_options([item])


# One well-formed use of each option accepted without effect.
NOOP_SAMPLES = [
    "check_cache_dir_exist", "free_space_ratio=1", "fake_diskfree=200", "max_dirty_data=50",
    "max_dirty_data=-1", "direct_read", "direct_read_chunk_size=4", "direct_read_prefetch_chunks=32",
    "direct_read_prefetch_limit=1024", "direct_read_prefetch_thread=64", "direct_read_backward_chunks=1",
    "direct_read_local_file_cache_size_mb=2048", "enable_content_md5", "noxmlns", "multireq_max=20", "curldbg",
    "curldbg=body", "notsup_compat_dir", "use_xattr", "use_xattr=0", "use_xattr=1", "stat_cache_interval_expire=1",
    "nosscache", "nodnscache", "cipher_suites=AES128-SHA", "cloudbox_id=cb-1", "credlib=/usr/lib/libcred.so",
    "credlib_opts=role", "set_check_cache_sigusr1", "set_check_cache_sigusr1=/tmp/check.log",
    "skip_clean_statcache_on_ro_flush", "simulate_mtime_ns_with_crc64", "fd_page_size=1048576", "use_rrs",
    "use_rrs=0", "load_sse_c=/etc/keys", "big_writes", "kernel_cache", "auto_cache", "allow_root",
    "max_background=64", "congestion_threshold=48",
    "default_permissions", "dev", "suid",
]


@pytest.mark.parametrize("item", NOOP_SAMPLES + sorted(MOUNT_GENERIC_OPTIONS) +
                         [f"{name}=x" for name in sorted(MOUNT_GENERIC_OPTIONS)])
def test_documented_noop_options_are_accepted_and_recorded(item):
    opts = parse_options([item])
    assert dataclasses.replace(opts, ignored=()) == MountOptions()
    assert opts.ignored == (item.partition("=")[0],)


def test_every_noop_option_has_a_sample():
    assert set(NOOP_OPTIONS) == {item.partition("=")[0] for item in NOOP_SAMPLES}


def test_block_cache_options():
    """use_cache=DIR with its bounds (ossfs names; free_space_mb is ensure_diskfree's other name, in MiB)."""
    opts = parse_options(["use_cache=/var/cache/oss", "del_cache", "max_cache_size=1024", "free_space_mb=100"])
    assert (opts.use_cache, opts.del_cache, opts.max_cache_size, opts.ensure_diskfree) == (
        "/var/cache/oss", True, 1024, 100)
    assert parse_options(["ensure_diskfree=10"]).ensure_diskfree == 10
    assert not parse_options(["use_cache="]).use_cache  # empty: no cache, as in ossfs
    assert opts.ignored == ()
    with pytest.raises(UsageError):
        parse_options(["max_cache_size=-1"])


@pytest.mark.parametrize("item", ["del_cache=1", "nosscache=yes", "use_cache", "ensure_diskfree"])
def test_noop_options_are_validated_like_the_others(item):
    with pytest.raises(UsageError, match=rf"option '{item.partition('=')[0]}'"):
        parse_options([item])


@pytest.mark.parametrize("item", ["x-systemd.automount", "x-systemd.requires=network-online.target",
                                  "x-mount.mkdir", "comment=cloudconfig"])
def test_systemd_and_comment_options_are_accepted(item):
    assert parse_options([item]).ignored


def test_last_occurrence_wins_and_ro_rw_toggle():
    assert parse_options(["uid=1", "uid=2"]).uid == 2
    assert parse_options(["ro", "rw"]).read_only is False
    assert parse_options(["rw", "ro"]).read_only is True
    assert parse_options(["listobjectsv1", "listobjectsv2"]).list_objects_v2 is True


@pytest.mark.parametrize("level, expected", [
    ("crit", logging.CRITICAL), ("err", logging.ERROR), ("warn", logging.WARNING), ("info", logging.INFO),
    ("debug", logging.DEBUG),
])
def test_dbglevel_maps_to_logging_level(level, expected):
    assert parse_options([f"dbglevel={level}"]).log_level == expected


def test_mime_option_marks_the_file_explicit():
    assert parse_options(["mime=/x"]).mime_explicit


def test_sigv4_takes_region_from_option_or_url():
    assert parse_options(["sigv4"]).effective_region == "cn-hangzhou"
    assert parse_options(["sigv4", "url=oss-cn-beijing-internal.aliyuncs.com"]).effective_region == "cn-beijing"
    assert parse_options(["sigv4", "region=eu-central-1", "url=http://127.0.0.1:1"]).effective_region == "eu-central-1"
    assert parse_options(["sigv4"]).auth_version == "v4"
    assert parse_options([]).auth_version == "v1"
    with pytest.raises(UsageError, match="needs a region"):
        parse_options(["sigv4", "url=http://127.0.0.1:9000"])
    with pytest.raises(UsageError, match="needs a region"):
        parse_options(["sigv4", "url=oss-accelerate.aliyuncs.com"])
    assert parse_options(["url=oss-accelerate.aliyuncs.com"]).effective_region is None


def test_mount_options_validate_on_direct_construction():
    with pytest.raises(UsageError):
        MountOptions(umask=0o1000)
    with pytest.raises(UsageError):
        MountOptions(url="gopher://x")
    assert MountOptions(url="127.0.0.1:80").url == "https://127.0.0.1:80"
    assert MountOptions().with_changes(uid=7).uid == 7
    with pytest.raises(UsageError):
        MountOptions().with_changes(parallel_count=0)


def test_fuse_options():
    base = parse_options([]).fuse_options
    assert base == {"subtype=ossmount", "default_permissions", "noatime", "rw"}
    opts = parse_options(["allow_other", "ro", "noexec", "nosuid", "nodev", "relatime"]).fuse_options
    assert opts == {"subtype=ossmount", "default_permissions", "allow_other", "ro", "noexec", "nosuid",
                    "nodev", "relatime"}


@pytest.mark.parametrize("text, expected", [
    ("ro", ["ro"]),
    ("ro,uid=1", ["ro", "uid=1"]),
    ("ro,,uid=1,", ["ro", "uid=1"]),
    (" ro , uid=1", ["ro", "uid=1"]),
    ("", []),
])
def test_split_option_string(text, expected):
    assert split_option_string(text) == expected


BUCKET_SPECS = [
    ("bkt", ("bkt", "")),
    ("bkt:", ("bkt", "")),
    ("bkt:/", ("bkt", "")),
    ("bkt:/a", ("bkt", "a/")),
    ("bkt:/a/b", ("bkt", "a/b/")),
    ("bkt:/a/b/", ("bkt", "a/b/")),
    ("bkt:a//b", ("bkt", "a/b/")),
    ("my-bucket-01:/data/train", ("my-bucket-01", "data/train/")),
    ("a" * 63, ("a" * 63, "")),
]


@pytest.mark.parametrize("spec, expected", BUCKET_SPECS)
def test_parse_bucket_spec(spec, expected):
    assert parse_bucket_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "ab", "a" * 64, "Bucket", "bkt_1", "-bkt", "bkt-", "bk.t", "bkt:/a/../b",
                                  "bkt:/./a"])
def test_parse_bucket_spec_rejects(spec):
    with pytest.raises(UsageError):
        parse_bucket_spec(spec)


@given(st.lists(st.text(alphabet="abc-_. ", min_size=0, max_size=5), max_size=5))
def test_prefix_is_normalised(parts):
    spec = "bkt:/" + "/".join(parts)
    try:
        bucket, prefix = parse_bucket_spec(spec)
    except UsageError:
        assert any(p in (".", "..") for p in spec[4:].split("/"))
        return
    assert bucket == "bkt"
    assert prefix == "" or (prefix.endswith("/") and not prefix.startswith("/") and "//" not in prefix)


ARGV_CASES = [
    (["bkt:/p", "/mnt"], dict(bucket="bkt", prefix="p/", mountpoint="/mnt", foreground=False, debug=False)),
    (["-f", "bkt", "/mnt", "-d"], dict(bucket="bkt", mountpoint="/mnt", foreground=True, debug=True)),
    (["-o", "ro", "bkt", "/mnt"], dict(mountpoint="/mnt")),
    (["bkt", "-oro,uid=3", "/mnt"], dict(mountpoint="/mnt")),
    (["bkt", "/mnt", "--options=ro"], dict(mountpoint="/mnt")),
    (["--", "bkt", "-mnt"], dict(mountpoint="-mnt")),
    (["bkt", "/mnt", "--ready-fd", "5"], dict(ready_fd=5)),
    (["bkt", "/mnt", "--ready-fd=7"], dict(ready_fd=7)),
]


@pytest.mark.parametrize("argv, expected", ARGV_CASES)
def test_parse_mount_args(argv, expected):
    args = parse_mount_args(argv)
    for name, value in expected.items():
        assert getattr(args, name) == value


def test_repeated_o_merge_and_glued_form():
    args = parse_mount_args(["bkt", "/mnt", "-o", "allow_other", "-omp_umask=007", "-o", "uid=5,gid=6"])
    assert (args.options.allow_other, args.options.mp_umask, args.options.uid, args.options.gid) == (True, 7, 5, 6)


def test_issue_example_allow_other_mp_umask():
    args = parse_mount_args(["bkt:/x", "/mnt", "-o", "allow_other", "-o", "mp_umask=007"])
    assert args.options.allow_other and args.options.mp_umask == 0o007
    assert args.fuse_options == {"subtype=ossmount", "default_permissions", "noatime", "rw", "allow_other",
                                 "fsname=bkt:/x"}


def test_fsname_names_bucket_and_prefix():
    assert parse_mount_args(["bkt", "/m"]).fsname == "bkt:/"
    assert parse_mount_args(["bkt:/a/b", "/m"]).fsname == "bkt:/a/b"
    # libfuse splits options on commas and pyfuse3 passes them as ASCII: both are percent-encoded.
    assert parse_mount_args(["bkt:/a,b", "/m"]).fsname == "bkt:/a%2Cb"
    assert parse_mount_args(["bkt:/中文 x%", "/m"]).fsname == "bkt:/%E4%B8%AD%E6%96%87 x%25"


@pytest.mark.parametrize("argv, match", [
    ([], "expected BUCKET"),
    (["bkt"], "expected BUCKET"),
    (["bkt", "/a", "/b"], "expected BUCKET"),
    (["bkt", "/mnt", "-o"], "needs an argument"),
    (["bkt", "/mnt", "-x"], "unknown flag '-x'"),
    (["bkt", "/mnt", "--ready-fd", "x"], "ready-fd"),
    (["Bad_Bucket", "/mnt"], "invalid bucket name"),
    (["bkt", "/mnt", "-o", "bogus"], "unknown option 'bogus'"),
])
def test_parse_mount_args_errors(argv, match):
    with pytest.raises(UsageError, match=match):
        parse_mount_args(argv)


def test_help_without_positionals():
    args = parse_mount_args(["-h"])
    assert args.show_help and args.bucket == "" and args.mountpoint == ""
    assert parse_mount_args(["bkt", "/m", "--help"]).show_help


def test_parse_check_args():
    args = parse_check_args(["bkt:/a", "-o", "url=http://127.0.0.1:1", "-d"])
    assert (args.bucket, args.prefix, args.options.url, args.debug) == ("bkt", "a/", "http://127.0.0.1:1", True)
    assert parse_check_args(["--help"]).show_help
    with pytest.raises(UsageError, match="expected BUCKET"):
        parse_check_args(["bkt", "/mnt"])
    with pytest.raises(UsageError, match="unknown flag '-f'"):
        parse_check_args(["bkt", "-f"])


def test_passwd_file_is_a_path_only():
    opts = parse_options(["passwd_file=/secret/file"])
    assert opts.passwd_file == "/secret/file"


def test_describe_options_covers_every_option_with_a_meaning():
    rows = describe_options()
    names = {re.split(r"[=\[]", name, maxsplit=1)[0] for name, _, _ in rows}
    assert {spec.name for spec in OPTION_SPECS} <= names
    assert set(NOOP_OPTIONS) <= names and set(MOUNT_GENERIC_OPTIONS) <= names
    assert all(meaning for _, _, meaning in rows)
    text = format_options_help()
    for spec in OPTION_SPECS:
        assert spec.name in text


@given(st.integers(0, 0o777))
def test_umask_round_trips_through_octal_text(mask):
    assert parse_options([f"umask={mask:o}"]).umask == mask
    assert parse_options([f"mp_umask={mask:04o}"]).mp_umask == mask


@given(st.text(max_size=30))
def test_parse_options_never_raises_anything_but_usage_error(item):
    try:
        parse_options([item])
    except UsageError:
        pass


@pytest.mark.parametrize("url", ["http://a", "https://a.b.c:65535", "http://10.0.0.1", "https://x-y.z"])
def test_normalize_url_is_idempotent(url):
    assert normalize_url(normalize_url(url)) == normalize_url(url)


@pytest.mark.parametrize("item", ["uid=²", "parallel_count=٣", "url=http://h:²", "umask=²"])
def test_non_ascii_digits_are_usage_errors(item):
    with pytest.raises(UsageError):
        parse_options([item])


def test_markdown_table_has_one_row_per_option():
    from ossmount.options import format_options_markdown

    table = format_options_markdown().splitlines()
    assert len(table) == 2 + len(describe_options())
    assert all(line.count(" | ") == 2 and line.startswith("| ") and line.endswith(" |") for line in table[2:])


@pytest.mark.parametrize("item, expected", [
    ("upload_traffic_limit=5", "0 (no limit) or 819200..838860800 (bit/s)"),
    ("list_object_max_keys=5000", "an integer 1..1000"),
    ("use_sse=custom", "use_sse, use_sse=1, use_sse=kms, use_sse=kmsid:KEY_ID"),
])
def test_bad_value_is_one_line_with_the_range_and_exit_2(tmp_path, item, expected):
    import subprocess
    import sys

    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run([sys.executable, "-m", "ossmount", "bkt", str(mountpoint), "-o", item],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"option '{item.partition('=')[0]}'" in lines[0] and expected in lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["/mnt", "-o", "bucket=bkt:/a/b"], ("bkt", "a/b/", "/mnt")),
    (["bkt:/a/b", "/mnt", "-o", "bucket=bkt:/a/b"], ("bkt", "a/b/", "/mnt")),
    (["ossfs", "/mnt", "-o", "bucket=bkt"], ("bkt", "", "/mnt")),
])
def test_bucket_option_replaces_the_first_argument(argv, expected):
    args = parse_mount_args(argv)
    assert (args.bucket, args.prefix, args.mountpoint) == expected
    assert parse_check_args(["-o", "bucket=bkt:/x"]).prefix == "x/"


def test_bucket_given_twice_differently_is_refused():
    with pytest.raises(UsageError, match="the bucket is given twice"):
        parse_mount_args(["other", "/mnt", "-o", "bucket=bkt"])
    with pytest.raises(UsageError, match="expected BUCKET"):
        parse_mount_args(["/mnt"])


def test_ram_role_and_passwd_file_exclude_each_other():
    with pytest.raises(UsageError, match="'ram_role' and 'passwd_file' exclude each other"):
        parse_options(["ram_role=R", "passwd_file=/p"])
