"""Secrets (issue 12, item 8): credentials taken from the environment leave the mount process's environment, and
https endpoints are verified, with a CA bundle option and one line when a certificate is refused.

Other parts of item 8 are tested where they live: passwd file modes (tests/unit/test_credentials.py::
test_file_mode_rule, and the CLI's one line in test_cli_errors.py[mount-passwd-file-too-open]); allow_other off by
default and modes the kernel enforces (tests/fuse/test_ownership.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ossmount.credentials import SECRET_ENV_NAMES
from ossmount.errors import EXIT_UNREACHABLE
from ossmount.procenv import entries_to_wipe, environment_block_bounds
from ossmount.testing import TlsProxy, processes_mentioning, wait_for
from tests.fuse.conftest import is_mounted, make_mount  # noqa: F401 - make_mount: the fixture
from tests.reliability.test_cli_errors import assert_one_line

# Both namings at once: ours is read, ossfs's must vanish as well.
FAKE_TOKEN = "STS-token-that-must-not-leak"
NO_CA_BUNDLE_ENV = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}


def secret_environ(server) -> dict[str, str]:
    return {"OSS_ACCESS_KEY_ID": server.access_key_id, "OSS_ACCESS_KEY_SECRET": server.access_key_secret,
            "OSSACCESSKEYID": server.access_key_id, "OSSSECRETACCESSKEY": server.access_key_secret,
            "OSSSESSIONTOKEN": FAKE_TOKEN}


def assert_no_credentials_in(pid: int, server) -> None:
    with open(f"/proc/{pid}/environ", "rb") as block:
        environ = block.read()
    with open(f"/proc/{pid}/cmdline", "rb") as block:
        cmdline = block.read()
    for text in (environ, cmdline):
        for name in SECRET_ENV_NAMES:
            assert name.encode() + b"=" not in text
        assert server.access_key_secret.encode() not in text and FAKE_TOKEN.encode() not in text
    assert b"PATH=" in environ  # the rest of the environment is still there


def test_foreground_mount_drops_environment_credentials(make_mount):
    """`ossmount -f` with credentials in its environment (as systemd or a container runs it): they sign requests,
    then neither /proc/PID/environ nor /proc/PID/cmdline of the FUSE process shows a name or a value."""
    mount = make_mount(start=False, passwd=False)
    mount.env = secret_environ(mount.server)
    mount.start()
    (mount.path / "signed.txt").write_bytes(b"with environment keys")
    assert mount.server.oss2_bucket(mount.bucket).get_object("signed.txt").read() == b"with environment keys"
    assert_no_credentials_in(mount.process.pid, mount.server)


def test_detached_mount_child_never_sees_environment_credentials(make_mount):
    """Without -f the parent hands the credentials to the detached FUSE process on a pipe: its environment never
    held them, and its argv names only the pipe's descriptor."""
    mount = make_mount(start=False, passwd=False)
    command = mount.argv()
    command.remove("-f")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **secret_environ(mount.server)})
    assert result.returncode == 0, result.stderr
    try:
        (pid,) = processes_mentioning(str(mount.path))
        assert_no_credentials_in(pid, mount.server)
        assert b"--credentials-fd" in Path(f"/proc/{pid}/cmdline").read_bytes()
        (mount.path / "signed.txt").write_bytes(b"detached")
        assert mount.server.oss2_bucket(mount.bucket).get_object("signed.txt").read() == b"detached"
    finally:
        subprocess.run(["fusermount3", "-u", str(mount.path)], capture_output=True)
        wait_for(lambda: is_mounted(mount.path), lambda mounted: not mounted, timeout=30)


CHILD_VIEW = r"""
import ctypes, json, os, subprocess, sys
from ossmount.credentials import take_environment_credentials
taken = take_environment_credentials()
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
print(json.dumps({
    "taken": sorted(taken),
    "own_block": open("/proc/self/environ", "rb").read().decode("latin-1"),
    "python_child": subprocess.run(["cat", "/proc/self/environ"], capture_output=True).stdout.decode("latin-1"),
    "libc_child": subprocess.run("cat /proc/$$/environ", shell=True, capture_output=True, env=None
                                 ).stdout.decode("latin-1"),
    "system_child": os.popen("env").read(),
    "getenv": [libc.getenv(name.encode()) is not None for name in ("OSS_ACCESS_KEY_SECRET", "OSSSESSIONTOKEN")],
    "kept": os.environ.get("KEEP_ME"),
}))
"""


def test_taken_credentials_reach_no_child_by_any_route():
    """After take_environment_credentials: not in the process's own block, not in a child started by Python
    (os.environ), by the shell (libc's environ through os.popen/system), nor visible to getenv(3)."""
    env = {**os.environ, "KEEP_ME": "yes", "OSS_ACCESS_KEY_ID": "AKID", "OSS_ACCESS_KEY_SECRET": "the-secret",
           "OSSSESSIONTOKEN": "the-token"}
    result = subprocess.run([sys.executable, "-c", CHILD_VIEW], capture_output=True, text=True, env=env, timeout=60,
                            check=True)
    view = json.loads(result.stdout)
    assert view["taken"] == ["OSSSESSIONTOKEN", "OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"]
    for route in ("own_block", "python_child", "libc_child", "system_child"):
        assert "the-secret" not in view[route] and "the-token" not in view[route] and "AKID" not in view[route]
        assert "KEEP_ME=yes" in view[route], route
    assert view["getenv"] == [False, False] and view["kept"] == "yes"


