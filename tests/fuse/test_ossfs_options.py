"""ossfs 1.91.10 options through a real mount (issue 7): each option with a meaning shows its effect on the wire (the
server's request log, what the server stored) or on the mount."""

from __future__ import annotations

import errno
import os
import random
import re
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import oss2
import pytest

from ossmount import USER_AGENT
from ossmount.errors import EXIT_CONFIG, EXIT_UNREACHABLE
from ossmount.testing import FakeEcsMetadata, LocalServer, TlsProxy, wait_for
from tests.fuse.conftest import Mount, is_mounted, running_mount

MiB = 1024 * 1024
LIMIT = 819200  # bit/s, the smallest x-oss-traffic-limit


def records(mount: Mount, *ops: str, key: str | None = None) -> list[dict]:
    """The request log's records of `mount`'s bucket (of operations `ops`, of `key`), oldest first."""
    return [r for r in mount.server.admin.requests()
            if r["bucket"] == mount.bucket and (not ops or r["op"] in ops) and (key is None or r["key"] == key)]


def logged(mount: Mount, *ops: str, key: str | None = None, count: int = 1) -> list[dict]:
    """`records`, once at least `count` are there: the server logs a request after its last byte is sent, so a
    client that has everything may look a moment before the record lands."""
    return wait_for(lambda: records(mount, *ops, key=key), lambda found: len(found) >= count, timeout=10)


def op_names(mount: Mount) -> list[str]:
    return [r["op"] for r in records(mount)]


# -- what written objects carry: default_acl, storage_class, use_sse, ahbe_conf, requester_pays, instance_name ---

AHBE = """\
# as ossfs's sample_ahbe.conf
.gz\t\t\tContent-Encoding\tgzip
reg:^/logs/(.*)[.]txt$\tCache-Control\tno-cache
"""


