"""Kommo accounts the chat channel is connected to (amojo `connect` gives each its scope_id), and
where each stands with its REST tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.db.schema import installations
from libs.errors import NotFoundError
from libs.status_texts import DEFAULT_LANGUAGE

ACTIVE = "active"
NEEDS_REAUTH = "needs_reauth"
UNINSTALLED = "uninstalled"

OAUTH_TOKENS = "oauth"
LONG_LIVED_TOKEN = "long_lived"  # noqa: S105

# Who chose the account's language (`language_set_by`): nobody yet, the Kommo user who last opened the
# settings window, or an operator with bridgectl (whose choice the window then leaves alone).
LANGUAGE_DEFAULT = "default"
LANGUAGE_FROM_SETTINGS_WINDOW = "settings_window"
LANGUAGE_FROM_OPERATOR = "operator"


@dataclass(frozen=True)
class Installation:
    account_id: str
    scope_id: str
    title: str
    state: str
    connected_at: datetime
    domain: str = ""
    kommo_account_id: int = 0
    token_kind: str = ""
    token_expires_at: datetime | None = None
    last_error: str = ""
    language: str = DEFAULT_LANGUAGE
    language_set_by: str = LANGUAGE_DEFAULT


_FIELDS = list(Installation.__dataclass_fields__)
_COLUMNS = [installations.c[name] for name in _FIELDS]


def _from_row(row: Any) -> Installation:
    return Installation(**{name: getattr(row, name) for name in _FIELDS})


class InstallationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(
        self,
        account_id: str,
        scope_id: str,
        title: str,
        *,
        domain: str = "",
        kommo_account_id: int = 0,
        token_kind: str = "",
        token_expires_at: datetime | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Create or (on reinstall) refresh an installation; the account's other data is kept."""
        values = {
            "scope_id": scope_id,
            "title": title,
            "state": ACTIVE,
            "domain": domain,
            "kommo_account_id": kommo_account_id,
            "token_kind": token_kind,
            "token_expires_at": token_expires_at,
            "last_error": "",
        }
        statement = (
            insert(installations)
            .values(account_id=account_id, **values)
            .on_conflict_do_update(
                index_elements=[installations.c.account_id], set_={**values, "connected_at": func.now()}
            )
        )
        if conn is not None:
            await conn.execute(statement)
        else:
            async with self._engine.begin() as own:
                await own.execute(statement)

    async def set_state(self, account_id: str, state: str, error: str = "", *, conn: AsyncConnection) -> None:
        await conn.execute(
            update(installations)
            .where(installations.c.account_id == account_id)
            .values(state=state, last_error=error[:500])
        )

    async def set_token_expiry(self, account_id: str, expires_at: datetime, *, conn: AsyncConnection) -> None:
        await conn.execute(
            update(installations)
            .where(installations.c.account_id == account_id)
            .values(token_expires_at=expires_at, state=ACTIVE, last_error="")
        )

    async def set_language(self, account_id: str, language: str, set_by: str) -> bool:
        """Keep `language` (already one of libs.status_texts.LANGUAGES) for the account. The settings
        window never overrides an operator's choice; returns whether the language was written."""
        where = installations.c.account_id == account_id
        if set_by != LANGUAGE_FROM_OPERATOR:
            where &= installations.c.language_set_by != LANGUAGE_FROM_OPERATOR
        statement = (
            update(installations)
            .where(where)
            .values(language=language, language_set_by=set_by)
            .returning(installations.c.account_id)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).first() is not None

    async def lock(self, account_id: str, conn: AsyncConnection) -> Installation:
        """The installation row, locked for the rest of `conn`'s transaction (single-flight refresh)."""
        query = select(*_COLUMNS).where(installations.c.account_id == account_id).with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError("no such Kommo installation")
        return _from_row(row)

    async def _one(self, where: Any) -> Installation:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(where))).first()
        if row is None:
            raise NotFoundError("no such Kommo installation")
        return _from_row(row)

    async def by_account(self, account_id: str) -> Installation:
        return await self._one(installations.c.account_id == account_id)

    async def by_scope(self, scope_id: str) -> Installation:
        return await self._one(installations.c.scope_id == scope_id)

    async def by_kommo_account(self, kommo_account_id: int) -> Installation:
        return await self._one(installations.c.kommo_account_id == kommo_account_id)

    async def by_account_or_domain(self, account: str) -> Installation:
        """An installation named the way an operator would: its amojo id or its Kommo domain."""
        where = (installations.c.account_id == account) | (installations.c.domain == account.strip().lower())
        return await self._one(where)

    async def due_for_refresh(self, before: datetime) -> list[str]:
        query = select(installations.c.account_id).where(
            installations.c.token_kind == OAUTH_TOKENS,
            installations.c.state == ACTIVE,
            installations.c.token_expires_at < before,
        )
        async with self._engine.connect() as conn:
            return [row.account_id for row in (await conn.execute(query)).all()]

    async def all(self) -> list[Installation]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*_COLUMNS).order_by(installations.c.connected_at))).all()
        return [_from_row(row) for row in rows]
