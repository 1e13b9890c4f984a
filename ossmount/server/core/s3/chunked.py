"""`aws-chunked` request bodies (AWS "Signature calculations for the Authorization header: transferring payload in
multiple chunks" and the unsigned-with-trailer variant), decoded sans-IO.

    <hex size>[;chunk-signature=<64 hex>]\\r\\n<data>\\r\\n ... 0[;chunk-signature=<64 hex>]\\r\\n[<trailer>\\r\\n]*\\r\\n

`AwsChunkedDecoder.feed(data)` takes the framed bytes as they arrive, in any split, and returns the payload pieces;
`finish()` checks the framing ended and returns what verifying it needs: each chunk's declared signature with the
SHA-256 of its data (when signatures are present) and the trailers. The signature chain itself is checked by
`ossmount.server.core.s3.auth.verify_chunk_signatures` once the request's seed signature is known.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MAX_LINE = 4096
STREAMING_PREFIX = "STREAMING-"


class ChunkedFormatError(ValueError):
    """The body is not valid aws-chunked framing; `incomplete` when it merely ended before its final chunk."""

    def __init__(self, message: str, *, incomplete: bool = False):
        super().__init__(message)
        self.incomplete = incomplete


@dataclass
class AwsChunkedBody:
    """A decoded aws-chunked body: (declared signature, hex SHA-256 of the data) per chunk, the final empty chunk
    included, when the chunks were signed; the trailer headers (lower-case names); the decoded size."""

    chunk_signatures: list[tuple[str, str]] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    decoded_size: int = 0


def is_aws_chunked(headers: dict[str, str]) -> bool:
    """Whether a request's body is aws-chunked framed (x-amz-content-sha256: STREAMING-...)."""
    return (headers.get("x-amz-content-sha256") or "").startswith(STREAMING_PREFIX)


class AwsChunkedDecoder:
    """Incremental decoder; raises ChunkedFormatError on malformed framing."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "size"  # size -> data -> data-end -> ... -> trailer -> done
        self._remaining = 0
        self._signature: str | None = None
        self._digest = None
        self.result = AwsChunkedBody()

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Consume framed bytes; return the payload bytes they completed, in order."""
        if self._state == "done":
            if bytes(data).strip():
                raise ChunkedFormatError("data after the end of an aws-chunked body")
            return []
        self._buffer += data
        out: list[bytes] = []
        while True:
            if self._state == "data":
                if not self._buffer:
                    return out
                take = bytes(self._buffer[: self._remaining])
                del self._buffer[: len(take)]
                self._remaining -= len(take)
                if self._digest is not None:
                    self._digest.update(take)
                self.result.decoded_size += len(take)
                out.append(take)
                if self._remaining == 0:
                    self._state = "data-end"
                continue
            line = self._line()
            if line is None:
                return out
            if self._state == "data-end":
                if line:
                    raise ChunkedFormatError("chunk data longer than its declared size")
                self._end_chunk()
                self._state = "size"
            elif self._state == "size":
                self._start_chunk(line)
            elif self._state == "trailer":
                if not line:
                    self._state = "done"
                    if bytes(self._buffer).strip():
                        raise ChunkedFormatError("data after the end of an aws-chunked body")
                    return out
                name, sep, value = line.partition(":")
                if not sep:
                    raise ChunkedFormatError(f"malformed trailer line {line!r}")
                self.result.trailers[name.strip().lower()] = value.strip()

    def _line(self) -> str | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise ChunkedFormatError("chunk header line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise ChunkedFormatError("chunk header is not ASCII") from None

    def _start_chunk(self, line: str) -> None:
        size_text, _, extensions = line.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise ChunkedFormatError(f"bad chunk size {size_text!r}") from None
        if size < 0:
            raise ChunkedFormatError("negative chunk size")
        self._signature = None
        for extension in extensions.split(";") if extensions else []:
            name, _, value = extension.partition("=")
            if name.strip() == "chunk-signature":
                self._signature = value.strip()
        self._digest = hashlib.sha256() if self._signature is not None else None
        self._remaining = size
        if size == 0:
            self._end_chunk()
            self._state = "trailer"
        else:
            self._state = "data"

    def _end_chunk(self) -> None:
        if self._signature is not None and self._digest is not None:
            self.result.chunk_signatures.append((self._signature, self._digest.hexdigest()))
        self._signature = None
        self._digest = None

    def finish(self) -> AwsChunkedBody:
        """The decoded body's description; ChunkedFormatError if the final chunk never came."""
        if self._state == "trailer" and self._buffer == b"\r\n":
            self._state = "done"
        if self._state == "trailer" and not self._buffer:
            self._state = "done"  # a final chunk with no trailer section at all
        if self._state != "done":
            raise ChunkedFormatError("the aws-chunked body ended before its final chunk", incomplete=True)
        return self.result
