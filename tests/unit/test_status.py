"""ossmount.status: the backend verdict a mount reports to the daemon, and the status document."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ossmount.status import StatusReporter, backend_verdict, mask_access_key_id

VERDICTS = [
    # last success, last failed attempt (code, at), expected ok, expected error
    (None, None, None, None, None),  # nothing known before the first request
    (5.0, None, None, True, None),
    (None, "NoSuchKey", 5.0, True, None),  # a missing key is a healthy answer
    (1.0, "NoSuchBucket", 5.0, False, "NoSuchBucket"),
    (5.0, "NoSuchBucket", 1.0, True, None),  # healed since
    (1.0, "SecurityTokenExpired", 5.0, False, "SecurityTokenExpired"),
    (None, "ConnectionError", 5.0, False, "ConnectionError"),
    (1.0, "AccessDenied", 5.0, False, "AccessDenied"),
]


@pytest.mark.parametrize("success, error, error_at, ok, code", VERDICTS)
def test_backend_verdict_follows_the_latest_request(success, error, error_at, ok, code):
    verdict = backend_verdict(success, error, error_at)
    assert (verdict.ok, verdict.last_error) == (ok, code)


@pytest.mark.parametrize("key, masked", [
    ("STS.NUh5xAbCdEfGh1234", "STS.****1234"),
    ("LTAI5tAbCdEfGhIj", "LTAI****GhIj"),
    ("short", "****"),
])
def test_mask_access_key_id(key, masked):
    assert mask_access_key_id(key) == masked


def test_reporter_writes_the_document_atomically(tmp_path):
    stats = SimpleNamespace(requests={"ListObjectsV2": 1}, errors={}, bytes_in=0, bytes_out=0, retries=0,
                            last_success_at=9.0, last_error=None, last_error_at=None)
    path = tmp_path / "status.json"
    reporter = StatusReporter(str(path), mountpoint="/mnt", bucket="b", prefix="p/", statistics=lambda: stats,
                              credentials=lambda: {"access_key_id": "AK****"}, clock=lambda: 10.0)
    reporter.write()
    first = json.loads(path.read_text())
    assert first["backend"]["ok"] is True and first["state"] == "mounted" and first["bucket"] == "b"
    stats.requests = {"ListObjectsV2": 1, "GetObject": 2}
    stats.errors = {"NoSuchBucket": 2}
    stats.last_error, stats.last_error_at = "NoSuchBucket", 10.0
    reporter.write("unmounted")
    second = json.loads(path.read_text())
    assert second["backend"] == {"ok": False, "last_error": {"code": "NoSuchBucket", "at": 10.0}, "last_ok_at": 9.0}
    assert second["state"] == "unmounted"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_credentials_status_describes_every_provider_without_secrets(tmp_path):
    from ossmount.credentials import Credentials, FileCredentials
    from ossmount.status import credentials_status

    assert credentials_status(None)["source"] == "anonymous"  # public_bucket=1
    fixed = credentials_status(Credentials("LTAI5tAbCdEfGh", "secret-value", None, "environment"))
    assert fixed == {"access_key_id": "LTAI****EfGh", "source": "environment", "sts": False, "expiration": None,
                     "reloads": 0, "reload_error": None}
    keys = tmp_path / "keys"
    keys.mkdir()
    for name, value in (("AccessKeyId", "STS.abcdefgh"), ("AccessKeySecret", "secret-value"),
                        ("SecurityToken", "token-value"), ("Expiration", "2030-01-01T00:00:00Z")):
        (keys / name).write_text(value)
    provider = FileCredentials(keys, "bkt")
    assert credentials_status(provider)["access_key_id"] is None  # nothing read yet, and the status does not read
    provider.current()
    document = credentials_status(provider)
    assert document == {"access_key_id": "STS.****efgh", "source": str(keys), "sts": True,
                        "expiration": "2030-01-01T00:00:00Z", "reloads": 0, "reload_error": None}
    assert "secret-value" not in json.dumps(document) and "token-value" not in json.dumps(document)

