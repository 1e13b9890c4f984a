"""ossmount.fs.attrs: object metadata ↔ stat, ossfs-compatible."""

from __future__ import annotations

import dataclasses
import stat
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ossmount.fs.attrs import (
    Attrs,
    EntryKind,
    Ownership,
    XattrFormatError,
    attrs_for_implicit_dir,
    attrs_for_object,
    attrs_for_root,
    classify_object,
    decode_xattrs,
    encode_xattrs,
    format_time,
    format_time_ns,
    meta_for_new_entry,
    meta_with_changes,
    meta_with_xattrs,
    parse_time_ns,
    symlink_object,
    symlink_target_from,
)
from ossmount.options import parse_options
from ossmount.store.types import ObjectInfo

MOUNT_UID, MOUNT_GID = 4242, 4343
LAST_MODIFIED = 1_700_000_000.0
FILE, DIR, LINK = EntryKind.FILE, EntryKind.DIR, EntryKind.SYMLINK


def own(*opts: str) -> Ownership:
    return Ownership.from_options(parse_options(list(opts)), MOUNT_UID, MOUNT_GID)


def info(key="a.txt", size=5, meta=None, content_type="text/plain", mtime=LAST_MODIFIED) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag="e", mtime=mtime, content_type=content_type, meta=meta or {})


# ---- classification --------------------------------------------------------------------------------

CLASSIFY_CASES = [
    # key, size, content type, meta, complement_stat, kind, warns
    ("a/b/", 0, "application/octet-stream", {}, True, DIR, False),
    ("a/b/", 0, "application/x-directory", {}, True, DIR, False),
    ("a/b/", 0, "httpd/unix-directory", {}, True, DIR, False),
    ("a/b/", 0, "application/octet-stream; charset=binary", {}, True, DIR, False),
    ("a/b/", 0, None, {}, True, DIR, False),
    # ossfs 1.91.10 with complement_stat: no mode on `name/` → a directory, whatever its type or size
    ("a/b/", 0, "text/plain", {}, True, DIR, False),
    ("a/b/", 0, "testtype", {}, True, DIR, False),
    ("a/b/", 7, "application/octet-stream", {}, True, DIR, False),
    ("a/b/", 5, "text/html", {"uid": "1"}, True, DIR, False),
    # ... and a stored mode names the type, whatever the key
    ("a/b/", 4, "text/plain", {"mode": str(stat.S_IFREG | 0o644)}, True, FILE, False),
    ("a/b/", 0, "application/x-directory", {"mode": str(stat.S_IFREG | 0o644)}, False, FILE, False),
    ("a/p", 0, "application/octet-stream", {"mode": str(stat.S_IFIFO | 0o644)}, True, EntryKind.FIFO, False),
    ("a/c", 0, "application/octet-stream", {"mode": str(stat.S_IFCHR | 0o600)}, True, EntryKind.CHAR_DEVICE,
     False),
    ("a/k", 0, "application/octet-stream", {"mode": str(stat.S_IFBLK | 0o600)}, True, EntryKind.BLOCK_DEVICE,
     False),
    ("a/s", 0, "application/octet-stream", {"mode": str(stat.S_IFSOCK | 0o755)}, True, EntryKind.SOCKET, False),
    # without complement_stat, the Content-Type rule and a warning
    ("a/b/", 0, "text/plain", {"mode": "493"}, False, FILE, True),
    ("a/b/", 7, "application/octet-stream", {"mode": "493"}, False, FILE, True),
    ("a/b/", 0, "application/octet-stream", {}, False, FILE, True),
    ("a/b/", 0, "application/octet-stream", {"mode": str(stat.S_IFDIR | 0o755)}, False, DIR, False),
    ("a/b/", 0, "application/octet-stream", {"mode": "493"}, False, DIR, False),
    ("a/b", 0, "application/octet-stream", {"mode": str(stat.S_IFDIR | 0o755)}, True, DIR, False),
    ("a/b", 3, "text/plain", {}, True, FILE, False),
    ("a/b", 0, "application/octet-stream", {}, True, FILE, False),
    ("a/b", 0, "application/x-directory", {}, True, FILE, False),
    ("a/l", 3, "application/octet-stream", {"mode": str(stat.S_IFLNK | 0o777)}, True, LINK, False),
    ("a/l", 3, "application/octet-stream", {"symlink-target": "x"}, True, LINK, False),
    ("a/l", 3, "application/octet-stream", {"mode": "garbage"}, True, FILE, False),
]


