"""The router's albums (services/router/albums.py) against real NATS and PostgreSQL: an album is flushed
once complete (quiet for ALBUM_WINDOW_S, or ten items) as one command for messenger_sender, once, however
often the flush runs again; a lone item goes as a normal message; and while an album is pending, the
conversation's other events wait in order behind it, released in waves that never overtake an album."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import KEY_HEADER, TYPE_HEADER, Delivery, Publisher, Stream, connect, ensure_streams
from libs.bus.parking import RELEASED_HEADER
from libs.bus.publisher import MSG_ID_HEADER
from libs.db import create_engine
from libs.db.schema import album_items, held_outbound
from services.router.albums import ALBUM_MAX_ITEMS, ALBUM_WINDOW_S, Albums

CONVERSATION, OTHER = "conv-1", "conv-2"


@dataclass
class Bus:
    nc: NatsClient
    js: JetStreamContext
    engine: AsyncEngine
    albums: Albums

    async def published(self, stream: Stream) -> list[tuple[dict[str, str], bytes]]:
        """Every message in `stream`, in order: its headers and payload."""
        subscription = await self.js.pull_subscribe(f"{stream.prefix}.>", stream=stream.stream_name)
        messages: list[tuple[dict[str, str], bytes]] = []
        try:
            while True:
                batch = await subscription.fetch(100, timeout=1)
                messages.extend((dict(m.headers or {}), m.data) for m in batch)
        except TimeoutError:
            pass
        await subscription.unsubscribe()
        return messages

    async def age_album(self, conversation_id: str = CONVERSATION) -> None:
        """Make the conversation's pending items older than the window (as if no item came since)."""
        older = func.now() - text(f"interval '{ALBUM_WINDOW_S + 1} seconds'")
        async with self.engine.begin() as conn:
            await conn.execute(
                update(album_items).where(album_items.c.conversation_id == conversation_id).values(created_at=older)
            )


@pytest.fixture
async def bus(nats_url: str, database_url: str) -> AsyncIterator[Bus]:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    engine = create_engine(database_url)
    yield Bus(nc, js, engine, Albums(engine, Publisher(js, partitions=2)))
    await nc.close()
    await engine.dispose()


def item(n: int, album: str = "album-1", conversation_id: str = CONVERSATION) -> events_pb2.DeliverToMessenger:
    """The command an album item would go with alone."""
    return events_pb2.DeliverToMessenger(
        kommo_message_id=f"kommo-{album}-{n}",
        scope_id="scope",
        platform=content_pb2.PLATFORM_TELEGRAM,
        connection_id="connection",
        chat_id="42",
        conversation_id=conversation_id,
        content=content_pb2.Content(
            media=content_pb2.Media(kind=content_pb2.MEDIA_KIND_PICTURE, file_ref=f"https://kommo/{n}.jpg")
        ),
        reply_to_platform_message_id="7" if n == 1 else "",
        media_group_id=album,
    )


async def test_an_album_goes_once_complete_as_one_command_and_only_once(bus: Bus) -> None:
    for n in (1, 2, 3):
        await bus.albums.add(item(n))
    await bus.albums.add(item(2))  # a redelivered hook

    assert await bus.albums.flush_due() == 0  # items are still coming
    await bus.age_album()
    assert await bus.albums.flush_due() == 1

    [(headers, payload)] = await bus.published(Stream.MESSENGER_COMMANDS)
    command = events_pb2.DeliverToMessenger.FromString(payload)
    assert [i.kommo_message_id for i in command.album] == ["kommo-album-1-1", "kommo-album-1-2", "kommo-album-1-3"]
    assert [i.content.media.file_ref for i in command.album] == [f"https://kommo/{n}.jpg" for n in (1, 2, 3)]
    assert (command.conversation_id, command.chat_id, command.media_group_id) == (CONVERSATION, "42", "album-1")
    assert command.reply_to_platform_message_id == "7" and not command.kommo_message_id
    assert headers[MSG_ID_HEADER] == "messenger-album:album-1:kommo-album-1-1:3"
    assert headers[KEY_HEADER] == CONVERSATION
    assert await bus.albums.flush_due() == 0

    # A crash between the publish and marking the items flushed: the same command again, dropped by JetStream.
    async with bus.engine.begin() as conn:
        await conn.execute(update(album_items).values(flushed_at=None))
    assert await bus.albums.flush_due() == 1
    assert len(await bus.published(Stream.MESSENGER_COMMANDS)) == 1


