"""Fixtures for content tests: an ObjectStore on a fresh bucket of the session's local server."""

from __future__ import annotations

import pytest

from ossmount.credentials import Credentials
from ossmount.store.client import ObjectStore
from ossmount.store.retry import RetryPolicy


@pytest.fixture
def store(local_server, fresh_bucket_name) -> ObjectStore:
    """An ObjectStore for the test's bucket with quick retries (3 attempts, 10 ms base delay)."""
    credentials = Credentials(local_server.access_key_id, local_server.access_key_secret, source="test")
    return ObjectStore.create(
        endpoint=local_server.endpoint,
        bucket=fresh_bucket_name,
        credentials=credentials,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    )


@pytest.fixture
def admin(local_server):
    """The server's admin client with counters reset and no faults, faults cleared again afterwards."""
    local_server.admin.clear_faults()
    local_server.admin.reset_counters()
    try:
        yield local_server.admin
    finally:
        local_server.admin.clear_faults()