@pytest.mark.parametrize("key, size, ctype, meta, complement, kind, warns", CLASSIFY_CASES)
def test_classify_object(key, size, ctype, meta, complement, kind, warns):
    got, warning = classify_object(key, size, ctype, meta, complement_stat=complement)
    assert got is kind
    assert (warning is not None) == warns
    if warning:
        assert f"'{key}'" in warning and "\n" not in warning


def test_classify_warning_names_the_fix():
    _, warning = classify_object("d/", 0, "text/plain", {"mode": "493"}, complement_stat=False)
    assert "Content-Type text/plain" in warning and "application/x-directory" in warning
    _, warning = classify_object("d/", 9, "application/octet-stream", {"mode": "493"}, complement_stat=False)
    assert "size 9" in warning
    _, warning = classify_object("d/", 0, "application/octet-stream", {}, complement_stat=False)
    assert "complement_stat" in warning


# ---- modes: the examples verbatim --------------------------------------------------------------

def test_root_is_0700_owned_by_mounting_user():
    root = attrs_for_root(own())
    assert root.mode == stat.S_IFDIR | 0o700
    assert (root.uid, root.gid) == (MOUNT_UID, MOUNT_GID)


@pytest.mark.parametrize("opts, perm", [
    (["allow_other", "mp_umask=007"], 0o770),
    (["allow_other", "mp_umask=077"], 0o700),
    (["allow_other"], 0o777),
    (["allow_other", "mp_umask=022"], 0o755),
    (["mp_umask=000"], 0o700),
    (["umask=000"], 0o700),
])
def test_root_with_allow_other_and_mp_umask(opts, perm):
    assert attrs_for_root(own(*opts)).mode == stat.S_IFDIR | perm


def test_root_uid_gid_options_apply():
    root = attrs_for_root(own("uid=1000", "gid=1001"))
    assert (root.uid, root.gid) == (1000, 1001)


def test_foreign_file_is_0640_and_foreign_dir_0750():
    assert attrs_for_object(info(), FILE, own()).mode == stat.S_IFREG | 0o640
    assert attrs_for_object(info("d/", 0, content_type="application/octet-stream"), DIR, own()).mode == \
        stat.S_IFDIR | 0o750
    assert attrs_for_implicit_dir(own(), LAST_MODIFIED).mode == stat.S_IFDIR | 0o750


def test_umask_022_makes_foreign_files_0755():
    assert attrs_for_object(info(), FILE, own("umask=022")).mode == stat.S_IFREG | 0o755
    assert attrs_for_implicit_dir(own("umask=022"), 0).mode == stat.S_IFDIR | 0o755


def test_umask_133_with_stored_0777_shows_0644_and_stored_mode_without_umask():
    stored = {"mode": str(stat.S_IFREG | 0o777)}
    assert attrs_for_object(info(meta=stored), FILE, own("umask=133")).mode == stat.S_IFREG | 0o644
    assert attrs_for_object(info(meta=stored), FILE, own()).mode == stat.S_IFREG | 0o777


def test_stored_mode_keeps_special_bits_and_files_written_by_mount_are_0644():
    meta = meta_for_new_entry(FILE, 0o644, 0, 0, 1)
    assert attrs_for_object(info(meta=meta), FILE, own()).mode == stat.S_IFREG | 0o644
    sticky = {"mode": str(stat.S_IFDIR | 0o1777)}
    assert attrs_for_object(info("t/", 0, meta=sticky), DIR, own()).mode == stat.S_IFDIR | 0o1777


def test_stored_mode_type_bits_never_override_kind():
    meta = {"mode": str(stat.S_IFREG | 0o600)}
    assert attrs_for_object(info("d/", 0, meta=meta), DIR, own()).mode == stat.S_IFDIR | 0o600


def test_symlinks_are_0777():
    meta = {"mode": str(stat.S_IFLNK | 0o777), "symlink-target": "dest"}
    for ownership in (own(), own("umask=077")):
        assert attrs_for_object(info("l", 4, meta=meta), LINK, ownership).mode == stat.S_IFLNK | 0o777


@pytest.mark.parametrize("opts, meta, expected", [
    ([], {}, (MOUNT_UID, MOUNT_GID)),
    ([], {"uid": "1000", "gid": "1001"}, (1000, 1001)),
    ([], {"uid": "x", "gid": "-1"}, (MOUNT_UID, MOUNT_GID)),
    (["uid=7"], {"uid": "1000", "gid": "1001"}, (7, 1001)),
    (["uid=7", "gid=8"], {"uid": "1000", "gid": "1001"}, (7, 8)),
    (["gid=0"], {}, (MOUNT_UID, 0)),
])
def test_ownership(opts, meta, expected):
    got = attrs_for_object(info(meta=meta), FILE, own(*opts))
    assert (got.uid, got.gid) == expected


