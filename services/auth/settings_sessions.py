"""Sessions of the settings window, opened only with Kommo's one-time token (§14).

The widget's call carries the token; auth checks it (signature with the integration's secret, audience,
expiry, an installed account whose domain issued it, and a `jti` never seen before) and hands out a
ticket good for one minute and one use. The settings page redeems the ticket for a session of its own
(an HttpOnly cookie), bound to that account and user. Only SHA-256 hashes of tickets and sessions
are stored, so a database dump opens nothing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import Settings
from libs.db.schema import settings_sessions, used_widget_tokens
from libs.errors import AuthError, NotFoundError
from libs.kommo.widget_tokens import base_address, verify_widget_token
from libs.status_texts import normalize_language
from services.auth.installations import LANGUAGE_FROM_SETTINGS_WINDOW, InstallationStore

log = logging.getLogger(__name__)

TICKET_TTL = timedelta(minutes=1)
MAX_LANGUAGE_TAG = 35  # the longest BCP 47 tag worth reading
SESSION_TTL = timedelta(hours=2)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class SettingsAccess:
    account_id: str
    kommo_user_id: str
    expires_at: datetime


class SettingsSessions:
    def __init__(self, engine: AsyncEngine, installations: InstallationStore, settings: Settings) -> None:
        self._engine = engine
        self._installations = installations
        self._settings = settings

    async def open(self, one_time_token: str, language: str = "") -> tuple[str, SettingsAccess]:
        """A ticket for the window. `language` is the Kommo user's (from the widget): the settings are
        opened by an account admin, whose language becomes the account's for delivery statuses."""
        facts = verify_widget_token(
            one_time_token,
            secret=self._settings.kommo_client_secret.get_secret_value(),
            audience=base_address(self._settings.kommo_redirect_uri or self._settings.public_url),
        )
        try:
            installation = await self._installations.by_kommo_account(facts.kommo_account_id)
        except NotFoundError:
            raise AuthError("this Kommo account has not installed the bridge", code="account_not_installed") from None
        if installation.domain != facts.account_domain:
            raise AuthError("the Kommo token was issued by another account", code="kommo_token_invalid")
        now = datetime.now(UTC)
        ticket = secrets.token_urlsafe(32)
        access = SettingsAccess(installation.account_id, facts.user_id, now + SESSION_TTL)
        async with self._engine.begin() as conn:
            await conn.execute(delete(used_widget_tokens).where(used_widget_tokens.c.expires_at < func.now()))
            first_use = (
                await conn.execute(
                    insert(used_widget_tokens)
                    .values(
                        jti=facts.jti, expires_at=datetime.fromtimestamp(facts.expires_at, UTC) + timedelta(minutes=5)
                    )
                    .on_conflict_do_nothing()
                    .returning(used_widget_tokens.c.jti)
                )
            ).first()
            if first_use is None:
                raise AuthError(
                    "this Kommo token was already used: open the settings from Kommo again", code="kommo_token_used"
                )
            await conn.execute(
                settings_sessions.insert().values(
                    ticket_hash=_digest(ticket),
                    account_id=access.account_id,
                    kommo_user_id=access.kommo_user_id,
                    ticket_expires_at=now + TICKET_TTL,
                    expires_at=access.expires_at,
                )
            )
        log.info("settings session opened", extra={"account_id": access.account_id, "kommo_user_id": facts.user_id})
        if language:
            kept = normalize_language(language[:MAX_LANGUAGE_TAG])
            if await self._installations.set_language(access.account_id, kept, LANGUAGE_FROM_SETTINGS_WINDOW):
                log.info("account language set", extra={"account_id": access.account_id, "language": kept})
        return ticket, access

    async def redeem(self, ticket: str) -> tuple[str, SettingsAccess]:
        session = secrets.token_urlsafe(32)
        statement = (
            update(settings_sessions)
            .where(
                settings_sessions.c.ticket_hash == _digest(ticket),
                settings_sessions.c.session_hash.is_(None),
                settings_sessions.c.ticket_expires_at > func.now(),
            )
            .values(session_hash=_digest(session))
            .returning(
                settings_sessions.c.account_id, settings_sessions.c.kommo_user_id, settings_sessions.c.expires_at
            )
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            raise AuthError(
                "this settings link was already used or has expired: open the settings from Kommo again",
                code="ticket_used",
            )
        return session, SettingsAccess(row.account_id, row.kommo_user_id, row.expires_at)

    async def get(self, session: str) -> SettingsAccess:
        query = select(
            settings_sessions.c.account_id, settings_sessions.c.kommo_user_id, settings_sessions.c.expires_at
        ).where(settings_sessions.c.session_hash == _digest(session), settings_sessions.c.expires_at > func.now())
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise AuthError(
                "the settings session has expired: open the settings from Kommo again", code="session_expired"
            )
        return SettingsAccess(row.account_id, row.kommo_user_id, row.expires_at)
