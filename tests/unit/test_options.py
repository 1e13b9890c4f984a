"""ossmount.options: argv and -o parsing, validation, defaults, fuse options."""

from __future__ import annotations

import dataclasses
import logging

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
    ("dbglevel=info", "dbglevel", "info"),
    ("dbglevel=DEBUG", "dbglevel", "debug"),
    ("dbglevel=warning", "dbglevel", "warn"),
    ("passwd_file=/etc/passwd-ossfs", "passwd_file", "/etc/passwd-ossfs"),
    ("logfile=/var/log/ossmount.log", "log_file", "/var/log/ossmount.log"),
    ("relatime", "atime", "relatime"),
    ("noexec", "noexec", True),
    ("nosuid", "nosuid", True),
    ("nodev", "nodev", True),
]


@pytest.mark.parametrize("item, field, expected", OPTION_CASES)
def test_each_option_sets_its_field(item, field, expected):
    assert getattr(parse_options([item]), field) == expected


def test_every_spec_is_covered_by_a_case():
    covered = {item.partition("=")[0] for item, _, _ in OPTION_CASES}
    missing = {spec.name for spec in OPTION_SPECS} - covered - {"sigv4", "noatime", "atime", "strictatime", "exec"}
    assert not missing


MALFORMED = [
    ("uid=abc", "uid"),
    ("uid=-1", "uid"),
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


@pytest.mark.parametrize("name", sorted(NOOP_OPTIONS) + sorted(MOUNT_GENERIC_OPTIONS))
def test_documented_noop_options_are_accepted_and_recorded(name):
    for item in (name, f"{name}=x"):
        opts = parse_options([item])
        assert dataclasses.replace(opts, ignored=()) == MountOptions()
        assert opts.ignored == (name,)


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
    names = {name.rstrip("=") for name, _, _ in rows}
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
