"""Fixtures for the store tests: ObjectStore on a fresh bucket, and a server with two access keys."""

from __future__ import annotations

import pytest

from ossmount.credentials import Credentials
from ossmount.store import ObjectStore, RetryPolicy
from ossmount.testing import LocalServer

OTHER_KEY = ("ossmount-other-id", "ossmount-other-secret")


def make_store(server: LocalServer, bucket: str, *, key: tuple[str, str] | None = None, **kwargs) -> ObjectStore:
    access_key_id, secret = key or (server.access_key_id, server.access_key_secret)
    kwargs.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05))
    return ObjectStore.create(endpoint=server.endpoint, bucket=bucket,
                              credentials=Credentials(access_key_id, secret), **kwargs)


@pytest.fixture
def store(local_server: LocalServer, fresh_bucket_name: str) -> ObjectStore:
    """An ObjectStore (V1 signatures, fast retries) on a fresh bucket of the session server."""
    return make_store(local_server, fresh_bucket_name)


@pytest.fixture(scope="module")
def two_key_server(tmp_path_factory: pytest.TempPathFactory):
    """A server knowing two access keys; bucket 'other-owned' belongs to the second one."""
    server = LocalServer(tmp_path_factory.mktemp("two-key-oss"),
                         credentials=(("ossmount-test-id", "ossmount-test-secret"), OTHER_KEY),
                         buckets=("test-bucket",))
    server.start()
    try:
        import oss2

        oss2.Bucket(oss2.Auth(*OTHER_KEY), server.endpoint, "other-owned").create_bucket()
        yield server
    finally:
        server.stop()
