"""A faithful Telegram Bot API emulator (see reference/messenger-apis.md §1): it rejects what Telegram
rejects with Telegram's error envelope, enforces the FAQ's flood limits, and plays the clients' side by
delivering Updates to the bot's webhook the way Telegram does. `/_emulator/...` routes drive and inspect it.

    app, state = create_telegram_emulator()        # or host `app` in a multi-emulator process
    python -m libs.messengers.telegram.emulator --port 8081 [--bot support_bot[=<token>]]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.emulation import Fault
from libs.emulation.app import emulator_app, emulator_arguments, serve
from libs.emulation.middleware import CONTROL_PREFIX
from libs.messengers.telegram.adapter import CHAT_ACTIONS
from libs.messengers.telegram.emulator_albums import send_media_group
from libs.messengers.telegram.emulator_buttons import answer_callback_query, button_routes, reply_markup
from libs.messengers.telegram.emulator_files import FileRefused, file_routes
from libs.messengers.telegram.emulator_live import LIVE_METHODS, live_routes
from libs.messengers.telegram.emulator_state import (
    Bot,
    Chat,
    DeliveryResult,
    SentMessage,
    TelegramApiError,
    TelegramState,
)
from libs.messengers.telegram.emulator_uploads import (
    MEDIA_METHODS,
    UploadedFile,
    UploadRefused,
    read_multipart,
    send_media,
    upload_routes,
)

__all__ = ["DeliveryResult", "SentMessage", "TelegramEmulator", "TelegramState", "create_telegram_emulator", "main"]

_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_INT_RE = re.compile(r"^-?\d+$")
_WEBHOOK_PORTS = (80, 88, 443, 8443)
_MAX_TEXT = 4096
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _api_error(error: TelegramApiError) -> Response:
    return JSONResponse(error.envelope(), status_code=error.code)


def fault_response(fault: Fault) -> Response:
    """Telegram's envelope for an injected fault (HTTP status = error_code)."""
    if fault.status == 429:
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        description = fault.description or f"Too Many Requests: retry after {retry_after}"
        return _api_error(TelegramApiError(429, description, retry_after=retry_after))
    description = fault.description or _DEFAULT_DESCRIPTIONS.get(fault.status, "Error")
    return _api_error(TelegramApiError(fault.status, description))


# ---------------------------------------------------------------------------------------------------------
# Parameters: Telegram takes them from the query string, a JSON body or a form body, all alike.


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    return None


