"""Connecting a messenger channel: check the credentials with the platform, keep them with the
auth service, register our webhook with a fresh per-connection secret. Also a new token for a
connected bot (after a revoke), and registering its webhook again.

A platform that signs its webhooks with its own app secret (WhatsApp) needs that secret too, kept
before the webhook is registered; and since such a platform checks the URL with a GET handshake while
it registers it (the verify token is our webhook secret), the secret is stored before registering.
"""

from __future__ import annotations

import logging
import secrets

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.config import Settings
from libs.errors import BadRequestError, CredentialRejectedError, NotFoundError, PermanentError, RetryableError
from libs.messengers.registry import (
    ChannelIdentity,
    CompositeCredentials,
    MessengerAdapter,
    adapter_for,
    adapter_named,
)
from libs.rpc import call
from libs.secret_names import MESSENGER_APP_SECRET, MESSENGER_TOKEN, MESSENGER_WEBHOOK_SECRET
from services.router.connections import ConnectionRecord, ConnectionStore

log = logging.getLogger(__name__)


def webhook_url(public_url: str, platform_name: str, connection_id: str) -> str:
    return f"{public_url}/webhooks/{platform_name}/{connection_id}"


class ChannelConnector:
    def __init__(
        self,
        settings: Settings,
        store: ConnectionStore,
        auth: auth_pb2_grpc.AuthServiceAsyncStub,
        http: httpx.AsyncClient,
    ) -> None:
        self._settings = settings
        self._store = store
        self._auth = auth
        self._http = http

    async def connect(
        self, account_id: str, platform: int, token: str, source_external_id: str, app_secret: str = ""
    ) -> ConnectionRecord:
        if not account_id or not token:
            raise BadRequestError("account_id and token are required", code="token_missing")
        adapter = adapter_for(platform)
        signed_by_app = adapter.webhook_secret_kind == MESSENGER_APP_SECRET
        if signed_by_app and not app_secret.strip():
            raise BadRequestError(
                f"{adapter.name.capitalize()} signs its webhooks with the app secret: paste it too",
                code="app_secret_missing",
            )
        try:
            installation = await call(
                self._auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=account_id)
            )
        except NotFoundError:
            raise PermanentError(
                f"Kommo account {account_id} is not connected yet (bridgectl accounts connect {account_id})",
                code="account_not_connected",
            ) from None
        base_url = adapter.api_base_url(self._settings)
        identity = await self._identity(adapter, base_url, token)
        source = source_external_id or f"{adapter.name}-{identity.external_id}"
        if len(source) > 36 or not source.isascii() or not source.isprintable():
            raise BadRequestError(
                "source_external_id must be at most 36 printable ASCII characters", code="invalid_source_id"
            )
        record = await self._store.upsert(
            account_id=account_id,
            scope_id=installation.scope_id,
            platform=adapter.name,
            external_id=identity.external_id,
            display_name=identity.display_name,
            source_external_id=source,
        )
        webhook_secret = secrets.token_urlsafe(32)
        await call(self._auth.PutSecret, auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_TOKEN, value=token))
        if signed_by_app:
            await call(
                self._auth.PutSecret,
                auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_APP_SECRET, value=app_secret.strip()),
            )
        await call(
            self._auth.PutSecret,
            auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_WEBHOOK_SECRET, value=webhook_secret),
        )
        await self._register(adapter, base_url, token, record, webhook_secret)
        log.info(
            "channel connected",
            extra={"connection_id": record.id, "platform": adapter.name, "account_id": account_id},
        )
        return record

    async def replace_token(self, record: ConnectionRecord, token: str, app_secret: str = "") -> ConnectionRecord:
        """A new token for the same bot or number (after a revoke): checked live, the webhook registered
        again with a fresh secret, then both kept. The platform goes first: if it refuses, nothing has
        changed. A platform whose credential holds more than the token (WhatsApp: the number's ids) keeps
        the rest from the stored one; one that signs its webhooks with an app secret may get a new one."""
        if not token:
            raise BadRequestError("paste the bot's new token", code="token_missing")
        adapter = adapter_named(record.platform)
        base_url = adapter.api_base_url(self._settings)
        if isinstance(adapter, CompositeCredentials):
            token = adapter.renewed_credential(await self._stored_token(record, adapter), token)
        identity = await self._identity(adapter, base_url, token)
        if identity.external_id != record.external_id:
            raise BadRequestError(
                f"This token is for {identity.display_name}, not {record.display_name}. Paste the token "
                f"BotFather gives for {record.display_name}, or add the other bot as a new channel.",
                code=f"{adapter.name}_token_other_bot",
            )
        webhook_secret = secrets.token_urlsafe(32)
        put_webhook_secret = auth_pb2.PutSecretRequest(
            owner=record.id, kind=MESSENGER_WEBHOOK_SECRET, value=webhook_secret
        )
        if adapter.webhook_secret_kind == MESSENGER_APP_SECRET:
            # The secret is only the handshake's verify token here (POSTs are signed with the app
            # secret), and the platform asks for it while registering: kept first.
            await call(self._auth.PutSecret, put_webhook_secret)
        await self._register(adapter, base_url, token, record, webhook_secret)
        await call(self._auth.PutSecret, auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_TOKEN, value=token))
        await call(self._auth.PutSecret, put_webhook_secret)
        if app_secret.strip() and adapter.webhook_secret_kind == MESSENGER_APP_SECRET:
            await call(
                self._auth.PutSecret,
                auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_APP_SECRET, value=app_secret.strip()),
            )
        if identity.display_name != record.display_name:
            record = await self._store.update_settings(record.id, {"display_name": identity.display_name})
        log.info("channel token replaced", extra={"connection_id": record.id, "platform": adapter.name})
        return record

    async def _stored_token(self, record: ConnectionRecord, adapter: MessengerAdapter) -> str:
        """The channel's credential as kept; a channel without one must be connected again."""
        try:
            request = auth_pb2.GetSecretRequest(owner=record.id, kind=MESSENGER_TOKEN)
            return str((await call(self._auth.GetSecret, request)).value)
        except NotFoundError:
            raise PermanentError(
                "the bridge holds no credential for this channel: remove it and connect it again",
                code=f"{adapter.name}_credential_missing",
            ) from None

    async def register_again(self, record: ConnectionRecord) -> None:
        """Register the webhook again with the stored token and secret (someone removed or moved it)."""
        adapter = adapter_named(record.platform)
        try:
            request = auth_pb2.GetSecretRequest(owner=record.id, kind=MESSENGER_TOKEN)
            token = (await call(self._auth.GetSecret, request)).value
        except NotFoundError:
            raise PermanentError(
                "the bridge holds no token for this channel: paste the bot's token again",
                code=f"{adapter.name}_token_rejected",
            ) from None
        try:
            request = auth_pb2.GetSecretRequest(owner=record.id, kind=MESSENGER_WEBHOOK_SECRET)
            webhook_secret = (await call(self._auth.GetSecret, request)).value
        except NotFoundError:
            webhook_secret = secrets.token_urlsafe(32)
            await call(
                self._auth.PutSecret,
                auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_WEBHOOK_SECRET, value=webhook_secret),
            )
        await self._register(adapter, adapter.api_base_url(self._settings), token, record, webhook_secret)
        log.info("channel webhook registered again", extra={"connection_id": record.id, "platform": adapter.name})

    async def _identity(self, adapter: MessengerAdapter, base_url: str, token: str) -> ChannelIdentity:
        """Whose token this is, asked live; a refusal or an unreachable platform is said precisely."""
        try:
            return await adapter.check_credentials(self._http, base_url, token)
        except CredentialRejectedError as exc:
            said = str(exc).rsplit(":", 1)[-1].strip()
            raise BadRequestError(
                f"{adapter.name.capitalize()} did not accept this token ({said or 'rejected'}). "
                "Copy it again, whole, from where the platform shows it.",
                code=exc.code or f"{adapter.name}_token_rejected",
            ) from None
        except RetryableError as exc:
            raise RetryableError(
                f"{adapter.name.capitalize()} could not be reached to check the token ({exc}); try again shortly.",
                code=f"{adapter.name}_unreachable",
            ) from None

    async def _register(
        self, adapter: MessengerAdapter, base_url: str, token: str, record: ConnectionRecord, webhook_secret: str
    ) -> None:
        url = webhook_url(self._settings.public_url, adapter.name, record.id)
        try:
            await adapter.register_webhook(self._http, base_url, token, url, webhook_secret)
        except CredentialRejectedError:
            raise PermanentError(
                f"{adapter.name.capitalize()} no longer accepts this bot's token: fix the bot token first",
                code=f"{adapter.name}_token_rejected",
            ) from None
        except RetryableError as exc:
            raise RetryableError(
                f"{adapter.name.capitalize()} could not be reached to register the webhook ({exc})",
                code=f"{adapter.name}_unreachable",
            ) from None
        except PermanentError as exc:
            raise PermanentError(
                f"{adapter.name.capitalize()} refused the webhook address ({exc})", code="webhook_refused"
            ) from None
