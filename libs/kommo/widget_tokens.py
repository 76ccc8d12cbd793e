"""Kommo's one-time tokens (§14): how the widget proves to the bridge which account and user is asking.

Kommo adds `X-Auth-Token` to the widget's calls: a JWT signed HS256 with the integration's secret key.
`iss` is the account's address, `aud` the base address of the integration's redirect URI, `jti` a UUID
used once, plus `account_id` and the user's claims (whose exact names the reference does not pin down:
`user_id`, else `sub`). Verification is PyJWT's, with every claim required and checked; the caller
then makes sure the `jti` is not used twice and the account is one we installed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import jwt

from libs.errors import AuthError, MissingCredentialError

ALGORITHM: Final = "HS256"
LEEWAY_S: Final = 10
REQUIRED_CLAIMS: Final = ("iss", "aud", "jti", "iat", "nbf", "exp", "account_id")
DEFAULT_TTL_S: Final = 60


@dataclass(frozen=True)
class WidgetToken:
    jti: str
    kommo_account_id: int
    account_domain: str
    user_id: str
    expires_at: float


def base_address(url: str) -> str:
    """`scheme://host[:port]` of a URL: the `aud` Kommo derives from the redirect URI."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def verify_widget_token(token: str, *, secret: str, audience: str) -> WidgetToken:
    """The token's facts, or AuthError saying what is wrong (never echoing the token)."""
    if not token:
        raise MissingCredentialError("the X-Auth-Token header is missing", code="kommo_token_missing")
    if not secret:
        raise AuthError("the integration's secret key is not configured", code="integration_not_configured")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(
            "the Kommo token has expired: open the settings from Kommo again", code="kommo_token_expired"
        ) from None
    except jwt.ImmatureSignatureError:
        raise AuthError("the Kommo token is not valid yet", code="kommo_token_invalid") from None
    except jwt.InvalidAudienceError:
        raise AuthError("the Kommo token was issued for another integration", code="kommo_token_invalid") from None
    except jwt.InvalidSignatureError:
        raise AuthError("the Kommo token's signature does not match", code="kommo_token_invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"the Kommo token lacks the {exc.claim!r} claim", code="kommo_token_invalid") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"the Kommo token is not valid ({type(exc).__name__})", code="kommo_token_invalid") from None
    account_id = claims["account_id"]
    if isinstance(account_id, str) and account_id.isdigit():
        account_id = int(account_id)
    if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id <= 0:
        raise AuthError("the Kommo token's account_id is not an account id", code="kommo_token_invalid")
    issuer = urlsplit(str(claims["iss"]) if "://" in str(claims["iss"]) else f"https://{claims['iss']}")
    if not issuer.hostname:
        raise AuthError("the Kommo token's issuer is not an account address", code="kommo_token_invalid")
    user = claims.get("user_id", claims.get("sub", ""))
    return WidgetToken(
        jti=str(claims["jti"]),
        kommo_account_id=account_id,
        account_domain=issuer.hostname.lower(),
        user_id=str(user),
        expires_at=float(claims["exp"]),
    )


def issue_widget_token(
    *, secret: str, account_domain: str, audience: str, kommo_account_id: int, user_id: int, ttl_s: int = DEFAULT_TTL_S
) -> str:
    """What Kommo does for a widget call (the emulators use it; the bridge only verifies)."""
    now = int(time.time())
    claims = {
        "iss": f"https://{account_domain}",
        "aud": audience,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "account_id": kommo_account_id,
        "user_id": user_id,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
