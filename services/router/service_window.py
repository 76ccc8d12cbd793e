"""The customer-service window of platforms that take free text only for a while after the client's last
message (WhatsApp: 24 hours, then only an approved template).

Sending free text outside it would only earn a `failed` status (131047) after the platform took it, so
the router stops such a message before it is sent and reports it at once, in words that say a template is
needed. The window is measured from the client's newest message by the platform's clock, kept on the
conversation as each message is recorded; a client's message reopens it. A conversation with no recorded
client message (older than this record) is let through: the platform still says no if it must; but one a
manager opened from Kommo (write first) has no window until the client answers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kommo_bridge.events.v1 import content_pb2

from libs.messengers.registry import MessengerAdapter, service_window
from services.router.conversations import ConversationStore


class ServiceWindows:
    def __init__(self, conversations: ConversationStore) -> None:
        self._conversations = conversations

    async def closed_for(
        self,
        adapter: MessengerAdapter,
        conversation_id: str,
        content: content_pb2.Content,
        *,
        opened_by_business: bool = False,
    ) -> bool:
        """True when `content` may not go now: free text on a platform whose window has closed (or, in a
        conversation the business opened, not opened yet)."""
        window = service_window(adapter)
        if window is None or content.WhichOneof("body") in (None, "template"):
            return False  # an approved template is what may go outside the window
        client_wrote_at, _ = await self._conversations.client_message(conversation_id)
        if client_wrote_at is None:
            return opened_by_business
        return datetime.now(UTC) - client_wrote_at > window
