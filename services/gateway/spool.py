"""Kommo hooks the bus could not take, kept in PostgreSQL and replayed in arrival order.

Kommo never retries a chat hook, so while JetStream is unavailable the gateway still answers 200 after
writing the hook here. While anything is spooled, new hooks join the back of the spool rather than
overtaking it; one replayer at a time (an advisory lock) publishes the spool in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import delete, exists, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Publisher, Stream
from libs.db.schema import gateway_spool
from libs.errors import RetryableError

log = logging.getLogger(__name__)

REPLAY_LOCK_KEY = 7201356
REPLAY_BATCH = 200
REPLAY_INTERVAL_S = 0.5


class HookSpool:
    def __init__(self, engine: AsyncEngine, publisher: Publisher) -> None:
        self._engine = engine
        self._publisher = publisher
        self._pending = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def pending(self) -> bool:
        """True while hooks wait in the spool (new hooks must queue behind them)."""
        return self._pending

    async def put(self, stream: Stream, key: str, msg_id: str, payload: bytes) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                gateway_spool.insert().values(stream=stream.name, ordering_key=key, msg_id=msg_id, payload=payload)
            )
        self._pending = True
        log.warning("hook spooled while the bus is unavailable", extra={"msg_id": msg_id})

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="spool-replayer")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.replay_once()
            except Exception as exc:
                log.warning("spool replay failed; will retry", extra={"error": repr(exc)})
            await asyncio.sleep(REPLAY_INTERVAL_S)

    async def replay_once(self) -> int:
        """Publish spooled hooks in order; returns how many were published."""
        published = 0
        async with self._engine.begin() as conn:
            if not (await conn.execute(select(exists().select_from(gateway_spool)))).scalar():
                self._pending = False
                return 0
            self._pending = True
            locked = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": REPLAY_LOCK_KEY})).scalar()
            if not locked:
                return 0
            rows = (await conn.execute(select(gateway_spool).order_by(gateway_spool.c.id).limit(REPLAY_BATCH))).all()
            done: list[int] = []
            try:
                for row in rows:
                    await self._publisher.publish(Stream[row.stream], row.ordering_key, row.payload, row.msg_id)
                    done.append(row.id)
            except RetryableError:
                pass  # the bus is still down; what was published is removed below, the rest waits
            finally:
                if done:
                    await conn.execute(delete(gateway_spool).where(gateway_spool.c.id.in_(done)))
            published = len(done)
        if published:
            log.info("spooled hooks replayed", extra={"count": published})
        return published
