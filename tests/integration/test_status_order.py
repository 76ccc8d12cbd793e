"""Invariant 5: delivery statuses only move forward at Kommo, whatever order the reports arrive in, and
a failure reads in the account's language.

kommo_sender's StatusReporter consumes the reports stream of a real NATS, keeps its state in a real
PostgreSQL, asks a real auth service (in this process, over gRPC) for each account's language, and
posts to the amojo emulator. Every test uses a manager message (and account) of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Consumer, Publisher, Stream, ensure_streams
from libs.db import create_engine
from libs.db.schema import delivery_events
from libs.kommo.client import AmojoClient
from libs.kommo.emulator import AmojoState, create_amojo_emulator
from libs.kommo.emulator.records import DeliveryStatus
from libs.kommo.payloads import MessageBody, NewMessage, Participant
from libs.observability import service_name
from libs.rpc import call
from libs.status_texts import REASONS, render
from services.auth.installations import InstallationStore
from services.kommo_sender.languages import AccountLanguages
from services.kommo_sender.statuses import StatusReporter
from tests.integration.running_auth import CHANNEL, SECRET, running_auth
from tests.support import wait_for

SENT = events_pb2.DELIVERY_STATE_SENT
DELIVERED = events_pb2.DELIVERY_STATE_DELIVERED
READ = events_pb2.DELIVERY_STATE_READ
FAILED = events_pb2.DELIVERY_STATE_FAILED
T0 = 1_760_000_000_000  # ms


@dataclass
class Harness:
    state: AmojoState
    amojo: AmojoClient
    auth: auth_pb2_grpc.AuthServiceAsyncStub
    engine: AsyncEngine
    publisher: Publisher
    consumer: Consumer
    accounts: itertools.count[int]
    published: itertools.count[int]

    async def manager_message(self, language: str = "") -> tuple[str, str]:
        """A new account (in `language`, set as an operator would) where a client wrote and a manager
        answered: the answer's Kommo id and the account's scope."""
        number = next(self.accounts)
        account_id = f"52e591f7-c98f-4255-8495-{number:012d}"
        scope_id = (await self.amojo.connect(account_id, "test")).scope_id
        await InstallationStore(self.engine).save(account_id, scope_id, "test", domain=f"shop{number}.kommo.com")
        if language:
            request = auth_pb2.SetAccountLanguageRequest(account=f"shop{number}.kommo.com", language=language)
            await call(self.auth.SetAccountLanguage, request)
        conversation_id = f"conversation-{number}"
        first = NewMessage(
            msgid=f"m-{conversation_id}",
            conversation_id=conversation_id,
            sender=Participant(id=f"client-{number}", name="Ann"),
            message=MessageBody(type="text", text="hi"),
            timestamp_ms=T0,
        )
        await self.amojo.send_message(scope_id, first)
        hook = await self.state.send_manager_message(scope_id, conversation_id, "hello")
        return hook.kommo_msgid, scope_id

    async def report(
        self,
        msgid: str,
        scope_id: str,
        state: events_pb2.DeliveryState.ValueType,
        *,
        reason: str = "",
        args: Mapping[str, str] | None = None,
        code: int = 0,
        text: str = "",
        at_ms: int = T0,
    ) -> None:
        """Publish a report as messenger_sender or the router would (each with an id of its own, so
        JetStream's dedup window lets duplicates through to the reporter)."""
        message = events_pb2.DeliveryReport(
            kommo_message_id=msgid,
            scope_id=scope_id,
            state=state,
            reason=reason,
            reason_args=dict(args or {}),
            error_code=code,
            error_text=text,
            occurred_at_ms=at_ms,
        )
        await self.publisher.publish(Stream.REPORTS, msgid, message, f"report:{msgid}:{next(self.published)}")

    async def settled(self, msgid: str, reports: int) -> list[DeliveryStatus]:
        """What Kommo got for `msgid`, once all `reports` are in its history."""

        async def recorded() -> bool:
            return len(await self.history(msgid)) == reports

        await wait_for(recorded, timeout=30, what=f"{reports} reports recorded")
        return self.state.statuses(msgid)

    async def history(self, msgid: str) -> list[dict[str, Any]]:
        query = select(delivery_events).where(delivery_events.c.kommo_msgid == msgid).order_by(delivery_events.c.id)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]


