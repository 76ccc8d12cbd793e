"""KommoAccountClient: the real client against the account emulator (codes, rotation, account info,
revocation, faults), its one failure mapping with transports that fail on purpose, the domain guard and
the uninstall signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.emulation import Fault
from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from libs.kommo.emulator.accounts import AccountsState, create_account_emulator, fingerprint
from libs.kommo.oauth import (
    KOMMO_DOMAIN_SUFFIXES,
    UNINSTALL_USER_AGENT,
    AccountInfo,
    KommoAccountClient,
    TokenPair,
    validate_domain,
    verify_uninstall_signature,
)
from tests.support import ManualClock as Clock

BASE = "http://kommo.test"
TEMPLATE = BASE + "/accounts/{domain}"
DOMAIN = "shop.kommo.com"
OTHER_DOMAIN = "other.kommo.com"
CLIENT_ID = "6f1c2a4e-3b7d-4c55-9a0e-2d8f6b1e7c90"
CLIENT_SECRET = "q8PZ7m1Xk2LwV9rT4sNc6Hy3Ud5Gb0Je8Af1Rk7Wz2Qp4Mx9Lt6Vn3Bc5Yd0Hs"
REDIRECT_URI = "https://bridge.test/kommo/oauth"
AMOJO_ID = "f3c6340d-7a4b-4c1e-9d2f-5e8a1b0c6d42"
ACCOUNT_ID = 31_000_001
START = datetime(2025, 7, 4, 12, 0, tzinfo=UTC)


@dataclass
class Kommo:
    state: AccountsState
    http: httpx.AsyncClient
    client: KommoAccountClient
    clock: Clock

    async def install(self, domain: str = DOMAIN) -> TokenPair:
        code = self.state.issue_code(domain, CLIENT_ID)
        return await self.client.exchange_code(domain, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)

    async def refresh(self, pair: TokenPair, domain: str = DOMAIN) -> TokenPair:
        return await self.client.refresh(domain, CLIENT_ID, CLIENT_SECRET, pair.refresh_token, REDIRECT_URI)


@pytest.fixture
async def kommo() -> AsyncIterator[Kommo]:
    clock = Clock(START)
    app, state = create_account_emulator(AccountsState(clock=clock))
    state.register_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    state.create_account(DOMAIN, AMOJO_ID, ACCOUNT_ID, "Shop")
    state.create_account(OTHER_DOMAIN, "0d3c5e1a-2b4f-4a6c-8e9d-7f1a2b3c4d5e", ACCOUNT_ID + 1, "Other")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield Kommo(state, http, KommoAccountClient(TEMPLATE, http, clock=clock), clock)


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    text = f"{error} {error!r} {error.args!r}"
    for secret in (CLIENT_SECRET, *secrets):
        assert secret not in text


# -- code exchange


async def test_exchange_code_returns_a_pair_and_sends_exactly_the_documented_body(kommo: Kommo) -> None:
    code = kommo.state.issue_code(DOMAIN, CLIENT_ID)

    pair = await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)

    assert pair.access_token and pair.refresh_token and pair.access_token != pair.refresh_token
    assert pair.token_type == "Bearer"
    assert pair.expires_at == START + timedelta(days=1)
    (request,) = kommo.state.log.entries("/oauth2/access_token")
    assert request.method == "POST" and request.path == f"/accounts/{DOMAIN}/oauth2/access_token"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }
    assert request.status == 200


async def test_a_code_is_single_use(kommo: Kommo) -> None:
    code = kommo.state.issue_code(DOMAIN, CLIENT_ID)
    await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)

    with pytest.raises(BadRequestError, match="authorization code invalid or expired") as caught:
        await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)

    assert_no_secret(caught.value, code)
    assert [r.status for r in kommo.state.log.entries("/oauth2/access_token")] == [200, 400]


@pytest.mark.parametrize(
    "redirect_uri",
    [REDIRECT_URI + "/", REDIRECT_URI.upper(), REDIRECT_URI + "?x=1", REDIRECT_URI.replace("https", "http")],
)
async def test_the_redirect_uri_must_match_exactly_and_a_rejection_does_not_use_the_code(
    kommo: Kommo, redirect_uri: str
) -> None:
    code = kommo.state.issue_code(DOMAIN, CLIENT_ID)

    with pytest.raises(BadRequestError) as caught:
        await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, redirect_uri)
    assert_no_secret(caught.value, code)

    pair = await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)
    assert pair.access_token


async def test_a_code_lives_twenty_minutes(kommo: Kommo) -> None:
    fresh = kommo.state.issue_code(DOMAIN, CLIENT_ID)
    stale = kommo.state.issue_code(DOMAIN, CLIENT_ID)
    kommo.clock.advance(20 * 60 - 1)
    assert await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, fresh, REDIRECT_URI)

    kommo.clock.advance(1)
    with pytest.raises(BadRequestError, match="invalid or expired") as caught:
        await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, stale, REDIRECT_URI)
    assert_no_secret(caught.value, stale)


async def test_a_code_only_works_for_its_account_client_and_secret(kommo: Kommo) -> None:
    other_id = "a2b3c4d5-0000-4000-8000-000000000001"
    kommo.state.register_integration(other_id, "another-secret-value-123456", REDIRECT_URI)
    code = kommo.state.issue_code(DOMAIN, CLIENT_ID)
    attempts = [
        (OTHER_DOMAIN, CLIENT_ID, CLIENT_SECRET),
        (DOMAIN, other_id, "another-secret-value-123456"),
        (DOMAIN, CLIENT_ID, "wrong-secret"),
        (DOMAIN, "unknown-client", CLIENT_SECRET),
    ]
    for domain, client_id, secret in attempts:
        with pytest.raises(BadRequestError) as caught:
            await kommo.client.exchange_code(domain, client_id, secret, code, REDIRECT_URI)
        assert_no_secret(caught.value, code, secret)

    assert await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)


async def test_an_unknown_code_or_account_is_rejected(kommo: Kommo) -> None:
    with pytest.raises(BadRequestError):
        await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, "def50200deadbeef", REDIRECT_URI)
    code = kommo.state.issue_code(DOMAIN, CLIENT_ID)
    with pytest.raises(NotFoundError):
        await kommo.client.exchange_code("gone.kommo.com", CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)


# -- refresh rotation


async def test_refresh_rotates_the_pair(kommo: Kommo) -> None:
    first = await kommo.install()
    kommo.clock.advance(3600)

    second = await kommo.refresh(first)

    assert {second.access_token, second.refresh_token}.isdisjoint({first.access_token, first.refresh_token})
    assert second.expires_at == kommo.clock.now + timedelta(days=1)
    request = kommo.state.log.entries("/oauth2/access_token")[-1]
    assert request.json() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": first.refresh_token,
        "redirect_uri": REDIRECT_URI,
    }
    assert kommo.state.refresh_count(DOMAIN) == 1


async def test_the_old_refresh_token_works_until_the_new_access_token_is_used(kommo: Kommo) -> None:
    first = await kommo.install()
    lost = await kommo.refresh(first)  # e.g. the answer was lost before it was stored

    retried = await kommo.refresh(first)  # still valid: nothing of the new pair was used yet
    await kommo.client.account(DOMAIN, retried.access_token)

    with pytest.raises(CredentialRejectedError) as caught:
        await kommo.refresh(first)
    assert_no_secret(caught.value, first.refresh_token, first.access_token)
    assert lost.access_token != retried.access_token
    assert kommo.state.refresh_count(DOMAIN) == 2
    assert kommo.state.reused_refresh_tokens(DOMAIN) == [fingerprint(first.refresh_token)]
    attempts = kommo.state.refresh_attempts(DOMAIN)
    assert [a.ok for a in attempts] == [True, True, False]
    assert {a.fingerprint for a in attempts} == {fingerprint(first.refresh_token)}


async def test_the_old_refresh_token_dies_when_the_new_refresh_token_is_used(kommo: Kommo) -> None:
    first = await kommo.install()
    second = await kommo.refresh(first)
    third = await kommo.refresh(second)

    with pytest.raises(CredentialRejectedError):
        await kommo.refresh(first)
    assert await kommo.refresh(third)  # the chain goes on
    assert kommo.state.refresh_count(DOMAIN) == 3
    assert kommo.state.reused_refresh_tokens(DOMAIN) == []


async def test_a_refresh_token_only_works_with_its_client_secret_and_redirect(kommo: Kommo) -> None:
    pair = await kommo.install()
    for secret, redirect in [("wrong-secret", REDIRECT_URI), (CLIENT_SECRET, REDIRECT_URI + "/x")]:
        with pytest.raises(CredentialRejectedError) as caught:
            await kommo.client.refresh(DOMAIN, CLIENT_ID, secret, pair.refresh_token, redirect)
        assert_no_secret(caught.value, secret, pair.refresh_token)
    with pytest.raises(CredentialRejectedError):
        await kommo.refresh(pair, domain=OTHER_DOMAIN)
    assert await kommo.refresh(pair)


async def test_an_expired_refresh_token_is_rejected(kommo: Kommo) -> None:
    kommo.state.refresh_token_ttl_s = 600
    pair = await kommo.install()
    kommo.clock.advance(600)

    with pytest.raises(CredentialRejectedError):
        await kommo.refresh(pair)
    assert kommo.state.refresh_count(DOMAIN) == 0


# -- account


async def test_account_info_with_amojo_id(kommo: Kommo) -> None:
    pair = await kommo.install()

    info = await kommo.client.account(DOMAIN, pair.access_token)

    assert info == AccountInfo(id=ACCOUNT_ID, name="Shop", subdomain="shop", amojo_id=AMOJO_ID)
    (request,) = kommo.state.log.entries("/api/v4/account")
    assert request.method == "GET" and request.path == f"/accounts/{DOMAIN}/api/v4/account"
    assert request.query == "with=amojo_id"
    assert request.headers["authorization"] == f"Bearer {pair.access_token}"


async def test_an_access_token_opens_only_its_own_account(kommo: Kommo) -> None:
    pair = await kommo.install()
    with pytest.raises(CredentialRejectedError) as caught:
        await kommo.client.account(OTHER_DOMAIN, pair.access_token)
    assert_no_secret(caught.value, pair.access_token)


async def test_an_access_token_expires(kommo: Kommo) -> None:
    kommo.state.access_token_ttl_s = 60
    pair = await kommo.install()
    assert pair.expires_at == START + timedelta(seconds=60)
    kommo.clock.advance(59)
    assert await kommo.client.account(DOMAIN, pair.access_token)

    kommo.clock.advance(1)
    with pytest.raises(CredentialRejectedError):
        await kommo.client.account(DOMAIN, pair.access_token)
    fresh = await kommo.refresh(pair)  # an expired access token does not stop a refresh
    assert await kommo.client.account(DOMAIN, fresh.access_token)


async def test_revocation_gives_401_on_the_api_and_400_on_refresh(kommo: Kommo) -> None:
    pair = await kommo.install()
    pending = kommo.state.issue_code(DOMAIN, CLIENT_ID)

    assert kommo.state.revoke(DOMAIN) == 1

    with pytest.raises(CredentialRejectedError, match="HTTP 401") as on_api:
        await kommo.client.account(DOMAIN, pair.access_token)
    with pytest.raises(CredentialRejectedError, match="HTTP 400") as on_refresh:
        await kommo.refresh(pair)
    with pytest.raises(BadRequestError):
        await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, pending, REDIRECT_URI)
    assert_no_secret(on_api.value, pair.access_token)
    assert_no_secret(on_refresh.value, pair.refresh_token)
    # A fresh install afterwards works again.
    assert await kommo.client.account(DOMAIN, (await kommo.install()).access_token)


async def test_an_unpaid_account_is_a_permanent_error(kommo: Kommo) -> None:
    pair = await kommo.install()
    kommo.state.set_paid(DOMAIN, False)

    with pytest.raises(PermanentError, match="account not paid") as caught:
        await kommo.client.account(DOMAIN, pair.access_token)
    assert not isinstance(caught.value, BadRequestError | NotFoundError)


# -- faults from the emulator


async def test_429_on_the_token_endpoint_is_rate_limited_with_the_body_retry_after(kommo: Kommo) -> None:
    kommo.state.faults.add(Fault(path="/oauth2/access_token", status=429, retry_after=7))
    code = kommo.state.issue_code(DOMAIN, CLIENT_ID)

    with pytest.raises(RateLimitedError) as caught:
        await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)

    assert caught.value.retry_after == 7
    assert_no_secret(caught.value, code)
    # The refused request did not use the code up.
    assert await kommo.client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retryable_and_a_refused_refresh_keeps_the_old_token(kommo: Kommo, status: int) -> None:
    pair = await kommo.install()
    kommo.state.faults.add(Fault(path="/oauth2/access_token", status=status))

    with pytest.raises(RetryableError) as caught:
        await kommo.refresh(pair)

    assert not isinstance(caught.value, RateLimitedError)
    assert f"HTTP {status}" in str(caught.value)
    assert await kommo.refresh(pair)
    assert kommo.state.refresh_count(DOMAIN) == 1


async def test_429_on_the_account_endpoint(kommo: Kommo) -> None:
    pair = await kommo.install()
    kommo.state.faults.add(Fault(path="/api/v4/account", status=429))

    with pytest.raises(RateLimitedError) as caught:
        await kommo.client.account(DOMAIN, pair.access_token)

    assert caught.value.retry_after == 1


# -- the one failure mapping, with transports that fail on purpose

Handler = Callable[[httpx.Request], httpx.Response]
FIXED_NOW = datetime(2025, 1, 1, tzinfo=UTC)


def make_client(handler: Handler) -> tuple[KommoAccountClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return KommoAccountClient("https://{domain}", http, clock=lambda: FIXED_NOW), seen


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None, text: str = "") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers, text=text)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def raiser(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


TOKENS = {"token_type": "Bearer", "expires_in": 86400, "access_token": "acc-1", "refresh_token": "ref-1"}


async def call(client: KommoAccountClient, operation: str) -> object:
    if operation == "exchange_code":
        return await client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, "the-code", REDIRECT_URI)
    if operation == "refresh":
        return await client.refresh(DOMAIN, CLIENT_ID, CLIENT_SECRET, "the-refresh-token", REDIRECT_URI)
    return await client.account(DOMAIN, "the-access-token")


OPERATIONS = ["exchange_code", "refresh", "account"]
SECRETS_OF = {
    "exchange_code": ("the-code", CLIENT_SECRET),
    "refresh": ("the-refresh-token", CLIENT_SECRET),
    "account": ("the-access-token",),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("timed out"), httpx.ConnectTimeout("x"), httpx.ConnectError("refused"), httpx.ReadError("x")],
)
async def test_transport_failures_are_retryable(operation: str, exc: Exception) -> None:
    client, _ = make_client(raiser(exc))
    with pytest.raises(RetryableError) as caught:
        await call(client, operation)
    assert not isinstance(caught.value, RateLimitedError)
    assert operation in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "status", "expected"),
    [
        ("exchange_code", 400, BadRequestError),
        ("exchange_code", 401, BadRequestError),
        ("refresh", 400, CredentialRejectedError),
        ("refresh", 401, CredentialRejectedError),
        ("account", 401, CredentialRejectedError),
        ("account", 403, CredentialRejectedError),
        ("account", 400, BadRequestError),
        ("account", 404, NotFoundError),
        ("refresh", 402, PermanentError),
        ("account", 402, PermanentError),
        ("account", 422, PermanentError),
        ("refresh", 500, RetryableError),
        ("account", 503, RetryableError),
        ("account", 408, RetryableError),
    ],
)
async def test_status_mapping(operation: str, status: int, expected: type[BridgeError]) -> None:
    body = {"title": "t", "type": f"https://httpstatus.es/{status}", "status": status, "detail": "d"}
    client, _ = make_client(answer(status, body))
    with pytest.raises(expected) as caught:
        await call(client, operation)
    if expected is PermanentError:
        assert type(caught.value) is PermanentError
    if status == 402:
        assert "account not paid" in str(caught.value)
    if expected is BadRequestError and operation == "exchange_code":
        assert "authorization code invalid or expired" in str(caught.value)


async def test_retry_after_prefers_the_body_then_the_header_then_one_second() -> None:
    both, _ = make_client(answer(429, {"status": 429, "retry_after": 300}, headers={"Retry-After": "5"}))
    header, _ = make_client(answer(429, {"status": 429}, headers={"Retry-After": "5"}))
    neither, _ = make_client(answer(429, None, text="slow down"))
    results = []
    for client in (both, header, neither):
        with pytest.raises(RateLimitedError) as caught:
            await call(client, "refresh")
        results.append(caught.value.retry_after)
    assert results == [300, 5, 1.0]


async def test_redirects_are_not_followed() -> None:
    client, seen = make_client(answer(302, headers={"Location": "http://169.254.169.254/latest"}))
    with pytest.raises(PermanentError, match="redirect not followed"):
        await call(client, "exchange_code")
    assert len(seen) == 1


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"access_token": "a"},
        {"refresh_token": "r"},
        {"access_token": 1, "refresh_token": "r"},
    ],
)
async def test_a_2xx_without_a_token_pair_is_retryable(body: Any) -> None:
    client, _ = make_client(answer(200, body, text="<html>ok</html>"))
    with pytest.raises(RetryableError):
        await call(client, "refresh")


async def test_account_without_an_integer_id_is_retryable() -> None:
    client, _ = make_client(answer(200, {"id": "31000001", "amojo_id": AMOJO_ID}))
    with pytest.raises(RetryableError):
        await call(client, "account")


async def test_expires_at_uses_server_time_when_present_and_the_clock_otherwise() -> None:
    with_server_time, _ = make_client(answer(200, {**TOKENS, "expires_in": 100, "server_time": 1_751_621_727}))
    without, _ = make_client(answer(200, {**TOKENS, "expires_in": 100}))
    no_ttl, _ = make_client(answer(200, {"access_token": "a", "refresh_token": "r"}))

    a = await with_server_time.refresh(DOMAIN, CLIENT_ID, CLIENT_SECRET, "r0", REDIRECT_URI)
    b = await without.refresh(DOMAIN, CLIENT_ID, CLIENT_SECRET, "r0", REDIRECT_URI)
    c = await no_ttl.refresh(DOMAIN, CLIENT_ID, CLIENT_SECRET, "r0", REDIRECT_URI)

    assert a.expires_at == datetime.fromtimestamp(1_751_621_727 + 100, UTC)
    assert b.expires_at == FIXED_NOW + timedelta(seconds=100)
    assert c.expires_at == FIXED_NOW + timedelta(days=1) and c.token_type == "Bearer"


async def test_the_account_domain_is_put_into_the_template() -> None:
    client, seen = make_client(answer(200, {"id": 1, "name": "n", "subdomain": "shop", "amojo_id": "x"}))
    await client.account("Shop.Kommo.com", "tok")
    assert str(seen[0].url) == "https://shop.kommo.com/api/v4/account?with=amojo_id"
    assert seen[0].headers["authorization"] == "Bearer tok"


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_server_echoing_secrets_has_them_redacted(operation: str) -> None:
    """Whatever the server says is redacted of the call's own code, token and client secret."""
    secrets = SECRETS_OF[operation]
    echo = " ".join(secrets * 2)
    for status in (400, 401, 402, 404, 422, 429, 500):
        client, _ = make_client(answer(status, {"hint": echo, "detail": echo, "status": status}))
        with pytest.raises(BridgeError) as caught:
            await call(client, operation)
        for secret in secrets:
            assert secret not in f"{caught.value} {caught.value!r}", (operation, status)
    text_client, _ = make_client(answer(502, None, text=echo))
    with pytest.raises(RetryableError) as caught_text:
        await call(text_client, operation)
    assert "[redacted]" in str(caught_text.value)
    for secret in secrets:
        assert secret not in str(caught_text.value)