def test_implicit_dir_owner_follows_uid_option():
    attrs = attrs_for_implicit_dir(own("uid=5", "gid=6"), 10.5)
    assert (attrs.uid, attrs.gid, attrs.mtime_ns) == (5, 6, 10_500_000_000)


# ---- times ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("meta, mtime, ctime, atime", [
    ({}, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000),
    ({"mtime": "1600000000"}, 1_600_000_000_000_000_000, 1_600_000_000_000_000_000, 1_600_000_000_000_000_000),
    ({"mtime": "1600000000.5", "ctime": "1600000001", "atime": "1600000002.000000007"},
     1_600_000_000_500_000_000, 1_600_000_001_000_000_000, 1_600_000_002_000_000_007),
    ({"mtime": "garbage"}, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000),
])
def test_times_from_meta_else_last_modified(meta, mtime, ctime, atime):
    attrs = attrs_for_object(info(meta=meta), FILE, own())
    assert (attrs.mtime_ns, attrs.ctime_ns, attrs.atime_ns) == (mtime, ctime, atime)


@pytest.mark.parametrize("value, text", [
    (1_700_000_000, "1700000000"),
    (1_700_000_000.0, "1700000000"),
    (1_700_000_000.25, "1700000000.250000000"),
    (5, "5"),
    (0, "0"),
])
def test_format_time_as_s3fs(value, text):
    assert format_time(value) == text


@pytest.mark.parametrize("nanos, text", [
    (1_700_000_000_123_456_789, "1700000000.123456789"),
    (5_000_000_000, "5"),
    (1, "0.000000001"),
    (-1_500_000_000, "-1.500000000"),
])
def test_format_time_ns(nanos, text):
    assert format_time_ns(nanos) == text


@pytest.mark.parametrize("text, nanos", [
    ("1", 1_000_000_000), ("1.5", 1_500_000_000), ("1.", 1_000_000_000), ("1.1234567891", 1_123_456_789),
    (" 2 ", 2_000_000_000), ("-1", -1_000_000_000), ("", None), ("1e9", None), ("a.b", None), (None, None),
])
def test_parse_time_ns(text, nanos):
    assert parse_time_ns(text) == nanos


@given(st.integers(-(2**40) * 1_000_000_000, 2**40 * 1_000_000_000))
def test_time_round_trip_nanoseconds(nanos):
    assert parse_time_ns(format_time_ns(nanos)) == nanos


@given(st.integers(0, 2**40))
def test_time_round_trip_seconds(seconds):
    assert parse_time_ns(format_time(seconds)) == seconds * 1_000_000_000


# ---- sizes ---------------------------------------------------------------------------------------

def test_sizes():
    assert attrs_for_object(info(size=123), FILE, own()).size == 123
    assert attrs_for_object(info("d/", 0), DIR, own()).size == 0
    linked = info("l", 99, meta={"symlink-target": "%C3%A9/x"})
    assert attrs_for_object(linked, LINK, own()).size == len("é/x".encode())
    assert attrs_for_object(info("l", 6, meta={"mode": str(stat.S_IFLNK | 0o777)}), LINK, own()).size == 6
    attrs = Attrs(FILE, stat.S_IFREG, 0, 0, 513, 0, 0, 0)
    assert attrs.blocks == 2 and attrs.nlink == 1
    assert Attrs(DIR, stat.S_IFDIR, 0, 0, 0, 0, 0, 0).nlink == 2


# ---- writing metadata ----------------------------------------------------------------------------

def test_meta_for_new_entry_as_ossfs_writes_it():
    meta = meta_for_new_entry(FILE, 0o644, 1000, 1001, 1_700_000_000)
    assert meta == {"mode": "33188", "uid": "1000", "gid": "1001", "mtime": "1700000000",
                    "ctime": "1700000000", "atime": "1700000000"}
    assert meta_for_new_entry(DIR, stat.S_IFDIR | 0o755, 0, 0, 1)["mode"] == str(stat.S_IFDIR | 0o755)
    assert meta_for_new_entry(LINK, 0o777, 0, 0, 1)["mode"] == str(stat.S_IFLNK | 0o777)
    assert all(value.isascii() for value in meta.values())