@pytest.fixture(scope="module")
async def harness(module_database_url: str, module_nats_url: str) -> AsyncIterator[Harness]:
    app, state = create_amojo_emulator()
    state.register_channel(CHANNEL, SECRET, "http://127.0.0.1:1/hooks/:scope_id")
    engine = create_engine(module_database_url)
    nc = await nats.connect(module_nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    transport = httpx.ASGITransport(app=app)
    async with (
        running_auth(module_database_url) as auth,
        httpx.AsyncClient(transport=transport, base_url="http://amojo.test") as http,
    ):
        amojo = AmojoClient("http://amojo.test", CHANNEL, SECRET, http)
        reporter = StatusReporter(engine, amojo, AccountLanguages(auth))
        consumer = Consumer(js, consumer="kommo_sender", stream=Stream.REPORTS, partitions=1, handler=reporter.handle)
        await consumer.start()
        yield Harness(state, amojo, auth, engine, Publisher(js, 1), consumer, itertools.count(1), itertools.count(1))
        await consumer.stop()
    await nc.close()
    await engine.dispose()
    await state.aclose()


def late_failures() -> float:
    return REGISTRY.get_sample_value("bridge_status_late_failures_total", {"service": service_name()}) or 0.0


async def test_read_before_delivered_stays_read_whatever_the_timestamps(harness: Harness) -> None:
    msgid, scope_id = await harness.manager_message()
    await harness.report(msgid, scope_id, READ, at_ms=T0 + 2000)
    # late "delivered", even one claiming to be newer than the read: the rank decides, never the time
    await harness.report(msgid, scope_id, DELIVERED, at_ms=T0 + 9000)
    await harness.report(msgid, scope_id, SENT, at_ms=T0 + 9500)
    statuses = await harness.settled(msgid, 3)
    assert [s.status for s in statuses] == [2]
    history = await harness.history(msgid)
    assert [(e["state"], e["posted"]) for e in history] == [("read", True), ("delivered", False), ("sent", False)]
    assert history[0]["occurred_at"].timestamp() == (T0 + 2000) / 1000


async def test_duplicates_post_one_status_per_state(harness: Harness) -> None:
    msgid, scope_id = await harness.manager_message()
    for state in (SENT, DELIVERED, DELIVERED, READ, READ, DELIVERED):
        await harness.report(msgid, scope_id, state)
    statuses = await harness.settled(msgid, 6)
    assert [s.status for s in statuses] == [1, 2]
    assert [e["posted"] for e in await harness.history(msgid)] == [False, True, False, True, False, False]


async def test_a_failure_after_read_is_its_own_event_not_a_step_back(harness: Harness) -> None:
    msgid, scope_id = await harness.manager_message()
    before = late_failures()
    await harness.report(msgid, scope_id, DELIVERED)
    await harness.report(msgid, scope_id, READ)
    await harness.report(msgid, scope_id, FAILED, reason="client_blocked")
    statuses = await harness.settled(msgid, 3)
    assert [s.status for s in statuses] == [1, 2]  # Kommo still shows "read"
    late = (await harness.history(msgid))[-1]
    assert (late["state"], late["error_code"], late["reason"], late["posted"]) == (
        "failed",
        901,
        "client_blocked",
        False,
    )
    assert late_failures() == before + 1
    # a duplicate failure before any delivery is no "late" one
    other, other_scope = await harness.manager_message()
    await harness.report(other, other_scope, FAILED, reason="client_blocked")
    await harness.report(other, other_scope, FAILED, reason="client_blocked")
    assert [(s.status, s.error_code) for s in await harness.settled(other, 2)] == [(-1, 901)]
    assert late_failures() == before + 1


async def test_a_retry_that_succeeds_moves_a_failure_forward(harness: Harness) -> None:
    msgid, scope_id = await harness.manager_message()
    await harness.report(msgid, scope_id, FAILED, reason="platform_unavailable", args={"platform": "telegram"})
    await harness.report(msgid, scope_id, DELIVERED)
    await harness.report(msgid, scope_id, FAILED, reason="platform_unavailable", args={"platform": "telegram"})
    statuses = await harness.settled(msgid, 3)
    assert [(s.status, s.error_code) for s in statuses] == [(-1, 903), (1, 0)]
    assert statuses[0].error == render("platform_unavailable", {"platform": "telegram"}, "en")
    assert statuses[0].body["delivery_status"] == -1 and statuses[0].body["msgid"] == msgid


@pytest.mark.parametrize("language", ["es", "pt"])
async def test_failures_read_in_the_accounts_language(harness: Harness, language: str) -> None:
    blocked, scope_id = await harness.manager_message(language)
    await harness.report(blocked, scope_id, FAILED, reason="client_blocked", text="english fallback")
    [status] = await harness.settled(blocked, 1)
    assert (status.status, status.error_code) == (-1, 901)
    assert status.error == REASONS["client_blocked"].template(language)

    args = {"name": "price.pdf", "size": str(60 * 1024 * 1024), "limit": str(50 * 1024 * 1024), "platform": "telegram"}
    too_large, scope_id = await harness.manager_message(language)
    await harness.report(too_large, scope_id, FAILED, reason="file_too_large", args=args)
    [status] = await harness.settled(too_large, 1)
    assert status.error_code == 905
    assert status.error == render("file_too_large", args, language)
    assert "price.pdf (60 MB)" in status.error and "(50 MB)" in status.error

    # A reason this bridge version does not know (a newer reporter): the reporter's code and text.
    unknown, scope_id = await harness.manager_message(language)
    await harness.report(unknown, scope_id, FAILED, reason="added_later", code=903, text="Something new happened.")
    [status] = await harness.settled(unknown, 1)
    assert (status.error_code, status.error) == (903, "Something new happened.")


async def test_a_refused_edit_is_posted_after_delivery_and_is_the_last_word(harness: Harness) -> None:
    msgid, scope_id = await harness.manager_message()
    await harness.report(msgid, scope_id, DELIVERED)
    args = {"platform": "whatsapp"}
    refused = events_pb2.DeliveryReport(
        kommo_message_id=msgid,
        scope_id=scope_id,
        state=FAILED,
        reason="edit_unsupported",
        reason_args=args,
        edit_refused=True,
    )
    await harness.publisher.publish(Stream.REPORTS, msgid, refused, f"report:{msgid}:edit-refused")
    await harness.report(msgid, scope_id, READ)  # the client reads the original text: recorded only
    statuses = await harness.settled(msgid, 3)
    assert [(s.status, s.error_code) for s in statuses] == [(1, 0), (-1, 905)]
    assert statuses[1].error == render("edit_unsupported", args, "en")
    assert [(e["state"], e["posted"]) for e in await harness.history(msgid)] == [
        ("delivered", True),
        ("failed", True),
        ("read", False),
    ]
