"""What the controller created: one JSON record per volume in a state directory, kept across restarts.

Why a state file and not a marker object in the bucket: the CSI calls that must answer from these records
(ValidateVolumeCapabilities, ControllerGetVolume, and DeleteVolume of an unknown id) may arrive without
secrets (CSI spec: their `secrets` are optional; the external-provisioner sends DeleteVolume only the
volume id and the provisioner secret), so the controller could not read a bucket to answer them; and
with `volumeAs: sharepath` there is no per-volume object to hang a marker on without putting a file into
every pod's view of the shared path.

Layout (`--state-dir`, default /var/lib/ossmount-csi):
    volumes/<sha256(name)>.json   {"format": 1, "name", "volume_id", "parameters", "capacity_bytes",
                                   "volume_context", "state": "creating"|"created", "created_at"}
Each record is written whole (temp file, fsync, rename, fsync of the directory), so a crash leaves the
old record or the new one, never a torn one. `creating` is written before the bucket is touched and
`created` after, so a CreateVolume retried after a crash finishes the job (the bucket steps are
idempotent). Records never hold secrets.

Concurrency: CreateVolume/DeleteVolume of one name are serialised by `lock(name)` (a per-name lock,
dropped when unused); different names proceed in parallel on the gRPC thread pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import grpc

from ossmount.csi.errors import CsiError
from ossmount.durable import sync_directory, write_atomically

FORMAT = 1
DEFAULT_STATE_DIR = "/var/lib/ossmount-csi"


@dataclass(frozen=True)
class VolumeRecord:
    """One volume the controller created."""

    name: str
    volume_id: str
    parameters: Mapping[str, str]  # canonical StorageClass parameters (validation.ProvisionParameters)
    capacity_bytes: int
    volume_context: Mapping[str, str]
    state: str = "creating"  # creating | created
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_json(self) -> dict:
        document = asdict(self)
        document["parameters"] = dict(self.parameters)
        document["volume_context"] = dict(self.volume_context)
        return {"format": FORMAT, **document}

    @classmethod
    def from_json(cls, document: dict) -> "VolumeRecord":
        return cls(name=document["name"], volume_id=document["volume_id"],
                   parameters=dict(document["parameters"]), capacity_bytes=int(document["capacity_bytes"]),
                   volume_context=dict(document["volume_context"]), state=document["state"],
                   created_at=document.get("created_at", ""))


class RecordStore:
    """The records under `state_dir/volumes/`."""

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.directory = Path(state_dir) / "volumes"
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()

    def open(self) -> "RecordStore":
        """Create the directory (0700) and check it is writable; CsiError-free: raises OSError."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = self.directory / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
        return self

    def _path(self, name: str) -> Path:
        return self.directory / (hashlib.sha256(name.encode()).hexdigest() + ".json")

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialise the operations on one volume name."""
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)

    def get(self, name: str) -> VolumeRecord | None:
        path = self._path(name)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise CsiError(grpc.StatusCode.INTERNAL, f"the controller's record {path} is unreadable ({error}); "
                           "move it away to forget the volume") from None
        if document.get("format") != FORMAT or document.get("name") != name:
            raise CsiError(grpc.StatusCode.INTERNAL, f"the controller's record {path} is not a format-{FORMAT} "
                           f"record of {name!r}; move it away to forget the volume")
        return VolumeRecord.from_json(document)

    def put(self, record: VolumeRecord) -> None:
        write_atomically(self._path(record.name), json.dumps(record.to_json(), indent=1, sort_keys=True).encode())

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return
        sync_directory(self.directory)
