"""Reliability of writes (issue 12, items 2 and 3) through real mounts killed with SIGKILL:

* acknowledged-or-kept writes survive a crash: the next mount of the bucket (or `ossmount recover`) uploads what a
  commit (close/fsync) had started or what a failed one kept, unless the object changed meanwhile — then the
  bytes are kept aside and the log says where; data never committed is never uploaded;
* no orphaned uploads: an abort that fails is retried in the background; the next mount (or `ossmount cleanup`)
  aborts incomplete uploads ossmount started that nobody owns.

Every wait is a bounded poll on a condition (a journal record, a request counter), never a sleep."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import oss2
import pytest

from ossmount.testing import wait_for

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def tmpdir_option(tmp_path) -> Path:
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def no_faults_left(local_server):
    local_server.admin.clear_faults()
    yield
    local_server.admin.clear_faults()


def crash(mount) -> None:
    """kill -9 the FUSE process and clear its dead mount (what an operator does after such a crash)."""
    os.kill(mount.process.pid, signal.SIGKILL)
    mount.process.wait(timeout=30)
    mount.process = None
    subprocess.run(["fusermount3", "-uz", str(mount.path)], capture_output=True)
    mount._close_log()


def records(tmpdir: Path) -> list[dict]:
    """Every journal record under the spool of `tmpdir` (see ossmount/fs/journal.py)."""
    found = []
    for path in sorted(tmpdir.glob("ossmount-spool-*/*/*/[0-9]*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return found


def uploads(bucket) -> list:
    return list(oss2.MultipartUploadIterator(bucket))


def kept_aside(tmpdir: Path) -> list[Path]:
    return sorted(p for p in tmpdir.glob(f"ossmount-conflicts-{os.getuid()}/*") if not p.name.endswith(".json"))


def close_in_thread(fd: int) -> tuple[threading.Thread, list]:
    """close(fd) in a thread (it blocks while the mount uploads); the list gets the error, if any."""
    outcome: list = []

    def close() -> None:
        try:
            os.close(fd)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    return thread, outcome


def create_and_write(path: Path, data: bytes) -> int:
    """Create `path` as `cp` does (an empty file first), write `data` in 1 MiB writes; the descriptor, still open."""
    path.write_bytes(b"")
    fd = os.open(path, os.O_WRONLY)
    for offset in range(0, len(data), MiB):
        os.write(fd, data[offset:offset + MiB])
    return fd


def fail_close_then_crash(local_server, mount, tmpdir: Path, name: str, data: bytes) -> None:
    """Create `name`, write `data` and close it while every PutObject fails (close is EIO: the data is kept), then
    kill -9 the mount and let the server answer again."""
    (mount.path / name).write_bytes(b"")
    local_server.admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError"}])
    fd = os.open(mount.path / name, os.O_WRONLY)
    os.write(fd, data)
    with pytest.raises(OSError) as refused:
        os.close(fd)
    assert refused.value.errno == errno.EIO
    [record] = records(tmpdir)
    assert record["state"] == "failed" and record["key"] == name
    crash(mount)
    local_server.admin.clear_faults()


def test_data_kept_after_a_failed_close_survives_kill_9(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},retries=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    fail_close_then_crash(local_server, mount, tmpdir_option, "kept.txt", b"acknowledged with EIO, so it must be kept")
    assert bucket.get_object("kept.txt").read() == b""
    mount.start()
    uploaded = wait_for(lambda: bucket.get_object("kept.txt").read(), lambda body: body != b"", timeout=30)
    assert uploaded == b"acknowledged with EIO, so it must be kept"
    assert (mount.path / "kept.txt").read_bytes() == uploaded
    wait_for(lambda: records(tmpdir_option), lambda found: not found, timeout=30)
    assert records(tmpdir_option) == []
    assert "recovery" in mount.log and "kept.txt" in mount.log


def test_a_streamed_file_whose_close_failed_survives_kill_9(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},retries=1,multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    data = os.urandom(3 * MiB + 12345)
    # Two parts go up while the file is written, every later part fails: close is EIO, the upload stays open with
    # the two parts, every other byte is in the spool.
    local_server.admin.set_faults([{"op": "UploadPart", "action": "error", "status": 500, "code": "InternalError",
                                    "skip": 2}])
    fd = create_and_write(mount.path / "parts.bin", data)
    with pytest.raises(OSError) as refused:
        os.close(fd)
    assert refused.value.errno == errno.EIO
    [record] = records(tmpdir_option)
    assert record["state"] == "failed" and len(record["upload"]["parts"]) == 2
    crash(mount)
    local_server.admin.clear_faults()
    assert len(uploads(bucket)) == 1
    mount.start()
    wait_for(lambda: uploads(bucket), lambda found: not found, timeout=60)
    assert bucket.get_object("parts.bin").read() == data
    assert records(tmpdir_option) == []


def test_kept_data_of_an_object_changed_since_is_set_aside_not_uploaded(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},retries=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    fail_close_then_crash(local_server, mount, tmpdir_option, "shared.txt", b"the writer's version")
    bucket.put_object("shared.txt", b"another client's newer version")
    mount.start()
    [aside] = wait_for(lambda: kept_aside(tmpdir_option), lambda found: len(found) == 1, timeout=30)
    assert aside.read_bytes() == b"the writer's version"
    sidecar = json.loads(Path(str(aside) + ".json").read_text())
    assert sidecar["key"] == "shared.txt" and sidecar["written_ranges"] == [[0, 20]]
    assert bucket.get_object("shared.txt").read() == b"another client's newer version"
    wait_for(lambda: records(tmpdir_option), lambda found: not found, timeout=30)
    assert str(aside) in mount.log  # "... the bytes kept locally are in PATH"


def test_kill_9_during_the_upload_at_close_then_the_next_mount_finishes_it(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    data = os.urandom(4 * MiB + 5)
    fd = create_and_write(mount.path / "slow.bin", data)
    # The server holds back its answers to the uploads at close: the close is in progress when the mount is killed.
    local_server.admin.set_faults([{"op": "UploadPart", "action": "delay", "delay_ms": 60_000}])
    thread, outcome = close_in_thread(fd)
    found = wait_for(lambda: records(tmpdir_option),
                     lambda found: any(r.get("state") == "committing" for r in found), timeout=30)
    assert [r["state"] for r in found] == ["committing"], found
    crash(mount)
    thread.join(timeout=30)
    assert outcome and isinstance(outcome[0], OSError)  # the writer was told: its close did not succeed
    local_server.admin.clear_faults()
    mount.start()
    wait_for(lambda: bucket.get_object("slow.bin").read(), lambda body: body == data, timeout=60)
    wait_for(lambda: uploads(bucket), lambda found: not found, timeout=30)
    assert bucket.get_object("slow.bin").read() == data
    assert kept_aside(tmpdir_option) == []


def test_kill_9_mid_write_uploads_nothing_and_leaves_no_upload(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    bucket.put_object("old.bin", b"the committed version")
    bucket.put_object("patched.bin", b"0123456789")
    fd = os.open(mount.path / "old.bin", os.O_WRONLY | os.O_TRUNC)
    patch = os.open(mount.path / "patched.bin", os.O_WRONLY)
    local_server.admin.reset_counters()
    for _ in range(4):
        os.write(fd, os.urandom(MiB))
    os.pwrite(patch, b"NEW", 3)  # a write into an existing object: spooled
    wait_for(lambda: local_server.admin.counters().get("UploadPart", 0), lambda n: n >= 2, timeout=30)
    assert len(uploads(bucket)) == 1
    crash(mount)
    for descriptor in (fd, patch):
        try:
            os.close(descriptor)
        except OSError:
            pass
    mount.start()  # default stale_upload_hours: the journal, not the age, names the dead mount's upload
    wait_for(lambda: uploads(bucket), lambda found: not found, timeout=30)
    assert bucket.get_object("old.bin").read() == b"the committed version"
    assert bucket.get_object("patched.bin").read() == b"0123456789"
    # The spooled bytes of the never-committed patch are set aside, not uploaded, and the log says where.
    [aside] = wait_for(lambda: kept_aside(tmpdir_option), lambda found: len(found) == 1, timeout=30)
    assert aside.read_bytes()[3:6] == b"NEW"
    assert "never committed" in mount.log and "old.bin" in mount.log
    wait_for(lambda: records(tmpdir_option), lambda found: not found, timeout=30)


def test_a_failed_close_is_retried_in_the_background(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},retries=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    (mount.path / "later.txt").write_bytes(b"")
    local_server.admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError"}])
    fd = os.open(mount.path / "later.txt", os.O_WRONLY)
    os.write(fd, b"lands without another close")
    with pytest.raises(OSError):
        os.close(fd)
    local_server.admin.clear_faults()  # the server is back: the kept data lands without another flush
    body = wait_for(lambda: bucket.get_object("later.txt").read(), lambda b: b != b"", timeout=30)
    assert body == b"lands without another close"
    wait_for(lambda: records(tmpdir_option), lambda found: not found, timeout=30)


def test_a_failed_abort_is_retried_in_the_background(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    fd = os.open(mount.path / "scratch.bin", os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(3):
        os.write(fd, os.urandom(MiB))
    wait_for(lambda: uploads(bucket), lambda found: len(found) == 1, timeout=30)
    local_server.admin.set_faults([{"op": "AbortMultipartUpload", "action": "error", "status": 500,
                                    "code": "InternalError", "count": 3}])
    os.unlink(mount.path / "scratch.bin")  # the open file's upload is abandoned: its abort fails 3 times
    assert os.pread(fd, 4, 2 * MiB) != b""  # the open handle still reads what was kept locally
    wait_for(lambda: uploads(bucket), lambda found: not found, timeout=60)
    assert local_server.admin.counters().get("AbortMultipartUpload", 0) >= 4
    os.close(fd)
    assert not bucket.object_exists("scratch.bin")


def _orphan_an_upload(local_server, make_mount, tmpdir: Path, key: str):
    """Start a streamed upload through a mount and kill it, leaving an incomplete, marked upload behind."""
    mount = make_mount(f"tmpdir={tmpdir},multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    fd = os.open(mount.path / key, os.O_WRONLY | os.O_CREAT, 0o644)
    for _ in range(3):
        os.write(fd, os.urandom(MiB))
    wait_for(lambda: uploads(bucket), lambda found: len(found) == 1, timeout=30)
    crash(mount)
    try:
        os.close(fd)
    except OSError:
        pass
    return mount, bucket


def test_the_next_mount_aborts_stale_uploads_it_recognises_by_their_marker(local_server, make_mount, tmp_path):
    """Another machine's mount died (its journal is not here): only the marker and the age say it is stale."""
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    first.mkdir()
    second.mkdir()
    mount, bucket = _orphan_an_upload(local_server, make_mount, first, "orphan.bin")
    foreign = bucket.init_multipart_upload("someone-elses.bin").upload_id  # another tool's: no marker
    [orphan] = [u for u in uploads(bucket) if u.key == "orphan.bin"]
    other = make_mount(f"tmpdir={second},stale_upload_hours=0", bucket=mount.bucket)
    wait_for(lambda: [u.key for u in uploads(bucket)], lambda keys: "orphan.bin" not in keys, timeout=30)
    assert [u.upload_id for u in uploads(bucket)] == [foreign]
    assert orphan.upload_id in other.log  # "aborted the incomplete multipart upload ..."
    bucket.abort_multipart_upload("someone-elses.bin", foreign)


