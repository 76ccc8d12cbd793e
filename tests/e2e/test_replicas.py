"""Three routers, three Kommo senders and three messenger senders share the traffic of both directions;
a router and a Kommo sender are SIGKILLed mid-run, and every invariant of ARCHITECTURE §5 still holds:
nothing lost, nothing doubled, order per conversation, one chat / contact / lead per client, statuses
only forward, and the pipeline idle at the end."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from libs.devstack.embedded import free_port
from libs.kommo.client import DELIVERED, FAILED, READ
from tests.e2e.sandbox import Sandbox
from tests.e2e.test_flow import (
    _all_delivered,
    _at_least,
    _count,
    assert_inbound_exactly_once_in_order,
    assert_outbound_exactly_once_in_order,
    clients_write,
    managers_write,
)
from tests.support import wait_for

pytestmark = pytest.mark.e2e

CLIENTS = 15
PER_CLIENT = 8
TOTAL = CLIENTS * PER_CLIENT
FIRST_USER = 7_000_000

SCALED = ("router", "kommo_sender", "messenger_sender")
EXTRA_INSTANCES = ("-2", "-3")
# A router and a Kommo sender die mid-run; their peers (and JetStream's redelivery) carry on. A
# messenger sender dying mid-send is the next test: Telegram takes no idempotency key, so that case
# is about never sending twice.
VICTIMS = ("router-2", "kommo_sender")

# Statuses only move forward: error < delivered < read (an error may be followed by a retry's success).
RANK = {FAILED: 0, DELIVERED: 1, READ: 2}


async def start_replicas(sandbox: Sandbox) -> None:
    """Two more replicas of every scaled service, each router on its own gRPC port, started together."""
    ports = {instance: free_port() for instance in EXTRA_INSTANCES}

    def start(name: str, instance: str) -> None:
        env = {"BRIDGE_ROUTER_GRPC_ADDR": f"127.0.0.1:{ports[instance]}"} if name == "router" else None
        sandbox.stack.start_service(name, instance, env)

    await asyncio.gather(*(asyncio.to_thread(start, name, i) for name in SCALED for i in EXTRA_INSTANCES))
    running = {name for name, process in sandbox.stack.processes.items() if process.running}
    assert {f"{name}{i}" for name in SCALED for i in ("", *EXTRA_INSTANCES)} <= running


def assert_statuses_only_forward(statuses: dict[str, list[dict[str, Any]]], manager_ids: set[str]) -> None:
    for msgid in manager_ids:
        sequence = [s["status"] for s in statuses.get(msgid, [])]
        ranks = [RANK[status] for status in sequence]
        assert ranks == sorted(ranks), f"status of {msgid} moved backwards: {sequence}"
        assert sequence and sequence[-1] in (DELIVERED, READ), f"{msgid} did not end delivered: {sequence}"


def assert_one_chat_contact_and_lead_per_client(
    chats: list[dict[str, Any]], crm: dict[str, Any], clients: range
) -> None:
    assert len(chats) == len(clients), f"{len(chats)} Kommo chats for {len(clients)} clients"
    owners = Counter(chat["client"]["client_id"].rpartition(":")[2] for chat in chats)
    assert owners == Counter(str(user_id) for user_id in clients), owners
    chat_ids = {chat["kommo_chat_id"] for chat in chats}
    assert len(crm["contacts"]) == len(clients), [c["name"] for c in crm["contacts"]]
    assert len(crm["leads"]) == len(clients), [lead["chat_id"] for lead in crm["leads"]]
    assert sorted(lead["chat_id"] for lead in crm["leads"]) == sorted(chat_ids)
    assert sorted(link["chat_id"] for link in crm["links"]) == sorted(chat_ids)
    assert len({link["contact_id"] for link in crm["links"]}) == len(clients)


async def test_three_replicas_of_each_with_one_killed_mid_run_keep_every_invariant(sandbox: Sandbox) -> None:
    await start_replicas(sandbox)
    clients = range(FIRST_USER, FIRST_USER + CLIENTS)

    # Both directions at once: clients keep writing while managers answer in every conversation.
    writing = asyncio.create_task(clients_write(sandbox, clients, PER_CLIENT))
    await wait_for(lambda: _at_least(sandbox.kommo_chats(), CLIENTS), timeout=60, what="a Kommo chat per client")
    conversations = [await sandbox.conversation_of(user_id) for user_id in clients]
    replying = asyncio.create_task(managers_write(sandbox, conversations, PER_CLIENT))

    # Kill once traffic flows both ways (replies reach Telegram), while much is still on its way.
    await wait_for(lambda: _at_least(sandbox.telegram_sent(), CLIENTS), timeout=60, what="the first replies")
    await asyncio.gather(*(asyncio.to_thread(sandbox.stack.processes[name].kill) for name in VICTIMS))
    arrived = len(await sandbox.kommo_messages()), len(await sandbox.telegram_sent())
    print(f"killed {VICTIMS} with {arrived[0]}/{TOTAL} inbound and {arrived[1]}/{TOTAL} outbound arrived")
    assert not any(sandbox.stack.processes[name].running for name in VICTIMS)
    assert arrived[1] < TOTAL, "every reply arrived before the kill: it was not mid-run"

    await writing
    hooks = await replying
    assert all(hook["status_code"] == 200 for hook in hooks), [h for h in hooks if h["status_code"] != 200][:3]

    # Nothing lost (all arrive), nothing doubled (never more than all), in order per conversation.
    await wait_for(lambda: _count(sandbox.kommo_messages(), TOTAL), timeout=60, what=f"{TOTAL} messages in Kommo")
    await wait_for(lambda: _count(sandbox.telegram_sent(), TOTAL), timeout=60, what=f"{TOTAL} replies in Telegram")
    manager_ids = {m["kommo_msgid"] for m in await sandbox.kommo_messages("manager")}
    assert len(manager_ids) == TOTAL
    await wait_for(lambda: _all_delivered(sandbox, manager_ids), timeout=60, what="a delivered status per reply")
    await wait_for(sandbox.pipeline_idle, timeout=60, what="every consumer drained")

    # Idle: nothing more can show up, so the final picture is the whole truth.
    assert_inbound_exactly_once_in_order(await sandbox.kommo_messages(), clients, PER_CLIENT)
    assert_outbound_exactly_once_in_order(await sandbox.telegram_sent(), CLIENTS, PER_CLIENT)
    assert_one_chat_contact_and_lead_per_client(await sandbox.kommo_chats(), await sandbox.crm(), clients)
    assert_statuses_only_forward(await sandbox.kommo_statuses(), manager_ids)
    assert (await sandbox.stream_counts())["DEAD_LETTERS"] == 0, "a message was dead-lettered"


async def test_a_messenger_sender_killed_mid_send_never_shows_a_reply_twice(sandbox: Sandbox) -> None:
    """A send cut off by a SIGKILL may or may not have reached Telegram, and Telegram cannot tell us.
    The bridge never sends it again (no reply shown twice) and tells the manager it is unconfirmed;
    everything else is delivered exactly once, in order."""
    from libs.status_texts import INTERRUPTED_SEND, render

    await start_replicas(sandbox)
    clients = range(FIRST_USER, FIRST_USER + CLIENTS)
    await clients_write(sandbox, clients, 1)
    await wait_for(lambda: _at_least(sandbox.kommo_chats(), CLIENTS), timeout=60, what="a Kommo chat per client")
    conversations = [await sandbox.conversation_of(user_id) for user_id in clients]
    replying = asyncio.create_task(managers_write(sandbox, conversations, PER_CLIENT))
    await wait_for(lambda: _at_least(sandbox.telegram_sent(), CLIENTS), timeout=60, what="the first replies")
    await asyncio.to_thread(sandbox.stack.processes["messenger_sender-3"].kill)
    assert len(await sandbox.telegram_sent()) < TOTAL, "every reply arrived before the kill: it was not mid-run"
    await replying

    manager_ids = {m["kommo_msgid"] for m in await sandbox.kommo_messages("manager")}
    assert len(manager_ids) == TOTAL

    async def all_settled() -> bool:
        statuses = await sandbox.kommo_statuses()
        return all(statuses.get(msgid) for msgid in manager_ids)

    await wait_for(all_settled, timeout=90, what="a status for every reply")
    await wait_for(sandbox.pipeline_idle, timeout=60, what="every consumer drained")

    statuses = await sandbox.kommo_statuses()
    unconfirmed = {
        msgid
        for msgid in manager_ids
        if [(s["status"], s["error_code"]) for s in statuses[msgid]] == [(FAILED, 903)]
        and statuses[msgid][0]["error"] == render(INTERRUPTED_SEND, {}, "en")
    }
    delivered = {msgid for msgid in manager_ids if statuses[msgid][-1]["status"] in (DELIVERED, READ)}
    assert delivered | unconfirmed == manager_ids, "a reply neither delivered nor reported unconfirmed"
    assert len(unconfirmed) <= 8, "more sends were cut off than the killed sender had in flight"
    texts_by_id = {m["kommo_msgid"]: m["message"]["text"] for m in await sandbox.kommo_messages("manager")}
    sent = await sandbox.telegram_sent()
    shown = Counter(item["message"]["text"] for item in sent)
    assert [text for text, times in shown.items() if times > 1] == [], "a reply was shown to a client twice"
    # Every delivered reply is at the client; an unconfirmed one may or may not be.
    assert {texts_by_id[msgid] for msgid in delivered} <= set(shown)
    assert set(shown) <= set(texts_by_id.values())
    # Order per conversation: what arrived is in the managers' order.
    by_chat: dict[int, list[int]] = {}
    for item in sent:
        by_chat.setdefault(item["chat_id"], []).append(int(item["message"]["text"].rsplit("r", 1)[1]))
    assert all(numbers == sorted(numbers) for numbers in by_chat.values()), by_chat
