"""RetryPolicy: what is retried, how often, how long it waits (trio MockClock, autojump)."""

import random

import pytest
import trio
import trio.testing

from ossmount.store import types
from ossmount.store.retry import RetryPolicy


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


class Flaky:
    """Fails with the given errors in turn, then returns 'ok'; records when each attempt started."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.started = []

    async def __call__(self):
        self.started.append(trio.current_time())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def transient():
    return types.TransientError("busy", code="ServiceUnavailable", status=503)


async def test_transient_errors_are_retried_until_success(autojump_clock):
    attempt = Flaky(transient(), transient())
    retries = []
    result = await RetryPolicy(max_attempts=3).run(attempt, on_retry=lambda e, n, d: retries.append((n, d)))
    assert result == "ok"
    assert len(attempt.started) == 3
    assert [n for n, _ in retries] == [1, 2]


async def test_gives_up_after_max_attempts(autojump_clock):
    attempt = Flaky(transient(), transient(), transient(), transient())
    with pytest.raises(types.TransientError):
        await RetryPolicy(max_attempts=3).run(attempt)
    assert len(attempt.started) == 3


@pytest.mark.parametrize("error", [
    types.NoSuchKey("gone", code="NoSuchKey", status=404),
    types.AccessDenied("no", code="AccessDenied", status=403),
    types.InvalidArgument("bad", code="InvalidArgument", status=400),
])
async def test_final_errors_are_not_retried(autojump_clock, error):
    attempt = Flaky(error)
    with pytest.raises(type(error)):
        await RetryPolicy(max_attempts=5).run(attempt)
    assert len(attempt.started) == 1


async def test_non_idempotent_operations_are_not_retried(autojump_clock):
    attempt = Flaky(transient())
    with pytest.raises(types.TransientError):
        await RetryPolicy(max_attempts=5).run(attempt, idempotent=False)
    assert len(attempt.started) == 1


async def test_backoff_grows_exponentially_with_jitter_and_cap(autojump_clock):
    policy = RetryPolicy(max_attempts=6, base_delay=0.1, max_delay=0.5, deadline=None, rng=random.Random(7))
    attempt = Flaky(*[transient() for _ in range(5)])
    await policy.run(attempt)
    gaps = [b - a for a, b in zip(attempt.started, attempt.started[1:])]
    steps = [0.1, 0.2, 0.4, 0.5, 0.5]
    for gap, step in zip(gaps, steps):
        assert step / 2 - 1e-9 <= gap <= step + 1e-9


async def test_deadline_stops_retrying(autojump_clock):
    policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0, deadline=3.0)
    attempt = Flaky(*[transient() for _ in range(100)])
    with pytest.raises(types.TransientError):
        await policy.run(attempt)
    assert trio.current_time() - attempt.started[0] <= 3.0
    assert 3 <= len(attempt.started) <= 7


async def test_no_retries_policy_makes_one_attempt(autojump_clock):
    attempt = Flaky(transient())
    with pytest.raises(types.TransientError):
        await RetryPolicy.no_retries().run(attempt)
    assert len(attempt.started) == 1


def test_invalid_policies_are_refused():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(deadline=0)
