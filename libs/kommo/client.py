"""The signed amojo client (§1-§7): every call Kommo's chat API takes from a channel.

Bodies are serialized once to compact bytes, and exactly those bytes are hashed, signed and sent, so the
signature can never drift from the wire. Every failure is mapped to `libs.errors` in `_failure()` only;
the channel secret is never put in an error message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from libs.errors import (
    BadRequestError,
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from libs.kommo.payloads import EditMessage, NewMessage, Participant, Reaction, encode_body
from libs.kommo.responses import json_object, retry_after, text_field, transport_failure
from libs.kommo.signing import signed_headers
from libs.observability.metrics import count_rate_limited

API_PREFIX: Final = "/v2/origin/custom"
HOOK_API_VERSION: Final = "v2"
DEFAULT_RETRY_AFTER_S: Final = 1.0
_MAX_DETAIL = 300

DELIVERED: Final = 1
READ: Final = 2
FAILED: Final = -1
_STATUSES: Final = frozenset({DELIVERED, READ, FAILED})
_ERROR_CODES: Final = frozenset({901, 902, 903, 904, 905})


@dataclass(frozen=True)
class ConnectResult:
    account_id: str
    scope_id: str
    title: str


@dataclass(frozen=True)
class CreatedChat:
    """Kommo's ids for a chat and its client. amojo returns the client's phone/email flat or under
    `profile` (§13.4); both are read."""

    chat_id: str
    user_id: str
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class SentMessage:
    """`kommo_msgid` is Kommo's id for our message (the response's `msgid`, §4 inversion).
    `conversation_id` is the response's `new_message.conversation_id`, "" when amojo omits it."""

    kommo_msgid: str
    conversation_id: str


def _segment(value: str) -> str:
    if not value:
        raise BadRequestError("empty identifier in an amojo path")
    return quote(value, safe="")


