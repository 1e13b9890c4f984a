"""`ossmount serve` as a command: argument errors, the listening line, clean shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ossmount.errors import EXIT_CONFIG, EXIT_USAGE
from ossmount.server.cli import parse_listen
from ossmount.testing import AdminError, LocalServer


def serve(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ossmount", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def credentials_file(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("ak:sk\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("localhost:9000", ("localhost", 9000)),
    ("[::1]:8080", ("::1", 8080)),
])
def test_parse_listen(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("argv_tail, code, fragment", [
    (["--listen", "nonsense"], EXIT_USAGE, "--listen must be HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], EXIT_USAGE, "port out of range"),
    (["--listen", "127.0.0.1:0", "--bucket", "Bad_Name"], EXIT_USAGE, "invalid bucket name"),
    (["--listen", "127.0.0.1:0", "--etag", "sha1"], EXIT_USAGE, "invalid choice"),
])
def test_bad_arguments_are_one_line_usage_errors(tmp_path, credentials_file, argv_tail, code, fragment):
    result = serve("--data-dir", str(tmp_path / "d"), "--credentials", str(credentials_file), *argv_tail)
    assert result.returncode == code
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_unreadable_credentials_file_is_a_config_error(tmp_path):
    result = serve("--data-dir", str(tmp_path / "d"), "--credentials", str(tmp_path / "missing"),
                   "--listen", "127.0.0.1:0")
    assert result.returncode == EXIT_CONFIG
    assert "credentials" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_required_argument_is_a_usage_error(tmp_path):
    result = serve("--data-dir", str(tmp_path / "d"))
    assert result.returncode == EXIT_USAGE
    assert "required" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_and_data_persists(tmp_path, signum):
    server = LocalServer(tmp_path / "oss", buckets=("persisted",))
    server.start()
    try:
        server.oss2_bucket("persisted").put_object("k", b"v")
        server.process.send_signal(signum)
        assert server.process.wait(10) == 0
        server.start()
        assert server.oss2_bucket("persisted").get_object("k").read() == b"v"
    finally:
        server.stop()


def test_admin_api_disabled_without_token(tmp_path):
    with LocalServer(tmp_path / "oss", admin_token=None) as server:
        with pytest.raises(AdminError) as caught:
            server.admin.call("GET", "counters", token="anything")
        assert caught.value.status == 403


def test_restart_keeps_port(tmp_path):
    with LocalServer(tmp_path / "oss") as server:
        port = server.port
        server.restart()
        assert server.port == port
        assert server.oss2_bucket("test-bucket").get_bucket_info().name == "test-bucket"
