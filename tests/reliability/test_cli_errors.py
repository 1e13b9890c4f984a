"""Every error path of the `ossmount` command line: one line on stderr, a documented exit code, never a traceback
(issue 12, item 4; exit codes in ossmount.errors).

Each case runs the real command as a subprocess: every subcommand (mount, detached and with -f, check, serve,
daemon, ctl, install-helper, demo, cleanup, recover) with bad arguments, bad options, missing files, an unreachable
endpoint, bad credentials, a missing bucket, permission problems and, where it matters, a non-root user. Dead
mounts have their own tests (test_dead_mounts.py) that assert the same of their messages.
"""

from __future__ import annotations

import codecs
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ossmount.errors import (
    EXIT_AUTH,
    EXIT_BUCKET,
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_MOUNT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from ossmount.cli import SUBCOMMANDS
from ossmount.mount import FUSE_CONF
from tests.fuse.conftest import as_user, fuse_for_users, is_mounted  # noqa: F401 - fuse_for_users: the fixture

OSSMOUNT = [sys.executable, "-m", "ossmount"]
EXIT_BROKEN_PIPE = 141


def assert_one_line(result: subprocess.CompletedProcess, code: int) -> str:
    """No traceback anywhere, exactly one line on stderr naming the command, and exit code `code`."""
    output = (result.stdout or "") + (result.stderr or "")
    assert "Traceback" not in output, output
    assert "unexpected:" not in output, output  # the catch-all of a failure nothing explained
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ossmount"), lines[0]
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 60,
        **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*OSSMOUNT, *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kwargs)


@dataclass
class Setup:
    """Files and directories the cases name (placeholders in their argv)."""

    root: Path
    endpoint: str
    bucket: str
    ak: str
    sk: str

    def path(self, name: str) -> str:
        return str(self.root / name)

    def format(self, argv: list[str]) -> list[str]:
        values = {"endpoint": self.endpoint, "bucket": self.bucket, "root": str(self.root),
                  "unreachable": f"http://127.0.0.1:{closed_port()}"}
        return [arg.format(**values) for arg in argv]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    path.chmod(mode)


@pytest.fixture(scope="module")
def setup(local_server):
    # Outside pytest's 0700 tmp tree, so that the non-root test user can reach what it is meant to.
    root = Path(tempfile.mkdtemp(prefix="ossmount-cli-errors-"))
    root.chmod(0o755)
    try:
        yield _make_setup(local_server, root)
    finally:
        for path in (root / "mnt", root / "user-mnt"):
            subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _make_setup(local_server, root: Path) -> Setup:
    bucket = f"cli-errors-{os.getpid()}"
    local_server.oss2_bucket(bucket).create_bucket()
    ak, sk = local_server.access_key_id, local_server.access_key_secret
    _write(root / "passwd", f"{bucket}:{ak}:{sk}\n")
    _write(root / "passwd-any-bucket", f"{ak}:{sk}\n")
    _write(root / "passwd-wrong-secret", f"{bucket}:{ak}:not-the-secret\n")
    _write(root / "passwd-unknown-key", f"{bucket}:NoSuchAccessKey:{sk}\n")
    _write(root / "passwd-open", f"{bucket}:{ak}:{sk}\n", 0o644)
    _write(root / "passwd-other-bucket", codecs.BOM_UTF8 + f"other-bucket:{ak}:{sk}\r\n".encode())
    _write(root / "passwd-malformed", "a:b:c:d\n")
    _write(root / "passwd-binary", b"\xff\xfe\xfd\x00garbage")
    _write(root / "credentials", f"{ak}:{sk}\n")
    _write(root / "credentials-malformed", "only-one-field\n")
    _write(root / "not-a-bundle.pem", "this is no certificate\n", 0o644)
    _write(root / "a-file", "x", 0o644)
    for name in ("mnt", "nonempty", "tmp"):
        (root / name).mkdir()
    (root / "nonempty" / "x").write_text("x")
    (root / "user-mnt").mkdir()
    return Setup(root, local_server.endpoint, bucket, ak, sk)


