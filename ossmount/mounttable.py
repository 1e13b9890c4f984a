"""Which mounts exist on this host, and which ossmount process serves each (for "mounting twice").

Two sources:
  * `/proc/self/mountinfo` (parsed by ossmount.daemon.mountinfo): whether a path is a mount point and of what
    type. The mount point is never `stat`ed to decide: a dead FUSE mount answers stat from cached attributes
    and a wedged one hangs; liveness is a statvfs in a worker thread under a timeout (`probe`).
  * a record each `ossmount` mount process writes once it is ready and removes when it exits:
    `<runtime dir>/mounts/<sha256 of the mountpoint>.json` holding its pid, bucket, prefix, endpoint and an
    `identity` (a digest of bucket, prefix and every option). The runtime dir is `/run/ossmount` for root,
    else `$XDG_RUNTIME_DIR/ossmount`, else `/tmp/ossmount-<uid>`. A record whose pid is gone means nothing.

The rule built on them (ossmount.mount): mounting where an ossmount mount of the same bucket, prefix and
options is live succeeds without a second process (fstab/automount retries); any other FUSE mount there
is refused with exit 7 naming it and its pid; a dead FUSE mount (ENOTCONN) is unmounted lazily and mounted
over (or refused with the command that clears it, with dead_mount=fail).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import stat
import threading
from typing import Any

from ossmount.daemon.mountinfo import MOUNTINFO_PATH, MountEntry, MountTable

PROBE_TIMEOUT = 5.0


def resolve(path: str) -> str:
    """`path` made absolute with its parent resolved, as mountinfo names mount points; the last component is
    not followed, so resolving never reaches (and never hangs on) a FUSE mount on `path` itself."""
    absolute = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def mount_at(path: str, mountinfo: str = MOUNTINFO_PATH) -> MountEntry | None:
    """The topmost mount on `path`, or None (also when mountinfo cannot be read)."""
    try:
        return MountTable.read(mountinfo).top(resolve(path))
    except (OSError, ValueError):
        return None


def probe(path: str, timeout: float = PROBE_TIMEOUT) -> str:
    """"ok", "timeout" or the errno name (ENOTCONN for a mount whose process is gone) of statvfs(`path`), run in
    a daemon thread so that a wedged FUSE server cannot hang the caller."""
    outcome: list[str] = []

    def run() -> None:
        try:
            os.statvfs(path)
            outcome.append("ok")
        except OSError as exc:
            outcome.append(errno.errorcode.get(exc.errno or 0, str(exc.errno)))

    thread = threading.Thread(target=run, name="ossmount-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else "timeout"


def identity(bucket: str, prefix: str, options: Any) -> str:
    """A digest of what makes two mounts "the same": bucket, prefix and every option value."""
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.compare}
    document = json.dumps({"bucket": bucket, "prefix": prefix, "options": values}, sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()


def runtime_dir() -> str:
    if os.geteuid() == 0:
        return "/run/ossmount"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "ossmount") if xdg else f"/tmp/ossmount-{os.getuid()}"


def record_path(mountpoint: str) -> str:
    """Where the record of the mount at `mountpoint` (an absolute, resolved path) lives.

    Callers pass `resolve(path)`; a mount process resolves it *before* mounting (resolving the path of its own
    live mount from its event loop would wait for itself).
    """
    digest = hashlib.sha256(mountpoint.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(records_dir(), digest + ".json")


def records_dir() -> str:
    """The directory of the mount records (and, by default, of the mounts' control sockets)."""
    return os.path.join(runtime_dir(), "mounts")


# Everyone may read the records (`ossmount stats` as a user); the control sockets beside them are 0600.
RECORDS_DIR_MODE = 0o755


def make_records_dir() -> str:
    """The directory of the records (and of the control sockets beside them), created mode RECORDS_DIR_MODE
    whatever the umask, and brought back to it if this user owns it with another mode: it is made by whichever
    comes first, a record or a control socket, and a 0700 directory hid every record from other users."""
    directory = records_dir()
    os.makedirs(directory, mode=RECORDS_DIR_MODE, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != RECORDS_DIR_MODE:
        os.chmod(directory, RECORDS_DIR_MODE)
    return directory


def write_record(mountpoint: str, record: dict) -> str:
    """Write this process's record for the resolved `mountpoint` (atomically); returns its path. Records of
    processes that are gone (killed, so they could not remove theirs) are removed on the way."""
    path = record_path(mountpoint)
    make_records_dir()
    for name in os.listdir(os.path.dirname(path)):
        if name.endswith(".json"):
            _read(os.path.join(os.path.dirname(path), name), require_live=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump({**record, "mountpoint": mountpoint, "pid": os.getpid()}, f)
    os.replace(temporary, path)
    return path


def remove_record(mountpoint: str) -> None:
    """Remove the record for the resolved `mountpoint` if it is this process's."""
    record = read_record(mountpoint, require_live=False)
    if record is not None and record.get("pid") == os.getpid():
        try:
            os.unlink(record_path(mountpoint))
        except OSError:
            pass


def read_record(mountpoint: str, *, require_live: bool = True) -> dict | None:
    """The record of the process serving the resolved `mountpoint`, or None (none, unreadable, or its
    process is gone)."""
    return _read(record_path(mountpoint), require_live=require_live)


def _read(path: str, *, require_live: bool) -> dict | None:
    """The record at `path`; with `require_live`, a record whose process is gone is removed (best effort)."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    if require_live and not pid_alive(record["pid"]):
        try:
            os.unlink(path)
        except OSError:
            pass
        return None
    return record


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ossmount_pids_for(mountpoint: str) -> list[int]:
    """Processes whose command line is an ossmount mount of `mountpoint` (when no record names one)."""
    target = resolve(mountpoint)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [arg.decode("utf-8", "surrogateescape") for arg in f.read().split(b"\0") if arg]
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if not any("ossmount" in arg for arg in argv[:4]):
            continue
        if any(os.path.normpath(os.path.join(cwd, arg)) == target for arg in argv[1:] if not arg.startswith("-")):
            found.append(int(name))
    return found
