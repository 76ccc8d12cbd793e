"""The shared rate limit holds across processes: each "replica" here has its own engine (its own
connection pool), as separate processes would, and together they stay under the limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from libs.db import create_engine
from libs.ratelimit import JITTER_MARGIN, RETRY_PAUSE_CAP_S, RETRY_PAUSE_JITTER, Limit, SharedRateLimiter, retry_pause
from tests.support import wait_for


def busiest_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_three_replicas_together_stay_under_the_limit_and_nobody_is_dropped(database_url: str) -> None:
    engines = [create_engine(database_url, pool_size=2) for _ in range(3)]
    limiters = [SharedRateLimiter(engine) for engine in engines]
    limit = Limit("test-api", per_second=20)
    calls: list[float] = []

    async def replica(limiter: SharedRateLimiter) -> None:
        for _ in range(12):
            await limiter.acquire([limit])
            calls.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(replica(limiter) for limiter in limiters))
    elapsed = time.monotonic() - started
    assert len(calls) == 36  # every caller got its turn
    assert busiest_window(calls, 0.5) <= 10  # 20/s, whichever half-second you look at
    spacing = JITTER_MARGIN / limit.per_second
    assert elapsed >= 35 * spacing * 0.95  # they really waited for each other's slots
    for engine in engines:
        await engine.dispose()


async def test_a_key_per_account_does_not_slow_another_account_but_the_shared_key_does(database_url: str) -> None:
    engine = create_engine(database_url)
    limiter = SharedRateLimiter(engine)
    slow_a, slow_b = Limit("api:a", per_second=2), Limit("api:b", per_second=2)
    assert await limiter.acquire([slow_a]) == 0
    assert await limiter.acquire([slow_b]) == 0  # account b has its own budget
    waited = await limiter.acquire([slow_a])
    assert 0.4 < waited <= JITTER_MARGIN / 2 + 0.05
    await engine.dispose()


async def test_a_429_defers_every_caller(database_url: str) -> None:
    engine = create_engine(database_url)
    limiter = SharedRateLimiter(engine)
    limit = Limit("api:deferred", per_second=100)
    await limiter.acquire([limit])
    await limiter.defer([limit], 0.6)
    waited = await limiter.acquire([limit])
    assert 0.45 < waited < 0.8
    await engine.dispose()


async def test_callers_woken_late_by_a_starved_loop_do_not_leave_together(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=6)

    class CountingLimiter(SharedRateLimiter):
        reserved = 0

        async def _reserve(self, limits: Sequence[Limit]) -> float:
            wait = await super()._reserve(limits)
            self.reserved += 1
            return wait

    limiter = CountingLimiter(engine)
    limit = Limit("api:starved", per_second=5)
    departures: list[float] = []

    async def caller() -> None:
        await limiter.acquire([limit])
        departures.append(asyncio.get_running_loop().time())

    callers = [asyncio.create_task(caller()) for _ in range(7)]
    # Let every caller take its slot, then hog the loop past all of them, as a starved CPU would.
    await wait_for(lambda: limiter.reserved >= 7, interval=0.001, what="every caller holding a slot")
    loop = asyncio.get_running_loop()
    hog_until = loop.time() + 7 * JITTER_MARGIN / limit.per_second
    while loop.time() < hog_until:
        pass
    await asyncio.gather(*callers)
    # Woken all at once, they would leave together; they leave a slot apart instead.
    assert busiest_window(departures, 1.0) <= limit.per_second
    await engine.dispose()


async def test_a_burst_goes_at_once_then_calls_are_spaced_across_replicas(database_url: str) -> None:
    engines = [create_engine(database_url, pool_size=2) for _ in range(2)]
    limiters = [SharedRateLimiter(engine) for engine in engines]
    limit = Limit("api:burst", per_second=4, burst=5)
    departures: list[float] = []
    loop = asyncio.get_running_loop()

    async def replica(limiter: SharedRateLimiter) -> None:
        for _ in range(4):
            await limiter.acquire([limit])
            departures.append(loop.time())

    started = loop.time()
    await asyncio.gather(*(replica(limiter) for limiter in limiters))
    departures.sort()
    spacing = JITTER_MARGIN / limit.per_second
    assert len(departures) == 8
    assert departures[4] - started < spacing  # the burst of five, shared by both replicas, went at once
    for extra, departed in enumerate(departures[5:], start=1):  # then one slot apart, whoever asks
        assert departed - started >= extra * spacing * 0.95
    for engine in engines:
        await engine.dispose()


async def test_a_burst_refills_at_the_rate_and_burst_one_keeps_plain_spacing(database_url: str) -> None:
    engine = create_engine(database_url)
    limiter = SharedRateLimiter(engine)
    bursty = Limit("api:refill", per_second=2, burst=3)  # slots far apart: a slow machine still sees them
    assert [await limiter.acquire([bursty]) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await limiter.acquire([bursty]) > 0  # the burst is used up
    # Idle for a whole burst's worth of slots: the burst is back, but never more than `burst` of it.
    idle_until = asyncio.get_running_loop().time() + 4 * JITTER_MARGIN / bursty.per_second
    await wait_for(lambda: asyncio.get_running_loop().time() >= idle_until, interval=0.01, what="the burst refilled")
    assert [await limiter.acquire([bursty]) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await limiter.acquire([bursty]) > 0
    plain = Limit("api:plain", per_second=2)
    assert await limiter.acquire([plain]) == 0.0
    assert await limiter.acquire([plain]) > 0
    await engine.dispose()


async def test_a_deferral_holds_a_bursty_limit_and_leaves_it_without_its_burst(database_url: str) -> None:
    engine = create_engine(database_url)
    limiter = SharedRateLimiter(engine)
    limit = Limit("api:deferred-burst", per_second=10, burst=4)
    await limiter.defer([limit], 0.5)
    first = await limiter.acquire([limit])
    assert 0.35 < first < 0.7
    second = await limiter.acquire([limit])  # spaced: no burst right after being refused
    assert second > 0.5 * JITTER_MARGIN / limit.per_second
    await engine.dispose()


def test_a_retry_pause_grows_from_the_named_pause_capped_with_jitter() -> None:
    assert 1.0 <= retry_pause(1.0, 1) <= 1.0 * (1 + RETRY_PAUSE_JITTER)
    assert 8.0 <= retry_pause(1.0, 4) <= 8.0 * (1 + RETRY_PAUSE_JITTER)
    assert RETRY_PAUSE_CAP_S <= retry_pause(6.0, 50) <= RETRY_PAUSE_CAP_S * (1 + RETRY_PAUSE_JITTER)
    assert retry_pause(300.0, 1) >= 300.0  # a longer pause the other side named is never cut
    assert len({retry_pause(1.0, 3) for _ in range(20)}) > 1  # jittered