class _Params:
    """Typed reads of one call's parameters; form and query values arrive as strings."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def raw(self, name: str) -> Any:
        value = self._values.get(name)
        return None if value is None or value == "" else value

    def str_(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise TelegramApiError(400, f"Bad Request: parameter {name} must be a string")

    def int_(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        number = _as_int(value)
        if number is None:
            raise TelegramApiError(400, f"Bad Request: parameter {name} must be an integer")
        return number

    def float_(self, name: str) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
        raise TelegramApiError(400, f"Bad Request: parameter {name} must be a number")

    def bool_(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, bool):
            return value
        return isinstance(value, str) and value.lower() in ("true", "1")

    def uploads(self) -> list[UploadedFile]:
        """The files of a multipart call, named by a parameter or not."""
        return [value for value in self._values.values() if isinstance(value, UploadedFile)]

    def json_(self, name: str, what: str) -> Any:
        """An object or array parameter; form bodies carry it JSON-serialized."""
        value = self.raw(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise TelegramApiError(400, f"Bad Request: can't parse {what} JSON object") from None
        return value


async def _read_params(request: Request, state: TelegramState) -> _Params:
    values: dict[str, Any] = dict(request.query_params)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "multipart/form-data":
        try:  # streamed to disk as it arrives (files are UploadedFile values)
            values.update(await read_multipart(request, state.files))
        except UploadRefused as exc:
            raise TelegramApiError(exc.code, exc.description) from None
        return _Params(values)
    body = await request.body()
    if not body:
        return _Params(values)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data: object = json.loads(body)
        except ValueError:
            raise TelegramApiError(400, "Bad Request: can't parse JSON request body") from None
        if not isinstance(data, dict):
            raise TelegramApiError(400, "Bad Request: the JSON request body must be an object")
        values.update(data)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        try:
            values.update(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise TelegramApiError(400, "Bad Request: the request body is not valid UTF-8") from None
    else:
        raise TelegramApiError(400, f"Bad Request: unsupported Content-Type {content_type}")
    return _Params(values)


# ---------------------------------------------------------------------------------------------------------
# Bot API methods

Handler = Callable[[TelegramState, Bot, _Params], Awaitable[Any]]


class _Described(NamedTuple):
    """A result that Telegram answers with a `description` beside it (setWebhook, deleteWebhook)."""

    result: Any
    description: str


def _target_chat(bot: Bot, params: _Params, *, writable: bool = True) -> Chat:
    raw = params.raw("chat_id")
    if raw is None:
        raise TelegramApiError(400, "Bad Request: chat_id is empty")
    chat_id = _as_int(raw)
    chat = bot.chats.get(chat_id) if chat_id is not None else None
    if chat is None:  # a chat exists only once the client has written to the bot
        raise TelegramApiError(400, "Bad Request: chat not found")
    if writable and chat.blocked:
        raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
    return chat


def _reply_target(chat: Chat, params: _Params) -> dict[str, Any] | None:
    reply = params.json_("reply_parameters", "reply parameters")
    if reply is not None:
        if not isinstance(reply, dict):
            raise TelegramApiError(400, "Bad Request: can't parse reply parameters JSON object")
        message_id = _as_int(reply.get("message_id"))
        allow_missing = reply.get("allow_sending_without_reply") is True
        # Replies into another chat are not emulated: such a target is never found.
        same_chat = reply.get("chat_id") is None or _as_int(reply.get("chat_id")) == chat.id
        original = chat.messages.get(message_id) if same_chat and message_id is not None else None
    else:
        message_id = params.int_("reply_to_message_id")  # the legacy parameter, still accepted
        if message_id is None:
            return None
        allow_missing = params.bool_("allow_sending_without_reply")
        original = chat.messages.get(message_id)
    if original is None and not allow_missing:
        raise TelegramApiError(400, "Bad Request: message to be replied not found")
    return original


def _admit(state: TelegramState, bot: Bot, chat: Chat) -> None:
    retry_after = state.flood.admit(bot.id, chat.id)
    if retry_after is not None:
        raise TelegramApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


async def _get_me(state: TelegramState, bot: Bot, params: _Params) -> Any:
    return {
        **bot.as_user(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def _check_webhook_url(state: TelegramState, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelegramApiError(400, "Bad Request: bad webhook: invalid webhook URL specified")
    if state.require_https:
        if parts.scheme != "https":
            raise TelegramApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if (parts.port or 443) not in _WEBHOOK_PORTS:
            raise TelegramApiError(
                400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )


async def _set_webhook(state: TelegramState, bot: Bot, params: _Params) -> Any:
    url = params.str_("url") or ""
    if url:
        _check_webhook_url(state, url)
    secret = params.str_("secret_token") or ""
    if secret and not _SECRET_TOKEN_RE.match(secret):
        raise TelegramApiError(400, "Bad Request: secret token contains unallowed characters")
    max_connections = params.int_("max_connections")
    if max_connections is not None and not 1 <= max_connections <= 100:
        raise TelegramApiError(400, "Bad Request: bad webhook: max_connections must be between 1 and 100")
    allowed = params.json_("allowed_updates", "allowed updates")
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)):
        raise TelegramApiError(400, "Bad Request: can't parse allowed updates JSON object")
    state.set_webhook(
        bot,
        url,
        secret_token=secret,
        max_connections=max_connections,
        allowed_updates=allowed,
        drop_pending_updates=params.bool_("drop_pending_updates"),
    )
    return _Described(True, "Webhook was set" if url else "Webhook was deleted")


async def _delete_webhook(state: TelegramState, bot: Bot, params: _Params) -> Any:
    had_webhook = bool(bot.webhook_url)
    state.delete_webhook(bot, drop_pending_updates=params.bool_("drop_pending_updates"))
    return _Described(True, "Webhook was deleted" if had_webhook else "Webhook is already deleted")


async def _get_webhook_info(state: TelegramState, bot: Bot, params: _Params) -> Any:
    return state.webhook_info(bot)


async def _get_updates(state: TelegramState, bot: Bot, params: _Params) -> Any:
    if bot.webhook_url:
        raise TelegramApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active;"
            " use deleteWebhook to delete the webhook first",
        )
    limit = min(100, max(1, params.int_("limit") or 100))
    timeout = max(0, params.int_("timeout") or 0)
    updates = state.take_updates(bot, params.int_("offset"), limit)
    if not updates and timeout:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bot.arrived.wait(), min(timeout, 50))
        updates = state.take_updates(bot, None, limit)
    return updates


async def _send_message(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _target_chat(bot, params)
    text = params.str_("text")
    if text is None or not text.strip():
        raise TelegramApiError(400, "Bad Request: message text is empty")
    if len(text) > _MAX_TEXT:
        raise TelegramApiError(400, "Bad Request: message is too long")
    parse_mode = params.str_("parse_mode")
    if parse_mode is not None and parse_mode not in ("HTML", "MarkdownV2", "Markdown"):
        raise TelegramApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
    preview = params.json_("link_preview_options", "link preview options")
    if preview is not None and not isinstance(preview, dict):
        raise TelegramApiError(400, "Bad Request: can't parse link preview options JSON object")
    reply_to = _reply_target(chat, params)
    markup = reply_markup(params)
    _admit(state, bot, chat)
    content: dict[str, Any] = {"text": text}
    links = _url_entities(text)
    if links:
        content["entities"] = links
    if preview:  # the Message carries the options only when they were changed
        content["link_preview_options"] = preview
    if markup is not None and "inline_keyboard" in markup:  # a Message shows only an inline keyboard
        content["reply_markup"] = markup
    return state.bot_message(bot, chat, "sendMessage", content, reply_to)


_URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:!?)\]'»]")


def _url_entities(text: str) -> list[dict[str, Any]]:
    """The `url` entities Telegram finds in a plain text (offsets and lengths in UTF-16 code units)."""

    def units(part: str) -> int:
        return len(part.encode("utf-16-le")) // 2

    return [
        {"type": "url", "offset": units(text[: match.start()]), "length": units(match.group(0))}
        for match in _URL_RE.finditer(text)
    ]


async def _send_location(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _target_chat(bot, params)
    latitude, longitude = params.float_("latitude"), params.float_("longitude")
    if latitude is None or not -90 <= latitude <= 90:
        raise TelegramApiError(400, "Bad Request: wrong latitude specified")
    if longitude is None or not -180 <= longitude <= 180:
        raise TelegramApiError(400, "Bad Request: wrong longitude specified")
    location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    live_period = params.int_("live_period")
    if live_period is not None:
        if not (60 <= live_period <= 86400 or live_period == 0x7FFFFFFF):
            raise TelegramApiError(400, "Bad Request: wrong live period specified")
        location["live_period"] = live_period
    reply_to = _reply_target(chat, params)
    _admit(state, bot, chat)
    return state.bot_message(bot, chat, "sendLocation", {"location": location}, reply_to)


async def _send_contact(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _target_chat(bot, params)
    phone = params.str_("phone_number")
    if not phone:
        raise TelegramApiError(400, "Bad Request: phone number is empty")
    first_name = params.str_("first_name")
    if not first_name or not first_name.strip():
        raise TelegramApiError(400, "Bad Request: first name is empty")
    contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name}
    last_name = params.str_("last_name")
    if last_name:
        contact["last_name"] = last_name
    vcard = params.str_("vcard")
    if vcard:
        if len(vcard.encode("utf-8")) > 2048:
            raise TelegramApiError(400, "Bad Request: vcard is too long")
        contact["vcard"] = vcard
    reply_to = _reply_target(chat, params)
    _admit(state, bot, chat)
    return state.bot_message(bot, chat, "sendContact", {"contact": contact}, reply_to)


async def _send_chat_action(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _target_chat(bot, params)
    action = params.str_("action")
    if action not in CHAT_ACTIONS:
        raise TelegramApiError(400, "Bad Request: wrong parameter action in request")
    state.record_chat_action(bot, chat, action)
    return True


async def _get_file(state: TelegramState, bot: Bot, params: _Params) -> Any:
    try:
        return state.files.get_file(bot, params.str_("file_id") or "")
    except FileRefused as exc:
        raise TelegramApiError(400, exc.description) from None


def _media_method(name: str) -> Handler:
    """A send method with a file (emulator_uploads), after the checks every send method makes."""

    async def handler(state: TelegramState, bot: Bot, params: _Params) -> Any:
        try:
            chat = _target_chat(bot, params)
            reply_to = _reply_target(chat, params)
            return await send_media(state, bot, chat, name, params, reply_to, lambda: _admit(state, bot, chat))
        except UploadRefused as exc:
            raise TelegramApiError(exc.code, exc.description) from None
        finally:
            upload = params.raw(MEDIA_METHODS[name].field)
            if isinstance(upload, UploadedFile) and not upload.kept:
                upload.path.unlink(missing_ok=True)

    return handler


async def _send_media_group(state: TelegramState, bot: Bot, params: _Params) -> Any:
    """An album (emulator_albums), after the checks every send method makes."""
    try:
        if params.raw("media") is None:
            raise TelegramApiError(400, 'Bad Request: parameter "media" is required')
        media = params.json_("media", "media")
        chat = _target_chat(bot, params)
        reply_to = _reply_target(chat, params)
        return await send_media_group(state, bot, chat, params, media, reply_to, lambda: _admit(state, bot, chat))
    except UploadRefused as exc:
        raise TelegramApiError(exc.code, exc.description) from None
    finally:
        for upload in params.uploads():
            if not upload.kept:
                upload.path.unlink(missing_ok=True)


# Keys are lower-case: Telegram's method names are case-insensitive.
METHODS: dict[str, Handler] = {
    "getme": _get_me,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": _get_webhook_info,
    "getupdates": _get_updates,
    "sendmessage": _send_message,
    "sendlocation": _send_location,
    "sendcontact": _send_contact,
    "sendchataction": _send_chat_action,
    **LIVE_METHODS,
    "getfile": _get_file,
    **{name: _media_method(name) for name in MEDIA_METHODS},
    "sendmediagroup": _send_media_group,
    "answercallbackquery": answer_callback_query,
}


# ---------------------------------------------------------------------------------------------------------
# Control routes: the sandbox's hands (bots, clients, limits) and eyes (what was sent)


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _control_json(request: Request) -> dict[str, Any]:
    try:
        data: object = await request.json()
    except ValueError:
        raise _ControlError(400, "the body must be JSON") from None
    if not isinstance(data, dict):
        raise _ControlError(400, "the body must be a JSON object")
    return data


def _id_field(data: dict[str, Any], name: str) -> int:
    value = _as_int(data.get(name))
    if value is None:
        raise _ControlError(400, f"{name} must be an integer")
    return value


def _query_id(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    value = _as_int(raw)
    if value is None:
        raise _ControlError(400, f"{name} must be an integer")
    return value


def _path_id(request: Request, name: str) -> int:
    value = _as_int(request.path_params[name])
    if value is None:
        raise _ControlError(400, f"{name} must be an integer")
    return value


ControlHandler = Callable[[Request], Awaitable[Response]]


def _control(handler: ControlHandler) -> ControlHandler:
    """Turn the errors a control handler raises into `{"error": ...}` with a fitting status."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return wrapped


