"""Run `ossmount serve` as a subprocess for tests, demos and benchmarks, and talk to its admin API.

    with LocalServer(tmp_path / "oss") as server:
        bucket = server.oss2_bucket("test-bucket")
        bucket.put_object("k", b"v")
        assert server.admin.counters()["PutObject"] == 1
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

LISTENING_PREFIX = "ossmount serve: listening on "
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


_T = TypeVar("_T")


def wait_for(probe: Callable[[], _T], until: Callable[[_T], bool], *, timeout: float, interval: float = 0.05) -> _T:
    """Call `probe` until `until(result)` holds or `timeout` seconds have passed; return the last result.

    For tests that wait on another process (a spool file to grow, a daemon to exit): the caller asserts on
    the result, so a timeout fails with what was last seen."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if until(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def die_with_parent() -> None:
    """`preexec_fn` for helper processes a test or benchmark starts: the kernel sends them SIGTERM when the process
    that started them dies (prctl PR_SET_PDEATHSIG, Linux), so a test run killed outright (SIGKILL, the OOM killer)
    leaves no server or daemon behind. Start them from the main thread: the signal follows the starting thread."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def stop_process(process: "subprocess.Popen") -> None:
    """SIGTERM, wait up to 10 s, then SIGKILL and reap (a no-op for a process that already exited)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerStartError(RuntimeError):
    """The server did not print its listening line in time; the message carries its stderr."""


def terminate(process: "subprocess.Popen[bytes]", timeout: float) -> int:
    """SIGTERM `process`, wait up to `timeout` seconds, then SIGKILL; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def read_first_line(process: "subprocess.Popen[bytes]", what: str, timeout: float, stderr_text: Callable[[], str],
                    error: type[Exception] = RuntimeError) -> str:
    """The first stdout line of a starting `process` (its "listening on ..." line), waiting at most `timeout`
    seconds; raises `error` with the process's stderr if it exits or stays silent."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffered = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffered:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise error(f"{what} did not start within {timeout:.0f} s\n{stderr_text()}")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                code = process.wait()
                raise error(f"{what} exited with {code}\n{stderr_text()}")
            buffered += chunk
    return buffered.split(b"\n", 1)[0].decode()


class AdminError(RuntimeError):
    """The admin API refused a call; `status` and `document` are its answer."""

    def __init__(self, status: int, document: Any):
        super().__init__(f"admin API answered {status}: {document}")
        self.status = status
        self.document = document


