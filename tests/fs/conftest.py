"""Fixtures for content tests: an ObjectStore on a fresh bucket of the session's local server."""

from __future__ import annotations

import pytest

from ossmount.credentials import Credentials
from ossmount.store.client import ObjectStore
from ossmount.store.retry import RetryPolicy


def store_for(local_server, bucket: str, *, timeout: float = 30.0) -> ObjectStore:
    """An ObjectStore for `bucket` of the local server with quick retries (3 attempts, 10 ms base delay) and a read
    timeout of `timeout` seconds (the store's readwrite_timeout)."""
    credentials = Credentials(local_server.access_key_id, local_server.access_key_secret, source="test")
    return ObjectStore.create(
        endpoint=local_server.endpoint,
        bucket=bucket,
        credentials=credentials,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        timeout=timeout,
    )


@pytest.fixture
def store(local_server, fresh_bucket_name) -> ObjectStore:
    """`store_for` the test's bucket."""
    return store_for(local_server, fresh_bucket_name)


@pytest.fixture
def admin(local_server):
    """The server's admin client with counters reset and no faults, faults cleared again afterwards."""
    local_server.admin.clear_faults()
    local_server.admin.reset_counters()
    try:
        yield local_server.admin
    finally:
        local_server.admin.clear_faults()
