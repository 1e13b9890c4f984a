"""A mount's control channel: a unix socket only the mount's owner (or root) can use.

Where: next to the status file when the mount has one (`--status-file DIR/status.json` → `DIR/status.sock`,
so the shared-mount daemon finds each volume's socket in the volume's directory), else next to the mount's
record in the runtime dir (`/run/ossmount/mounts/<digest>.sock` for root; see `ossmount.mounttable`).
`--control-socket PATH` chooses another place. The mount's record names the socket, so
`ossmount stats MOUNTPOINT` finds it from the mountpoint (or from any bind mount of it).

Who: the socket is created mode 0600 (owner only), and every connection's peer is checked with SO_PEERCRED:
only the mount's own uid and root are answered. No TCP port is opened (metrics_listen= is separate and off by
default).

Protocol: the client sends one JSON object on one line, `{"op": "stats"}`, and reads one JSON line back:
`{"ok": true, "result": ...}` or `{"ok": false, "error": "one line"}`; then the connection closes. Operations:
`stats` (the document of `ossmount.ops.stats`), `metrics` (Prometheus text, for the daemon),
`set_log_level` (`"level": "debug"`), `ping`.

A path longer than a unix socket address allows (107 bytes) is reached through its directory
(`/proc/self/fd/N/NAME`), so deep volume directories work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import stat
import struct
from typing import Any, Awaitable, Callable, Iterator, Mapping

import trio

from ossmount import mounttable
from ossmount.errors import EXIT_MOUNT, ConfigError, QuietError

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
MAX_ANSWER = 64 * 1024 * 1024
SUN_PATH_MAX = 107
DEFAULT_TIMEOUT = 5.0

Handler = Callable[[dict], Awaitable[Any]]
_UID = re.compile(r"[0-9]+")
_TMP_RUNTIME = re.compile(r"ossmount-[0-9]+")


class ControlError(QuietError):
    """The control channel of a mount could not be used (one line for the user; exit 7)."""

    exit_code = EXIT_MOUNT


def socket_for_status_file(status_path: str) -> str:
    """The control socket next to a status file: `DIR/status.json` → `DIR/status.sock`."""
    return os.path.splitext(status_path)[0] + ".sock"


def socket_in_runtime_dir(mountpoint: str) -> str:
    """The control socket next to the mount's record (`mountpoint` resolved, as `mounttable.record_path`)."""
    return os.path.splitext(mounttable.record_path(mountpoint))[0] + ".sock"


@contextlib.contextmanager
def _reachable(path: str) -> Iterator[str]:
    """`path`, or `/proc/self/fd/N/NAME` through an open descriptor of its directory when it is too long for
    a unix socket address."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield path
        return
    directory = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{os.path.basename(path)}"
    finally:
        os.close(directory)


def peer_credentials(sock: Any) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a unix socket (SO_PEERCRED)."""
    try:
        return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None