@pytest.fixture(scope="module")
def write_mount(local_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("write-options")
    ahbe = workdir / "ahbe.conf"
    ahbe.write_text(AHBE)
    options = (f"default_acl=public-read,storage_class=IA,use_sse=kmsid:key-1,requester_pays,ahbe_conf={ahbe},"
               "instance_name=web-1,no_time_stamp_msg,dbglevel=info")
    with running_mount(local_server, workdir, prefix="team/", options=options) as mount:
        yield mount


def test_written_objects_get_the_acl_storage_class_and_encryption(write_mount):
    (write_mount.path / "report.txt").write_bytes(b"quarterly")
    bucket = write_mount.server.oss2_bucket(write_mount.bucket)
    head = bucket.head_object("team/report.txt").headers
    assert (head["x-oss-storage-class"], head["x-oss-server-side-encryption"],
            head["x-oss-server-side-encryption-key-id"]) == ("IA", "KMS", "key-1")
    assert bucket.get_object_acl("team/report.txt").acl == "public-read"
    for record in records(write_mount, "PutObject", key="team/report.txt"):
        assert record["headers"]["x-oss-object-acl"] == "public-read"
        assert record["headers"]["x-oss-storage-class"] == "IA"


def test_metadata_changes_and_renames_keep_them(write_mount):
    path = write_mount.path / "kept.txt"
    path.write_bytes(b"x")
    path.chmod(0o600)
    path.rename(write_mount.path / "moved.txt")
    bucket = write_mount.server.oss2_bucket(write_mount.bucket)
    head = bucket.head_object("team/moved.txt").headers
    assert (head["x-oss-storage-class"], head["x-oss-server-side-encryption"]) == ("IA", "KMS")
    assert int(head["x-oss-meta-mode"]) & 0o777 == 0o600
    copies = records(write_mount, "CopyObject")
    assert copies and all(r["headers"]["x-oss-object-acl"] == "public-read" for r in copies)


def test_ahbe_conf_adds_headers_by_suffix_and_regex(write_mount):
    (write_mount.path / "logs").mkdir()
    (write_mount.path / "logs" / "today.txt").write_bytes(b"log")
    (write_mount.path / "bundle.tar.gz").write_bytes(b"gz")
    (write_mount.path / "plain.txt").write_bytes(b"plain")
    bucket = write_mount.server.oss2_bucket(write_mount.bucket)
    assert bucket.head_object("team/logs/today.txt").headers["Cache-Control"] == "no-cache"
    assert bucket.head_object("team/bundle.tar.gz").headers["Content-Encoding"] == "gzip"
    plain = bucket.head_object("team/plain.txt").headers
    assert "Cache-Control" not in plain and "Content-Encoding" not in plain


def test_requester_pays_goes_on_every_request(write_mount):
    (write_mount.path / "paid.txt").write_bytes(b"x")
    os.listdir(write_mount.path)
    seen = [r for r in records(write_mount) if "[web-1]" in (r["user_agent"] or "")]  # the mount's, not oss2's
    assert {"PutObject", "ListObjectsV2"} <= {r["op"] for r in seen}
    assert all(r["headers"].get("x-oss-request-payer") == "requester" for r in seen)


def test_instance_name_and_no_time_stamp_msg(write_mount):
    (write_mount.path / "agent.txt").write_bytes(b"x")
    agents = {r["user_agent"] for r in records(write_mount, "PutObject", key="team/agent.txt")}
    assert agents and all(USER_AGENT in agent and "[web-1]" in agent for agent in agents)
    mounted = next(line for line in write_mount.log.splitlines() if "mounted" in line)
    assert mounted.startswith("[web-1] INFO ")  # no time stamp in front


# -- traffic limits --------------------------------------------------------------------------------------------


def test_traffic_limits_throttle_uploads_and_downloads(make_mount):
    mount = make_mount(f"upload_traffic_limit={LIMIT},download_traffic_limit={LIMIT * 2}")
    data = os.urandom(32 * 1024)
    (mount.path / "up.bin").write_bytes(data)
    mount.server.oss2_bucket(mount.bucket).put_object("down.bin", data)
    assert (mount.path / "down.bin").read_bytes() == data
    put = [r for r in records(mount, "PutObject", key="up.bin") if r["request_bytes"]][-1]
    get = logged(mount, "GetObject", key="down.bin")
    assert (put["traffic_limit"], put["request_bytes"]) == (LIMIT, len(data))
    assert get and all(r["traffic_limit"] == LIMIT * 2 for r in get) and sum(r["bytes"] for r in get) == len(data)


# -- uploads: multipart_threshold, nomultipart, tmpdir -----------------------------------------------------------


@pytest.mark.parametrize("options, size, expected", [
    ("multipart_size=1,multipart_threshold=5", 3 * MiB, "PutObject"),
    ("multipart_size=1,multipart_threshold=5", 5 * MiB, "CompleteMultipartUpload"),
    ("multipart_size=1,nomultipart", 3 * MiB, "PutObject"),
])
def test_multipart_threshold_and_nomultipart(make_mount, options, size, expected):
    mount = make_mount(options)
    data = random.Random(size).randbytes(size)
    (mount.path / "file.bin").write_bytes(data)
    uploads = [r["op"] for r in records(mount, "PutObject", "CompleteMultipartUpload", key="file.bin")
               if r["op"] != "PutObject" or r["request_bytes"]]
    assert uploads == [expected]
    assert mount.server.oss2_bucket(mount.bucket).get_object("file.bin").read() == data


def test_tmpdir_holds_the_spool_files(make_mount, tmp_path):
    spool_root = tmp_path / "spool-root"
    spool_root.mkdir()
    mount = make_mount(f"tmpdir={spool_root}")
    with open(mount.path / "open.bin", "wb") as handle:
        handle.write(b"pending data")
        handle.flush()
        spools = list(spool_root.glob("ossmount-spool-*"))
        # spool files are unlinked once open: the mount process holds them under tmpdir
        fd_dir = Path(f"/proc/{mount.process.pid}/fd")
        targets = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        assert len(spools) == 1 and any(t.startswith(str(spools[0]) + "/") for t in targets), targets
    mount.unmount()
    assert list(spool_root.iterdir()) == []  # removed at unmount


def test_missing_tmpdir_fails_the_mount_with_one_line(make_mount, tmp_path):
    mount = make_mount(f"tmpdir={tmp_path / 'absent'}", start=False)
    result = subprocess.run(mount.argv()[:-1], capture_output=True, text=True, timeout=60)  # without -f
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.strip().splitlines() == [
        f"ossmount mount: tmpdir {tmp_path / 'absent'} does not exist or is not a directory: create it or choose "
        "another"]
    assert not is_mounted(mount.path)


# -- listing: list_object_max_keys, readdir_check_size ------------------------------------------------------------


def test_list_object_max_keys_sets_the_page_size(make_mount):
    mount = make_mount("list_object_max_keys=2")
    bucket = mount.server.oss2_bucket(mount.bucket)
    for name in "abcde":
        bucket.put_object(f"dir/{name}", b"")
    mount.server.admin.reset_requests()
    assert sorted(os.listdir(mount.path / "dir")) == list("abcde")
    queries = [urllib.parse.parse_qs(r["query"]) for r in records(mount, "ListObjectsV2")]
    pages = [q for q in queries if q.get("prefix") == ["dir/"] and q.get("max-keys") != ["1"]]  # not the lookup's
    assert len(pages) == 3 and all(q["max-keys"] == ["2"] for q in pages)


def test_readdir_check_size_heads_only_small_entries(make_mount):
    mount = make_mount("readdir_optimize,readdir_check_size=48")
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("d/small", b"tiny", headers={"x-oss-meta-mode": str(stat.S_IFREG | 0o604)})
    bucket.put_object("d/large", b"x" * 100, headers={"x-oss-meta-mode": str(stat.S_IFREG | 0o604)})
    mount.server.admin.reset_requests()
    modes = {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in os.scandir(mount.path / "d")}
    assert modes["small"] == 0o604  # HEADed: its stored mode
    assert modes["large"] != 0o604  # from the listing alone: the default mode
    assert [r["key"] for r in records(mount, "HeadObject") if r["key"].startswith("d/")] == ["d/small"]


def test_rmdir_of_a_directory_listed_with_readdir_optimize_removes_its_marker(make_mount):
    """Found by ossfs's matrix (use_xattr=0 -o readdir_optimize): a subdirectory known only from the parent's
    listing kept its `dir/` object after rmdir, so the parent stayed non-empty (ENOTEMPTY)."""
    mount = make_mount("readdir_optimize")
    (mount.path / "parent" / "child").mkdir(parents=True)
    assert os.listdir(mount.path / "parent") == ["child"]
    (mount.path / "parent" / "child").rmdir()
    (mount.path / "parent").rmdir()
    assert [o.key for o in oss2.ObjectIterator(mount.server.oss2_bucket(mount.bucket))] == []


# -- caches: disable_noobj_cache, stat_cache_expire=-1, attr/entry/negative timeouts ------------------------------


def test_disable_noobj_cache_overrides_enable(make_mount):
    mount = make_mount("enable_noobj_cache,disable_noobj_cache")
    assert not (mount.path / "later").exists()
    mount.server.oss2_bucket(mount.bucket).put_object("later", b"now here")
    assert (mount.path / "later").read_bytes() == b"now here"  # the miss was not cached


def test_stat_cache_expire_minus_one_never_expires(make_mount):
    forever = make_mount("stat_cache_expire=-1")
    quick = make_mount("stat_cache_expire=1")
    for mount in (forever, quick):
        (mount.path / "f").write_bytes(b"short")
        assert (mount.path / "f").stat().st_size == 5
        mount.server.oss2_bucket(mount.bucket).put_object("f", b"replaced by a longer body")
    assert wait_for(lambda: (quick.path / "f").stat().st_size, lambda size: size == 25, timeout=20) == 25
    forever.server.admin.reset_requests()
    assert (forever.path / "f").stat().st_size == 5  # still the cached entry, well after the quick one expired
    assert records(forever, "HeadObject") == []


def test_attr_and_entry_timeouts_let_the_kernel_cache_without_a_stat_cache(make_mount):
    cached = make_mount("max_stat_cache_size=0,attr_timeout=60,entry_timeout=60")
    uncached = make_mount("max_stat_cache_size=0")
    for mount in (cached, uncached):
        mount.server.oss2_bucket(mount.bucket).put_object("f", b"x")
        os.stat(mount.path / "f")
        mount.server.admin.reset_requests()
        for _ in range(3):
            os.stat(mount.path / "f")
    assert records(cached, "HeadObject") == []
    assert len(records(uncached, "HeadObject")) >= 3


def test_negative_timeout_caches_missing_names_in_the_kernel(make_mount):
    mount = make_mount("negative_timeout=60")
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "ghost")
    mount.server.oss2_bucket(mount.bucket).put_object("ghost", b"boo")
    mount.server.admin.reset_requests()
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "ghost")  # the kernel still knows it is missing: no request at all
    assert records(mount, "HeadObject", "ListObjectsV2") == []
    (mount.path / "created").write_bytes(b"here")  # a name created through the mount is seen at once
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "new-miss")
    (mount.path / "new-miss").write_bytes(b"made")
    assert (mount.path / "new-miss").read_bytes() == b"made"


