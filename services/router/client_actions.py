"""Client → Kommo beyond new messages: the message a reply quotes, edits, reactions and typing, each
resolved through the message map and sent to kommo_sender in the conversation's lane (so an edit or a
reaction never overtakes the message it is about)."""

from __future__ import annotations

import logging
import time
from typing import Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.bus import Publisher, Stream
from libs.errors import RetryableError
from services.router.connections import ConnectionRecord
from services.router.message_map import TARGET_WAIT_ATTEMPTS, TARGET_WAIT_S, MessageMap, wait_for_target

log = logging.getLogger(__name__)

QUOTE_MARK: Final = "» "
CLIENT_TYPING_MS: Final = 5000
"""How long "typing…" shows in Kommo (amojo's default), and how old a typing event may be to be shown."""
_EDITABLE: Final = frozenset({"text", "media"})


def with_quote(content: content_pb2.Content, quote: str) -> content_pb2.Content:
    """A quote Kommo cannot link to a message (one the bridge never carried) keeps the quoted words in
    front of the reply, "» quoted text", so the manager still sees what the client answered."""
    if not quote:
        return content
    quoted = content_pb2.Content()
    quoted.CopyFrom(content)
    mark = f"{QUOTE_MARK}{quote}\n"
    if quoted.HasField("text"):
        quoted.text.body = mark + quoted.text.body
    elif quoted.HasField("media"):
        quoted.media.caption = mark + quoted.media.caption
    return quoted


class ClientActions:
    def __init__(self, publisher: Publisher, message_map: MessageMap) -> None:
        self._publisher = publisher
        self._map = message_map

    async def quote(
        self, event: events_pb2.InboundMessage, connection: ConnectionRecord, attempt: int
    ) -> tuple[events_pb2.MessageRef | None, content_pb2.Content]:
        """The message a client's reply quotes, as amojo knows it, and the content to send.

        A quote of a manager's message sent a moment ago may arrive before the report that maps it: the
        reply waits for it briefly (retried), then goes with the quoted words instead of a link.
        """
        if not event.reply_to_platform_message_id:
            return None, event.content
        conversation_id = await self._map.conversation_of(connection.id, event.chat_id)
        if conversation_id is None:
            return None, with_quote(event.content, event.reply_to_quote)
        # Asked before the lookup: a mapping that lands in between is then seen by the lookup, never lost
        # between "not found" and "nothing pending".
        pending = attempt < TARGET_WAIT_ATTEMPTS and await self._map.report_pending(conversation_id)
        target = await self._map.by_platform_id(conversation_id, event.reply_to_platform_message_id)
        if target is not None:
            return target.as_kommo_ref(), event.content
        if pending:
            raise RetryableError("a reply quotes a message not mapped yet", retry_after=TARGET_WAIT_S)
        return None, with_quote(event.content, event.reply_to_quote)

    async def edited(self, event: events_pb2.InboundMessage, connection: ConnectionRecord) -> None:
        """The client changed one of their messages: the same message at Kommo gets the new text."""
        context = {"connection_id": connection.id, "event_id": event.event_id}
        conversation_id = await self._map.conversation_of(connection.id, event.chat_id)
        target = await self._map.by_platform_id(conversation_id, event.platform_message_id) if conversation_id else None
        if conversation_id is None or target is None:
            # The client's own messages are mapped in this very lane: waiting cannot bring one.
            log.warning("client edit dropped: the bridge never carried the message", extra=context)
            return
        if target.direction != "in" or event.edited.WhichOneof("body") not in _EDITABLE:
            log.info("client edit not carried: nothing Kommo can change", extra=context)
            return
        command = events_pb2.EditInKommo(
            edit_id=event.event_id,
            scope_id=connection.scope_id,
            conversation_id=conversation_id,
            msgid=target.id,
            content=event.edited,
            platform=event.platform,
            edited_at_ms=event.sent_at_ms,
            connection_id=connection.id,
        )
        await self._publisher.publish(Stream.KOMMO_COMMANDS, conversation_id, command, f"kommo-edit:{event.event_id}")
        log.info("client edit routed", extra={**context, "conversation_id": conversation_id, "message_id": target.id})

    async def reacted(
        self, event: events_pb2.InboundMessage, connection: ConnectionRecord, client_id: str, attempt: int
    ) -> None:
        """The client changed their reactions to a message: each emoji taken back, then each added."""
        change = event.reaction
        context = {"connection_id": connection.id, "event_id": event.event_id}
        conversation_id = await self._map.conversation_of(connection.id, event.chat_id)
        # Pending reports are asked before the lookup, as for quotes.
        pending = conversation_id is not None and await self._map.report_pending(conversation_id)
        target = (
            await self._map.by_platform_id(conversation_id, change.target_platform_message_id)
            if conversation_id
            else None
        )
        if conversation_id is None or target is None:
            wait_for_target(attempt, "client reaction", pending=pending, **context)
            return
        steps = [(emoji, True) for emoji in change.removed] + [(emoji, False) for emoji in change.added]
        for emoji, removed in steps:
            reaction_id = f"{event.event_id}:{'unreact' if removed else 'react'}:{emoji}"
            command = events_pb2.ReactInKommo(
                reaction_id=reaction_id,
                scope_id=connection.scope_id,
                conversation_id=conversation_id,
                target=target.as_kommo_ref(),
                sender_id=client_id,
                emoji=emoji,
                removed=removed,
            )
            await self._publisher.publish(Stream.KOMMO_COMMANDS, conversation_id, command, f"kommo-react:{reaction_id}")
        log.info("client reaction routed", extra={**context, "conversation_id": conversation_id, "steps": len(steps)})

    async def typing(self, event: events_pb2.InboundMessage, connection: ConnectionRecord, client_id: str) -> None:
        """The client is typing (where a platform says so): shown in Kommo for what is left of it."""
        left_ms = CLIENT_TYPING_MS - (int(time.time() * 1000) - event.sent_at_ms)
        conversation_id = await self._map.conversation_of(connection.id, event.chat_id)
        if left_ms <= 0 or conversation_id is None:
            return  # over already, or a client Kommo has no chat with yet
        command = events_pb2.TypingInKommo(
            scope_id=connection.scope_id,
            conversation_id=conversation_id,
            sender_id=client_id,
            duration_ms=min(left_ms, CLIENT_TYPING_MS),
        )
        await self._publisher.publish(Stream.KOMMO_COMMANDS, conversation_id, command, f"kommo-typing:{event.event_id}")
