"""Invariant 5: delivery statuses only move forward at Kommo, whatever order the reports arrive in."""

from __future__ import annotations

import httpx
from kommo_bridge.events.v1 import events_pb2

from libs.bus import Delivery
from libs.db import create_engine
from libs.kommo.client import AmojoClient
from libs.kommo.emulator import AmojoState, create_amojo_emulator
from libs.kommo.payloads import MessageBody, NewMessage, Participant
from services.kommo_sender.statuses import StatusReporter

CHANNEL = "344a5002-f8ca-454d-af3d-396180102ac7"
SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
ACCOUNT = "52e591f7-c98f-4255-8495-827210138c81"


async def chat_with_a_manager_reply(state: AmojoState, amojo: AmojoClient, conversation_id: str) -> tuple[str, str]:
    """A client writes (creating the chat), a manager answers: the reply's Kommo id and the scope."""
    scope_id = (await amojo.connect(ACCOUNT, "test")).scope_id
    client = Participant(id=f"client-{conversation_id}", name="Ann")
    first = NewMessage(
        msgid=f"m-{conversation_id}",
        conversation_id=conversation_id,
        sender=client,
        message=MessageBody(type="text", text="hi"),
        timestamp_ms=1_760_000_000_000,
    )
    await amojo.send_message(scope_id, first)
    hook = await state.send_manager_message(scope_id, conversation_id, "hello")
    return hook.kommo_msgid, scope_id


def report(kommo_msgid: str, scope_id: str, state: events_pb2.DeliveryState.ValueType, code: int = 0) -> Delivery:
    message = events_pb2.DeliveryReport(kommo_message_id=kommo_msgid, scope_id=scope_id, state=state, error_code=code)
    return Delivery(subject="reports.p0", data=message.SerializeToString())


async def test_out_of_order_and_duplicate_reports_never_step_back(database_url: str) -> None:
    app, state = create_amojo_emulator()
    state.register_channel(CHANNEL, SECRET, "http://127.0.0.1:1/hooks/:scope_id")
    engine = create_engine(database_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://amojo.test") as http:
        amojo = AmojoClient("http://amojo.test", CHANNEL, SECRET, http)
        msgid, scope_id = await chat_with_a_manager_reply(state, amojo, "conversation-1")
        reporter = StatusReporter(engine, amojo)

        for item in (
            report(msgid, scope_id, events_pb2.DELIVERY_STATE_READ),
            report(msgid, scope_id, events_pb2.DELIVERY_STATE_DELIVERED),  # late: must not step back
            report(msgid, scope_id, events_pb2.DELIVERY_STATE_READ),  # duplicate
            report(msgid, scope_id, events_pb2.DELIVERY_STATE_FAILED, 905),  # stale failure after read
        ):
            await reporter.handle(item)
    await engine.dispose()
    await state.aclose()
    assert [s.status for s in state.statuses(msgid)] == [2]


async def test_a_retry_that_succeeds_moves_a_failure_forward(database_url: str) -> None:
    app, state = create_amojo_emulator()
    state.register_channel(CHANNEL, SECRET, "http://127.0.0.1:1/hooks/:scope_id")
    engine = create_engine(database_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://amojo.test") as http:
        amojo = AmojoClient("http://amojo.test", CHANNEL, SECRET, http)
        msgid, scope_id = await chat_with_a_manager_reply(state, amojo, "conversation-2")
        reporter = StatusReporter(engine, amojo)
        await reporter.handle(report(msgid, scope_id, events_pb2.DELIVERY_STATE_FAILED, 903))
        await reporter.handle(report(msgid, scope_id, events_pb2.DELIVERY_STATE_DELIVERED))
        await reporter.handle(report(msgid, scope_id, events_pb2.DELIVERY_STATE_FAILED, 903))
    await engine.dispose()
    await state.aclose()
    statuses = state.statuses(msgid)
    assert [(s.status, s.error_code) for s in statuses] == [(-1, 903), (1, 0)]
    assert statuses[0].error  # Kommo requires a readable text with an error
