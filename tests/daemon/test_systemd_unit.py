"""The daemon's systemd unit (helpers/ossmountd.service) and `ossmount install-helper --systemd`."""

from __future__ import annotations

import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ossmount.daemon.client import DaemonClient, DaemonClientError
from ossmount.helper_install import UNIT_NAME, installed_command, render_unit

REPO_UNIT = Path(__file__).resolve().parents[2] / "helpers" / UNIT_NAME


def unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_repo_unit_matches_the_installer_template():
    assert REPO_UNIT.read_text() == render_unit(None)


def test_unit_keeps_fuse_processes_alive_and_shares_the_host_mount_namespace():
    settings = unit_settings(render_unit(None))
    assert settings["KillMode"] == "process" and settings["Type"] == "notify" and settings["Restart"] == "always"
    for isolating in ("PrivateTmp", "ProtectSystem", "ProtectHome", "MountFlags", "PrivateMounts"):
        assert isolating not in settings


def test_install_helper_systemd_writes_a_unit_systemd_accepts(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ossmount", "install-helper", "--systemd", "--unit-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    unit = tmp_path / UNIT_NAME
    assert result.stdout.strip() == str(unit) and "systemctl daemon-reload" in result.stderr
    assert unit.stat().st_mode & 0o777 == 0o644
    assert unit_settings(unit.read_text())["ExecStart"].startswith(installed_command() + " daemon ")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr


def test_the_units_command_line_runs_a_daemon_that_notifies_systemd(tmp_path, daemon_root):
    """ExecStart as installed (paths moved under the test root) starts a daemon that sends READY=1."""
    argv = shlex.split(unit_settings(render_unit(installed_command()))["ExecStart"])
    moved = {"/run/ossmount/ossmountd.sock": str(daemon_root / "d.sock"), "/run/ossmount": str(daemon_root / "run"),
             "/var/lib/kubelet": str(daemon_root / "kubelet")}
    argv = [moved.get(word, word) for word in argv]
    notify_path = str(daemon_root / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(60)
        process = subprocess.Popen(argv, env={"NOTIFY_SOCKET": notify_path, "PATH": "/usr/bin:/bin"},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert notify.recv(4096) == b"READY=1"
            client = DaemonClient(str(daemon_root / "d.sock"))
            assert client.health()["status"] == "ok"
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopping the API" in stderr.decode()
    with pytest.raises(DaemonClientError):
        client.health()
