"""Kommo accounts the chat channel is connected to (amojo `connect` gives each its scope_id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import installations
from libs.errors import NotFoundError


@dataclass(frozen=True)
class Installation:
    account_id: str
    scope_id: str
    title: str
    state: str
    connected_at: datetime


def _from_row(row: Row[tuple[str, str, str, str, datetime]]) -> Installation:
    return Installation(row.account_id, row.scope_id, row.title, row.state, row.connected_at)


class InstallationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(self, account_id: str, scope_id: str, title: str) -> Installation:
        statement = (
            insert(installations)
            .values(account_id=account_id, scope_id=scope_id, title=title, state="active")
            .on_conflict_do_update(
                index_elements=[installations.c.account_id],
                set_={"scope_id": scope_id, "title": title, "state": "active", "connected_at": func.now()},
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        return await self.by_account(account_id)

    async def _one(self, where: object) -> Installation:
        columns = [installations.c[name] for name in ("account_id", "scope_id", "title", "state", "connected_at")]
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*columns).where(where))).first()  # type: ignore[arg-type]
        if row is None:
            raise NotFoundError("no such Kommo installation")
        return _from_row(row)

    async def by_account(self, account_id: str) -> Installation:
        return await self._one(installations.c.account_id == account_id)

    async def by_scope(self, scope_id: str) -> Installation:
        return await self._one(installations.c.scope_id == scope_id)

    async def all(self) -> list[Installation]:
        columns = [installations.c[name] for name in ("account_id", "scope_id", "title", "state", "connected_at")]
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*columns).order_by(installations.c.connected_at))).all()
        return [_from_row(row) for row in rows]
