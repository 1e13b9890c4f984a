"""Keeping volumes alive: the per-volume supervisor, the liveness prober, and reconciliation at start
(csi-daemon.md §5.10, §5.11). What to do is decided in decisions.py; this module observes and acts.

A crash is noticed three ways: the process exits (trio's wait on a child, or a pidfd for one adopted after a
daemon restart), `statvfs` of the global mount answers ENOTCONN, or it times out `wedge_threshold` times in a
row (the process hangs: it is killed and its FUSE connection aborted). The supervisor then records the exit
and restarts the process with backoff, re-binding every target, so new opens through the target paths work
again. Handles already open in running containers stay broken (their mount namespaces hold the dead mount):
nothing on a stock kernel can repair those.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from typing import Any

import trio

from ossmount.daemon import child, system
from ossmount.daemon.decisions import (
    DEAD_ERRNOS,
    ProbeVerdict,
    ReconcileAction,
    probe_verdict,
    reconcile_action,
    reconcile_targets,
    transition,
)
from ossmount.daemon.errors import DaemonError, code_for_oss
from ossmount.daemon.manager import STOP_GRACE, Volume, VolumeManager
from ossmount.daemon.mountinfo import MountTable
from ossmount.daemon.state import Target, VolumeRecord, now_iso

log = logging.getLogger("ossmount.daemon")

RESTART_READY_TIMEOUT = 30.0
LAST_EXIT_LOG_BYTES = 4096
EXIT_WATCHER_GRACE = 2.0  # seconds a probe that found ENOTCONN waits for the process exit watcher
_BACKEND_ADVICE = {
    "NOT_FOUND": "the bucket no longer exists (deleted?)",
    "UNAUTHENTICATED": "OSS refuses the credentials: rotate them (rotate-credentials, or a new secret)",
    "PERMISSION_DENIED": "the credentials may no longer access the bucket: check its RAM or bucket policy",
    "UNAVAILABLE": "the endpoint is unreachable or failing from this node",
    "DEADLINE_EXCEEDED": "the endpoint does not answer in time from this node",
}


# --------------------------------------------------------------------------------------------------
# Supervisor


async def supervise(manager: VolumeManager, volume: Volume) -> None:
    """Handle the volume's crash reports until it is unstaged."""
    async for reason, generation in volume.incidents:
        if volume.removed:
            return
        if generation == volume.record.generation:
            await _recover(manager, volume, reason, generation)


async def _recover(manager: VolumeManager, volume: Volume, reason: str, generation: int) -> None:
    record = volume.record
    async with manager.locks.hold(record.volume_id, math.inf):
        if volume.removed or record.state == "unmounting" or generation != record.generation:
            return
        process = volume.process
        if process is not None and not process.exited.is_set():
            process.expected_exit = True
            if reason == "wedged" and record.dev:
                system.fuse_abort(record.dev)
            process.send_signal(signal.SIGKILL)
            with trio.move_on_after(10):
                await process.exited.wait()
        exit_info = dict(process.exit_info or {}) if process is not None else {}
        what = process.describe_exit() if process is not None else "is gone"
        record.last_exit = {"at": now_iso(), "code": exit_info.get("code"), "signal": exit_info.get("signal"),
                            "reason": reason,
                            "log_tail": child.read_log_tail(manager.log_paths(record), max_bytes=LAST_EXIT_LOG_BYTES)}
        record.state = transition(record.state, "crashed")
        record.set_error("UNAVAILABLE", f"the FUSE process {process.pid if process else record.pid} {what} "
                                        f"({reason}); restarting it")
        manager.metrics.fuse_restarts.labels(record.volume_id, reason).inc()
        manager.save(record)
        log.warning("volume %s: FUSE process %s %s (%s): restarting it with backoff", record.volume_id,
                    process.pid if process else record.pid, what, reason)
    policy = manager.config.restart_policy
    while True:
        delay = policy.delay(record.restart_times, time.time())
        if delay is None:
            async with manager.locks.hold(record.volume_id, math.inf):
                if not volume.removed and record.state == "recovering":
                    record.state = transition(record.state, "gave_up")
                    record.set_error("INTERNAL", f"gave up after {policy.max_restarts} restarts in "
                                                 f"{policy.window:g} s; the next stage or publish tries again "
                                                 f"(log: {manager.run_dir.log_path(record.vh)})")
                    manager.save(record)
                    log.error("volume %s: %s", record.volume_id, record.last_error["message"])
            return
        await trio.sleep(delay)
        async with manager.locks.hold(record.volume_id, math.inf):
            if volume.removed or record.state not in ("recovering", "failed"):
                return
            try:
                await manager.restart(volume, trio.current_time() + RESTART_READY_TIMEOUT, reason=reason)
                return
            except DaemonError as exc:
                log.warning("volume %s: restart failed: %s", record.volume_id, exc.message)


