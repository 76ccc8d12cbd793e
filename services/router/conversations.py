"""Conversations and the messages carried in them, both directions (the router owns these tables).

Each write is one transaction keyed by unique constraints, so concurrent first messages of a new
client, platform retries and bus redeliveries all land on the same conversation and message rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.db.schema import conversations, messages
from libs.errors import NotFoundError
from services.router.identities import current_address

PROFILE_FIELDS = ("name", "username", "phone", "email", "avatarUrl", "profileLink", "language")
"""Profile keys as stored (protobuf JSON names). A field an event leaves empty keeps its known value:
Telegram, say, tells the phone only in the message where the client shares it."""
CONTACT_FIELDS = ("name", "phone", "email")
"""What the Kommo contact holds of a profile, so what a profile update carries there."""


def merged_profile(known: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    return {key: given.get(key) or known.get(key, "") for key in PROFILE_FIELDS if given.get(key) or known.get(key)}


@dataclass(frozen=True)
class Recorded:
    conversation_id: str
    message_id: str
    # False when this message was seen before (a retry or redelivery).
    first_time: bool
    # The profile with every field known so far (what Kommo should show).
    profile: dict[str, str]
    # The client's name, phone or e-mail differ from what was known before this message.
    contact_changed: bool
    # The conversation was closed (blocked, left) and this message opened it again.
    reopened: bool
    # Kommo's chat and client ids of a conversation a manager opened by write first ("" otherwise).
    kommo_chat_ref: str = ""
    kommo_client_ref: str = ""


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    connection_id: str
    chat_id: str
    client_id: str
    state: str
    closed_reason: str
    # Kommo's chat id when a manager opened the conversation by write first ("" otherwise).
    kommo_chat_ref: str
    # Where the client is written to now: `chat_id`, or their current number / platform user id when the
    # platform named them otherwise since (services/router/identities.py).
    address: str


def _record_columns() -> list[Any]:
    """The columns a ConversationRecord is read from: the row's, and the client's current address."""
    names = [name for name in ConversationRecord.__dataclass_fields__ if name != "address"]
    address = current_address(conversations.c.connection_id, conversations.c.chat_id).label("address")
    return [*(conversations.c[name] for name in names), address]


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

    @property
    def engine(self) -> AsyncEngine:
        """The database, shared with the client identities kept beside the conversations."""
        return self._engine

    async def record_inbound(
        self,
        *,
        connection_id: str,
        chat_id: str,
        client_id: str,
        profile: dict[str, str],
        dedup_key: str,
        platform_message_id: str,
        sent_at: datetime | None = None,
    ) -> Recorded:
        """Find or create the client's conversation, reopen it, record the message: exactly once.

        The row is locked as it is read, so the profile comparison and the reopening see the previous
        message's outcome even when replicas race on consecutive messages. The newest client message (by
        `sent_at`, the platform's time) is kept on the conversation: it opens a platform's service window.
        """
        async with self._engine.begin() as conn:
            # One statement finds or creates the row and locks it; the values returned are those
            # before this message (only last_message_at is touched), `created` tells a new row.
            find_or_create = (
                insert(conversations)
                .values(
                    id=str(uuid.uuid4()),
                    connection_id=connection_id,
                    chat_id=chat_id,
                    client_id=client_id,
                    profile=merged_profile({}, profile),
                )
                .on_conflict_do_update(
                    constraint="uq_conversations_connection_chat", set_={"last_message_at": func.now()}
                )
                .returning(
                    conversations.c.id,
                    conversations.c.profile,
                    conversations.c.state,
                    conversations.c.kommo_chat_ref,
                    conversations.c.kommo_client_ref,
                    literal_column("xmax = 0").label("created"),
                )
            )
            row = (await conn.execute(find_or_create)).one()
            conversation_id = str(row.id)
            message_id, first = await _record_message(
                conn, conversation_id, "in", dedup_key, platform_message_id=platform_message_id
            )
            known: dict[str, str] = dict(row.profile or {})
            merged = merged_profile(known, profile)
            changed = not row.created and first and any(merged.get(k) != known.get(k) for k in CONTACT_FIELDS)
            reopened = first and row.state == "closed"
            if first and sent_at is not None:
                newer = conversations.c.client_message_at.is_(None) | (conversations.c.client_message_at <= sent_at)
                await conn.execute(
                    conversations.update()
                    .where((conversations.c.id == conversation_id) & newer)
                    .values(client_message_at=sent_at, client_message_id=platform_message_id)
                )
            if merged != known or reopened:
                await conn.execute(
                    conversations.update()
                    .where(conversations.c.id == conversation_id)
                    .values(profile=merged, state="open", closed_reason="", closed_at=None)
                )
        return Recorded(
            conversation_id, message_id, first, merged, changed, reopened, row.kommo_chat_ref, row.kommo_client_ref
        )

    async def open_by_business(
        self, *, connection_id: str, chat_id: str, client_id: str, kommo_chat_id: str, kommo_client_id: str
    ) -> str:
        """Find or create the conversation a manager starts from Kommo (write first) and remember Kommo's chat
        and client ids, which the client's first message to Kommo names to land in that chat. A conversation
        that already has them keeps them: Kommo opens one chat per client and channel."""
        async with self._engine.begin() as conn:
            find_or_create = (
                insert(conversations)
                .values(
                    id=str(uuid.uuid4()),
                    connection_id=connection_id,
                    chat_id=chat_id,
                    client_id=client_id,
                    kommo_chat_ref=kommo_chat_id,
                    kommo_client_ref=kommo_client_id,
                )
                .on_conflict_do_update(
                    constraint="uq_conversations_connection_chat", set_={"last_message_at": func.now()}
                )
                .returning(conversations.c.id, conversations.c.kommo_chat_ref)
            )
            row = (await conn.execute(find_or_create)).one()
            if not row.kommo_chat_ref:
                await conn.execute(
                    conversations.update()
                    .where(conversations.c.id == row.id)
                    .values(kommo_chat_ref=kommo_chat_id, kommo_client_ref=kommo_client_id)
                )
        return str(row.id)

    async def close(self, *, connection_id: str, chat_id: str, reason: str) -> str | None:
        """Mark the client's conversation closed; None when the client never wrote (nothing to close)."""
        key = (conversations.c.connection_id == connection_id) & (conversations.c.chat_id == chat_id)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    conversations.update()
                    .where(key)
                    .values(state="closed", closed_reason=reason, closed_at=func.now())
                    .returning(conversations.c.id)
                )
            ).first()
        return str(row.id) if row is not None else None

    async def reopen(self, *, connection_id: str, chat_id: str) -> str | None:
        key = (conversations.c.connection_id == connection_id) & (conversations.c.chat_id == chat_id)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    conversations.update()
                    .where(key)
                    .values(state="open", closed_reason="", closed_at=None)
                    .returning(conversations.c.id)
                )
            ).first()
        return str(row.id) if row is not None else None

    async def client_message(self, conversation_id: str) -> tuple[datetime | None, str]:
        """When the client last wrote (the platform's time; None if never recorded) and that message's id."""
        query = select(conversations.c.client_message_at, conversations.c.client_message_id).where(
            conversations.c.id == conversation_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (None, "") if row is None else (row.client_message_at, str(row.client_message_id))

    async def find(self, conversation_id: str) -> ConversationRecord | None:
        columns = _record_columns()
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*columns).where(conversations.c.id == conversation_id))).first()
        if row is None:
            return None
        return ConversationRecord(**{name: getattr(row, name) for name in ConversationRecord.__dataclass_fields__})

    async def record_outbound(
        self, *, conversation_id: str, kommo_message_id: str, content_digest: str = ""
    ) -> tuple[ConversationRecord, bool]:
        """Resolve a manager message's conversation and record the message, exactly once (with the
        digest of its content, which tells a later hook for the same message that it was edited)."""
        columns = _record_columns()
        async with self._engine.begin() as conn:
            row = (await conn.execute(select(*columns).where(conversations.c.id == conversation_id))).first()
            if row is None:
                raise NotFoundError(f"no conversation {conversation_id}")
            _, first = await _record_message(
                conn,
                conversation_id,
                "out",
                f"kommo:{kommo_message_id}",
                kommo_message_id=kommo_message_id,
                content_digest=content_digest,
            )
            await conn.execute(
                conversations.update().where(conversations.c.id == conversation_id).values(last_message_at=func.now())
            )
        return ConversationRecord(
            **{name: getattr(row, name) for name in ConversationRecord.__dataclass_fields__}
        ), first
