"""The daemon's API (csi-daemon.md §5.5, §5.6): every error code, through HTTP and through `ossmount ctl`, and the
HTTP details a client relies on. Nothing changes when a request fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from ossmount.daemon.client import DaemonClient, DaemonClientError
from ossmount.daemon.ctl import CTL_EXIT_CODES
from ossmount.daemon.mountinfo import MountTable
from ossmount.testing import LocalServer, processes_mentioning

from tests.conftest import TEST_UID
from .conftest import credentials_for, spec_for


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory):
    """A server of this module's own: fault rules are global to a server."""
    with LocalServer(tmp_path_factory.mktemp("fault-oss"), buckets=("fault-bucket",)) as server:
        yield server


@pytest.fixture
def faults(fault_server):
    try:
        yield fault_server.admin
    finally:
        fault_server.admin.clear_faults()


@dataclass
class Ctx:
    """What a case needs: the daemon, paths, servers, and a passwd file for `ossmount ctl`."""

    daemon: Any
    kubelet: Any
    server: LocalServer
    bucket: str
    fault_server: LocalServer
    faults: Any
    passwd: Path
    background: list[threading.Thread] = field(default_factory=list)

    def keys(self, server: LocalServer | None = None, **changes: Any) -> dict[str, Any]:
        return credentials_for(server or self.server, **changes)

    def stage_body(self, volume_id: str, server: LocalServer | None = None, bucket: str | None = None,
                   **extra: Any) -> dict[str, Any]:
        server = server or self.server
        return {"volume_id": volume_id, "spec": spec_for(server, bucket or self.bucket), "credentials": self.keys(server),
                **extra}

    def ctl_stage(self, volume_id: str, source: str, url: str, passwd: Path | None = None) -> list[str]:
        return ["stage", volume_id, source, "--url", url, "--passwd-file", str(passwd or self.passwd)]


@dataclass
class Case:
    code: str
    fragment: str  # a piece of the one-line message
    http: Callable[[Ctx], tuple[str, str, Any]]  # (method, path, body)
    ctl: Callable[[Ctx], list[str]]
    setup: Callable[[Ctx], None] = lambda ctx: None
    reason: str | None = None
    uid: int | None = None  # call as this user


def _passwd(path: Path, line: str) -> Path:
    path.write_text(line + "\n")
    path.chmod(0o600)
    return path


def _tmpfs_target(ctx: Ctx) -> None:
    target = Path(ctx.daemon.root) / "busy-target"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    (target / "precious").write_text("keep me")
    ctx.daemon.client.stage("pv-held", ctx.stage_body("pv-held")["spec"], ctx.keys())


def _already_staged(ctx: Ctx) -> None:
    ctx.daemon.client.stage("pv-taken", spec_for(ctx.server, ctx.bucket, prefix="/a"), ctx.keys())


def _slow_stage_holding_the_lock(ctx: Ctx) -> None:
    """A stage whose validation stalls for 4 s holds the volume's lock (the daemon waits 1 s for it)."""
    ctx.faults.set_faults([{"op": "ListObjectsV2", "action": "delay", "delay_ms": 4000, "count": 1}])
    client = ctx.daemon.client
    body = ctx.stage_body("pv-locked", server=ctx.fault_server, bucket="fault-bucket")

    def stage() -> None:
        try:
            client.stage(body["volume_id"], body["spec"], body["credentials"])
        except DaemonClientError:
            pass

    thread = threading.Thread(target=stage)
    thread.start()
    ctx.background.append(thread)
    from ossmount.testing import wait_for

    assert wait_for(lambda: ctx.fault_server.admin.faults()["rules"][0]["fired"], bool, timeout=20)


def _stalled_endpoint(ctx: Ctx) -> None:
    ctx.faults.set_faults([{"op": "ListObjectsV2", "action": "delay", "delay_ms": 5000}])


def _non_empty_global_path(ctx: Ctx) -> None:
    path = Path(ctx.daemon.root) / "kubelet" / "staging-with-stuff"
    path.mkdir(parents=True)
    (path / "leftover").write_text("x")


def _global(ctx: Ctx) -> str:
    return str(Path(ctx.daemon.root) / "kubelet" / "staging-with-stuff")


def _target(ctx: Ctx, name: str = "busy-target") -> str:
    return str(Path(ctx.daemon.root) / name)


