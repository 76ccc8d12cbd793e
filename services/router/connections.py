"""Messenger channels connected to Kommo accounts (the router owns this table)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import connections, conversations, messages
from libs.errors import ConflictError, NotFoundError

ACTIVE, PAUSED, DISCONNECTED = "active", "paused", "disconnected"


@dataclass(frozen=True)
class ConnectionRecord:
    id: str
    account_id: str
    scope_id: str
    platform: str
    external_id: str
    display_name: str
    source_external_id: str
    state: str
    created_at: datetime
    source_name: str
    pipeline_id: int
    contact_rule: str
    update_profiles: bool
    robot_label: str
    paused_at: datetime | None


@dataclass(frozen=True)
class ConnectionStats:
    conversations: int
    last_message_at: datetime | None
    closed_conversations: int
    messages_today: int


_COLUMNS = [connections.c[name] for name in ConnectionRecord.__dataclass_fields__]


def _record(row: Any) -> ConnectionRecord:
    return ConnectionRecord(**{name: getattr(row, name) for name in ConnectionRecord.__dataclass_fields__})


class ConnectionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def upsert(
        self,
        *,
        account_id: str,
        scope_id: str,
        platform: str,
        external_id: str,
        display_name: str,
        source_external_id: str,
    ) -> ConnectionRecord:
        """Connecting the same bot again keeps its id (so its webhook URL) and re-activates it."""
        statement = (
            insert(connections)
            .values(
                id=str(uuid.uuid4()),
                account_id=account_id,
                scope_id=scope_id,
                platform=platform,
                external_id=external_id,
                display_name=display_name,
                source_external_id=source_external_id,
                state="active",
            )
            .on_conflict_do_update(
                constraint="uq_connections_platform_external",
                set_={
                    "account_id": account_id,
                    "scope_id": scope_id,
                    "display_name": display_name,
                    "source_external_id": source_external_id,
                    "state": "active",
                    "paused_at": None,
                },
            )
            .returning(*_COLUMNS)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).one()
        return _record(row)

    async def get(self, connection_id: str) -> ConnectionRecord:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(connections.c.id == connection_id))).first()
        if row is None:
            raise NotFoundError(f"no connection {connection_id}", code="channel_not_found")
        return _record(row)

    async def in_scope(self, scope_id: str) -> list[ConnectionRecord]:
        """The channels of one Kommo account's chat channel connection (its `scope_id`), oldest first."""
        query = select(*_COLUMNS).where(connections.c.scope_id == scope_id).order_by(connections.c.created_at)
        async with self._engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def list(self, account_id: str = "") -> list[ConnectionRecord]:
        query = select(*_COLUMNS).order_by(connections.c.created_at)
        if account_id:
            query = query.where(connections.c.account_id == account_id)
        async with self._engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def set_state(self, connection_id: str, state: str) -> ConnectionRecord:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(connections).where(connections.c.id == connection_id).values(state=state)
            )
        if not result.rowcount:
            raise NotFoundError(f"no connection {connection_id}")
        return await self.get(connection_id)

    async def state(self, connection_id: str) -> str:
        """The state as stored now (not cached): "" for a connection that does not exist."""
        async with self._engine.connect() as conn:
            found = (await conn.execute(select(connections.c.state).where(connections.c.id == connection_id))).scalar()
        return str(found or "")

    async def pause(self, connection_id: str) -> ConnectionRecord:
        """active → paused (pausing a paused channel changes nothing); a removed channel cannot be."""
        return await self._move(connection_id, ACTIVE, PAUSED, paused_at=func.now())

    async def resume(self, connection_id: str) -> ConnectionRecord:
        """paused → active (resuming an active channel changes nothing)."""
        return await self._move(connection_id, PAUSED, ACTIVE, paused_at=None)

    async def _move(self, connection_id: str, source: str, target: str, **values: Any) -> ConnectionRecord:
        where = (connections.c.id == connection_id) & (connections.c.state == source)
        async with self._engine.begin() as conn:
            await conn.execute(update(connections).where(where).values(state=target, **values))
        record = await self.get(connection_id)
        if record.state != target:
            raise ConflictError(
                f"this channel was removed; add it again to {'pause' if target == PAUSED else 'resume'} it",
                code="channel_removed",
            )
        return record

    async def update_settings(self, connection_id: str, changes: dict[str, Any]) -> ConnectionRecord:
        if changes:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    update(connections).where(connections.c.id == connection_id).values(**changes)
                )
            if not result.rowcount:
                raise NotFoundError(f"no connection {connection_id}")
        return await self.get(connection_id)

    async def stats(self, connection_id: str) -> ConnectionStats:
        closed = func.count(conversations.c.id).filter(conversations.c.state == "closed")
        query = select(func.count(conversations.c.id), func.max(conversations.c.last_message_at), closed).where(
            conversations.c.connection_id == connection_id
        )
        today = (
            select(func.count(messages.c.id))
            .select_from(messages.join(conversations, messages.c.conversation_id == conversations.c.id))
            .where(
                conversations.c.connection_id == connection_id,
                messages.c.created_at >= func.date_trunc("day", func.now()),
            )
        )
        async with self._engine.connect() as conn:
            count, last, closed_count = (await conn.execute(query)).one()
            messages_today = (await conn.execute(today)).scalar()
        return ConnectionStats(int(count or 0), last, int(closed_count or 0), int(messages_today or 0))


__all__ = ["ACTIVE", "DISCONNECTED", "PAUSED", "ConnectionRecord", "ConnectionStats", "ConnectionStore", "messages"]
