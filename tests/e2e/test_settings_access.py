"""Opening the settings window: only with Kommo's one-time token, once, for that account alone."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from libs.devstack.stack import SANDBOX_DOMAIN
from tests.e2e.sandbox import Sandbox

KOMMO_ORIGIN = f"https://{SANDBOX_DOMAIN}"


async def widget_token(sandbox: Sandbox, domain: str = SANDBOX_DOMAIN, **claims: int) -> str:
    response = await sandbox.http.post(
        f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{domain}/widget_tokens", json=claims
    )
    response.raise_for_status()
    return str(response.json()["token"])


async def open_session(sandbox: Sandbox, token: str, origin: str = KOMMO_ORIGIN) -> httpx.Response:
    return await sandbox.http.post(
        f"{sandbox.stack.public_url}/settings/api/session", headers={"X-Auth-Token": token, "Origin": origin}
    )


async def test_a_kommo_token_opens_one_session_for_its_account(sandbox: Sandbox) -> None:
    base = sandbox.stack.public_url
    preflight = await sandbox.http.options(
        f"{base}/settings/api/session",
        headers={"Origin": KOMMO_ORIGIN, "Access-Control-Request-Headers": "x-auth-token"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == KOMMO_ORIGIN
    assert "X-Auth-Token" in preflight.headers["access-control-allow-headers"]
    evil = await sandbox.http.options(f"{base}/settings/api/session", headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers

    token = await widget_token(sandbox, user_id=501)
    opened = await open_session(sandbox, token)
    assert opened.status_code == 200, opened.text
    assert opened.headers["access-control-allow-origin"] == KOMMO_ORIGIN
    url = urlsplit(opened.json()["url"])
    assert url.path == "/settings/" and url.fragment.startswith("ticket=")
    ticket = url.fragment.removeprefix("ticket=")

    # The Kommo token is single use.
    replay = await open_session(sandbox, token)
    assert replay.status_code == 403 and "already used" in replay.json()["error"]

    async with httpx.AsyncClient(base_url=base) as page:  # the settings page, with its own cookie jar
        assert (await page.get("/settings/api/me")).status_code == 401
        entered = await page.post("/settings/api/enter", json={"ticket": ticket})
        assert entered.status_code == 200, entered.text
        assert entered.json()["account_id"] == sandbox.channel.account_id
        cookie = entered.headers["set-cookie"].lower()
        assert "httponly" in cookie and "path=/settings" in cookie
        me = await page.get("/settings/api/me")
        assert me.status_code == 200
        assert me.json()["account_id"] == sandbox.channel.account_id
        assert me.json()["domain"] == SANDBOX_DOMAIN and me.json()["kommo_user_id"] == "501"

    async with httpx.AsyncClient(base_url=base) as stranger:  # the ticket is single use too
        again = await stranger.post("/settings/api/enter", json={"ticket": ticket})
        assert again.status_code == 403
        stranger.cookies.set("bridge_settings", "guessed")
        forged_cookie = await stranger.get("/settings/api/me")
        assert forged_cookie.status_code == 403
        stranger.cookies.clear()
        forged_header = await stranger.get("/settings/api/me", headers={"X-Bridge-Session": "guessed"})
        assert forged_header.status_code == 403
        # A browser that refused the cookie in Kommo's iframe sends the session as a header instead.
        by_header = await stranger.get("/settings/api/me", headers={"X-Bridge-Session": entered.json()["session"]})
        assert by_header.status_code == 200 and by_header.json()["account_id"] == sandbox.channel.account_id


async def test_missing_forged_expired_and_foreign_tokens_are_refused(sandbox: Sandbox) -> None:
    import jwt

    missing = await sandbox.http.post(f"{sandbox.stack.public_url}/settings/api/session")
    assert missing.status_code == 401

    genuine = jwt.decode(await widget_token(sandbox), options={"verify_signature": False})
    forged = jwt.encode({**genuine, "jti": "another"}, "n" * 64, algorithm="HS256")
    assert (await open_session(sandbox, forged)).status_code == 403

    expired = await widget_token(sandbox, ttl_s=-120)
    response = await open_session(sandbox, expired)
    assert response.status_code == 403 and "expired" in response.json()["error"]

    # A genuine token of an account that never installed the bridge opens nothing.
    created = await sandbox.http.post(
        f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts",
        json={"domain": "stranger.kommo.com", "amojo_id": "f00df00d-0000-4000-8000-000000000001", "account_id": 999},
    )
    created.raise_for_status()
    foreign = await open_session(sandbox, await widget_token(sandbox, "stranger.kommo.com"))
    assert foreign.status_code == 403 and "not installed" in foreign.json()["error"]
