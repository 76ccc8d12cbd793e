"""The emulated `/v2/origin/custom/…` endpoints (§1-§7).

Every endpoint first authenticates the request exactly as amojo does (`verify_request`), then validates
its body (`validation.py`) and only then touches the state, so a rejected request changes nothing.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BridgeError, NotFoundError
from libs.kommo.emulator.errors import (
    INVALID_REQUEST,
    INVALID_SIGNATURE,
    NOT_FOUND,
    NOT_REGISTERED,
    KommoError,
    kommo_error_response,
)
from libs.kommo.emulator.records import Channel, Connection, DeliveryStatus, Message, Reaction, Typing
from libs.kommo.emulator.state import AmojoState
from libs.kommo.emulator.validation import (
    bool_field,
    edit_message_payload,
    int_field,
    json_object,
    new_message_payload,
    participant,
    react_payload,
    required_int,
    required_obj,
    source_external_id,
    str_field,
)
from libs.kommo.signing import CONTENT_TYPE, content_md5, parse_date, request_signature

PREFIX: Final = "/v2/origin/custom"
SIGNATURE_TTL: Final = timedelta(minutes=15)
HISTORY_MAX_LIMIT: Final = 50
_DELIVERY_STATUSES: Final = frozenset({-1, 1, 2})
_DELIVERY_ERROR_CODES: Final = frozenset({901, 902, 903, 904, 905})

Handler = Callable[[Request, bytes, Channel], Awaitable[Response]]


def verify_request(state: AmojoState, request: Request, body: bytes) -> Channel:
    """Authenticate like amojo (§1): a known channel, then every part of the signature scheme.

    The channel is the first path segment, or the part of a scope_id before its first `_`. The signed
    path is the raw request path without the query string.
    """
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1").split("?", 1)[0]
    first_segment = unquote(path[len(PREFIX) + 1 :].split("/", 1)[0])
    channel = state.channel(first_segment.split("_", 1)[0])
    if channel is None:
        raise KommoError(404, NOT_REGISTERED, "NOT_FOUND")

    def reject(why: str) -> KommoError:
        return KommoError(403, INVALID_SIGNATURE, f"invalid signature: {why}")

    content_type = request.headers.get("content-type", "")
    if content_type != CONTENT_TYPE:
        raise reject(f"Content-Type must be {CONTENT_TYPE}")
    md5 = request.headers.get("content-md5", "")
    if md5 != content_md5(body):
        raise reject("Content-MD5 is not the MD5 of the body")
    date = request.headers.get("date", "")
    try:
        signed_at = parse_date(date)
    except BridgeError as exc:
        raise reject("Date is missing or not an RFC 2822 date") from exc
    if abs(state.now() - signed_at) > SIGNATURE_TTL:
        raise reject("Date is more than 15 minutes away from now")
    expected = request_signature(channel.secret, request.method, md5, content_type, date, path)
    given = request.headers.get("x-signature", "")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise reject("X-Signature does not match")
    return channel


class AmojoApi:
    """The amojo endpoints over one `AmojoState`."""

    def __init__(self, state: AmojoState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        p, e = PREFIX, self._endpoint
        return [
            Route(f"{p}/{{channel_id}}/connect", e(self.connect), methods=["POST"]),
            Route(f"{p}/{{channel_id}}/disconnect", e(self.disconnect), methods=["DELETE"]),
            Route(f"{p}/{{scope_id}}/chats", e(self.create_chat), methods=["POST"]),
            Route(f"{p}/{{scope_id}}/typing", e(self.typing), methods=["POST"]),
            Route(f"{p}/{{scope_id}}/react", e(self.react), methods=["POST"]),
            Route(f"{p}/{{scope_id}}/{{msgid}}/react", e(self.react), methods=["POST"]),
            Route(f"{p}/{{scope_id}}/chats/{{chat_id}}/history", e(self.history), methods=["GET"]),
            Route(f"{p}/{{scope_id}}/{{msgid}}/delivery_status", e(self.delivery_status), methods=["POST"]),
            Route(f"{p}/{{scope_id}}", e(self.message_event), methods=["POST"]),
            Route(f"{p}/{{rest:path}}", self.unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                channel = verify_request(self.state, request, body)
                return await handler(request, body, channel)
            except KommoError as error:
                return error.response()
            except NotFoundError as error:
                return kommo_error_response(404, NOT_FOUND, str(error))
            except BridgeError as error:
                return kommo_error_response(400, INVALID_REQUEST, str(error))

        return endpoint

    async def unknown(self, request: Request) -> Response:
        return kommo_error_response(404, NOT_FOUND, "NOT_FOUND")

    def _scope(self, request: Request, channel: Channel) -> Connection:
        scope_id = request.path_params["scope_id"]
        connection = self.state.connection(scope_id)
        if connection is None or connection.channel_id != channel.channel_id:
            raise KommoError(404, NOT_REGISTERED, f"scope {scope_id} is not connected")
        return connection

    async def connect(self, request: Request, body: bytes, channel: Channel) -> Response:
        """§2. We require hook_api_version v2: amojo would default to the deprecated v1."""
        data = json_object(body)
        account_id = str_field(data, "account_id", "", required=True)
        if str_field(data, "hook_api_version", "", required=True) != "v2":
            raise KommoError(400, INVALID_REQUEST, "hook_api_version must be v2 (v1 is deprecated)")
        if "_" in account_id or "/" in account_id:
            raise KommoError(400, INVALID_REQUEST, "account_id is not an amojo account id")
        title = str_field(data, "title", "") or channel.code or channel.channel_id
        disabled = bool_field(data, "is_time_window_disabled", "")
        connection = self.state.connect(channel.channel_id, account_id, title, disabled)
        return JSONResponse(
            {
                "account_id": account_id,
                "scope_id": connection.scope_id,
                "title": title,
                "hook_api_version": "v2",
                "is_time_window_disabled": disabled,
            }
        )

    async def disconnect(self, request: Request, body: bytes, channel: Channel) -> Response:
        account_id = str_field(json_object(body), "account_id", "", required=True)
        if not self.state.disconnect(channel.channel_id, account_id):
            raise KommoError(404, NOT_FOUND, f"account {account_id} is not connected to this channel")
        return Response(status_code=200)

    async def create_chat(self, request: Request, body: bytes, channel: Channel) -> Response:
        connection = self._scope(request, channel)
        data = json_object(body)
        conversation_id = str_field(data, "conversation_id", "", required=True)
        source = source_external_id(data, "")
        user = participant(data, "user", "")
        chat = self.state.create_chat(connection.scope_id, conversation_id, user, source)
        # §3: the user comes back with phone/email flat (present only when given) and avatar always.
        return JSONResponse({"id": chat.kommo_chat_id, "user": {"avatar": "", **chat.client.to_json()}})

    async def message_event(self, request: Request, body: bytes, channel: Channel) -> Response:
        connection = self._scope(request, channel)
        data = json_object(body)
        event_type = str_field(data, "event_type", "", required=True)
        payload = required_obj(data, "payload", "")
        if event_type == "new_message":
            checked = new_message_payload(payload)
            response = self.state.accept_new_message(
                connection.scope_id,
                checked.payload,
                checked.message,
                checked.sender,
                checked.receiver,
                checked.source_external_id,
            )
            kommo_msgid = response["new_message"]["msgid"]
            if checked.message.get("media") and not self.state.media.downloads(kommo_msgid=kommo_msgid):
                # Accepted now, processed later: Kommo fetches the file after answering (§4).
                self.state.media.start(kommo_msgid, checked.payload["msgid"], event_type, checked.message["media"])
            return JSONResponse(response)
        if event_type == "edit_message":
            edited_message = edit_message_payload(payload)
            edited = self.state.apply_edit(connection.scope_id, payload, edited_message)
            if edited_message.get("media"):
                self.state.media.start(edited.kommo_msgid, edited.msgid, event_type, edited_message["media"])
            # ASSUMPTION: the edit answer mirrors new_message's under "edit_message"; it is undocumented.
            return JSONResponse({"edit_message": {"msgid": edited.kommo_msgid, "ref_id": edited.msgid}})
        raise KommoError(400, INVALID_REQUEST, "event_type must be new_message or edit_message")

    async def delivery_status(self, request: Request, body: bytes, channel: Channel) -> Response:
        """§5. The path carries Kommo's message id. §13.1: both `delivery_status` (examples, the signed
        vector) and `status_code` (the RU table) name the status, so both are accepted."""
        connection = self._scope(request, channel)
        kommo_msgid = request.path_params["msgid"]
        data = json_object(body)
        key = "delivery_status" if "delivery_status" in data else "status_code"
        status = required_int(data, key, "")
        other = int_field(data, "status_code", "") if key == "delivery_status" else None
        if other is not None and other != status:
            raise KommoError(400, INVALID_REQUEST, "delivery_status and status_code disagree")
        if status not in _DELIVERY_STATUSES:
            raise KommoError(400, INVALID_REQUEST, "delivery status must be 1 (delivered), 2 (read) or -1 (error)")
        body_msgid = str_field(data, "msgid", "")
        if body_msgid and body_msgid != kommo_msgid:
            raise KommoError(400, INVALID_REQUEST, "msgid in the body differs from the one in the path")
        error_code = int_field(data, "error_code", "") or 0
        error = str_field(data, "error", "")
        if status == -1 and error_code not in _DELIVERY_ERROR_CODES:
            raise KommoError(400, INVALID_REQUEST, "error_code 901-905 is required when the status is -1")
        if status == -1 and error_code == 905 and not error:
            raise KommoError(400, INVALID_REQUEST, "error text is required with error_code 905")
        message = self.state.message(kommo_msgid)
        if message is None or message.scope_id != connection.scope_id:
            raise KommoError(404, NOT_FOUND, "message not found")
        self.state.add_status(DeliveryStatus(kommo_msgid, status, error_code, error, key, data, time.time()))
        return Response(status_code=200)

    async def typing(self, request: Request, body: bytes, channel: Channel) -> Response:
        """§7: answered 204; the event is recorded for tests."""
        connection = self._scope(request, channel)
        data = json_object(body)
        conversation_id = str_field(data, "conversation_id", "", required=True)
        sender_id = str_field(required_obj(data, "sender", ""), "id", "sender", required=True)
        duration = int_field(data, "duration_ms", "")
        if duration is not None and duration <= 0:
            raise KommoError(400, INVALID_REQUEST, "duration_ms must be positive")
        self.state.add_typing(Typing(connection.scope_id, conversation_id, sender_id, duration or 5000, time.time()))
        return Response(status_code=204)

    async def react(self, request: Request, body: bytes, channel: Channel) -> Response:
        """§8: a reaction on a message of the conversation; 404 when there is no such message. §13.3:
        `/{scope_id}/react` (the table, every client) and `/{scope_id}/{msgid}/react` (one RU sample)
        are both taken; a msgid in the path must name the same message as the body."""
        connection = self._scope(request, channel)
        data = json_object(body)
        checked = react_payload(data)
        target = self.state.find_message(connection.scope_id, checked.kommo_msgid, checked.msgid)
        path_msgid = request.path_params.get("msgid", "")
        if path_msgid and target is not None and path_msgid not in (target.kommo_msgid, target.msgid):
            raise KommoError(400, INVALID_REQUEST, "the msgid in the path differs from the message in the body")
        in_conversation = target is not None and (
            target.conversation_id == checked.conversation_id or target.kommo_chat_id == checked.conversation_ref_id
        )
        if target is None or not in_conversation:
            raise KommoError(404, NOT_FOUND, "message not found")
        self.state.add_reaction(
            Reaction(
                scope_id=connection.scope_id,
                conversation_id=target.conversation_id,
                kommo_msgid=target.kommo_msgid,
                msgid=target.msgid,
                user_id=checked.user_id or checked.user_ref_id,
                emoji=checked.emoji,
                removed=checked.removed,
                path_form="/{msgid}/react" if path_msgid else "/react",
                body=data,
                at=time.time(),
            )
        )
        return Response(status_code=200)

    async def history(self, request: Request, body: bytes, channel: Channel) -> Response:
        """§6: by Kommo chat id, newest first, `limit` ≤ 50; 204 when there is nothing."""
        connection = self._scope(request, channel)
        offset = _query_int(request, "offset", 0)
        limit = _query_int(request, "limit", HISTORY_MAX_LIMIT)
        if offset < 0 or not 1 <= limit <= HISTORY_MAX_LIMIT:
            raise KommoError(400, INVALID_REQUEST, f"offset must be >= 0 and limit 1..{HISTORY_MAX_LIMIT}")
        chat_id = request.path_params["chat_id"]
        messages = [m for m in self.state.messages(scope_id=connection.scope_id) if m.kommo_chat_id == chat_id]
        newest_first = [m for _, m in sorted(enumerate(messages), key=lambda im: (im[1].timestamp_ms, im[0]))][::-1]
        page = newest_first[offset : offset + limit]
        if not page:
            return Response(status_code=204)
        return JSONResponse({"messages": [_history_item(m) for m in page]})


def _history_item(message: Message) -> dict[str, Any]:
    body = message.message
    item_message: dict[str, Any] = {
        "id": message.kommo_msgid,
        "type": body.get("type", ""),
        "text": body.get("text", ""),
        "media": body.get("media", ""),
        "thumbnail": "",
        "file_name": body.get("file_name", ""),
        "file_size": body.get("file_size", 0),
    }
    if message.msgid:
        item_message["client_id"] = message.msgid
    for key in ("location", "contact", "media_group_id"):
        if key in body:
            item_message[key] = body[key]
    item: dict[str, Any] = {
        "timestamp": message.timestamp_ms // 1000,
        "msec_timestamp": message.timestamp_ms,
        "sender": message.sender.to_json(),
        "message": item_message,
    }
    if message.receiver is not None:
        item["receiver"] = message.receiver.to_json()
    return item


def _query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise KommoError(400, INVALID_REQUEST, f"{name} must be an integer") from exc