P = "passwd_file={root}/passwd"
PA = "passwd_file={root}/passwd-any-bucket"
U = "url={endpoint}"

# (id, argv, exit code); "{root}" etc. are filled from Setup. Mount cases without -f go through the detached child
# and its readiness report; the same problems with -f are reported by the process itself.
CASES = [
    # the dispatcher
    ("no-arguments", [], EXIT_USAGE),
    ("unknown-flag", ["--frobnicate"], EXIT_USAGE),
    # mount: arguments and options
    ("mount-one-argument", ["{bucket}"], EXIT_USAGE),
    ("mount-three-arguments", ["{bucket}", "{root}/mnt", "extra"], EXIT_USAGE),
    ("mount-bad-bucket-name", ["Bad_Bucket", "{root}/mnt"], EXIT_USAGE),
    ("mount-dot-dot-prefix", ["{bucket}:/a/../b", "{root}/mnt"], EXIT_USAGE),
    ("mount-unknown-option", ["{bucket}", "{root}/mnt", "-o", "no_such_option"], EXIT_USAGE),
    ("mount-option-with-newline", ["{bucket}", "{root}/mnt", "-o", "uid=1\n000"], EXIT_USAGE),
    ("mount-bad-value", ["{bucket}", "{root}/mnt", "-o", "uid=root"], EXIT_USAGE),
    ("mount-flag-given-value", ["{bucket}", "{root}/mnt", "-o", "allow_other=1"], EXIT_USAGE),
    ("mount-value-missing", ["{bucket}", "{root}/mnt", "-o", "url"], EXIT_USAGE),
    ("mount-bad-url", ["{bucket}", "{root}/mnt", "-o", "url=ftp://host"], EXIT_USAGE),
    ("mount-bucket-domain-url", ["{bucket}", "{root}/mnt", "-o", "url=b.oss-cn-hangzhou.aliyuncs.com"], EXIT_USAGE),
    ("mount-sigv4-without-region", ["{bucket}", "{root}/mnt", "-o", "sigv4,url=http://127.0.0.1:9"], EXIT_USAGE),
    ("mount-ram-role-and-passwd", ["{bucket}", "{root}/mnt", "-o", "ram_role=R," + P], EXIT_USAGE),
    ("mount-bad-dead-mount-choice", ["{bucket}", "{root}/mnt", "-o", "dead_mount=maybe"], EXIT_USAGE),
    ("mount-o-without-argument", ["{bucket}", "{root}/mnt", "-o"], EXIT_USAGE),
    ("mount-bad-ready-fd", ["{bucket}", "{root}/mnt", "-f", "--ready-fd", "x"], EXIT_USAGE),
    ("mount-bad-log-size", ["{bucket}", "{root}/mnt", "--log-max-size", "lots"], EXIT_USAGE),
    ("mount-bad-credentials-fd", ["{bucket}", "{root}/mnt", "-f", "--credentials-fd", "77", "-o", U + "," + P],
     EXIT_USAGE),
    # mount: the mountpoint
    ("mount-missing-mountpoint", ["{bucket}", "{root}/no/such/dir", "-o", U + "," + P], EXIT_MOUNT),
    ("mount-mountpoint-is-a-file", ["{bucket}", "{root}/a-file", "-o", U + "," + P], EXIT_MOUNT),
    ("mount-mountpoint-not-empty", ["{bucket}", "{root}/nonempty", "-o", U + "," + P], EXIT_MOUNT),
    ("mount-mountpoint-not-empty-f", ["{bucket}", "{root}/nonempty", "-f", "-o", U + "," + P], EXIT_MOUNT),
    # mount: files the options name
    ("mount-missing-passwd-file", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/nope"], EXIT_CONFIG),
    ("mount-missing-passwd-file-f", ["{bucket}", "{root}/mnt", "-f", "-o", U + ",passwd_file={root}/nope"],
     EXIT_CONFIG),
    ("mount-passwd-file-too-open", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-open"],
     EXIT_CONFIG),
    ("mount-passwd-no-line-for-bucket", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-other-bucket"],
     EXIT_CONFIG),
    ("mount-passwd-malformed", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-malformed"],
     EXIT_CONFIG),
    ("mount-passwd-binary", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-binary"], EXIT_CONFIG),
    ("mount-passwd-is-mountpoint-dir", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/nonempty"],
     EXIT_CONFIG),
    ("mount-session-token-required", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",use_session_token"],
     EXIT_CONFIG),
    ("mount-missing-tmpdir", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",tmpdir={root}/no-tmp"], EXIT_CONFIG),
    ("mount-missing-mime", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",mime={root}/no-mime"], EXIT_CONFIG),
    ("mount-missing-ahbe-conf", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",ahbe_conf={root}/no-ahbe"],
     EXIT_CONFIG),
    ("mount-missing-ca-bundle", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",ca_bundle={root}/no.pem"],
     EXIT_CONFIG),
    ("mount-ca-bundle-not-pem", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",ca_bundle={root}/not-a-bundle.pem"],
     EXIT_CONFIG),
    ("mount-log-file-unwritable", ["{bucket}", "{root}/mnt", "--log-file", "{root}/no/dir/log", "-o", U + "," + P],
     EXIT_CONFIG),
    ("mount-kms-id-missing", ["{bucket}", "{root}/mnt", "-o", U + "," + P + ",use_sse=kmsid"], EXIT_CONFIG),
    # mount: the endpoint and the bucket
    ("mount-unreachable-endpoint", ["{bucket}", "{root}/mnt", "-o", "url={unreachable}," + P], EXIT_UNREACHABLE),
    ("mount-unreachable-endpoint-f", ["{bucket}", "{root}/mnt", "-f", "-o", "url={unreachable}," + P],
     EXIT_UNREACHABLE),
    ("mount-unresolvable-host", ["{bucket}", "{root}/mnt", "-o", "url=http://no-such-host.invalid," + P],
     EXIT_UNREACHABLE),
    ("mount-wrong-secret", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-wrong-secret"], EXIT_AUTH),
    ("mount-unknown-access-key", ["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-unknown-key"],
     EXIT_AUTH),
    ("mount-unknown-access-key-f", ["{bucket}", "{root}/mnt", "-f", "-o", U + ",passwd_file={root}/passwd-unknown-key"],
     EXIT_AUTH),
    ("mount-missing-bucket", ["no-such-bucket-{bucket}", "{root}/mnt", "-o", U + "," + PA], EXIT_BUCKET),
    # check
    ("check-no-bucket", ["check"], EXIT_USAGE),
    ("check-bad-option", ["check", "{bucket}", "-o", "bogus"], EXIT_USAGE),
    ("check-foreground-flag", ["check", "{bucket}", "-f"], EXIT_USAGE),
    ("check-missing-passwd", ["check", "{bucket}", "-o", U + ",passwd_file={root}/nope"], EXIT_CONFIG),
    ("check-unreachable", ["check", "{bucket}", "-o", "url={unreachable}," + P], EXIT_UNREACHABLE),
    ("check-wrong-secret", ["check", "{bucket}", "-o", U + ",passwd_file={root}/passwd-wrong-secret"], EXIT_AUTH),
    ("check-missing-bucket", ["check", "no-such-bucket-{bucket}", "-o", U + "," + PA], EXIT_BUCKET),
    # serve
    ("serve-no-arguments", ["serve"], EXIT_USAGE),
    ("serve-bad-listen", ["serve", "--data-dir", "{root}/data", "--listen", "nowhere", "--credentials",
                          "{root}/credentials"], EXIT_USAGE),
    ("serve-port-out-of-range", ["serve", "--data-dir", "{root}/data", "--listen", "127.0.0.1:70000",
                                 "--credentials", "{root}/credentials"], EXIT_USAGE),
    ("serve-missing-credentials", ["serve", "--data-dir", "{root}/data", "--listen", "127.0.0.1:0", "--credentials",
                                   "{root}/nope"], EXIT_CONFIG),
    ("serve-malformed-credentials", ["serve", "--data-dir", "{root}/data", "--listen", "127.0.0.1:0",
                                     "--credentials", "{root}/credentials-malformed"], EXIT_CONFIG),
    ("serve-data-dir-is-a-file", ["serve", "--data-dir", "{root}/a-file", "--listen", "127.0.0.1:0",
                                  "--credentials", "{root}/credentials"], EXIT_CONFIG),
    ("serve-bad-bucket", ["serve", "--data-dir", "{root}/data", "--listen", "127.0.0.1:0", "--credentials",
                          "{root}/credentials", "--bucket", "Bad_Name"], EXIT_USAGE),
    ("serve-bad-number", ["serve", "--data-dir", "{root}/data", "--listen", "127.0.0.1:0", "--credentials",
                          "{root}/credentials", "--max-skew", "soon"], EXIT_USAGE),
    # daemon
    ("daemon-unknown-flag", ["daemon", "--bogus"], EXIT_USAGE),
    ("daemon-bad-number", ["daemon", "--health-interval", "-1"], EXIT_USAGE),
    ("daemon-bad-metrics-listen", ["daemon", "--metrics-listen", "nowhere", "--socket", "{root}/d.sock",
                                   "--run-dir", "{root}/run"], EXIT_USAGE),
    ("daemon-relative-target-prefix", ["daemon", "--allowed-target-prefix", "relative"], EXIT_USAGE),
    ("daemon-unusable-socket-dir", ["daemon", "--socket", "{root}/a-file/d.sock", "--run-dir", "{root}/run"],
     EXIT_CONFIG),
    ("daemon-unusable-run-dir", ["daemon", "--socket", "{root}/d2.sock", "--run-dir", "{root}/a-file/run"],
     EXIT_CONFIG),
    ("daemon-socket-path-too-long", ["daemon", "--socket", "{root}/" + "s" * 120, "--run-dir", "{root}/run"],
     EXIT_CONFIG),
    ("daemon-socket-is-a-file", ["daemon", "--socket", "{root}/a-file", "--run-dir", "{root}/run"], EXIT_CONFIG),
    # ctl
    ("ctl-no-command", ["ctl"], EXIT_USAGE),
    ("ctl-unknown-command", ["ctl", "explode"], EXIT_USAGE),
    ("ctl-volume-without-id", ["ctl", "volume"], EXIT_USAGE),
    ("ctl-stage-without-url", ["ctl", "--socket", "{root}/none.sock", "stage", "v1", "{bucket}"], EXIT_USAGE),
    ("ctl-no-daemon", ["ctl", "--socket", "{root}/none.sock", "volumes"], EXIT_UNREACHABLE),
    ("ctl-socket-is-a-file", ["ctl", "--socket", "{root}/a-file", "health"], EXIT_UNREACHABLE),
    # install-helper and demo
    ("install-helper-unknown-flag", ["install-helper", "--bogus"], EXIT_USAGE),
    ("install-helper-missing-prefix", ["install-helper", "--prefix", "{root}/no/such"], EXIT_CONFIG),
    ("install-helper-missing-unit-dir", ["install-helper", "--systemd", "--unit-dir", "{root}/no/such"], EXIT_CONFIG),
    ("demo-unknown-flag", ["demo", "--bogus"], EXIT_USAGE),
    # stats and diagnose (operators' tools)
    ("stats-no-mountpoint", ["stats"], EXIT_USAGE),
    ("stats-no-mount", ["stats", "{root}/mnt"], EXIT_MOUNT),
    ("stats-bad-watch", ["stats", "{root}/mnt", "--watch", "soon"], EXIT_USAGE),
    ("diagnose-no-mount", ["diagnose", "{root}/mnt"], EXIT_USAGE),
    ("diagnose-unwritable-archive", ["diagnose", "--output", "{root}/no/such/x.tar.gz"], EXIT_CONFIG),
    # cleanup and recover (stale multipart uploads, data dead mounts kept)
    ("cleanup-no-bucket", ["cleanup"], EXIT_USAGE),
    ("cleanup-bad-older-than", ["cleanup", "{bucket}", "-o", U + "," + P, "--older-than", "soon"], EXIT_USAGE),
    ("cleanup-older-than-missing", ["cleanup", "{bucket}", "-o", U + "," + P, "--older-than"], EXIT_USAGE),
    ("cleanup-missing-passwd", ["cleanup", "{bucket}", "-o", U + ",passwd_file={root}/nope"], EXIT_CONFIG),
    ("cleanup-unreachable", ["cleanup", "{bucket}", "-o", "url={unreachable}," + P], EXIT_UNREACHABLE),
    ("cleanup-wrong-secret", ["cleanup", "{bucket}", "-o", U + ",passwd_file={root}/passwd-wrong-secret"], EXIT_AUTH),
    ("cleanup-missing-bucket", ["cleanup", "no-such-bucket-{bucket}", "-o", U + "," + PA], EXIT_BUCKET),
    ("recover-bad-option", ["recover", "{bucket}", "-o", "bogus"], EXIT_USAGE),
    ("recover-bad-bucket-name", ["recover", "Bad_Bucket"], EXIT_USAGE),
    # csi
    ("csi-no-endpoint", ["csi"], EXIT_USAGE),
    ("csi-nothing-to-serve", ["csi", "--endpoint", "unix://{root}/csi.sock"], EXIT_USAGE),
]


