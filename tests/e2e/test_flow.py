"""Client ⇄ Kommo through all five services, as separate processes, against the emulators and
real NATS JetStream and PostgreSQL: exactly once, in order per conversation, surviving crashes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from libs.devstack.embedded import EmbeddedNats
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e

CLIENTS = 20
PER_CLIENT = 10
FIRST_USER = 5_000_000


def texts_by_conversation(messages: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_conversation: dict[str, list[str]] = defaultdict(list)
    for item in messages:
        by_conversation[item["conversation_id"]].append(item["message"]["text"])
    return by_conversation


async def clients_write(sandbox: Sandbox, clients: range, per_client: int, tag: str = "m") -> None:
    """Each client writes its messages one after another; clients write at the same time."""

    async def one_client(user_id: int) -> None:
        for n in range(per_client):
            result = await sandbox.client_writes(user_id, f"u{user_id} {tag}{n}")
            assert result["status"] in (200, 503, None), result

    await asyncio.gather(*(one_client(user_id) for user_id in clients))


async def managers_write(sandbox: Sandbox, conversations: list[str], per_conversation: int) -> list[dict[str, Any]]:
    """Managers answer in every conversation at once, each conversation's replies in sequence."""
    hooks: list[dict[str, Any]] = []

    async def one_conversation(index: int, conversation_id: str) -> None:
        for n in range(per_conversation):
            hooks.append(await sandbox.manager_writes(conversation_id, f"c{index} r{n}"))

    await asyncio.gather(*(one_conversation(i, c) for i, c in enumerate(conversations)))
    return hooks


def assert_inbound_exactly_once_in_order(messages: list[dict[str, Any]], clients: range, per_client: int) -> None:
    assert len({m["msgid"] for m in messages}) == len(messages), "a message reached Kommo twice"
    by_conversation = texts_by_conversation(messages)
    assert len(by_conversation) == len(clients)
    expected = {f"u{user_id}": [f"u{user_id} m{n}" for n in range(per_client)] for user_id in clients}
    for texts in by_conversation.values():
        assert texts == expected[texts[0].split()[0]], texts


def assert_outbound_exactly_once_in_order(sent: list[dict[str, Any]], conversations: int, per: int) -> None:
    by_chat: dict[int, list[str]] = defaultdict(list)
    for item in sent:
        by_chat[item["chat_id"]].append(item["message"]["text"])
    assert len(by_chat) == conversations
    for texts in by_chat.values():
        index = texts[0].split()[0]
        assert texts == [f"{index} r{n}" for n in range(per)], texts


async def test_messages_flow_both_ways_exactly_once_in_order(sandbox: Sandbox) -> None:
    clients = range(FIRST_USER, FIRST_USER + CLIENTS)
    await clients_write(sandbox, clients, PER_CLIENT)
    await wait_for(
        lambda: _count(sandbox.kommo_messages(), CLIENTS * PER_CLIENT), timeout=120, what="200 messages in Kommo"
    )
    incoming = await sandbox.kommo_messages()
    assert_inbound_exactly_once_in_order(incoming, clients, PER_CLIENT)

    # The payload Kommo requires, for a new chat with the client's name, profile link and the source.
    first = incoming[0]["payload"]
    assert isinstance(first["timestamp"], int) and isinstance(first["msec_timestamp"], int)
    assert first["sender"]["name"].startswith("Client ")
    assert first["sender"]["profile_link"].startswith("https://t.me/client_")
    assert first["source"]["external_id"] == f"telegram-{sandbox.channel.bot_id}"
    assert first["message"]["type"] == "text"
    chats = await sandbox.kommo_chats()
    assert len(chats) == CLIENTS

    conversations = [await sandbox.conversation_of(user_id) for user_id in clients]
    hooks = await managers_write(sandbox, conversations, PER_CLIENT)
    assert all(hook["status_code"] == 200 for hook in hooks), [h for h in hooks if h["status_code"] != 200][:3]
    await wait_for(
        lambda: _count(sandbox.telegram_sent(), CLIENTS * PER_CLIENT), timeout=180, what="200 replies in Telegram"
    )
    assert_outbound_exactly_once_in_order(await sandbox.telegram_sent(), CLIENTS, PER_CLIENT)

    # Every reply is reported to Kommo as delivered.
    manager_ids = {m["kommo_msgid"] for m in await sandbox.kommo_messages("manager")}
    await wait_for(lambda: _all_delivered(sandbox, manager_ids), timeout=60, what="a delivered status for every reply")


