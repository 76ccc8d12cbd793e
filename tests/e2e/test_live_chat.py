"""A live chat, end to end through all five services and the emulators: quoted replies, edits, reactions
and typing in both directions, asserting what Kommo and Telegram actually received. Each test has
Telegram clients of its own, so all share one stack."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.bus import Stream
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e

# Telegram user ids of this module's clients (other modules use other ranges).
REPLIES, MANAGER_QUOTE, EDITS, MANAGER_EDIT = 7_100_001, 7_100_002, 7_100_003, 7_100_004
REACTIONS, MANAGER_REACTION, TYPING, EARLY_REACTION = 7_100_005, 7_100_006, 7_100_007, 7_100_008
CLIENT_TYPING, ALBUM = 7_100_009, 7_100_010
TIMEOUT = 60


async def kommo_incoming(sandbox: Sandbox, user_id: int) -> list[dict[str, Any]]:
    return [m for m in await sandbox.kommo_messages() if m["sender"].get("client_id", "").endswith(f":{user_id}")]


async def client_says(sandbox: Sandbox, user_id: int, text: str, **message: Any) -> dict[str, Any]:
    """The client sends a message; returns it once Kommo has it (the amojo record), with `message_id`."""
    result = await sandbox.client_sends(sandbox.user(user_id), {"text": text, **message})
    assert result["status"] == 200, result
    message_id = result["update"]["message"]["message_id"]

    async def arrived() -> dict[str, Any] | None:
        found = [m for m in await kommo_incoming(sandbox, user_id) if m["message"].get("text", "").endswith(text)]
        return found[0] if found else None

    await wait_for(lambda: _present(arrived()), timeout=TIMEOUT, what=f"{text!r} in Kommo")
    stored = await arrived()
    assert stored is not None
    return {**stored, "message_id": message_id}


async def manager_says(sandbox: Sandbox, user_id: int, text: str, quoting: str = "") -> dict[str, Any]:
    """A manager answers; returns the Telegram message once the bot sent it, with its `kommo_msgid`."""
    conversation_id = await sandbox.conversation_of(user_id)
    if quoting:
        hook = await sandbox.manager_replies(conversation_id, text, quoting)
    else:
        hook = await sandbox.manager_writes(conversation_id, text)
    assert hook["status_code"] == 200, hook

    async def sent() -> dict[str, Any] | None:
        found = [s for s in await sandbox.telegram_sent() if s["chat_id"] == user_id and s["message"]["text"] == text]
        return found[0] if found else None

    await wait_for(lambda: _present(sent()), timeout=TIMEOUT, what=f"{text!r} in Telegram")
    message = await sent()
    assert message is not None
    return {**message["message"], "kommo_msgid": hook["kommo_msgid"]}


async def _present(found: Any) -> bool:
    return await found is not None


async def test_client_quotes_reach_kommo_as_reply_to(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    own = await client_says(sandbox, REPLIES, "do you deliver on Sundays?")
    answer = await manager_says(sandbox, REPLIES, "Yes, from 10 to 14.")

    to_manager = await client_says(
        sandbox, REPLIES, "great, this Sunday then", reply_to_message_id=answer["message_id"]
    )
    assert to_manager["payload"]["reply_to"] == {"message": {"id": answer["kommo_msgid"]}}
    to_own = await client_says(sandbox, REPLIES, "(and Saturdays?)", reply_to_message_id=own["message_id"])
    assert to_own["payload"]["reply_to"] == {"message": {"msgid": own["msgid"]}}

    # A quote of a message the bridge never carried (sent before it was connected) keeps the quoted words.
    old = {"message_id": 9_998, "from": sandbox.user(REPLIES), "chat": {"id": REPLIES, "type": "private"}, "date": 1}
    old["text"] = "my order number is 5521"
    update = {
        "update_id": 710_000_001,
        "message": {
            "message_id": 9_999,
            "from": {"is_bot": False, **sandbox.user(REPLIES)},
            "chat": {"id": REPLIES, "type": "private", "first_name": "Client"},
            "date": 1_760_000_000,
            "text": "any news?",
            "reply_to_message": old,
        },
    }
    assert await sandbox.post_update(update, await sandbox.webhook_secret()) == 200
    await wait_for(
        lambda: _present(_text_in_kommo(sandbox, REPLIES, "» my order number is 5521\nany news?")),
        timeout=TIMEOUT,
        what="the unmapped quote as text",
    )
    unmapped = await _text_in_kommo(sandbox, REPLIES, "» my order number is 5521\nany news?")
    assert unmapped is not None and "reply_to" not in unmapped["payload"]


async def _text_in_kommo(sandbox: Sandbox, user_id: int, text: str) -> dict[str, Any] | None:
    return next((m for m in await kommo_incoming(sandbox, user_id) if m["message"].get("text") == text), None)


async def test_a_manager_quote_is_a_telegram_reply(shared_sandbox: Sandbox) -> None:
    question = await client_says(shared_sandbox, MANAGER_QUOTE, "what is the warranty?")
    answer = await manager_says(shared_sandbox, MANAGER_QUOTE, "Two years.", quoting=question["kommo_msgid"])
    assert answer["reply_to_message"]["message_id"] == question["message_id"]
    call = [
        r["body"]
        for r in (await shared_sandbox.http.get(f"{shared_sandbox.stack.telegram_url}/_emulator/requests")).json()[
            "requests"
        ]
        if r["path"].endswith("/sendMessage") and r["body"]["text"] == "Two years."
    ]
    assert call[0]["reply_parameters"]["message_id"] == question["message_id"]


async def test_client_edits_change_the_message_in_kommo(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    typo = await client_says(sandbox, EDITS, "I ned two")
    await sandbox.client_edits(EDITS, typo["message_id"], text="I need two")

    async def edited(kommo_msgid: str, count: int) -> bool:
        message = next(m for m in await sandbox.kommo_messages() if m["kommo_msgid"] == kommo_msgid)
        return len(message["edits"]) >= count

    await wait_for(lambda: edited(typo["kommo_msgid"], 1), timeout=TIMEOUT, what="the edit in Kommo")
    (stored,) = [m for m in await sandbox.kommo_messages() if m["kommo_msgid"] == typo["kommo_msgid"]]
    assert stored["message"]["text"] == "I need two"
    assert stored["edits"] == [
        {
            "msgid": typo["msgid"],
            "conversation_id": typo["conversation_id"],
            "message": {"type": "text", "text": "I need two"},
        }
    ]

    # A caption: the picture stays, its text changes.
    data = os.urandom(5_000)
    stored_file = await sandbox.telegram_file(data, "photo", "image/jpeg")
    photo = {"file_id": stored_file["file_id"], "file_unique_id": stored_file["file_unique_id"], "file_size": len(data)}
    sent = await sandbox.client_sends(
        sandbox.user(EDITS), {"photo": [{**photo, "width": 800, "height": 600}], "caption": "the red one"}
    )
    message_id = sent["update"]["message"]["message_id"]

    async def picture() -> dict[str, Any] | None:
        return next((m for m in await kommo_incoming(sandbox, EDITS) if m["message"]["type"] == "picture"), None)

    await wait_for(lambda: _present(picture()), timeout=TIMEOUT, what="the picture in Kommo")
    await sandbox.client_edits(EDITS, message_id, caption="the blue one")
    first = await picture()
    assert first is not None
    await wait_for(lambda: edited(first["kommo_msgid"], 1), timeout=TIMEOUT, what="the caption edit in Kommo")
    (stored,) = [m for m in await sandbox.kommo_messages() if m["kommo_msgid"] == first["kommo_msgid"]]
    assert stored["edits"][0]["message"] == {"type": "picture", "text": "the blue one"}


async def test_a_manager_edit_changes_the_telegram_message(shared_sandbox: Sandbox) -> None:
    await client_says(shared_sandbox, MANAGER_EDIT, "how much is it?")
    price = await manager_says(shared_sandbox, MANAGER_EDIT, "It is 10 EUR.")
    await shared_sandbox.manager_edits(price["kommo_msgid"], "It is 12 EUR, sorry.")

    async def edits() -> list[dict[str, Any]]:
        return await shared_sandbox.telegram_edits(MANAGER_EDIT)

    await wait_for(lambda: _length(edits(), 1), timeout=TIMEOUT, what="editMessageText at Telegram")
    (edit,) = await edits()
    assert edit["method"] == "editMessageText"
    assert (edit["message"]["message_id"], edit["message"]["text"]) == (price["message_id"], "It is 12 EUR, sorry.")
    # The same hook again (a true duplicate) changes nothing more.
    await shared_sandbox.manager_edits(price["kommo_msgid"], "It is 12 EUR, sorry.")
    await wait_for(shared_sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    assert len(await edits()) == 1


async def _length(found: Any, count: int) -> bool:
    items = await found
    assert len(items) <= count, items
    return len(items) == count


async def test_client_reactions_become_react_and_unreact(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    own = await client_says(sandbox, REACTIONS, "here is my address")
    answer = await manager_says(sandbox, REACTIONS, "Thanks, noted!")
    conversation_id = own["conversation_id"]

    await sandbox.client_reacts(REACTIONS, answer["message_id"], ["👍"])
    await wait_for(lambda: _length(sandbox.kommo_reactions(conversation_id), 1), timeout=TIMEOUT, what="a react")
    await sandbox.client_reacts(REACTIONS, answer["message_id"], [])
    await wait_for(lambda: _length(sandbox.kommo_reactions(conversation_id), 2), timeout=TIMEOUT, what="an unreact")
    await sandbox.client_reacts(REACTIONS, own["message_id"], ["🔥"])
    await wait_for(lambda: _length(sandbox.kommo_reactions(conversation_id), 3), timeout=TIMEOUT, what="on their own")

    react, unreact, on_own = await sandbox.kommo_reactions(conversation_id)
    client_id = own["payload"]["sender"]["id"]
    assert react["body"] == {
        "conversation_id": conversation_id,
        "id": answer["kommo_msgid"],
        "user": {"id": client_id},
        "type": "react",
        "emoji": "👍",
    }
    assert (unreact["body"]["type"], unreact["body"]["emoji"], unreact["kommo_msgid"]) == (
        "unreact",
        "👍",
        answer["kommo_msgid"],
    )
    assert on_own["body"]["msgid"] == own["msgid"] and on_own["emoji"] == "🔥"


async def test_manager_reactions_become_the_bots_reaction(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    thanks = await client_says(sandbox, MANAGER_REACTION, "thank you so much!")
    await sandbox.manager_reacts(thanks["kommo_msgid"], "❤️")
    await wait_for(lambda: _length(sandbox.telegram_reactions(MANAGER_REACTION), 1), timeout=TIMEOUT, what="a reaction")
    await sandbox.manager_reacts(thanks["kommo_msgid"], "🧀")  # nothing Telegram allows: not carried
    await sandbox.manager_reacts(thanks["kommo_msgid"], "❤️", removed=True)
    await wait_for(lambda: _length(sandbox.telegram_reactions(MANAGER_REACTION), 2), timeout=TIMEOUT, what="cleared")
    set_, cleared = await sandbox.telegram_reactions(MANAGER_REACTION)
    assert (set_["message_id"], set_["emoji"]) == (thanks["message_id"], ["❤"])
    assert (cleared["message_id"], cleared["emoji"]) == (thanks["message_id"], [])


async def test_manager_typing_shows_while_it_lasts(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    await client_says(sandbox, TYPING, "anyone there?")
    conversation_id = await sandbox.conversation_of(TYPING)
    late = await sandbox.manager_types(conversation_id, late_by_s=10)  # expired before it arrived
    assert late["status_code"] == 200
    await sandbox.manager_types(conversation_id)
    await wait_for(lambda: _length(sandbox.telegram_chat_actions(TYPING), 1), timeout=TIMEOUT, what="typing")
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    (action,) = await sandbox.telegram_chat_actions(TYPING)
    assert action["action"] == "typing"


async def test_client_typing_shows_in_kommo_while_it_lasts(shared_sandbox: Sandbox) -> None:
    """Telegram never tells a bot that a client is typing, so the event is put on the bus as the gateway
    would for a platform that does: the router and kommo_sender carry it to amojo's /typing."""
    sandbox = shared_sandbox
    said = await client_says(sandbox, CLIENT_TYPING, "let me think")
    connection_id = sandbox.channel.connection_id

    def typing(event_id: str, age_ms: int) -> events_pb2.InboundMessage:
        return events_pb2.InboundMessage(
            event_id=event_id,
            platform=content_pb2.PLATFORM_TELEGRAM,
            connection_id=connection_id,
            chat_id=str(CLIENT_TYPING),
            sender_id=str(CLIENT_TYPING),
            sent_at_ms=int(time.time() * 1000) - age_ms,
            typing=events_pb2.ClientTyping(),
        )

    key = f"{connection_id}:{CLIENT_TYPING}"
    await sandbox.publish(Stream.INBOUND, key, typing("typing-stale", 6_000), "typing-stale")  # over already
    await sandbox.publish(Stream.INBOUND, key, typing("typing-now", 0), "typing-now")
    conversation_id = said["conversation_id"]
    await wait_for(lambda: _length(sandbox.kommo_typing(conversation_id), 1), timeout=TIMEOUT, what="typing in Kommo")
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    (shown,) = await sandbox.kommo_typing(conversation_id)
    assert shown["sender_id"] == said["payload"]["sender"]["id"]
    assert 0 < shown["duration_ms"] <= 5_000


