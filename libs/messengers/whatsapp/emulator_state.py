"""The world behind the WhatsApp Cloud API emulator: the Meta app, business accounts (WABAs) and their
numbers, access tokens, WhatsApp users, the 24-hour customer-service window of each chat, every message
either side sent with its statuses, and webhook delivery that behaves like Meta's (signed over the exact
bytes sent, retried until a 2xx, to the number's override URL, else the account's, else the app's).

The HTTP surface (Graph endpoints and `/_emulator/...` control routes) is in `emulator.py`; this module
holds the state those routes read and change, so tests can also drive it directly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx

from libs.emulation import FaultInjector, RequestLog
from libs.messengers.whatsapp.emulator_errors import GraphApiError, unknown_object
from libs.messengers.whatsapp.emulator_media import MediaStore
from libs.messengers.whatsapp.emulator_templates import TemplateStore
from libs.messengers.whatsapp.throughput import SendControl, SendLimits

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
LEGACY_SIGNATURE_HEADER: Final = "X-Hub-Signature"
WINDOW_S: Final = 24 * 3600
TYPING_S: Final = 25.0
WindowMode = Literal["failed_after_200", "immediate"]


def _numeric_id(digits: int = 15) -> str:
    return str(secrets.randbelow(9 * 10 ** (digits - 1)) + 10 ** (digits - 1))


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18" + secrets.token_bytes(25)).decode()


@dataclass
class App:
    """The Meta app: its secret signs every webhook; its callback URL is the default destination."""

    id: str
    secret: str
    callback_url: str = ""
    verify_token: str = ""


@dataclass
class Business:
    """A WhatsApp Business Account (WABA): numbers, templates, and the apps subscribed to its webhooks."""

    id: str
    name: str
    phone_number_ids: list[str] = field(default_factory=list)
    subscribed: bool = False
    override_url: str = ""


@dataclass
class PhoneNumber:
    id: str
    display_phone_number: str
    verified_name: str
    waba_id: str
    override_url: str = ""


@dataclass
class Client:
    """A WhatsApp user. `wa_id` is their phone number ("" for one who hides it behind a username);
    `user_id` their business-scoped id (BSUID)."""

    user_id: str
    name: str
    wa_id: str = ""
    username: str = ""
    reachable: bool = True  # False: not on WhatsApp any more, or an old app (131026)
    online: bool = True  # False: messages stay "sent" until they come online
    blocked: set[str] = field(default_factory=set)  # phone number ids the user blocked
    # Turned on a username later and hid their number: webhooks carry only the BSUID, but a business that
    # knew the number may still send `to` it.
    number_hidden: bool = False

    @property
    def key(self) -> str:
        """The id the emulator files their chats under: the phone number when there is one."""
        return self.wa_id or self.user_id

    @property
    def shown_wa_id(self) -> str:
        """The number webhooks name them by ("" when they have none or hide it)."""
        return "" if self.number_hidden else self.wa_id

    def contact(self) -> dict[str, Any]:
        profile: dict[str, Any] = {"name": self.name}
        if self.username:
            profile["username"] = self.username
        contact: dict[str, Any] = {"profile": profile}
        if self.shown_wa_id:
            contact["wa_id"] = self.shown_wa_id
        contact["user_id"] = self.user_id
        return contact


@dataclass
class StoredMessage:
    """A message of one chat, either way, as it was sent."""

    wamid: str
    phone_number_id: str
    client_key: str
    direction: Literal["in", "out"]
    type: str
    body: dict[str, Any]
    at: float
    status: str = "accepted"
    statuses: list[str] = field(default_factory=list)
    error_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.wamid,
            "phone_number_id": self.phone_number_id,
            "client": self.client_key,
            "direction": self.direction,
            "type": self.type,
            "body": self.body,
            "at": self.at,
            "status": self.status,
            "statuses": self.statuses,
            "error_code": self.error_code,
        }


@dataclass(frozen=True)
class ReadMark:
    """A mark-as-read (and typing indicator) call the business made."""

    phone_number_id: str
    message_id: str
    typing: bool
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "phone_number_id": self.phone_number_id,
            "message_id": self.message_id,
            "typing": self.typing,
            "at": self.at,
        }


@dataclass(frozen=True)
class InjectedError:
    """The next business message(s) fail with `error`: at once (`immediate`) or by a `failed` status
    after 200 (`failed_status`)."""

    error: GraphApiError
    mode: Literal["immediate", "failed_status"]
    to: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to a webhook POST on its first attempt (`status` None: not attempted)."""

    payload: dict[str, Any]
    url: str
    status: int | None
    attempts: int
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": self.payload,
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass
class _Pending:
    payload: dict[str, Any]
    body: bytes
    first_attempt: asyncio.Future[DeliveryResult]
    attempts: int = 0
    first_attempt_at: float = 0.0


