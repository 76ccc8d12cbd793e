"""A faithful emulator of Kommo's account side for tests and sandbox mode (ARCHITECTURE §8): OAuth 2.0
code exchange and refresh-token rotation (§10), `GET /api/v4/account` and the chat CRM's REST v4
(pipelines, sources, contacts, chat links, incoming leads; §11) under Kommo's per-IP rate limit, and the
install and uninstall hooks. Every account is served on one host under `/accounts/{domain}`, so the
bridge's `BRIDGE_KOMMO_ACCOUNT_URL` is `http://HOST:PORT/accounts/{domain}`.

    app, state = create_account_emulator()
    state.register_integration(client_id, client_secret, redirect_uri)
    state.create_account("shop.kommo.com", amojo_id, 31_000_001, "Shop")
    code = state.issue_code("shop.kommo.com")

Modules: `api` (endpoints, error bodies), `crm_api` (the CRM endpoints over `libs.kommo.emulator.crm`),
`rest` (problem+json, the rate limit and auth gate), `state` (codes, token rotation, hooks, the rate
limit), `records` (stored shapes), `control` (`/_emulator/…` routes), `app` (assembly and `main`).
"""

from libs.kommo.emulator.accounts.api import fault_response, oauth_error_response
from libs.kommo.emulator.accounts.app import create_account_emulator, main
from libs.kommo.emulator.accounts.records import (
    Account,
    AuthCode,
    Grant,
    HookCall,
    Integration,
    RefreshAttempt,
    fingerprint,
)
from libs.kommo.emulator.accounts.rest import problem_response
from libs.kommo.emulator.accounts.state import (
    ACCESS_TOKEN_TTL_S,
    CODE_TTL_S,
    REFRESH_TOKEN_TTL_S,
    AccessDenied,
    AccountsState,
    OAuthRejected,
    RestRefusal,
)

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "CODE_TTL_S",
    "REFRESH_TOKEN_TTL_S",
    "AccessDenied",
    "Account",
    "AccountsState",
    "AuthCode",
    "Grant",
    "HookCall",
    "Integration",
    "OAuthRejected",
    "RefreshAttempt",
    "RestRefusal",
    "create_account_emulator",
    "fault_response",
    "fingerprint",
    "main",
    "oauth_error_response",
    "problem_response",
]
