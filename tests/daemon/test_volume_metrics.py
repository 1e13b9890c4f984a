"""The daemon's /metrics re-exports each volume's own metrics (issue 13, item 3): every sample of the FUSE
process, asked over its control socket at scrape time, with a `volume_id` label; `ossmount stats` works on a
pod's target path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ossmount import USER_AGENT

from .conftest import credentials_for, spec_for


def test_daemon_metrics_carry_each_volumes_own_series(daemon, kubelet, local_server, fresh_bucket_name):
    staging = kubelet.staging_path("pv-metrics")
    daemon.client.stage("pv-metrics", spec_for(local_server, fresh_bucket_name), credentials_for(local_server),
                        global_path=staging)
    target = kubelet.target_path("pv-metrics")
    daemon.client.publish("pv-metrics", target, global_path=staging)

    def counts() -> tuple[Counter, Counter, dict]:
        families = {f.name: f for f in text_string_to_metric_families(daemon.client.metrics())}
        mount = Counter()
        for sample in families["ossmount_oss_requests"].samples:
            assert sample.labels["volume_id"] == "pv-metrics"
            mount[sample.labels["operation"]] += int(sample.value)
        served = Counter(r["op"] for r in local_server.admin.requests()
                         if r["bucket"] == fresh_bucket_name and USER_AGENT in (r["user_agent"] or ""))
        return mount, served, families

    before, served_before, _ = counts()  # the daemon's own check of the bucket is no request of the mount
    Path(target, "written.txt").write_text("through the pod's target")
    assert Path(target, "written.txt").read_text() == "through the pod's target"
    after, served_after, families = counts()
    assert after - before == served_after - served_before and (after - before)["PutObject"] >= 1
    [up] = families["ossmount_daemon_volume_metrics_up"].samples
    assert up.labels == {"volume_id": "pv-metrics"} and up.value == 1
    assert any(s.labels.get("volume_id") == "pv-metrics" for s in families["ossmount_fuse_operations"].samples)
    stats = subprocess.run([sys.executable, "-m", "ossmount", "stats", target, "--json"], capture_output=True,
                           text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr
    document = json.loads(stats.stdout)
    assert document["mountpoint"] == staging and document["log"]["target"] == "file"
    daemon.client.unpublish("pv-metrics", target)
    daemon.client.unstage("pv-metrics")
    assert "ossmount_oss_requests_total" not in daemon.client.metrics()
