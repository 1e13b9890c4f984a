"""`ossmount install-helper --prune-updatedb` (issue 13, item 6): fuse.ossmount joins PRUNEFS, idempotently,
keeping every other line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ossmount.ops.updatedb import pruned_types, updatedb_prunes, with_fstype_pruned

DEBIAN = '''PRUNE_BIND_MOUNTS="yes"
# PRUNENAMES=".git .bzr .hg .svn"
PRUNEPATHS="/tmp /var/spool /media /var/lib/os-prober /var/lib/ceph /home/.ecryptfs /var/lib/schroot"
PRUNEFS="NFS afs autofs binfmt_misc ceph cgroup cifs coda configfs curlftpfs debugfs devfs devpts devtmpfs fuse.mfs fuse.sshfs"
'''


@pytest.mark.parametrize("text, expected", [
    (DEBIAN, DEBIAN.replace('fuse.sshfs"', 'fuse.sshfs fuse.ossmount"')),
    ('PRUNEFS = "nfs"  # spaces\n', 'PRUNEFS = "nfs fuse.ossmount"  # spaces\n'),
    ('PRUNEFS=""\n', 'PRUNEFS="fuse.ossmount"\n'),
    ("PRUNEPATHS=\"/tmp\"", 'PRUNEPATHS="/tmp"\nPRUNEFS="fuse.ossmount"\n'),
    ("", 'PRUNEFS="fuse.ossmount"\n'),
    ('PRUNEFS="a"\r\nPRUNEFS="b"\r\n', 'PRUNEFS="a"\r\nPRUNEFS="b fuse.ossmount"\r\n'),  # the last one counts
    ('PRUNEFS="nfs FUSE.OSSMOUNT"\n', 'PRUNEFS="nfs FUSE.OSSMOUNT"\n'),  # matched case-insensitively
])
def test_fstype_joins_prunefs(text, expected):
    assert with_fstype_pruned(text) == expected
    assert with_fstype_pruned(expected) == expected
    assert "fuse.ossmount" in [t.lower() for t in pruned_types(expected)]


def test_prune_updatedb_edits_a_copy_idempotently(tmp_path):
    conf = tmp_path / "updatedb.conf"
    conf.write_text(DEBIAN)
    conf.chmod(0o644)
    assert updatedb_prunes(str(conf)) is False
    command = [sys.executable, "-m", "ossmount", "install-helper", "--prune-updatedb", "--updatedb-conf", str(conf)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "added" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "already has" in second.stdout
    text = conf.read_text()
    assert text.splitlines()[:3] == DEBIAN.splitlines()[:3] and text.count("fuse.ossmount") == 1
    assert conf.stat().st_mode & 0o777 == 0o644
    assert updatedb_prunes(str(conf)) is True
    assert updatedb_prunes(str(tmp_path / "missing")) is None
    missing = subprocess.run([*command[:-1], str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 0 and "does not exist" in missing.stdout
