"""`ossmount [mount] BUCKET[:/PREFIX] MOUNTPOINT [-o OPT,...] [-f] [-d]`: check, mount, serve, unmount.

Without `-f` the command re-runs itself as a detached child (`... -f --ready-fd N`, new session, stdio to
/dev/null unless `-d`) and waits at most 30 s for the child's readiness line on the pipe: one JSON object,
`{"state": "ready", "pid": PID}` or `{"state": "error", "code": EXIT_CODE, "reason": OSS_CODE, "message": "..."}`
(`reason` only when OSS or the network named one). The child runs the mount-time check before `pyfuse3.init`,
so bad credentials never leave a mount behind. Credentials never travel in argv: the child resolves them again
from the same passwd_file; a passwd file or credentials directory is re-read when it changes.

Credentials in the environment (OSS_ACCESS_KEY_ID, ... and ossfs's OSSACCESSKEYID, ...) are taken out of it as
the command starts (`credentials.take_environment_credentials`: os.environ, libc's environ and the block
/proc/PID/environ shows), so neither the mount process nor anything it starts shows them. The detached parent
hands them to the child on a pipe (`--credentials-fd N`, one JSON object), never in its environment.

Runtime flags (for daemons and services; the shared-mount daemon passes all of them):
  --log-file PATH         log there instead of stderr (= -o logfile=PATH), rotated when it reaches
                          --log-max-size (default 10M) keeping --log-backups old files (default 2: PATH.1, PATH.2)
  --status-file PATH      write the status document (`ossmount.status`) there every --status-interval
                          seconds (default 5) and at unmount
  --control-socket PATH   the control socket of `ossmount stats` (default: next to the status file, else in
                          the runtime dir; see ossmount.ops.control)
  --credentials-fd N      (internal) read credential environment variables from fd N, as the parent sends them

Logs (ossmount.ops.logs): logfile=/--log-file, else stderr in the foreground, else (detached) syslog, else a
file under /var/log/ossmount. SIGUSR1 makes the log one level more verbose, SIGHUP restores dbglevel= and
reopens the log file.

A dead mount on MOUNTPOINT (its process was killed: statvfs answers ENOTCONN) is unmounted lazily, logged, and
mounted over again (`-o dead_mount=remount`, the default: an fstab or automount retry just works); with
`-o dead_mount=fail`, or when this user may not unmount it, the command fails with exit 7 naming
`fusermount3 -u MOUNTPOINT`. Nothing is lost: the dead mount's process, and its unwritten data, are gone already.

Unmount (`umount`, `fusermount3 -u`) ends `pyfuse3.main`; every dirty file is then flushed and the
process exits 0. SIGTERM/SIGINT flush, unmount and exit 0 too.

Mounting twice (see ossmount.mounttable): when MOUNTPOINT already is an ossmount mount of the same bucket,
prefix and options, the command succeeds at once without a second process (fstab/automount retries; the
readiness report then names the pid already serving it); any other FUSE mount there is refused with exit 7
naming it and the pid serving it, and so is one that does not answer statfs; a dead FUSE mount (ENOTCONN: its
process is gone) is replaced as described above (`clear_dead_mount`, run before those checks).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import time

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ossmount import mounttable
from ossmount.daemon.mountinfo import MountTable
from ossmount.logsafety import LOG_FILE_BACKUPS, LOG_FILE_MAX_BYTES, setup_logging
from ossmount.errors import EXIT_MOUNT, EXIT_OK, ConfigError, QuietError, UsageError, single_quiet_error
from ossmount.status import DEFAULT_STATUS_INTERVAL

if TYPE_CHECKING:
    from ossmount.options import MountOptions

log = logging.getLogger("ossmount.mount")

READY_TIMEOUT = 30.0
READ_AHEAD_KB = 1024
FUSE_DEVICE = "/dev/fuse"
FUSE_CONF = "/etc/fuse.conf"
_STACKED_MOUNTS_MAX = 8  # dead mounts stacked on one mountpoint that are cleared before giving up


class MountError(QuietError):
    exit_code = EXIT_MOUNT


USAGE = """\
usage: ossmount [mount] BUCKET[:/PREFIX] MOUNTPOINT [-o OPT[,OPT...]]... [-f] [-d]
                [--log-file PATH [--log-max-size SIZE] [--log-backups N]]
                [--status-file PATH [--status-interval SECONDS]] [--ready-fd N]
