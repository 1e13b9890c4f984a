"""ossmount.mounttable: which mount is on a path, mount identity and the per-mount records ("mounting twice")."""

from __future__ import annotations

import os

from ossmount.mounttable import identity, mount_at, pid_alive, probe, read_record, record_path, remove_record, \
    resolve, write_record
from ossmount.options import parse_options

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
41 22 0:41 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:2 - fuse.ossmount bkt:/p\\040q rw,user_id=0
42 41 0:42 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:3 - fuse.ossmount other:/ rw,user_id=0
43 22 0:43 / /srv rw shared:4 - tmpfs tmpfs rw
"""


def test_mount_at_returns_the_topmost_mount(tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    top = mount_at("/mnt/with space", str(table))
    assert (top.source, top.is_ossmount) == ("other:/", True)
    assert mount_at("/srv", str(table)).fstype == "tmpfs"
    assert mount_at("/nowhere", str(table)) is None
    assert mount_at("/srv", str(tmp_path / "missing")) is None
    (tmp_path / "garbage").write_text("not a mountinfo line\n")
    assert mount_at("/srv", str(tmp_path / "garbage")) is None


def test_resolve_follows_the_parent_but_never_the_last_component(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    os.symlink("/nowhere", tmp_path / "real" / "dangling")
    assert resolve(str(tmp_path / "link" / "dangling")) == str(tmp_path / "real" / "dangling")
    assert resolve("relative") == os.path.join(os.getcwd(), "relative")


def test_probe_answers_ok_or_the_errno_name(tmp_path):
    assert probe(str(tmp_path)) == "ok"
    assert probe(str(tmp_path / "missing")) == "ENOENT"


def test_identity_is_bucket_prefix_and_every_option():
    base = parse_options(["url=http://127.0.0.1:9000", "allow_other"])
    same = parse_options(["allow_other", "url=http://127.0.0.1:9000", "_netdev"])  # order, no-op options
    assert identity("b", "p/", base) == identity("b", "p/", same)
    assert identity("b", "p/", base) != identity("b", "q/", base)
    assert identity("b", "p/", base) != identity("c", "p/", base)
    assert identity("b", "p/", base) != identity("b", "p/", parse_options(["url=http://127.0.0.1:9000"]))


def test_records_are_this_process_s_and_ignore_dead_pids(tmp_path, monkeypatch):
    monkeypatch.setattr("ossmount.mounttable.runtime_dir", lambda: str(tmp_path / "run"))
    path = write_record("/mnt/x", {"bucket": "b", "identity": "i"})
    assert path == record_path("/mnt/x") and os.path.exists(path)
    record = read_record("/mnt/x")
    assert record["pid"] == os.getpid() and record["bucket"] == "b" and record["mountpoint"] == "/mnt/x"
    assert read_record("/mnt/other") is None
    remove_record("/mnt/x")
    assert read_record("/mnt/x") is None
    write_record("/mnt/y", {})
    with open(record_path("/mnt/y"), "w") as f:
        f.write('{"pid": 2147483646}')
    assert read_record("/mnt/y", require_live=False) == {"pid": 2147483646}
    assert not pid_alive(2147483646) and read_record("/mnt/y") is None
    assert not os.path.exists(record_path("/mnt/y"))  # a dead process's record is removed when seen
    with open(record_path("/mnt/z"), "w") as f:
        f.write('{"pid": 2147483646}')
    write_record("/mnt/x", {})  # and every such record goes when a mount writes its own
    assert os.listdir(tmp_path / "run" / "mounts") == [os.path.basename(record_path("/mnt/x"))]
