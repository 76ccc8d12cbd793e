"""Kommo's "write first": a manager starts a conversation from Kommo, naming the client by phone only.

The hook has no `conversation.client_id` (no conversation of ours yet), `receiver.phone` is the number the
manager chose and `receiver.id` Kommo's id of the client (§9). The conversation is opened on a channel of
the account that can write first (a registry capability: WhatsApp can, Telegram bots cannot): the channel
whose Kommo source is the hook's `source.external_id` (or whose number id it is), else the account's first
active such channel, oldest connected first. Its chat id and client id are the platform's for that phone
(WhatsApp: the wa_id digits), the same its webhooks give when the client answers, so the answer finds this
conversation. Kommo's chat id and client id are kept with it: the client's first message to Kommo names
them (`conversation_ref_id`, `sender.ref_id`) and lands in the chat the manager opened. A number already
known as a client's (services/router/identities.py: they first wrote by BSUID, or changed to this number)
opens their existing conversation instead.
"""

from __future__ import annotations

import logging

from kommo_bridge.events.v1 import events_pb2

from libs.messengers.registry import WriteFirst, adapter_named, write_first_chat
from services.router.connections import ACTIVE, DISCONNECTED, ConnectionRecord, ConnectionStore
from services.router.conversations import ConversationStore
from services.router.identities import IdentityStore
from services.router.inbound import client_id_for

log = logging.getLogger(__name__)


def can_write_first(connection: ConnectionRecord) -> bool:
    return isinstance(adapter_named(connection.platform), WriteFirst)


def channel_for(connections: list[ConnectionRecord], source_external_id: str) -> ConnectionRecord | None:
    """The channel a write-first hook goes out on (see the module's note); None when the account has none
    that can write first, or the hook's source names one that cannot."""
    live = [c for c in connections if c.state != DISCONNECTED]
    if source_external_id:
        named = [c for c in live if source_external_id in (c.source_external_id, c.external_id)]
        if named:
            return named[0] if can_write_first(named[0]) else None
    return next((c for c in live if c.state == ACTIVE and can_write_first(c)), None)


class WriteFirstOpener:
    def __init__(self, connections: ConnectionStore, conversations: ConversationStore) -> None:
        self._connections = connections
        self._conversations = conversations
        self._identities = IdentityStore(conversations.engine)

    async def open(self, event: events_pb2.KommoOutboundMessage) -> str | None:
        """The conversation a write-first hook opens (found again for a second hook of the same chat);
        None when no channel of the account can write to `receiver.phone`."""
        connection = channel_for(await self._connections.in_scope(event.scope_id), event.source_external_id)
        if connection is None:
            return None
        chat_id = write_first_chat(adapter_named(connection.platform), event.receiver_phone)
        if chat_id is None:
            return None
        chat_id = await self._identities.chat_of(connection.id, chat_id) or chat_id
        conversation_id = await self._conversations.open_by_business(
            connection_id=connection.id,
            chat_id=chat_id,
            client_id=client_id_for(connection.id, chat_id),
            kommo_chat_id=event.kommo_chat_id,
            kommo_client_id=event.receiver_kommo_id,
        )
        log.info(
            "conversation opened by write first",
            extra={
                "conversation_id": conversation_id,
                "connection_id": connection.id,
                "kommo_chat_id": event.kommo_chat_id,
            },
        )
        return conversation_id