# --------------------------------------------------------------------------------------------------
# Prober


def read_backend(status_path: str, pid: int | None) -> dict[str, Any]:
    """The `backend` part of the FUSE process's status file, if the file is that process's."""
    try:
        with open(status_path, encoding="utf-8") as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        return {"ok": None, "last_error": None}
    if status.get("pid") != pid or not isinstance(status.get("backend"), dict):
        return {"ok": None, "last_error": None}
    return status["backend"]


async def probe_loop(manager: VolumeManager) -> None:
    """Every `health_interval` seconds, probe every ready volume (in parallel)."""
    while True:
        await trio.sleep(manager.config.health_interval)
        async with trio.open_nursery() as nursery:
            for volume in list(manager.volumes.values()):
                nursery.start_soon(probe_volume, manager, volume)


async def probe_volume(manager: VolumeManager, volume: Volume) -> None:
    record = volume.record
    if volume.removed or record.state not in ("ready", "degraded") or volume.process is None:
        return
    generation = record.generation
    result = await system.probe_statvfs(record.global_path, manager.config.probe_timeout, volume.probe_limiter)
    if volume.removed or generation != record.generation or record.state not in ("ready", "degraded"):
        return
    verdict, volume.timeouts_in_a_row = probe_verdict(result, volume.timeouts_in_a_row,
                                                      manager.config.wedge_threshold)
    volume.waiting_requests = system.fuse_waiting_requests(record.dev) if record.dev else None
    backend = read_backend(manager.run_dir.status_path(record.vh), record.pid)
    record.health = {"checked_at": now_iso(), "statvfs": result, "waiting_requests": volume.waiting_requests,
                     "backend": backend}
    if verdict is ProbeVerdict.CRASHED:
        # A process that died makes its mount ENOTCONN at once, possibly before its exit watcher runs; that
        # watcher names the cause (signal or exit code) more precisely, so give it the word when it can.
        process = volume.process
        if process is not None:
            with trio.move_on_after(EXIT_WATCHER_GRACE):
                await process.exited.wait()
            if process.exited.is_set() and not process.expected_exit:
                return
        volume.post("enotconn", generation)
    elif verdict is ProbeVerdict.WEDGED:
        volume.post("wedged", generation)
    elif verdict is ProbeVerdict.SLOW:
        log.warning("volume %s: statvfs of %s did not answer within %g s (%d in a row)", record.volume_id,
                    record.global_path, manager.config.probe_timeout, volume.timeouts_in_a_row)
    elif verdict is ProbeVerdict.HEALTHY:
        _apply_backend(manager, record, backend)


def _apply_backend(manager: VolumeManager, record: VolumeRecord, backend: dict[str, Any]) -> None:
    failed = backend.get("ok") is False
    state = transition(record.state, "backend_failed" if failed else "backend_ok")
    if state == record.state:
        return
    record.state = state
    if failed:
        reason = (backend.get("last_error") or {}).get("code")
        code = code_for_oss(reason)
        advice = _BACKEND_ADVICE.get(code, "see the volume's log")
        record.set_error(code, f"OSS answers {reason} to this volume's requests: {advice}")
        log.warning("volume %s: degraded: %s", record.volume_id, record.last_error["message"])
    else:
        record.last_error = None
        log.info("volume %s: the backend answers again", record.volume_id)
    manager.save(record)


# --------------------------------------------------------------------------------------------------
# Reconciliation at start


async def reconcile(manager: VolumeManager) -> None:
    """Rebuild the volumes from the state files and mountinfo (before the API accepts operations)."""
    await trio.to_thread.run_sync(system.ensure_fusectl)
    table = MountTable.read()
    for record in manager.run_dir.load_all():
        try:
            await _reconcile_one(manager, record, table)
        except Exception:  # noqa: BLE001 - one bad volume must not keep the daemon from serving the others
            log.exception("volume %s: reconciliation failed; its state is kept for the next start",
                          record.volume_id)
    await _clean_orphans(manager, MountTable.read())


