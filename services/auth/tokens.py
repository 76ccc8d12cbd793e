"""Kommo REST tokens: always hand out a valid access token, refreshing it when due.

Kommo refresh tokens are single use, so a refresh is single-flight across every auth replica: the
installation row is locked (`SELECT … FOR UPDATE`) for the refresh, and whoever gets the lock second
finds the fresh token already stored. A refused refresh marks the installation "needs_reauth"
(visible in bridgectl) instead of retrying a dead token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.config import Settings
from libs.errors import CredentialRejectedError, NotFoundError, PermanentError, RetryableError
from libs.kommo.oauth import KommoAccountClient
from libs.observability import TOKEN_REFRESH_FAILURES
from libs.secret_names import KOMMO_ACCESS_TOKEN, KOMMO_REFRESH_TOKEN, installation_owner
from services.auth.installations import (
    ACTIVE,
    LONG_LIVED_TOKEN,
    NEEDS_REAUTH,
    InstallationStore,
)
from services.auth.secret_store import SecretStore

log = logging.getLogger(__name__)

# Refresh this long before expiry (on demand), and the background sweep looks this far ahead.
REFRESH_MARGIN = timedelta(minutes=10)
BACKGROUND_HORIZON = timedelta(hours=2)
BACKGROUND_INTERVAL_S = 60.0


class TokenKeeper:
    def __init__(
        self,
        engine: AsyncEngine,
        installations: InstallationStore,
        secrets: SecretStore,
        oauth: KommoAccountClient,
        settings: Settings,
    ) -> None:
        self._engine = engine
        self._installations = installations
        self._secrets = secrets
        self._oauth = oauth
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0

    async def store(
        self, account_id: str, access_token: str, refresh_token: str, conn: AsyncConnection | None = None
    ) -> None:
        owner = installation_owner(account_id)
        await self._secrets.put(owner, KOMMO_ACCESS_TOKEN, access_token, conn=conn)
        if refresh_token:
            await self._secrets.put(owner, KOMMO_REFRESH_TOKEN, refresh_token, conn=conn)

    async def access_token(self, account_id: str) -> tuple[str, datetime | None]:
        """A valid access token; refreshes first (single-flight) when it expires within the margin."""
        installation = await self._installations.by_account(account_id)
        owner = installation_owner(account_id)
        if installation.state == NEEDS_REAUTH:
            raise CredentialRejectedError("Kommo refused the refresh; an admin must install the integration again")
        if installation.state != ACTIVE:
            raise PermanentError(f"installation is {installation.state}")
        if not installation.token_kind:
            raise NotFoundError(
                f"account {account_id} was connected without OAuth (bridgectl accounts connect): "
                "install the integration to give the bridge Kommo's CRM API"
            )
        expires = installation.token_expires_at
        if installation.token_kind == LONG_LIVED_TOKEN or (
            expires is not None and expires - datetime.now(UTC) > REFRESH_MARGIN
        ):
            return await self._secrets.get(owner, KOMMO_ACCESS_TOKEN), expires
        return await self.refresh(account_id)

    async def refresh(self, account_id: str, *, margin: timedelta = REFRESH_MARGIN) -> tuple[str, datetime | None]:
        """Refresh unless, once the row is locked, the token turns out to be valid for `margin` more."""
        owner = installation_owner(account_id)
        refused: CredentialRejectedError | None = None
        async with self._engine.begin() as conn:
            installation = await self._installations.lock(account_id, conn)
            expires = installation.token_expires_at
            fresh = expires is not None and expires - datetime.now(UTC) > margin
            if installation.state == NEEDS_REAUTH:
                # Another caller's refresh (the background sweep, say) was refused while we waited.
                raise CredentialRejectedError("Kommo refused the refresh; an admin must install the integration again")
            if installation.state != ACTIVE or installation.token_kind == LONG_LIVED_TOKEN or fresh:
                # Another caller refreshed while we waited for the lock (or there is nothing to do).
                return await self._secrets.get(owner, KOMMO_ACCESS_TOKEN, conn=conn), expires
            refresh_token = await self._secrets.get(owner, KOMMO_REFRESH_TOKEN, conn=conn)
            try:
                pair = await self._oauth.refresh(
                    installation.domain,
                    self._settings.kommo_client_id,
                    self._settings.kommo_client_secret.get_secret_value(),
                    refresh_token,
                    self._settings.kommo_redirect_uri,
                )
            except CredentialRejectedError as exc:
                # Recorded in this same transaction, which commits: the state must outlive the error.
                await self._installations.set_state(account_id, NEEDS_REAUTH, str(exc), conn=conn)
                TOKEN_REFRESH_FAILURES.inc()
                refused = exc
            except RetryableError:
                TOKEN_REFRESH_FAILURES.inc()
                raise
            else:
                await self.store(account_id, pair.access_token, pair.refresh_token, conn)
                await self._installations.set_token_expiry(account_id, pair.expires_at, conn=conn)
                self.refreshes += 1
        if refused is not None:
            log.error("kommo refused the token refresh; re-authorisation needed", extra={"account_id": account_id})
            raise CredentialRejectedError(
                f"{refused}: Kommo refused the token refresh; an admin must install the integration again"
            )
        log.info("kommo tokens refreshed", extra={"account_id": account_id})
        return pair.access_token, pair.expires_at

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep(), name="token-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sweep(self) -> None:
        """Refresh ahead of expiry so no message ever waits for a refresh."""
        while True:
            try:
                due = await self._installations.due_for_refresh(datetime.now(UTC) + BACKGROUND_HORIZON)
            except Exception as exc:
                log.warning("could not list installations due for refresh", extra={"error": repr(exc)})
                due = []
            for account_id in due:  # one account's failure must not starve the others
                try:
                    await self.refresh(account_id, margin=BACKGROUND_HORIZON)
                except CredentialRejectedError:
                    pass  # recorded as needs_reauth
                except Exception as exc:
                    log.warning(
                        "background token refresh failed; will retry",
                        extra={"account_id": account_id, "error": repr(exc)},
                    )
            await asyncio.sleep(BACKGROUND_INTERVAL_S)
