"""A rate limit shared by every replica of every service, kept in PostgreSQL.

Kommo allows 7 REST requests per second (per account, and per calling IP); three kommo_sender replicas
with a limiter each would together send 21. So the next free slot of each limit lives in one row, and
a caller reserves a slot in one short transaction (generic cell rate: slots `1/rate` apart) and then
waits for it outside the transaction. Nothing is dropped: a caller waits its turn, however long.
"""

from __future__ import annotations

import asyncio
import logging
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


@dataclass(frozen=True)
class Limit:
    key: str
    per_second: float

    @property
    def spacing(self) -> timedelta:
        return timedelta(seconds=JITTER_MARGIN / self.per_second)


class SharedRateLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def acquire(self, limits: Sequence[Limit]) -> float:
        """Wait for the first moment every one of `limits` allows a call; return the seconds waited."""
        loop = asyncio.get_running_loop()
        waited = 0.0
        tolerance = LATE_WAKE_TOLERANCE / max(limit.per_second for limit in limits)
        for _ in range(MAX_LATE_RETAKES):
            wait = await self._reserve(limits)
            due = loop.time() + wait
            if wait > 0:
                await asyncio.sleep(wait)
                waited += wait
            if loop.time() - due <= tolerance:
                break
            log.info("woke late for a rate-limit slot, taking a new one", extra={"late_s": loop.time() - due})
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
            slot = max([now, *(row.next_at for row in rows)])
            for limit in ordered:
                await conn.execute(
                    update(rate_limits).where(rate_limits.c.key == limit.key).values(next_at=slot + limit.spacing)
                )
        return max(0.0, float((slot - now).total_seconds()))

    async def defer(self, limits: Sequence[Limit], seconds: float) -> None:
        """The other side said "not before `seconds`" (a 429): no caller anywhere goes before then."""
        until = func.clock_timestamp() + timedelta(seconds=max(0.0, seconds))
        async with self._engine.begin() as conn:
            for limit in sorted(limits, key=lambda item: item.key):
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