@dataclass
class _Destination:
    """One callback URL and its queue: Meta retries a failed POST, and later ones wait behind it here."""

    url: str
    queue: deque[_Pending] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WhatsAppState:
    """Everything the emulator knows. Retry timing is configurable so tests need not wait for Meta's
    backoffs; `http` may be injected; `clock` (epoch seconds) can be replaced to age the 24-hour window."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        limits: SendLimits | None = None,
        clock: Callable[[], float] = time.time,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        give_up_after_s: float = 120.0,
        delivery_timeout_s: float = 10.0,
    ) -> None:
        self.log = RequestLog()
        self.faults = FaultInjector()
        self.clock = clock
        self.limits = SendControl(limits)
        self.app = App(id=_numeric_id(), secret=secrets.token_hex(16))
        # Through `now`, so a test that replaces `clock` moves every expiry with it.
        self.media = MediaStore(self.now)
        self.templates = TemplateStore(self.now)
        self.window_mode: WindowMode = "failed_after_200"
        # Answer template sends `held_for_quality_assessment` instead of `accepted` (Meta does, for some).
        self.hold_templates = False
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.give_up_after_s = give_up_after_s
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=delivery_timeout_s)
        self.businesses: dict[str, Business] = {}
        self.numbers: dict[str, PhoneNumber] = {}
        self.tokens: dict[str, set[str]] = {}  # access token -> WABA ids it may act for
        self.clients: dict[str, Client] = {}  # by wa_id and by user_id
        self.messages: dict[str, StoredMessage] = {}
        self.sent: list[StoredMessage] = []  # what businesses sent, in order
        self.reads: list[ReadMark] = []
        self.injected: deque[InjectedError] = deque()
        # (phone number id, client key) -> epoch seconds of the client's last message.
        self.last_inbound: dict[tuple[str, str], float] = {}
        self.deliveries: list[DeliveryResult] = []
        self._destinations: dict[str, _Destination] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def now(self) -> float:
        return self.clock()

    @property
    def http(self) -> httpx.AsyncClient:
        """What the emulator fetches and posts with (links, webhooks, callback checks)."""
        return self._http

    # -- businesses, numbers, tokens ----------------------------------------------------------------

    def create_business(
        self, name: str, numbers: Iterable[tuple[str, str]], *, waba_id: str | None = None
    ) -> tuple[Business, list[PhoneNumber], str]:
        """A business account with numbers (display number, verified name) and a system-user token for it."""
        business = Business(id=waba_id or _numeric_id(), name=name)
        if business.id in self.businesses:
            raise ValueError(f"business account {business.id} exists")
        self.businesses[business.id] = business
        created = []
        for display, verified_name in numbers:
            digits = "".join(c for c in display if c.isdigit())
            if not digits:
                raise ValueError("a phone number needs digits")
            number = PhoneNumber(_numeric_id(), digits, verified_name, business.id)
            self.numbers[number.id] = number
            business.phone_number_ids.append(number.id)
            created.append(number)
        return business, created, self.issue_token([business.id])

    def issue_token(self, waba_ids: Iterable[str]) -> str:
        token = "EAA" + base64.b64encode(secrets.token_bytes(96)).decode().replace("+", "").replace("/", "")[:180]
        self.tokens[token] = set(waba_ids)
        return token

    def revoke_token(self, token: str) -> None:
        self.tokens.pop(token, None)

    def authorize(self, token: str | None) -> set[str]:
        """The WABAs a Bearer token may act for; the error Graph answers without a valid one."""
        if not token:
            raise GraphApiError(400, 104, "An access token is required to request this resource.", bare_message=True)
        grant = self.tokens.get(token)
        if grant is None:
            raise GraphApiError(401, 190, "Invalid OAuth access token - Cannot parse access token", bare_message=True)
        return grant

    def number_for(self, grant: set[str], phone_number_id: str) -> PhoneNumber:
        number = self.numbers.get(phone_number_id)
        if number is None or number.waba_id not in grant:
            raise unknown_object(phone_number_id)
        return number

    def business_for(self, grant: set[str], waba_id: str) -> Business:
        business = self.businesses.get(waba_id)
        if business is None or business.id not in grant:
            raise unknown_object(waba_id)
        return business

    # -- WhatsApp users -------------------------------------------------------------------------------

    def add_client(
        self, name: str, *, wa_id: str = "", username: str = "", user_id: str = "", hide_phone: bool = False
    ) -> Client:
        """A WhatsApp user. One who hides their number (`hide_phone`, a username) is known by BSUID only."""
        if not name:
            raise ValueError("a WhatsApp user has a profile name")
        if wa_id and not wa_id.isdigit():
            raise ValueError("wa_id is the phone number in digits")
        if hide_phone and not username:
            raise ValueError("a user hides their number behind a username")
        user_id = user_id or f"US.{_numeric_id(20)}"
        client = Client(user_id=user_id, name=name, wa_id="" if hide_phone else wa_id, username=username)
        for key in (wa_id, user_id):
            if key and key in self.clients:
                raise ValueError(f"WhatsApp user {key} exists")
        if wa_id:
            self.clients[wa_id] = client
        self.clients[user_id] = client
        return client

    def client(self, key: str) -> Client:
        client = self.clients.get(key)
        if client is None:
            raise KeyError(f"no WhatsApp user {key}")
        return client

    def hide_number(self, client: Client, username: str) -> None:
        """The user turns on a username and hides their number: from now on webhooks name them by BSUID."""
        if not username:
            raise ValueError("a user hides their number behind a username")
        client.username = username
        client.number_hidden = bool(client.wa_id)

    async def change_number(self, phone_number_id: str, client: Client, new_wa_id: str) -> DeliveryResult:
        """The user moves their account to a new number: WhatsApp tells the business with a `system` message
        `user_changed_number` from the old number; their chat (and its 24-hour window) moves along."""
        number = self.numbers.get(phone_number_id)
        if number is None:
            raise KeyError(f"no phone number {phone_number_id}")
        if not new_wa_id.isdigit():
            raise ValueError("new_wa_id is the phone number in digits")
        if new_wa_id in self.clients:
            raise ValueError(f"WhatsApp user {new_wa_id} exists")
        if not client.wa_id:
            raise ValueError("a user known by BSUID only has no number to change")
        old_key, old_wa_id = client.key, client.wa_id
        self.clients.pop(old_wa_id, None)
        client.wa_id = new_wa_id
        self.clients[new_wa_id] = client
        for number_id, key in list(self.last_inbound):
            if key == old_key:
                self.last_inbound[(number_id, client.key)] = self.last_inbound.pop((number_id, key))
        now = self.clock()
        message: dict[str, Any] = {"from": old_wa_id} if not client.number_hidden else {}
        message.update(
            {
                "from_user_id": client.user_id,
                "id": new_wamid(),
                "timestamp": str(int(now)),
                "type": "system",
                "system": {
                    "body": f"{client.name} changed from {old_wa_id} to {new_wa_id}",
                    "new_wa_id": new_wa_id,
                    "type": "user_changed_number",
                },
            }
        )
        self.messages[message["id"]] = StoredMessage(message["id"], number.id, client.key, "in", "system", message, now)
        return await self._notify(number, {"messages": [message]})

    # -- the 24-hour window ---------------------------------------------------------------------------

    def window_open(self, phone_number_id: str, client_key: str) -> bool:
        last = self.last_inbound.get((phone_number_id, client_key))
        return last is not None and self.clock() - last < WINDOW_S

    def set_last_inbound(self, phone_number_id: str, client_key: str, at: float | None) -> None:
        if at is None:
            self.last_inbound.pop((phone_number_id, client_key), None)
        else:
            self.last_inbound[(phone_number_id, client_key)] = at

    # -- what clients send ----------------------------------------------------------------------------

    async def client_sends(
        self, phone_number_id: str, client: Client, messages: list[dict[str, Any]]
    ) -> tuple[list[StoredMessage], DeliveryResult]:
        """The user sends `messages` (content objects: `{"type": "text", "text": {...}}`, with optional
        `context`) to the number; one notification carries them all. Each opens or refreshes the window."""
        number = self.numbers.get(phone_number_id)
        if number is None:
            raise KeyError(f"no phone number {phone_number_id}")
        if not messages:
            raise ValueError("a client sends at least one message")
        now = self.clock()
        stored: list[StoredMessage] = []
        notified: list[dict[str, Any]] = []
        for content in messages:
            kind = content.get("type")
            if not isinstance(kind, str) or not kind:
                raise ValueError("each message needs a type")
            wamid = new_wamid()
            message: dict[str, Any] = {}
            if client.shown_wa_id:
                message["from"] = client.shown_wa_id
            message.update({"from_user_id": client.user_id, "id": wamid, "timestamp": str(int(now))})
            message.update({k: v for k, v in content.items() if k not in ("from", "id", "timestamp")})
            record = StoredMessage(wamid, number.id, client.key, "in", kind, message, now)
            self.messages[wamid] = record
            stored.append(record)
            notified.append(message)
        self.last_inbound[(number.id, client.key)] = now
        value = {"contacts": [client.contact()], "messages": notified}
        return stored, await self._notify(number, value)

    async def client_reads(self, phone_number_id: str, client: Client, up_to: str = "") -> list[StoredMessage]:
        """The user opens the chat: every delivered message of the business (up to `up_to`) turns read."""
        chat = [m for m in self.sent if m.phone_number_id == phone_number_id and m.client_key == client.key]
        if up_to:
            ids = [m.wamid for m in chat]
            if up_to not in ids:
                raise KeyError(f"{up_to} is not a message of this chat")
            chat = chat[: ids.index(up_to) + 1]
        changed = [m for m in chat if m.status in ("sent", "delivered")]
        for message in changed:
            if message.status == "sent":
                await self.emit_status(message, "delivered")
            await self.emit_status(message, "read")
        return changed

    async def client_plays(self, wamid: str) -> StoredMessage:
        """The user listens to a voice note the business sent."""
        message = self.messages.get(wamid)
        if message is None or message.direction != "out" or message.type != "audio":
            raise KeyError(f"{wamid} is not an audio message a business sent")
        if message.status == "failed":
            raise ValueError(f"{wamid} failed")
        await self.emit_status(message, "played")
        return message

    async def client_comes_online(self, client: Client) -> list[StoredMessage]:
        client.online = True
        waiting = [m for m in self.sent if m.client_key == client.key and m.status == "sent"]
        for message in waiting:
            await self.emit_status(message, "delivered")
        return waiting

    # -- what businesses send ---------------------------------------------------------------------------

    def accept(self, number: PhoneNumber, client_key: str, kind: str, body: dict[str, Any]) -> StoredMessage:
        """Store a message the business sent (Graph answered 200); its fate follows in `settle`."""
        message = StoredMessage(new_wamid(), number.id, client_key, "out", kind, body, self.clock())
        self.messages[message.wamid] = message
        self.sent.append(message)
        return message

    def settle_later(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait until every accepted message has its statuses (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def emit_status(
        self, message: StoredMessage, status: str, error: GraphApiError | None = None
    ) -> DeliveryResult:
        """Record a status of a business message and notify it, as Meta does."""
        number = self.numbers[message.phone_number_id]
        client = self.clients.get(message.client_key)
        message.status = status
        message.statuses.append(status)
        entry: dict[str, Any] = {"id": message.wamid, "status": status, "timestamp": str(int(self.clock()))}
        if client is not None and client.shown_wa_id:
            entry["recipient_id"] = client.shown_wa_id
        elif client is None:
            entry["recipient_id"] = message.client_key
        if client is not None:
            entry["recipient_user_id"] = client.user_id
        callback = message.body.get("biz_opaque_callback_data")
        if isinstance(callback, str) and callback:
            entry["biz_opaque_callback_data"] = callback
        if status in ("sent", "delivered", "read") and message.type != "reaction":
            category = "service" if message.type != "template" else "utility"
            entry["pricing"] = {"billable": False, "pricing_model": "PMP", "category": category}
        if error is not None:
            message.error_code = error.code
            entry["errors"] = [error.status_error()]
        value: dict[str, Any] = {"statuses": [entry]}
        if client is not None:
            value["contacts"] = [client.contact()]
        return await self._notify(number, value)

    # -- webhooks ---------------------------------------------------------------------------------------

    def destination(self, number: PhoneNumber) -> tuple[str, str]:
        """Where a number's `messages` webhooks go (URL, or "" with why not)."""
        business = self.businesses[number.waba_id]
        if not business.subscribed:
            return "", "the app is not subscribed to the business account (POST /{waba-id}/subscribed_apps)"
        url = number.override_url or business.override_url or self.app.callback_url
        return url, "" if url else "no callback URL is set"

    async def _notify(self, number: PhoneNumber, value: dict[str, Any]) -> DeliveryResult:
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": number.waba_id,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": number.display_phone_number,
                                    "phone_number_id": number.id,
                                },
                                **value,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        url, why_not = self.destination(number)
        return await self.post(url, payload, why_not)

    async def notify_template(self, waba_id: str, value: dict[str, Any]) -> DeliveryResult:
        """A template's review result: template webhooks go to the app's callback URL, never an override."""
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": waba_id,
                    "time": int(self.clock()),
                    "changes": [{"value": value, "field": "message_template_status_update"}],
                }
            ],
        }
        business = self.businesses[waba_id]
        url = self.app.callback_url if business.subscribed else ""
        return await self.post(url, payload, "" if url else "the app has no callback URL or no subscription")

    async def post(self, url: str, payload: dict[str, Any], why_not: str = "") -> DeliveryResult:
        """Queue a signed POST of `payload` to `url` and wait for its first attempt."""
        if not url:
            result = DeliveryResult(payload, "", None, 0, why_not or "no callback URL")
            self.deliveries.append(result)
            return result
        # Meta sends its JSON with non-ASCII characters escaped, and signs exactly those bytes.
        body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()
        future: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        destination = self._destinations.get(url)
        if destination is None:
            destination = self._destinations[url] = _Destination(url)
        destination.queue.append(_Pending(payload, body, future))
        if len(destination.queue) > 1 and destination.queue[0].attempts > 0:
            future.set_result(DeliveryResult(payload, url, None, 0, "queued behind an undelivered notification"))
        if destination.worker is None or destination.worker.done():
            destination.worker = asyncio.get_running_loop().create_task(self._deliver(destination))
        result = await asyncio.shield(future)
        self.deliveries.append(result)
        return result

    async def _deliver(self, destination: _Destination) -> None:
        delay = self.retry_initial_s
        while destination.queue:
            head = destination.queue[0]
            if head.attempts == 0:
                head.first_attempt_at = time.monotonic()
            status, error = await self._send(destination.url, head.body)
            head.attempts += 1
            if not head.first_attempt.done():
                head.first_attempt.set_result(
                    DeliveryResult(head.payload, destination.url, status, head.attempts, error)
                )
            delivered = status is not None and 200 <= status < 300
            if delivered or time.monotonic() - head.first_attempt_at >= self.give_up_after_s:
                destination.queue.popleft()
                delay = self.retry_initial_s
                continue
            for later in list(destination.queue)[1:]:
                if not later.first_attempt.done():
                    result = DeliveryResult(later.payload, destination.url, None, 0, "queued behind an undelivered one")
                    later.first_attempt.set_result(result)
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)

    async def _send(self, url: str, body: bytes) -> tuple[int | None, str | None]:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.app.secret, body),
            LEGACY_SIGNATURE_HEADER: "sha1=" + hmac.new(self.app.secret.encode(), body, hashlib.sha1).hexdigest(),
            "User-Agent": "facebookexternalua",
        }
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, "timed out"
        except httpx.HTTPError as exc:
            return None, f"failed ({type(exc).__name__})"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"answered HTTP {response.status_code}"

    async def verify_callback(self, url: str, verify_token: str) -> None:
        """Meta's check of a callback URL before it accepts it: GET with hub.* and the challenge echoed."""
        challenge = str(secrets.randbelow(10**9))
        params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
        try:
            response = await self._http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise _callback_failed(f"Couldn't connect to server ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise _callback_failed(
                f"HTTP Status Code = {response.status_code}; HTTP Message = {response.reason_phrase}"
            )
        if response.text != challenge:
            raise _callback_failed("The URL couldn't be validated. Response does not match challenge")

    async def aclose(self) -> None:
        """Stop delivery workers and pending settlements (and the HTTP client when the state made it)."""
        tasks = [*self._tasks, *(d.worker for d in self._destinations.values() if d.worker is not None)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for destination in self._destinations.values():
            for pending in destination.queue:
                if not pending.first_attempt.done():
                    result = DeliveryResult(pending.payload, destination.url, None, 0, "the emulator stopped")
                    pending.first_attempt.set_result(result)
        if self._own_http:
            await self._http.aclose()
        self.media.close()


def _callback_failed(why: str) -> GraphApiError:
    return GraphApiError(
        400, 2200, f"Callback verification failed with the following errors: {why}", kind="OAuthException"
    )
