"""The account emulator over HTTP: its control routes, Kommo's error shapes, the token endpoint's
strictness, fault injection, the install redirect and the uninstall hook."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.kommo.emulator.accounts import AccountsState, create_account_emulator, fingerprint
from libs.kommo.oauth import UNINSTALL_USER_AGENT, KommoAccountClient, verify_uninstall_signature

BASE = "http://kommo.test"
DOMAIN = "shop.kommo.com"
CLIENT_ID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
CLIENT_SECRET = "Zt7Qm2Wx9Lp4Rv6Ns1Kd8Hb3Jf5Gc0Ya7Ue2Io4Pl9Mk6Nj1Bh3Vg8Cf5Dx0Sz"
REDIRECT_URI = "http://bridge.test/kommo/oauth"
UNINSTALL_URL = "http://bridge.test/kommo/uninstall"
AMOJO_ID = "5b1d2c3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"
ACCOUNT_ID = 30_123_456
TOKEN_PATH = f"/accounts/{DOMAIN}/oauth2/access_token"
ACCOUNT_PATH = f"/accounts/{DOMAIN}/api/v4/account"


@dataclass
class Emulator:
    state: AccountsState
    http: httpx.AsyncClient
    received: list[Request] = field(default_factory=list)

    async def setup(self) -> None:
        created = await self.http.post(
            "/_emulator/integrations",
            json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI},
        )
        assert created.status_code == 201, created.text
        assert created.json() == {"integration": {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI}}
        account = await self.http.post(
            "/_emulator/accounts",
            json={"domain": DOMAIN, "amojo_id": AMOJO_ID, "account_id": ACCOUNT_ID, "name": "Shop"},
        )
        assert account.status_code == 201, account.text

    async def code(self) -> str:
        answer = await self.http.post(f"/_emulator/accounts/{DOMAIN}/codes", json={"client_id": CLIENT_ID})
        assert answer.status_code == 201
        code: str = answer.json()["code"]
        return code

    async def token(self, **fields: Any) -> httpx.Response:
        body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI, **fields}
        return await self.http.post(TOKEN_PATH, json=body)

    async def pair(self) -> dict[str, Any]:
        answer = await self.token(grant_type="authorization_code", code=await self.code())
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    received: list[Request] = []

    async def bridge(request: Request) -> Response:
        received.append(request)
        return Response(status_code=200)

    bridge_app = Starlette(
        routes=[
            Route("/kommo/oauth", bridge, methods=["GET"]),
            Route("/kommo/uninstall", bridge, methods=["GET"]),
        ]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bridge_app)) as hook_http:
        app, state = create_account_emulator(AccountsState(hook_http=hook_http))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            emulator = Emulator(state, http, received)
            await emulator.setup()
            yield emulator


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    data: dict[str, Any] = response.json()
    assert data["status"] == status and isinstance(data["title"], str) and isinstance(data["detail"], str)
    return data


def rest_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    data = problem(response, status)
    assert data["type"] == f"https://httpstatus.es/{status}"
    assert set(data) <= {"title", "type", "status", "detail", "retry_after"}
    return data


def oauth_problem(response: httpx.Response) -> str:
    data = problem(response, 400)
    assert set(data) == {"hint", "title", "type", "status", "detail"}
    hint: str = data["hint"]
    return hint


# -- the token endpoint


async def test_token_answer_has_kommo_shape(emulator: Emulator) -> None:
    data = await emulator.pair()

    assert set(data) == {"token_type", "expires_in", "server_time", "access_token", "refresh_token"}
    assert data["token_type"] == "Bearer" and data["expires_in"] == 86400
    assert isinstance(data["server_time"], int)
    # Kommo's tokens are long: a column sized for short tokens fails here, not in production.
    assert len(data["access_token"]) > 500 and len(data["refresh_token"]) > 500


async def test_the_access_token_is_a_jwt_with_api_domain(emulator: Emulator) -> None:
    access: str = (await emulator.pair())["access_token"]
    header, claims, signature = access.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["api_domain"] == DOMAIN and payload["aud"] == CLIENT_ID
    assert payload["exp"] - payload["iat"] == 86400 and payload["account_id"] == ACCOUNT_ID
    assert header and signature


async def test_form_encoded_token_requests_are_accepted(emulator: Emulator) -> None:
    form = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "grant_type": "authorization_code",
        "code": await emulator.code(),
    }
    answer = await emulator.http.post(TOKEN_PATH, data=form)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("fields", "hint_contains"),
    [
        ({"grant_type": "password", "code": "x"}, "grant type"),
        ({"grant_type": "client_credentials"}, "grant type"),
        ({"grant_type": "authorization_code"}, "`code`"),
        ({"grant_type": "refresh_token"}, "`refresh_token`"),
        ({"grant_type": "authorization_code", "code": 5}, "`code`"),
        ({"grant_type": "authorization_code", "code": "x", "client_id": None}, "`client_id`"),
        ({"grant_type": "authorization_code", "code": "x", "redirect_uri": ""}, "`redirect_uri`"),
        ({"code": "x"}, "`grant_type`"),
    ],
)
async def test_malformed_token_requests_are_400(emulator: Emulator, fields: dict[str, Any], hint_contains: str) -> None:
    hint = oauth_problem(await emulator.token(**fields))
    assert hint_contains in hint


async def test_a_non_object_body_is_400(emulator: Emulator) -> None:
    for content in (b"[]", b"not json", b""):
        answer = await emulator.http.post(TOKEN_PATH, content=content, headers={"Content-Type": "application/json"})
        oauth_problem(answer)


async def test_refused_codes_name_the_reason_in_the_hint(emulator: Emulator) -> None:
    code = await emulator.code()
    assert "redirect" in oauth_problem(
        await emulator.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI + "/")
    )
    assert "Client" in oauth_problem(
        await emulator.token(grant_type="authorization_code", code=code, client_secret="nope")
    )
    assert (await emulator.token(grant_type="authorization_code", code=code)).status_code == 200
    assert "revoked" in oauth_problem(await emulator.token(grant_type="authorization_code", code=code))


async def test_the_token_endpoint_of_an_unknown_account_is_404(emulator: Emulator) -> None:
    answer = await emulator.http.post("/accounts/nobody.kommo.com/oauth2/access_token", json={})
    rest_problem(answer, 404)


# -- the account endpoint


async def test_account_body_and_with_amojo_id(emulator: Emulator) -> None:
    access = (await emulator.pair())["access_token"]
    auth = {"Authorization": f"Bearer {access}"}

    plain = await emulator.http.get(ACCOUNT_PATH, headers=auth)
    with_amojo = await emulator.http.get(ACCOUNT_PATH, params={"with": "version,amojo_id"}, headers=auth)

    assert plain.status_code == 200 and plain.headers["content-type"] == "application/hal+json"
    body = plain.json()
    assert {"id", "name", "subdomain", "current_user_id", "country"} <= set(body)
    assert (body["id"], body["name"], body["subdomain"]) == (ACCOUNT_ID, "Shop", "shop")
    assert "amojo_id" not in body
    assert with_amojo.json()["amojo_id"] == AMOJO_ID


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer not-a-token", "Token {access}"]
)
async def test_account_needs_a_bearer_token(emulator: Emulator, authorization: str | None) -> None:
    access = (await emulator.pair())["access_token"]
    headers = {} if authorization is None else {"Authorization": authorization.format(access=access)}
    rest_problem(await emulator.http.get(ACCOUNT_PATH, headers=headers), 401)


async def test_unknown_account_paths_are_404(emulator: Emulator) -> None:
    rest_problem(await emulator.http.get(f"/accounts/{DOMAIN}/api/v4/leads"), 404)
    rest_problem(await emulator.http.get("/accounts/nobody.kommo.com/api/v4/account"), 404)


async def test_unpaid_account_is_402(emulator: Emulator) -> None:
    access = (await emulator.pair())["access_token"]
    paid = await emulator.http.post(f"/_emulator/accounts/{DOMAIN}/paid", json={"paid": False})
    assert paid.json() == {"paid": False}
    answer = await emulator.http.get(ACCOUNT_PATH, headers={"Authorization": f"Bearer {access}"})
    rest_problem(answer, 402)


# -- control routes


async def test_control_listings_never_show_secrets(emulator: Emulator) -> None:
    integrations = await emulator.http.get("/_emulator/integrations")
    accounts = await emulator.http.get("/_emulator/accounts")

    assert CLIENT_SECRET not in integrations.text
    assert accounts.json() == {
        "accounts": [
            {
                "domain": DOMAIN,
                "subdomain": "shop",
                "amojo_id": AMOJO_ID,
                "account_id": ACCOUNT_ID,
                "name": "Shop",
                "current_user_id": ACCOUNT_ID + 1,
                "country": "US",
                "paid": True,
            }
        ]
    }


async def test_codes_route_returns_a_code_and_the_install_redirect(emulator: Emulator) -> None:
    answer = await emulator.http.post(f"/_emulator/accounts/{DOMAIN}/codes")  # one integration: client_id optional

    data = answer.json()
    assert set(data) == {"code", "redirect_url"}
    url = httpx.URL(data["redirect_url"])
    assert str(url.copy_with(query=None)) == REDIRECT_URI
    assert dict(url.params) == {
        "code": data["code"],
        "referer": DOMAIN,
        "platform": "2",
        "client_id": CLIENT_ID,
        "from_widget": "1",
    }


async def test_install_route_sends_the_redirect_once(emulator: Emulator) -> None:
    answer = await emulator.http.post(f"/_emulator/accounts/{DOMAIN}/install", json={})

    data = answer.json()
    assert data["hook"]["status_code"] == 200 and data["hook"]["kind"] == "install"
    (request,) = emulator.received
    assert request.url.path == "/kommo/oauth"
    assert request.query_params["code"] == data["code"] and request.query_params["referer"] == DOMAIN
    client = KommoAccountClient(BASE + "/accounts/{domain}", emulator.http)
    pair = await client.exchange_code(
        request.query_params["referer"], CLIENT_ID, CLIENT_SECRET, request.query_params["code"], REDIRECT_URI
    )
    assert (await client.account(DOMAIN, pair.access_token)).amojo_id == AMOJO_ID


async def test_oauth_summary_counts_without_token_values(emulator: Emulator) -> None:
    first = await emulator.pair()
    second = (await emulator.token(grant_type="refresh_token", refresh_token=first["refresh_token"])).json()
    await emulator.http.get(ACCOUNT_PATH, headers={"Authorization": f"Bearer {second['access_token']}"})
    again = await emulator.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    oauth_problem(again)

    answer = await emulator.http.get(f"/_emulator/accounts/{DOMAIN}/oauth")

    summary = answer.json()
    for token in (first["access_token"], first["refresh_token"], second["access_token"], second["refresh_token"]):
        assert token not in answer.text
    assert summary["domain"] == DOMAIN and summary["refresh_count"] == 1
    assert summary["reused_refresh_tokens"] == []
    assert [(a["fingerprint"], a["ok"]) for a in summary["refresh_attempts"]] == [
        (fingerprint(first["refresh_token"]), True),
        (fingerprint(first["refresh_token"]), False),
    ]
    assert summary["tokens_in_use"] == {"access_valid": 2, "refresh_valid": 1, "api_calls": 1}
    assert summary["codes"] == {"issued": 1, "used": 1, "pending": 0}
    old, new = summary["grants"]
    assert (old["origin"], old["retired"], old["refresh_valid"]) == ("authorization_code", True, False)
    assert (new["origin"], new["parent"], new["refresh_valid"]) == ("refresh_token", old["id"], True)
    assert new["refresh_fingerprint"] == fingerprint(second["refresh_token"])


async def test_revoke_route(emulator: Emulator) -> None:
    pair = await emulator.pair()

    answer = await emulator.http.post(f"/_emulator/accounts/{DOMAIN}/revoke")

    assert answer.json() == {"revoked": 1}
    rest_problem(
        await emulator.http.get(ACCOUNT_PATH, headers={"Authorization": f"Bearer {pair['access_token']}"}), 401
    )
    assert "revoked" in oauth_problem(
        await emulator.token(grant_type="refresh_token", refresh_token=pair["refresh_token"])
    )
    summary = (await emulator.http.get(f"/_emulator/accounts/{DOMAIN}/oauth")).json()
    assert summary["tokens_in_use"]["access_valid"] == 0 and summary["tokens_in_use"]["refresh_valid"] == 0


async def test_uninstall_hook_route(emulator: Emulator) -> None:
    answer = await emulator.http.post(f"/_emulator/accounts/{DOMAIN}/uninstall_hook", json={"url": UNINSTALL_URL})

    assert answer.json() == {"status_code": 200}
    (request,) = emulator.received
    assert request.headers["user-agent"] == UNINSTALL_USER_AGENT
    q = request.query_params
    assert q["client_uuid"] == CLIENT_ID and q["account_id"] == str(ACCOUNT_ID)
    assert verify_uninstall_signature(q["client_uuid"], q["account_id"], q["signature"], CLIENT_SECRET)
    hooks = (await emulator.http.get("/_emulator/hooks")).json()["hooks"]
    assert [(h["kind"], h["status_code"]) for h in hooks] == [("uninstall", 200)]


async def test_uninstall_hook_to_a_dead_url_reports_zero() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as hook_http:
        state = AccountsState(hook_http=hook_http)
        state.register_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
        state.create_account(DOMAIN, AMOJO_ID, ACCOUNT_ID, "Shop")
        assert await state.send_uninstall_hook(DOMAIN, UNINSTALL_URL) == 0
    (call,) = state.hook_calls()
    assert call.status_code is None and call.error == "ConnectError"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_emulator/integrations", {"client_id": "x"}, 400),
        ("/_emulator/accounts", {"domain": "https://evil.test", "amojo_id": "a", "account_id": 1}, 400),
        ("/_emulator/accounts", {"domain": "a.kommo.com", "amojo_id": "a", "account_id": "1"}, 400),
        ("/_emulator/accounts", {"domain": "a.kommo.com", "amojo_id": "a", "account_id": 0}, 400),
        ("/_emulator/accounts/nobody.kommo.com/codes", {}, 404),
        ("/_emulator/accounts/shop.kommo.com/codes", {"client_id": "unknown"}, 404),
        ("/_emulator/accounts/nobody.kommo.com/revoke", None, 404),
        ("/_emulator/accounts/shop.kommo.com/uninstall_hook", {}, 400),
        ("/_emulator/accounts/shop.kommo.com/paid", {}, 400),
    ],
)
async def test_control_routes_reject_bad_input(
    emulator: Emulator, path: str, body: dict[str, Any] | None, status: int
) -> None:
    answer = await emulator.http.post(path, json=body) if body is not None else await emulator.http.post(path)
    assert answer.status_code == status, answer.text
    assert "error" in answer.json()


async def test_codes_need_a_client_id_when_several_integrations_exist(emulator: Emulator) -> None:
    emulator.state.register_integration("second-client", "second-secret-0123456789", REDIRECT_URI)
    answer = await emulator.http.post(f"/_emulator/accounts/{DOMAIN}/codes")
    assert answer.status_code == 400


# -- faults and recording


async def test_faults_over_http_give_kommo_error_bodies(emulator: Emulator) -> None:
    await emulator.http.post(
        "/_emulator/faults", json={"path": "/oauth2/access_token", "status": 429, "retry_after": 30}
    )
    await emulator.http.post("/_emulator/faults", json={"path": "/api/v4/account", "status": 503})

    limited = await emulator.token(grant_type="authorization_code", code=await emulator.code())
    unavailable = await emulator.http.get(ACCOUNT_PATH)

    assert rest_problem(limited, 429)["retry_after"] == 30
    assert rest_problem(unavailable, 503)["title"] == "Service Unavailable"
    assert (await emulator.pair())["access_token"]  # faults are used up


async def test_requests_are_recorded_but_control_calls_are_not(emulator: Emulator) -> None:
    await emulator.pair()
    recorded = (await emulator.http.get("/_emulator/requests")).json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in recorded] == [("POST", TOKEN_PATH, 200)]
