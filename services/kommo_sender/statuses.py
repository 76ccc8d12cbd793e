"""Delivery statuses into Kommo, only ever forward.

Ranks: sent < failed < delivered < read. A report that would not raise the rank (a late "delivered"
after "read", a duplicate, a stale failure after delivery) is dropped; a success after a failure (a
retry that worked) still moves forward. The rank update and the amojo call share one transaction, so
a failed call leaves the status where it was and the redelivered report tries again.
"""

from __future__ import annotations

import logging

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery
from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient

log = logging.getLogger(__name__)

RANK = {
    events_pb2.DELIVERY_STATE_SENT: 1,
    events_pb2.DELIVERY_STATE_FAILED: 2,
    events_pb2.DELIVERY_STATE_DELIVERED: 3,
    events_pb2.DELIVERY_STATE_READ: 4,
}
# amojo delivery_status values.
KOMMO_STATUS = {
    events_pb2.DELIVERY_STATE_DELIVERED: 1,
    events_pb2.DELIVERY_STATE_READ: 2,
    events_pb2.DELIVERY_STATE_FAILED: -1,
}
KOMMO_OTHER_ERROR = 905
# Kommo shows `error` to the manager and requires it with 905; never send an empty one.
FALLBACK_ERROR_TEXT = "The message could not be delivered."

_ADVANCE = text(
    """
    INSERT INTO kommo_statuses (kommo_msgid, scope_id, state, error_code)
    VALUES (:kommo_msgid, :scope_id, :state, :error_code)
    ON CONFLICT (kommo_msgid) DO UPDATE
        SET state = excluded.state, error_code = excluded.error_code, updated_at = now()
        WHERE kommo_statuses.state < excluded.state
    RETURNING kommo_msgid
    """
)


class StatusReporter:
    def __init__(self, engine: AsyncEngine, amojo: AmojoClient) -> None:
        self._engine = engine
        self._amojo = amojo

    async def handle(self, delivery: Delivery) -> None:
        report = delivery.decode(events_pb2.DeliveryReport)
        rank = RANK.get(report.state)
        if rank is None:
            raise BadRequestError(f"delivery report without a state for {report.kommo_message_id}")
        error_code = report.error_code or (KOMMO_OTHER_ERROR if report.state == events_pb2.DELIVERY_STATE_FAILED else 0)
        async with self._engine.begin() as conn:
            advanced = (
                await conn.execute(
                    _ADVANCE,
                    {
                        "kommo_msgid": report.kommo_message_id,
                        "scope_id": report.scope_id,
                        "state": rank,
                        "error_code": error_code,
                    },
                )
            ).first()
            if advanced is None:
                log.info(
                    "status not forward, dropped",
                    extra={"kommo_message_id": report.kommo_message_id, "state": report.state},
                )
                return
            if report.state == events_pb2.DELIVERY_STATE_SENT:
                return  # Kommo's default; nothing to post.
            await self._amojo.delivery_status(
                report.scope_id,
                report.kommo_message_id,
                KOMMO_STATUS[report.state],
                error_code=error_code if report.state == events_pb2.DELIVERY_STATE_FAILED else 0,
                error=(report.error_text or FALLBACK_ERROR_TEXT)
                if report.state == events_pb2.DELIVERY_STATE_FAILED
                else "",
            )
        log.info("status posted", extra={"kommo_message_id": report.kommo_message_id, "state": report.state})
