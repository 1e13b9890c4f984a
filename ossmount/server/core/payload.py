"""The payload hash a V4 signature declares, checked against the body the front received, for both dialects.

OSS V4 (`x-oss-content-sha256`, oss-api.md §2.2) and AWS V4 (`x-amz-content-sha256`) both sign a header holding
either the hex SHA-256 of the body or a marker (`UNSIGNED-PAYLOAD`, S3's `STREAMING-*` for aws-chunked bodies). The
front computes the body's SHA-256 whenever either header holds a hex digest (`declares_sha256`, while it spools
the body, outside any lock); `check_payload_sha256` compares after the signature was verified and raises the
dialect's error on a mismatch.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable

from .errors import OssError
from .model import Request

OSS_HEADER = "x-oss-content-sha256"
S3_HEADER = "x-amz-content-sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def is_hex_sha256(value: str | None) -> bool:
    return value is not None and bool(_HEX64.match(value.strip()))


def declares_sha256(headers: dict[str, str]) -> bool:
    """Whether the front must hash the body: a payload-hash header holds a hex digest."""
    return is_hex_sha256(headers.get(OSS_HEADER)) or is_hex_sha256(headers.get(S3_HEADER))


def body_sha256(request: Request) -> bytes:
    body = request.body
    if body is None:
        return hashlib.sha256(b"").digest()
    return body.sha256 if body.sha256 is not None else hashlib.sha256(body.read_bytes()).digest()


def check_payload_sha256(request: Request, header: str, mismatch: Callable[[str, str], OssError]) -> None:
    """If `header` holds a hex SHA-256, it must be the body's: else raise `mismatch(declared, computed)`."""
    declared = request.header(header)
    if not is_hex_sha256(declared):
        return
    declared = declared.strip().lower()
    computed = body_sha256(request).hex()
    if computed != declared:
        raise mismatch(declared, computed)


def oss_content_sha256_invalid(value: str) -> OssError:
    """OSS's answer to an x-oss-content-sha256 that is neither UNSIGNED-PAYLOAD nor the body's SHA-256 (OSS doc
    "0002-00000214": the value of the x-oss-content-sha256 header is invalid)."""
    return OssError(400, "InvalidArgument", "The value of the x-oss-content-sha256 header is invalid.",
                    ec="0002-00000214", extra=[("ArgumentName", OSS_HEADER), ("ArgumentValue", value)])


def check_oss_content_sha256_value(request: Request) -> None:
    """An OSS V4 request's x-oss-content-sha256 is absent, UNSIGNED-PAYLOAD or a hex SHA-256; else 400 (checked with
    the signature, before the body is looked at)."""
    value = request.header(OSS_HEADER)
    if value is not None and value.strip() != UNSIGNED_PAYLOAD and not is_hex_sha256(value):
        raise oss_content_sha256_invalid(value)


def check_oss_payload(request: Request) -> None:
    """An OSS V4 request's hex x-oss-content-sha256 must be the body's SHA-256 (else 400, EC 0002-00000214)."""
    check_payload_sha256(request, OSS_HEADER, lambda declared, computed: oss_content_sha256_invalid(declared))
