"""Operations holding a directory lock wait only briefly for OSS (ossmount/fs/stalls.py)."""

from __future__ import annotations

import pytest
import trio

from ossmount.fs import stalls


def test_patience_follows_recent_latency_within_bounds():
    patience = stalls.Patience()
    assert patience.wait == stalls.STALL_WAIT
    for _ in range(50):
        patience.observe(0.01)  # a quick endpoint: the least wait
    assert patience.wait == stalls.STALL_WAIT
    for _ in range(50):
        patience.observe(0.5)  # a busy one: a longer wait, so that slowness is not taken for a stall
    assert stalls.STALL_FACTOR * 0.45 < patience.wait <= stalls.STALL_FACTOR * 0.5
    for _ in range(50):
        patience.observe(600.0)  # the late answers of a stall count, capped
    assert patience.wait == stalls.STALL_WAIT_MAX


@pytest.mark.parametrize("seconds", [0.0, 5.0])
async def test_within_returns_in_time_or_leaves_the_call_running(seconds):
    finished = []

    async def slow(value):
        await trio.sleep(1.0)
        finished.append(value)
        return value

    async with trio.open_nursery() as nursery:
        if seconds:
            assert await stalls.within(nursery, seconds, slow, "in time") == "in time"
        else:
            late = []
            with pytest.raises(stalls.StillWaiting):
                await stalls.within(nursery, seconds, slow, "late", late=late.append)
            assert finished == []
            await trio.sleep(1.5)
            assert finished == ["late"] and late == [None]
        patience = stalls.Patience()
        assert await stalls.within(nursery, patience, trio.sleep, 0.2) is None
        assert patience.latency >= 0.2 * 0.2 * 0.9

        async def fails():
            raise ValueError("boom")

        with pytest.raises(ValueError):
            await stalls.within(nursery, 5.0, fails)