def test_environment_block_parsing():
    """The pure parts of procenv: /proc/PID/stat fields after a command name with spaces and parentheses, and
    the entries of the names to wipe (only whole `NAME=` entries)."""
    fields = ["S"] + [str(n) for n in range(4, 53)]
    stat = "1234 (a (weird) name) " + " ".join(fields)
    assert environment_block_bounds(stat) == (50, 51)
    block = b"A=1\0OSS_ACCESS_KEY_SECRET=s\0XOSS_ACCESS_KEY_SECRET=keep\0OSS_ACCESS_KEY_SECRET\0B=2\0"
    assert entries_to_wipe(block, ["OSS_ACCESS_KEY_SECRET"]) == [(4, 23)]


# -- TLS ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_endpoint(local_server, tmp_path):
    """The session's server behind TLS with a self-signed certificate for `localhost`."""
    with TlsProxy(("127.0.0.1", local_server.port), tmp_path / "tls", host_name="localhost") as proxy:
        yield proxy


def _over_tls(make_mount, proxy, options: str = "", env: dict[str, str] | None = None, start: bool = True,
              bucket: str | None = None):
    mount = make_mount(options, start=False, env={**NO_CA_BUNDLE_ENV, **(env or {})}, bucket=bucket)
    mount.url = f"https://localhost:{proxy.port}"
    return mount.start() if start else mount


def test_self_signed_endpoint_is_refused_in_one_line(make_mount, tls_endpoint):
    mount = _over_tls(make_mount, tls_endpoint, start=False)
    for argv in (mount.argv()[:-1], mount.argv()):  # detached, then with -f
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **mount.env})
        line = assert_one_line(result, EXIT_UNREACHABLE)
        assert "TLSError" in line and "certificate verify failed" in line and "-o ca_bundle=FILE" in line
    assert not is_mounted(mount.path)


def test_ca_bundle_option_trusts_a_private_ca(make_mount, tls_endpoint, local_server):
    mount = _over_tls(make_mount, tls_endpoint, f"ca_bundle={tls_endpoint.cert_path}")
    (mount.path / "secure.txt").write_bytes(b"verified TLS")
    assert local_server.oss2_bucket(mount.bucket).get_object("secure.txt").read() == b"verified TLS"
    assert "not verified" not in mount.log


@pytest.mark.parametrize("variable", ["CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_ca_bundle_from_the_environment(make_mount, tls_endpoint, variable):
    """What s3fs/ossfs users set (CURL_CA_BUNDLE, read through libcurl), what Python users set
    (REQUESTS_CA_BUNDLE), and OpenSSL's SSL_CERT_FILE, which reaches the default system store."""
    mount = _over_tls(make_mount, tls_endpoint, env={variable: str(tls_endpoint.cert_path)})
    (mount.path / "f").write_bytes(b"x")
    assert (mount.path / "f").read_bytes() == b"x"


def test_ca_bundle_still_checks_the_host_name(make_mount, local_server, tmp_path):
    """A trusted certificate for another name is refused (one line), unless ssl_verify_hostname=0 says otherwise."""
    with TlsProxy(("127.0.0.1", local_server.port), tmp_path / "tls", host_name="oss.example") as proxy:
        mount = _over_tls(make_mount, proxy, f"ca_bundle={proxy.cert_path}", start=False)
        result = subprocess.run(mount.argv()[:-1], capture_output=True, text=True, timeout=60,
                                env={**os.environ, **mount.env})
        assert "TLSError" in assert_one_line(result, EXIT_UNREACHABLE)
        relaxed = _over_tls(make_mount, proxy, f"ca_bundle={proxy.cert_path},ssl_verify_hostname=0",
                            bucket=mount.bucket)
        assert os.listdir(relaxed.path) == []


def test_check_uses_the_ca_bundle_too(tls_endpoint, make_mount):
    mount = _over_tls(make_mount, tls_endpoint, start=False)
    opts = f"url=https://localhost:{tls_endpoint.port},passwd_file={mount.passwd_file}"
    check = [sys.executable, "-m", "ossmount", "check", mount.bucket, "-o"]
    env = {**os.environ, **NO_CA_BUNDLE_ENV}
    refused = subprocess.run(check + [opts], capture_output=True, text=True, timeout=60, env=env)
    assert "TLSError" in assert_one_line(refused, EXIT_UNREACHABLE)
    trusted = subprocess.run(check + [opts + f",ca_bundle={tls_endpoint.cert_path}"], capture_output=True,
                             text=True, timeout=60, env=env)
    assert trusted.returncode == 0, trusted.stderr
