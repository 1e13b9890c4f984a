"""ossmount.mounttable: mountinfo parsing and mount identity (the pure parts of "mounting twice")."""

from __future__ import annotations

import os

from ossmount.mounttable import identity, mount_at, parse_mountinfo, pid_alive, read_record, record_path, \
    remove_record, write_record
from ossmount.options import parse_options

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
41 22 0:41 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:2 - fuse.ossmount bkt:/p\\040q rw,user_id=0
42 41 0:42 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:3 - fuse.ossmount other:/ rw,user_id=0
43 22 0:43 / /srv rw shared:4 - tmpfs tmpfs rw
garbage line without separator
"""


def test_parse_mountinfo_unescapes_and_keeps_order():
    entries = parse_mountinfo(MOUNTINFO)
    assert [(e.mountpoint, e.fstype, e.source) for e in entries] == [
        ("/", "ext4", "/dev/sda1"),
        ("/mnt/with space", "fuse.ossmount", "bkt:/p q"),
        ("/mnt/with space", "fuse.ossmount", "other:/"),
        ("/srv", "tmpfs", "tmpfs"),
    ]


def test_mount_at_returns_the_topmost_mount(tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    assert mount_at("/mnt/with space", str(table)).source == "other:/"
    assert mount_at("/srv", str(table)).fstype == "tmpfs"
    assert mount_at("/nowhere", str(table)) is None
    assert mount_at("/srv", str(tmp_path / "missing")) is None


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
