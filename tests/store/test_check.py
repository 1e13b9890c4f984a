"""Mount-time checks: `check_target` in-process and `ossmount check` as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from ossmount.check import CheckError, check_target
from ossmount.errors import EXIT_AUTH, EXIT_BUCKET, EXIT_UNREACHABLE
from ossmount.store import RetryPolicy

from .conftest import OTHER_KEY, make_store

CHECK_BUDGET = 10.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_check(*args: str, key: tuple[str, str], extra_env: dict | None = None) -> tuple[subprocess.CompletedProcess,
                                                                                        float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSS_")}
    env.update({"OSS_ACCESS_KEY_ID": key[0], "OSS_ACCESS_KEY_SECRET": key[1]}, **(extra_env or {}))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "ossmount", "check", *args], env=env, capture_output=True,
                            text=True, timeout=30)
    return result, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- check_target -----------------------------------------------------------------------------------------


async def test_check_reports_prefix_state_and_permissions(two_key_server):
    store = make_store(two_key_server, "test-bucket")
    await store.put("data/file", b"x")
    await store.put("data/sub/file", b"y")

    report = await check_target(store, "data/", check_write=True)
    assert report.prefix_exists
    assert (report.sample_objects, report.sample_prefixes) == (1, 1)
    assert report.can_write is True
    assert report.location
    text = "\n".join(report.lines())
    assert "/data/ exists" in text and "write yes" in text and two_key_server.endpoint in text

    empty = await check_target(store, "not/there/")
    assert not empty.prefix_exists
    assert empty.can_write is None
    assert "is empty" in "\n".join(empty.lines())
    # The write probe leaves nothing behind.
    assert (await store.list_all("data/"))[0][0].key == "data/file"
    assert [o.key for o in (await store.list_all("", delimiter=""))[0]] == ["data/file", "data/sub/file"]


async def test_check_of_a_foreign_bucket_is_access_denied(two_key_server):
    store = make_store(two_key_server, "other-owned")
    with pytest.raises(CheckError) as info:
        await check_target(store, "")
    assert info.value.exit_code == EXIT_BUCKET
    assert info.value.code == "AccessDenied"
    assert "oss:ListObjects" in str(info.value)


async def test_check_does_not_retry(two_key_server):
    store = make_store(two_key_server, "test-bucket", retry=RetryPolicy(max_attempts=5, base_delay=0.01))
    two_key_server.admin.set_faults([{"op": "*", "action": "error", "status": 503, "code": "ServiceUnavailable",
                                      "count": None}])
    try:
        with pytest.raises(CheckError) as info:
            await check_target(store, "")
    finally:
        two_key_server.admin.clear_faults()
    assert info.value.exit_code == EXIT_UNREACHABLE
    assert info.value.code == "ServiceUnavailable"


async def test_a_write_refusal_is_reported_not_fatal(two_key_server):
    store = make_store(two_key_server, "test-bucket")
    two_key_server.admin.set_faults([{"op": "InitiateMultipartUpload", "action": "error", "status": 403,
                                      "code": "AccessDenied", "count": None}])
    try:
        report = await check_target(store, "", check_write=True)
    finally:
        two_key_server.admin.clear_faults()
    assert report.can_write is False
    assert "write no (AccessDenied)" in "\n".join(report.lines())


# -- ossmount check ---------------------------------------------------------------------------------------


def test_cli_success_prints_the_report(two_key_server):
    result, elapsed = run_check("test-bucket:/some/prefix", "-o", f"url={two_key_server.endpoint}",
                                key=(two_key_server.access_key_id, two_key_server.access_key_secret))
    assert result.returncode == 0, result.stderr
    assert "endpoint:     " + two_key_server.endpoint in result.stdout
    assert "/some/prefix/ is empty" in result.stdout
    assert "list yes; write yes" in result.stdout
    assert "ossmount-test-secret" not in result.stdout + result.stderr


def test_cli_with_passwd_file(two_key_server, tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text(f"test-bucket:{two_key_server.access_key_id}:{two_key_server.access_key_secret}\n")
    passwd.chmod(0o600)
    result, _ = run_check("test-bucket", "-o", f"url={two_key_server.endpoint},passwd_file={passwd}",
                          key=("ignored-id", "ignored-secret"))
    assert result.returncode == 0, result.stderr
    assert f"AccessKey ID {two_key_server.access_key_id}" in result.stdout


@pytest.mark.parametrize("case, expected_code, expected_exit, hint", [
    ("bad key id", "InvalidAccessKeyId", EXIT_AUTH, "check passwd_file / OSS_ACCESS_KEY_ID"),
    ("wrong secret", "SignatureDoesNotMatch", EXIT_AUTH, "OSS_ACCESS_KEY_SECRET"),
    ("missing bucket", "NoSuchBucket", EXIT_BUCKET, "does not exist"),
    ("permission denied", "AccessDenied", EXIT_BUCKET, "grant oss:ListObjects"),
    ("unreachable", "ConnectionError", EXIT_UNREACHABLE, "cannot reach"),
])
def test_cli_failures_are_one_line_with_code_hint_and_exit_status(two_key_server, case, expected_code,
                                                                   expected_exit, hint):
    good = (two_key_server.access_key_id, two_key_server.access_key_secret)
    url, bucket, key = two_key_server.endpoint, "test-bucket", good
    if case == "bad key id":
        key = ("LTAI-unknown-key", good[1])
    elif case == "wrong secret":
        key = (good[0], "not-the-secret")
    elif case == "missing bucket":
        bucket = "no-such-bucket"
    elif case == "permission denied":
        bucket = "other-owned"
    elif case == "unreachable":
        url = f"http://127.0.0.1:{closed_port()}"
    result, elapsed = run_check(f"{bucket}:/p", "-o", f"url={url}", key=key)
    line = one_line(result.stderr)
    assert result.returncode == expected_exit, line
    assert line.startswith(f"ossmount check: {expected_code}: "), line
    assert hint in line
    assert elapsed < CHECK_BUDGET
    assert "not-the-secret" not in line and good[1] not in line
    assert result.stdout == ""


def test_cli_unroutable_endpoint_fails_within_budget():
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the connect either times out or fails at once.
    result, elapsed = run_check("bucket", "-o", "url=http://192.0.2.1:9", key=("id", "secret"))
    line = one_line(result.stderr)
    assert result.returncode == EXIT_UNREACHABLE, line
    assert line.startswith("ossmount check: ConnectionError: cannot reach http://192.0.2.1:9")
    assert elapsed < CHECK_BUDGET


def test_cli_usage_error(two_key_server):
    result, _ = run_check("-o", f"url={two_key_server.endpoint}", key=("id", "secret"))
    assert result.returncode == 2
    one_line(result.stderr)


def test_other_key_owns_its_bucket(two_key_server):
    result, _ = run_check("other-owned", "-o", f"url={two_key_server.endpoint}", key=OTHER_KEY)
    assert result.returncode == 0, result.stderr


def test_cli_with_sigv4(two_key_server):
    result, _ = run_check("test-bucket", "-o", f"url={two_key_server.endpoint},sigv4,region={two_key_server.region}",
                          key=(two_key_server.access_key_id, two_key_server.access_key_secret))
    assert result.returncode == 0, result.stderr
    assert "auth:         v4 signature" in result.stdout
    assert f"region:       {two_key_server.region}" in result.stdout


def test_cli_with_sts_token(two_key_server):
    sts_id, sts_secret, sts_token = two_key_server.sts[0]
    result, _ = run_check("test-bucket", "-o", f"url={two_key_server.endpoint}", key=(sts_id, sts_secret),
                          extra_env={"OSS_SESSION_TOKEN": "not-the-token"})
    line = one_line(result.stderr)
    assert result.returncode == EXIT_AUTH
    assert line.startswith("ossmount check: InvalidSecurityToken: ")


async def test_the_mount_check_is_one_list_request(two_key_server):
    """A mount skips GetBucketInfo: its check costs one ListObjects."""
    store = make_store(two_key_server, "test-bucket")
    two_key_server.admin.reset_counters()
    report = await check_target(store, "", v2=False, bucket_info=False)
    assert report.location is None and report.bucket_info_error is None
    assert {op: n for op, n in two_key_server.admin.counters().items() if n} == {"ListObjects": 1}
