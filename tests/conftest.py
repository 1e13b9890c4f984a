"""Shared fixtures: one `ossmount serve` subprocess per test session, and a fresh bucket per test."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import uuid

import pytest

from ossmount.testing import LocalServer

_bucket_numbers = itertools.count()
TEST_UID = 4242
TEST_USER = "ossmount-test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat: oss2's own integration suite run against the local server")
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored, and an ignored signal
    # stays ignored across exec: every child (`ls` interrupted by a test) would ignore it too. Python's own handler
    # makes the children start with the default action, as in a foreground run.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory):
    """The session's local OSS server (127.0.0.1, random port, admin API enabled); always stopped."""
    server = LocalServer(tmp_path_factory.mktemp("local-oss"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_bucket_name(local_server: LocalServer) -> str:
    """A new, empty bucket owned by the server's first key, unique to this test."""
    name = f"t-{os.getpid()}-{next(_bucket_numbers)}-{uuid.uuid4().hex[:8]}"
    local_server.oss2_bucket(name).create_bucket()
    return name


@pytest.fixture
def oss_bucket(local_server: LocalServer, fresh_bucket_name: str):
    """oss2.Bucket (V1 signatures) on a fresh bucket."""
    return local_server.oss2_bucket(fresh_bucket_name)


@pytest.fixture
def oss_bucket_v4(local_server: LocalServer, fresh_bucket_name: str):
    """oss2.Bucket (V4 signatures) on a fresh bucket."""
    return local_server.oss2_bucket(fresh_bucket_name, auth_version="v4")


@pytest.fixture(scope="session")
def test_user() -> int:
    """A non-root user (uid/gid 4242) that tests run commands as."""
    if subprocess.run(["id", "-u", TEST_USER], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "-g", str(TEST_UID), TEST_USER], capture_output=True)
        subprocess.run(["useradd", "-M", "-u", str(TEST_UID), "-g", str(TEST_UID), TEST_USER],
                       check=True, capture_output=True)
    return TEST_UID