class AmojoClient:
    """Calls amojo for one registered channel. The `http` client is owned by the caller.

    `clock` exists so tests can sign with a fixed Date (the official vectors, a stale date).
    """

    def __init__(
        self,
        base_url: str,
        channel_id: str,
        channel_secret: str,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"amojo base URL must be absolute http(s), got {base_url!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._channel_id = channel_id
        self._secret = channel_secret
        self._http = http
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"AmojoClient({self._origin}{self._base_path!s}, channel_id={self._channel_id!r})"

    async def connect(self, account_id: str, title: str = "") -> ConnectResult:
        """Connect the channel to an account (its amojo_id); call after every install (§2)."""
        body: dict[str, Any] = {"account_id": account_id}
        if title:
            body["title"] = title
        body["hook_api_version"] = HOOK_API_VERSION
        data = await self._call("connect", "POST", f"/{_segment(self._channel_id)}/connect", body)
        scope_id = text_field(data, "scope_id")
        if not scope_id:
            raise RetryableError("amojo connect answered without scope_id")
        return ConnectResult(
            account_id=text_field(data, "account_id") or account_id, scope_id=scope_id, title=text_field(data, "title")
        )

    async def disconnect(self, account_id: str) -> None:
        """Disconnect the channel from an account: hooks stop (§2)."""
        await self._call(
            "disconnect", "DELETE", f"/{_segment(self._channel_id)}/disconnect", {"account_id": account_id}
        )

    async def create_chat(
        self, scope_id: str, conversation_id: str, user: Participant, source_external_id: str = ""
    ) -> CreatedChat:
        """Create (or find, by `conversation_id`) a chat without a message (§3)."""
        if not user.id or not user.name:
            raise BadRequestError("create_chat needs a user id and name")
        body: dict[str, Any] = {"conversation_id": conversation_id}
        if source_external_id:
            body["source"] = {"external_id": source_external_id}
        body["user"] = user.to_json()
        data = await self._call("create_chat", "POST", f"/{_segment(scope_id)}/chats", body)
        chat_id = text_field(data, "id")
        user_data = data.get("user")
        user_json: dict[str, Any] = user_data if isinstance(user_data, dict) else {}
        profile_data = user_json.get("profile")
        profile: dict[str, Any] = profile_data if isinstance(profile_data, dict) else {}
        if not chat_id or not text_field(user_json, "id"):
            raise RetryableError("amojo create_chat answered without chat or user id")
        return CreatedChat(
            chat_id=chat_id,
            user_id=text_field(user_json, "id"),
            phone=text_field(user_json, "phone") or text_field(profile, "phone"),
            email=text_field(user_json, "email") or text_field(profile, "email"),
        )

    async def send_message(self, scope_id: str, message: NewMessage) -> SentMessage:
        """Post a `new_message`; a new `conversation_id` creates the chat, contact and lead (§4)."""
        data = await self._call("send_message", "POST", f"/{_segment(scope_id)}", message.to_json())
        new_message = data.get("new_message")
        result: dict[str, Any] = new_message if isinstance(new_message, dict) else {}
        # §4 inversion: the response's `msgid` is Kommo's id; `ref_id` echoes ours.
        kommo_msgid = text_field(result, "msgid")
        if not kommo_msgid:
            raise RetryableError("amojo new_message answered without msgid")
        return SentMessage(kommo_msgid=kommo_msgid, conversation_id=text_field(result, "conversation_id"))

    async def edit_message(self, scope_id: str, edit: EditMessage) -> None:
        """Post an `edit_message`: the client changed a message already in Kommo (§4)."""
        await self._call("edit_message", "POST", f"/{_segment(scope_id)}", edit.to_json())

    async def react(self, scope_id: str, reaction: Reaction) -> None:
        """Add or take back our client's reaction on a message (§8). §13.3: one RU sample puts the
        message id in the path; the reference table and every client use `/{scope_id}/react`."""
        await self._call("react", "POST", f"/{_segment(scope_id)}/react", reaction.to_json())

    async def delivery_status(
        self, scope_id: str, kommo_msgid: str, status: int, error_code: int = 0, error: str = ""
    ) -> None:
        """Report what happened to a manager's message: 1 delivered, 2 read, -1 failed (§5).

        `error_code` (901-905) and `error` are sent only for -1; 905 needs the text.
        """
        if status not in _STATUSES:
            raise BadRequestError(f"delivery status must be one of {sorted(_STATUSES)}, got {status}")
        body: dict[str, Any] = {"msgid": kommo_msgid, "delivery_status": status}
        if status == FAILED:
            if error_code not in _ERROR_CODES:
                raise BadRequestError(f"a failed delivery needs an error code 901-905, got {error_code}")
            if error_code == 905 and not error:
                raise BadRequestError("error code 905 needs an error text")
            body["error_code"] = error_code
            body["error"] = error
        path = f"/{_segment(scope_id)}/{_segment(kommo_msgid)}/delivery_status"
        await self._call("delivery_status", "POST", path, body)

    async def typing(self, scope_id: str, conversation_id: str, sender_id: str, duration_ms: int = 0) -> None:
        """Show "typing…" in Kommo for our client (§7); `duration_ms` 0 means Kommo's default 5 s."""
        body: dict[str, Any] = {"conversation_id": conversation_id, "sender": {"id": sender_id}}
        if duration_ms > 0:
            body["duration_ms"] = duration_ms
        await self._call("typing", "POST", f"/{_segment(scope_id)}/typing", body)

    async def history(self, scope_id: str, chat_id: str, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Messages of a chat by Kommo chat id, newest first (§6); [] when amojo answers 204."""
        if not 1 <= limit <= 50:
            raise BadRequestError("history limit must be 1..50")
        path = f"/{_segment(scope_id)}/chats/{_segment(chat_id)}/history"
        data = await self._call("history", "GET", path, None, params={"offset": offset, "limit": limit})
        messages = data.get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    async def _call(
        self,
        operation: str,
        method: str,
        endpoint: str,
        body: dict[str, Any] | None,
        params: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Sign and send one request; return the JSON object answered ({} for an empty body)."""
        content = encode_body(body) if body is not None else b""
        path = f"{self._base_path}{API_PREFIX}{endpoint}"
        headers = signed_headers(self._secret, method, path, content, now=self._clock())
        outcome: httpx.Response | httpx.HTTPError
        try:
            outcome = await self._http.request(
                method, self._origin + path, content=content, headers=headers, params=params
            )
        except httpx.HTTPError as exc:
            outcome = exc
        error = _failure(operation, outcome)
        if error is not None:
            raise error
        assert isinstance(outcome, httpx.Response)
        if not outcome.content.strip():
            return {}
        try:
            data = outcome.json()
        except ValueError as exc:
            raise RetryableError(f"amojo {operation}: answered {outcome.status_code} with a non-JSON body") from exc
        return data if isinstance(data, dict) else {}


def _failure(operation: str, outcome: httpx.Response | httpx.HTTPError) -> BridgeError | None:
    """The one mapping of amojo failures to the error tree; None for a 2xx answer."""
    if isinstance(outcome, httpx.HTTPError):
        return transport_failure("amojo", operation, outcome)

    status = outcome.status_code
    if 200 <= status < 300:
        return None
    body, parsed = json_object(outcome)
    error_type = text_field(body, "error_type")
    description = text_field(body, "error_description") or text_field(body, "detail") or text_field(body, "title")
    if not description and parsed is None:
        description = outcome.text.strip()
    detail = " ".join(part for part in (error_type, description[:_MAX_DETAIL]) if part)
    message = f"amojo {operation}: HTTP {status}" + (f" {detail}" if detail else "")

    if status == 429:
        wait = retry_after(outcome, body, body_first=False)
        count_rate_limited("kommo")
        return RateLimitedError(message, retry_after=DEFAULT_RETRY_AFTER_S if wait is None else wait)
    if status >= 500 or status == 408:
        return RetryableError(message, retry_after=retry_after(outcome, body, body_first=False))
    if status in (401, 403):
        # Our channel secret or connection was refused: an operator can fix it, so keep the message.
        return CredentialRejectedError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 400:
        return BadRequestError(message)
    if 400 <= status < 500:
        return PermanentError(message)
    # 1xx/3xx: not something amojo answers; keep the message and try again later.
    return RetryableError(message)
