"""A WhatsApp number's access token mended from the settings window's API, end to end (five services as
processes, against the Kommo and WhatsApp Cloud emulators): Meta revokes the token and the health check
says so; a wrong token and another business's token are refused with their codes, changing nothing; the
number's new token (and a new app secret) is checked live, kept, the app subscribed to the business account
again, and messages flow both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.sandbox import Sandbox
from tests.e2e.test_settings_api import settings_client
from tests.e2e.whatsapp_side import WhatsAppNumber, connect_number, new_business, refused
from tests.support import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def whatsapp(shared_sandbox: Sandbox) -> AsyncIterator[WhatsAppNumber]:
    """A business number connected to the sandbox account from the settings window, as an admin does."""
    yield await connect_number(shared_sandbox, "Sandbox Token WA", "15550003333")


async def meta(whatsapp: WhatsAppNumber, method: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """Meta's side of things, through the emulator's control API."""
    sandbox = whatsapp.sandbox
    response = await sandbox.http.request(method, f"{sandbox.stack.whatsapp_url}/_emulator/{route}", json=body)
    assert response.status_code < 300, response.text
    result: dict[str, Any] = response.json()
    return result


async def health_of(page: httpx.AsyncClient, connection_id: str) -> dict[str, Any]:
    response = await page.get("/settings/api/health", params={"fresh": "1"})
    assert response.status_code == 200, response.text
    [channel] = [c for c in response.json()["channels"] if c["id"] == connection_id]
    return dict(channel)


async def test_a_revoked_access_token_is_mended_with_the_numbers_new_one(whatsapp: WhatsAppNumber) -> None:
    sandbox, business = whatsapp.sandbox, whatsapp.business
    graph = f"{sandbox.stack.whatsapp_url}/v23.0"
    fix = f"/settings/api/channels/{whatsapp.connection_id}/token"
    page = await settings_client(sandbox)
    try:
        await meta(whatsapp, "POST", "tokens/revoke", {"access_token": business.access_token})
        assert (await health_of(page, whatsapp.connection_id))["token_rejected"] is True

        wrong = await page.post(fix, json={"token": "EAAG-not-a-token"})
        assert "did not accept" in refused(wrong, 400, "whatsapp_token_rejected")
        other = await new_business(sandbox, "Someone Else's Shop", "15550003999")
        elsewhere = await page.post(fix, json={"token": other.access_token})
        refused(elsewhere, 400, "whatsapp_token_other_account")
        refused(await page.post(fix, json={"token": "  "}), 400, "token_missing")
        refused(await page.post(fix, json={"token": "EAAG", "app_secret": 42}), 400, "invalid_app_secret")
        assert (await health_of(page, whatsapp.connection_id))["token_rejected"] is True  # nothing changed

        # Meta: a new token for the system user; the app secret was reset too; the subscription is gone.
        new_token = (await meta(whatsapp, "POST", "tokens", {"waba_ids": [business.waba_id]}))["access_token"]
        new_secret = "a" * 32
        await meta(whatsapp, "PUT", "app", {"secret": new_secret})
        bearer = {"Authorization": f"Bearer {new_token}"}
        dropped = await sandbox.http.delete(f"{graph}/{business.waba_id}/subscribed_apps", headers=bearer)
        assert dropped.status_code == 200, dropped.text

        mended = await page.post(fix, json={"token": f" {new_token} ", "app_secret": new_secret})
        assert mended.status_code == 200, mended.text
        assert mended.json()["channel"]["external_id"] == business.phone_number_id
        health = await health_of(page, whatsapp.connection_id)
        assert (health["token_rejected"], health["webhook"]) == (False, "registered"), health
    finally:
        await page.aclose()
    subscribed = await sandbox.http.get(f"{graph}/{business.waba_id}/subscribed_apps", headers=bearer)
    assert subscribed.json()["data"], subscribed.text

    # Webhooks signed with the new app secret are taken; the manager's reply goes with the new token.
    wa_id = "5511900000301"
    await whatsapp.client_writes(wa_id, "Are you there after the token change?")

    async def in_kommo() -> bool:
        return bool(await whatsapp.incoming_from(wa_id))

    await wait_for(in_kommo, timeout=60, what="the client's message in Kommo")
    await sandbox.manager_writes(await whatsapp.conversation_of(wa_id), "Yes, all mended")

    async def sent() -> bool:
        return any(m["body"].get("text", {}).get("body") == "Yes, all mended" for m in await whatsapp.sent_to(wa_id))

    await wait_for(sent, timeout=60, what="the manager's reply at WhatsApp")
