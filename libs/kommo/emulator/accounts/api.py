"""The emulated account endpoints, every account on one host under `/accounts/{domain}`:
`POST /accounts/{domain}/oauth2/access_token` (§10), `GET /accounts/{domain}/api/v4/account` (§11) and
the chat CRM's REST v4 routes (`crm_api.py`). Every `/api/v4/*` call passes `rest.authorize` first.

Errors are Kommo's `application/problem+json`: REST errors `{"title","type","status","detail"}` with
`type` `https://httpstatus.es/<code>` (a 429 adds `retry_after`), OAuth errors the same plus `hint`.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.emulation import Fault
from libs.kommo.emulator.accounts.crm_api import CrmApi
from libs.kommo.emulator.accounts.records import Account, Grant
from libs.kommo.emulator.accounts.rest import (
    ACCOUNT_PREFIX,
    PROBLEM_JSON,
    authorize,
    client_ip,
    hal_response,
    problem_response,
    refusal_response,
)
from libs.kommo.emulator.accounts.state import HINT_GRANT_TYPE, AccountsState, OAuthRejected
from libs.kommo.emulator.accounts.templates_api import ChatTemplatesApi

OAUTH_PROBLEM_TYPE: Final = "https://developers.kommo.com/v3/errors/OAuthProblemJson"
OAUTH_TITLE: Final = "Incorrect request"
OAUTH_DETAIL: Final = "Some request parameters are missing or invalid"
DEFAULT_FAULT_RETRY_AFTER_S: Final = 1


def oauth_error_response(hint: str) -> Response:
    """The token endpoint's 400 (§10). ASSUMPTION: title/type/detail wording is ours; clients must go by
    the status."""
    body = {"hint": hint, "title": OAUTH_TITLE, "type": OAUTH_PROBLEM_TYPE, "status": 400, "detail": OAUTH_DETAIL}
    return JSONResponse(body, status_code=400, media_type=PROBLEM_JSON)


def fault_response(fault: Fault) -> Response:
    """The answer to an injected status fault; a 429 carries `retry_after` in the body, as Kommo's does."""
    detail = fault.description or f"injected {fault.status}"
    if fault.status == 429:
        retry_after = fault.retry_after if fault.retry_after is not None else DEFAULT_FAULT_RETRY_AFTER_S
        return problem_response(429, detail, extra={"retry_after": retry_after})
    return problem_response(fault.status, detail)


async def _token_request(request: Request) -> dict[str, str]:
    """The token endpoint's fields from a JSON or form body; non-string values are rejected."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data: Any
    if content_type == "application/x-www-form-urlencoded":
        data = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise OAuthRejected("The request body must be JSON or form-encoded") from exc
    if not isinstance(data, dict):
        raise OAuthRejected("The request body must be an object")
    fields: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise OAuthRejected(f"Check the `{key}` parameter")
        fields[key] = value
    return fields


def _required(fields: dict[str, str], *names: str) -> list[str]:
    for name in names:
        if not fields.get(name):
            raise OAuthRejected(f"Check the `{name}` parameter")
    return [fields[name] for name in names]


def _token_answer(grant: Grant) -> Response:
    expires_in = int((grant.access_expires_at - grant.issued_at).total_seconds())
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "server_time": int(grant.issued_at.timestamp()),
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
        }
    )


def _account_body(account: Account, with_: set[str], url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": account.account_id,
        "name": account.name,
        "subdomain": account.subdomain,
        "created_at": 1_700_000_000,
        "created_by": 0,
        "updated_at": 1_700_000_000,
        "updated_by": 0,
        "current_user_id": account.current_user_id,
        "country": account.country,
        "currency": "USD",
        "currency_symbol": "$",
        "customers_mode": "disabled",
        "is_unsorted_on": True,
        "mobile_feature_version": 0,
        "is_loss_reason_enabled": False,
        "is_helpbot_enabled": False,
        "is_technical_account": False,
        "contact_name_display_order": 1,
    }
    if "amojo_id" in with_:
        body["amojo_id"] = account.amojo_id
    body["_links"] = {"self": {"href": url}}
    return body


class AccountsApi:
    """The account endpoints over one `AccountsState`."""

    def __init__(self, state: AccountsState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        p = ACCOUNT_PREFIX
        return [
            Route(f"{p}/oauth2/access_token", self.token, methods=["POST"]),
            Route(f"{p}/api/v4/account", self.account, methods=["GET"]),
            *CrmApi(self.state).routes(),
            *ChatTemplatesApi(self.state).routes(),
            Route(f"{p}/{{rest:path}}", self.unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    async def unknown(self, request: Request) -> Response:
        """404; an unknown `/api/v4/*` call still counts against the IP's rate limit."""
        counted = request.path_params["rest"].startswith("api/v4/")
        refusal = self.state.admit_rest_call(client_ip(request), counted=counted)
        if refusal is not None:
            return refusal_response(refusal)
        return problem_response(404, "Not found")

    def _account(self, request: Request) -> Account | None:
        return self.state.account(request.path_params["domain"])

    async def token(self, request: Request) -> Response:
        """`POST /oauth2/access_token`: authorization_code or refresh_token (§10); every refusal is 400.
        Not counted against the REST limit, but refused while the IP is banned ("every request", §11)."""
        refusal = self.state.admit_rest_call(client_ip(request), counted=False)
        if refusal is not None:
            return refusal_response(refusal)
        account = self._account(request)
        if account is None:
            return problem_response(404, "Account not found")
        try:
            fields = await _token_request(request)
            grant_type, client_id, client_secret, redirect_uri = _required(
                fields, "grant_type", "client_id", "client_secret", "redirect_uri"
            )
            if grant_type == "authorization_code":
                (code,) = _required(fields, "code")
                grant = self.state.exchange_code(account.domain, client_id, client_secret, code, redirect_uri)
            elif grant_type == "refresh_token":
                (refresh_token,) = _required(fields, "refresh_token")
                grant = self.state.refresh(account.domain, client_id, client_secret, refresh_token, redirect_uri)
            else:
                raise OAuthRejected(HINT_GRANT_TYPE)
        except OAuthRejected as rejected:
            return oauth_error_response(rejected.hint)
        return _token_answer(grant)

    async def account(self, request: Request) -> Response:
        """`GET /api/v4/account[?with=amojo_id,…]` with `Authorization: Bearer …` (§11)."""
        account = authorize(self.state, request)
        if isinstance(account, Response):
            return account
        with_ = {part.strip() for part in request.query_params.get("with", "").split(",") if part.strip()}
        return hal_response(_account_body(account, with_, str(request.url)))