CASES = {
    "INVALID_ARGUMENT": Case(
        "INVALID_ARGUMENT", "must be an absolute path",
        http=lambda ctx: ("POST", "/v1/publish", {"volume_id": "pv", "target_path": "relative/mount"}),
        ctl=lambda ctx: ["publish", "pv", "relative/mount"]),
    "UNAUTHENTICATED": Case(
        "UNAUTHENTICATED", "the AccessKey secret is wrong", reason="SignatureDoesNotMatch",
        http=lambda ctx: ("POST", "/v1/stage", {**ctx.stage_body("pv-auth"),
                                                "credentials": ctx.keys(access_key_secret="wrong-secret")}),
        ctl=lambda ctx: ctx.ctl_stage("pv-auth", ctx.bucket, ctx.server.endpoint,
                                      _passwd(ctx.passwd.with_name("wrong"), f"{ctx.server.access_key_id}:wrong-secret"))),
    "PERMISSION_DENIED": Case(
        "PERMISSION_DENIED", f"uid {TEST_UID} may not use this daemon", uid=TEST_UID,
        http=lambda ctx: ("GET", "/v1/volumes", None),
        ctl=lambda ctx: ["volumes"]),
    "NOT_FOUND": Case(
        "NOT_FOUND", "bucket 'no-such-bucket' does not exist", reason="NoSuchBucket",
        http=lambda ctx: ("POST", "/v1/stage", ctx.stage_body("pv-missing", bucket="no-such-bucket")),
        ctl=lambda ctx: ctx.ctl_stage("pv-missing", "no-such-bucket", ctx.server.endpoint)),
    "ALREADY_EXISTS": Case(
        "ALREADY_EXISTS", "staged with a different prefix", setup=_already_staged,
        http=lambda ctx: ("POST", "/v1/stage", {**ctx.stage_body("pv-taken"),
                                                "spec": spec_for(ctx.server, ctx.bucket, prefix="/b")}),
        ctl=lambda ctx: ctx.ctl_stage("pv-taken", f"{ctx.bucket}:/b", ctx.server.endpoint)),
    "FAILED_PRECONDITION": Case(
        "FAILED_PRECONDITION", "is occupied by tmpfs tmpfs", setup=_tmpfs_target,
        http=lambda ctx: ("POST", "/v1/publish", {"volume_id": "pv-held", "target_path": _target(ctx)}),
        ctl=lambda ctx: ["publish", "pv-held", _target(ctx)]),
    "ABORTED": Case(
        "ABORTED", "still running after 1 s", setup=_slow_stage_holding_the_lock,
        http=lambda ctx: ("POST", "/v1/unstage", {"volume_id": "pv-locked"}),
        ctl=lambda ctx: ["unstage", "pv-locked"]),
    "UNAVAILABLE": Case(
        "UNAVAILABLE", "cannot reach http://127.0.0.1:1", reason="ConnectionError",
        http=lambda ctx: ("POST", "/v1/stage", {**ctx.stage_body("pv-unreachable"),
                                                "spec": {"bucket": ctx.bucket, "endpoint": "http://127.0.0.1:1"}}),
        ctl=lambda ctx: ctx.ctl_stage("pv-unreachable", ctx.bucket, "http://127.0.0.1:1")),
    "DEADLINE_EXCEEDED": Case(
        "DEADLINE_EXCEEDED", "", setup=_stalled_endpoint,
        http=lambda ctx: ("POST", "/v1/stage", {**ctx.stage_body("pv-stalled", server=ctx.fault_server,
                                                                 bucket="fault-bucket"), "timeout_s": 1}),
        ctl=lambda ctx: [*ctx.ctl_stage("pv-stalled", "fault-bucket", ctx.fault_server.endpoint,
                                        _passwd(ctx.passwd.with_name("fault"), f"{ctx.fault_server.access_key_id}:"
                                                f"{ctx.fault_server.access_key_secret}")), "--timeout", "1"]),
    "INTERNAL": Case(
        "INTERNAL", "is not empty", setup=_non_empty_global_path,
        http=lambda ctx: ("POST", "/v1/stage", ctx.stage_body("pv-internal", global_path=_global(ctx))),
        ctl=lambda ctx: [*ctx.ctl_stage("pv-internal", ctx.bucket, ctx.server.endpoint), "--global-path",
                         _global(ctx)]),
}


def test_the_table_covers_every_code_of_the_contract():
    from ossmount.daemon.errors import HTTP_STATUS

    assert set(CASES) == set(HTTP_STATUS) == set(CTL_EXIT_CODES)


