"""WhatsApp webhooks at the Meta app's own callback URL, `/webhooks/whatsapp` (not a number's override).

Meta sends a number's messages to the number's override URL (`/webhooks/whatsapp/{connection_id}`), but
some fields only ever to the app's callback URL: a template's review (`message_template_status_update`)
and the business account's own changes. Such a POST names business accounts (`entry[].id`, the WABA id),
not connections, so each entry goes to the connections of that account, and only to those whose app
secret signs the exact bytes received (`X-Hub-Signature-256`): none → refused, nothing published. A
number's messages in it (`value.metadata.phone_number_id`) go to that number's connection only. An
account no connection has is acknowledged (200) and logged: Meta retries a refused POST for days.

Meta's GET check of this URL carries the verify token typed into the app dashboard: accepted when it is
the verify token of any WhatsApp connection (the one its settings window shows), compared in constant time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from libs.errors import AuthError, BadRequestError, BridgeError, NotFoundError
from libs.messengers.registry import adapter_named
from libs.messengers.whatsapp.cloud_api import CloudCredentials
from libs.rpc import call
from libs.secret_names import MESSENGER_WEBHOOK_SECRET
from services.gateway.credentials import GatewayCredentials
from services.gateway.webhooks import Webhooks, error_response, read_body

log = logging.getLogger(__name__)

PLATFORM: Final = "whatsapp"
DIRECTORY_TTL_S: Final = 60.0
"""How long the business accounts of the connections are kept before they are read again."""
DIRECTORY_REFRESH_MIN_S: Final = 5.0
"""An account not known is looked up again at most this often (forged requests must not drive lookups)."""


@dataclass(frozen=True)
class WhatsAppNumber:
    connection_id: str
    phone_number_id: str
    waba_id: str


class BusinessAccounts:
    """Which connections are numbers of which WhatsApp business account, from the router's connections and
    each one's credential (`<phone number id>:<waba id>:<token>`, held by auth)."""

    def __init__(self, router: router_pb2_grpc.RouterServiceAsyncStub, credentials: GatewayCredentials) -> None:
        self._router = router
        self._credentials = credentials
        self._numbers: list[WhatsAppNumber] = []
        self._read_at: float | None = None

    async def _read(self) -> None:
        listed = await call(self._router.ListConnections, router_pb2.ListConnectionsRequest())
        numbers: list[WhatsAppNumber] = []
        for connection in listed.connections:
            if connection.platform != content_pb2.PLATFORM_WHATSAPP:
                continue
            try:
                token = await self._credentials.messenger_token(connection.connection_id)
                credential = CloudCredentials.parse(token)
            except (NotFoundError, AuthError):
                continue  # being removed, or never completed
            numbers.append(WhatsAppNumber(connection.connection_id, credential.phone_number_id, credential.waba_id))
        self._numbers = numbers

    async def _fresh(self, *, missing: bool) -> list[WhatsAppNumber]:
        now = asyncio.get_running_loop().time()
        age = None if self._read_at is None else now - self._read_at
        if age is None or age > DIRECTORY_TTL_S or (missing and age > DIRECTORY_REFRESH_MIN_S):
            await self._read()  # raises when the router or auth cannot answer: then read again next time
            self._read_at = now
        return self._numbers

    async def numbers_of(self, waba_ids: set[str]) -> list[WhatsAppNumber]:
        """The connected numbers of these business accounts (read again when one is not known)."""
        found = [n for n in await self._fresh(missing=False) if n.waba_id in waba_ids]
        if {n.waba_id for n in found} != waba_ids:
            found = [n for n in await self._fresh(missing=True) if n.waba_id in waba_ids]
        return found

    async def all_numbers(self) -> list[WhatsAppNumber]:
        return list(await self._fresh(missing=False))


def _entries(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("whatsapp webhook: the body is not JSON") from None
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries):
        raise BadRequestError("whatsapp webhook: entry must be an array of {id, changes}")
    return payload, entries


