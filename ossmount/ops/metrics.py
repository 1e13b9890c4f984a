"""Prometheus metrics of one mount (`-o metrics_listen=HOST:PORT`, off by default), and their re-export by the
shared-mount daemon.

The counters live in the mount's own structures (the request ledger, the FUSE statistics, the caches, the
open files), updated on the trio thread without locks; `MountCollector` turns them into metric families at
scrape time, on the trio thread too: the HTTP server (prometheus_client's, in its own thread) asks the trio
thread for the families (`trio.from_thread`), and the control channel's `metrics` request is answered there.

Names (README "Operating ossmount" lists them with their labels): `ossmount_oss_requests_total{operation,
status}`, `ossmount_oss_request_errors_total{operation,code}`, `ossmount_oss_request_duration_seconds
{operation}`, `ossmount_oss_received_bytes_total`, `ossmount_oss_sent_bytes_total`, `ossmount_oss_retries_total`,
`ossmount_oss_requests_in_flight`, `ossmount_fuse_operations_total{operation}`,
`ossmount_fuse_operation_errors_total{operation,errno}`, `ossmount_fuse_operation_duration_seconds{operation}`,
`ossmount_cache_hits_total{cache}`, `ossmount_cache_misses_total{cache}` (cache: stat, listing, negative),
`ossmount_prefetch_hits_total`, `ossmount_prefetch_misses_total`, `ossmount_block_cache_bytes`,
`ossmount_block_cache_hits_total`, `ossmount_block_cache_evictions_total`, `ossmount_dirty_files`, `ossmount_dirty_bytes`,
`ossmount_uploads_in_flight`, `ossmount_upload_failures_total`, `ossmount_open_files`, `ossmount_backend_up`,
`ossmount_info{version,bucket,prefix,mountpoint}`.

The daemon (`volume_families`) asks each volume's FUSE process for this text over its control socket when
/metrics is scraped, and re-exports every sample with a `volume_id` label (the label its own per-volume
series carry).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ossmount import __version__
from ossmount.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "ossmount_"


def _counter(name: str, help_text: str, labels: list[str], counts: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, help_text, labels=labels)
    for values, count in sorted(counts.items()):
        family.add_metric(list(values), count)
    return family


def _histogram(name: str, help_text: str, label: str, histograms: dict) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=[label])
    for key, histogram in sorted(histograms.items()):
        buckets = [(repr(bound) if bound != float("inf") else "+Inf", count)
                   for bound, count in histogram.cumulative()]
        family.add_metric([key], buckets, histogram.total)
    return family


class MountCollector:
    """The metric families of one mount (`ossmount.ops.stats.MountTelemetry`), built on the trio thread."""

    def __init__(self, telemetry: Any):
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        t = self.telemetry
        ledger = t.store.ledger
        stats = t.store.statistics()
        info = GaugeMetricFamily(PREFIX + "info", "The mount: ossmount version, bucket, prefix, mountpoint",
                                 labels=["version", "bucket", "prefix", "mountpoint"])
        info.add_metric([__version__, t.bucket, t.prefix, t.mountpoint], 1)
        yield info
        yield _counter("oss_requests", "OSS request attempts by operation and HTTP status (status none: no HTTP "
                       "answer)", ["operation", "status"],
                       {(op, str(status) if status > 0 else "none"): n for (op, status), n in ledger.by_status.items()})
        yield _counter("oss_request_errors", "Failed OSS request attempts by operation and OSS error code",
                       ["operation", "code"], ledger.errors)
        yield _histogram(PREFIX + "oss_request_duration_seconds", "OSS request attempt latency", "operation",
                         ledger.latency)
        yield CounterMetricFamily(PREFIX + "oss_received_bytes", "OSS response body bytes received",
                                  value=ledger.bytes_in)
        yield CounterMetricFamily(PREFIX + "oss_sent_bytes", "OSS request body bytes sent", value=ledger.bytes_out)
        yield CounterMetricFamily(PREFIX + "oss_retries", "OSS requests retried after a transient failure",
                                  value=stats.retries)
        yield GaugeMetricFamily(PREFIX + "oss_requests_in_flight", "OSS requests in flight", value=ledger.in_flight)
        fuse = t.calls.statistics
        yield _counter("fuse_operations", "FUSE requests served, by operation", ["operation"],
                       {(op,): count for op, count in fuse.counts().items()})
        yield _counter("fuse_operation_errors", "FUSE requests answered with an error, by operation and errno",
                       ["operation", "errno"], fuse.errors)
        yield _histogram(PREFIX + "fuse_operation_duration_seconds", "FUSE request latency", "operation",
                         fuse.latency)
        cache = t.cache_counts()
        hits = CounterMetricFamily(PREFIX + "cache_hits", "Metadata cache hits (stat, listing, negative)",
                                   labels=["cache"])
        misses = CounterMetricFamily(PREFIX + "cache_misses", "Metadata cache misses (stat, listing)",
                                     labels=["cache"])
        for name in ("stat", "listing"):
            hits.add_metric([name], cache[name]["hits"])
            misses.add_metric([name], cache[name]["misses"])
        hits.add_metric(["negative"], cache["negative_hits"])
        yield hits
        yield misses
        yield CounterMetricFamily(PREFIX + "prefetch_hits", "Reads answered from read-ahead buffers already filled",
                                  value=cache["data"]["hits"])
        yield CounterMetricFamily(PREFIX + "prefetch_misses", "Reads that waited for a GET",
                                  value=cache["data"]["misses"])
        dirty = t.dirty_files()
        yield GaugeMetricFamily(PREFIX + "dirty_files", "Files with bytes not yet on OSS", value=len(dirty))
        yield GaugeMetricFamily(PREFIX + "dirty_bytes", "Bytes written but not yet on OSS",
                                value=sum(f.dirty_bytes for f in dirty))
        yield GaugeMetricFamily(PREFIX + "uploads_in_flight", "Uploads in progress",
                                value=sum(1 for f in dirty if f.uploading_since is not None))
        content = t.contents.statistics() if t.contents is not None else None
        yield CounterMetricFamily(PREFIX + "upload_failures", "Uploads that failed (the data is kept for a retry)",
                                  value=content.upload_failures if content else 0)
        yield GaugeMetricFamily(PREFIX + "block_cache_bytes", "Bytes of object data in the use_cache block cache",
                                value=content.block_cache_bytes if content else 0)
        yield CounterMetricFamily(PREFIX + "block_cache_hits", "use_cache blocks read from disk instead of OSS",
                                  value=content.block_cache_hits if content else 0)
        yield CounterMetricFamily(PREFIX + "block_cache_evictions", "use_cache blocks deleted to keep "
                                  "max_cache_size and ensure_diskfree", value=content.block_cache_evictions if content else 0)
        yield GaugeMetricFamily(PREFIX + "open_files", "Open file and directory handles",
                                value=t.fs.open_handle_count() if t.fs is not None else 0)
        from ossmount.status import backend_verdict

        verdict = backend_verdict(stats.last_success_at, stats.last_error, stats.last_error_at)
        yield GaugeMetricFamily(PREFIX + "backend_up", "0 when the last OSS request failed for a backend reason "
                                "(bucket, credentials, endpoint), else 1", value=0 if verdict.ok is False else 1)


def registry_for(telemetry: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MountCollector(telemetry))
    return registry


def render(registry: CollectorRegistry) -> str:
    """The text exposition (call on the trio thread)."""
    return generate_latest(registry).decode()


class _FromTrio:
    """A registry for prometheus_client's HTTP thread that collects on the trio thread."""

    def __init__(self, registry: CollectorRegistry, token: trio.lowlevel.TrioToken):
        self._registry = registry
        self._token = token

    def collect(self) -> Iterable[Metric]:
        try:
            return trio.from_thread.run_sync(lambda: list(self._registry.collect()), trio_token=self._token)
        except trio.RunFinishedError:  # the mount is ending
            return []

    def restricted_registry(self, names: Iterable[str]) -> Any:
        wanted = set(names)
        parent = self

        class Restricted:
            def collect(self) -> Iterable[Metric]:
                return [m for m in parent.collect() if any(s.name in wanted for s in m.samples) or m.name in wanted]

        return Restricted()


class MetricsServer:
    """prometheus_client's HTTP server on `host:port` serving this mount's metrics at /metrics."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int):
        self._registry = registry
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: Any = None

    def start(self) -> None:
        """Listen now (on the trio thread); ConfigError when the address cannot be had."""
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(
                self.port, addr=self.host,
                registry=_FromTrio(self._registry, trio.lowlevel.current_trio_token()))  # type: ignore[arg-type]
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {self.host}:{self.port} (metrics_listen=): "
                              f"{exc.strerror or exc}") from None
        log.info("serving Prometheus metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


# -- the daemon's re-export ----------------------------------------------------------------------------------


def volume_families(texts: dict[str, str], label: str = "volume_id") -> list[Metric]:
    """The metric families of several mounts' expositions (volume id → text), one family per name with every
    sample labelled `label`=volume id. A text that does not parse is skipped (and logged)."""
    merged: dict[str, Metric] = {}
    for volume_id, text in sorted(texts.items()):
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            log.warning("metrics of volume %s do not parse: %s", volume_id, exc)
            continue
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                target.samples.append(Sample(sample.name, {**sample.labels, label: volume_id}, sample.value,
                                             sample.timestamp, sample.exemplar))
    return list(merged.values())
