"""The store with ossfs's request options (issue 7): what goes on the wire, read back from the server's request log,
and what the server stored. Headers (ACL, storage class, SSE, request payer, traffic limits, ahbe_conf,
User-Agent), list page size, copies without the copy API or part by part, rotating and absent credentials, TLS
verification and a service path."""

from __future__ import annotations

import os
import time

import oss2
import pytest

from ossmount import USER_AGENT
from ossmount.ahbe import key_headers, parse_ahbe
from ossmount.credentials import Credentials, EcsRamRoleCredentials
from ossmount.store import ObjectStore, RetryPolicy, types
from ossmount.store.headers import CopyPolicy, RequestHeaders
from ossmount.testing import FakeEcsMetadata, LocalServer, TlsProxy
from tests.store.conftest import make_store

MiB = 1024 * 1024
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


def records(server: LocalServer, bucket: str, key: str | None = None) -> list[dict]:
    """The store's requests on `bucket` (not the fixture's PutBucket)."""
    return [r for r in server.admin.requests()
            if r["bucket"] == bucket and r["op"] != "PutBucket" and (key is None or r["key"] == key)]


def ops(server: LocalServer, bucket: str) -> list[str]:
    return [r["op"] for r in records(server, bucket)]


WRITE_HEADERS = RequestHeaders(object_acl="public-read", storage_class="IA", server_side_encryption="KMS",
                               sse_key_id="key-1",
                               extra_headers=key_headers(parse_ahbe(".gz Content-Encoding gzip\n"
                                                                    "reg:^/logs/ Cache-Control no-cache\n"), "pre/"))


async def test_every_write_carries_acl_class_sse_and_ahbe_headers(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, headers=WRITE_HEADERS)
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    await store.put("pre/logs/a.gz", b"zipped", content_type="application/gzip", meta={"mode": "33188"})
    upload_id = await store.init_multipart("pre/big")
    part = await store.upload_part("pre/big", upload_id, 1, b"x" * 10)
    await store.complete_multipart("pre/big", upload_id, [part])
    await store.copy("pre/logs/a.gz", "pre/renamed")
    await store.update_meta("pre/big", content_type="text/plain", meta={"mode": "33261"})
    for record in records(local_server, fresh_bucket_name):
        writes = record["op"] in ("PutObject", "InitiateMultipartUpload", "CopyObject")
        sent = {name: record["headers"].get(name) for name in ("x-oss-object-acl", "x-oss-storage-class",
                                                               "x-oss-server-side-encryption",
                                                               "x-oss-server-side-encryption-key-id")}
        assert sent == ({"x-oss-object-acl": "public-read", "x-oss-storage-class": "IA",
                         "x-oss-server-side-encryption": "KMS", "x-oss-server-side-encryption-key-id": "key-1"}
                        if writes else dict.fromkeys(sent)), record
    for key in ("pre/logs/a.gz", "pre/big", "pre/renamed"):
        head = bucket.head_object(key).headers
        assert (head["x-oss-storage-class"], head["x-oss-server-side-encryption"]) == ("IA", "KMS")
        assert bucket.get_object_acl(key).acl == "public-read"
    head = bucket.head_object("pre/logs/a.gz").headers
    assert (head["Content-Encoding"], head["Cache-Control"], head["x-oss-meta-mode"]) == ("gzip", "no-cache", "33188")
    assert "Content-Encoding" not in bucket.head_object("pre/big").headers  # rules match by the path in the mount


async def test_request_payer_and_traffic_limits_on_the_right_requests(local_server, fresh_bucket_name):
    headers = RequestHeaders(request_payer=True, upload_traffic_limit=819200, download_traffic_limit=1638400)
    store = make_store(local_server, fresh_bucket_name, headers=headers)
    await store.put("k", b"data")
    await store.head("k")
    assert await store.get_bytes("k", 0, 4) == b"data"
    await store.list_page("")
    upload_id = await store.init_multipart("m")
    await store.upload_part("m", upload_id, 1, b"part")
    await store.abort_multipart("m", upload_id)
    seen = records(local_server, fresh_bucket_name)
    assert all(r["headers"].get("x-oss-request-payer") == "requester" for r in seen)
    limits = {r["op"]: r["headers"].get("x-oss-traffic-limit") for r in seen}
    assert limits == {"PutObject": "819200", "HeadObject": None, "GetObject": "1638400", "ListObjectsV2": None,
                      "InitiateMultipartUpload": None, "UploadPart": "819200", "AbortMultipartUpload": None}
    assert {r["op"]: r["traffic_limit"] for r in seen if r["traffic_limit"]} == {
        "PutObject": 819200, "GetObject": 1638400, "UploadPart": 819200}


@pytest.mark.parametrize("user_agent, expected", [(None, None), (USER_AGENT + " [web-1]", "web-1")])
async def test_user_agent_can_be_named_or_left_out(local_server, fresh_bucket_name, user_agent, expected):
    store = make_store(local_server, fresh_bucket_name, headers=RequestHeaders(user_agent=user_agent))
    await store.put("ua", b"")
    await store.head("ua")
    agents = [r["user_agent"] for r in records(local_server, fresh_bucket_name, "ua")]
    if expected is None:
        assert agents == [None, None]
    else:
        assert all(f"[{expected}]" in agent and USER_AGENT in agent for agent in agents)