@pytest.mark.parametrize("argv, code", [pytest.param(argv, code, id=name) for name, argv, code in CASES])
def test_error_path_is_one_line(setup, argv, code):
    result = run(setup.format(argv), cwd=setup.root)
    assert_one_line(result, code)
    assert not is_mounted(setup.root / "mnt")


@pytest.mark.parametrize("subcommand", sorted(SUBCOMMANDS))
def test_every_subcommand_refuses_an_unknown_flag_in_one_line(setup, subcommand):
    """Also for subcommands added later: an unknown flag is one usage line, exit 2."""
    assert_one_line(run([subcommand, "--no-such-flag-anywhere"], cwd=setup.root), EXIT_USAGE)


def test_every_subcommand_has_its_error_paths_listed():
    """A new subcommand needs its error paths in CASES (this list is what 'every error path' means)."""
    covered = {argv[0] if argv and argv[0] in SUBCOMMANDS else "mount" for _, argv, _ in CASES}
    assert covered >= set(SUBCOMMANDS), sorted(set(SUBCOMMANDS) - covered)


def test_messages_name_the_cause(setup):
    """A few of the lines above, read as a user would: each names the thing to fix."""
    def line(argv):
        return run(setup.format(argv), cwd=setup.root).stderr.strip()

    assert "credentials file" in line(["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-open"])
    assert "chmod 600" in line(["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-open"])
    assert "InvalidAccessKeyId" in line(["{bucket}", "{root}/mnt", "-o", U + ",passwd_file={root}/passwd-unknown-key"])
    assert "NoSuchBucket" in line(["no-such-bucket-{bucket}", "{root}/mnt", "-o", U + "," + PA])
    assert "mkdir -p" in line(["{bucket}", "{root}/no/such/dir", "-o", U + "," + P])
    assert "\\n" in line(["{bucket}", "{root}/mnt", "-o", "uid=1\n000"])  # the newline shown escaped
    assert "unexpected" not in line(["daemon", "--socket", "{root}/a-file/d.sock", "--run-dir", "{root}/run"])


