"""The volumes of one daemon and the API operations on them (csi-daemon.md §5.5–§5.9).

Concurrency (trio; code between two `await`s is atomic):
  * Each operation runs under its volume's lock (`VolumeLocks`: a refcounted map of `trio.Lock`s, so
    operations on different volumes run in parallel). A caller waits up to `lock_timeout` and then gets
    ABORTED. The supervisor's restart attempts take the same lock; its backoff sleeps do not, so an
    unpublish or unstage of a crashed volume never waits for a restart.
  * The prober changes a volume's state without the lock, but only between checkpoints and only from
    ready/degraded, so it never interleaves with half an operation's state change.
  * Operations are shielded from cancellation by the HTTP layer: a client that disconnects does not leave a
    half-done mount; the retry finds the finished result or waits for the lock.
  * Background tasks (per-process exit watchers, per-volume supervisors, the prober) live in the nursery the
    manager is created with; they never signal FUSE processes when the daemon stops.

Write order (§5.7): the state file says `mounting` before the spawn, gets the pid right after it and
`ready` after the readiness line and the mountinfo check; a target is recorded after its bind. A crash
between any two steps is repaired by `reconcile` (recovery.py).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import trio

from ossmount.check import CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT, CheckError, CredentialsHints, check_target
from ossmount.credentials import Credentials
from ossmount.daemon import api, child, creds, system
from ossmount.daemon.api import CredentialsInput, VolumeSpec
from ossmount.daemon.decisions import (
    DEAD_ERRNOS,
    PublishAction,
    RestartPolicy,
    UnpublishAction,
    classify_target,
    publish_action,
    transition,
    unpublish_action,
)
from ossmount.daemon.errors import DaemonError, code_for_oss
from ossmount.daemon.metrics import DaemonMetrics, VolumeSample
from ossmount.daemon.mountinfo import MountTable
from ossmount.daemon.state import RunDir, Target, VolumeRecord, now_iso
from ossmount.errors import ConfigError
from ossmount.ops import control
from ossmount.store import RetryPolicy
from ossmount.store import types as store_types
from ossmount.storeconfig import open_store

log = logging.getLogger("ossmount.daemon")

DAEMON_HINTS = CredentialsHints(
    access_key_id="the AccessKey ID sent to the daemon (akId / AccessKeyId of the volume's secret)",
    access_key_secret="the AccessKey secret sent to the daemon (akSecret / AccessKeySecret of the volume's secret)",
    security_token="securityToken / SecurityToken of the volume's secret",
)
STOP_GRACE = 5.0  # SIGTERM → SIGKILL
UNMOUNT_BUSY_RETRIES = 3  # a busy global mount is retried 3 times over 3 s
MAX_STACKED_BINDS = 16
VOLUME_METRICS_TIMEOUT = 2.0  # seconds a scrape waits for one volume's own metrics
FAULT_ENV = "OSSMOUNT_DAEMON_FAULT"  # test hook: "exit-after-bind" ends the daemon between bind and record


@dataclass(frozen=True)
class DaemonConfig:
    """Everything `ossmount daemon` is configured with (flags in daemon/cli.py)."""

    run_dir: str = "/run/ossmount"
    mnt_dir: str | None = None  # default <run_dir>/mnt
    allowed_prefixes: tuple[str, ...] = ()
    ossmount_command: tuple[str, ...] = child.DEFAULT_COMMAND
    health_interval: float = 10.0
    probe_timeout: float = 5.0
    wedge_threshold: int = 3
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    lock_timeout: float = 60.0
    status_interval: float = 5.0
    cleanup_orphans: bool = False

    @property
    def mount_dir(self) -> str:
        return self.mnt_dir or os.path.join(self.run_dir, "mnt")


class Volume:
    """A volume's runtime: its record, its FUSE process, and the incidents its supervisor handles."""

    def __init__(self, record: VolumeRecord):
        self.record = record
        self.process: child.FuseProcess | None = None
        self.probe_limiter = trio.CapacityLimiter(1)  # the prober's: a stuck probe keeps it (wedge detection)
        self.check_limiter = trio.CapacityLimiter(1)  # operations' own probes
        self.timeouts_in_a_row = 0
        self.waiting_requests: int | None = None
        self.removed = False
        self._send, self._receive = trio.open_memory_channel[tuple[str, int]](math.inf)

    def post(self, reason: str, generation: int) -> None:
        """Report a crash of `generation` ("exited", "signaled", "enotconn", "wedged", "stale")."""
        if not self.removed:
            self._send.send_nowait((reason, generation))

    @property
    def incidents(self) -> trio.MemoryReceiveChannel[tuple[str, int]]:
        return self._receive

    def close(self) -> None:
        self.removed = True
        self._send.close()

    def devs(self) -> list[str]:
        """The dev of the current global mount and of the generations before it."""
        return [d for d in (self.record.dev, *self.record.previous_devs) if d]

    def sample(self) -> VolumeSample:
        record = self.record
        backend = (record.health.get("backend") or {}).get("ok")
        expiry = record.credentials.get("expires_at")
        return VolumeSample(
            volume_id=record.volume_id, state=record.state, targets=len(record.targets),
            process_up=self.process is not None and not self.process.exited.is_set(),
            mount_healthy=record.health.get("statvfs") == "ok", backend_healthy=backend is not False,
            credentials_expiry=_epoch(expiry) if expiry else None, waiting_requests=self.waiting_requests)


