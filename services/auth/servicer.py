"""AuthService over gRPC: secrets in and out, the Kommo channel's credentials, installations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient
from libs.rpc import rpc_errors
from libs.secret_names import KOMMO_CHANNEL_OWNER, KOMMO_CHANNEL_SECRET
from libs.status_texts import LANGUAGES, supported_language
from services.auth.account_crm import AccountCrm
from services.auth.installations import LANGUAGE_FROM_OPERATOR, Installation, InstallationStore
from services.auth.installer import Installer
from services.auth.secret_store import SecretStore
from services.auth.settings_sessions import SettingsAccess, SettingsSessions
from services.auth.tokens import TokenKeeper

Context = grpc.aio.ServicerContext[Any, Any]


def _ms(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


def _installation_pb(item: Installation) -> auth_pb2.Installation:
    return auth_pb2.Installation(
        account_id=item.account_id,
        scope_id=item.scope_id,
        title=item.title,
        state=item.state,
        connected_at_ms=_ms(item.connected_at),
        domain=item.domain,
        kommo_account_id=item.kommo_account_id,
        token_kind=item.token_kind,
        token_expires_at_ms=_ms(item.token_expires_at),
        last_error=item.last_error,
        language=item.language,
        language_set_by=item.language_set_by,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        secrets: SecretStore,
        installations: InstallationStore,
        amojo: AmojoClient,
        installer: Installer,
        tokens: TokenKeeper,
        channel_id: str,
        channel_code: str,
        sessions: SettingsSessions,
        crm: AccountCrm,
    ) -> None:
        self._sessions = sessions
        self._crm = crm
        self._secrets = secrets
        self._installations = installations
        self._amojo = amojo
        self._installer = installer
        self._tokens = tokens
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
        await self._installations.save(request.account_id, result.scope_id, request.title or "Kommo Bridge")
        return _installation_pb(await self._installations.by_account(request.account_id))

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

    @rpc_errors
    async def CreateInstallLink(
        self, request: auth_pb2.CreateInstallLinkRequest, context: Context
    ) -> auth_pb2.InstallLink:
        url, state = await self._installer.install_link()
        return auth_pb2.InstallLink(url=url, state=state)

    @rpc_errors
    async def CompleteInstall(
        self, request: auth_pb2.CompleteInstallRequest, context: Context
    ) -> auth_pb2.Installation:
        installation = await self._installer.complete(
            request.code, request.referer, request.client_id, request.state, request.from_widget
        )
        return _installation_pb(installation)

    @rpc_errors
    async def InstallWithToken(
        self, request: auth_pb2.InstallWithTokenRequest, context: Context
    ) -> auth_pb2.Installation:
        return _installation_pb(await self._installer.with_token(request.domain, request.access_token))

    @rpc_errors
    async def Uninstall(self, request: auth_pb2.UninstallRequest, context: Context) -> auth_pb2.Installation:
        installation = await self._installer.uninstall(request.client_uuid, request.kommo_account_id, request.signature)
        return _installation_pb(installation)

    @rpc_errors
    async def GetAccessToken(self, request: auth_pb2.GetAccessTokenRequest, context: Context) -> auth_pb2.AccessToken:
        token, expires = await self._tokens.access_token(request.account_id)
        installation = await self._installations.by_account(request.account_id)
        return auth_pb2.AccessToken(
            access_token=token,
            expires_at_ms=_ms(expires),
            domain=installation.domain,
            kommo_account_id=installation.kommo_account_id,
        )

    @rpc_errors
    async def RotateKeys(self, request: auth_pb2.RotateKeysRequest, context: Context) -> auth_pb2.RotateKeysResponse:
        count = await self._secrets.rotate()
        return auth_pb2.RotateKeysResponse(
            reencrypted=count,
            key_id=self._secrets.current_key_id,
            remaining=await self._secrets.remaining_under_older_keys(),
        )

    async def _session_pb(self, access: SettingsAccess, session: str = "") -> auth_pb2.SettingsSession:
        installation = await self._installations.by_account(access.account_id)
        return auth_pb2.SettingsSession(
            session=session,
            account_id=access.account_id,
            scope_id=installation.scope_id,
            kommo_user_id=access.kommo_user_id,
            domain=installation.domain,
            expires_at_ms=_ms(access.expires_at),
        )

    @rpc_errors
    async def OpenSettingsSession(
        self, request: auth_pb2.OpenSettingsSessionRequest, context: Context
    ) -> auth_pb2.SettingsTicket:
        ticket, access = await self._sessions.open(request.one_time_token, request.language)
        return auth_pb2.SettingsTicket(
            ticket=ticket, account_id=access.account_id, expires_at_ms=_ms(access.expires_at)
        )

    @rpc_errors
    async def RedeemSettingsTicket(
        self, request: auth_pb2.RedeemSettingsTicketRequest, context: Context
    ) -> auth_pb2.SettingsSession:
        session, access = await self._sessions.redeem(request.ticket)
        return await self._session_pb(access, session)

    @rpc_errors
    async def GetSettingsSession(
        self, request: auth_pb2.GetSettingsSessionRequest, context: Context
    ) -> auth_pb2.SettingsSession:
        return await self._session_pb(await self._sessions.get(request.session))

    @rpc_errors
    async def ListPipelines(
        self, request: auth_pb2.ListPipelinesRequest, context: Context
    ) -> auth_pb2.ListPipelinesResponse:
        pipelines = await self._crm.pipelines(request.account_id)
        return auth_pb2.ListPipelinesResponse(
            pipelines=[auth_pb2.Pipeline(id=p.id, name=p.name, is_main=p.is_main) for p in pipelines]
        )

    @rpc_errors
    async def SetAccountLanguage(
        self, request: auth_pb2.SetAccountLanguageRequest, context: Context
    ) -> auth_pb2.Installation:
        if not request.account.strip():
            raise BadRequestError("account (the account's amojo id or Kommo domain) is required")
        language = supported_language(request.language)
        if language is None:
            raise BadRequestError(f"language must be one of {', '.join(LANGUAGES)}")
        installation = await self._installations.by_account_or_domain(request.account)
        await self._installations.set_language(installation.account_id, language, LANGUAGE_FROM_OPERATOR)
        return _installation_pb(await self._installations.by_account(installation.account_id))