# -- signing and identity: sigv1/sigv4, enable_unsigned_payload, endpoint=, noua, use_session_token, ram_role ------


def test_sigv4_with_unsigned_payload_and_endpoint_region(make_mount):
    mount = make_mount("sigv4,endpoint=cn-hangzhou,enable_unsigned_payload")
    (mount.path / "v4.txt").write_bytes(b"signed")
    put = records(mount, "PutObject", key="v4.txt")[-1]["headers"]
    assert put["x-oss-content-sha256"] == "UNSIGNED-PAYLOAD" and "x-oss-date" in put
    assert "authorization" not in put


def test_sigv1_is_the_default_and_can_be_named(make_mount):
    mount = make_mount("sigv4,region=cn-hangzhou,sigv1")  # the last one wins, as in ossfs's test matrix
    (mount.path / "v1.txt").write_bytes(b"signed")
    put = records(mount, "PutObject", key="v1.txt")[-1]["headers"]
    assert "x-oss-date" not in put and "x-oss-content-sha256" not in put and "date" in put


def test_noua_sends_no_user_agent(make_mount):
    mount = make_mount("noua")
    (mount.path / "anonymous-agent").write_bytes(b"x")
    ours = [r for r in records(mount) if r["op"] != "PutBucket"]  # the fixture's PutBucket comes from oss2
    assert {"ListObjectsV2", "PutObject"} <= {r["op"] for r in ours}
    assert all(r["user_agent"] is None for r in ours)


