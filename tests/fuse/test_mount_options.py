"""Mount options that change what the tree looks like, and the mount's lifecycle (issue 3, rules 2, 5)."""

from __future__ import annotations

import os
import signal
import stat

import pytest


@pytest.mark.parametrize("complement_stat", [True, False])
def test_complement_stat(make_mount, complement_stat):
    """With complement_stat a `dir/` object without x-oss-meta-mode is a directory; without it, a file."""
    mount = make_mount("" if complement_stat else "nocomplement_stat")
    mount.server.oss2_bucket(mount.bucket).put_object("bare/", b"",
                                                      headers={"Content-Type": "application/octet-stream"})
    st = os.stat(mount.path / "bare")
    if complement_stat:
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    else:
        assert stat.S_ISREG(st.st_mode)
        assert "bare/" in mount.log


def test_mime_option_points_elsewhere(make_mount, tmp_path):
    types = tmp_path / "my.types"
    types.write_text("# test table\napplication/x-ossmount-test   osmt OSMX\n")
    mount = make_mount(f"mime={types}")
    (mount.path / "file.osmt").write_bytes(b"x")
    (mount.path / "FILE.OSMX").write_bytes(b"x")
    (mount.path / "plain.txt").write_bytes(b"x")
    bucket = mount.server.oss2_bucket(mount.bucket)
    assert bucket.head_object("file.osmt").headers["Content-Type"] == "application/x-ossmount-test"
    assert bucket.head_object("FILE.OSMX").headers["Content-Type"] == "application/x-ossmount-test"
    assert bucket.head_object("plain.txt").headers["Content-Type"] == "application/octet-stream"


def test_sigterm_flushes_open_files_unmounts_and_exits_0(make_mount):
    mount = make_mount()
    fd = os.open(mount.path / "pending", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"written but never closed")
        mount.process.send_signal(signal.SIGTERM)
        code = mount.process.wait(timeout=30)
        mount.process = None
        assert code == 0, mount.log
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the filesystem is gone (ENOTCONN): expected after SIGTERM
    assert not os.path.ismount(mount.path)
    assert mount.server.oss2_bucket(mount.bucket).get_object("pending").read() == b"written but never closed"


def test_unmount_with_fusermount_exits_0_and_remount_sees_data(make_mount):
    mount = make_mount()
    (mount.path / "kept").write_bytes(b"persisted")
    mount.remount()
    assert (mount.path / "kept").read_bytes() == b"persisted"
