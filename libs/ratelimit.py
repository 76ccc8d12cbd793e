"""A rate limit shared by every replica of every service, kept in PostgreSQL.

Kommo allows 7 REST requests per second (per account, and per calling IP); three kommo_sender replicas
with a limiter each would together send 21. So the next free slot of each limit lives in one row, and
a caller reserves a slot in one short transaction (generic cell rate: slots `1/rate` apart) and then
waits for it outside the transaction. Nothing is dropped: a caller waits its turn, however long.

A limit may allow a burst (WhatsApp's pair rate: about one message per 6 s to one user, bursts allowed):
the row then keeps the theoretical arrival time of the generic cell rate algorithm and a caller may go
`(burst - 1)` slots ahead of it, so the first `burst` calls go at once and the next ones are spaced again
(a token bucket of `burst` tokens refilled at `rate`). With `burst=1` it is the plain spacing above.

A refusal anyway (the other side's limit is lower than configured, or another client shares it) is
retried after `retry_pause`: the pause the other side named, doubled on every further attempt, capped,
with jitter so the callers it refused do not all come back in the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import rate_limits

log = logging.getLogger(__name__)

JITTER_MARGIN = 1.1
"""Slots are spaced 10% wider than `1/rate`: requests leave at their slot but arrive after network
delays that differ, and two that arrive closer than they left must still fit the other side's window."""

LATE_WAKE_TOLERANCE = 0.3
"""A caller that wakes later than this share of `1/rate` after its slot (a starved CPU, a long event
loop turn) takes a new slot instead: otherwise it would leave together with the callers whose slots
came after its own, and a burst of them would exceed the limit. Any `rate` consecutive slots span
`JITTER_MARGIN` seconds, so a caller up to 0.3/rate late still leaves its window of one second to the
others (0.3/rate < JITTER_MARGIN - 1 for any rate of at least 3/s), with network jitter the rest."""
MAX_LATE_RETAKES = 3
"""A caller retakes a slot at most this often, so heavy starvation delays it but never stalls it."""
RETRY_PAUSE_CAP_S = 60.0
"""The longest `retry_pause` grows to (unless the other side itself named a longer pause)."""
RETRY_PAUSE_JITTER = 0.25
"""`retry_pause` adds up to this share of itself at random: never less than the pause that was named."""


@dataclass(frozen=True)
class Limit:
    key: str
    per_second: float
    burst: int = 1
    """How many calls may go at once before the next ones are spaced `1/rate` apart again."""

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError(f"rate limit {self.key}: per_second must be positive")
        if self.burst < 1:
            raise ValueError(f"rate limit {self.key}: burst must be at least 1")

    @property
    def spacing(self) -> timedelta:
        return timedelta(seconds=JITTER_MARGIN / self.per_second)

    @property
    def tolerance(self) -> timedelta:
        """How far ahead of the row's next slot a call may go: the rest of the burst."""
        return self.spacing * (self.burst - 1)


def retry_pause(named: float, attempt: int) -> float:
    """Seconds before retrying a call the other side refused for its rate limit on delivery `attempt`
    (counted from 1): `named` (its Retry-After, or what its error code implies) doubled on each further
    attempt, capped at `RETRY_PAUSE_CAP_S` (or at `named` when that is longer), plus jitter."""
    named = max(0.0, named)
    grown = named * float(2 ** min(max(0, attempt - 1), 16))
    pause = max(named, min(RETRY_PAUSE_CAP_S, grown))
    return pause * (1 + RETRY_PAUSE_JITTER * random.random())  # spreads retries; not a secret


class SharedRateLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def acquire(self, limits: Sequence[Limit]) -> float:
        """Wait for the first moment every one of `limits` allows a call; return the seconds waited."""
        loop = asyncio.get_running_loop()
        waited = 0.0
        # A burst already lets calls go together, so only the limits without one need a late caller's retake
        # (which would otherwise spend a slot of the burst for nothing).
        spaced = [limit for limit in limits if limit.burst == 1]
        tolerance = LATE_WAKE_TOLERANCE / max((limit.per_second for limit in spaced), default=1.0)
        taking = list(limits)
        for _ in range(MAX_LATE_RETAKES):
            wait = await self._reserve(taking)
            due = loop.time() + wait
            if wait > 0:
                await asyncio.sleep(wait)
                waited += wait
            if not spaced or loop.time() - due <= tolerance:
                break
            log.info("woke late for a rate-limit slot, taking a new one", extra={"late_s": loop.time() - due})
            taking = spaced
        return waited

    async def _reserve(self, limits: Sequence[Limit]) -> float:
        """Take the next slot of every limit in one transaction; return the seconds until it."""
        ordered = sorted(limits, key=lambda limit: limit.key)  # one lock order: no deadlocks
        async with self._engine.begin() as conn:
            for limit in ordered:
                await conn.execute(
                    insert(rate_limits)
                    .values(key=limit.key, next_at=func.clock_timestamp())
                    .on_conflict_do_nothing(index_elements=[rate_limits.c.key])
                )
            rows = (
                await conn.execute(
                    select(rate_limits.c.next_at, func.clock_timestamp().label("now"))
                    .where(rate_limits.c.key.in_([limit.key for limit in ordered]))
                    .order_by(rate_limits.c.key)
                    .with_for_update()
                )
            ).all()
            now = rows[0].now
            # The row holds the theoretical arrival time; a burst lets a call go `tolerance` ahead of it.
            slot = max([now, *(row.next_at - limit.tolerance for row, limit in zip(rows, ordered, strict=True))])
            for row, limit in zip(rows, ordered, strict=True):
                await conn.execute(
                    update(rate_limits)
                    .where(rate_limits.c.key == limit.key)
                    .values(next_at=max(row.next_at, slot) + limit.spacing)
                )
        return max(0.0, float((slot - now).total_seconds()))

    async def defer(self, limits: Sequence[Limit], seconds: float) -> None:
        """The other side said "not before `seconds`" (a 429): no caller anywhere goes before then, and a
        limit with a burst starts again without one (its calls are spaced from then on)."""
        async with self._engine.begin() as conn:
            for limit in sorted(limits, key=lambda item: item.key):
                until = func.clock_timestamp() + timedelta(seconds=max(0.0, seconds)) + limit.tolerance
                await conn.execute(
                    insert(rate_limits)
                    .values(key=limit.key, next_at=until)
                    .on_conflict_do_update(
                        index_elements=[rate_limits.c.key],
                        set_={"next_at": func.greatest(rate_limits.c.next_at, until)},
                    )
                )
        log.warning(
            "rate limited by the other side", extra={"limits": [limit.key for limit in limits], "seconds": seconds}
        )
