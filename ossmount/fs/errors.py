"""The one place where an exception becomes an errno.

`FsError` carries its errno; `StoreError` derives one from the OSS error (see `ossmount.store.types`);
anything else is a bug: its traceback is logged and the caller gets EIO. The FUSE glue
(`ossmount.fs.operations`) calls `errno_for` and nothing else decides errno values.
"""

from __future__ import annotations

import errno as _errno
import logging
import os

from ossmount.store.types import NoSuchBucket, StoreError

log = logging.getLogger(__name__)


class FsError(Exception):
    """A filesystem-level refusal with its errno (ENOENT, ENOTEMPTY, EROFS, ...)."""

    def __init__(self, errno: int, message: str = ""):
        super().__init__(message or os.strerror(errno))
        self.errno = errno


def errno_for(exc: BaseException, *, operation: str = "") -> int:
    """Map any exception to the errno the kernel should see; unexpected ones are logged with a traceback."""
    if isinstance(exc, FsError):
        return exc.errno
    if isinstance(exc, StoreError):
        if exc.errno == _errno.EIO and not isinstance(exc, NoSuchBucket):  # an outage is logged once, not here
            log.warning("%s failed: %s", operation or "request", exc)
        return exc.errno
    log.error("unexpected error in %s", operation or "filesystem operation", exc_info=exc)
    return _errno.EIO
