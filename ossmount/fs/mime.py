"""Content-Type of uploads from a mime.types file, by file extension (case-insensitive).

mime.types format: `type/subtype ext1 ext2 ...` per line, `#` starts a comment. When an extension is
listed twice the first line wins (as in Apache's and ossfs's loaders). Names without an extension,
or with an unknown one, get application/octet-stream. When the file is absent a built-in table serves
(logged at info); a file named explicitly with `mime=` that cannot be read is a ConfigError.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ossmount.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_MIME_PATH = "/etc/mime.types"

# Common types, used when no mime.types file exists (e.g. slim container images).
BUILTIN_TYPES: Mapping[str, str] = {
    "txt": "text/plain", "text": "text/plain", "log": "text/plain", "conf": "text/plain", "md": "text/markdown",
    "html": "text/html", "htm": "text/html", "css": "text/css", "csv": "text/csv", "tsv": "text/tab-separated-values",
    "xml": "application/xml", "js": "application/javascript", "mjs": "application/javascript",
    "json": "application/json", "yaml": "application/yaml", "yml": "application/yaml",
    "pdf": "application/pdf", "zip": "application/zip", "gz": "application/gzip", "tgz": "application/gzip",
    "bz2": "application/x-bzip2", "xz": "application/x-xz", "zst": "application/zstd",
    "tar": "application/x-tar", "7z": "application/x-7z-compressed", "rar": "application/vnd.rar",
    "jar": "application/java-archive", "wasm": "application/wasm", "sh": "application/x-sh",
    "py": "text/x-python", "c": "text/x-c", "h": "text/x-c", "java": "text/x-java",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "bmp": "image/bmp",
    "webp": "image/webp", "svg": "image/svg+xml", "ico": "image/vnd.microsoft.icon", "tif": "image/tiff",
    "tiff": "image/tiff", "avif": "image/avif", "heic": "image/heic",
    "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "flac": "audio/flac", "m4a": "audio/mp4",
    "aac": "audio/aac", "mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "webm": "video/webm",
    "mkv": "video/x-matroska", "avi": "video/x-msvideo", "flv": "video/x-flv", "m3u8": "application/vnd.apple.mpegurl",
    "ts": "video/mp2t", "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
    "parquet": "application/vnd.apache.parquet", "bin": "application/octet-stream",
}


def parse_mime_types(lines: Iterable[str]) -> dict[str, str]:
    """Extension (lowercase, no dot) → type from mime.types lines; the first mention of an extension wins."""
    table: dict[str, str] = {}
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or "/" not in words[0]:
            continue
        content_type = words[0]
        for extension in words[1:]:
            table.setdefault(extension.lower().lstrip("."), content_type)
    return table


@dataclass(frozen=True)
class MimeTypes:
    """An extension → Content-Type table; `source` is the file it came from or "built-in"."""

    table: Mapping[str, str] = field(default_factory=dict)
    source: str = "built-in"
    default: str = DEFAULT_CONTENT_TYPE

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, required: bool = False) -> "MimeTypes":
        """Load `path` (default /etc/mime.types); the built-in table if it is absent.

        With `required` (the user named the file with `mime=`), an unreadable file is a ConfigError.
        """
        target = os.fspath(path) if path is not None else DEFAULT_MIME_PATH
        try:
            with open(target, encoding="utf-8", errors="replace") as handle:
                table = parse_mime_types(handle)
        except OSError as exc:
            if required:
                raise ConfigError(
                    f"cannot read mime types file {target}: {exc.strerror}; fix the mime= option or drop it "
                    "to use the built-in table"
                ) from None
            log.info("mime types file %s not readable (%s); using the built-in table", target, exc.strerror)
            return cls.builtin()
        return cls(table, target)

    @classmethod
    def builtin(cls) -> "MimeTypes":
        return cls(dict(BUILTIN_TYPES), "built-in")

    def content_type_for(self, name: str) -> str:
        """Content-Type for a file name or key by its last extension; the default if none matches."""
        base = name.rstrip("/").rsplit("/", 1)[-1]
        stem, dot, extension = base.rpartition(".")
        if not dot or not extension or not stem.strip("."):
            return self.default
        return self.table.get(extension.lower(), self.default)
