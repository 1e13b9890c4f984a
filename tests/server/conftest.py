"""Every server test that used the session's server ends with the store's fsck: refcounts, blob files, latest
versions, sizes and CRCs must still add up (store.Store.check_consistency)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def consistent_store(request):
    yield
    if "local_server" in request.fixturenames:
        server = request.getfixturevalue("local_server")
        if server.running:
            assert server.admin.fsck() == []
