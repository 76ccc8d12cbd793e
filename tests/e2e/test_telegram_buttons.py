"""Choices between Kommo and Telegram, end to end (five services as processes, against the Kommo and Telegram
emulators): a manager's buttons and a Salesbot's list reach the client as an inline keyboard, and the client's
tap lands in the Kommo chat with the button's text and `callback_data`, its spinner stopped by the gateway's
answer to the webhook.

The tests share one stack; each uses a client of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e


async def open_chat(sandbox: Sandbox, user_id: int) -> str:
    await sandbox.client_writes(user_id, "Hi, about my order")
    await wait_for(lambda: _incoming(sandbox, user_id, 1), timeout=60, what=f"the Kommo chat of {user_id}")
    return await sandbox.conversation_of(user_id)


async def _from_client(sandbox: Sandbox, user_id: int) -> list[dict[str, Any]]:
    return [m for m in await sandbox.kommo_messages() if m["sender"].get("client_id", "").endswith(f":{user_id}")]


async def _incoming(sandbox: Sandbox, user_id: int, count: int) -> bool:
    return len(await _from_client(sandbox, user_id)) >= count


async def keyboard_sent_to(sandbox: Sandbox, user_id: int) -> dict[str, Any]:
    """The bot's message to the client that carries an inline keyboard."""

    async def sent() -> bool:
        return any(m["chat_id"] == user_id and "reply_markup" in m["message"] for m in await sandbox.telegram_sent())

    await wait_for(sent, timeout=60, what=f"a keyboard sent to {user_id}")
    message: dict[str, Any] = next(
        m["message"]
        for m in await sandbox.telegram_sent()
        if m["chat_id"] == user_id and "reply_markup" in m["message"]
    )
    return message


async def taps(sandbox: Sandbox, user_id: int, message_id: int, data: str) -> None:
    body = {"bot_id": sandbox.channel.bot_id, "user_id": user_id, "message_id": message_id, "data": data}
    response = await sandbox.http.post(f"{sandbox.stack.telegram_url}/_emulator/clients/callback_queries", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == 200, response.json()  # the gateway took the webhook


async def answered_by(sandbox: Sandbox, data: str) -> str:
    response = await sandbox.http.get(f"{sandbox.stack.telegram_url}/_emulator/callback_queries")
    [query] = [q for q in response.json()["callback_queries"] if q["data"] == data]
    return str(query["answered_by"])


async def test_a_managers_buttons_become_an_inline_keyboard_and_the_tap_lands_in_kommo(
    shared_sandbox: Sandbox,
) -> None:
    sandbox, user_id = shared_sandbox, 731001
    conversation_id = await open_chat(sandbox, user_id)
    markup = {"mode": "inline", "buttons": [[{"text": "Ship it"}, {"text": "Site", "url": "https://shop.example/"}]]}
    await sandbox.manager_sends(conversation_id, {"type": "text", "text": "Your order is ready", "markup": markup})

    message = await keyboard_sent_to(sandbox, user_id)
    assert message["text"] == "Your order is ready"
    assert message["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Ship it", "callback_data": "Ship it"}, {"text": "Site", "url": "https://shop.example/"}]
        ]
    }

    await taps(sandbox, user_id, message["message_id"], "Ship it")
    await wait_for(lambda: _incoming(sandbox, user_id, 2), timeout=60, what="the tap in Kommo")
    chosen = (await _from_client(sandbox, user_id))[1]
    assert chosen["message"] == {"type": "text", "text": "Ship it", "callback_data": "Ship it"}
    assert await answered_by(sandbox, "Ship it") == "webhook_reply"  # the client's spinner stopped


async def test_a_salesbot_list_becomes_a_button_per_row_and_the_row_comes_back(shared_sandbox: Sandbox) -> None:
    sandbox, user_id = shared_sandbox, 731002
    conversation_id = await open_chat(sandbox, user_id)
    slots = {
        "header": "Delivery",
        "body": "When should we come?",
        "button": "Pick a day",
        "sections": [{"title": "This week", "rows": [{"callback_data": "slot-tue", "title": "Tuesday"}]}],
    }
    await sandbox.manager_sends(conversation_id, {"type": "text", "text": "", "markup": {"list_message": slots}})

    message = await keyboard_sent_to(sandbox, user_id)
    assert message["text"] == "Delivery\n\nWhen should we come?"
    assert message["reply_markup"] == {"inline_keyboard": [[{"text": "Tuesday", "callback_data": "slot-tue"}]]}

    await taps(sandbox, user_id, message["message_id"], "slot-tue")
    await wait_for(lambda: _incoming(sandbox, user_id, 2), timeout=60, what="the chosen row in Kommo")
    chosen = (await _from_client(sandbox, user_id))[1]
    assert chosen["message"] == {"type": "text", "text": "Tuesday", "callback_data": "slot-tue"}
