"""Inline keyboards in the Telegram emulator (reference/messenger-apis.md §1, "Buttons"): the checks the Bot
API makes on a message's `reply_markup`, a client's tap on a callback button (a `callback_query` update), and
the `answerCallbackQuery` a bot gives, as a call or as its webhook's answer.

Error descriptions are Telegram's: "BUTTON_DATA_INVALID" (callback_data empty or over 64 bytes),
"BUTTON_URL_INVALID", "can't parse inline keyboard button: …", "QUERY_ID_INVALID".
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.emulation.middleware import CONTROL_PREFIX
from libs.messengers.telegram.emulator_state import Bot, DeliveryResult, TelegramApiError, TelegramState

if TYPE_CHECKING:
    from libs.messengers.telegram.emulator import _Params

CALLBACK_DATA_LIMIT: Final = 64
ANSWER_TEXT_LIMIT: Final = 200
_URL_SCHEMES: Final = ("https://", "http://", "tg://")


@dataclass
class CallbackQuery:
    """A tap the emulator sent a bot, and whether (and how) the bot answered it."""

    id: str
    bot_id: int
    chat_id: int
    message_id: int
    data: str
    at: float
    answered: bool = False
    answered_by: str = ""  # "call" or "webhook_reply"
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "data": self.data,
            "at": self.at,
            "answered": self.answered,
            "answered_by": self.answered_by,
            "text": self.text,
        }


def queries(state: TelegramState) -> dict[str, CallbackQuery]:
    """The taps of this emulator, by id."""
    return state.callback_queries


def reply_markup(params: _Params) -> dict[str, Any] | None:
    """A send's `reply_markup`, checked as the Bot API does (inline keyboards; other keyboards pass as they
    are)."""
    markup = params.json_("reply_markup", "reply keyboard")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise TelegramApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return markup
    if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
        raise TelegramApiError(
            400, 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for row in keyboard:
        for button in row:
            _button(button)
    return markup


def _button(button: object) -> None:
    if not isinstance(button, dict):
        raise TelegramApiError(
            400, "Bad Request: can't parse inline keyboard button: InlineKeyboardButton should be an Object"
        )
    text = button.get("text")
    if not isinstance(text, str) or not text.strip():
        raise TelegramApiError(400, "Bad Request: can't parse inline keyboard button: Text is empty")
    data, url = button.get("callback_data"), button.get("url")
    if data is None and url is None:
        raise TelegramApiError(
            400, "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if data is not None and (not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= CALLBACK_DATA_LIMIT):
        raise TelegramApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    if url is not None and (not isinstance(url, str) or not url.startswith(_URL_SCHEMES)):
        raise TelegramApiError(400, "Bad Request: BUTTON_URL_INVALID")


async def client_taps(state: TelegramState, bot_id: int, user_id: int, message_id: int, data: str) -> DeliveryResult:
    """The client taps the callback button `data` of the bot's message: a `callback_query` update."""
    bot = state.bot(bot_id)
    chat = bot.chats.get(user_id)
    if chat is None:
        raise KeyError(f"user {user_id} never wrote to bot {bot_id}")
    message = chat.messages.get(message_id)
    if message is None or message.get("from", {}).get("id") != bot.id:
        raise ValueError(f"message {message_id} is not a message of bot {bot_id} in this chat")
    keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    if not any(isinstance(b, dict) and b.get("callback_data") == data for row in keyboard for b in row):
        raise ValueError(f"message {message_id} has no callback button {data!r}")
    query = CallbackQuery(str(secrets.randbelow(10**18)), bot.id, chat.id, message_id, data, time.time())
    queries(state)[query.id] = query
    update = {
        "id": query.id,
        "from": chat.user,
        "message": message,
        "chat_instance": str(abs(hash((bot.id, chat.id)))),
        "data": data,
    }
    return await state.deliver_update(bot, "callback_query", update)


def answer(state: TelegramState, bot: Bot, query_id: object, text: object, how: str) -> None:
    """The bot answers a tap (the client's button stops spinning); QUERY_ID_INVALID for a query not its own."""
    query = queries(state).get(query_id) if isinstance(query_id, str) else None
    if query is None or query.bot_id != bot.id:
        raise TelegramApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
    if text is not None and (not isinstance(text, str) or len(text) > ANSWER_TEXT_LIMIT):
        raise TelegramApiError(400, "Bad Request: MESSAGE_TOO_LONG")
    query.answered, query.answered_by, query.text = True, how, text or ""


async def answer_callback_query(state: TelegramState, bot: Bot, params: _Params) -> Any:
    """`answerCallbackQuery{callback_query_id, text?, show_alert?}` → True."""
    answer(state, bot, params.str_("callback_query_id"), params.str_("text"), "call")
    return True


def webhook_reply(state: TelegramState, bot: Bot, body: bytes) -> None:
    """A webhook's 2xx answer may carry a method call, which Telegram runs (it reports no result); the one
    the bridge uses is `answerCallbackQuery`, the others are ignored here."""
    try:
        reply = json.loads(body) if body else None
    except ValueError:
        return
    if isinstance(reply, dict) and reply.get("method") == "answerCallbackQuery":
        try:
            answer(state, bot, reply.get("callback_query_id"), reply.get("text"), "webhook_reply")
        except TelegramApiError:
            return  # Telegram runs a webhook's answer blind: an invalid one is dropped without a word


def button_routes(state: TelegramState) -> list[Route]:
    """`/_emulator/…`: a client taps a button; the taps and their answers."""
    # Imported here: the emulator module registers these routes, so it is loaded by now.
    from libs.messengers.telegram.emulator import _control, _control_json, _id_field

    async def tap(request: Request) -> Response:
        data = await _control_json(request)
        choice = data.get("data")
        if not isinstance(choice, str):
            raise ValueError("data must be the callback_data of a button")
        bot_id, user_id, message_id = (_id_field(data, name) for name in ("bot_id", "user_id", "message_id"))
        result = await client_taps(state, bot_id, user_id, message_id, choice)
        return JSONResponse(result.to_json())

    async def taps(request: Request) -> Response:
        return JSONResponse({"callback_queries": [q.to_json() for q in queries(state).values()]})

    return [
        Route(CONTROL_PREFIX + "clients/callback_queries", _control(tap), methods=["POST"]),
        Route(CONTROL_PREFIX + "callback_queries", _control(taps), methods=["GET"]),
    ]
