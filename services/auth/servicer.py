"""AuthService over gRPC: secrets in and out, the Kommo channel's credentials, installations."""

from __future__ import annotations

from typing import Any

import grpc
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient
from libs.rpc import rpc_errors
from libs.secret_names import KOMMO_CHANNEL_OWNER, KOMMO_CHANNEL_SECRET
from services.auth.installations import Installation, InstallationStore
from services.auth.secret_store import SecretStore

Context = grpc.aio.ServicerContext[Any, Any]


def _installation_pb(item: Installation) -> auth_pb2.Installation:
    return auth_pb2.Installation(
        account_id=item.account_id,
        scope_id=item.scope_id,
        title=item.title,
        state=item.state,
        connected_at_ms=int(item.connected_at.timestamp() * 1000),
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        secrets: SecretStore,
        installations: InstallationStore,
        amojo: AmojoClient,
        channel_id: str,
        channel_code: str,
    ) -> None:
        self._secrets = secrets
        self._installations = installations
        self._amojo = amojo
        self._channel_id = channel_id
        self._channel_code = channel_code

    @rpc_errors
    async def PutSecret(self, request: auth_pb2.PutSecretRequest, context: Context) -> auth_pb2.PutSecretResponse:
        if not request.owner or not request.kind or not request.value:
            raise BadRequestError("owner, kind and value are required")
        key_id = await self._secrets.put(request.owner, request.kind, request.value)
        return auth_pb2.PutSecretResponse(key_id=key_id)

    @rpc_errors
    async def GetSecret(self, request: auth_pb2.GetSecretRequest, context: Context) -> auth_pb2.GetSecretResponse:
        return auth_pb2.GetSecretResponse(value=await self._secrets.get(request.owner, request.kind))

    @rpc_errors
    async def DeleteSecrets(
        self, request: auth_pb2.DeleteSecretsRequest, context: Context
    ) -> auth_pb2.DeleteSecretsResponse:
        return auth_pb2.DeleteSecretsResponse(deleted=await self._secrets.delete_owner(request.owner))

    @rpc_errors
    async def GetChannelCredentials(
        self, request: auth_pb2.GetChannelCredentialsRequest, context: Context
    ) -> auth_pb2.ChannelCredentials:
        secret = await self._secrets.get(KOMMO_CHANNEL_OWNER, KOMMO_CHANNEL_SECRET)
        return auth_pb2.ChannelCredentials(
            channel_id=self._channel_id, channel_secret=secret, channel_code=self._channel_code
        )

    @rpc_errors
    async def ConnectAccount(self, request: auth_pb2.ConnectAccountRequest, context: Context) -> auth_pb2.Installation:
        if not request.account_id:
            raise BadRequestError("account_id (the account's amojo id) is required")
        result = await self._amojo.connect(request.account_id, request.title or "Kommo Bridge")
        saved = await self._installations.save(request.account_id, result.scope_id, request.title or "Kommo Bridge")
        return _installation_pb(saved)

    @rpc_errors
    async def GetInstallation(
        self, request: auth_pb2.GetInstallationRequest, context: Context
    ) -> auth_pb2.Installation:
        if request.WhichOneof("key") == "scope_id":
            return _installation_pb(await self._installations.by_scope(request.scope_id))
        if request.WhichOneof("key") == "account_id":
            return _installation_pb(await self._installations.by_account(request.account_id))
        raise BadRequestError("give account_id or scope_id")

    @rpc_errors
    async def ListInstallations(
        self, request: auth_pb2.ListInstallationsRequest, context: Context
    ) -> auth_pb2.ListInstallationsResponse:
        return auth_pb2.ListInstallationsResponse(
            installations=[_installation_pb(item) for item in await self._installations.all()]
        )