async def test_router_killed_mid_traffic_loses_and_doubles_nothing(sandbox: Sandbox) -> None:
    clients = range(FIRST_USER, FIRST_USER + CLIENTS)
    router = sandbox.stack.processes["router"]

    async def crash_router_when(reached: int, source: Any) -> None:
        await wait_for(lambda: _at_least(source(), reached), timeout=120, what=f"{reached} messages")
        await asyncio.to_thread(router.kill)
        await asyncio.to_thread(sandbox.stack.start_service, "router")

    writing = asyncio.create_task(clients_write(sandbox, clients, PER_CLIENT))
    await crash_router_when(CLIENTS * PER_CLIENT // 3, sandbox.kommo_messages)
    await writing
    await wait_for(lambda: _count(sandbox.kommo_messages(), CLIENTS * PER_CLIENT), timeout=180, what="all inbound")
    assert_inbound_exactly_once_in_order(await sandbox.kommo_messages(), clients, PER_CLIENT)

    conversations = [await sandbox.conversation_of(user_id) for user_id in clients]
    replying = asyncio.create_task(managers_write(sandbox, conversations, PER_CLIENT))
    await crash_router_when(CLIENTS * PER_CLIENT // 3, sandbox.telegram_sent)
    hooks = await replying
    assert all(hook["status_code"] == 200 for hook in hooks)
    await wait_for(lambda: _count(sandbox.telegram_sent(), CLIENTS * PER_CLIENT), timeout=180, what="all outbound")
    await wait_for(sandbox.pipeline_idle, timeout=60, what="every consumer drained")
    assert_outbound_exactly_once_in_order(await sandbox.telegram_sent(), CLIENTS, PER_CLIENT)


async def test_kommo_hooks_are_kept_while_nats_is_down(sandbox_own_broker: tuple[Sandbox, EmbeddedNats]) -> None:
    sandbox, broker = sandbox_own_broker
    clients = range(FIRST_USER, FIRST_USER + 2)
    await clients_write(sandbox, clients, 1)
    await wait_for(lambda: _count(sandbox.kommo_messages(), 2), timeout=60, what="two conversations")
    conversations = [await sandbox.conversation_of(user_id) for user_id in clients]

    await asyncio.to_thread(broker.stop)
    hooks = await managers_write(sandbox, conversations, 10)
    # Kommo sends each hook once: every one was answered 200, well within its 5 s budget.
    assert [hook["status_code"] for hook in hooks] == [200] * 20
    assert max(hook["elapsed_s"] for hook in hooks) < 5.0
    # A retrying platform (Telegram) is told to come back later instead.
    during_outage = await sandbox.client_writes(FIRST_USER, "written during the outage")
    assert during_outage["status"] == 503

    await asyncio.to_thread(broker.start)
    await wait_for(lambda: _count(sandbox.telegram_sent(), 20), timeout=120, what="spooled replies in Telegram")
    assert_outbound_exactly_once_in_order(await sandbox.telegram_sent(), 2, 10)
    await wait_for(lambda: _count(sandbox.kommo_messages(), 3), timeout=60, what="the retried client message")


async def test_concurrent_first_messages_create_one_conversation_and_one_chat(sandbox: Sandbox) -> None:
    """Telegram delivers up to 40 updates at once: 20 first messages of one new client arrive together."""
    secret = await sandbox.webhook_secret()
    user = {"id": 4242, "is_bot": False, "first_name": "Eve", "username": "eve_new"}

    async def deliver(n: int) -> int:
        update = {
            "update_id": 9000 + n,
            "message": {
                "message_id": 100 + n,
                "date": 1_760_000_000 + n,
                "chat": {"id": 4242, "type": "private", "first_name": "Eve"},
                "from": user,
                "text": f"hello {n}",
            },
        }
        return await sandbox.post_update(update, secret)

    statuses = await asyncio.gather(*(deliver(n) for n in range(20)))
    assert statuses == [200] * 20
    await wait_for(lambda: _count(sandbox.kommo_messages(), 20), timeout=60, what="20 messages in Kommo")
    messages = await sandbox.kommo_messages()
    assert len({m["conversation_id"] for m in messages}) == 1
    assert len(await sandbox.kommo_chats()) == 1
    assert sorted(m["message"]["text"] for m in messages) == sorted(f"hello {n}" for n in range(20))


async def _count(source: Any, expected: int) -> bool:
    items = await source
    assert len(items) <= expected, f"more than {expected} arrived: {len(items)}"
    return len(items) == expected


async def _at_least(source: Any, expected: int) -> bool:
    return len(await source) >= expected


async def _all_delivered(sandbox: Sandbox, manager_ids: set[str]) -> bool:
    statuses = await sandbox.kommo_statuses()
    return all(any(s["status"] == 1 for s in statuses.get(msgid, [])) for msgid in manager_ids)
