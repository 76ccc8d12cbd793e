"""Installing the integration into a Kommo account, reinstalling it, and uninstalling it.

Install: the admin follows a link carrying a `state` we issued; Kommo redirects to the gateway with
a one-time `code`; we exchange it, learn the account's `amojo_id`, connect the chat channel, and keep
the tokens encrypted. Reinstalling does the same and keeps the account's data. Uninstalling (Kommo's
signed hook) disconnects the channel and deletes every secret of the account.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import Settings
from libs.errors import AuthError, BadRequestError, NotFoundError
from libs.kommo.client import AmojoClient
from libs.kommo.oauth import KommoAccountClient, TokenPair, validate_domain, verify_uninstall_signature
from libs.secret_names import installation_owner
from services.auth.install_states import InstallStates
from services.auth.installations import (
    LONG_LIVED_TOKEN,
    OAUTH_TOKENS,
    UNINSTALLED,
    Installation,
    InstallationStore,
)
from services.auth.secret_store import SecretStore
from services.auth.tokens import TokenKeeper

log = logging.getLogger(__name__)

CHANNEL_TITLE = "Kommo Bridge"


class Installer:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        states: InstallStates,
        installations: InstallationStore,
        secrets: SecretStore,
        tokens: TokenKeeper,
        oauth: KommoAccountClient,
        amojo: AmojoClient,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._states = states
        self._installations = installations
        self._secrets = secrets
        self._tokens = tokens
        self._oauth = oauth
        self._amojo = amojo

    async def install_link(self) -> tuple[str, str]:
        """The URL an admin opens to install the integration, and the state it carries."""
        if not self._settings.kommo_client_id:
            raise BadRequestError("BRIDGE_KOMMO_CLIENT_ID is not configured")
        state = await self._states.issue()
        query = urlencode({"client_id": self._settings.kommo_client_id, "state": state, "mode": "post_message"})
        return f"{self._settings.kommo_oauth_url}?{query}", state

    async def complete(self, code: str, referer: str, client_id: str, state: str, from_widget: bool) -> Installation:
        if not code:
            raise BadRequestError("the redirect carries no authorization code")
        if client_id and client_id != self._settings.kommo_client_id:
            raise BadRequestError("this installation is for another integration")
        domain = validate_domain(referer, allowed_suffixes=self._settings.kommo_domains)
        if not from_widget:  # widget installs come from Kommo itself and carry no state of ours
            await self._states.consume(state)
        pair = await self._oauth.exchange_code(
            domain,
            self._settings.kommo_client_id,
            self._settings.kommo_client_secret.get_secret_value(),
            code,
            self._settings.kommo_redirect_uri,
        )
        installation = await self._connect(domain, pair.access_token, pair)
        log.info("installed", extra={"account_id": installation.account_id, "domain": domain})
        return installation

    async def with_token(self, domain: str, access_token: str) -> Installation:
        """A private integration's long-lived token: no refresh, no redirect."""
        if not access_token:
            raise BadRequestError("a long-lived token is required")
        domain = validate_domain(domain, allowed_suffixes=self._settings.kommo_domains)
        installation = await self._connect(domain, access_token, None)
        log.info("installed with a long-lived token", extra={"account_id": installation.account_id})
        return installation

    async def _connect(self, domain: str, access_token: str, pair: TokenPair | None) -> Installation:
        """`pair` for OAuth installs; None for a long-lived token (nothing to refresh)."""
        info = await self._oauth.account(domain, access_token)
        if not info.amojo_id:
            raise BadRequestError("Kommo did not return the account's amojo_id; is the chat API enabled?")
        connected = await self._amojo.connect(info.amojo_id, CHANNEL_TITLE)
        async with self._engine.begin() as conn:
            await self._installations.save(
                info.amojo_id,
                connected.scope_id,
                info.name or CHANNEL_TITLE,
                domain=domain,
                kommo_account_id=info.id,
                token_kind=OAUTH_TOKENS if pair else LONG_LIVED_TOKEN,
                token_expires_at=pair.expires_at if pair else None,
                conn=conn,
            )
            await self._tokens.store(info.amojo_id, access_token, pair.refresh_token if pair else "", conn)
        return await self._installations.by_account(info.amojo_id)

    async def uninstall(self, client_uuid: str, kommo_account_id: int, signature: str) -> Installation:
        client_secret = self._settings.kommo_client_secret.get_secret_value()
        if client_uuid != self._settings.kommo_client_id or not verify_uninstall_signature(
            client_uuid, str(kommo_account_id), signature, client_secret
        ):
            raise AuthError("uninstall hook signature does not match")
        installation = await self._installations.by_kommo_account(kommo_account_id)
        async with self._engine.begin() as conn:
            # The installation row first, as a token refresh does: one lock order, no deadlock.
            await self._installations.lock(installation.account_id, conn)
            await self._secrets.delete_owner(installation_owner(installation.account_id), conn=conn)
            await self._installations.set_state(installation.account_id, UNINSTALLED, conn=conn)
        with contextlib.suppress(NotFoundError):  # already disconnected on Kommo's side
            await self._amojo.disconnect(installation.account_id)
        log.info("uninstalled", extra={"account_id": installation.account_id})
        return await self._installations.by_account(installation.account_id)
