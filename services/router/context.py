"""What both routing directions work with: connections, conversations, and the bus."""

from __future__ import annotations

from dataclasses import dataclass

from libs.bus import Publisher
from libs.runtime import TtlCache
from services.router.connections import ConnectionRecord, ConnectionStore
from services.router.conversations import ConversationStore
from services.router.message_map import MessageMap
from services.router.pausing import ChannelLot


@dataclass(frozen=True)
class RoutingContext:
    connections: TtlCache[str, ConnectionRecord]
    conversations: ConversationStore
    publisher: Publisher
    # Paused channels: their client events wait here, their managers' replies are refused.
    pauses: ChannelLot
    # Each message as both sides know it: quotes, edits and reactions name their target through it.
    message_map: MessageMap
    # Every channel, read afresh (write first picks one of an account's channels).
    channels: ConnectionStore
    # Kommo ids of the channel's bot: its messages reach clients with the channel's robot label.
    robot_ids: frozenset[str] = frozenset()
