"""Chats in the CRM, end to end: sources, one contact and one incoming lead per client, linking to an
existing contact, profile updates, conversations the client closed, the robot label, and Kommo's REST
limit under a burst of new clients. Kommo's side is the emulator, which creates contacts and leads the
way Kommo does (first non-silent message of a new chat) and enforces 7 REST requests per second."""

from __future__ import annotations

import asyncio
from typing import Any

from kommo_bridge.events.v1 import events_pb2

from libs.devstack.embedded import free_port
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

LINK_EXISTING = events_pb2.CONTACT_RULE_LINK_EXISTING


def telegram_user(user_id: int, first: str = "Client", last: str = "") -> dict[str, Any]:
    return {"id": user_id, "first_name": first, "last_name": last or str(user_id), "username": f"client_{user_id}"}


def shared_contact(user_id: int, phone: str, first: str = "Client") -> dict[str, Any]:
    """The message a client sends with Telegram's "share my phone number" button."""
    return {"contact": {"phone_number": phone, "first_name": first, "user_id": user_id}}


async def in_kommo(sandbox: Sandbox, count: int) -> bool:
    messages = await sandbox.kommo_messages()
    assert len(messages) <= count, f"more than {count} messages reached Kommo: {len(messages)}"
    return len(messages) == count


async def crm_has(sandbox: Sandbox, key: str, count: int) -> bool:
    return len((await sandbox.crm())[key]) >= count


