"""Channel health as each platform sees it: is the webhook ours, how many updates wait, the platform's
last delivery error, and whether it still accepts the stored token.

Asked live through the channel's adapter with the token from the auth service, and kept for a short
while: the settings window asks for every channel each time it opens and must stay fast, and the
platforms' rate limits are not spent on it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.router.v1 import router_pb2

from libs.config import Settings
from libs.errors import BridgeError, CredentialRejectedError, NotFoundError
from libs.messengers.registry import adapter_named
from libs.rpc import call
from libs.secret_names import MESSENGER_TOKEN
from services.router.channels import webhook_url
from services.router.connections import ConnectionRecord

log = logging.getLogger(__name__)

HEALTH_TTL_S = 30.0
CHECK_DEADLINE_S = 4.0


class HealthChecks:
    def __init__(self, settings: Settings, auth: auth_pb2_grpc.AuthServiceAsyncStub, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._auth = auth
        self._http = http
        self._known: dict[str, tuple[float, router_pb2.ChannelHealth]] = {}

    async def of(self, records: list[ConnectionRecord], *, fresh: bool = False) -> list[router_pb2.ChannelHealth]:
        """The health of each channel, asked concurrently; from the last check when it is recent."""
        return list(await asyncio.gather(*(self._one(record, fresh) for record in records)))

    def forget(self, connection_id: str) -> None:
        """The channel changed (new token, webhook registered again): ask the platform next time."""
        self._known.pop(connection_id, None)

    async def _one(self, record: ConnectionRecord, fresh: bool) -> router_pb2.ChannelHealth:
        now = asyncio.get_running_loop().time()
        known = self._known.get(record.id)
        if known is not None and known[0] > now and not fresh:
            return known[1]
        health = await self._check(record)
        self._known[record.id] = (now + HEALTH_TTL_S, health)
        return health

    async def _check(self, record: ConnectionRecord) -> router_pb2.ChannelHealth:
        adapter = adapter_named(record.platform)
        health = router_pb2.ChannelHealth(connection_id=record.id, checked_at_ms=int(time.time() * 1000))
        try:
            request = auth_pb2.GetSecretRequest(owner=record.id, kind=MESSENGER_TOKEN)
            token = (await call(self._auth.GetSecret, request)).value
        except NotFoundError:
            health.token_rejected, health.reason = True, "the bridge holds no token for this channel"
            return health
        except BridgeError as exc:
            health.unreachable, health.reason = True, f"the bridge's secret store did not answer ({exc})"
            return health
        try:
            found = await asyncio.wait_for(
                adapter.webhook_health(self._http, adapter.api_base_url(self._settings), token), CHECK_DEADLINE_S
            )
        except CredentialRejectedError:
            health.token_rejected, health.reason = True, f"{adapter.name.capitalize()} refuses the bot token"
            return health
        except (BridgeError, TimeoutError) as exc:
            # Messages name the platform's method, never its URL (which holds the token).
            health.unreachable = True
            health.reason = str(exc) if isinstance(exc, BridgeError) else f"{adapter.name} did not answer in time"
            log.warning("channel health unknown", extra={"connection_id": record.id, "reason": health.reason})
            return health
        ours = webhook_url(self._settings.public_url, adapter.name, record.id)
        if found.url == ours:
            health.webhook = router_pb2.WEBHOOK_STATUS_REGISTERED
        else:
            health.webhook = router_pb2.WEBHOOK_STATUS_ELSEWHERE if found.url else router_pb2.WEBHOOK_STATUS_NOT_SET
        health.pending_updates = found.pending_updates
        health.last_error_at_ms = found.last_error_at_ms
        health.last_error_message = found.last_error_message
        return health
