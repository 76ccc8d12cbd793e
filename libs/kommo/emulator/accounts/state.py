"""The emulated account side of Kommo: integrations, accounts, OAuth codes and token rotation (§10),
account info (§11), and the install and uninstall hooks Kommo sends.

Inspectable in-process (methods here) and over HTTP (`control.py`). Mutations hold a lock so a test on
another thread reads consistent snapshots. The clock is injectable, so tests expire codes and tokens
without sleeping.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx

from libs.emulation import FaultInjector, RequestLog
from libs.errors import BadRequestError, NotFoundError
from libs.kommo.emulator.accounts.records import (
    Account,
    AuthCode,
    Grant,
    GrantOrigin,
    HookCall,
    Integration,
    RefreshAttempt,
    fingerprint,
)
from libs.kommo.emulator.chat_templates import ChatTemplates
from libs.kommo.emulator.crm import CrmState
from libs.kommo.oauth import UNINSTALL_USER_AGENT, uninstall_signature, validate_domain
from libs.kommo.widget_tokens import base_address, issue_widget_token

CODE_TTL_S: Final = 20 * 60
ACCESS_TOKEN_TTL_S: Final = 86_400
REFRESH_TOKEN_TTL_S: Final = 90 * 86_400
INSTALL_HOOK_TIMEOUT_S: Final = 3.0
"""§10 [K-PUB]: Kommo gives the install hook 3 s, ignores the answer and never resends."""
UNINSTALL_HOOK_TIMEOUT_S: Final = 5.0
REST_RATE_LIMIT: Final = 7
"""§11 [K-LIM, K-HTTP]: 7 requests per second, per IP."""
REST_WINDOW_S: Final = 1.0
REST_RETRY_AFTER_S: Final = 1
# ASSUMPTION: "repeated violations → 403 for every request from that IP" (§11) gives no numbers; these
# are ours: 30 refusals within a minute ban the IP for a minute.
REST_BAN_AFTER: Final = 30
REST_BAN_WINDOW_S: Final = 60.0
REST_BAN_S: Final = 60

# Kommo's OAuth hints (the `hint` of a 400). ASSUMPTION: the wording follows the PHP OAuth server Kommo's
# answers resemble; clients must rely on the status only.
HINT_CODE_UNKNOWN: Final = "Cannot decrypt the authorization code"
HINT_CODE_USED: Final = "Authorization code has been revoked"
HINT_CODE_EXPIRED: Final = "Authorization code has expired"
HINT_CODE_CLIENT: Final = "Authorization code was not issued to this client"
HINT_REFRESH_UNKNOWN: Final = "Cannot decrypt the refresh token"
HINT_REFRESH_REVOKED: Final = "Token has been revoked"
HINT_REFRESH_EXPIRED: Final = "Token has expired"
HINT_REFRESH_CLIENT: Final = "Token is not linked to client"
HINT_CLIENT: Final = "Client authentication failed"
HINT_REDIRECT: Final = "Invalid redirect URI"
HINT_GRANT_TYPE: Final = "The authorization grant type is not supported by the authorization server"


class OAuthRejected(Exception):
    """The token endpoint refuses: Kommo answers 400 with a `hint` (§10)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


class AccessDenied(Exception):
    """A REST call with a missing, unknown, expired or revoked access token: 401 (§10, §11)."""