async def test_empty_credentials_are_refused_without_a_request() -> None:
    client, seen = make_client(answer(200, TOKENS))
    with pytest.raises(BadRequestError):
        await client.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, "", REDIRECT_URI)
    with pytest.raises(CredentialRejectedError):
        await client.refresh(DOMAIN, CLIENT_ID, CLIENT_SECRET, "", REDIRECT_URI)
    with pytest.raises(AuthError):
        await client.account(DOMAIN, "")
    assert seen == []


def test_reprs_never_show_tokens() -> None:
    pair = TokenPair("access-secret-value", "refresh-secret-value", FIXED_NOW)
    http = httpx.AsyncClient()
    client = KommoAccountClient(TEMPLATE, http)
    for text in (repr(pair), str(pair), repr(client), f"{pair!r}"):
        assert "access-secret-value" not in text and "refresh-secret-value" not in text
    assert "expires_at" in repr(pair)


@pytest.mark.parametrize(
    "template",
    ["https://kommo.test", "ftp://{domain}", "{domain}", "https://{domain}/{domain}", "https://{domain}?x=1"],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        KommoAccountClient(template, httpx.AsyncClient())


# -- the domain guard


@pytest.mark.parametrize(
    ("referer", "domain"),
    [
        ("shop.kommo.com", "shop.kommo.com"),
        ("Shop.Kommo.COM", "shop.kommo.com"),
        ("my-shop2.amocrm.ru", "my-shop2.amocrm.ru"),
        ("a.b", "a.b"),
        ("x" * 63 + ".kommo.com", "x" * 63 + ".kommo.com"),
    ],
)
def test_validate_domain_accepts_hostnames(referer: str, domain: str) -> None:
    assert validate_domain(referer) == domain


@pytest.mark.parametrize(
    "referer",
    [
        "",
        "https://shop.kommo.com",
        "//shop.kommo.com",
        "shop.kommo.com/",
        "shop.kommo.com/api",
        "shop.kommo.com:443",
        "user@shop.kommo.com",
        "user:pw@shop.kommo.com",
        "evil.test\\@shop.kommo.com",
        "shop.kommo.com?x=1",
        "shop.kommo.com#x",
        "shop.kommo.com.",
        ".kommo.com",
        "shop..kommo.com",
        "-shop.kommo.com",
        "shop-.kommo.com",
        "shop_1.kommo.com",
        "shop kommo.com",
        "shop.kommo.com\n",
        " shop.kommo.com",
        "shóp.kommo.com",
        "localhost",
        "kommo",
        "127.0.0.1",
        "169.254.169.254",
        "2130706433",
        "0x7f.1",
        "[::1]",
        "::1",
        "%2e%2e",
        "x" * 64 + ".kommo.com",
        ("a" * 60 + ".") * 5 + "com",
    ],
)
def test_validate_domain_rejects_anything_else(referer: str) -> None:
    with pytest.raises(BadRequestError):
        validate_domain(referer)


def test_validate_domain_with_allowed_suffixes() -> None:
    assert validate_domain("shop.kommo.com", allowed_suffixes=KOMMO_DOMAIN_SUFFIXES) == "shop.kommo.com"
    assert validate_domain("shop.amocrm.ru", allowed_suffixes=KOMMO_DOMAIN_SUFFIXES) == "shop.amocrm.ru"
    for bad in ("evilkommo.com", "kommo.com.evil.test", "shop.kommo.co"):
        with pytest.raises(BadRequestError):
            validate_domain(bad, allowed_suffixes=KOMMO_DOMAIN_SUFFIXES)


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_the_client_checks_the_domain_before_any_request(operation: str) -> None:
    client, seen = make_client(answer(200, TOKENS))
    with pytest.raises(BadRequestError):
        if operation == "exchange_code":
            await client.exchange_code("evil.test/x?", CLIENT_ID, CLIENT_SECRET, "c", REDIRECT_URI)
        elif operation == "refresh":
            await client.refresh("127.0.0.1", CLIENT_ID, CLIENT_SECRET, "r", REDIRECT_URI)
        else:
            await client.account("u@shop.kommo.com", "t")
    restricted = KommoAccountClient("https://{domain}", httpx.AsyncClient(), allowed_suffixes=KOMMO_DOMAIN_SUFFIXES)
    with pytest.raises(BadRequestError):
        await restricted.account("shop.evil.test", "t")
    assert seen == []


# -- the uninstall hook


def test_uninstall_signature() -> None:
    expected = hmac.new(CLIENT_SECRET.encode(), f"{CLIENT_ID}|{ACCOUNT_ID}".encode(), hashlib.sha256).hexdigest()

    assert verify_uninstall_signature(CLIENT_ID, ACCOUNT_ID, expected, CLIENT_SECRET)
    assert verify_uninstall_signature(CLIENT_ID, str(ACCOUNT_ID), expected.upper(), CLIENT_SECRET)
    assert not verify_uninstall_signature(CLIENT_ID, ACCOUNT_ID + 1, expected, CLIENT_SECRET)
    assert not verify_uninstall_signature("other", ACCOUNT_ID, expected, CLIENT_SECRET)
    assert not verify_uninstall_signature(CLIENT_ID, ACCOUNT_ID, expected, CLIENT_SECRET + "x")
    assert not verify_uninstall_signature(CLIENT_ID, ACCOUNT_ID, "", CLIENT_SECRET)
    assert not verify_uninstall_signature(CLIENT_ID, ACCOUNT_ID, expected, "")
    assert not verify_uninstall_signature(CLIENT_ID, ACCOUNT_ID, "ü" * 64, CLIENT_SECRET)


async def test_the_emulated_uninstall_hook_verifies() -> None:
    received: list[Request] = []

    async def receiver(request: Request) -> Response:
        received.append(request)
        return Response(status_code=204)

    app = Starlette(routes=[Route("/kommo/uninstall", receiver, methods=["GET"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as hook_http:
        state = AccountsState(hook_http=hook_http)
        state.register_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
        state.create_account(DOMAIN, AMOJO_ID, ACCOUNT_ID, "Shop")

        status = await state.send_uninstall_hook(DOMAIN, "http://bridge.test/kommo/uninstall?tenant=1")

    assert status == 204
    (request,) = received
    query = dict(request.query_params)
    assert set(query) == {"tenant", "client_uuid", "account_id", "signature"}
    assert query["client_uuid"] == CLIENT_ID and query["account_id"] == str(ACCOUNT_ID)
    assert verify_uninstall_signature(query["client_uuid"], query["account_id"], query["signature"], CLIENT_SECRET)
    assert request.headers["user-agent"] == UNINSTALL_USER_AGENT
    (call,) = state.hook_calls()
    assert call.kind == "uninstall" and call.status_code == 204
    assert CLIENT_SECRET not in json.dumps(call.to_json())
