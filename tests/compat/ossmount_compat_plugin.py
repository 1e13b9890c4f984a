"""pytest plugin loaded into the oss2 test-suite subprocess (`-p ossmount_compat_plugin`).

It changes nothing a test asserts; it only removes what makes sense against the real cloud and not here:

* `wait_meta_sync()` sleeps 1 s so that bucket metadata can propagate between OSS front ends. The local server is
  read-after-write consistent, so the sleep is pure waiting (about 30 s per run in test_object_versioning alone).
* Many tests pick `random.choice([bucket, rsa_crypto_bucket, kms_crypto_bucket])`. The KMS-backed CryptoBucket
  needs Alibaba Cloud KMS (kms.<region>.aliyuncs.com), which is unreachable, so those tests would pass or fail
  by coin toss. After setUp the KMS bucket is replaced by the RSA one (oss-api.md §4: "the RSA variants work,
  the KMS ones need a KMS service"): the object traffic the server sees is the same client-side-encrypted kind.
* Tests listed (one node id per line) in the file named by $OSSMOUNT_COMPAT_DESELECT are deselected by exact node
  id. pytest's own `--deselect` matches node-id *prefixes*, so deselecting `test_check_endpoint` would also drop
  `test_check_endpoint1`.
* oss2's request timeout drops from 60 s to 20 s, so a request the server never answers costs a third of the
  time before it is reported as the failure it is (loopback requests here take milliseconds).
* `random` is seeded from the test id before each test, so a run is reproducible (which bucket variant a test
  picks, multipart thread counts, random keys) while tests still differ from one another.
"""

from __future__ import annotations

import os
import random

DESELECT_ENV = "OSSMOUNT_COMPAT_DESELECT"


REQUEST_TIMEOUT = 20


def pytest_configure(config) -> None:
    import oss2

    # OssTestCase.__init__ (at collection) copies defaults.connect_timeout and setUp restores it before each test.
    oss2.defaults.connect_timeout = REQUEST_TIMEOUT


def pytest_collection_modifyitems(config, items) -> None:
    path = os.environ.get(DESELECT_ENV)
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        unwanted = {line.strip() for line in f if line.strip()}
    kept = [item for item in items if item.nodeid not in unwanted]
    dropped = [item for item in items if item.nodeid in unwanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _no_metadata_sync_wait() -> None:
    return None


def _without_kms(original_set_up):
    def set_up(self):
        original_set_up(self)
        if getattr(self, "rsa_crypto_bucket", None) is not None:
            self.kms_crypto_bucket = self.rsa_crypto_bucket

    set_up.ossmount_without_kms = True
    return set_up


def pytest_runtest_setup(item) -> None:
    random.seed(item.nodeid)
    module = getattr(item, "module", None)
    if module is None:
        return
    if hasattr(module, "wait_meta_sync"):
        module.wait_meta_sync = _no_metadata_sync_wait
    base = getattr(module, "OssTestCase", None)
    if base is not None and not getattr(base.setUp, "ossmount_without_kms", False):
        base.setUp = _without_kms(base.setUp)
