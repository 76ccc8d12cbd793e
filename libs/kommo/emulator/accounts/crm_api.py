"""The chat CRM's REST v4 endpoints (§11) under `/accounts/{domain}/api/v4`: pipelines, sources, contacts,
chat ↔ contact links and chat incoming leads, over the account's `CrmState` book (its amojo id).

Each call passes `rest.authorize` (rate limit, 401, 402) first. Success is `application/hal+json`, an
empty list is 204, and a refused write is Kommo's 400 "Request validation failed" body naming each bad
item by `request_id`; a batch is all or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BadRequestError
from libs.kommo.emulator.accounts.records import Account
from libs.kommo.emulator.accounts.rest import (
    ACCOUNT_PREFIX,
    PROBLEM_JSON,
    api_base,
    authorize,
    hal_response,
    problem_response,
)
from libs.kommo.emulator.accounts.state import AccountsState
from libs.kommo.emulator.crm import (
    INVALID_TYPE,
    LIMIT_EXCEEDED,
    NOT_SUPPORTED_CHOICE,
    UNSORTED_CATEGORIES,
    CrmValidationError,
)
from libs.kommo.emulator.crm_records import ChatLink, Contact, IncomingLead, Pipeline, Source

PAGE_LIMIT_DEFAULT: Final = 50
PAGE_LIMIT_MAX: Final = 250
"""§11: `limit` ≤ 250 on list calls."""

Handler = Callable[[Request, Account], Awaitable[Response]]


def _self(href: str) -> dict[str, Any]:
    return {"self": {"href": href}}


def _pipeline_model(pipeline: Pipeline, base: str) -> dict[str, Any]:
    body = pipeline.to_json()
    for status in body["_embedded"]["statuses"]:
        status["_links"] = _self(f"{base}/leads/pipelines/{pipeline.id}/statuses/{status['id']}")
    return {**body, "_links": _self(f"{base}/leads/pipelines/{pipeline.id}")}


def _source_model(source: Source, base: str, request_id: str | None = None) -> dict[str, Any]:
    body = source.to_json()
    if request_id is not None:
        body["request_id"] = request_id
    body["_links"] = _self(f"{base}/sources/{source.id}")
    return body


def _contact_model(contact: Contact, base: str) -> dict[str, Any]:
    return {
        **contact.to_json(),
        "_links": _self(f"{base}/contacts/{contact.id}"),
        "_embedded": {"tags": [], "companies": []},
    }


def _unsorted_model(lead: IncomingLead, base: str) -> dict[str, Any]:
    return {**lead.to_json(), "_links": _self(f"{base}/leads/unsorted/{lead.uid}")}


def _link_model(link: ChatLink, request_id: str | None = None) -> dict[str, Any]:
    body = link.to_json()
    if request_id is not None:
        body["request_id"] = request_id
    return body


def _list_values(request: Request, *names: str) -> list[str]:
    """Every value of a query parameter spelled `name` or `name[]`; comma lists are split."""
    values: list[str] = []
    for name in names:
        for raw in [*request.query_params.getlist(name), *request.query_params.getlist(f"{name}[]")]:
            values.extend(part.strip() for part in raw.split(",") if part.strip())
    return values


def _query_int(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise CrmValidationError.one(INVALID_TYPE, name, "This value should be of type int.") from exc
    if value < low:
        raise CrmValidationError.one(LIMIT_EXCEEDED, name, f"This value should be {low} or more.")
    if high is not None and value > high:
        raise CrmValidationError.one(LIMIT_EXCEEDED, name, f"This value should be {high} or less.")
    return value


def _page(request: Request) -> tuple[int, int]:
    return _query_int(request, "page", 1, 1), _query_int(request, "limit", PAGE_LIMIT_DEFAULT, 1, PAGE_LIMIT_MAX)


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError("The request body is not valid JSON") from exc


class CrmApi:
    """The CRM endpoints over one `AccountsState` (and its `crm`)."""

    def __init__(self, state: AccountsState) -> None:
        self.state = state
        self.crm = state.crm

    def routes(self) -> list[Route]:
        p, e = f"{ACCOUNT_PREFIX}/api/v4", self._endpoint
        return [
            Route(f"{p}/leads/pipelines", e(self.pipelines), methods=["GET"]),
            Route(f"{p}/leads/unsorted", e(self.unsorted), methods=["GET"]),
            Route(f"{p}/sources", e(self.sources), methods=["GET", "POST", "PATCH", "DELETE"]),
            Route(f"{p}/sources/{{id:int}}", e(self.source), methods=["GET", "PATCH", "DELETE"]),
            Route(f"{p}/contacts/chats", e(self.chat_links), methods=["GET", "POST"]),
            Route(f"{p}/contacts", e(self.contacts), methods=["GET", "POST"]),
            Route(f"{p}/contacts/{{id:int}}", e(self.contact), methods=["GET", "PATCH"]),
        ]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            account = authorize(self.state, request)
            if isinstance(account, Response):
                return account
            try:
                return await handler(request, account)
            except CrmValidationError as error:
                return JSONResponse(error.to_json(), status_code=400, media_type=PROBLEM_JSON)
            except BadRequestError as error:
                return problem_response(400, str(error))

        return endpoint

    async def pipelines(self, request: Request, account: Account) -> Response:
        base = api_base(request, account)
        pipelines = self.crm.pipelines(account.amojo_id)
        return hal_response(
            {
                "_total_items": len(pipelines),
                "_links": _self(str(request.url)),
                "_embedded": {"pipelines": [_pipeline_model(p, base) for p in pipelines]},
            }
        )

    async def unsorted(self, request: Request, account: Account) -> Response:
        """`GET /leads/unsorted?filter[category][]=chats&filter[pipeline_id]=&page=&limit=` (§11)."""
        categories = _list_values(request, "filter[category]")
        unknown = [c for c in categories if c not in UNSORTED_CATEGORIES]
        if unknown:
            raise CrmValidationError.one(
                NOT_SUPPORTED_CHOICE, "filter.category", "The value you selected is not a valid choice."
            )
        raw_pipeline = request.query_params.get("filter[pipeline_id]")
        pipeline_id = _query_int(request, "filter[pipeline_id]", 0, 1) if raw_pipeline else None
        page, limit = _page(request)
        leads = self.crm.unsorted(account.amojo_id, categories, pipeline_id)
        chunk = leads[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status_code=204)
        base = api_base(request, account)
        return hal_response(
            {
                "_total_items": len(chunk),
                "_page": page,
                "_page_count": (len(leads) + limit - 1) // limit,
                "_links": _self(str(request.url)),
                "_embedded": {"unsorted": [_unsorted_model(lead, base) for lead in chunk]},
            }
        )

    # -- sources

    def _sources_answer(self, request: Request, account: Account, answered: list[tuple[str, Source]]) -> Response:
        base = api_base(request, account)
        return hal_response(
            {
                "_total_items": len(answered),
                "_embedded": {"sources": [_source_model(s, base, rid) for rid, s in answered]},
            }
        )

    async def sources(self, request: Request, account: Account) -> Response:
        """`GET /sources[?filter[external_id]=…]`, `POST` and `PATCH` with arrays, `DELETE` with `[{id}]`."""
        amojo_id = account.amojo_id
        if request.method == "POST":
            return self._sources_answer(request, account, self.crm.create_sources(amojo_id, await _json(request)))
        if request.method == "PATCH":
            return self._sources_answer(request, account, self.crm.update_sources(amojo_id, await _json(request)))
        if request.method == "DELETE":
            self.crm.delete_sources(amojo_id, await _json(request))
            return Response(status_code=204)
        sources = self.crm.sources_by_external_id(amojo_id, _list_values(request, "filter[external_id]"))
        if not sources:
            return Response(status_code=204)
        base = api_base(request, account)
        return hal_response(
            {
                "_total_items": len(sources),
                "_links": _self(str(request.url)),
                "_embedded": {"sources": [_source_model(s, base) for s in sources]},
            }
        )

    async def source(self, request: Request, account: Account) -> Response:
        """`GET`, `PATCH` (an object) and `DELETE /sources/{id}`; an unknown id is 404."""
        source_id: int = request.path_params["id"]
        base = api_base(request, account)
        if request.method == "DELETE":
            if not self.crm.delete_source(account.amojo_id, source_id):
                return problem_response(404, f"Source {source_id} not found")
            return Response(status_code=204)
        source = self.crm.source(account.amojo_id, source_id)
        if source is None:
            return problem_response(404, f"Source {source_id} not found")
        if request.method == "PATCH":
            body = await _json(request)
            ((_, source),) = self.crm.update_sources(account.amojo_id, body, source_id=source_id)
        return hal_response(_source_model(source, base))

    # -- contacts

    async def contacts(self, request: Request, account: Account) -> Response:
        """`GET /contacts?query=&page=&limit=` (204 when nothing matches); `POST` with an array."""
        base = api_base(request, account)
        if request.method == "POST":
            created = self.crm.create_contacts(account.amojo_id, await _json(request))
            # Kommo answers a create with ids only; the models are a GET away.
            return hal_response(
                {
                    "_links": _self(str(request.url)),
                    "_embedded": {
                        "contacts": [
                            {"id": c.id, "request_id": rid, "_links": _self(f"{base}/contacts/{c.id}")}
                            for rid, c in created
                        ]
                    },
                }
            )
        page, limit = _page(request)
        found = self.crm.find_contacts(account.amojo_id, request.query_params.get("query", ""))
        chunk = found[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status_code=204)
        links = _self(str(request.url))
        if len(found) > page * limit:
            links["next"] = {"href": str(request.url.include_query_params(page=page + 1))}
        return hal_response(
            {"_page": page, "_links": links, "_embedded": {"contacts": [_contact_model(c, base) for c in chunk]}}
        )

    async def contact(self, request: Request, account: Account) -> Response:
        """`GET /contacts/{id}` (ASSUMPTION: 204 for an unknown id, as Kommo answers a GET that finds
        nothing) and `PATCH /contacts/{id}` with an object (404 for an unknown id)."""
        contact_id: int = request.path_params["id"]
        base = api_base(request, account)
        if request.method == "PATCH":
            updated = self.crm.update_contact(account.amojo_id, contact_id, await _json(request))
            if updated is None:
                return problem_response(404, f"Contact {contact_id} not found")
            return hal_response(
                {
                    "id": updated.id,
                    "name": updated.name,
                    "updated_at": updated.updated_at,
                    "_links": _self(f"{base}/contacts/{updated.id}"),
                }
            )
        contact = self.crm.contact(account.amojo_id, contact_id)
        if contact is None:
            return Response(status_code=204)
        return hal_response(_contact_model(contact, base))

    async def chat_links(self, request: Request, account: Account) -> Response:
        """`GET /contacts/chats?chat_id[]=…&contact_id[]=…` (204 when none) and `POST` with
        `[{"contact_id","chat_id","request_id"?}]` (§11)."""
        if request.method == "POST":
            linked = self.crm.link_chats(account.amojo_id, await _json(request))
            return hal_response(
                {"_total_items": len(linked), "_embedded": {"chats": [_link_model(link, rid) for rid, link in linked]}}
            )
        chat_ids = _list_values(request, "chat_id")
        try:
            contact_ids = [int(value) for value in _list_values(request, "contact_id")]
        except ValueError as exc:
            raise CrmValidationError.one(INVALID_TYPE, "contact_id", "This value should be of type int.") from exc
        links = self.crm.chat_links(account.amojo_id, chat_ids, contact_ids)
        if not links:
            return Response(status_code=204)
        return hal_response({"_total_items": len(links), "_embedded": {"chats": [_link_model(x) for x in links]}})
