"""The `state` parameter of install links: issued by the bridge, single use, short-lived, so an
install redirect the bridge did not start is refused (CSRF)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import oauth_states
from libs.errors import BadRequestError

STATE_TTL = timedelta(minutes=30)


class InstallStates:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def issue(self) -> str:
        state = secrets.token_urlsafe(24)
        async with self._engine.begin() as conn:
            await conn.execute(oauth_states.insert().values(state=state, expires_at=datetime.now(UTC) + STATE_TTL))
        return state

    async def consume(self, state: str) -> None:
        """Accept `state` once; anything else is a clear 400."""
        if not state:
            raise BadRequestError("the install link carries no state; start the installation again")
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(oauth_states)
                .where(
                    oauth_states.c.state == state,
                    oauth_states.c.used_at.is_(None),
                    oauth_states.c.expires_at > func.now(),
                )
                .values(used_at=func.now())
            )
        if not result.rowcount:
            raise BadRequestError("this install link has expired or was already used; start the installation again")
