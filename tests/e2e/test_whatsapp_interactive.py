"""Choices between Kommo and WhatsApp, end to end (five services as processes, against the Kommo and WhatsApp
Cloud emulators): a manager's buttons reach the client as reply buttons and the tap lands in the Kommo chat
with its title and `callback_data`; a Salesbot's `list_message` reaches the client as a list and the chosen
row comes back the same way; a link button becomes WhatsApp's `cta_url`.

The tests share one stack and one connected number; each uses clients (wa_ids) of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.sandbox import Sandbox
from tests.e2e.whatsapp_side import WhatsAppNumber, connect_number
from tests.support import wait_for

pytestmark = pytest.mark.e2e

DELIVERED = 1
SLOTS: dict[str, Any] = {
    "header": "Delivery",
    "body": "When should we bring your order?",
    "footer": "All times are local",
    "button": "Pick a day",
    "sections": [
        {
            "title": "This week",
            "rows": [
                {"callback_data": "slot-tue", "title": "Tuesday", "description": "between 5 and 8 pm"},
                {"callback_data": "slot-wed", "title": "Wednesday"},
            ],
        },
        {"title": "Next week", "rows": [{"callback_data": "slot-mon", "title": "Monday"}]},
    ],
}


@pytest.fixture(scope="module")
async def whatsapp(shared_sandbox: Sandbox) -> AsyncIterator[WhatsAppNumber]:
    """A business number connected to the sandbox account from the settings window, as an admin does."""
    yield await connect_number(shared_sandbox, "Sandbox Choices WA", "15550004444")


async def open_chat(whatsapp: WhatsAppNumber, wa_id: str) -> str:
    """The client writes, so Kommo has the chat (and WhatsApp's window is open); our conversation id."""
    await whatsapp.client_writes(wa_id, "Hi, about my order")
    await wait_for(lambda: _incoming(whatsapp, wa_id, 1), timeout=60, what=f"the Kommo chat of {wa_id}")
    return await whatsapp.conversation_of(wa_id)


async def _incoming(whatsapp: WhatsAppNumber, wa_id: str, count: int) -> bool:
    return len(await whatsapp.incoming_from(wa_id)) >= count


async def delivered_to(whatsapp: WhatsAppNumber, wa_id: str, count: int) -> list[dict[str, Any]]:
    """The business's first `count` messages to the client, once WhatsApp says the last one is delivered."""

    async def delivered() -> bool:
        sent = await whatsapp.sent_to(wa_id)
        return len(sent) >= count and sent[count - 1]["status"] in ("delivered", "read")

    await wait_for(delivered, timeout=60, what=f"{count} message(s) delivered to {wa_id}")
    return (await whatsapp.sent_to(wa_id))[:count]


async def choice_in_kommo(whatsapp: WhatsAppNumber, wa_id: str, index: int) -> dict[str, Any]:
    """The client's `index`th message (0 = the first) as Kommo received it."""
    await wait_for(lambda: _incoming(whatsapp, wa_id, index + 1), timeout=60, what=f"{wa_id}'s choice in Kommo")
    return (await whatsapp.incoming_from(wa_id))[index]


async def kommo_status(sandbox: Sandbox, msgid: str) -> list[int]:
    async def posted() -> bool:
        return bool((await sandbox.kommo_statuses()).get(msgid))

    await wait_for(posted, timeout=60, what=f"a delivery status for {msgid}")
    return [s["status"] for s in (await sandbox.kommo_statuses())[msgid]]


async def test_a_managers_buttons_reach_the_client_and_the_tap_lands_in_kommo_with_callback_data(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000701"
    conversation_id = await open_chat(whatsapp, wa_id)
    markup = {"mode": "inline", "buttons": [[{"text": "Ship it today"}, {"text": "Hold until Monday please"}]]}
    hook = await sandbox.manager_sends(
        conversation_id, {"type": "text", "text": "Your order is ready", "markup": markup}
    )

    [sent] = await delivered_to(whatsapp, wa_id, 1)
    assert sent["type"] == "interactive"
    interactive = sent["body"]["interactive"]
    assert interactive["type"] == "button" and interactive["body"] == {"text": "Your order is ready"}
    assert [b["reply"] for b in interactive["action"]["buttons"]] == [
        {"id": "Ship it today", "title": "Ship it today"},
        {"id": "Hold until Monday please", "title": "Hold until Monday p…"},  # WhatsApp shows 20 characters
    ]
    assert await kommo_status(sandbox, hook["kommo_msgid"]) == [DELIVERED]

    await whatsapp.client_taps(wa_id, sent["id"], "Hold until Monday please")
    chosen = await choice_in_kommo(whatsapp, wa_id, 1)
    assert chosen["message"] == {
        "type": "text",
        "text": "Hold until Monday p…",  # what the client's phone shows they chose
        "callback_data": "Hold until Monday please",  # the whole button, as the manager wrote it
    }


async def test_a_salesbot_list_reaches_the_client_as_a_list_and_the_chosen_row_comes_back(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000702"
    conversation_id = await open_chat(whatsapp, wa_id)
    message = {
        "type": "text",
        "text": "",
        "markup": {"list_message": SLOTS},
        "manager_id": sandbox.stack.channel_bot_id,
    }
    hook = await sandbox.manager_sends(conversation_id, message)

    [sent] = await delivered_to(whatsapp, wa_id, 1)
    interactive = sent["body"]["interactive"]
    assert interactive["type"] == "list"
    assert (interactive["header"], interactive["footer"]) == (
        {"type": "text", "text": "Delivery"},
        {"text": "All times are local"},
    )
    # The list's body is the message; the channel's robot label marks it as the bot's.
    assert interactive["body"]["text"].endswith(" When should we bring your order?")
    assert interactive["action"]["button"] == "Pick a day"
    assert [[r["id"] for r in s["rows"]] for s in interactive["action"]["sections"]] == [
        ["slot-tue", "slot-wed"],
        ["slot-mon"],
    ]
    assert await kommo_status(sandbox, hook["kommo_msgid"]) == [DELIVERED]

    reply = await whatsapp.client_taps(wa_id, sent["id"], "slot-tue")
    assert reply["body"]["interactive"]["list_reply"]["description"] == "between 5 and 8 pm"
    chosen = await choice_in_kommo(whatsapp, wa_id, 1)
    assert chosen["message"] == {"type": "text", "text": "Tuesday", "callback_data": "slot-tue"}


async def test_a_url_button_becomes_a_cta_url_and_a_second_link_a_line_of_the_text(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000703"
    conversation_id = await open_chat(whatsapp, wa_id)
    markup = {
        "mode": "inline",
        "buttons": [
            [{"text": "Track parcel", "url": "https://track.example/42"}],
            [{"text": "Help", "url": "https://help.example/"}],
        ],
    }
    hook = await sandbox.manager_sends(conversation_id, {"type": "text", "text": "It is on its way", "markup": markup})

    [sent] = await delivered_to(whatsapp, wa_id, 1)
    interactive = sent["body"]["interactive"]
    assert interactive == {
        "type": "cta_url",
        "body": {"text": "It is on its way\n\nHelp: https://help.example/"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Track parcel", "url": "https://track.example/42"},
        },
    }
    assert await kommo_status(sandbox, hook["kommo_msgid"]) == [DELIVERED]


async def test_a_list_whatsapp_cannot_show_is_refused_with_a_reason_for_the_manager(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000704"
    conversation_id = await open_chat(whatsapp, wa_id)
    rows = [{"callback_data": f"size-{n}", "title": f"Size {n}"} for n in range(11)]
    too_many = {"body": "Which size?", "button": "Sizes", "sections": [{"title": "Sizes", "rows": rows}]}
    hook = await sandbox.manager_sends(
        conversation_id, {"type": "text", "text": "", "markup": {"list_message": too_many}}
    )

    async def refused() -> bool:
        return bool((await sandbox.kommo_statuses()).get(hook["kommo_msgid"]))

    await wait_for(refused, timeout=60, what="the refusal's delivery status")
    [status] = (await sandbox.kommo_statuses())[hook["kommo_msgid"]]
    assert (status["status"], status["error_code"]) == (-1, 905)
    assert "at most 10 options" in status["error"]
    assert await whatsapp.sent_to(wa_id) == []  # nothing half-sent
