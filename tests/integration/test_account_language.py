"""The account's language (for delivery statuses): English until an admin opens the settings window, then
that Kommo user's language (en/es/pt only), unless an operator chose one with bridgectl."""

from __future__ import annotations

import pytest
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.db import create_engine
from libs.errors import BadRequestError, NotFoundError
from libs.kommo.widget_tokens import base_address, issue_widget_token
from libs.rpc import call
from services.auth.installations import InstallationStore
from tests.integration.running_auth import CLIENT_SECRET, REDIRECT_URI, running_auth

ACCOUNT = "0b6d5f1c-1c1e-4f0e-9a8e-5f3c2d1b0a99"
DOMAIN = "shop.kommo.com"
KOMMO_ACCOUNT_ID = 31337


async def installation(auth: auth_pb2_grpc.AuthServiceAsyncStub) -> auth_pb2.Installation:
    return await call(auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=ACCOUNT))


async def open_settings(auth: auth_pb2_grpc.AuthServiceAsyncStub, language: str) -> None:
    token = issue_widget_token(
        secret=CLIENT_SECRET,
        account_domain=DOMAIN,
        audience=base_address(REDIRECT_URI),
        kommo_account_id=KOMMO_ACCOUNT_ID,
        user_id=501,
    )
    request = auth_pb2.OpenSettingsSessionRequest(one_time_token=token, language=language)
    assert (await call(auth.OpenSettingsSession, request)).ticket


async def test_the_admins_language_then_the_operators_choice(database_url: str) -> None:
    engine = create_engine(database_url)
    await InstallationStore(engine).save(ACCOUNT, "scope-1", "Shop", domain=DOMAIN, kommo_account_id=KOMMO_ACCOUNT_ID)
    async with running_auth(database_url) as auth:
        first = await installation(auth)
        assert (first.language, first.language_set_by) == ("en", "default")

        await open_settings(auth, "")  # an older widget that names no language changes nothing
        assert (await installation(auth)).language == "en"
        await open_settings(auth, "pt-BR")
        opened = await installation(auth)
        assert (opened.language, opened.language_set_by) == ("pt", "settings_window")
        await open_settings(auth, "ru")  # a language the bridge does not write in: English
        assert (await installation(auth)).language == "en"

        chosen = await call(
            auth.SetAccountLanguage, auth_pb2.SetAccountLanguageRequest(account=DOMAIN, language="es-419")
        )
        assert (chosen.account_id, chosen.language, chosen.language_set_by) == (ACCOUNT, "es", "operator")
        await open_settings(auth, "pt")  # the window no longer overrides the operator
        assert (await installation(auth)).language == "es"
        by_id = await call(auth.SetAccountLanguage, auth_pb2.SetAccountLanguageRequest(account=ACCOUNT, language="pt"))
        assert by_id.language == "pt"

        with pytest.raises(BadRequestError, match="en, es, pt"):
            await call(auth.SetAccountLanguage, auth_pb2.SetAccountLanguageRequest(account=ACCOUNT, language="de"))
        with pytest.raises(NotFoundError):
            request = auth_pb2.SetAccountLanguageRequest(account="nobody.kommo.com", language="es")
            await call(auth.SetAccountLanguage, request)
        listed = await call(auth.ListInstallations, auth_pb2.ListInstallationsRequest())
        assert [(i.account_id, i.language) for i in listed.installations] == [(ACCOUNT, "pt")]
    await engine.dispose()
