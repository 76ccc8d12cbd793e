"""What happened to each manager message at the messenger; the idempotency record of this hop."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import messenger_deliveries


@dataclass(frozen=True)
class Outcome:
    kommo_message_id: str
    connection_id: str
    outcome: str  # "sent" or "failed"
    platform_message_id: str = ""
    error_code: int = 0
    error_text: str = ""


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

    async def save(self, outcome: Outcome) -> None:
        values = {name: getattr(outcome, name) for name in Outcome.__dataclass_fields__}
        async with self._engine.begin() as conn:
            await conn.execute(insert(messenger_deliveries).values(**values).on_conflict_do_nothing())
