"""How long the kernel may cache what the filesystem answers (FUSE entry, attribute and negative timeouts).

Rules:
  1. `entry_timeout=` / `attr_timeout=` (ossfs passes them to libfuse) set the kernel's name-lookup and attribute
     caching; when not given both follow the stat cache: `stat_cache_expire` seconds, 0 if the cache is off.
  2. `negative_timeout=` caches "no such name" in the kernel (default 0: not cached). A name created through this
     mount replaces the negative entry at once; one created by another client is seen after the timeout.
  3. The kernel stores timeouts as whole seconds in 64 bits; "never" (stat_cache_expire=-1) is capped at
     KERNEL_TIMEOUT_MAX, about 68 years.
"""

from __future__ import annotations

from dataclasses import dataclass

KERNEL_TIMEOUT_MAX = float(2**31 - 1)


def _cap(seconds: float) -> float:
    return min(max(seconds, 0.0), KERNEL_TIMEOUT_MAX)


@dataclass(frozen=True)
class KernelTimeouts:
    """Seconds the kernel may cache a lookup (`entry`), attributes (`attr`) and a failed lookup (`negative`)."""

    entry: float = 0.0
    attr: float = 0.0
    negative: float = 0.0

    @classmethod
    def for_mount(cls, cache_ttl: float, *, entry: float | None = None, attr: float | None = None,
                  negative: float = 0.0) -> "KernelTimeouts":
        """Rule 1-3: `cache_ttl` is the stat cache's time to live (0 when the cache is off, math.inf for never)."""
        return cls(entry=_cap(cache_ttl if entry is None else entry), attr=_cap(cache_ttl if attr is None else attr),
                   negative=_cap(negative))
