"""The two date forms OSS speaks: RFC 1123 in headers, ISO 8601 with literal milliseconds in XML bodies."""

from __future__ import annotations

import email.utils
import time


def http_date(timestamp: float) -> str:
    """RFC 1123 date, e.g. 'Tue, 24 Nov 2026 10:00:00 GMT'."""
    return email.utils.formatdate(timestamp, usegmt=True)


def iso8601(timestamp: float) -> str:
    """List-style date, 'YYYY-MM-DDTHH:MM:SS.000Z' (oss2 requires the literal .000Z).

    A timestamp out of the platform's range (a client's absurd Expires) is echoed as the number."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return str(timestamp)
