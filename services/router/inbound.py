"""Client → Kommo: a messenger event becomes a command for kommo_sender, in conversation order."""

from __future__ import annotations

import logging

from google.protobuf.json_format import MessageToDict
from kommo_bridge.events.v1 import events_pb2

from libs.bus import Delivery, Stream
from libs.errors import PermanentError
from services.router.context import RoutingContext

log = logging.getLogger(__name__)


def client_id_for(connection_id: str, sender_id: str) -> str:
    """Our stable id of a client at Kommo (`sender.id`): unique per channel and platform user."""
    return f"{connection_id}:{sender_id}"


class InboundRouter:
    def __init__(self, context: RoutingContext) -> None:
        self._connections = context.connections
        self._conversations = context.conversations
        self._publisher = context.publisher

    async def handle(self, delivery: Delivery) -> None:
        event = delivery.decode(events_pb2.InboundMessage)
        connection = await self._connections.get(event.connection_id)
        if connection.state != "active":
            raise PermanentError(f"connection {connection.id} is {connection.state}")
        client_id = client_id_for(connection.id, event.sender_id)
        recorded = await self._conversations.record_inbound(
            connection_id=connection.id,
            chat_id=event.chat_id,
            client_id=client_id,
            profile=MessageToDict(event.sender),
            dedup_key=event.event_id,
            platform_message_id=event.platform_message_id,
        )
        command = events_pb2.DeliverToKommo(
            msgid=recorded.message_id,
            scope_id=connection.scope_id,
            conversation_id=recorded.conversation_id,
            source_external_id=connection.source_external_id,
            sender_id=client_id,
            sender=event.sender,
            sent_at_ms=event.sent_at_ms,
            content=event.content,
            platform=event.platform,
        )
        # Published again on a redelivery: the Nats-Msg-Id and kommo_sender's own idempotency key
        # make that harmless, and it covers a crash between the commit above and this publish.
        await self._publisher.publish(
            Stream.KOMMO_COMMANDS, recorded.conversation_id, command, f"kommo:{recorded.message_id}"
        )
        log.info(
            "inbound routed",
            extra={
                "conversation_id": recorded.conversation_id,
                "message_id": recorded.message_id,
                "first_time": recorded.first_time,
            },
        )
