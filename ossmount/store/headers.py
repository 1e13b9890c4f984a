"""What headers and copy strategy the store's requests use, as the mount options ask (sans-IO).

Rules (ossfs 1.91.10 option meanings, ossfs-options.md; OSS API reference for the header names):
  1. Every request carries `x-oss-request-payer: requester` with `requester_pays`, and the User-Agent
     `user_agent` (None: no User-Agent header at all, ossfs `noua`).
  2. Every write that creates or replaces an object — PutObject, InitiateMultipartUpload, CopyObject (also a
     metadata update onto the same key) — carries the canned ACL (`default_acl`), the storage class
     (`storage_class`), server-side encryption (`use_sse`: AES256, or KMS with an optional key id) and the extra
     headers `ahbe_conf` gives for the key's mount path. The extra headers come last and win, as in ossfs.
  3. A request with a body to upload (PutObject, UploadPart) carries `x-oss-traffic-limit` (bit/s) when
     `upload_traffic_limit` is set; a download (GetObject) when `download_traffic_limit` is.
  4. Copies follow `CopyPolicy`: without the copy API (`nocopyapi`, implied by `public_bucket=1`) every copy and
     metadata update downloads and re-uploads the object; `norenameapi` does so only for copies to another key;
     both, and `nomixupload`, also turn UploadPartCopy of unchanged ranges into download + UploadPart. With `noshallowcopyapi` an
     object larger than `singlepart_copy_limit` is copied part by part (UploadPartCopy, `multipart_copy_size`
     parts) instead of by one CopyObject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from ossmount import USER_AGENT

MiB = 1024 * 1024
OBJECT_ACLS = ("private", "public-read", "public-read-write", "default")
SSE_ALGORITHMS = ("AES256", "KMS")
TRAFFIC_LIMIT_MIN = 819200  # bit/s: OSS's documented range of x-oss-traffic-limit
TRAFFIC_LIMIT_MAX = 838860800


@dataclass(frozen=True)
class RequestHeaders:
    """The option-driven headers of the store's requests (see the module rules). Validated on construction."""

    object_acl: str | None = None
    storage_class: str | None = None
    server_side_encryption: str | None = None  # AES256 | KMS
    sse_key_id: str | None = None  # with KMS only
    request_payer: bool = False
    upload_traffic_limit: int = 0  # bit/s, 0 = none
    download_traffic_limit: int = 0  # bit/s, 0 = none
    user_agent: str | None = USER_AGENT
    extra_headers: Callable[[str], Mapping[str, str]] | None = None  # key -> headers (ahbe_conf)

    def __post_init__(self) -> None:
        if self.object_acl is not None and self.object_acl not in OBJECT_ACLS:
            raise ValueError(f"object_acl must be one of {OBJECT_ACLS}")
        if self.server_side_encryption is not None and self.server_side_encryption not in SSE_ALGORITHMS:
            raise ValueError(f"server_side_encryption must be one of {SSE_ALGORITHMS}")
        if self.sse_key_id and self.server_side_encryption != "KMS":
            raise ValueError("sse_key_id needs server_side_encryption='KMS'")
        for limit in (self.upload_traffic_limit, self.download_traffic_limit):
            if limit and not TRAFFIC_LIMIT_MIN <= limit <= TRAFFIC_LIMIT_MAX:
                raise ValueError(f"traffic limits are 0 or {TRAFFIC_LIMIT_MIN}..{TRAFFIC_LIMIT_MAX} bit/s")

    def every_request(self) -> dict[str, str]:
        """Headers of every request (rule 1, without the User-Agent, which the transport sets)."""
        return {"x-oss-request-payer": "requester"} if self.request_payer else {}

    def for_write(self, key: str) -> dict[str, str]:
        """Headers of a write that creates or replaces `key` (rule 2)."""
        headers: dict[str, str] = {}
        if self.object_acl is not None:
            headers["x-oss-object-acl"] = self.object_acl
        if self.storage_class is not None:
            headers["x-oss-storage-class"] = self.storage_class
        if self.server_side_encryption is not None:
            headers["x-oss-server-side-encryption"] = self.server_side_encryption
            if self.sse_key_id:
                headers["x-oss-server-side-encryption-key-id"] = self.sse_key_id
        if self.extra_headers is not None:
            return merge_headers(headers, self.extra_headers(key))
        return headers

    def for_upload(self) -> dict[str, str]:
        """Headers of a request that uploads a body (rule 3)."""
        return {"x-oss-traffic-limit": str(self.upload_traffic_limit)} if self.upload_traffic_limit else {}

    def for_download(self) -> dict[str, str]:
        """Headers of a GetObject (rule 3)."""
        return {"x-oss-traffic-limit": str(self.download_traffic_limit)} if self.download_traffic_limit else {}


def merge_headers(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """`base` updated by `extra`, header names compared case-insensitively (the later spelling wins)."""
    merged = dict(base)
    for name, value in extra.items():
        for existing in [n for n in merged if n.lower() == name.lower()]:
            del merged[existing]
        merged[name] = value
    return merged


@dataclass(frozen=True)
class CopyPolicy:
    """How the store copies objects (rule 4). Sizes in bytes."""

    copy_api: bool = True  # False: nocopyapi / public_bucket=1
    rename_api: bool = True  # False: norenameapi
    shallow_copy: bool = True  # False: noshallowcopyapi
    mix_upload: bool = True  # False: nomixupload
    singlepart_copy_limit: int = 512 * MiB
    multipart_copy_size: int = 512 * MiB
    rewrite_part_size: int = 10 * MiB  # part size when a copy is done by download + upload

    def __post_init__(self) -> None:
        if min(self.singlepart_copy_limit, self.multipart_copy_size, self.rewrite_part_size) <= 0:
            raise ValueError("copy sizes must be positive")

    def copies_by_rewrite(self, src_key: str, dst_key: str) -> bool:
        """True when a copy from `src_key` to `dst_key` must download and re-upload instead of CopyObject."""
        return not self.copy_api or (not self.rename_api and src_key != dst_key)

    @property
    def part_copy(self) -> bool:
        """Whether unchanged ranges of a rewritten object may be copied on the server (UploadPartCopy)."""
        return self.copy_api and self.rename_api and self.mix_upload

    def copies_in_parts(self, size: int) -> bool:
        """True when an object of `size` bytes is copied with UploadPartCopy rather than one CopyObject."""
        return not self.shallow_copy and size > self.singlepart_copy_limit
