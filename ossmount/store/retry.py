"""Retries, their timing and the deadlines of requests and operations, in one place.

Rules:
  1. Only `TransientError` is retried: 5xx, throttling (503, 429), connection refused/reset (before or in the
     middle of an answer), timeouts, an unusable answer, a CRC-64 mismatch. Every other `StoreError` (403, 404,
     400, 409, 412, ...) is final at the first attempt, with its own errno.
  2. Only operations the caller marks idempotent are retried (all of the store's are: a whole-body PUT, ranged
     GET, HEAD, LIST, DELETE, CopyObject, UploadPart, CompleteMultipartUpload are safe to repeat).
  3. `max_attempts` attempts in all (the mount gives it `retries` + 1: ossfs's `retries` are retries). Two kinds of
     failure do not use one up, because they are no sign of a broken request: throttling (503, 429: real OSS
     throttles in bursts), retried until the deadline; and a failure after which the next attempt resumes where
     this one got to (a GET cut off mid-body, `error.made_progress`).
  4. Backoff is exponential with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the n-th
     consecutive failure sleeps uniform(0, min(max_delay, base_delay * 2**(n-1))) seconds. A `Retry-After` the
     server sent (503/429) is honoured: the sleep is at least that long.
  5. `deadline` bounds one store call, first attempt to last retry, in seconds: no attempt starts after it, every
     attempt's timeouts are cut to what is left of it (`attempt_time_left()`), and a retry whose sleep would end
     past it is not made; when a sleep overruns it anyway (a loaded machine), the last failure is raised.
  6. An operation (one FUSE request, `operation_deadline()`) may make many calls. It fails once it has spent
     `seconds` failing — in attempts that failed and in the sleeps between them — without one successful request;
     a success gives it the whole budget again, so a long upload that keeps making progress never hits it, and a
     server that answers nothing fails every operation within it. Calls failing at the same time spend it once
     (the wall time during which something failed). Work started on behalf of the operation (tasks
     it spawns) shares its budget until the operation returns; after that, such tasks have only their own calls'
     deadlines.
  7. Time comes from `trio.current_time()`, so tests drive it with `trio.testing.MockClock`.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator, TypeVar

import trio

from ossmount.store.types import Throttled, TransientError

T = TypeVar("T")


class OperationDeadline:
    """The failure budget of one filesystem operation (rule 6): `seconds` of failing without a success."""

    def __init__(self, seconds: float):
        if seconds <= 0:
            raise ValueError("an operation deadline must be positive")
        self.seconds = seconds
        self.failing = 0.0  # seconds spent failing since the last success
        self.active = True
        self._spans: list[tuple[float, float]] = []  # disjoint (start, end) of the failing time in `failing`

    def time_left(self) -> float:
        return self.seconds - self.failing

    def failed_for(self, seconds: float) -> None:
        """The calling call has been failing for the `seconds` that end now. Calls failing at the same time (a
        read's parallel ranged GETs, a listing's HEADs) spend the budget once: it counts the wall time during
        which something failed, as `readwrite_timeout` promises ((retries + 1) x readwrite_timeout seconds)."""
        now = trio.current_time()
        start = now - max(seconds, 0.0)
        if now <= start:
            return
        # Every span counted so far ends at or before `now`: the new time is the part of [start, now] none covers.
        overlapping = [(s, e) for s, e in self._spans if e > start]
        self.failing += (now - start) - sum(e - max(s, start) for s, e in overlapping)
        self._spans = [(s, e) for s, e in self._spans if e <= start]
        self._spans.append((min([start] + [s for s, _ in overlapping]), now))

    def succeeded(self) -> None:
        self.failing = 0.0
        self._spans = [(float("-inf"), trio.current_time())]  # failing time before a success is forgiven


_operation: contextvars.ContextVar[OperationDeadline | None] = contextvars.ContextVar(
    "ossmount_operation_deadline", default=None)
_attempt_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ossmount_attempt_deadline", default=None)


@contextlib.contextmanager
def operation_deadline(seconds: float | None) -> Iterator[OperationDeadline | None]:
    """Run the body as one operation whose requests share a failure budget of `seconds` (rule 6); None: no budget.
    The FUSE glue wraps every request handler in it."""
    if seconds is None:
        yield None
        return
    operation = OperationDeadline(seconds)
    token = _operation.set(operation)
    try:
        yield operation
    finally:
        operation.active = False
        _operation.reset(token)


def current_operation() -> OperationDeadline | None:
    """The deadline of the operation the calling task works for, if it is still running."""
    operation = _operation.get()
    return operation if operation is not None and operation.active else None


def attempt_time_left() -> float | None:
    """Seconds the current attempt may take (rules 5 and 6), None when nothing bounds it. Inside `RetryPolicy.run`."""
    deadline = _attempt_deadline.get()
    return None if deadline is None else max(deadline - trio.current_time(), 0.0)


def note_success() -> None:
    """A request succeeded: the operation it works for gets its whole failure budget back (rule 6)."""
    operation = current_operation()
    if operation is not None:
        operation.succeeded()


class DeadlineExceeded(TransientError):
    """An attempt was cut short because the call's or the operation's deadline ran out."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently the store retries a failed idempotent request (module rules)."""

    max_attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 5.0
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

    def backoff(self, failures: int) -> float:
        """Seconds to sleep after the `failures`-th consecutive failure (1-based), full jitter (rule 4)."""
        step = min(self.max_delay, self.base_delay * (2 ** min(failures - 1, 62)))
        return self.rng.uniform(0, step)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        on_retry: Callable[[TransientError, int, float], None] | None = None,
    ) -> T:
        """Await `attempt()` until it succeeds, raises a non-transient error, or the policy gives up (rules 1-6).

        `on_retry(error, failures, delay)` is called before each sleep (for statistics and logs)."""
        started = trio.current_time()
        call_deadline = None if self.deadline is None else started + self.deadline
        counted = 0  # failures that use up an attempt (rule 3)
        failures = 0  # consecutive failures, for the backoff
        last_error: TransientError | None = None
        while True:
            operation = current_operation()
            attempt_deadline = call_deadline
            now = trio.current_time()
            if operation is not None:
                operation_end = now + operation.time_left()
                attempt_deadline = operation_end if attempt_deadline is None else min(attempt_deadline, operation_end)
            if last_error is not None and attempt_deadline is not None and now >= attempt_deadline:
                # The backoff sleep overran the deadline (a loaded machine): the last failure is the answer, not a
                # bare "deadline ran out" from an attempt that never started.
                raise last_error
            token = _attempt_deadline.set(attempt_deadline)
            try:
                result = await attempt()
            except TransientError as error:
                now_failed = trio.current_time()
                if operation is not None:
                    operation.failed_for(now_failed - now)
                failures += 1
                if not getattr(error, "made_progress", False) and not (
                        isinstance(error, Throttled) and self.deadline is not None):
                    counted += 1
                if getattr(error, "made_progress", False):
                    failures = 1
                if not idempotent or counted >= self.max_attempts or isinstance(error, DeadlineExceeded):
                    raise
                delay = max(self.backoff(failures), error.retry_after or 0.0)
                if attempt_deadline is not None and now_failed + delay >= attempt_deadline:
                    raise
                if on_retry is not None:
                    on_retry(error, failures, delay)
                last_error = error
                await trio.sleep(delay)
                if operation is not None:
                    operation.failed_for(delay)
            else:
                return result
            finally:
                _attempt_deadline.reset(token)