class AdminClient:
    """The `/_ossmount/admin/` API of one server (stdlib http.client, one connection per call)."""

    def __init__(self, host: str, port: int, token: str | None):
        self.host = host
        self.port = port
        self.token = token

    def call(self, method: str, path: str, document: Any = None, *, token: str | None = None) -> Any:
        """One admin request; returns the decoded JSON answer or raises AdminError."""
        body = None if document is None else json.dumps(document).encode()
        headers = {"Content-Type": "application/json"}
        offered = self.token if token is None else token
        if offered is not None:
            headers["x-ossmount-admin-token"] = offered
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, "/_ossmount/admin/" + path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        answer = json.loads(payload) if payload else None
        if response.status != 200:
            raise AdminError(response.status, answer)
        return answer

    def counters(self) -> dict[str, int]:
        return self.call("GET", "counters")

    def reset_counters(self) -> None:
        self.call("POST", "counters/reset")

    def requests(self) -> list[dict[str, Any]]:
        """The last requests, oldest first: op, method, bucket, key, status, bytes (sent), request_bytes, user_agent,
        range, fault, headers (lowercase names, without Authorization and security tokens), withheld_headers (the
        names of those left out), query (signatures redacted) and traffic_limit (the x-oss-traffic-limit in bit/s
        the body was throttled to, or None)."""
        return self.call("GET", "requests")

    def reset_requests(self) -> None:
        self.call("POST", "requests/reset")

    def connections(self) -> dict[str, int]:
        """Client connections: accepted (since the last reset), open now, peak (most open at once since then)."""
        return self.call("GET", "connections")

    def reset_connections(self) -> None:
        self.call("POST", "connections/reset")

    def set_faults(self, rules: Iterable[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
        return self.call("PUT", "faults", {"seed": seed, "rules": list(rules)})

    def faults(self) -> dict[str, Any]:
        return self.call("GET", "faults")

    def clear_faults(self) -> None:
        self.call("DELETE", "faults")

    def release_held(self) -> None:
        """Let every request a "hold" fault rule stalls now continue."""
        self.call("POST", "faults/release")

    def held(self) -> int:
        """How many requests a "hold" fault rule stalls now."""
        return self.faults()["held"]

    def fsck(self, *, data: bool = False) -> list[str]:
        """The store's consistency problems (refcounts, blob files, latest versions, sizes and CRCs; with `data`, each
        extent's bytes against its CRC-64); [] when sound."""
        return self.call("GET", "fsck/data" if data else "fsck")["problems"]


class LocalServer:
    """A `python -m ossmount serve` subprocess on 127.0.0.1 with a data dir and credentials of its own."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        buckets: Sequence[str] = ("test-bucket",),
        credentials: Sequence[tuple[str, str]] = (("ossmount-test-id", "ossmount-test-secret"),),
        sts: Sequence[tuple[str, str, str]] = (("STS.ossmount-sts-id", "sts-secret", "sts-token"),),
        region: str = "cn-hangzhou",
        anonymous: bool = False,
        admin_token: str | None = "ossmount-admin-token",
        extra_args: Sequence[str] = (),
    ):
        self.data_dir = Path(data_dir)
        self.buckets = tuple(buckets)
        self.credentials = tuple(credentials)
        self.sts = tuple(sts)
        self.region = region
        self.anonymous = anonymous
        self.admin_token = admin_token
        self.extra_args = tuple(extra_args)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr_path = self.data_dir / "serve.stderr"

    # -- identity ----------------------------------------------------------------------------------------

    @property
    def access_key_id(self) -> str:
        return self.credentials[0][0]

    @property
    def access_key_secret(self) -> str:
        return self.credentials[0][1]

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials"

    @property
    def admin(self) -> AdminClient:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return AdminClient(self.host, self.port, self.admin_token)

    def _oss2_auth(self, auth_version: str, kwargs: dict[str, Any]):
        """The oss2 auth object for the first credentials; a V4 one also needs the region in `kwargs`."""
        import oss2

        if auth_version == "v1":
            return oss2.Auth(self.access_key_id, self.access_key_secret)
        if auth_version == "v4":
            kwargs.setdefault("region", self.region)
            return oss2.AuthV4(self.access_key_id, self.access_key_secret)
        raise ValueError(f"auth_version must be 'v1' or 'v4', not {auth_version!r}")

    def oss2_bucket(self, name: str, auth_version: str = "v1", **kwargs: Any):
        """An oss2.Bucket for `name` signed with the first credentials (V1 `Auth` or V4 `AuthV4`)."""
        import oss2

        return oss2.Bucket(self._oss2_auth(auth_version, kwargs), self.endpoint, name, **kwargs)

    def oss2_service(self, auth_version: str = "v1", **kwargs: Any):
        """An oss2.Service (ListBuckets) with the first credentials."""
        import oss2

        return oss2.Service(self._oss2_auth(auth_version, kwargs), self.endpoint, **kwargs)

    def boto3_client(self, signature_version: str = "s3v4", *, addressing_style: str = "path",
                     region: str | None = None, credentials: tuple[str, str] | None = None,
                     session_token: str | None = None, **config: Any):
        """A boto3 S3 client of the server's S3 dialect: `signature_version` "s3v4" (SigV4) or "s3" (SigV2), the
        first credentials unless others are given, region `region` (default: the server's)."""
        import boto3
        from botocore.config import Config

        access_key_id, secret = credentials or (self.access_key_id, self.access_key_secret)
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=region or self.region,
            aws_access_key_id=access_key_id, aws_secret_access_key=secret, aws_session_token=session_token,
            config=Config(signature_version=signature_version, s3={"addressing_style": addressing_style},
                          retries={"max_attempts": 1}, **config))

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        lines = [f"{ak}:{sk}" for ak, sk in self.credentials]
        lines += [f"{ak}:{sk}:{token}" for ak, sk, token in self.sts]
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.credentials_file, 0o600)

    def command(self) -> list[str]:
        port = 0 if self.port is None else self.port
        argv = [sys.executable, "-m", "ossmount", "serve",
                "--data-dir", str(self.data_dir / "data"),
                "--listen", f"{self.host}:{port}",
                "--credentials", str(self.credentials_file),
                "--region", self.region]
        for bucket in self.buckets:
            argv += ["--bucket", bucket]
        if self.anonymous:
            argv.append("--anonymous")
        if self.admin_token is not None:
            argv += ["--admin-token", self.admin_token]
        return argv + list(self.extra_args)

    def start(self) -> "LocalServer":
        """Spawn the server and wait (≤10 s) for its listening line."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        stderr = open(self._stderr_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                cwd=str(self.data_dir), preexec_fn=die_with_parent)
        finally:
            stderr.close()
        try:
            line = self._read_listening_line()
        except BaseException:
            self.kill()
            raise
        url = urllib.parse.urlsplit(line[len(LISTENING_PREFIX):].strip())
        self.port = url.port
        return self

    def _read_listening_line(self) -> str:
        assert self.process is not None
        line = read_first_line(self.process, "ossmount serve", START_TIMEOUT, self.stderr_text, ServerStartError)
        if not line.startswith(LISTENING_PREFIX):
            raise ServerStartError(f"unexpected first line from ossmount serve: {line!r}")
        return line

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far (all its runs)."""
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status (None if not running)."""
        process = self.process
        if process is None:
            return None
        terminate(process, STOP_TIMEOUT)
        self._close_pipes()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL and reap: a crash, as far as the data directory can tell."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._close_pipes()

    def restart(self) -> "LocalServer":
        """Stop (if running) and start again on the same port and data dir."""
        self.stop()
        return self._start_on_same_port()

    def _start_on_same_port(self) -> "LocalServer":
        # The old socket may linger briefly in the kernel; retry rather than fail on EADDRINUSE.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return self.start()
            except ServerStartError:
                if time.monotonic() > deadline or "ddress already in use" not in self.stderr_text():
                    raise
                time.sleep(0.1)

    def _close_pipes(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeEcsMetadata:
    """A small HTTP server playing the ECS instance metadata service for `ram_role` tests.

    It lists `role` at /latest/meta-data/ram/security-credentials/ and answers the role's path with the JSON of
    `credentials` (set it to rotate: (access key id, secret, token, expiration epoch seconds)). With
    `require_token` it plays hardened mode: metadata GETs need the token handed out by PUT /latest/api/token.
    `requests` lists (method, path) of every request. Use as a context manager; `endpoint` is its base URL.
    """

    def __init__(self, role: str, credentials: tuple[str, str, str, float], *, require_token: bool = False):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.role = role
        self.credentials = credentials
        self.require_token = require_token
        self.requests: list[tuple[str, str]] = []
        self.token = "metadata-session-token"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                if self.path == "/latest/api/token" and fake.require_token:
                    self._answer(200, fake.token)
                else:
                    self._answer(404, "not found")

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                if fake.require_token and self.headers.get("X-aliyun-ecs-metadata-token") != fake.token:
                    self._answer(401, "token required")
                    return
                base = "/latest/meta-data/ram/security-credentials/"
                if self.path == base:
                    self._answer(200, fake.role + "\n")
                elif self.path == base + fake.role:
                    self._answer(200, fake.document())
                else:
                    self._answer(404, "not found")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def document(self) -> str:
        access_key_id, secret, token, expires_at = self.credentials
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        return json.dumps({"Code": "Success", "AccessKeyId": access_key_id, "AccessKeySecret": secret,
                           "SecurityToken": token, "Expiration": stamp(expires_at),
                           "LastUpdated": stamp(expires_at - 6 * 3600)})

    def __enter__(self) -> "FakeEcsMetadata":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class LoopbackServer:
    """A TCP listener on 127.0.0.1 (random port) whose accept loop runs in a thread while the `with` block lasts,
    handing each connection to `_handle(client)` (which owns it from then on)."""

    scheme = "http"

    def __init__(self) -> None:
        import socket
        import threading

        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        import socket

        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self._handle(client)

    def _handle(self, client: Any) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._listener.close()


class TcpProxy(LoopbackServer):
    """TCP in front of `backend` ("host", port): each accepted connection is forwarded both ways, until
    `go_silent()`; from then on it still accepts connections but forwards nothing in either direction, holding
    whatever arrives and closing nothing (a server that answers nothing), until `answer_again()`."""

    def __init__(self, backend: tuple[str, int]):
        import threading

        self._backend = backend
        self.silent = threading.Event()
        self._sockets: list[Any] = []
        super().__init__()

    def go_silent(self) -> None:
        self.silent.set()

    def answer_again(self) -> None:
        self.silent.clear()

    def _accepted(self, client: Any) -> Any:
        """The socket to forward from (a subclass may wrap it); raises OSError to drop the connection."""
        return client

    def _handle(self, client: Any) -> None:
        import socket
        import threading

        try:
            client.settimeout(30)
            client = self._accepted(client)
            upstream = socket.create_connection(self._backend, timeout=30)
        except OSError:  # ssl.SSLError included
            client.close()
            return
        self._sockets += [client, upstream]
        threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: Any, upstream: Any) -> None:
        """Forward both directions in one thread: a TLS socket must not be read in one thread while another writes
        it (OpenSSL's state is not thread-safe: the connection broke now and then, so a kept-alive client had to
        reconnect). Bytes TLS has already decrypted are not seen by select(), hence `pending()`."""
        import select
        import socket
        import time

        peer = {client: upstream, upstream: client}
        try:
            while not self._stopping.is_set():
                if self.silent.is_set():
                    time.sleep(0.05)
                    continue
                ready = [sock for sock in (client, upstream) if getattr(sock, "pending", lambda: 0)()]
                if not ready:
                    ready = select.select([client, upstream], [], [], 0.1)[0]
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    peer[source].sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass


class TlsProxy(TcpProxy):
    """TLS in front of a plain-HTTP server (the local OSS server speaks HTTP only), for TLS option tests.

    It makes a self-signed certificate for `host_name` with the openssl command (`cert_path` can then be trusted,
    e.g. through REQUESTS_CA_BUNDLE) and forwards every decrypted connection to `backend` ("host", port)."""

    scheme = "https"

    def __init__(self, backend: tuple[str, int], workdir: str | os.PathLike[str], host_name: str = "oss.example"):
        import ssl

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path = workdir / "proxy.pem"
        self.key_path = workdir / "proxy.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={host_name}", "-addext", f"subjectAltName=DNS:{host_name}",
                        "-keyout", str(self.key_path), "-out", str(self.cert_path)],
                       check=True, capture_output=True)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(self.cert_path, self.key_path)
        super().__init__(backend)

    def _accepted(self, client: Any) -> Any:
        return self._context.wrap_socket(client, server_side=True)


class ScriptedHttpServer(LoopbackServer):
    """A loopback HTTP/1.1 server whose every answer the test writes: for hostile or broken servers (malformed
    XML, truncated or huge bodies, odd encodings) that the real server would never send.

        def answer(request: ScriptedRequest) -> bytes:
            return http_response(200, b"<ListBucketResult>...", {"Content-Type": "application/xml"})

        with ScriptedHttpServer(answer) as server:
            store = ObjectStore.create(endpoint=server.endpoint, ...)

    Each connection serves one request (the answer should carry `Connection: close`; `http_response` adds it) and
    is closed after the answer's bytes are sent, so a truncated body ends the connection as a dropped one would.
    `answer` may be replaced between requests; `requests` lists every request seen."""

    def __init__(self, answer: "Callable[[ScriptedRequest], bytes]"):
        self.answer = answer
        self.requests: list[ScriptedRequest] = []
        super().__init__()

    def _handle(self, client: Any) -> None:
        import socket

        with client:
            try:
                client.settimeout(10)
                request = self._read_request(client)
                if request is None:
                    return
                self.requests.append(request)
                client.sendall(self.answer(request))
                client.shutdown(socket.SHUT_WR)
            except OSError:
                return

    @staticmethod
    def _read_request(client: Any) -> "ScriptedRequest | None":
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                break
            body += chunk
        parsed = urllib.parse.urlsplit(target)
        return ScriptedRequest(method, parsed.path, dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
                               headers, body)


class ScriptedRequest:
    """One request a ScriptedHttpServer received: method, path, query (dict), headers (lower-case names), body."""

    def __init__(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def __repr__(self) -> str:
        return f"ScriptedRequest({self.method} {self.path} {self.query})"


def http_response(status: int, body: bytes = b"", headers: dict[str, str] | None = None, *,
                  content_length: int | None = None) -> bytes:
    """The bytes of an HTTP/1.1 response with `Connection: close` and `Content-Length` (`content_length`
    overrides it, e.g. to announce more than is sent; None: len(body)) unless `headers` set Transfer-Encoding."""
    fields = {"Connection": "close", "x-oss-request-id": "scripted", **(headers or {})}
    if not any(name.lower() == "transfer-encoding" for name in fields):
        fields["Content-Length"] = str(len(body) if content_length is None else content_length)
    head = f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


# --------------------------------------------------------------------------------------------------
# The shared-mount daemon as a subprocess (daemon and CSI tests)

DAEMON_START_TIMEOUT = 30.0
# Fast timing knobs for tests: probes every 0.2 s, restarts after 0.1 s; no test asserts a duration.
FAST_DAEMON_ARGS = ("--health-interval", "0.2", "--probe-timeout", "1", "--restart-backoff", "0.1",
                    "--restart-backoff-max", "1", "--status-interval", "0.2")


def process_exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return True
    return text[text.rindex(")") + 2:].split()[0] in ("Z", "X")


def processes_mentioning(text: str) -> list[int]:
    """Live processes (not this one) with `text` in one of their argv words: how tests find what they started."""
    found = []
    needle = os.fsencode(text)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if any(needle in word for word in argv) and not process_exited(int(entry)):
            found.append(int(entry))
    return found


def mounts_under(root: str) -> list[str]:
    """Mount points at or below `root` (deepest first), from /proc/self/mountinfo."""
    from ossmount.daemon.mountinfo import MountTable

    return [entry.mount_point for entry in MountTable.read().under(os.path.realpath(root))]


class LocalDaemon:
    """`python -m ossmount daemon` on a socket, run dir and allowed prefix of its own under `root`.

        with LocalDaemon(tmp_root) as daemon:
            daemon.client.stage("vol", spec, credentials)

    `cleanup()` (also on exit) unstages every volume, stops the daemon, kills any process whose argv mentions
    `root` and lazily unmounts whatever is still mounted under it; it returns what it had to clean up by force.
    `root` should be short (a unix socket path is limited to 107 bytes)."""

    def __init__(self, root: str | os.PathLike[str], *, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None, fast: bool = True):
        from ossmount.daemon.client import DaemonClient

        self.root = Path(root)
        self.socket_path = self.root / "ossmountd.sock"
        self.run_dir = self.root / "run"
        self.log_path = self.root / "daemon.log"
        self.extra_args = list(extra_args)
        self.env = env
        self.fast = fast
        self.process: subprocess.Popen[bytes] | None = None
        self.client = DaemonClient(str(self.socket_path), timeout=150)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ossmount", "daemon", "--socket", str(self.socket_path),
                "--run-dir", str(self.run_dir), "--allowed-target-prefix", str(self.root),
                *(FAST_DAEMON_ARGS if self.fast else ()), *self.extra_args]

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, *, extra_args: Sequence[str] | None = None, env: dict[str, str] | None = None) -> "LocalDaemon":
        """Start and wait until /v1/health answers 200."""
        from ossmount.daemon.client import DaemonClientError

        if extra_args is not None:
            self.extra_args = list(extra_args)
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT, env=env if env is not None else self.env,
                                            preexec_fn=die_with_parent)
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while True:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(f"ossmount daemon exited with {code}\n{self.log}")
            try:
                self.client.health()
                return self
            except DaemonClientError:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"ossmount daemon not healthy after {DAEMON_START_TIMEOUT:.0f} s"
                                           f"\n{self.log}") from None
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (the API stops; FUSE processes and mounts stay) and wait."""
        if self.process is None:
            return None
        return terminate(self.process, 30)

    def kill(self) -> None:
        """SIGKILL: a crash of the daemon alone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def cleanup(self) -> list[str]:
        """Leave nothing behind; returns a description of what had to be removed by force."""
        forced: list[str] = []
        if self.running:
            try:
                for volume in self.client.volumes():
                    for target in volume["targets"]:
                        self.client.unpublish(volume["volume_id"], target["path"])
                    self.client.unstage(volume["volume_id"], force=True, drain_timeout_s=10)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on whatever the daemon says
                forced.append(f"unstage failed: {exc}")
        self.stop()
        pids = processes_mentioning(str(self.root))
        for pid in pids:
            forced.append(f"process {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: [p for p in pids if not process_exited(p)], lambda alive: not alive, timeout=10)
        from ossmount.daemon.system import unmount

        for _ in range(10):
            mounted = mounts_under(str(self.root))
            if not mounted:
                break
            for mount_point in mounted:
                forced.append(f"mount {mount_point}")
                try:
                    unmount(mount_point, detach=True)
                except OSError:
                    pass
        return forced

    def __enter__(self) -> "LocalDaemon":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
