"""pytest plugin loaded into the oss2 test-suite subprocess (`-p ossmount_compat_plugin`).

It changes nothing a test asserts; it only removes two things that make sense against the real cloud and not here:

* `wait_meta_sync()` sleeps 1 s so that bucket metadata can propagate between OSS front ends. The local server is
  read-after-write consistent, so the sleep is pure waiting (about 30 s per run in test_object_versioning alone).
* test_crypto_object picks `choice([rsa_crypto_bucket, kms_crypto_bucket])` at random on every run. The KMS
  variant needs Alibaba Cloud KMS, which is unreachable, so the run would pass or fail by coin toss. We always
  take the first element, the RSA variant (oss-api.md §4: "the RSA variants work, the KMS ones need a KMS service").
"""

from __future__ import annotations


def _no_metadata_sync_wait() -> None:
    return None


def _first_choice(sequence):
    return sequence[0]


def pytest_runtest_setup(item) -> None:
    module = getattr(item, "module", None)
    if module is None:
        return
    if hasattr(module, "wait_meta_sync"):
        module.wait_meta_sync = _no_metadata_sync_wait
    if module.__name__.endswith("test_crypto_object") and hasattr(module, "choice"):
        module.choice = _first_choice
