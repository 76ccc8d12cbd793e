"""Client messages into Kommo, each exactly once.

amojo's `msgid` is our message id, and a row in `kommo_deliveries` records every message amojo
accepted; a redelivered command finds the row and does nothing. A crash between amojo's answer and
the commit resends the same msgid, which amojo does not turn into a second message. Kommo's id of each
accepted message goes to the router (`KommoAccepted`), whose message map resolves quotes and reactions.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery, Publisher, Stream
from libs.db.retry import persist_after_effect
from libs.db.schema import kommo_deliveries
from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient, SentMessage
from libs.kommo.payloads import EmbeddedMessage, NewMessage, content_to_message_body
from libs.media.inbound import InboundMedia
from libs.observability import count_message
from services.kommo_sender.crm import ChatSetup, participant_for
from services.kommo_sender.holding import ParkingLot

log = logging.getLogger(__name__)


class KommoDeliverer:
    def __init__(
        self,
        engine: AsyncEngine,
        amojo: AmojoClient,
        lot: ParkingLot,
        chats: ChatSetup,
        media: InboundMedia,
        publisher: Publisher,
    ) -> None:
        self._engine = engine
        self._amojo = amojo
        self._lot = lot
        self._chats = chats
        self._media = media
        self._publisher = publisher

    async def _delivered_as(self, msgid: str) -> str | None:
        """Kommo's id of a message amojo already accepted, or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(kommo_deliveries.c.kommo_msgid).where(kommo_deliveries.c.msgid == msgid))
            ).first()
        return str(row.kommo_msgid) if row is not None else None

    async def _accepted(self, command: events_pb2.DeliverToKommo, kommo_msgid: str) -> None:
        """Tell the router Kommo's id of the message (its map resolves quotes and reactions by it)."""
        accepted = events_pb2.KommoAccepted(
            msgid=command.msgid,
            kommo_message_id=kommo_msgid,
            conversation_id=command.conversation_id,
            scope_id=command.scope_id,
        )
        await self._publisher.publish(Stream.REPORTS, command.conversation_id, accepted, f"accepted:{command.msgid}")

    async def _send(self, command: events_pb2.DeliverToKommo, message: NewMessage) -> SentMessage:
        try:
            return await self._amojo.send_message(command.scope_id, message)
        except BadRequestError:
            if message.reply_to is None:
                raise
            # A quote amojo refuses (the quoted message never reached it) must not cost the message.
            log.warning("kommo refused the quote; sending the message without it", extra={"message_id": command.msgid})
            return await self._amojo.send_message(command.scope_id, dataclasses.replace(message, reply_to=None))

    async def handle(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.DeliverToKommo)

        async def work() -> None:
            await self._deliver(command)

        await self._lot.through(delivery, command.scope_id, command.conversation_id, f"kommo:{command.msgid}", work)

    async def _deliver(self, command: events_pb2.DeliverToKommo) -> None:
        known = await self._delivered_as(command.msgid)
        if known is not None:
            log.info("already in kommo", extra={"message_id": command.msgid})
            count_message(command.platform, "inbound", "duplicate")
            await self._accepted(command, known)  # again: the first attempt may have stopped short of it
            return
        first = await self._chats.prepare(command)
        # The client's files become signed links to the gateway (or a text when one is too big to fetch).
        content = self._media.link(command.content, command.connection_id, command.platform)
        # A conversation a manager opened by write first: its first message names Kommo's chat and client,
        # so it lands in that chat (§9); later ones are known by our conversation_id alone.
        binding = first and bool(command.conversation_ref_id)
        sender = participant_for(command.sender_id, command.sender)
        message = NewMessage(
            msgid=command.msgid,
            conversation_id=command.conversation_id,
            conversation_ref_id=command.conversation_ref_id if binding else "",
            sender=dataclasses.replace(sender, ref_id=command.sender_ref_id) if binding else sender,
            # An album's items go one by one, in order, each with the album's id.
            message=dataclasses.replace(content_to_message_body(content), media_group_id=command.media_group_id),
            timestamp_ms=command.sent_at_ms or int(time.time() * 1000),
            source_external_id=command.source_external_id,
            reply_to=EmbeddedMessage(id=command.reply_to.kommo_message_id, msgid=command.reply_to.msgid)
            if command.reply_to.kommo_message_id or command.reply_to.msgid
            else None,
        )
        sent = await self._send(command, message)

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
        await self._accepted(command, sent.kommo_msgid)
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