async def test_list_pages_have_the_configured_size(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, list_max_keys=2)
    for name in "abcde":
        await store.put(f"d/{name}", b"")
    objects, _ = await store.list_all("d/")
    assert [o.key for o in objects] == [f"d/{n}" for n in "abcde"]
    lists = [r for r in records(local_server, fresh_bucket_name) if r["op"] == "ListObjectsV2"]
    assert len(lists) == 3 and all("max-keys=2" in r["query"] for r in lists)


# -- copies -------------------------------------------------------------------------------------------------


async def test_without_the_copy_api_copies_and_metadata_updates_reupload(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, copy_policy=CopyPolicy(copy_api=False, rewrite_part_size=MiB))
    small, large = os.urandom(1000), os.urandom(2 * MiB + 5)
    await store.put("small", small, content_type="text/plain", meta={"mode": "33188"})
    await store.put("large", large, meta={"mode": "33188"})
    local_server.admin.reset_requests()
    await store.update_meta("small", content_type="text/plain", meta={"mode": "33261"})
    await store.copy("large", "large-copy")
    await store.update_meta("large", content_type=None, meta={"mode": "33279"})
    seen = ops(local_server, fresh_bucket_name)
    assert "CopyObject" not in seen and "UploadPartCopy" not in seen
    assert seen.count("UploadPart") == 6  # two files of 3 parts each
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    assert bucket.get_object("small").read() == small
    assert bucket.head_object("small").headers["x-oss-meta-mode"] == "33261"
    assert bucket.get_object("large-copy").read() == large
    assert bucket.head_object("large-copy").headers["x-oss-meta-mode"] == "33188"  # the source's metadata
    assert bucket.get_object("large").read() == large
    assert bucket.head_object("large").headers["x-oss-meta-mode"] == "33279"


async def test_norenameapi_reuploads_only_copies_to_another_key(local_server, fresh_bucket_name):
    store = make_store(local_server, fresh_bucket_name, copy_policy=CopyPolicy(rename_api=False))
    await store.put("a", b"payload", meta={"mode": "33188"})
    local_server.admin.reset_requests()
    await store.copy("a", "b")
    await store.update_meta("a", content_type=None, meta={"mode": "33261"})
    assert ops(local_server, fresh_bucket_name) == ["HeadObject", "GetObject", "PutObject", "CopyObject"]
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("b").read() == b"payload"


@pytest.mark.parametrize("policy", [CopyPolicy(copy_api=False), CopyPolicy(mix_upload=False)])
async def test_part_copy_becomes_download_and_upload_when_copies_are_off(local_server, fresh_bucket_name, policy):
    store = make_store(local_server, fresh_bucket_name, copy_policy=policy)
    data = os.urandom(300 * 1024)
    await store.put("src", data)
    upload_id = await store.init_multipart("dst")
    local_server.admin.reset_requests()
    part = await store.upload_part_copy("src", (0, len(data) - 1), "dst", upload_id, 1)
    await store.complete_multipart("dst", upload_id, [part])
    assert ops(local_server, fresh_bucket_name) == ["GetObject", "UploadPart", "CompleteMultipartUpload"]
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("dst").read() == data


async def test_noshallowcopyapi_copies_large_objects_part_by_part(local_server, fresh_bucket_name):
    policy = CopyPolicy(shallow_copy=False, singlepart_copy_limit=1 * MiB, multipart_copy_size=1 * MiB)
    store = make_store(local_server, fresh_bucket_name, copy_policy=policy)
    data = os.urandom(2 * MiB + 100)
    await store.put("big", data, meta={"mode": "33188"})
    await store.put("tiny", b"t")
    local_server.admin.reset_requests()
    await store.copy("big", "big-copy", size=len(data))
    await store.copy("tiny", "tiny-copy", size=1)
    seen = ops(local_server, fresh_bucket_name)
    assert seen.count("UploadPartCopy") == 3 and seen.count("CopyObject") == 1
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    assert bucket.get_object("big-copy").read() == data
    assert bucket.head_object("big-copy").headers["x-oss-meta-mode"] == "33188"


# -- credentials --------------------------------------------------------------------------------------------


async def test_anonymous_store_reads_and_writes_a_public_bucket(local_server, fresh_bucket_name):
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    anonymous = ObjectStore.create(endpoint=local_server.endpoint, bucket=fresh_bucket_name, credentials=None,
                                   retry=FAST_RETRY)
    assert anonymous.access_key_id == "anonymous"
    with pytest.raises(types.AccessDenied):
        await anonymous.list_page("")
    bucket.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    await anonymous.put("public", b"anyone")
    assert await anonymous.get_bytes("public") == b"anyone"
    assert all(r["withheld_headers"] == [] for r in records(local_server, fresh_bucket_name, "public"))


