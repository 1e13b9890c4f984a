"""Every decision the daemon takes, as pure functions of what it observed (sans-IO; csi-daemon.md §5.5–§5.11).

The IO layer observes (mountinfo, /proc/<pid>/stat, statvfs in a thread) and acts; what to do in each
situation is decided here, so each rule has a table-driven unit test:

  * `transition`: the volume state machine (`STATE_TRANSITIONS`).
  * `classify_target` / `publish_action` / `unpublish_action`: what a target path holds and what publish and
    unpublish do about it. Decided from mountinfo alone; `dead` comes from a statvfs probe of that path.
  * `reconcile_action` / `reconcile_targets`: what a restarted daemon does with a state file.
  * `probe_verdict`: what one liveness probe of a global mount means.
  * `RestartPolicy`: the restart backoff (1, 2, 4, 8, 16 s, capped at 30 s, 5 tries per 10 minutes by default).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Sequence

from ossmount.daemon.mountinfo import MountEntry, MountTable

# --------------------------------------------------------------------------------------------------
# Volume states

STATES = ("mounting", "ready", "degraded", "recovering", "failed", "unmounting")
_LIVE = ("ready", "degraded", "recovering", "failed")

# (state, event) → next state. Anything else is a bug in the caller.
STATE_TRANSITIONS: dict[tuple[str, str], str] = {
    ("mounting", "mounted"): "ready",
    ("ready", "backend_failed"): "degraded",
    ("degraded", "backend_failed"): "degraded",
    ("degraded", "backend_ok"): "ready",
    ("ready", "backend_ok"): "ready",
    ("ready", "crashed"): "recovering",
    ("degraded", "crashed"): "recovering",
    ("recovering", "crashed"): "recovering",
    ("failed", "crashed"): "failed",
    ("recovering", "restarted"): "ready",
    ("failed", "restarted"): "ready",
    ("recovering", "restart_failed"): "recovering",
    ("failed", "restart_failed"): "failed",
    ("recovering", "gave_up"): "failed",
    **{(state, "unstaging"): "unmounting" for state in (*_LIVE, "mounting")},
    ("unmounting", "unstage_refused"): "ready",
}


class InvalidTransition(ValueError):
    pass


def transition(state: str, event: str) -> str:
    """The state after `event`; InvalidTransition if the event cannot happen in `state`."""
    try:
        return STATE_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"event {event!r} in state {state!r}") from None


# --------------------------------------------------------------------------------------------------
# Targets


class TargetState(enum.Enum):
    FREE = "free"  # nothing mounted on the path
    OURS = "ours"  # a bind of the volume's current global mount
    STALE = "stale"  # a bind of an older generation of the volume, or a dead fuse.ossmount mount
    FOREIGN = "foreign"  # anything else: never touched


def classify_target(top: MountEntry | None, dev: str | None, old_devs: Iterable[str] = (),
                    dead: bool = False) -> TargetState:
    """What the topmost mount on a target path is, relative to a volume mounted as `dev`."""
    if top is None:
        return TargetState.FREE
    if dev is not None and top.dev == dev:
        return TargetState.OURS
    if top.is_ossmount and (top.dev in set(old_devs) or dead):
        return TargetState.STALE
    return TargetState.FOREIGN


class PublishAction(enum.Enum):
    BIND = "bind"  # bind the global mount (then remount read-only if asked): 201
    NOTHING = "nothing"  # already published as asked: 200
    REBIND = "rebind"  # lazily unmount the stale bind, bind again: 200 "repaired"
    CONFLICT = "conflict"  # published with the other read_only: ALREADY_EXISTS
    REFUSE = "refuse"  # something else is mounted there: FAILED_PRECONDITION


def publish_action(state: TargetState, requested_read_only: bool, *, recorded_read_only: bool | None,
                   mounted_read_only: bool | None) -> PublishAction:
    """What publish does on a target (csi-daemon.md §5.5 step 3; CSI: same target, other readonly → ALREADY_EXISTS).

    `recorded_read_only` is the state's view of the target (None: not recorded), `mounted_read_only` what
    mountinfo shows for an OURS target."""
    if state is TargetState.FOREIGN:
        return PublishAction.REFUSE
    known = recorded_read_only if recorded_read_only is not None else (
        mounted_read_only if state is TargetState.OURS else None)
    if known is not None and known != requested_read_only and state is not TargetState.FREE:
        return PublishAction.CONFLICT
    if state is TargetState.FREE:
        return PublishAction.BIND
    if state is TargetState.STALE:
        return PublishAction.REBIND
    return PublishAction.NOTHING


class UnpublishAction(enum.Enum):
    NOTHING = "nothing"  # not mounted: just remove the directory
    UNMOUNT = "unmount"  # ours, stale, or any fuse.ossmount: unmount (lazily if busy)
    REFUSE = "refuse"  # a foreign mount: FAILED_PRECONDITION, never unmount what we did not mount


def unpublish_action(top: MountEntry | None, devs: Iterable[str] = ()) -> UnpublishAction:
    if top is None:
        return UnpublishAction.NOTHING
    if top.is_ossmount or top.dev in set(devs):
        return UnpublishAction.UNMOUNT
    return UnpublishAction.REFUSE


# --------------------------------------------------------------------------------------------------
# Reconciliation after a daemon restart


class ReconcileAction(enum.Enum):
    ADOPT = "adopt"  # process alive, mounted, answering: watch it through a pidfd
    RECOVER = "recover"  # mounted but the process is gone or not answering: restart and re-bind
    KILL_AND_DROP = "kill_and_drop"  # process alive but not mounted: kill it, forget the volume
    DROP = "drop"  # neither: e.g. a state file from before a reboot


def reconcile_action(process_alive: bool, mounted: bool, statvfs: str | None) -> ReconcileAction:
    """`mounted`: mountinfo shows fuse.ossmount at the global path with the recorded dev; `statvfs` is the probe
    result of the global path ("ok", an errno name, "timeout"; None when not probed)."""
    if mounted and process_alive and statvfs == "ok":
        return ReconcileAction.ADOPT
    if mounted:
        return ReconcileAction.RECOVER
    if process_alive:
        return ReconcileAction.KILL_AND_DROP
    return ReconcileAction.DROP


@dataclass(frozen=True)
class TargetReconciliation:
    keep: tuple[str, ...]  # recorded and still bound to the volume
    adopt: tuple[MountEntry, ...]  # bound to the volume but not recorded (daemon died between bind and record)
    drop: tuple[str, ...]  # recorded but no longer bound (unmounted while the daemon was down)


def reconcile_targets(recorded: Sequence[str], table: MountTable, dev: str | None, global_path: str,
                      allowed_prefixes: Sequence[str] = ()) -> TargetReconciliation:
    """Compare the recorded targets with the binds of `dev` that mountinfo shows."""
    if dev is None:
        return TargetReconciliation((), (), tuple(recorded))
    bound = {entry.mount_point: entry for entry in table.with_dev(dev)
             if entry.mount_point != global_path and entry.root == "/"}
    keep = tuple(path for path in recorded if path in bound)
    drop = tuple(path for path in recorded if path not in bound)

    def allowed(path: str) -> bool:
        return not allowed_prefixes or any(path == p or path.startswith(p.rstrip("/") + "/")
                                           for p in allowed_prefixes)

    adopt = tuple(entry for path, entry in bound.items() if path not in recorded and allowed(path))
    return TargetReconciliation(keep, adopt, drop)


# --------------------------------------------------------------------------------------------------
# Liveness probes and restarts


class ProbeVerdict(enum.Enum):
    HEALTHY = "healthy"
    CRASHED = "crashed"  # ENOTCONN/ECONNABORTED: the FUSE server is gone
    SLOW = "slow"  # a probe timed out, below the wedge threshold
    WEDGED = "wedged"  # `threshold` probes in a row timed out: the server hangs
    ERROR = "error"  # some other error: logged, no action


DEAD_ERRNOS = frozenset({"ENOTCONN", "ECONNABORTED", "ENODEV"})


def probe_verdict(result: str, timeouts_in_a_row: int, threshold: int) -> tuple[ProbeVerdict, int]:
    """(verdict, timeouts in a row after this probe) for a statvfs result "ok", "timeout" or an errno name."""
    if result == "ok":
        return ProbeVerdict.HEALTHY, 0
    if result in DEAD_ERRNOS:
        return ProbeVerdict.CRASHED, 0
    if result == "timeout":
        count = timeouts_in_a_row + 1
        return (ProbeVerdict.WEDGED if count >= threshold else ProbeVerdict.SLOW), count
    return ProbeVerdict.ERROR, timeouts_in_a_row


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff before restart attempt n (0-based) within `window` seconds: initial × factor^n, capped at
    `maximum`; after `max_restarts` attempts in the window, give up (state `failed`)."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    max_restarts: int = 5
    window: float = 600.0

    def delay(self, attempt_times: Sequence[float], now: float) -> float | None:
        """Seconds to wait before the next attempt, given the times of earlier attempts; None: give up."""
        recent = sum(1 for at in attempt_times if at > now - self.window)
        if recent >= self.max_restarts:
            return None
        return min(self.maximum, self.initial * self.factor ** recent)