def test_meta_with_changes_keeps_other_meta_and_type_bits():
    meta = {"mode": str(stat.S_IFREG | 0o644), "uid": "1", "gid": "2", "mtime": "5", "xattr": "X", "custom": "c"}
    changed = meta_with_changes(meta, mode=0o600, uid=3, mtime=7.5)
    assert changed == {**meta, "mode": str(stat.S_IFREG | 0o600), "uid": "3", "mtime": "7.500000000"}
    assert meta["mode"] == str(stat.S_IFREG | 0o644)  # input untouched
    assert meta_with_changes(meta, mode=stat.S_IFDIR | 0o700)["mode"] == str(stat.S_IFDIR | 0o700)
    assert meta_with_changes({}, mode=0o600)["mode"] == "384"
    assert meta_with_changes(meta, gid=9, atime=1, ctime=2) == {**meta, "gid": "9", "atime": "1", "ctime": "2"}


def test_meta_with_changes_exact_nanoseconds_from_utimens():
    changed = meta_with_changes({}, atime_ns=5_000_000_000, mtime_ns=1_700_000_000_123_456_789,
                                ctime_ns=7, mtime=1.0)
    assert changed == {"atime": "5", "mtime": "1700000000.123456789", "ctime": "0.000000007"}
    meta = meta_for_new_entry(FILE, 0o644, 0, 0, now_ns=1_700_000_000_000_000_001)
    assert meta["mtime"] == meta["ctime"] == meta["atime"] == "1700000000.000000001"
    with pytest.raises(TypeError):
        meta_for_new_entry(FILE, 0o644, 0, 0)


def test_chmod_then_stat_round_trip():
    meta = meta_with_changes(meta_for_new_entry(FILE, 0o644, 0, 0, 1), mode=0o777)
    assert attrs_for_object(info(meta=meta), FILE, own()).mode == stat.S_IFREG | 0o777
    assert attrs_for_object(info(meta=meta), FILE, own("umask=133")).mode == stat.S_IFREG | 0o644


# ---- symlinks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["dest", "../a/b c", "/abs/path", "é/ü", "100%", "a\nb", "x:1:y", "header:3:abc"])
def test_symlink_forms_round_trip(target):
    """Both forms ossfs 1.91.10 writes read back as the same link."""
    body, meta = symlink_object(target, in_meta=True)
    assert body == b"" and set(meta) == {"symlink-target"}
    assert all(value.isascii() and "\n" not in value for value in meta.values())
    assert meta["symlink-target"].startswith(f"header:{len(target.encode())}:")
    assert symlink_target_from(meta) == target
    body, meta = symlink_object(target)
    assert body == target.encode() and meta == {}
    assert symlink_target_from(meta) is None
    assert symlink_target_from(meta, body) == target.strip()


@given(st.text(min_size=1).filter(lambda t: t.strip() == t))
def test_symlink_header_form_property(target):
    _, meta = symlink_object(target, in_meta=True)
    assert symlink_target_from(meta) == target


@pytest.mark.parametrize("meta, body, target", [
    ({"symlink-target": "header:10:target.txt"}, b"", "target.txt"),  # ossfs symlink_in_meta, verbatim
    ({"symlink-target": "header:7:a%20b%2Fc"}, b"", "a b/c"),
    ({"symlink-target": "body:0:"}, b"in/body", "in/body"),  # ossfs: "the target is in the body"
    ({"symlink-target": "body:7:"}, b"in/body\n", "in/body"),
    ({"symlink-target": "old/raw%20form"}, b"old/raw form", "old/raw form"),  # ossmount's earlier form
    ({}, b"  spaced/target\n", "spaced/target"),  # ossfs trims the body
])
def test_symlink_target_from_every_stored_form(meta, body, target):
    assert symlink_target_from(meta, body) == target
    assert symlink_target_from(meta, lambda: body) == target


def test_symlink_body_is_read_only_when_needed():
    assert symlink_target_from({}) is None
    assert symlink_target_from({"symlink-target": "body:0:"}) is None
    calls = []
    assert symlink_target_from({}, lambda: calls.append(1) or b"t") == "t" and calls == [1]
    assert symlink_target_from({"symlink-target": "m"}, lambda: calls.append(2) or b"t") == "m" and calls == [1]
    with pytest.raises(ValueError):
        symlink_object("")


# ---- xattrs --------------------------------------------------------------------------------------

def test_xattr_encoding_is_s3fs_format():
    encoded = encode_xattrs({"user.a": b"hi"})
    assert encoded == "%7B%22user.a%22%3A%22aGk%3D%22%7D"  # urlencode('{"user.a":"aGk="}')
    assert encode_xattrs({}) == ""
    assert decode_xattrs("") == {}