"""


@dataclass(frozen=True)
class RuntimeFlags:
    """The flags of a mount process that are no filesystem option (see the module docstring)."""

    log_file: str | None = None
    log_max_bytes: int = LOG_FILE_MAX_BYTES
    log_backups: int = LOG_FILE_BACKUPS
    status_file: str | None = None
    status_interval: float = DEFAULT_STATUS_INTERVAL
    control_socket: str | None = None
    detached: bool = False  # the child of a mount without -f (set by `_spawn_and_wait`): logs go to syslog
    credentials_fd: int | None = None


def _number(convert, minimum: float):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            return None
        return value if value >= minimum else None

    return parse


def _size(text: str) -> int | None:
    """`4096`, `64K`, `10M`, `1G` → bytes (at least 4 KiB); None if malformed."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    scale = units.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not (digits.isascii() and digits.isdigit()) or int(digits) * scale < 4096:
        return None
    return int(digits) * scale


_RUNTIME_FLAGS = {  # flag: (RuntimeFlags field, parser returning None for a bad value, what it expects)
    "--log-file": ("log_file", lambda text: text or None, "a file path"),
    "--log-max-size": ("log_max_bytes", _size, "a size such as 10M or 512K (>= 4K)"),
    "--log-backups": ("log_backups", _number(int, 0), "a number of old files (>= 0)"),
    "--status-file": ("status_file", lambda text: text or None, "a file path"),
    "--status-interval": ("status_interval", _number(float, 0.1), "a number of seconds (>= 0.1)"),
    "--control-socket": ("control_socket", lambda text: text or None, "a socket path"),
    "--credentials-fd": ("credentials_fd", _number(int, 0), "a file descriptor number"),
}
DETACHED_FLAG = "--detached"


def split_runtime_flags(argv: list[str]) -> tuple[list[str], RuntimeFlags]:
    """Take the runtime flags (`--flag VALUE` or `--flag=VALUE`) out of `argv`; the rest is the mount's argv."""
    rest: list[str] = []
    values: dict[str, object] = {}
    args = iter(argv)
    for arg in args:
        name, has_value, value = arg.partition("=")
        if arg == DETACHED_FLAG:
            values["detached"] = True
            continue
        if name not in _RUNTIME_FLAGS:
            rest.append(arg)
            if arg == "--":
                rest.extend(args)
            continue
        if not has_value:
            value = next(args, "")
        field_name, parse, expected = _RUNTIME_FLAGS[name]
        parsed = parse(value)
        if parsed is None:
            raise UsageError(f"{name} needs {expected}, got {value!r}")
        values[field_name] = parsed
    return rest, RuntimeFlags(**values)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    """Entry point of `ossmount mount`."""
    from ossmount.credentials import take_environment_credentials
    from ossmount.options import format_options_help, parse_mount_args

    secrets = take_environment_credentials()
    mount_argv, flags = split_runtime_flags(argv)
    if flags.credentials_fd is not None:
        secrets.update(_read_credentials_fd(flags.credentials_fd))
    args = parse_mount_args(mount_argv)
    if args.show_help:
        print(USAGE)
        print(format_options_help())
        return EXIT_OK
    log_file = flags.log_file or args.options.log_file
    log_style = dict(timestamps=not args.options.no_time_stamp_msg, instance=args.options.instance_name)
    if not args.foreground:
        setup_logging(args.debug, args.options.log_level, **log_style)
        if _already_mounted(args) is not None:
            return EXIT_OK
        check_mountpoint(args.mountpoint, args.options)
        return _spawn_and_wait(argv, debug=args.debug, secrets=secrets)
    try:
        log_target = _setup_mount_logging(args, flags, log_file, log_style)
        serving = _already_mounted(args)
        if serving is not None:
            if args.ready_fd is not None:
                _report(args.ready_fd, {"state": "ready", "pid": serving})
            return EXIT_OK
        check_mountpoint(args.mountpoint, args.options)
        try:
            trio.run(_serve, args, flags, log_target, {**os.environ, **secrets})
        except BaseExceptionGroup as group:
            raise single_quiet_error(group) from None
    except QuietError as exc:
        if log_file is not None:
            log.error("%s", exc)
        if args.ready_fd is not None:
            report = {"state": "error", "code": exc.exit_code, "message": str(exc)}
            if getattr(exc, "code", None):
                report["reason"] = exc.code
            _report(args.ready_fd, report)
        raise
    except BaseException as exc:
        if args.ready_fd is not None:
            _report(args.ready_fd, {"state": "error", "code": 1, "message": f"internal error: {exc!r}"})
        raise
    return EXIT_OK


