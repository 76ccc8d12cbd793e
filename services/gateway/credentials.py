"""Secrets the gateway needs to verify webhooks, fetched from the auth service and cached.

Kommo sends each chat hook once, so the channel credentials are kept after the first fetch and
refreshed in place: a short auth outage must not make the gateway unable to verify a hook.
"""

from __future__ import annotations

import asyncio

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.errors import NotFoundError, RetryableError
from libs.rpc import call
from libs.runtime import TtlCache
from libs.secret_names import MESSENGER_TOKEN, MESSENGER_WEBHOOK_SECRET

WEBHOOK_SECRET_TTL_S = 60.0
# After a mismatch the stored secret is fetched again, but not more often than this per connection.
WEBHOOK_SECRET_RECHECK_S = 5.0
# Media links fetch with the connection's bot token: kept briefly, dropped when the platform refuses it.
MESSENGER_TOKEN_TTL_S = 60.0
INSTALLATION_TTL_S = 300.0
CHANNEL_REFRESH_S = 300.0


class GatewayCredentials:
    def __init__(self, auth: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
        self._auth = auth
        # Keyed by (connection id, secret kind): a platform may verify its POSTs with another secret than
        # its URL check (WhatsApp: the app secret, and the verify token).
        self._webhook_secrets: TtlCache[tuple[str, str], str] = TtlCache(
            WEBHOOK_SECRET_TTL_S, self._load_webhook_secret
        )
        self._installations: TtlCache[str, auth_pb2.Installation] = TtlCache(
            INSTALLATION_TTL_S, self._load_installation
        )
        self._messenger_tokens: TtlCache[str, str] = TtlCache(MESSENGER_TOKEN_TTL_S, self._load_messenger_token)
        self._rechecked: dict[tuple[str, str], float] = {}
        self._channel: auth_pb2.ChannelCredentials | None = None
        self._channel_fetched_at = 0.0

    async def _load_webhook_secret(self, key: tuple[str, str]) -> str:
        connection_id, kind = key
        request = auth_pb2.GetSecretRequest(owner=connection_id, kind=kind)
        return (await call(self._auth.GetSecret, request)).value

    async def _load_messenger_token(self, connection_id: str) -> str:
        request = auth_pb2.GetSecretRequest(owner=connection_id, kind=MESSENGER_TOKEN)
        return (await call(self._auth.GetSecret, request)).value

    async def messenger_token(self, connection_id: str) -> str:
        """The connection's bot token / access token; NotFoundError for a connection we no longer have."""
        return await self._messenger_tokens.get(connection_id)

    def forget_messenger_token(self, connection_id: str) -> None:
        """The platform refused the token: fetch it again next time (an admin may have replaced it)."""
        self._messenger_tokens.invalidate(connection_id)

    async def _load_installation(self, scope_id: str) -> auth_pb2.Installation:
        return await call(self._auth.GetInstallation, auth_pb2.GetInstallationRequest(scope_id=scope_id))

    async def webhook_secret(self, connection_id: str, kind: str = MESSENGER_WEBHOOK_SECRET) -> str:
        """The connection's webhook secret (or another `kind` of secret that verifies its webhooks);
        NotFoundError for a connection we do not have."""
        return await self._webhook_secrets.get((connection_id, kind))

    async def webhook_secret_again(self, connection_id: str, kind: str = MESSENGER_WEBHOOK_SECRET) -> str | None:
        """The stored secret, fetched anew after the cached one did not match; None when it was fetched
        anew moments ago (a stream of forged requests must not become a stream of auth calls)."""
        key = (connection_id, kind)
        now = asyncio.get_running_loop().time()
        if now - self._rechecked.get(key, -WEBHOOK_SECRET_RECHECK_S) < WEBHOOK_SECRET_RECHECK_S:
            return None
        self._rechecked[key] = now
        self._webhook_secrets.invalidate(key)
        return await self._webhook_secrets.get(key)

    async def channel(self) -> auth_pb2.ChannelCredentials:
        """Fetched at start-up, refreshed every few minutes; an auth outage keeps the last copy."""
        now = asyncio.get_running_loop().time()
        if self._channel is None or now - self._channel_fetched_at > CHANNEL_REFRESH_S:
            try:
                self._channel = await call(self._auth.GetChannelCredentials, auth_pb2.GetChannelCredentialsRequest())
            except RetryableError:
                if self._channel is None:
                    raise
            self._channel_fetched_at = now
        return self._channel

    async def wait_for_channel(self, stop: asyncio.Event) -> None:
        """Start-up: no Kommo hook can be verified before the channel secret is known."""
        delay = 0.2
        while not stop.is_set():
            try:
                await self.channel()
                return
            except RetryableError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def check_scope(self, scope_id: str) -> None:
        """NotFoundError unless `scope_id` is our channel connected to a known account."""
        channel = await self.channel()
        if not scope_id.startswith(channel.channel_id + "_"):
            raise NotFoundError("scope does not belong to this channel")
        await self._installations.get(scope_id)
