"""s3fs-fuse and rclone mount the server's S3 dialect and read back what ossmount wrote: the same objects, the same
bytes and (s3fs, which reads x-amz-meta-mode as ossfs reads x-oss-meta-mode) the same modes. These are the peers
benchmarks/run measures; .ci/setup installs them (Debian s3fs 1.90, rclone 1.60)."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from clients import RcloneClient, S3fsClient  # noqa: E402

from .conftest import running_mount  # noqa: E402

FILES = {"hello.txt": b"hello from ossmount\n", "dir/nested/data.bin": os.urandom(300_000),
         "big.bin": os.urandom(12 * 1024 * 1024 + 123)}  # 12 MiB: ossmount uploads it as multipart


@pytest.fixture(scope="module")
def written_by_ossmount(local_server, tmp_path_factory):
    """A bucket ossmount wrote through a real mount: files, nested directories, a chmod."""
    with running_mount(local_server, tmp_path_factory.mktemp("writer")) as mount:
        for name, data in FILES.items():
            path = mount.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.chmod(mount.path / "hello.txt", 0o640)
        os.chmod(mount.path / "dir", 0o750)
        bucket = mount.bucket
    return bucket


@pytest.mark.parametrize("client_type", [S3fsClient, RcloneClient], ids=["s3fs", "rclone"])
def test_peer_reads_back_what_ossmount_wrote(client_type, local_server, written_by_ossmount, tmp_path):
    client = client_type(local_server, written_by_ossmount, tmp_path)
    reason = client.missing()
    if reason:
        pytest.fail(f"{reason}: the peers are part of the project's setup")
    try:
        client.mount()
        root = client.mountpoint
        assert sorted(os.listdir(root)) == ["big.bin", "dir", "hello.txt"]
        for name, data in FILES.items():
            content = (root / name).read_bytes()
            assert hashlib.sha256(content).digest() == hashlib.sha256(data).digest(), name
        if client.name == "s3fs":
            assert stat.S_IMODE((root / "hello.txt").stat().st_mode) == 0o640
            assert stat.S_ISDIR((root / "dir").stat().st_mode)
            assert stat.S_IMODE((root / "dir").stat().st_mode) == 0o750
        assert (root / "big.bin").stat().st_size == len(FILES["big.bin"])
    finally:
        client.close()
