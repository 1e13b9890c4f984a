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


async def test_backoff_grows_exponentially_with_full_jitter_and_cap(autojump_clock):
    policy = RetryPolicy(max_attempts=6, base_delay=0.1, max_delay=0.5, deadline=None, rng=random.Random(7))
    attempt = Flaky(*[transient() for _ in range(5)])
    await policy.run(attempt)
    gaps = [b - a for a, b in zip(attempt.started, attempt.started[1:])]
    steps = [0.1, 0.2, 0.4, 0.5, 0.5]
    for gap, step in zip(gaps, steps):
        assert 0 <= gap <= step + 1e-9
    draws = [policy.backoff(4) for _ in range(2000)]  # full jitter: uniform over the whole step
    assert min(draws) < 0.05 and max(draws) > 0.35


async def test_deadline_stops_retrying(autojump_clock):
    policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0, deadline=3.0, rng=random.Random(3))
    attempt = Flaky(*[transient() for _ in range(100)])
    with pytest.raises(types.TransientError):
        await policy.run(attempt)
    assert trio.current_time() - attempt.started[0] <= 3.0
    assert 3 <= len(attempt.started) < 100


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


def throttled(retry_after=None):
    return types.Throttled("slow down", code="SlowDown", status=503, retry_after=retry_after)


async def test_retry_after_is_honoured(autojump_clock):
    attempt = Flaky(throttled(retry_after=7.0))
    await RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=60).run(attempt)
    assert attempt.started[1] - attempt.started[0] >= 7.0


async def test_a_retry_after_past_the_deadline_fails_now(autojump_clock):
    attempt = Flaky(throttled(retry_after=120.0))
    with pytest.raises(types.Throttled):
        await RetryPolicy(max_attempts=3, deadline=60).run(attempt)
    assert len(attempt.started) == 1 and trio.current_time() - attempt.started[0] < 1


async def test_a_backoff_sleep_that_overruns_the_deadline_ends_with_the_last_failure(autojump_clock):
    """A loaded machine wakes the backoff sleep late, past the deadline: no attempt is started any more, and the
    caller gets the server's last answer (here SlowDown), not a bare "deadline ran out"."""
    attempt = Flaky(throttled(), throttled())
    with pytest.raises(types.Throttled):
        await RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=1.0).run(
            attempt, on_retry=lambda error, failures, delay: autojump_clock.jump(5.0))
    assert len(attempt.started) == 1


async def test_throttling_uses_up_no_attempt_but_the_deadline_bounds_it(autojump_clock):
    attempt = Flaky(*[throttled() for _ in range(10)])
    assert await RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=1.0, deadline=60).run(attempt) == "ok"
    assert len(attempt.started) == 11
    endless = Flaky(*[throttled() for _ in range(10_000)])
    with pytest.raises(types.Throttled):
        await RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=1.0, deadline=30).run(endless)
    assert trio.current_time() - endless.started[0] <= 30


async def test_failures_that_made_progress_use_up_no_attempt(autojump_clock):
    def progressed():
        error = types.TransientError("cut off mid-body", code="ConnectionReset")
        error.made_progress = True
        return error

    attempt = Flaky(progressed(), progressed(), progressed(), transient())
    assert await RetryPolicy(max_attempts=2, base_delay=0.01).run(attempt) == "ok"
    assert len(attempt.started) == 5


async def test_operation_deadline_bounds_all_calls_of_an_operation(autojump_clock):
    """An operation of several calls against a dead endpoint fails within its one budget (rule 6)."""
    from ossmount.store.retry import attempt_time_left, operation_deadline

    budgets = []

    async def dead():
        budgets.append(attempt_time_left())
        await trio.sleep(min(4.0, attempt_time_left()))  # a read timeout of 4 s, cut to what is left
        raise transient()

    policy = RetryPolicy(max_attempts=100, base_delay=0.5, max_delay=0.5, deadline=60)
    start = trio.current_time()
    with operation_deadline(10.0):
        for _ in range(5):
            with pytest.raises(types.TransientError):
                await policy.run(dead)
    assert trio.current_time() - start <= 10.0 + 1e-6
    assert min(budgets) <= 0.5


async def test_a_success_gives_the_operation_its_whole_budget_again(autojump_clock):
    from ossmount.store.retry import note_success, operation_deadline

    async def slow_failure():
        await trio.sleep(3)
        raise transient()

    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, deadline=60)
    with operation_deadline(5.0) as operation:
        with pytest.raises(types.TransientError):
            await policy.run(slow_failure)  # 2 x 3 s: capped at 5 s of failing
        assert operation.time_left() <= 0.0 + 1e-9
        note_success()
        assert operation.time_left() == 5.0


async def test_tasks_of_a_finished_operation_keep_only_their_own_deadline(autojump_clock):
    from ossmount.store.retry import current_operation, operation_deadline

    seen = []
    async with trio.open_nursery() as nursery:
        with operation_deadline(1.0):
            send, receive = trio.open_memory_channel(1)

            async def background():
                await receive.receive()
                seen.append(current_operation())

            nursery.start_soon(background)
            await trio.sleep(0)
            assert current_operation() is not None
        await send.send(None)
    assert seen == [None]


async def test_calls_failing_at_the_same_time_spend_the_budget_once(autojump_clock):
    """Four calls of one operation (a read's parallel ranged GETs) time out together: the operation has failed for
    the wall time they took, not four times it (rule 6; `readwrite_timeout`: an operation fails after (retries + 1)
    x readwrite_timeout seconds without a successful request)."""
    from ossmount.store.retry import attempt_time_left, operation_deadline

    calls = []

    async def stalled():
        calls.append(trio.current_time())
        await trio.sleep(min(3.0, attempt_time_left()))  # a read timeout of 3 s
        if len(calls) <= 8:  # two rounds of four stalled attempts, then answers
            raise transient()
        return "ok"

    policy = RetryPolicy(max_attempts=6, base_delay=0.0, max_delay=0.0, deadline=None)
    with operation_deadline(18.0) as operation:
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(policy.run, stalled)
        assert operation.time_left() >= 18.0 - 6.0 - 1e-6


async def test_failing_spans_of_one_operation_are_counted_as_their_union(autojump_clock):
    """Staggered failures (a call failing from 0 to 10 s, another from 5 to 6 s reported first, then one from 12 to
    13 s) have failed the operation for the wall time any of them was failing: 11 s, not 12 and not 5."""
    from ossmount.store.retry import OperationDeadline

    operation = OperationDeadline(100.0)
    await trio.sleep(6.0)
    operation.failed_for(1.0)  # [5, 6]
    await trio.sleep(4.0)
    operation.failed_for(10.0)  # [0, 10], covering [5, 6]
    assert operation.failing == pytest.approx(10.0)
    await trio.sleep(3.0)
    operation.failed_for(1.0)  # [12, 13]
    assert operation.failing == pytest.approx(11.0)
    operation.succeeded()
    await trio.sleep(1.0)
    operation.failed_for(5.0)  # [9, 14]: only the second after the success counts
    assert operation.failing == pytest.approx(1.0)
