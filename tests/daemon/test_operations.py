"""Robustness of the operations (issue 8): targets that are busy, occupied or dead; bad credentials, missing
buckets and unreachable endpoints leave nothing behind; credentials rotate without a remount; concurrent
publishes share one process; secrets appear nowhere but in the credentials directory."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
from pathlib import Path

import oss2
import pytest

from ossmount.daemon.client import DaemonClientError
from ossmount.daemon.mountinfo import MountTable
from ossmount.testing import LocalServer, mounts_under, process_exited, processes_mentioning, wait_for

from .conftest import credentials_for, spec_for
from .test_crashes import metric, staged_and_published


def assert_nothing_left(daemon, volume_id: str) -> None:
    """No volume, state file, credentials, mount or FUSE process remains of a failed stage."""
    from ossmount.daemon.api import volume_hash

    vh = volume_hash(volume_id)
    assert daemon.client.volumes() == []
    assert not (daemon.run_dir / "state" / f"{vh}.json").exists()
    assert not (daemon.run_dir / "volumes" / vh / "creds").exists()
    assert mounts_under(str(daemon.root)) == []
    assert [p for p in processes_mentioning(str(daemon.root)) if p != daemon.process.pid] == []


@pytest.mark.parametrize("change, code, reason", [
    (dict(credentials={"access_key_secret": "wrong-secret"}), "UNAUTHENTICATED", "SignatureDoesNotMatch"),
    (dict(credentials={"access_key_id": "nobody"}), "UNAUTHENTICATED", "InvalidAccessKeyId"),
    (dict(bucket="no-such-bucket"), "NOT_FOUND", "NoSuchBucket"),
])
def test_bad_credentials_or_bucket_fail_fast_and_leave_nothing(daemon, local_server, fresh_bucket_name, change,
                                                               code, reason):
    """The check runs in the daemon before any FUSE process: one LIST, no retry, no process, no files."""
    local_server.admin.reset_counters()
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.stage("pv-bad", spec_for(local_server, change.get("bucket", fresh_bucket_name)),
                            credentials_for(local_server, **change.get("credentials", {})))
    assert (raised.value.code, raised.value.reason) == (code, reason)
    assert local_server.admin.counters() == {"ListObjectsV2": 1}
    assert_nothing_left(daemon, "pv-bad")
    assert "wrong-secret" not in raised.value.message


@pytest.mark.parametrize("options, message", [
    ("use_session_token", "use_session_token: the credentials from request have no session token"),
    ("ahbe_conf=/nonexistent/ahbe.conf", "cannot read ahbe_conf file /nonexistent/ahbe.conf"),
])
def test_options_the_mount_would_refuse_fail_the_stage_before_any_request(daemon, local_server, fresh_bucket_name,
                                                                          options, message):
    """The daemon builds its check's store as the mount does (storeconfig.open_store): what the mount would refuse
    at start is INVALID_ARGUMENT at stage, before any request, process or file."""
    local_server.admin.reset_counters()
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.stage("pv-opts", spec_for(local_server, fresh_bucket_name, options=options),
                            credentials_for(local_server))
    assert raised.value.code == "INVALID_ARGUMENT" and message in raised.value.message
    assert local_server.admin.counters() == {}
    assert_nothing_left(daemon, "pv-opts")


def test_the_check_signs_as_the_mount_will(daemon, local_server, fresh_bucket_name):
    """With public_bucket=1 the mount signs nothing, so the daemon's check does not sign either: a private bucket is
    refused at stage (the keys in the request would have passed a signed check, and the mount failed later)."""
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.stage("pv-public", spec_for(local_server, fresh_bucket_name, options="public_bucket=1"),
                            credentials_for(local_server))
    assert (raised.value.code, raised.value.reason) == ("PERMISSION_DENIED", "AccessDenied")
    assert "anonymous" in raised.value.message
    assert_nothing_left(daemon, "pv-public")


def test_unreachable_endpoint_is_unavailable_and_leaves_nothing(daemon, fresh_bucket_name):
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.stage("pv-far", {"bucket": fresh_bucket_name, "endpoint": "http://127.0.0.1:1"},
                            {"type": "access_key", "access_key_id": "a", "access_key_secret": "b"}, timeout_s=5)
    assert raised.value.code == "UNAVAILABLE" and raised.value.retryable
    assert_nothing_left(daemon, "pv-far")


def test_a_mount_that_never_gets_ready_is_killed_with_its_log_tail(daemon, tmp_path):
    """The daemon's own check passes, the FUSE process's check stalls: DEADLINE_EXCEEDED within the request's
    timeout, with the log tail, and the process it started is gone."""
    server = LocalServer(tmp_path / "oss", buckets=("slow-bucket",))
    server.start()
    try:
        server.admin.set_faults([{"op": "ListObjectsV2", "action": "delay", "delay_ms": 60000, "skip": 1}])
        with pytest.raises(DaemonClientError) as raised:
            daemon.client.stage("pv-slow", spec_for(server, "slow-bucket"), credentials_for(server), timeout_s=8)
        assert raised.value.code == "DEADLINE_EXCEEDED" and "not ready in time" in raised.value.message
        assert raised.value.log_path.endswith("ossmount.log")
        assert "checking oss://slow-bucket/ at" in raised.value.log_tail  # what the process was doing
        assert server.admin.faults()["rules"][0]["fired"] == 1  # the FUSE process was waiting on OSS
        assert_nothing_left(daemon, "pv-slow")
    finally:
        server.admin.clear_faults()
        server.stop()


def test_foreign_mount_on_a_target_is_never_touched(daemon, kubelet, local_server, fresh_bucket_name):
    pid, staging, [target] = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name,
                                                  read_only=(False,))
    foreign = kubelet.target_path("pv-crash")
    os.makedirs(foreign)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", foreign], check=True)
    try:
        Path(foreign, "precious").write_text("keep")
        for call in (lambda: daemon.client.publish("pv-crash", foreign),
                     lambda: daemon.client.unpublish("pv-crash", foreign)):
            with pytest.raises(DaemonClientError) as raised:
                call()
            assert raised.value.code == "FAILED_PRECONDITION" and "tmpfs" in raised.value.message
        assert MountTable.read().top(foreign).fstype == "tmpfs" and Path(foreign, "precious").read_text() == "keep"
    finally:
        subprocess.run(["umount", foreign], check=True)


def test_already_published_target_is_success_and_other_read_only_conflicts(daemon, kubelet, local_server,
                                                                           fresh_bucket_name):
    pid, staging, [rw, ro] = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    before = MountTable.read()
    answer = daemon.client.publish("pv-crash", rw, read_only=False, global_path=staging)
    assert answer["changed"] is None
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.publish("pv-crash", ro, read_only=False)
    assert raised.value.code == "ALREADY_EXISTS" and "read_only=True" in raised.value.message
    assert [e.mount_id for e in MountTable.read().entries] == [e.mount_id for e in before.entries]
    again = daemon.client.stage("pv-crash", spec_for(local_server, fresh_bucket_name), credentials_for(local_server),
                                global_path=staging)
    assert again["changed"] is None and again["volume"]["process"]["pid"] == pid
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.stage("pv-crash", spec_for(local_server, fresh_bucket_name), credentials_for(local_server),
                            global_path=kubelet.staging_path("elsewhere"))
    assert raised.value.code == "ALREADY_EXISTS" and "global_path" in raised.value.message


def test_busy_target_is_detached_lazily(daemon, kubelet, local_server, fresh_bucket_name):
    pid, staging, [target, other] = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    with open(Path(target, "seed.txt")) as handle:
        cwd = os.getcwd()
        os.chdir(target)
        try:
            assert daemon.client.unpublish("pv-crash", target)["changed"] == "unpublished"
        finally:
            os.chdir(cwd)
        assert MountTable.read().top(target) is None and not os.path.exists(target)
        assert handle.read() == "seed"  # the open file keeps working through the detached bind
    assert Path(other, "seed.txt").read_text() == "seed"


def test_unstage_refuses_live_targets_and_a_busy_mount_unless_forced(daemon, kubelet, local_server,
                                                                     fresh_bucket_name):
    pid, staging, [target] = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name,
                                                  read_only=(False,))
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.unstage("pv-crash")
    assert raised.value.code == "FAILED_PRECONDITION" and target in raised.value.message
    daemon.client.unpublish("pv-crash", target)
    handle = open(Path(staging, "seed.txt"))
    try:
        with pytest.raises(DaemonClientError) as raised:
            daemon.client.unstage("pv-crash")
        assert raised.value.code == "FAILED_PRECONDITION" and "busy" in raised.value.message
        assert daemon.client.volume("pv-crash")["state"] == "ready"
        assert daemon.client.unstage("pv-crash", force=True, drain_timeout_s=2)["changed"] == "unmounted"
    finally:
        try:
            handle.close()
        except OSError:
            pass  # the FUSE process was stopped under the open file (drain timeout)
    assert wait_for(lambda: process_exited(pid), bool, timeout=30)
    assert mounts_under(str(daemon.root)) == []


def test_unpublish_succeeds_when_the_backend_is_dead_or_the_prefix_deleted(daemon, kubelet, tmp_path):
    """No pod stuck Terminating: the FUSE process is dead and cannot come back (endpoint gone), or the prefix was
    deleted under a live mount; unpublish removes the target either way."""
    server = LocalServer(tmp_path / "oss", buckets=("doomed",))
    server.start()
    try:
        spec = spec_for(server, "doomed", prefix="/data")
        daemon.client.stage("pv-doomed", spec, credentials_for(server))
        live, dead = kubelet.target_path("pv-doomed"), kubelet.target_path("pv-doomed")
        for target in (live, dead):
            daemon.client.publish("pv-doomed", target)
        Path(live, "file.txt").write_text("x")
        for key in ("data/file.txt", "data/"):
            server.oss2_bucket("doomed").delete_object(key)
        assert daemon.client.unpublish("pv-doomed", live)["changed"] == "unpublished"
        assert not os.path.exists(live)
    finally:
        server.stop()
    pid = daemon.client.volume("pv-doomed")["process"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: daemon.client.volume("pv-doomed")["process"]["restarts"], bool, timeout=30)
    assert daemon.client.unpublish("pv-doomed", dead)["changed"] == "unpublished"
    assert not os.path.exists(dead) and MountTable.read().top(dead) is None
    assert daemon.client.unstage("pv-doomed")["changed"] == "unmounted"
    assert mounts_under(str(daemon.root)) == []


def test_deleted_bucket_degrades_the_volume_and_unstage_still_works(daemon, kubelet, local_server,
                                                                    fresh_bucket_name):
    pid, staging, [target] = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name,
                                                  read_only=(False,))
    bucket = local_server.oss2_bucket(fresh_bucket_name)
    for item in oss2.ObjectIterator(bucket):
        bucket.delete_object(item.key)
    bucket.delete_bucket()
    with pytest.raises(OSError):  # the upload at close gets NoSuchBucket
        Path(target, "new.txt").write_text("x")
    volume = wait_for(lambda: daemon.client.volume("pv-crash"), lambda v: v["state"] == "degraded", timeout=30)
    assert volume["state"] == "degraded" and volume["health"]["backend"]["ok"] is False
    assert volume["last_error"]["code"] == "NOT_FOUND" and "NoSuchBucket" in volume["last_error"]["message"]
    assert metric(daemon, "ossmount_daemon_backend_healthy", volume_id="pv-crash") == 0
    assert volume["process"]["pid"] == pid  # no restart helps a deleted bucket
    bucket.create_bucket()
    Path(target, "again.txt").write_text("x")
    assert wait_for(lambda: daemon.client.volume("pv-crash")["state"], lambda s: s == "ready", timeout=30) == "ready"
    daemon.client.unpublish("pv-crash", target)
    assert daemon.client.unstage("pv-crash")["changed"] == "unmounted"


def test_concurrent_publishes_of_a_new_volume_make_one_process(daemon, kubelet, local_server, fresh_bucket_name):
    staging = kubelet.staging_path("pv-many")
    targets = [kubelet.target_path("pv-many") for _ in range(8)]
    spec, keys = spec_for(local_server, fresh_bucket_name), credentials_for(local_server)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: daemon.client.publish("pv-many", t, spec=spec, credentials=keys,
                                                                 global_path=staging), targets))
    assert {a["changed"] for a in answers} == {"published"}
    volume = daemon.client.volume("pv-many")
    assert volume["process"]["generation"] == 1 and len(volume["targets"]) == 8
    assert daemon.log.count("volume pv-many: mounted") == 1
    assert len(processes_mentioning(staging)) == 1
    table = MountTable.read()
    assert len(table.at(staging)) == 1 and {table.top(t).dev for t in targets} == {volume["mount"]["dev"]}
    assert metric(daemon, "ossmount_daemon_fuse_restarts_total", volume_id="pv-many", reason="signaled") == 0


STS_ID, STS_SECRET = "STS.daemon-rotation", "sts-secret-value"


def test_sts_rotation_reaches_the_running_mount_and_bad_keys_are_refused(daemon, kubelet, tmp_path):
    server = LocalServer(tmp_path / "oss", buckets=(), sts=((STS_ID, STS_SECRET, "token-one"),))
    server.start()
    try:
        def sts(token: str) -> dict:
            return {"type": "sts", "access_key_id": STS_ID, "access_key_secret": STS_SECRET, "security_token": token,
                    "expiration": "2035-01-01T00:00:00Z"}

        bucket = oss2.Bucket(oss2.StsAuth(STS_ID, STS_SECRET, "token-one"), server.endpoint, "sts-bucket")
        bucket.create_bucket()
        answer = daemon.client.stage("pv-sts", spec_for(server, "sts-bucket"), sts("token-one"))
        pid = answer["volume"]["process"]["pid"]
        assert answer["volume"]["credentials"]["type"] == "sts"
        target = kubelet.target_path("pv-sts")
        daemon.client.publish("pv-sts", target)
        server.sts = ((STS_ID, STS_SECRET, "token-two"),)
        server.restart()  # the old token is dead from now on
        rotated = daemon.client.rotate_credentials("pv-sts", sts("token-two"))
        assert rotated["changed"] == "credentials" and rotated["volume"]["process"]["pid"] == pid
        oss2.Bucket(oss2.StsAuth(STS_ID, STS_SECRET, "token-two"), server.endpoint, "sts-bucket").put_object(
            "after-rotation.txt", b"new token")
        assert Path(target, "after-rotation.txt").read_bytes() == b"new token"  # no remount
        with pytest.raises(DaemonClientError) as raised:
            daemon.client.rotate_credentials("pv-sts", sts("token-bogus"))
        assert (raised.value.code, raised.value.reason) == ("UNAUTHENTICATED", "InvalidSecurityToken")
        Path(target, "still-works.txt").write_text("the good keys stayed")
        assert daemon.client.rotate_credentials("pv-sts", sts("token-two"))["changed"] is None
        assert metric(daemon, "ossmount_daemon_credential_rotations_total", volume_id="pv-sts", result="ok") == 1
        assert metric(daemon, "ossmount_daemon_credential_rotations_total", volume_id="pv-sts",
                      result="refused") == 1
        assert metric(daemon, "ossmount_daemon_credentials_expiry_timestamp_seconds", volume_id="pv-sts") > 0
        daemon.client.unpublish("pv-sts", target)
        daemon.client.unstage("pv-sts")
    finally:
        server.stop()


SECRET = "ultra-secret-key-0123456789"
TOKEN = "security-token-9876543210"


def test_secrets_appear_nowhere_but_in_the_credentials_directory(daemon, kubelet, tmp_path):
    server = LocalServer(tmp_path / "oss", buckets=(), credentials=(("AKID-secret-test", SECRET),),
                         sts=(("STS.secret-test", SECRET, TOKEN),))
    server.start()
    try:
        oss2.Bucket(oss2.StsAuth("STS.secret-test", SECRET, TOKEN), server.endpoint, "secret-bucket").create_bucket()
        keys = {"type": "sts", "access_key_id": "STS.secret-test", "access_key_secret": SECRET,
                "security_token": TOKEN}
        with pytest.raises(DaemonClientError) as refused:
            daemon.client.stage("pv-secret", spec_for(server, "secret-bucket"), {**keys, "security_token": TOKEN + "x"})
        target = kubelet.target_path("pv-secret")
        daemon.client.publish("pv-secret", target, spec=spec_for(server, "secret-bucket"), credentials=keys)
        daemon.client.rotate_credentials("pv-secret", keys)
        Path(target, "file.txt").write_text("data")
        pids = [p for p in processes_mentioning(str(daemon.root))]
        exposed = {
            "error": str(vars(refused.value)),
            "volumes": json.dumps(daemon.client.volumes()),
            "metrics": daemon.client.metrics(),
            "daemon log": daemon.log,
        }
        for pid in pids:
            exposed[f"argv {pid}"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            exposed[f"environ {pid}"] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        creds_dirs = list((daemon.run_dir / "volumes").glob("*/creds"))
        assert creds_dirs
        for path in daemon.root.rglob("*"):
            if path.is_file() and not any(d in path.parents for d in creds_dirs) and "kubelet" not in path.parts:
                exposed[str(path)] = path.read_bytes().decode(errors="replace")
        assert any("ossmount.log" in name for name in exposed) and any("state" in name for name in exposed)
        for name, text in exposed.items():
            assert SECRET not in text and TOKEN not in text, f"a secret leaked into {name}"
        daemon.client.unpublish("pv-secret", target)
        daemon.client.unstage("pv-secret")
    finally:
        server.stop()


def test_metrics_count_operations_and_volumes(daemon, kubelet, local_server, fresh_bucket_name):
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    with pytest.raises(DaemonClientError):
        daemon.client.publish("pv-crash", "relative")
    text = daemon.client.metrics()
    assert 'ossmount_daemon_operations_total{code="OK",op="publish"} 2.0' in text
    assert 'ossmount_daemon_operations_total{code="INVALID_ARGUMENT",op="publish"} 1.0' in text
    assert 'ossmount_daemon_volumes{state="ready"} 1.0' in text
    assert 'ossmount_daemon_targets{volume_id="pv-crash"} 2.0' in text
    assert 'ossmount_daemon_fuse_process_up{volume_id="pv-crash"} 1.0' in text
    assert "ossmount_daemon_operation_duration_seconds_bucket" in text and "ossmount_daemon_lock_wait_seconds" in text
    for target in targets:
        daemon.client.unpublish("pv-crash", target)
    daemon.client.unstage("pv-crash")
    assert 'volume_id="pv-crash"' not in "\n".join(
        line for line in daemon.client.metrics().splitlines() if line.startswith("ossmount_daemon_targets"))


def test_metrics_on_tcp(make_daemon):
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_daemon("--metrics-listen", f"127.0.0.1:{port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        assert b"ossmount_daemon_volumes" in answer.read()
    with pytest.raises(Exception) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/volumes", timeout=30)
    assert "404" in str(refused.value)
