"""The bus adapter against a real nats-server: order per key, retries, dead letters, dedup."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from libs.bus import Consumer, Delivery, Publisher, Stream, connect, ensure_streams
from libs.devstack.embedded import EmbeddedNats
from libs.errors import BadRequestError, RetryableError
from tests.support import wait_for


async def test_ensure_streams_is_idempotent(nats_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_streams(js)
    names = {info.config.name for info in await js.streams_info()}
    assert {stream.stream_name for stream in Stream} <= names
    await nc.close()


async def test_order_per_key_holds_across_retries_and_two_replicas(nats_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    publisher = Publisher(js, partitions=4)
    keys = [f"conv-{i}" for i in range(8)]
    for n in range(15):
        for key in keys:
            await publisher.publish(Stream.INBOUND, key, f"{key}:{n}".encode(), msg_id=f"{key}:{n}")

    seen: dict[str, list[int]] = defaultdict(list)
    failed_once: set[str] = set()

    async def handler(delivery: Delivery) -> None:
        text = delivery.data.decode()
        key, n = text.rsplit(":", 1)
        # Every third message fails once: the partition must wait for its retry.
        if int(n) % 3 == 0 and text not in failed_once:
            failed_once.add(text)
            raise RetryableError("transient", retry_after=0.05)
        seen[key].append(int(n))

    replicas = [
        Consumer(js, consumer="ordered", stream=Stream.INBOUND, partitions=4, handler=handler) for _ in range(2)
    ]
    for replica in replicas:
        await replica.start()
    await wait_for(lambda: sum(len(v) for v in seen.values()) == 8 * 15)
    for replica in replicas:
        await replica.stop()
    assert all(seen[key] == list(range(15)) for key in keys), dict(seen)
    await nc.close()


async def test_permanent_failure_is_dead_lettered_and_the_partition_moves_on(nats_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    publisher = Publisher(js, partitions=1)
    await publisher.publish(Stream.OUTBOUND, "k", b"poison", msg_id="m1")
    await publisher.publish(Stream.OUTBOUND, "k", b"fine", msg_id="m2")
    handled: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        if delivery.data == b"poison":
            raise BadRequestError("cannot parse")
        handled.append(delivery.data)

    consumer = Consumer(js, consumer="dl", stream=Stream.OUTBOUND, partitions=1, handler=handler)
    await consumer.start()
    await wait_for(lambda: handled == [b"fine"])
    await consumer.stop()
    sub = await js.subscribe("dead.>", stream=Stream.DEAD_LETTERS.stream_name)
    dead = await sub.next_msg(timeout=5)
    assert dead.data == b"poison"
    assert dead.headers is not None
    assert dead.headers["Bridge-Dead-Stream"] == Stream.OUTBOUND.stream_name
    assert "BadRequestError: cannot parse" in dead.headers["Bridge-Dead-Reason"]
    await nc.close()


async def test_retries_are_bounded_then_dead_lettered(nats_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    await Publisher(js, partitions=1).publish(Stream.REPORTS, "k", b"always-fails", msg_id="x")
    attempts: list[int] = []

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RetryableError("still down", retry_after=0.01)

    consumer = Consumer(js, consumer="bounded", stream=Stream.REPORTS, partitions=1, handler=handler, max_deliver=3)
    await consumer.start()
    sub = await js.subscribe("dead.>", stream=Stream.DEAD_LETTERS.stream_name)
    dead = await sub.next_msg(timeout=10)
    await consumer.stop()
    assert attempts == [1, 2, 3]
    assert dead.headers is not None and "gave up after retries" in dead.headers["Bridge-Dead-Reason"]
    await nc.close()


async def test_duplicate_msg_id_is_stored_once(nats_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    publisher = Publisher(js, partitions=2)
    first = await publisher.publish(Stream.INBOUND, "k", b"a", msg_id="same")
    second = await publisher.publish(Stream.INBOUND, "k", b"a", msg_id="same")
    assert second.duplicate and not first.duplicate
    info = await js.stream_info(Stream.INBOUND.stream_name)
    assert info.state.messages == 1
    await nc.close()


async def test_publish_without_a_broker_is_retryable(embedded_nats: EmbeddedNats) -> None:
    nc = await connect([embedded_nats.url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    embedded_nats.stop()
    with pytest.raises(RetryableError):
        await Publisher(js, partitions=1).publish(Stream.INBOUND, "k", b"x", msg_id="y", ack_timeout=0.5)
    await nc.close()


async def test_a_slow_handler_keeps_its_message_past_ack_wait(nats_url: str) -> None:
    nc = await connect([nats_url], "test")
    js = nc.jetstream()
    await ensure_streams(js)
    await Publisher(js, partitions=1).publish(Stream.INBOUND, "k", b"slow", msg_id="s")
    attempts: list[int] = []
    release = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        await release.wait()

    # Runs for three ack_wait periods: heartbeats must prevent a redelivery.
    consumer = Consumer(js, consumer="slow", stream=Stream.INBOUND, partitions=1, handler=slow, ack_wait=0.5)
    await consumer.start()
    await wait_for(lambda: attempts == [1])
    # Nine heartbeats at ack_wait/3 apart: three ack_wait periods have passed without a redelivery.
    await wait_for(lambda: consumer.heartbeats >= 9)
    assert attempts == [1]
    release.set()
    await consumer.stop()
    await nc.close()