def _setup_mount_logging(args, flags: RuntimeFlags, log_file: str | None, log_style: dict):
    """The mount process's log (ossmount.ops.logs rules): logfile=, else syslog when detached, else stderr."""
    from ossmount.ops.logs import LogTarget, detached_handler

    mountpoint = mounttable.resolve(args.mountpoint)
    common = dict(**log_style, mountpoint=mountpoint, max_bytes=flags.log_max_bytes, backups=flags.log_backups)
    if log_file is not None:
        setup_logging(args.debug, args.options.log_level, log_file=log_file, **common)
        return LogTarget("file", os.path.abspath(log_file))
    if flags.detached and not args.debug:
        handler, target = detached_handler(mountpoint, mounttable.runtime_dir(), max_bytes=flags.log_max_bytes,
                                           backups=flags.log_backups)
        setup_logging(args.debug, args.options.log_level, handler=handler, syslog=target.kind == "syslog",
                      **common)
        if target.reason:
            log.warning("logging to %s instead of syslog (%s)", target.path, target.reason)
        return target
    setup_logging(args.debug, args.options.log_level, **common)
    return LogTarget("stderr")


def _already_mounted(args) -> int | None:
    """The pid serving MOUNTPOINT when it is a live ossmount mount of this very bucket, prefix and options (one
    line says so), else None; any other FUSE mount there is a MountError naming it (see the module docstring)."""
    path = args.mountpoint
    clear_dead_mount(path, remount=args.options.dead_mount == "remount")
    entry = mounttable.mount_at(path)
    if entry is None or not entry.fstype.startswith("fuse"):
        return None
    _check_alive(path)
    record = mounttable.read_record(mounttable.resolve(path))
    if record is not None and entry.is_ossmount:
        spec = f"{record.get('bucket')}:/{record.get('prefix', '')}".rstrip("/")
        if record.get("identity") == mounttable.identity(args.bucket, args.prefix, args.options):
            print(f"ossmount: {spec} is already mounted on {path} by pid {record['pid']} with the same options; "
                  "nothing to do", file=sys.stderr)
            return int(record["pid"])
        raise MountError(f"mountpoint {path} is already an ossmount mount of {spec} (pid {record['pid']}); "
                         f"unmount it first (umount {path})")
    pids = [pid for pid in mounttable.ossmount_pids_for(path) if pid != os.getppid()]
    served_by = f", pid {pids[0]}" if pids else ""
    raise MountError(f"mountpoint {path} is already mounted ({entry.fstype} of {entry.source}{served_by}): "
                     f"unmount it first (umount {path})")


def _check_alive(path: str) -> None:
    """A MountError when the FUSE mount at `path` has no process any more, or does not answer (statvfs in a
    worker thread: a stat may be answered from the kernel's attribute cache, and a wedged server hangs it). A dead
    mount found before was cleared by `clear_dead_mount`; this refuses one that died in between."""
    state = mounttable.probe(path)
    if state == "ENOTCONN":
        raise MountError(f"mountpoint {path} is a dead FUSE mount (Transport endpoint is not connected: its "
                         f"process is gone): unmount it first (fusermount3 -u {path}, or umount -l {path})")
    if state == "timeout":
        raise MountError(f"mountpoint {path} is a FUSE mount that does not answer (statfs timed out after "
                         f"{mounttable.PROBE_TIMEOUT:.0f} s): unmount it first (umount -l {path})")


