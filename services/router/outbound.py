"""Kommo → client: a manager's message becomes a command for messenger_sender, in conversation order."""

from __future__ import annotations

import logging

from kommo_bridge.events.v1 import events_pb2

from libs.bus import Delivery, Stream
from libs.errors import NotFoundError
from libs.messengers.registry import adapter_named
from services.router.context import RoutingContext
from services.router.reports import report_failure
from services.router.settings import labelled

log = logging.getLogger(__name__)

KOMMO_CONVERSATION_CLOSED = 901
KOMMO_INTEGRATION_DISABLED = 902
KOMMO_INTERNAL_ERROR = 903
KOMMO_CANNOT_CREATE_CONVERSATION = 904


class OutboundRouter:
    def __init__(self, context: RoutingContext) -> None:
        self._connections = context.connections
        self._conversations = context.conversations
        self._publisher = context.publisher
        self._robot_ids = context.robot_ids

    async def handle(self, delivery: Delivery) -> None:
        event = delivery.decode(events_pb2.KommoOutboundMessage)
        if not event.conversation_id:
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                KOMMO_CANNOT_CREATE_CONVERSATION,
                "This channel cannot start a conversation: the client has to write first.",
            )
            return
        try:
            conversation, first = await self._conversations.record_outbound(
                conversation_id=event.conversation_id, kommo_message_id=event.kommo_message_id
            )
        except NotFoundError:
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                KOMMO_INTERNAL_ERROR,
                "The bridge does not know this conversation; it may belong to a removed channel.",
            )
            return
        connection = await self._connections.get(conversation.connection_id)
        if connection.state != "active":
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                KOMMO_INTEGRATION_DISABLED,
                f"The {connection.display_name or connection.platform} channel is disconnected.",
            )
            return
        if conversation.state == "closed":
            # The platforms forbid writing to a client who blocked the bot or left; never try.
            why = "blocked the bot" if conversation.closed_reason == "blocked" else "left the chat"
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                KOMMO_CONVERSATION_CLOSED,
                f"Not sent: the client {why}. Replies go through again once the client writes.",
            )
            return
        from_robot = bool(event.sender_kommo_id) and event.sender_kommo_id in self._robot_ids
        command = events_pb2.DeliverToMessenger(
            kommo_message_id=event.kommo_message_id,
            scope_id=event.scope_id,
            platform=adapter_named(connection.platform).platform,
            connection_id=connection.id,
            chat_id=conversation.chat_id,
            conversation_id=conversation.id,
            content=labelled(event.content, connection.robot_label) if from_robot else event.content,
            from_robot=from_robot,
        )
        await self._publisher.publish(
            Stream.MESSENGER_COMMANDS, conversation.id, command, f"messenger:{event.kommo_message_id}"
        )
        log.info(
            "outbound routed",
            extra={"conversation_id": conversation.id, "kommo_message_id": event.kommo_message_id, "first_time": first},
        )