@pytest.fixture
def ctx(make_daemon, kubelet, local_server, fresh_bucket_name, fault_server, faults, test_user, daemon_root):
    daemon = make_daemon("--socket-mode", "0666", "--lock-timeout", "1")
    passwd = _passwd(daemon_root / "passwd", f"{local_server.access_key_id}:{local_server.access_key_secret}")
    context = Ctx(daemon, kubelet, local_server, fresh_bucket_name, fault_server, faults, passwd)
    try:
        yield context
    finally:
        for thread in context.background:
            thread.join(60)
        busy = daemon_root / "busy-target"
        if busy.exists() and MountTable.read().top(str(busy)) is not None:
            assert (busy / "precious").read_text() == "keep me", "a foreign mount is never touched"
            subprocess.run(["umount", str(busy)], check=True)


def _as_user(uid: int | None, argv: list[str]) -> list[str]:
    return argv if uid is None else ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *argv]


def _state_of(ctx: Ctx) -> tuple:
    """What must not change when a request fails: volumes, mounts, daemon children."""
    volumes = sorted((v["volume_id"], v["state"], v["process"]["pid"], len(v["targets"]))
                     for v in ctx.daemon.client.volumes())
    mounts = sorted(e.mount_point for e in MountTable.read().under(str(ctx.daemon.root)))
    return volumes, mounts, sorted(processes_mentioning(str(ctx.daemon.root)))


@pytest.mark.parametrize("via", ["http", "ctl"])
@pytest.mark.parametrize("name", CASES)
def test_error_code(ctx, name, via):
    case = CASES[name]
    case.setup(ctx)
    before = _state_of(ctx)
    if via == "http":
        if case.uid is None:
            method, path, body = case.http(ctx)
            answer = ctx.daemon.client.request(method, path, body)
            status, document = answer.status, answer.document
        else:
            method, path, body = case.http(ctx)
            script = (f"import json; from ossmount.daemon.client import DaemonClient as C; "
                      f"a = C({str(ctx.daemon.socket_path)!r}).request({method!r}, {path!r}, {body!r}); "
                      "print(json.dumps([a.status, a.document]))")
            result = subprocess.run(_as_user(case.uid, [sys.executable, "-c", script]), capture_output=True,
                                    text=True, timeout=60, cwd="/")
            status, document = json.loads(result.stdout)
        error = document["error"]
        from ossmount.daemon.errors import HTTP_STATUS

        assert (status, error["code"]) == (HTTP_STATUS[name], name), document
        assert case.fragment in error["message"] and "\n" not in error["message"]
        if case.reason:
            assert error["reason"] == case.reason
        assert error["retryable"] is (name in ("UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"))
        if name == "INTERNAL":
            assert "is not empty" in error["log_tail"] and error["log_path"].endswith("ossmount.log")
    else:
        result = subprocess.run(_as_user(case.uid, [sys.executable, "-m", "ossmount", "ctl", "--socket",
                                                    str(ctx.daemon.socket_path), *case.ctl(ctx)]),
                                capture_output=True, text=True, timeout=120, cwd="/")
        assert result.returncode == CTL_EXIT_CODES[name], result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"ossmount ctl: {name}") and case.fragment in line
        if case.reason:
            assert f"({case.reason})" in line
    for thread in ctx.background:
        thread.join(60)
    if name != "ABORTED":  # the stalled stage of that case finishes in the background
        assert _state_of(ctx) == before, "a failed request changes nothing"


def test_aborted_answers_carry_retry_after(ctx):
    _slow_stage_holding_the_lock(ctx)
    answer = ctx.daemon.client.request("POST", "/v1/publish", {"volume_id": "pv-locked",
                                                                "target_path": _target(ctx, "t")})
    assert answer.status == 409 and answer.document["error"]["code"] == "ABORTED" and answer.retry_after == "1"


def test_not_found_for_unknown_volumes_and_publish_without_spec(daemon, kubelet):
    client = daemon.client
    with pytest.raises(DaemonClientError) as raised:
        client.volume("pv-unknown")
    assert raised.value.code == "NOT_FOUND" and raised.value.http_status == 404
    with pytest.raises(DaemonClientError) as raised:
        client.publish("pv-unknown", kubelet.target_path("pv-unknown"))
    assert raised.value.code == "NOT_FOUND" and "not staged" in raised.value.message
    with pytest.raises(DaemonClientError) as raised:
        client.rotate_credentials("pv-unknown", {"type": "access_key", "access_key_id": "a", "access_key_secret": "b"})
    assert raised.value.code == "NOT_FOUND"
    assert client.request("GET", "/v1/nothing").status == 404
    # unpublish and unstage of unknown volumes succeed (CSI idempotency)
    assert client.unpublish("pv-unknown", kubelet.target_path("pv-unknown"))["changed"] is None
    assert client.unstage("pv-unknown") == {"volume": None, "changed": None}


