"""Retries and their timing for the object store, in one class.

Rules:
  * Only `TransientError` (5xx, throttling, connection refused/reset, timeouts, CRC mismatch) is retried;
    every other `StoreError` is final on the first attempt.
  * Only operations the caller marks idempotent are retried. PUT of a whole body, ranged GET, HEAD, LIST,
    DELETE, CopyObject, UploadPart and CompleteMultipartUpload are safe to repeat; AppendObject-style
    operations are not.
  * Delays grow exponentially from `base_delay`, capped at `max_delay`, with "equal jitter" (a uniform
    draw from the upper half of the step) so that many clients do not retry in lockstep.
  * `deadline` bounds the whole operation (first attempt to last retry) in seconds: a retry whose sleep
    would end past it is not attempted and the last error is raised.
  * Time comes from `trio.current_time()`, so tests drive it with `trio.testing.MockClock`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import trio

from ossmount.store.types import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently the store retries a failed idempotent request."""

    max_attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 2.0
    deadline: float | None = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive or None")

    @classmethod
    def no_retries(cls) -> "RetryPolicy":
        """One attempt only: for checks that must answer fast and for non-idempotent operations."""
        return cls(max_attempts=1, deadline=None)

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to sleep after the `failed_attempts`-th consecutive failure (1-based)."""
        step = min(self.max_delay, self.base_delay * (2 ** (failed_attempts - 1)))
        return self.rng.uniform(step / 2, step)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        on_retry: Callable[[TransientError, int, float], None] | None = None,
    ) -> T:
        """Await `attempt()` until it succeeds, raises a non-transient error, or the policy gives up.

        `on_retry(error, failed_attempts, delay)` is called before each sleep (for statistics and logs).
        """
        started = trio.current_time()
        failed = 0
        while True:
            try:
                return await attempt()
            except TransientError as error:
                failed += 1
                if not idempotent or failed >= self.max_attempts:
                    raise
                delay = self.backoff(failed)
                if self.deadline is not None and trio.current_time() + delay - started > self.deadline:
                    raise
                if on_retry is not None:
                    on_retry(error, failed, delay)
                await trio.sleep(delay)
