"""Robustness (issue 8): the daemon killed and restarted, the FUSE process killed or hung, stale mounts from a
previous run, and what a crash means for open files. Every test would fail without the feature it names."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from ossmount.daemon.mountinfo import MountTable
from ossmount.testing import mounts_under, process_exited, processes_mentioning, wait_for

from .conftest import credentials_for, spec_for

RECOVERY_TIMEOUT = 60.0


def staged_and_published(daemon, kubelet, server, bucket, volume_id="pv-crash", read_only=(False, True)):
    """Stage a volume and publish one target per entry of `read_only`; returns (pid, staging, targets)."""
    staging = kubelet.staging_path(volume_id)
    answer = daemon.client.stage(volume_id, spec_for(server, bucket), credentials_for(server), global_path=staging)
    targets = [kubelet.target_path(volume_id) for _ in read_only]
    for target, ro in zip(targets, read_only):
        daemon.client.publish(volume_id, target, read_only=ro, global_path=staging)
    Path(targets[0], "seed.txt").write_text("seed")
    return answer["volume"]["process"]["pid"], staging, targets


def wait_generation(daemon, volume_id: str, generation: int) -> dict:
    def volume() -> dict:
        return daemon.client.volume(volume_id)

    found = wait_for(volume, lambda v: v["process"]["generation"] >= generation and v["state"] == "ready",
                     timeout=RECOVERY_TIMEOUT, interval=0.1)
    assert found["process"]["generation"] == generation and found["state"] == "ready", found
    return found


def metric(daemon, name: str, **labels: str) -> float:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in daemon.client.metrics().splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_targets_work(targets, read_only=(False, True)):
    for target, ro in zip(targets, read_only):
        assert Path(target, "seed.txt").read_text() == "seed"
        if ro:
            with pytest.raises(OSError) as refused:
                Path(target, "new.txt").write_text("x")
            assert refused.value.errno == errno.EROFS
        else:
            Path(target, "new.txt").write_text("written after recovery")


def test_fuse_process_kill9_is_restarted_and_targets_rebound(daemon, kubelet, local_server, fresh_bucket_name):
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    os.kill(pid, signal.SIGKILL)
    volume = wait_generation(daemon, "pv-crash", 2)
    assert volume["process"]["pid"] != pid and volume["process"]["restarts"] == 1
    assert volume["process"]["last_exit"]["signal"] == "SIGKILL"
    assert volume["process"]["last_exit"]["reason"] == "signaled"
    assert_targets_work(targets)  # new opens through the same target paths work again
    table = MountTable.read()
    assert {table.top(t).dev for t in targets} == {table.top(staging).dev} == {volume["mount"]["dev"]}
    assert metric(daemon, "ossmount_daemon_fuse_restarts_total", volume_id="pv-crash", reason="signaled") == 1
    assert "FUSE process %d killed by SIGKILL" % pid in daemon.log


def test_hung_fuse_process_is_detected_by_statvfs_and_replaced(daemon, kubelet, local_server, fresh_bucket_name):
    """A stopped process answers nothing: only the statvfs probes (never stat) notice; it is killed and replaced."""
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    os.kill(pid, signal.SIGSTOP)
    try:
        volume = wait_generation(daemon, "pv-crash", 2)
    finally:
        if not process_exited(pid):
            os.kill(pid, signal.SIGKILL)
    assert volume["process"]["last_exit"]["reason"] == "wedged"
    assert_targets_work(targets)
    assert metric(daemon, "ossmount_daemon_fuse_restarts_total", volume_id="pv-crash", reason="wedged") == 1


def test_open_handles_see_an_error_after_a_crash_new_opens_work(daemon, kubelet, local_server, fresh_bucket_name):
    """What the README promises: a restart heals new opens; a handle opened before the crash fails."""
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name,
                                                 read_only=(False,))
    handle = open(Path(targets[0], "seed.txt"))
    os.kill(pid, signal.SIGKILL)
    wait_generation(daemon, "pv-crash", 2)
    with pytest.raises(OSError) as failed:
        handle.read()
    with pytest.raises(OSError):
        handle.close()  # the kernel reports the lost connection on close too
    assert failed.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    assert Path(targets[0], "seed.txt").read_text() == "seed"


def test_daemon_kill9_keeps_mounts_and_restart_adopts_them(make_daemon, kubelet, local_server, fresh_bucket_name):
    daemon = make_daemon()
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    daemon.kill()
    assert not process_exited(pid), "the FUSE process outlives the daemon"
    assert_targets_work(targets)  # targets keep working while no daemon runs
    daemon.start()
    volume = daemon.client.volume("pv-crash")
    assert (volume["process"]["pid"], volume["process"]["generation"], volume["state"]) == (pid, 1, "ready")
    assert sorted(t["path"] for t in volume["targets"]) == sorted(targets)
    assert metric(daemon, "ossmount_daemon_reconcile_adopted_total", outcome="adopt") == 1
    os.kill(pid, signal.SIGKILL)  # the adopted process is watched through a pidfd
    volume = wait_generation(daemon, "pv-crash", 2)
    assert volume["process"]["pid"] != pid
    assert_targets_work(targets)
    for target in targets:
        daemon.client.unpublish("pv-crash", target)
    daemon.client.unstage("pv-crash")
    assert mounts_under(str(daemon.root)) == [] and processes_mentioning(staging) == []


def test_daemon_sigterm_leaves_children_alone(make_daemon, kubelet, local_server, fresh_bucket_name):
    daemon = make_daemon()
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.socket_path)
    assert not process_exited(pid) and os.getsid(pid) == pid  # its own session
    assert_targets_work(targets)
    daemon.start()
    assert daemon.client.volume("pv-crash")["process"]["pid"] == pid


def test_bind_not_yet_recorded_is_adopted_after_a_crash(make_daemon, kubelet, local_server, fresh_bucket_name):
    """The daemon dies between a bind and its state write: the restarted daemon finds the bind in mountinfo."""
    daemon = make_daemon(env={**os.environ, "OSSMOUNT_DAEMON_FAULT": "exit-after-bind"})
    staging = kubelet.staging_path("pv-crash")
    daemon.client.stage("pv-crash", spec_for(local_server, fresh_bucket_name), credentials_for(local_server),
                        global_path=staging)
    target = kubelet.target_path("pv-crash")
    with pytest.raises(Exception):
        daemon.client.publish("pv-crash", target, read_only=True)
    daemon.process.wait(30)
    daemon.env = None
    daemon.start()
    volume = daemon.client.volume("pv-crash")
    assert volume["targets"] == [{"path": target, "read_only": True, "since": volume["targets"][0]["since"]}]
    assert daemon.client.publish("pv-crash", target, read_only=True)["changed"] is None
    assert daemon.client.unpublish("pv-crash", target)["changed"] == "unpublished"


def test_stale_mounts_of_a_previous_run_are_healed_at_start(make_daemon, kubelet, local_server, fresh_bucket_name):
    """Daemon and FUSE process both killed (a plugin container restart): the dead mount and its targets
    (ENOTCONN) are repaired when the daemon starts again."""
    daemon = make_daemon()
    pid, staging, targets = staged_and_published(daemon, kubelet, local_server, fresh_bucket_name)
    daemon.kill()
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: process_exited(pid), bool, timeout=10)
    with pytest.raises(OSError) as dead:
        os.statvfs(targets[0])
    assert dead.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    daemon.start()
    volume = wait_generation(daemon, "pv-crash", 2)
    assert volume["process"]["last_exit"]["reason"] == "stale"
    assert_targets_work(targets)


def orphaned_mount(daemon, server, bucket, *, kill_process: bool) -> tuple[str, int]:
    """A volume whose daemon died and whose state was lost: (global path, FUSE pid)."""
    answer = daemon.client.stage("pv-orphan", spec_for(server, bucket), credentials_for(server))
    global_path, pid = answer["volume"]["global_path"], answer["volume"]["process"]["pid"]
    daemon.kill()
    if kill_process:
        os.kill(pid, signal.SIGKILL)
    for state in (daemon.run_dir / "state").iterdir():
        state.unlink()
    assert MountTable.read().top(global_path) is not None
    return global_path, pid


def test_dead_orphan_mount_without_state_is_removed_at_start(make_daemon, local_server, fresh_bucket_name):
    daemon = make_daemon()
    global_path, pid = orphaned_mount(daemon, local_server, fresh_bucket_name, kill_process=True)
    daemon.start()
    assert MountTable.read().top(global_path) is None
    assert daemon.client.volumes() == []
    assert "removing the dead fuse.ossmount mount" in daemon.log
    assert metric(daemon, "ossmount_daemon_orphan_mounts") == 0


def test_live_orphan_is_counted_and_removed_only_when_asked(make_daemon, local_server, fresh_bucket_name):
    daemon = make_daemon()
    global_path, pid = orphaned_mount(daemon, local_server, fresh_bucket_name, kill_process=False)
    daemon.start()
    assert metric(daemon, "ossmount_daemon_orphan_mounts") == 1 and daemon.client.volumes() == []
    assert MountTable.read().top(global_path) is not None and not process_exited(pid)  # never touched by default
    daemon.stop()
    daemon.start(extra_args=["--cleanup-orphans"])
    assert MountTable.read().top(global_path) is None
    assert metric(daemon, "ossmount_daemon_orphan_mounts") == 0
    assert wait_for(lambda: process_exited(pid), bool, timeout=30), "its FUSE process ends with its mount"