def _bot_json(bot: Bot) -> dict[str, Any]:
    return {
        "id": bot.id,
        "token": bot.token,
        "username": bot.username,
        "first_name": bot.first_name,
        "webhook_url": bot.webhook_url,
    }


def _emulator_routes(state: TelegramState) -> list[Route]:
    async def bots(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"bots": [_bot_json(b) for b in state.bots()]})
        data = await _control_json(request)
        username, first_name, token = data.get("username"), data.get("first_name", ""), data.get("token")
        if not isinstance(username, str) or not isinstance(first_name, str):
            raise _ControlError(400, "username (and first_name) must be strings")
        if token is not None and not isinstance(token, str):
            raise _ControlError(400, "token must be a string")
        return JSONResponse(_bot_json(state.create_bot(username, first_name, token)), status_code=201)

    async def revoke(request: Request) -> Response:
        bot = state.bot(_path_id(request, "bot_id"))
        state.revoke_token(bot)
        return JSONResponse(_bot_json(bot))

    async def webhook_error(request: Request) -> Response:
        bot = state.bot(_path_id(request, "bot_id"))
        data = await _control_json(request)
        message, at = data.get("message"), data.get("date")
        if not isinstance(message, str) or not message:
            raise _ControlError(400, "message must be a non-empty string, as Telegram words it")
        if at is not None and _as_int(at) is None:
            raise _ControlError(400, "date must be a unix time")
        state.webhook_failed(bot, message, _as_int(at) if at is not None else None)
        return JSONResponse(state.webhook_info(bot))

    async def sent(request: Request) -> Response:
        if request.method == "DELETE":
            state.sent.clear()
            return JSONResponse({"cleared": True})
        found = state.sent_messages(_query_id(request, "bot_id"), _query_id(request, "chat_id"))
        return JSONResponse({"messages": [s.to_json() for s in found]})

    async def chat_actions(request: Request) -> Response:
        bot_id, chat_id = _query_id(request, "bot_id"), _query_id(request, "chat_id")
        found = [
            a
            for a in state.chat_actions
            if (bot_id is None or a.bot_id == bot_id) and (chat_id is None or a.chat_id == chat_id)
        ]
        return JSONResponse({"actions": [a.to_json() for a in found]})

    async def limits(request: Request) -> Response:
        if request.method == "PUT":
            state.flood.configure(state.flood.limits.updated(await _control_json(request)))
        return JSONResponse(state.flood.limits.to_json())

    async def client_messages(request: Request) -> Response:
        data = await _control_json(request)
        user, text, message = data.get("user"), data.get("text"), data.get("message")
        if not isinstance(user, dict):
            raise _ControlError(400, "user must be an object {id, first_name, last_name?, username?}")
        if text is not None and not isinstance(text, str):
            raise _ControlError(400, "text must be a string")
        if message is not None and not isinstance(message, dict):
            raise _ControlError(400, "message must be an object of Telegram Message content fields")
        result = await state.client_message(_id_field(data, "bot_id"), user, text=text, message=message)
        return JSONResponse(result.to_json())

    async def block(request: Request) -> Response:
        data = await _control_json(request)
        result = await state.block(_id_field(data, "bot_id"), _id_field(data, "user_id"))
        return JSONResponse(result.to_json())

    async def unblock(request: Request) -> Response:
        data = await _control_json(request)
        result = await state.unblock(_id_field(data, "bot_id"), _id_field(data, "user_id"))
        return JSONResponse(result.to_json())

    return [
        Route(CONTROL_PREFIX + "bots", _control(bots), methods=["GET", "POST"]),
        # BotFather's /revoke; a webhook delivery failure as getWebhookInfo will report it.
        Route(CONTROL_PREFIX + "bots/{bot_id}/revoke", _control(revoke), methods=["POST"]),
        Route(CONTROL_PREFIX + "bots/{bot_id}/webhook_error", _control(webhook_error), methods=["POST"]),
        Route(CONTROL_PREFIX + "sent", _control(sent), methods=["GET", "DELETE"]),
        Route(CONTROL_PREFIX + "chat_actions", _control(chat_actions), methods=["GET"]),
        Route(CONTROL_PREFIX + "limits", _control(limits), methods=["GET", "PUT"]),
        Route(CONTROL_PREFIX + "clients/messages", _control(client_messages), methods=["POST"]),
        Route(CONTROL_PREFIX + "clients/block", _control(block), methods=["POST"]),
        Route(CONTROL_PREFIX + "clients/unblock", _control(unblock), methods=["POST"]),
    ]


