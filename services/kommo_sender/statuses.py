"""Delivery statuses into Kommo, only ever forward, in words the account's managers read.

Ranks: sent < failed < delivered < read. Only a report that raises the rank is posted; the rank is all
that counts, never the order reports arrive in or the time they carry, so a late "delivered" after
"read", a duplicate, or a failure after delivery changes nothing at Kommo. A success after a failure (a
retry that worked) still moves forward. Every report, posted or not, is recorded in `delivery_events`,
the message's history; a failure that arrives after delivery is also logged and counted, since the
client did get the message and the manager never sees it step back.

One failure is posted after delivery: a manager's edit the messenger refused (`edit_refused`, WhatsApp
lets no business edit). The text Kommo now shows is not what the client has and never will be, so Kommo
marks the message failed with the reason, and that error is terminal like any other: a later "delivered"
or "read" of the original text is recorded, never posted over it.

The rank update, the history row and the amojo call share one transaction: a failed call leaves
everything as it was and the redelivered report tries again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery
from libs.db.schema import delivery_events, kommo_statuses
from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient
from libs.observability import count_late_failure
from libs.status_texts import code_of, render
from services.kommo_sender.languages import AccountLanguages

log = logging.getLogger(__name__)

NOTHING_YET = 0
RANK = {
    events_pb2.DELIVERY_STATE_SENT: 1,
    events_pb2.DELIVERY_STATE_FAILED: 2,
    events_pb2.DELIVERY_STATE_DELIVERED: 3,
    events_pb2.DELIVERY_STATE_READ: 4,
}
EDIT_REFUSED_RANK = 5
"""Above every delivery state: the refused edit is the last word on the message (see the module's note)."""
STATE_NAMES = {
    events_pb2.DELIVERY_STATE_SENT: "sent",
    events_pb2.DELIVERY_STATE_FAILED: "failed",
    events_pb2.DELIVERY_STATE_DELIVERED: "delivered",
    events_pb2.DELIVERY_STATE_READ: "read",
}
# amojo delivery_status values.
KOMMO_STATUS = {
    events_pb2.DELIVERY_STATE_DELIVERED: 1,
    events_pb2.DELIVERY_STATE_READ: 2,
    events_pb2.DELIVERY_STATE_FAILED: -1,
}


class StatusReporter:
    def __init__(self, engine: AsyncEngine, amojo: AmojoClient, languages: AccountLanguages) -> None:
        self._engine = engine
        self._amojo = amojo
        self._languages = languages

    async def handle(self, delivery: Delivery) -> None:
        report = delivery.decode(events_pb2.DeliveryReport)
        rank = EDIT_REFUSED_RANK if report.edit_refused else RANK.get(report.state)
        if rank is None:
            raise BadRequestError(f"delivery report without a state for {report.kommo_message_id}")
        failed = report.state == events_pb2.DELIVERY_STATE_FAILED
        # A reason the catalogue knows decides the code, so the code always matches the text.
        error_code = code_of(report.reason, report.error_code) if failed else 0
        text = ""
        if failed:  # looked up outside the transaction: no row stays locked during a gRPC call
            language = await self._languages.of(report.scope_id)
            text = render(report.reason, report.reason_args, language, fallback=report.error_text)
        key = kommo_statuses.c.kommo_msgid == report.kommo_message_id

        async with self._engine.begin() as conn:
            await conn.execute(
                insert(kommo_statuses)
                .values(kommo_msgid=report.kommo_message_id, scope_id=report.scope_id, state=NOTHING_YET)
                .on_conflict_do_nothing()
            )
            current = (await conn.execute(select(kommo_statuses.c.state).where(key).with_for_update())).scalar_one()
            forward = rank > current
            posted = forward and report.state != events_pb2.DELIVERY_STATE_SENT  # "sent" is Kommo's default
            if forward:
                await conn.execute(
                    update(kommo_statuses).where(key).values(state=rank, error_code=error_code, updated_at=func.now())
                )
            await conn.execute(
                delivery_events.insert().values(
                    kommo_msgid=report.kommo_message_id,
                    scope_id=report.scope_id,
                    state=STATE_NAMES[report.state],
                    error_code=error_code,
                    reason=report.reason[:64],
                    occurred_at=_occurred_at(report),
                    posted=posted,
                )
            )
            if posted:
                await self._amojo.delivery_status(
                    report.scope_id,
                    report.kommo_message_id,
                    KOMMO_STATUS[report.state],
                    error_code=error_code,
                    error=text,
                )

        facts: dict[str, object] = {"kommo_message_id": report.kommo_message_id, "state": STATE_NAMES[report.state]}
        if failed:
            facts |= {"error_code": error_code, "reason": report.reason, "edit_refused": report.edit_refused}
        if posted:
            log.info("status posted", extra=facts)
        elif failed and RANK[events_pb2.DELIVERY_STATE_DELIVERED] <= current < EDIT_REFUSED_RANK:
            count_late_failure()
            log.warning("failure after delivery: recorded, not posted as a step back", extra=facts)
        elif not forward:
            log.info("status not forward, recorded only", extra=facts)


def _occurred_at(report: events_pb2.DeliveryReport) -> datetime:
    """When the platform says it happened (history only: it never orders statuses), else now."""
    if report.occurred_at_ms > 0:
        return datetime.fromtimestamp(report.occurred_at_ms / 1000, UTC)
    return datetime.now(UTC)
