"""The account side of Kommo (§10, §11): OAuth code exchange and refresh, account info, the uninstall hook.

Every call goes to the account's own domain (`{sub}.kommo.com`), which arrives in the install redirect's
`referer` — input anyone can forge. `validate_domain()` lets only a bare hostname through before it is put
into a URL, and `KommoAccountClient` checks it again on every call. Every failure is mapped to `libs.errors`
in `account_failure()` only; no token, authorization code or client secret ever appears in an error message or a
repr (a server echoing one back is redacted too).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from libs.errors import (
    BadRequestError,
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from libs.kommo.responses import json_object, number_field, retry_after, text_field, transport_failure
from libs.observability.metrics import count_rate_limited

TOKEN_PATH: Final = "/oauth2/access_token"  # noqa: S105 - a path, not a secret
ACCOUNT_PATH: Final = "/api/v4/account"
DOMAIN_PLACEHOLDER: Final = "{domain}"
KOMMO_DOMAIN_SUFFIXES: Final = ("kommo.com", "amocrm.com", "amocrm.ru")
"""Where real Kommo / amoCRM accounts live; pass as `allowed_suffixes` in production."""
UNINSTALL_USER_AGENT: Final = "amoService-oAuth-Code-Sender/1.0"
DEFAULT_ACCESS_TTL_S: Final = 86_400
"""§10: an access token lives 24 h; used only when a token answer omits `expires_in`."""
DEFAULT_RETRY_AFTER_S: Final = 1.0
_MAX_DETAIL = 300
_MAX_DOMAIN_LEN = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class TokenPair:
    """An OAuth access/refresh pair. The tokens are left out of repr() (and so of str() and logs)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    token_type: str = "Bearer"  # noqa: S105 - a scheme name


@dataclass(frozen=True)
class AccountInfo:
    """`GET /api/v4/account?with=amojo_id` (§11). `amojo_id` is "" when Kommo returned none."""

    id: int
    name: str
    subdomain: str
    amojo_id: str


