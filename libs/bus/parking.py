"""Messages that must wait, parked outside their partition in arrival order and released in that order.

Holding a message in its queue (nak) would stop every other conversation that shares the partition. So
the messages of a held *holder* (a Kommo account that needs re-authorisation, a paused channel) are
parked in a table, in arrival order, and acked; while a holder has parked messages, its new ones join
the back. Once its gate opens, one releaser at a time re-publishes them in order, marked as released; a
released message leaves the lot only when its work is done, so nothing of that holder can overtake it.

Each lot has a table of its own (the columns of `held_commands`, with the holder's column named) owned
by the service that parks in it; `Gate` says whether a holder is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Column, Row, Table, delete, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus.envelope import Delivery
from libs.bus.publisher import TYPE_HEADER, Publisher
from libs.bus.topology import Stream
from libs.errors import AuthError, PermanentError, RetryableError

log = logging.getLogger(__name__)

RELEASED_HEADER = "Bridge-Held-Id"
"""On a released copy: the id of its row in the lot, which is deleted once the copy's work is done."""
RELEASE_INTERVAL_S = 2.0


class Gate(Protocol):
    """Whether a holder's messages must wait."""

    async def held(self, holder: str) -> bool:
        """Must its new messages wait now? (May be answered from a short cache.)"""

    def forget(self, holder: str) -> None:
        """Its state just changed: drop whatever is cached about it."""

    async def ready(self, holder: str) -> bool:
        """May its parked messages go now? Asked fresh, by the releaser."""


@dataclass(frozen=True)
class LotTable:
    """Where a lot keeps its messages, and where it re-publishes them."""

    table: Table
    # The name of the column that holds the holder (scope_id, connection_id).
    holder: str
    stream: Stream


class ParkingLot:
    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        gate: Gate,
        place: LotTable,
        *,
        repark_on: tuple[type[BaseException], ...] = (),
        why: str = "message held",
        why_level: int = logging.WARNING,
        interval_s: float = RELEASE_INTERVAL_S,
    ) -> None:
        """`repark_on`: failures that mean the holder became held while its gate's cache did not know yet;
        such a message is parked, in its place, instead of failing. `why` is logged at `why_level` for
        each parked message: a warning where holding means something needs an operator."""
        self._engine = engine
        self._publisher = publisher
        self._gate = gate
        self._table = place.table
        self._holder: Column[str] = place.table.c[place.holder]
        self._stream = place.stream
        self._repark_on = repark_on
        self._why = why
        self._why_level = why_level
        self._interval = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def occupied(self, holder: str) -> bool:
        async with self._engine.connect() as conn:
            return bool((await conn.execute(select(exists().where(self._holder == holder)))).scalar())

    async def must_wait(self, holder: str) -> bool:
        """Whether a new (not released) message of `holder` must be parked: it is held, or others wait."""
        return await self._gate.held(holder) or await self.occupied(holder)

    async def waiting(self, holders: Iterable[str]) -> dict[str, int]:
        """How many messages each holder has in the lot (released ones not yet done included)."""
        wanted = list(holders)
        if not wanted:
            return {}
        query = select(self._holder, func.count()).where(self._holder.in_(wanted)).group_by(self._holder)
        async with self._engine.connect() as conn:
            return {row[0]: int(row[1]) for row in (await conn.execute(query)).all()}

    async def through(
        self, delivery: Delivery, holder: str, key: str, msg_id: str, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Do `work` for a message of `holder`, or park the message while the holder must wait.

        A released message leaves the lot when its work is done, or when it fails for good (then it is
        dead-lettered like any message); a `repark_on` failure parks a new message, in its place.
        """
        held_id = delivery.headers.get(RELEASED_HEADER)
        message_type = delivery.headers.get(TYPE_HEADER, "")
        if held_id is None and await self.must_wait(holder):
            await self.park(holder, key, msg_id, delivery.data, message_type)
            return
        try:
            await work()
        except self._repark_on:
            if held_id is not None:
                raise
            self._gate.forget(holder)
            await self.park(holder, key, msg_id, delivery.data, message_type)
            return
        except (PermanentError, AuthError):
            if held_id is not None:
                await self.delivered(int(held_id))
            raise
        if held_id is not None:
            await self.delivered(int(held_id))

    async def park(self, holder: str, key: str, msg_id: str, payload: bytes, message_type: str = "") -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._table.insert().values(
                    {
                        self._holder.name: holder,
                        "ordering_key": key,
                        "msg_id": msg_id,
                        "payload": payload,
                        "message_type": message_type,
                    }
                )
            )
        log.log(self._why_level, self._why, extra={self._holder.name: holder})

    async def delivered(self, held_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(self._table).where(self._table.c.id == held_id))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self._table.name}-releaser")

    def wake(self) -> None:
        """Look for messages to release now rather than at the next round (a holder was just let go)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.release_ready()
            except Exception as exc:
                log.warning("releasing held messages failed; will retry", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def release_ready(self) -> int:
        async with self._engine.connect() as conn:
            holders = [row[0] for row in (await conn.execute(select(self._holder).distinct())).all()]
        released = 0
        for holder in holders:
            if await self._gate.ready(holder):
                released += await self._release(holder)
        return released

    def released_together(self, rows: Sequence[Row[Any]]) -> Sequence[Row[Any]]:
        """Which of a holder's parked messages (in order) one release publishes: all of them, unless the
        lot must stop after a message whose work holds the holder again (the rest wait for its gate)."""
        return rows

    async def _release(self, holder: str) -> int:
        """Re-publish one holder's parked messages in order (one releaser per holder at a time)."""
        published = 0
        async with self._engine.begin() as conn:
            lock = text("SELECT pg_try_advisory_xact_lock(hashtext(:lot), hashtext(:holder))")
            if not (await conn.execute(lock, {"lot": self._table.name, "holder": holder})).scalar():
                return 0
            # Released once: a released copy is durable in JetStream and leaves the lot when it is
            # done, or when it fails for good (then it is dead-lettered like any message).
            due = self._table.c.released_at.is_(None)
            rows = (
                await conn.execute(select(self._table).where(self._holder == holder, due).order_by(self._table.c.id))
            ).all()
            for row in self.released_together(rows):
                headers = {RELEASED_HEADER: str(row.id)}
                if row.message_type:
                    headers[TYPE_HEADER] = row.message_type
                try:
                    await self._publisher.publish(
                        self._stream, row.ordering_key, row.payload, f"{row.msg_id}:released:{row.id}", headers=headers
                    )
                except RetryableError:
                    break
                await conn.execute(update(self._table).where(self._table.c.id == row.id).values(released_at=func.now()))
                published += 1
        if published:
            log.info("held messages released", extra={self._holder.name: holder, "count": published})
        return published
