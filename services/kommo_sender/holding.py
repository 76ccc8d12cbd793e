"""Messages of a Kommo account that needs re-authorisation wait here, not in their partition.

Holding them in the queue (nak) would stop every other account whose conversations share the
partition. So a held account's messages are parked in arrival order and acked; while an account has
parked messages, its new ones join the back. Once an admin re-authorises, one releaser at a time
re-publishes them in order, marked as released; a released message leaves the lot only when it has
been delivered, so nothing of that account can overtake it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import TYPE_HEADER, Delivery, Publisher, Stream
from libs.db.schema import held_commands
from libs.errors import AuthError, CredentialRejectedError, NotFoundError, PermanentError, RetryableError
from libs.rpc import call
from libs.runtime import TtlCache

log = logging.getLogger(__name__)

RELEASED_HEADER = "Bridge-Held-Id"
NEEDS_REAUTH = "needs_reauth"
STATE_TTL_S = 5.0
RELEASE_INTERVAL_S = 2.0
ACTIVE = "active"


class AccountGate:
    """Whether an account's messages may go to Kommo now (from the auth service, briefly cached)."""

    def __init__(self, auth: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
        self._auth = auth
        self._states: TtlCache[str, str] = TtlCache(STATE_TTL_S, self._load)

    async def _load(self, scope_id: str) -> str:
        try:
            request = auth_pb2.GetInstallationRequest(scope_id=scope_id)
            return (await call(self._auth.GetInstallation, request)).state
        except NotFoundError:
            return ""

    async def held(self, scope_id: str) -> bool:
        return await self._states.get(scope_id) == NEEDS_REAUTH

    def forget(self, scope_id: str) -> None:
        self._states.invalidate(scope_id)

    async def fresh_state(self, scope_id: str) -> str:
        self._states.invalidate(scope_id)
        return await self._states.get(scope_id)


class ParkingLot:
    def __init__(self, engine: AsyncEngine, publisher: Publisher, gate: AccountGate) -> None:
        self._engine = engine
        self._publisher = publisher
        self._gate = gate
        self._task: asyncio.Task[None] | None = None

    async def occupied(self, scope_id: str) -> bool:
        async with self._engine.connect() as conn:
            return bool((await conn.execute(select(exists().where(held_commands.c.scope_id == scope_id)))).scalar())

    async def through(
        self, delivery: Delivery, scope_id: str, key: str, msg_id: str, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Do `work` for a command of `scope_id`, or park the command while its account is held.

        A released command leaves the lot when its work is done, or when it fails for good (then it is
        dead-lettered like any message); a refused credential parks it again, in its place.
        """
        held_id = delivery.headers.get(RELEASED_HEADER)
        if held_id is None and (await self._gate.held(scope_id) or await self.occupied(scope_id)):
            await self.park(scope_id, key, msg_id, delivery.data, delivery.headers.get(TYPE_HEADER, ""))
            return
        try:
            await work()
        except CredentialRejectedError:
            if held_id is not None:
                raise
            # Kommo refused the account's token before the gate's cache knew: park it, in its place.
            self._gate.forget(scope_id)
            await self.park(scope_id, key, msg_id, delivery.data, delivery.headers.get(TYPE_HEADER, ""))
            return
        except (PermanentError, AuthError):
            if held_id is not None:
                await self.delivered(int(held_id))
            raise
        if held_id is not None:
            await self.delivered(int(held_id))

    async def park(self, scope_id: str, key: str, msg_id: str, payload: bytes, message_type: str = "") -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                held_commands.insert().values(
                    scope_id=scope_id, ordering_key=key, msg_id=msg_id, payload=payload, message_type=message_type
                )
            )
        log.warning("message held until the Kommo account is re-authorised", extra={"scope_id": scope_id})

    async def delivered(self, held_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(held_commands).where(held_commands.c.id == held_id))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="parking-releaser")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.release_ready()
            except Exception as exc:
                log.warning("releasing held messages failed; will retry", extra={"error": repr(exc)})
            await asyncio.sleep(RELEASE_INTERVAL_S)

    async def release_ready(self) -> int:
        async with self._engine.connect() as conn:
            scopes = [row.scope_id for row in (await conn.execute(select(held_commands.c.scope_id).distinct())).all()]
        released = 0
        for scope_id in scopes:
            # Only an account that is back: an uninstalled one keeps its messages until it is reinstalled.
            if await self._gate.fresh_state(scope_id) == ACTIVE:
                released += await self._release(scope_id)
        return released

    async def _release(self, scope_id: str) -> int:
        """Re-publish one account's parked messages in order (one releaser per account at a time)."""
        published = 0
        async with self._engine.begin() as conn:
            lock = text("SELECT pg_try_advisory_xact_lock(hashtext(:scope))")
            if not (await conn.execute(lock, {"scope": scope_id})).scalar():
                return 0
            # Released once: a released copy is durable in JetStream and leaves the lot when it is
            # delivered, or when it fails for good (then it is dead-lettered like any message).
            due = held_commands.c.released_at.is_(None)
            rows = (
                await conn.execute(
                    select(held_commands).where(held_commands.c.scope_id == scope_id, due).order_by(held_commands.c.id)
                )
            ).all()
            for row in rows:
                try:
                    await self._publisher.publish(
                        Stream.KOMMO_COMMANDS,
                        row.ordering_key,
                        row.payload,
                        f"{row.msg_id}:released:{row.id}",
                        headers={RELEASED_HEADER: str(row.id), TYPE_HEADER: row.message_type}
                        if row.message_type
                        else {RELEASED_HEADER: str(row.id)},
                    )
                except RetryableError:
                    break
                await conn.execute(
                    update(held_commands).where(held_commands.c.id == row.id).values(released_at=func.now())
                )
                published += 1
        if published:
            log.info("held messages released", extra={"scope_id": scope_id, "count": published})
        return published
