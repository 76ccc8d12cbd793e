"""The Telegram emulator's live-chat surface: bots edit their messages and react to messages; clients
edit theirs and react (each an Update delivered to the webhook like any other). Registered by
`emulator.py`; the data lives in `TelegramState` (`edits`, `reactions`, `Chat.reactions`).

Error descriptions are Telegram's: 400 "message to edit not found", "message is not modified: …",
"message can't be edited", "message to react not found", "REACTION_INVALID", "REACTIONS_TOO_MANY".
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.emulation.middleware import CONTROL_PREFIX
from libs.messengers.telegram.emulator_state import Bot, BotReaction, Chat, SentMessage, TelegramApiError, TelegramState
from libs.messengers.telegram.reactions import ALLOWED

if TYPE_CHECKING:
    from libs.messengers.telegram.emulator import _Params

MAX_TEXT: Final = 4096
MAX_CAPTION: Final = 1024
BOT_REACTIONS_PER_MESSAGE: Final = 1
"""Bots, like users without Telegram Premium, set at most one reaction per message."""
CLIENT_REACTIONS_PER_MESSAGE: Final = 3
"""A Premium user may set up to three."""
_NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"
    " as a current content and reply markup of the message"
)
_CAPTIONED: Final = ("photo", "video", "document", "audio", "animation", "voice")


def _now() -> int:
    return int(time.time())


def _chat(bot: Bot, params: _Params) -> Chat:
    chat_id = params.int_("chat_id")
    if chat_id is None:
        raise TelegramApiError(400, "Bad Request: chat_id is empty")
    chat = bot.chats.get(chat_id)
    if chat is None:
        raise TelegramApiError(400, "Bad Request: chat not found")
    if chat.blocked:
        raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
    return chat


def _bots_message(bot: Bot, chat: Chat, params: _Params) -> dict[str, Any]:
    """The message a bot wants to edit: it must exist, and bots edit only their own messages."""
    message_id = params.int_("message_id")
    message = chat.messages.get(message_id) if message_id is not None else None
    if message is None:
        raise TelegramApiError(400, "Bad Request: message to edit not found")
    if message.get("from", {}).get("id") != bot.id:
        raise TelegramApiError(400, "Bad Request: message can't be edited")
    return message


def _store_edit(state: TelegramState, bot: Bot, chat: Chat, method: str, edited: dict[str, Any]) -> dict[str, Any]:
    # A new dict: what `state.sent` recorded stays as it was sent.
    chat.messages[edited["message_id"]] = edited
    state.edits.append(SentMessage(bot.id, chat.id, method, edited, time.time()))
    return edited


async def _edit_message_text(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _chat(bot, params)
    message = _bots_message(bot, chat, params)
    text = params.str_("text")
    if text is None or not text.strip():
        raise TelegramApiError(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT:
        raise TelegramApiError(400, "Bad Request: MESSAGE_TOO_LONG")
    if "text" not in message:
        raise TelegramApiError(400, "Bad Request: there is no text in the message to edit")
    if message["text"] == text:
        raise TelegramApiError(400, _NOT_MODIFIED)
    return _store_edit(state, bot, chat, "editMessageText", {**message, "text": text, "edit_date": _now()})


async def _edit_message_caption(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _chat(bot, params)
    message = _bots_message(bot, chat, params)
    caption = params.str_("caption") or ""
    if len(caption) > MAX_CAPTION:
        raise TelegramApiError(400, "Bad Request: message caption is too long")
    if not any(key in message for key in _CAPTIONED):
        raise TelegramApiError(400, "Bad Request: there is no caption in the message to edit")
    if message.get("caption", "") == caption:
        raise TelegramApiError(400, _NOT_MODIFIED)
    edited = {key: value for key, value in message.items() if key != "caption"}
    if caption:
        edited["caption"] = caption
    return _store_edit(state, bot, chat, "editMessageCaption", {**edited, "edit_date": _now()})


def _emoji_of(reactions: object, limit: int, invalid: Callable[[str], Exception]) -> list[str]:
    """The emoji of a ReactionType list; only Telegram's fixed emoji list is accepted."""
    if not isinstance(reactions, list):
        raise invalid("can't parse reaction types JSON object")
    emoji: list[str] = []
    for reaction in reactions:
        if not isinstance(reaction, dict) or reaction.get("type") != "emoji" or reaction.get("emoji") not in ALLOWED:
            raise invalid("REACTION_INVALID")
        if reaction["emoji"] not in emoji:
            emoji.append(reaction["emoji"])
    if len(emoji) > limit:
        raise invalid("REACTIONS_TOO_MANY")
    return emoji


