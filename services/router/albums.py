"""A manager's album: Kommo posts one hook per attachment, sharing `media_group_id` (reference
kommo-chats-api.md §9), and the client should get one album, in order, each message with its own status.

Each item is routed like any manager message (recorded, checked, its quote resolved), but its command is
kept in `album_items` instead of being published, and the hook is acked: the item is durable before the
ack. A flusher publishes an album once no item of it came for ALBUM_WINDOW_S, or it has ALBUM_MAX_ITEMS:
ONE command for messenger_sender carrying every item (a lone item goes as a normal message), with a
Nats-Msg-Id made of the album and its items, then marks them flushed. Publishing again after a crash
between the two is harmless: JetStream drops the duplicate, and messenger_sender's claims never send an
item twice.

Nothing of the conversation may overtake a pending album, so while one is pending the conversation's
other Kommo events (messages, reactions, edits, another album) wait in an ordered lot (libs/bus/parking.py,
keyed by conversation, as services/router/pausing.py holds paused channels) and are released, in order,
once it is flushed. A release stops after an album's items, which make the album pending again; the next
release waits until everything released before is done. Typing is news only now: it is dropped, never
held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import Row, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.bus import Delivery, Publisher, Stream
from libs.bus.parking import RELEASED_HEADER, LotTable, ParkingLot
from libs.db.schema import album_items, held_outbound

log = logging.getLogger(__name__)

ALBUM_WINDOW_S: Final = 1.0
"""An album is complete once no item of it came for this long: Kommo posts an album's hooks back to back."""
ALBUM_MAX_ITEMS: Final = 10
"""The most a messenger shows in one album (Telegram); a larger one goes as several."""
FLUSH_POLL_S: Final = 0.25
"""How often the flusher looks for complete albums (items recorded by other replicas included)."""

OUTBOUND_LOT: Final = LotTable(held_outbound, "conversation_id", Stream.OUTBOUND)
_HOOK_TYPES: Final = frozenset({"", events_pb2.KommoOutboundMessage.DESCRIPTOR.full_name})
_pending = album_items.c.flushed_at.is_(None)


def _album_of(row: Row[Any]) -> str:
    """The album a parked message is an item of ("" for any other event)."""
    if row.message_type not in _HOOK_TYPES:
        return ""
    return events_pb2.KommoOutboundMessage.FromString(row.payload).media_group_id


class AlbumGate:
    """A conversation is held while an album of it is pending; its parked events go once the album is
    flushed and everything released before is done."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def held(self, conversation_id: str) -> bool:
        query = select(exists().where(album_items.c.conversation_id == conversation_id, _pending))
        async with self._engine.connect() as conn:
            return bool((await conn.execute(query)).scalar())

    def forget(self, conversation_id: str) -> None:
        """Nothing cached: every question reads the stored state."""

    async def ready(self, conversation_id: str) -> bool:
        pending = exists().where(album_items.c.conversation_id == conversation_id, _pending)
        released = exists().where(
            held_outbound.c.conversation_id == conversation_id, held_outbound.c.released_at.is_not(None)
        )
        async with self._engine.connect() as conn:
            return not (await conn.execute(select(pending | released))).scalar()


class AlbumLot(ParkingLot):
    """The lot of conversations with a pending album (table `held_outbound`, re-published to the outbound
    stream)."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher) -> None:
        super().__init__(
            engine,
            publisher,
            AlbumGate(engine),
            OUTBOUND_LOT,
            why="Kommo event held behind an album",
            why_level=logging.INFO,
        )

    async def must_wait(self, holder: str) -> bool:
        """One statement per event: an album of the conversation is pending, or events of it wait."""
        pending = exists().where(album_items.c.conversation_id == holder, _pending)
        waiting = exists().where(held_outbound.c.conversation_id == holder)
        async with self._engine.connect() as conn:
            return bool((await conn.execute(select(pending | waiting))).scalar())

    async def through(
        self,
        delivery: Delivery,
        holder: str,
        key: str,
        msg_id: str,
        work: Callable[[], Awaitable[None]],
        *,
        album: str = "",
    ) -> None:
        """As ParkingLot.through; an item of `album` joins its pending album unless events of the
        conversation wait, or another album of it is pending."""
        if album and RELEASED_HEADER not in delivery.headers:
            other = exists().where(
                album_items.c.conversation_id == holder, _pending, album_items.c.media_group_id != album
            )
            waiting = exists().where(held_outbound.c.conversation_id == holder)
            async with self._engine.connect() as conn:
                must_wait = bool((await conn.execute(select(other | waiting))).scalar())
            if not must_wait:
                await work()
                return
        await super().through(delivery, holder, key, msg_id, work)

    def released_together(self, rows: Sequence[Row[Any]]) -> Sequence[Row[Any]]:
        """Up to the end of the first album among them: its items make the album pending again, and
        what came after it must wait for it."""
        album = ""
        for index, row in enumerate(rows):
            this = _album_of(row)
            if album and this != album:
                return rows[:index]
            album = album or this
        return rows


