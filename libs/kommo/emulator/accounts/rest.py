"""What every emulated REST v4 call shares (§11): Kommo's problem+json errors and the gate a call passes
before its handler runs — the per-IP rate limit, the account, the Bearer token, payment."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from libs.kommo.emulator.accounts.records import Account
from libs.kommo.emulator.accounts.state import AccessDenied, AccountsState, RestRefusal

ACCOUNT_PREFIX: Final = "/accounts/{domain}"
PROBLEM_JSON: Final = "application/problem+json"
HAL_JSON: Final = "application/hal+json"


def problem_response(status: int, detail: str, *, extra: dict[str, Any] | None = None) -> Response:
    """A Kommo REST error (§11): `{"title","type":"https://httpstatus.es/<code>","status","detail"}`."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status}
    body["detail"] = detail
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def hal_response(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, media_type=HAL_JSON)


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def refusal_response(refusal: RestRefusal) -> Response:
    """§11: 429 with `retry_after` in the body over the limit; 403 while the IP is banned."""
    if refusal.status == 429:
        detail = "Too many requests: the limit is exceeded, slow down"
        return problem_response(429, detail, extra={"retry_after": refusal.retry_after})
    return problem_response(403, "Access from this IP is blocked after repeated rate limit violations")


def authorize(state: AccountsState, request: Request) -> Account | Response:
    """The gate of every `/api/v4/*` call: the IP's rate limit first (it counts the call), then the
    account (404), `Authorization: Bearer …` (401) and payment (402). A Response means refused."""
    refusal = state.admit_rest_call(client_ip(request))
    if refusal is not None:
        return refusal_response(refusal)
    account = state.account(request.path_params["domain"])
    if account is None:
        return problem_response(404, "Account not found")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return problem_response(401, "Authorization required")
    try:
        account = state.authenticate(account.domain, token.strip())
    except AccessDenied as denied:
        return problem_response(401, str(denied))
    if not account.paid:
        return problem_response(402, "Account is not paid")
    return account


def api_base(request: Request, account: Account) -> str:
    """`…/accounts/{domain}/api/v4` on the host the request came to, for `_links`."""
    return f"{str(request.base_url).rstrip('/')}/accounts/{account.domain}/api/v4"
