"""Kommo's one-time tokens (§14): accepted only when signed with our secret, for our audience, in time,
with every claim; the facts read from them are the account and the user."""

from __future__ import annotations

import time

import jwt
import pytest

from libs.errors import AuthError, MissingCredentialError
from libs.kommo.widget_tokens import base_address, issue_widget_token, verify_widget_token

SECRET = "k" * 64  # Kommo secret keys are 64 characters
AUDIENCE = "https://bridge.example.com"


def token(**overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "https://shop.kommo.com",
        "aud": AUDIENCE,
        "jti": "5c3f7a2e-1111-4222-8333-944455556666",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "account_id": 31337,
        "user_id": 42,
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, algorithm="HS256")


def test_a_valid_token_names_the_account_and_the_user() -> None:
    facts = verify_widget_token(token(), secret=SECRET, audience=AUDIENCE)
    assert (facts.kommo_account_id, facts.account_domain, facts.user_id) == (31337, "shop.kommo.com", "42")
    issued = issue_widget_token(
        secret=SECRET, account_domain="shop.kommo.com", audience=AUDIENCE, kommo_account_id=7, user_id=9
    )
    assert verify_widget_token(issued, secret=SECRET, audience=AUDIENCE).kommo_account_id == 7


@pytest.mark.parametrize(
    ("forged", "fragment"),
    [
        (lambda: jwt.encode({"account_id": 1}, "x" * 64, algorithm="HS256"), "signature"),
        (lambda: token(aud="https://evil.example.com"), "another integration"),
        (lambda: token(exp=int(time.time()) - 120), "expired"),
        (lambda: token(nbf=int(time.time()) + 120), "not valid yet"),
        (lambda: token(jti=None), "'jti'"),
        (lambda: token(account_id=None), "'account_id'"),
        (lambda: token(account_id="shop"), "account id"),
        (lambda: "not.a.jwt", "not valid"),
        (lambda: jwt.encode({"account_id": 1}, SECRET * 2, algorithm="HS512"), "not valid"),
    ],
)
def test_forged_expired_or_incomplete_tokens_are_refused(forged: object, fragment: str) -> None:
    assert callable(forged)
    with pytest.raises(AuthError, match=fragment):
        verify_widget_token(forged(), secret=SECRET, audience=AUDIENCE)


def test_no_token_is_a_missing_credential() -> None:
    with pytest.raises(MissingCredentialError):
        verify_widget_token("", secret=SECRET, audience=AUDIENCE)


def test_the_audience_is_the_redirect_uris_base_address() -> None:
    assert base_address("https://Bridge.example.com:8443/oauth/callback?x=1") == "https://bridge.example.com:8443"