class Albums:
    """Albums being gathered: their items kept until complete, then flushed as one send (see the module)."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher, *, poll_s: float = FLUSH_POLL_S) -> None:
        self._engine = engine
        self._publisher = publisher
        self._poll = poll_s
        self.lot = AlbumLot(engine, publisher)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: events_pb2.DeliverToMessenger) -> None:
        """Keep an item's command until its album is flushed (once: a redelivered hook changes nothing)."""
        statement = (
            insert(album_items)
            .values(
                conversation_id=item.conversation_id,
                media_group_id=item.media_group_id,
                kommo_message_id=item.kommo_message_id,
                command=item.SerializeToString(),
            )
            .on_conflict_do_nothing(index_elements=[album_items.c.kommo_message_id])
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        self._wake.set()  # a full album goes at once

    def start(self) -> None:
        self.lot.start()
        self._task = asyncio.create_task(self._run(), name="album-flusher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.lot.stop()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await self.flush_due():
                    self.lot.wake()
            except Exception as exc:
                log.warning("flushing albums failed; will retry", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def flush_due(self) -> int:
        """Flush every complete album; returns how many were flushed."""
        quiet_s = func.extract("epoch", func.now() - func.max(album_items.c.created_at))
        complete = (quiet_s >= ALBUM_WINDOW_S) | (func.count() >= ALBUM_MAX_ITEMS)
        query = select(album_items.c.conversation_id).where(_pending).group_by(album_items.c.conversation_id)
        async with self._engine.connect() as conn:
            conversations = [row[0] for row in (await conn.execute(query.having(complete))).all()]
        flushed = 0
        for conversation_id in conversations:
            flushed += await self._flush(conversation_id)
        return flushed

    async def _flush(self, conversation_id: str) -> int:
        """Publish the conversation's pending album (its first ALBUM_MAX_ITEMS items), at most one replica
        at a time, unless more of it is still on its way out of the lot."""
        async with self._engine.begin() as conn:
            lock = text("SELECT pg_try_advisory_xact_lock(hashtext('album_items'), hashtext(:conversation))")
            if not (await conn.execute(lock, {"conversation": conversation_id})).scalar():
                return 0
            if await self._releasing(conn, conversation_id):
                return 0
            rows = (
                await conn.execute(
                    select(album_items.c.id, album_items.c.command, album_items.c.created_at, func.now().label("now"))
                    .where(album_items.c.conversation_id == conversation_id, _pending)
                    .order_by(album_items.c.id)
                    .with_for_update()
                )
            ).all()
            if not rows:
                return 0
            quiet_s = (rows[-1].now - max(row.created_at for row in rows)).total_seconds()
            if quiet_s < ALBUM_WINDOW_S and len(rows) < ALBUM_MAX_ITEMS:
                return 0
            batch = rows[:ALBUM_MAX_ITEMS]
            await self._publish([events_pb2.DeliverToMessenger.FromString(row.command) for row in batch])
            flushed = album_items.c.id.in_([row.id for row in batch])
            await conn.execute(update(album_items).where(flushed).values(flushed_at=func.now()))
        return 1

    @staticmethod
    async def _releasing(conn: AsyncConnection, conversation_id: str) -> bool:
        """Events of the conversation released from the lot are not done yet: more items of the album may
        be among them."""
        released = exists().where(
            held_outbound.c.conversation_id == conversation_id, held_outbound.c.released_at.is_not(None)
        )
        return bool((await conn.execute(select(released))).scalar())

    async def _publish(self, items: list[events_pb2.DeliverToMessenger]) -> None:
        first = items[0]
        if len(items) == 1:
            command, msg_id = first, f"messenger:{first.kommo_message_id}"  # as a message of its own
        else:
            command = events_pb2.DeliverToMessenger(
                scope_id=first.scope_id,
                platform=first.platform,
                connection_id=first.connection_id,
                chat_id=first.chat_id,
                conversation_id=first.conversation_id,
                # An album quotes as its first message does.
                reply_to_platform_message_id=first.reply_to_platform_message_id,
                media_group_id=first.media_group_id,
                album=[
                    events_pb2.AlbumItem(kommo_message_id=item.kommo_message_id, content=item.content) for item in items
                ],
            )
            msg_id = f"messenger-album:{first.media_group_id}:{first.kommo_message_id}:{len(items)}"
        await self._publisher.publish(Stream.MESSENGER_COMMANDS, first.conversation_id, command, msg_id)
        log.info(
            "album flushed",
            extra={
                "conversation_id": first.conversation_id,
                "media_group_id": first.media_group_id,
                "items": len(items),
            },
        )
