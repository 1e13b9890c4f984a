"""A raw-socket HTTP client with V1 signing, for exchanges oss2 cannot produce (half bodies,
pipelining, 100-continue, malformed heads)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import urllib.parse
from email.utils import formatdate

from ossmount.testing import LocalServer


def v1_headers(server: LocalServer, method: str, bucket: str, key: str, *, content_type: str = "",
               extra: dict[str, str] | None = None, query: str = "") -> dict[str, str]:
    """Host, Date and a V1 Authorization header for `method /bucket/key?query`; `query` holds only
    sub-resources, already sorted, as V1 signs them (e.g. `partNumber=2&uploadId=X`)."""
    date = formatdate(usegmt=True)
    oss_headers = {k.lower(): v for k, v in (extra or {}).items() if k.lower().startswith("x-oss-")}
    canonical_headers = "".join(f"{k}:{oss_headers[k]}\n" for k in sorted(oss_headers))
    string_to_sign = f"{method}\n\n{content_type}\n{date}\n{canonical_headers}/{bucket}/{key}{'?' + query if query else ''}"
    digest = hmac.new(server.access_key_secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    headers = {
        "Host": f"127.0.0.1:{server.port}",
        "Date": date,
        "Authorization": f"OSS {server.access_key_id}:{base64.b64encode(digest).decode()}",
    }
    if content_type:
        headers["Content-Type"] = content_type
    headers.update(extra or {})
    return headers


def request_head(method: str, bucket: str, key: str, headers: dict[str, str], query: str = "") -> bytes:
    target = f"/{bucket}/{urllib.parse.quote(key, safe='')}{'?' + query if query else ''}"
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawConnection:
    """A socket plus a tiny response reader (Content-Length framing only, as OSS answers)."""

    def __init__(self, server: LocalServer, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def read_head(self) -> tuple[int, dict[str, str]]:
        """Status and lowercased headers of the next response (or interim response)."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError("connection closed before a response head")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def read_body(self, length: int) -> bytes:
        while len(self._buffer) < length:
            if not self._fill():
                raise ConnectionError(f"connection closed after {len(self._buffer)} of {length} body bytes")
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body

    def read_response(self, *, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.read_head()
        length = 0 if head_request else int(headers.get("content-length", "0"))
        return status, headers, self.read_body(length)

    def at_eof(self) -> bool:
        """True when the server has closed the connection (and nothing is buffered)."""
        return not self._buffer and not self._fill()


def v4_headers(server: LocalServer, method: str, bucket: str, key: str, *, content_sha256: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """Host, x-oss-date, the given x-oss-content-sha256 and an OSS V4 Authorization header for `method /bucket/key`
    (oss2 always signs UNSIGNED-PAYLOAD, so payload hashes need a signer of our own)."""
    import datetime

    from ossmount.server.core.auth import v4_canonical_request, v4_signing_key, v4_string_to_sign

    date_time = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"x-oss-date": date_time, "x-oss-content-sha256": content_sha256,
               **{k.lower(): v for k, v in (extra or {}).items()}}
    scope = f"{date_time[:8]}/{server.region}/oss/aliyun_v4_request"
    canonical = v4_canonical_request(method, headers, bucket, key, [], [])
    signature = hmac.new(v4_signing_key(server.access_key_secret, date_time[:8], server.region),
                         v4_string_to_sign(date_time, scope, canonical), hashlib.sha256).hexdigest()
    return {"Host": f"127.0.0.1:{server.port}", **headers,
            "Authorization": f"OSS4-HMAC-SHA256 Credential={server.access_key_id}/{scope}, Signature={signature}"}
