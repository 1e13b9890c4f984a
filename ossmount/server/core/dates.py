"""The two date forms OSS speaks: RFC 1123 in headers, ISO 8601 with literal milliseconds in XML bodies."""

from __future__ import annotations

import email.utils
import functools
import math
import time


def http_date(timestamp: float) -> str:
    """RFC 1123 date, e.g. 'Tue, 24 Nov 2026 10:00:00 GMT'."""
    return _http_date_of_second(math.floor(timestamp))


@functools.lru_cache(maxsize=64)
def _http_date_of_second(second: int) -> str:
    # Every response carries the current date: formatting it once per second saves that work per request.
    return email.utils.formatdate(second, usegmt=True)


def iso8601(timestamp: float) -> str:
    """List-style date, 'YYYY-MM-DDTHH:MM:SS.000Z' (oss2 requires the literal .000Z).

    A timestamp out of the platform's range (a client's absurd Expires) is echoed as the number."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return str(timestamp)
