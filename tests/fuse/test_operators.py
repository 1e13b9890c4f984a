"""Operators' tools through real mounts (issue 13): `ossmount stats` charges each OSS request to the process
that caused it, exactly as the server counted them; metrics_listen= metrics agree with the server; dirty and
failed files show; the log level changes at runtime; only the owner and root may ask."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ossmount import USER_AGENT
from ossmount.testing import wait_for


PSEUDO = ("[mount]", "[unmount]", "[background]", "[kernel]", "[other processes]")


def stats(mount, *extra: str, user: int | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ossmount", "stats", str(mount.path), *extra]
    if user is not None:
        command = ["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def stats_json(mount) -> dict:
    result = stats(mount, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def server_counts(mount) -> Counter:
    """What the server counted of this mount's requests (its bucket, ossmount's User-Agent), per operation."""
    return Counter(r["op"] for r in mount.server.admin.requests()
                   if r["bucket"] == mount.bucket and USER_AGENT in (r["user_agent"] or ""))


def charged(document: dict) -> Counter:
    total: Counter = Counter()
    for process in document["processes"]:
        total.update(process["requests"])
    return total


def populate(mount, files: int = 6) -> None:
    bucket = mount.server.oss2_bucket(mount.bucket)
    for number in range(files):
        bucket.put_object(f"tree/d{number % 2}/f{number}.txt", f"contents {number}\n".encode() * 50)


def test_find_and_cat_are_charged_their_own_requests_exactly(make_mount):
    mount = make_mount()
    populate(mount)
    find = subprocess.Popen(["find", str(mount.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listed, _ = find.communicate(timeout=60)
    assert find.returncode == 0 and b"f5.txt" in listed
    cat = subprocess.Popen(["cat", str(mount.path / "tree/d1/f3.txt")], stdout=subprocess.PIPE)
    data, _ = cat.communicate(timeout=60)
    assert data == b"contents 3\n" * 50
    document = stats_json(mount)
    by_pid = {p["pid"]: p for p in document["processes"]}
    find_row, cat_row = by_pid[find.pid], by_pid[cat.pid]
    assert find_row["command"] == "find" and cat_row["command"] == "cat"
    assert find_row["uid"] == 0
    assert find_row["requests"]["ListObjectsV2"] >= 3 and find_row["requests"]["HeadObject"] >= 1
    assert "GetObject" not in find_row["requests"]
    assert cat_row["requests"]["GetObject"] >= 1 and cat_row["bytes_in"] == len(data)
    assert set(cat_row["requests"]) <= {"GetObject", "HeadObject"}
    # Every request the mount sent is charged to exactly one process, as the server counted them.
    assert charged(document) == server_counts(mount)
    assert document["requests"]["by_operation"] == dict(server_counts(mount))
    assert {p["command"] for p in document["processes"]} <= {"find", "cat", *PSEUDO}
    text = stats(mount, "--by", "operation")
    assert text.returncode == 0 and "ListObjectsV2" in text.stdout and f"find (pid {find.pid})" in text.stdout


def test_metrics_scraped_during_a_workload_agree_with_the_server(make_mount):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mount = make_mount(f"metrics_listen=127.0.0.1:{port},multipart_size=1")
    url = f"http://127.0.0.1:{port}/metrics"
    scrapes: list[str] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            scrapes.append(urllib.request.urlopen(url, timeout=30).read().decode())

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for number in range(8):
            (mount.path / f"w{number}.bin").write_bytes(os.urandom(1024 * (number + 1)))
        (mount.path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))  # multipart
        for number in range(8):
            assert len((mount.path / f"w{number}.bin").read_bytes()) == 1024 * (number + 1)
        os.listdir(mount.path)
    finally:
        done.set()
        scraper.join(timeout=60)
    assert scrapes
    for text in scrapes:  # every scrape taken during the workload parses
        list(text_string_to_metric_families(text))
    families = {f.name: f for f in text_string_to_metric_families(urllib.request.urlopen(url, timeout=30).read()
                                                                   .decode())}
    per_operation: Counter = Counter()
    for sample in families["ossmount_oss_requests"].samples:
        if sample.name == "ossmount_oss_requests_total":
            per_operation[sample.labels["operation"]] += int(sample.value)
    assert per_operation == server_counts(mount)
    assert per_operation["UploadPart"] == 4 and per_operation["CompleteMultipartUpload"] == 1
    durations = Counter({s.labels["operation"]: int(s.value)
                         for s in families["ossmount_oss_request_duration_seconds"].samples
                         if s.name.endswith("_count")})
    assert durations == per_operation
    log = [r for r in mount.server.admin.requests() if r["bucket"] == mount.bucket]
    sent = next(s.value for s in families["ossmount_oss_sent_bytes"].samples)
    received = next(s.value for s in families["ossmount_oss_received_bytes"].samples)
    assert sent == sum(r["request_bytes"] for r in log if r["op"] in ("PutObject", "UploadPart"))
    assert received == sum(r["bytes"] for r in log if r["op"] == "GetObject")
    fuse_ops = {s.labels["operation"] for s in families["ossmount_fuse_operations"].samples}
    assert {"create", "write", "flush", "release", "read", "lookup"} <= fuse_ops
    for name in ("ossmount_cache_hits", "ossmount_cache_misses", "ossmount_prefetch_hits", "ossmount_dirty_bytes",
                 "ossmount_upload_failures", "ossmount_oss_retries", "ossmount_fuse_operation_duration_seconds"):
        assert name in families, name
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for family in families.values():  # the README names every metric
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{shown}` |" in readme, shown


def test_a_dirty_open_file_shows_with_its_size_until_closed(make_mount):
    mount = make_mount()
    target = mount.path / "dir-ty" / "open.bin"
    target.parent.mkdir()
    # Another process holds the file open: a fork of this one (each `ossmount stats` run) would close an
    # inherited descriptor, and every close flushes.
    holder = subprocess.Popen([sys.executable, "-c", "import sys; f = open(sys.argv[1], 'wb', buffering=0); "
                               "f.write(b'x' * 12345); print('written', flush=True); sys.stdin.read(); f.close()",
                               str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"written\n"
        document = stats_json(mount)
        [dirty] = document["dirty_files"]
        assert dirty["path"] == str(target) and dirty["size"] == 12345 and dirty["dirty_bytes"] == 12345
        assert dirty["state"] == "dirty" and dirty["open_handles"] == 1 and dirty["age_seconds"] >= 0
        assert document["files"]["dirty_bytes"] == 12345
        assert str(target) in stats(mount).stdout
    finally:
        holder.communicate(b"", timeout=60)
    assert holder.returncode == 0
    assert stats_json(mount)["dirty_files"] == []


def test_a_failed_upload_shows_with_the_oss_error_code(make_mount):
    mount = make_mount()
    admin = mount.server.admin
    target = mount.path / "refused.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)  # creating uploads the empty object at once
    admin.set_faults([{"op": "PutObject", "action": "error", "status": 403, "code": "AccessDenied",
                       "message": "Injected refusal", "count": None}])
    try:
        os.write(fd, b"kept in the spool")
        with pytest.raises(OSError) as closing:
            os.close(fd)
        assert closing.value.errno in (errno.EIO, errno.EACCES)
        document = stats_json(mount)
        text = stats(mount).stdout  # while the refusal lasts: the kept data is retried in the background
    finally:
        admin.clear_faults()
    [failed] = document["dirty_files"]
    assert failed["path"] == str(target) and failed["state"] == "failed"
    assert failed["error_code"] == "AccessDenied" and failed["error_request_id"]
    assert failed["size"] == len(b"kept in the spool")
    [error] = [e for e in document["last_errors"] if e["operation"] == "PutObject"][:1]
    assert error["code"] == "AccessDenied" and error["key"] == "refused.txt" and error["status"] == 403
    assert error["request_id"] == failed["error_request_id"]
    assert "failed: AccessDenied" in text and "PutObject 'refused.txt' AccessDenied" in text
    assert document["files"]["upload_failures"] >= 1


def test_log_level_changes_at_runtime_by_command_and_signals(make_mount, tmp_path):
    log_path = tmp_path / "level.log"
    mount = make_mount(f"logfile={log_path}")

    def debug_lines() -> int:
        return log_path.read_text().count(" DEBUG ") if log_path.exists() else 0

    os.listdir(mount.path)
    assert debug_lines() == 0
    result = stats(mount, "--set-log-level", "debug")
    assert result.returncode == 0 and "log level is now debug" in result.stdout
    os.listdir(mount.path / ".")
    (mount.path / "after-debug").write_text("x")
    assert wait_for(debug_lines, bool, timeout=10)
    assert stats_json(mount)["log"]["level"] == "debug"
    os.kill(mount.process.pid, signal.SIGHUP)  # back to dbglevel= (crit)
    assert wait_for(lambda: stats_json(mount)["log"]["level"], lambda level: level == "crit", timeout=10) == "crit"
    os.kill(mount.process.pid, signal.SIGUSR1)  # one step more verbose
    assert wait_for(lambda: stats_json(mount)["log"]["level"], lambda level: level == "err", timeout=10) == "err"
    bad = stats(mount, "--set-log-level", "loud")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_only_the_owner_and_root_may_ask(make_mount, test_user):
    mount = make_mount()
    refused = stats(mount, user=test_user)
    assert refused.returncode == 7 and "Traceback" not in refused.stderr
    assert "only the mount's owner" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    record = next(r for r in __import__("ossmount.ops.control", fromlist=["x"]).all_records()
                  if r["mountpoint"] == str(mount.path))
    assert os.stat(record["control_socket"]).st_mode & 0o777 == 0o600


def test_the_records_directory_is_readable_by_everyone_whoever_made_it(make_mount, test_user):
    """The control socket and the record share a directory, which either may create first; a 0700 one (what the
    control socket's own creation made) hid every record from users: `ossmount stats` then said "no record"."""
    from ossmount import mounttable

    directory = os.path.join(mounttable.runtime_dir(), "mounts")
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o700)
    mount = make_mount()
    assert os.stat(directory).st_mode & 0o777 == 0o755
    refused = stats(mount, user=test_user)
    assert "only the mount's owner" in refused.stderr, refused.stderr


def test_a_users_mount_answers_its_owner_and_root(fuse_for_users, make_mount, test_user):
    users_mount = make_mount(user=test_user)
    assert stats(users_mount, user=test_user).returncode == 0  # the owner
    assert stats(users_mount).returncode == 0  # root


def test_stats_of_a_path_that_is_no_ossmount_mount_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ossmount", "stats", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 7 and "is no ossmount mount" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_stats_through_a_bind_mount_of_the_mount(make_mount, tmp_path):
    mount = make_mount()
    target = tmp_path / "bound"
    target.mkdir()
    subprocess.run(["mount", "--bind", str(mount.path), str(target)], check=True)
    try:
        result = subprocess.run([sys.executable, "-m", "ossmount", "stats", str(target), "--json"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["mountpoint"] == str(mount.path)
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_metrics_port_in_use_fails_the_mount_before_mounting(make_mount):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        mount = make_mount(f"metrics_listen=127.0.0.1:{port}", start=False)
        result = subprocess.run(mount.argv(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and not os.listdir(mount.path)
