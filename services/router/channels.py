"""Connecting a messenger channel: check the credentials with the platform, keep them with the
auth service, register our webhook with a fresh per-connection secret."""

from __future__ import annotations

import logging
import secrets

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.config import Settings
from libs.errors import BadRequestError, CredentialRejectedError, NotFoundError, PermanentError
from libs.messengers.registry import adapter_for
from libs.rpc import call
from libs.secret_names import MESSENGER_TOKEN, MESSENGER_WEBHOOK_SECRET
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

    async def connect(self, account_id: str, platform: int, token: str, source_external_id: str) -> ConnectionRecord:
        if not account_id or not token:
            raise BadRequestError("account_id and token are required")
        adapter = adapter_for(platform)
        try:
            installation = await call(
                self._auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=account_id)
            )
        except NotFoundError:
            raise PermanentError(
                f"Kommo account {account_id} is not connected yet (bridgectl accounts connect {account_id})"
            ) from None
        base_url = adapter.api_base_url(self._settings)
        try:
            identity = await adapter.check_credentials(self._http, base_url, token)
        except CredentialRejectedError as exc:
            said = str(exc).rsplit(":", 1)[-1].strip()
            raise BadRequestError(
                f"{adapter.name.capitalize()} did not accept this token ({said or 'rejected'}). "
                "Copy it again, whole, from where the platform shows it."
            ) from None
        source = source_external_id or f"{adapter.name}-{identity.external_id}"
        if len(source) > 36 or not source.isascii() or not source.isprintable():
            raise BadRequestError("source_external_id must be at most 36 printable ASCII characters")
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
        await call(
            self._auth.PutSecret,
            auth_pb2.PutSecretRequest(owner=record.id, kind=MESSENGER_WEBHOOK_SECRET, value=webhook_secret),
        )
        url = webhook_url(self._settings.public_url, adapter.name, record.id)
        await adapter.register_webhook(self._http, base_url, token, url, webhook_secret)
        log.info(
            "channel connected",
            extra={"connection_id": record.id, "platform": adapter.name, "account_id": account_id},
        )
        return record
