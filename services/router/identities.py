"""One client, one conversation, whatever id the platform names them by today.

WhatsApp names a client by their phone number (`wa_id`), by a business-scoped user id (BSUID, for users who
hide their number behind a username), or both; and a number can change (`system.user_changed_number`). The
conversation keeps the chat id it was opened with (the phone number when the first message had one, the
BSUID otherwise: what Kommo's chat is keyed by); every id seen with it becomes an alias of that chat id in
`client_identities`, so a later message naming only the BSUID, or only a new number, lands in the same
conversation. Each row of a chat also holds the client's current phone number and BSUID: a manager's reply
goes to the current number if one is known (WhatsApp takes `to` even for a number now hidden, the business
knew it), else to the BSUID (`recipient`).

Rules, per connection, for an event naming address `a` (a phone number, or the BSUID when there is none) and
BSUID `u`:
- `u` is known: its chat (the BSUID is the stable key).
- else `a` is known, and not as another user's number (a row for `a` naming a different BSUID means the
  number now belongs to someone else): its chat.
- else first sight: the chat id of a conversation already opened for `a` (a manager's write first, or one
  opened before this table existed) or for `u`; else `a` as today.
A number change adds the new number as an alias and makes it the current one. Resolving takes transaction
locks on the ids involved (in a fixed order), so two first messages naming overlapping ids at once still
agree on one chat id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.db.schema import client_identities, conversations


@dataclass(frozen=True)
class ClientIds:
    """The ids one event names its client by: `address` (a phone number in the platform's form, or the
    BSUID when the event has no number), `user_id` (the BSUID, "" when not given) and `new_address` (the
    client's new number, for a number change)."""

    address: str
    user_id: str = ""
    new_address: str = ""

    @property
    def phone(self) -> str:
        """The phone number the event names ("" when it names only the BSUID)."""
        return self.address if self.address != self.user_id else ""


def _lock_key(connection_id: str, alias: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, the same in every replica."""
    digest = hashlib.blake2b(f"{connection_id}\0{alias}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def current_address(connection_id: ColumnElement[str], chat_id: ColumnElement[str]) -> ColumnElement[str]:
    """SQL: where a chat's client is written to now: their current phone number, else their BSUID, else the
    chat id itself (a client never seen under another id)."""
    known = (
        select(
            func.coalesce(
                func.nullif(client_identities.c.phone, ""), func.nullif(client_identities.c.platform_user_id, "")
            )
        )
        .where((client_identities.c.connection_id == connection_id) & (client_identities.c.chat_id == chat_id))
        .order_by(client_identities.c.updated_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(known, chat_id)


class IdentityStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def resolve(self, connection_id: str, ids: ClientIds) -> str:
        """The chat id of the client's conversation (see the module's rules), recording every id named."""
        aliases = sorted({a for a in (ids.address, ids.user_id, ids.new_address) if a})
        if not aliases:
            raise ValueError("an event names its client by at least one id")
        async with self._engine.begin() as conn:
            for alias in aliases:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(connection_id, alias)})
            query = select(
                client_identities.c.alias,
                client_identities.c.chat_id,
                client_identities.c.phone,
                client_identities.c.platform_user_id,
            )
            rows = {
                row.alias: row
                for row in await conn.execute(
                    query.where(
                        (client_identities.c.connection_id == connection_id) & client_identities.c.alias.in_(aliases)
                    )
                )
            }
            by_user = rows.get(ids.user_id) if ids.user_id else None
            by_address = rows.get(ids.address)
            someone_else = (
                by_address is not None
                and bool(ids.user_id)
                and bool(by_address.platform_user_id)
                and by_address.platform_user_id != ids.user_id
            )
            if by_user is not None:
                chat_id = str(by_user.chat_id)
            elif by_address is not None and not someone_else:
                chat_id = str(by_address.chat_id)
            else:
                chat_id = await _first_sight(conn, connection_id, ids, number_taken=someone_else)
            await self._record(conn, connection_id, chat_id, ids, rows)
        return chat_id

    async def _record(
        self, conn: AsyncConnection, connection_id: str, chat_id: str, ids: ClientIds, rows: dict[str, Any]
    ) -> None:
        """Point every id named at `chat_id` and keep the chat's current number and BSUID on all its rows
        (nothing written when all of it is so already: the common case, a known client writing again)."""
        known: Any = next((row for row in rows.values() if row.chat_id == chat_id), None)
        if known is None:
            known = (
                await conn.execute(
                    select(client_identities.c.phone, client_identities.c.platform_user_id)
                    .where(
                        (client_identities.c.connection_id == connection_id) & (client_identities.c.chat_id == chat_id)
                    )
                    .order_by(client_identities.c.updated_at.desc())
                    .limit(1)
                )
            ).first()
        phone = ids.new_address or ids.phone or (str(known.phone) if known is not None else "")
        user_id = ids.user_id or (str(known.platform_user_id) if known is not None else "")
        aliases = sorted({a for a in (ids.address, ids.user_id, ids.new_address) if a})
        if all(
            alias in rows
            and (rows[alias].chat_id, rows[alias].phone, rows[alias].platform_user_id) == (chat_id, phone, user_id)
            for alias in aliases
        ):
            return
        for alias in aliases:
            await conn.execute(
                insert(client_identities)
                .values(
                    connection_id=connection_id, alias=alias, chat_id=chat_id, phone=phone, platform_user_id=user_id
                )
                .on_conflict_do_update(
                    index_elements=[client_identities.c.connection_id, client_identities.c.alias],
                    set_={"chat_id": chat_id, "updated_at": func.now()},
                )
            )
        await conn.execute(
            client_identities.update()
            .where((client_identities.c.connection_id == connection_id) & (client_identities.c.chat_id == chat_id))
            .values(phone=phone, platform_user_id=user_id, updated_at=func.now())
        )

    async def chat_of(self, connection_id: str, alias: str) -> str | None:
        """The chat id a known id of a client belongs to (None for an id never seen): a manager writing first
        to a number reaches the conversation the client already has, whatever it was opened with."""
        query = select(client_identities.c.chat_id).where(
            (client_identities.c.connection_id == connection_id) & (client_identities.c.alias == alias)
        )
        async with self._engine.connect() as conn:
            found = await conn.scalar(query)
        return None if found is None else str(found)

    async def address(self, connection_id: str, chat_id: str) -> str:
        """Where the chat's client is written to now (see `current_address`)."""
        async with self._engine.connect() as conn:
            found = await conn.scalar(select(current_address(literal(connection_id), literal(chat_id))))
        return str(found)


async def _first_sight(conn: AsyncConnection, connection_id: str, ids: ClientIds, *, number_taken: bool) -> str:
    """A client none of whose ids is mapped: a conversation already opened for their number (write first, or
    from before identities were kept) or their BSUID keeps its chat id; else the number, else the BSUID. A
    number that belongs to someone else now (`number_taken`) cannot be the new chat's id."""
    candidates = [c for c in ((None if number_taken else ids.phone), ids.user_id) if c]
    if candidates:
        opened = set(
            (
                await conn.execute(
                    select(conversations.c.chat_id).where(
                        (conversations.c.connection_id == connection_id) & conversations.c.chat_id.in_(candidates)
                    )
                )
            ).scalars()
        )
        for candidate in candidates:
            if candidate in opened:
                return candidate
        return candidates[0]
    return ids.address
