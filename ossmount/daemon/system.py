"""Kernel primitives of the daemon: bind mounts, unmounts, liveness probes, process identity, fusectl.

* Mounts use the mount(2)/umount2(2) syscalls through libc (no `mount`/`umount` binaries: `umount` stats
  the path first, which enters D-state on a wedged FUSE mount; csi-daemon.md §1.7, §5.9).
* "Is it alive" is `statvfs` in a worker thread under a timeout, one outstanding probe per mount; never
  `stat` (a crashed FUSE mount still answers stat from cached attributes [E4]).
* A process is identified by pid *and* start time (field 22 of /proc/<pid>/stat), so a reused pid is never
  mistaken for ours; a zombie counts as exited.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from dataclasses import dataclass

import trio

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2
_PRESERVED_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                    "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
FUSECTL_DIR = "/sys/fs/fuse/connections"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


class MountBusy(OSError):
    """umount2 answered EBUSY: something has open files or a cwd inside."""


def _encode(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    if _libc.mount(_encode(source), _encode(target), _encode(fstype), flags, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {source} on {target}: {os.strerror(code)}")


def bind(source: str, target: str) -> None:
    """`mount --bind source target`."""
    _mount(source, target, None, MS_BIND)


def remount_read_only(target: str, current_options: tuple[str, ...] = ()) -> None:
    """Make the bind at `target` read-only, keeping its other per-mount flags (csi-daemon.md [E9])."""
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for name in current_options:
        flags |= _PRESERVED_FLAGS.get(name, 0)
    _mount(None, target, None, flags)


def unmount(path: str, *, detach: bool = False) -> bool:
    """umount2(path); False if nothing was mounted there (EINVAL/ENOENT), MountBusy on EBUSY."""
    if _libc.umount2(_encode(path), MNT_DETACH if detach else 0) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOENT):
        return False
    if code == errno.EBUSY:
        raise MountBusy(code, f"{path} is busy")
    raise OSError(code, f"umount {path}: {os.strerror(code)}")


async def probe_statvfs(path: str, timeout: float, limiter: trio.CapacityLimiter) -> str:
    """"ok", "timeout" or the errno name (e.g. "ENOTCONN") of `statvfs(path)`, run in a worker thread.

    A probe that does not return within `timeout` is abandoned, and its thread keeps `limiter`'s token until
    the kernel lets it go: while one is stuck, further probes of the same mount answer "timeout" at once."""
    if limiter.available_tokens == 0:
        return "timeout"
    with trio.move_on_after(timeout):
        try:
            await trio.to_thread.run_sync(os.statvfs, path, abandon_on_cancel=True, limiter=limiter)
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, f"errno {exc.errno}")
        return "ok"
    return "timeout"


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    start_time: int  # clock ticks after boot

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X", "x")


def read_proc_stat(pid: int) -> ProcStat | None:
    """Fields 3 (state) and 22 (starttime) of /proc/<pid>/stat; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return ProcStat(pid, fields[0], int(fields[19]))


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """Whether `pid` is still the process that started at `start_time` and has not exited."""
    if not pid or start_time is None:
        return False
    found = read_proc_stat(pid)
    return found is not None and not found.exited and found.start_time == start_time


def process_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [os.fsdecode(part) for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def open_pidfd(pid: int, start_time: int) -> int | None:
    """A pidfd of the process if it is still the one that started at `start_time` (checked after opening, so a
    pid reused in between is never adopted); None otherwise."""
    try:
        descriptor = os.pidfd_open(pid)
    except OSError:
        return None
    if not process_alive(pid, start_time):
        os.close(descriptor)
        return None
    return descriptor


def _fusectl_path(dev: str, name: str) -> str:
    major, minor = (int(part) for part in dev.split(":"))
    return os.path.join(FUSECTL_DIR, str(os.makedev(major, minor)), name)


def ensure_fusectl() -> bool:
    """Mount fusectl on /sys/fs/fuse/connections if it is not (best effort; it gives `waiting` and `abort`)."""
    from ossmount.daemon.mountinfo import MountTable

    try:
        if any(entry.fstype == "fusectl" for entry in MountTable.read().at(FUSECTL_DIR)):
            return True
        _mount("fusectl", FUSECTL_DIR, "fusectl", 0)
        return True
    except OSError as exc:
        log.info("fusectl is not available (%s): no waiting-request counts, no connection abort", exc.strerror)
        return False


def fuse_waiting_requests(dev: str) -> int | None:
    try:
        with open(_fusectl_path(dev, "waiting")) as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None


def fuse_abort(dev: str) -> bool:
    """Abort the FUSE connection of `dev`: callers stuck in it get ENOTCONN (the last resort for a wedged server)."""
    try:
        with open(_fusectl_path(dev, "abort"), "w") as handle:
            handle.write("1")
        return True
    except (OSError, ValueError) as exc:
        log.warning("cannot abort the FUSE connection %s: %s", dev, exc)
        return False