async def open_control_listener(path: str) -> trio.SocketListener:
    """Listen on `path`, mode 0600. A missing directory is created 0700, except the default one, the mount records'
    directory, which `mounttable.make_records_dir` makes 0755. A stale socket (nobody listening) is replaced; a live
    one means another mount uses it: ConfigError."""
    directory = os.path.dirname(path) or "."
    try:
        if os.path.abspath(directory) == mounttable.records_dir():
            mounttable.make_records_dir()  # shared with the records, which everyone may read
        else:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise ConfigError(f"control socket {path} exists and is not a socket; remove it")
            if _answers(path):
                raise ConfigError(f"control socket {path} is in use by another mount")
            os.unlink(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            with _reachable(path) as address:
                await sock.bind(address)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create the control socket {path}: {exc.strerror or exc}") from None
    sock.listen(16)
    return trio.SocketListener(sock)


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        with _reachable(path) as address:
            probe.connect(address)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ControlServer:
    """Answers the control protocol (module docstring) with `handlers` (op name → async callable taking the
    request document) on the trio thread, so handlers may read the mount's state without locks."""

    def __init__(self, path: str, handlers: Mapping[str, Handler]):
        self.path = path
        self.handlers = dict(handlers)
        self.handlers.setdefault("ping", self._ping)
        self._allowed = {0, os.geteuid()}

    @staticmethod
    async def _ping(request: dict) -> dict:
        return {"pid": os.getpid()}

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen (errors before `started`: ConfigError) and answer until cancelled; the socket file is removed
        at the end."""
        listener = await open_control_listener(self.path)
        task_status.started()
        try:
            await trio.serve_listeners(self._connection, [listener])
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(30):
                answer = await self._answer(stream)
                await stream.send_all(json.dumps(answer, default=str).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _answer(self, stream: trio.SocketStream) -> dict:
        credentials = peer_credentials(stream.socket)
        if credentials is None or credentials[1] not in self._allowed:
            uid = credentials[1] if credentials else "?"
            return {"ok": False, "error": f"uid {uid} may not use this mount's control socket (only uid "
                                          f"{os.geteuid()} and root may)"}
        data = b""
        while b"\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST:
                return {"ok": False, "error": "request too large"}
        try:
            request = json.loads(data.split(b"\n", 1)[0] or b"null")
        except ValueError:
            return {"ok": False, "error": "the request is not JSON"}
        if not isinstance(request, dict) or request.get("op") not in self.handlers:
            return {"ok": False, "error": f"unknown request; operations: {', '.join(sorted(self.handlers))}"}
        try:
            return {"ok": True, "result": await self.handlers[request["op"]](request)}
        except QuietError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bad request must never end the mount
            log.exception("control request %s failed", request.get("op"))
            return {"ok": False, "error": f"internal error: {exc!r} (see the mount's log)"}


def request(path: str, document: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Send one control request to the socket at `path` and return its result (blocking, at most `timeout`
    seconds for each step). ControlError with one line on any failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _reachable(path) as address:
                sock.connect(address)
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path}: the mount process is gone or predates ossmount "
                               "stats") from None
        except PermissionError:
            owner = _owner(path)
            raise ControlError(f"permission denied on {path}: only the mount's owner{owner} or root may read "
                               "its statistics") from None
        except ConnectionRefusedError:
            raise ControlError(f"nobody answers on {path}: the mount process is gone") from None
        sock.sendall(json.dumps(dict(document)).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_ANSWER:
                raise ControlError(f"the answer on {path} is too large")
    except socket.timeout:
        raise ControlError(f"the mount did not answer on {path} within {timeout:g} s (is it hung?)") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to the mount on {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"unreadable answer on {path}") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "the mount refused the request")))
    return answer.get("result")


def _owner(path: str) -> str:
    try:
        return f" (uid {os.stat(path).st_uid})"
    except OSError:
        return ""


# -- finding a mount's socket ----------------------------------------------------------------------------


def record_dirs() -> list[str]:
    """Every directory where a mount may have left its record: root's, every user's runtime dir. Only names are
    listed (never a glob that could wander into a mountpoint such as /tmp/ossmount-mnt-x: a dead one hangs)."""
    dirs = [mounttable.records_dir(), "/run/ossmount/mounts"]
    for parent, pattern, template in (("/run/user", _UID, "/run/user/{}/ossmount/mounts"),
                                      ("/tmp", _TMP_RUNTIME, "/tmp/{}/mounts")):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        dirs += [template.format(name) for name in sorted(names) if pattern.fullmatch(name)]
    return list(dict.fromkeys(dirs))


def all_records() -> list[dict]:
    """The records of every mount process still alive (readable ones)."""
    found = []
    for directory in record_dirs():
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in sorted(names):
            if name.endswith(".json"):
                record = mounttable._read(os.path.join(directory, name), require_live=False)
                if record is not None:
                    found.append(record)
    return found


def find_record(mountpoint: str) -> tuple[Any, dict | None]:
    """(mountinfo entry, record) of the ossmount mount at `mountpoint`, which may also be a bind mount of it
    (a pod's target): the record is the one of the mount with the same device. ControlError when `mountpoint`
    is no ossmount mount."""
    from ossmount.daemon.mountinfo import MountTable

    path = mounttable.resolve(mountpoint)
    try:
        table = MountTable.read()
    except OSError as exc:
        raise ControlError(f"cannot read the mount table: {exc.strerror}") from None
    entry = table.top(path)
    if entry is None or not entry.is_ossmount:
        what = f"a {entry.fstype} mount" if entry is not None else "not a mount point"
        raise ControlError(f"{mountpoint} is no ossmount mount ({what})")
    records = {record.get("mountpoint"): record for record in all_records()}
    candidates = [path] + [other.mount_point for other in table.with_dev(entry.dev) if other.mount_point != path]
    for candidate in candidates:
        record = records.get(candidate)
        if record is not None and mounttable.pid_alive(int(record["pid"])):
            return entry, record
    return entry, None


def socket_of(mountpoint: str) -> str:
    """The control socket of the mount at `mountpoint` (see `find_record`)."""
    _, record = find_record(mountpoint)
    if record is None or not record.get("control_socket"):
        raise ControlError(f"{mountpoint} is an ossmount mount but no running ossmount process has a record of it "
                           "(its process was killed, or it was mounted by an older ossmount)")
    return str(record["control_socket"])
