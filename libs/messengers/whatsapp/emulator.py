"""A faithful WhatsApp Business Cloud API emulator (see reference/messenger-apis.md §2 and §5): Graph's
endpoints under any version prefix (`/v23.0/...`), its error envelope and codes, the 24-hour window
(failed-after-200 by default, or the immediate error), 80 messages/s per number and the pair rate limit,
media upload and the two-step authenticated download, templates and their review, and signed webhooks
to the number's override URL (checked with the GET handshake before Meta accepts it). `/_emulator/...`
routes play the users' side, show what businesses sent, and inject faults.

    app, state = create_whatsapp_emulator()        # or host `app` in a multi-emulator process
    python -m libs.messengers.whatsapp.emulator --port 8082 [--business "Shop=15551234567"]
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from libs.emulation import Fault
from libs.emulation.app import emulator_app, emulator_arguments, serve
from libs.emulation.middleware import CONTROL_PREFIX
from libs.messengers.whatsapp import emulator_messages as messages
from libs.messengers.whatsapp.emulator_errors import GraphApiError, invalid_parameter, unknown_object
from libs.messengers.whatsapp.emulator_interactive import tap_message
from libs.messengers.whatsapp.emulator_media import LOOKASIDE_PATH, MediaRefused
from libs.messengers.whatsapp.emulator_state import (
    Client,
    InjectedError,
    PhoneNumber,
    StoredMessage,
    WhatsAppState,
)
from libs.messengers.whatsapp.throughput import SendLimits

__all__ = ["WhatsAppEmulator", "WhatsAppState", "create_whatsapp_emulator", "main"]

_VERSION_RE = re.compile(r"^v\d+\.\d+$")
_PHONE_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)


def _graph_error(error: GraphApiError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def fault_response(fault: Fault) -> Response:
    """Graph's envelope for an injected fault: 429 as the throughput limit, 5xx as Meta's own trouble."""
    if fault.status == 429:
        details = fault.description or "Cloud API message throughput has been reached."
        return _graph_error(
            GraphApiError(429, 130429, "Rate limit hit", details=details, retry_after=fault.retry_after)
        )
    if fault.status >= 500:
        title = fault.description or "Service temporarily unavailable"
        return _graph_error(GraphApiError(fault.status, 2, title, kind="OAuthException", bare_message=True))
    return _graph_error(GraphApiError(fault.status, 100, fault.description or "Invalid parameter"))


# ---------------------------------------------------------------------------------------------------------
# Graph


async def _body(request: Request) -> dict[str, Any]:
    """A call's parameters: a JSON object, or form / query fields (objects within them as JSON text)."""
    raw = await request.body()
    values: dict[str, Any] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and content_type == "application/json":
        try:
            data: object = json.loads(raw)
        except ValueError:
            raise invalid_parameter("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise invalid_parameter("the request body must be a JSON object")
        return data
    if raw:
        values.update(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    for key, value in request.query_params.items():
        values.setdefault(key, value)
    for key, value in list(values.items()):
        if isinstance(value, str) and value[:1] in "{[":
            with contextlib.suppress(ValueError):
                values[key] = json.loads(value)
    values.pop("access_token", None)
    return values


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.query_params.get("access_token") or None


def _fields(request: Request, default: tuple[str, ...]) -> tuple[str, ...]:
    asked = request.query_params.get("fields", "")
    return tuple(f.strip() for f in asked.split(",") if f.strip()) or default


def _phone_json(state: WhatsAppState, number: PhoneNumber, fields: tuple[str, ...]) -> dict[str, Any]:
    business = state.businesses[number.waba_id]
    configuration: dict[str, str] = {}
    if state.app.callback_url:
        configuration["application"] = state.app.callback_url
    if business.override_url:
        configuration["whatsapp_business_account"] = business.override_url
    if number.override_url:
        configuration["phone_number"] = number.override_url
    full: dict[str, Any] = {
        "verified_name": number.verified_name,
        "code_verification_status": "VERIFIED",
        "display_phone_number": number.display_phone_number,
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "webhook_configuration": configuration,
        "id": number.id,
    }
    return {key: full[key] for key in (*fields, "id") if key in full}


def _unsupported(method: str, node: str) -> GraphApiError:
    error = unknown_object(node)
    error.title = error.title.replace("Unsupported get request", f"Unsupported {method.lower()} request")
    return error


class _Graph:
    """Graph's nodes and edges that WhatsApp uses."""

    def __init__(self, state: WhatsAppState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        parts = [p for p in request.path_params["path"].split("/") if p]
        if parts and _VERSION_RE.match(parts[0]):
            parts = parts[1:]
        if not parts or len(parts) > 2:
            return _graph_error(GraphApiError(400, 2500, "Unknown path components", bare_message=True))
        node, edge = parts[0], parts[1] if len(parts) == 2 else ""
        try:
            if node == self.state.app.id:
                return await self._app(request, edge)
            grant = self.state.authorize(_token(request))
            if node in self.state.numbers:
                return await self._number(request, grant, self.state.number_for(grant, node), edge)
            if node in self.state.businesses:
                return await self._business(request, grant, node, edge)
            if self.state.media.get(node) is not None and not edge:
                return self._media(request, grant, node)
            template = self.state.templates.items.get(node)
            if template is not None and not edge and request.method == "GET" and template.waba_id in grant:
                fields = set(_fields(request, ())) or None
                return JSONResponse(template.to_json(fields))
            raise _unsupported(request.method, node)
        except GraphApiError as exc:
            return _graph_error(exc)

    async def _app(self, request: Request, edge: str) -> Response:
        """`POST /{app-id}/subscriptions` with the app token (`<app id>|<app secret>`): the app's callback."""
        app = self.state.app
        if edge != "subscriptions" or request.method != "POST":
            raise _unsupported(request.method, app.id)
        if _token(request) != f"{app.id}|{app.secret}":
            raise GraphApiError(400, 190, "Invalid OAuth access token signature.", bare_message=True)
        params = await _body(request)
        if params.get("object") != "whatsapp_business_account":
            raise invalid_parameter("object must be whatsapp_business_account")
        url, verify_token = str(params.get("callback_url") or ""), str(params.get("verify_token") or "")
        await self.state.verify_callback(url, verify_token)
        app.callback_url, app.verify_token = url, verify_token
        return JSONResponse({"success": True})

    async def _number(self, request: Request, grant: set[str], number: PhoneNumber, edge: str) -> Response:
        state = self.state
        if not edge and request.method == "GET":
            return JSONResponse(_phone_json(state, number, _fields(request, _PHONE_FIELDS)))
        if not edge and request.method == "POST":
            configuration = (await _body(request)).get("webhook_configuration")
            if not isinstance(configuration, dict) or "override_callback_uri" not in configuration:
                raise invalid_parameter("webhook_configuration['override_callback_uri'] is required")
            url = str(configuration.get("override_callback_uri") or "")
            if url:
                await state.verify_callback(url, str(configuration.get("verify_token") or ""))
            number.override_url = url
            return JSONResponse({"success": True})
        if edge == "messages" and request.method == "POST":
            body = await _body(request)
            if body.get("messaging_product") != "whatsapp":
                raise invalid_parameter("The parameter messaging_product is required.")
            if "status" in body:
                return JSONResponse(messages.mark_read(state, number, body))
            return JSONResponse(await messages.send(state, number, body))
        if edge == "media" and request.method == "POST":
            try:
                media = await state.media.receive_upload(request, number.id)
            except MediaRefused as exc:
                if exc.code == 100:
                    raise invalid_parameter(exc.details) from None
                raise GraphApiError(400, 131053, "Media upload error", details=exc.details) from None
            return JSONResponse({"id": media.id})
        raise _unsupported(request.method, number.id)

    async def _business(self, request: Request, grant: set[str], waba_id: str, edge: str) -> Response:
        state = self.state
        business = state.business_for(grant, waba_id)
        method = request.method
        if not edge and method == "GET":
            return JSONResponse({"id": business.id, "name": business.name, "currency": "USD", "timezone_id": "1"})
        if edge == "phone_numbers" and method == "GET":
            data = [_phone_json(state, state.numbers[n], _PHONE_FIELDS) for n in business.phone_number_ids]
            return JSONResponse({"data": data, "paging": {"cursors": {"before": "QVFIU", "after": "QVFIU"}}})
        if edge == "subscribed_apps":
            if method == "GET":
                app = {"whatsapp_business_api_data": {"id": state.app.id, "name": "Kommo Bridge", "link": ""}}
                if business.override_url:
                    app["override_callback_uri"] = business.override_url  # type: ignore[assignment]
                return JSONResponse({"data": [app] if business.subscribed else []})
            if method == "DELETE":
                business.subscribed = False
                business.override_url = ""
                return JSONResponse({"success": True})
            if method == "POST":
                params = await _body(request)
                url = str(params.get("override_callback_uri") or "")
                if url:
                    await state.verify_callback(url, str(params.get("verify_token") or ""))
                business.subscribed = True
                business.override_url = url
                return JSONResponse({"success": True})
        if edge == "message_templates":
            if method == "GET":

                def next_url(after: str) -> str:
                    query = {**request.query_params, "after": after}
                    return str(request.url.replace(query=urllib.parse.urlencode(query)))

                return JSONResponse(state.templates.page(business.id, request.query_params, next_url))
            if method == "POST":
                template = state.templates.create(business.id, await _body(request))
                return JSONResponse({"id": template.id, "status": template.status, "category": template.category})
            if method == "DELETE":
                name = request.query_params.get("name", "")
                state.templates.delete(business.id, name)
                return JSONResponse({"success": True})
        raise _unsupported(method, business.id)

    def _media(self, request: Request, grant: set[str], media_id: str) -> Response:
        media = self.state.media.get(media_id)
        if media is None or self.state.numbers[media.owner].waba_id not in grant:
            raise unknown_object(media_id)
        if request.method == "DELETE":
            self.state.media.items.pop(media_id, None)
            media.path.unlink(missing_ok=True)
            return JSONResponse({"success": True})
        if request.method != "GET":
            raise _unsupported(request.method, media_id)
        return JSONResponse(
            {
                "url": self.state.media.lookaside_url(str(request.base_url), media),
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": media.size,
                "id": media.id,
                "messaging_product": "whatsapp",
            }
        )


def _lookaside(state: WhatsAppState) -> Callable[[Request], Awaitable[Response]]:
    """Step 2 of a download: the signed URL, with the Bearer token of a business that holds the file."""

    async def serve(request: Request) -> Response:
        token = _token(request)
        grant = state.tokens.get(token or "")
        if grant is None:
            return PlainTextResponse("Unauthorized", status_code=401)
        query = request.query_params
        media = state.media.resolve(query.get("mid", ""), query.get("ext", ""), query.get("hash", ""))
        if media is None or state.numbers[media.owner].waba_id not in grant:
            return PlainTextResponse("Not Found", status_code=404)
        return FileResponse(media.path, media_type=media.mime_type)

    return serve


# ---------------------------------------------------------------------------------------------------------
# Control routes: the users' side, what businesses sent, and faults


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _json(request: Request) -> dict[str, Any]:
    try:
        data: object = await request.json()
    except ValueError:
        raise _ControlError(400, "the body must be JSON") from None
    if not isinstance(data, dict):
        raise _ControlError(400, "the body must be a JSON object")
    return data


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _ControlError(400, f"{key} must be a non-empty string")
    return value


ControlHandler = Callable[[Request], Awaitable[Response]]


def _control(handler: ControlHandler) -> ControlHandler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, status_code=404)
        except (ValueError, GraphApiError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return wrapped


def _client_json(client: Client) -> dict[str, Any]:
    return {
        "user_id": client.user_id,
        "wa_id": client.wa_id,
        "name": client.name,
        "username": client.username,
        "number_hidden": client.number_hidden,
        "key": client.key,
        "reachable": client.reachable,
        "online": client.online,
        "blocked": sorted(client.blocked),
    }


def _results(stored: list[StoredMessage], delivery: Any) -> JSONResponse:
    return JSONResponse({"messages": [m.to_json() for m in stored], "delivery": delivery.to_json()})


def _emulator_routes(state: WhatsAppState) -> list[Route]:
    def user_of(data: dict[str, Any]) -> Client:
        user = data.get("user")
        if isinstance(user, str):
            return state.client(user)
        if isinstance(user, dict):
            key = user.get("wa_id") or user.get("user_id")
            if isinstance(key, str) and key in state.clients:
                return state.clients[key]
            return state.add_client(
                _str(user, "name"),
                wa_id=_str(user, "wa_id", required=False),
                username=_str(user, "username", required=False),
                user_id=_str(user, "user_id", required=False),
                hide_phone=user.get("hide_phone") is True,
            )
        raise _ControlError(400, "user must be a user key (wa_id or user_id) or {name, wa_id?, username?, hide_phone?}")

    def number_of(data: dict[str, Any]) -> PhoneNumber:
        phone_number_id = _str(data, "phone_number_id")
        if phone_number_id not in state.numbers:
            raise KeyError(f"no phone number {phone_number_id}")
        return state.numbers[phone_number_id]

    def content_of(number: PhoneNumber, message: object) -> dict[str, Any]:
        """A user's message content; a `file` {data_base64, mime_type, filename?} becomes the media's id, and
        `reply_to` the context of a reply."""
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _ControlError(400, "a message is an object with a type, as WhatsApp notifies it")
        content = {k: v for k, v in message.items() if k not in ("file", "reply_to")}
        file = message.get("file")
        if file is not None:
            kind = content["type"]
            if not isinstance(file, dict) or not isinstance(file.get("data_base64"), str):
                raise _ControlError(400, "file must be {data_base64, mime_type, filename?}")
            try:
                data = base64.b64decode(file["data_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise _ControlError(400, "file.data_base64 is not base64") from None
            mime_type = _str(file, "mime_type")
            stored = state.media.put(data, mime_type, number.id, file_name=_str(file, "filename", required=False))
            media = dict(content.get(kind) or {})
            media.update(
                {
                    "id": stored.id,
                    "mime_type": mime_type,
                    "sha256": base64.b64encode(bytes.fromhex(stored.sha256)).decode(),
                }
            )
            if stored.file_name and kind == "document":
                media["filename"] = stored.file_name
            content[kind] = media
        reply_to = message.get("reply_to")
        if reply_to is not None:
            original = state.messages.get(reply_to) if isinstance(reply_to, str) else None
            if original is None:
                raise _ControlError(400, f"reply_to {reply_to!r} is not a message")
            sender = number.display_phone_number if original.direction == "out" else original.body.get("from", "")
            content["context"] = {"from": sender, "id": original.wamid}
        return content

    async def app(request: Request) -> Response:
        if request.method == "PUT":
            data = await _json(request)
            if "callback_url" in data:
                url = _str(data, "callback_url", required=False)
                if url and data.get("verify") is True:
                    await state.verify_callback(url, _str(data, "verify_token", required=False))
                state.app.callback_url = url
            if "verify_token" in data:
                state.app.verify_token = _str(data, "verify_token", required=False)
            if "secret" in data:
                state.app.secret = _str(data, "secret")
        app_ = state.app
        return JSONResponse(
            {"id": app_.id, "secret": app_.secret, "callback_url": app_.callback_url, "verify_token": app_.verify_token}
        )

    async def businesses(request: Request) -> Response:
        data = await _json(request)
        numbers = data.get("numbers")
        if not isinstance(numbers, list) or not numbers:
            raise _ControlError(400, "numbers must be a non-empty array of {display_phone_number, verified_name}")
        pairs = [(_str(n, "display_phone_number"), _str(n, "verified_name")) for n in numbers if isinstance(n, dict)]
        business, created, token = state.create_business(
            _str(data, "name"), pairs, waba_id=_str(data, "waba_id", required=False) or None
        )
        if data.get("subscribed") is True:
            business.subscribed = True
        return JSONResponse(
            {
                "waba_id": business.id,
                "access_token": token,
                "phone_numbers": [
                    {
                        "id": n.id,
                        "display_phone_number": n.display_phone_number,
                        "verified_name": n.verified_name,
                        "credential": f"{n.id}:{business.id}:{token}",
                    }
                    for n in created
                ],
            },
            status_code=201,
        )

    async def tokens(request: Request) -> Response:
        data = await _json(request)
        if request.path_params.get("action") == "revoke":
            state.revoke_token(_str(data, "access_token"))
            return JSONResponse({"revoked": True})
        waba_ids = data.get("waba_ids")
        if not isinstance(waba_ids, list) or not all(w in state.businesses for w in waba_ids):
            raise _ControlError(400, "waba_ids must list known business accounts")
        return JSONResponse({"access_token": state.issue_token(waba_ids)}, status_code=201)

    async def users(request: Request) -> Response:
        if request.method == "GET":
            unique = {id(c): c for c in state.clients.values()}
            return JSONResponse({"users": [_client_json(c) for c in unique.values()]})
        data = await _json(request)
        client = state.add_client(
            _str(data, "name"),
            wa_id=_str(data, "wa_id", required=False),
            username=_str(data, "username", required=False),
            user_id=_str(data, "user_id", required=False),
            hide_phone=data.get("hide_phone") is True,
        )
        return JSONResponse(_client_json(client), status_code=201)

    async def user(request: Request) -> Response:
        client = state.client(request.path_params["key"])
        data = await _json(request)
        if "reachable" in data:
            client.reachable = data["reachable"] is True
        if "blocked" in data:
            blocked = data["blocked"]
            if not isinstance(blocked, list) or not all(isinstance(b, str) for b in blocked):
                raise _ControlError(400, "blocked must list phone number ids")
            client.blocked = set(blocked)
        if data.get("hide_number") is True:
            state.hide_number(client, _str(data, "username"))
        if data.get("online") is True and not client.online:
            await state.client_comes_online(client)
        elif data.get("online") is False:
            client.online = False
        return JSONResponse(_client_json(client))

    async def user_messages(request: Request) -> Response:
        data = await _json(request)
        number = number_of(data)
        listed = data.get("messages")
        batch = listed if isinstance(listed, list) else [data.get("message")]
        contents = [content_of(number, m) for m in batch]
        stored, delivery = await state.client_sends(number.id, user_of(data), contents)
        return _results(stored, delivery)

    async def user_number(request: Request) -> Response:
        """The user changes their number (`{phone_number_id, user, new_wa_id}`): the business is told."""
        data = await _json(request)
        number = number_of(data)
        client = user_of(data)
        delivery = await state.change_number(number.id, client, _str(data, "new_wa_id"))
        return JSONResponse({"user": _client_json(client), "delivery": delivery.to_json()})

    async def user_react(request: Request) -> Response:
        data = await _json(request)
        number = number_of(data)
        reaction = {"message_id": _str(data, "message_id"), "emoji": _str(data, "emoji", required=False)}
        stored, delivery = await state.client_sends(
            number.id, user_of(data), [{"type": "reaction", "reaction": reaction}]
        )
        return _results(stored, delivery)

    async def user_tap(request: Request) -> Response:
        """The user chooses a reply button or list row (`choice`: its id) of an interactive message they got
        (`message_id`): the reply is notified, quoting that message."""
        data = await _json(request)
        number = number_of(data)
        client = user_of(data)
        reply = tap_message(state, number, client, _str(data, "message_id"), _str(data, "choice"))
        stored, delivery = await state.client_sends(number.id, client, [reply])
        return _results(stored, delivery)

    async def user_edit(request: Request) -> Response:
        data = await _json(request)
        number = number_of(data)
        original = state.messages.get(_str(data, "message_id"))
        if original is None or original.direction != "in":
            raise _ControlError(400, "message_id must be a message the user sent")
        edit = {"original_message_id": original.wamid, "message": content_of(number, data.get("message"))}
        stored, delivery = await state.client_sends(number.id, user_of(data), [{"type": "edit", "edit": edit}])
        return _results(stored, delivery)

    async def user_revoke(request: Request) -> Response:
        data = await _json(request)
        number = number_of(data)
        original = state.messages.get(_str(data, "message_id"))
        if original is None or original.direction != "in":
            raise _ControlError(400, "message_id must be a message the user sent")
        revoke = {"original_message_id": original.wamid}
        stored, delivery = await state.client_sends(number.id, user_of(data), [{"type": "revoke", "revoke": revoke}])
        return _results(stored, delivery)

    async def user_read(request: Request) -> Response:
        data = await _json(request)
        read = await state.client_reads(number_of(data).id, user_of(data), _str(data, "up_to", required=False))
        return JSONResponse({"read": [m.wamid for m in read]})

    async def user_play(request: Request) -> Response:
        data = await _json(request)
        message = await state.client_plays(_str(data, "message_id"))
        return JSONResponse(message.to_json())

    async def sent(request: Request) -> Response:
        if request.method == "DELETE":
            state.sent.clear()
            return JSONResponse({"cleared": True})
        number, to = request.query_params.get("phone_number_id"), request.query_params.get("to")
        found = [
            m for m in state.sent if (not number or m.phone_number_id == number) and (not to or m.client_key == to)
        ]
        return JSONResponse({"messages": [m.to_json() for m in found]})

    async def reads(request: Request) -> Response:
        return JSONResponse({"reads": [r.to_json() for r in state.reads]})

    async def typing(request: Request) -> Response:
        number, key = request.query_params.get("phone_number_id", ""), request.query_params.get("user", "")
        client = state.client(key)
        return JSONResponse({"shown": messages.typing_shown(state, number, client.key)})

    async def window(request: Request) -> Response:
        data = await _json(request)
        number, client = number_of(data), user_of(data)
        if data.get("open") is False:
            state.set_last_inbound(number.id, client.key, None)
        elif "age_s" in data:
            age = data["age_s"]
            if isinstance(age, bool) or not isinstance(age, int | float):
                raise _ControlError(400, "age_s must be a number of seconds")
            state.set_last_inbound(number.id, client.key, state.clock() - float(age))
        return JSONResponse({"open": state.window_open(number.id, client.key)})

    async def window_mode(request: Request) -> Response:
        if request.method == "PUT":
            mode = (await _json(request)).get("mode")
            if mode not in ("failed_after_200", "immediate"):
                raise _ControlError(400, "mode must be failed_after_200 or immediate")
            state.window_mode = mode
        return JSONResponse({"mode": state.window_mode})

    async def limits(request: Request) -> Response:
        if request.method == "PUT":
            state.limits.configure(state.limits.limits.updated(await _json(request)))
        return JSONResponse({**state.limits.limits.to_json(), "refused": state.limits.refusals()})

    async def errors(request: Request) -> Response:
        if request.method == "DELETE":
            state.injected.clear()
            return JSONResponse({"cleared": True})
        data = await _json(request)
        code, times, status = data.get("code"), data.get("times", 1), data.get("status", 400)
        mode = data.get("mode", "immediate")
        if isinstance(code, bool) or not isinstance(code, int) or isinstance(times, bool) or not isinstance(times, int):
            raise _ControlError(400, "code and times must be integers")
        if mode not in ("immediate", "failed_status"):
            raise _ControlError(400, "mode must be immediate or failed_status")
        error = GraphApiError(
            status if isinstance(status, int) else 400,
            code,
            _str(data, "title", required=False) or "Injected error",
            details=_str(data, "details", required=False),
        )
        for _ in range(times):
            state.injected.append(InjectedError(error, mode, _str(data, "to", required=False)))
        return JSONResponse({"pending": len(state.injected)}, status_code=201)

    async def media(request: Request) -> Response:
        return JSONResponse({"media": [m.to_json() for m in state.media.items.values()]})

    async def webhooks(request: Request) -> Response:
        if request.method == "DELETE":
            state.deliveries.clear()
            return JSONResponse({"cleared": True})
        return JSONResponse({"deliveries": [d.to_json() for d in state.deliveries]})

    async def templates(request: Request) -> Response:
        if request.method == "GET":
            waba_id = request.query_params.get("waba_id", "")
            found = state.templates.of(waba_id) if waba_id else list(state.templates.items.values())
            return JSONResponse(
                {"templates": [{**t.to_json(), "waba_id": t.waba_id, "history": t.history} for t in found]}
            )
        data = await _json(request)
        waba_id = _str(data, "waba_id")
        if waba_id not in state.businesses:
            raise KeyError(f"no business account {waba_id}")
        template = state.templates.create(waba_id, {k: v for k, v in data.items() if k != "waba_id"})
        return JSONResponse(template.to_json(), status_code=201)

    async def review(request: Request) -> Response:
        template = state.templates.items.get(request.path_params["template_id"])
        if template is None:
            raise KeyError(f"no template {request.path_params['template_id']}")
        data = await _json(request)
        info = data.get("rejection_info")
        if info is not None and not isinstance(info, dict):
            raise _ControlError(400, "rejection_info must be {reason, recommendation}")
        value = state.templates.review(
            template, _str(data, "event"), _str(data, "reason", required=False) or "NONE", info
        )
        delivery = await state.notify_template(template.waba_id, value)
        return JSONResponse({"template": template.to_json(), "delivery": delivery.to_json()})

    async def verify(request: Request) -> Response:
        data = await _json(request)
        try:
            await state.verify_callback(_str(data, "url"), _str(data, "verify_token", required=False))
        except GraphApiError as exc:
            return JSONResponse({"ok": False, "error": exc.body()["error"]["message"]})
        return JSONResponse({"ok": True})

    async def settled(request: Request) -> Response:
        await state.settled()
        return JSONResponse({"settled": True})

    p = CONTROL_PREFIX
    return [
        Route(p + "app", _control(app), methods=["GET", "PUT"]),
        Route(p + "businesses", _control(businesses), methods=["POST"]),
        Route(p + "tokens", _control(tokens), methods=["POST"]),
        Route(p + "tokens/{action}", _control(tokens), methods=["POST"]),
        Route(p + "users", _control(users), methods=["GET", "POST"]),
        Route(p + "users/messages", _control(user_messages), methods=["POST"]),
        Route(p + "users/react", _control(user_react), methods=["POST"]),
        Route(p + "users/tap", _control(user_tap), methods=["POST"]),
        Route(p + "users/number", _control(user_number), methods=["POST"]),
        Route(p + "users/edit", _control(user_edit), methods=["POST"]),
        Route(p + "users/revoke", _control(user_revoke), methods=["POST"]),
        Route(p + "users/read", _control(user_read), methods=["POST"]),
        Route(p + "users/play", _control(user_play), methods=["POST"]),
        Route(p + "users/{key}", _control(user), methods=["PATCH"]),
        Route(p + "sent", _control(sent), methods=["GET", "DELETE"]),
        Route(p + "reads", _control(reads), methods=["GET"]),
        Route(p + "typing", _control(typing), methods=["GET"]),
        Route(p + "window", _control(window), methods=["PUT"]),
        Route(p + "window_mode", _control(window_mode), methods=["GET", "PUT"]),
        Route(p + "limits", _control(limits), methods=["GET", "PUT"]),
        Route(p + "errors", _control(errors), methods=["POST", "DELETE"]),
        Route(p + "media", _control(media), methods=["GET"]),
        Route(p + "webhooks", _control(webhooks), methods=["GET", "DELETE"]),
        Route(p + "templates", _control(templates), methods=["GET", "POST"]),
        Route(p + "templates/{template_id}/review", _control(review), methods=["POST"]),
        Route(p + "verify", _control(verify), methods=["POST"]),
        Route(p + "settled", _control(settled), methods=["POST"]),
    ]


# ---------------------------------------------------------------------------------------------------------
# The app


class WhatsAppEmulator(NamedTuple):
    app: Starlette
    state: WhatsAppState


def create_whatsapp_emulator(state: WhatsAppState | None = None) -> WhatsAppEmulator:
    """Build the emulator app around `state` (a fresh one by default). Unpacks as `app, state`."""
    state = state or WhatsAppState()

    routes = [
        *_emulator_routes(state),
        Route(LOOKASIDE_PATH, _lookaside(state), methods=["GET"]),
        Route("/{path:path}", _Graph(state).handle, methods=["GET", "POST", "DELETE"]),
    ]
    return WhatsAppEmulator(emulator_app(state, routes, fault_response), state)


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator alone: `python -m libs.messengers.whatsapp.emulator --port N`."""
    parser = emulator_arguments(__doc__, default_port=8082)
    parser.add_argument(
        "--business",
        action="append",
        default=[],
        metavar="NAME=DISPLAY_PHONE_NUMBER",
        help="create a business account with one number at start (repeatable); prints its credential",
    )
    parser.add_argument("--limits", choices=["on", "off"], default="on", help="80 msg/s per number, pair rate")
    args = parser.parse_args(argv)

    state = WhatsAppState(limits=SendLimits(enabled=args.limits == "on"))
    for spec in args.business:
        name, _, display = spec.partition("=")
        business, numbers, token = state.create_business(name, [(display or "15550000000", name)])
        business.subscribed = True
        print(f"whatsapp emulator: {name} credential={numbers[0].id}:{business.id}:{token}", flush=True)
    print(f"whatsapp emulator: app id={state.app.id} secret={state.app.secret}", flush=True)
    serve(create_whatsapp_emulator(state).app, args)


if __name__ == "__main__":
    main()