def test_a_young_upload_of_another_machine_is_left_to_its_owner(local_server, make_mount, tmp_path):
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    first.mkdir()
    second.mkdir()
    mount, bucket = _orphan_an_upload(local_server, make_mount, first, "busy.bin")
    local_server.admin.reset_counters()
    make_mount(f"tmpdir={second}", bucket=mount.bucket)  # default: only uploads older than 24 hours
    listed = wait_for(lambda: local_server.admin.counters().get("ListMultipartUploads", 0), lambda n: n >= 1,
                      timeout=30)
    assert listed >= 1  # the mount looked
    assert [u.key for u in uploads(bucket)] == ["busy.bin"]
    assert local_server.admin.counters().get("AbortMultipartUpload", 0) == 0


def _cli(local_server, mount, tmpdir: Path, *args: str) -> subprocess.CompletedProcess:
    options = f"url={local_server.endpoint},passwd_file={mount.passwd_file},tmpdir={tmpdir}"
    return subprocess.run([sys.executable, "-m", "ossmount", *args, "-o", options], capture_output=True, text=True,
                          timeout=120)


def test_ossmount_cleanup_lists_and_aborts_stale_uploads(local_server, make_mount, tmp_path):
    first, elsewhere = tmp_path / "machine-a", tmp_path / "machine-b"
    first.mkdir()
    elsewhere.mkdir()
    mount, bucket = _orphan_an_upload(local_server, make_mount, first, "left.bin")
    foreign = bucket.init_multipart_upload("foreign.bin").upload_id
    young = _cli(local_server, mount, elsewhere, "cleanup", mount.bucket)
    assert young.returncode == 0, young.stderr
    assert "1 started by ossmount less than 24 hours ago left alone" in young.stdout
    dry = _cli(local_server, mount, elsewhere, "cleanup", mount.bucket, "--older-than", "0", "--dry-run")
    assert dry.returncode == 0 and "would abort: left.bin upload" in dry.stdout, dry.stdout + dry.stderr
    assert len(uploads(bucket)) == 2
    done = _cli(local_server, mount, elsewhere, "cleanup", mount.bucket, "--older-than", "0")
    assert "aborted: left.bin upload" in done.stdout and "1 without ossmount's marker left alone" in done.stdout
    assert [u.key for u in uploads(bucket)] == ["foreign.bin"]
    everyone = _cli(local_server, mount, elsewhere, "cleanup", mount.bucket, "--older-than=0", "--all")
    assert everyone.returncode == 0 and f"aborted: foreign.bin upload {foreign}" in everyone.stdout
    assert uploads(bucket) == []
    for result in (young, dry, done, everyone):
        assert "Traceback" not in result.stdout + result.stderr


