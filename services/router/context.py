"""What both routing directions work with: connections, conversations, and the bus."""

from __future__ import annotations

from dataclasses import dataclass

from libs.bus import Publisher
from libs.runtime import TtlCache
from services.router.connections import ConnectionRecord
from services.router.conversations import ConversationStore


@dataclass(frozen=True)
class RoutingContext:
    connections: TtlCache[str, ConnectionRecord]
    conversations: ConversationStore
    publisher: Publisher
    # Kommo ids of the channel's bot: its messages reach clients with the channel's robot label.
    robot_ids: frozenset[str] = frozenset()
