"""A client's edits, reactions and typing into Kommo.

Edits and reactions go through the parking lot like messages, in the conversation's lane, so neither
overtakes the message it is about while an account waits for re-authorisation. Both are idempotent at
amojo (the same edit or reaction twice leaves the same state), so a redelivery may simply repeat them.
Typing is news only for a few seconds: it is sent once, and a failure is logged, never retried.
"""

from __future__ import annotations

import logging

from kommo_bridge.events.v1 import events_pb2

from libs.bus import Delivery
from libs.errors import BridgeError
from libs.kommo.client import AmojoClient
from libs.kommo.payloads import EditMessage, EmbeddedMessage, Reaction, content_to_edited_body
from services.kommo_sender.holding import ParkingLot

log = logging.getLogger(__name__)


class LiveChat:
    def __init__(self, amojo: AmojoClient, lot: ParkingLot) -> None:
        self._amojo = amojo
        self._lot = lot

    async def edit(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.EditInKommo)

        async def work() -> None:
            edit = EditMessage(
                command.conversation_id, EmbeddedMessage(msgid=command.msgid), content_to_edited_body(command.content)
            )
            await self._amojo.edit_message(command.scope_id, edit)
            log.info("edit posted", extra={"message_id": command.msgid, "conversation_id": command.conversation_id})

        key = f"kommo-edit:{command.edit_id}"
        await self._lot.through(delivery, command.scope_id, command.conversation_id, key, work)

    async def react(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.ReactInKommo)

        async def work() -> None:
            target = EmbeddedMessage(id=command.target.kommo_message_id, msgid=command.target.msgid)
            reaction = Reaction(command.conversation_id, target, command.sender_id, command.emoji, command.removed)
            await self._amojo.react(command.scope_id, reaction)
            log.info("reaction posted", extra={"conversation_id": command.conversation_id, "removed": command.removed})

        key = f"kommo-react:{command.reaction_id}"
        await self._lot.through(delivery, command.scope_id, command.conversation_id, key, work)

    async def typing(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.TypingInKommo)
        try:
            await self._amojo.typing(command.scope_id, command.conversation_id, command.sender_id, command.duration_ms)
        except BridgeError as exc:
            log.info("typing not shown in kommo", extra={"conversation_id": command.conversation_id, "error": str(exc)})
