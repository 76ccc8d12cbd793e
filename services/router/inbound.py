"""Client → Kommo: a messenger event becomes commands for kommo_sender, in conversation order."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict, ParseDict
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.bus import KEY_HEADER, Delivery, Stream
from libs.errors import PermanentError
from libs.messengers.registry import ClientAliases, adapter_named
from services.router.client_actions import ClientActions
from services.router.connections import DISCONNECTED, ConnectionRecord
from services.router.context import RoutingContext
from services.router.identities import ClientIds, IdentityStore
from services.router.receipts import Receipts
from services.router.settings import contact_rule, source_spec
from services.router.templates import TemplateMirror

log = logging.getLogger(__name__)

CLOSE_REASONS = {events_pb2.CLOSE_REASON_BLOCKED: "blocked", events_pb2.CLOSE_REASON_LEFT: "left"}


def client_id_for(connection_id: str, sender_id: str) -> str:
    """Our stable id of a client at Kommo (`sender.id`): unique per channel and platform user."""
    return f"{connection_id}:{sender_id}"


class InboundRouter:
    def __init__(self, context: RoutingContext, templates: TemplateMirror | None = None) -> None:
        self._templates = templates
        self._connections = context.connections
        self._conversations = context.conversations
        self._publisher = context.publisher
        self._pauses = context.pauses
        self._client_actions = ClientActions(context.publisher, context.message_map)
        self._receipts = Receipts(context.publisher, context.message_map)
        self._identities = IdentityStore(context.conversations.engine)

    async def handle(self, delivery: Delivery) -> None:
        """Route the event, or hold it in the pause lot while its channel is paused (or others wait)."""
        event = delivery.decode(events_pb2.InboundMessage)
        connection = await self._connections.get(event.connection_id)
        if event.WhichOneof("event") == "typing" and await self._pauses.must_wait(connection.id):
            return  # typing is news only now: never held, never released late
        key = delivery.headers.get(KEY_HEADER) or f"{connection.id}:{event.chat_id}"

        async def work() -> None:
            await self._route(event, connection, delivery.attempt)

        await self._pauses.through(delivery, connection.id, key, event.event_id, work)

    async def _route(self, event: events_pb2.InboundMessage, connection: ConnectionRecord, attempt: int = 1) -> None:
        if connection.state == DISCONNECTED:
            raise PermanentError(f"connection {connection.id} is {connection.state}")
        kind = event.WhichOneof("event")
        if kind != "template_status":
            await self._same_client(event, connection)
        if kind == "address_changed":
            log.info(
                "client's address changed",
                extra={"connection_id": connection.id, "chat_id": event.chat_id},
            )
            return
        if kind == "content":
            await self._message(event, connection, attempt)
        elif kind == "edited":
            await self._client_actions.edited(event, connection)
        elif kind == "reaction":
            client_id = client_id_for(connection.id, event.sender_id)
            await self._client_actions.reacted(event, connection, client_id, attempt)
        elif kind == "receipt":
            await self._receipts.receipt(event, connection, delivery_attempt=attempt)
        elif kind == "typing":
            await self._client_actions.typing(event, connection, client_id_for(connection.id, event.sender_id))
        elif kind == "closed":
            reason = CLOSE_REASONS.get(event.closed.reason, "left")
            found = await self._conversations.close(connection_id=connection.id, chat_id=event.chat_id, reason=reason)
            log.info("conversation closed by the client", extra={"conversation_id": found, "reason": reason})
        elif kind == "template_status":
            # Not a client's: the list read now holds the verdict, and every other template as it is.
            log.info(
                "template reviewed",
                extra={"connection_id": connection.id, "template": event.template_status.name,
                       "status": event.template_status.status},
            )  # fmt: skip
            if self._templates is not None:
                await self._templates.sync(connection)
        elif kind == "reopened":
            found = await self._conversations.reopen(connection_id=connection.id, chat_id=event.chat_id)
            log.info("conversation reopened by the client", extra={"conversation_id": found})
        else:
            raise PermanentError("inbound event carries nothing the router knows")

    async def _same_client(self, event: events_pb2.InboundMessage, connection: ConnectionRecord) -> None:
        """Name the client by the chat id their conversation was opened with, whichever of their ids (a phone
        number, a BSUID, a new number) this event gives (services/router/identities.py)."""
        adapter = adapter_named(connection.platform)
        if not isinstance(adapter, ClientAliases) or not event.chat_id:
            return
        address, user_id = adapter.client_ids(event)
        new_address = event.address_changed.new_chat_id if event.WhichOneof("event") == "address_changed" else ""
        chat_id = await self._identities.resolve(connection.id, ClientIds(address, user_id, new_address))
        if event.sender_id == event.chat_id:
            event.sender_id = chat_id
        event.chat_id = chat_id

    async def _message(self, event: events_pb2.InboundMessage, connection: ConnectionRecord, attempt: int) -> None:
        client_id = client_id_for(connection.id, event.sender_id)
        # Before anything is recorded: waiting for a quoted message to be mapped retries all of this.
        reply_to, content = await self._client_actions.quote(event, connection, attempt)
        recorded = await self._conversations.record_inbound(
            connection_id=connection.id,
            chat_id=event.chat_id,
            client_id=client_id,
            profile=MessageToDict(event.sender),
            dedup_key=event.event_id,
            platform_message_id=event.platform_message_id,
            sent_at=datetime.fromtimestamp(event.sent_at_ms / 1000, UTC) if event.sent_at_ms > 0 else None,
        )
        profile = ParseDict(recorded.profile, content_pb2.Profile(), ignore_unknown_fields=True)
        command = events_pb2.DeliverToKommo(
            msgid=recorded.message_id,
            scope_id=connection.scope_id,
            conversation_id=recorded.conversation_id,
            source_external_id=connection.source_external_id,
            sender_id=client_id,
            sender=profile,
            sent_at_ms=event.sent_at_ms,
            content=content,
            platform=event.platform,
            source=source_spec(connection),
            contact_rule=contact_rule(connection),
            connection_id=connection.id,
            reply_to=reply_to,
            media_group_id=event.media_group_id,
            # A conversation a manager opened by write first: kommo_sender binds Kommo's chat with these.
            conversation_ref_id=recorded.kommo_chat_ref,
            sender_ref_id=recorded.kommo_client_ref,
        )
        # Published again on a redelivery: the Nats-Msg-Id and kommo_sender's own idempotency key
        # make that harmless, and it covers a crash between the commit above and this publish.
        await self._publisher.publish(
            Stream.KOMMO_COMMANDS, recorded.conversation_id, command, f"kommo:{recorded.message_id}"
        )
        if recorded.contact_changed and connection.update_profiles:
            update = events_pb2.UpdateContactProfile(
                update_id=recorded.message_id,
                scope_id=connection.scope_id,
                conversation_id=recorded.conversation_id,
                profile=profile,
            )
            # In the CRM lanes: it waits for a REST slot (and for the contact Kommo makes from the first
            # message) without holding up anyone's messages.
            await self._publisher.publish(
                Stream.CRM_COMMANDS, recorded.conversation_id, update, f"profile:{recorded.message_id}"
            )
        log.info(
            "inbound routed",
            extra={
                "conversation_id": recorded.conversation_id,
                "message_id": recorded.message_id,
                "first_time": recorded.first_time,
                "reopened": recorded.reopened,
            },
        )