def _bad_request(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


async def _set_message_reaction(state: TelegramState, bot: Bot, params: _Params) -> Any:
    chat = _chat(bot, params)
    message_id = params.int_("message_id")
    if message_id is None or message_id not in chat.messages:
        raise TelegramApiError(400, "Bad Request: message to react not found")
    given = params.json_("reaction", "reaction types")
    emoji = _emoji_of([] if given is None else given, BOT_REACTIONS_PER_MESSAGE, _bad_request)
    chat.reactions.setdefault(message_id, {})[bot.id] = emoji
    # Telegram sends no message_reaction update for a bot's own reactions.
    state.reactions.append(BotReaction(bot.id, chat.id, message_id, emoji, time.time()))
    return True


Handler = Callable[[TelegramState, Bot, "_Params"], Awaitable[Any]]

# Keys are lower-case: Telegram's method names are case-insensitive.
LIVE_METHODS: dict[str, Handler] = {
    "editmessagetext": _edit_message_text,
    "editmessagecaption": _edit_message_caption,
    "setmessagereaction": _set_message_reaction,
}


# ---------------------------------------------------------------------------------------------------------
# The client's side


def _client_chat(state: TelegramState, bot_id: int, user_id: int) -> tuple[Bot, Chat]:
    bot = state.bot(bot_id)
    chat = bot.chats.get(user_id)
    if chat is None:
        raise KeyError(f"user {user_id} never wrote to bot {bot_id}")
    return bot, chat


async def client_edits(
    state: TelegramState, bot_id: int, user_id: int, message_id: int, *, text: str | None, caption: str | None
) -> dict[str, Any]:
    """A client changes the text (or a media message's caption) of one of their messages: an
    `edited_message` update with the whole message, the same message_id and an `edit_date`."""
    bot, chat = _client_chat(state, bot_id, user_id)
    message = chat.messages.get(message_id)
    if message is None or message.get("from", {}).get("id") != user_id:
        raise ValueError(f"message {message_id} is not a message of user {user_id} in this chat")
    edited = dict(message)
    if text is not None:
        if "text" not in message or not text:
            raise ValueError("only a text message gets a new (non-empty) text")
        edited["text"] = text
    elif caption is not None:
        if not any(key in message for key in _CAPTIONED):
            raise ValueError("only a media message has a caption")
        edited["caption"] = caption
    else:
        raise ValueError("an edit needs text or caption")
    edited.update({"chat": chat.as_chat(), "edit_date": _now()})
    chat.messages[message_id] = edited
    result = await state.deliver_update(bot, "edited_message", edited)
    return result.to_json()


async def client_reacts(
    state: TelegramState, bot_id: int, user_id: int, message_id: int, emoji: list[str]
) -> dict[str, Any]:
    """A client sets their reactions on a message (an empty list takes them back): a `message_reaction`
    update with the old and the new list, which Telegram sends only if allowed_updates names it."""
    bot, chat = _client_chat(state, bot_id, user_id)
    if message_id not in chat.messages:
        raise ValueError(f"message {message_id} is not in this chat")

    def invalid(description: str) -> ValueError:
        return ValueError(description)

    new = _emoji_of([{"type": "emoji", "emoji": e} for e in emoji], CLIENT_REACTIONS_PER_MESSAGE, invalid)
    old = chat.reactions.setdefault(message_id, {}).get(user_id, [])
    chat.reactions[message_id][user_id] = new
    update = {
        "chat": chat.as_chat(),
        "message_id": message_id,
        "user": chat.user,
        "date": _now(),
        "old_reaction": [{"type": "emoji", "emoji": e} for e in old],
        "new_reaction": [{"type": "emoji", "emoji": e} for e in new],
    }
    result = await state.deliver_update(bot, "message_reaction", update)
    return result.to_json()


def live_routes(state: TelegramState) -> list[Route]:
    """`/_emulator/…`: clients edit and react; what bots edited and reacted."""
    # Imported here: the emulator module registers these routes, so it is loaded by now.
    from libs.messengers.telegram.emulator import _control, _control_json, _id_field, _query_id

    async def edits(request: Request) -> Response:
        bot_id, chat_id = _query_id(request, "bot_id"), _query_id(request, "chat_id")
        found = [e for e in state.edits if bot_id in (None, e.bot_id) and chat_id in (None, e.chat_id)]
        return JSONResponse({"edits": [e.to_json() for e in found]})

    async def reactions(request: Request) -> Response:
        bot_id, chat_id = _query_id(request, "bot_id"), _query_id(request, "chat_id")
        found = [r for r in state.reactions if bot_id in (None, r.bot_id) and chat_id in (None, r.chat_id)]
        return JSONResponse({"reactions": [r.to_json() for r in found]})

    async def client_edit(request: Request) -> Response:
        data = await _control_json(request)
        text, caption = data.get("text"), data.get("caption")
        if not isinstance(text, str | None) or not isinstance(caption, str | None):
            raise ValueError("text and caption must be strings")
        bot_id, user_id, message_id = (_id_field(data, name) for name in ("bot_id", "user_id", "message_id"))
        return JSONResponse(await client_edits(state, bot_id, user_id, message_id, text=text, caption=caption))

    async def client_reaction(request: Request) -> Response:
        data = await _control_json(request)
        emoji = data.get("emoji")
        if not isinstance(emoji, list) or not all(isinstance(e, str) for e in emoji):
            raise ValueError("emoji must be a list of strings (empty to take the reaction back)")
        bot_id, user_id, message_id = (_id_field(data, name) for name in ("bot_id", "user_id", "message_id"))
        return JSONResponse(await client_reacts(state, bot_id, user_id, message_id, emoji))

    return [
        Route(CONTROL_PREFIX + "edits", _control(edits), methods=["GET"]),
        Route(CONTROL_PREFIX + "reactions", _control(reactions), methods=["GET"]),
        Route(CONTROL_PREFIX + "clients/edits", _control(client_edit), methods=["POST"]),
        Route(CONTROL_PREFIX + "clients/reactions", _control(client_reaction), methods=["POST"]),
    ]
