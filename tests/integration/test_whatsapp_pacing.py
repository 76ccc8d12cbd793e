"""A number's messages are paced by limits every messenger_sender replica shares (PostgreSQL), so the Cloud
API emulator, which refuses what Meta refuses (130429 beyond the number's rate, 131056 beyond the pair
rate), refuses none of them; a refusal anyway holds back every replica for the limit it names only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from kommo_bridge.events.v1 import content_pb2
from sqlalchemy import func, select

from libs.config import load_settings
from libs.db import create_engine
from libs.db.schema import rate_limits
from libs.errors import RateLimitedError
from libs.messengers.whatsapp.adapter import WhatsAppAdapter
from libs.messengers.whatsapp.pacing import PAIR_RATE_REFUSED, THROUGHPUT_REFUSED, SendPacing, SendRates
from libs.ratelimit import SharedRateLimiter
from tests.unit.whatsapp_support import World, whatsapp_world

CLIENTS = [f"3460055500{i}" for i in range(8)]


@dataclass(frozen=True)
class Case:
    """Limits applied alike in the emulator and the bridge, and the traffic sent under them."""

    number_rate: float
    pair_rate: float
    pair_burst: int
    clients: int
    per_client: int


# Meta's own: 80/s; each client's 30 within the pair burst of 45, so the number's rate is what binds.
META = Case(80.0, 1 / 6, 45, clients=8, per_client=30)
# Tighter than Meta's, so both limits bite within seconds on any machine.
TIGHT = Case(20.0, 5.0, 3, clients=3, per_client=15)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with whatsapp_world() as world:
        for index, wa_id in enumerate(CLIENTS):
            world.wa.add_client(f"Client {index}", wa_id=wa_id)
            await world.client_says(wa_id, {"type": "text", "text": {"body": "hello"}})
        yield world


async def limits_of(world: World, case: Case) -> None:
    limits = {"per_number_per_s": case.number_rate, "pair_per_s": case.pair_rate, "pair_burst": case.pair_burst}
    await world.control("PUT", "limits", json=limits)


def text(body: str) -> content_pb2.Content:
    return content_pb2.Content(text=content_pb2.Text(body=body))


def paced_adapter(limiter: SharedRateLimiter, case: Case) -> WhatsAppAdapter:
    settings = load_settings(
        whatsapp_send_rate=case.number_rate, whatsapp_pair_rate=case.pair_rate, whatsapp_pair_burst=case.pair_burst
    )
    return WhatsAppAdapter().paced(limiter, settings)


@pytest.mark.parametrize("case", [META, TIGHT], ids=["meta-80-per-s", "tight"])
async def test_three_replicas_sending_to_one_number_are_never_refused(
    world: World, database_url: str, case: Case
) -> None:
    await limits_of(world, case)
    engines = [create_engine(database_url, pool_size=case.clients) for _ in range(3)]
    adapters = [paced_adapter(SharedRateLimiter(engine), case) for engine in engines]
    clients = CLIENTS[: case.clients]

    async def replica(index: int, adapter: WhatsAppAdapter) -> None:
        # Each replica sends a share of every client's messages, one after another per client, all at once.
        async def to_client(wa_id: str) -> None:
            for n in range(index, case.per_client, len(adapters)):
                await adapter.send(world.http, world.graph_url, world.credential, wa_id, text(f"{wa_id}:{n}"))

        await asyncio.gather(*(to_client(wa_id) for wa_id in clients))

    await asyncio.gather(*(replica(index, adapter) for index, adapter in enumerate(adapters)))

    sent = sorted(m.body["text"]["body"] for m in world.wa.sent if m.phone_number_id == world.phone_number_id)
    assert sent == sorted(f"{wa_id}:{n}" for wa_id in clients for n in range(case.per_client))
    assert (await world.control("GET", "limits"))["refused"] == {}  # neither 130429 nor 131056, ever
    for engine in engines:
        await engine.dispose()


async def seconds_held(database_url: str, key: str) -> float:
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(rate_limits.c.next_at, func.clock_timestamp()).where(rate_limits.c.key == key))
        ).one()
    await engine.dispose()
    held: timedelta = row[0] - row[1]
    return held.total_seconds()


async def test_a_refusal_anyway_holds_back_only_the_limit_it_names(world: World, database_url: str) -> None:
    await limits_of(world, TIGHT)
    engine = create_engine(database_url)
    limiter = SharedRateLimiter(engine)
    adapter = paced_adapter(limiter, TIGHT)
    pacing = SendPacing(limiter, SendRates(TIGHT.number_rate, TIGHT.pair_rate, TIGHT.pair_burst))
    ann, bob = CLIENTS[0], CLIENTS[1]
    number_key = pacing.number_limit(world.phone_number_id).key

    # Another app on the same number used its throughput: Graph refuses with 130429; every replica waits.
    await world.control("POST", "errors", json={"code": 130429, "title": "Rate limit hit", "to": ann})
    with pytest.raises(RateLimitedError) as refused:
        await adapter.send(world.http, world.graph_url, world.credential, ann, text("one"))
    assert refused.value.code == THROUGHPUT_REFUSED and refused.value.retry_after == 1.0
    assert 0.5 < await seconds_held(database_url, number_key) <= 1.0 + 1 / TIGHT.number_rate

    # 131056 holds back that client's pair only: another client's messages are not held by it.
    await world.control("POST", "errors", json={"code": 131056, "title": "pair rate limit hit", "to": bob})
    with pytest.raises(RateLimitedError) as pair_refused:
        await adapter.send(world.http, world.graph_url, world.credential, bob, text("two"))
    assert pair_refused.value.code == PAIR_RATE_REFUSED and pair_refused.value.retry_after == 6.0
    bob_key = pacing.pair_limit(world.phone_number_id, bob).key
    assert await seconds_held(database_url, bob_key) > 5.0
    assert await seconds_held(database_url, pacing.pair_limit(world.phone_number_id, ann).key) < 1.0
    assert await seconds_held(database_url, number_key) < 1.0 + 1 / TIGHT.number_rate

    # The refused messages were not sent; a message to Ann goes once the number's pause is over.
    await adapter.send(world.http, world.graph_url, world.credential, ann, text("one"))
    bodies = [m.body["text"]["body"] for m in world.wa.sent if m.phone_number_id == world.phone_number_id]
    assert bodies == ["one"]
    await engine.dispose()