async def test_ten_items_go_at_once_and_a_lone_item_as_a_normal_message(bus: Bus) -> None:
    for n in range(1, ALBUM_MAX_ITEMS + 2):
        await bus.albums.add(item(n))

    assert await bus.albums.flush_due() == 1  # ten at once, without waiting
    assert await bus.albums.flush_due() == 0  # the eleventh may still get company
    await bus.age_album()
    assert await bus.albums.flush_due() == 1

    (_, full), (headers, lone) = await bus.published(Stream.MESSENGER_COMMANDS)
    assert len(events_pb2.DeliverToMessenger.FromString(full).album) == ALBUM_MAX_ITEMS
    alone = events_pb2.DeliverToMessenger.FromString(lone)
    assert (alone.kommo_message_id, len(alone.album)) == ("kommo-album-1-11", 0)
    assert alone.content.media.file_ref == "https://kommo/11.jpg"
    assert headers[MSG_ID_HEADER] == "messenger:kommo-album-1-11"


def hook(name: str, album: str = "") -> Delivery:
    """A Kommo message hook of the conversation, as the router's consumer gets it."""
    event = events_pb2.KommoOutboundMessage(kommo_message_id=name, conversation_id=CONVERSATION, media_group_id=album)
    headers = {TYPE_HEADER: event.DESCRIPTOR.full_name, MSG_ID_HEADER: f"hook:{name}", KEY_HEADER: CONVERSATION}
    return Delivery(subject="outbound.p0", data=event.SerializeToString(), headers=headers)


async def test_events_wait_behind_a_pending_album_and_are_released_without_overtaking_one(bus: Bus) -> None:
    lot, done = bus.albums.lot, []

    async def route(delivery: Delivery) -> None:
        event = delivery.decode(events_pb2.KommoOutboundMessage)

        async def work() -> None:
            done.append(event.kommo_message_id)
            if event.media_group_id:
                await bus.albums.add(item(len(done), event.media_group_id))

        await lot.through(
            delivery, CONVERSATION, CONVERSATION, f"hook:{event.kommo_message_id}", work, album=event.media_group_id
        )

    for delivery in (hook("a1", "A"), hook("a2", "A"), hook("text"), hook("b1", "B"), hook("b2", "B"), hook("after")):
        await route(delivery)
    assert done == ["a1", "a2"]  # album A's items joined it; everything after waits
    assert await lot.must_wait(CONVERSATION) and not await lot.must_wait(OTHER)
    assert await lot.release_ready() == 0  # album A is pending

    await bus.age_album()
    assert await bus.albums.flush_due() == 1
    assert await lot.release_ready() == 3  # up to album B's end: "after" must wait for B
    released = await bus.published(Stream.OUTBOUND)
    assert [events_pb2.KommoOutboundMessage.FromString(p).kommo_message_id for _, p in released] == ["text", "b1", "b2"]
    assert await lot.release_ready() == 0  # what was released is not done yet

    for headers, payload in released:
        await route(Delivery(subject="outbound.p0", data=payload, headers=headers))
    assert done == ["a1", "a2", "text", "b1", "b2"]
    assert await lot.release_ready() == 0  # album B is pending now
    await bus.age_album()
    assert await bus.albums.flush_due() == 1
    assert await lot.release_ready() == 1
    [(headers, payload)] = (await bus.published(Stream.OUTBOUND))[3:]
    assert RELEASED_HEADER in headers
    await route(Delivery(subject="outbound.p0", data=payload, headers=headers))
    assert done == ["a1", "a2", "text", "b1", "b2", "after"]
    async with bus.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(held_outbound))).scalar() == 0
    commands = [events_pb2.DeliverToMessenger.FromString(p) for _, p in await bus.published(Stream.MESSENGER_COMMANDS)]
    assert [[i.kommo_message_id for i in c.album] for c in commands] == [
        ["kommo-A-1", "kommo-A-2"],
        ["kommo-B-4", "kommo-B-5"],
    ]