def test_ossmount_cleanup_leaves_uploads_this_machine_still_owns(local_server, make_mount, tmpdir_option):
    """A record kept for a retry names its upload: cleanup must not abort it (recovery completes it)."""
    mount = make_mount(f"tmpdir={tmpdir_option},retries=1,multipart_size=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    local_server.admin.set_faults([{"op": "UploadPart", "action": "error", "status": 500, "code": "InternalError",
                                    "skip": 1}])
    fd = os.open(mount.path / "owned.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    for _ in range(3):
        os.write(fd, os.urandom(MiB))
    with pytest.raises(OSError):
        os.close(fd)
    crash(mount)
    local_server.admin.clear_faults()
    result = _cli(local_server, mount, tmpdir_option, "cleanup", mount.bucket, "--older-than", "0")
    assert "1 owned by a mount of this machine left alone" in result.stdout, result.stdout + result.stderr
    assert len(uploads(bucket)) == 1


def test_ossmount_recover_uploads_what_a_dead_mount_kept(local_server, make_mount, tmpdir_option):
    mount = make_mount(f"tmpdir={tmpdir_option},retries=1")
    bucket = local_server.oss2_bucket(mount.bucket)
    fail_close_then_crash(local_server, mount, tmpdir_option, "a.txt", b"recovered by the command")
    result = _cli(local_server, mount, tmpdir_option, "recover", mount.bucket)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{mount.bucket}: uploaded   a.txt" in result.stdout
    assert bucket.get_object("a.txt").read() == b"recovered by the command"
    assert records(tmpdir_option) == []
    again = _cli(local_server, mount, tmpdir_option, "recover")
    assert again.returncode == 0 and "nothing to recover" in again.stdout


def test_cleanup_and_recover_fail_with_one_line(local_server, make_mount, tmpdir_option, tmp_path):
    mount = make_mount(f"tmpdir={tmpdir_option}")
    wrong = tmp_path / "wrong-passwd"
    wrong.write_text(f"{mount.bucket}:{local_server.access_key_id}:not-the-secret\n")
    wrong.chmod(0o600)
    for command in (["cleanup", mount.bucket], ["recover", mount.bucket, "--bogus"],
                    ["cleanup", mount.bucket, "--older-than", "soon"], ["cleanup"]):
        result = subprocess.run([sys.executable, "-m", "ossmount", *command, "-o",
                                 f"url={local_server.endpoint},passwd_file={wrong},tmpdir={tmpdir_option}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