@pytest.fixture(scope="module")
def sts_server(tmp_path_factory):
    """A server with two STS keys (the second stands for rotated credentials) and a bucket the first one owns."""
    server = LocalServer(tmp_path_factory.mktemp("sts-oss"), buckets=(),
                         sts=(("STS.first", "first-secret", "first-token"), ("STS.second", "second-secret",
                                                                            "second-token")))
    with server:
        bucket = oss2.Bucket(oss2.StsAuth("STS.first", "first-secret", "first-token"), server.endpoint, "rotated")
        bucket.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)  # the second key may write too
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_ram_role_credentials_rotate_without_a_new_store(sts_server):
    clock = Clock()
    with FakeEcsMetadata("EcsRole", ("STS.unknown", "x", "y", clock.now + 3600)) as metadata:
        provider = EcsRamRoleCredentials(None, endpoint=metadata.endpoint, clock=clock)
        store = ObjectStore.create(endpoint=sts_server.endpoint, bucket="rotated", credentials=provider,
                                   retry=RetryPolicy.no_retries())
        with pytest.raises(types.AccessDenied) as refused:  # the role's first credentials are not known to OSS
            await store.put("k", b"1")
        assert refused.value.code == "InvalidAccessKeyId"
        metadata.credentials = ("STS.second", "second-secret", "second-token", clock.now + 7200)
        with pytest.raises(types.AccessDenied):  # the first credentials are still fresh: not asked again yet
            await store.list_page("")
        clock.now += 3600 - 60  # less than 15% of the lifetime left: asked again before the next request
        await store.put("k", b"2")
        assert provider.access_key_id == "STS.second"
    assert [path for method, path in metadata.requests if method == "GET"] == [
        "/latest/meta-data/ram/security-credentials/", "/latest/meta-data/ram/security-credentials/EcsRole",
        "/latest/meta-data/ram/security-credentials/", "/latest/meta-data/ram/security-credentials/EcsRole"]
    put = [r for r in sts_server.admin.requests() if r["op"] == "PutObject" and r["status"] == 200][-1]
    assert put["withheld_headers"] == ["authorization", "x-oss-security-token"]


# -- transport ----------------------------------------------------------------------------------------------


async def test_tls_verification_can_be_relaxed(local_server, fresh_bucket_name, tmp_path, monkeypatch):
    await make_store(local_server, fresh_bucket_name).put("tls", b"over tls")
    with TlsProxy(("127.0.0.1", local_server.port), tmp_path / "tls", host_name="oss.example") as proxy:
        def over_tls(**kwargs) -> ObjectStore:
            return ObjectStore.create(endpoint=proxy.endpoint, bucket=fresh_bucket_name, retry=RetryPolicy.no_retries(),
                                      credentials=Credentials(local_server.access_key_id, local_server.access_key_secret),
                                      **kwargs)

        with pytest.raises(types.StoreError) as untrusted:
            await over_tls().get_bytes("tls")
        assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
        assert await over_tls(verify_tls=False).get_bytes("tls") == b"over tls"
        # The environment's bundles are the caller's business (storeconfig.tls_trust), not the store's.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.cert_path))
        with pytest.raises(types.StoreError):
            await over_tls(verify_hostname=False).get_bytes("tls")
        # A trusted certificate issued for another name: refused unless the host name check is off.
        with pytest.raises(types.StoreError) as mismatch:
            await over_tls(ca_bundle=str(proxy.cert_path)).get_bytes("tls")
        assert "CERTIFICATE_VERIFY_FAILED" in str(mismatch.value) or "hostname" in str(mismatch.value).lower()
        assert await over_tls(ca_bundle=str(proxy.cert_path), verify_hostname=False).get_bytes("tls") == b"over tls"


async def test_service_path_prefixes_every_request(tmp_path):
    with LocalServer(tmp_path / "oss", extra_args=("--service-path", "/oss-proxy")) as server:
        store = ObjectStore.create(endpoint=server.endpoint, bucket="test-bucket", service_path="/oss-proxy/",
                                   credentials=Credentials(server.access_key_id, server.access_key_secret))
        await store.put("behind/proxy", b"routed")
        assert await store.get_bytes("behind/proxy") == b"routed"
        plain = ObjectStore.create(endpoint=server.endpoint, bucket="test-bucket", retry=RetryPolicy.no_retries(),
                                   credentials=Credentials(server.access_key_id, server.access_key_secret))
        with pytest.raises(types.StoreError):
            await plain.head("behind/proxy")


def test_path_style_addresses_the_bucket_in_the_path():
    credentials = Credentials("id", "secret")
    virtual = ObjectStore.create(endpoint="http://oss.example:9000", bucket="bkt", credentials=credentials)
    path = ObjectStore.create(endpoint="http://oss.example:9000", bucket="bkt", credentials=credentials,
                              path_style=True)
    assert virtual.url("k") == "http://bkt.oss.example:9000/k"
    assert path.url("k") == "http://oss.example:9000/bkt/k"
    assert path.url("a/b c") == "http://oss.example:9000/bkt/a%2Fb%20c"
    assert ObjectStore.create(endpoint="http://127.0.0.1:9000", bucket="bkt", credentials=credentials).url("k") \
        == "http://127.0.0.1:9000/bkt/k"
