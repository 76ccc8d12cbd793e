"""Kommo's account webhooks (kommo-chats-api.md §11 "Account webhooks", `/api/v4/webhooks`), per account.

`POST /api/v4/webhooks {destination, settings: [events], sort}` → 201 subscribes a destination (the same
destination again replaces its events); `GET` lists them. An event is posted form-encoded, PHP style
(`add[0][id]=…&account[id]=…`), to every destination subscribed to it; like Kommo, nothing signs it.
Each post is kept (`deliveries`) for tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from libs.kommo.emulator.crm import FIELD_MISSING, NOT_SUPPORTED_CHOICE, CrmValidationError

EVENTS: Final = frozenset(
    {
        "add_chat_template_review",
        "add_lead",
        "update_lead",
        "delete_lead",
        "add_contact",
        "update_contact",
        "delete_contact",
        "add_talk",
        "update_talk",
        "add_message",
    }
)
MAX_PER_ACCOUNT: Final = 100
HOOK_TIMEOUT_S: Final = 2.0
"""Kommo waits 2 s for an account webhook's answer."""


@dataclass
class Subscription:
    id: int
    destination: str
    settings: list[str]
    sort: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "destination": self.destination, "settings": self.settings, "sort": self.sort}


@dataclass
class Delivery:
    event: str
    destination: str
    body: str
    status: int | None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "destination": self.destination, "body": self.body, "status": self.status,
                "error": self.error}  # fmt: skip


def form_pairs(prefix: str, value: Any) -> list[tuple[str, str]]:
    """A nested value as PHP's form keys: `add[0][reviews][0][id]=301`."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in form_pairs(f"{prefix}[{key}]", item)]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in form_pairs(f"{prefix}[{index}]", item)]
    if value is None:
        return [(prefix, "")]
    if isinstance(value, bool):
        return [(prefix, "1" if value else "0")]
    return [(prefix, str(value))]


@dataclass
class AccountWebhooks:
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _subscriptions: dict[str, list[Subscription]] = field(default_factory=dict)
    _next_id: int = 1
    deliveries: list[Delivery] = field(default_factory=list)
    _http: httpx.AsyncClient | None = None

    def subscribe(self, amojo_id: str, body: Any) -> Subscription:
        if not isinstance(body, dict):
            raise CrmValidationError.one(NOT_SUPPORTED_CHOICE, "", "The request body must be an object.")
        destination, events = body.get("destination"), body.get("settings")
        if not isinstance(destination, str) or not destination.startswith(("http://", "https://")):
            raise CrmValidationError.one(FIELD_MISSING, "destination", "This value should be a valid URL.")
        if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
            raise CrmValidationError.one(
                NOT_SUPPORTED_CHOICE, "settings", "The value you selected is not a valid choice."
            )
        given_sort = body.get("sort")
        sort = given_sort if isinstance(given_sort, int) else 1
        with self._lock:
            book = self._subscriptions.setdefault(amojo_id, [])
            found = next((s for s in book if s.destination == destination), None)
            if found is not None:
                found.settings, found.sort = list(events), sort
                return found
            if len(book) >= MAX_PER_ACCOUNT:
                raise CrmValidationError.one(NOT_SUPPORTED_CHOICE, "destination", "Too many webhooks in the account.")
            subscription = Subscription(self._next_id, destination, list(events), sort)
            self._next_id += 1
            book.append(subscription)
            return subscription

    def of(self, amojo_id: str) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.get(amojo_id, []))

    async def fire(self, amojo_id: str, event: str, pairs: list[tuple[str, str]]) -> list[Delivery]:
        """Post the event to every destination subscribed to it; what each answered."""
        body = urlencode(pairs)
        if self._http is None:
            self._http = httpx.AsyncClient()
        sent = []
        for subscription in self.of(amojo_id):
            if event not in subscription.settings:
                continue
            try:
                response = await self._http.post(
                    subscription.destination,
                    content=body.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=HOOK_TIMEOUT_S,
                )
                delivery = Delivery(event, subscription.destination, body, response.status_code)
            except httpx.HTTPError as exc:
                delivery = Delivery(event, subscription.destination, body, None, type(exc).__name__)
            with self._lock:
                self.deliveries.append(delivery)
            sent.append(delivery)
        return sent

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
