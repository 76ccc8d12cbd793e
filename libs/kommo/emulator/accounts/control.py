"""The account emulator's own `/_emulator/…` routes, beside the shared requests/faults ones: register
integrations and accounts, issue codes (or send the install redirect), revoke, inspect OAuth use, send
the uninstall hook, inspect an account's chat CRM and seed its contacts, and set the REST rate limit.
Answers never contain a client secret, an access token or a refresh token."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BadRequestError, BridgeError, NotFoundError
from libs.kommo.emulator.accounts.state import AccountsState
from libs.kommo.emulator.crm import CrmValidationError
from libs.kommo.emulator.validation import bool_field, int_field, json_object, str_field

_REST_LIMIT_KNOBS: dict[str, type] = {
    "rest_rate_limit": int,
    "rest_retry_after_s": int,
    "rest_ban_after": int,
    "rest_ban_s": int,
    "rest_limit_enabled": bool,
}


def _error(error: BridgeError) -> Response:
    return JSONResponse({"error": str(error)}, status_code=404 if isinstance(error, NotFoundError) else 400)


async def _optional_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    return json_object(body) if body.strip() else {}


def account_control_routes(state: AccountsState) -> list[Route]:
    """`/_emulator/integrations`, `/_emulator/accounts`, `/_emulator/accounts/{domain}/…`, `/_emulator/hooks`,
    `/_emulator/rest-limits`."""

    async def integrations(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"integrations": [i.to_json() for i in state.integrations()]})
        try:
            data = json_object(await request.body())
            integration = state.register_integration(
                str_field(data, "client_id", "", required=True),
                str_field(data, "client_secret", "", required=True),
                str_field(data, "redirect_uri", "", required=True),
            )
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"integration": integration.to_json()}, status_code=201)

    async def accounts(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"accounts": [a.to_json() for a in state.accounts()]})
        try:
            data = json_object(await request.body())
            account = state.create_account(
                str_field(data, "domain", "", required=True),
                str_field(data, "amojo_id", "", required=True),
                int_field(data, "account_id", "", required=True) or 0,
                str_field(data, "name", ""),
                current_user_id=int_field(data, "current_user_id", "") or 0,
                country=str_field(data, "country", "") or "US",
                paid=bool_field(data, "paid", "") if "paid" in data else True,
            )
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"account": account.to_json()}, status_code=201)

    async def codes(request: Request) -> Response:
        domain = request.path_params["domain"]
        try:
            data = await _optional_object(request)
            client_id = str_field(data, "client_id", "")
            code = state.issue_code(domain, client_id)
            redirect_url = state.install_redirect_url(domain, code, client_id)
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"code": code, "redirect_url": redirect_url}, status_code=201)

    async def widget_tokens(request: Request) -> Response:
        """A one-time token as Kommo gives the widget: `{user_id?, client_id?, ttl_s?}`."""
        try:
            data = await _optional_object(request)
            ttl = int_field(data, "ttl_s", "")
            token = state.widget_token(
                request.path_params["domain"],
                int_field(data, "user_id", "") or 0,
                str_field(data, "client_id", ""),
                60 if ttl is None else ttl,
            )
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"token": token}, status_code=201)

    async def install(request: Request) -> Response:
        try:
            data = await _optional_object(request)
            call = await state.send_install_hook(request.path_params["domain"], str_field(data, "client_id", ""))
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"code": call.code, "hook": call.to_json()})

    async def revoke(request: Request) -> Response:
        try:
            revoked = state.revoke(request.path_params["domain"])
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"revoked": revoked})

    async def paid(request: Request) -> Response:
        try:
            data = json_object(await request.body())
            if "paid" not in data:
                raise BadRequestError("paid is required")
            value = bool_field(data, "paid", "")
            state.set_paid(request.path_params["domain"], value)
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"paid": value})

    async def oauth(request: Request) -> Response:
        try:
            return JSONResponse(state.oauth_summary(request.path_params["domain"]))
        except BridgeError as error:
            return _error(error)

    async def uninstall_hook(request: Request) -> Response:
        try:
            data = json_object(await request.body())
            status = await state.send_uninstall_hook(
                request.path_params["domain"],
                str_field(data, "url", "", required=True),
                str_field(data, "client_id", ""),
            )
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"status_code": status})

    async def hooks(request: Request) -> Response:
        return JSONResponse({"hooks": [h.to_json() for h in state.hook_calls()]})

    def amojo_id(request: Request) -> str:
        account = state.account(request.path_params["domain"])
        if account is None:
            raise NotFoundError(f"no account at {request.path_params['domain']!r}")
        return account.amojo_id

    async def crm(request: Request) -> Response:
        try:
            return JSONResponse(state.crm.snapshot(amojo_id(request)))
        except BridgeError as error:
            return _error(error)

    async def chat_templates(request: Request) -> Response:
        """The account's chat templates as Kommo shows them, reviews included."""
        try:
            found = state.chat_templates.of(amojo_id(request))
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"chat_templates": [t.to_json(with_reviews=True) for t in found]})

    async def user_template(request: Request) -> Response:
        """A user writes a chat template in Kommo (`{name, content, type: waba, waba_*…, buttons}`): a draft."""
        try:
            account = state.account(request.path_params["domain"])
            if account is None:
                raise NotFoundError(f"no account at {request.path_params['domain']!r}")
            data = json_object(await request.body())
            [(_, template)] = state.chat_templates.create(account.amojo_id, account.account_id, [data])
        except CrmValidationError as error:  # a BridgeError too: caught first, so Kommo's body is answered
            return JSONResponse(error.to_json(), status_code=400)
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"chat_template": template.to_json(with_reviews=True)}, status_code=201)

    async def user_review(request: Request) -> Response:
        """A user asks for a waba template's review (`{source_id?}`): the review, and the account webhook
        `add_chat_template_review` as each subscriber answered it. A named source must declare
        `params.waba: true` (§11), as Kommo offers only those for a review."""
        try:
            account = state.account(request.path_params["domain"])
            if account is None:
                raise NotFoundError(f"no account at {request.path_params['domain']!r}")
            data = json_object(await request.body() or b"{}")
            source_id = int_field(data, "source_id", "") or 0
            if source_id:
                state.crm.require_waba_source(account.amojo_id, source_id)
            review, deliveries = await state.chat_templates.user_requests_review(
                account.amojo_id,
                int(request.path_params["template_id"]),
                {"id": account.account_id, "subdomain": account.subdomain},
                source_id,
            )
        except CrmValidationError as error:  # a BridgeError too: caught first, so Kommo's body is answered
            return JSONResponse(error.to_json(), status_code=400)
        except BridgeError as error:
            return _error(error)
        except KeyError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return JSONResponse({"review": review.to_json(), "deliveries": deliveries}, status_code=201)

    async def account_webhooks(request: Request) -> Response:
        """Every account webhook posted so far (event, destination, form body, answer)."""
        return JSONResponse({"deliveries": [d.to_json() for d in state.chat_templates.webhooks.deliveries]})

    async def webhook_subscriptions(request: Request) -> Response:
        """The account's webhook subscriptions (what `GET /api/v4/webhooks` lists)."""
        try:
            found = state.chat_templates.webhooks.of(amojo_id(request))
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"webhooks": [s.to_json() for s in found]})

    async def contacts(request: Request) -> Response:
        """Seed a contact that already exists in the account: `{name, phone?, email?}`."""
        try:
            data = json_object(await request.body())
            contact = state.crm.add_contact(
                amojo_id(request),
                str_field(data, "name", "", required=True),
                str_field(data, "phone", ""),
                str_field(data, "email", ""),
            )
        except BridgeError as error:
            return _error(error)
        return JSONResponse({"contact": contact.summary()}, status_code=201)

    async def rest_limits(request: Request) -> Response:
        """GET the REST limit's knobs; PUT some of them; DELETE forgets counted calls and bans."""
        if request.method == "DELETE":
            state.reset_rest_limits()
        elif request.method == "PUT":
            try:
                data = json_object(await request.body())
                unknown = set(data) - set(_REST_LIMIT_KNOBS)
                if unknown:
                    raise BadRequestError(f"unknown fields: {sorted(unknown)}")
                values: dict[str, int | bool] = {}
                for key, kind in _REST_LIMIT_KNOBS.items():
                    if key not in data:
                        continue
                    if kind is bool:
                        values[key] = bool_field(data, key, "")
                    else:
                        number = int_field(data, key, "")
                        if number is None or number < 1:
                            raise BadRequestError(f"{key} must be a positive integer")
                        values[key] = number
            except BridgeError as error:
                return _error(error)
            for key, value in values.items():
                setattr(state, key, value)
        return JSONResponse(state.rest_limits())

    c = "/_emulator/"
    a = c + "accounts/{domain}/"
    return [
        Route(c + "integrations", integrations, methods=["GET", "POST"]),
        Route(c + "accounts", accounts, methods=["GET", "POST"]),
        Route(a + "codes", codes, methods=["POST"]),
        Route(a + "widget_tokens", widget_tokens, methods=["POST"]),
        Route(a + "install", install, methods=["POST"]),
        Route(a + "revoke", revoke, methods=["POST"]),
        Route(a + "paid", paid, methods=["POST"]),
        Route(a + "oauth", oauth, methods=["GET"]),
        Route(a + "uninstall_hook", uninstall_hook, methods=["POST"]),
        Route(c + "hooks", hooks, methods=["GET"]),
        Route(a + "crm", crm, methods=["GET"]),
        Route(a + "chat_templates", chat_templates, methods=["GET"]),
        Route(a + "user/chat_templates", user_template, methods=["POST"]),
        Route(a + "user/chat_templates/{template_id:int}/review", user_review, methods=["POST"]),
        Route(c + "account_webhooks", account_webhooks, methods=["GET"]),
        Route(a + "webhooks", webhook_subscriptions, methods=["GET"]),
        Route(a + "contacts", contacts, methods=["POST"]),
        Route(c + "rest-limits", rest_limits, methods=["GET", "PUT", "DELETE"]),
    ]
