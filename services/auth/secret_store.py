"""Encrypted secrets in PostgreSQL. Plaintext exists only in this process's memory."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.crypto import Keyring, Sealed
from libs.db.schema import secrets
from libs.errors import NotFoundError

ROTATION_BATCH = 200


def _context(owner: str, kind: str) -> str:
    return f"{owner}|{kind}"


class SecretStore:
    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        self._engine = engine
        self._keyring = keyring

    @property
    def current_key_id(self) -> str:
        return self._keyring.current_key_id

    async def put(self, owner: str, kind: str, value: str, *, conn: AsyncConnection | None = None) -> str:
        """Store under the newest key; inside `conn`'s transaction when given."""
        sealed = self._keyring.seal(value, _context(owner, kind))
        values = {"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext}
        statement = (
            insert(secrets)
            .values(owner=owner, kind=kind, **values)
            .on_conflict_do_update(index_elements=[secrets.c.owner, secrets.c.kind], set_=values)
        )
        if conn is not None:
            await conn.execute(statement)
        else:
            async with self._engine.begin() as own:
                await own.execute(statement)
        return sealed.key_id

    async def get(self, owner: str, kind: str, *, conn: AsyncConnection | None = None) -> str:
        query = select(secrets.c.key_id, secrets.c.nonce, secrets.c.ciphertext).where(
            secrets.c.owner == owner, secrets.c.kind == kind
        )
        if conn is not None:
            row = (await conn.execute(query)).first()
        else:
            async with self._engine.connect() as own:
                row = (await own.execute(query)).first()
        if row is None:
            raise NotFoundError(f"no {kind} stored for {owner}")
        return self._keyring.open(Sealed(row.key_id, row.nonce, row.ciphertext), _context(owner, kind))

    async def delete_owner(self, owner: str, *, conn: AsyncConnection | None = None) -> int:
        statement = delete(secrets).where(secrets.c.owner == owner)
        if conn is not None:
            return (await conn.execute(statement)).rowcount or 0
        async with self._engine.begin() as own:
            return (await own.execute(statement)).rowcount or 0

    async def remaining_under_older_keys(self) -> int:
        async with self._engine.connect() as conn:
            query = select(func.count()).select_from(secrets).where(secrets.c.key_id != self._keyring.current_key_id)
            return int((await conn.execute(query)).scalar() or 0)

    async def rotate(self) -> int:
        """Re-encrypt every secret not yet under the newest key, in small transactions, while the
        system runs (rows are locked one batch at a time; readers never see a half-written row)."""
        newest = self._keyring.current_key_id
        total = 0
        while True:
            async with self._engine.begin() as conn:
                rows = (
                    await conn.execute(
                        select(secrets.c.owner, secrets.c.kind, secrets.c.key_id, secrets.c.nonce, secrets.c.ciphertext)
                        .where(secrets.c.key_id != newest)
                        .limit(ROTATION_BATCH)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for row in rows:
                    context = _context(row.owner, row.kind)
                    plain = self._keyring.open(Sealed(row.key_id, row.nonce, row.ciphertext), context)
                    sealed = self._keyring.seal(plain, context)
                    await conn.execute(
                        update(secrets)
                        .where(secrets.c.owner == row.owner, secrets.c.kind == row.kind)
                        .values(key_id=sealed.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext)
                    )
            total += len(rows)
            if len(rows) < ROTATION_BATCH:
                return total
