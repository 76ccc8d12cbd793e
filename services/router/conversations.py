"""Conversations and the messages carried in them, both directions (the router owns these tables).

Each write is one transaction keyed by unique constraints, so concurrent first messages of a new
client, platform retries and bus redeliveries all land on the same conversation and message rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.db.schema import conversations, messages
from libs.errors import NotFoundError


@dataclass(frozen=True)
class Recorded:
    conversation_id: str
    message_id: str
    # False when this message was seen before (a retry or redelivery).
    first_time: bool


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    connection_id: str
    chat_id: str
    client_id: str


async def _record_message(
    conn: AsyncConnection, conversation_id: str, direction: str, dedup_key: str, **fields: Any
) -> tuple[str, bool]:
    new_id = str(uuid.uuid4())
    inserted = (
        await conn.execute(
            insert(messages)
            .values(id=new_id, conversation_id=conversation_id, direction=direction, dedup_key=dedup_key, **fields)
            .on_conflict_do_nothing(index_elements=[messages.c.dedup_key])
            .returning(messages.c.id)
        )
    ).first()
    if inserted is not None:
        return new_id, True
    existing = (await conn.execute(select(messages.c.id).where(messages.c.dedup_key == dedup_key))).one()
    return str(existing.id), False


class ConversationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record_inbound(
        self,
        *,
        connection_id: str,
        chat_id: str,
        client_id: str,
        profile: dict[str, str],
        dedup_key: str,
        platform_message_id: str,
    ) -> Recorded:
        """Find or create the client's conversation and record the message, exactly once."""
        upsert = (
            insert(conversations)
            .values(
                id=str(uuid.uuid4()), connection_id=connection_id, chat_id=chat_id, client_id=client_id, profile=profile
            )
            .on_conflict_do_update(
                constraint="uq_conversations_connection_chat",
                set_={"profile": profile, "last_message_at": func.now()},
            )
            .returning(conversations.c.id)
        )
        async with self._engine.begin() as conn:
            conversation_id = str((await conn.execute(upsert)).one().id)
            message_id, first = await _record_message(
                conn, conversation_id, "in", dedup_key, platform_message_id=platform_message_id
            )
        return Recorded(conversation_id, message_id, first)

    async def record_outbound(self, *, conversation_id: str, kommo_message_id: str) -> tuple[ConversationRecord, bool]:
        """Resolve a manager message's conversation and record the message, exactly once."""
        columns = [conversations.c[name] for name in ("id", "connection_id", "chat_id", "client_id")]
        async with self._engine.begin() as conn:
            row = (await conn.execute(select(*columns).where(conversations.c.id == conversation_id))).first()
            if row is None:
                raise NotFoundError(f"no conversation {conversation_id}")
            _, first = await _record_message(
                conn, conversation_id, "out", f"kommo:{kommo_message_id}", kommo_message_id=kommo_message_id
            )
            await conn.execute(
                conversations.update().where(conversations.c.id == conversation_id).values(last_message_at=func.now())
            )
        return ConversationRecord(row.id, row.connection_id, row.chat_id, row.client_id), first