@dataclass(frozen=True)
class RestRefusal:
    """Why a REST call from an IP is not served: 429 over the rate limit, 403 while the IP is banned;
    `retry_after` is in whole seconds."""

    status: int
    retry_after: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AccountsState:
    """Everything the emulated Kommo account side knows.

    `access_token_ttl_s`, `refresh_token_ttl_s` and `code_ttl_s` may be changed by tests; they apply to
    codes and tokens issued afterwards. So may the REST limit's knobs (`rest_*`, also over
    `/_emulator/rest-limits`). `crm` is the chat CRM served over REST (share it with the amojo emulator).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        hook_http: httpx.AsyncClient | None = None,
        crm: CrmState | None = None,
    ) -> None:
        self.crm = crm if crm is not None else CrmState(clock=clock)
        self.chat_templates = ChatTemplates(clock)
        self.rest_rate_limit: int = REST_RATE_LIMIT
        self.rest_retry_after_s: int = REST_RETRY_AFTER_S
        self.rest_ban_after: int = REST_BAN_AFTER
        self.rest_ban_s: int = REST_BAN_S
        self.rest_limit_enabled: bool = True
        self._rest_calls: dict[str, deque[float]] = {}
        self._rest_refusals: dict[str, deque[float]] = {}
        self._rest_bans: dict[str, float] = {}
        self.log = RequestLog()
        self.faults = FaultInjector()
        self.access_token_ttl_s: int = ACCESS_TOKEN_TTL_S
        self.refresh_token_ttl_s: int = REFRESH_TOKEN_TTL_S
        self.code_ttl_s: int = CODE_TTL_S
        self.install_hook_timeout_s: float = INSTALL_HOOK_TIMEOUT_S
        self.uninstall_hook_timeout_s: float = UNINSTALL_HOOK_TIMEOUT_S
        self._clock = clock or (lambda: datetime.now(UTC))
        self._hook_http = hook_http
        self._owns_hook_http = False
        self._lock = threading.RLock()
        self._integrations: dict[str, Integration] = {}
        self._accounts: dict[str, Account] = {}
        self._codes: dict[str, AuthCode] = {}
        self._grants: dict[int, Grant] = {}
        self._by_access: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}
        self._refresh_attempts: list[RefreshAttempt] = []
        self._hooks: list[HookCall] = []

    def now(self) -> datetime:
        return self._clock()

    # -- registry

    def register_integration(self, client_id: str, client_secret: str, redirect_uri: str) -> Integration:
        """Register (or replace) an integration's keys and its exact Redirect URI."""
        if not client_id or not client_secret or not redirect_uri:
            raise BadRequestError("an integration needs client_id, client_secret and redirect_uri")
        integration = Integration(client_id, client_secret, redirect_uri)
        with self._lock:
            self._integrations[client_id] = integration
        return integration

    def integration(self, client_id: str) -> Integration | None:
        with self._lock:
            return self._integrations.get(client_id)

    def integrations(self) -> list[Integration]:
        with self._lock:
            return list(self._integrations.values())

    def create_account(
        self,
        domain: str,
        amojo_id: str,
        account_id: int,
        name: str,
        *,
        current_user_id: int = 0,
        country: str = "US",
        paid: bool = True,
    ) -> Account:
        """Create (or replace) the account served at `domain` (e.g. "shop.kommo.com")."""
        domain = validate_domain(domain)
        if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id <= 0:
            raise BadRequestError("account_id must be a positive integer")
        if not amojo_id:
            raise BadRequestError("an account needs an amojo_id")
        user_id = current_user_id or account_id + 1
        account = Account(domain, amojo_id, account_id, name or domain, user_id, country, paid)
        with self._lock:
            self._accounts[domain] = account
            self.crm.bind_account(amojo_id, account_id, user_id)
        return account

    def account(self, domain: str) -> Account | None:
        with self._lock:
            return self._accounts.get(domain.lower())

    def accounts(self) -> list[Account]:
        with self._lock:
            return list(self._accounts.values())

    def set_paid(self, domain: str, paid: bool) -> None:
        """An unpaid account answers its REST API with 402."""
        with self._lock:
            self._require_account(domain).paid = paid

    def _require_account(self, domain: str) -> Account:
        account = self._accounts.get(domain.lower())
        if account is None:
            raise NotFoundError(f"no account at {domain!r}")
        return account

    def _pick_integration(self, client_id: str) -> Integration:
        if client_id:
            integration = self._integrations.get(client_id)
            if integration is None:
                raise NotFoundError(f"no integration {client_id!r}")
            return integration
        if len(self._integrations) != 1:
            raise BadRequestError("name the integration's client_id (none or several are registered)")
        return next(iter(self._integrations.values()))

    # -- authorization codes (an admin clicks Install)

    def issue_code(self, domain: str, client_id: str = "") -> str:
        """What Kommo does when an admin installs the integration: a code, 20 minutes, single use.

        `client_id` may be left out when exactly one integration is registered.
        """
        with self._lock:
            account = self._require_account(domain)
            integration = self._pick_integration(client_id)
            now = self.now()
            code = "def50200" + secrets.token_hex(180)
            self._codes[code] = AuthCode(
                code, account.domain, integration.client_id, now, now + timedelta(seconds=self.code_ttl_s)
            )
            return code

    def widget_token(self, domain: str, user_id: int = 0, client_id: str = "", ttl_s: int = 60) -> str:
        """The one-time token Kommo adds as `X-Auth-Token` to a widget's call (§14), for a user of the
        account (the account's current user by default); a negative `ttl_s` makes an expired one."""
        with self._lock:
            account = self._require_account(domain)
            integration = self._pick_integration(client_id)
            return issue_widget_token(
                secret=integration.client_secret,
                account_domain=account.domain,
                audience=base_address(integration.redirect_uri),
                kommo_account_id=account.account_id,
                user_id=user_id or account.current_user_id,
                ttl_s=ttl_s,
            )

    def install_redirect_url(self, domain: str, code: str, client_id: str = "") -> str:
        """The Redirect URI with what a widget install carries: code, referer, client_id, from_widget (§10)."""
        with self._lock:
            account = self._require_account(domain)
            integration = self._pick_integration(client_id)
        query = {
            "code": code,
            "referer": account.domain,
            "platform": "2",
            "client_id": integration.client_id,
            "from_widget": "1",
        }
        return str(httpx.URL(integration.redirect_uri).copy_merge_params(query))

    # -- the token endpoint

    def _client(self, client_id: str, client_secret: str, redirect_uri: str) -> Integration:
        integration = self._integrations.get(client_id)
        if integration is None or not hmac.compare_digest(
            integration.client_secret.encode(), client_secret.encode("utf-8", "replace")
        ):
            raise OAuthRejected(HINT_CLIENT)
        if redirect_uri != integration.redirect_uri:
            raise OAuthRejected(HINT_REDIRECT)
        return integration

    def exchange_code(self, domain: str, client_id: str, client_secret: str, code: str, redirect_uri: str) -> Grant:
        """`grant_type=authorization_code` (§10). A rejected attempt does not use the code up."""
        with self._lock:
            account = self._require_account(domain)
            self._client(client_id, client_secret, redirect_uri)
            now = self.now()
            stored = self._codes.get(code)
            if stored is None or stored.domain != account.domain:
                raise OAuthRejected(HINT_CODE_UNKNOWN)
            if stored.client_id != client_id:
                raise OAuthRejected(HINT_CODE_CLIENT)
            if stored.used or stored.revoked:
                raise OAuthRejected(HINT_CODE_USED)
            if now >= stored.expires_at:
                raise OAuthRejected(HINT_CODE_EXPIRED)
            stored.used = True
            return self._issue(account, client_id, "authorization_code", None)

    def refresh(self, domain: str, client_id: str, client_secret: str, refresh_token: str, redirect_uri: str) -> Grant:
        """`grant_type=refresh_token` (§10): a new pair every time. The presented token stays valid until
        the new pair is first used; every presentation is recorded."""
        with self._lock:
            account = self._require_account(domain)
            now = self.now()
            grant = self._by_refresh.get(refresh_token)
            try:
                self._client(client_id, client_secret, redirect_uri)
                if grant is None or grant.domain != account.domain:
                    raise OAuthRejected(HINT_REFRESH_UNKNOWN)
                if grant.client_id != client_id:
                    raise OAuthRejected(HINT_REFRESH_CLIENT)
                if grant.revoked or grant.retired:
                    raise OAuthRejected(HINT_REFRESH_REVOKED)
                if now >= grant.refresh_expires_at:
                    raise OAuthRejected(HINT_REFRESH_EXPIRED)
            except OAuthRejected as rejected:
                self._refresh_attempts.append(
                    RefreshAttempt(
                        account.domain,
                        fingerprint(refresh_token),
                        False,
                        rejected.hint,
                        now,
                        grant.id if grant else None,
                    )
                )
                raise
            self._used(grant, now)
            grant.times_refreshed += 1
            issued = self._issue(account, client_id, "refresh_token", grant.id)
            self._refresh_attempts.append(
                RefreshAttempt(account.domain, fingerprint(refresh_token), True, "", now, grant.id)
            )
            return issued

    def _issue(self, account: Account, client_id: str, origin: GrantOrigin, parent: int | None) -> Grant:
        now = self.now()
        grant = Grant(
            id=len(self._grants) + 1,
            domain=account.domain,
            client_id=client_id,
            access_token=self._access_token(account, client_id, now),
            refresh_token="def50200" + secrets.token_hex(350),
            issued_at=now,
            access_expires_at=now + timedelta(seconds=self.access_token_ttl_s),
            refresh_expires_at=now + timedelta(seconds=self.refresh_token_ttl_s),
            origin=origin,
            parent=parent,
        )
        self._grants[grant.id] = grant
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        return grant

    def _access_token(self, account: Account, client_id: str, now: datetime) -> str:
        """A JWT-shaped opaque token about as long as Kommo's. Only `api_domain` is a documented claim
        (§10, §13.8); the signature part is random, so nothing can verify it but this state."""
        issued = int(now.timestamp())
        header = {"typ": "JWT", "alg": "RS256", "jti": str(uuid.uuid4())}
        claims: dict[str, Any] = {
            "aud": client_id,
            "jti": header["jti"],
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.access_token_ttl_s,
            "sub": str(account.current_user_id),
            "account_id": account.account_id,
            "api_domain": account.domain,
        }
        parts = (json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(256))
        return ".".join(_b64url(part) for part in parts)

    def _used(self, grant: Grant, now: datetime) -> None:
        """A token of `grant` was used: its parent's refresh token is now spent (K-OAUTH)."""
        if grant.first_used_at is None:
            grant.first_used_at = now
        if grant.parent is not None:
            self._grants[grant.parent].retired = True

    # -- the REST API

    def admit_rest_call(self, ip: str, *, counted: bool = True) -> RestRefusal | None:
        """Kommo's REST limit (§11): None when a call from `ip` is served, else why not.

        Served calls are counted over a trailing `REST_WINDOW_S`; a call that would be number
        `rest_rate_limit + 1` is refused with 429 and not counted. After `rest_ban_after` refusals within
        `REST_BAN_WINDOW_S` every request from the IP gets 403 for `rest_ban_s`. `counted=False` (the
        token endpoint) is only checked against a ban.
        """
        with self._lock:
            if not self.rest_limit_enabled:
                return None
            now = self.now().timestamp()
            banned_until = self._rest_bans.get(ip)
            if banned_until is not None:
                if now < banned_until:
                    return RestRefusal(403, max(1, int(banned_until - now + 0.999)))
                del self._rest_bans[ip]
                self._rest_refusals.pop(ip, None)
            if not counted:
                return None
            calls = self._rest_calls.setdefault(ip, deque())
            while calls and calls[0] <= now - REST_WINDOW_S:
                calls.popleft()
            if len(calls) < self.rest_rate_limit:
                calls.append(now)
                return None
            refusals = self._rest_refusals.setdefault(ip, deque())
            while refusals and refusals[0] <= now - REST_BAN_WINDOW_S:
                refusals.popleft()
            refusals.append(now)
            if len(refusals) >= self.rest_ban_after:
                self._rest_bans[ip] = now + self.rest_ban_s
                refusals.clear()
            return RestRefusal(429, self.rest_retry_after_s)

    def rest_limits(self) -> dict[str, Any]:
        """The REST limit's knobs and who is banned, for `GET /_emulator/rest-limits`."""
        with self._lock:
            now = self.now().timestamp()
            return {
                "rest_rate_limit": self.rest_rate_limit,
                "rest_retry_after_s": self.rest_retry_after_s,
                "rest_ban_after": self.rest_ban_after,
                "rest_ban_s": self.rest_ban_s,
                "rest_limit_enabled": self.rest_limit_enabled,
                "banned": {ip: until - now for ip, until in self._rest_bans.items() if until > now},
            }

    def reset_rest_limits(self) -> None:
        """Forget every IP's counted calls, refusals and ban (the knobs stay)."""
        with self._lock:
            self._rest_calls.clear()
            self._rest_refusals.clear()
            self._rest_bans.clear()

    def authenticate(self, domain: str, access_token: str) -> Account:
        """The account an access token opens, or AccessDenied (401). Counts as a use of its pair."""
        with self._lock:
            account = self._require_account(domain)
            grant = self._by_access.get(access_token)
            now = self.now()
            if grant is None or grant.domain != account.domain or not grant.access_valid(now):
                raise AccessDenied("the access token is invalid, expired or revoked")
            self._used(grant, now)
            grant.api_calls += 1
            return account

    def revoke(self, domain: str) -> int:
        """An admin disables the integration: every token and pending code of the account dies (401 on
        the API, 400 on refresh). Returns how many pairs were revoked."""
        with self._lock:
            account = self._require_account(domain)
            revoked = 0
            for grant in self._grants.values():
                if grant.domain == account.domain and not grant.revoked:
                    grant.revoked = True
                    revoked += 1
            for code in self._codes.values():
                if code.domain == account.domain:
                    code.revoked = True
            return revoked

    # -- inspection

    def grants(self, domain: str) -> list[Grant]:
        with self._lock:
            return [g for g in self._grants.values() if g.domain == domain.lower()]

    def refresh_count(self, domain: str) -> int:
        """Successful refreshes of the account's tokens."""
        return sum(1 for a in self.refresh_attempts(domain) if a.ok)

    def refresh_attempts(self, domain: str) -> list[RefreshAttempt]:
        """Every refresh token presented for the account, in order, with the answer."""
        with self._lock:
            return [a for a in self._refresh_attempts if a.domain == domain.lower()]

    def reused_refresh_tokens(self, domain: str) -> list[str]:
        """Fingerprints of refresh tokens that were exchanged successfully more than once."""
        seen: dict[str, int] = {}
        for attempt in self.refresh_attempts(domain):
            if attempt.ok:
                seen[attempt.fingerprint] = seen.get(attempt.fingerprint, 0) + 1
        return [fp for fp, count in seen.items() if count > 1]

    def oauth_summary(self, domain: str) -> dict[str, Any]:
        """What `GET /_emulator/accounts/{domain}/oauth` answers: counts and fingerprints, no token."""
        with self._lock:
            account = self._require_account(domain)
            now = self.now()
            grants = self.grants(account.domain)
            codes = [c for c in self._codes.values() if c.domain == account.domain]
            return {
                "domain": account.domain,
                "refresh_count": self.refresh_count(account.domain),
                "reused_refresh_tokens": self.reused_refresh_tokens(account.domain),
                "refresh_attempts": [a.to_json() for a in self.refresh_attempts(account.domain)],
                "tokens_in_use": {
                    "access_valid": sum(1 for g in grants if g.access_valid(now)),
                    "refresh_valid": sum(1 for g in grants if g.refresh_valid(now)),
                    "api_calls": sum(g.api_calls for g in grants),
                },
                "codes": {
                    "issued": len(codes),
                    "used": sum(1 for c in codes if c.used),
                    "pending": sum(1 for c in codes if not c.used and not c.revoked and now < c.expires_at),
                },
                "grants": [g.to_json(now) for g in grants],
            }

    def hook_calls(self) -> list[HookCall]:
        with self._lock:
            return list(self._hooks)

    # -- hooks Kommo sends

    async def send_install_hook(self, domain: str, client_id: str = "") -> HookCall:
        """An admin installs from the widget: issue a code and GET the Redirect URI with it once (3 s,
        the answer is ignored, never resent — §10). The code is on the returned record."""
        code = self.issue_code(domain, client_id)
        url = self.install_redirect_url(domain, code, client_id)
        with self._lock:
            redirect_uri = self._pick_integration(client_id).redirect_uri
        status, elapsed, error = await self._get(url, self.install_hook_timeout_s)
        call = HookCall("install", domain.lower(), redirect_uri, status, elapsed, error, code)
        with self._lock:
            self._hooks.append(call)
        return call

    async def send_uninstall_hook(self, domain: str, url: str, client_id: str = "") -> int:
        """The integration is uninstalled: `GET {url}?client_uuid=…&account_id=…&signature=…` (§10).

        Returns the status code, 0 when no answer came. Tokens are not revoked here; call `revoke()`.
        """
        with self._lock:
            account = self._require_account(domain)
            integration = self._pick_integration(client_id)
            params = {
                "client_uuid": integration.client_id,
                "account_id": str(account.account_id),
                "signature": uninstall_signature(integration.client_id, account.account_id, integration.client_secret),
            }
        target = str(httpx.URL(url).copy_merge_params(params))
        status, elapsed, error = await self._get(target, self.uninstall_hook_timeout_s)
        with self._lock:
            self._hooks.append(HookCall("uninstall", account.domain, target, status, elapsed, error))
        return status or 0

    async def _get(self, url: str, timeout_s: float) -> tuple[int | None, float, str]:
        """One GET as Kommo's hook sender makes it: (status or None, seconds taken, error type)."""
        if self._hook_http is None:
            self._hook_http = httpx.AsyncClient()
            self._owns_hook_http = True
        started = time.monotonic()
        try:
            response = await self._hook_http.get(url, headers={"User-Agent": UNINSTALL_USER_AGENT}, timeout=timeout_s)
            return response.status_code, time.monotonic() - started, ""
        except httpx.HTTPError as exc:
            return None, time.monotonic() - started, type(exc).__name__

    async def aclose(self) -> None:
        """Close the hook HTTP client if the state created it."""
        await self.chat_templates.webhooks.aclose()
        if self._owns_hook_http and self._hook_http is not None:
            await self._hook_http.aclose()
            self._hook_http = None
            self._owns_hook_http = False
