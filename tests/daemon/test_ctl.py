"""`ossmount ctl`: every operation of the API from the command line (its error codes are in test_api.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ossmount.testing import process_exited, wait_for


def ctl(daemon, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ossmount", "ctl", "--socket", str(daemon.socket_path), *argv],
                          capture_output=True, text=True, timeout=120, env=env)


def test_every_operation_through_ctl(daemon, kubelet, local_server, fresh_bucket_name, daemon_root):
    passwd = daemon_root / "passwd"
    passwd.write_text(f"{fresh_bucket_name}:{local_server.access_key_id}:{local_server.access_key_secret}\n")
    passwd.chmod(0o600)
    url = local_server.endpoint

    result = ctl(daemon, "health")
    assert result.returncode == 0 and result.stdout.startswith("ok: ossmount ")

    result = ctl(daemon, "stage", "pv-one", f"{fresh_bucket_name}:/one", "--url", url, "--passwd-file", str(passwd),
                 "-o", "umask=022", "-o", "allow_other,max_stat_cache_size=1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mounted: volume pv-one ready, pid ") and "0 target(s)" in result.stdout

    target = kubelet.target_path("pv-one")
    result = ctl(daemon, "publish", "pv-one", target, "--read-only")
    assert result.returncode == 0 and result.stdout.startswith("published: volume pv-one ready")

    other = kubelet.target_path("pv-two")  # implicit stage, credentials from the environment
    env = {**os.environ, "OSS_ACCESS_KEY_ID": local_server.access_key_id,
           "OSS_ACCESS_KEY_SECRET": local_server.access_key_secret}
    result = ctl(daemon, "publish", "pv-two", other, "--source", f"{fresh_bucket_name}:/two", "--url", url, env=env)
    assert result.returncode == 0, result.stderr
    Path(other, "hello.txt").write_text("hi")

    result = ctl(daemon, "volumes")
    header, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["VOLUME", "STATE", "PID", "GEN", "TARGETS"]
    assert [row.split()[0] for row in rows] == ["pv-one", "pv-two"]
    assert rows[0].split()[1:2] == ["ready"] and f"{fresh_bucket_name}:/one" in rows[0]

    volume = json.loads(ctl(daemon, "volume", "pv-one").stdout)
    assert volume["targets"][0] == {"path": target, "read_only": True, "since": volume["targets"][0]["since"]}
    assert volume["spec"]["options"][:2] == ["umask=022", "allow_other"]
    assert json.loads(ctl(daemon, "--json", "volumes").stdout)["volumes"][1]["volume_id"] == "pv-two"

    result = ctl(daemon, "rotate-credentials", "pv-one", "--passwd-file", str(passwd))
    assert result.returncode == 0 and result.stdout.startswith("unchanged: volume pv-one")

    result = ctl(daemon, "metrics")
    assert 'ossmount_daemon_volumes{state="ready"} 2.0' in result.stdout

    pids = [v["process"]["pid"] for v in json.loads(ctl(daemon, "--json", "volumes").stdout)["volumes"]]
    for volume_id, path in (("pv-one", target), ("pv-two", other)):
        result = ctl(daemon, "unpublish", volume_id, path)
        assert result.returncode == 0 and result.stdout.startswith(f"unpublished: volume {volume_id}")
        result = ctl(daemon, "--json", "unstage", volume_id, "--drain-timeout", "20")
        assert result.returncode == 0 and json.loads(result.stdout) == {"changed": "unmounted", "volume": None}
    assert wait_for(lambda: all(process_exited(pid) for pid in pids), bool, timeout=30)
    assert ctl(daemon, "volumes").stdout.strip() == "no volumes"
    assert local_server.oss2_bucket(fresh_bucket_name).get_object("two/hello.txt").read() == b"hi"


def test_ctl_usage_errors_are_one_line(daemon):
    result = ctl(daemon, "stage", "pv", "bkt")
    assert result.returncode == 2 and result.stderr.strip() == "ossmount ctl: --url is needed to stage a volume"
    result = ctl(daemon, "frobnicate")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    result = ctl(daemon, "--help")
    assert result.returncode == 0 and "rotate-credentials" in result.stdout


def test_crashes_and_busy_targets_through_ctl(make_daemon, kubelet, local_server, fresh_bucket_name, daemon_root):
    """The robustness items as an operator sees them with ctl: a killed FUSE process comes back, a killed daemon
    re-adopts its volume, a busy target still unpublishes, unstage waits for the last target."""
    import signal

    daemon = make_daemon()
    passwd = daemon_root / "passwd"
    passwd.write_text(f"{local_server.access_key_id}:{local_server.access_key_secret}\n")
    passwd.chmod(0o600)
    staging = kubelet.staging_path("pv-ops")
    assert ctl(daemon, "stage", "pv-ops", fresh_bucket_name, "--url", local_server.endpoint, "--passwd-file",
               str(passwd), "--global-path", staging).returncode == 0
    busy, live = kubelet.target_path("pv-ops"), kubelet.target_path("pv-ops")
    for target in (busy, live):
        assert ctl(daemon, "publish", "pv-ops", target).returncode == 0

    def volume() -> dict:
        return json.loads(ctl(daemon, "volume", "pv-ops").stdout)

    first = volume()["process"]["pid"]
    os.kill(first, signal.SIGKILL)
    healed = wait_for(volume, lambda v: v["process"]["generation"] == 2 and v["state"] == "ready", timeout=60)
    assert healed["process"]["last_exit"]["signal"] == "SIGKILL"
    Path(busy, "after-crash.txt").write_text("x")

    daemon.kill()
    daemon.start()
    assert volume()["process"]["pid"] == healed["process"]["pid"]

    with open(Path(busy, "after-crash.txt")):
        result = ctl(daemon, "unpublish", "pv-ops", busy)
        assert result.returncode == 0 and result.stdout.startswith("unpublished")
    result = ctl(daemon, "unstage", "pv-ops")
    assert result.returncode == 7 and "FAILED_PRECONDITION" in result.stderr and live in result.stderr
    assert ctl(daemon, "unpublish", "pv-ops", live).returncode == 0
    assert ctl(daemon, "unstage", "pv-ops").stdout.startswith("unmounted")
    assert wait_for(lambda: process_exited(healed["process"]["pid"]), bool, timeout=30)
