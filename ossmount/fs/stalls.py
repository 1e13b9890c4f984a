"""Operations that hold a directory's kernel lock wait only briefly for OSS (issue 12, item 5).

Theory of operation
- The kernel holds a directory's i_rwsem exclusively for the whole of a create in it (its LOOKUP of the new
  name, then its CREATE), and every lookup of a name the dentry cache does not hold (a cold path, or one the
  kernel dropped under memory pressure or `drop_caches`) takes the same lock shared. So while a create waits
  on a stalled server, a `stat` of a file this mount has cached blocks behind it in uninterruptible sleep for
  the create's whole deadline (measured: 87-115 s), although the answer is in memory.
- Such operations therefore wait at most STALL_WAIT seconds for OSS and then answer from what this mount
  knows, while the request goes on in the mount's nursery and its late answer still lands in the caches:
    * a lookup of a name that the directory's cached listing does not show is "no such name", as that
      listing says (Namespace.resolve);
    * a create answers with the new, empty, local file; its 0-byte PutObject completes in the background
      and the file's flush/close waits for it, reporting its failure (OpenFiles.create).
  When OSS answers within STALL_WAIT (the normal case) nothing changes: errors are reported by the
  operation itself and the new object is on OSS when create returns.
- A lookup with nothing cached to answer from waits for OSS as long as the store's retry policy says.
- How long is "briefly" (`Patience.wait`): STALL_FACTOR times the recent latency of these very requests (an
  exponential average of how long they took, each sample capped at STALL_WAIT_MAX), but at least STALL_WAIT
  and at most STALL_WAIT_MAX seconds. A busy but working endpoint (or a busy machine) thus keeps the normal
  behaviour, while a stall, during which nothing completes, is detected after about STALL_WAIT seconds.

`within` is the mechanism: run a coroutine as a task of a nursery that outlives the request, and wait for
it a bounded time.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, TypeVar

import trio

log = logging.getLogger("ossmount.fs")

T = TypeVar("T")

STALL_WAIT = 0.5  # seconds: the least an operation holding a directory lock waits for OSS (see the rules)
STALL_WAIT_MAX = 5.0
STALL_FACTOR = 4.0
_SMOOTHING = 0.2


class Patience:
    """How long to wait for OSS before answering locally (module rules); `observe` each request's duration."""

    def __init__(self) -> None:
        self.latency = 0.0

    def observe(self, seconds: float) -> None:
        self.latency += _SMOOTHING * (min(seconds, STALL_WAIT_MAX) - self.latency)

    @property
    def wait(self) -> float:
        return min(STALL_WAIT_MAX, max(STALL_WAIT, STALL_FACTOR * self.latency))


class StillWaiting(Exception):
    """The background call did not finish within the wait; it goes on (see `within`)."""


async def within(nursery: trio.Nursery | None, patience: Patience | float, fn: Callable[..., Awaitable[T]],
                 *args: Any, late: Callable[[BaseException | None], None] | None = None) -> T:
    """`await fn(*args)`, but as a task of `nursery`, waiting for it at most `patience.wait` seconds (or a
    number of seconds); a Patience observes how long the call took.

    Returns its result, or raises what it raised, when it finishes in time. Otherwise raises StillWaiting;
    the task goes on and, when it ends, `late(error)` is called with its exception (None on success; a
    failure nobody hears of is logged at debug level). Without a nursery this simply awaits `fn(*args)`.
    """
    if nursery is None:
        return await fn(*args)
    seconds = patience if isinstance(patience, (int, float)) else patience.wait
    done = trio.Event()
    outcome: dict[str, Any] = {}
    waiting = True

    async def run() -> None:
        started = trio.current_time()
        try:
            outcome["value"] = await fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the waiter or to `late`
            outcome["error"] = exc
        if isinstance(patience, Patience):
            patience.observe(trio.current_time() - started)
        done.set()
        if not waiting:
            error = outcome.get("error")
            if late is not None:
                late(error)
            elif error is not None:
                log.debug("a request that outlived its operation failed: %s", error)

    nursery.start_soon(run)
    with trio.move_on_after(seconds):
        await done.wait()
    if not done.is_set():
        waiting = False
        raise StillWaiting()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
