"""Ownership and modes through real mounts, as root and as a non-root user (issue 3, rule 1)."""

from __future__ import annotations

import os
import stat

import pytest

from tests.fuse.conftest import as_user


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_root_is_0700_for_the_mounting_user_and_refuses_others(make_mount, test_user):
    mount = make_mount()
    st = os.stat(mount.path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, os.getuid(), os.getgid())
    assert as_user(test_user, "ls", str(mount.path)).returncode != 0


@pytest.mark.parametrize("mp_umask, expected, user_allowed", [("007", 0o770, False), ("077", 0o700, False),
                                                             ("002", 0o775, True)])
def test_allow_other_with_mp_umask(make_mount, test_user, mp_umask, expected, user_allowed):
    mount = make_mount(f"allow_other,mp_umask={mp_umask}")
    mount.server.oss2_bucket(mount.bucket).put_object("visible", b"x")
    assert mode_of(mount.path) == expected
    result = as_user(test_user, "ls", str(mount.path))
    assert (result.returncode == 0) == user_allowed, result.stderr
    if user_allowed:
        assert result.stdout.split() == [b"visible"]


def test_created_files_are_0644_under_umask_022(make_mount):
    mount = make_mount()
    old = os.umask(0o022)
    try:
        (mount.path / "new").write_bytes(b"x")
        (mount.path / "newdir").mkdir()
    finally:
        os.umask(old)
    assert mode_of(mount.path / "new") == 0o644
    assert mode_of(mount.path / "newdir") == 0o755


def test_umask_option_overrides_stored_modes(make_mount):
    """`-o umask=022` makes foreign files 0755 (0777 & ~umask, whatever is stored)."""
    mount = make_mount("umask=022")
    bucket = mount.server.oss2_bucket(mount.bucket)
    bucket.put_object("foreign", b"x")
    bucket.put_object("dir/inner", b"x")
    assert mode_of(mount.path / "foreign") == 0o755
    assert mode_of(mount.path / "dir") == 0o755


def test_umask_133_chmod_is_stored_and_shown_after_remount(make_mount):
    """With umask=133, chmod 777 then stat shows 0644; remounted without umask the file shows 0777."""
    mount = make_mount("umask=133")
    (mount.path / "f").write_bytes(b"x")
    os.chmod(mount.path / "f", 0o777)
    assert mode_of(mount.path / "f") == 0o644
    mount.remount("")
    assert mode_of(mount.path / "f") == 0o777


def test_uid_gid_options_let_that_user_read_and_write(make_mount, test_user):
    mount = make_mount(f"uid={test_user},gid={test_user},allow_other")
    mount.server.oss2_bucket(mount.bucket).put_object("theirs", b"hello",
                                                      headers={"x-oss-meta-mode": str(stat.S_IFREG | 0o600)})
    st = os.stat(mount.path / "theirs")
    assert (st.st_uid, st.st_gid) == (test_user, test_user)
    read = as_user(test_user, "cat", str(mount.path / "theirs"))
    assert read.returncode == 0 and read.stdout == b"hello", read.stderr
    write = as_user(test_user, "sh", "-c", f"echo written > {mount.path}/mine && cat {mount.path}/mine")
    assert write.returncode == 0 and write.stdout == b"written\n", write.stderr
    head = mount.server.oss2_bucket(mount.bucket).head_object("mine")
    assert int(head.headers["x-oss-meta-uid"]) == test_user


def test_foreign_file_is_0640_and_other_users_are_refused(make_mount, test_user):
    mount = make_mount("allow_other")
    mount.server.oss2_bucket(mount.bucket).put_object("secret", b"s")
    assert mode_of(mount.path / "secret") == 0o640
    result = as_user(test_user, "cat", str(mount.path / "secret"))
    assert result.returncode != 0 and b"Permission denied" in result.stderr


def test_non_root_user_mounts_and_owns_the_tree(fuse_for_users, make_mount, test_user):
    """Mounted by a non-root user: root 0700 owned by that user, new objects store its uid, root is refused."""
    mount = make_mount(user=test_user)
    listing = as_user(test_user, "stat", "-c", "%a %u %g", str(mount.path))
    assert listing.returncode == 0 and listing.stdout.split() == [b"700", str(test_user).encode(),
                                                                   str(test_user).encode()], listing.stderr
    write = as_user(test_user, "sh", "-c", f"umask 022 && echo data > {mount.path}/made && stat -c %a {mount.path}/made")
    assert write.returncode == 0 and write.stdout == b"644\n", write.stderr
    head = mount.server.oss2_bucket(mount.bucket).head_object("made")
    assert int(head.headers["x-oss-meta-uid"]) == test_user
    # Without allow_other, FUSE lets only the mounting user in (not even root).
    with pytest.raises(PermissionError):
        os.listdir(mount.path)
