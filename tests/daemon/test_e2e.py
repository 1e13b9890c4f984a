"""Acceptance (issue 8): kubelet's sequence against a real daemon — three pods share one FUSE process, one of them
read-only; data written through one target is read through another; unpublish in any order; the FUSE process
exits after unstage and nothing stays mounted."""

from __future__ import annotations

import errno
import os

import pytest

from ossmount.daemon.mountinfo import MountTable
from ossmount.testing import mounts_under, process_exited, processes_mentioning, wait_for

from .conftest import credentials_for, spec_for

ORDERS = {"middle-first": (1, 0, 2), "read-only-first": (2, 1, 0), "creation-order": (0, 1, 2)}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_three_targets_share_one_fuse_process(daemon, kubelet, local_server, fresh_bucket_name, order):
    client = daemon.client
    volume_id = f"pv-{fresh_bucket_name}"
    staging = kubelet.staging_path(volume_id)
    staged = client.stage(volume_id, spec_for(local_server, fresh_bucket_name, prefix="/shared"),
                          credentials_for(local_server), global_path=staging)
    assert staged["changed"] == "mounted"
    pid = staged["volume"]["process"]["pid"]
    targets = [kubelet.target_path(volume_id) for _ in range(3)]
    for index, target in enumerate(targets):
        answer = client.publish(volume_id, target, read_only=index == 2, global_path=staging)
        assert answer["changed"] == "published"
        assert answer["volume"]["process"]["pid"] == pid

    volume = client.volume(volume_id)
    assert volume["process"]["pid"] == pid and volume["process"]["generation"] == 1
    assert sorted(t["path"] for t in volume["targets"]) == sorted(targets)
    assert processes_mentioning(staging) == [pid]  # one FUSE process for the volume, by pid
    table = MountTable.read()
    [global_mount] = table.at(staging)
    assert global_mount.fstype == "fuse.ossmount"
    assert all(table.top(target).dev == global_mount.dev for target in targets)
    assert [table.top(target).read_only for target in targets] == [False, False, True]

    with open(os.path.join(targets[0], "from-pod-0.txt"), "w") as handle:
        handle.write("written through the first target\n")
    with open(os.path.join(targets[1], "from-pod-0.txt")) as handle:
        assert handle.read() == "written through the first target\n"
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("shared/from-pod-0.txt").read() == (
        b"written through the first target\n")
    with pytest.raises(OSError) as refused:
        open(os.path.join(targets[2], "from-pod-2.txt"), "w")
    assert refused.value.errno == errno.EROFS
    with pytest.raises(OSError) as refused:
        os.mkdir(os.path.join(targets[2], "dir"))
    assert refused.value.errno == errno.EROFS
    with open(os.path.join(targets[2], "from-pod-0.txt")) as handle:
        assert handle.read().startswith("written")

    remaining = list(range(3))
    for index in order:
        assert client.unpublish(volume_id, targets[index])["changed"] == "unpublished"
        remaining.remove(index)
        assert not os.path.exists(targets[index]), "unpublish removes the target directory"
        for other in remaining:
            assert os.listdir(targets[other]) == ["from-pod-0.txt"]
    assert client.unpublish(volume_id, targets[order[0]])["changed"] is None  # idempotent

    assert client.unstage(volume_id)["changed"] == "unmounted"
    assert wait_for(lambda: process_exited(pid), bool, timeout=30), "the FUSE process exits after unstage"
    assert mounts_under(str(daemon.root)) == []
    assert client.volumes() == []
    assert client.unstage(volume_id)["changed"] is None  # idempotent
