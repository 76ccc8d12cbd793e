"""Messages of a Kommo account that needs re-authorisation wait here, not in their partition.

Holding them in the queue (nak) would stop every other account whose conversations share the
partition. So a held account's messages are parked in arrival order and acked (libs/bus/parking.py,
table `held_commands`); while an account has parked messages, its new ones join the back. Once an
admin re-authorises, they are re-published in order; Kommo refusing the token before the gate's cache
knew parks the message too, in its place.
"""

from __future__ import annotations

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Publisher, Stream
from libs.bus.parking import RELEASED_HEADER, LotTable
from libs.bus.parking import ParkingLot as Lot
from libs.db.schema import held_commands
from libs.errors import CredentialRejectedError, NotFoundError
from libs.rpc import call
from libs.runtime import TtlCache

__all__ = ["RELEASED_HEADER", "AccountGate", "ParkingLot"]

NEEDS_REAUTH = "needs_reauth"
STATE_TTL_S = 5.0
ACTIVE = "active"
ACCOUNT_LOT = LotTable(held_commands, "scope_id", Stream.KOMMO_COMMANDS)


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

    async def ready(self, scope_id: str) -> bool:
        """Only an account that is back: an uninstalled one keeps its messages until it is reinstalled."""
        return await self.fresh_state(scope_id) == ACTIVE


class ParkingLot(Lot):
    """The re-authorisation lot: held per Kommo scope, released into the Kommo commands stream."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher, gate: AccountGate) -> None:
        super().__init__(
            engine,
            publisher,
            gate,
            ACCOUNT_LOT,
            repark_on=(CredentialRejectedError,),
            why="message held until the Kommo account is re-authorised",
        )
