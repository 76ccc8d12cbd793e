"""What happened to each manager message at the messenger; the idempotency record of this hop.

A send is claimed ("sending") before the platform is called and settled ("sent" / "failed") after.
Messengers take no idempotency key, so a claim found unsettled means a sender died mid-call: whether
the client got the message cannot be known, and sending again could show it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import messenger_deliveries

SENDING = "sending"


@dataclass(frozen=True)
class Outcome:
    kommo_message_id: str
    connection_id: str
    outcome: str  # "sending" (claimed, not settled), "sent" or "failed"
    platform_message_id: str = ""
    error_code: int = 0
    error_text: str = ""
    reason: str = ""  # a key of libs.status_texts, with its arguments
    reason_args: Mapping[str, str] = field(default_factory=dict)


class OutcomeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find(self, kommo_message_id: str) -> Outcome | None:
        columns = [messenger_deliveries.c[name] for name in Outcome.__dataclass_fields__]
        query = select(*columns).where(messenger_deliveries.c.kommo_message_id == kommo_message_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return Outcome(**{name: getattr(row, name) for name in Outcome.__dataclass_fields__})

    async def claim(self, kommo_message_id: str, connection_id: str) -> Outcome | None:
        """Claim the send; None when it is ours, else what an earlier attempt left (maybe "sending")."""
        statement = (
            insert(messenger_deliveries)
            .values(kommo_message_id=kommo_message_id, connection_id=connection_id, outcome=SENDING)
            .on_conflict_do_nothing()
            .returning(messenger_deliveries.c.kommo_message_id)
        )
        async with self._engine.begin() as conn:
            if (await conn.execute(statement)).first() is not None:
                return None
        return await self.find(kommo_message_id)

    async def release(self, kommo_message_id: str) -> None:
        """The platform did not take the message (or the call will be retried): unclaim it."""
        where = (messenger_deliveries.c.kommo_message_id == kommo_message_id) & (
            messenger_deliveries.c.outcome == SENDING
        )
        async with self._engine.begin() as conn:
            await conn.execute(delete(messenger_deliveries).where(where))

    async def save(self, outcome: Outcome) -> None:
        """Settle a claim; a settled outcome is never overwritten."""
        values = {name: getattr(outcome, name) for name in Outcome.__dataclass_fields__}
        statement = (
            insert(messenger_deliveries)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[messenger_deliveries.c.kommo_message_id],
                set_={key: value for key, value in values.items() if key != "kommo_message_id"},
                where=messenger_deliveries.c.outcome == SENDING,
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