def check_mountpoint(path: str, options: "MountOptions") -> None:
    """The mountpoint exists, is a directory this user can enter, is not a FUSE mount already, and is empty unless
    `nonempty`. A dead FUSE mount on it is unmounted first (`clear_dead_mount`, per `dead_mount=`)."""
    clear_dead_mount(path, remount=options.dead_mount == "remount")
    entry = mounttable.mount_at(path)
    if entry is not None and entry.fstype.startswith("fuse"):
        _check_alive(path)
        raise MountError(f"mountpoint {path} is already mounted ({entry.fstype} of {entry.source}): unmount it "
                         f"first (umount {path})")
    try:
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            raise MountError(f"mountpoint {path} is not a directory")
        if not options.nonempty and os.listdir(path):
            raise MountError(f"mountpoint {path} is not empty: empty it or add -o nonempty")
        if os.geteuid() != 0:
            _check_user_may_mount(path, options)
    except FileNotFoundError:
        raise MountError(f"mountpoint {path} does not exist: create it with mkdir -p {path}") from None
    except OSError as exc:
        raise MountError(f"mountpoint {path}: {exc.strerror}"
                         + (" (this user may not enter it)" if exc.errno == errno.EACCES else "")) from None


def _check_user_may_mount(path: str, options: "MountOptions") -> None:
    """What fusermount3 would refuse a non-root user, said before libfuse prints its own lines to stderr."""
    if not os.access(FUSE_DEVICE, os.R_OK | os.W_OK):
        raise MountError(f"this user (uid {os.getuid()}) cannot open {FUSE_DEVICE}: mount as root, or make it "
                         "usable (mode 0666, as Debian ships it)")
    if not os.access(path, os.W_OK):
        raise MountError(f"mountpoint {path} is not writable by this user (uid {os.getuid()}), so fusermount3 will "
                         "not mount there: use a directory you own, or mount as root")
    if options.allow_other and not _fuse_conf_allows_other():
        raise MountError(f"allow_other needs the line user_allow_other in {FUSE_CONF} when a non-root user mounts: "
                         "add it (as root) or mount as root")


def _fuse_conf_allows_other() -> bool:
    try:
        with open(FUSE_CONF) as conf:
            return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in conf)
    except OSError:
        return False


def clear_dead_mount(path: str, *, remount: bool = True) -> None:
    """If `path` is a FUSE mount whose process is gone (statvfs answers ENOTCONN, probed in a thread so that a wedged
    mount cannot hang us; stat may still answer from cached attributes), unmount it lazily and log it, or with
    `remount=False` raise MountError naming the command that does. MountError too if it cannot be unmounted
    (another user's mount) or `path` lies inside a dead mount. Stacked dead mounts are cleared one by one."""
    for _ in range(_STACKED_MOUNTS_MAX):
        if mounttable.probe(path) not in ("ENOTCONN", "ECONNABORTED"):
            return  # not dead; a live, wedged or missing mountpoint is the other checks' business
        where = mounttable.resolve(path)
        try:
            table = MountTable.read()
        except (OSError, ValueError):
            table = MountTable([])
        entry = table.top(where)
        if entry is None:
            holder = max((e.mount_point for e in table.entries if where.startswith(e.mount_point.rstrip("/") + "/")),
                         key=len, default="MOUNTPOINT")
            raise MountError(f"mountpoint {path} lies inside a dead FUSE mount at {holder} (Transport endpoint is "
                             f"not connected: its process is gone): unmount it with fusermount3 -u {holder}")
        what = f"a dead FUSE mount ({entry.describe()}: Transport endpoint is not connected, its process is gone)"
        if not remount:
            raise MountError(f"mountpoint {path} is {what}: unmount it with fusermount3 -u {path} "
                             "(or mount with -o dead_mount=remount)")
        problem = _unmount_lazily(where)
        if problem is not None:
            raise MountError(f"mountpoint {path} is {what} and this user cannot unmount it ({problem}): run "
                             f"fusermount3 -u {path} as its owner or as root")
        log.warning("mountpoint %s was %s: unmounted it lazily; mounting again", path, what)
    raise MountError(f"mountpoint {path} still is a dead FUSE mount after {_STACKED_MOUNTS_MAX} lazy unmounts: "
                     f"unmount it with fusermount3 -u {path}")