def sts_bucket(server: LocalServer) -> str:
    """A fresh bucket owned by the server's STS key."""
    sts_id, sts_secret, sts_token = server.sts[0]
    name = f"sts-{os.getpid()}-{random.randrange(10**9)}"
    oss2.Bucket(oss2.StsAuth(sts_id, sts_secret, sts_token), server.endpoint, name).create_bucket()
    return name


def test_use_session_token_requires_and_sends_the_token(make_mount, local_server):
    sts_id, sts_secret, sts_token = local_server.sts[0]
    env = {"OSS_ACCESS_KEY_ID": sts_id, "OSS_ACCESS_KEY_SECRET": sts_secret, "OSS_SESSION_TOKEN": sts_token}
    mount = make_mount("use_session_token", bucket=sts_bucket(local_server), passwd=False, env=env)
    (mount.path / "sts.txt").write_bytes(b"temporary credentials")
    assert "x-oss-security-token" in records(mount, "PutObject", key="sts.txt")[-1]["withheld_headers"]

    refused = make_mount("use_session_token", bucket=mount.bucket, passwd=False, start=False,
                         env={"OSS_ACCESS_KEY_ID": sts_id, "OSS_ACCESS_KEY_SECRET": sts_secret})
    result = subprocess.run(refused.argv()[:-1], capture_output=True, text=True, timeout=60,
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("OSS")}, **refused.env})
    assert result.returncode == EXIT_CONFIG
    assert "use_session_token" in result.stderr and sts_secret not in result.stderr


@pytest.mark.parametrize("role", ["auto", "EcsRole"])
def test_ram_role_takes_credentials_from_the_instance_metadata_service(make_mount, local_server, role):
    sts_id, sts_secret, sts_token = local_server.sts[0]
    with FakeEcsMetadata("EcsRole", (sts_id, sts_secret, sts_token, time.time() + 6 * 3600),
                         require_token=True) as metadata:
        option = "ram_role" if role == "auto" else f"ram_role={role}"
        mount = make_mount(option, bucket=sts_bucket(local_server), passwd=False,
                           env={"OSSMOUNT_ECS_METADATA_ENDPOINT": metadata.endpoint})
        (mount.path / "role.txt").write_bytes(b"from the metadata service")
        assert (mount.path / "role.txt").read_bytes() == b"from the metadata service"
        assert "x-oss-security-token" in records(mount, "PutObject", key="role.txt")[-1]["withheld_headers"]
        assert ("GET", "/latest/meta-data/ram/security-credentials/EcsRole") in metadata.requests
        mount.unmount()


