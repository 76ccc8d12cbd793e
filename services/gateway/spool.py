"""Kommo hooks the bus could not take, kept in PostgreSQL and replayed in arrival order.

Kommo never retries a chat hook, so while JetStream is unavailable the gateway still answers 200 after
writing the hook here. While a conversation has hooks in the spool (seen by every replica, since the
spool is in the database), its new hooks join the back of the spool rather than overtaking them; one
replayer at a time (an advisory lock) publishes the spool in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import TYPE_HEADER, Publisher, Stream
from libs.db.schema import gateway_spool
from libs.errors import RetryableError
from libs.observability import SPOOL_DEPTH

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

        self._key_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def pending(self) -> bool:
        """True while hooks wait in the spool (as last seen by this replica)."""
        return self._pending

    @contextlib.asynccontextmanager
    async def ordered(self, key: str) -> AsyncIterator[None]:
        """Hooks of one conversation are decided (publish or spool) one at a time in this replica."""
        lock = self._key_locks[key]
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._key_locks.pop(key, None)

    async def holds(self, key: str) -> bool:
        """Whether hooks of this conversation wait in the spool (in any replica)."""
        try:
            async with self._engine.connect() as conn:
                query = select(exists().where(gateway_spool.c.ordering_key == key))
                return bool((await conn.execute(query)).scalar())
        except SQLAlchemyError:
            return False  # nothing can be spooled now either; publishing directly is all there is

    async def put(self, stream: Stream, key: str, msg_id: str, payload: bytes, message_type: str = "") -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    gateway_spool.insert().values(
                        stream=stream.name, ordering_key=key, msg_id=msg_id, payload=payload, message_type=message_type
                    )
                )
        except SQLAlchemyError as exc:
            raise RetryableError("neither the bus nor the spool can take the hook") from exc
        self._pending = True
        log.warning("hook spooled while the bus is unavailable", extra={"msg_id": msg_id})

    async def healthy(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

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
            published = 0
            try:
                published = await self.replay_once()
            except Exception as exc:
                log.warning("spool replay failed; will retry", extra={"error": repr(exc)})
            if published < REPLAY_BATCH:  # a full batch means more is waiting: go on at once
                await asyncio.sleep(REPLAY_INTERVAL_S)

    async def replay_once(self) -> int:
        """Publish spooled hooks in order; returns how many were published."""
        published = 0
        async with self._engine.begin() as conn:
            depth = int((await conn.execute(select(func.count()).select_from(gateway_spool))).scalar() or 0)
            SPOOL_DEPTH.set(depth)
            if not depth:
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
                    # The hook's protobuf type goes with it, as when it is published directly.
                    headers = {TYPE_HEADER: row.message_type} if row.message_type else None
                    await self._publisher.publish(
                        Stream[row.stream], row.ordering_key, row.payload, row.msg_id, headers=headers
                    )
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