def for_number(payload: dict[str, Any], entries: list[dict[str, Any]], number: WhatsAppNumber) -> bytes | None:
    """The part of a notification that is this number's: its account's entries, without changes that name
    another number of the account. None when nothing is left."""
    kept: list[dict[str, Any]] = []
    for entry in entries:
        if entry["id"] != number.waba_id:
            continue
        changes = [c for c in entry.get("changes") or [] if isinstance(c, dict) and _names_number(c, number)]
        if changes:
            kept.append({**entry, "changes": changes})
    return json.dumps({**payload, "entry": kept}).encode() if kept else None


def _names_number(change: dict[str, Any], number: WhatsAppNumber) -> bool:
    value = change.get("value")
    metadata = value.get("metadata") if isinstance(value, dict) else None
    named = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return named is None or str(named) == number.phone_number_id


class WhatsAppAppWebhooks:
    def __init__(self, webhooks: Webhooks, accounts: BusinessAccounts, credentials: GatewayCredentials) -> None:
        self._webhooks = webhooks
        self._accounts = accounts
        self._credentials = credentials

    async def receive(self, request: Request) -> Response:
        """POST /webhooks/whatsapp: a notification at the Meta app's callback URL."""
        return await self._webhooks.observed(PLATFORM, self._receive(request))

    async def check(self, request: Request) -> Response:
        """GET /webhooks/whatsapp: Meta's check of the app's callback URL (hub.challenge)."""
        return await self._webhooks.observed(PLATFORM, self._check(request))

    async def _receive(self, request: Request) -> Response:
        adapter = adapter_named(PLATFORM)
        try:
            body = await read_body(request)
            payload, entries = _entries(body)
            waba_ids = {e["id"] for e in entries}
            numbers = await self._accounts.numbers_of(waba_ids)
            unknown = waba_ids - {n.waba_id for n in numbers}
            if unknown:
                log.warning("whatsapp webhook of accounts no connection has", extra={"waba_ids": sorted(unknown)})
            if not numbers:
                return JSONResponse({"ok": True, "ignored": True})
            signed: list[WhatsAppNumber] = []
            refusal: AuthError | None = None
            for number in numbers:
                try:
                    await self._webhooks.verify_messenger(adapter, request.headers, body, number.connection_id)
                    signed.append(number)
                except NotFoundError:
                    continue  # removed since the directory was read
                except AuthError as exc:
                    refusal = exc
            if not signed and refusal is None:  # every one removed meanwhile: as for an unknown account
                return JSONResponse({"ok": True, "ignored": True})
            if not signed:
                raise refusal or AuthError("whatsapp webhook: no connection's app secret signs this body")
            published = 0
            for number in signed:
                part = for_number(payload, entries, number)
                events = adapter.parse_webhook(part, number.connection_id) if part is not None else []
                await self._webhooks.publish_inbound(adapter, number.connection_id, events)
                published += len(events)
        except BridgeError as exc:
            self._webhooks.log_refusal("whatsapp app webhook refused", exc)
            return error_response(exc)
        return JSONResponse({"ok": True} if published else {"ok": True, "ignored": True})

    async def _check(self, request: Request) -> Response:
        adapter = adapter_named(PLATFORM)
        query = request.query_params
        matched = ""
        try:
            numbers = await self._accounts.all_numbers()
        except BridgeError as exc:  # the router or auth not answering: Meta checks again later
            self._webhooks.log_refusal("whatsapp app webhook check failed", exc)
            return error_response(exc)
        # Every connection's token is compared (constant time each), whichever matches.
        for number in numbers:
            try:
                token = await self._credentials.webhook_secret(number.connection_id, MESSENGER_WEBHOOK_SECRET)
                answer = adapter.verify_handshake(query, token)
                matched = matched or answer
            except (AuthError, NotFoundError):
                continue
        if not matched:
            log.info("whatsapp app webhook check refused")
            return PlainTextResponse("Forbidden", status_code=403)
        return PlainTextResponse(matched)