# ---------------------------------------------------------------------------------------------------------
# The app


class TelegramEmulator(NamedTuple):
    app: Starlette
    state: TelegramState


def create_telegram_emulator(state: TelegramState | None = None) -> TelegramEmulator:
    """Build the emulator app around `state` (a fresh one by default). Unpacks as `app, state`."""
    state = state or TelegramState()

    async def api(request: Request) -> Response:
        bot = state.bot_by_token(request.path_params["token"])
        if bot is None:
            return _api_error(TelegramApiError(401, "Unauthorized"))
        handler = METHODS.get(request.path_params["method"].lower())
        if handler is None:
            return _api_error(TelegramApiError(404, "Not Found"))
        try:
            result = await handler(state, bot, await _read_params(request, state))
        except TelegramApiError as exc:
            return _api_error(exc)
        if isinstance(result, _Described):
            return JSONResponse({"ok": True, "result": result.result, "description": result.description})
        return JSONResponse({"ok": True, "result": result})

    async def not_found(request: Request) -> Response:
        return _api_error(TelegramApiError(404, "Not Found"))

    routes = [
        *_emulator_routes(state),
        *live_routes(state),
        *button_routes(state),
        *file_routes(state),
        *upload_routes(state),
        Route("/bot{token}/{method}", api, methods=["GET", "POST"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
    return TelegramEmulator(emulator_app(state, routes, fault_response), state)


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator alone: `python -m libs.messengers.telegram.emulator --port N`."""
    parser = emulator_arguments(__doc__, default_port=8081)
    parser.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="USERNAME[=TOKEN]",
        help="create a bot at start (repeatable); the token is generated unless given",
    )
    parser.add_argument("--require-https", action="store_true", help="reject non-HTTPS webhook URLs, like Telegram")
    parser.add_argument("--local-api", action="store_true", help="play a local Bot API server (no download limit)")
    args = parser.parse_args(argv)

    state = TelegramState(require_https=args.require_https, local_api=args.local_api)
    for spec in args.bot:
        username, _, token = spec.partition("=")
        bot = state.create_bot(username, token=token or None)
        print(f"telegram emulator: bot @{bot.username} id={bot.id} token={bot.token}", flush=True)
    serve(create_telegram_emulator(state).app, args)


if __name__ == "__main__":
    main()
