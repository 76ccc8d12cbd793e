"""messenger_sender's albums against real NATS, PostgreSQL and the auth service, with the Kommo and Telegram
emulators on real sockets: an album goes in the runs Telegram groups, each message claimed before its
call, settled and reported on its own; a redelivered album sends nothing twice; a run cut off mid-call is
reported unconfirmed while the rest still goes; a run refused for now is retried alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kommo_bridge.auth.v1 import auth_pb2
from kommo_bridge.events.v1 import content_pb2, events_pb2
from nats.js import JetStreamContext

from libs.bus import Delivery, Publisher, Stream, connect, ensure_streams
from libs.config import load_settings
from libs.db import create_engine
from libs.errors import RetryableError
from libs.kommo.emulator import create_amojo_emulator
from libs.messengers.telegram.emulator import TelegramState, create_telegram_emulator
from libs.rpc import call
from libs.secret_names import MESSENGER_TOKEN
from libs.status_texts import INTERRUPTED_SEND
from services.messenger_sender.outcomes import OutcomeStore
from services.messenger_sender.sender import MessengerSender
from tests.integration.running_auth import running_auth
from tests.unit.test_telegram_media_send import serving

CLIENT: dict[str, Any] = {"id": 740001, "first_name": "Olga"}
CONNECTION = "connection-1"


@dataclass
class World:
    sender: MessengerSender
    outcomes: OutcomeStore
    telegram: TelegramState
    js: JetStreamContext
    album: events_pb2.DeliverToMessenger
    http: httpx.AsyncClient
    kommo_url: str
    # The Kommo attachment id of each file, by name.
    attachments: dict[str, str]

    async def deliver(self, attempt: int = 1) -> None:
        await self.sender.handle(Delivery(subject="messenger.p0", data=self.album.SerializeToString(), attempt=attempt))

    def calls(self) -> list[str]:
        return [s.method for s in self.telegram.sent_messages()]

    async def reports(self) -> dict[str, events_pb2.DeliveryReport]:
        subscription = await self.js.pull_subscribe(f"{Stream.REPORTS.prefix}.>", stream=Stream.REPORTS.stream_name)
        found: dict[str, events_pb2.DeliveryReport] = {}
        try:
            while True:
                for message in await subscription.fetch(100, timeout=1):
                    report = events_pb2.DeliveryReport.FromString(message.data)
                    found[report.kommo_message_id] = report
        except TimeoutError:
            pass
        await subscription.unsubscribe()
        return found


@pytest.fixture
async def world(database_url: str, nats_url: str) -> AsyncIterator[World]:
    amojo_app, amojo = create_amojo_emulator()
    telegram_app, telegram = create_telegram_emulator()
    bot = telegram.create_bot("album_sender_bot", "Albums")
    await telegram.client_message(bot.id, CLIENT, text="hi")
    engine = create_engine(database_url)
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    async with (
        running_auth(database_url) as auth,
        serving(amojo_app) as kommo_url,
        serving(telegram_app) as telegram_url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        await call(auth.PutSecret, auth_pb2.PutSecretRequest(owner=CONNECTION, kind=MESSENGER_TOKEN, value=bot.token))
        items, attachments = [], {}
        for name, kind in (("a.jpg", "picture"), ("b.jpg", "picture"), ("c.pdf", "file"), ("d.pdf", "file")):
            stored = await http.post(f"{kommo_url}/_emulator/attachments", params={"name": name}, content=b"x" * 500)
            attachments[name] = stored.json()["id"]
            media = content_pb2.Media(
                kind=content_pb2.MEDIA_KIND_PICTURE if kind == "picture" else content_pb2.MEDIA_KIND_FILE,
                file_ref=stored.json()["url"],
                file_name=name,
                size=500,
            )
            items.append(
                events_pb2.AlbumItem(kommo_message_id=f"kommo-{name}", content=content_pb2.Content(media=media))
            )
        album = events_pb2.DeliverToMessenger(
            scope_id="scope",
            platform=content_pb2.PLATFORM_TELEGRAM,
            connection_id=CONNECTION,
            chat_id=str(CLIENT["id"]),
            conversation_id="conversation-1",
            media_group_id="album-1",
            album=items,
        )
        outcomes = OutcomeStore(engine)
        sender = MessengerSender(load_settings(telegram_api_url=telegram_url), outcomes, auth, Publisher(js, 1), http)
        yield World(sender, outcomes, telegram, js, album, http, kommo_url, attachments)
    await nc.close()
    await engine.dispose()
    await amojo.aclose()
    await telegram.aclose()


async def test_an_album_goes_in_runs_and_each_message_is_reported_once(world: World) -> None:
    await world.deliver()
    await world.deliver(attempt=2)  # redelivered after it was sent: nothing goes twice

    # Pictures together, documents together: two albums.
    assert world.calls() == ["sendMediaGroup"] * 4
    groups = [s.message["media_group_id"] for s in world.telegram.sent_messages()]
    assert groups[0] == groups[1] != groups[2] == groups[3]
    reports = await world.reports()
    assert [(k, r.state, r.platform_message_id, r.conversation_id) for k, r in sorted(reports.items())] == [
        ("kommo-a.jpg", events_pb2.DELIVERY_STATE_DELIVERED, "2", "conversation-1"),
        ("kommo-b.jpg", events_pb2.DELIVERY_STATE_DELIVERED, "3", "conversation-1"),
        ("kommo-c.pdf", events_pb2.DELIVERY_STATE_DELIVERED, "4", "conversation-1"),
        ("kommo-d.pdf", events_pb2.DELIVERY_STATE_DELIVERED, "5", "conversation-1"),
    ]
    for kommo_id in reports:
        outcome = await world.outcomes.find(kommo_id)
        assert outcome is not None and outcome.outcome == "sent"


async def test_a_run_cut_off_mid_call_is_unconfirmed_and_the_rest_still_goes(world: World) -> None:
    # A sender claimed the pictures' run and died during its call: the documents were never claimed.
    for kommo_id in ("kommo-a.jpg", "kommo-b.jpg"):
        assert await world.outcomes.claim(kommo_id, CONNECTION) is None

    await world.deliver(attempt=2)

    assert world.calls() == ["sendMediaGroup"] * 2  # the documents only
    assert [s.message["document"]["file_name"] for s in world.telegram.sent_messages()] == ["c.pdf", "d.pdf"]
    reports = await world.reports()
    assert {k: r.state for k, r in reports.items()} == {
        "kommo-a.jpg": events_pb2.DELIVERY_STATE_FAILED,
        "kommo-b.jpg": events_pb2.DELIVERY_STATE_FAILED,
        "kommo-c.pdf": events_pb2.DELIVERY_STATE_DELIVERED,
        "kommo-d.pdf": events_pb2.DELIVERY_STATE_DELIVERED,
    }
    assert reports["kommo-a.jpg"].reason == reports["kommo-b.jpg"].reason == INTERRUPTED_SEND


async def test_a_run_failing_for_now_is_retried_without_sending_the_others_again(world: World) -> None:
    # Kommo fails for now to serve a document: to Telegram fetching it, and to the bridge uploading it.
    fault = {"path": f"/attachments/{world.attachments['c.pdf']}/", "status": 503, "times": 2}
    (await world.http.post(f"{world.kommo_url}/_emulator/faults", json=fault)).raise_for_status()

    with pytest.raises(RetryableError):
        await world.deliver()
    assert world.calls() == ["sendMediaGroup"] * 2
    assert await world.outcomes.find("kommo-c.pdf") is None  # released: the retry may send it

    await world.deliver(attempt=2)

    assert world.calls() == ["sendMediaGroup"] * 4
    reports = await world.reports()
    assert all(r.state == events_pb2.DELIVERY_STATE_DELIVERED for r in reports.values()) and len(reports) == 4
