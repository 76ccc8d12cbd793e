"""Pausing a channel: its client events wait in the router's lot, in arrival order, until it is resumed.

The platform's webhook is still answered (the gateway does not know about pauses), so nothing is lost
and nothing is held at the platform. The state is read from the database for every message rather
than from the few-seconds connection cache, so a pause holds at once on every router replica.
"""

from __future__ import annotations

import logging

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Publisher, Stream
from libs.bus.parking import LotTable, ParkingLot
from libs.db.schema import connections, held_inbound
from services.router.connections import ACTIVE, PAUSED, ConnectionStore

INBOUND_LOT = LotTable(held_inbound, "connection_id", Stream.INBOUND)


class ChannelGate:
    """A paused channel is held; its held events go once it is active again (a removed one keeps them)."""

    def __init__(self, store: ConnectionStore) -> None:
        self._store = store

    async def held(self, connection_id: str) -> bool:
        return await self._store.state(connection_id) == PAUSED

    def forget(self, connection_id: str) -> None:
        """Nothing cached: every question reads the stored state."""

    async def ready(self, connection_id: str) -> bool:
        return await self._store.state(connection_id) == ACTIVE


class ChannelLot(ParkingLot):
    """The lot of paused channels' client events (table `held_inbound`, re-published to the inbound stream)."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher, store: ConnectionStore) -> None:
        self._channels = ChannelGate(store)
        super().__init__(
            engine,
            publisher,
            self._channels,
            INBOUND_LOT,
            why="client message held while the channel is paused",
            why_level=logging.INFO,  # an admin paused it on purpose
        )

    async def paused(self, connection_id: str) -> bool:
        """Whether the channel is paused now (managers' replies to it are refused)."""
        return await self._channels.held(connection_id)

    async def must_wait(self, holder: str) -> bool:
        """One statement per message: the channel is paused, or events of it still wait."""
        waiting = exists().where(held_inbound.c.connection_id == holder)
        query = select((connections.c.state == PAUSED) | waiting).where(connections.c.id == holder)
        async with self._engine.connect() as conn:
            return bool((await conn.execute(query)).scalar())
