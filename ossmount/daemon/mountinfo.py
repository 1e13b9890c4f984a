"""/proc/self/mountinfo as values: the daemon's only source for "is X mounted, and by what" (sans-IO parse).

Never `stat` a path that may be a dead FUSE mount to decide anything: it hangs on a wedged server and lies
(the kernel answers from cached attributes) on a crashed one (csi-daemon.md §5.9, [E2], [E4]).

Line format (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT_POINT MOUNT_OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`;
space, tab, newline and backslash in paths appear as `\\040`-style octal escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

MOUNTINFO_PATH = "/proc/self/mountinfo"
OSSMOUNT_FSTYPE = "fuse.ossmount"
_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m[1], 8)), text)


@dataclass(frozen=True)
class MountEntry:
    """One mountinfo line. `options` are the per-mount options (`ro`, `nosuid`, ...)."""

    mount_id: int
    parent_id: int
    dev: str  # "major:minor"
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def is_ossmount(self) -> bool:
        return self.fstype == OSSMOUNT_FSTYPE

    def describe(self) -> str:
        return f"{self.fstype} {self.source}"


def parse_line(line: str) -> MountEntry:
    """One mountinfo line → MountEntry; ValueError if it is not one."""
    head, separator, tail = line.rstrip("\n").partition(" - ")
    fields = head.split(" ")
    rest = tail.split(" ")
    if not separator or len(fields) < 6 or len(rest) < 2:
        raise ValueError(f"not a mountinfo line: {line!r}")
    return MountEntry(
        mount_id=int(fields[0]), parent_id=int(fields[1]), dev=fields[2], root=unescape(fields[3]),
        mount_point=unescape(fields[4]), options=tuple(fields[5].split(",")), fstype=rest[0],
        source=unescape(rest[1]),
    )


class MountTable:
    """A snapshot of the mount table, in mount order (a later entry at the same point is on top)."""

    def __init__(self, entries: Iterable[MountEntry]):
        self.entries = list(entries)

    @classmethod
    def parse(cls, text: str) -> "MountTable":
        return cls(parse_line(line) for line in text.splitlines() if line.strip())

    @classmethod
    def read(cls, path: str = MOUNTINFO_PATH) -> "MountTable":
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return cls.parse(handle.read())

    def at(self, path: str) -> list[MountEntry]:
        """Every mount whose mount point is `path`, bottom first."""
        return [entry for entry in self.entries if entry.mount_point == path]

    def top(self, path: str) -> MountEntry | None:
        """The mount a lookup of `path` reaches, if any mount is on `path`."""
        found = self.at(path)
        return found[-1] if found else None

    def with_dev(self, dev: str) -> list[MountEntry]:
        return [entry for entry in self.entries if entry.dev == dev]

    def under(self, root: str) -> list[MountEntry]:
        """Mounts at or below `root`, deepest mount point first (the order to unmount them in)."""
        prefix = root.rstrip("/") + "/"
        found = [entry for entry in self.entries if entry.mount_point == root or entry.mount_point.startswith(prefix)]
        return sorted(found, key=lambda entry: (-entry.mount_point.count("/"), -entry.mount_id))
