"""The parking lot (libs/bus/parking.py) against real NATS and PostgreSQL: a held holder's messages wait
in arrival order, other holders' messages pass meanwhile, and once the gate opens they are released in
that order, with messages that arrive during the release queued behind them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable

from sqlalchemy import func, select

from libs.bus import KEY_HEADER, Consumer, Delivery, Publisher, Stream, connect, ensure_streams
from libs.bus.parking import LotTable, ParkingLot
from libs.db import create_engine
from libs.db.schema import held_inbound
from tests.support import wait_for


class Switch:
    """A gate an operator flips: the holders in `paused` wait."""

    def __init__(self) -> None:
        self.paused: set[str] = set()

    async def held(self, holder: str) -> bool:
        return holder in self.paused

    def forget(self, holder: str) -> None:
        """Nothing cached."""

    async def ready(self, holder: str) -> bool:
        return holder not in self.paused


async def test_held_messages_wait_in_order_and_nothing_overtakes_them(nats_url: str, database_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    publisher = Publisher(js, partitions=4)
    engine = create_engine(database_url)
    gate = Switch()
    lot = ParkingLot(engine, publisher, gate, LotTable(held_inbound, "connection_id", Stream.INBOUND), interval_s=0.2)
    done: dict[str, list[str]] = defaultdict(list)

    async def handler(delivery: Delivery) -> None:
        holder, _, n = delivery.data.decode().partition("/")
        key = delivery.headers[KEY_HEADER]

        async def work() -> None:
            done[key].append(n)

        await lot.through(delivery, holder, key, f"{key}/{n}", work)

    consumer = Consumer(js, consumer="parking", stream=Stream.INBOUND, partitions=4, handler=handler)
    await consumer.start()
    lot.start()

    async def send(holder: str, chat: str, n: int) -> None:
        key = f"{holder}:{chat}"
        await publisher.publish(Stream.INBOUND, key, f"{holder}/{n}".encode(), f"{key}/{n}")

    async def parked() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(held_inbound))).scalar() or 0)

    gate.paused.add("paused")
    for n in range(5):
        for chat in ("a", "b"):
            await send("paused", chat, n)
            await send("running", chat, n)
    await wait_for(lambda: len(done["running:a"]) == 5 and len(done["running:b"]) == 5, what="the other holder's")
    await wait_for(lambda: _equals(parked(), 10), what="every held message parked")
    assert not done["paused:a"] and not done["paused:b"]
    assert await lot.waiting(["paused", "running"]) == {"paused": 10}

    gate.paused.discard("paused")
    lot.wake()
    for n in range(5, 8):  # arriving while the lot is being released
        for chat in ("a", "b"):
            await send("paused", chat, n)
    await wait_for(lambda: len(done["paused:a"]) == 8 and len(done["paused:b"]) == 8, what="every message done")
    await wait_for(lambda: _equals(parked(), 0), what="the lot empty")
    assert done["paused:a"] == done["paused:b"] == [str(n) for n in range(8)], dict(done)
    await lot.stop()
    await consumer.stop()
    await nc.close()
    await engine.dispose()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