def _epoch(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class VolumeLocks:
    """Per-volume locks, created on demand and dropped when nobody holds or waits for them."""

    def __init__(self, metrics: DaemonMetrics):
        self._locks: dict[str, list[Any]] = {}
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def hold(self, volume_id: str, timeout: float) -> AsyncIterator[None]:
        entry = self._locks.setdefault(volume_id, [trio.Lock(), 0])
        entry[1] += 1
        try:
            started = trio.current_time()
            with trio.move_on_after(timeout) as scope:
                await entry[0].acquire()
            self._metrics.lock_wait.observe(trio.current_time() - started)
            if scope.cancelled_caught:
                raise DaemonError("ABORTED", f"another operation on volume {volume_id!r} is still running after "
                                             f"{timeout:g} s; retry later", volume_id=volume_id,
                                  retry_after=max(1, int(timeout / 10)))
            try:
                yield
            finally:
                entry[0].release()
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[volume_id]


@dataclass
class Outcome:
    """An operation's answer: HTTP status, the volume (None once it is gone) and what changed."""

    status: int
    volume: dict[str, Any] | None
    changed: str | None

    def to_json(self) -> dict[str, Any]:
        return {"volume": self.volume, "changed": self.changed}


async def _in_thread(fn, *args):
    return await trio.to_thread.run_sync(fn, *args)


class VolumeManager:
    """The daemon's volumes and operations. Create it, `await reconcile()` (recovery.py), then serve."""

    def __init__(self, config: DaemonConfig, nursery: trio.Nursery, *, environ: dict[str, str] | None = None):
        self.config = config
        self.run_dir = RunDir(config.run_dir)
        try:
            self.run_dir.create()
            os.makedirs(config.mount_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the daemon's directories under {config.run_dir} and "
                              f"{config.mount_dir}: {exc.strerror} ({exc.filename}); choose another --run-dir "
                              "or --mnt-dir") from None
        self.volumes: dict[str, Volume] = {}
        self.nursery = nursery
        self.environ = dict(os.environ if environ is None else environ)
        self.orphans = 0
        self.ready = False
        self.started_at = now_iso()
        self.metrics = DaemonMetrics(lambda: [v.sample() for v in self.volumes.values()], lambda: self.orphans)
        self.locks = VolumeLocks(self.metrics)
        self._allowed = tuple(config.allowed_prefixes) + tuple(
            os.path.realpath(p) for p in config.allowed_prefixes if os.path.realpath(p) != p)

    # -- reads ------------------------------------------------------------------------------------

    async def render_metrics(self) -> tuple[bytes, str]:
        """The daemon's metrics with every running volume's own, asked over each volume's control socket in
        parallel (metrics.py)."""
        texts: dict[str, str] = {}
        asked = [v for v in self.volumes.values() if v.process is not None and not v.process.exited.is_set()]

        async def ask(volume: Volume) -> None:
            path = control.socket_for_status_file(self.run_dir.status_path(volume.record.vh))
            with trio.move_on_after(VOLUME_METRICS_TIMEOUT + 0.5):
                try:
                    texts[volume.record.volume_id] = await trio.to_thread.run_sync(
                        functools.partial(control.request, path, {"op": "metrics"}, timeout=VOLUME_METRICS_TIMEOUT),
                        abandon_on_cancel=True)
                except control.ControlError as exc:
                    log.info("no metrics from volume %s: %s", volume.record.volume_id, exc)

        async with trio.open_nursery() as nursery:
            for volume in asked:
                nursery.start_soon(ask, volume)
        missing = [v.record.volume_id for v in asked if v.record.volume_id not in texts]
        return self.metrics.render(texts, missing)

    def describe(self, volume: Volume) -> dict[str, Any]:
        document = volume.record.to_json()
        document["process"]["up"] = volume.process is not None and not volume.process.exited.is_set()
        document["log_path"] = self.run_dir.log_path(volume.record.vh)
        for internal in ("version", "global_path_created"):
            document.pop(internal, None)
        return document

    def get(self, volume_id: str) -> dict[str, Any]:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise DaemonError("NOT_FOUND", f"volume {volume_id!r} is not staged on this node", volume_id=volume_id)
        return self.describe(volume)

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(v) for v in sorted(self.volumes.values(), key=lambda v: v.record.volume_id)]

    # -- helpers ----------------------------------------------------------------------------------

    def save(self, record: VolumeRecord) -> None:
        self.run_dir.save(record)

    def resolve(self, path: str, name: str) -> str:
        """`path` with symlinks in its parent resolved; the result must pass the path rules too."""
        resolved = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if resolved != path:
            api.check_path(resolved, f"{name} (resolved)", self._allowed)
        return resolved

    def log_paths(self, record: VolumeRecord) -> list[str]:
        return [self.run_dir.log_path(record.vh), self.run_dir.stderr_path(record.vh)]

    def _annotate(self, error: DaemonError, record: VolumeRecord) -> DaemonError:
        return error.with_volume(record.volume_id, log_tail=child.read_log_tail(self.log_paths(record)),
                                 log_path=self.run_dir.log_path(record.vh))

    async def validate(self, spec: VolumeSpec, credentials: CredentialsInput, deadline: float) -> None:
        """Bucket, credentials and prefix through `ossmount check`'s own checks; DaemonError naming the OSS code."""
        options = spec.mount_options()
        remaining = max(0.5, deadline - trio.current_time())
        found = Credentials(credentials.access_key_id, credentials.access_key_secret,
                            credentials.security_token or None, "request")
        try:
            store = open_store(spec.bucket, options, prefix=spec.prefix, source=found, max_connections=1,
                               retry=RetryPolicy.no_retries())
        except (store_types.StoreError, ConfigError) as exc:
            raise DaemonError("INVALID_ARGUMENT", f"spec: {exc}") from None
        with trio.move_on_at(deadline) as scope:
            try:
                await check_target(store, spec.prefix, v2=options.list_objects_v2, bucket_info=False,
                                   hints=DAEMON_HINTS, connect_timeout=min(CHECK_CONNECT_TIMEOUT, remaining),
                                   timeout=min(CHECK_READ_TIMEOUT, remaining))
            except CheckError as exc:
                raise DaemonError(code_for_oss(exc.code, exc.exit_code), str(exc), reason=exc.code) from None
        if scope.cancelled_caught:
            raise DaemonError("DEADLINE_EXCEEDED", f"checking oss://{spec.bucket}/{spec.prefix} at {spec.endpoint} "
                                                   "did not finish in time; check that the endpoint is reachable "
                                                   "from this node", reason="RequestTimeout")

    async def unmount(self, path: str, *, lazy_if_busy: bool = True) -> bool:
        """Unmount `path` (lazily when busy, if allowed); False if nothing was mounted."""
        try:
            return await _in_thread(system.unmount, path)
        except system.MountBusy:
            if not lazy_if_busy:
                raise
            log.info("%s is busy: detaching it lazily", path)
            return await _in_thread(lambda: system.unmount(path, detach=True))

    async def bind_target(self, record: VolumeRecord, path: str, read_only: bool) -> None:
        try:
            await _in_thread(system.bind, record.global_path, path)
            if read_only:
                entry = MountTable.read().top(path)
                try:
                    await _in_thread(system.remount_read_only, path, entry.options if entry else ())
                except OSError:
                    await _in_thread(lambda: system.unmount(path, detach=True))
                    raise
        except OSError as exc:
            raise DaemonError("INTERNAL", f"cannot bind {record.global_path} onto {path}: {exc.strerror}",
                              volume_id=record.volume_id) from None
        if os.environ.get(FAULT_ENV) == "exit-after-bind":
            os._exit(70)

    # -- the FUSE process -------------------------------------------------------------------------

    async def start_process(self, volume: Volume, deadline: float) -> None:
        """Spawn the FUSE process on the global path and wait for its readiness (csi-daemon.md §5.8 steps 3–4)."""
        record = volume.record
        vh = record.vh
        keys = creds.keys_path(self.run_dir.creds_dir(vh))

        def command(ready_fd: int) -> list[str]:
            return child.mount_command(
                self.config.ossmount_command, record.spec, record.global_path, passwd_path=keys,
                log_path=self.run_dir.log_path(vh), status_path=self.run_dir.status_path(vh),
                status_interval=self.config.status_interval, ready_fd=ready_fd)

        process, read_end = await child.spawn(command, stderr_path=self.run_dir.stderr_path(vh),
                                              environ=self.environ)
        volume.process = process
        record.pid, record.start_time = process.pid, process.start_time
        record.generation += 1
        self.save(record)
        self.nursery.start_soon(self.watch_process, volume, process, record.generation)
        report = None
        with trio.move_on_at(deadline) as scope:
            report = await child.read_ready_line(read_end)
            if report is None or report.get("state") != "ready":
                with trio.move_on_after(STOP_GRACE):
                    await process.exited.wait()
        if scope.cancelled_caught:
            await self._abandon(volume, process)
            raise DaemonError("DEADLINE_EXCEEDED", f"the mount of oss://{record.spec.bucket}/{record.spec.prefix} was "
                                                   "not ready in time; check that the endpoint "
                                                   f"{record.spec.endpoint} is reachable from this node")
        if report is None or report.get("state") != "ready":
            error = child.error_from_report(report, process)
            await self._abandon(volume, process)
            raise error
        entry = MountTable.read().top(record.global_path)
        if entry is None or not entry.is_ossmount:
            await self._abandon(volume, process)
            raise DaemonError("INTERNAL", f"the FUSE process reported ready but mountinfo shows no fuse.ossmount "
                                          f"at {record.global_path}")
        record.dev, record.mount_id = entry.dev, entry.mount_id

    async def _abandon(self, volume: Volume, process: child.FuseProcess) -> None:
        """Stop a process that failed to become ready and remove any half mount it left."""
        process.expected_exit = True
        with trio.CancelScope(shield=True):
            await process.stop(2.0)
            top = MountTable.read().top(volume.record.global_path)
            if top is not None and top.is_ossmount:
                await _in_thread(lambda: system.unmount(volume.record.global_path, detach=True))

    async def watch_process(self, volume: Volume, process: child.FuseProcess, generation: int) -> None:
        await process.watch()
        if not process.expected_exit and volume.process is process:
            reason = "signaled" if (process.exit_info or {}).get("signal") else "exited"
            log.warning("volume %s: the FUSE process %d %s", volume.record.volume_id, process.pid,
                        process.describe_exit())
            volume.post(reason, generation)

    async def stop_process(self, volume: Volume, drain_timeout: float) -> None:
        """Wait up to `drain_timeout` for the process to exit after its unmount (uploads may still flush), then
        SIGTERM and, `STOP_GRACE` later, SIGKILL (counted as a forced kill)."""
        process = volume.process
        if process is None:
            return
        process.expected_exit = True
        with trio.move_on_after(drain_timeout):
            await process.exited.wait()
            return
        log.warning("volume %s: the FUSE process %d did not exit within %g s of its unmount; stopping it",
                    volume.record.volume_id, process.pid, drain_timeout)
        if await process.stop(STOP_GRACE):
            self.metrics.forced_kills.labels(volume.record.volume_id).inc()

    # -- stage --------------------------------------------------------------------------------------

    def _check_same(self, volume: Volume, spec: VolumeSpec | None, global_path: str | None) -> None:
        record = volume.record
        differing = record.spec.differences(spec) if spec is not None else []
        if global_path is not None and self.resolve(global_path, "global_path") != record.global_path:
            differing.append("global_path")
        if differing:
            raise DaemonError("ALREADY_EXISTS", f"volume {record.volume_id!r} is staged with a different "
                                                f"{', '.join(differing)}; unstage it first or use another volume_id",
                              volume_id=record.volume_id)

    async def _prepare_global_path(self, path: str, volume_id: str) -> bool:
        """Make `path` ready to be mounted on; True if the daemon created the directory."""
        for other in self.volumes.values():
            if other.record.global_path == path:
                raise DaemonError("FAILED_PRECONDITION", f"global path {path} is used by volume "
                                                         f"{other.record.volume_id!r}", volume_id=volume_id)
        top = MountTable.read().top(path)
        if top is not None:
            probe = await system.probe_statvfs(path, self.config.probe_timeout, trio.CapacityLimiter(1))
            if not top.is_ossmount or probe == "ok":
                raise DaemonError("FAILED_PRECONDITION", f"global path {path} is occupied by {top.describe()}; "
                                                         f"unmount it first (umount {path})", volume_id=volume_id)
            log.info("removing the dead fuse.ossmount mount left at %s", path)
            await _in_thread(lambda: system.unmount(path, detach=True))
            return False
        if os.path.lexists(path):
            if os.path.islink(path) or not os.path.isdir(path):
                raise DaemonError("INVALID_ARGUMENT", f"global path {path} exists and is not a directory",
                                  volume_id=volume_id)
            return False
        os.makedirs(path, mode=0o750)
        return True

    async def _mount_new(self, request: api.StageRequest, deadline: float) -> Volume:
        vh = api.volume_hash(request.volume_id)
        global_path = (self.resolve(request.global_path, "global_path") if request.global_path
                       else os.path.join(self.config.mount_dir, vh, "globalmount"))
        await self.validate(request.spec, request.credentials, deadline)
        record = VolumeRecord(request.volume_id, request.spec, global_path,
                              credentials={**request.credentials.describe(), "rotated_at": now_iso()})
        volume = Volume(record)
        os.makedirs(self.run_dir.volume_dir(vh), mode=0o700, exist_ok=True)
        try:
            creds.write_credentials(self.run_dir.creds_dir(vh), request.credentials)
            if request.global_path is None:
                os.makedirs(os.path.dirname(global_path), mode=0o700, exist_ok=True)
            record.global_path_created = await self._prepare_global_path(global_path, request.volume_id)
            self.save(record)
            self.volumes[request.volume_id] = volume
            await self.start_process(volume, deadline)
            record.state = transition(record.state, "mounted")
            self.save(record)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self.forget(volume, failed=True)
            if isinstance(exc, DaemonError):
                raise self._annotate(exc, record) from None
            raise
        log.info("volume %s: mounted %s on %s (pid %d)", record.volume_id, record.spec.source, global_path,
                 record.pid)
        self.nursery.start_soon(self._supervise, volume)
        return volume

    async def forget(self, volume: Volume, *, failed: bool = False) -> None:
        """Remove every trace of a volume whose process is gone: creds, state file, directories, runtime entry.
        After a failed stage the logs stay (the error names them); after an unstage the volume directory goes."""
        record = volume.record
        if failed and volume.process is not None and not volume.process.exited.is_set():
            await self._abandon(volume, volume.process)
        creds.remove_credentials(self.run_dir.creds_dir(record.vh))
        if not failed:
            shutil.rmtree(self.run_dir.volume_dir(record.vh), ignore_errors=True)
        self.run_dir.delete(record.vh)
        if record.global_path_created:
            with contextlib.suppress(OSError):
                os.rmdir(record.global_path)
                if os.path.dirname(record.global_path) == os.path.join(self.config.mount_dir, record.vh):
                    os.rmdir(os.path.dirname(record.global_path))
        if self.volumes.get(record.volume_id) is volume:
            del self.volumes[record.volume_id]
        volume.close()

    async def _refresh_credentials(self, volume: Volume, credentials: CredentialsInput | None,
                                   deadline: float) -> str | None:
        """Rotate to `credentials` if they differ from the installed ones; "credentials" if they did."""
        record = volume.record
        if credentials is None or credentials.is_none:
            return None
        if creds.same_credentials(self.run_dir.creds_dir(record.vh), credentials):
            return None
        try:
            await self.validate(record.spec, credentials, deadline)
        except DaemonError as exc:
            self.metrics.credential_rotations.labels(record.volume_id, "refused").inc()
            raise exc.with_volume(record.volume_id) from None
        creds.write_credentials(self.run_dir.creds_dir(record.vh), credentials)
        record.credentials = {**credentials.describe(), "rotated_at": now_iso()}
        self.save(record)
        self.metrics.credential_rotations.labels(record.volume_id, "ok").inc()
        log.info("volume %s: credentials rotated (AccessKey ID %s)", record.volume_id,
                 record.credentials["access_key_id"])
        return "credentials"

    async def _heal_if_needed(self, volume: Volume, deadline: float) -> str | None:
        """Restart synchronously a volume that is down (crash not yet handled, or restarts exhausted)."""
        record = volume.record
        alive = volume.process is not None and not volume.process.exited.is_set()
        down = record.state in ("recovering", "failed") or not alive
        if not down:
            probe = await system.probe_statvfs(record.global_path, self.config.probe_timeout, volume.check_limiter)
            down = probe in DEAD_ERRNOS
        if not down:
            return None
        if record.state not in ("recovering", "failed"):
            record.state = transition(record.state, "crashed")
        await self.restart(volume, deadline, reason="on demand")
        return "recovered"

    async def stage(self, request: api.StageRequest) -> Outcome:
        async with self.locks.hold(request.volume_id, self.config.lock_timeout):
            deadline = trio.current_time() + request.timeout_s
            volume = self.volumes.get(request.volume_id)
            if volume is None:
                volume = await self._mount_new(request, deadline)
                return Outcome(201, self.describe(volume), "mounted")
            self._check_same(volume, request.spec, request.global_path)
            changed = await self._heal_if_needed(volume, deadline)
            changed = await self._refresh_credentials(volume, request.credentials, deadline) or changed
            return Outcome(200, self.describe(volume), changed)

    # -- publish / unpublish -------------------------------------------------------------------------

    async def publish(self, request: api.PublishRequest) -> Outcome:
        async with self.locks.hold(request.volume_id, self.config.lock_timeout):
            deadline = trio.current_time() + request.timeout_s
            target = self.resolve(request.target_path, "target_path")
            volume = self.volumes.get(request.volume_id)
            changed = None
            status = 200
            if volume is None:
                stage = request.stage_request()
                if stage is None:
                    raise DaemonError("NOT_FOUND", f"volume {request.volume_id!r} is not staged on this node: stage "
                                                   "it first, or send spec and credentials with publish",
                                      volume_id=request.volume_id)
                volume = await self._mount_new(stage, deadline)
                status = 201
            else:
                self._check_same(volume, request.spec, request.global_path)
                changed = await self._heal_if_needed(volume, deadline)
                changed = await self._refresh_credentials(volume, request.credentials, deadline) or changed
            record = volume.record
            if target == record.global_path or target.startswith(record.global_path + "/"):
                raise DaemonError("INVALID_ARGUMENT", "target_path must not be the global path or lie inside it")
            bound = await self._publish_target(volume, target, request)
            if bound:
                changed = bound
                status = 201 if bound == "published" else status
            return Outcome(status, self.describe(volume), changed)

    async def _publish_target(self, volume: Volume, target: str, request: api.PublishRequest) -> str | None:
        record = volume.record
        top = MountTable.read().top(target)
        dead = False
        if top is not None and top.is_ossmount and top.dev != record.dev:
            dead = await system.probe_statvfs(target, self.config.probe_timeout,
                                              trio.CapacityLimiter(1)) in DEAD_ERRNOS
        state = classify_target(top, record.dev, record.previous_devs, dead)
        recorded = record.target(target)
        action = publish_action(state, request.read_only,
                                recorded_read_only=recorded.read_only if recorded else None,
                                mounted_read_only=top.read_only if top is not None else None)
        if action is PublishAction.REFUSE:
            assert top is not None
            raise DaemonError("FAILED_PRECONDITION", f"target {target} is occupied by {top.describe()}; refusing to "
                                                     "mount over it (unmount it first)", volume_id=record.volume_id)
        if action is PublishAction.CONFLICT:
            was = recorded.read_only if recorded else (top.read_only if top else None)
            raise DaemonError("ALREADY_EXISTS", f"target {target} is already published with read_only={was}; "
                                                "unpublish it before publishing it with "
                                                f"read_only={request.read_only}", volume_id=record.volume_id)
        changed: str | None = None
        if action is PublishAction.BIND:
            if os.path.islink(target):
                raise DaemonError("INVALID_ARGUMENT", f"target {target} is a symbolic link")
            os.makedirs(target, mode=0o750, exist_ok=True)
            await self.bind_target(record, target, request.read_only)
            changed = "published"
        elif action is PublishAction.REBIND:
            await _in_thread(lambda: system.unmount(target, detach=True))
            await self.bind_target(record, target, request.read_only)
            changed = "repaired"
        if recorded is None or changed is not None:
            record.remove_target(target)
            record.targets.append(Target(target, request.read_only, pod=dict(request.pod) if request.pod else None))
            self.save(record)
        if changed:
            log.info("volume %s: %s %s%s", record.volume_id, changed, target, " (read-only)" if request.read_only else "")
        return changed

    async def unpublish(self, request: api.UnpublishRequest) -> Outcome:
        async with self.locks.hold(request.volume_id, self.config.lock_timeout):
            target = self.resolve(request.target_path, "target_path")
            volume = self.volumes.get(request.volume_id)
            devs = volume.devs() if volume else []
            changed = None
            for _ in range(MAX_STACKED_BINDS):
                top = MountTable.read().top(target)
                action = unpublish_action(top, devs)
                if action is UnpublishAction.REFUSE:
                    assert top is not None
                    raise DaemonError("FAILED_PRECONDITION", f"target {target} holds {top.describe()}, which this "
                                                             "daemon did not mount; leaving it alone",
                                      volume_id=request.volume_id)
                if action is UnpublishAction.NOTHING:
                    break
                await self.unmount(target)
                changed = "unpublished"
            _remove_directory(target)
            if volume is not None and volume.record.remove_target(target):
                self.save(volume.record)
                changed = "unpublished"
            if changed:
                log.info("volume %s: unpublished %s", request.volume_id, target)
            return Outcome(200, self.describe(volume) if volume and not volume.removed else None, changed)

    # -- unstage --------------------------------------------------------------------------------------

    async def unstage(self, request: api.UnstageRequest) -> Outcome:
        async with self.locks.hold(request.volume_id, self.config.lock_timeout):
            volume = self.volumes.get(request.volume_id)
            if volume is None:
                return await self._unstage_unknown(request)
            record = volume.record
            table = MountTable.read()
            live, stale = [], []
            for target in record.targets:
                top = table.top(target.path)
                if top is not None and top.dev == record.dev:
                    live.append(target.path)
                elif top is not None and top.dev in volume.devs():
                    stale.append(target.path)
                else:
                    record.remove_target(target.path)
            for path in stale:
                await _in_thread(lambda p=path: system.unmount(p, detach=True))
                record.remove_target(path)
            if live and not request.force:
                self.save(record)
                raise DaemonError("FAILED_PRECONDITION", f"volume {record.volume_id!r} is still published at "
                                                         f"{', '.join(live)}; unpublish them first or unstage with "
                                                         "force", volume_id=record.volume_id)
            for path in live:
                await _in_thread(lambda p=path: system.unmount(p, detach=True))
                _remove_directory(path)
                record.remove_target(path)
            previous = record.state
            record.state = transition(previous, "unstaging")
            if volume.process is not None:
                volume.process.expected_exit = True
            self.save(record)
            try:
                await self._unmount_global(record, force=request.force)
            except DaemonError:
                record.state = transition(record.state, "unstage_refused") if previous == "ready" else previous
                if volume.process is not None:
                    volume.process.expected_exit = False
                self.save(record)
                raise
            await self.stop_process(volume, request.drain_timeout_s)
            await self.forget(volume)
            log.info("volume %s: unstaged", record.volume_id)
            return Outcome(200, None, "unmounted")

    async def _unmount_global(self, record: VolumeRecord, *, force: bool) -> None:
        path = record.global_path
        for attempt in range(UNMOUNT_BUSY_RETRIES + 1):
            top = MountTable.read().top(path)
            if top is None or top.dev != record.dev and not top.is_ossmount:
                return
            try:
                await self.unmount(path, lazy_if_busy=False)
            except system.MountBusy:
                if attempt < UNMOUNT_BUSY_RETRIES:
                    await trio.sleep(1.0)
                    continue
                if force:
                    log.warning("volume %s: the global mount %s is busy; detaching it lazily", record.volume_id,
                                path)
                    await _in_thread(lambda: system.unmount(path, detach=True))
                    return
                raise DaemonError("FAILED_PRECONDITION", f"the global mount {path} is busy (open files or a "
                                                         "working directory inside?); close them or unstage with "
                                                         "force", volume_id=record.volume_id) from None

    async def _unstage_unknown(self, request: api.UnstageRequest) -> Outcome:
        changed = None
        if request.global_path:
            path = self.resolve(request.global_path, "global_path")
            top = MountTable.read().top(path)
            if top is not None and top.is_ossmount:
                await self.unmount(path)
                changed = "unmounted"
        return Outcome(200, None, changed)

    # -- rotate ---------------------------------------------------------------------------------------

    async def rotate(self, request: api.RotateRequest) -> Outcome:
        async with self.locks.hold(request.volume_id, self.config.lock_timeout):
            volume = self.volumes.get(request.volume_id)
            if volume is None:
                raise DaemonError("NOT_FOUND", f"volume {request.volume_id!r} is not staged on this node",
                                  volume_id=request.volume_id)
            deadline = trio.current_time() + request.timeout_s
            changed = await self._refresh_credentials(volume, request.credentials, deadline)
            return Outcome(200, self.describe(volume), changed)

    # -- restarts (the supervisor and the prober live in recovery.py) ---------------------------------

    async def restart(self, volume: Volume, deadline: float, *, reason: str) -> None:
        """Replace the volume's FUSE process and re-bind every target (call with the volume's lock held)."""
        record = volume.record
        record.restart_times = (record.restart_times + [time.time()])[-32:]
        record.restarts += 1
        old = volume.process
        if old is not None and not old.exited.is_set():
            old.expected_exit = True
            if record.dev:
                system.fuse_abort(record.dev)
            await old.stop(1.0)
        record.remember_dev()
        await _in_thread(lambda: system.unmount(record.global_path, detach=True))
        log.info("volume %s: restarting the FUSE process (%s, restart %d)", record.volume_id, reason,
                 record.restarts)
        try:
            await self.start_process(volume, deadline)
        except DaemonError as exc:
            self.metrics.fuse_restart_failures.labels(record.volume_id).inc()
            record.set_error(exc.code, exc.message)
            record.state = transition(record.state, "restart_failed")
            self.save(record)
            raise self._annotate(exc, record) from None
        for target in list(record.targets):
            await _in_thread(lambda p=target.path: system.unmount(p, detach=True))
            try:
                await self.bind_target(record, target.path, target.read_only)
            except DaemonError as exc:
                log.error("volume %s: %s", record.volume_id, exc.message)
                record.remove_target(target.path)
        record.state = transition(record.state, "restarted")
        record.last_error = None
        self.save(record)
        log.info("volume %s: FUSE process restarted (pid %d, generation %d), %d target(s) re-bound",
                 record.volume_id, record.pid, record.generation, len(record.targets))

    async def _supervise(self, volume: Volume) -> None:
        from ossmount.daemon.recovery import supervise

        await supervise(self, volume)


def _remove_directory(path: str) -> None:
    """rmdir a target the way CSI wants it gone; a missing one is fine, a non-empty one is left and logged."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            log.warning("left %s in place: %s (not created by this daemon?)", path, exc.strerror)
        else:
            log.warning("cannot remove %s: %s", path, exc.strerror)