def test_ram_role_without_a_metadata_service_is_one_line(make_mount, local_server):
    mount = make_mount("ram_role=EcsRole", passwd=False, start=False,
                       env={"OSSMOUNT_ECS_METADATA_ENDPOINT": "http://127.0.0.1:9"})
    result = subprocess.run(mount.argv()[:-1], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **mount.env})
    assert result.returncode == EXIT_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the instance metadata service at http://127.0.0.1:9" in lines[0]


# -- copies: public_bucket, nocopyapi, norenameapi, noshallowcopyapi ------------------------------------------------


def test_public_bucket_mounts_without_credentials_and_copies_by_reupload(make_mount, local_server):
    bucket = local_server.oss2_bucket(f"pub-{os.getpid()}-{random.randrange(10**9)}")
    bucket.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    mount = make_mount("public_bucket=1", bucket=bucket.bucket_name, passwd=False,
                       env={"OSS_ACCESS_KEY_ID": "", "OSS_ACCESS_KEY_SECRET": ""})
    (mount.path / "shared.txt").write_bytes(b"for everyone")
    (mount.path / "shared.txt").chmod(0o640)
    (mount.path / "shared.txt").rename(mount.path / "renamed.txt")
    assert (mount.path / "renamed.txt").read_bytes() == b"for everyone"
    assert stat.S_IMODE((mount.path / "renamed.txt").stat().st_mode) == 0o640
    seen = records(mount)
    assert all(r["withheld_headers"] == [] for r in seen if r["op"] != "PutBucket")  # nothing signed
    assert "CopyObject" not in {r["op"] for r in seen}  # OSS refuses anonymous copies
    assert int(bucket.head_object("renamed.txt").headers["x-oss-meta-mode"]) & 0o777 == 0o640


def test_public_bucket_on_a_private_bucket_is_refused(make_mount):
    mount = make_mount("public_bucket=1", passwd=False, start=False,
                       env={"OSS_ACCESS_KEY_ID": "", "OSS_ACCESS_KEY_SECRET": ""})
    result = subprocess.run(mount.argv()[:-1], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **mount.env})
    assert result.returncode != 0 and "AccessDenied" in result.stderr


@pytest.mark.parametrize("option, chmod_copies", [("nocopyapi", False), ("norenameapi", True)])
def test_nocopyapi_and_norenameapi(make_mount, option, chmod_copies):
    mount = make_mount(option)
    (mount.path / "a.txt").write_bytes(b"payload")
    mount.server.admin.reset_requests()
    (mount.path / "a.txt").chmod(0o600)
    assert ("CopyObject" in op_names(mount)) is chmod_copies
    mount.server.admin.reset_requests()
    (mount.path / "a.txt").rename(mount.path / "b.txt")
    assert "CopyObject" not in op_names(mount)
    bucket = mount.server.oss2_bucket(mount.bucket)
    assert bucket.get_object("b.txt").read() == b"payload"
    assert int(bucket.head_object("b.txt").headers["x-oss-meta-mode"]) & 0o777 == 0o600


def test_noshallowcopyapi_renames_large_files_part_by_part(make_mount):
    mount = make_mount("noshallowcopyapi,singlepart_copy_limit=1,multipart_copy_size=5")
    data = random.Random(7).randbytes(6 * MiB)
    mount.server.oss2_bucket(mount.bucket).put_object("big.bin", data)
    mount.server.admin.reset_requests()
    (mount.path / "big.bin").rename(mount.path / "moved.bin")
    assert op_names(mount).count("UploadPartCopy") == 2 and "CopyObject" not in op_names(mount)
    assert mount.server.oss2_bucket(mount.bucket).get_object("moved.bin").read() == data


# -- names: use_wtf8 -------------------------------------------------------------------------------------------


def test_use_wtf8_stores_invalid_utf8_names_as_ossfs_does(make_mount):
    mount = make_mount("use_wtf8")
    raw = os.fsencode(mount.path) + b"/caf\xe9.txt"  # cp1252 "café.txt": not UTF-8
    with open(raw, "wb") as handle:
        handle.write(b"latin-1 name")
    assert b"caf\xe9.txt" in os.listdir(os.fsencode(mount.path))
    keys = [o.key for o in oss2.ObjectIterator(mount.server.oss2_bucket(mount.bucket))]
    assert keys == ["caf\ue0e9.txt"]  # U+E000 + 0xE9, as s3fs_wtf8_encode
    with open(raw, "rb") as handle:
        assert handle.read() == b"latin-1 name"