def pipelines(crm: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    main = next(p for p in crm["pipelines"] if p["is_main"])
    other = next(p for p in crm["pipelines"] if not p["is_main"])
    return main, other


async def channel_source(sandbox: Sandbox) -> dict[str, Any] | None:
    expected = f"telegram-{sandbox.channel.bot_id}"
    return next((s for s in (await sandbox.crm())["sources"] if s["external_id"] == expected), None)


async def test_a_channel_is_a_kommo_source_and_its_leads_land_in_the_chosen_pipeline(sandbox: Sandbox) -> None:
    await wait_for(lambda: _exists(channel_source(sandbox)), timeout=30, what="the channel's source in Kommo")
    source = await channel_source(sandbox)
    assert source is not None
    main, other = pipelines(await sandbox.crm())
    assert source["pipeline_id"] == main["id"]
    assert source["name"] == "Sandbox Shop (@bridge_sandbox_bot)" and source["origin_code"] == "amo.ext.sandbox"

    connection = await sandbox.update_settings(source_name="Telegram: shop bot", pipeline_id=other["id"])
    assert connection.settings.source_name == "Telegram: shop bot" and connection.settings.pipeline_id == other["id"]

    async def moved() -> bool:
        current = await channel_source(sandbox)
        return current is not None and (current["name"], current["pipeline_id"]) == ("Telegram: shop bot", other["id"])

    await wait_for(moved, timeout=30, what="the source renamed and moved to the second pipeline")
    await sandbox.client_writes(501, "hello from a new client")
    await wait_for(lambda: crm_has(sandbox, "leads", 1), timeout=30, what="an incoming lead")
    crm = await sandbox.crm()
    (lead,) = crm["leads"]
    assert lead["pipeline_id"] == other["id"] and lead["source_id"] == source["id"]
    (message,) = await sandbox.kommo_messages()
    assert message["payload"]["source"] == {"external_id": source["external_id"]}
    assert len([s for s in crm["sources"] if s["external_id"] == source["external_id"]]) == 1


async def test_concurrent_first_messages_over_two_routers_make_one_chat_contact_and_lead(sandbox: Sandbox) -> None:
    sandbox.stack.start_service("router", "-2", {"BRIDGE_ROUTER_GRPC_ADDR": f"127.0.0.1:{free_port()}"})
    secret = await sandbox.webhook_secret()
    user = {"id": 4343, "is_bot": False, "first_name": "Eve", "last_name": "Newcomer"}

    async def deliver(n: int) -> int:
        message = {
            "message_id": 100 + n,
            "date": 1_760_000_000 + n,
            "chat": {"id": 4343, "type": "private", "first_name": "Eve"},
            "from": user,
            "text": f"hello {n}",
        }
        return await sandbox.post_update({"update_id": 7000 + n, "message": message}, secret)

    assert await asyncio.gather(*(deliver(n) for n in range(20))) == [200] * 20
    await wait_for(lambda: in_kommo(sandbox, 20), timeout=60, what="20 messages in Kommo")
    await wait_for(lambda: crm_has(sandbox, "leads", 1), timeout=30, what="the incoming lead")
    await wait_for(sandbox.pipeline_idle, timeout=30, what="an idle pipeline")
    crm = await sandbox.crm()
    assert len(await sandbox.kommo_chats()) == 1
    (contact,) = crm["contacts"]
    (lead,) = crm["leads"]
    (link,) = crm["links"]
    assert contact["name"] == "Eve Newcomer"
    assert lead["contact_id"] == contact["id"] == link["contact_id"]


async def test_a_new_client_is_linked_to_the_existing_contact_with_their_phone(sandbox: Sandbox) -> None:
    known = await sandbox.seed_contact("Ann Known", phone="+1 (555) 010-2030")
    await sandbox.update_settings(contact_rule=LINK_EXISTING)

    await sandbox.client_sends(telegram_user(601, "Ann"), shared_contact(601, "15550102030", "Ann"))
    await wait_for(lambda: crm_has(sandbox, "leads", 1), timeout=30, what="the incoming lead")
    crm = await sandbox.crm()
    assert [c["id"] for c in crm["contacts"]] == [known], "a duplicate contact was created"
    (lead,) = crm["leads"]
    (chat,) = await sandbox.kommo_chats()
    assert lead["contact_id"] == known
    assert {"chat_id": chat["kommo_chat_id"], "contact_id": known} in [
        {"chat_id": link["chat_id"], "contact_id": link["contact_id"]} for link in crm["links"]
    ]

    # Nobody in Kommo has this number: Kommo makes the contact, as with the default rule.
    await sandbox.client_sends(telegram_user(602, "Bo"), shared_contact(602, "+44 20 7946 0018", "Bo"))
    await wait_for(lambda: crm_has(sandbox, "leads", 2), timeout=30, what="the second lead")
    crm = await sandbox.crm()
    assert len(crm["contacts"]) == 2
    new = next(c for c in crm["contacts"] if c["id"] != known)
    phones = [v["value"] for f in new["custom_fields_values"] if f["field_code"] == "PHONE" for v in f["values"]]
    assert phones == ["+44 20 7946 0018"]


async def test_profile_changes_reach_the_contact(sandbox: Sandbox) -> None:
    await sandbox.client_sends(telegram_user(701, "Rob", "Old"), {"text": "hi"})
    await wait_for(lambda: crm_has(sandbox, "contacts", 1), timeout=30, what="the contact")
    await sandbox.client_sends(telegram_user(701, "Robert", "New"), {"text": "I changed my name"})
    await sandbox.client_sends(telegram_user(701, "Robert", "New"), shared_contact(701, "+15550109999", "Robert"))

    async def updated() -> bool:
        (contact,) = (await sandbox.crm())["contacts"]
        phones = [
            v["value"] for f in contact["custom_fields_values"] if f["field_code"] == "PHONE" for v in f["values"]
        ]
        return bool(contact["name"] == "Robert New" and phones == ["+15550109999"])

    await wait_for(updated, timeout=30, what="the contact's new name and phone")
    await wait_for(lambda: in_kommo(sandbox, 3), timeout=30, what="the three messages")
    crm = await sandbox.crm()
    assert len(crm["contacts"]) == 1 and len(crm["leads"]) == 1


async def _status_of(sandbox: Sandbox, kommo_msgid: str) -> list[dict[str, Any]]:
    return (await sandbox.kommo_statuses()).get(kommo_msgid, [])


async def _send_attempts(sandbox: Sandbox) -> int:
    response = await sandbox.http.get(
        f"{sandbox.stack.telegram_url}/_emulator/requests", params={"path_contains": "/sendMessage"}
    )
    return len(response.json()["requests"])


async def test_a_client_who_blocked_the_bot_gets_nothing_until_they_write_again(sandbox: Sandbox) -> None:
    await sandbox.client_writes(801, "hello")
    await wait_for(lambda: in_kommo(sandbox, 1), timeout=30, what="the first message")
    conversation = await sandbox.conversation_of(801)

    await sandbox.client_blocks_bot(801)

    async def closed_count() -> int:
        return (await sandbox.connection()).closed_conversations

    await wait_for(lambda: _equals(closed_count(), 1), timeout=30, what="the conversation marked closed")
    attempts = await _send_attempts(sandbox)
    hook = await sandbox.manager_writes(conversation, "are you still there?")
    await wait_for(lambda: _exists(_status_of(sandbox, hook["kommo_msgid"])), timeout=30, what="a status")
    (status,) = await _status_of(sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (-1, 901)
    assert "blocked the bot" in status["error"]
    await wait_for(sandbox.pipeline_idle, timeout=30, what="an idle pipeline")
    assert await _send_attempts(sandbox) == attempts, "the bridge wrote to a client who blocked the bot"

    await sandbox.client_writes(801, "I'm back")  # Telegram's "Restart" unblocks, then the message
    await wait_for(lambda: _equals(closed_count(), 0), timeout=30, what="the conversation reopened")
    hook = await sandbox.manager_writes(conversation, "welcome back")
    await wait_for(lambda: _has_status(sandbox, hook["kommo_msgid"], 1), timeout=30, what="the reply delivered")
    assert (await sandbox.telegram_sent())[-1]["message"]["text"] == "welcome back"


async def _exists(value: Any) -> bool:
    return bool(await value)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _has_status(sandbox: Sandbox, kommo_msgid: str, status: int) -> bool:
    return any(s["status"] == status for s in await _status_of(sandbox, kommo_msgid))


async def test_messages_from_kommos_bot_reach_the_client_with_the_robot_label(sandbox: Sandbox) -> None:
    await sandbox.client_writes(901, "hello")
    await wait_for(lambda: in_kommo(sandbox, 1), timeout=30, what="the first message")
    conversation = await sandbox.conversation_of(901)

    await sandbox.manager_writes(conversation, "Hi! I am the shop's assistant.", as_bot=True)
    await sandbox.manager_writes(conversation, "Hi, Kate here from the shop.")
    await wait_for(lambda: _sent_count(sandbox, 2), timeout=30, what="both replies at the client")
    await sandbox.update_settings(robot_label="[Bot]")
    await sandbox.manager_writes(conversation, "Anything else?", as_bot=True)
    await wait_for(lambda: _sent_count(sandbox, 3), timeout=30, what="the third reply")
    texts = [m["message"]["text"] for m in await sandbox.telegram_sent()]
    assert texts == ["🤖 Hi! I am the shop's assistant.", "Hi, Kate here from the shop.", "[Bot] Anything else?"]


async def _sent_count(sandbox: Sandbox, count: int) -> bool:
    return len(await sandbox.telegram_sent()) >= count


def busiest_second(times: list[float]) -> int:
    """The most requests that arrived within any 1-second window."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_a_burst_of_100_new_clients_stays_under_kommos_rest_limit(sandbox: Sandbox) -> None:
    phones = {user_id: f"+1555020{user_id:04d}" for user_id in range(1000, 1100)}
    # Half of them are in Kommo already; the other half are new to it.
    known = {u: await sandbox.seed_contact(f"Known {u}", phones[u]) for u in range(1000, 1050)}
    await sandbox.update_settings(contact_rule=LINK_EXISTING)

    await asyncio.gather(
        *(sandbox.client_sends(telegram_user(u, "Buyer"), shared_contact(u, p, "Buyer")) for u, p in phones.items())
    )
    await wait_for(lambda: in_kommo(sandbox, 100), timeout=240, what="100 first messages in Kommo")
    await wait_for(lambda: crm_has(sandbox, "leads", 100), timeout=60, what="100 incoming leads")
    await wait_for(sandbox.pipeline_idle, timeout=60, what="an idle pipeline")

    crm = await sandbox.crm()
    assert len(crm["leads"]) == 100 and len(crm["contacts"]) == 100  # 50 seeded + 50 made by Kommo
    assert {lead["contact_id"] for lead in crm["leads"]} >= set(known.values())
    calls = await sandbox.rest_calls()
    assert calls, "no REST call was made"
    assert [c for c in calls if c["status"] == 429] == []
    assert busiest_second([c["at"] for c in calls]) <= 7
