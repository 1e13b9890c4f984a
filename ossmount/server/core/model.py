"""The request/response model shared by the sans-IO server core and the HTTP front end.

The front end (ossmount/server/http.py) parses the HTTP head with h11, asks the core to classify the
operation (for counters and fault injection), spools any request body to a file in the data
directory's tmp/ while computing MD5 and CRC64, and then calls `ServerCore.handle(request)`.
The core never touches a socket: it returns a `Response` whose body is either bytes or a list of
file extents that the front sends with os.sendfile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class SpooledBody:
    """A request body already received in full.

    `path` is a file under `<data-dir>/tmp/` holding exactly `size` bytes; the core may rename it into
    the blob store (it then owns it) or leave it, and the front end deletes whatever is left after the
    response. `md5` is the raw 16-byte digest and `crc64` the CRC-64/XZ of the bytes. `md5` is None when the
    front skipped MD5 for throughput (`serve --etag fast`, and no Content-MD5 header to check).
    """

    path: str | None
    size: int
    md5: bytes | None
    crc64: int
    data: bytes | None = None  # set instead of `path` for small in-memory bodies (tests, XML)
    sha256: bytes | None = None  # computed when an S3 client declares a hex x-amz-content-sha256
    aws_chunked: Any = None  # an s3.chunked.AwsChunkedBody when the body arrived aws-chunked (decoded in `path`)

    def read_bytes(self) -> bytes:
        """The whole body as bytes (only for small bodies such as XML documents)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            return b""
        with open(self.path, "rb") as f:
            return f.read()


@dataclass
class Request:
    """One HTTP request as the core sees it.

    `target` is the raw request-target (percent-encoded path plus `?query`), exactly as received,
    because signatures are computed over decoded and re-encoded forms of it. Header names are
    lowercased; repeated headers are joined with ",".
    """

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: SpooledBody | None = None
    # Fault injection ("hold" rules): called by the core once the operation's locks are held, before its handler
    # runs, to stall it there (a slow metadata store). None: no stall.
    hold: Callable[[], None] | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class FileExtent:
    """`length` bytes of the file at `path` starting at `offset`."""

    path: str
    offset: int
    length: int


@dataclass
class Response:
    """What the core answers: status, headers in order, and a body of bytes or file extents.

    Content-Length is always set by the front end from the body (OSS never answers chunked); for HEAD
    the core sets `content_length` to the object size and an empty body.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | list[FileExtent] = b""
    content_length: int | None = None  # overrides len(body) (HEAD responses)
    on_close: Callable[[], None] | None = None  # releases what the body holds (a GET's pinned blobs)

    def close(self) -> None:
        """The body was sent (or never will be): release what it holds. Idempotent; whoever sends a response
        whose body is file extents must call it."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    def body_length(self) -> int:
        if self.content_length is not None:
            return self.content_length
        if isinstance(self.body, bytes):
            return len(self.body)
        return sum(extent.length for extent in self.body)