# -- the command line: bucket=, retries, readwrite_timeout, TLS, servicepath --------------------------------------


def test_bucket_option_replaces_the_first_argument(local_server, tmp_path):
    with running_mount(local_server, tmp_path / "seed") as seed:
        (seed.path / "under" / "prefix").mkdir(parents=True)
        (seed.path / "under" / "prefix" / "file").write_bytes(b"by bucket=")
        bucket, passwd = seed.bucket, seed.passwd_file
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        command = [sys.executable, "-m", "ossmount", str(mountpoint), "-o",
                   f"bucket={bucket}:/under/prefix,url={local_server.endpoint},passwd_file={passwd}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            assert (mountpoint / "file").read_bytes() == b"by bucket="
            assert f"{bucket}:/under/prefix" in Path("/proc/self/mountinfo").read_text()
        finally:
            subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
            wait_for(lambda: is_mounted(mountpoint), lambda mounted: not mounted, timeout=20)


def test_retries_and_readwrite_timeout_shape_the_retries(make_mount):
    mount = make_mount("retries=1")  # ossfs's retries: retries after the first attempt (throttling 503s do not count)
    (mount.path / "once").write_bytes(b"")
    mount.server.admin.set_faults([{"op": "PutObject", "action": "error", "status": 500,
                                    "code": "InternalError", "count": 5}])
    try:
        with pytest.raises(OSError) as failure:
            (mount.path / "once").write_bytes(b"retried once")
        assert failure.value.errno == errno.EIO
        assert len(records(mount, "PutObject", key="once")) == 3  # the create, then the first attempt and one retry
    finally:
        mount.server.admin.clear_faults()

    patient = make_mount("retries=3,readwrite_timeout=1")
    patient.server.oss2_bucket(patient.bucket).put_object("slow", b"eventually")
    patient.server.admin.set_faults([{"op": "GetObject", "action": "delay", "delay_ms": 2500, "count": 1}])
    patient.server.admin.reset_counters()
    try:
        assert (patient.path / "slow").read_bytes() == b"eventually"  # the first GET timed out after 1 s
        assert patient.server.admin.faults()["rules"][0]["fired"] == 1
    finally:
        patient.server.admin.clear_faults()
    # the abandoned GET never finishes a response, so only the counters (not the request log) see both
    assert patient.server.admin.counters()["GetObject"] >= 2


def test_tls_certificate_checks_can_be_relaxed(make_mount, local_server, tmp_path):
    with TlsProxy(("127.0.0.1", local_server.port), tmp_path / "tls", host_name="oss.example") as proxy:
        strict = make_mount(start=False)
        strict.url = proxy.endpoint
        result = subprocess.run(strict.argv()[:-1], capture_output=True, text=True, timeout=60)
        assert result.returncode == EXIT_UNREACHABLE
        assert "TLSError" in result.stderr and "no_check_certificate" in result.stderr

        relaxed = make_mount("no_check_certificate", bucket=strict.bucket, start=False)
        relaxed.url = proxy.endpoint
        relaxed.start()
        (relaxed.path / "secure.txt").write_bytes(b"through TLS")
        assert local_server.oss2_bucket(strict.bucket).get_object("secure.txt").read() == b"through TLS"
        assert "are not verified" in relaxed.log

        # A certificate the system trusts, issued for another host name: only ssl_verify_hostname=0 accepts it.
        trusted = make_mount("ssl_verify_hostname=0", bucket=strict.bucket, start=False,
                             env={"REQUESTS_CA_BUNDLE": str(proxy.cert_path)})
        trusted.url = proxy.endpoint
        trusted.start()
        assert (trusted.path / "secure.txt").read_bytes() == b"through TLS"


def test_servicepath_reaches_a_server_behind_a_path_prefix(make_mount, tmp_path):
    with LocalServer(tmp_path / "proxied", extra_args=("--service-path", "/oss")) as server:
        mount = make_mount("servicepath=/oss", server=server, bucket="test-bucket")
        (mount.path / "routed.txt").write_bytes(b"via /oss")
        assert (mount.path / "routed.txt").read_bytes() == b"via /oss"
        puts = [r for r in server.admin.requests() if r["op"] == "PutObject" and r["key"] == "routed.txt"]
        assert puts and all(r["status"] == 200 for r in puts)
        mount.unmount()
