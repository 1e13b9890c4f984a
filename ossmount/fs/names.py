"""Which keys become which directory entries (sans-IO).

A directory listing (ListObjects with delimiter '/') gives the objects directly under a prefix and the
common prefixes ("subdirectories"). Most become entries named by the rest of the key; some cannot:

Rules (first match wins), for a directory whose key prefix is `d/`:
  1. the object `d/` itself is the directory's own marker: not an entry.
  2. a name that is not a valid POSIX file name is never shown: `d/.`, `d/..` and everything under
     `d/./`, `d/../` (a path component '.' or '..'), `d//` and `d//x` (an empty component: a '//' in the
     key), names longer than 255 bytes (NAME_MAX) or holding a NUL byte.
  3. a file and a directory of the same name (`d/foo` next to `d/foo/bar` or `d/foo/`): the file is
     shown and the directory's keys are hidden behind it, as ossfs shows them (it HEADs `foo` first).
     Deleting the file makes the directory visible.

So readdir never emits '.' or '..' from a key and never emits a name twice. Every hidden key or prefix
is reported with its reason (the filesystem logs each once), and `rmdir` of a directory that looks empty
but still holds hidden keys fails with ENOTEMPTY and a log line naming them: ossmount never deletes a key
that could not be seen. Remove such keys with another OSS client (ossutil, the console, oss2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Iterable, TypeVar

NAME_MAX = 255

T = TypeVar("T")

REASON_DOT = "'.' and '..' cannot be file names"
REASON_EMPTY = "an empty path component ('//' in the key) cannot be a file name"
REASON_TOO_LONG = f"the name is longer than {NAME_MAX} bytes"
REASON_NUL = "the name contains a NUL byte"


def unshowable_reason(name: str) -> str | None:
    """Why `name` (one path component) cannot be a directory entry, or None if it can."""
    if name in (".", ".."):
        return REASON_DOT
    if name == "":
        return REASON_EMPTY
    if "\0" in name:
        return REASON_NUL
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        return REASON_TOO_LONG
    return None


def shadowed_reason(dir_key: str, file_key: str) -> str:
    return (f"the file '{file_key}' has the same name and is shown instead (as ossfs does); "
            f"the keys under '{dir_key}' appear once that file is removed")


@dataclass
class DirectoryListing(Generic[T]):
    """What one directory shows: `files` (name → listed object), `dirs` (names of subdirectories) and
    `hidden` ((key or prefix, reason) of everything that cannot be shown)."""

    files: dict[str, T] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    hidden: list[tuple[str, str]] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return set(self.files) | self.dirs


def split_listing(dir_prefix: str, objects: Iterable[tuple[str, T]], prefixes: Iterable[str]) -> DirectoryListing[T]:
    """Apply the module rules to one listing of `dir_prefix` ("" for the bucket root, else ending in '/').

    `objects` are (key, value) pairs (the value is carried to `files`), `prefixes` the common prefixes.
    Keys that do not start with `dir_prefix` are ignored. A listing without a delimiter also works: a key
    with a '/' after the prefix counts as its first component's directory.
    """
    result: DirectoryListing[T] = DirectoryListing()
    dir_names: dict[str, str] = {}  # name → the prefix it came from
    for key, value in objects:
        if not key.startswith(dir_prefix) or key == dir_prefix:
            continue
        rest = key[len(dir_prefix):]
        name, slash, _ = rest.partition("/")
        if slash:
            dir_names.setdefault(name, dir_prefix + name + "/")
            continue
        reason = unshowable_reason(name)
        if reason is not None:
            result.hidden.append((key, reason))
        else:
            result.files[name] = value
    for prefix in prefixes:
        if prefix.startswith(dir_prefix) and prefix != dir_prefix:
            name = prefix[len(dir_prefix):].partition("/")[0]
            dir_names.setdefault(name, dir_prefix + name + "/")
    for name, prefix in sorted(dir_names.items()):
        reason = unshowable_reason(name)
        if reason is None and name in result.files:
            reason = shadowed_reason(prefix, dir_prefix + name)
        if reason is not None:
            result.hidden.append((prefix, reason))
        else:
            result.dirs.add(name)
    return result
