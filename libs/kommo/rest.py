"""Kommo's REST v4 for chats in the CRM (§11): sources, contacts, the chat ↔ contact link and chat templates.

Every call first takes a slot from the shared rate limiter (Kommo allows 7 requests per second, per
account and per calling IP, whatever the number of replicas) and a 429 pushes every caller back by
`retry_after`. Failures go through the one account-side mapping (`account_failure`); the access token is
redacted from anything Kommo says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from libs.errors import NotFoundError, RateLimitedError, RetryableError
from libs.kommo.oauth import DOMAIN_PLACEHOLDER, account_failure, validate_domain
from libs.ratelimit import Limit, SharedRateLimiter

SOURCES_PATH: Final = "/api/v4/sources"
CONTACTS_PATH: Final = "/api/v4/contacts"
CONTACT_CHATS_PATH: Final = "/api/v4/contacts/chats"
PIPELINES_PATH: Final = "/api/v4/leads/pipelines"
CHAT_TEMPLATES_PATH: Final = "/api/v4/chats/templates"
WEBHOOKS_PATH: Final = "/api/v4/webhooks"
GLOBAL_LIMIT_KEY: Final = "kommo-rest"
"""K-HTTP counts requests per calling IP: all accounts together, when the replicas share one egress."""
MIN_PHONE_DIGITS: Final = 7


@dataclass(frozen=True)
class AccountAccess:
    """Where an account's REST API is and the token that opens it (left out of repr and logs)."""

    domain: str
    access_token: str = field(repr=False)


@dataclass(frozen=True)
class Source:
    id: int
    external_id: str
    name: str
    pipeline_id: int
    # What the source declares about its messenger (`services`, §11), as Kommo answered it.
    services: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Contact:
    id: int
    name: str
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


def phone_digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def same_phone(a: str, b: str) -> bool:
    """Equal digits, or the same last ten (a country prefix written as +7, 8 or 007)."""
    da, db = phone_digits(a), phone_digits(b)
    if len(da) < MIN_PHONE_DIGITS or len(db) < MIN_PHONE_DIGITS:
        return False
    return da == db or (min(len(da), len(db)) >= 10 and da[-10:] == db[-10:])


def _field_values(contact: dict[str, Any], code: str) -> tuple[str, ...]:
    values: list[str] = []
    for custom in contact.get("custom_fields_values") or []:
        if isinstance(custom, dict) and custom.get("field_code") == code:
            for item in custom.get("values") or []:
                if isinstance(item, dict) and isinstance(item.get("value"), str):
                    values.append(item["value"])
    return tuple(values)


def _contact(data: dict[str, Any]) -> Contact:
    return Contact(
        id=int(data["id"]),
        name=str(data.get("name") or ""),
        phones=_field_values(data, "PHONE"),
        emails=_field_values(data, "EMAIL"),
    )


@dataclass(frozen=True)
class ChatTemplate:
    """A Kommo chat template as the bridge compares it (§11, `with=reviews`)."""

    id: int
    external_id: str
    review_status: str
    reviews: tuple[int, ...]
    fields: dict[str, Any]


def _chat_template(data: dict[str, Any]) -> ChatTemplate:
    reviews = _embedded(data, "reviews")
    return ChatTemplate(
        id=int(data["id"]),
        external_id=str(data.get("external_id") or ""),
        review_status=str(data.get("review_status") or ""),
        reviews=tuple(int(r["id"]) for r in reviews if isinstance(r.get("id"), int)),
        fields=data,
    )


def _source(data: dict[str, Any]) -> Source:
    return Source(
        id=int(data["id"]),
        external_id=str(data.get("external_id") or ""),
        name=str(data.get("name") or ""),
        pipeline_id=int(data.get("pipeline_id") or 0),
        services=tuple(s for s in data.get("services") or [] if isinstance(s, dict)),
    )