def _unmount_lazily(path: str) -> str | None:
    """umount2(MNT_DETACH) as root, fusermount3 -u -z (the mount's owner) otherwise; None, or why it failed."""
    from ossmount.daemon import system

    if os.geteuid() == 0:
        try:
            system.unmount(path, detach=True)
            return None
        except OSError as exc:
            return exc.strerror or str(exc)
    try:
        result = subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"


def check_tmpdir(path: str | None) -> None:
    """`-o tmpdir=DIR` must be a writable directory (ossfs refuses to start otherwise)."""
    if path is None:
        return
    if not os.path.isdir(path):
        raise ConfigError(f"tmpdir {path} does not exist or is not a directory: create it or choose another")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"tmpdir {path} is not writable by this user")


def _read_credentials_fd(fd: int) -> dict[str, str]:
    """The credential variables the parent sent on `fd` (one JSON object of SECRET_ENV_NAMES), fd closed."""
    from ossmount.credentials import SECRET_ENV_NAMES

    try:
        with open(fd, "rb") as pipe:
            document = json.loads(pipe.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise UsageError(f"--credentials-fd {fd}: cannot read the credentials the parent sent ({exc})") from None
    if not isinstance(document, dict) or not all(
            name in SECRET_ENV_NAMES and isinstance(value, str) for name, value in document.items()):
        raise UsageError(f"--credentials-fd {fd}: expected a JSON object of {', '.join(SECRET_ENV_NAMES)}")
    return document


def _spawn_and_wait(argv: list[str], *, debug: bool, secrets: dict[str, str]) -> int:
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "ossmount", "mount", *argv, "-f", "--ready-fd", str(write_end), DETACHED_FLAG]
    pass_fds = [write_end]
    if secrets:
        secrets_read, secrets_write = os.pipe()
        command += ["--credentials-fd", str(secrets_read)]
        pass_fds.append(secrets_read)
    output = None if debug else subprocess.DEVNULL
    child = subprocess.Popen(
        command, pass_fds=pass_fds, start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=output, stderr=output, close_fds=True,
    )
    os.close(write_end)
    if secrets:
        os.close(secrets_read)
        try:
            with open(secrets_write, "wb") as pipe:
                pipe.write(json.dumps(secrets).encode())
        except OSError:
            pass  # the child is gone already; its readiness report (or its absence) says why
    try:
        line = _read_line(read_end, child, READY_TIMEOUT)
    finally:
        os.close(read_end)
    if line is None:
        if child.poll() is None:
            child.kill()
            child.wait()
            raise MountError(f"the mount did not become ready within {READY_TIMEOUT:.0f} s (run with -f -d to see why)")
        raise MountError(f"the mount process exited with code {child.returncode} before the mount was ready "
                         "(run with -f -d to see why)", child.returncode or EXIT_MOUNT)
    try:
        report = json.loads(line)
    except ValueError:
        raise MountError(f"unexpected readiness report from the mount process: {line!r}") from None
    if report.get("state") == "ready":
        return EXIT_OK
    child.wait(timeout=10)
    raise QuietError(str(report.get("message", "mount failed")), int(report.get("code", EXIT_MOUNT)))