def test_xattr_decodes_s3fs_written_value():
    # s3fs build_xattrs: URL-encoded JSON, values base64 (an empty value is "")
    assert decode_xattrs("%7B%22user.x%22%3A%22AAEC%22%2C%22user.empty%22%3A%22%22%7D") == {
        "user.x": b"\x00\x01\x02", "user.empty": b""}


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=50), max_size=5))
def test_xattr_round_trip(values):
    encoded = encode_xattrs(values)
    assert encoded.isascii()
    assert decode_xattrs(encoded) == values


@pytest.mark.parametrize("bad", ["notjson", "%5B1%5D", "%7B%22a%22%3A1%7D", "%7B%22a%22%3A%22%21%21%22%7D"])
def test_xattr_malformed_strict_raises_and_lenient_skips(bad):
    with pytest.raises(XattrFormatError):
        decode_xattrs(bad, strict=True)
    assert decode_xattrs(bad) == {}


def test_xattr_lenient_reading_like_ossfs_parse_xattrs():
    # ossfs writes names unescaped: a '"' or '\\' in a name is not valid JSON, ossfs still reads the rest
    raw = '{"user.ok":"aGk=","user.bad\\name":"aGk=","broken","user.v":"!!"}'
    assert decode_xattrs(quote(raw, safe="/")) == {"user.ok": b"hi", "user.bad\\name": b"hi"}


def test_meta_with_xattrs():
    assert meta_with_xattrs({"mode": "1"}, {"user.a": b"1"})["xattr"] == encode_xattrs({"user.a": b"1"})
    assert meta_with_xattrs({"mode": "1", "xattr": "x"}, {}) == {"mode": "1"}


def test_ownership_rejects_bad_masks():
    with pytest.raises(ValueError):
        Ownership(0, 0, umask=0o1000)


@given(umask=st.one_of(st.none(), st.integers(0, 0o777)), stored=st.one_of(st.none(), st.integers(0, 0o7777)),
       kind=st.sampled_from([FILE, DIR]))
def test_permission_rules_property(umask, stored, kind):
    """umask= wins over everything; else the stored bits; else the kind's default. Type bits follow the kind."""
    ownership = Ownership(MOUNT_UID, MOUNT_GID, umask=umask)
    meta = {} if stored is None else {"mode": str(stat.S_IFREG | stored)}
    attrs = attrs_for_object(info("x/" if kind is DIR else "x", 0, meta=meta), kind, ownership)
    assert stat.S_IFMT(attrs.mode) == kind.type_bits
    if umask is not None:
        assert stat.S_IMODE(attrs.mode) == 0o777 & ~umask
    elif stored is not None:
        assert stat.S_IMODE(attrs.mode) == stored
    else:
        assert stat.S_IMODE(attrs.mode) == (0o640 if kind is FILE else 0o750)


@given(st.booleans(), st.one_of(st.none(), st.integers(0, 0o777)))
def test_root_permission_property(allow_other, mp_umask):
    attrs = attrs_for_root(Ownership(1, 2, mp_umask=mp_umask, allow_other=allow_other), 0)
    expected = (0o777 & ~(mp_umask or 0)) if allow_other else 0o700
    assert attrs.mode == stat.S_IFDIR | expected


@pytest.mark.parametrize("meta", [{"mode": "²"}, {"uid": "²", "gid": "٣"}, {"mtime": "1.²"}, {"mode": "99999999"}])
def test_unicode_digits_and_out_of_range_meta_count_as_absent(meta):
    attrs = attrs_for_object(info(meta=meta), FILE, own())
    assert attrs.mode == stat.S_IFREG | 0o640
    assert (attrs.uid, attrs.gid) == (MOUNT_UID, MOUNT_GID)
    assert attrs.mtime_ns == 1_700_000_000_000_000_000


@pytest.mark.parametrize("kind", list(EntryKind))
@pytest.mark.parametrize("own", [Ownership(mount_uid=5, mount_gid=6), Ownership(mount_uid=5, mount_gid=6, uid=7, gid=8),
                                 Ownership(mount_uid=0, mount_gid=0, umask=0o027)])
def test_a_listed_entry_without_metadata_gets_the_same_attributes_as_through_the_metadata_rules(kind, own):
    """The fast path for entries with no x-oss-meta-* (readdir_optimize) gives what the full rules give."""
    listed = ObjectInfo(key="d/a", size=1234, etag="e", mtime=1700000000.5, from_listing=True)
    ruled = dataclasses.replace(listed, meta={"unrelated": "x"})  # takes the full path, the same answer expected
    fast = attrs_for_object(listed, kind, own)
    assert fast == attrs_for_object(ruled, kind, own) and type(fast) is Attrs
    assert fast.nlink == (2 if kind is EntryKind.DIR else 1) and fast.blocks == (fast.size + 511) // 512
