"""`ossmount serve` as a command: argument errors, the listening line, clean shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ossmount.errors import EXIT_CONFIG, EXIT_USAGE
from ossmount.server.cli import parse_listen
from ossmount.testing import AdminError, LocalServer, wait_for


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
    (["--listen", "127.0.0.1:0", "--idle-timeout", "0"], EXIT_USAGE, "must be a positive number of seconds"),
    (["--listen", "127.0.0.1:0", "--header-timeout", "soon"], EXIT_USAGE, "not a number of seconds"),
    (["--listen", "127.0.0.1:0", "--body-timeout", "inf"], EXIT_USAGE, "must be a positive number of seconds"),
    (["--listen", "127.0.0.1:0", "--max-connections", "0"], EXIT_USAGE, "must be a positive integer"),
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


def test_max_connections_beyond_the_open_file_limit_is_lowered_with_a_warning(tmp_path, credentials_file):
    """A --max-connections the hard RLIMIT_NOFILE cannot hold is served at what fits, with one warning line."""
    import resource

    hard = 512
    script = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({hard}, {hard})); "
              "sys.argv = ['ossmount'] + sys.argv[1:]; from ossmount.cli import main; sys.exit(main())")
    process = subprocess.Popen(
        [sys.executable, "-c", script, "serve", "--data-dir", str(tmp_path / "d"), "--credentials",
         str(credentials_file), "--listen", "127.0.0.1:0", "--max-connections", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("ossmount serve: listening on http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    warnings = [line for line in stderr.splitlines() if "--max-connections" in line]
    assert len(warnings) == 1 and f"allows {(hard - 64) // 3} connections" in warnings[0], stderr
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] != hard  # only the child was limited


def test_a_server_started_by_a_killed_test_run_stops_with_it(tmp_path):
    """A test run killed outright (SIGKILL, the OOM killer) runs no fixture teardown: the servers it started must
    still stop (testing.die_with_parent), not stay behind holding ports and data directories."""
    runner = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from ossmount.testing import LocalServer\n"
        "server = LocalServer(sys.argv[1]).start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"), str(tmp_path / "oss")], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(runner.stdout.readline())
    finally:
        runner.kill()
        runner.wait()
    assert wait_for(lambda: _running(server_pid), lambda running: not running, timeout=30) is False


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
