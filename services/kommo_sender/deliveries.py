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
from libs.errors import AuthError, CredentialRejectedError, PermanentError
from libs.kommo.client import AmojoClient
from libs.kommo.payloads import NewMessage, Participant, content_to_message_body
from services.kommo_sender.holding import RELEASED_HEADER, AccountGate, ParkingLot

log = logging.getLogger(__name__)


def participant_for(command: events_pb2.DeliverToKommo) -> Participant:
    profile = command.sender
    return Participant(
        id=command.sender_id,
        name=profile.name or profile.username or profile.phone or "Client",
        profile_link=profile.profile_link,
        phone=profile.phone,
        email=profile.email,
    )


class KommoDeliverer:
    def __init__(self, engine: AsyncEngine, amojo: AmojoClient, gate: AccountGate, lot: ParkingLot) -> None:
        self._engine = engine
        self._amojo = amojo
        self._gate = gate
        self._lot = lot

    async def _already_delivered(self, msgid: str) -> bool:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(kommo_deliveries.c.msgid).where(kommo_deliveries.c.msgid == msgid))
            ).first()
        return row is not None

    async def handle(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.DeliverToKommo)
        held_id = delivery.headers.get(RELEASED_HEADER)
        if held_id is None and (await self._gate.held(command.scope_id) or await self._lot.occupied(command.scope_id)):
            await self._lot.park(command.scope_id, command.conversation_id, f"kommo:{command.msgid}", delivery.data)
            return
        try:
            await self._deliver(command)
        except (PermanentError, AuthError) as exc:
            if held_id is not None and not isinstance(exc, CredentialRejectedError):
                await self._lot.delivered(int(held_id))  # it goes to the dead letters; the lot moves on
            raise
        if held_id is not None:
            await self._lot.delivered(int(held_id))

    async def _deliver(self, command: events_pb2.DeliverToKommo) -> None:
        if await self._already_delivered(command.msgid):
            log.info("already in kommo", extra={"message_id": command.msgid})
            return
        message = NewMessage(
            msgid=command.msgid,
            conversation_id=command.conversation_id,
            sender=participant_for(command),
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
        log.info(
            "delivered to kommo",
            extra={
                "message_id": command.msgid,
                "conversation_id": command.conversation_id,
                "kommo_message_id": sent.kommo_msgid,
            },
        )
