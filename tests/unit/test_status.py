"""ossmount.status: the backend verdict a mount reports to the daemon, and the status document."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ossmount.status import BackendHealth, StatusReporter, backend_verdict, mask_access_key_id

UNKNOWN = BackendHealth()
HEALTHY = BackendHealth(True, None, None, 1.0)
BROKEN = BackendHealth(False, "NoSuchBucket", 1.0, None)

VERDICTS = [
    # previous, requests, errors by code, expected ok, expected last error
    (UNKNOWN, 0, {}, None, None),  # no traffic: nothing known
    (UNKNOWN, 3, {}, True, None),
    (UNKNOWN, 2, {"NoSuchKey": 2}, True, None),  # a missing key is a healthy answer
    (UNKNOWN, 2, {"NoSuchBucket": 2}, False, "NoSuchBucket"),
    (HEALTHY, 5, {"SignatureDoesNotMatch": 5}, False, "SignatureDoesNotMatch"),
    (HEALTHY, 4, {"ConnectionError": 3, "InvalidAccessKeyId": 1}, False, "ConnectionError"),
    (HEALTHY, 5, {"AccessDenied": 1}, True, None),  # other answers succeeded: a per-key denial
    (BROKEN, 0, {}, False, "NoSuchBucket"),  # idle: keep the verdict
    (BROKEN, 1, {}, True, "NoSuchBucket"),  # healed; the last error stays as history
]


@pytest.mark.parametrize("previous, requests, errors, ok, last_error", VERDICTS)
def test_backend_verdict(previous, requests, errors, ok, last_error):
    verdict = backend_verdict(previous, requests, errors, now=2.0)
    assert (verdict.ok, verdict.last_error) == (ok, last_error)


@pytest.mark.parametrize("key, masked", [
    ("STS.NUh5xAbCdEfGh1234", "STS.****1234"),
    ("LTAI5tAbCdEfGhIj", "LTAI****GhIj"),
    ("short", "****"),
])
def test_mask_access_key_id(key, masked):
    assert mask_access_key_id(key) == masked


def test_reporter_folds_intervals_and_writes_atomically(tmp_path):
    stats = SimpleNamespace(requests={"ListObjectsV2": 1}, errors={}, bytes_in=0, bytes_out=0, retries=0)
    path = tmp_path / "status.json"
    reporter = StatusReporter(str(path), mountpoint="/mnt", bucket="b", prefix="p/", statistics=lambda: stats,
                              credentials=lambda: {"access_key_id": "AK****"}, clock=lambda: 10.0)
    reporter.write()
    first = json.loads(path.read_text())
    assert first["backend"]["ok"] is True and first["state"] == "mounted" and first["bucket"] == "b"
    stats.requests = {"ListObjectsV2": 1, "GetObject": 2}
    stats.errors = {"NoSuchBucket": 2}
    reporter.write("unmounted")
    second = json.loads(path.read_text())
    assert second["backend"] == {"ok": False, "last_error": {"code": "NoSuchBucket", "at": 10.0}, "last_ok_at": 10.0}
    assert second["state"] == "unmounted"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