def _read_line(fd: int, child: subprocess.Popen, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")


def _report(fd: int, report: dict) -> None:
    try:
        os.write(fd, (json.dumps(report) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


async def _open_block_cache(opts, bucket: str):
    """The mount's BlockCache (fs/blockcache.py) when use_cache=DIR is given, loaded (emptied first with
    del_cache); None without use_cache. A directory that cannot be created or read is a MountError."""
    if not opts.use_cache:
        return None
    from ossmount.fs.blockcache import BlockCache

    cache = BlockCache(opts.use_cache, bucket=bucket, max_size=opts.max_cache_size * 1024 * 1024 or None,
                       min_free=opts.ensure_diskfree * 1024 * 1024)

    def prepare() -> None:
        if opts.del_cache:
            cache.clear()
        cache.load()

    try:
        await trio.to_thread.run_sync(prepare)
    except OSError as exc:
        raise MountError(f"use_cache={opts.use_cache}: cannot use the cache directory: {exc.strerror}") from None
    log.info("block cache in %s: %d MiB cached", cache.root, cache.used // (1024 * 1024))
    return cache


async def _serve(args, flags: RuntimeFlags, log_target, environ: dict[str, str]) -> None:
    import pyfuse3

    from ossmount.check import check_target
    from ossmount.storeconfig import open_store
    from ossmount.fs.attrs import Ownership
    from ossmount.fs.buffers import tune_malloc
    from ossmount.fs.content import ContentManager, conflict_dir_for
    from ossmount.fs.filesystem import Filesystem, FsConfig
    from ossmount.fs.mime import MimeTypes
    from ossmount.fs.operations import Operations
    from ossmount.ops.accounting import MOUNT_CHECK, UNMOUNT, charging
    from ossmount.ops.service import MountOperator
    from ossmount.fs.recovery import Recovery
    from ossmount.fs.persistent import PersistentStatCache, store_identity
    from ossmount.fs.persistent import location as stat_cache_location

    opts = args.options
    tune_malloc()  # before any worker thread: bounded arenas, big blocks unmapped when freed (buffers.py)
    if opts.ignored:
        log.info("accepted without effect (see ossmount --help): %s", ", ".join(opts.ignored))
    check_tmpdir(opts.tmpdir)
    store = open_store(args.bucket, opts, prefix=args.prefix, environ=environ,
                       max_connections=max(16, opts.parallel_count * 2))
    operator = MountOperator(args, flags, store, log_target)
    log.info("checking oss://%s/%s at %s before mounting on %s", args.bucket, args.prefix, opts.url, args.mountpoint)
    with charging(MOUNT_CHECK, "check"):
        await check_target(store, args.prefix, v2=opts.list_objects_v2, bucket_info=False)
    check_mountpoint(args.mountpoint, opts)
    ownership = Ownership.from_options(opts, os.getuid(), os.getgid())
    mime = MimeTypes.load(opts.mime, required=opts.mime_explicit)
    config = FsConfig.from_options(opts, args.prefix)
    persistent = PersistentStatCache.open(
        stat_cache_location(opts.stat_cache_dir) if opts.max_stat_cache_size > 0 else None,
        store_identity(store))
    status = _status_reporter(args, flags, store, operator)
    block_cache = await _open_block_cache(opts, args.bucket)
    session, dead = open_spool_session(args.bucket, args.prefix, opts, args.mountpoint)
    store.upload_marker = session.name
    mountpoint = mounttable.resolve(args.mountpoint)  # before mounting: never resolved through our own mount
    terminated = False
    unmounted_by_kernel = False
    try:
        async with trio.open_nursery() as nursery:
            conflict_dir = conflict_dir_for(opts.tmpdir)
            contents = ContentManager(
                store, session=session, multipart_size=opts.multipart_size_bytes,
                parallel_count=opts.parallel_count, nursery=nursery,
                multipart_threshold=opts.multipart_threshold_bytes, conflict_dir=conflict_dir,
                block_cache=block_cache,
            )
            nursery.start_soon(contents.maintain)
            fs = Filesystem(store, contents, config=config, ownership=ownership, mime=mime, persistent=persistent,
                            nursery=nursery)
            operator.telemetry.attach(fs, contents)
            await operator.start(nursery)
            recovery = Recovery(store, conflict_dir=conflict_dir, part_size=opts.multipart_size_bytes,
                                parallel_count=opts.parallel_count, threshold=opts.multipart_threshold_bytes,
                                done=lambda key: (contents.recovered(key), contents.uploaded(key)))
            for key in recovery.keys(dead):  # opens of these keys wait for their recovery
                contents.recovering(key)
            if persistent is not None:
                nursery.start_soon(persistent.run)
            if status is not None:
                status.filesystem = lambda: {**fs.statistics().to_json(),
                                             "fuse_requests": operator.calls.statistics.counts()}
            # Recorded before the mount appears, so that whoever sees the mount (`ossmount stats`, a second mount of the
            # same path) finds its record; the record of a process that is gone is ignored (mounttable).
            _record_mount(args, mountpoint, operator.record())
            try:
                pyfuse3.init(Operations(fs, operator.calls), args.mountpoint, set(args.fuse_options))
            except RuntimeError as exc:
                mounttable.remove_record(mountpoint)
                operator.stop()
                raise MountError(f"cannot mount on {args.mountpoint}: {exc} (is /dev/fuse available?)") from None
            log.info("mounted %s on %s", args.fsname, args.mountpoint)
            try:
                async with trio.open_nursery() as serving:

                    async def watch_signals() -> None:
                        nonlocal terminated
                        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                            async for signum in signals:
                                log.info("signal %d: flushing and unmounting", signum)
                                terminated = True
                                pyfuse3.terminate()
                                return

                    serving.start_soon(watch_signals)
                    serving.start_soon(_announce_ready, args)
                    nursery.start_soon(_after_crashes, store, args.prefix, opts, recovery, dead, contents)
                    if status is not None:
                        serving.start_soon(status.run, flags.status_interval)
                    try:
                        await pyfuse3.main()
                    finally:
                        mounttable.remove_record(mountpoint)
                    unmounted_by_kernel = not terminated
                    serving.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        with charging(UNMOUNT, "unmount"):
                            await contents.flush_all()
                    except Exception:  # noqa: BLE001 - unmount must go on; failures are logged
                        log.exception("flushing files at unmount failed")
                    contents.close()
                    operator.stop()
                    if persistent is not None:
                        await persistent.flush()
                        persistent.close()
                    # After a signal or a crash we unmount ourselves; after umount the kernel already has.
                    pyfuse3.close(unmount=not unmounted_by_kernel)
            nursery.cancel_scope.cancel()
    finally:
        for other in dead:
            other.release()
        if not session.close():
            log.error("data that could not be uploaded is kept in %s; the next mount of %s (or `ossmount recover`) "
                      "uploads it", session.path, args.fsname)
        if block_cache is not None and opts.del_cache:
            block_cache.clear()
        if status is not None:
            status.write("unmounted")
    log.info("unmounted %s", args.mountpoint)


def open_spool_session(bucket: str, prefix: str, opts, mountpoint: str = ""):
    """This mount's spool session (fs/journal.py) and the dead sessions of earlier mounts of the same bucket and
    prefix (locked: recovered by this process). ConfigError when the spool directory cannot be created."""
    from ossmount.fs.journal import Session, mount_id, spool_root

    root = spool_root(opts.tmpdir)
    name = mount_id(bucket, prefix)
    try:
        dead = Session.dead(root, name)
        session = Session.create(root, name, {"bucket": bucket, "prefix": prefix, "endpoint": opts.url,
                                              "mountpoint": mountpoint})
    except OSError as exc:
        raise ConfigError(f"cannot use the spool directory {os.path.join(root, name)}: {exc.strerror}; choose "
                          "another with -o tmpdir=DIR") from None
    return session, dead


async def _after_crashes(store, prefix: str, opts, recovery, dead, contents) -> None:
    """In the background once mounted: recover what dead mounts of this bucket and prefix left in the spool, then
    abort the stale incomplete multipart uploads under the prefix (stale_upload_hours)."""
    from ossmount.fs.journal import mount_id, spool_root
    from ossmount.fs.recovery import abort_stale_uploads, owned_uploads
    from ossmount.store.types import StoreError

    if dead:
        await recovery.run(dead)  # it logs what it does, key by key
    if opts.stale_upload_hours == float("inf"):
        return
    names, upload_ids = owned_uploads(spool_root(opts.tmpdir), mount_id(store.bucket_name, prefix),
                                      own=contents._session)
    try:
        report = await abort_stale_uploads(store, prefix, older_than=opts.stale_upload_hours * 3600,
                                           owned_names=names, owned_ids=upload_ids)
    except StoreError as exc:
        log.warning("could not list incomplete multipart uploads under /%s to abort stale ones: %s", prefix, exc)
        return
    for upload in report.stale:
        if upload.upload_id not in report.failed:
            log.warning("aborted the incomplete multipart upload %s of %s that an earlier mount started (initiated "
                        "%s)", upload.upload_id, upload.key, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                            time.gmtime(upload.initiated)))
    for upload_id, reason in report.failed.items():
        log.warning("could not abort the stale multipart upload %s: %s", upload_id, reason)


def _status_reporter(args, flags: RuntimeFlags, store, operator):
    from ossmount.status import StatusReporter, credentials_status

    if flags.status_file is None:
        return None
    return StatusReporter(flags.status_file, mountpoint=args.mountpoint, bucket=args.bucket, prefix=args.prefix,
                          statistics=store.statistics, credentials=lambda: credentials_status(store.credentials),
                          extra={"control_socket": operator.control_socket, "log": operator.log_target.to_json()})


# The mount's own mountpoint is probed by a child process, not by a thread of the mount process: a FUSE request this
# process sends to itself cannot be answered once it is SIGKILLed after the kernel handed the request over, and the
# asking thread then waits in the kernel for ever (request_wait_answer), keeping /dev/fuse open, so the connection never
# ends and the process stays an unkillable zombie (seen: a SIGKILL right after mounting). The child, coreutils
# `stat` (exec'd: it holds no /dev/fuse descriptor, which libfuse opens O_CLOEXEC), fails instead when the mount
# process dies. Without an executable `stat` the probe falls back to a thread.
_OWN_MOUNT_PROBE = ("stat", "--format=%d")


async def _probe_own_mount(mountpoint: str) -> int:
    """st_dev of the mount at `mountpoint` once the kernel answers a request there (see `_OWN_MOUNT_PROBE`).
    Raises OSError: the errno of a failed fallback probe, EIO when `stat` failed."""
    try:
        result = await trio.run_process([*_OWN_MOUNT_PROBE, mountpoint], capture_stdout=True, capture_stderr=True,
                                        check=False)
    except OSError as exc:
        log.debug("probing the mount with %s failed (%s); probing from a thread", _OWN_MOUNT_PROBE[0], exc)
        return await trio.to_thread.run_sync(lambda: os.stat(mountpoint).st_dev)
    text = result.stdout.decode("ascii", "replace").strip()
    if result.returncode != 0 or not text.isdigit():
        message = result.stderr.decode(errors="replace").strip()[-200:]
        raise OSError(errno.EIO, f"the new mount does not answer: {message or f'stat exited {result.returncode}'}")
    return int(text)


def _record_mount(args, mountpoint: str, operator_record: dict) -> None:
    """Record this process as the one serving `mountpoint` (mounttable), best effort."""
    try:
        mounttable.write_record(mountpoint, {
            "bucket": args.bucket, "prefix": args.prefix, "url": args.options.url,
            "identity": mounttable.identity(args.bucket, args.prefix, args.options), **operator_record,
        })
    except OSError as exc:  # a second mount then cannot tell whether it is the same; it refuses instead
        log.info("could not record the mount in %s: %s", mounttable.runtime_dir(), exc)


async def _announce_ready(args) -> None:
    """Once the kernel answers a request on the mount (`_probe_own_mount`), tune readahead (root) and report
    readiness."""
    dev = await _probe_own_mount(args.mountpoint)
    if os.geteuid() == 0:
        _raise_read_ahead(dev)
    if args.ready_fd is not None:
        _report(args.ready_fd, {"state": "ready", "pid": os.getpid()})


def _raise_read_ahead(dev: int) -> None:
    """Raise the mount's readahead (its backing device `dev`, a sysfs write: no request to the mount itself)."""
    try:
        path = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
        with open(path, "w") as f:
            f.write(str(READ_AHEAD_KB))
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EROFS):
            log.info("could not raise read_ahead_kb: %s", exc)
