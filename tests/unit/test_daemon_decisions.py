"""ossmount.daemon.decisions and .mountinfo: what the daemon does in each observed situation (sans-IO)."""

from __future__ import annotations

import pytest

from ossmount.daemon.decisions import (
    STATE_TRANSITIONS,
    STATES,
    InvalidTransition,
    ProbeVerdict,
    PublishAction,
    ReconcileAction,
    RestartPolicy,
    TargetState,
    UnpublishAction,
    classify_target,
    probe_verdict,
    publish_action,
    reconcile_action,
    reconcile_targets,
    transition,
    unpublish_action,
)
from ossmount.daemon.mountinfo import MountEntry, MountTable, parse_line

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
100 27 0:50 / /run/ossmount/mnt/vh/globalmount rw,nosuid,nodev,relatime - fuse.ossmount data:/train rw,user_id=0
101 27 0:50 / /var/lib/kubelet/pods/a/volumes/kubernetes.io~csi/pv/mount rw,nosuid,nodev,relatime - fuse.ossmount data:/train rw
102 27 0:50 / /var/lib/kubelet/pods/b/volumes/kubernetes.io~csi/pv/mount ro,nosuid,nodev,relatime - fuse.ossmount data:/train rw
103 27 0:61 / /var/lib/kubelet/pods/c/volumes/kubernetes.io~csi/pv/mount rw - tmpfs tmpfs rw
104 27 0:50 / /tmp/with\\040space/mount rw - fuse.ossmount data:/train rw
105 27 0:50 /sub /var/lib/kubelet/pods/d/mount rw - fuse.ossmount data:/train rw
106 27 0:44 / /run/ossmount/mnt/old/globalmount rw - fuse.ossmount data:/old rw
"""
TABLE = MountTable.parse(MOUNTINFO)
GLOBAL = "/run/ossmount/mnt/vh/globalmount"
POD = "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/pv/mount"


def test_mountinfo_parsing():
    entry = TABLE.top(GLOBAL)
    assert entry == MountEntry(100, 27, "0:50", "/", GLOBAL, ("rw", "nosuid", "nodev", "relatime"),
                               "fuse.ossmount", "data:/train")
    assert entry.is_ossmount and not entry.read_only and entry.describe() == "fuse.ossmount data:/train"
    assert TABLE.top(POD.format("b")).read_only
    assert TABLE.top("/tmp/with space/mount").mount_id == 104  # octal escapes decoded
    assert TABLE.top("/nowhere") is None and TABLE.at("/nowhere") == []
    assert [e.mount_id for e in TABLE.with_dev("0:50")] == [100, 101, 102, 104, 105]
    assert [e.mount_point for e in TABLE.under("/run/ossmount/mnt")] == [
        "/run/ossmount/mnt/old/globalmount", GLOBAL]
    with pytest.raises(ValueError):
        parse_line("garbage")


def test_stacked_mounts_top_is_the_last():
    stacked = MountTable.parse(MOUNTINFO + "107 101 0:70 / " + POD.format("a") + " rw - tmpfs tmpfs rw\n")
    assert stacked.top(POD.format("a")).fstype == "tmpfs"
    assert len(stacked.at(POD.format("a"))) == 2


def test_every_state_is_reachable_and_unmounting_is_final():
    reachable = {"mounting"} | set(STATE_TRANSITIONS.values())
    assert reachable == set(STATES)
    assert transition("mounting", "mounted") == "ready"
    assert transition("ready", "crashed") == "recovering"
    assert transition("recovering", "gave_up") == "failed"
    assert transition("failed", "restarted") == "ready"
    assert transition("degraded", "backend_ok") == "ready"
    for event in ("crashed", "backend_failed", "restarted", "mounted"):
        with pytest.raises(InvalidTransition):
            transition("unmounting", event)


TARGET_CASES = [
    # top mount at the target, volume dev, old devs, dead, expected
    (None, "0:50", (), False, TargetState.FREE),
    ("a", "0:50", (), False, TargetState.OURS),
    ("a", "0:51", ("0:50",), False, TargetState.STALE),  # a bind of an earlier generation
    ("a", "0:51", (), True, TargetState.STALE),  # a dead fuse.ossmount left there
    ("a", "0:51", (), False, TargetState.FOREIGN),  # a live mount of another volume
    ("c", "0:50", (), True, TargetState.FOREIGN),  # tmpfs: never ours, dead or not
]


@pytest.mark.parametrize("pod, dev, old, dead, expected", TARGET_CASES)
def test_classify_target(pod, dev, old, dead, expected):
    top = TABLE.top(POD.format(pod)) if pod else None
    assert classify_target(top, dev, old, dead) is expected


PUBLISH_CASES = [
    # state, requested ro, recorded ro, mounted ro, action
    (TargetState.FREE, False, None, None, PublishAction.BIND),
    (TargetState.FREE, True, False, None, PublishAction.BIND),  # recorded but gone: bind as asked now
    (TargetState.OURS, False, False, False, PublishAction.NOTHING),
    (TargetState.OURS, True, None, True, PublishAction.NOTHING),  # unrecorded but identical: adopt
    (TargetState.OURS, True, False, False, PublishAction.CONFLICT),
    (TargetState.OURS, False, None, True, PublishAction.CONFLICT),
    (TargetState.STALE, False, False, None, PublishAction.REBIND),
    (TargetState.STALE, True, False, None, PublishAction.CONFLICT),
    (TargetState.FOREIGN, False, None, False, PublishAction.REFUSE),
]


@pytest.mark.parametrize("state, requested, recorded, mounted, action", PUBLISH_CASES)
def test_publish_action(state, requested, recorded, mounted, action):
    assert publish_action(state, requested, recorded_read_only=recorded, mounted_read_only=mounted) is action


@pytest.mark.parametrize("pod, devs, action", [
    (None, (), UnpublishAction.NOTHING),
    ("a", (), UnpublishAction.UNMOUNT),  # any fuse.ossmount: an unknown volume's target still goes
    ("c", (), UnpublishAction.REFUSE),  # tmpfs: not ours
    ("c", ("0:61",), UnpublishAction.UNMOUNT),
])
def test_unpublish_action(pod, devs, action):
    top = TABLE.top(POD.format(pod)) if pod else None
    assert unpublish_action(top, devs) is action


@pytest.mark.parametrize("alive, mounted, statvfs, action", [
    (True, True, "ok", ReconcileAction.ADOPT),
    (True, True, "timeout", ReconcileAction.RECOVER),
    (True, True, "ENOTCONN", ReconcileAction.RECOVER),
    (False, True, "ENOTCONN", ReconcileAction.RECOVER),
    (False, True, "ok", ReconcileAction.RECOVER),
    (True, False, None, ReconcileAction.KILL_AND_DROP),
    (False, False, None, ReconcileAction.DROP),
])
def test_reconcile_action(alive, mounted, statvfs, action):
    assert reconcile_action(alive, mounted, statvfs) is action


def test_reconcile_targets_keeps_adopts_and_drops():
    recorded = [POD.format("a"), POD.format("gone")]
    found = reconcile_targets(recorded, TABLE, "0:50", GLOBAL, ("/var/lib/kubelet",))
    assert found.keep == (POD.format("a"),)
    assert found.drop == (POD.format("gone"),)
    # b is an unrecorded bind (the daemon died between bind and record); /tmp is outside the allowed prefixes
    # and pods/d binds a subdirectory (root /sub), not the volume
    assert [e.mount_point for e in found.adopt] == [POD.format("b")]
    assert found.adopt[0].read_only
    everything = reconcile_targets([], TABLE, "0:50", GLOBAL)
    assert "/tmp/with space/mount" in [e.mount_point for e in everything.adopt]
    assert reconcile_targets(recorded, TABLE, None, GLOBAL).drop == tuple(recorded)


@pytest.mark.parametrize("result, before, verdict, after", [
    ("ok", 2, ProbeVerdict.HEALTHY, 0),
    ("ENOTCONN", 1, ProbeVerdict.CRASHED, 0),
    ("ECONNABORTED", 0, ProbeVerdict.CRASHED, 0),
    ("timeout", 0, ProbeVerdict.SLOW, 1),
    ("timeout", 1, ProbeVerdict.SLOW, 2),
    ("timeout", 2, ProbeVerdict.WEDGED, 3),
    ("EACCES", 1, ProbeVerdict.ERROR, 1),
])
def test_probe_verdict(result, before, verdict, after):
    assert probe_verdict(result, before, threshold=3) == (verdict, after)


def test_restart_backoff_doubles_caps_and_gives_up_per_window():
    policy = RestartPolicy(initial=1, factor=2, maximum=5, max_restarts=4, window=600)
    now = 10_000.0
    assert [policy.delay([now] * n, now) for n in range(5)] == [1, 2, 4, 5, None]
    assert policy.delay([now - 700] * 4, now) == 1  # old attempts have left the window
    assert RestartPolicy().delay([], now) == 1 and RestartPolicy().delay([now] * 5, now) is None
