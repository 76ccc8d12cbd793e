"""Encrypted secrets in PostgreSQL. Plaintext exists only in this process's memory."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.crypto import Keyring, Sealed
from libs.db.schema import secrets
from libs.errors import NotFoundError


def _context(owner: str, kind: str) -> str:
    return f"{owner}|{kind}"


class SecretStore:
    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        self._engine = engine
        self._keyring = keyring

    async def put(self, owner: str, kind: str, value: str) -> str:
        sealed = self._keyring.seal(value, _context(owner, kind))
        row = {
            "owner": owner,
            "kind": kind,
            "key_id": sealed.key_id,
            "nonce": sealed.nonce,
            "ciphertext": sealed.ciphertext,
        }
        statement = insert(secrets).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[secrets.c.owner, secrets.c.kind],
            set_={"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext},
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        return sealed.key_id

    async def get(self, owner: str, kind: str) -> str:
        query = select(secrets.c.key_id, secrets.c.nonce, secrets.c.ciphertext).where(
            secrets.c.owner == owner, secrets.c.kind == kind
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError(f"no {kind} stored for {owner}")
        return self._keyring.open(Sealed(row.key_id, row.nonce, row.ciphertext), _context(owner, kind))

    async def delete_owner(self, owner: str) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(secrets).where(secrets.c.owner == owner))
        return result.rowcount or 0
