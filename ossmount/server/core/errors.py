"""The server's one error type. Every refusal the core makes is an `OssError`, rendered once into OSS's
error XML (no namespace; Code/Message/RequestId/HostId/EC plus any `extra` elements) or, for HEAD, into
the `x-oss-err` header."""

from __future__ import annotations


class OssError(Exception):
    """An OSS error response: HTTP `status`, OSS `code`, human `message`, optional `ec` (x-oss-ec) and
    extra XML elements in order (e.g. Key, StringToSign, OSSAccessKeyId) and extra response headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        ec: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.ec = ec
        self.extra = list(extra or [])
        self.headers = list(headers or [])
