"""A WhatsApp client stays one Kommo chat whichever id WhatsApp names them by (reference/messenger-apis.md §2,
"Identity change, 2026"): one who turns on a username and hides their number, one who moves to a new number,
and one known by their business-scoped user id (BSUID) only; each time the manager's reply reaches them.

The tests share one stack and one connected number; each uses clients of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.sandbox import Sandbox
from tests.e2e.whatsapp_side import WhatsAppNumber, connect_number
from tests.support import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def whatsapp(shared_sandbox: Sandbox) -> AsyncIterator[WhatsAppNumber]:
    """A business number connected to the sandbox account from the settings window, as an admin does."""
    yield await connect_number(shared_sandbox, "Sandbox Identity WA", "15550002222")


async def control(whatsapp: WhatsAppNumber, method: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    sandbox = whatsapp.sandbox
    response = await sandbox.http.request(method, f"{sandbox.stack.whatsapp_url}/_emulator/{route}", json=body)
    assert response.status_code < 300, response.text
    result: dict[str, Any] = response.json()
    return result


async def writes(whatsapp: WhatsAppNumber, user: str | dict[str, Any], text: str) -> None:
    """The user (a key the emulator knows them by, or a new user) writes; the gateway took the webhook."""
    body = {
        "phone_number_id": whatsapp.business.phone_number_id,
        "user": user,
        "message": {"type": "text", "text": {"body": text}},
    }
    result = await control(whatsapp, "POST", "users/messages", body)
    assert result["delivery"]["status"] == 200, result["delivery"]


async def kommo_texts(whatsapp: WhatsAppNumber, client_id: str, count: int) -> list[dict[str, Any]]:
    """The client's messages in Kommo (by our client id there), once there are `count`."""

    async def arrived() -> list[dict[str, Any]]:
        return [m for m in await whatsapp.sandbox.kommo_messages() if m["sender"].get("client_id", "") == client_id]

    async def enough() -> bool:
        return len(await arrived()) >= count

    await wait_for(enough, timeout=60, what=f"{count} message(s) from {client_id} in Kommo")
    return await arrived()


async def chats_of(whatsapp: WhatsAppNumber, client_id: str) -> list[dict[str, Any]]:
    return [c for c in await whatsapp.sandbox.kommo_chats() if c["client"].get("client_id", "") == client_id]


async def reply_reaches(whatsapp: WhatsAppNumber, conversation_id: str, key: str, text: str) -> dict[str, Any]:
    """A manager answers in the chat; returns the message as WhatsApp got it, filed under the user's `key`."""
    await whatsapp.sandbox.manager_writes(conversation_id, text)

    async def sent() -> list[dict[str, Any]]:
        return [m for m in await whatsapp.sent_to(key) if m["type"] == "text" and m["body"]["text"]["body"] == text]

    async def arrived() -> bool:
        return bool(await sent())

    await wait_for(arrived, timeout=60, what=f"the manager's reply sent to WhatsApp user {key}")
    [message] = await sent()
    return message


async def test_a_client_who_hides_their_number_stays_in_one_chat_and_gets_the_reply(
    whatsapp: WhatsAppNumber,
) -> None:
    wa_id = "5511900000201"
    client_id = f"{whatsapp.connection_id}:{wa_id}"
    await writes(whatsapp, {"name": "Ann Number", "wa_id": wa_id}, "Hi, with my number")
    await kommo_texts(whatsapp, client_id, 1)
    user = await control(whatsapp, "PATCH", f"users/{wa_id}", {"username": "ann.hidden", "hide_number": True})
    assert user["number_hidden"] is True

    await writes(whatsapp, wa_id, "Hi again, number hidden")  # the webhook names the BSUID only
    first, second = await kommo_texts(whatsapp, client_id, 2)
    assert second["message"]["text"] == "Hi again, number hidden"
    assert first["kommo_chat_id"] == second["kommo_chat_id"]
    [chat] = await chats_of(whatsapp, client_id)
    assert not await chats_of(whatsapp, f"{whatsapp.connection_id}:{user['user_id']}")

    reply = await reply_reaches(whatsapp, chat["conversation_id"], wa_id, "We see you, Ann")
    assert reply["body"]["to"] == wa_id  # the number the business knew still reaches a hidden one


async def test_a_client_who_changes_number_keeps_the_chat_and_the_reply_goes_to_the_new_number(
    whatsapp: WhatsAppNumber,
) -> None:
    old, new = "5511900000202", "5511900000299"
    client_id = f"{whatsapp.connection_id}:{old}"
    await writes(whatsapp, {"name": "Bo Mover", "wa_id": old}, "Hello from my old number")
    await kommo_texts(whatsapp, client_id, 1)
    body = {"phone_number_id": whatsapp.business.phone_number_id, "user": old, "new_wa_id": new}
    changed = await control(whatsapp, "POST", "users/number", body)
    assert changed["delivery"]["status"] == 200, changed["delivery"]

    await writes(whatsapp, new, "Hello from my new number")
    first, second = await kommo_texts(whatsapp, client_id, 2)
    assert first["kommo_chat_id"] == second["kommo_chat_id"]
    [chat] = await chats_of(whatsapp, client_id)
    assert not await chats_of(whatsapp, f"{whatsapp.connection_id}:{new}")
    assert second["sender"]["phone"] == f"+{new}"

    reply = await reply_reaches(whatsapp, chat["conversation_id"], new, "Got your new number")
    assert reply["body"]["to"] == new
    assert await whatsapp.sent_to(old) == []  # nothing went to the number given up


async def test_a_client_known_by_bsuid_only_gets_a_chat_and_the_reply_goes_by_recipient(
    whatsapp: WhatsAppNumber,
) -> None:
    bsuid = "US.10000000000000000203"
    user = {"name": "Cy Private", "username": "cy.private", "user_id": bsuid, "hide_phone": True}
    client_id = f"{whatsapp.connection_id}:{bsuid}"
    await writes(whatsapp, user, "Hi, no number here")
    [message] = await kommo_texts(whatsapp, client_id, 1)
    assert message["message"]["text"] == "Hi, no number here"
    [chat] = await chats_of(whatsapp, client_id)

    reply = await reply_reaches(whatsapp, chat["conversation_id"], bsuid, "Hello Cy")
    assert reply["body"]["recipient"] == bsuid and "to" not in reply["body"]