def validate_domain(referer: str, *, allowed_suffixes: Iterable[str] = ()) -> str:
    """The account domain from an install `referer`, lowercased, or BadRequestError.

    Only a bare DNS hostname passes: letters, digits, dots and hyphens in labels of 1-63 characters, at
    least two labels, and a last label that is not all digits (so no IP literal in any notation, no
    `localhost`). No scheme, path, port, userinfo, query or trailing dot. With `allowed_suffixes` the
    domain must also be one of them or end with "." + one of them (e.g. KOMMO_DOMAIN_SUFFIXES).
    """
    if not isinstance(referer, str) or not referer:
        raise BadRequestError("account domain is missing")
    domain = referer.lower()
    labels = domain.split(".")
    if (
        len(domain) > _MAX_DOMAIN_LEN
        or not domain.isascii()
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise BadRequestError("account domain must be a bare hostname like 'example.kommo.com'")
    suffixes = [s.lower().strip(".") for s in allowed_suffixes]
    if suffixes and not any(domain == s or domain.endswith("." + s) for s in suffixes):
        raise BadRequestError("account domain is not a Kommo domain")
    return domain


def uninstall_signature(client_id: str, account_id: int | str, client_secret: str) -> str:
    """§10: lowercase hex HMAC-SHA256 of "{client_id}|{account_id}" keyed by the client secret."""
    message = f"{client_id}|{account_id}".encode()
    return hmac.new(client_secret.encode(), message, hashlib.sha256).hexdigest()


def verify_uninstall_signature(client_id: str, account_id: int | str, signature: str, client_secret: str) -> bool:
    """Whether an uninstall hook's `signature` is genuine (constant-time; hex case ignored)."""
    if not client_secret or not signature:
        return False
    expected = uninstall_signature(client_id, account_id, client_secret)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace"))


class KommoAccountClient:
    """Calls one Kommo account's domain for OAuth and REST v4. The `http` client is owned by the caller.

    `account_url_template` is an absolute http(s) URL containing `{domain}`, in the host
    (`https://{domain}`) or in the path (`http://127.0.0.1:9002/accounts/{domain}` for the emulator).
    `allowed_suffixes` restricts the domains called (see `validate_domain`); `clock` is for tests.
    """

    def __init__(
        self,
        account_url_template: str,
        http: httpx.AsyncClient,
        *,
        allowed_suffixes: Iterable[str] = (),
        clock: Callable[[], datetime] | None = None,
        before_rest: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        if account_url_template.count(DOMAIN_PLACEHOLDER) != 1:
            raise ValueError("account URL template must contain '{domain}' exactly once")
        parts = urlsplit(account_url_template.replace(DOMAIN_PLACEHOLDER, "example.kommo.com"))
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"account URL template must be an absolute http(s) URL, got {account_url_template!r}")
        self._template = account_url_template.rstrip("/")
        self._http = http
        self._suffixes = tuple(allowed_suffixes)
        self._clock = clock or (lambda: datetime.now(UTC))
        # Waits for the shared REST rate limit of a domain (REST v4 calls only; OAuth is not counted).
        self._before_rest = before_rest

    def __repr__(self) -> str:
        return f"KommoAccountClient({self._template!r})"

    def base_url(self, domain: str) -> str:
        """The account's base URL; `domain` is validated first."""
        return self._template.replace(DOMAIN_PLACEHOLDER, validate_domain(domain, allowed_suffixes=self._suffixes))

    async def exchange_code(
        self, domain: str, client_id: str, client_secret: str, code: str, redirect_uri: str
    ) -> TokenPair:
        """Trade an install's authorization code (20 min, single use) for a token pair (§10)."""
        if not code:
            raise BadRequestError("authorization code is missing")
        body = {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }
        return await self._token("exchange_code", domain, body, (client_secret, code))

    async def refresh(
        self, domain: str, client_id: str, client_secret: str, refresh_token: str, redirect_uri: str
    ) -> TokenPair:
        """Rotate the pair (§10). The refresh token is single use: store the new pair before using it."""
        if not refresh_token:
            raise CredentialRejectedError("kommo refresh: no refresh token stored")
        body = {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "redirect_uri": redirect_uri,
        }
        return await self._token("refresh", domain, body, (client_secret, refresh_token))

    async def account(self, domain: str, access_token: str) -> AccountInfo:
        """The account's id, name, subdomain and amojo_id (§11), with the integration's access token."""
        if not access_token:
            raise CredentialRejectedError("kommo account: no access token")
        if self._before_rest is not None:
            await self._before_rest(validate_domain(domain, allowed_suffixes=self._suffixes))
        data = await self._send(
            "account",
            "GET",
            self.base_url(domain) + ACCOUNT_PATH,
            (access_token,),
            params={"with": "amojo_id"},
            headers={"Authorization": f"Bearer {access_token}"},
        )
        account_id = data.get("id")
        if not isinstance(account_id, int) or isinstance(account_id, bool):
            raise RetryableError("kommo account: answered without an integer id")
        return AccountInfo(
            id=account_id,
            name=text_field(data, "name"),
            subdomain=text_field(data, "subdomain"),
            amojo_id=text_field(data, "amojo_id"),
        )

    async def _token(self, operation: str, domain: str, body: dict[str, str], secrets: tuple[str, ...]) -> TokenPair:
        url = self.base_url(domain) + TOKEN_PATH
        data = await self._send(operation, "POST", url, secrets, json_body=body)
        access = text_field(data, "access_token")
        refresh = text_field(data, "refresh_token")
        if not access or not refresh:
            raise RetryableError(f"kommo {operation}: answered without access_token or refresh_token")
        expires_in = number_field(data, "expires_in")
        server_time = number_field(data, "server_time")
        issued = datetime.fromtimestamp(server_time, UTC) if server_time is not None else self._clock()
        ttl = expires_in if expires_in is not None and expires_in > 0 else DEFAULT_ACCESS_TTL_S
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_at=issued + timedelta(seconds=ttl),
            token_type=text_field(data, "token_type") or "Bearer",
        )

    async def _send(
        self,
        operation: str,
        method: str,
        url: str,
        secrets: tuple[str, ...],
        *,
        json_body: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the JSON object answered. Redirects are never followed."""
        outcome: httpx.Response | httpx.HTTPError
        try:
            outcome = await self._http.request(
                method, url, json=json_body, params=params, headers=headers, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            outcome = exc
        error = account_failure(operation, outcome, secrets)
        if error is not None:
            raise error
        assert isinstance(outcome, httpx.Response)
        try:
            data: Any = outcome.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RetryableError(f"kommo {operation}: answered {outcome.status_code} without a JSON object")
        return data


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def _validation_errors(body: dict[str, Any]) -> str:
    """`path: detail` of each entry of a REST 400's `validation-errors` (§11), the part a person can act on."""
    found: list[str] = []
    entries = body.get("validation-errors")
    for entry in entries if isinstance(entries, list) else []:
        errors = entry.get("errors") if isinstance(entry, dict) else None
        for error in errors if isinstance(errors, list) else []:
            if isinstance(error, dict):
                path, detail = text_field(error, "path"), text_field(error, "detail") or text_field(error, "code")
                found.append(f"{path}: {detail}" if path else detail)
    return "; ".join(found)


def account_failure(
    operation: str, outcome: httpx.Response | httpx.HTTPError, secrets: tuple[str, ...] = ()
) -> BridgeError | None:
    """The one mapping of account-side failures (OAuth and REST v4) to the error tree; None for a 2xx.

    `operation` names the call ("exchange_code", "refresh", "account", "sources", ...); `secrets` (the
    code, tokens and client secret of the call) are redacted from whatever the server said.
    """
    if isinstance(outcome, httpx.HTTPError):
        return transport_failure("kommo", operation, outcome)

    status = outcome.status_code
    if 200 <= status < 300:
        return None
    body, parsed = json_object(outcome)
    detail = text_field(body, "detail") or text_field(body, "title")
    said = " ".join(p for p in (text_field(body, "hint"), detail, _validation_errors(body)) if p)
    if not said and parsed is None and "html" not in outcome.headers.get("content-type", ""):
        said = outcome.text.strip()
    said = " ".join(_redact(said, secrets).split())[:_MAX_DETAIL]
    message = f"kommo {operation}: HTTP {status}" + (f" ({said})" if said else "")

    if status == 429:
        wait = retry_after(outcome, body, body_first=True)
        count_rate_limited("kommo")
        return RateLimitedError(message, retry_after=DEFAULT_RETRY_AFTER_S if wait is None else wait)
    if status >= 500 or status == 408:
        return RetryableError(message, retry_after=retry_after(outcome, body, body_first=True))
    if status == 402:
        return PermanentError(f"kommo {operation}: account not paid (HTTP 402)")
    if operation == "exchange_code" and status in (400, 401, 403):
        # Kommo answers 400 for a used, expired or foreign code and for a redirect_uri mismatch (§10).
        why = f"HTTP {status}: {said}" if said else f"HTTP {status}"
        return BadRequestError(f"kommo exchange_code: authorization code invalid or expired ({why})")
    if status in (401, 403) or (status == 400 and operation == "refresh"):
        # A refresh or access token that stopped working: revoked, rotated away, expired; or no rights.
        return CredentialRejectedError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 400:
        return BadRequestError(message)
    if 300 <= status < 400:
        # Never followed (the domain came from a referer); a moved account must be reinstalled.
        return PermanentError(f"kommo {operation}: HTTP {status} redirect not followed")
    if 400 <= status < 500:
        return PermanentError(message)
    return RetryableError(message)
