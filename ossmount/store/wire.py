"""What one OSS request looks like on the wire: addressing, the request line, headers and the signature.

Rules (OSS API reference; oss2 2.19.1 `api._UrlMaker`, `auth.ProviderAuth`/`ProviderAuthV4`, which ossmount signs
with — oss-api.md §2.1-2.2):
  1. Addressing: an IP or `localhost` endpoint, or `path_style` (ossfs `use_path_request_style`), puts the bucket in
     the path (`/BUCKET/KEY`); otherwise the bucket is the first label of the host (`BUCKET.HOST`), as long as it is
     a valid bucket name. The key is percent-encoded with no safe characters ('/' becomes %2F), as oss2 sends it.
  2. `service_path` (servicepath=) is put in front of every path after signing: a reverse proxy strips it before
     OSS sees the request, so the signature covers /BUCKET/KEY.
  3. Query parameters keep their order and are percent-encoded with no safe characters; an empty value is `k=`.
  4. Header names are lower case (HTTP does not care; oss2's signer reads `content-type`, `content-md5`, `date` and
     `x-oss-*` that way). Every request carries the option-driven ones (headers.py rule 1) and the User-Agent
     unless `noua`.
  5. Signatures are oss2's own (V1 `ProviderAuth`, V4 `ProviderAuthV4`, STS tokens included), computed with the
     credentials current for this request; anonymous requests (public_bucket=1) are not signed. V1 requests get
     their Date header from `http_date()`, the text oss2 would give, made once per second rather than per request
     (email.utils.formatdate costs 10-20 µs of a ~220 µs request in a busy process, issue 11).
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from typing import Any, Mapping

import oss2
import oss2.headers
import oss2.utils

_quote = urllib.parse.quote


class OssRequest:
    """The parts of one request that oss2's signers read (`method`, `headers`, `params`, `region`, `product`,
    `cloudbox_id`), plus what the store sends: `key` ("" for bucket-level requests) and `body`."""

    __slots__ = ("method", "key", "params", "headers", "body", "region", "product", "cloudbox_id")

    def __init__(self, method: str, key: str = "", *, params: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, body: Any = None):
        self.method = method
        self.key = key
        self.params = dict(params) if params else {}
        self.headers = {name.lower(): value for name, value in headers.items()} if headers else {}
        self.body = body
        self.region: str | None = None
        self.product = "oss"
        self.cloudbox_id = None


class Addressing:
    """Where requests for `bucket` at `endpoint` go (rules 1-3): `host`/`port` to connect to, the Host header, and
    `target(request)`, the request-target."""

    def __init__(self, endpoint: str, bucket: str, *, path_style: bool = False, service_path: str = ""):
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {endpoint!r} is not http[s]://host[:port]")
        self.scheme = parts.scheme
        self.tls = parts.scheme == "https"
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self.port = parts.port or (443 if self.tls else 80)
        self.path_style = (path_style or oss2.utils.is_ip_or_localhost(netloc)
                           or not oss2.utils.is_valid_bucket_name(bucket))
        self.host = parts.hostname if self.path_style else f"{bucket}.{parts.hostname}"
        host_text = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host_text if parts.port is None else f"{host_text}:{parts.port}"
        self.netloc = netloc
        service = service_path.strip("/")
        prefix = "/" + service if service else ""
        self._prefix = prefix + ("/" + bucket if self.path_style else "")

    def path(self, key: str) -> str:
        return f"{self._prefix}/{_quote(key, safe='')}"

    def target(self, request: OssRequest) -> str:
        path = self.path(request.key)
        if not request.params:
            return path
        return path + "?" + "&".join(f"{_quote(name, safe='')}={_quote(value or '', safe='')}"
                                     for name, value in request.params.items())

    def url(self, key: str) -> str:
        """The request URL of `key` (for messages and tests)."""
        return f"{self.scheme}://{self.host_header}{self.path(key)}"


class _Static(oss2.credentials.CredentialsProvider):
    def __init__(self, credentials: Any):
        self._credentials = oss2.credentials.Credentials(credentials.access_key_id, credentials.access_key_secret,
                                                         credentials.security_token or "")

    def get_credentials(self) -> oss2.credentials.Credentials:
        return self._credentials


_date_cache: tuple[int, str] = (-1, "")


def http_date() -> str:
    """The current time as an HTTP date (`Mon, 30 Nov 2026 18:00:00 GMT`), as oss2.utils.http_date() gives it
    (email.utils.formatdate of the current second), formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class _ProviderAuth(oss2.ProviderAuth):
    """oss2's V1 signer (its string to sign and HMAC-SHA1, `ProviderAuth.__make_signature`); only the Date comes
    from `http_date()` (rule 5). `_sign_request` is oss2 2.19.1's, line for line, but for that."""

    def _sign_request(self, req: Any, bucket_name: str, key: str) -> None:
        credentials = self.credentials_provider.get_credentials()
        token = credentials.get_security_token()
        if token:
            req.headers[oss2.headers.OSS_SECURITY_TOKEN] = token
        req.headers["date"] = http_date()
        signature = self._ProviderAuth__make_signature(req, bucket_name, key, credentials)  # type: ignore[attr-defined]
        req.headers["authorization"] = f"OSS {credentials.get_access_key_id()}:{signature}"


class Signer:
    """Signs requests for one bucket with oss2's V1 or V4 signer (rule 5), for given credentials."""

    def __init__(self, bucket: str, *, sigv4: bool, region: str | None):
        if sigv4 and not region:
            raise ValueError("sigv4 needs a region")
        self.bucket = bucket
        self.sigv4 = sigv4
        self.region = region
        self._for: Any = None
        self._auth: Any = None

    def sign(self, request: OssRequest, credentials: Any) -> None:
        """Add Date (or x-oss-date), the security token and Authorization to `request.headers`; None signs nothing."""
        if credentials is None:
            return
        if credentials is not self._for:  # one auth object per credentials: they change rarely
            provider = _Static(credentials)
            self._auth = oss2.ProviderAuthV4(provider) if self.sigv4 else _ProviderAuth(provider)
            self._for = credentials
        request.region = self.region
        self._auth._sign_request(request, self.bucket, request.key)