async def test_a_reaction_before_its_message_is_mapped_still_arrives(shared_sandbox: Sandbox) -> None:
    """The client reacts to the bot's message before the report that maps it reached the router: here
    Telegram holds the send back (429, retry after 2 s) while the reaction is already on its way."""
    sandbox = shared_sandbox
    question = await client_says(sandbox, EARLY_REACTION, "is the shop open?")
    fault = {"path": "/sendMessage$", "status": 429, "retry_after": 2, "times": 1}
    (await sandbox.http.post(f"{sandbox.stack.telegram_url}/_emulator/faults", json=fault)).raise_for_status()
    hook = await sandbox.manager_writes(question["conversation_id"], "Yes, until 8 pm.")

    async def refused_once() -> bool:
        requests = (await sandbox.http.get(f"{sandbox.stack.telegram_url}/_emulator/requests")).json()["requests"]
        return any(r["path"].endswith("/sendMessage") and r["status"] == 429 for r in requests)

    await wait_for(refused_once, timeout=TIMEOUT, what="the send held back")
    # The bot's answer will be the chat's next message; the client's reaction to it comes first.
    reaction = {
        "chat": {"id": EARLY_REACTION, "type": "private", "first_name": "Client"},
        "message_id": question["message_id"] + 1,
        "user": {"is_bot": False, **sandbox.user(EARLY_REACTION)},
        "date": 1_760_000_000,
        "old_reaction": [],
        "new_reaction": [{"type": "emoji", "emoji": "👍"}],
    }
    update = {"update_id": 710_000_002, "message_reaction": reaction}
    assert await sandbox.post_update(json.loads(json.dumps(update)), await sandbox.webhook_secret()) == 200

    conversation_id = question["conversation_id"]
    await wait_for(lambda: _length(sandbox.kommo_reactions(conversation_id), 1), timeout=TIMEOUT, what="the reaction")
    (arrived,) = await sandbox.kommo_reactions(conversation_id)
    assert (arrived["kommo_msgid"], arrived["emoji"]) == (hook["kommo_msgid"], "👍")
    sent = [s for s in await sandbox.telegram_sent() if s["chat_id"] == EARLY_REACTION]
    assert sent[-1]["message"]["message_id"] == question["message_id"] + 1  # the one it reacted to


async def test_an_album_reaches_kommo_in_order_as_one_group(shared_sandbox: Sandbox) -> None:
    """Telegram sends an album as one message per item sharing a media_group_id; Kommo gets them in
    order, each with the album's id in its `message` (as amojo's history shows albums)."""
    sandbox = shared_sandbox
    for n, caption in enumerate(("front", "back")):
        data = os.urandom(3_000 + n)
        stored = await sandbox.telegram_file(data, "photo", "image/jpeg")
        photo = {"file_id": stored["file_id"], "file_unique_id": stored["file_unique_id"], "file_size": len(data)}
        item = {"photo": [{**photo, "width": 640, "height": 480}], "caption": caption, "media_group_id": "13811"}
        assert (await sandbox.client_sends(sandbox.user(ALBUM), item))["status"] == 200

    await wait_for(lambda: _length(kommo_incoming(sandbox, ALBUM), 2), timeout=TIMEOUT, what="the album in Kommo")
    items = [m["message"] for m in await kommo_incoming(sandbox, ALBUM)]
    assert [(m["type"], m["text"], m["media_group_id"]) for m in items] == [
        ("picture", "front", "13811"),
        ("picture", "back", "13811"),
    ]
