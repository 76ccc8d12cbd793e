"""Kommo → client: a manager's message becomes a command for messenger_sender, in conversation order
(an album's items wait to go as one, and the conversation's later events wait behind them:
services/router/albums.py)."""

from __future__ import annotations

import logging
from functools import partial

from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.bus import KEY_HEADER, Delivery, Stream
from libs.bus.publisher import MSG_ID_HEADER
from libs.errors import NotFoundError
from libs.kommo.hooks import content_digest, hook_msg_id
from libs.messengers.registry import adapter_named
from services.router.albums import Albums
from services.router.connections import DISCONNECTED
from services.router.context import RoutingContext
from services.router.manager_actions import ManagerActions
from services.router.reports import report_failure
from services.router.reviewed_templates import ReviewedTemplates
from services.router.service_window import ServiceWindows
from services.router.settings import labelled
from services.router.write_first import WriteFirstOpener

log = logging.getLogger(__name__)

# Why a conversation was closed (conversations.closed_reason) -> what the manager reads.
CLOSED_REASONS = {"blocked": status_texts.CLIENT_BLOCKED, "left": status_texts.CLIENT_LEFT}


class OutboundRouter:
    def __init__(self, context: RoutingContext, albums: Albums) -> None:
        self._connections = context.connections
        self._conversations = context.conversations
        self._publisher = context.publisher
        self._robot_ids = context.robot_ids
        self._pauses = context.pauses
        self._albums = albums
        self._manager_actions = ManagerActions(context)
        self._windows = ServiceWindows(context.conversations)
        self._write_first = WriteFirstOpener(context.channels, context.conversations)
        self._reviewed_templates = ReviewedTemplates(context.conversations.engine)

    async def handle(self, delivery: Delivery) -> None:
        """Route a manager's message, or hold it in the album lot while an album of its conversation is
        pending (an item of that album joins it)."""
        event = delivery.decode(events_pb2.KommoOutboundMessage)
        await self._reviewed_templates.resolve(event)  # a template Kommo names by its own id only
        if not event.conversation_id:
            # Write first: a manager starts the conversation from Kommo (services/router/write_first.py).
            opened = await self._write_first.open(event)
            if opened is None:
                await report_failure(
                    self._publisher,
                    event.scope_id,
                    event.kommo_message_id,
                    status_texts.WRITE_FIRST_UNSUPPORTED,
                )
                return
            event.conversation_id = opened
        key = delivery.headers.get(KEY_HEADER) or event.conversation_id
        msg_id = delivery.headers.get(MSG_ID_HEADER) or hook_msg_id(event)

        async def work() -> None:
            await self._route(event, delivery.attempt)

        await self._albums.lot.through(delivery, event.conversation_id, key, msg_id, work, album=event.media_group_id)

    async def reaction(self, delivery: Delivery) -> None:
        """A manager's reaction, in its conversation's order (it may name an item of a pending album)."""
        event = delivery.decode(events_pb2.KommoReaction)
        if not event.conversation_id:
            await self._manager_actions.reaction(delivery)
            return
        key = delivery.headers.get(KEY_HEADER) or event.conversation_id
        msg_id = delivery.headers.get(MSG_ID_HEADER) or event.event_id
        await self._albums.lot.through(
            delivery, event.conversation_id, key, msg_id, partial(self._manager_actions.reaction, delivery)
        )

    async def typing(self, delivery: Delivery) -> None:
        """Typing is news only now: never held behind an album, never released late."""
        event = delivery.decode(events_pb2.KommoTyping)
        if event.conversation_id and await self._albums.lot.must_wait(event.conversation_id):
            return
        await self._manager_actions.typing(delivery)

    async def _route(self, event: events_pb2.KommoOutboundMessage, attempt: int) -> None:
        digest = content_digest(event.content)
        try:
            conversation, first = await self._conversations.record_outbound(
                conversation_id=event.conversation_id, kommo_message_id=event.kommo_message_id, content_digest=digest
            )
        except NotFoundError:
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                status_texts.UNKNOWN_CONVERSATION,
            )
            return
        connection = await self._connections.get(conversation.connection_id)
        if not first and await self._manager_actions.changed(event, conversation, connection, digest, attempt):
            return  # the hook of a message already carried, with other content: an edit of it
        if connection.state != DISCONNECTED and await self._pauses.paused(connection.id):
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                status_texts.CHANNEL_PAUSED,
                {"channel": connection.display_name or connection.platform},
            )
            return
        if connection.state == DISCONNECTED:
            await report_failure(
                self._publisher,
                event.scope_id,
                event.kommo_message_id,
                status_texts.CHANNEL_DISCONNECTED,
                {"channel": connection.display_name or connection.platform},
            )
            return
        if conversation.state == "closed":
            # The platforms forbid writing to a client who blocked the bot or left; never try.
            reason = CLOSED_REASONS.get(conversation.closed_reason, status_texts.CONVERSATION_CLOSED)
            await report_failure(self._publisher, event.scope_id, event.kommo_message_id, reason)
            return
        adapter = adapter_named(connection.platform)
        opened_by_business = bool(conversation.kommo_chat_ref)
        if await self._windows.closed_for(
            adapter, conversation.id, event.content, opened_by_business=opened_by_business
        ):
            reason_args = {"platform": adapter.name}
            await report_failure(
                self._publisher, event.scope_id, event.kommo_message_id, status_texts.WINDOW_CLOSED, reason_args
            )
            log.info("outside the service window: not sent", extra={"conversation_id": conversation.id})
            return
        from_robot = bool(event.sender_kommo_id) and event.sender_kommo_id in self._robot_ids
        command = events_pb2.DeliverToMessenger(
            kommo_message_id=event.kommo_message_id,
            scope_id=event.scope_id,
            platform=adapter.platform,
            connection_id=connection.id,
            chat_id=conversation.address,  # the client's current address (identities.py)
            conversation_id=conversation.id,
            content=labelled(event.content, connection.robot_label) if from_robot else event.content,
            from_robot=from_robot,
            reply_to_platform_message_id=await self._manager_actions.reply_target(conversation.id, event),
            media_group_id=event.media_group_id,
        )
        if event.media_group_id:
            await self._albums.add(command)  # sent with the rest of its album
            log.info(
                "album item recorded",
                extra={"conversation_id": conversation.id, "kommo_message_id": event.kommo_message_id},
            )
            return
        await self._publisher.publish(
            Stream.MESSENGER_COMMANDS, conversation.id, command, f"messenger:{event.kommo_message_id}"
        )
        log.info(
            "outbound routed",
            extra={"conversation_id": conversation.id, "kommo_message_id": event.kommo_message_id, "first_time": first},
        )