def _embedded(data: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    items = ((data or {}).get("_embedded") or {}).get(key)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def rest_limits(domain: str, per_account: float, per_ip: float) -> list[Limit]:
    """The limits one REST call to `domain` counts against: the account's and the calling IP's."""
    return [Limit(GLOBAL_LIMIT_KEY, per_ip), Limit(f"{GLOBAL_LIMIT_KEY}:{domain}", per_account)]


def contact_fields(phone: str, email: str) -> list[dict[str, Any]]:
    """`custom_fields_values` setting a contact's work phone and e-mail (only those given)."""
    fields: list[dict[str, Any]] = []
    if phone:
        fields.append({"field_code": "PHONE", "values": [{"value": phone, "enum_code": "WORK"}]})
    if email:
        fields.append({"field_code": "EMAIL", "values": [{"value": email, "enum_code": "WORK"}]})
    return fields


class KommoRestClient:
    """The REST calls the bridge makes for an account, each inside the shared rate limit."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        account_url: str,
        limiter: SharedRateLimiter,
        *,
        per_account: float = 7.0,
        per_ip: float = 7.0,
        allowed_suffixes: tuple[str, ...] = (),
    ) -> None:
        self._http = http
        self._account_url = account_url
        self._limiter = limiter
        self._per_account = per_account
        self._per_ip = per_ip
        self._allowed_suffixes = allowed_suffixes

    def _limits(self, domain: str) -> list[Limit]:
        return rest_limits(domain, self._per_account, self._per_ip)

    async def _call(
        self,
        operation: str,
        account: AccountAccess,
        method: str,
        path: str,
        *,
        params: httpx.QueryParams | None = None,
        body: Any = None,
    ) -> dict[str, Any] | None:
        """One request; the JSON object answered, or None for 204 (Kommo's "nothing found")."""
        domain = validate_domain(account.domain, allowed_suffixes=self._allowed_suffixes)
        url = self._account_url.replace(DOMAIN_PLACEHOLDER, domain).rstrip("/") + path
        limits = self._limits(domain)
        await self._limiter.acquire(limits)
        outcome: httpx.Response | httpx.HTTPError
        try:
            outcome = await self._http.request(
                method,
                url,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {account.access_token}"},
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            outcome = exc
        error = account_failure(operation, outcome, (account.access_token,))
        if isinstance(error, RateLimitedError):
            await self._limiter.defer(limits, error.retry_after or 1.0)
        if error is not None:
            raise error
        assert isinstance(outcome, httpx.Response)
        if outcome.status_code == 204 or not outcome.content:
            return None
        try:
            data: Any = outcome.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RetryableError(f"kommo {operation}: answered {outcome.status_code} without a JSON object")
        return data

    # -- sources

    async def find_source(self, account: AccountAccess, external_id: str) -> Source | None:
        data = await self._call(
            "sources", account, "GET", SOURCES_PATH, params=httpx.QueryParams({"filter[external_id]": external_id})
        )
        for item in _embedded(data, "sources"):
            if item.get("external_id") == external_id:
                return _source(item)
        return None

    async def create_source(
        self,
        account: AccountAccess,
        external_id: str,
        name: str,
        pipeline_id: int,
        origin_code: str,
        services: list[dict[str, Any]] | None = None,
    ) -> Source:
        """`services` None or empty: the source declares none."""
        item: dict[str, Any] = {"name": name, "external_id": external_id, "request_id": "0"}
        if pipeline_id:
            item["pipeline_id"] = pipeline_id
        if origin_code:
            item["origin_code"] = origin_code
        if services:
            item["services"] = services
        created = _embedded(await self._call("sources", account, "POST", SOURCES_PATH, body=[item]), "sources")
        if not created:
            raise RetryableError("kommo sources: the create answer named no source")
        return _source(created[0])

    async def update_source(
        self,
        account: AccountAccess,
        source_id: int,
        name: str,
        pipeline_id: int,
        services: list[dict[str, Any]] | None = None,
    ) -> Source:
        """`services` None leaves the source's as they are; a list replaces them."""
        item: dict[str, Any] = {"name": name}
        if pipeline_id:
            item["pipeline_id"] = pipeline_id
        if services is not None:
            item["services"] = services
        data = await self._call("sources", account, "PATCH", f"{SOURCES_PATH}/{source_id}", body=item)
        return _source(data or {"id": source_id, "name": name, "pipeline_id": pipeline_id})

    # -- contacts

    async def find_contacts(self, account: AccountAccess, query: str) -> list[Contact]:
        data = await self._call(
            "contacts", account, "GET", CONTACTS_PATH, params=httpx.QueryParams({"query": query, "limit": "50"})
        )
        return [_contact(item) for item in _embedded(data, "contacts")]

    async def find_contact_by(self, account: AccountAccess, phone: str, email: str) -> Contact | None:
        """The contact with this phone (compared by digits) or, failing that, this e-mail."""
        if phone and len(phone_digits(phone)) >= MIN_PHONE_DIGITS:
            for contact in await self.find_contacts(account, phone_digits(phone)):
                if any(same_phone(phone, known) for known in contact.phones):
                    return contact
        if email:
            for contact in await self.find_contacts(account, email):
                if any(email.strip().lower() == known.strip().lower() for known in contact.emails):
                    return contact
        return None

    async def update_contact(self, account: AccountAccess, contact_id: int, name: str, phone: str, email: str) -> None:
        body: dict[str, Any] = {}
        if name:
            body["name"] = name
        fields = contact_fields(phone, email)
        if fields:
            body["custom_fields_values"] = fields
        if body:
            await self._call("contacts", account, "PATCH", f"{CONTACTS_PATH}/{contact_id}", body=body)

    # -- chat ↔ contact

    async def contact_of_chat(self, account: AccountAccess, chat_id: str) -> int:
        """The id of the contact a chat is linked to; 0 when none is (yet)."""
        data = await self._call(
            "contacts/chats", account, "GET", CONTACT_CHATS_PATH, params=httpx.QueryParams([("chat_id[]", chat_id)])
        )
        for item in _embedded(data, "chats"):
            if item.get("chat_id") == chat_id and isinstance(item.get("contact_id"), int):
                return int(item["contact_id"])
        return 0

    async def link_chat(self, account: AccountAccess, contact_id: int, chat_id: str) -> None:
        body = [{"contact_id": contact_id, "chat_id": chat_id, "request_id": "0"}]
        await self._call("contacts/chats", account, "POST", CONTACT_CHATS_PATH, body=body)

    async def pipelines(self, account: AccountAccess) -> list[dict[str, Any]]:
        return _embedded(await self._call("pipelines", account, "GET", PIPELINES_PATH), "pipelines")

    # -- chat templates

    async def find_chat_template(self, account: AccountAccess, external_id: str) -> ChatTemplate | None:
        params = httpx.QueryParams({"filter[external_id]": external_id, "with": "reviews"})
        data = await self._call("chat templates", account, "GET", CHAT_TEMPLATES_PATH, params=params)
        for item in _embedded(data, "chat_templates"):
            if item.get("external_id") == external_id:
                return _chat_template(item)
        return None

    async def create_chat_template(self, account: AccountAccess, template: dict[str, Any]) -> int:
        body = [{**template, "request_id": "0"}]
        created = _embedded(
            await self._call("chat templates", account, "POST", CHAT_TEMPLATES_PATH, body=body), "chat_templates"
        )
        if not created or not isinstance(created[0].get("id"), int):
            raise RetryableError("kommo chat templates: the create answer named no template")
        return int(created[0]["id"])

    async def update_chat_template(self, account: AccountAccess, template_id: int, changes: dict[str, Any]) -> None:
        await self._call("chat templates", account, "PATCH", f"{CHAT_TEMPLATES_PATH}/{template_id}", body=changes)

    async def request_review(self, account: AccountAccess, template_id: int) -> int:
        """`POST …/{id}/review`: the template goes on review; the new review's id."""
        data = await self._call(
            "chat templates", account, "POST", f"{CHAT_TEMPLATES_PATH}/{template_id}/review", body={}
        )
        reviews = _embedded(data, "reviews")
        if not reviews or not isinstance(reviews[0].get("id"), int):
            raise RetryableError("kommo chat templates: the review answer named no review")
        return int(reviews[0]["id"])

    async def set_review(
        self, account: AccountAccess, template_id: int, review_id: int, status: str, reject_reason: str = ""
    ) -> None:
        """`POST …/{id}/review/{review_id}`: the review's verdict (approved, paused or rejected)."""
        body = {"status": status, "reject_reason": reject_reason}
        path = f"{CHAT_TEMPLATES_PATH}/{template_id}/review/{review_id}"
        await self._call("chat templates", account, "POST", path, body=body)

    async def chat_template(self, account: AccountAccess, template_id: int) -> ChatTemplate | None:
        """`GET …/{id}?with=reviews`: one chat template as Kommo has it; None when it has none of that id."""
        params = httpx.QueryParams({"with": "reviews"})
        path = f"{CHAT_TEMPLATES_PATH}/{template_id}"
        try:
            data = await self._call("chat templates", account, "GET", path, params=params)
        except NotFoundError:
            return None
        return _chat_template(data) if data and isinstance(data.get("id"), int) else None

    # -- account webhooks

    async def subscribe_webhook(self, account: AccountAccess, destination: str, events: list[str]) -> None:
        """`POST /api/v4/webhooks`: Kommo posts these account events (form-encoded) to `destination`; the
        same destination subscribed again has its events replaced."""
        body = {"destination": destination, "settings": events, "sort": 10}
        await self._call("webhooks", account, "POST", WEBHOOKS_PATH, body=body)