def test_help_into_a_closed_pipe_is_silent(setup):
    """`ossmount --help | head -1`: the reader goes away; no traceback, no 'Exception ignored' noise."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([*OSSMOUNT, "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == EXIT_BROKEN_PIPE and result.stderr == ""


def test_help_onto_a_full_device_is_one_line(setup):
    with open("/dev/full", "w") as full:
        result = subprocess.run([*OSSMOUNT, "--help"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    line = assert_one_line(result, EXIT_CONFIG)
    assert line == "ossmount: cannot write to standard output: No space left on device"


def test_an_unforeseen_failure_is_one_line_with_the_traceback_in_a_file(setup, tmp_path):
    """The catch-all for bugs: one line naming a file (mode 0600) that holds the traceback for the report."""
    code = ("import sys, ossmount.check as c; c.main = lambda argv: 1 / 0; from ossmount.cli import main; "
            "sys.exit(main(['check', 'bkt']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_INTERNAL and "Traceback" not in output
    assert len(result.stderr.splitlines()) == 1
    assert "internal error: ZeroDivisionError: division by zero" in result.stderr
    (report,) = tmp_path.glob("ossmount-traceback-*.txt")
    assert str(report) in result.stderr and os.stat(report).st_mode & 0o777 == 0o600
    assert "ZeroDivisionError" in report.read_text() and "Traceback" in report.read_text()


# -- a non-root user ---------------------------------------------------------------------------------------------


def _as_user_cli(test_user: int, argv: list[str]) -> subprocess.CompletedProcess:
    result = as_user(test_user, *OSSMOUNT, *argv)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


def test_non_root_user_error_paths(setup, test_user, fuse_for_users):
    """What only a non-root user meets: a mountpoint it may not write, allow_other without user_allow_other, a
    passwd file it may not read, a mountpoint it may not reach, the daemon and the helper install that need
    root. (-f: the mount's own checks, without the detached child.)"""
    user_mnt = setup.root / "user-mnt"
    os.chown(user_mnt, test_user, test_user)
    own_passwd = setup.root / "user-passwd"
    _write(own_passwd, f"{setup.bucket}:{setup.ak}:{setup.sk}\n")
    os.chown(own_passwd, test_user, test_user)
    closed = setup.root / "closed"
    (closed / "inside").mkdir(parents=True, exist_ok=True)
    closed.chmod(0o700)
    base = f"url={setup.endpoint},passwd_file={own_passwd}"
    cases = [
        ([setup.bucket, str(setup.root / "mnt"), "-f", "-o", base], EXIT_MOUNT, "not writable by this user"),
        ([setup.bucket, str(closed / "inside"), "-f", "-o", base], EXIT_MOUNT, "Permission denied"),
        ([setup.bucket, str(user_mnt), "-f", "-o", f"url={setup.endpoint},passwd_file={setup.root}/passwd"],
         EXIT_CONFIG, "Permission denied"),
        (["daemon", "--socket", str(setup.root / "u.sock")], EXIT_CONFIG, "must run as root"),
        (["install-helper", "--prefix", str(setup.root)], EXIT_CONFIG, "Permission denied"),
        (["check", setup.bucket, "-o", f"url={setup.endpoint},passwd_file={setup.root}/passwd"], EXIT_CONFIG,
         "Permission denied"),
    ]
    if not _fuse_conf_allows_other():
        cases.append(([setup.bucket, str(user_mnt), "-f", "-o", base + ",allow_other"], EXIT_MOUNT,
                      "user_allow_other"))
    for argv, code, words in cases:
        line = assert_one_line(_as_user_cli(test_user, argv), code)
        assert words in line, line
    assert not is_mounted(user_mnt)


def test_non_root_user_without_access_to_dev_fuse(setup, test_user):
    if as_user(test_user, "test", "-r", "/dev/fuse", "-a", "-w", "/dev/fuse").returncode == 0:
        pytest.skip("/dev/fuse is open to every user here (mode 0666), so this refusal cannot happen")
    user_mnt = setup.root / "user-mnt"
    os.chown(user_mnt, test_user, test_user)
    result = _as_user_cli(test_user, [setup.bucket, str(user_mnt), "-f", "-o", f"url={setup.endpoint}"])
    assert "/dev/fuse" in assert_one_line(result, EXIT_MOUNT)


def _fuse_conf_allows_other() -> bool:
    try:
        return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in open(FUSE_CONF))
    except OSError:
        return False
