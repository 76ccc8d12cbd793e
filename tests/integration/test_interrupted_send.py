"""A messenger send cut off mid-call (the sender SIGKILLed while Telegram answers) is never repeated:
Telegram takes no idempotency key, so the redelivered command is reported to Kommo as unconfirmed
(903, with the reason) instead of risking the client seeing the message twice."""

from __future__ import annotations

import httpx
import nats
from kommo_bridge.auth.v1 import auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.bus import Delivery, Publisher, Stream, ensure_streams
from libs.config import load_settings
from libs.db import create_engine
from libs.rpc import open_channel
from libs.status_texts import INTERRUPTED_SEND, render
from services.messenger_sender.outcomes import OutcomeStore
from services.messenger_sender.sender import MessengerSender


def no_platform_call(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the platform was called again: {request.url.path}")


async def test_a_send_cut_off_mid_call_is_reported_unconfirmed_and_never_repeated(
    database_url: str, nats_url: str
) -> None:
    engine = create_engine(database_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    outcomes = OutcomeStore(engine)
    auth_channel = open_channel("127.0.0.1:9", "unused")  # never reached on this path
    async with httpx.AsyncClient(transport=httpx.MockTransport(no_platform_call)) as http:
        sender = MessengerSender(
            load_settings(), outcomes, auth_pb2_grpc.AuthServiceStub(auth_channel), Publisher(js, 1), http
        )
        # A sender claimed the send and died during the platform call.
        assert await outcomes.claim("kommo-1", "conn-1") is None
        command = events_pb2.DeliverToMessenger(
            kommo_message_id="kommo-1",
            scope_id="scope",
            platform=content_pb2.PLATFORM_TELEGRAM,
            connection_id="conn-1",
            chat_id="42",
            content=content_pb2.Content(text=content_pb2.Text(body="hello")),
        )
        redelivered = Delivery(subject="messenger.p0", data=command.SerializeToString(), attempt=2)
        await sender.handle(redelivered)
        await sender.handle(redelivered)  # and again: still only reported, never sent

    outcome = await outcomes.find("kommo-1")
    assert outcome is not None and (outcome.outcome, outcome.error_code) == ("failed", 903)
    reports = await js.pull_subscribe(f"{Stream.REPORTS.prefix}.>", stream=Stream.REPORTS.stream_name)
    received = [events_pb2.DeliveryReport.FromString(m.data) for m in await reports.fetch(10, timeout=2)]
    assert {(r.kommo_message_id, r.state, r.error_code, r.reason, r.error_text) for r in received} == {
        ("kommo-1", events_pb2.DELIVERY_STATE_FAILED, 903, INTERRUPTED_SEND, render(INTERRUPTED_SEND, {}, "en"))
    }

    # A send the platform refused for now is released, so its retry may send it.
    assert await outcomes.claim("kommo-2", "conn-1") is None
    await outcomes.release("kommo-2")
    assert await outcomes.claim("kommo-2", "conn-1") is None
    await auth_channel.close(None)
    await nc.close()
    await engine.dispose()
