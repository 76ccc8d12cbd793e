"""Telegram's live chat both ways: replies, edits, reactions and albums parsed from Updates; the bot's
edits, reactions and typing against the emulator, which answers them (and the client's own edits and
reactions) the way Telegram does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import content_pb2

from libs.errors import PermanentError
from libs.messengers.telegram.adapter import TelegramAdapter, TelegramBotClient, parse_update
from libs.messengers.telegram.emulator import TelegramEmulator, TelegramState, create_telegram_emulator
from libs.messengers.telegram.emulator_state import Bot
from libs.messengers.telegram.reactions import ALLOWED, telegram_reaction
from tests.unit.telegram_support import api, assert_error

BASE = "http://telegram.test"
ANA: dict[str, Any] = {"id": 555001, "is_bot": False, "first_name": "Ana", "username": "ana_s"}
CHAT: dict[str, Any] = {"id": 555001, "first_name": "Ana", "type": "private"}


def _body(update: dict[str, Any]) -> bytes:
    return json.dumps(update).encode()


def _message(**content: Any) -> dict[str, Any]:
    return {"message_id": 40, "from": ANA, "chat": CHAT, "date": 1_760_000_000, **content}


def text(body: str) -> content_pb2.Content:
    return content_pb2.Content(text=content_pb2.Text(body=body))


# ---------------------------------------------------------------------------------------------------------
# Updates -> events


def test_a_reply_names_the_replied_message_and_keeps_its_text() -> None:
    replied = {"message_id": 12, "from": {"id": 9, "is_bot": True, "first_name": "Shop"}, "chat": CHAT, "date": 1}
    event = parse_update(_body({"update_id": 1, "message": _message(text="yes", reply_to_message=replied)}), "c")
    assert event is not None
    assert (event.reply_to_platform_message_id, event.reply_to_quote) == ("12", "")

    replied["text"] = "Shall we deliver tomorrow? " + "x" * 400
    event = parse_update(_body({"update_id": 2, "message": _message(text="yes", reply_to_message=replied)}), "c")
    assert event is not None and event.reply_to_quote.startswith("Shall we deliver tomorrow?")
    assert len(event.reply_to_quote) == 200

    # The part the client selected wins over the whole text; a caption stands in for text.
    photo = {**replied, "caption": "the blue one", "photo": [{"file_id": "p", "file_unique_id": "u"}]}
    del photo["text"]
    update = _message(text="this", reply_to_message=photo)
    assert parse_update(_body({"update_id": 3, "message": update}), "c").reply_to_quote == "the blue one"  # type: ignore[union-attr]
    update["quote"] = {"text": "blue", "position": 4}
    assert parse_update(_body({"update_id": 4, "message": update}), "c").reply_to_quote == "blue"  # type: ignore[union-attr]


def test_an_edit_is_the_same_message_with_new_content_and_an_event_of_its_own() -> None:
    edited = _message(text="see you at 6", edit_date=1_760_000_300)
    first = parse_update(_body({"update_id": 7, "edited_message": edited}), "c")
    again = parse_update(_body({"update_id": 8, "edited_message": {**edited, "text": "at 7"}}), "c")
    assert first is not None and again is not None
    assert first.WhichOneof("event") == "edited" and first.edited.text.body == "see you at 6"
    assert (first.platform_message_id, first.chat_id, first.sender_id) == ("40", "555001", "555001")
    assert first.sent_at_ms == 1_760_000_300_000
    assert first.event_id != again.event_id and again.edited.text.body == "at 7"

    caption = _message(caption="new caption", photo=[{"file_id": "p", "file_unique_id": "u"}], edit_date=2)
    event = parse_update(_body({"update_id": 9, "edited_message": caption}), "c")
    assert event is not None and event.edited.media.caption == "new caption"


def test_a_live_location_moving_is_not_an_edit_to_carry() -> None:
    moved = _message(location={"latitude": 1.0, "longitude": 2.0, "live_period": 900}, edit_date=5)
    assert parse_update(_body({"update_id": 10, "edited_message": moved}), "c") is None


def test_album_items_carry_their_media_group_id() -> None:
    item = _message(photo=[{"file_id": "p1", "file_unique_id": "u1"}], media_group_id="13600")
    event = parse_update(_body({"update_id": 11, "message": item}), "c")
    assert event is not None and event.media_group_id == "13600"


def _reaction(old: list[dict[str, Any]], new: list[dict[str, Any]], **extra: Any) -> bytes:
    change = {"chat": CHAT, "message_id": 12, "user": ANA, "date": 1_760_000_100, "old_reaction": old}
    return _body({"update_id": 20, "message_reaction": {**change, "new_reaction": new, **extra}})


def test_a_reaction_change_says_what_was_added_and_taken_back() -> None:
    thumbs, heart = {"type": "emoji", "emoji": "👍"}, {"type": "emoji", "emoji": "❤"}
    event = parse_update(_reaction([thumbs], [heart]), "c")
    assert event is not None and event.WhichOneof("event") == "reaction"
    assert event.reaction.target_platform_message_id == "12"
    assert (list(event.reaction.added), list(event.reaction.removed)) == (["❤"], ["👍"])
    assert (event.chat_id, event.sender_id, event.sender.name) == ("555001", "555001", "Ana")

    taken_back = parse_update(_reaction([heart], []), "c")
    assert taken_back is not None and list(taken_back.reaction.removed) == ["❤"] and not taken_back.reaction.added


def test_custom_emoji_and_anonymous_or_group_reactions_are_not_carried() -> None:
    custom = {"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"}
    assert parse_update(_reaction([], [custom]), "c") is None
    assert parse_update(_reaction([], [{"type": "paid"}]), "c") is None
    group = json.loads(_reaction([], [{"type": "emoji", "emoji": "👍"}]))
    group["message_reaction"]["chat"] = {"id": -100, "title": "G", "type": "supergroup"}
    assert parse_update(_body(group), "c") is None
    anonymous = json.loads(_reaction([], [{"type": "emoji", "emoji": "👍"}]))
    del anonymous["message_reaction"]["user"]
    anonymous["message_reaction"]["actor_chat"] = {"id": -100, "type": "channel", "title": "C"}
    assert parse_update(_body(anonymous), "c") is None


def test_a_manager_emoji_maps_to_one_telegram_allows_or_to_nothing() -> None:
    assert telegram_reaction("👍") == "👍"
    assert telegram_reaction("❤️") == "❤"  # the presentation selector Kommo adds is dropped
    assert telegram_reaction("😂") == "🤣"
    assert telegram_reaction("🧀") is None
    assert "❤\u200d🔥" in ALLOWED and len(ALLOWED) == 73


# ---------------------------------------------------------------------------------------------------------
# The bot's side against the emulator


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = create_telegram_emulator(TelegramState(retry_initial_s=0.05, retry_max_s=0.2))
    yield emu
    await emu.state.aclose()


@pytest.fixture
def bot(emulator: TelegramEmulator) -> Bot:
    return emulator.state.create_bot("acme_support_bot", "Acme Support")


async def test_the_adapter_replies_edits_reacts_and_types(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    adapter = TelegramAdapter()
    state = emulator.state
    await state.client_message(bot.id, ANA, text="is it in stock?")  # the client's message 1
    chat = str(ANA["id"])

    sent = await adapter.send(http, BASE, bot.token, chat, text("yes, it is"), reply_to="1")
    reply = state.sent[-1].message
    assert reply["reply_to_message"]["message_id"] == 1 and reply["text"] == "yes, it is"

    await adapter.edit(http, BASE, bot.token, chat, sent, text("yes, two left"))
    await adapter.edit(http, BASE, bot.token, chat, sent, text("yes, two left"))  # "not modified": done already
    assert [(e.method, e.message["text"]) for e in state.edits] == [("editMessageText", "yes, two left")]
    assert state.sent[-1].message["text"] == "yes, it is"  # what was sent stays recorded as sent

    assert await adapter.react(http, BASE, bot.token, chat, "1", "❤️", removed=False)
    assert not await adapter.react(http, BASE, bot.token, chat, "1", "🧀", removed=False)
    assert await adapter.react(http, BASE, bot.token, chat, "1", "❤️", removed=True)
    assert [r.emoji for r in state.reactions] == [["❤"], []]

    await adapter.typing(http, BASE, bot.token, chat)
    assert [a.action for a in state.chat_actions] == ["typing"]

    with pytest.raises(PermanentError, match="message to edit not found"):
        await adapter.edit(http, BASE, bot.token, chat, "99", text("gone"))
    with pytest.raises(PermanentError, match="can't be edited"):
        await adapter.edit(http, BASE, bot.token, chat, "1", text("not the bot's"))
    with pytest.raises(PermanentError, match="no caption in the message"):
        media = content_pb2.Content(media=content_pb2.Media(kind=content_pb2.MEDIA_KIND_PICTURE, caption="c"))
        await adapter.edit(http, BASE, bot.token, chat, sent, media)


async def test_set_message_reaction_is_refused_like_telegram_does(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await emulator.state.client_message(bot.id, ANA, text="hi")
    chat = ANA["id"]

    def emoji(*values: str) -> list[dict[str, str]]:
        return [{"type": "emoji", "emoji": value} for value in values]

    async def react(reaction: list[dict[str, str]], message_id: int = 1, chat_id: int = chat) -> httpx.Response:
        return await api(http, bot, "setMessageReaction", chat_id=chat_id, message_id=message_id, reaction=reaction)

    assert_error(await react(emoji("🧀")), 400, "Bad Request: REACTION_INVALID")
    assert_error(await react([{"type": "custom_emoji", "custom_emoji_id": "1"}]), 400, "Bad Request: REACTION_INVALID")
    assert_error(await react(emoji("👍", "🔥")), 400, "Bad Request: REACTIONS_TOO_MANY")
    assert_error(await react(emoji("👍"), message_id=7), 400, "Bad Request: message to react not found")
    assert_error(await react(emoji("👍"), chat_id=1), 400, "Bad Request: chat not found")
    ok = await api(http, bot, "setMessageReaction", chat_id=chat, message_id=1, reaction=emoji("👍"))
    assert ok.json() == {"ok": True, "result": True}
    assert emulator.state.bot(bot.id).chats[chat].reactions[1] == {bot.id: ["👍"]}

    not_modified = await api(http, bot, "sendMessage", chat_id=chat, text="same")
    message_id = not_modified.json()["result"]["message_id"]
    response = await api(http, bot, "editMessageText", chat_id=chat, message_id=message_id, text="same")
    assert response.status_code == 400
    assert response.json()["description"].startswith("Bad Request: message is not modified")


async def test_client_edits_and_reactions_reach_the_webhook_only_when_subscribed(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    state = emulator.state
    await state.client_message(bot.id, ANA, text="helo")
    response = await http.post(
        "/_emulator/clients/edits", json={"bot_id": bot.id, "user_id": ANA["id"], "message_id": 1, "text": "hello"}
    )
    assert response.status_code == 200
    update = response.json()["update"]["edited_message"]
    assert (update["message_id"], update["text"]) == (1, "hello") and update["edit_date"] >= update["date"]
    event = parse_update(_body(response.json()["update"]), "c")
    assert event is not None and event.edited.text.body == "hello"

    # Reactions come only to a webhook that asks for them (allowed_updates), as at Telegram.
    state.set_webhook(bot, "", allowed_updates=["message", "edited_message"])
    reacted = await http.post(
        "/_emulator/clients/reactions", json={"bot_id": bot.id, "user_id": ANA["id"], "message_id": 1, "emoji": ["👍"]}
    )
    assert reacted.json()["error"] == "message_reaction is not in allowed_updates"
    state.set_webhook(bot, "", allowed_updates=["message", "edited_message", "message_reaction"])
    reacted = await http.post(
        "/_emulator/clients/reactions", json={"bot_id": bot.id, "user_id": ANA["id"], "message_id": 1, "emoji": ["🔥"]}
    )
    change = reacted.json()["update"]["message_reaction"]
    assert change["old_reaction"] == [{"type": "emoji", "emoji": "👍"}]
    assert change["new_reaction"] == [{"type": "emoji", "emoji": "🔥"}]
    event = parse_update(_body(reacted.json()["update"]), "c")
    assert event is not None and (list(event.reaction.added), list(event.reaction.removed)) == (["🔥"], ["👍"])

    refused = await http.post(
        "/_emulator/clients/reactions", json={"bot_id": bot.id, "user_id": ANA["id"], "message_id": 1, "emoji": ["🧀"]}
    )
    assert refused.status_code == 400 and refused.json()["error"] == "REACTION_INVALID"
    not_theirs = await http.post(
        "/_emulator/clients/edits", json={"bot_id": bot.id, "user_id": ANA["id"], "message_id": 5, "text": "x"}
    )
    assert not_theirs.status_code == 400


async def test_bot_client_sends_the_reaction_list_telegram_expects(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await emulator.state.client_message(bot.id, ANA, text="hi")
    client = TelegramBotClient(BASE, bot.token, http)
    await client.set_message_reaction(str(ANA["id"]), 1, "🔥")
    await client.set_message_reaction(str(ANA["id"]), 1, None)
    calls = [json.loads(r.body) for r in emulator.state.log.entries() if r.path.endswith("/setMessageReaction")]
    assert [c["reaction"] for c in calls] == [[{"type": "emoji", "emoji": "🔥"}], []]
