"""Client messages into Kommo, each exactly once.

amojo's `msgid` is our message id, and a row in `kommo_deliveries` records every message amojo
accepted; a redelivered command finds the row and does nothing. A crash between amojo's answer and
the commit resends the same msgid, which amojo does not turn into a second message.
"""

from __future__ import annotations

import logging
import time

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery
from libs.db.retry import persist_after_effect
from libs.db.schema import kommo_deliveries
from libs.kommo.client import AmojoClient
from libs.kommo.payloads import NewMessage, content_to_message_body
from libs.observability import count_message
from services.kommo_sender.crm import ChatSetup, participant_for
from services.kommo_sender.holding import ParkingLot

log = logging.getLogger(__name__)


class KommoDeliverer:
    def __init__(self, engine: AsyncEngine, amojo: AmojoClient, lot: ParkingLot, chats: ChatSetup) -> None:
        self._engine = engine
        self._amojo = amojo
        self._lot = lot
        self._chats = chats

    async def _already_delivered(self, msgid: str) -> bool:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(kommo_deliveries.c.msgid).where(kommo_deliveries.c.msgid == msgid))
            ).first()
        return row is not None

    async def handle(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.DeliverToKommo)

        async def work() -> None:
            await self._deliver(command)

        await self._lot.through(delivery, command.scope_id, command.conversation_id, f"kommo:{command.msgid}", work)

    async def _deliver(self, command: events_pb2.DeliverToKommo) -> None:
        if await self._already_delivered(command.msgid):
            log.info("already in kommo", extra={"message_id": command.msgid})
            count_message(command.platform, "inbound", "duplicate")
            return
        await self._chats.prepare(command)
        message = NewMessage(
            msgid=command.msgid,
            conversation_id=command.conversation_id,
            sender=participant_for(command.sender_id, command.sender),
            message=content_to_message_body(command.content),
            timestamp_ms=command.sent_at_ms or int(time.time() * 1000),
            source_external_id=command.source_external_id,
        )
        sent = await self._amojo.send_message(command.scope_id, message)

        async def record() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(kommo_deliveries)
                    .values(
                        msgid=command.msgid,
                        scope_id=command.scope_id,
                        kommo_msgid=sent.kommo_msgid,
                        kommo_chat_id=sent.conversation_id,
                    )
                    .on_conflict_do_nothing()
                )

        await persist_after_effect(record)
        await self._chats.delivered(command.scope_id, command.conversation_id, sent.conversation_id)
        count_message(command.platform, "inbound", "delivered")
        log.info(
            "delivered to kommo",
            extra={
                "message_id": command.msgid,
                "conversation_id": command.conversation_id,
                "kommo_message_id": sent.kommo_msgid,
            },
        )
