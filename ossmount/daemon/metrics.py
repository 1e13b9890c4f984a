"""The daemon's Prometheus metrics (csi-daemon.md §5.12), served as text on `GET /metrics`.

Counters and histograms are updated where things happen; per-volume gauges are computed at scrape time from
the daemon's volumes (`VolumeGauges`), so an unstaged volume leaves no stale series behind. Per-mount OSS
metrics (requests, latency, bytes, caches, dirty files: `ossmount.ops.metrics`) belong to each FUSE process:
at every scrape the daemon asks each running volume's process for them over its control socket (next to its
status file, `ossmount.ops.control`; 2 s at most, in parallel) and re-exports every sample with a `volume_id`
label (`VolumeExports`). A volume that does not answer is left out, and `ossmount_daemon_volume_metrics_up`
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ossmount.ops.metrics import volume_families

from ossmount.daemon.decisions import STATES

PREFIX = "ossmount_daemon_"


@dataclass(frozen=True)
class VolumeSample:
    """What the gauges show for one volume at scrape time."""

    volume_id: str
    state: str
    targets: int
    process_up: bool
    mount_healthy: bool
    backend_healthy: bool
    credentials_expiry: float | None
    waiting_requests: int | None


class VolumeGauges:
    """A collector turning the daemon's current volumes into gauges."""

    def __init__(self, samples: Callable[[], Iterable[VolumeSample]], orphans: Callable[[], int]):
        self._samples = samples
        self._orphans = orphans

    def collect(self):
        samples = list(self._samples())
        volumes = GaugeMetricFamily(PREFIX + "volumes", "Volumes by state", labels=["state"])
        for state in STATES:
            volumes.add_metric([state], sum(1 for s in samples if s.state == state))
        yield volumes
        per_volume = {
            "targets": ("Targets bound to the volume", lambda s: s.targets),
            "fuse_process_up": ("1 if the volume's FUSE process runs", lambda s: int(s.process_up)),
            "mount_healthy": ("1 if statvfs of the global mount succeeds", lambda s: int(s.mount_healthy)),
            "backend_healthy": ("1 unless the FUSE process reports backend failures (bucket, credentials, "
                                "endpoint)", lambda s: int(s.backend_healthy)),
            "credentials_expiry_timestamp_seconds": ("Expiry of the volume's STS credentials (epoch seconds)",
                                                     lambda s: s.credentials_expiry),
            "fuse_waiting_requests": ("FUSE requests waiting in the kernel (fusectl)",
                                      lambda s: s.waiting_requests),
        }
        for name, (help_text, value) in per_volume.items():
            family = GaugeMetricFamily(PREFIX + name, help_text, labels=["volume_id"])
            for sample in samples:
                found = value(sample)
                if found is not None:
                    family.add_metric([sample.volume_id], found)
            yield family
        yield GaugeMetricFamily(PREFIX + "orphan_mounts", "fuse.ossmount mounts under --mnt-dir with no volume",
                                value=self._orphans())


class VolumeExports:
    """A collector re-exporting the metrics text each volume's FUSE process gave at this scrape."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.missing: list[str] = []

    def collect(self):
        yield from volume_families(self.texts)
        up = GaugeMetricFamily(PREFIX + "volume_metrics_up", "1 if the volume's FUSE process gave its metrics at "
                               "this scrape", labels=["volume_id"])
        for volume_id in sorted(self.texts):
            up.add_metric([volume_id], 1)
        for volume_id in sorted(self.missing):
            up.add_metric([volume_id], 0)
        yield up


class DaemonMetrics:
    """All metrics of one daemon, in a registry of its own."""

    def __init__(self, samples: Callable[[], Iterable[VolumeSample]], orphans: Callable[[], int]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.operations = Counter(PREFIX + "operations", "API operations by result", ["op", "code"], registry=r)
        self.operation_duration = Histogram(PREFIX + "operation_duration_seconds", "API operation duration",
                                            ["op"], registry=r,
                                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.lock_wait = Histogram(PREFIX + "lock_wait_seconds", "Time waited for a volume lock", registry=r,
                                   buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60))
        self.fuse_restarts = Counter(PREFIX + "fuse_restarts", "FUSE process restarts after a crash",
                                     ["volume_id", "reason"], registry=r)
        self.fuse_restart_failures = Counter(PREFIX + "fuse_restart_failures", "Failed restart attempts",
                                             ["volume_id"], registry=r)
        self.credential_rotations = Counter(PREFIX + "credential_rotations", "Credential rotations by result",
                                            ["volume_id", "result"], registry=r)
        self.forced_kills = Counter(PREFIX + "forced_kills", "FUSE processes killed after the drain timeout",
                                    ["volume_id"], registry=r)
        self.reconcile_adopted = Counter(PREFIX + "reconcile_adopted", "Volumes found at start, by outcome",
                                         ["outcome"], registry=r)
        self.registry.register(VolumeGauges(samples, orphans))
        self.volume_exports = VolumeExports()
        self.registry.register(self.volume_exports)

    def render(self, volume_texts: dict[str, str] | None = None, missing: Iterable[str] = ()) -> tuple[bytes, str]:
        """(text exposition, content type), with each volume's own metrics (`volume_texts`: volume id → text;
        `missing`: volumes that did not answer)."""
        self.volume_exports.texts = dict(volume_texts or {})
        self.volume_exports.missing = list(missing)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
