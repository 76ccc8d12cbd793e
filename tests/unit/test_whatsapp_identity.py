"""Who a WhatsApp client is (reference/messenger-apis.md §2, "Identity change, 2026"): the parser gives both
their phone number and their business-scoped user id (BSUID), a number change is an event of its own, and the
emulator plays users who hide their number later or move to a new one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kommo_bridge.events.v1 import events_pb2

from libs.errors import BadRequestError
from libs.messengers.registry import ClientAliases, adapter_named
from libs.messengers.whatsapp.adapter import WhatsAppAdapter
from services.router.identities import ClientIds
from tests.unit.whatsapp_support import World, whatsapp_world

CONNECTION = "0b5c3e0e-5a52-4d7e-9d38-6a3c4b1c2d10"
WA_ID, NEW_WA_ID = "972987654321", "972500000001"
BSUID = "US.13491208655302741918"
adapter = WhatsAppAdapter()


def parse(messages: list[dict[str, Any]], contacts: list[dict[str, Any]]) -> list[events_pb2.InboundMessage]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551234567", "phone_number_id": "1122334455667"},
        "contacts": contacts,
        "messages": messages,
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    return adapter.parse_webhook(json.dumps(payload).encode(), CONNECTION)


def text(**who: str) -> dict[str, Any]:
    return {**who, "id": "wamid.t1", "timestamp": "1697043223", "type": "text", "text": {"body": "Hi"}}


def number_changed(system: dict[str, str], **who: str) -> dict[str, Any]:
    return {**who, "id": "wamid.sys1", "timestamp": "1753851315", "type": "system", "system": system}


def test_a_message_carries_both_the_number_and_the_bsuid() -> None:
    contact = {"profile": {"name": "Ann", "username": "ann.x"}, "wa_id": WA_ID, "user_id": BSUID}
    [event] = parse([text(**{"from": WA_ID, "from_user_id": BSUID})], [contact])
    assert (event.chat_id, event.sender_id) == (WA_ID, WA_ID)
    assert (event.sender.phone, event.sender.platform_user_id) == (f"+{WA_ID}", BSUID)
    assert adapter.client_ids(event) == (WA_ID, BSUID)
    assert isinstance(adapter_named("whatsapp"), ClientAliases)
    assert not isinstance(adapter_named("telegram"), ClientAliases)


def test_a_client_with_a_hidden_number_is_named_by_the_bsuid_alone() -> None:
    contact = {"profile": {"name": "Zoe", "username": "zoe"}, "user_id": BSUID}
    [event] = parse([text(from_user_id=BSUID)], [contact])
    assert (event.chat_id, event.sender_id, event.sender.phone) == (BSUID, BSUID, "")
    assert event.sender.platform_user_id == BSUID and event.sender.username == "zoe"
    assert adapter.client_ids(event) == (BSUID, BSUID)
    assert ClientIds(*adapter.client_ids(event)).phone == ""


def test_a_number_change_names_the_new_number_in_either_field() -> None:
    """`new_wa_id` (webhooks up to v11) or `wa_id` (v12 and later); the old number in `from`."""
    for field in ("new_wa_id", "wa_id"):
        system = {"body": f"Ann changed from {WA_ID} to {NEW_WA_ID}", field: NEW_WA_ID, "type": "user_changed_number"}
        [event] = parse([number_changed(system, **{"from": WA_ID})], [])
        assert event.WhichOneof("event") == "address_changed"
        assert (event.chat_id, event.address_changed.new_chat_id) == (WA_ID, NEW_WA_ID)
        assert event.address_changed.new_phone == f"+{NEW_WA_ID}"
        assert event.event_id == f"whatsapp:{CONNECTION}:wamid.sys1"
    system = {"body": "x", "new_wa_id": NEW_WA_ID, "type": "user_changed_number"}
    [hidden] = parse([number_changed(system, from_user_id=BSUID)], [{"profile": {"name": "Ann"}, "user_id": BSUID}])
    assert (hidden.chat_id, hidden.sender.platform_user_id) == (BSUID, BSUID)
    assert ClientIds(*adapter.client_ids(hidden), hidden.address_changed.new_chat_id).new_address == NEW_WA_ID


def test_a_malformed_number_change_is_refused() -> None:
    for system in ({"type": "user_changed_number"}, {"type": "user_changed_number", "new_wa_id": "+972 50"}):
        with pytest.raises(BadRequestError, match="system"):
            parse([number_changed(system, **{"from": WA_ID})], [])


# ---------------------------------------------------------------------------------------------------------
# The emulator's users


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with whatsapp_world() as world:
        yield world


def webhook_value(result: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = result["delivery"]["payload"]["entry"][0]["changes"][0]["value"]
    return value


async def send(world: World, **target: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {world.credential.split(':', 2)[2]}"}
    body = {"messaging_product": "whatsapp", **target, "type": "text", "text": {"body": "Hello"}}
    response = await world.http.post(
        f"{world.wa_url}/v23.0/{world.phone_number_id}/messages", json=body, headers=headers
    )
    assert response.status_code == 200, response.text
    sent: dict[str, Any] = response.json()
    return sent


async def test_a_user_who_turns_on_a_username_is_notified_by_bsuid_and_still_reachable(world: World) -> None:
    ann = await world.control("POST", "users", json={"name": "Ann", "wa_id": WA_ID})
    await world.client_says(WA_ID, {"type": "text", "text": {"body": "with my number"}})
    hidden = await world.control("PATCH", f"users/{WA_ID}", json={"username": "ann.x", "hide_number": True})
    assert hidden["number_hidden"] is True and hidden["username"] == "ann.x"
    result = await world.control(
        "POST",
        "users/messages",
        json={
            "phone_number_id": world.phone_number_id,
            "user": WA_ID,
            "message": {"type": "text", "text": {"body": "hi"}},
        },
    )
    value = webhook_value(result)
    assert "from" not in value["messages"][0] and value["messages"][0]["from_user_id"] == ann["user_id"]
    assert value["contacts"] == [{"profile": {"name": "Ann", "username": "ann.x"}, "user_id": ann["user_id"]}]
    texts = [e for e in world.receiver.events if e.sender.platform_user_id == ann["user_id"]]
    assert [(e.chat_id, e.sender.platform_user_id) for e in texts] == [(WA_ID, ann["user_id"]), (ann["user_id"],) * 2]
    # The business knew the number: `to` it still works, and so does `recipient` with the BSUID.
    by_number = await send(world, to=WA_ID)
    assert by_number["contacts"] == [{"input": WA_ID, "wa_id": WA_ID}]
    by_bsuid = await send(world, recipient=ann["user_id"])
    assert by_bsuid["contacts"] == [{"input": ann["user_id"], "user_id": ann["user_id"]}]
    assert [m["client"] for m in world.sent()][-2:] == [WA_ID, WA_ID]


async def test_a_user_who_changes_number_tells_the_business_and_keeps_the_window(world: World) -> None:
    ann = await world.control("POST", "users", json={"name": "Ann", "wa_id": WA_ID})
    await world.client_says(WA_ID, {"type": "text", "text": {"body": "before"}})
    result = await world.control(
        "POST", "users/number", json={"phone_number_id": world.phone_number_id, "user": WA_ID, "new_wa_id": NEW_WA_ID}
    )
    assert result["user"]["wa_id"] == NEW_WA_ID and result["delivery"]["status"] == 200
    [note] = webhook_value(result)["messages"]
    assert (note["from"], note["from_user_id"], note["type"]) == (WA_ID, ann["user_id"], "system")
    assert note["system"]["new_wa_id"] == NEW_WA_ID and note["system"]["type"] == "user_changed_number"
    [change] = [e for e in world.receiver.events if e.WhichOneof("event") == "address_changed"]
    assert (change.chat_id, change.address_changed.new_chat_id) == (WA_ID, NEW_WA_ID)
    # Free text to the new number goes (the window moved with the chat); the old number is no one's now.
    assert (await send(world, to=NEW_WA_ID))["contacts"] == [{"input": NEW_WA_ID, "wa_id": NEW_WA_ID}]
    refused = await world.http.post(
        f"{world.wa_url}/_emulator/users/number",
        json={"phone_number_id": world.phone_number_id, "user": NEW_WA_ID, "new_wa_id": "12ab"},
    )
    assert refused.status_code == 400 and "digits" in refused.json()["error"]
