"""Volume records and their files under `--run-dir` (csi-daemon.md §5.3, §5.4, §5.7).

Layout (`vh` = sha256(volume_id)):

    <run-dir>/state/<vh>.json             the volume record below, written atomically (write, fsync, rename,
                                          fsync of the directory); never holds a secret
    <run-dir>/volumes/<vh>/creds/         0700: `keys -> keys.<n>/` holding AccessKeyId, AccessKeySecret
                                          [, SecurityToken, Expiration] (0600), swapped atomically
    <run-dir>/volumes/<vh>/ossmount.log   the FUSE process's log (rotated by it: 10 MiB × 3 files)
    <run-dir>/volumes/<vh>/ossmount.stderr   its stderr (anything before logging is set up)
    <run-dir>/volumes/<vh>/status.json    written by the FUSE process (`ossmount.status`)

The record is also what `GET /v1/volumes/{id}` returns (`VolumeRecord.to_json`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from ossmount.daemon.api import VolumeSpec, volume_hash
from ossmount.durable import write_atomically

log = logging.getLogger(__name__)

RECORD_VERSION = 1
MAX_PREVIOUS_DEVS = 16


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Target:
    path: str
    read_only: bool
    since: str = field(default_factory=now_iso)
    pod: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"path": self.path, "read_only": self.read_only, "since": self.since}
        if self.pod:
            document["pod"] = dict(self.pod)
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "Target":
        return cls(document["path"], bool(document["read_only"]), document.get("since") or now_iso(),
                   document.get("pod"))


@dataclass
class VolumeRecord:
    """Everything the daemon knows about one volume, persisted in `state/<vh>.json`."""

    volume_id: str
    spec: VolumeSpec
    global_path: str
    global_path_created: bool = False
    state: str = "mounting"
    dev: str | None = None
    mount_id: int | None = None
    pid: int | None = None
    start_time: int | None = None
    generation: int = 0
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)  # wall clock of restart attempts (backoff window)
    previous_devs: list[str] = field(default_factory=list)
    last_exit: dict[str, Any] | None = None
    targets: list[Target] = field(default_factory=list)
    credentials: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    last_error: dict[str, Any] | None = None

    @property
    def vh(self) -> str:
        return volume_hash(self.volume_id)

    def target(self, path: str) -> Target | None:
        return next((t for t in self.targets if t.path == path), None)

    def remove_target(self, path: str) -> bool:
        before = len(self.targets)
        self.targets = [t for t in self.targets if t.path != path]
        return len(self.targets) != before

    def remember_dev(self) -> None:
        """Keep the current dev among the previous ones (binds of it are stale once a new generation runs)."""
        if self.dev and self.dev not in self.previous_devs:
            self.previous_devs = (self.previous_devs + [self.dev])[-MAX_PREVIOUS_DEVS:]

    def set_error(self, code: str, message: str) -> None:
        self.last_error = {"code": code, "message": message, "at": now_iso()}

    def to_json(self) -> dict[str, Any]:
        spec = self.spec.to_json()
        return {
            "version": RECORD_VERSION,
            "volume_id": self.volume_id,
            "state": self.state,
            "spec": spec,
            "spec_hash": self.spec.spec_hash,
            "global_path": self.global_path,
            "global_path_created": self.global_path_created,
            "mount": {"dev": self.dev, "mount_id": self.mount_id, "fstype": "fuse.ossmount"} if self.dev else None,
            "process": {"pid": self.pid, "start_time": self.start_time, "generation": self.generation,
                        "restarts": self.restarts, "restart_times": list(self.restart_times),
                        "previous_devs": list(self.previous_devs), "last_exit": self.last_exit},
            "targets": [target.to_json() for target in self.targets],
            "credentials": dict(self.credentials),
            "health": dict(self.health),
            "created_at": self.created_at,
            "last_error": self.last_error,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "VolumeRecord":
        process = document.get("process") or {}
        mount = document.get("mount") or {}
        return cls(
            volume_id=document["volume_id"], spec=VolumeSpec.from_canonical(document["spec"]), global_path=document["global_path"],
            global_path_created=bool(document.get("global_path_created")), state=document.get("state", "mounting"),
            dev=mount.get("dev"), mount_id=mount.get("mount_id"), pid=process.get("pid"),
            start_time=process.get("start_time"), generation=int(process.get("generation", 0)),
            restarts=int(process.get("restarts", 0)), restart_times=list(process.get("restart_times", [])),
            previous_devs=list(process.get("previous_devs", [])), last_exit=process.get("last_exit"),
            targets=[Target.from_json(t) for t in document.get("targets", [])],
            credentials=dict(document.get("credentials") or {}), health=dict(document.get("health") or {}),
            created_at=document.get("created_at") or now_iso(), last_error=document.get("last_error"),
        )


class RunDir:
    """The daemon's files under `--run-dir` (see the module docstring)."""

    def __init__(self, root: str):
        self.root = root
        self.state_dir = os.path.join(root, "state")
        self.volumes_dir = os.path.join(root, "volumes")

    def create(self) -> None:
        for path in (self.root, self.state_dir, self.volumes_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)

    def state_path(self, vh: str) -> str:
        return os.path.join(self.state_dir, f"{vh}.json")

    def volume_dir(self, vh: str) -> str:
        return os.path.join(self.volumes_dir, vh)

    def creds_dir(self, vh: str) -> str:
        return os.path.join(self.volume_dir(vh), "creds")

    def log_path(self, vh: str) -> str:
        return os.path.join(self.volume_dir(vh), "ossmount.log")

    def stderr_path(self, vh: str) -> str:
        return os.path.join(self.volume_dir(vh), "ossmount.stderr")

    def status_path(self, vh: str) -> str:
        return os.path.join(self.volume_dir(vh), "status.json")

    def save(self, record: VolumeRecord) -> None:
        """Write the record atomically and durably (fsync of the file and of the directory)."""
        write_atomically(self.state_path(record.vh), json.dumps(record.to_json(), sort_keys=True, indent=1).encode())

    def delete(self, vh: str) -> None:
        for path in (self.state_path(vh), self.state_path(vh) + ".tmp"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def load_all(self) -> Iterator[VolumeRecord]:
        """Every readable record; an unreadable one is logged and renamed `*.corrupt` (never silently used)."""
        for name in sorted(os.listdir(self.state_dir)):
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.state_dir, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    record = VolumeRecord.from_json(json.load(handle))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("state file %s is unreadable (%s); moved aside as %s.corrupt", path, exc, path)
                os.replace(path, path + ".corrupt")
                continue
            if record.vh != name[:-len(".json")]:
                log.error("state file %s holds volume %r, whose hash differs; ignored", path, record.volume_id)
                continue
            yield record