async def _reconcile_one(manager: VolumeManager, record: VolumeRecord, table: MountTable) -> None:
    config = manager.config
    entry = table.top(record.global_path)
    mounted = entry is not None and entry.is_ossmount and (record.dev is None or entry.dev == record.dev)
    alive = (system.process_alive(record.pid, record.start_time)
             and record.global_path in system.process_cmdline(record.pid or 0))
    volume = Volume(record)
    statvfs = (await system.probe_statvfs(record.global_path, config.probe_timeout, volume.probe_limiter)
               if mounted else None)
    action = reconcile_action(alive, mounted, statvfs)
    if record.state in ("mounting", "unmounting"):
        action = ReconcileAction.KILL_AND_DROP if alive else ReconcileAction.DROP
    if action is ReconcileAction.ADOPT:
        volume.process = child.FuseProcess.adopt(record.pid, record.start_time)  # type: ignore[arg-type]
        if volume.process is None:
            action = ReconcileAction.RECOVER
    log.info("volume %s: %s (process %s %s, global mount %s)", record.volume_id, action.value, record.pid,
             "alive" if alive else "gone", statvfs or "absent")
    manager.metrics.reconcile_adopted.labels(action.value).inc()
    if action in (ReconcileAction.KILL_AND_DROP, ReconcileAction.DROP):
        if alive:
            doomed = child.FuseProcess.adopt(record.pid, record.start_time)  # type: ignore[arg-type]
            if doomed is not None:
                manager.nursery.start_soon(doomed.watch)
                doomed.expected_exit = True
                await doomed.stop(STOP_GRACE)
        if entry is not None and entry.is_ossmount and entry.dev == record.dev:
            await trio.to_thread.run_sync(lambda: system.unmount(record.global_path, detach=True))
        await manager.forget(volume)
        return
    dev = entry.dev if mounted and entry is not None else record.dev
    targets = reconcile_targets([t.path for t in record.targets], table, dev, record.global_path,
                                config.allowed_prefixes)
    for path in targets.drop:
        record.remove_target(path)
    for found in targets.adopt:
        log.info("volume %s: adopting the unrecorded bind at %s", record.volume_id, found.mount_point)
        record.targets.append(Target(found.mount_point, found.read_only))
    manager.volumes[record.volume_id] = volume
    if action is ReconcileAction.ADOPT:
        assert entry is not None and volume.process is not None
        record.dev, record.mount_id = entry.dev, entry.mount_id
        manager.nursery.start_soon(manager.watch_process, volume, volume.process, record.generation)
    else:
        if alive:  # mounted but not answering: the supervisor kills it before restarting
            volume.process = child.FuseProcess.adopt(record.pid, record.start_time)  # type: ignore[arg-type]
            if volume.process is not None:
                manager.nursery.start_soon(volume.process.watch)
        volume.post("stale", record.generation)
    manager.save(record)
    manager.nursery.start_soon(supervise, manager, volume)


async def _clean_orphans(manager: VolumeManager, table: MountTable) -> None:
    """fuse.ossmount mounts under --mnt-dir that no volume owns: dead ones are always removed, live ones counted
    (and removed with --cleanup-orphans once nothing is bound to them)."""
    owned_paths = {v.record.global_path for v in manager.volumes.values()}
    owned_devs = {d for v in manager.volumes.values() for d in v.devs()}
    count = 0
    for entry in table.under(manager.config.mount_dir):
        if not entry.is_ossmount or entry.mount_point in owned_paths or entry.dev in owned_devs:
            continue
        probe = await system.probe_statvfs(entry.mount_point, manager.config.probe_timeout, trio.CapacityLimiter(1))
        binds = [other for other in table.with_dev(entry.dev) if other.mount_point != entry.mount_point]
        if probe in DEAD_ERRNOS or (manager.config.cleanup_orphans and not binds):
            log.warning("removing the %s fuse.ossmount mount at %s, which no volume owns",
                        "dead" if probe in DEAD_ERRNOS else "orphaned", entry.mount_point)
            await trio.to_thread.run_sync(lambda p=entry.mount_point: system.unmount(p, detach=True))
        else:
            count += 1
            log.warning("fuse.ossmount mount at %s belongs to no volume (start with --cleanup-orphans to remove "
                        "it)", entry.mount_point)
    manager.orphans = count