def test_access_denied_by_oss_is_permission_denied(daemon, local_server, fault_server, faults):
    faults.set_faults([{"op": "ListObjectsV2", "action": "error", "status": 403, "code": "AccessDenied",
                        "message": "denied by policy"}])
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.stage("pv-denied", spec_for(fault_server, "fault-bucket"), credentials_for(fault_server))
    assert (raised.value.code, raised.value.reason) == ("PERMISSION_DENIED", "AccessDenied")
    assert "grant oss:ListObjects" in raised.value.message
    assert daemon.client.volumes() == []


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b'["a list"]', "must be a JSON object"),
    (b'{"volume_id": "pv", "target_path": "/etc/passwd"}', "outside the allowed prefixes"),
    (b'{"volume_id": "pv", "target_path": "/tmp/../etc"}', "'..'"),
    (b'{"target_path": "/tmp/x"}', "missing field 'volume_id'"),
    (b'{"volume_id": "pv", "target_path": "/tmp/x", "readonly": true}', "unknown field 'readonly'"),
    (b"{" + b" " * (1024 * 1024 + 10) + b"}", "larger than 1048576 bytes"),
])
def test_bad_request_bodies_are_refused_over_raw_http(daemon, body, fragment):
    """Malformed JSON, bad paths, oversize bodies: one line, 400, the connection and the daemon stay usable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(daemon.socket_path))
        sock.sendall(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Request-Id: req-42\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = _read_response(sock)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"x-request-id: req-42" in head.lower()
    error = json.loads(payload)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and fragment in error["message"]
    assert daemon.client.health()["status"] == "ok" and daemon.client.volumes() == []


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(data.split(b"\r\n\r\n", 1)[1]) < length:
        data += sock.recv(65536)
    return data


def test_symlinks_escaping_the_allowed_roots_are_refused(daemon, kubelet):
    """A target whose parent is a symlink out of the allowed prefix is checked where it really points."""
    escape = Path(daemon.root) / "kubelet" / "escape"
    escape.parent.mkdir(parents=True, exist_ok=True)
    escape.symlink_to("/var/tmp")
    with pytest.raises(DaemonClientError) as raised:
        daemon.client.publish("pv", str(escape / "mount"))
    assert raised.value.code == "INVALID_ARGUMENT" and "outside the allowed prefixes" in raised.value.message
    assert not os.path.exists("/var/tmp/mount")


def test_keep_alive_request_ids_and_json(daemon):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(daemon.socket_path))
        for _ in range(2):  # two requests on one connection
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, payload = _read_response(sock).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"content-type: application/json" in head.lower()
            assert len(head.lower().split(b"x-request-id: ")[1].split(b"\r\n")[0]) == 32
            assert json.loads(payload)["status"] == "ok"


def test_socket_is_private_and_refuses_other_users(make_daemon, test_user):
    daemon = make_daemon()
    mode = os.stat(daemon.socket_path).st_mode & 0o777
    assert mode == 0o600
    result = subprocess.run(_as_user(TEST_UID, [sys.executable, "-m", "ossmount", "ctl", "--socket",
                                                str(daemon.socket_path), "health"]),
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == CTL_EXIT_CODES["PERMISSION_DENIED"] and "run as root" in result.stderr


def test_allowed_uid_may_call(make_daemon, test_user):
    daemon = make_daemon("--socket-mode", "0666", "--allow-uid", str(TEST_UID))
    result = subprocess.run(_as_user(TEST_UID, [sys.executable, "-m", "ossmount", "ctl", "--socket",
                                                str(daemon.socket_path), "--json", "health"]),
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "ok"


def test_a_second_daemon_on_the_same_socket_is_refused(daemon):
    result = subprocess.run(daemon.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "another daemon is already listening" in result.stderr
    assert daemon.client.health()["status"] == "ok"


def test_client_reports_a_missing_daemon_as_unavailable(tmp_path):
    with pytest.raises(DaemonClientError) as raised:
        DaemonClient(str(tmp_path / "none.sock")).health()
    assert raised.value.code == "UNAVAILABLE" and raised.value.retryable
    result = subprocess.run([sys.executable, "-m", "ossmount", "ctl", "--socket", str(tmp_path / "none.sock"),
                             "volumes"], capture_output=True, text=True, timeout=60)
    assert result.returncode == CTL_EXIT_CODES["UNAVAILABLE"] and "is `ossmount daemon` running?" in result.stderr
