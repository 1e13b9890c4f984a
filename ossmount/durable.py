"""Files that survive a crash whole: the old content or the new one, never a torn mix."""

from __future__ import annotations

import os


def write_atomically(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: write a temporary sibling, fsync it, rename it over `path`, fsync the
    directory (so the rename itself is on disk). Raises OSError."""
    path = os.fspath(path)
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    sync_directory(os.path.dirname(path) or ".")


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """fsync a directory: makes the creation, rename or removal of its entries durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
