"""`/api/v4/chats/templates` (§11 "Chat templates") of the account emulator, over `ChatTemplates`.

`GET ?page=&limit≤50&filter[external_id]=&with=reviews` (204 when none), `POST` with an array, `PATCH` and
`DELETE /{id}`, `DELETE` with `[{id}]`, `POST /{id}/review` and `POST /{id}/review/{review_id}`; and the
account webhooks `/api/v4/webhooks` (GET, POST), of which a user's review request fires one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BadRequestError
from libs.kommo.emulator.accounts.crm_api import _json, _list_values, _query_int, _self
from libs.kommo.emulator.accounts.records import Account
from libs.kommo.emulator.accounts.rest import ACCOUNT_PREFIX, PROBLEM_JSON, authorize, hal_response, problem_response
from libs.kommo.emulator.accounts.state import AccountsState
from libs.kommo.emulator.chat_templates import ChatTemplate, TemplateLimitError
from libs.kommo.emulator.crm import CrmValidationError

PAGE_LIMIT_MAX: Final = 50

Handler = Callable[[Request, Account], Awaitable[Response]]


def _model(template: ChatTemplate, with_reviews: bool, request_id: str | None = None) -> dict[str, Any]:
    body = template.to_json(with_reviews)
    if request_id is not None:
        body["request_id"] = request_id
    return body


class ChatTemplatesApi:
    def __init__(self, state: AccountsState) -> None:
        self.state = state
        self.templates = state.chat_templates

    def routes(self) -> list[Route]:
        p, e = f"{ACCOUNT_PREFIX}/api/v4/chats/templates", self._endpoint
        return [
            Route(p, e(self.collection), methods=["GET", "POST", "DELETE"]),
            Route(f"{p}/{{id:int}}", e(self.one), methods=["GET", "PATCH", "DELETE"]),
            Route(f"{p}/{{id:int}}/review", e(self.review), methods=["POST"]),
            Route(f"{p}/{{id:int}}/review/{{review_id:int}}", e(self.verdict), methods=["POST"]),
            Route(f"{ACCOUNT_PREFIX}/api/v4/webhooks", e(self.webhooks), methods=["GET", "POST"]),
        ]

    async def webhooks(self, request: Request, account: Account) -> Response:
        """`/api/v4/webhooks`: the account's webhook subscriptions (GET), or one more (POST → 201)."""
        hooks = self.templates.webhooks
        if request.method == "POST":
            subscription = hooks.subscribe(account.amojo_id, await _json(request))
            return hal_response(subscription.to_json(), 201)
        found = hooks.of(account.amojo_id)
        if not found:
            return Response(status_code=204)
        return hal_response({"_total_items": len(found), "_embedded": {"webhooks": [s.to_json() for s in found]}})

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            account = authorize(self.state, request)
            if isinstance(account, Response):
                return account
            try:
                return await handler(request, account)
            except CrmValidationError as error:
                return JSONResponse(error.to_json(), status_code=400, media_type=PROBLEM_JSON)
            except TemplateLimitError as error:
                return problem_response(422, str(error))
            except BadRequestError as error:
                return problem_response(400, str(error))

        return endpoint

    async def collection(self, request: Request, account: Account) -> Response:
        if request.method == "POST":
            created = self.templates.create(account.amojo_id, account.account_id, await _json(request))
            return hal_response(
                {
                    "_total_items": len(created),
                    "_embedded": {"chat_templates": [_model(t, False, rid) for rid, t in created]},
                }
            )
        if request.method == "DELETE":
            body = await _json(request)
            ids = [item.get("id") for item in body] if isinstance(body, list) else []
            if not ids or not all(isinstance(i, int) for i in ids):
                raise CrmValidationError.one("InvalidType", "", 'The request body must be [{"id": …}].')
            self.templates.delete(account.amojo_id, [int(i) for i in ids if isinstance(i, int)])
            return Response(status_code=204)
        page = _query_int(request, "page", 1, 1)
        limit = _query_int(request, "limit", PAGE_LIMIT_MAX, 1, PAGE_LIMIT_MAX)
        wanted = _list_values(request, "filter[external_id]")
        with_reviews = "reviews" in _list_values(request, "with")
        found = [t for t in self.templates.of(account.amojo_id) if not wanted or t.fields.get("external_id") in wanted]
        chunk = found[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status_code=204)
        return hal_response(
            {
                "_total_items": len(chunk),
                "_page": page,
                "_links": _self(str(request.url)),
                "_embedded": {"chat_templates": [_model(t, with_reviews) for t in chunk]},
            }
        )

    async def one(self, request: Request, account: Account) -> Response:
        template_id: int = request.path_params["id"]
        if request.method == "DELETE":
            if not self.templates.delete(account.amojo_id, [template_id]):
                return problem_response(404, f"Chat template {template_id} not found")
            return Response(status_code=204)
        if request.method == "PATCH":
            template = self.templates.update(account.amojo_id, template_id, await _json(request))
        else:
            template = self.templates.get(account.amojo_id, template_id)
        if template is None:
            return problem_response(404, f"Chat template {template_id} not found")
        return hal_response(_model(template, "reviews" in _list_values(request, "with")))

    async def review(self, request: Request, account: Account) -> Response:
        review = self.templates.request_review(account.amojo_id, request.path_params["id"])
        if review is None:
            return problem_response(404, f"Chat template {request.path_params['id']} not found")
        return hal_response({"_embedded": {"reviews": [review.to_json()]}})

    async def verdict(self, request: Request, account: Account) -> Response:
        template_id, review_id = request.path_params["id"], request.path_params["review_id"]
        review = self.templates.set_review(account.amojo_id, template_id, review_id, await _json(request))
        if review is None:
            return problem_response(404, f"Review {review_id} of chat template {template_id} not found")
        return hal_response(review.to_json())
