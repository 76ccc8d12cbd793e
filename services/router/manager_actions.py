"""Kommo → client beyond new messages: the message a manager quotes, edits of messages already sent,
reactions and typing, each resolved through the message map and sent to messenger_sender in the
conversation's lane.

Edits: the reference documents no edit hook from Kommo (§13). The reading handled here is that Kommo
sends the message hook again with the same message id and the changed content; the gateway then gives it
a Nats-Msg-Id of its own (message id + content digest), and a hook for a message already carried whose
content digest differs is an edit of it.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.bus import Delivery, Stream
from libs.messengers.registry import adapter_named
from services.router.connections import ACTIVE, ConnectionRecord
from services.router.context import RoutingContext
from services.router.conversations import ConversationRecord
from services.router.message_map import wait_for_target
from services.router.settings import labelled

log = logging.getLogger(__name__)

KOMMO_TYPING_WINDOW_MS: Final = 5000
"""A typing hook's `expired_at` is five seconds after the manager typed (§9)."""


class ManagerActions:
    def __init__(self, context: RoutingContext) -> None:
        self._connections = context.connections
        self._conversations = context.conversations
        self._publisher = context.publisher
        self._map = context.message_map
        self._robot_ids = context.robot_ids
        self._pauses = context.pauses

    def _content_for_client(
        self, event: events_pb2.KommoOutboundMessage, connection: ConnectionRecord
    ) -> content_pb2.Content:
        from_robot = bool(event.sender_kommo_id) and event.sender_kommo_id in self._robot_ids
        return labelled(event.content, connection.robot_label) if from_robot else event.content

    async def reply_target(self, conversation_id: str, event: events_pb2.KommoOutboundMessage) -> str:
        """The platform's id of the message a manager quotes ("" when there is no quote, or it names a
        message the client never got from us: the reply then goes without the quote)."""
        if not event.HasField("reply_to"):
            return ""
        target = await self._map.by_kommo_ref(conversation_id, event.reply_to)
        if target is None or not target.platform_message_id:
            log.info(
                "quote not carried: the quoted message is unknown here", extra={"conversation_id": conversation_id}
            )
            return ""
        return target.platform_message_id

    async def changed(
        self,
        event: events_pb2.KommoOutboundMessage,
        conversation: ConversationRecord,
        connection: ConnectionRecord,
        digest: str,
        attempt: int,
    ) -> bool:
        """Whether a hook for a message already carried is an edit of it (then handled here)."""
        message = await self._map.by_kommo_ref(
            conversation.id, events_pb2.MessageRef(kommo_message_id=event.kommo_message_id)
        )
        if message is None or not message.content_digest or message.content_digest == digest:
            return False  # a redelivery of the same message: the send path is idempotent
        context = {"conversation_id": conversation.id, "kommo_message_id": event.kommo_message_id}
        if connection.state != ACTIVE or conversation.state == "closed" or await self._pauses.paused(connection.id):
            log.info("manager edit not carried: the conversation cannot be written to", extra=context)
            return True
        if not message.platform_message_id:
            wait_for_target(attempt, "manager edit", pending=True, **context)  # its send may still be on its way
            return True
        command = events_pb2.EditInMessenger(
            edit_id=f"{event.kommo_message_id}:{digest}",
            scope_id=event.scope_id,
            platform=adapter_named(connection.platform).platform,
            connection_id=connection.id,
            chat_id=conversation.address,  # the client's current address (identities.py)
            conversation_id=conversation.id,
            platform_message_id=message.platform_message_id,
            kommo_message_id=event.kommo_message_id,
            content=self._content_for_client(event, connection),
        )
        await self._publisher.publish(
            Stream.MESSENGER_COMMANDS, conversation.id, command, f"messenger-edit:{command.edit_id}"
        )
        await self._map.set_content_digest(message.id, digest)
        log.info("manager edit routed", extra=context)
        return True

    async def _writable(self, conversation_id: str) -> tuple[ConversationRecord, ConnectionRecord] | None:
        conversation = await self._conversations.find(conversation_id) if conversation_id else None
        if conversation is None or conversation.state == "closed":
            return None
        connection = await self._connections.get(conversation.connection_id)
        # The pause is read from the database: the connection cache may not have seen it yet.
        writable = connection.state == ACTIVE and not await self._pauses.paused(connection.id)
        return (conversation, connection) if writable else None

    async def reaction(self, delivery: Delivery) -> None:
        """A manager reacted to a message (or took the reaction back). Telegram-like platforms hold one
        reaction of the bot per message, so taking back an emoji that is no longer the one set does
        nothing (it would clear the newer one)."""
        event = delivery.decode(events_pb2.KommoReaction)
        context = {"conversation_id": event.conversation_id, "event_id": event.event_id}
        writable = await self._writable(event.conversation_id)
        if writable is None:
            log.info("manager reaction not carried: no conversation to write to", extra=context)
            return
        conversation, connection = writable
        target = await self._map.by_kommo_ref(conversation.id, event.target)
        if target is None or not target.platform_message_id:
            pending = target is not None or await self._map.report_pending(conversation.id)
            wait_for_target(delivery.attempt, "manager reaction", pending=pending, **context)
            return
        adapter = adapter_named(connection.platform)
        emoji = adapter.reaction_for(event.emoji) if event.emoji else None
        if not event.removed and emoji is None:
            log.warning(
                "manager reaction not carried: the messenger has none like it",
                extra={**context, "platform": adapter.name, "emoji": event.emoji},
            )
            return
        if event.removed and event.emoji and target.manager_reaction != emoji:
            log.info("manager reaction taken back was not the one set; nothing to clear", extra=context)
            return
        command = events_pb2.ReactInMessenger(
            reaction_id=event.event_id,
            scope_id=event.scope_id,
            platform=adapter.platform,
            connection_id=connection.id,
            chat_id=conversation.address,  # the client's current address (identities.py)
            conversation_id=conversation.id,
            platform_message_id=target.platform_message_id,
            emoji=emoji or "",
            removed=event.removed,
        )
        await self._publisher.publish(
            Stream.MESSENGER_COMMANDS, conversation.id, command, f"messenger-react:{event.event_id}"
        )
        await self._map.set_manager_reaction(target.id, "" if event.removed else emoji or "")
        log.info("manager reaction routed", extra=context)

    async def typing(self, delivery: Delivery) -> None:
        """A manager is typing: shown to the client unless it is over already, or a message of this
        conversation went out after the typing began (it would show "typing…" under a sent answer)."""
        event = delivery.decode(events_pb2.KommoTyping)
        now_ms = int(time.time() * 1000)
        if event.expires_at_ms <= now_ms:
            return
        writable = await self._writable(event.conversation_id)
        if writable is None:
            return
        conversation, connection = writable
        last_sent = await self._map.last_manager_message_at(conversation.id)
        began_ms = event.expires_at_ms - KOMMO_TYPING_WINDOW_MS
        if last_sent is not None and last_sent.timestamp() * 1000 > began_ms:
            return
        _, last_client_message_id = await self._conversations.client_message(conversation.id)
        command = events_pb2.TypingInMessenger(
            platform=adapter_named(connection.platform).platform,
            connection_id=connection.id,
            chat_id=conversation.address,  # the client's current address (identities.py)
            conversation_id=conversation.id,
            expires_at_ms=event.expires_at_ms,
            # WhatsApp shows typing on the client's message (and marks it read).
            last_client_message_id=last_client_message_id,
        )
        await self._publisher.publish(
            Stream.MESSENGER_COMMANDS,
            conversation.id,
            command,
            f"messenger-typing:{conversation.id}:{event.user_kommo_id}:{event.expires_at_ms}",
        )
