"""A platform's receipts for manager messages (WhatsApp statuses: sent, delivered, read, failed) become
delivery reports for Kommo.

The receipt names the message by the platform's id; the message map gives Kommo's. A receipt may come
before messenger_sender's report that maps that id (Meta's "sent" often overtakes it), so it waits for
the mapping briefly, like a quote does. The reports go to kommo_sender, which posts only what moves a
message forward: receipts arriving out of order or twice change nothing there, and a failure after a
200 (WhatsApp's 131047 outside the window) ends as an error with the reason's text.
"""

from __future__ import annotations

import logging

from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.bus import Publisher, Stream
from services.router.connections import ConnectionRecord
from services.router.message_map import MessageMap, wait_for_target

log = logging.getLogger(__name__)


class Receipts:
    def __init__(self, publisher: Publisher, message_map: MessageMap) -> None:
        self._publisher = publisher
        self._map = message_map

    async def receipt(
        self, event: events_pb2.InboundMessage, connection: ConnectionRecord, delivery_attempt: int
    ) -> None:
        receipt = event.receipt
        context = {"connection_id": connection.id, "event_id": event.event_id}
        conversation_id = await self._map.conversation_of(connection.id, event.chat_id)
        # Asked before the lookup: a mapping that lands between the two is then either found or pending.
        pending = conversation_id is not None and await self._map.report_pending(conversation_id)
        target = (
            await self._map.by_platform_id(conversation_id, receipt.platform_message_id) if conversation_id else None
        )
        if conversation_id is None or target is None or target.direction != "out" or not target.kommo_message_id:
            wait_for_target(delivery_attempt, "platform receipt", pending=pending, **context)
            return
        report = events_pb2.DeliveryReport(
            kommo_message_id=target.kommo_message_id,
            scope_id=connection.scope_id,
            state=receipt.state,
            platform_message_id=receipt.platform_message_id,
            occurred_at_ms=event.sent_at_ms,
            conversation_id=conversation_id,
        )
        if receipt.state == events_pb2.DELIVERY_STATE_FAILED:
            reason = receipt.reason or status_texts.UNDELIVERED
            report.reason = reason
            report.reason_args.update(receipt.reason_args)
            report.error_code = status_texts.code_of(reason)
            report.error_text = receipt.error_text or status_texts.render(
                reason, dict(receipt.reason_args), status_texts.DEFAULT_LANGUAGE
            )
        await self._publisher.publish(Stream.REPORTS, target.kommo_message_id, report, f"receipt:{event.event_id}")
        log.info(
            "platform receipt routed",
            extra={**context, "kommo_message_id": target.kommo_message_id, "state": receipt.state},
        )
